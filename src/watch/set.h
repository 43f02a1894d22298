/*
 * set.h: the bottom of watch mode's stack (docs/watch.md, docs/design.md):
 * one loaded config and rule set (set.c), what every layer above reads,
 * and the one event a runner runs from it.
 *
 * The stack, each file calling only those below it (what goes up goes
 * through a returned value or a callback):
 *
 *   watch.c    the loop and the signals; `eventilator watch` itself
 *   conn.c     the Sentinel connections, and the masters' last addresses
 *   intake.c   a heard event: parse, match, dedupe, queue, start, retry
 *   runner.c   the runners: forks of the watcher that run events
 *   set.c      the loaded set (this header)
 */
#ifndef EVENTILATOR_WATCH_SET_H
#define EVENTILATOR_WATCH_SET_H

#include <signal.h>
#include <stddef.h>

#include <lua.h>

#include "host.h"

/* The settings of config.watch (their defaults are the schema's), and the host's budget, state_dir. */
struct watch_settings {
    char **seeds;
    size_t nseeds;
    int discover;
    char *username, *password;
    char **masters; /* NULL: every master */
    size_t nmasters;
    double dedupe_window, timeout, budget;
    int concurrency, queue, retries;
    int reuse; /* events per runner before a fresh fork; 1: a fork per event */
    char *state_dir;
};

/* One loaded config + rule set: a Lua state that matches names, and runs events in runners. */
struct watch_set {
    struct evl_host *host; /* owned, with its Lua state */
    struct watch_settings s;
    /* event name -> does any handler match (names seen so far) */
    struct { char *name; int hit; } *names;
    size_t nnames, capnames;
    int single; /* no helper thread left by loading it: runs may fork (runner.c) */
};

/*
 * Load config and rules as a call named `name` does, once: a set with a
 * config error or a rule file that fails is refused. NULL with why.
 */
struct watch_set *watch_set_load(const char *name, char *why, size_t cap);
void watch_set_free(struct watch_set *set);
/* The --sentinel options (a list of "host:port" at idx, when not empty) replace watch.sentinels. */
void watch_set_seeds(struct watch_set *set, lua_State *L, int idx);
/* Does any handler match this event name? */
int watch_set_matches(struct watch_set *set, const char *name);
/* Is master `pod` one of watch.masters (or are all watched)? */
int watch_set_wants(const struct watch_set *set, const char *pod);
/*
 * In a runner: one event call from the loaded set, as Sentinel would start
 * it (argv), with watch mode's fields and the watcher's delivery id, the
 * budget from now; returns its exit code. mask, if not NULL, is the signal
 * mask to set once the event's own handlers are armed.
 */
int watch_set_run(struct watch_set *set, char **argv, const struct evl_origin *o,
                  const char *delivery, const sigset_t *mask);
/* In a runner, between two events: what one call leaves that would change the next. */
void watch_set_reset(struct watch_set *set);

#endif
