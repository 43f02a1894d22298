/*
 * binding.h: what the bindings share, so one failure reads like another
 * (docs/design.md, "Error vocabulary of the bindings"). Header-only: each
 * binding is also a shared object of its own and needs no host symbol.
 */
#ifndef EVENTILATOR_BINDING_H
#define EVENTILATOR_BINDING_H

#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "deadline.h"
#include "lookup.h"

/*
 * A timeout (the value at idx, argument arg): a positive number of seconds,
 * no "5" string; else the rule's bug raises. A huge one is bounded anyway.
 */
static inline double evl_check_seconds(lua_State *L, int idx, int arg, const char *what)
{
    double t = lua_type(L, idx) == LUA_TNUMBER ? lua_tonumber(L, idx) : 0;
    if (!(t > 0)) /* also rejects NaN */
        luaL_argerror(L, arg, lua_pushfstring(L, "%s must be a positive number of seconds", what));
    return t;
}

/* An option a function takes: its name and Lua type; `seconds`: a timeout (evl_check_seconds). */
struct evl_option {
    const char *name;
    int type, seconds;
};

/*
 * The options table at idx (argument arg) against `opts` (NULL-ended): an
 * unknown option, a value of another type raise, in every binding's words.
 */
static inline void evl_check_options(lua_State *L, int idx, int arg, const struct evl_option *opts)
{
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        const struct evl_option *o = opts;
        if (lua_type(L, -2) != LUA_TSTRING)
            luaL_argerror(L, arg, "option names must be strings");
        while (o->name && strcmp(o->name, lua_tostring(L, -2)) != 0)
            o++;
        if (!o->name)
            luaL_argerror(L, arg, lua_pushfstring(L, "unknown option '%s'", lua_tostring(L, -2)));
        /* the message is made only for a raise: connect() is on a call's hot path */
        if (o->seconds && (lua_type(L, -1) != LUA_TNUMBER || !(lua_tonumber(L, -1) > 0)))
            luaL_argerror(L, arg, lua_pushfstring(L, "option '%s' must be a positive number of seconds",
                                                  o->name));
        if (lua_type(L, -1) != o->type)
            luaL_argerror(L, arg, lua_pushfstring(L, "option '%s' must be a %s (got %s)", o->name,
                                                  lua_typename(L, o->type), luaL_typename(L, -1)));
        lua_pop(L, 1);
    }
}

/*
 * The deadline of an operation that may take `want` s, clamped to the
 * budget left: 0 when it is spent. *clamped: the budget, not `want`, sets it.
 */
static inline double evl_op_deadline(lua_State *L, double want, int *clamped)
{
    double t = evl_clamp_timeout(L, want);
    *clamped = t < want;
    return t > 0 ? evl_monotonic() + t : 0;
}

/* "time budget exhausted" (clamped) or "timed out after N s", then " (step)" when given; into buf. */
static inline const char *evl_timeout_reason(char *buf, size_t cap, int clamped, double secs,
                                             const char *step)
{
    if (clamped)
        snprintf(buf, cap, "time budget exhausted%s%s%s", step ? " (" : "", step ? step : "",
                 step ? ")" : "");
    else
        snprintf(buf, cap, "timed out after %g s%s%s%s", secs, step ? " (" : "", step ? step : "",
                 step ? ")" : "");
    return buf;
}

/* msg, a sentence of the OS lowered ("Connection refused" -> "connection refused"); "ERR x" stays. */
static inline void evl_add_reason(luaL_Buffer *b, const char *msg)
{
    if (msg[0] >= 'A' && msg[0] <= 'Z' && msg[1] >= 'a' && msg[1] <= 'z') {
        luaL_addchar(b, (char)(msg[0] - 'A' + 'a'));
        msg++;
    }
    luaL_addstring(b, msg);
}

/* A failed name lookup (an EAI_* code; EAI_SYSTEM: errno) as "name lookup: <reason>", into buf. */
static inline const char *evl_lookup_failure(char *buf, size_t cap, int rc)
{
    const char *why = rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc);
    int lower = why[0] >= 'A' && why[0] <= 'Z' && why[1] >= 'a' && why[1] <= 'z';
    snprintf(buf, cap, "name lookup: %c%s", lower ? why[0] - 'A' + 'a' : why[0], why + 1);
    return buf;
}

/* host (and serv) resolved before deadline (lookup.h): 0 with *res, or -1 with why (as above). */
static inline int evl_resolve(const char *host, const char *serv, const struct addrinfo *hints,
                              double deadline, int clamped, double secs, struct addrinfo **res,
                              char *why, size_t cap)
{
    int rc = evl_lookup(host, serv, hints, deadline, res);
    if (rc == EVL_LOOKUP_TIMEOUT)
        evl_timeout_reason(why, cap, clamped, secs, "name lookup");
    else if (rc != 0)
        evl_lookup_failure(why, cap, rc);
    return rc == 0 ? 0 : -1;
}

/*
 * fd ready for `events` (POLLERR, POLLHUP too: what follows tells) by the
 * deadline: 1; 0 when it passed; -1 with errno. The whole wait is bounded.
 */
static inline int evl_wait_fd(int fd, short events, double deadline)
{
    struct pollfd p;
    p.fd = fd;
    p.events = events;
    for (;;) {
        double left = deadline - evl_monotonic(), ms = left * 1000.0 + 1; /* never just before */
        if (left <= 0)
            return 0;
        p.revents = 0;
        int r = poll(&p, 1, ms >= INT_MAX ? INT_MAX : (int)ms);
        if (r > 0)
            return 1;
        if (r < 0 && errno != EINTR)
            return -1;
    }
}

#endif
