/*
 * call.h: one event, from its arguments to its exit code (call.c): the one
 * event path of script mode (cli/main.c) and of a watch runner
 * (watch/set.c), and the handler loop `eventilator test --run` shares.
 */
#ifndef EVENTILATOR_CALL_H
#define EVENTILATOR_CALL_H

#include "host.h"

/* A new call: h->call cleared at once, its argv, its clock from now (deadline: now + h->budget). */
void evl_event_begin(struct evl_host *h, int argc, char **argv);
/*
 * What guards an event call from its start: the watchdog at
 * h->call.deadline (+2 s) and, with term, SIGTERM. Re-arming for an
 * unchanged deadline costs nothing.
 */
void evl_event_guard(struct evl_host *h, int term);
/* Once the config is loaded: the watchdog's and SIGTERM's log lines, then evl_event_guard(h, 1). */
void evl_event_arm(struct evl_host *h);
/*
 * The event path, with the config loaded and armed: arguments, parse, the
 * rule files (loaded unless they are), match, the handover check, the
 * handlers under the delivery record, the summary line; protected (an error
 * past it is a log line and exit 1), then the record line. Returns the exit
 * code.
 */
int evl_event_run(struct evl_host *h);
/*
 * Run the entries of the list at `matched` on the ev at `ev`, in order, each
 * with its share of what is left of the budget, skipping those that
 * succeeded already (delivery.h); each entry gets its outcome (rules.h).
 * Returns how many ran; *failed: how many of them failed.
 */
int evl_event_handlers(struct evl_host *h, int matched, int ev, int *failed);
/* A watch runner between two events: what one call leaves that would change the next. */
void evl_event_end(struct evl_host *h);

#endif
