/* intake.h: a heard event to a finished run (intake.c); what it asks of conn.c is returned. */
#ifndef EVENTILATOR_WATCH_INTAKE_H
#define EVENTILATOR_WATCH_INTAKE_H

#include "metrics.h"
#include "set.h"

#define WATCH_MAX_SENTINELS 64 /* reporters are a bit mask */

/* pod and ip point into the event, valid until the next one. */
struct intake_action {
    enum { INTAKE_NOTHING, INTAKE_MOVED, INTAKE_ADD, INTAKE_REDISCOVER } what;
    const char *pod; /* MOVED: the master that moved */
    const char *ip;  /* MOVED: its new address; ADD: the Sentinel's */
    long port;
};

void intake_init(struct watch_set *set);
void intake_settings(struct watch_set *set); /* a reload; the old set's runners exit after their event */
void intake_name(int idx, const char *addr); /* Sentinel idx, for log lines and ev.sentinels */
/* An event heard from Sentinel idx, or a synthetic one (conn.c reconstructs it). */
struct intake_action intake_event(int idx, const char *name, const char *text, int synthetic);
double intake_tick(double now); /* runs ended and started; seconds to the next timer */
int intake_busy(void);          /* events running */
void intake_drain(void);        /* stop: drop what waits, keep what runs */
void intake_stats(void);
void intake_counts(struct metrics_now *m); /* what the stats line counts, for /metrics */

#endif
