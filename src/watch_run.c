/*
 * watch_run.c: from a heard event to a finished run of its handlers.
 *
 * Intake (every message): parse with the script-mode parser, remember it
 * in the dedupe ring, ask the name cache whether any handler matches. Only
 * an event with a matching handler becomes an item in the queue. Nothing on
 * this path allocates per event except the queued item, so intake stays
 * fast and memory stays flat (docs/watch.md, bench/watch.sh).
 *
 * Runs: each item is one fork() of the watcher, without exec: the child
 * holds the preloaded config and rules (watch.c) and runs the event path's
 * per-event part with the event's argv, exactly as Sentinel would pass it,
 * plus the watch-only fields (source, sentinel(s), synthetic, and the
 * delivery id that keys its delivery record). So a run has the script-mode
 * contract unchanged: budget, protected handlers, watchdog, delivery
 * records, its own process (a crash or a leak ends with it).
 * Exit 1 or a signal is retried with a doubling delay; at most
 * `concurrency` children; a master's first attempts start in arrival order;
 * a child still running at budget + margin is killed.
 */
#include <errno.h>
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
#include "log.h"
#include "sentinel.h"
#include "watch.h"

#define KILL_MARGIN 5.0   /* s past the budget: the child's own watchdog fires at +2 */
#define RETRY_FIRST 1.0   /* s; doubles per failed run */
#define RETRY_MAX 60.0
#define DD_RING 65536     /* dedupe entries kept at most (older ones go early) */
#define DD_BUCKETS 131072
#define MAX_RUNNING 256

