/* runner.h: the runners (runner.c), forks that run events; an end goes up through a callback. */
#ifndef EVENTILATOR_WATCH_RUNNER_H
#define EVENTILATOR_WATCH_RUNNER_H

#include <sys/types.h>

#include "set.h"

/* One event to run. The strings stay the caller's until the run has started (name, pod: ended). */
struct runner_job {
    const char *name, *text, *pod;            /* pod: for log lines, may be NULL */
    const char *first, *all, *delivery;       /* ev.sentinel, ev.sentinels, the delivery id */
    int synthetic;
    double budget;                            /* past budget + 5 s, the run is killed */
    void *tag;                                /* the caller's, handed back when it ends */
};

/*
 * A run that ended: exit `code`, or signal `sig` (0: none); its CPU (ms) and page faults; its event
 * call's seconds as the runner measured them, or < 0 when only the watcher's clock knows (a fork
 * per event, a runner that died).
 */
struct runner_end {
    void *tag;
    int code, sig;
    double cpu;
    long faults;
    double secs;
};

/*
 * in_child: what a new runner drops of the watcher's (its sockets, self-pipe, handlers); other:
 * a child reaped that is not a runner (wait4's status).
 */
void runners_init(void (*in_child)(void), void (*other)(pid_t pid, int status));
int runners_fork_ok(struct watch_set *set, double now); /* not while a thread left by loading lives */
/* On an idle runner, or a new fork when fewer than cap run: its pid; 0: it waits; -1: fork failed. */
pid_t runner_start(struct watch_set *set, const struct runner_job *j, int cap);
/* Answers read, ended runners reaped, hung ones killed; each end to `ended`. Seconds to the next kill. */
double runners_reap(double now, void (*ended)(const struct runner_end *e));
void runners_reload(void); /* runners of the old set exit: idle ones now, busy ones after their event */
void runners_stop(void);   /* the watcher stops: idle runners exit now, busy ones after their event */
void runners_end(void);    /* the watcher exits: every runner is told to, reaped, killed past 2 s */
int runners_pollfd(void);  /* the runners' answers: readable wakes the loop */
int runners_count(void);

#endif
