/*
 * sentinel.c: the Sentinel client (see sentinel.h), on hiredis 0.14
 * contexts in non-blocking mode.
 *
 * Why not hiredis's blocking calls: a blocking connect resolves the name
 * with getaddrinfo (no bound: a DNS server that never answers holds it for
 * tens of seconds), and SO_RCVTIMEO bounds each read(2), not the whole
 * reply, so a Sentinel that dribbles one byte a second would keep us
 * forever. And why not hiredis's async API: it leaves the timeouts, the
 * name lookup and the reply cap to us anyway. So a link is a non-blocking
 * context plus a small state machine: LOOKUP (a helper thread, lookup.h)
 * -> CONNECTING (until the socket is writable) -> OPEN, with the deadline
 * of whatever is waited on. A deadline that passes, an I/O error or a reply
 * over the cap kills the link (DEAD), as hiredis does with its own errors:
 * the stream is out of step.
 */
#include "sentinel.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "binding.h"

#define SL_DEF_TIMEOUT 2.0
#define SL_LOOKUP_POLL 0.02 /* s between two looks at a running name lookup */

static int sl_lookups; /* helper threads of links' name lookups still running */

int evl_sentinel_lookups(void)
{
    return __atomic_load_n(&sl_lookups, __ATOMIC_RELAXED);
}

void evl_sentinel_format_addr(char *out, size_t cap, const char *host, int port)
{
    if (strchr(host, ':'))
        snprintf(out, cap, "[%s]:%d", host, port);
    else
        snprintf(out, cap, "%s:%d", host, port);
}

int evl_sentinel_addr(const char *addr, char *host, size_t hostcap, int *port, char *err,
                      size_t errcap)
{
    const char *h, *colon;
    size_t hl;
    char *end;
    long p;
    if (addr == NULL || addr[0] == '\0') {
        snprintf(err, errcap, "empty Sentinel address (want HOST:PORT)");
        return -1;
    }
    /*
     * No port is Sentinel's own, 26379, as redis-cli and sentinel.conf
     * take it. A bare IPv6 address needs its brackets all the same:
     * "::1:6379" is itself an address, and would never mean port 6379.
     */
    if (addr[0] == '[') {
        const char *close = strchr(addr, ']');
        if (close == NULL || (close[1] != ':' && close[1] != '\0')) {
            snprintf(err, errcap, "%s: bad Sentinel address (want [IPv6]:PORT or [IPv6])", addr);
            return -1;
        }
        h = addr + 1;
        hl = (size_t)(close - h);
        colon = close[1] ? close + 1 : NULL;
    } else {
        colon = strrchr(addr, ':');
        if (colon != NULL && strchr(addr, ':') != colon) {
            snprintf(err, errcap, "%s: bad Sentinel address (want HOST[:PORT], or [IPv6][:PORT])",
                     addr);
            return -1;
        }
        h = addr;
        hl = colon ? (size_t)(colon - addr) : strlen(addr);
    }
    if (hl == 0 || hl >= hostcap) {
        snprintf(err, errcap, "%s: bad Sentinel address (host empty or too long)", addr);
        return -1;
    }
    if (colon == NULL) {
        memcpy(host, h, hl);
        host[hl] = '\0';
        *port = 26379;
        return 0;
    }
    errno = 0;
    p = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || errno != 0 || p < 1 || p > 65535) {
        snprintf(err, errcap, "%s: bad Sentinel port (want 1-65535)", addr);
        return -1;
    }
    memcpy(host, h, hl);
    host[hl] = '\0';
    *port = (int)p;
    return 0;
}

/* ------------------------------------------------------------ a link */

