/*
 * main.c: the entry point, and nothing else. The name it was called by
 * picks the mode (reconfigurator / registrator: client-reconfig-script;
 * anything else: notification-script), because Sentinel passes no options.
 * Everything after the Lua state exists runs inside one lua_pcall (as
 * lua.c's pmain), so an error anywhere becomes a log line and an exit code,
 * never a crash. An event goes to call.c, a subcommand to cli.c.
 *
 * Exit codes (contract section 2): 0 all handlers succeeded or none matched;
 * 1 a handler failed in a way a retry can fix, or the config cannot be used
 * yet; 2 the call can never succeed (its arguments).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "call.h"
#include "cli.h"
#include "config.h"
#include "handover.h"
#include "host.h"
#include "log.h"
#include "paths.h"
#include "phases.h"

static const char usage[] =
    "usage: eventilator <event-type> <event-description>      (Sentinel notification-script)\n"
    "       reconfigurator <master> <role> <state> <from-ip> <from-port> <to-ip> <to-port>\n"
    "                                                         (Sentinel client-reconfig-script)\n"
    "       eventilator check\n"
    "       eventilator config [--secrets] [--reconfig]      (the merged config, as JSON)\n"
    "       eventilator test [--run] <event-type> <event-description>\n"
    "       eventilator test [--run] --reconfig <master> <role> <state> <from-ip> <from-port> <to-ip> <to-port>\n"
    "                    (ev and the handlers that match; --run runs them for real: they write to\n"
    "                    the store and post to the receivers, their log lines on the terminal)\n"
    "       eventilator test --replay FILE [--run] [--json] [--sentinel ID]\n"
    "       eventilator test --spec FILE|DIR                 (rule specs, with busted)\n"
    "       eventilator history [--file [HOST=]FILE]... [--pod NAME] [--since 2h] [--failed] [--json] [--html FILE]\n"
    "       eventilator watch [--no-work]                    (Sentinel Pub/Sub: every event, once)\n"
    "       eventilator work                                 (cluster mode: run the stream's entries)\n"
    "       eventilator cluster status [--json]              (watchers, workers, lag, pending, dead)\n"
    "       eventilator sentinels status|register|unregister|doctor [options]\n"
    "       eventilator silence add|list|expire [options]    (quiet the receivers for a pod)\n"
    "       eventilator help | --help | --version\n"
    "config: " EVL_CONFDIR "/<name>.conf over " EVL_CONFDIR "/eventilator.conf, or $EVENTILATOR_CONF;\n"
    "rules: " EVL_RULES_DIR "/*.lua or $EVENTILATOR_RULES\n";

/* An error outside any lua_pcall is a bug: say so in the log before abort(). */
static int panic(lua_State *L)
{
    const char *msg = lua_tostring(L, -1);
    evl_log(EVL_ERROR, "internal error outside a protected call: %s", msg ? msg : "?");
    return 0; /* abort() follows */
}

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

#ifdef EVL_LEAN
/* The bindings the start-up binary links in, opened on a rule's first touch (docs/design.md). */
int luaopen_eventilator_redis(lua_State *L);
int luaopen_eventilator_tcp(lua_State *L);
static const luaL_Reg linked[] = {
    {"eventilator.redis", luaopen_eventilator_redis},
    {"eventilator.tcp", luaopen_eventilator_tcp},
    {NULL, NULL},
};
#else
static const luaL_Reg *const linked = NULL; /* the full runtime finds them as C modules */
#endif

/* The event path of script mode: config, then the event (call.c). Returns the exit code. */
static int run_event(struct evl_host *h)
{
    h->config_partial_ok = 1; /* a wrong setting fails only the handlers that read it */
    if (evl_config_load_as(h, h->name) < 0)
        return 1; /* unusable until the operator fixes it: Sentinel retries meanwhile */
    EVL_PHASE("config");
    evl_config_open_log(h);
    evl_event_arm(h); /* the config's budget */
    evl_open_host_module(h->L, h);
    EVL_PHASE("log+arm");
    return evl_event_run(h);
}

