/* record.h: record calls and replay them (contract section 14). */
#ifndef EVENTILATOR_RECORD_H
#define EVENTILATOR_RECORD_H

struct evl_host;
struct lua_State;

/* Append this call (argv, start time, Sentinel, exit code) when `record` is set. */
void evl_record(struct evl_host *h, int code);

/* replay.c: host.begin_call() for cli.c's table: a replayed call gets its own budget. */
int evl_cli_begin_call(struct lua_State *L);

#endif
