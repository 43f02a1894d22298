/*
 * intake.c: from a heard event to a finished run of its handlers. Every
 * message is parsed (event.c) and matched through the set's name cache;
 * only what a handler matches takes a slot in the dedupe ring and, unless a
 * duplicate, the queue. Nothing on this path allocates but the queued item,
 * so intake stays fast and memory flat (bench/watch.sh). When the queue is
 * full, the Sentinel holding the most loses its oldest, one log line a
 * second. A run is one event call in a runner (runner.c): exit 1, a signal
 * or a runner's death is retried, doubling the delay; at most
 * `concurrency` run; a master's events start in arrival order. What an
 * event asks of the connections is returned to conn.c: this file never
 * calls up.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "deadline.h"
#include "event.h"
#include "fnv.h"
#include "intake.h"
#include "log.h"
#include "metrics.h"
#include "runner.h"
#include "sentinel.h"
#include "sink.h"

#define RETRY_FIRST 1.0   /* s; doubles per failed run */
#define RETRY_MAX 60.0
#define DD_RING 65536     /* dedupe entries kept at most (older ones go early) */
#define DD_BUCKETS 131072
#define MAX_RUNNING 256

enum { Q, S }; /* an item's two lists: the queue, and its Sentinel's share of it */

struct item {
    struct item *prev[2], *next[2]; /* on each list, in arrival order */
    int src;                    /* the Sentinel that reported it first */
    uint64_t seq, reporters;
    char *name, *text, *pod;   /* one allocation, after the struct */
    int synthetic, runs;
    double heard, not_before, started;
};

struct list {
    struct item *head, *tail;
};

