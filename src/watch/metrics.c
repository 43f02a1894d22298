/*
 * watch_metrics.c: the watcher's labelled metrics and their exposition
 * (watch_metrics.h, docs/watch.md "Metrics").
 *
 * Counting is on the intake path (every report heard), so it costs a hash
 * and a probe in a fixed table, nothing allocated after an event name is
 * first seen. Label sets are bounded whatever the Sentinels send: Sentinel
 * has some 40 event names, so past 256 distinct names the rest count as
 * event="other" (no event's name: events begin with + or -); masters past
 * 4096 are not tracked. Label values come from the network (channel names, master
 * names, Sentinel addresses): they are escaped as the format asks (\\, \",
 * \n) and made valid UTF-8, since one bad byte makes Prometheus refuse the
 * whole scrape.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fnv.h"
#include "metrics.h"

#define EVENT_SLOTS 512 /* open addressing, at most half full */
#define MAX_EVENTS 256
#define MAX_MASTERS 4096

/* Handler times: Prometheus's default buckets, stretched to the budget's scale (at most 55 s). */
static const double bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
#define NBOUNDS (sizeof bounds / sizeof bounds[0])

/* How a run ended, from the exit semantics the watcher applies (contract section 2). */
enum { OUT_OK, OUT_FAILED, OUT_ERROR, OUT_KILLED, NOUT };
static const char *const outcomes[NOUT] = {"ok", "failed", "error", "killed"};

struct evstat {
    const char *name;
    uint64_t heard, runs[NOUT];
    uint64_t in[NBOUNDS + 1]; /* runs per bucket, not cumulative; the last is above every bound */
    double sum;
    int ran;
};

static struct evstat *slot[EVENT_SLOTS]; /* name hash -> entry */
/* in order of first sight; past MAX_EVENTS names, "other" */
static struct evstat events[MAX_EVENTS + 1] = {[MAX_EVENTS] = {.name = "other"}};
static size_t nevents;

static struct master {
    char *name, *to;
    double at;
} *masters;
static size_t nmasters, capmasters;

/* The entry of an event name: found, added, or "other" when the table is full or memory is short. */
static struct evstat *event(const char *name)
{
    struct evstat *other = &events[MAX_EVENTS];
    size_t n = strlen(name);
    size_t i = (size_t)(evl_fnv(name, n, EVL_FNV0) % EVENT_SLOTS);
    for (; slot[i]; i = (i + 1) % EVENT_SLOTS)
        if (strcmp(slot[i]->name, name) == 0)
            return slot[i];
    if (nevents == MAX_EVENTS)
        return other;
    struct evstat *e = &events[nevents];
    if (!(e->name = strdup(name)))
        return other;
    nevents++;
    slot[i] = e;
    return e;
}

void metrics_heard(const char *name)
{
    event(name)->heard++;
}

void metrics_run(const char *name, int code, int sig, double secs)
{
    struct evstat *e = event(name);
    int o = sig ? OUT_KILLED : code == 0 ? OUT_OK : code == 1 ? OUT_FAILED : OUT_ERROR;
    size_t b = 0;
    e->runs[o]++;
    e->ran = 1;
    if (secs < 0)
        secs = 0;
    while (b < NBOUNDS && secs > bounds[b])
        b++;
    e->in[b]++;
    e->sum += secs;
}

/*
 * Every Sentinel that switches reports the move, and one that lagged
 * reports it seconds later: the time is the first report's. A new move
 * always names another address than the last one did, so the address
 * tells a new failover from another report of the same.
 */
void metrics_failover(const char *name, const char *to, double wall)
{
    for (size_t i = 0; i < nmasters; i++)
        if (strcmp(masters[i].name, name) == 0) {
            if (strcmp(masters[i].to, to) != 0) {
                char *t = strdup(to);
                if (!t)
                    return;
                free(masters[i].to);
                masters[i].to = t;
                masters[i].at = wall;
            }
            return;
        }
    if (nmasters == MAX_MASTERS)
        return;
    if (nmasters == capmasters) {
        size_t cap = capmasters ? capmasters * 2 : 16;
        struct master *m = realloc(masters, cap * sizeof *m);
        if (!m)
            return;
        masters = m;
        capmasters = cap;
    }
    struct master m = {strdup(name), strdup(to), wall};
    if (!m.name || !m.to) {
        free(m.name);
        free(m.to);
        return;
    }
    masters[nmasters++] = m;
}

/* ---------------------------------------------------------------- the text */

struct buf {
    char *p;
    size_t n, cap;
    int oom;
};

static void put(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct buf *b, const char *fmt, ...)
{
    for (int tries = 0; tries < 2 && !b->oom; tries++) {
        va_list ap;
        va_start(ap, fmt);
        int w = vsnprintf(b->p + b->n, b->cap - b->n, fmt, ap);
        va_end(ap);
        if (w < 0) {
            b->oom = 1;
            return;
        }
        if ((size_t)w < b->cap - b->n) {
            b->n += (size_t)w;
            return;
        }
        size_t cap = (b->cap + (size_t)w + 1) * 2;
        char *p = realloc(b->p, cap);
        if (!p)
            b->oom = 1;
        else {
            b->p = p;
            b->cap = cap;
        }
    }
}

/* The length of a valid UTF-8 sequence at s (shortest form, no surrogates), or 0. */
static size_t utf8_len(const unsigned char *s)
{
    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        return (s[1] & 0xc0) == 0x80 ? 2 : 0;
    if (s[0] >= 0xe0 && s[0] <= 0xef) {
        if ((s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80 || (s[0] == 0xe0 && s[1] < 0xa0) ||
            (s[0] == 0xed && s[1] > 0x9f))
            return 0;
        return 3;
    }
    if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        if ((s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80 || (s[3] & 0xc0) != 0x80 ||
            (s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] > 0x8f))
            return 0;
        return 4;
    }
    return 0;
}

