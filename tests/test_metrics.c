/*
 * test_metrics.c: unit test of the watcher's metrics (src/watch/metrics.c):
 * the text for counts fed directly, label values escaped and made UTF-8,
 * outcomes from exit codes and signals, cumulative buckets, the bound on
 * event names, and a failover's time kept from its first report. The specs
 * (spec/watch_metrics*_spec.lua) read it from a running watcher.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "metrics.h"

/* Is `line` one whole line of the text? */
static int has(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)) != NULL; p++)
        if ((p == text || p[-1] == '\n') && p[n] == '\n')
            return 1;
    return 0;
}

static char *text(void)
{
    static const char *const sentinels[] = {"10.0.0.1:26379", "a\"b\\c\nd:1"};
    static const int up[] = {1, 0};
    struct metrics_now now = {3, 4, 5, 6, 7, 8, 2, sentinels, up};
    size_t len = 0;
    char *t = metrics_text(&now, &len);
    CHECK(t && strlen(t) == len && len > 0 && t[len - 1] == '\n');
    return t;
}

static void test_counts(void)
{
    metrics_heard("+sdown");
    metrics_heard("+sdown");
    metrics_heard("+odown");
    metrics_run("+sdown", 0, 0, 0.003);
    metrics_run("+sdown", 1, 0, 0.2);
    metrics_run("+sdown", 2, 0, 40);
    metrics_run("+sdown", -1, 9, 0.01);
    char *t = text();
    CHECK(has(t, "eventilator_events_heard_total{event=\"+sdown\"} 2"));
    CHECK(has(t, "eventilator_events_heard_total{event=\"+odown\"} 1"));
    CHECK(has(t, "eventilator_runs_total{event=\"+sdown\",outcome=\"ok\"} 1"));
    CHECK(has(t, "eventilator_runs_total{event=\"+sdown\",outcome=\"failed\"} 1"));
    CHECK(has(t, "eventilator_runs_total{event=\"+sdown\",outcome=\"error\"} 1"));
    CHECK(has(t, "eventilator_runs_total{event=\"+sdown\",outcome=\"killed\"} 1"));
    CHECK(!strstr(t, "eventilator_runs_total{event=\"+odown\"")); /* heard, never run */
    CHECK(has(t, "eventilator_handler_seconds_bucket{event=\"+sdown\",le=\"0.005\"} 1"));
    CHECK(has(t, "eventilator_handler_seconds_bucket{event=\"+sdown\",le=\"0.01\"} 2")); /* le: at most */
    CHECK(has(t, "eventilator_handler_seconds_bucket{event=\"+sdown\",le=\"0.25\"} 3"));
    CHECK(has(t, "eventilator_handler_seconds_bucket{event=\"+sdown\",le=\"30\"} 3"));
    CHECK(has(t, "eventilator_handler_seconds_bucket{event=\"+sdown\",le=\"+Inf\"} 4"));
    CHECK(has(t, "eventilator_handler_seconds_count{event=\"+sdown\"} 4"));
    CHECK(has(t, "eventilator_handler_seconds_sum{event=\"+sdown\"} 40.213"));
    CHECK(has(t, "eventilator_duplicates_total 3"));
    CHECK(has(t, "eventilator_dropped_total 4"));
    CHECK(has(t, "eventilator_unusable_total 5"));
    CHECK(has(t, "eventilator_queue_depth 6"));
    CHECK(has(t, "eventilator_runners 7"));
    CHECK(has(t, "eventilator_running 8"));
    CHECK(has(t, "eventilator_sentinel_up{sentinel=\"10.0.0.1:26379\"} 1"));
    CHECK(has(t, "eventilator_sentinel_up{sentinel=\"a\\\"b\\\\c\\nd:1\"} 0"));
    CHECK(has(t, "# TYPE eventilator_handler_seconds histogram"));
    CHECK(has(t, "# TYPE eventilator_runs_total counter"));
    CHECK(has(t, "# TYPE eventilator_sentinel_up gauge"));
    free(t);
}

static void test_failover(void)
{
    metrics_failover("pod\xff\"x", "10.0.0.2:6379", 1000.25);
    metrics_failover("pod\xff\"x", "10.0.0.2:6379", 1003); /* another Sentinel's report of the same */
    metrics_failover("cache\xc3\xa9", "10.0.0.5:6379", 2000);
    char *t = text();
    /* a byte that is not UTF-8 is U+FFFD; valid UTF-8 passes as it is */
    CHECK(has(t, "eventilator_last_failover_timestamp_seconds{master=\"pod\xef\xbf\xbd\\\"x\"} 1000.250"));
    CHECK(has(t, "eventilator_last_failover_timestamp_seconds{master=\"cache\xc3\xa9\"} 2000.000"));
    free(t);
    metrics_failover("pod\xff\"x", "10.0.0.3:6379", 1500); /* the next failover */
    t = text();
    CHECK(has(t, "eventilator_last_failover_timestamp_seconds{master=\"pod\xef\xbf\xbd\\\"x\"} 1500.000"));
    free(t);
}

/* Past 256 event names the rest count together as "other": the text stays bounded. */
static void test_bound(void)
{
    char name[32];
    for (int i = 0; i < 300; i++) {
        snprintf(name, sizeof name, "+e%d", i);
        metrics_heard(name);
    }
    char *t = text();
    CHECK(has(t, "eventilator_events_heard_total{event=\"+e200\"} 1"));
    CHECK(!strstr(t, "{event=\"+e299\"}"));
    CHECK(has(t, "eventilator_events_heard_total{event=\"other\"} 46")); /* 300 - (256 - 2 seen before) */
    metrics_heard("+sdown"); /* one seen before still has its own */
    free(t);
    t = text();
    CHECK(has(t, "eventilator_events_heard_total{event=\"+sdown\"} 3"));
    free(t);
}

int main(void)
{
    test_counts();
    test_failover();
    test_bound();
    if (failures) {
        fprintf(stderr, "test_metrics: %d failure(s)\n", failures);
        return 1;
    }
    printf("test_metrics: ok\n");
    return 0;
}
