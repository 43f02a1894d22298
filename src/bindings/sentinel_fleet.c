/*
 * sentinel_fleet.c: discovery (sentinel.h), the fleet as `eventilator
 * sentinels` sees it.
 *
 * Rounds: every Sentinel not asked yet is asked at once, on a link of its
 * own (SENTINEL MYID, SENTINEL MASTERS, then SENTINEL SENTINELS <m> for each
 * master wanted), and the Sentinels those replies name make the next round,
 * until a round names none. So N Sentinels that accept and never answer cost
 * one timeout, not N. The list stops at EVL_SENTINEL_MAX_FLEET: a Sentinel
 * that names ten thousand others is not believed past it, and `capped` says
 * how many different addresses were left out.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fnv.h"
#include "sentinel.h"

/* What discovery keeps beside the public list. */
struct fl {
    struct evl_fleet *f;
    size_t scap, mcap;
    char (*runid)[48];     /* parallel to f->s: one named by hostname and by IP is listed once */
    unsigned char *asked;  /* parallel to f->s */
    const char *const *only;
    size_t nonly;
    uint64_t over[4096];   /* addresses left out past the cap (hashes, open addressing) */
    int oom;
};

/* One link of a round: which Sentinel, and how many replies it gave. */
struct round {
    struct fl *d;
    size_t at[EVL_SENTINEL_MAX_FLEET];
    int got[EVL_SENTINEL_MAX_FLEET];
    struct evl_sentinel_link l[EVL_SENTINEL_MAX_FLEET];
};

static int fl_has_runid(const struct fl *d, const char *runid, size_t except)
{
    if (runid == NULL || runid[0] == '\0')
        return 0;
    for (size_t i = 0; i < d->f->ns; i++)
        if (i != except && strcmp(d->runid[i], runid) == 0)
            return 1;
    return 0;
}

/* An address past the cap: counted once however often it is named. */
static void fl_left_out(struct fl *d, const char *addr)
{
    size_t slots = sizeof d->over / sizeof d->over[0];
    uint64_t h = evl_fnv(addr, strlen(addr), EVL_FNV0) | 1;
    size_t i = (size_t)(h % slots);
    for (size_t n = 0; n < slots / 2 && d->over[i]; n++, i = (i + 1) % slots)
        if (d->over[i] == h)
            return;
    if (d->f->capped < slots / 2)
        d->over[i] = h;
    d->f->capped++; /* past half the table: still counted, maybe twice */
}

/* Add a Sentinel unless its address (or run id) is known, or the list is full. */
static void fl_add_sentinel(struct fl *d, const char *addr, const char *runid)
{
    struct evl_fleet *f = d->f;
    for (size_t i = 0; i < f->ns; i++)
        if (strcmp(f->s[i].addr, addr) == 0)
            return;
    if (fl_has_runid(d, runid, (size_t)-1))
        return;
    if (f->ns >= EVL_SENTINEL_MAX_FLEET) {
        fl_left_out(d, addr);
        return;
    }
    if (f->ns == d->scap) {
        size_t cap = d->scap ? d->scap * 2 : 8;
        void *s = realloc(f->s, cap * sizeof *f->s), *r, *a;
        if (s)
            f->s = s;
        r = s ? realloc(d->runid, cap * sizeof *d->runid) : NULL;
        if (r)
            d->runid = r;
        a = r ? realloc(d->asked, cap) : NULL;
        if (!a) {
            d->oom = 1;
            return;
        }
        d->asked = a;
        d->scap = cap;
    }
    memset(&f->s[f->ns], 0, sizeof f->s[f->ns]);
    snprintf(f->s[f->ns].addr, sizeof f->s[f->ns].addr, "%s", addr);
    snprintf(d->runid[f->ns], sizeof d->runid[f->ns], "%s", runid ? runid : "");
    d->asked[f->ns] = 0;
    f->ns++;
}

static void fl_add_master(struct fl *d, const char *name)
{
    struct evl_fleet *f = d->f;
    for (size_t i = 0; i < f->nm; i++)
        if (strcmp(f->masters[i], name) == 0)
            return;
    if (f->nm == d->mcap) {
        size_t cap = d->mcap ? d->mcap * 2 : 8;
        void *m = realloc(f->masters, cap * sizeof *f->masters);
        if (m == NULL) {
            d->oom = 1;
            return;
        }
        f->masters = m;
        d->mcap = cap;
    }
    snprintf(f->masters[f->nm], sizeof f->masters[f->nm], "%s", name);
    f->nm++;
}

static int fl_wanted(const struct fl *d, const char *name)
{
    if (d->nonly == 0)
        return 1;
    for (size_t i = 0; i < d->nonly; i++)
        if (strcmp(d->only[i], name) == 0)
            return 1;
    return 0;
}

/* SENTINEL MASTERS: the masters wanted, and SENTINEL SENTINELS asked for each. */
static void fl_masters(struct round *rd, size_t k, const redisReply *ms)
{
    struct fl *d = rd->d;
    for (size_t m = 0; ms->type == REDIS_REPLY_ARRAY && m < ms->elements; m++) {
        const char *name = evl_sentinel_field(ms->element[m], "name");
        const char *argv[3] = {"SENTINEL", "SENTINELS", name};
        if (name == NULL || !fl_wanted(d, name))
            continue;
        fl_add_master(d, name);
        evl_sentinel_link_send(&rd->l[k], 3, argv);
    }
}

