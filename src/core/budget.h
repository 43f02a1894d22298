/* budget.h: the time budget (budget.c): a count hook for Lua, a watchdog for the rest. */
#ifndef EVENTILATOR_BUDGET_H
#define EVENTILATOR_BUDGET_H

#include <lua.h>

/* The count hook until `deadline` (CLOCK_MONOTONIC s), which the bindings read too (deadline.h). */
void evl_budget_set(lua_State *L, double deadline);
void evl_budget_clear(lua_State *L);
/* `seconds` from now, `expired` runs (async-signal-safe calls only) and the process exits 1. */
void evl_watchdog_arm(double seconds, void (*expired)(void));
void evl_watchdog_disarm(void);

#endif
