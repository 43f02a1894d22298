/* delivery.h: which handlers of an event have succeeded (delivery.c), on disk as they succeed. */
#ifndef EVENTILATOR_DELIVERY_H
#define EVENTILATOR_DELIVERY_H

#include "host.h"

#define EVL_RETRY_WINDOW (5 * 3600) /* Sentinel gives up after ~4 h 15 min */

/* The handlers are about to run: the set starts from h->call.inherited and an ended call's record. */
void evl_delivery_begin(struct evl_host *h);
int evl_delivery_done(const char *id); /* has handler "file:line" succeeded already? */
/* It succeeded: in the set, and on disk before the next starts (call_ends_ok: the last, no failure). */
void evl_delivery_ok(const char *id, int call_ends_ok);
const char *evl_delivery_list(void); /* the set, an id a line (for a handover), or NULL */
void evl_delivery_end(struct evl_host *h, int failed); /* keep the record on a failure, else remove it */
void evl_delivery_reset(void); /* forget the set, close the record (between two events) */
void evl_delivery_records(struct evl_host *h); /* for `eventilator test`: { [path] = text }, pushed */

#endif
