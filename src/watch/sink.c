/*
 * sink.c: the watcher in cluster mode (docs/cluster.md). Intake is
 * unchanged (intake.c: parse, match, dedupe across this watcher's
 * Sentinels, the fair queue); what would start a run is instead written to
 * the appender, a fork of the watcher that appends events to the stream in
 * the store (cluster.c, eventilator.cluster_append). The poll loop never
 * waits on the store: a write that does not fit in the pipe leaves the
 * event in the watcher's queue (watch.queue, with its fair drops and their
 * log line), and the loop polls the pipe until it drains.
 *
 * Unless --no-work, the watcher also forks a worker (cluster.c,
 * eventilator.cluster_work). Both children are restarted when they die,
 * with a back-off; on SIGHUP both are replaced by forks of the new set (the
 * old appender appends what it has and exits at the end of its pipe, the
 * old worker finishes its entry); on SIGTERM the appender gets the queue
 * (what fits) and the end of its pipe, the worker a SIGTERM, and the
 * watcher waits for both.
 */
#define _GNU_SOURCE /* F_SETPIPE_SZ */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "cluster.h"
#include "frame.h"
#include "deadline.h"
#include "log.h"
#include "runner.h"
#include "sink.h"

#define RESTART_FIRST 1.0
#define RESTART_MAX 30.0
#define STEADY 60.0   /* s: a child that ran this long restarts without back-off */
#define OLD_MAX 16

enum { APPENDER, WORKER };
static const char *const role[] = {"appender", "worker"};

static struct {
    struct watch_set *set;
    int on, no_work, stopping;
    void (*in_child)(void);  /* what a fork drops of the watcher's (watch.c) */
    int fd;                 /* the appender's pipe, write end; -1: none */
    int blocked;            /* the pipe was full: the loop polls it for room */
    struct child {
        pid_t pid;
        double started, due, delay; /* due: when to start it again (0: now) */
    } c[2];
    pid_t old[OLD_MAX];     /* children of a replaced set, finishing */
    int nold;
    char watcher[24];       /* this watcher's id in the store's claims: its boot id */
    uint64_t taken, skipped;
} S = {.fd = -1};

/* Is cluster = { ... } in the set's config? */
static int cluster_set(struct watch_set *set)
{
    struct evl_host *h = set->host;
    lua_State *L = h->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->config_ref);
    int on = lua_getfield(L, -1, "cluster") == LUA_TTABLE;
    lua_pop(L, 2);
    return on;
}

int sink_on(void)
{
    return S.on;
}

/* In a child: what is the watcher's and not the child's. */
static void child_begin(void)
{
    S.in_child();
    if (S.fd >= 0)
        close(S.fd); /* the appender must see the end of its pipe when the watcher goes */
}

static pid_t start_appender(void)
{
    int p[2];
    if (pipe(p) < 0)
        return -1;
    fcntl(p[1], F_SETFD, FD_CLOEXEC);
    fcntl(p[1], F_SETPIPE_SZ, 1 << 20); /* room for a burst; what does not fit waits in the queue */
    fflush(NULL);
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &old);
    pid_t pid = fork();
    if (pid == 0) {
        close(p[1]);
        child_begin();
        sigprocmask(SIG_SETMASK, &old, NULL);
        _exit(evl_cluster_append(S.set, p[0], S.watcher));
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
    close(p[0]);
    if (pid < 0) {
        close(p[1]);
        return -1;
    }
    fcntl(p[1], F_SETFL, O_NONBLOCK);
    S.fd = p[1];
    return pid;
}

static pid_t start_worker(void)
{
    fflush(NULL);
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &old);
    pid_t watcher = getpid(), pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM); /* the watcher gone: finish the entry, and go */
        child_begin();
        sigprocmask(SIG_SETMASK, &old, NULL);
        if (getppid() != watcher)
            _exit(0);
        _exit(evl_cluster_work(S.set));
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
    return pid;
}

/* Start what is due; returns the seconds until the next start is due (at most 10). */
double sink_tick(double now)
{
    double next = 10;
    if (!S.on || S.stopping)
        return next;
    for (int k = APPENDER; k <= WORKER; k++) {
        struct child *c = &S.c[k];
        if (c->pid > 0 || (k == WORKER && S.no_work))
            continue;
        if (c->due > now) {
            if (c->due - now < next)
                next = c->due - now;
            continue;
        }
        if (!runners_fork_ok(S.set, now))
            return 0.1;
        c->pid = k == APPENDER ? start_appender() : start_worker();
        if (c->pid < 0) {
            evl_log(EVL_ERROR, "watch: cluster %s: cannot start it: %s; tried again in 1 s", role[k],
                    strerror(errno));
            c->pid = 0;
            c->due = now + 1;
            continue;
        }
        c->started = now;
        evl_log(EVL_INFO, "watch: cluster %s started (pid %ld)", role[k], (long)c->pid);
    }
    return next;
}

