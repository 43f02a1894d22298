/* call.h: one event, from its arguments to its exit code (call.c), in script mode and watch mode. */
#ifndef EVENTILATOR_CALL_H
#define EVENTILATOR_CALL_H

#include "host.h"

/* A new call: h->call cleared at once, its argv, its clock from now (deadline: now + h->budget). */
void evl_event_begin(struct evl_host *h, int argc, char **argv);
/* The watchdog at h->call.deadline (+2 s) and, with term, SIGTERM; re-arming the same costs nothing. */
void evl_event_guard(struct evl_host *h, int term);
/* Once the config is loaded: the watchdog's and SIGTERM's log lines, then evl_event_guard(h, 1). */
void evl_event_arm(struct evl_host *h);
/* The event, the config loaded and armed; protected, then the record line. Returns the exit code. */
int evl_event_run(struct evl_host *h);
/*
 * The entries at `matched` run on the ev at `ev`, each with its share of
 * the budget left, skipping what succeeded already; each gets its outcome
 * (entry.h). Returns how many ran; *failed, how many of those failed.
 */
int evl_event_handlers(struct evl_host *h, int matched, int ev, int *failed);
/* A watch runner between two events: what one call leaves that would change the next. */
void evl_event_end(struct evl_host *h);

#endif
