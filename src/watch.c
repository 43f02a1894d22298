/*
 * watch.c: `eventilator watch` (contract section 10, docs/watch.md).
 *
 * The subcommand's host function: loads config and rules once into a
 * preloaded event state (a host and Lua state of their own, exactly as an
 * event call has them once config, log, host module and rule files are
 * loaded), and drives one poll() loop over the Sentinel connections
 * (watch_conn.c), the queue and the children (watch_run.c) and a self-pipe
 * for signals.
 *
 * A runner is a fork() of the watcher without exec (watch_run.c): it
 * already holds that state, so what is left per event (watch_event) is
 * main.c's per-event part of the event path (evl_event_run), the same code
 * script mode runs, and between two events (watch_event_reset) the undoing
 * of what one call leaves. SIGHUP builds a new state, validated, and swaps
 * it in; a broken file leaves the running one in place, and runners already
 * forked keep their copy until they exit.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "deadline.h"
#include "fnv.h"
#include "host.h"
#include "log.h"
#include "notify.h"
#include "paths.h"
#include "record.h"
#include "retry.h"
#include "sentinel.h"
#include "watch_env.h"
#include "watch.h"
#include "watch_http.h"

volatile int watch_stopping;
static volatile sig_atomic_t got_hup, got_term, got_usr1;
static int wake[2] = {-1, -1};
static struct watch_set *cur;

double watch_now(void)
{
    return evl_monotonic();
}

/* ---------------------------------------------------------------- the rule set */

static uint64_t hash(const char *s)
{
    return evl_fnv(s, strlen(s), EVL_FNV0);
}

/*
 * Does any handler match this name? Asked of rules.c once per distinct name
 * per loaded set (the names Sentinel uses are few), then answered from an
 * open-addressed table. Past 1024 names nothing more is cached.
 */
#define NAME_SLOTS 2048
int watch_matches(struct watch_set *set, const char *name)
{
    if (!set->names) {
        set->names = calloc(NAME_SLOTS, sizeof *set->names);
        set->capnames = set->names ? NAME_SLOTS : 0;
    }
    size_t i = set->capnames ? hash(name) % set->capnames : 0;
    for (; set->capnames && set->names[i].name; i = (i + 1) % set->capnames)
        if (strcmp(set->names[i].name, name) == 0)
            return set->names[i].hit;
    struct evl_host *h = set->host;
    evl_rules_match(h, name);
    int hit = lua_rawlen(h->L, -1) > 0;
    lua_pop(h->L, 1);
    if (set->capnames && set->nnames < NAME_SLOTS / 2 && (set->names[i].name = strdup(name))) {
        set->names[i].hit = hit;
        set->nnames++;
    }
    return hit;
}

int watch_wants_master(const struct watch_set *set, const char *pod)
{
    if (!set->s.masters || !pod)
        return 1;
    for (size_t i = 0; i < set->s.nmasters; i++)
        if (strcmp(set->s.masters[i], pod) == 0)
            return 1;
    return 0;
}

static char **strlist(lua_State *L, int idx, size_t *n)
{
    *n = 0;
    if (lua_type(L, idx) != LUA_TTABLE)
        return NULL;
    size_t len = lua_rawlen(L, idx);
    char **out = calloc(len + 1, sizeof *out);
    for (size_t i = 0; out && i < len; i++) {
        lua_rawgeti(L, idx, (lua_Integer)i + 1);
        out[(*n)++] = strdup(lua_tostring(L, -1) ? lua_tostring(L, -1) : "");
        lua_pop(L, 1);
    }
    return out;
}

static char *optstr(lua_State *L, int t, const char *k)
{
    lua_getfield(L, t, k);
    char *s = lua_type(L, -1) == LUA_TSTRING ? strdup(lua_tostring(L, -1)) : NULL;
    lua_pop(L, 1);
    return s;
}

static double optnum(lua_State *L, int t, const char *k, double def)
{
    lua_getfield(L, t, k);
    double v = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : def;
    lua_pop(L, 1);
    return v;
}

