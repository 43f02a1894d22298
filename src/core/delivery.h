/*
 * retry.h: per-handler delivery records, so that Sentinel's retry of a
 * failed call (same argv, same Sentinel process, exit 1) runs only the
 * handlers that have not yet succeeded. See retry.c.
 */
#ifndef EVENTILATOR_RETRY_H
#define EVENTILATOR_RETRY_H

#include "host.h"

#define EVL_RETRY_WINDOW (5 * 3600) /* Sentinel gives up after ~4 h 15 min */

/* Look for the record of an ended identical call; merges its handler ids into h->done. */
void evl_retry_begin(struct evl_host *h);
/*
 * A handler (by "file:line" id) succeeded: on disk before the next one
 * starts. call_ends_ok: it was the last one and nothing failed.
 */
void evl_retry_ok(const char *id, int call_ends_ok);
/* End of the call: keep the record if anything failed, else remove it. */
void evl_retry_end(struct evl_host *h, int failed);
/* Between two events of one process (a watch runner): close this call's record, forget its state. */
void evl_retry_reset(void);
/* For `eventilator test`: records in state_dir whose args match, pushed as a list. */
void evl_retry_find(struct evl_host *h, const char *mode, int nargs, char **args);

#endif
