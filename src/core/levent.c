/*
 * levent.c: a parsed event -> the Lua table `ev` of contract section 6.
 * Absent fields stay nil. ev.host (this machine's FQDN) costs a resolver
 * call, so it is computed on first access only, and that call is bounded
 * (lookup.h): a dead DNS server costs at most EVL_HOST_LOOKUP seconds once
 * per call, and then ev.host is the short host name. The watch-mode fields
 * (source, sentinel, sentinels, synthetic) are the caller's (struct evl_origin).
 */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "deadline.h"
#include "levent.h"
#include "lookup.h"

/* Seconds ev.host may wait for the resolver (also clamped to the budget). */
#define EVL_HOST_LOOKUP 1.0

static void set_str(lua_State *L, const char *k, const char *v)
{
    if (v) {
        lua_pushstring(L, v);
        lua_setfield(L, -2, k);
    }
}

static void set_int(lua_State *L, const char *k, long long v)
{
    lua_pushinteger(L, (lua_Integer)v);
    lua_setfield(L, -2, k);
}

static void set_addr(lua_State *L, const char *k, const char *name, const struct evl_addr *a)
{
    if (!a->ip)
        return;
    lua_createtable(L, 0, 3);
    set_str(L, "name", name);
    set_str(L, "ip", a->ip);
    set_int(L, "port", a->port);
    lua_setfield(L, -2, k);
}

/* FQDN: the canonical name of gethostname(), or the short name. */
static int ev_index(lua_State *L)
{
    char host[256];
    if (strcmp(luaL_checkstring(L, 2), "host") != 0)
        return 0;
    if (gethostname(host, sizeof host - 1) != 0)
        strcpy(host, "localhost");
    host[sizeof host - 1] = '\0';
    struct addrinfo hints, *res = NULL;
    double wait = evl_clamp_timeout(L, EVL_HOST_LOOKUP);
    memset(&hints, 0, sizeof hints);
    hints.ai_flags = AI_CANONNAME;
    hints.ai_socktype = SOCK_DGRAM;
    if (strchr(host, '.') == NULL && wait > 0 &&
        evl_lookup(host, NULL, &hints, evl_monotonic() + wait, &res) == 0 && res &&
        res->ai_canonname)
        lua_pushstring(L, res->ai_canonname);
    else
        lua_pushstring(L, host);
    if (res)
        freeaddrinfo(res);
    lua_pushvalue(L, -1);
    lua_setfield(L, 1, "host"); /* cache: rawset through the table itself */
    return 1;
}

/*
 * getmetatable(ev).identity(ev, reporter) -> string: what names this event on
 * every Sentinel that reports it (evl_event_identity), for dedupe.key.
 * reporter: who reported it, a string or a function returning one, asked for
 * only by an event about the reporting Sentinel itself. It parses ev.name and
 * ev.text (ev.args for client-reconfig) again, so only a rule that asks pays
 * for it, and every event table the host made carries it. Raises when they
 * do not parse: not an event Sentinel could have sent.
 */
static int ev_identity(lua_State *L)
{
    char err[512], *args[7];
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 2);
    /* ~4 KiB, owned by the stack: a reporter function may run before we are done */
    struct evl_event *ev = lua_newuserdatauv(L, sizeof *ev, 0);
    lua_getfield(L, 1, "name");
    lua_getfield(L, 1, "text");
    const char *name = lua_tostring(L, 4), *text = lua_tostring(L, 5);
    int rc;
    luaL_argcheck(L, name != NULL, 1, "event without a name");
    if (text) {
        rc = evl_parse_notification(ev, name, text, err, sizeof err);
    } else {
        luaL_argcheck(L, strcmp(name, "client-reconfig") == 0, 1, "event without a text");
        lua_getfield(L, 1, "args");
        luaL_argcheck(L, lua_istable(L, 6) && lua_rawlen(L, 6) == 7, 1,
                      "client-reconfig without its 7 args");
        for (int i = 0; i < 7; i++) {
            lua_rawgeti(L, 6, i + 1);
            args[i] = (char *)luaL_checkstring(L, -1); /* anchored in the args table */
            lua_pop(L, 1);
        }
        rc = evl_parse_reconfig(ev, args, err, sizeof err);
    }
    if (rc < 0)
        return luaL_error(L, "not an event: %s", err);
    const char *reporter = NULL;
    if (evl_event_own(ev)) {
        if (lua_isfunction(L, 2)) {
            /* its error is the caller's, as a comparator's is table.sort's: we own nothing */
            lua_pushvalue(L, 2);
            lua_call(L, 0, 1);
            lua_replace(L, 2);
        }
        reporter = lua_tostring(L, 2);
        if (!reporter)
            return luaL_error(L, "%s is about the Sentinel that reports it: a reporter is needed",
                              name);
    }
    luaL_Buffer b;
    size_t n = evl_event_identity(ev, reporter, NULL, 0);
    char *out = luaL_buffinitsize(L, &b, n + 1);
    evl_event_identity(ev, reporter, out, n + 1);
    luaL_pushresultsize(&b, n);
    return 1;
}

