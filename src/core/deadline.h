/*
 * deadline.h: the time budget as the bindings see it.
 *
 * The host (main binary) stores the monotonic time at which the running
 * handler must stop in the Lua registry under "eventilator.deadline"
 * (seconds, CLOCK_MONOTONIC, as a Lua number). A binding blocked inside
 * hiredis or libcurl cannot be interrupted by the Lua count hook, so every
 * blocking operation clamps its own timeout to what is left of the budget.
 * Loaded in a stock lua5.4 (busted), the key is absent and nothing is clamped.
 *
 * Header-only on purpose: each binding is its own shared object and must not
 * need a symbol from the host.
 */
#ifndef EVENTILATOR_DEADLINE_H
#define EVENTILATOR_DEADLINE_H

#include <time.h>
#include <lua.h>

#define EVL_DEADLINE_KEY "eventilator.deadline"

static inline double evl_monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * Clamp a wanted timeout (seconds) to the budget left. Returns the timeout
 * to use; 0 or less means the budget is already spent and the operation
 * should fail at once with "time budget exhausted".
 */
static inline double evl_clamp_timeout(lua_State *L, double want)
{
    double left;
    int t = lua_getfield(L, LUA_REGISTRYINDEX, EVL_DEADLINE_KEY);
    if (t != LUA_TNUMBER) {
        lua_pop(L, 1);
        return want;
    }
    left = lua_tonumber(L, -1) - evl_monotonic();
    lua_pop(L, 1);
    return left < want ? left : want;
}

#endif
