/*
 * runner.c: the runners (runner.h), forks of the watcher without exec: each
 * holds the loaded set, so an event costs it the per-event part of the
 * event path (watch_set_run), with script mode's contract unchanged; a
 * crash ends one runner. Its first event is the one it was forked for (in
 * memory); the next come on its own pipe as a frame (frame.h: the
 * synthetic flag, name, text, sentinel, sentinels, delivery); each answer goes back on one pipe all runners share as one
 * struct reply (smaller than PIPE_BUF: never torn or mixed). It ends when
 * its pipe closes; with reuse = 1 it has none and its exit status is the
 * answer (docs/design.md, "Runners").
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "deadline.h"
#include "frame.h"
#include "log.h"
#include "runner.h"
#include "sentinel.h"

#define KILL_MARGIN 5.0 /* s past the budget: the child's own watchdog fires at +2 */
#define MAX_RUNNERS 1024

struct runner {
    pid_t pid;
    int to;            /* the write end of its event pipe; -1: none, or told to exit */
    int busy;          /* running `job` */
    struct runner_job job;
    double started, kill_at;
    int handled, reuse;
    int stale;         /* forked from a set replaced since: exits after its event */
};

struct reply {
    int32_t pid, code;
    double cpu;        /* ms of CPU of the event (and the collection after it) */
    int64_t faults;
    double secs;       /* the event call's own time, without the fork or the collection after it */
};

static struct runner runners[MAX_RUNNERS];
static int nrunners;
static int replies[2] = {-1, -1};
static int stopping;
static void (*drop_watchers)(void);
static void (*reaped_other)(pid_t pid, int status);

static struct runner *runner_of(pid_t pid)
{
    for (int i = 0; i < nrunners; i++)
        if (runners[i].pid == pid)
            return &runners[i];
    return NULL;
}

/* Close its pipe: an idle runner reads EOF and exits (reaped later). */
static void retire(struct runner *r)
{
    if (r->to >= 0)
        close(r->to);
    r->to = -1;
}

static double cpu_ms(const struct rusage *ru)
{
    return (double)(ru->ru_utime.tv_sec + ru->ru_stime.tv_sec) * 1e3 +
           (double)(ru->ru_utime.tv_usec + ru->ru_stime.tv_usec) / 1e3;
}

/* ---------------------------------------------------------------- in the runner */

/* The runner's side: its first event, then the ones its pipe brings, until EOF. */
static _Noreturn void runner_main(struct watch_set *set, const struct runner_job *j, int in,
                                  int reuse, const sigset_t *mask)
{
    /* the other runners' pipes are the watcher's: holding one would keep that runner alive */
    for (int i = 0; i < nrunners; i++)
        if (runners[i].to >= 0)
            close(runners[i].to);
    close(replies[0]);
    drop_watchers();
    evl_log_forked();
    struct rusage r0, r1;
    getrusage(RUSAGE_SELF, &r0);
    char *argv[] = {"eventilator", (char *)j->name, (char *)j->text, NULL};
    struct evl_origin o = {"watch", j->first, j->all, j->synthetic};
    double t0 = evl_monotonic();
    int code = watch_set_run(set, argv, &o, j->delivery, NULL, mask);
    double secs = evl_monotonic() - t0;
    if (reuse == 1)
        _exit(code); /* one fork per event: the exit status is the answer */
    char *buf = NULL;
    size_t cap = 0;
    for (;;) {
        watch_set_reset(set); /* before the answer: a failed event's record is unlocked for its retry */
        getrusage(RUSAGE_SELF, &r1);
        struct reply rp = {(int32_t)getpid(), code, cpu_ms(&r1) - cpu_ms(&r0),
                           (int64_t)(r1.ru_minflt - r0.ru_minflt), secs};
        long len;
        if (frame_whole(replies[1], &rp, sizeof rp, 1) < 0 || (len = frame_read(in, &buf, &cap)) < 0)
            _exit(0); /* the watcher closed the pipe: done */
        getrusage(RUSAGE_SELF, &r0);
        t0 = evl_monotonic();
        char *f[6];
        frame_fields(buf, (size_t)len, f, 6);
        char *ev_argv[] = {"eventilator", f[1], f[2], NULL};
        struct evl_origin eo = {"watch", f[3], f[4], f[0][0] == '1'};
        code = watch_set_run(set, ev_argv, &eo, f[5], NULL, NULL);
        secs = evl_monotonic() - t0;
    }
}

/* ---------------------------------------------------------------- in the watcher */

