/*
 * watch.c: `eventilator watch` (contract section 10, docs/watch.md), the
 * top of watch mode's stack (set.h): load the set, then one poll() loop
 * over the Sentinel connections (conn.c), the runners' answers and the
 * queue (intake.c), the appender's pipe in cluster mode (sink.c), the HTTP
 * server (http.c) and a self-pipe for the signals; systemd hears how it
 * goes (notify.c). SIGHUP reloads, SIGTERM/SIGINT stop, SIGUSR1 writes the
 * stats line.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <lua.h>

#include "config.h"
#include "conn.h"
#include "deadline.h"
#include "http.h"
#include "intake.h"
#include "log.h"
#include "notify.h"
#include "runner.h"
#include "set.h"
#include "sink.h"
#include "watch.h"

static volatile sig_atomic_t got_hup, got_term, got_usr1;
static int wake[2] = {-1, -1};
static struct watch_set *cur;

static void reload(const char *name)
{
    char why[1024];
    /* the rule files' top-level code runs now, in the loop, within the budget: the watchdog waits */
    evl_notify_hold(EVL_MAX_BUDGET + 5);
    struct watch_set *n = watch_set_load(name, why, sizeof why);
    evl_notify_release(evl_monotonic());
    if (!n) {
        evl_log(EVL_ERROR, "watch: SIGHUP: reload refused, the running config and rules stay: %s", why);
        return;
    }
    struct watch_set *old = cur;
    cur = n;
    evl_config_open_log(n->host);
    conn_settings(n);
    intake_settings(n);
    sink_settings(n);
    http_configure(n->s.listen, evl_monotonic());
    watch_set_free(old); /* runs forked from it keep their own copy */
    evl_log(EVL_INFO, "watch: SIGHUP: config and rules reloaded");
}

/*
 * In a runner, just forked (with the watcher's signals blocked): drop what
 * is the watcher's, not the runs': its sockets, its self-pipe, its signal
 * handlers (runner.c calls this).
 */
static void in_runner(void)
{
    conn_close_fds();
    http_forked();
    close(wake[0]);
    close(wake[1]);
    int sigs[] = {SIGHUP, SIGINT, SIGUSR1, SIGCHLD};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        signal(sigs[i], SIG_DFL);
}

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
static double service(double now, int stopping)
{
    static int ready, last_up = -1, last_n = -1;
    const char *addrs[WATCH_MAX_SENTINELS];
    int on[WATCH_MAX_SENTINELS], up = 0, n = conn_status(addrs, on, WATCH_MAX_SENTINELS);
    for (int i = 0; i < n; i++)
        up += on[i];
    if ((up != last_up || n != last_n) && !stopping) {
        evl_notify("%sSTATUS=subscribed to %d of %d Sentinel(s)", up && !ready ? "READY=1\n" : "", up, n);
        ready |= up > 0;
        last_up = up;
        last_n = n;
    }
    return evl_notify_tick(now);
}

/* pfds: the self-pipe, the runners' answers, the appender's pipe, the HTTP server, then the Sentinel links. */
#define FIXED_FDS 4

/* Wait for all of these, at most t s; then read what came. */
static int wait_io(double t)
{
    struct pollfd pfds[2 * WATCH_MAX_SENTINELS + FIXED_FDS];
    int idx[2 * WATCH_MAX_SENTINELS];
    int n = conn_pollfds(pfds + FIXED_FDS, idx, 2 * WATCH_MAX_SENTINELS);
    pfds[0].fd = wake[0];
    pfds[1].fd = runners_pollfd(); /* a runner's answer: intake_tick reads it */
    pfds[2].fd = sink_pollfd(); /* room in the appender's pipe, while events wait for it */
    pfds[3].fd = http_pollfd(); /* -1 (ignored by poll) when watch.listen is off */
    for (int i = 0; i < FIXED_FDS; i++) {
        pfds[i].events = i == 2 ? POLLOUT : POLLIN;
        pfds[i].revents = 0;
    }
    int ms = t <= 0 ? 0 : (int)(t * 1000) + 1;
    if (poll(pfds, (nfds_t)n + FIXED_FDS, ms) < 0 && errno != EINTR) {
        evl_log(EVL_ERROR, "watch: poll: %s", strerror(errno));
        return -1;
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
    return 0;
}

static int loop(const char *name)
{
    int stopping = 0;
    double stop_at = 0;
    for (;;) {
        double now = evl_monotonic();
        if (got_usr1) {
            got_usr1 = 0;
            intake_stats();
        }
        if (got_hup && !stopping) {
            got_hup = 0;
            reload(name);
        }
        if (got_term && !stopping) {
            stopping = 1;
            evl_notify("STOPPING=1\nSTATUS=stopping: letting %d run(s) finish", intake_busy());
            conn_close_all();
            intake_drain();
            sink_stop();
            stop_at = now + cur->s.budget + 10;
        }
        double t = stopping ? 1 : conn_tick(now);
        double t2 = intake_tick(evl_monotonic()), t3 = sink_tick(evl_monotonic());
        if (stopping && ((!intake_busy() && !sink_busy()) || evl_monotonic() > stop_at))
            break;
        now = evl_monotonic();
        double t4 = http_tick(now, stopping), t5 = service(now, stopping);
        t = t2 < t ? t2 : t;
        t = t3 < t ? t3 : t;
        t = t4 < t ? t4 : t;
        t = t5 < t ? t5 : t;
        if (wait_io(t > 1 ? 1 : t) < 0)
            return 1;
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
    cur = watch_set_load(h->name, why, sizeof why);
    if (!cur) {
        evl_log(EVL_ERROR, "watch: cannot start: %s", why);
        lua_pushinteger(L, 2);
        return 1;
    }
    evl_config_open_log(cur->host);
    evl_log_also_stderr(0);
    watch_set_seeds(cur, L, 1);
    runners_init(in_runner, sink_reaped);
    intake_init(cur);
    sink_init(cur, lua_istable(L, 2) && lua_getfield(L, 2, "no_work") != LUA_TNIL && lua_toboolean(L, -1),
              in_runner);
    conn_settings(cur);
    http_configure(cur->s.listen, evl_monotonic());
    evl_log(EVL_INFO, "watch: started: %zu seed Sentinel(s), discover=%s, concurrency %d, queue %d, "
            "dedupe window %.1f s, budget %.0f s, reuse %d", cur->s.nseeds,
            cur->s.discover ? "yes" : "no", cur->s.concurrency, cur->s.queue, cur->s.dedupe_window,
            cur->s.budget, cur->s.reuse);
    int code = loop(h->name);
    http_end();
    runners_end();
    sink_end();
    intake_stats();
    conn_close_all();
    evl_log(EVL_INFO, "watch: stopped");
    watch_set_free(cur);
    cur = NULL;
    lua_pushinteger(L, code);
    return 1;
}
