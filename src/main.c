/*
 * main.c: entry point. The name it was called by picks the mode
 * (reconfigurator / registrator: client-reconfig-script; anything else:
 * notification-script), because Sentinel passes no options. Everything
 * after the Lua state exists runs inside one lua_pcall (as lua.c's pmain),
 * so an error anywhere becomes a log line and an exit code, never a crash.
 *
 * Exit codes (contract section 2): 0 all handlers succeeded or none matched;
 * 1 a handler failed in a way a retry can fix, or the config cannot be used
 * yet; 2 the call can never succeed (its arguments).
 */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "deadline.h"
#include "host.h"
#include "log.h"
#include "paths.h"
#include "record.h"
#include "retry.h"

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

/*
 * The lines the watchdog and SIGTERM write (log.c), prepared whenever the
 * log target or the budget changes. The context (the rule file loading, the
 * handler running) is added as the call goes.
 */
static void prepare_emergency(const struct evl_host *h)
{
    char msg[300];
    const char *what = h->mode == EVL_RECONFIG ? "client-reconfig" : h->argc > 1 ? h->argv[1] : "";
    snprintf(msg, sizeof msg, "%.100s: time budget of %.0f s exceeded, stopped by the watchdog; "
             "exit 1", what, h->budget);
    evl_log_prepare_emergency(EVL_EMERGENCY_WATCHDOG, msg);
    snprintf(msg, sizeof msg, "%.100s: stopped by SIGTERM; handlers that succeeded are recorded; "
             "exit 1", what);
    evl_log_prepare_emergency(EVL_EMERGENCY_TERM, msg);
}

static void on_watchdog(void)
{
    evl_log_emergency(EVL_EMERGENCY_WATCHDOG);
}

/* Successes are on disk as they happen (retry.c): one line, and exit 1 for Sentinel's retry. */
static void on_term(int sig)
{
    (void)sig;
    evl_log_emergency(EVL_EMERGENCY_TERM);
    _exit(1);
}

/*
 * What every event call arms once its config is loaded: the emergency lines,
 * SIGTERM, and the watchdog at the config's budget from h->t0. Script mode
 * calls it from run_event; a run forked from the watcher (watch.c) calls it
 * with t0 set to the run's own start.
 */
void evl_event_arm(struct evl_host *h)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    prepare_emergency(h);
    /* main() armed it for the default budget: a config that keeps it saves the 2 syscalls */
    if (h->deadline != h->armed)
        evl_watchdog_arm(h->deadline + 2.0 - evl_monotonic(), on_watchdog);
    h->armed = h->deadline;
}

/*
 * The per-event part of the event path, with the config loaded and armed:
 * arguments, parse, rule files (unless rules_loaded: the watcher's runs are
 * forked from a state that loaded them once), match, the handover check,
 * the handlers under the delivery record, the summary line. Returns the
 * exit code. The one event path of script mode and watch mode.
 */
int evl_event_run(struct evl_host *h, int rules_loaded)
{
    lua_State *L = h->L;
    char err[512];
    static struct evl_event ev; /* ~4 KiB: keep it off the stack */
    int nargs = h->argc - 1;
    char **args = h->argv + 1;

    int want = h->mode == EVL_RECONFIG ? 7 : 2;
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
    if (!rules_loaded)
        evl_rules_load(h);
    evl_rules_match(h, ev.name);
    int matched = lua_gettop(L);
    if (evl_handover_needed(h, matched))
        evl_handover(h, "a matching rule uses json or http", h->done);

    int failed = 0, ran = 0;
    /* a rule file or a top-level setting that failed: the call exits 1 so that Sentinel retries */
    int broken = h->files_failed || h->config_failed;
    lua_Integer nmatch = (lua_Integer)lua_rawlen(L, matched);
    if (h->ran_ref > 0)
        luaL_unref(L, LUA_REGISTRYINDEX, h->ran_ref); /* a watch runner's previous event */
    lua_pushvalue(L, matched);
    h->ran_ref = luaL_ref(L, LUA_REGISTRYINDEX); /* what the handlers did, for the record */
    if (nmatch > 0 || broken)
        evl_retry_begin(h);
    if (nmatch > 0) {
        evl_push_event(L, &ev, nargs, args);
        evl_rules_run(h, matched, lua_gettop(L), &failed, &ran); /* budget.c restarts the GC if needed */
    }
    int code = failed || broken ? 1 : 0;
    if (nmatch > 0 || broken)
        evl_retry_end(h, code);
    char config_failed[40] = "";
    if (h->config_failed)
        snprintf(config_failed, sizeof config_failed, " config_settings_failed=%d", h->config_failed);
    evl_log(code ? EVL_WARN : EVL_INFO,
            "%s pod=%s handlers=%d failed=%d rule_files_failed=%d exit=%d ms=%.2f%s%s%s%s%s", ev.name,
            ev.pod ? ev.pod : "-", ran, failed, h->files_failed, code,
            (evl_monotonic() - h->t0) * 1e3, config_failed, h->retry ? " retry=yes" : "",
            h->handover ? " runtime=full (" : "", h->handover ? h->handover : "",
            h->handover ? ")" : "");
    return code;
}

