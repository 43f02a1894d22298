/*
 * statedir.c: state_dir, the one folder this program writes, and the
 * folders in it (retries/, rules-cache/, the watcher's watch-masters).
 *
 * What is in it decides what later calls do: compiled rule files that run,
 * delivery records that decide which handlers are skipped. So a folder here
 * is used only when it is ours alone: owned by the user running the call,
 * writable by no group or other. Every "create if missing" goes through
 * evl_private_dir: Sentinel starts up to 16 scripts at once, so the first
 * calls on a fresh state_dir race to make it, and the loser's EEXIST is
 * the winner's folder, checked like any other.
 *
 * The fix a refusal names must never do harm: an operator who runs a call
 * by hand as root must not be told to chown Sentinel's folder to root.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "statedir.h"
#include "trust.h"

const char *evl_user_name(uid_t uid, char *buf, size_t cap)
{
    char line[512];
    FILE *f = fopen("/etc/passwd", "re");
    snprintf(buf, cap, "#%ld", (long)uid); /* as sudo -u takes a uid */
    while (f && fgets(line, sizeof line, f)) {
        char *pw = strchr(line, ':'), *id = pw ? strchr(pw + 1, ':') : NULL; /* name:pw:uid: */
        if (id && strtol(id + 1, NULL, 10) == (long)uid && id[1] != ':') {
            *pw = '\0';
            snprintf(buf, cap, "%.32s", line); /* user names are at most 32 bytes */
            break;
        }
    }
    if (f)
        fclose(f);
    return buf;
}

enum evl_private evl_private_rule(const struct stat *st, uid_t uid)
{
    if (!S_ISDIR(st->st_mode))
        return EVL_PRIVATE_NOT_DIR;
    if (st->st_uid != uid)
        return EVL_PRIVATE_OWNER;
    return st->st_mode & (S_IWGRP | S_IWOTH) ? EVL_PRIVATE_WRITABLE : EVL_PRIVATE_OK;
}

int evl_private_check(const struct stat *st, const char *path, char *why, size_t cap)
{
    char owner[64], me[64];
    uid_t uid = evl_euid();
    enum evl_private rule = evl_private_rule(st, uid);
    if (rule == EVL_PRIVATE_OK)
        return 1;
    if (rule == EVL_PRIVATE_NOT_DIR) {
        snprintf(why, cap, "%s: not a folder", path);
        return 0;
    }
    if (rule == EVL_PRIVATE_WRITABLE)
        return evl_trusted(st, path, why, cap); /* the chmod go-w fix */
    evl_user_name(st->st_uid, owner, sizeof owner);
    evl_user_name(uid, me, sizeof me);
    if (uid == 0) /* by hand, as root: the folder is the Sentinel user's, leave it so */
        snprintf(why, cap, "%s belongs to %s, and this call runs as root: run it as the Sentinel's "
                 "user (sudo -u %s ...)", path, owner, owner);
    else if (st->st_uid == 0) /* made by a call run as root: right only if we are Sentinel's user */
        snprintf(why, cap, "%s belongs to root, not to %s, which runs this call: if %s is the "
                 "Sentinel's user, fix (as root): chown %s %s", path, me, me, me, path);
    else
        snprintf(why, cap, "%s belongs to %s, not to %s, which runs this call: run it as the "
                 "Sentinel's user (sudo -u %s ...)", path, owner, me, owner);
    return 0;
}

int evl_private_dir(const char *path, char *why, size_t cap)
{
    struct stat st;
    if (stat(path, &st) < 0) {
        /* EEXIST: a call running at the same time made it first; it is checked below */
        if (errno != ENOENT || (mkdir(path, 0700) < 0 && errno != EEXIST) || stat(path, &st) < 0) {
            snprintf(why, cap, "%s: %s", path, strerror(errno));
            return 0;
        }
    }
    return evl_private_check(&st, path, why, cap);
}

void evl_state_dir_open(struct evl_state *s, const char *dir)
{
    static char why[900];
    s->dir = dir;
    s->ok = 0;
    s->why = why;
    snprintf(why, sizeof why, "no state_dir");
    if (!dir || !*dir || !evl_private_dir(dir, why, sizeof why))
        return;
    s->ok = 1;
    s->why = NULL;
}
