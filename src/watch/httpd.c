/*
 * watch_httpd.c: the watcher's HTTP server on libmicrohttpd
 * (watch_httpd.h). Built as a module of its own, watch-httpd.so.
 *
 * libmicrohttpd runs in its "external epoll" mode: no thread of its own,
 * one epoll descriptor that the watcher's poll() loop watches, MHD_run()
 * when it is readable or when MHD_get_timeout() says a connection is due.
 * A thread would make every runner's fork copy a process in which another
 * thread may hold a lock of the C library.
 *
 * Runners are forks without exec, so they hold copies of the server's
 * descriptors: the listening socket (a runner would keep the port bound
 * after the watcher moved away from it) and the client connections (the
 * client of a closed connection would not see it end while a runner holds
 * it). forked() closes them in the runner; the client sockets are known
 * from libmicrohttpd's connection notifications, and each is checked to be
 * a connection to our port before it is closed.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <netinet/in.h>
#include <unistd.h>

#include <microhttpd.h>

#include "httpd.h"

#define MAX_CLIENTS 16     /* Prometheus holds one; a few people with curl */
#define CLIENT_TIMEOUT 30  /* s idle before a connection is closed */

struct srv {
    struct MHD_Daemon *d;
    const struct evl_httpd_pages *pages;
    int lfd, epfd;
    struct sockaddr_storage local; /* the listening address: a client socket's own address */
    int clients[MAX_CLIENTS], nclients;
};

static void on_log(void *cls, const char *fmt, va_list ap)
{
    struct srv *s = cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    if (s && s->pages)
        s->pages->log(msg);
}

static void on_connection(void *cls, struct MHD_Connection *c, void **ctx,
                          enum MHD_ConnectionNotificationCode code)
{
    struct srv *s = cls;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    (void)ctx;
    if (!ci)
        return;
    int fd = ci->connect_fd;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        if (s->nclients < MAX_CLIENTS)
            s->clients[s->nclients++] = fd;
        return;
    }
    for (int i = 0; i < s->nclients; i++)
        if (s->clients[i] == fd) {
            s->clients[i] = s->clients[--s->nclients];
            break;
        }
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *type, char *body,
                             size_t len, enum MHD_ResponseMemoryMode mode)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, mode);
    if (!r) {
        if (mode == MHD_RESPMEM_MUST_FREE)
            free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    enum MHD_Result ok = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result text(struct MHD_Connection *c, unsigned status, const char *msg)
{
    return reply(c, status, "text/plain; charset=utf-8", (char *)msg, strlen(msg), MHD_RESPMEM_PERSISTENT);
}

/* Every request: GET (or HEAD) /metrics or /healthz, answered at once; nothing reads a body. */
static enum MHD_Result answer(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                              const char *version, const char *upload, size_t *upload_size, void **req)
{
    struct srv *s = cls;
    (void)version;
    (void)upload;
    (void)upload_size;
    (void)req;
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET and HEAD\n");
    if (strcmp(url, "/metrics") == 0) {
        size_t len = 0;
        char *body = s->pages->metrics(&len);
        if (!body)
            return text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
        return reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", body, len,
                     MHD_RESPMEM_MUST_FREE);
    }
    if (strcmp(url, "/healthz") == 0) {
        const char *why = "unhealthy";
        if (s->pages->health(&why))
            return text(c, MHD_HTTP_OK, "ok\n");
        char msg[300];
        snprintf(msg, sizeof msg, "%s\n", why);
        char *body = strdup(msg);
        if (!body)
            return text(c, MHD_HTTP_SERVICE_UNAVAILABLE, "unhealthy\n");
        return reply(c, MHD_HTTP_SERVICE_UNAVAILABLE, "text/plain; charset=utf-8", body, strlen(body),
                     MHD_RESPMEM_MUST_FREE);
    }
    if (strcmp(url, "/") == 0)
        return text(c, MHD_HTTP_OK, "eventilator watch: /metrics /healthz\n");
    return text(c, MHD_HTTP_NOT_FOUND, "not found: /metrics or /healthz\n");
}

static void *start(int fd, const struct evl_httpd_pages *pages, char *why, size_t cap)
{
    struct srv *s = calloc(1, sizeof *s);
    socklen_t len = sizeof s->local;
    if (!s || getsockname(fd, (struct sockaddr *)&s->local, &len) != 0) {
        snprintf(why, cap, "%s", s ? strerror(errno) : "out of memory");
        free(s);
        close(fd);
        return NULL;
    }
    s->pages = pages;
    s->lfd = fd;
    /* the logger first: what the daemon says while it starts reaches the log */
    s->d = MHD_start_daemon(MHD_USE_EPOLL | MHD_USE_ERROR_LOG, 0, NULL, NULL, answer, s,
                            MHD_OPTION_EXTERNAL_LOGGER, on_log, s,
                            MHD_OPTION_LISTEN_SOCKET, fd,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)MAX_CLIENTS,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)CLIENT_TIMEOUT,
                            MHD_OPTION_NOTIFY_CONNECTION, on_connection, s,
                            MHD_OPTION_END);
    const union MHD_DaemonInfo *di = s->d ? MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_EPOLL_FD) : NULL;
    if (!di) {
        snprintf(why, cap, "libmicrohttpd did not start (the reason is logged above)");
        if (s->d)
            MHD_stop_daemon(s->d);
        /* whether a daemon that failed closed the socket is not documented; nothing of it is left
           open to reuse the number, so one still open is ours */
        if (fcntl(fd, F_GETFD) >= 0)
            close(fd);
        free(s);
        return NULL;
    }
    s->epfd = di->epoll_fd;
    return s;
}

static int pollfd(void *srv)
{
    return ((struct srv *)srv)->epfd;
}

static long timeout_ms(void *srv)
{
    MHD_UNSIGNED_LONG_LONG ms;
    if (MHD_get_timeout(((struct srv *)srv)->d, &ms) != MHD_YES)
        return -1;
    return ms > 3600000 ? 3600000 : (long)ms;
}

static void run(void *srv)
{
    MHD_run(((struct srv *)srv)->d);
}

/* Is fd a TCP connection whose own end is our listening address (an accepted client)? */
static int is_client(const struct srv *s, int fd)
{
    struct stat st;
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode) || getsockname(fd, (struct sockaddr *)&ss, &len) != 0 ||
        ss.ss_family != s->local.ss_family)
        return 0;
    if (ss.ss_family == AF_INET)
        return ((struct sockaddr_in *)&ss)->sin_port == ((const struct sockaddr_in *)&s->local)->sin_port;
    if (ss.ss_family == AF_INET6)
        return ((struct sockaddr_in6 *)&ss)->sin6_port == ((const struct sockaddr_in6 *)&s->local)->sin6_port;
    return 0;
}

static void forked(void *srv)
{
    struct srv *s = srv;
    for (int i = 0; i < s->nclients; i++)
        if (is_client(s, s->clients[i]))
            close(s->clients[i]);
    close(s->lfd);
    close(s->epfd);
}

static void stop(void *srv)
{
    struct srv *s = srv;
    MHD_stop_daemon(s->d); /* closes the connections and the listening socket */
    free(s);
}

__attribute__((visibility("default"))) const struct evl_httpd *evl_httpd(void);
const struct evl_httpd *evl_httpd(void)
{
    static const struct evl_httpd api = {EVL_HTTPD_ABI, start, pollfd, timeout_ms, run, forked, stop};
    return &api;
}