/* A child ended: if ours, logged and restarted later. */
void sink_reaped(pid_t pid, int status)
{
    for (int i = 0; i < S.nold; i++)
        if (S.old[i] == pid) {
            S.old[i] = S.old[--S.nold];
            return;
        }
    for (int k = APPENDER; k <= WORKER; k++) {
        struct child *c = &S.c[k];
        if (c->pid != pid)
            continue;
        double now = evl_monotonic();
        c->pid = 0;
        if (k == APPENDER && S.fd >= 0) {
            close(S.fd); /* what it held and its pipe held is lost here; the other watchers append it */
            S.fd = -1;
        }
        if (S.stopping)
            return;
        c->delay = now - c->started >= STEADY || c->delay <= 0 ? RESTART_FIRST
                   : c->delay * 2 > RESTART_MAX ? RESTART_MAX : c->delay * 2;
        c->due = now + c->delay;
        evl_log(EVL_ERROR, "watch: cluster %s (pid %ld) ended (%s %d)%s; started again in %.0f s",
                role[k], (long)pid, WIFSIGNALED(status) ? "signal" : "exit",
                WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status),
                k == APPENDER ? ": the events it had not appended are lost on this watcher" : "",
                c->delay);
        return;
    }
}

/*
 * An event for the stream: 1 when the appender's pipe took it, 0 when it is
 * full or there is no appender (the event stays queued). heard: when it was
 * heard (evl_monotonic's clock); seq: this watcher's number for it (its claim).
 */
int sink_item(const char *name, const char *text, const char *sentinel, double heard, uint64_t seq,
              int synthetic)
{
    static struct evl_event ev; /* ~4 KiB: off the stack */
    char id[EVL_IDENTITY_MAX], err[256], t[32], s[24];
    if (S.fd < 0)
        return 0;
    if (evl_parse_notification(&ev, name, text, err, sizeof err) < 0)
        return 1; /* intake parsed it already: cannot happen */
    size_t n = evl_event_identity(&ev, evl_event_own(&ev) ? sentinel : NULL, id, sizeof id);
    if (n >= sizeof id)
        id[sizeof id - 1] = '\0';
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(t, sizeof t, "%.6f", (double)ts.tv_sec + (double)ts.tv_nsec / 1e9 - (evl_monotonic() - heard));
    snprintf(s, sizeof s, "%" PRIu64, seq);
    /* the pod as event.c parsed it: the appender orders a master's events by it (docs/cluster.md) */
    const char *f[] = {name, text, sentinel, t, id, S.watcher, s, ev.pod ? ev.pod : "", synthetic ? "1" : "0"};
    const int nf = (int)(sizeof f / sizeof f[0]);
    size_t len = 4;
    for (int i = 0; i < nf; i++)
        len += strlen(f[i]) + 1;
    if (len > PIPE_BUF) { /* a pipe write is whole only up to PIPE_BUF: no Sentinel writes this much */
        S.skipped++;
        evl_log(EVL_ERROR, "watch: cluster: %s from %s is %zu bytes, more than one pipe write takes: "
                "not appended", name, sentinel, len);
        return 1;
    }
    if (frame_write(S.fd, f, nf) < 0) {
        S.blocked = 1; /* EAGAIN (full), or EPIPE (the appender died: reaped soon) */
        return 0;
    }
    S.blocked = 0;
    S.taken++;
    return 1;
}

/* The pipe to poll for room, while events wait for it; -1: none. */
int sink_pollfd(void)
{
    return S.on && S.blocked ? S.fd : -1;
}

void sink_init(struct watch_set *set, int no_work, void (*in_child)(void))
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    S.set = set;
    S.on = cluster_set(set);
    S.no_work = no_work;
    S.in_child = in_child;
    /* unique per watcher process: its claims are told apart from a restarted one's */
    snprintf(S.watcher, sizeof S.watcher, "%016" PRIx64,
             ((uint64_t)ts.tv_sec << 24) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 40));
    signal(SIGPIPE, SIG_IGN);
    if (S.on)
        evl_log(EVL_INFO, "watch: cluster mode: events go to the stream in the store%s",
                no_work ? "; --no-work: this watcher runs no handlers" : ", and a worker runs entries");
    else if (no_work)
        evl_log(EVL_WARN, "watch: --no-work without cluster = { ... } in the config: this watcher "
                "handles events itself");
}

/* Retire the children (old set, or the stop): the appender's pipe ends, the worker gets SIGTERM. */
static void retire(void)
{
    if (S.fd >= 0)
        close(S.fd);
    S.fd = -1;
    S.blocked = 0;
    for (int k = APPENDER; k <= WORKER; k++) {
        struct child *c = &S.c[k];
        if (c->pid <= 0)
            continue;
        if (k == WORKER)
            kill(c->pid, SIGTERM);
        if (S.nold < OLD_MAX)
            S.old[S.nold++] = c->pid;
        c->pid = 0;
        c->due = 0;
        c->delay = 0;
    }
}

/* A reload: the new set's children replace the old set's (which finish what they have). */
void sink_settings(struct watch_set *set)
{
    int was = S.on;
    S.set = set;
    S.on = cluster_set(set);
    retire();
    if (was != S.on)
        evl_log(EVL_INFO, "watch: SIGHUP: cluster mode %s", S.on ? "on" : "off");
}

/* The stop: no more events; the children finish (sink_busy until they have). */
void sink_stop(void)
{
    S.stopping = 1;
    if (S.on)
        evl_log(EVL_INFO, "watch: stopping: %" PRIu64 " event(s) handed to the appender", S.taken);
    retire();
}

int sink_busy(void)
{
    return S.nold > 0 || S.c[APPENDER].pid > 0 || S.c[WORKER].pid > 0;
}

/* The watcher exits: children still there are killed. */
void sink_end(void)
{
    retire();
    for (int i = 0; i < S.nold; i++) {
        kill(S.old[i], SIGKILL);
        waitpid(S.old[i], NULL, 0);
    }
    S.nold = 0;
}
