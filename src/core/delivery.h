/*
 * delivery.h: which handlers of an event have succeeded (delivery.c), the
 * one owner of that set: what a delivery record of an earlier failed call
 * lists, what the lean binary ran before it handed the call over, and each
 * success as it happens, kept on disk so that Sentinel's retry of a failed
 * call (same argv, same Sentinel process, exit 1) runs only the rest.
 */
#ifndef EVENTILATOR_DELIVERY_H
#define EVENTILATOR_DELIVERY_H

#include "host.h"

#define EVL_RETRY_WINDOW (5 * 3600) /* Sentinel gives up after ~4 h 15 min */

/*
 * An event's handlers are about to run: the set starts from what the lean
 * binary passed (h->call.inherited) and the record of an ended identical
 * call, which this call takes over as its retry (h->call.retry).
 */
void evl_delivery_begin(struct evl_host *h);
/* Has handler `id` ("file:line") succeeded already? */
int evl_delivery_done(const char *id);
/*
 * Handler `id` succeeded: in the set, and on disk before the next one
 * starts. call_ends_ok: it was the last one and nothing failed.
 */
void evl_delivery_ok(const char *id, int call_ends_ok);
/* The set, one id a line (for a handover), or NULL when empty. */
const char *evl_delivery_list(void);
/* End of the event: keep the record if anything failed, else remove it. */
void evl_delivery_end(struct evl_host *h, int failed);
/* Forget this event's set and close its record (a watch runner between two events; a replayed call). */
void evl_delivery_reset(void);
/* For `eventilator test`: records in state_dir whose args match, pushed as a list. */
void evl_delivery_find(struct evl_host *h, const char *mode, int nargs, char **args);

#endif