/* config.watch -> settings; raises with a reason when a value is out of range. */
static void read_settings(lua_State *L, struct evl_host *h, struct watch_settings *s)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->config_ref);
    const char *sd = evl_config_string(h, NULL, "state_dir");
    s->state_dir = strdup(sd ? sd : EVL_STATE_DIR);
    s->budget = h->budget;
    if (lua_getfield(L, -1, "watch") != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
    }
    int t = lua_gettop(L);
    lua_getfield(L, t, "sentinels");
    s->seeds = strlist(L, -1, &s->nseeds);
    lua_pop(L, 1);
    if (!s->seeds || !s->nseeds) {
        free(s->seeds);
        s->seeds = calloc(2, sizeof *s->seeds);
        s->seeds[0] = strdup("127.0.0.1:26379");
        s->nseeds = 1;
    }
    lua_getfield(L, t, "discover");
    s->discover = lua_isnil(L, -1) ? 1 : lua_toboolean(L, -1);
    lua_pop(L, 1);
    s->username = optstr(L, t, "username");
    s->password = optstr(L, t, "password");
    lua_getfield(L, t, "masters");
    s->masters = strlist(L, -1, &s->nmasters);
    lua_pop(L, 1);
    s->dedupe_window = optnum(L, t, "dedupe_window", 5);
    s->concurrency = (int)optnum(L, t, "concurrency", 4);
    s->queue = (int)optnum(L, t, "queue", 10000);
    s->retries = (int)optnum(L, t, "retries", 10);
    s->timeout = optnum(L, t, "timeout", 2);
    s->listen = optstr(L, t, "listen");
    double reuse = optnum(L, t, "reuse", 1000);
    lua_settop(L, t - 2);
    if (s->dedupe_window < 0 || s->dedupe_window > 3600)
        luaL_error(L, "%s: watch.dedupe_window: expected seconds between 0 and 3600", h->config_path);
    if (s->concurrency < 1 || s->concurrency > 256)
        luaL_error(L, "%s: watch.concurrency: expected 1 to 256", h->config_path);
    if (s->queue < 1)
        luaL_error(L, "%s: watch.queue: expected at least 1", h->config_path);
    if (s->retries < 0 || s->retries > 100)
        luaL_error(L, "%s: watch.retries: expected 0 to 100", h->config_path);
    if (reuse < 1 || reuse > 1e9 || reuse != (double)(int)reuse)
        luaL_error(L, "%s: watch.reuse: expected an integer, at least 1", h->config_path);
    s->reuse = (int)reuse;
    if (s->timeout <= 0 || s->timeout > 60)
        luaL_error(L, "%s: watch.timeout: expected seconds between 0 and 60", h->config_path);
    char why[400];
    if (s->listen && http_listen_check(s->listen, why, sizeof why) < 0)
        luaL_error(L, "%s: watch.listen: %s", h->config_path, why);
}

/*
 * The preload: what an event call does before its event (main.c's
 * run_event) and that is the same for every event. A set whose config or
 * any rule file fails is refused (at start: no start; on SIGHUP: the running
 * set stays), so a run never meets a failed rule file: the re-load a script
 * call would give a fixed file happens on SIGHUP, validated first.
 */
static int pload(lua_State *L)
{
    struct watch_set *set = lua_touserdata(L, 1);
    struct evl_host *h = set->host;
    evl_host_open(h);
    if (evl_config_load(h) < 0)
        return luaL_error(L, "the config failed to load (the reason is logged above)");
    evl_open_host_module(L, h);
    read_settings(L, h, &set->s);
    /* cluster = { ... } checked now: a watcher or worker with a wrong one does not start (or reload) */
    lua_getglobal(L, "require");
    lua_pushliteral(L, "eventilator.cluster");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "settings");
    lua_call(L, 0, 2);
    if (lua_isnil(L, -2) && lua_isstring(L, -1))
        return luaL_error(L, "%s: %s", h->config_path, lua_tostring(L, -1));
    lua_pop(L, 3);
    evl_rules_load(h);
    if (h->files_failed)
        return luaL_error(L, "%d rule file(s) failed to load (the reasons are logged above)",
                          h->files_failed);
    return 0;
}

