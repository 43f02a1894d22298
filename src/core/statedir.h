/* statedir.h: the one owner of state_dir and the folders in it (statedir.c). */
#ifndef EVENTILATOR_STATEDIR_H
#define EVENTILATOR_STATEDIR_H

#include <stddef.h>
#include <sys/stat.h>

/* state_dir as a call uses it: the host keeps one (host.h). */
struct evl_state {
    const char *dir; /* config state_dir (the config keeps the string alive) */
    int ok;          /* it exists, is ours, and only we can write it */
    const char *why; /* why not, for the log */
};

/*
 * A user's name from /etc/passwd, read directly: the start-up binary is
 * static, and glibc's getpwuid would load NSS modules at run time. For
 * messages, on refusal paths only. "#N" (as sudo -u takes a uid) when the
 * file does not name it.
 */
const char *evl_user_name(uid_t uid, char *buf, size_t cap);

/*
 * The rule for a folder of state_dir: a folder, owned by `uid`, writable by
 * no group or other. The one rule, also for `sentinels doctor`, which asks
 * it for Sentinel's user (src/cli/cli.c, host.private_dir).
 */
enum evl_private { EVL_PRIVATE_OK, EVL_PRIVATE_NOT_DIR, EVL_PRIVATE_OWNER, EVL_PRIVATE_WRITABLE };
enum evl_private evl_private_rule(const struct stat *st, uid_t uid);
/*
 * Is the folder `path` (its stat in st) ours alone, by that rule for the
 * running user? 1, or 0 with the reason and a fix that cannot harm in why.
 */
int evl_private_check(const struct stat *st, const char *path, char *why, size_t cap);
/*
 * The folder `path`, made 0700 when missing (its parent must exist; another
 * call making it at the same moment is fine), then checked as above.
 */
int evl_private_dir(const char *path, char *why, size_t cap);
/* state_dir `dir` into s: made when missing, checked once; s->ok, or s->why says why not. */
void evl_state_dir_open(struct evl_state *s, const char *dir);

#endif
