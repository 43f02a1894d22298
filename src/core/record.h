/* record.h: every event call as one JSON line, for replay (record.c; contract sections 14, 15). */
#ifndef EVENTILATOR_RECORD_H
#define EVENTILATOR_RECORD_H

#include "host.h"

#define EVL_RAN_KEY "eventilator.ran" /* the entries that matched, once they ran (call.c) */

void evl_record(struct evl_host *h, int code); /* this call's line, when `record` is set */

#endif
