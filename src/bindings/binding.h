/*
 * binding.h: what the bindings share (redis, tcp, http, sentinel), so that
 * one failure reads like another (docs/design.md, "Error vocabulary of the
 * bindings"): the words for running out of time, a timeout option's check,
 * the time budget's clamp, the bounded wait for a socket, the name lookup's
 * failure, and the lower-cased first letter of an OS message.
 *
 * Header-only, like deadline.h and lookup.h: each binding is also its own
 * shared object for a stock lua5.4 and must not need a symbol from the host.
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
 * A timeout option (the value at idx): a positive number of seconds, else
 * misuse: `bad argument #arg to 'f' (<what> must be a positive number of
 * seconds)`. Strict about the type (no "5" strings): a timeout in the
 * wrong unit or type is a bug in the rule. A huge one is bounded anyway,
 * by the budget and by evl_wait_fd.
 */
static inline double evl_check_seconds(lua_State *L, int idx, int arg, const char *what)
{
    double t = lua_type(L, idx) == LUA_TNUMBER ? lua_tonumber(L, idx) : 0;
    if (!(t > 0)) /* also rejects NaN */
        luaL_argerror(L, arg, lua_pushfstring(L, "%s must be a positive number of seconds", what));
    return t;
}

/*
 * The deadline of an operation that may take `want` seconds, clamped to
 * what is left of the handler's budget: 0 when it is spent. *clamped says
 * that the budget, not `want`, sets the deadline, so a timeout is told
 * apart from a handler out of time (evl_timeout_reason).
 */
static inline double evl_op_deadline(lua_State *L, double want, int *clamped)
{
    double t = evl_clamp_timeout(L, want);
    *clamped = t < want;
    return t > 0 ? evl_monotonic() + t : 0;
}

/*
 * Why an operation stopped in time, into buf: "time budget exhausted" when
 * the budget ran out first, else "timed out after N s", N the timeout that
 * applied; "(step)" after either when step is given ("name lookup").
 */
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

/*
 * A reason as every binding writes it: the first letter of a sentence of
 * the OS or a library lowered ("Connection refused" -> "connection
 * refused"); a server's own text ("ERR ...", "WRONGPASS ...") stays as sent.
 */
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

/*
 * Resolve host (serv: a port, or NULL) before `deadline`, bounded
 * (lookup.h): 0 with *res to free with freeaddrinfo, or -1 with why ran out
 * of time or failed in `why` (clamped, secs: as evl_timeout_reason).
 */
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
 * Wait until fd is ready for `events` or `deadline` passes: 1 ready
 * (POLLERR and POLLHUP count: the call that follows says what happened), 0
 * the deadline passed, -1 an error (errno). The whole wait is bounded, not
 * each poll: poll may wake early, and the clock is read again.
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
