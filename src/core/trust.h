/*
 * trust.h: the files the program runs what they say (trust.c): the config,
 * the rules folder and its files, read only when they pass the trust rule.
 */
#ifndef EVENTILATOR_TRUST_H
#define EVENTILATOR_TRUST_H

#include <stddef.h>
#include <sys/stat.h>

/* A NUL-terminated malloc'd copy of the file and its length, or NULL with *err = errno. */
char *evl_read_file(const char *path, size_t max, size_t *len, int *err);
/* The same, and the file's stat (for the trust rule). */
char *evl_read_file_stat(const char *path, size_t max, size_t *len, int *err, struct stat *out);
/*
 * The trust rule (sshd's StrictModes): a file or folder is trusted when it
 * is owned by root or the user running the call and nobody else may write
 * it. Returns 1, or 0 with the reason and the fix in why.
 */
int evl_trusted(const struct stat *st, const char *path, char *why, size_t cap);
uid_t evl_euid(void); /* the running user, asked once */
/* Stricter, for what only this program writes (state_dir): owned by this user, not root. */
int evl_ours(const struct stat *st);
/*
 * The rule files of the folder `dir`: its *.lua files (not hidden), in byte
 * order of name, a malloc'd array of malloc'd names (*n of them). With
 * strict, the folder must pass the trust rule. NULL with why: missing,
 * unreadable or refused.
 */
char **evl_rule_files(const char *dir, int strict, size_t *n, char *why, size_t cap);
/*
 * May rule file `path` run? A regular file of at most `max` bytes that, with
 * strict, passes the trust rule: 1 with its stat, or 0 with why
 * ("<path>: ...").
 */
int evl_rule_file_ok(const char *path, int strict, size_t max, struct stat *st, char *why,
                     size_t cap);

#endif
