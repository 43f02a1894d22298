/*
 * set.h: the bottom of watch mode's stack, watch.c > conn.c > intake.c >
 * runner.c > set.c (docs/design.md): one loaded config and rule set.
 */
#ifndef EVENTILATOR_WATCH_SET_H
#define EVENTILATOR_WATCH_SET_H

#include <signal.h>
#include <stddef.h>
#include <sys/socket.h>

#include <lua.h>

#include "host.h"

/* config.watch (its defaults are the schema's), and the host's budget and state_dir. */
struct watch_settings {
    const char **seeds;
    size_t nseeds;
    int discover;
    const char *username, *password;
    const char **masters; /* NULL: every master */
    size_t nmasters;
    double dedupe_window, timeout, budget;
    int concurrency, queue, retries;
    int reuse; /* events per runner before a fresh fork; 1: a fork per event */
    const char *state_dir;
    const char *listen; /* "ip:port" of /metrics and /healthz; NULL: off */
};

struct watch_set {
    struct evl_host *host; /* owned, with its Lua state, which anchors the settings' strings */
    struct watch_settings s;
    struct { char *name; int hit; } *names; /* event name -> does a handler match (names seen) */
    size_t nnames, capnames;
    int single; /* no helper thread left by loading it: runs may fork (runner.c) */
};

/* Load config and rules as a call named `name` does; a set with any error is refused (why). */
struct watch_set *watch_set_load(const char *name, char *why, size_t cap);
void watch_set_free(struct watch_set *set);
/* The --sentinel options (a list of "host:port" at idx of L, when not empty) replace watch.sentinels. */
void watch_set_seeds(struct watch_set *set, lua_State *L, int idx);
int watch_set_matches(struct watch_set *set, const char *name); /* does any handler match it? */
int watch_set_wants(const struct watch_set *set, const char *pod); /* one of watch.masters (or all)? */
/* watch.listen's address ("127.0.0.1:9121", "[::1]:9121") into ss: 0, or -1 when it is not one. */
int watch_set_listen(const char *spec, struct sockaddr_storage *ss, socklen_t *len);
/*
 * In a runner: one event call from the set, the budget from now, the handlers of `done` (ids, one
 * a line, or NULL) skipped; mask, if any, set once armed.
 */
int watch_set_run(struct watch_set *set, char **argv, const struct evl_origin *o,
                  const char *delivery, const char *done, const sigset_t *mask);
void watch_set_reset(struct watch_set *set); /* between two events of a runner */

#endif
