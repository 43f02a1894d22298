/*
 * watch_run.c: from a heard event to a finished run of its handlers.
 *
 * Intake (every message): parse with the script-mode parser, ask the name
 * cache whether any handler matches; only then is it remembered in the
 * dedupe ring and, unless a duplicate, queued. Nothing on this path
 * allocates per event except the queued item, so intake stays fast and
 * memory stays flat (docs/watch.md, bench/watch.sh). The queue is shared
 * fairly: when it is full, the Sentinel holding the most loses its oldest,
 * and the drops are one log line a second.
 *
 * Runs: each item is one event call in a runner, a fork() of the watcher
 * without exec that handles up to `reuse` events one at a time (the
 * runners section below): it holds the preloaded config and rules (watch.c)
 * and runs the event path's per-event part with the event's argv, exactly
 * as Sentinel would pass it, plus the watch-only fields (source,
 * sentinel(s), synthetic, and the delivery id that keys its delivery
 * record). So a run has the script-mode contract unchanged: budget,
 * protected handlers, watchdog, delivery records; a crash ends one runner.
 * Exit 1, a signal or a runner that dies mid-event is retried with a
 * doubling delay; at most `concurrency` runs; a master's first attempts
 * start in arrival order; a runner still running its event at budget +
 * margin is killed.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "event.h"
#include "fnv.h"
#include "log.h"
#include "sentinel.h"
#include "watch.h"
#include "watch_metrics.h"

#define KILL_MARGIN 5.0   /* s past the budget: the child's own watchdog fires at +2 */
#define RETRY_FIRST 1.0   /* s; doubles per failed run */
#define RETRY_MAX 60.0
#define DD_RING 65536     /* dedupe entries kept at most (older ones go early) */
#define DD_BUCKETS 131072
#define MAX_RUNNING 256

struct item {
    struct item *prev, *next;   /* the queue, in arrival order */
    struct item *sprev, *snext; /* its Sentinel's share of the queue, in the same order */
    int src;                    /* the Sentinel that reported it first */
    uint64_t seq, reporters;
    char *name, *text, *pod;   /* one allocation, after the struct */
    int synthetic, runs;
    double heard, not_before, started, kill_at;
    double cpu;  /* ms of CPU of its last run (wait4) */
    long faults; /* minor page faults of its last run: the copy-on-write cost of the fork */
    pid_t pid;
};

static struct watch_set *set;
static struct item *head, *tail;  /* waiting, in arrival order (retries at the tail) */
static size_t nwaiting;
/* What each Sentinel has waiting, and what of it was dropped since the last summary line. */
static struct share {
    struct item *head, *tail;
    size_t n;
    uint64_t dropped;
} share[WATCH_MAX_SENTINELS];
static struct {
    uint64_t n;             /* dropped since the last line */
    double since;           /* when the first of them was */
    double last_line;       /* when the last summary was written */
    char last[300];         /* the last one dropped, for the line */
} drops;
static struct item *running[MAX_RUNNING];
static int nrunning;
static uint64_t seq, boot_id;

static struct {
    uint64_t heard, bad, dup, matched, dropped, runs, failed;
    double first, last;
} st;

/* ---------------------------------------------------------------- dedupe */

struct dd {
    uint64_t key, reporters, seq;
    double t;
    int32_t next; /* bucket chain */
};
static struct dd *ring;        /* DD_RING entries */
static int32_t *buckets;       /* DD_BUCKETS chains */
static size_t ring_head, ring_n;

/*
 * The dedupe key: the event's identity (evl_event_identity, docs/watch.md has
 * the table), the one script mode's dedupe.key gives; an event about the
 * reporting Sentinel itself names the reporter. `text` is ev's own.
 */
static uint64_t dedupe_key(const struct evl_event *ev, const char *text, int idx)
{
    char id[EVL_IDENTITY_MAX];
    (void)text;
    size_t n = evl_event_identity(ev, evl_event_own(ev) ? conn_addr(idx) : NULL, id, sizeof id);
    uint64_t h = evl_fnv(id, n < sizeof id ? n : sizeof id - 1, EVL_FNV0);
    return h ? h : 1;
}