static void free_strs(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

void watch_free_set(struct watch_set *set)
{
    if (!set)
        return;
    if (set->L)
        lua_close(set->L);
    free(set->host);
    free_strs(set->s.seeds);
    free_strs(set->s.masters);
    free(set->s.username);
    free(set->s.password);
    free(set->s.state_dir);
    free(set->s.listen);
    for (size_t i = 0; i < set->capnames; i++)
        free(set->names[i].name);
    free(set->names);
    free(set);
}

/* The threads of this process (/proc/self/status), or -1. */
static int threads(void)
{
    FILE *f = fopen("/proc/self/status", "re");
    char line[256];
    int n = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "Threads: %d", &n) == 1)
            break;
    if (f)
        fclose(f);
    return n;
}

/*
 * fork() copies only the calling thread. The watcher has one, except for
 * what a rule file's top-level code left behind while loading: a name
 * lookup's helper thread (src/lookup.h) that passed its deadline, or
 * libcurl's resolver thread, each ending when getaddrinfo returns. A child
 * forked meanwhile could find a lock of libc held by a thread it does not
 * have. So runs are not forked while such a thread lives (intake goes on),
 * at most 30 s: past that the lookup is stuck, and a run that meets the
 * lock is stopped by its watchdog and retried like any failed run.
 */
int watch_fork_ok(double now)
{
    static double waiting_since;
    if (cur->single)
        return 1;
    /* The watcher's own name lookups (a Sentinel given by host name, sentinel.c) are not waited
       for: one that hangs on DNS would hold every run for 30 s, and a run forked while one holds
       a resolver lock meets it only in a name lookup of its own, which lookup.h bounds. */
    int n = threads() - evl_sentinel_lookups();
    if (n <= 1) {
        cur->single = 1;
        if (waiting_since)
            evl_log(EVL_INFO, "watch: the helper threads left by loading the rules have ended: "
                    "runs start");
        waiting_since = 0;
        return 1;
    }
    if (!waiting_since) {
        waiting_since = now;
        evl_log(EVL_WARN, "watch: %d helper thread(s) left by loading the rules (a name lookup "
                "in top-level code) still running: runs wait for them, at most 30 s", n - 1);
    } else if (now - waiting_since > 30) {
        evl_log(EVL_WARN, "watch: %d helper thread(s) still running after 30 s: runs start anyway",
                n - 1);
        cur->single = 1;
        waiting_since = 0;
        return 1;
    }
    return 0;
}

/*
 * Memory of the watcher alone (the dedupe ring, ~3 MB): mapped MADV_DONTFORK,
 * so a run's fork neither copies its page tables nor tears them down again,
 * and the watcher writing to it after a fork takes no copy-on-write fault.
 * Zeroed and touched now, so RSS does not creep as it fills. Never freed.
 */
void *watch_nofork_alloc(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        evl_log(EVL_ERROR, "watch: cannot map %zu bytes: %s", size, strerror(errno));
        exit(1);
    }
    if (madvise(p, size, MADV_DONTFORK) != 0)
        evl_log(EVL_WARN, "watch: madvise(MADV_DONTFORK): %s; runs copy the dedupe ring's page tables",
                strerror(errno));
    memset(p, 0, size);
    return p;
}

