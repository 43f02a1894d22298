/*
 * watch.c: `eventilator watch` (contract section 10, docs/watch.md), the
 * top of watch mode's stack (set.h): load the set, then one poll() loop
 * over the Sentinel connections (conn.c), the runners' answers and the
 * queue (intake.c) and a self-pipe for the signals. SIGHUP reloads,
 * SIGTERM/SIGINT stop, SIGUSR1 writes the stats line.
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
#include "intake.h"
#include "log.h"
#include "runner.h"
#include "set.h"
#include "watch.h"

static volatile sig_atomic_t got_hup, got_term, got_usr1;
static int wake[2] = {-1, -1};
static struct watch_set *cur;

static void reload(const char *name)
{
    char why[1024];
    struct watch_set *n = watch_set_load(name, why, sizeof why);
    if (!n) {
        evl_log(EVL_ERROR, "watch: SIGHUP: reload refused, the running config and rules stay: %s", why);
        return;
    }
    struct watch_set *old = cur;
    cur = n;
    evl_config_open_log(n->host);
    conn_settings(n);
    intake_settings(n);
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

/* Wait for the sockets, the answers and the self-pipe, at most t s; then read what came. */
static int wait_io(double t)
{
    struct pollfd pfds[2 * WATCH_MAX_SENTINELS + 2];
    int idx[2 * WATCH_MAX_SENTINELS];
    int n = conn_pollfds(pfds + 2, idx, 2 * WATCH_MAX_SENTINELS);
    pfds[0].fd = wake[0];
    pfds[1].fd = runners_pollfd(); /* a runner's answer: intake_tick reads it */
    pfds[0].events = pfds[1].events = POLLIN;
    pfds[0].revents = pfds[1].revents = 0;
    int ms = t <= 0 ? 0 : (int)(t * 1000) + 1;
    if (poll(pfds, (nfds_t)n + 2, ms) < 0 && errno != EINTR) {
        evl_log(EVL_ERROR, "watch: poll: %s", strerror(errno));
        return -1;
    }
    if (pfds[0].revents & POLLIN) {
        char buf[64];
        while (read(wake[0], buf, sizeof buf) > 0) {
        }
    }
    for (int i = 0; i < n; i++)
        if (pfds[i + 2].revents)
            conn_io(idx[i], pfds[i + 2].revents);
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
            conn_close_all();
            intake_drain();
            stop_at = now + cur->s.budget + 10;
        }
        double t = stopping ? 1 : conn_tick(now);
        double t2 = intake_tick(evl_monotonic());
        if (stopping && (!intake_busy() || evl_monotonic() > stop_at))
            break;
        if (t2 < t)
            t = t2;
        if (wait_io(t > 1 ? 1 : t) < 0)
            return 1;
    }
    return 0;
}

/*
 * host.watch(seeds) -> exit code. seeds: a list of "host:port" that
 * replaces watch.sentinels (the --sentinel options), or nil.
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
    cur = watch_set_load(h->name, why, sizeof why);
    if (!cur) {
        evl_log(EVL_ERROR, "watch: cannot start: %s", why);
        lua_pushinteger(L, 2);
        return 1;
    }
    evl_config_open_log(cur->host);
    evl_log_also_stderr(0);
    watch_set_seeds(cur, L, 1);
    runners_init(in_runner);
    intake_init(cur);
    conn_settings(cur);
    evl_log(EVL_INFO, "watch: started: %zu seed Sentinel(s), discover=%s, concurrency %d, queue %d, "
            "dedupe window %.1f s, budget %.0f s, reuse %d", cur->s.nseeds,
            cur->s.discover ? "yes" : "no", cur->s.concurrency, cur->s.queue, cur->s.dedupe_window,
            cur->s.budget, cur->s.reuse);
    int code = loop(h->name);
    runners_end();
    intake_stats();
    conn_close_all();
    evl_log(EVL_INFO, "watch: stopped");
    watch_set_free(cur);
    cur = NULL;
    lua_pushinteger(L, code);
    return 1;
}