static void dd_unlink(size_t at)
{
    int32_t *p = &buckets[ring[at].key % DD_BUCKETS];
    while (*p && (size_t)(*p - 1) != at)
        p = &ring[*p - 1].next;
    if (*p)
        *p = ring[at].next;
}

static void dd_expire(double now)
{
    while (ring_n > 0 && (ring[ring_head].t < now - set->s.dedupe_window || ring_n == DD_RING)) {
        dd_unlink(ring_head);
        ring_head = (ring_head + 1) % DD_RING;
        ring_n--;
    }
}

static struct dd *dd_find(uint64_t key, double now)
{
    for (int32_t i = buckets[key % DD_BUCKETS]; i; i = ring[i - 1].next)
        if (ring[i - 1].key == key)
            return ring[i - 1].t >= now - set->s.dedupe_window ? &ring[i - 1] : NULL;
    return NULL;
}

static void dd_put(uint64_t key, uint64_t reporters, uint64_t s, double now)
{
    dd_expire(now);
    size_t at = (ring_head + ring_n) % DD_RING;
    ring_n++;
    ring[at] = (struct dd){key, reporters, s, now, buckets[key % DD_BUCKETS]};
    buckets[key % DD_BUCKETS] = (int32_t)at + 1; /* newest first */
}

/* ---------------------------------------------------------------- queue */

/*
 * The queue is one list in arrival order (what starts next), and each item
 * is also on its Sentinel's list (what it holds). When the queue is full,
 * the Sentinel holding the most loses its oldest: a Sentinel that floods
 * drops its own events, never another's, unless all hold the same share.
 */
static void unlink_item(struct item *it)
{
    struct share *sh = &share[it->src];
    if (it->prev)
        it->prev->next = it->next;
    else
        head = it->next;
    if (it->next)
        it->next->prev = it->prev;
    else
        tail = it->prev;
    if (it->sprev)
        it->sprev->snext = it->snext;
    else
        sh->head = it->snext;
    if (it->snext)
        it->snext->sprev = it->sprev;
    else
        sh->tail = it->sprev;
    it->prev = it->next = it->sprev = it->snext = NULL;
    sh->n--;
    nwaiting--;
}

static void append(struct item *it)
{
    struct share *sh = &share[it->src];
    it->prev = tail;
    it->next = NULL;
    if (tail)
        tail->next = it;
    else
        head = it;
    tail = it;
    it->sprev = sh->tail;
    it->snext = NULL;
    if (sh->tail)
        sh->tail->snext = it;
    else
        sh->head = it;
    sh->tail = it;
    sh->n++;
    nwaiting++;
}

static void prepend(struct item *it)
{
    struct share *sh = &share[it->src];
    it->prev = NULL;
    it->next = head;
    if (head)
        head->prev = it;
    else
        tail = it;
    head = it;
    it->sprev = NULL;
    it->snext = sh->head;
    if (sh->head)
        sh->head->sprev = it;
    else
        sh->tail = it;
    sh->head = it;
    sh->n++;
    nwaiting++;
}

/* One line for what was dropped since the last: at most one a second. */
static void drops_line(double now)
{
    char who[1024];
    size_t o = 0;
    if (!drops.n)
        return;
    who[0] = '\0';
    for (int i = 0; i < WATCH_MAX_SENTINELS; i++) {
        if (!share[i].dropped)
            continue;
        int n = snprintf(who + o, sizeof who - o, "%s%s %" PRIu64, o ? ", " : "", conn_addr(i),
                         share[i].dropped);
        if (n > 0 && (size_t)n < sizeof who - o)
            o += (size_t)n;
        share[i].dropped = 0;
    }
    evl_log(EVL_ERROR, "watch: queue full (%d events waiting): dropped %" PRIu64 " event(s) in "
            "%.1f s, each the oldest of the Sentinel holding the most: %s; the last: %s", set->s.queue,
            drops.n, now - drops.since, who, drops.last);
    drops.n = 0;
    drops.last_line = now;
}

