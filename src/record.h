/* record.h: one JSON line per call into config `record` (contract section 14). */
#ifndef EVENTILATOR_RECORD_H
#define EVENTILATOR_RECORD_H

struct evl_host;

/* Append this call (argv, start time, Sentinel, exit code) when `record` is set. */
void evl_record(struct evl_host *h, int code);

#endif
