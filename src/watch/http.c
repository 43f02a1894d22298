/*
 * http.c: watch.listen (http.h, docs/watch.md "Metrics and health"), on
 * top of the connections (conn.c) and intake (intake.c), whose counts it
 * serves.
 *
 * The address is bound here, not by libmicrohttpd, so a failure says
 * exactly why (`bind: Address already in use`), and so a new address is
 * bound before the old one is let go: a reload whose address cannot be
 * bound keeps serving the old one. A bind that fails is tried again every
 * 10 s (a port still held by a watcher that is stopping), logged once.
 *
 * /healthz is answered by the loop itself, so a loop that stopped turning
 * answers nothing, and the client's timeout is the 503 it cannot send.
 */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "deadline.h"
#include "http.h"
#include "httpd.h"
#include "intake.h"
#include "log.h"

#define RETRY 10.0 /* s between attempts to bind an address that failed */

static const struct evl_httpd *api;
static int unloadable;         /* the module failed to load: tried again on the next reload */
static void *srv;              /* the server, or NULL */
static char served[300];       /* the address it serves, as configured */
static char at[300];           /* and as bound (port 0: the kernel's) */
static char want[300];         /* the address configured; "" off */
static double retry_at;
static int must_run;           /* the server asked to run after this poll, readable or not */
static int stopping;           /* the watcher is stopping: /healthz says so */

/* ---------------------------------------------------------------- the address */

/* A listening socket on spec, or -1 with why; `bound` gets the address it has (port 0: the kernel's). */
static int listener(const char *spec, char *bound, size_t boundcap, char *why, size_t cap)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int one = 1;
    if (watch_set_listen(spec, &ss, &len) < 0) { /* checked when the set was loaded */
        snprintf(why, cap, "not an address: %s", spec);
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    const char *step = "socket";
    if (fd >= 0 && (step = "setsockopt", setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one)) == 0 &&
        (step = "bind", bind(fd, (struct sockaddr *)&ss, len)) == 0 && (step = "listen", listen(fd, 64)) == 0 &&
        (step = "getsockname", len = sizeof ss, getsockname(fd, (struct sockaddr *)&ss, &len)) == 0) {
        char ip[INET6_ADDRSTRLEN] = "?";
        int v6 = ss.ss_family == AF_INET6;
        inet_ntop(ss.ss_family, v6 ? (void *)&((struct sockaddr_in6 *)&ss)->sin6_addr
                                   : (void *)&((struct sockaddr_in *)&ss)->sin_addr, ip, sizeof ip);
        snprintf(bound, boundcap, v6 ? "[%s]:%d" : "%s:%d", ip,
                 ntohs(v6 ? ((struct sockaddr_in6 *)&ss)->sin6_port : ((struct sockaddr_in *)&ss)->sin_port));
        return fd;
    }
    int e = errno; /* the caller asks whether it was EADDRINUSE */
    snprintf(why, cap, "%s: %s", step, strerror(e));
    if (fd >= 0)
        close(fd);
    errno = e;
    return -1;
}

/* ---------------------------------------------------------------- what it serves */

static char *page_metrics(size_t *len)
{
    const char *addrs[WATCH_MAX_SENTINELS];
    int up[WATCH_MAX_SENTINELS];
    struct metrics_now now = {.sentinels = addrs, .up = up};
    intake_counts(&now);
    now.nsentinels = conn_status(addrs, up, WATCH_MAX_SENTINELS);
    return metrics_text(&now, len);
}

static int page_health(const char **why)
{
    const char *addrs[WATCH_MAX_SENTINELS];
    int up[WATCH_MAX_SENTINELS];
    int n = conn_status(addrs, up, WATCH_MAX_SENTINELS);
    *why = stopping ? "stopping" : "no Sentinel subscribed";
    for (int i = 0; i < n && !stopping; i++)
        if (up[i])
            return 1;
    return 0;
}

/* What libmicrohttpd says (a connection refused past the limit, ...): a line a second at most. */
static void page_log(const char *msg)
{
    static double last;
    static unsigned quiet;
    double now = evl_monotonic();
    if (now - last < 1.0) {
        quiet++;
        return;
    }
    if (quiet)
        evl_log(EVL_WARN, "watch: http: %s (and %u more line(s) in the last second)", msg, quiet);
    else
        evl_log(EVL_WARN, "watch: http: %s", msg);
    last = now;
    quiet = 0;
}

static const struct evl_httpd_pages pages = {page_metrics, page_health, page_log};

/* ---------------------------------------------------------------- the server */