/* Watch mode's fields (contract section 10), or source = "script". */
static void push_origin(lua_State *L, const struct evl_origin *o)
{
    const char *src = o ? o->source : NULL;
    int watch = src && (strcmp(src, "watch") == 0 || strcmp(src, "cluster") == 0);
    set_str(L, "source", watch ? src : "script");
    if (!watch)
        return;
    set_str(L, "sentinel", o->sentinel && *o->sentinel ? o->sentinel : NULL);
    lua_newtable(L);
    int n = 0;
    for (const char *p = o->sentinels; p && *p;) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        lua_pushlstring(L, p, l);
        lua_rawseti(L, -2, ++n);
        p = e ? e + 1 : NULL;
    }
    lua_setfield(L, -2, "sentinels");
    if (o->synthetic) {
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "synthetic");
    }
}

void evl_push_event(lua_State *L, const struct evl_event *ev, int nargs, char **args,
                    const struct evl_origin *o)
{
    struct timespec ts;
    lua_createtable(L, 0, 16);
    set_str(L, "name", ev->name);
    set_str(L, "mode", ev->mode == EVL_RECONFIG ? "reconfigurator" : "eventilator");
    set_str(L, "text", ev->text);
    lua_createtable(L, nargs, 0);
    for (int i = 0; i < nargs; i++) {
        lua_pushstring(L, args[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "args");
    lua_pushboolean(L, ev->known);
    lua_setfield(L, -2, "known");
    set_str(L, "pod", ev->pod);
    if (ev->instance.type) {
        lua_createtable(L, 0, 4);
        set_str(L, "type", ev->instance.type);
        set_str(L, "name", ev->instance.name);
        set_str(L, "ip", ev->instance.addr.ip);
        set_int(L, "port", ev->instance.addr.port);
        lua_setfield(L, -2, "instance");
    }
    set_addr(L, "master", ev->master.name, &ev->master.addr);
    if (ev->has_quorum) {
        set_int(L, "quorum", ev->quorum);
        if (ev->votes >= 0)
            set_int(L, "votes", ev->votes);
    }
    if (ev->has_epoch)
        set_int(L, "epoch", (long long)ev->epoch);
    set_str(L, "leader", ev->leader);
    set_addr(L, "old_master", NULL, &ev->old_master);
    set_addr(L, "new_master", NULL, &ev->new_master);
    set_str(L, "role", ev->role);
    set_str(L, "state", ev->state);
    set_str(L, "option", ev->option);
    set_str(L, "value", ev->value);
    if (ev->option) {
        lua_createtable(L, ev->nvalues, 0);
        for (int i = 0; i < ev->nvalues; i++) {
            lua_pushstring(L, ev->values[i]);
            lua_rawseti(L, -2, i + 1);
        }
        lua_setfield(L, -2, "values");
    }
    set_str(L, "reported_role", ev->reported_role);
    set_str(L, "runid", ev->runid);
    set_addr(L, "new_address", NULL, &ev->new_address);
    if (ev->count >= 0)
        set_int(L, "count", ev->count);
    set_str(L, "error", ev->error);
    set_str(L, "script", ev->script);
    if (ev->pid >= 0)
        set_int(L, "pid", ev->pid);
    if (ev->signal >= 0)
        set_int(L, "signal", ev->signal);
    if (ev->exit_code >= 0)
        set_int(L, "exit_code", ev->exit_code);
    push_origin(L, o);
    clock_gettime(CLOCK_REALTIME, &ts);
    lua_pushnumber(L, (double)ts.tv_sec + (double)ts.tv_nsec / 1e9);
    lua_setfield(L, -2, "time");
    lua_createtable(L, 0, 2);
    lua_pushcfunction(L, ev_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, ev_identity);
    lua_setfield(L, -2, "identity");
    lua_setmetatable(L, -2);
}

/*
 * require("eventilator.pattern"): on()'s matcher for Lua, so an event
 * pattern stored elsewhere (a silence's --event) means what it means in a
 * rule, with no second glob to drift from evl_glob.
 *
 *   pattern.match(pattern, name) -> boolean
 *   pattern.known(pattern) -> true | false, closest name (or nil): can it
 *     match any Sentinel event (the check `eventilator check` makes)?
 */
static int l_pattern_match(lua_State *L)
{
    lua_pushboolean(L, evl_glob(luaL_checkstring(L, 1), luaL_checkstring(L, 2)));
    return 1;
}

static int l_pattern_known(lua_State *L)
{
    const char *near = NULL;
    if (evl_pattern_known(luaL_checkstring(L, 1), &near)) {
        lua_pushboolean(L, 1);
        return 1;
    }
    lua_pushboolean(L, 0);
    if (near)
        lua_pushstring(L, near);
    else
        lua_pushnil(L);
    return 2;
}

int evl_open_pattern(lua_State *L)
{
    static const luaL_Reg fns[] = {{"match", l_pattern_match}, {"known", l_pattern_known}, {NULL, NULL}};
    luaL_newlib(L, fns);
    return 1;
}
