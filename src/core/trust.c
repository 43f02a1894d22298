/*
 * readfile.c: the files the program trusts. One reader for the config and
 * rule files, and the trust rule for them (state_dir: statedir.c).
 *
 * The trust rule is sshd's StrictModes (and keepalived's
 * enable_script_security): eventilator runs what these files say as
 * Sentinel's user on every event, so a file that someone else could have
 * written is someone else's code. A file or folder is trusted when it is
 * owned by root or by the user running the call and is writable by neither
 * group nor others. stat(2) follows symlinks: a link is judged by its target.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "host.h"

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

/*
 * Returns a NUL-terminated malloc'ed copy and its length, or NULL with
 * *err = errno (EISDIR for a folder or other non-file, EFBIG over max).
 * out (may be NULL): the file's stat, for the trust rule.
 */
char *evl_read_file(const char *path, size_t max, size_t *len, int *err)
{
    return evl_read_file_stat(path, max, len, err, NULL);
}

char *evl_read_file_stat(const char *path, size_t max, size_t *len, int *err, struct stat *out)
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