/* A label value, quoted: \ " and newline escaped, a byte that is not UTF-8 as U+FFFD. */
static void put_value(struct buf *b, const char *v)
{
    const unsigned char *s = (const unsigned char *)v;
    put(b, "\"");
    while (*s) {
        size_t run = 0;
        while (s[run] >= 0x20 && s[run] < 0x80 && s[run] != '\\' && s[run] != '"')
            run++;
        if (run) {
            put(b, "%.*s", (int)run, (const char *)s);
            s += run;
            continue;
        }
        size_t n = *s >= 0x80 ? utf8_len(s) : 1;
        if (*s == '\\' || *s == '"')
            put(b, "\\%c", *s);
        else if (*s == '\n')
            put(b, "\\n");
        else if (n == 1 && *s < 0x80)
            put(b, "%c", *s); /* another control byte: the format allows it in a value */
        else if (n == 0)
            put(b, "\xef\xbf\xbd");
        else
            put(b, "%.*s", (int)n, (const char *)s);
        s += n ? n : 1;
    }
    put(b, "\"");
}

static void family(struct buf *b, const char *name, const char *type, const char *help)
{
    put(b, "# HELP eventilator_%s %s\n# TYPE eventilator_%s %s\n", name, help, name, type);
}

/* The i-th event seen, i from 0 to nevents: the last is "other" (counted once the table is full). */
static struct evstat *nth(size_t i)
{
    return i < nevents ? &events[i] : &events[MAX_EVENTS];
}

static void put_events(struct buf *b)
{
    family(b, "events_heard_total", "counter",
           "Events heard from the Sentinels, each report counted (one event reported by 3 Sentinels is 3).");
    for (size_t i = 0; i <= nevents; i++) {
        if (!nth(i)->heard)
            continue;
        put(b, "eventilator_events_heard_total{event=");
        put_value(b, nth(i)->name);
        put(b, "} %" PRIu64 "\n", nth(i)->heard);
    }
    family(b, "runs_total", "counter",
           "Runs of an event's handlers, retries included, by how the run ended: ok (exit 0), failed "
           "(exit 1, retried), error (exit 2 or more, never retried), killed (a signal: its budget, a crash).");
    for (size_t i = 0; i <= nevents; i++)
        for (int o = 0; nth(i)->ran && o < NOUT; o++) {
            put(b, "eventilator_runs_total{event=");
            put_value(b, nth(i)->name);
            put(b, ",outcome=\"%s\"} %" PRIu64 "\n", outcomes[o], nth(i)->runs[o]);
        }
    family(b, "handler_seconds", "histogram", "Seconds an event's run took (its handlers, in a runner).");
    for (size_t i = 0; i <= nevents; i++) {
        const struct evstat *e = nth(i);
        if (!e->ran)
            continue;
        uint64_t cum = 0;
        for (size_t k = 0; k <= NBOUNDS; k++) {
            cum += e->in[k];
            put(b, "eventilator_handler_seconds_bucket{event=");
            put_value(b, e->name);
            if (k < NBOUNDS)
                put(b, ",le=\"%g\"} %" PRIu64 "\n", bounds[k], cum);
            else
                put(b, ",le=\"+Inf\"} %" PRIu64 "\n", cum);
        }
        put(b, "eventilator_handler_seconds_sum{event=");
        put_value(b, e->name);
        put(b, "} %.9g\neventilator_handler_seconds_count{event=", e->sum);
        put_value(b, e->name);
        put(b, "} %" PRIu64 "\n", cum);
    }
}

char *metrics_text(const struct metrics_now *now, size_t *len)
{
    struct buf b = {NULL, 0, 0, 0};
    put_events(&b);
    family(&b, "duplicates_total", "counter",
           "Reports of a handled event by another Sentinel within the dedupe window: merged, not run again.");
    put(&b, "eventilator_duplicates_total %" PRIu64 "\n", now->duplicates);
    family(&b, "dropped_total", "counter", "Events dropped from a full queue (watch.queue).");
    put(&b, "eventilator_dropped_total %" PRIu64 "\n", now->dropped);
    family(&b, "unusable_total", "counter", "Messages that did not parse as a Sentinel event.");
    put(&b, "eventilator_unusable_total %" PRIu64 "\n", now->unusable);
    family(&b, "queue_depth", "gauge", "Events waiting to run.");
    put(&b, "eventilator_queue_depth %" PRIu64 "\n", now->queue);
    family(&b, "runners", "gauge", "Runner processes (forks of the watcher that run events), busy or idle.");
    put(&b, "eventilator_runners %d\n", now->runners);
    family(&b, "running", "gauge", "Runs in progress.");
    put(&b, "eventilator_running %d\n", now->running);
    family(&b, "sentinel_up", "gauge", "1 while the watcher is subscribed to the Sentinel, else 0.");
    for (int i = 0; i < now->nsentinels; i++) {
        put(&b, "eventilator_sentinel_up{sentinel=");
        put_value(&b, now->sentinels[i]);
        put(&b, "} %d\n", now->up[i] ? 1 : 0);
    }
    family(&b, "last_failover_timestamp_seconds", "gauge",
           "Unix time of the last +switch-master heard for the master (its first report).");
    for (size_t i = 0; i < nmasters; i++) {
        put(&b, "eventilator_last_failover_timestamp_seconds{master=");
        put_value(&b, masters[i].name);
        put(&b, "} %.3f\n", masters[i].at);
    }
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    *len = b.n;
    return b.p;
}
