/* watch.h: `eventilator watch` (watch.c), the top of watch mode's stack; the CLI registers it. */
#ifndef EVENTILATOR_WATCH_H
#define EVENTILATOR_WATCH_H

#include <lua.h>

int evl_watch_lua(lua_State *L); /* host.watch(seeds) -> exit code; upvalue 1: the host */

#endif