/* Load config and rules as the environment names them; NULL with why. */
struct watch_set *watch_load_set(const char *name, char *why, size_t cap)
{
    struct watch_set *set = calloc(1, sizeof *set);
    struct evl_host *h = calloc(1, sizeof *h);
    lua_State *L = h ? evl_state_new(h) : NULL; /* the allocator of a call: memory_limit applies */
    if (!set || !h || !L) {
        snprintf(why, cap, "out of memory");
        free(set);
        free(h);
        if (L)
            lua_close(L);
        return NULL;
    }
    set->L = h->L = L;
    set->host = h;
    h->name = name;
    h->mode = EVL_NOTIFY;
    h->t0 = evl_monotonic();
    h->budget = EVL_DEFAULT_BUDGET;
    h->deadline = h->t0 + h->budget;
    h->strict_modes = 1;
    lua_pushcfunction(L, evl_traceback);
    lua_pushcfunction(L, pload);
    lua_pushlightuserdata(L, set);
    if (lua_pcall(L, 1, 0, 1) != LUA_OK) {
        snprintf(why, cap, "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "?");
        char *nl = strchr(why, '\n'); /* the message, not the traceback */
        if (nl)
            *nl = '\0';
        watch_free_set(set);
        return NULL;
    }
    lua_settop(L, 0);
    /* every run starts from this heap: leave it no garbage to copy or count */
    lua_gc(L, LUA_GCCOLLECT);
    return set;
}

static void reload(const char *name)
{
    char why[1024];
    /* the rule files' top-level code runs now, in the loop, within the budget: the watchdog waits */
    evl_notify_hold(EVL_MAX_BUDGET + 5);
    struct watch_set *n = watch_load_set(name, why, sizeof why);
    evl_notify_release(watch_now());
    if (!n) {
        evl_log(EVL_ERROR, "watch: SIGHUP: reload refused, the running config and rules stay: %s", why);
        return;
    }
    struct watch_set *old = cur;
    cur = n;
    evl_config_open_log(n->host);
    conn_settings(n);
    run_settings(n);
    sink_settings(n);
    http_configure(n->s.listen, watch_now());
    watch_free_set(old); /* runs forked from it keep their own copy */
    evl_log(EVL_INFO, "watch: SIGHUP: config and rules reloaded");
}

/* ---------------------------------------------------------------- a run */

static int prun(lua_State *L)
{
    struct evl_host *h = lua_touserdata(L, 1);
    lua_pushinteger(L, evl_event_run(h, 1));
    return 1;
}

/*
 * In a runner, just forked (with the watcher's signals blocked): drop what
 * is the watcher's, not the runs': its sockets, its self-pipe, its signal
 * handlers. The collector stays stopped during an event, as in a script call
 * (budget.c restarts it if a handler allocates a lot).
 */
void watch_child_begin(void)
{
    conn_close_fds();
    http_forked();
    close(wake[0]);
    close(wake[1]);
    int sigs[] = {SIGHUP, SIGINT, SIGUSR1, SIGCHLD};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        signal(sigs[i], SIG_DFL);
    evl_log_forked();
}

/*
 * One event, in a runner: become the event call Sentinel would have started,
 * from the preloaded state (the event's argv and the watch-only fields, the
 * budget from now), and return its exit code. The one per-event part of both
 * a one-shot run (reuse = 1) and a runner that handles many. mask, if not
 * NULL, is the watcher's own signal mask, set once the handlers are armed.
 */
int watch_event(char **argv, const char *sentinel, const char *sentinels, const char *delivery,
                int synthetic, const sigset_t *mask)
{
    struct evl_host *h = cur->host;
    lua_State *L = h->L;
    /* the fields the environment carried to a separate run, set in their one home */
    h->t0 = evl_monotonic();
    h->deadline = h->t0 + h->budget;
    h->argc = 3;
    h->argv = argv;
    h->delivery = delivery;
    h->retry = 0;
    h->done = h->handover = NULL;
    h->files_failed = 0;
    h->mem.hit = 0;
    evl_watch_fields_set(sentinel, sentinels, synthetic);
    lua_gc(L, LUA_GCSTOP);
    evl_event_arm(h); /* SIGTERM and the watchdog, the budget from now */
    if (mask)
        sigprocmask(SIG_SETMASK, mask, NULL); /* what waited is delivered now */
    int code;
    lua_settop(L, 0);
    lua_pushcfunction(L, evl_traceback);
    lua_pushcfunction(L, prun);
    lua_pushlightuserdata(L, h);
    if (lua_pcall(L, 1, 1, 1) != LUA_OK) {
        evl_log(EVL_ERROR, "%s: internal error: %s", h->name,
                lua_tostring(L, -1) ? lua_tostring(L, -1) : "(no message)");
        code = 1;
    } else {
        code = (int)lua_tointeger(L, -1);
    }
    evl_record(h, code);
    fflush(NULL); /* io.write from rules: exit() would, _exit does not */
    return code;
}

/*
 * After an event, in a runner that takes another: nothing of this call may
 * change the next one's outcome. The watchdog and SIGTERM handler were this
 * call's (an idle runner is ended by its pipe, not by them); the delivery
 * record is closed, unlocking a failed event's record for its retry; the
 * budget hook goes; the collector frees what the call left (the event
 * table, handler locals), so the memory limit counts from the same heap.
 * What handlers put in globals and upvalues stays (docs/watch.md).
 */
void watch_event_reset(void)
{
    struct evl_host *h = cur->host;
    lua_State *L = h->L;
    evl_watchdog_disarm();
    signal(SIGTERM, SIG_DFL);
    evl_retry_reset();
    evl_budget_clear(L);
    lua_settop(L, 0);
    free((char *)h->done); /* a retry's list of handlers done (retry.c's merge_done) */
    h->done = h->handover = NULL;
    h->delivery = NULL;
    h->argv = NULL;
    h->argc = 0;
    h->mem.hit = 0;
    lua_gc(L, LUA_GCRESTART);
    lua_gc(L, LUA_GCCOLLECT);
}

/* ---------------------------------------------------------------- the loop */

static void on_signal(int sig)
{
    int e = errno;
    if (sig == SIGHUP)
        got_hup = 1;
    else if (sig == SIGTERM || sig == SIGINT)
        got_term = 1;
    else if (sig == SIGUSR1)
        got_usr1 = 1;
    if (wake[1] >= 0 && write(wake[1], "", 1) < 0) {
        /* full pipe: the loop is awake anyway */
    }
    errno = e;
}

static void signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    int sigs[] = {SIGHUP, SIGTERM, SIGINT, SIGUSR1, SIGCHLD};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        sigaction(sigs[i], &sa, NULL);
}