struct item {
    struct item *prev, *next;
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

static uint64_t fnv(const void *p, size_t n, uint64_t h)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

/*
 * The dedupe key: name and description, except what differs between
 * reporters of one fact (docs/watch.md has the table). Events about the
 * reporting Sentinel itself include the reporter.
 */
static uint64_t dedupe_key(const struct evl_event *ev, const char *text, int idx)
{
    static const char *const own[] = {"+tilt", "-tilt", "-script-error", "-script-timeout",
                                      "+vote-for-leader", "-failover-abort-not-elected", NULL};
    uint64_t h = fnv(ev->name, strlen(ev->name) + 1, 0xcbf29ce484222325ULL);
    size_t n = strlen(text);
    if (strcmp(ev->name, "+odown") == 0) {
        const char *q = strstr(text, " #quorum ");
        if (q)
            n = (size_t)(q - text);
    }
    h = fnv(text, n, h);
    for (int i = 0; own[i]; i++)
        if (strcmp(ev->name, own[i]) == 0) {
            const char *a = conn_addr(idx);
            h = fnv(a, strlen(a), h ^ 0xff);
        }
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

static void unlink_item(struct item *it)
{
    if (it->prev)
        it->prev->next = it->next;
    else
        head = it->next;
    if (it->next)
        it->next->prev = it->prev;
    else
        tail = it->prev;
    it->prev = it->next = NULL;
    nwaiting--;
}

static void append(struct item *it)
{
    it->prev = tail;
    it->next = NULL;
    if (tail)
        tail->next = it;
    else
        head = it;
    tail = it;
    nwaiting++;
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
    it->reporters = 1ULL << (idx % WATCH_MAX_SENTINELS);
    it->synthetic = synthetic;
    it->heard = it->not_before = now;
    while (nwaiting >= (size_t)set->s.queue && head) {
        struct item *old = head;
        unlink_item(old);
        st.dropped++;
        evl_log(EVL_ERROR, "watch: queue full (%d events waiting): dropped the oldest, %s pod=%s "
                "(heard %.1f s ago, %d run(s) so far)", set->s.queue, old->name,
                old->pod ? old->pod : "-", now - old->heard, old->runs);
        free(old);
    }
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
    if (!synthetic && strcmp(ev.name, "+switch-master") == 0 && ev.pod && ev.new_master.ip)
        conn_master_moved(ev.pod, ev.new_master.ip, ev.new_master.port);
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
    uint64_t key = dedupe_key(&ev, text, idx), bit = 1ULL << (idx % WATCH_MAX_SENTINELS);
    struct dd *d = dd_find(key, now);
    if (d && !(d->reporters & bit)) {
        d->reporters |= bit;
        st.dup++;
        if (d->seq)
            merge_reporter(d->seq, idx);
        return;
    }
    /* new, or the same reporter saying it again: a new occurrence */
    int hit = watch_matches(set, ev.name);
    uint64_t s = hit ? ++seq : 0;
    dd_put(key, bit, s, now);
    if (!hit)
        return;
    st.matched++;
    enqueue(&ev, name, text, idx, synthetic, s, now);
}

/* ---------------------------------------------------------------- children */

static void start(struct item *it, double now)
{
    char first[400], all[4096], delivery[64];
    reporters_text(it->reporters, first, sizeof first, 1);
    reporters_text(it->reporters, all, sizeof all, 0);
    snprintf(delivery, sizeof delivery, "%016" PRIx64 "-%" PRIu64, boot_id, it->seq);
    it->runs++;
    fflush(NULL); /* nothing the watcher buffered is written twice by the child's fflush */
    /* until the child has its own handlers, a signal waits (watch_child unblocks it) */
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
        char *argv[] = {"eventilator", it->name, it->text, NULL};
        _exit(watch_child(argv, first, all, delivery, it->synthetic, &old));
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
    if (pid < 0) {
        evl_log(EVL_ERROR, "watch: fork: %s; %s retried in 1 s", strerror(errno), it->name);
        it->runs--;
        it->not_before = now + 1;
        append(it);
        return;
    }
    st.runs++;
    it->pid = pid;
    it->started = now;
    it->kill_at = now + set->s.budget + KILL_MARGIN;
    running[nrunning++] = it;
    evl_log(EVL_DEBUG, "watch: run %s pod=%s delivery=%s run=%d sentinels=%s%s", it->name,
            it->pod ? it->pod : "-", delivery, it->runs, all, it->synthetic ? " synthetic" : "");
}

/* A child ended with status `ws`: done, retried or given up. */
static void finished(struct item *it, int ws, double now)
{
    int code = WIFEXITED(ws) ? WEXITSTATUS(ws) : -1;
    int sig = WIFSIGNALED(ws) ? WTERMSIG(ws) : 0;
    double ms = (now - it->started) * 1e3;
    if (code == 0) {
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

/* Reap and kill; returns seconds to the earliest kill time. */
static double reap(double now)
{
    double next = 10;
    for (int i = 0; i < nrunning;) {
        struct item *it = running[i];
        int ws;
        struct rusage ru;
        memset(&ru, 0, sizeof ru);
        pid_t r = wait4(it->pid, &ws, WNOHANG, &ru);
        if (r == it->pid || (r < 0 && errno == ECHILD)) {
            running[i] = running[--nrunning];
            it->cpu = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
                      (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
            it->faults = ru.ru_minflt;
            finished(it, r < 0 ? 0 : ws, now);
            continue;
        }
        if (now >= it->kill_at) {
            evl_log(EVL_ERROR, "watch: %s pod=%s still running %.0f s after its budget: killed",
                    it->name, it->pod ? it->pod : "-", now - it->started - set->s.budget);
            kill(it->pid, SIGKILL);
            it->kill_at = now + 1;
        }
        if (it->kill_at - now < next)
            next = it->kill_at - now;
        i++;
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
    return it->pod ? fnv(it->pod, strlen(it->pod), 0xcbf29ce484222325ULL) | 1 : 0;
}

double run_tick(double now)
{
    double next = reap(now);
    if (watch_stopping)
        return next;
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
        start(it, now);
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
            " waiting=%zu running=%d intake_per_s=%.0f", st.heard, st.bad, st.dup, st.matched,
            st.dropped, st.runs, st.failed, nwaiting, nrunning,
            span > 0 ? (double)(st.heard - 1) / span : 0.0);
}

uint64_t run_intake_count(void)
{
    return st.heard;
}

void run_settings(struct watch_set *s)
{
    set = s;
}

void run_init(struct watch_set *s)
{
    set = s;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    boot_id = ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 44);
    /* the dedupe ring is fixed: fault it in now, so memory does not creep as it fills */
    ring = watch_nofork_alloc(DD_RING * sizeof *ring);
    buckets = watch_nofork_alloc(DD_BUCKETS * sizeof *buckets);
}
