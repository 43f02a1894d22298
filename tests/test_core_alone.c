/*
 * test_core_alone: src/core links with nothing of a higher layer
 * (docs/design.md, "Layers"). The include paths keep a core file from
 * including a header of bindings/, watch/ or cli/; this keeps it from
 * calling into them by any other way: built from the core's objects alone,
 * it would not link. It then loads the built-in config and matches an
 * event, as a call does before its rules run.
 */
#include <stdio.h>
#include <stdlib.h>

#include <lauxlib.h>
#include <lua.h>

#include "call.h"
#include "config.h"
#include "host.h"
#include "log.h"

static int pmain(lua_State *L)
{
    struct evl_host *h = lua_touserdata(L, 1);
    evl_host_open(h, NULL);
    if (evl_config_load_as(h, h->name) < 0)
        return luaL_error(L, "the built-in config did not load");
    lua_pushboolean(L, evl_config_string(h, NULL, "rules_dir") != NULL);
    return 1;
}

int main(void)
{
    static struct evl_host h;
    setenv("EVENTILATOR_CONF", "/nonexistent/eventilator.conf", 1);
    evl_log_open("stderr", "error");
    h.name = "eventilator";
    h.budget = EVL_DEFAULT_BUDGET;
    evl_event_begin(&h, 0, NULL);
    if (!(h.L = evl_state_new(&h)))
        return 1;
    lua_pushcfunction(h.L, pmain);
    lua_pushlightuserdata(h.L, &h);
    int ok = lua_pcall(h.L, 1, 1, 0) == LUA_OK && lua_toboolean(h.L, -1);
    printf("%s\n", ok ? "ok: the core alone loads a config" : lua_tostring(h.L, -1));
    lua_close(h.L);
    return ok ? 0 : 1;
}