/*
 * systemd (Type=notify, docs/watch.md): READY=1 once a Sentinel is
 * subscribed, STATUS= when how many are changes, and the watchdog's pings
 * from the loop itself, so a loop that stops turning stops them. Returns
 * the seconds until the next ping.
 */
static double service(double now)
{
    static int ready, last_up = -1, last_n = -1;
    int up = 0, n = conn_count();
    for (int i = 0; i < n; i++)
        up += conn_subscribed(i);
    if ((up != last_up || n != last_n) && !watch_stopping) {
        evl_notify("%sSTATUS=subscribed to %d of %d Sentinel(s)", up && !ready ? "READY=1\n" : "", up, n);
        ready |= up > 0;
        last_up = up;
        last_n = n;
    }
    return evl_notify_tick(now);
}

/* pfds: the self-pipe, the runners' answers, the appender's pipe, the HTTP server, then the Sentinel links. */
#define FIXED_FDS 4

static int loop(const char *name)
{
    struct pollfd pfds[2 * WATCH_MAX_SENTINELS + FIXED_FDS];
    int idx[2 * WATCH_MAX_SENTINELS];
    double stop_at = 0;
    for (;;) {
        double now = watch_now();
        if (got_usr1) {
            got_usr1 = 0;
            run_stats();
        }
        if (got_hup && !watch_stopping) {
            got_hup = 0;
            reload(name);
        }
        if (got_term && !watch_stopping) {
            watch_stopping = 1;
            evl_notify("STOPPING=1\nSTATUS=stopping: letting %d run(s) finish", run_busy());
            conn_close_all();
            run_drain();
            sink_stop();
            stop_at = now + cur->s.budget + 10;
        }
        double t = watch_stopping ? 1 : conn_tick(now);
        double t2 = run_tick(watch_now()), t3 = sink_tick(watch_now());
        if (watch_stopping && ((!run_busy() && !sink_busy()) || watch_now() > stop_at))
            break;
        now = watch_now();
        double t4 = http_tick(now), t5 = service(now);
        t = t2 < t ? t2 : t;
        t = t3 < t ? t3 : t;
        t = t4 < t ? t4 : t;
        t = t5 < t ? t5 : t;
        if (t > 1)
            t = 1;
        int n = conn_pollfds(pfds + FIXED_FDS, idx, 2 * WATCH_MAX_SENTINELS);
        pfds[0].fd = wake[0];
        pfds[1].fd = run_pollfd(); /* a runner's answer: run_tick reads it */
        pfds[2].fd = sink_pollfd(); /* room in the appender's pipe, while events wait for it */
        pfds[3].fd = http_pollfd(); /* -1 (ignored by poll) when watch.listen is off */
        for (int i = 0; i < FIXED_FDS; i++) {
            pfds[i].events = i == 2 ? POLLOUT : POLLIN;
            pfds[i].revents = 0;
        }
        int ms = t <= 0 ? 0 : (int)(t * 1000) + 1;
        if (poll(pfds, (nfds_t)n + FIXED_FDS, ms) < 0 && errno != EINTR) {
            evl_log(EVL_ERROR, "watch: poll: %s", strerror(errno));
            return 1;
        }
        if (pfds[0].revents & POLLIN) {
            char buf[64];
            while (read(wake[0], buf, sizeof buf) > 0) {
            }
        }
        for (int i = 0; i < n; i++)
            if (pfds[i + FIXED_FDS].revents)
                conn_io(idx[i], pfds[i + FIXED_FDS].revents);
        http_io(pfds[3].revents != 0);
    }
    return 0;
}

