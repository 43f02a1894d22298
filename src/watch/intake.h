/*
 * intake.h: from a heard event to a finished run of its handlers (intake.c):
 * parse, match, dedupe, the queue, what starts when, retries. Below the
 * connections (conn.c), which hand it every message; what the connections
 * must do about an event (a master moved, a Sentinel to add) comes back as
 * the returned action. It starts runs on the runners (runner.h).
 */
#ifndef EVENTILATOR_WATCH_INTAKE_H
#define EVENTILATOR_WATCH_INTAKE_H

#include <stdint.h>

#include "set.h"

#define WATCH_MAX_SENTINELS 64 /* reporters are a bit mask */

/* What an event asks of the connections; pod and ip point into the event, valid until the next. */
struct intake_action {
    enum { INTAKE_NOTHING, INTAKE_MOVED, INTAKE_ADD, INTAKE_REDISCOVER } what;
    const char *pod; /* MOVED: the master that moved */
    const char *ip;  /* MOVED: its new address; ADD: the Sentinel's */
    long port;
};

void intake_init(struct watch_set *set);
/* A reload: the new set's settings; the runners of the old one exit after their event. */
void intake_settings(struct watch_set *set);
/* Sentinel idx is `addr`: the name reporters are given in log lines and ev.sentinels. */
void intake_name(int idx, const char *addr);
/* An event heard from Sentinel idx (or a synthetic one, reconstructed by conn.c). */
struct intake_action intake_event(int idx, const char *name, const char *text, int synthetic);
/* Ended runs (retried or done), due runs started; returns seconds to the next timer. */
double intake_tick(double now);
int intake_busy(void);  /* events running */
void intake_drain(void); /* stop: drop what waits, keep what runs */
void intake_stats(void);

#endif