/* The event path of script mode: config, then the per-event part. Returns the exit code. */
static int run_event(struct evl_host *h)
{
    h->config_partial_ok = 1; /* a wrong setting fails only the handlers that read it */
    if (evl_config_load(h) < 0)
        return 1; /* unusable until the operator fixes it: Sentinel retries meanwhile */
    evl_config_open_log(h);
    evl_event_arm(h); /* the config's budget */
    evl_open_host_module(h->L, h);
    return evl_event_run(h, 0);
}

static int pmain(lua_State *L)
{
    struct evl_host *h = lua_touserdata(L, 1);
    int code;
    /* a call is short: no collection unless a handler allocates a lot (budget.c) */
    lua_gc(L, LUA_GCSTOP);
    evl_host_open(h);
    if (h->mode == EVL_NOTIFY && h->argc >= 2 && h->argv[1][0] != '+' && h->argv[1][0] != '-') {
#ifdef EVL_LEAN
        evl_handover(h, "subcommand", "");
        code = 2;
#else
        /*
         * `check` loads the rules as a call does, under the same watchdog and
         * memory cap; the other subcommands (test, watch, sentinels, ...) are
         * interactive or long-running and keep their own time.
         */
        if (strcmp(h->argv[1], "check") != 0) {
            evl_watchdog_disarm();
            if (strcmp(h->argv[1], "test") != 0)
                h->mem.limit = SIZE_MAX;
        }
        lua_gc(L, LUA_GCRESTART);
        evl_log_also_stderr(1);
        lua_getglobal(L, "require");
        lua_pushliteral(L, "eventilator.cli");
        lua_call(L, 1, 1);
        lua_getfield(L, -1, "main");
        lua_newtable(L);
        for (int i = 1; i < h->argc; i++) {
            lua_pushstring(L, h->argv[i]);
            lua_rawseti(L, -2, i);
        }
        evl_push_cli_host(L, h);
        lua_call(L, 2, 1);
        code = (int)luaL_optinteger(L, -1, 0);
#endif
    } else {
        code = run_event(h);
    }
    lua_pushinteger(L, code);
    return 1;
}

int main(int argc, char **argv)
{
    static struct evl_host h; /* static: what it points to (handover's strdup'd env) stays reachable */
    h.t0 = evl_monotonic();
    h.name = base_name(argv[0] ? argv[0] : "eventilator");
    h.mode = strcmp(h.name, "reconfigurator") == 0 || strcmp(h.name, "registrator") == 0
                 ? EVL_RECONFIG : EVL_NOTIFY;
    h.argc = argc;
    h.argv = argv;
    h.budget = EVL_DEFAULT_BUDGET;
    h.strict_modes = 1;
    evl_handover_take_env(&h); /* may move t0 back to the first start's */
    h.deadline = h.t0 + h.budget;
    /* from here to the exit, nothing outlives the budget (re-armed with the config's) */
    evl_watchdog_arm(h.deadline + 2.0 - evl_monotonic(), on_watchdog);
    h.armed = h.deadline;
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
    int event_call = h.mode == EVL_RECONFIG || (argc >= 2 && (argv[1][0] == '+' || argv[1][0] == '-'));
    if (event_call) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_term;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGTERM, &sa, NULL);
    }
    lua_State *L = h.L = evl_state_new(&h);
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
    if (event_call)
        evl_record(&h, code); /* `record` in the config: this call as one JSON line */
    static lua_State *kept;
    if (event_call)
        kept = L;
    else
        lua_close(L);
    (void)kept;
    return code;
}
