/*
 * budget.c: the whole call must end well before Sentinel's 60 s SIGKILL.
 * Two layers, as in Redis's own script timeout: a count hook stops a
 * runaway handler (`while true do end`) at its deadline, and the bindings
 * clamp their blocking timeouts to the same deadline (deadline.h). Behind
 * both, a watchdog timer ends the process with a log line if something is
 * stuck where neither can reach (a DNS lookup, a handler that catches the
 * hook's error in a loop, a rule file whose top level blocks). The watchdog
 * is armed at the start of main, so it covers the whole call; what it does
 * before the exit is the caller's (a callback), so this file knows nothing of
 * logs or records.
 */
#include <signal.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "budget.h"
#include "deadline.h"

#define HOOK_EVERY 1000 /* instructions between clock reads (~20 ns each) */

static double current_deadline;

/*
 * An event call runs with the collector stopped: it lives a millisecond, and
 * a first collection cycle over the freshly built state costs more than the
 * memory it would free. A handler that allocates in earnest (past
 * GC_FROM_KB) gets the collector back, checked here every HOOK_EVERY
 * instructions.
 */
#define GC_FROM_KB 4096

static void hook(lua_State *L, lua_Debug *ar)
{
    if (!lua_gc(L, LUA_GCISRUNNING) && lua_gc(L, LUA_GCCOUNT) > GC_FROM_KB)
        lua_gc(L, LUA_GCRESTART);
    if (evl_monotonic() <= current_deadline)
        return;
    /* level 0 is the interrupted Lua function: name it, as an error would */
    if (lua_getinfo(L, "Sl", ar) && ar->currentline > 0)
        lua_pushfstring(L, "%s:%d: stopped: time budget exceeded", ar->short_src, ar->currentline);
    else
        lua_pushliteral(L, "stopped: time budget exceeded");
    lua_error(L);
}

void evl_budget_set(lua_State *L, double deadline)
{
    current_deadline = deadline;
    lua_pushnumber(L, deadline);
    lua_setfield(L, LUA_REGISTRYINDEX, EVL_DEADLINE_KEY);
    lua_sethook(L, hook, LUA_MASKCOUNT, HOOK_EVERY);
}

void evl_budget_clear(lua_State *L)
{
    lua_sethook(L, NULL, 0, 0);
    lua_pushnil(L);
    lua_setfield(L, LUA_REGISTRYINDEX, EVL_DEADLINE_KEY);
}

static void (*on_expiry)(void);

static void on_alarm(int sig)
{
    (void)sig;
    if (on_expiry)
        on_expiry();
    _exit(1); /* 1: Sentinel retries, as it would after its own SIGKILL */
}

void evl_watchdog_arm(double seconds, void (*expired)(void))
{
    struct sigaction sa;
    struct itimerval it;
    if (seconds < 0.001)
        seconds = 0.001;
    on_expiry = expired;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL); /* Sentinel starts us with SIGALRM ignored */
    memset(&it, 0, sizeof it);
    it.it_value.tv_sec = (time_t)seconds;
    it.it_value.tv_usec = (suseconds_t)((seconds - (double)(time_t)seconds) * 1e6);
    setitimer(ITIMER_REAL, &it, NULL);
}

void evl_watchdog_disarm(void)
{
    struct itimerval it;
    memset(&it, 0, sizeof it);
    setitimer(ITIMER_REAL, &it, NULL);
}
