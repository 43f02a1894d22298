/*
 * watch_metrics.h: what the watcher counts for `GET /metrics`, and the
 * exposition text (Prometheus's text format, version 0.0.4; docs/watch.md).
 * The labelled families are kept here; the plain counters and gauges
 * (duplicates, drops, queue, runners, Sentinels up) stay where they are
 * counted and are handed in when the text is made. No I/O, no watcher
 * state: tests/test_metrics.c drives it alone.
 */
#ifndef EVENTILATOR_WATCH_METRICS_H
#define EVENTILATOR_WATCH_METRICS_H

#include <stddef.h>
#include <stdint.h>

/* A report of an event heard (every Sentinel's, duplicates too). */
void metrics_heard(const char *event);
/* A run ended: its exit code or signal, and how long its event call took. */
void metrics_run(const char *event, int code, int sig, double secs);
/* A real +switch-master: the master is now at `to` (ip:port), heard at `wall` (Unix time). */
void metrics_failover(const char *master, const char *to, double wall);

/* What is counted elsewhere, as it is when the text is made. */
struct metrics_now {
    uint64_t duplicates, dropped, unusable;
    uint64_t queue;
    int runners, running;
    int nsentinels;
    const char *const *sentinels; /* "ip:port" each */
    const int *up;                /* 1: subscribed */
};

/* The whole exposition, malloc'd (*len bytes, NUL-ended), or NULL when out of memory. */
char *metrics_text(const struct metrics_now *now, size_t *len);

#endif
