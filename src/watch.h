/*
 * watch.h: what the pieces of watch mode share (docs/watch.md). One process,
 * one poll() loop: watch_conn.c keeps a subscriber connection per Sentinel
 * and the masters' last known addresses, watch_run.c turns each event into
 * a queued run in a runner (a fork of the watcher that handles many), watch.c
 * keeps the preloaded config and rules the runners start from, runs one
 * event in a runner, and drives the loop.
 */
#ifndef EVENTILATOR_WATCH_H
#define EVENTILATOR_WATCH_H

#include <stddef.h>
#include <stdint.h>
#include <poll.h>
#include <signal.h>
#include <sys/types.h>

#include <lua.h>

#define WATCH_MAX_SENTINELS 64 /* reporters are a bit mask */

/* The settings of config.watch (and the host's budget, rules, state_dir). */
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
    char *listen; /* "ip:port" of /metrics and /healthz; NULL: off */
};

/* One loaded config + rule set: a Lua state that only matches names. */
struct watch_set {
    lua_State *L;
    void *host;   /* struct evl_host, owned */
    struct watch_settings s;
    /* event name -> does any handler match (names seen so far) */
    struct { char *name; int hit; } *names;
    size_t nnames, capnames;
    int single; /* no helper thread left by loading it: runs may fork (watch_fork_ok) */
};

/* watch.c */
int evl_watch_lua(lua_State *L); /* host.watch(seeds, opts), registered in cli.c */
/* Config and rules loaded as the environment names them (validated: NULL with why). */
struct watch_set *watch_load_set(const char *name, char *why, size_t cap);
void watch_free_set(struct watch_set *set);
extern volatile int watch_stopping;
double watch_now(void);
int watch_wants_master(const struct watch_set *set, const char *pod);
int watch_matches(struct watch_set *set, const char *name);
int watch_fork_ok(double now);
void *watch_nofork_alloc(size_t size); /* zeroed, never freed, not in a run's child */
/* In a runner (a fork of the watcher): drop the watcher's fds and handlers, once. */
void watch_child_begin(void);
/* In a runner: one event call from the preloaded state; returns its exit code. */
int watch_event(char **argv, const char *sentinel, const char *sentinels, const char *delivery,
                int synthetic, const sigset_t *mask);
/* In a runner, between two events: what one call leaves that would change the next. */
void watch_event_reset(void);

/* watch_conn.c */
void conn_init(struct watch_set *set);
void conn_settings(struct watch_set *set); /* after a reload: new seeds, auth */
void conn_add(const char *addr);
const char *conn_addr(int idx);
int conn_count(void);
int conn_subscribed(int idx); /* its subscription is confirmed */
/* Fills pfds with the Sentinel links' sockets (up to 2 per Sentinel); returns how many, and the
   index map for conn_io. */
int conn_pollfds(struct pollfd *pfds, int *idx, int max);
void conn_io(int idx, short revents);
/* Connects what is due, ends what is past its deadline; returns the seconds until it must run
   again (at most 10). */
double conn_tick(double now);
void conn_close_all(void);
void conn_close_fds(void); /* in a run's child */
/* A real +switch-master was heard: the new address is known. */
void conn_master_moved(const char *name, const char *ip, long port);
void conn_rediscover(void);

/* watch_run.c */
void run_init(struct watch_set *set);
void run_settings(struct watch_set *set);
/* An event heard from Sentinel idx (or a synthetic one). */
void run_intake(int idx, const char *name, const char *text, int synthetic);
/* Starts due runs, reaps children, kills hung ones; returns seconds to the next timer. */
double run_tick(double now);
int run_busy(void);     /* events running */
int run_pollfd(void);   /* the runners' answers: readable wakes the loop */
void run_end(void);     /* the watcher exits: the runners too */
void run_drain(void);   /* stop: drop what waits, keep what runs */
void run_stats(void);
uint64_t run_intake_count(void);
/* What the stats line counts, for /metrics. */
struct run_counts {
    uint64_t heard, unusable, duplicates, dropped, waiting;
    int running, runners;
};
void run_counts(struct run_counts *c);

/* watch_sink.c: cluster mode (docs/cluster.md): events go to the appender, not to runners */
void sink_init(struct watch_set *set, int no_work);
void sink_settings(struct watch_set *set);
int sink_on(void);
/* An event for the stream: 1 taken, 0 not now (it stays queued). */
int sink_item(const char *name, const char *text, const char *sentinel, double heard, uint64_t seq,
              int synthetic);
double sink_tick(double now);
int sink_reaped(pid_t pid, int status);
int sink_pollfd(void);
void sink_stop(void);
int sink_busy(void);
void sink_end(void);

#endif