/* Make room for one: the Sentinel with the most waiting (`src` on a tie) loses its oldest. */
static void make_room(int src, double now)
{
    while (nwaiting >= (size_t)set->s.queue && head) {
        int victim = src;
        for (int i = 0; i < WATCH_MAX_SENTINELS; i++)
            if (share[i].n > share[victim].n)
                victim = i;
        struct item *old = share[victim].head;
        if (!old)
            break;
        unlink_item(old);
        st.dropped++;
        if (drops.n++ == 0)
            drops.since = now;
        share[victim].dropped++;
        snprintf(drops.last, sizeof drops.last, "%s pod=%s (heard %.1f s ago, %d run(s) so far)",
                 old->name, old->pod ? old->pod : "-", now - old->heard, old->runs);
        free(old);
    }
    if (drops.n && now - drops.last_line >= 1.0)
        drops_line(now);
}

static void reporters_text(uint64_t mask, char *out, size_t cap, int first_only)
{
    size_t o = 0;
    out[0] = '\0';
    for (int i = 0; i < WATCH_MAX_SENTINELS && i < conn_count(); i++)
        if (mask & (1ULL << i)) {
            int n = snprintf(out + o, cap - o, "%s%s", o ? "," : "", conn_addr(i));
            if (n < 0 || (size_t)n >= cap - o || first_only)
                break;
            o += (size_t)n;
        }
}

static void enqueue(const struct evl_event *ev, const char *name, const char *text, int idx,
                    int synthetic, uint64_t s, double now)
{
    size_t ln = strlen(name) + 1, lt = strlen(text) + 1, lp = ev->pod ? strlen(ev->pod) + 1 : 0;
    struct item *it = calloc(1, sizeof *it + ln + lt + lp);
    if (!it) {
        evl_log(EVL_ERROR, "watch: out of memory: %s %s not queued", name, text);
        return;
    }
    it->name = (char *)(it + 1);
    memcpy(it->name, name, ln);
    it->text = it->name + ln;
    memcpy(it->text, text, lt);
    if (lp) {
        it->pod = it->text + lt;
        memcpy(it->pod, ev->pod, lp);
    }
    it->seq = s;
    it->src = idx % WATCH_MAX_SENTINELS;
    it->reporters = 1ULL << it->src;
    it->synthetic = synthetic;
    it->heard = it->not_before = now;
    make_room(it->src, now);
    append(it);
}

/* A duplicate report: add the reporter to the item if it has not started. */
static void merge_reporter(uint64_t s, int idx)
{
    for (struct item *it = tail; it; it = it->prev)
        if (it->seq == s) {
            if (it->runs == 0)
                it->reporters |= 1ULL << (idx % WATCH_MAX_SENTINELS);
            return;
        }
}

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void run_intake(int idx, const char *name, const char *text, int synthetic)
{
    static struct evl_event ev; /* ~4 KiB: off the stack */
    char err[512];
    double now = watch_now();
    st.heard++;
    if (!st.first)
        st.first = now;
    st.last = now;
    if (evl_parse_notification(&ev, name, text, err, sizeof err) < 0) {
        st.bad++;
        evl_log(EVL_WARN, "watch: sentinel %s: unusable message on channel %.64s: %s; ignored",
                conn_addr(idx), name, err);
        return;
    }
    metrics_heard(ev.name);
    if (!synthetic && strcmp(ev.name, "+switch-master") == 0 && ev.pod && ev.new_master.ip) {
        char to[320];
        conn_master_moved(ev.pod, ev.new_master.ip, ev.new_master.port);
        evl_sentinel_format_addr(to, sizeof to, ev.new_master.ip, (int)ev.new_master.port);
        metrics_failover(ev.pod, to, wall_now());
    }
    if (set->s.discover) {
        if (strcmp(ev.name, "+sentinel") == 0 && ev.instance.addr.ip) {
            char a[320];
            evl_sentinel_format_addr(a, sizeof a, ev.instance.addr.ip, (int)ev.instance.addr.port);
            conn_add(a);
        } else if (strcmp(ev.name, "-dup-sentinel") == 0 ||
                   strcmp(ev.name, "+sentinel-address-switch") == 0) {
            conn_rediscover();
        }
    }
    if (!watch_wants_master(set, ev.pod))
        return;
    /* only what some handler matches takes a slot in the dedupe ring: a flood
       of events nobody handles cannot push out the ones that run */
    if (!watch_matches(set, ev.name))
        return;
    uint64_t key = dedupe_key(&ev, text, idx), bit = 1ULL << (idx % WATCH_MAX_SENTINELS);
    struct dd *d = dd_find(key, now);
    if (d && !(d->reporters & bit)) {
        d->reporters |= bit;
        st.dup++;
        merge_reporter(d->seq, idx);
        return;
    }
    /* new, or the same reporter saying it again: a new occurrence */
    uint64_t s = ++seq;
    dd_put(key, bit, s, now);
    st.matched++;
    enqueue(&ev, name, text, idx, synthetic, s, now);
}

