/*
 * trust.c: the files the program trusts. One reader for the config and
 * rule files, the trust rule for them and for the rules folder, and the
 * listing of that folder (state_dir: statedir.c).
 *
 * The trust rule is sshd's StrictModes (and keepalived's
 * enable_script_security): eventilator runs what these files say as
 * Sentinel's user on every event, so a file that someone else could have
 * written is someone else's code. A file or folder is trusted when it is
 * owned by root or by the user running the call and is writable by neither
 * group nor others. stat(2) follows symlinks: a link is judged by its target.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "trust.h"

uid_t evl_euid(void)
{
    static uid_t me = (uid_t)-1;
    if (me == (uid_t)-1)
        me = geteuid(); /* a system call each time: ask once */
    return me;
}

int evl_ours(const struct stat *st)
{
    return st->st_uid == evl_euid() && !(st->st_mode & (S_IWGRP | S_IWOTH));
}

int evl_trusted(const struct stat *st, const char *path, char *why, size_t cap)
{
    uid_t me = evl_euid();
    if (st->st_uid != 0 && st->st_uid != me) {
        snprintf(why, cap, "%s is owned by uid %ld, not by root or uid %ld, which runs this call; "
                 "fix: chown %ld %s", path, (long)st->st_uid, (long)me, (long)me, path);
        return 0;
    }
    if (st->st_mode & (S_IWGRP | S_IWOTH)) {
        snprintf(why, cap, "%s is writable by %s (mode %03o); fix: chmod go-w %s", path,
                 (st->st_mode & S_IWOTH) ? "others" : "its group", (unsigned)(st->st_mode & 0777),
                 path);
        return 0;
    }
    return 1;
}

/* *err: EISDIR for a folder or other non-file, EFBIG over max. */
char *evl_read_file(const char *path, size_t max, size_t *len, int *err, struct stat *out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat own, *st = out ? out : &own;
    *err = 0;
    if (fd < 0) {
        *err = errno;
        return NULL;
    }
    if (fstat(fd, st) < 0 || !S_ISREG(st->st_mode) || (size_t)st->st_size > max) {
        *err = S_ISREG(st->st_mode) ? EFBIG : EISDIR;
        close(fd);
        return NULL;
    }
    char *buf = malloc((size_t)st->st_size + 1);
    size_t got = 0;
    while (buf && got < (size_t)st->st_size) {
        ssize_t r = read(fd, buf + got, (size_t)st->st_size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    if (!buf) {
        *err = ENOMEM;
        return NULL;
    }
    buf[got] = '\0';
    *len = got;
    return buf;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int is_rule_file(const char *n)
{
    size_t l = strlen(n);
    return l > 4 && strcmp(n + l - 4, ".lua") == 0 && n[0] != '.';
}

char **evl_rule_files(const char *dir, int strict, size_t *n, char *why, size_t cap)
{
    DIR *d = opendir(dir);
    struct stat st;
    char trust[600];
    *n = 0;
    if (!d || fstat(dirfd(d), &st) < 0) {
        snprintf(why, cap, "%s", strerror(errno));
        if (d)
            closedir(d);
        return NULL;
    }
    if (strict && !evl_trusted(&st, dir, trust, sizeof trust)) {
        snprintf(why, cap, "refused: %s", trust);
        closedir(d);
        return NULL;
    }
    char **names = calloc(1, sizeof *names); /* an empty folder: an empty list, not a failure */
    size_t cap_names = 1;
    struct dirent *de;
    while (names && (de = readdir(d))) {
        if (!is_rule_file(de->d_name))
            continue;
        if (*n == cap_names) {
            char **nn = realloc(names, (cap_names *= 2) * sizeof *names);
            if (!nn)
                break;
            names = nn;
        }
        if ((names[*n] = strdup(de->d_name)))
            (*n)++;
    }
    closedir(d);
    if (!names)
        snprintf(why, cap, "%s", strerror(ENOMEM));
    else if (*n > 1)
        qsort(names, *n, sizeof *names, by_name);
    return names;
}

int evl_rule_file_ok(const char *path, int strict, size_t max, struct stat *st, char *why,
                     size_t cap)
{
    char trust[600];
    if (stat(path, st) < 0) {
        snprintf(why, cap, "%s: %s", path, strerror(errno));
        return 0;
    }
    if (!S_ISREG(st->st_mode) || (size_t)st->st_size > max) {
        snprintf(why, cap, "%s: not a regular file under %zu MiB", path, max >> 20);
        return 0;
    }
    if (strict && !evl_trusted(st, path, trust, sizeof trust)) {
        snprintf(why, cap, "%s: refused: %s", path, trust);
        return 0;
    }
    return 1;
}
