/*
 * call.c: one event, from its arguments to its exit code. This file holds
 * the order of the event path, and nothing below it knows that order:
 * parse (event.c), match (rules.c), hand over? (handover.c), the done set
 * (delivery.c), ev (levent.c), the handlers (host.c's evl_call, each
 * success kept by delivery.c), the summary (log.c), the record (record.c).
 * docs/design.md, "One call, start to end", says what each step does.
 *
 * Exit codes (contract section 2): 0 every matching handler succeeded, or
 * none matched; 1 a handler failed in a way a retry can fix, or a rule file
 * or a top-level setting failed; 2 the call can never succeed (its
 * arguments).
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <lua.h>

#include "budget.h"
#include "call.h"
#include "deadline.h"
#include "digits.h"
#include "delivery.h"
#include "entry.h"
#include "handover.h"
#include "levent.h"
#include "log.h"
#include "phases.h"
#include "record.h"
#include "rules.h"

static double armed; /* the deadline the watchdog is armed for; 0: none */

static void on_watchdog(void)
{
    evl_log_emergency(EVL_EMERGENCY_WATCHDOG);
}

/* Successes are on disk as they happen (delivery.c): one line, and exit 1 for Sentinel's retry. */
static void on_term(int sig)
{
    (void)sig;
    evl_log_emergency(EVL_EMERGENCY_TERM);
    _exit(1);
}

void evl_event_begin(struct evl_host *h, int argc, char **argv)
{
    memset(&h->call, 0, sizeof h->call);
    h->call.argc = argc;
    h->call.argv = argv;
    h->call.t0 = evl_monotonic();
    h->call.deadline = h->call.t0 + h->budget;
    evl_delivery_reset();
}

void evl_event_guard(struct evl_host *h, int term)
{
    if (term) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_term;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGTERM, &sa, NULL);
    }
    /* armed at the start for the default budget: a config that keeps it saves the 2 syscalls */
    if (h->call.deadline != armed)
        evl_watchdog_arm(h->call.deadline + 2.0 - evl_monotonic(), on_watchdog);
    armed = h->call.deadline;
}

/* The watchdog's and SIGTERM's lines are formatted now (a signal handler may not); log.c adds the context. */
void evl_event_arm(struct evl_host *h)
{
    char msg[300];
    const struct evl_call *c = &h->call;
    const char *what = h->mode == EVL_RECONFIG ? "client-reconfig" : c->argc > 1 ? c->argv[1] : "";
    char budget[40];
    budget[evl_put_fixed(budget, h->budget, 0)] = '\0';
    snprintf(msg, sizeof msg, "%.100s: time budget of %s s exceeded, stopped by the watchdog; "
             "exit 1", what, budget);
    evl_log_prepare_emergency_heads();
    evl_log_prepare_emergency(EVL_EMERGENCY_WATCHDOG, msg);
    snprintf(msg, sizeof msg, "%.100s: stopped by SIGTERM; handlers that succeeded are recorded; "
             "exit 1", what);
    evl_log_prepare_emergency(EVL_EMERGENCY_TERM, msg);
    evl_event_guard(h, 1);
}

void evl_event_end(struct evl_host *h)
{
    lua_State *L = h->L;
    evl_watchdog_disarm(); /* an idle runner is ended by its pipe, not by these */
    armed = 0;
    signal(SIGTERM, SIG_DFL);
    evl_delivery_reset(); /* a failed event's record is unlocked for its retry */
    evl_budget_clear(L);
    lua_settop(L, 0);
    lua_pushnil(L);
    lua_setfield(L, LUA_REGISTRYINDEX, EVL_RAN_KEY); /* the next record tells only its own handlers */
    /* the collector frees what the call left, so memory_limit counts from the same heap */
    lua_gc(L, LUA_GCRESTART);
    lua_gc(L, LUA_GCCOLLECT);
}

/* The entry at `entry` ran, or was skipped: all four outcome fields, so nothing of an earlier run stays. */
static void outcome(lua_State *L, int entry, const char *err, double ms, int skipped)
{
    lua_pushboolean(L, err == NULL);
    lua_setfield(L, entry, EVL_ENTRY_OK);
    lua_pushstring(L, err); /* NULL: nil */
    lua_setfield(L, entry, EVL_ENTRY_ERR);
    if (skipped)
        lua_pushnil(L);
    else
        lua_pushnumber(L, ms);
    lua_setfield(L, entry, EVL_ENTRY_MS);
    lua_pushboolean(L, skipped);
    lua_setfield(L, entry, EVL_ENTRY_SKIPPED);
}

/*
 * What a handler's evl_call came to: NULL when it succeeded, else why it
 * failed (pushed, or a literal). A handler fails when it raises, or returns
 * false, or nil with a reason.
 */
static const char *judge(struct evl_host *h, int rc, const char *id)
{
    lua_State *L = h->L;
    if (rc == EVL_CALL_FULL) {
        /* a rule reached for json/http after all: hand over, skipping what succeeded */
        evl_handover(h, id, evl_delivery_list());
        return "needs the full runtime, which could not start";
    }
    if (rc != LUA_OK)
        return evl_error_text(h, -1);
    if (lua_toboolean(L, -2) == 0 && (lua_type(L, -2) == LUA_TBOOLEAN || !lua_isnil(L, -1))) {
        const char *first = lua_type(L, -2) == LUA_TBOOLEAN ? "false" : "nil";
        const char *why = lua_isnil(L, -1) ? "no reason" : evl_error_text(h, -1);
        return lua_pushfstring(L, "returned %s, %s", first, why);
    }
    return NULL;
}

/*
 * Each handler gets an equal share of what is left of the budget, so one
 * stuck handler cannot starve the ones after it.
 */