/* Give the event to an idle runner: 0, or -1 (that runner is gone, retired). */
static int send_event(struct runner *r, const struct runner_job *j)
{
    const char *f[6] = {j->synthetic ? "1" : "0", j->name, j->text, j->first, j->all, j->delivery};
    int rc = frame_write(r->to, f, 6);
    if (rc < 0) {
        evl_log(EVL_WARN, "watch: runner %ld: cannot pass it an event (%s): replaced",
                (long)r->pid, strerror(errno));
        retire(r);
        kill(r->pid, SIGKILL);
    }
    return rc;
}

/* A new runner, forked from `set` with `j` as its first event. */
static struct runner *fork_runner(struct watch_set *set, const struct runner_job *j)
{
    int p[2] = {-1, -1};
    int reuse = set->s.reuse;
    if (nrunners >= MAX_RUNNERS) {
        errno = EAGAIN;
        return NULL;
    }
    if (reuse > 1 && pipe(p) < 0)
        return NULL;
    for (int i = 0; i < 2; i++)
        if (p[i] >= 0)
            fcntl(p[i], F_SETFD, FD_CLOEXEC);
    fflush(NULL); /* nothing the watcher buffered is written twice by the child's fflush */
    /* until the child has its own handlers, a signal waits (watch_set_run unblocks it) */
    sigset_t sigs, old;
    sigemptyset(&sigs);
    int block[] = {SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGCHLD};
    for (size_t i = 0; i < sizeof block / sizeof block[0]; i++)
        sigaddset(&sigs, block[i]);
    sigprocmask(SIG_BLOCK, &sigs, &old);
    pid_t pid = fork();
    if (pid == 0) {
        if (p[1] >= 0)
            close(p[1]);
        runner_main(set, j, p[0], reuse, &old);
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
    if (p[0] >= 0)
        close(p[0]);
    if (pid < 0) {
        if (p[1] >= 0)
            close(p[1]);
        return NULL;
    }
    runners[nrunners] = (struct runner){.pid = pid, .to = p[1], .handled = 1, .reuse = reuse};
    return &runners[nrunners++];
}

/* Runners that take a share of `concurrency`: busy, or idle and not told to exit. */
static int active_runners(struct runner **idle)
{
    int n = 0;
    *idle = NULL;
    for (int i = 0; i < nrunners; i++) {
        struct runner *r = &runners[i];
        if (r->busy) {
            n++;
        } else if (r->to >= 0 && !r->stale) {
            n++;
            if (!*idle)
                *idle = r;
        }
    }
    return n;
}

pid_t runner_start(struct watch_set *set, const struct runner_job *j, int cap)
{
    struct runner *idle, *r;
    int active = active_runners(&idle);
    if (idle) {
        if (send_event(idle, j) < 0)
            return 0;
        idle->handled++;
        r = idle;
    } else if (active < cap) {
        if (!(r = fork_runner(set, j)))
            return -1;
    } else {
        return 0;
    }
    double now = evl_monotonic();
    r->busy = 1;
    r->job = *j;
    r->job.first = r->job.all = r->job.delivery = NULL; /* the caller's, only until now */
    r->started = now;
    r->kill_at = now + j->budget + KILL_MARGIN;
    return r->pid;
}

/* The answers in the shared pipe: each ends its runner's run. */
static void read_replies(void (*ended)(const struct runner_end *e))
{
    struct reply rp[64];
    ssize_t n;
    while ((n = read(replies[0], rp, sizeof rp)) > 0) {
        for (size_t i = 0; i < (size_t)n / sizeof rp[0]; i++) {
            struct runner *r = runner_of(rp[i].pid);
            if (!r || !r->busy)
                continue;
            r->busy = 0;
            if (r->handled >= r->reuse || r->stale || stopping)
                retire(r);
            ended(&(struct runner_end){r->job.tag, rp[i].code, 0, rp[i].cpu, (long)rp[i].faults, rp[i].secs});
        }
    }
}

/* A runner that exited (wait4's status and usage): its run ends with it, if it had one. */
static void reaped(struct runner *r, int ws, const struct rusage *ru,
                   void (*ended)(const struct runner_end *e))
{
    struct runner_end e = {r->job.tag, 1, WIFSIGNALED(ws) ? WTERMSIG(ws) : 0, cpu_ms(ru), ru->ru_minflt, -1};
    int busy = r->busy, reuse = r->reuse;
    pid_t pid = r->pid;
    const struct runner_job j = r->job;
    retire(r);
    *r = runners[--nrunners];
    if (!busy)
        return;
    if (reuse == 1) { /* the exit status is the event's, as a script call's */
        e.code = WIFEXITED(ws) ? WEXITSTATUS(ws) : -1;
    } else {
        evl_log(EVL_WARN, "watch: runner %ld ended during %s pod=%s (%s %d): the run failed",
                (long)pid, j.name, j.pod ? j.pod : "-", WIFSIGNALED(ws) ? "signal" : "exit",
                WIFSIGNALED(ws) ? WTERMSIG(ws) : WEXITSTATUS(ws));
    }
    ended(&e);
}

double runners_reap(double now, void (*ended)(const struct runner_end *e))
{
    double next = 10;
    int ws;
    struct rusage ru;
    pid_t pid;
    read_replies(ended);
    while ((pid = wait4(-1, &ws, WNOHANG, &ru)) > 0) {
        struct runner *r = runner_of(pid);
        if (!r) {
            reaped_other(pid, ws); /* not a runner: the cluster's appender or worker */
            continue;
        }
        if (r->busy)
            read_replies(ended); /* its answer, written before it exited */
        reaped(r, ws, &ru, ended);
    }
    for (int i = 0; i < nrunners; i++) {
        struct runner *r = &runners[i];
        if (!r->busy)
            continue;
        if (now >= r->kill_at) {
            evl_log(EVL_ERROR, "watch: %s pod=%s still running %.0f s after its budget: killed",
                    r->job.name, r->job.pod ? r->job.pod : "-", now - r->started - r->job.budget);
            retire(r);
            kill(r->pid, SIGKILL);
            r->kill_at = now + 1;
        }
        if (r->kill_at - now < next)
            next = r->kill_at - now;
    }
    return next;
}

/* ---------------------------------------------------------------- threads */

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
 * lookup's helper thread (lookup.h) that passed its deadline, or libcurl's
 * resolver thread, each ending when getaddrinfo returns. A child forked
 * meanwhile could find a lock of libc held by a thread it does not have. So
 * runs are not forked while such a thread lives (intake goes on), at most
 * 30 s: past that the lookup is stuck, and a run that meets the lock is
 * stopped by its watchdog and retried like any failed run.
 */
int runners_fork_ok(struct watch_set *set, double now)
{
    static double waiting_since;
    if (set->single)
        return 1;
    /* The watcher's own name lookups (a Sentinel given by host name, sentinel.c) are not waited
       for: one that hangs on DNS would hold every run for 30 s, and a run forked while one holds
       a resolver lock meets it only in a name lookup of its own, which lookup.h bounds. */
    int n = threads() - evl_sentinel_lookups();
    if (n <= 1) {
        set->single = 1;
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
        set->single = 1;
        waiting_since = 0;
        return 1;
    }
    return 0;
}

/* ---------------------------------------------------------------- the set of runners */

void runners_reload(void)
{
    for (int i = 0; i < nrunners; i++) {
        runners[i].stale = 1;
        if (!runners[i].busy)
            retire(&runners[i]);
    }
}

void runners_stop(void)
{
    stopping = 1;
    for (int i = 0; i < nrunners; i++)
        if (!runners[i].busy)
            retire(&runners[i]);
}

void runners_end(void)
{
    for (int i = 0; i < nrunners; i++)
        retire(&runners[i]);
    for (int tries = 0; nrunners > 0 && tries < 200; tries++) {
        pid_t pid = waitpid(-1, NULL, WNOHANG);
        struct runner *r = pid > 0 ? runner_of(pid) : NULL;
        if (r)
            *r = runners[--nrunners];
        else if (pid < 0)
            break;
        else if (pid == 0) {
            if (tries == 199)
                break;
            usleep(10000);
        }
    }
    for (int i = 0; i < nrunners; i++) {
        kill(runners[i].pid, SIGKILL);
        waitpid(runners[i].pid, NULL, 0);
    }
    nrunners = 0;
}

int runners_pollfd(void)
{
    return replies[0];
}

int runners_count(void)
{
    return nrunners;
}

void runners_init(void (*in_child)(void), void (*other)(pid_t pid, int status))
{
    drop_watchers = in_child;
    reaped_other = other;
    if (pipe(replies) < 0) {
        evl_log(EVL_ERROR, "watch: pipe: %s", strerror(errno));
        exit(1);
    }
    fcntl(replies[0], F_SETFL, O_NONBLOCK);
    fcntl(replies[0], F_SETFD, FD_CLOEXEC);
    fcntl(replies[1], F_SETFD, FD_CLOEXEC);
}