static int pmain(lua_State *L)
{
    struct evl_host *h = lua_touserdata(L, 1);
    int code;
    /* a call is short: no collection unless a handler allocates a lot (budget.c) */
    lua_gc(L, LUA_GCSTOP);
    evl_host_open(h, linked);
    evl_handover_open(L, h); /* the start-up binary: stand-ins for json, http, crypto */
    EVL_PHASE("libs");
    if (h->mode == EVL_NOTIFY && h->call.argc >= 2 && h->call.argv[1][0] != '+' &&
        h->call.argv[1][0] != '-') {
#ifdef EVL_LEAN
        evl_handover(h, "subcommand", NULL);
        code = 2;
#else
        code = evl_cli_main(h);
#endif
    } else {
        code = run_event(h);
    }
    lua_pushinteger(L, code);
    return 1;
}

int main(int argc, char **argv)
{
    EVL_PHASES_START(); /* bench/run.sh's phase table (phases.h); nothing in other builds */
    static struct evl_host h; /* static: what it points to (handover's strdup'd env) stays reachable */
    h.budget = EVL_DEFAULT_BUDGET;
    evl_event_begin(&h, argc, argv);
    h.name = base_name(argv[0] ? argv[0] : "eventilator");
    h.mode = strcmp(h.name, "reconfigurator") == 0 || strcmp(h.name, "registrator") == 0
                 ? EVL_RECONFIG : EVL_NOTIFY;
    h.strict_modes = 1;
    evl_handover_take_env(&h); /* may move t0 back to the first start's */
    int event_call = h.mode == EVL_RECONFIG || (argc >= 2 && (argv[1][0] == '+' || argv[1][0] == '-'));
    /* from here to the exit, nothing outlives the budget (re-armed with the config's) */
    evl_event_guard(&h, 0);
    signal(SIGPIPE, SIG_IGN); /* a peer that hangs up gives EPIPE, not death */

    /*
     * Sentinel never calls with one argument, so a lone flag is a person
     * asking, by any of the names (`reconfigurator --help` too).
     */
    if (argc == 2 || (h.mode == EVL_NOTIFY && argc >= 2)) {
        if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
            (h.mode == EVL_NOTIFY && strcmp(argv[1], "help") == 0)) {
            fputs(usage, stdout);
            return 0;
        }
        if (strcmp(argv[1], "-V") == 0 || strcmp(argv[1], "--version") == 0) {
            printf("eventilator %s (%s, %s)\n", EVENTILATOR_VERSION, LUA_RELEASE,
#ifdef EVL_LEAN
                   "start-up binary"
#else
                   "full runtime"
#endif
            );
            return 0;
        }
    }
    const char *env = getenv("EVENTILATOR_LOG");
    evl_log_open(env && *env ? env : "syslog", "info");
    evl_log_also_stderr(1); /* until the config says where the log goes */
    if (h.mode == EVL_NOTIFY && argc < 2) {
        fputs(usage, stderr);
        evl_log(EVL_ERROR, "%s: no arguments: expected <event-type> <event-description>", h.name);
        return 2;
    }
    if (event_call)
        evl_event_guard(&h, 1); /* SIGTERM: one log line, exit 1 */
    lua_State *L = h.L = evl_state_new(&h);
    EVL_PHASE("state");
    if (!L) {
        evl_log(EVL_ERROR, "cannot create the Lua state: out of memory");
        return 1;
    }
    lua_atpanic(L, panic);
    lua_pushcfunction(L, evl_traceback);
    lua_pushcfunction(L, pmain);
    lua_pushlightuserdata(L, &h);
    int code;
    if (lua_pcall(L, 1, 1, 1) != LUA_OK) {
        evl_log(EVL_ERROR, "%s: internal error: %s", h.name,
                lua_tostring(L, -1) ? lua_tostring(L, -1) : "(no message)");
        code = 1;
    } else {
        code = (int)lua_tointeger(L, -1);
    }
    /*
     * An event call is about to exit: the kernel frees memory and closes
     * sockets faster than lua_close walks every object (~5% of a call).
     * stdio buffers (io.write from rules) are flushed by exit(). The state
     * stays reachable from a static, so leak checkers do not count it.
     */
    static lua_State *kept;
    if (event_call)
        kept = L;
    else
        lua_close(L);
    (void)kept;
    EVL_PHASES_WRITE();
    return code;
}