static void fl_sentinels(struct round *rd, const redisReply *ss)
{
    for (size_t j = 0; ss->type == REDIS_REPLY_ARRAY && j < ss->elements; j++) {
        const char *ip = evl_sentinel_field(ss->element[j], "ip");
        const char *port = evl_sentinel_field(ss->element[j], "port");
        char a[320];
        if (ip == NULL || port == NULL)
            continue;
        evl_sentinel_format_addr(a, sizeof a, ip, atoi(port));
        fl_add_sentinel(rd->d, a, evl_sentinel_field(ss->element[j], "runid"));
    }
}

/* A reply on link k: MYID first, then MASTERS, then one SENTINELS per master asked. */
static void fl_reply(size_t k, redisReply *r, void *ud)
{
    struct round *rd = ud;
    struct fl *d = rd->d;
    size_t i = rd->at[k];
    struct evl_fleet_sentinel *s = &d->f->s[i];
    int n = ++rd->got[k];
    if (n == 1 && r->type == REDIS_REPLY_STRING) { /* MYID is 6.2+: older ones go without */
        snprintf(d->runid[i], sizeof d->runid[i], "%s", r->str);
        if (fl_has_runid(d, r->str, i)) {
            s->reachable = 1; /* listed already under another name: dropped at the end */
            evl_sentinel_link_close(&rd->l[k]);
        }
    } else if (n == 2 && r->type == REDIS_REPLY_ERROR) {
        /* A data node answers, but knows no SENTINEL: say what it is, not Redis's words. */
        if (strstr(r->str, "unknown command"))
            snprintf(s->err, sizeof s->err, "not a Sentinel: it answers as Redis but knows no "
                     "SENTINEL command (a data node? Sentinel's own port is 26379)");
        else
            snprintf(s->err, sizeof s->err, "%.*s", (int)r->len, r->str);
        evl_sentinel_link_close(&rd->l[k]);
    } else if (n == 2) {
        s->reachable = 1;
        fl_masters(rd, k, r);
    } else if (n > 2) {
        fl_sentinels(rd, r);
    }
    freeReplyObject(r);
}

/* One round: every Sentinel listed and not asked yet, at once. */
static void fl_round(struct fl *d, const struct evl_sentinel_opts *o)
{
    static const char *const myid[] = {"SENTINEL", "MYID"};
    static const char *const masters[] = {"SENTINEL", "MASTERS"};
    struct round *rd = calloc(1, sizeof *rd);
    size_t n = 0;
    if (!rd) {
        d->oom = 1;
        return;
    }
    rd->d = d;
    for (size_t i = 0; i < d->f->ns && n < EVL_SENTINEL_MAX_FLEET; i++) {
        if (d->asked[i])
            continue;
        d->asked[i] = 1;
        rd->at[n] = i;
        if (evl_sentinel_link_open(&rd->l[n], d->f->s[i].addr, o) == 0) {
            evl_sentinel_link_send(&rd->l[n], 2, myid);
            evl_sentinel_link_send(&rd->l[n], 2, masters);
        }
        n++;
    }
    evl_sentinel_drive(rd->l, n, fl_reply, rd);
    for (size_t k = 0; k < n; k++) {
        struct evl_fleet_sentinel *s = &d->f->s[rd->at[k]];
        /* a link that died: why it is unreachable, or, after MASTERS, why its peers may be missing */
        if (rd->l[k].state == EVL_SL_DEAD && s->err[0] == '\0')
            snprintf(s->err, sizeof s->err, "%s", rd->l[k].err);
        evl_sentinel_link_close(&rd->l[k]);
    }
    free(rd);
}

/* A Sentinel listed twice (the same run id under two names) stays once, first listed. */
static void fl_dedupe(struct fl *d)
{
    struct evl_fleet *out = d->f;
    for (size_t i = 0, j; i < out->ns; i++) {
        for (j = 0; j < i; j++)
            if (d->runid[i][0] && strcmp(d->runid[i], d->runid[j]) == 0)
                break;
        if (j < i) {
            memmove(&out->s[i], &out->s[i + 1], (out->ns - i - 1) * sizeof out->s[0]);
            memmove(&d->runid[i], &d->runid[i + 1], (out->ns - i - 1) * sizeof d->runid[0]);
            out->ns--;
            i--;
        }
    }
}

int evl_sentinel_discover(const char *const *seeds, size_t nseeds, const char *const *only,
                          size_t nonly, const struct evl_sentinel_opts *o, struct evl_fleet *out,
                          char *err, size_t errcap)
{
    struct fl *d = calloc(1, sizeof *d);
    memset(out, 0, sizeof *out);
    if (!d) {
        snprintf(err, errcap, "out of memory");
        return -1;
    }
    d->f = out;
    d->only = only;
    d->nonly = nonly;
    if (nseeds == 0) {
        snprintf(err, errcap, "no Sentinel to start from (give --sentinel HOST:PORT or set "
                              "watch.sentinels)");
        free(d);
        return -1;
    }
    for (size_t i = 0; i < nseeds; i++) {
        char host[256], a[320];
        int port;
        if (evl_sentinel_addr(seeds[i], host, sizeof host, &port, err, errcap) < 0)
            goto fail;
        /* as its peers name it: a seed without a port is listed with 26379 */
        evl_sentinel_format_addr(a, sizeof a, host, port);
        fl_add_sentinel(d, a, NULL);
    }
    while (!d->oom) { /* a round may list more: then another round */
        int more = 0;
        for (size_t i = 0; i < out->ns; i++)
            more |= !d->asked[i];
        if (!more)
            break;
        fl_round(d, o);
    }
    if (d->oom) {
        snprintf(err, errcap, "out of memory");
        goto fail;
    }
    fl_dedupe(d);
    free(d->runid);
    free(d->asked);
    free(d);
    return 0;
fail:
    free(d->runid);
    free(d->asked);
    free(d);
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
    f->ns = f->nm = f->capped = 0;
}