/* ---------------------------------------------------------------- runners */

/*
 * A runner is a fork of the watcher that handles up to `reuse` events, one
 * at a time. Its first event is the one it was forked for (in memory); the
 * next ones come on its own pipe as a frame (u32 length; the synthetic flag;
 * name, text, sentinel, sentinels, delivery, each NUL-ended), and each
 * answer goes back on one pipe shared by all runners as a struct reply (one
 * write, smaller than PIPE_BUF: never torn or mixed). A runner ends when its
 * pipe is closed (reuse reached, a reload, the stop) or when it dies; with
 * reuse = 1 it has no pipe and its exit status is the event's.
 */
struct runner {
    pid_t pid;
    int to;            /* the write end of its event pipe; -1: none, or told to exit */
    struct item *it;   /* the event it runs; NULL: idle */
    int handled, reuse;
    int stale;         /* forked from a set replaced since: exits after its event */
};

struct reply {
    int32_t pid, code;
    double cpu;        /* ms of CPU of the event (and the collection after it) */
    int64_t faults;
    double secs;       /* the event call's own time, without the fork or the collection after it */
};

#define MAX_RUNNERS 1024
static struct runner runners[MAX_RUNNERS];
static int nrunners;
static int replies[2] = {-1, -1};

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

static int writeall(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

static int readall(int fd, void *p, size_t n)
{
    char *c = p;
    while (n > 0) {
        ssize_t r = read(fd, c, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        c += r;
        n -= (size_t)r;
    }
    return 0;
}

static double cpu_ms(const struct rusage *ru)
{
    return (double)(ru->ru_utime.tv_sec + ru->ru_stime.tv_sec) * 1e3 +
           (double)(ru->ru_utime.tv_usec + ru->ru_stime.tv_usec) / 1e3;
}

/* The runner's side: its first event, then the ones its pipe brings, until EOF. */
static _Noreturn void runner_main(struct item *it, const char *first, const char *all,
                                  const char *delivery, int in, int reuse, const sigset_t *mask)
{
    /* the other runners' pipes are the watcher's: holding one would keep that runner alive */
    for (int i = 0; i < nrunners; i++)
        if (runners[i].to >= 0)
            close(runners[i].to);
    close(replies[0]);
    watch_child_begin();
    struct rusage r0, r1;
    getrusage(RUSAGE_SELF, &r0);
    char *argv[] = {"eventilator", it->name, it->text, NULL};
    double t0 = watch_now();
    int code = watch_event(argv, first, all, delivery, it->synthetic, mask);
    double secs = watch_now() - t0;
    if (reuse == 1)
        _exit(code); /* one fork per event: the exit status is the answer */
    char *buf = NULL;
    size_t cap = 0;
    for (;;) {
        watch_event_reset(); /* before the answer: a failed event's record is unlocked for its retry */
        getrusage(RUSAGE_SELF, &r1);
        struct reply rp = {(int32_t)getpid(), code, cpu_ms(&r1) - cpu_ms(&r0),
                           (int64_t)(r1.ru_minflt - r0.ru_minflt), secs};
        if (writeall(replies[1], &rp, sizeof rp) < 0)
            _exit(0);
        uint32_t len;
        if (readall(in, &len, sizeof len) < 0)
            _exit(0); /* the watcher closed the pipe: done */
        if (len > cap) {
            free(buf);
            cap = len;
            if (!(buf = malloc(cap)))
                _exit(1);
        }
        if (len < 6 || readall(in, buf, len) < 0 || buf[len - 1] != '\0')
            _exit(1);
        getrusage(RUSAGE_SELF, &r0);
        t0 = watch_now();
        char *f[5], *p = buf + 1, *end = buf + len;
        for (int i = 0; i < 5; i++) { /* a missing field reads as "" (buf ends with a NUL) */
            f[i] = p < end ? p : end - 1;
            p = (char *)memchr(f[i], '\0', (size_t)(end - f[i])) + 1;
        }
        char *ev_argv[] = {"eventilator", f[0], f[1], NULL};
        code = watch_event(ev_argv, f[2], f[3], f[4], buf[0] == '1', NULL);
        secs = watch_now() - t0;
    }
}

/* Give the event to an idle runner: 0, or -1 (that runner is gone, retired). */
static int send_event(struct runner *r, struct item *it, const char *first, const char *all,
                      const char *delivery)
{
    const char *f[5] = {it->name, it->text, first, all, delivery};
    size_t n = 1;
    for (int i = 0; i < 5; i++)
        n += strlen(f[i]) + 1;
    char *m = malloc(4 + n);
    if (!m)
        return -1;
    uint32_t len = (uint32_t)n;
    memcpy(m, &len, 4);
    size_t o = 4;
    m[o++] = it->synthetic ? '1' : '0';
    for (int i = 0; i < 5; i++) {
        size_t l = strlen(f[i]) + 1;
        memcpy(m + o, f[i], l);
        o += l;
    }
    int rc = writeall(r->to, m, o);
    free(m);
    if (rc < 0) {
        evl_log(EVL_WARN, "watch: runner %ld: cannot pass it an event (%s): replaced",
                (long)r->pid, strerror(errno));
        retire(r);
        kill(r->pid, SIGKILL);
    }
    return rc;
}

/* A new runner, forked from the current set with `it` as its first event. */
static pid_t fork_runner(struct item *it, const char *first, const char *all,
                         const char *delivery)
{
    int p[2] = {-1, -1};
    int reuse = set->s.reuse;
    if (nrunners >= MAX_RUNNERS) {
        errno = EAGAIN;
        return -1;
    }
    if (reuse > 1 && pipe(p) < 0)
        return -1;
    for (int i = 0; i < 2; i++)
        if (p[i] >= 0)
            fcntl(p[i], F_SETFD, FD_CLOEXEC);
    fflush(NULL); /* nothing the watcher buffered is written twice by the child's fflush */
    /* until the child has its own handlers, a signal waits (watch_event unblocks it) */
    sigset_t sigs, old;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    sigaddset(&sigs, SIGUSR1);
    sigaddset(&sigs, SIGCHLD);
    sigprocmask(SIG_BLOCK, &sigs, &old);
    pid_t pid = fork();
    if (pid == 0) {
        if (p[1] >= 0)
            close(p[1]);
        runner_main(it, first, all, delivery, p[0], reuse, &old);
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
    if (p[0] >= 0)
        close(p[0]);
    if (pid < 0) {
        if (p[1] >= 0)
            close(p[1]);
        return -1;
    }
    runners[nrunners++] = (struct runner){pid, p[1], it, 1, reuse, 0};
    return pid;
}

/* Runners that take a share of `concurrency`: busy, or idle and not told to exit. */
static int active_runners(struct runner **idle)
{
    int n = 0;
    *idle = NULL;
    for (int i = 0; i < nrunners; i++) {
        struct runner *r = &runners[i];
        if (r->it) {
            n++;
        } else if (r->to >= 0 && !r->stale) {
            n++;
            if (!*idle)
                *idle = r;
        }
    }
    return n;
}

/* Start `it` on an idle runner, or on a new one; 0, or -1 (it waits again). */
static int start(struct item *it, double now, int cap)
{
    char first[400], all[4096], delivery[64];
    reporters_text(it->reporters, first, sizeof first, 1);
    reporters_text(it->reporters, all, sizeof all, 0);
    snprintf(delivery, sizeof delivery, "%016" PRIx64 "-%" PRIu64, boot_id, it->seq);
    it->runs++;
    struct runner *idle;
    int active = active_runners(&idle);
    pid_t pid;
    if (idle) {
        if (send_event(idle, it, first, all, delivery) < 0) {
            it->runs--;
            prepend(it);
            return -1;
        }
        idle->it = it;
        idle->handled++;
        pid = idle->pid;
    } else if (active < cap) {
        pid = fork_runner(it, first, all, delivery);
        if (pid < 0) {
            evl_log(EVL_ERROR, "watch: fork: %s; %s retried in 1 s", strerror(errno), it->name);
            it->runs--;
            it->not_before = now + 1;
            append(it);
            return -1;
        }
    } else {
        it->runs--;
        prepend(it);
        return -1;
    }
    st.runs++;
    it->pid = pid;
    it->started = now;
    it->kill_at = now + set->s.budget + KILL_MARGIN;
    running[nrunning++] = it;
    evl_log(EVL_DEBUG, "watch: run %s pod=%s delivery=%s run=%d sentinels=%s%s runner=%ld",
            it->name, it->pod ? it->pod : "-", delivery, it->runs, all,
            it->synthetic ? " synthetic" : "", (long)pid);
    return 0;
}

/*
 * A run ended with exit `code` or signal `sig`: done, retried or given up.
 * secs: the event call's time as its runner measured it, or < 0 when only
 * the watcher's clock knows (a fork per event, a runner that died).
 */
static void finished(struct item *it, int code, int sig, double now, double secs)
{
    for (int i = 0; i < nrunning; i++)
        if (running[i] == it) {
            running[i] = running[--nrunning];
            break;
        }
    double ms = (now - it->started) * 1e3;
    metrics_run(it->name, code, sig, secs >= 0 ? secs : ms / 1e3);
    if (code == 0 && !sig) {
        evl_log(EVL_DEBUG, "watch: %s pod=%s done, run %d, %.1f ms (cpu %.1f ms, %ld page faults)",
                it->name, it->pod ? it->pod : "-", it->runs, ms, it->cpu, it->faults);
        free(it);
        return;
    }
    st.failed++;
    if ((code == 1 || sig) && it->runs <= set->s.retries && !watch_stopping) {
        double delay = RETRY_FIRST;
        for (int i = 1; i < it->runs && delay < RETRY_MAX; i++)
            delay *= 2;
        if (delay > RETRY_MAX)
            delay = RETRY_MAX;
        evl_log(EVL_WARN, "watch: %s pod=%s failed (%s %d) on run %d; retried in %.0f s", it->name,
                it->pod ? it->pod : "-", sig ? "signal" : "exit", sig ? sig : code, it->runs, delay);
        it->not_before = now + delay;
        append(it);
        return;
    }
    evl_log(EVL_ERROR, "watch: %s pod=%s failed (%s %d) on run %d; given up", it->name,
            it->pod ? it->pod : "-", sig ? "signal" : "exit", sig ? sig : code, it->runs);
    free(it);
}

/* The answers in the shared pipe: each ends its runner's run. */
static void read_replies(double now)
{
    struct reply rp[64];
    ssize_t n;
    while ((n = read(replies[0], rp, sizeof rp)) > 0) {
        for (size_t i = 0; i < (size_t)n / sizeof rp[0]; i++) {
            struct runner *r = runner_of(rp[i].pid);
            if (!r || !r->it)
                continue;
            struct item *it = r->it;
            r->it = NULL;
            it->cpu = rp[i].cpu;
            it->faults = (long)rp[i].faults;
            if (r->handled >= r->reuse || r->stale || watch_stopping)
                retire(r);
            finished(it, rp[i].code, 0, now, rp[i].secs);
        }
    }
}

/* Reap ended runners, kill hung ones; returns seconds to the earliest kill time. */
static double reap(double now)
{
    double next = 10;
    read_replies(now);
    int ws;
    struct rusage ru;
    pid_t pid;
    while ((pid = wait4(-1, &ws, WNOHANG, &ru)) > 0) {
        struct runner *r = runner_of(pid);
        if (!r) {
            sink_reaped(pid, ws); /* the cluster's appender or worker (watch_sink.c) */
            continue;
        }
        if (r->it)
            read_replies(now); /* its answer, written before it exited */
        struct item *it = r->it;
        int reuse = r->reuse;
        retire(r);
        *r = runners[--nrunners];
        if (!it)
            continue;
        it->cpu = cpu_ms(&ru);
        it->faults = ru.ru_minflt;
        if (reuse == 1) { /* the exit status is the event's, as a script call's */
            finished(it, WIFEXITED(ws) ? WEXITSTATUS(ws) : -1, WIFSIGNALED(ws) ? WTERMSIG(ws) : 0, now, -1);
        } else {
            evl_log(EVL_WARN, "watch: runner %ld ended during %s pod=%s (%s %d): the run failed",
                    (long)pid, it->name, it->pod ? it->pod : "-",
                    WIFSIGNALED(ws) ? "signal" : "exit", WIFSIGNALED(ws) ? WTERMSIG(ws) : WEXITSTATUS(ws));
            finished(it, 1, WIFSIGNALED(ws) ? WTERMSIG(ws) : 0, now, -1);
        }
    }
    for (int i = 0; i < nrunning; i++) {
        struct item *it = running[i];
        if (now >= it->kill_at) {
            evl_log(EVL_ERROR, "watch: %s pod=%s still running %.0f s after its budget: killed",
                    it->name, it->pod ? it->pod : "-", now - it->started - set->s.budget);
            struct runner *r = runner_of(it->pid);
            if (r)
                retire(r);
            kill(it->pid, SIGKILL);
            it->kill_at = now + 1;
        }
        if (it->kill_at - now < next)
            next = it->kill_at - now;
    }
    return next;
}

/* Small open-addressed set of pod hashes, for one pass over the queue. */
#define BUSY_SLOTS 1024
static uint64_t busy[BUSY_SLOTS];
static int nbusy;

static int busy_has(uint64_t h)
{
    for (unsigned i = (unsigned)(h % BUSY_SLOTS); busy[i]; i = (i + 1) % BUSY_SLOTS)
        if (busy[i] == h)
            return 1;
    return 0;
}

static void busy_add(uint64_t h)
{
    if (nbusy >= BUSY_SLOTS / 2 || busy_has(h))
        return;
    unsigned i = (unsigned)(h % BUSY_SLOTS);
    while (busy[i])
        i = (i + 1) % BUSY_SLOTS;
    busy[i] = h;
    nbusy++;
}

static uint64_t pod_hash(const struct item *it)
{
    return it->pod ? evl_fnv(it->pod, strlen(it->pod), EVL_FNV0) | 1 : 0;
}

/* Cluster mode: the queue goes to the appender, in arrival order, as far as its pipe takes it. */
static void feed_sink(void)
{
    while (head && sink_item(head->name, head->text, conn_addr(head->src), head->heard, head->seq,
                             head->synthetic)) {
        struct item *it = head;
        unlink_item(it);
        st.runs++;
        free(it);
    }
}

double run_tick(double now)
{
    double next = reap(now);
    if (drops.n) { /* drops wait for their summary line, a second after the last */
        if (now - drops.last_line >= 1.0)
            drops_line(now);
        else if (drops.last_line + 1.0 - now < next)
            next = drops.last_line + 1.0 - now;
    }
    if (watch_stopping)
        return next;
    if (sink_on()) {
        feed_sink();
        return next;
    }
    int cap = set->s.concurrency < MAX_RUNNING ? set->s.concurrency : MAX_RUNNING;
    if (nrunning >= cap || !head)
        return next;
    if (!watch_fork_ok(now))
        return next < 0.1 ? next : 0.1;
    memset(busy, 0, sizeof busy);
    nbusy = 0;
    for (int i = 0; i < nrunning; i++)
        if (running[i]->pod)
            busy_add(pod_hash(running[i]));
    for (struct item *it = head, *nx; it && nrunning < cap && nbusy < BUSY_SLOTS / 2; it = nx) {
        nx = it->next;
        uint64_t ph = pod_hash(it);
        if (it->not_before > now) {
            if (it->not_before - now < next)
                next = it->not_before - now;
            continue;
        }
        if (ph && busy_has(ph))
            continue; /* its master has a run going, or an earlier event waiting */
        unlink_item(it);
        if (start(it, now, cap) < 0)
            break;
        if (ph)
            busy_add(ph); /* a master's later events wait for this one */
    }
    return next;
}

int run_busy(void)
{
    return nrunning;
}

void run_drain(void)
{
    size_t n = 0;
    drops_line(watch_now());
    if (sink_on())
        feed_sink(); /* what the appender's pipe still takes is appended */
    for (int i = 0; i < nrunners; i++)
        if (!runners[i].it)
            retire(&runners[i]);
    while (head) {
        struct item *it = head;
        unlink_item(it);
        free(it);
        n++;
    }
    evl_log(EVL_INFO, "watch: stopping: %zu queued event(s) dropped, %d run(s) allowed to finish",
            n, nrunning);
}

void run_stats(void)
{
    double span = st.last - st.first;
    evl_log(EVL_INFO, "watch: stats heard=%" PRIu64 " unusable=%" PRIu64 " duplicates=%" PRIu64
            " matched=%" PRIu64 " dropped=%" PRIu64 " runs=%" PRIu64 " failed_runs=%" PRIu64
            " waiting=%zu running=%d intake_per_s=%.0f runners=%d", st.heard, st.bad, st.dup,
            st.matched, st.dropped, st.runs, st.failed, nwaiting, nrunning,
            span > 0 ? (double)(st.heard - 1) / span : 0.0, nrunners);
}

uint64_t run_intake_count(void)
{
    return st.heard;
}

void run_counts(struct run_counts *c)
{
    *c = (struct run_counts){st.heard, st.bad, st.dup, st.dropped, nwaiting, nrunning, nrunners};
}

/* A reload: runners of the old set exit, idle ones now, busy ones after their event. */
void run_settings(struct watch_set *s)
{
    set = s;
    for (int i = 0; i < nrunners; i++) {
        runners[i].stale = 1;
        if (!runners[i].it)
            retire(&runners[i]);
    }
}

int run_pollfd(void)
{
    return replies[0];
}

/* The watcher exits: every runner is told to, and reaped (killed past 2 s). */
void run_end(void)
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

void run_init(struct watch_set *s)
{
    set = s;
    if (pipe(replies) < 0) {
        evl_log(EVL_ERROR, "watch: pipe: %s", strerror(errno));
        exit(1);
    }
    fcntl(replies[0], F_SETFL, O_NONBLOCK);
    fcntl(replies[0], F_SETFD, FD_CLOEXEC);
    fcntl(replies[1], F_SETFD, FD_CLOEXEC);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    boot_id = ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 44);
    /* the dedupe ring is fixed: fault it in now, so memory does not creep as it fills */
    ring = watch_nofork_alloc(DD_RING * sizeof *ring);
    buckets = watch_nofork_alloc(DD_BUCKETS * sizeof *buckets);
}
