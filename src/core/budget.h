/*
 * budget.h: the time budget (budget.c). A count hook stops Lua code at its
 * deadline; the watchdog ends the process when something the hook cannot
 * reach is stuck past it.
 */
#ifndef EVENTILATOR_BUDGET_H
#define EVENTILATOR_BUDGET_H

#include <lua.h>

/* The count hook until `deadline` (CLOCK_MONOTONIC s), also told to the bindings (deadline.h). */
void evl_budget_set(lua_State *L, double deadline);
void evl_budget_clear(lua_State *L);
/*
 * The watchdog: `seconds` from now, `expired` runs (from a signal handler:
 * async-signal-safe calls only) and the process exits 1. Re-arming moves it.
 */
void evl_watchdog_arm(double seconds, void (*expired)(void));
void evl_watchdog_disarm(void);

#endif
