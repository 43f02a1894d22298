/*
 * lhost.c: the host as a Lua C module, eventilator/host.so, so a stock
 * lua5.4 (busted, through eventilator.testing) loads a config and a rules
 * folder into the very engine a call uses: same config schema, same rule
 * environments, same matching, same handler runs with their budget.
 *
 *   local host = require("eventilator.host")
 *   local h = host.new{ config = path, rules = dir, log = path }
 *   -- h: the table src/cli/cli.c gives eventilator.cli (load_config,
 *   -- load_rules, parse, match, run, begin_call, ...)
 *
 * host.pattern is require("eventilator.pattern") (on()'s matcher), for
 * shipped modules loaded in a stock lua5.4 without a host.
 *
 * host.new sets EVENTILATOR_CONF, EVENTILATOR_RULES and EVENTILATOR_LOG for
 * the process (what a real call reads); config = nil means built-in defaults.
 * The host sets up its state as a call does, but a stock state already has
 * its libraries open: the metatables a call installs on _G and on strings
 * (lazy libraries) are put back as they were.
 */
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "call.h"
#include "cli.h"
#include "host.h"
#include "levent.h"
#include "log.h"

#define HOST_EXPORT __attribute__((visibility("default")))

static void set_env(lua_State *L, int opts, const char *key, const char *var, const char *dflt)
{
    lua_getfield(L, opts, key);
    const char *v = luaL_optstring(L, -1, dflt);
    if (v)
        setenv(var, v, 1);
    else
        unsetenv(var);
    lua_pop(L, 1);
}

/* host.new{ config, rules, log, budget } -> host table */
static int l_new(lua_State *L)
{
    if (lua_isnoneornil(L, 1))
        lua_newtable(L);
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    set_env(L, 1, "config", "EVENTILATOR_CONF", "/nonexistent/eventilator.conf");
    set_env(L, 1, "rules", "EVENTILATOR_RULES", NULL);
    set_env(L, 1, "log", "EVENTILATOR_LOG", "stderr");
    struct evl_host *h = lua_newuserdatauv(L, sizeof *h, 0);
    int ud = lua_gettop(L);
    memset(h, 0, sizeof *h);
    h->L = L;
    h->name = "eventilator";
    h->mode = EVL_NOTIFY;
    h->budget = EVL_DEFAULT_BUDGET;
    evl_event_begin(h, 0, NULL);
    /* keep the stock state's metatables of _G and strings */
    lua_pushglobaltable(L);
    if (!lua_getmetatable(L, -1))
        lua_pushnil(L);
    lua_pushliteral(L, "");
    if (!lua_getmetatable(L, -1))
        lua_pushnil(L);
    int top = lua_gettop(L);
    evl_host_open(h, NULL);
    lua_settop(L, top);
    lua_setmetatable(L, top - 1); /* string */
    lua_pop(L, 1);
    lua_setmetatable(L, top - 3); /* _G */
    lua_settop(L, ud);
    evl_push_cli_host(L, h);
    lua_pushvalue(L, ud);
    lua_setfield(L, -2, "state"); /* the host lives as long as its table */
    return 1;
}

/* host.log_to_stderr(on): copy log lines to stderr (the CLI does; specs need not). */
static int l_log_to_stderr(lua_State *L)
{
    evl_log_also_stderr(lua_toboolean(L, 1));
    return 0;
}

HOST_EXPORT int luaopen_eventilator_host(lua_State *L);

int luaopen_eventilator_host(lua_State *L)
{
    static const luaL_Reg fns[] = {{"new", l_new}, {"log_to_stderr", l_log_to_stderr}, {NULL, NULL}};
    luaL_newlib(L, fns);
    evl_open_pattern(L); /* host.pattern: the matcher, for modules loaded without a host */
    lua_setfield(L, -2, "pattern");
    return 1;
}