/* The server module, beside the full runtime's C modules: lib/eventilator/watch-httpd.so. */
static const struct evl_httpd *load(char *why, size_t cap)
{
    char exe[PATH_MAX], path[PATH_MAX + 64];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    char *slash = n > 0 ? (exe[n] = '\0', strrchr(exe, '/')) : NULL;
    if (!slash) {
        snprintf(why, cap, "cannot find the server module: /proc/self/exe: %s", strerror(errno));
        return NULL;
    }
    *slash = '\0';
    snprintf(path, sizeof path, "%s/../../lib/eventilator/watch-httpd.so", exe);
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    evl_httpd_fn fn = h ? (evl_httpd_fn)dlsym(h, EVL_HTTPD_SYMBOL) : NULL;
    const struct evl_httpd *a = fn ? fn() : NULL;
    if (!a || a->abi != EVL_HTTPD_ABI) {
        if (!h || !fn)
            snprintf(why, cap, "%s", dlerror()); /* names the file */
        else
            snprintf(why, cap, "%.400s: built for another version", path);
        return NULL;
    }
    return a; /* never closed: the watcher serves until it exits */
}

/* The port of an address (0 if it does not parse). */
static int port_of(const char *spec)
{
    struct sockaddr_storage ss;
    socklen_t len;
    if (watch_set_listen(spec, &ss, &len) < 0)
        return 0;
    return ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                          : ((struct sockaddr_in *)&ss)->sin_port);
}

/*
 * The new address is in use, and we serve the same port: the conflict may
 * be our own server (0.0.0.0:9121 after 127.0.0.1:9121). Let it go, bind
 * the new one, and take the old one back if the new one still fails.
 */
static int rebind_over(char *bound, size_t boundcap, char *why, size_t cap)
{
    char old[300], why2[512], bound2[300];
    snprintf(old, sizeof old, "%s", at);
    api->stop(srv);
    srv = NULL;
    int fd = listener(want, bound, boundcap, why, cap);
    if (fd >= 0)
        return fd;
    int back = listener(old, bound2, sizeof bound2, why2, sizeof why2);
    if (back >= 0)
        srv = api->start(back, &pages, why2, sizeof why2);
    if (!srv) {
        evl_log(EVL_ERROR, "watch: listen %s: cannot take back %s: %s", want, old, why2);
        served[0] = at[0] = '\0';
    }
    return -1;
}

/* Serve `want`: bound before the server of the old address stops, so a failure keeps the old one. */
static void attempt(double now)
{
    char why[512], bound[300];
    int fd = -1;
    if (!api && !unloadable && !(api = load(why, sizeof why))) {
        unloadable = 1;
        evl_log(EVL_ERROR, "watch: listen %s: cannot load the HTTP server: %s; no /metrics or /healthz", want, why);
        return;
    }
    if (!api)
        return;
    fd = listener(want, bound, sizeof bound, why, sizeof why);
    if (fd < 0 && errno == EADDRINUSE && srv && port_of(want) == port_of(at))
        fd = rebind_over(bound, sizeof bound, why, sizeof why);
    void *s = fd >= 0 ? api->start(fd, &pages, why, sizeof why) : NULL;
    if (!s) {
        if (retry_at == 0) /* once per address: then quietly every RETRY seconds */
            evl_log(EVL_ERROR, "watch: listen %s: %s; %s%s; tried again every %.0f s", want, why,
                    srv ? "still serving http://" : "no /metrics or /healthz until then", srv ? at : "", RETRY);
        retry_at = now + RETRY;
        return;
    }
    if (srv)
        api->stop(srv);
    srv = s;
    snprintf(served, sizeof served, "%s", want);
    snprintf(at, sizeof at, "%s", bound);
    retry_at = 0;
    evl_log(EVL_INFO, "watch: serving /metrics and /healthz on http://%s", bound);
}

void http_configure(const char *listen, double now)
{
    if (!listen || !*listen) {
        want[0] = '\0';
        if (srv) {
            api->stop(srv);
            srv = NULL;
            evl_log(EVL_INFO, "watch: listen off: http://%s no longer served", at);
        }
        served[0] = at[0] = '\0';
        return;
    }
    if (strcmp(listen, want) == 0 && (srv || retry_at))
        return; /* served already, or being tried (a module that failed to load is tried again) */
    snprintf(want, sizeof want, "%s", listen);
    retry_at = 0;
    unloadable = 0;
    if (srv && strcmp(served, want) == 0)
        return;
    attempt(now);
}

double http_tick(double now, int watcher_stopping)
{
    stopping = watcher_stopping;
    double next = 3600;
    if (want[0] && (!srv || strcmp(served, want) != 0) && retry_at) {
        if (now >= retry_at)
            attempt(now);
        if (retry_at)
            next = retry_at - now;
    }
    long ms = srv ? api->timeout_ms(srv) : -1;
    must_run = ms >= 0;
    if (must_run && ms / 1e3 < next)
        next = ms / 1e3;
    return next < 0 ? 0 : next;
}

int http_pollfd(void)
{
    return srv ? api->pollfd(srv) : -1;
}

void http_io(int readable)
{
    if (srv && (readable || must_run))
        api->run(srv);
}

void http_forked(void)
{
    if (srv)
        api->forked(srv);
}

void http_end(void)
{
    if (srv)
        api->stop(srv);
    srv = NULL;
}
