/*
 * watch_httpd.h: the watcher's HTTP server, a module of its own
 * (lib/eventilator/watch-httpd.so, src/watch_httpd.c) around libmicrohttpd.
 *
 * A module, loaded with dlopen only when watch.listen is set: linked into
 * the full runtime, libmicrohttpd and the TLS stack it brings would be
 * loaded by every script-mode call that hands over to the full runtime
 * (some 3 ms each, docs/design.md), for a server only watch mode runs.
 *
 * The server knows nothing of the watcher: it serves what these callbacks
 * give. It runs no thread: the watcher polls pollfd() in its own loop and
 * calls run(), so a runner's fork never copies a thread (docs/watch.md).
 */
#ifndef EVENTILATOR_WATCH_HTTPD_H
#define EVENTILATOR_WATCH_HTTPD_H

#include <stddef.h>

#define EVL_HTTPD_ABI 1
#define EVL_HTTPD_SYMBOL "evl_httpd"

struct evl_httpd_pages {
    /* GET /metrics: the text (malloc'd; the server frees it), or NULL (500) */
    char *(*metrics)(size_t *len);
    /* GET /healthz: 1 healthy ("ok"), 0 not, with why */
    int (*health)(const char **why);
    /* what libmicrohttpd reports, a line without its newline */
    void (*log)(const char *msg);
};

struct evl_httpd {
    int abi;
    /* Serve on fd (bound and listening; the server owns it, and closes it if it fails): a server, or NULL with why. */
    void *(*start)(int fd, const struct evl_httpd_pages *pages, char *why, size_t cap);
    int (*pollfd)(void *srv);          /* readable: call run() */
    long (*timeout_ms)(void *srv);     /* call run() within this even if nothing is readable; -1: no need */
    void (*run)(void *srv);
    void (*forked)(void *srv);         /* in a fork of the watcher: close the server's descriptors */
    void (*stop)(void *srv);           /* close every connection and the socket */
};

/* The module's one export: the table above. */
typedef const struct evl_httpd *(*evl_httpd_fn)(void);

#endif
