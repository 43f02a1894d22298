/*
 * sentinel.c: the Sentinel client (see sentinel.h), on hiredis 0.14 in
 * blocking mode.
 *
 * Why not plain redisCommand: hiredis bounds each read(2) with SO_RCVTIMEO,
 * not the whole reply, so a Sentinel that dribbles one byte a second would
 * keep us forever. Commands are written with SO_SNDTIMEO set to the time
 * left, and replies are read with our own poll(2) loop against a deadline
 * taken when the command starts. A timeout marks the context dead, as
 * hiredis does with its own I/O errors: the stream is out of step.
 */
#include "sentinel.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* hiredis turns a timeout into int milliseconds; stay well inside that. */
#define SN_MAX_TIMEOUT 1e6

static double sn_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct timeval sn_tv(double secs)
{
    struct timeval tv;
    if (secs < 0.001)
        secs = 0.001;
    if (secs > SN_MAX_TIMEOUT)
        secs = SN_MAX_TIMEOUT;
    tv.tv_sec = (time_t)secs;
    tv.tv_usec = (suseconds_t)((secs - (double)tv.tv_sec) * 1e6);
    if (tv.tv_usec >= 1000000)
        tv.tv_usec = 999999;
    return tv;
}

static double sn_secs(const struct timeval *tv)
{
    return tv ? (double)tv->tv_sec + (double)tv->tv_usec / 1e6 : 2.0;
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

/* "host:port" of a context, for messages. */
static void sn_ctx_addr(const redisContext *c, char *out, size_t cap)
{
    if (c->tcp.host)
        evl_sentinel_format_addr(out, cap, c->tcp.host, c->tcp.port);
    else
        snprintf(out, cap, "?");
}

/* Kill the context with a message, the way hiredis does on an I/O error. */
static void sn_kill(redisContext *c, const char *msg)
{
    if (msg != c->errstr)
        snprintf(c->errstr, sizeof c->errstr, "%s", msg);
    if (c->err == 0)
        c->err = REDIS_ERR_IO;
}

int evl_sentinel_dead(const redisContext *c)
{
    return c == NULL || c->err != 0;
}

static const char sn_timed_out[] = "timed out";

/* Send what was appended, before `deadline`. NULL, or a message. */
static const char *sn_flush(redisContext *c, double deadline)
{
    int done = 0;
    do {
        double left = deadline - sn_now();
        if (left <= 0)
            return sn_timed_out;
        if (redisSetTimeout(c, sn_tv(left)) != REDIS_OK)
            return c->errstr;
        if (redisBufferWrite(c, &done) != REDIS_OK)
            return (errno == EAGAIN || errno == EWOULDBLOCK) ? sn_timed_out : c->errstr;
    } while (!done);
    return NULL;
}

/* Read one whole reply before `deadline`: poll(2) first, so no read(2) waits. */
static const char *sn_read(redisContext *c, double deadline, redisReply **out)
{
    for (;;) {
        void *r = NULL;
        struct pollfd pfd;
        double left;
        int n;
        if (redisGetReplyFromReader(c, &r) != REDIS_OK)
            return c->errstr;
        if (r != NULL) {
            *out = r;
            return NULL;
        }
        left = deadline - sn_now();
        if (left <= 0)
            return sn_timed_out;
        pfd.fd = c->fd;
        pfd.events = POLLIN;
        pfd.revents = 0;
        n = poll(&pfd, 1, (int)(left * 1000.0) + 1);
        if (n == 0)
            continue;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return strerror(errno);
        }
        if (redisBufferRead(c) != REDIS_OK)
            return c->errstr;
    }
}

