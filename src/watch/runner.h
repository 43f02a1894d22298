/*
 * runner.h: the runners (runner.c), forks of the watcher that run events
 * from the loaded set (set.h), one at a time, up to watch.reuse each.
 * Below intake.c, which decides what runs when; a run's end goes back up
 * through the callback runners_reap is given.
 */
#ifndef EVENTILATOR_WATCH_RUNNER_H
#define EVENTILATOR_WATCH_RUNNER_H

#include <sys/types.h>

#include "set.h"

/* One event to run. The strings stay the caller's, alive until the run has ended. */
struct runner_job {
    const char *name, *text, *pod; /* pod: for log lines, may be NULL */
    const char *first, *all;       /* ev.sentinel, ev.sentinels */
    const char *delivery;          /* the id that keys its delivery record */
    int synthetic;
    double budget;                 /* a run still going past budget + 5 s is killed */
    void *tag;                     /* the caller's, handed back when it ends */
};

/* A run that ended: with exit `code`, or by signal `sig` (0: none); its CPU and page faults. */
struct runner_end {
    void *tag;
    int code, sig;
    double cpu;  /* ms */
    long faults; /* minor page faults: the copy-on-write cost of the fork */
};

/*
 * Before the first run. in_child: what a new runner drops of the watcher's
 * that is above this layer (its sockets, its self-pipe, its handlers).
 */
void runners_init(void (*in_child)(void));
/* May runs fork now? Not while a helper thread left by loading the set lives (at most 30 s). */
int runners_fork_ok(struct watch_set *set, double now);
/*
 * Start `j` on an idle runner, or on a new one forked from `set` when fewer
 * than `cap` are busy or idle. Returns the runner's pid; 0 when none can
 * take it now (it waits); -1 when a fork failed (errno).
 */
pid_t runner_start(struct watch_set *set, const struct runner_job *j, int cap);
/*
 * Read the runners' answers, reap the ones that ended, kill the ones past
 * their budget; each run that ended goes to `ended`. Returns the seconds to
 * the next kill time (at most 10).
 */
double runners_reap(double now, void (*ended)(const struct runner_end *e));
/* A reload: every runner of the old set exits, idle ones now, busy ones after their event. */
void runners_reload(void);
/* The watcher stops: idle runners exit now, busy ones after their event. */
void runners_stop(void);
/* The watcher exits: every runner is told to, and reaped (killed past 2 s). */
void runners_end(void);
int runners_pollfd(void); /* the runners' answers: readable wakes the loop */
int runners_count(void);

#endif