/* The link is dead: free what it holds, keep why ("<addr>: <why>"). */
static void sl_die(struct evl_sentinel_link *l, const char *fmt, ...)
{
    char why[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    snprintf(l->err, sizeof l->err, "%s: %s", l->addr, why);
    evl_sentinel_link_close(l);
    l->state = EVL_SL_DEAD;
}

static void sl_too_big(struct evl_sentinel_link *l)
{
    sl_die(l, "reply larger than %g MiB", l->cap.mib);
}

/* What is waited on now is due by now + timeout (or nothing is). */
static void sl_arm(struct evl_sentinel_link *l, double now)
{
    int waiting = l->state != EVL_SL_OPEN || l->auth_wait || l->asked;
    l->deadline = waiting ? now + l->timeout : 0;
}

/* Connect to the first usable address of `res` without waiting. */
static void sl_connect(struct evl_sentinel_link *l, const struct addrinfo *res, double now)
{
    char ip[INET6_ADDRSTRLEN];
    const struct addrinfo *ai;
    double mib = l->cap.mib;
    for (ai = res; ai; ai = ai->ai_next) {
        const void *a = ai->ai_family == AF_INET6
            ? (const void *)&((const struct sockaddr_in6 *)(const void *)ai->ai_addr)->sin6_addr
            : (const void *)&((const struct sockaddr_in *)(const void *)ai->ai_addr)->sin_addr;
        if ((ai->ai_family == AF_INET || ai->ai_family == AF_INET6) &&
            inet_ntop(ai->ai_family, a, ip, sizeof ip))
            break;
    }
    if (!ai) {
        sl_die(l, "name lookup: no IPv4 or IPv6 address");
        return;
    }
    /* an address literal: hiredis's own getaddrinfo never waits on DNS */
    l->c = redisConnectNonBlock(ip, l->port);
    if (!l->c) {
        sl_die(l, "out of memory");
        return;
    }
    if (l->c->err) {
        sl_die(l, "%s", l->c->errstr);
        return;
    }
    fcntl(l->c->fd, F_SETFD, FD_CLOEXEC);
    evl_replycap_install(&l->cap, l->c->reader, mib);
    if (l->outlen && redisAppendFormattedCommand(l->c, l->out, l->outlen) != REDIS_OK) {
        sl_die(l, "out of memory");
        return;
    }
    free(l->out);
    l->out = NULL;
    l->outlen = 0;
    l->state = EVL_SL_CONNECTING;
    sl_arm(l, now);
}

int evl_sentinel_link_open(struct evl_sentinel_link *l, const char *addr,
                           const struct evl_sentinel_opts *o)
{
    struct addrinfo hints, *res = NULL;
    char why[400];
    double now = evl_monotonic();
    int rc;
    memset(l, 0, sizeof *l);
    snprintf(l->addr, sizeof l->addr, "%s", addr ? addr : "");
    l->timeout = o && o->timeout > 0 ? o->timeout : SL_DEF_TIMEOUT;
    l->cap.mib = o && o->max_reply > 0 ? o->max_reply : EVL_SENTINEL_MAX_REPLY;
    l->state = EVL_SL_LOOKUP;
    if (evl_sentinel_addr(addr, l->host, sizeof l->host, &l->port, why, sizeof why) < 0) {
        snprintf(l->err, sizeof l->err, "%s", why);
        l->state = EVL_SL_DEAD;
        return -1;
    }
    if (o && o->password && o->password[0]) {
        const char *argv[3] = {"AUTH", o->password, NULL};
        if (o->username && o->username[0]) {
            argv[1] = o->username;
            argv[2] = o->password;
        }
        if (evl_sentinel_link_send(l, argv[2] ? 3 : 2, argv) < 0)
            return -1;
        l->asked = 0;
        l->auth_wait = 1;
    }
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    rc = evl_lookup_start(l->host, NULL, &hints, &res, &l->job, &sl_lookups);
    if (rc != 0) {
        sl_die(l, "%s", evl_lookup_failure(why, sizeof why, rc));
        return -1;
    }
    if (l->job) {
        l->deadline = now + l->timeout;
        return 0;
    }
    sl_connect(l, res, now);
    freeaddrinfo(res);
    return l->state == EVL_SL_DEAD ? -1 : 0;
}

/* Write what waits, without waiting. */
static void sl_write(struct evl_sentinel_link *l)
{
    int done = 0;
    if (l->state == EVL_SL_OPEN && sdslen(l->c->obuf) > 0 && redisBufferWrite(l->c, &done) != REDIS_OK)
        sl_die(l, "%s", l->c->errstr);
}

int evl_sentinel_link_send(struct evl_sentinel_link *l, int argc, const char *const *argv)
{
    char *cmd = NULL;
    int len;
    if (l->state == EVL_SL_DEAD || l->state == EVL_SL_CLOSED)
        return -1;
    len = redisFormatCommandArgv(&cmd, argc, (const char **)argv, NULL);
    if (len < 0) {
        sl_die(l, "out of memory");
        return -1;
    }
    if (l->c) {
        if (redisAppendFormattedCommand(l->c, cmd, (size_t)len) != REDIS_OK) {
            redisFreeCommand(cmd);
            sl_die(l, "out of memory");
            return -1;
        }
    } else {
        char *grown = realloc(l->out, l->outlen + (size_t)len);
        if (!grown) {
            redisFreeCommand(cmd);
            sl_die(l, "out of memory");
            return -1;
        }
        memcpy(grown + l->outlen, cmd, (size_t)len);
        l->out = grown;
        l->outlen += (size_t)len;
    }
    redisFreeCommand(cmd);
    if (l->asked++ == 0 && l->state == EVL_SL_OPEN && !l->auth_wait)
        sl_arm(l, evl_monotonic());
    sl_write(l);
    return l->state == EVL_SL_DEAD ? -1 : 0;
}

int evl_sentinel_link_pollfd(const struct evl_sentinel_link *l, struct pollfd *p)
{
    p->revents = 0;
    if (l->state == EVL_SL_CONNECTING) {
        p->fd = l->c->fd;
        p->events = POLLOUT;
        return 1;
    }
    if (l->state == EVL_SL_OPEN) {
        p->fd = l->c->fd;
        p->events = (short)(POLLIN | (sdslen(l->c->obuf) > 0 ? POLLOUT : 0));
        return 1;
    }
    return 0;
}

double evl_sentinel_link_wake(const struct evl_sentinel_link *l, double now)
{
    if (l->state == EVL_SL_LOOKUP && now + SL_LOOKUP_POLL < l->deadline)
        return now + SL_LOOKUP_POLL;
    return l->deadline;
}

void evl_sentinel_link_step(struct evl_sentinel_link *l, double now)
{
    char why[300];
    if (l->state == EVL_SL_LOOKUP && l->job) {
        struct addrinfo *res = NULL;
        int rc = evl_lookup_result(l->job, &res);
        if (rc != EVL_LOOKUP_TIMEOUT) {
            evl_lookup_drop(l->job);
            l->job = NULL;
            if (rc != 0)
                sl_die(l, "%s", evl_lookup_failure(why, sizeof why, rc));
            else
                sl_connect(l, res, now);
            if (res)
                freeaddrinfo(res);
            return;
        }
        if (now >= l->deadline)
            sl_die(l, "%s", evl_timeout_reason(why, sizeof why, 0, l->timeout, "name lookup"));
        return;
    }
    if ((l->state == EVL_SL_CONNECTING || l->state == EVL_SL_OPEN) && l->deadline > 0 &&
        now >= l->deadline)
        sl_die(l, "%s", evl_timeout_reason(why, sizeof why, 0, l->timeout, NULL));
}

void evl_sentinel_link_io(struct evl_sentinel_link *l, short revents, double now)
{
    if (l->state == EVL_SL_CONNECTING && (revents & (POLLOUT | POLLERR | POLLHUP))) {
        int e = 0;
        socklen_t len = sizeof e;
        if (getsockopt(l->c->fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0)
            e = errno;
        if (e) {
            sl_die(l, "%s", strerror(e));
            return;
        }
        l->state = EVL_SL_OPEN;
        sl_arm(l, now);
        revents = POLLOUT;
    }
    if (l->state != EVL_SL_OPEN)
        return;
    if (revents & POLLOUT)
        sl_write(l);
    if (l->state == EVL_SL_OPEN && (revents & (POLLIN | POLLERR | POLLHUP))) {
        int st = evl_hio_fill(l->c, &l->cap);
        if (st == EVL_HIO_ERR)
            sl_die(l, "%s", l->c->errstr[0] ? l->c->errstr : "connection lost");
        else if (st == EVL_HIO_BIG)
            sl_too_big(l);
    }
}

redisReply *evl_sentinel_link_reply(struct evl_sentinel_link *l, double now)
{
    while (l->state == EVL_SL_OPEN) {
        redisReply *r;
        int st = evl_hio_reply(l->c, &l->cap, &r);
        if (st == EVL_HIO_BIG)
            sl_too_big(l);
        else if (st == EVL_HIO_ERR)
            sl_die(l, "%s", l->c->errstr);
        if (st != EVL_HIO_OK)
            return NULL;
        if (l->auth_wait) {
            redisReply *a = r;
            l->auth_wait = 0;
            sl_arm(l, now);
            if (a->type == REDIS_REPLY_ERROR) {
                char text[300];
                snprintf(text, sizeof text, "%.*s", (int)a->len, a->str);
                freeReplyObject(a);
                sl_die(l, "authentication failed: %s", text);
                return NULL;
            }
            freeReplyObject(a);
            continue;
        }
        if (l->asked > 0)
            l->asked--;
        sl_arm(l, now);
        return r;
    }
    return NULL;
}

int evl_sentinel_link_busy(const struct evl_sentinel_link *l)
{
    if (l->state == EVL_SL_LOOKUP || l->state == EVL_SL_CONNECTING)
        return 1;
    return l->state == EVL_SL_OPEN && (l->auth_wait || l->asked || sdslen(l->c->obuf) > 0);
}

void evl_sentinel_link_close(struct evl_sentinel_link *l)
{
    evl_lookup_drop(l->job); /* a thread still resolving frees its part when it ends */
    l->job = NULL;
    if (l->c)
        redisFree(l->c);
    l->c = NULL;
    free(l->out);
    l->out = NULL;
    l->outlen = 0;
    l->auth_wait = l->asked = 0;
    l->deadline = 0;
    if (l->state != EVL_SL_DEAD)
        l->state = EVL_SL_CLOSED;
}

void evl_sentinel_drive(struct evl_sentinel_link *l, size_t n,
                        void (*on_reply)(size_t i, redisReply *r, void *ud), void *ud)
{
    struct pollfd *pfd = calloc(n ? n : 1, sizeof *pfd);
    size_t *at = calloc(n ? n : 1, sizeof *at);
    for (;;) {
        double now = evl_monotonic(), wake = 0;
        size_t np = 0, busy = 0;
        for (size_t i = 0; i < n; i++) {
            evl_sentinel_link_step(&l[i], now);
            if (!evl_sentinel_link_busy(&l[i]))
                continue;
            busy++;
            double w = evl_sentinel_link_wake(&l[i], now);
            if (w > 0 && (wake == 0 || w < wake))
                wake = w;
            if (pfd && at && evl_sentinel_link_pollfd(&l[i], &pfd[np]))
                at[np++] = i;
        }
        if (!busy || !pfd || !at)
            break;
        int ms = wake > 0 ? (int)((wake - now) * 1000.0) + 1 : 1000;
        if (poll(pfd, (nfds_t)np, ms < 0 ? 0 : ms) < 0 && errno != EINTR)
            break;
        now = evl_monotonic();
        for (size_t k = 0; k < np; k++) {
            struct evl_sentinel_link *x = &l[at[k]];
            redisReply *r;
            if (!pfd[k].revents)
                continue;
            evl_sentinel_link_io(x, pfd[k].revents, now);
            while ((r = evl_sentinel_link_reply(x, now)) != NULL) {
                if (on_reply)
                    on_reply(at[k], r, ud);
                else
                    freeReplyObject(r);
            }
        }
    }
    if (!pfd || !at) /* out of memory: nothing was driven, each says so */
        for (size_t i = 0; i < n; i++)
            if (evl_sentinel_link_busy(&l[i]))
                sl_die(&l[i], "out of memory");
    free(pfd);
    free(at);
}

/* ------------------------------------------------------------ blocking */

static void sl_keep_first(size_t i, redisReply *r, void *ud)
{
    redisReply **slot = ud;
    (void)i;
    if (*slot)
        freeReplyObject(r); /* a message nobody asked for */
    else
        *slot = r;
}

int evl_sentinel_open(struct evl_sentinel_link *l, const char *addr,
                      const struct evl_sentinel_opts *o)
{
    redisReply *extra = NULL;
    if (evl_sentinel_link_open(l, addr, o) < 0)
        return -1;
    evl_sentinel_drive(l, 1, sl_keep_first, &extra);
    if (extra)
        freeReplyObject(extra);
    if (l->state != EVL_SL_OPEN) {
        evl_sentinel_link_close(l);
        return -1;
    }
    return 0;
}

redisReply *evl_sentinel_call(struct evl_sentinel_link *l, int argc, const char *const *argv)
{
    redisReply *r = NULL;
    if (l->state != EVL_SL_OPEN) {
        if (l->state != EVL_SL_DEAD)
            snprintf(l->err, sizeof l->err, "%s: not connected", l->addr);
        return NULL;
    }
    if (evl_sentinel_link_send(l, argc, argv) < 0)
        return NULL;
    evl_sentinel_drive(l, 1, sl_keep_first, &r);
    if (r && r->type == REDIS_REPLY_ERROR) {
        snprintf(l->err, sizeof l->err, "%.*s", (int)r->len, r->str);
        freeReplyObject(r);
        return NULL;
    }
    if (!r && l->state == EVL_SL_OPEN) /* cannot be: the drive ends with the reply or a dead link */
        sl_die(l, "no reply");
    return r;
}

int evl_sentinel_dead(const struct evl_sentinel_link *l)
{
    return l == NULL || l->state != EVL_SL_OPEN;
}

const char *evl_sentinel_field(const redisReply *kv, const char *key)
{
    if (kv == NULL || kv->type != REDIS_REPLY_ARRAY)
        return NULL;
    for (size_t i = 0; i + 1 < kv->elements; i += 2) {
        const redisReply *k = kv->element[i], *v = kv->element[i + 1];
        if (k->type != REDIS_REPLY_STRING && k->type != REDIS_REPLY_STATUS)
            continue;
        if (k->len == strlen(key) && memcmp(k->str, key, k->len) == 0)
            return (v->type == REDIS_REPLY_STRING || v->type == REDIS_REPLY_STATUS) ? v->str
                                                                                    : NULL;
    }
    return NULL;
}