/*
 * host.watch(seeds, opts) -> exit code. seeds: a list of "host:port" that
 * replaces watch.sentinels (the --sentinel options), or nil. opts.no_work:
 * in cluster mode, append events and run none (--no-work).
 */
int evl_watch_lua(lua_State *L)
{
    struct evl_host *h = lua_touserdata(L, lua_upvalueindex(1));
    char why[1024];
    if (pipe(wake) < 0) {
        evl_log(EVL_ERROR, "watch: pipe: %s", strerror(errno));
        lua_pushinteger(L, 1);
        return 1;
    }
    for (int i = 0; i < 2; i++) {
        fcntl(wake[i], F_SETFL, O_NONBLOCK);
        fcntl(wake[i], F_SETFD, FD_CLOEXEC);
    }
    signals(); /* before loading: a SIGHUP now is a reload once running */
    evl_notify_init();
    cur = watch_load_set(h->name, why, sizeof why);
    if (!cur) {
        evl_log(EVL_ERROR, "watch: cannot start: %s", why);
        lua_pushinteger(L, 2);
        return 1;
    }
    evl_config_open_log(cur->host);
    evl_log_also_stderr(0);
    if (lua_istable(L, 1) && lua_rawlen(L, 1) > 0) {
        size_t n;
        free_strs(cur->s.seeds);
        cur->s.seeds = strlist(L, 1, &n);
        cur->s.nseeds = n;
    }
    run_init(cur);
    sink_init(cur, lua_istable(L, 2) && lua_getfield(L, 2, "no_work") != LUA_TNIL && lua_toboolean(L, -1));
    conn_init(cur);
    http_configure(cur->s.listen, watch_now());
    evl_log(EVL_INFO, "watch: started: %zu seed Sentinel(s), discover=%s, concurrency %d, queue %d, "
            "dedupe window %.1f s, budget %.0f s, reuse %d", cur->s.nseeds,
            cur->s.discover ? "yes" : "no", cur->s.concurrency, cur->s.queue, cur->s.dedupe_window,
            cur->s.budget, cur->s.reuse);
    int code = loop(h->name);
    http_end();
    run_end();
    sink_end();
    run_stats();
    conn_close_all();
    evl_log(EVL_INFO, "watch: stopped");
    watch_free_set(cur);
    cur = NULL;
    lua_pushinteger(L, code);
    return 1;
}