static struct watch_set *set;
static struct list queue; /* waiting, in arrival order (retries at the tail) */
static size_t nwaiting;
/* What each Sentinel has waiting, and what of it was dropped since the last summary line. */
static struct share {
    struct list l;
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
static int stopping;
static char names[WATCH_MAX_SENTINELS][320]; /* the Sentinels' addresses, by index (conn.c) */
static int nnames;

static struct {
    uint64_t heard, bad, dup, matched, dropped, runs, failed;
    double first, last;
} st;

static const char *name_of(int idx)
{
    return idx >= 0 && idx < nnames ? names[idx] : "-";
}

void intake_name(int idx, const char *addr)
{
    if (idx < 0 || idx >= WATCH_MAX_SENTINELS)
        return;
    snprintf(names[idx], sizeof names[idx], "%s", addr);
    if (idx >= nnames)
        nnames = idx + 1;
}

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
    size_t n = evl_event_identity(ev, evl_event_own(ev) ? name_of(idx) : NULL, id, sizeof id);
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
static void cut(struct list *l, struct item *it, int k)
{
    *(it->prev[k] ? &it->prev[k]->next[k] : &l->head) = it->next[k];
    *(it->next[k] ? &it->next[k]->prev[k] : &l->tail) = it->prev[k];
    it->prev[k] = it->next[k] = NULL;
}

/* it onto l, at its head (first) or its tail. */
static void put(struct list *l, struct item *it, int k, int first)
{
    struct item *nb = first ? l->head : l->tail; /* its neighbour-to-be */
    it->prev[k] = first ? NULL : nb;
    it->next[k] = first ? nb : NULL;
    if (!nb)
        l->head = l->tail = it;
    else if (first)
        nb->prev[k] = l->head = it;
    else
        nb->next[k] = l->tail = it;
}

static void unlink_item(struct item *it)
{
    cut(&queue, it, Q);
    cut(&share[it->src].l, it, S);
    share[it->src].n--;
    nwaiting--;
}

/* Waiting again: at the tail (a new event, a retry), or at the head (it could not start yet). */
static void wait_item(struct item *it, int first)
{
    put(&queue, it, Q, first);
    put(&share[it->src].l, it, S, first);
    share[it->src].n++;
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
        int n = snprintf(who + o, sizeof who - o, "%s%s %" PRIu64, o ? ", " : "", name_of(i),
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
    while (nwaiting >= (size_t)set->s.queue && queue.head) {
        int victim = src;
        for (int i = 0; i < WATCH_MAX_SENTINELS; i++)
            if (share[i].n > share[victim].n)
                victim = i;
        struct item *old = share[victim].l.head;
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
    for (int i = 0; i < WATCH_MAX_SENTINELS && i < nnames; i++)
        if (mask & (1ULL << i)) {
            int n = snprintf(out + o, cap - o, "%s%s", o ? "," : "", name_of(i));
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
    wait_item(it, 0);
}

/* A duplicate report: add the reporter to the item if it has not started. */
static void merge_reporter(uint64_t s, int idx)
{
    for (struct item *it = queue.tail; it; it = it->prev[Q])
        if (it->seq == s) {
            if (it->runs == 0)
                it->reporters |= 1ULL << (idx % WATCH_MAX_SENTINELS);
            return;
        }
}

struct intake_action intake_event(int idx, const char *name, const char *text, int synthetic)
{
    static struct evl_event ev; /* ~4 KiB: off the stack; the action points into it */
    struct intake_action a = {INTAKE_NOTHING, NULL, NULL, 0};
    char err[512];
    double now = evl_monotonic();
    st.heard++;
    if (!st.first)
        st.first = now;
    st.last = now;
    if (evl_parse_notification(&ev, name, text, err, sizeof err) < 0) {
        st.bad++;
        evl_log(EVL_WARN, "watch: sentinel %s: unusable message on channel %.64s: %s; ignored",
                name_of(idx), name, err);
        return a;
    }
    metrics_heard(ev.name);
    /* what the connections must do about it: a master that moved, discovery */
    if (!synthetic && strcmp(ev.name, "+switch-master") == 0 && ev.pod && ev.new_master.ip) {
        char to[320];
        struct timespec ts;
        a = (struct intake_action){INTAKE_MOVED, ev.pod, ev.new_master.ip, ev.new_master.port};
        evl_sentinel_format_addr(to, sizeof to, ev.new_master.ip, (int)ev.new_master.port);
        clock_gettime(CLOCK_REALTIME, &ts);
        metrics_failover(ev.pod, to, (double)ts.tv_sec + (double)ts.tv_nsec / 1e9);
    } else if (set->s.discover && strcmp(ev.name, "+sentinel") == 0 && ev.instance.addr.ip)
        a = (struct intake_action){INTAKE_ADD, NULL, ev.instance.addr.ip, ev.instance.addr.port};
    else if (set->s.discover && (strcmp(ev.name, "-dup-sentinel") == 0 ||
                                 strcmp(ev.name, "+sentinel-address-switch") == 0))
        a.what = INTAKE_REDISCOVER;
    /* only what some handler matches takes a slot in the dedupe ring: a flood
       of events nobody handles cannot push out the ones that run */
    if (!watch_set_wants(set, ev.pod) || !watch_set_matches(set, ev.name))
        return a;
    uint64_t key = dedupe_key(&ev, text, idx), bit = 1ULL << (idx % WATCH_MAX_SENTINELS);
    struct dd *d = dd_find(key, now);
    if (d && !(d->reporters & bit)) {
        d->reporters |= bit;
        st.dup++;
        merge_reporter(d->seq, idx);
        return a;
    }
    /* new, or the same reporter saying it again: a new occurrence */
    uint64_t s = ++seq;
    dd_put(key, bit, s, now);
    st.matched++;
    enqueue(&ev, name, text, idx, synthetic, s, now);
    return a;
}

/* ---------------------------------------------------------------- runs */

/* Start `it` on a runner; 0, or -1 (it waits again). */
static int start(struct item *it, double now, int cap)
{
    char first[400], all[4096], delivery[64];
    reporters_text(it->reporters, first, sizeof first, 1);
    reporters_text(it->reporters, all, sizeof all, 0);
    snprintf(delivery, sizeof delivery, "%016" PRIx64 "-%" PRIu64, boot_id, it->seq);
    struct runner_job j = {it->name, it->text, it->pod, first, all, delivery, it->synthetic,
                           set->s.budget, it};
    it->runs++;
    pid_t pid = runner_start(set, &j, cap);
    if (pid <= 0) {
        it->runs--;
        if (pid == 0) {
            wait_item(it, 1);
            return -1;
        }
        evl_log(EVL_ERROR, "watch: fork: %s; %s retried in 1 s", strerror(errno), it->name);
        it->not_before = now + 1;
        wait_item(it, 0);
        return -1;
    }
    st.runs++;
    it->started = now;
    running[nrunning++] = it;
    evl_log(EVL_DEBUG, "watch: run %s pod=%s delivery=%s run=%d sentinels=%s%s runner=%ld",
            it->name, it->pod ? it->pod : "-", delivery, it->runs, all,
            it->synthetic ? " synthetic" : "", (long)pid);
    return 0;
}

/* A run ended with exit `code` or signal `sig`: done, retried or given up. */
static void finished(const struct runner_end *e)
{
    struct item *it = e->tag;
    int code = e->code, sig = e->sig;
    double now = evl_monotonic();
    for (int i = 0; i < nrunning; i++)
        if (running[i] == it) {
            running[i] = running[--nrunning];
            break;
        }
    double ms = (now - it->started) * 1e3;
    metrics_run(it->name, code, sig, e->secs >= 0 ? e->secs : ms / 1e3);
    if (code == 0 && !sig) {
        evl_log(EVL_DEBUG, "watch: %s pod=%s done, run %d, %.1f ms (cpu %.1f ms, %ld page faults)",
                it->name, it->pod ? it->pod : "-", it->runs, ms, e->cpu, e->faults);
        free(it);
        return;
    }
    st.failed++;
    if ((code == 1 || sig) && it->runs <= set->s.retries && !stopping) {
        double delay = RETRY_FIRST;
        for (int i = 1; i < it->runs && delay < RETRY_MAX; i++)
            delay *= 2;
        if (delay > RETRY_MAX)
            delay = RETRY_MAX;
        evl_log(EVL_WARN, "watch: %s pod=%s failed (%s %d) on run %d; retried in %.0f s", it->name,
                it->pod ? it->pod : "-", sig ? "signal" : "exit", sig ? sig : code, it->runs, delay);
        it->not_before = now + delay;
        wait_item(it, 0);
        return;
    }
    evl_log(EVL_ERROR, "watch: %s pod=%s failed (%s %d) on run %d; given up", it->name,
            it->pod ? it->pod : "-", sig ? "signal" : "exit", sig ? sig : code, it->runs);
    free(it);
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
    struct item *it;
    while ((it = queue.head) &&
           sink_item(it->name, it->text, name_of(it->src), it->heard, it->seq, it->synthetic)) {
        unlink_item(it);
        st.runs++;
        free(it);
    }
}

double intake_tick(double now)
{
    double next = runners_reap(now, finished);
    if (drops.n) { /* drops wait for their summary line, a second after the last */
        if (now - drops.last_line >= 1.0)
            drops_line(now);
        else if (drops.last_line + 1.0 - now < next)
            next = drops.last_line + 1.0 - now;
    }
    if (stopping)
        return next;
    if (sink_on()) {
        feed_sink();
        return next;
    }
    int cap = set->s.concurrency < MAX_RUNNING ? set->s.concurrency : MAX_RUNNING;
    if (nrunning >= cap || !queue.head)
        return next;
    if (!runners_fork_ok(set, now))
        return next < 0.1 ? next : 0.1;
    memset(busy, 0, sizeof busy);
    nbusy = 0;
    for (int i = 0; i < nrunning; i++)
        if (running[i]->pod)
            busy_add(pod_hash(running[i]));
    for (struct item *it = queue.head, *nx; it && nrunning < cap && nbusy < BUSY_SLOTS / 2; it = nx) {
        nx = it->next[Q];
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

int intake_busy(void)
{
    return nrunning;
}

void intake_drain(void)
{
    size_t n = 0;
    stopping = 1;
    drops_line(evl_monotonic());
    if (sink_on())
        feed_sink(); /* what the appender's pipe still takes is appended */
    runners_stop();
    while (queue.head) {
        struct item *it = queue.head;
        unlink_item(it);
        free(it);
        n++;
    }
    evl_log(EVL_INFO, "watch: stopping: %zu queued event(s) dropped, %d run(s) allowed to finish",
            n, nrunning);
}

void intake_stats(void)
{
    double span = st.last - st.first;
    evl_log(EVL_INFO, "watch: stats heard=%" PRIu64 " unusable=%" PRIu64 " duplicates=%" PRIu64
            " matched=%" PRIu64 " dropped=%" PRIu64 " runs=%" PRIu64 " failed_runs=%" PRIu64
            " waiting=%zu running=%d intake_per_s=%.0f runners=%d", st.heard, st.bad, st.dup,
            st.matched, st.dropped, st.runs, st.failed, nwaiting, nrunning,
            span > 0 ? (double)(st.heard - 1) / span : 0.0, runners_count());
}

void intake_counts(struct metrics_now *m)
{
    m->duplicates = st.dup;
    m->dropped = st.dropped;
    m->unusable = st.bad;
    m->queue = nwaiting;
    m->running = nrunning;
    m->runners = runners_count();
}

void intake_settings(struct watch_set *s)
{
    set = s;
    runners_reload();
}

/*
 * Memory of the watcher alone (the dedupe ring, ~3 MB): mapped MADV_DONTFORK,
 * so a run's fork neither copies its page tables nor tears them down again,
 * and the watcher writing to it after a fork takes no copy-on-write fault.
 * Zeroed and touched now, so RSS does not creep as it fills. Never freed.
 */
static void *nofork_alloc(size_t size)
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

void intake_init(struct watch_set *s)
{
    set = s;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    boot_id = ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 44);
    /* the dedupe ring is fixed: fault it in now, so memory does not creep as it fills */
    ring = nofork_alloc(DD_RING * sizeof *ring);
    buckets = nofork_alloc(DD_BUCKETS * sizeof *buckets);
}
