/* trust.h: the files whose words the program runs, and the rule they must pass (trust.c). */
#ifndef EVENTILATOR_TRUST_H
#define EVENTILATOR_TRUST_H

#include <stddef.h>
#include <sys/stat.h>

/* A NUL-ended malloc'd copy, its length, and (st not NULL) its stat; or NULL with *err = errno. */
char *evl_read_file(const char *path, size_t max, size_t *len, int *err, struct stat *st);
/*
 * The trust rule (sshd's StrictModes): owned by root or the user running
 * the call, and nobody else may write it. 1, or 0 with the reason and the
 * fix in why.
 */
int evl_trusted(const struct stat *st, const char *path, char *why, size_t cap);
uid_t evl_euid(void); /* the running user, asked once */
/* Stricter, for what only this program writes (state_dir): owned by this user, not root. */
int evl_ours(const struct stat *st);
/* The *.lua files of the rules folder in byte order (malloc'd, *n of them), or NULL with why. */
char **evl_rule_files(const char *dir, int strict, size_t *n, char *why, size_t cap);
/* May rule file `path` run? A regular file of at most max bytes, trusted when strict: 1, or 0 with why. */
int evl_rule_file_ok(const char *path, int strict, size_t max, struct stat *st, char *why,
                     size_t cap);

#endif
