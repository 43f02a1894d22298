/*
 * watch.h: `eventilator watch` (watch.c, docs/watch.md), the top of watch
 * mode's stack (set.h shows the whole stack). The CLI registers it.
 */
#ifndef EVENTILATOR_WATCH_H
#define EVENTILATOR_WATCH_H

#include <lua.h>

/* host.watch(seeds) -> exit code: the cli table's (upvalue 1: the host). */
int evl_watch_lua(lua_State *L);

#endif
