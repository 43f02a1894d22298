/*
 * replay.c: what replaying recorded calls needs from the host beyond the
 * rest of cli.c's table. A real call gets the whole budget from its start;
 * a replay runs many calls in one process, so each starts its own budget.
 */
#include <lua.h>

#include "deadline.h"
#include "host.h"
#include "record.h"

/* host.begin_call(): a new call starts now, with a budget of its own. */
int evl_cli_begin_call(lua_State *L)
{
    struct evl_host *h = lua_touserdata(L, lua_upvalueindex(1));
    h->t0 = evl_monotonic();
    h->deadline = h->t0 + h->budget;
    return 0;
}