redisReply *evl_sentinel_cmd(redisContext *c, char *err, size_t errcap, int argc,
                             const char *const *argv)
{
    char addr[320];
    const char *msg;
    redisReply *r = NULL;
    double deadline;
    sn_ctx_addr(c, addr, sizeof addr);
    if (c->err) {
        snprintf(err, errcap, "%s: %s", addr, c->errstr[0] ? c->errstr : "connection lost");
        return NULL;
    }
    deadline = sn_now() + sn_secs(c->timeout);
    if (redisAppendCommandArgv(c, argc, (const char **)argv, NULL) != REDIS_OK) {
        snprintf(err, errcap, "%s: %s", addr, c->errstr);
        return NULL;
    }
    msg = sn_flush(c, deadline);
    if (msg == NULL)
        msg = sn_read(c, deadline, &r);
    if (msg != NULL) {
        sn_kill(c, msg);
        snprintf(err, errcap, "%s: %s", addr, c->errstr);
        return NULL;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(err, errcap, "%.*s", (int)r->len, r->str);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

redisReply *evl_sentinel_read(redisContext *c, double timeout, int *timed_out, char *err,
                              size_t errcap)
{
    char addr[320];
    const char *msg;
    redisReply *r = NULL;
    *timed_out = 0;
    sn_ctx_addr(c, addr, sizeof addr);
    if (c->err) {
        snprintf(err, errcap, "%s: %s", addr, c->errstr[0] ? c->errstr : "connection lost");
        return NULL;
    }
    msg = sn_read(c, sn_now() + (timeout > 0 ? timeout : 0), &r);
    if (msg == sn_timed_out) {
        *timed_out = 1; /* waiting for a message is not an error: the stream is in step */
        snprintf(err, errcap, "%s: %s", addr, sn_timed_out);
        return NULL;
    }
    if (msg != NULL) {
        sn_kill(c, msg);
        snprintf(err, errcap, "%s: %s", addr, c->errstr);
        return NULL;
    }
    return r;
}

redisContext *evl_sentinel_connect(const char *addr, const struct evl_sentinel_auth *auth,
                                   double timeout, char *err, size_t errcap)
{
    char host[256], msg[256];
    int port;
    redisContext *c;
    if (evl_sentinel_addr(addr, host, sizeof host, &port, err, errcap) < 0)
        return NULL;
    if (!(timeout > 0))
        timeout = 2.0;
    /* Connect bounded by the timeout; it also becomes c->timeout, which
       bounds every later command. */
    c = redisConnectWithTimeout(host, port, sn_tv(timeout));
    if (c == NULL) {
        snprintf(err, errcap, "%s: out of memory", addr);
        return NULL;
    }
    if (c->err) {
        snprintf(err, errcap, "%s: %s", addr, c->errstr);
        redisFree(c);
        return NULL;
    }
    if (auth && auth->password && auth->password[0]) {
        const char *argv[3];
        int argc = 0;
        redisReply *r;
        argv[argc++] = "AUTH";
        if (auth->username && auth->username[0])
            argv[argc++] = auth->username;
        argv[argc++] = auth->password;
        r = evl_sentinel_cmd(c, msg, sizeof msg, argc, argv);
        if (r == NULL) {
            if (evl_sentinel_dead(c))
                snprintf(err, errcap, "%s", msg);
            else
                snprintf(err, errcap, "%s: authentication failed: %s", addr, msg);
            redisFree(c);
            return NULL;
        }
        freeReplyObject(r);
    }
    return c;
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

/* ------------------------------------------------------------ discovery */

/* What discovery keeps beside the public list: each Sentinel's run id, so
   one that a seed names by hostname and another by IP is listed once. */
struct sn_disc {
    struct evl_fleet *f;
    size_t scap, mcap;
    char (*runid)[48]; /* parallel to f->s */
};

static int sn_has_runid(const struct sn_disc *d, const char *runid)
{
    if (runid == NULL || runid[0] == '\0')
        return 0;
    for (size_t i = 0; i < d->f->ns; i++)
        if (strcmp(d->runid[i], runid) == 0)
            return 1;
    return 0;
}

/* Add a Sentinel unless its address (or run id) is known. 0, or -1 (OOM). */
static int sn_add_sentinel(struct sn_disc *d, const char *addr, const char *runid)
{
    struct evl_fleet *f = d->f;
    for (size_t i = 0; i < f->ns; i++)
        if (strcmp(f->s[i].addr, addr) == 0)
            return 0;
    if (sn_has_runid(d, runid))
        return 0;
    if (f->ns == d->scap) {
        size_t cap = d->scap ? d->scap * 2 : 8;
        void *s = realloc(f->s, cap * sizeof *f->s);
        if (s == NULL)
            return -1;
        f->s = s;
        s = realloc(d->runid, cap * sizeof *d->runid);
        if (s == NULL)
            return -1;
        d->runid = s;
        d->scap = cap;
    }
    memset(&f->s[f->ns], 0, sizeof f->s[f->ns]);
    snprintf(f->s[f->ns].addr, sizeof f->s[f->ns].addr, "%s", addr);
    snprintf(d->runid[f->ns], sizeof d->runid[f->ns], "%s", runid ? runid : "");
    f->ns++;
    return 0;
}

static int sn_add_master(struct sn_disc *d, const char *name)
{
    struct evl_fleet *f = d->f;
    for (size_t i = 0; i < f->nm; i++)
        if (strcmp(f->masters[i], name) == 0)
            return 0;
    if (f->nm == d->mcap) {
        size_t cap = d->mcap ? d->mcap * 2 : 8;
        void *m = realloc(f->masters, cap * sizeof *f->masters);
        if (m == NULL)
            return -1;
        f->masters = m;
        d->mcap = cap;
    }
    snprintf(f->masters[f->nm], sizeof f->masters[f->nm], "%s", name);
    f->nm++;
    return 0;
}

static int sn_wanted(const char *name, const char *const *only, size_t nonly)
{
    if (nonly == 0)
        return 1;
    for (size_t i = 0; i < nonly; i++)
        if (strcmp(only[i], name) == 0)
            return 1;
    return 0;
}

/* Ask Sentinel i for its masters and their Sentinels. 0, or -1 (OOM). */
static int sn_visit(struct sn_disc *d, size_t i, const char *const *only, size_t nonly,
                    const struct evl_sentinel_auth *auth, double timeout)
{
    struct evl_fleet_sentinel *s = &d->f->s[i];
    static const char *const myid[] = {"SENTINEL", "MYID"};
    static const char *const masters[] = {"SENTINEL", "MASTERS"};
    char err[256];
    redisReply *r, *ms;
    int rc = 0;
    redisContext *c = evl_sentinel_connect(s->addr, auth, timeout, s->err, sizeof s->err);
    if (c == NULL)
        return 0;
    /* MYID is 6.2+; an older Sentinel just goes without de-duplication. */
    r = evl_sentinel_cmd(c, err, sizeof err, 2, myid);
    if (r && r->type == REDIS_REPLY_STRING) {
        snprintf(d->runid[i], sizeof d->runid[i], "%s", r->str);
        for (size_t j = 0; j < i; j++) {
            if (strcmp(d->runid[j], r->str) == 0) {
                /* Listed already under another name: dropped at the end. */
                s->reachable = 1;
                freeReplyObject(r);
                redisFree(c);
                return 0;
            }
        }
    }
    if (r)
        freeReplyObject(r);
    if (evl_sentinel_dead(c)) {
        snprintf(s->err, sizeof s->err, "%s", err);
        redisFree(c);
        return 0;
    }
    ms = evl_sentinel_cmd(c, s->err, sizeof s->err, 2, masters);
    if (ms == NULL) {
        /* A data node answers, but knows no SENTINEL: say what it is, not Redis's words. */
        if (!evl_sentinel_dead(c) && strstr(s->err, "unknown command"))
            snprintf(s->err, sizeof s->err, "not a Sentinel: it answers as Redis but knows no "
                     "SENTINEL command (a data node? Sentinel's own port is 26379)");
        redisFree(c);
        return 0;
    }
    s->reachable = 1;
    for (size_t m = 0; rc == 0 && ms->type == REDIS_REPLY_ARRAY && m < ms->elements; m++) {
        const char *name = evl_sentinel_field(ms->element[m], "name");
        const char *argv[3];
        redisReply *ss;
        if (name == NULL || !sn_wanted(name, only, nonly))
            continue;
        if (sn_add_master(d, name) < 0) {
            rc = -1;
            break;
        }
        argv[0] = "SENTINEL";
        argv[1] = "SENTINELS";
        argv[2] = name;
        ss = evl_sentinel_cmd(c, err, sizeof err, 3, argv);
        if (ss == NULL) {
            if (evl_sentinel_dead(c)) {
                /* It answered MASTERS, so it counts as reachable; say why
                   its peers may be missing. */
                snprintf(s->err, sizeof s->err, "%s", err);
                break;
            }
            continue;
        }
        for (size_t k = 0; ss->type == REDIS_REPLY_ARRAY && k < ss->elements; k++) {
            const char *ip = evl_sentinel_field(ss->element[k], "ip");
            const char *port = evl_sentinel_field(ss->element[k], "port");
            char a[320];
            if (ip == NULL || port == NULL)
                continue;
            evl_sentinel_format_addr(a, sizeof a, ip, atoi(port));
            if (sn_add_sentinel(d, a, evl_sentinel_field(ss->element[k], "runid")) < 0) {
                rc = -1;
                break;
            }
            s = &d->f->s[i]; /* the list may have moved */
        }
        freeReplyObject(ss);
    }
    freeReplyObject(ms);
    redisFree(c);
    return rc;
}

int evl_sentinel_discover(const char *const *seeds, size_t nseeds, const char *const *only,
                          size_t nonly, const struct evl_sentinel_auth *auth, double timeout,
                          struct evl_fleet *out, char *err, size_t errcap)
{
    struct sn_disc d;
    memset(out, 0, sizeof *out);
    memset(&d, 0, sizeof d);
    d.f = out;
    if (nseeds == 0) {
        snprintf(err, errcap, "no Sentinel to start from (give --sentinel HOST:PORT or set "
                              "watch.sentinels)");
        return -1;
    }
    for (size_t i = 0; i < nseeds; i++) {
        char host[256], a[320];
        int port;
        if (evl_sentinel_addr(seeds[i], host, sizeof host, &port, err, errcap) < 0)
            goto fail;
        /* as its peers name it: a seed without a port is listed with 26379 */
        evl_sentinel_format_addr(a, sizeof a, host, port);
        if (sn_add_sentinel(&d, a, NULL) < 0)
            goto oom;
    }
    /* The list grows while it is walked: each visit may name new peers. */
    for (size_t i = 0; i < out->ns; i++) {
        if (out->s[i].reachable)
            continue;
        if (sn_visit(&d, i, only, nonly, auth, timeout) < 0)
            goto oom;
    }
    /* A seed that turned out to be a known Sentinel under another name
       (same run id) is dropped: it would be listed twice. */
    for (size_t i = 0, j; i < out->ns; i++) {
        for (j = 0; j < i; j++)
            if (d.runid[i][0] && strcmp(d.runid[i], d.runid[j]) == 0)
                break;
        if (j < i) {
            memmove(&out->s[i], &out->s[i + 1], (out->ns - i - 1) * sizeof out->s[0]);
            memmove(&d.runid[i], &d.runid[i + 1], (out->ns - i - 1) * sizeof d.runid[0]);
            out->ns--;
            i--;
        }
    }
    free(d.runid);
    return 0;
oom:
    snprintf(err, errcap, "out of memory");
fail:
    free(d.runid);
    evl_fleet_free(out);
    return -1;
}

void evl_fleet_free(struct evl_fleet *f)
{
    if (f == NULL)
        return;
    free(f->s);
    free(f->masters);
    f->s = NULL;
    f->masters = NULL;
    f->ns = f->nm = 0;
}
