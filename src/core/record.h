/* record.h: every event call as one JSON line, for replay (contract sections 14 and 15). */
#ifndef EVENTILATOR_RECORD_H
#define EVENTILATOR_RECORD_H

#include "host.h"

/* Where call.c leaves the entries that matched this call, once they ran (rules.h). */
#define EVL_RAN_KEY "eventilator.ran"

/* Append this call (argv, start time, Sentinel, exit code, handlers) when `record` is set. */
void evl_record(struct evl_host *h, int code);

#endif