int evl_event_handlers(struct evl_host *h, int matched, int ev, int *failed)
{
    lua_State *L = h->L;
    lua_Integer n = (lua_Integer)lua_rawlen(L, matched);
    int ran = 0;
    *failed = 0;
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, matched, i);
        int entry = lua_gettop(L);
        lua_getfield(L, entry, EVL_ENTRY_ID);
        const char *id = lua_tostring(L, -1) ? lua_tostring(L, -1) : "?";
        if (evl_delivery_done(id)) {
            outcome(L, entry, NULL, 0, 1);
            lua_settop(L, entry - 1);
            continue;
        }
        double now = evl_monotonic();
        double share = (h->call.deadline - now) / (double)(n - i + 1);
        lua_getfield(L, entry, EVL_ENTRY_FN);
        lua_pushvalue(L, ev);
        evl_log_emergency_context(id); /* the watchdog's line names the handler */
        int rc = evl_call(h, 1, 2, now + share);
        evl_log_emergency_context(NULL);
        double ms = (evl_monotonic() - now) * 1e3;
        ran++;
        const char *err = judge(h, rc, id);
        outcome(L, entry, err, ms, 0);
        if (!err) {
            evl_delivery_ok(id, i == n && *failed == 0 && !h->files_failed && !h->config_failed);
            if (h->on_ok)
                h->on_ok(h, id);
        } else {
            (*failed)++;
            evl_log(EVL_ERROR, "rule %s failed: %s", id, err);
        }
        lua_settop(L, entry - 1);
    }
    return ran;
}

/* One line per call at info (a warning when it failed): event, pod, handlers, outcome, time. */
static void summary(struct evl_host *h, const struct evl_event *ev, int ran, int failed, int code)
{
    char config_failed[40] = "", ms[40];
    const char *full = h->call.handover;
    if (h->config_failed)
        snprintf(config_failed, sizeof config_failed, " config_settings_failed=%d", h->config_failed);
    ms[evl_put_fixed(ms, (evl_monotonic() - h->call.t0) * 1e3, 2)] = '\0';
    evl_log(code ? EVL_WARN : EVL_INFO,
            "%s pod=%s handlers=%d failed=%d rule_files_failed=%d exit=%d ms=%s%s%s%s%s%s", ev->name,
            ev->pod ? ev->pod : "-", ran, failed, h->files_failed, code, ms, config_failed,
            h->call.retry ? " retry=yes" : "", full ? " runtime=full (" : "", full ? full : "",
            full ? ")" : "");
}

/* The event path (the file's head comment), unprotected. Returns the exit code. */
static int event_path(struct evl_host *h)
{
    lua_State *L = h->L;
    /* ~4 KiB: off the stack; page-aligned, so that its fields and the start of its
     * copy of the description (all a call touches) are one page, not two */
    static struct evl_event ev __attribute__((aligned(4096)));
    char err[512];
    int nargs = h->call.argc - 1, want = h->mode == EVL_RECONFIG ? 7 : 2;
    char **args = h->call.argv + 1;
    if (nargs != want) {
        evl_log(EVL_ERROR, "%s: wrong number of arguments: expected %d, got %d (%s)", h->name, want,
                nargs, h->mode == EVL_RECONFIG
                           ? "<master> <role> <state> <from-ip> <from-port> <to-ip> <to-port>"
                           : "<event-type> <event-description>");
        return 2;
    }
    int rc = h->mode == EVL_RECONFIG ? evl_parse_reconfig(&ev, args, err, sizeof err)
                                     : evl_parse_notification(&ev, args[0], args[1], err, sizeof err);
    if (rc < 0) {
        evl_log(EVL_ERROR, "%s", err);
        return 2;
    }
    evl_rules_match(h, ev.name);
    EVL_PHASE("rules");
    int matched = lua_gettop(L);
    if (evl_handover_needed(h, matched))
        evl_handover(h, "a matching rule uses json or http", h->call.inherited);
    lua_pushvalue(L, matched);
    lua_setfield(L, LUA_REGISTRYINDEX, EVL_RAN_KEY); /* what the handlers did, for the record */
    int failed = 0, ran = 0;
    /* a rule file or a top-level setting that failed: the call exits 1 so that Sentinel retries */
    int broken = h->files_failed || h->config_failed;
    int nmatch = lua_rawlen(L, matched) > 0;
    if (nmatch || broken)
        evl_delivery_begin(h);
    if (nmatch) {
        evl_push_event(L, &ev, nargs, args, &h->call.origin);
        ran = evl_event_handlers(h, matched, lua_gettop(L), &failed); /* budget.c restarts the GC if needed */
    }
    int code = failed || broken ? 1 : 0;
    if (nmatch || broken)
        evl_delivery_end(h, code);
    EVL_PHASE("handlers");
    summary(h, &ev, ran, failed, code);
    return code;
}

static int pevent(lua_State *L)
{
    lua_pushinteger(L, event_path(lua_touserdata(L, 1)));
    return 1;
}

int evl_event_run(struct evl_host *h)
{
    lua_State *L = h->L;
    int top = lua_gettop(L), code;
    lua_pushcfunction(L, evl_traceback);
    lua_pushcfunction(L, pevent);
    lua_pushlightuserdata(L, h);
    if (lua_pcall(L, 1, 1, top + 1) != LUA_OK) {
        evl_log(EVL_ERROR, "%s: internal error: %s", h->name,
                lua_tostring(L, -1) ? lua_tostring(L, -1) : "(no message)");
        code = 1;
    } else {
        code = (int)lua_tointeger(L, -1);
    }
    lua_settop(L, top);
    evl_record(h, code); /* `record` in the config: this call as one JSON line */
    EVL_PHASE("summary+record");
    return code;
}
