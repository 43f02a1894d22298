/*
 * http.h: watch.listen, the watcher's side of its HTTP server
 * (docs/watch.md "Metrics and health"): the address checked, bound and
 * rebound on SIGHUP, the server module loaded when first needed
 * (httpd.h), driven from the watcher's poll() loop, and what it
 * serves: /metrics (metrics.c) and /healthz.
 */
#ifndef EVENTILATOR_WATCH_HTTP_H
#define EVENTILATOR_WATCH_HTTP_H

#include <stddef.h>

/* The configured address (NULL: off), at start and after each reload. */
void http_configure(const char *listen, double now);
/* A bind that failed is tried again: returns the seconds until this must run again. stopping: /healthz says so. */
double http_tick(double now, int stopping);
int http_pollfd(void); /* -1: none */
/* After the loop's poll(): readable is whether http_pollfd() was. */
void http_io(int readable);
void http_forked(void); /* in a runner */
void http_end(void);

#endif
