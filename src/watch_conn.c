/*
 * watch_conn.c: one subscriber connection per Sentinel, and what the
 * watcher knows about the masters.
 *
 * Each Sentinel is connected on its own (the shared client in sentinel.c:
 * connect, AUTH), subscribed with PSUBSCRIBE "[-+]*" (every event channel;
 * not __sentinel__:hello), then read without blocking from the poll() loop.
 * A Sentinel that is down or drops is retried with a backoff of 0.1 s
 * doubling to 10 s, and never holds up the others: one log line when it
 * connects, one when it goes.
 *
 * After every connect a short command connection asks SENTINEL MASTERS
 * (reconciliation) and, with discover, SENTINEL SENTINELS <master>. Each
 * master's address and config epoch are kept in <state_dir>/watch-masters:
 * a master whose address moved (with a newer config epoch, so a Sentinel
 * that lags behind is not believed) while nobody was listening gets one
 * synthetic +switch-master, and the file remembers it across restarts.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "log.h"
#include "sentinel.h"
#include "statedir.h"
#include "watch.h"

#define BACKOFF_FIRST 0.1
#define BACKOFF_MAX 10.0

struct sent {
    char addr[320];
    redisContext *c;
    double next_try, backoff;
    int quiet; /* its failure to connect was logged already */
};

static struct sent S[WATCH_MAX_SENTINELS];
static int ns;
static struct watch_set *set;

struct known {
    char name[256], ip[256];
    long port;
    unsigned long long epoch;
};
static struct known *K;
static size_t nk, capk;
static char state_path[4200];
static int state_warned;

/* ---------------------------------------------------------------- masters */

static void state_load(void)
{
    nk = 0;
    snprintf(state_path, sizeof state_path, "%s/watch-masters", set->s.state_dir);
    FILE *f = fopen(state_path, "re");
    if (!f)
        return;
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        struct known k;
        if (sscanf(line, "%255s %255s %ld %llu", k.name, k.ip, &k.port, &k.epoch) != 4)
            continue;
        if (nk == capk) {
            size_t nc = capk ? capk * 2 : 64;
            struct known *nkp = realloc(K, nc * sizeof *K);
            if (!nkp)
                break;
            K = nkp;
            capk = nc;
        }
        K[nk++] = k;
    }
    fclose(f);
}

static void state_save(void)
{
    char tmp[4300];
    char why[900];
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", state_path, (long)getpid());
    if (!evl_private_dir(set->s.state_dir, why, sizeof why)) {
        if (!state_warned++)
            evl_log(EVL_ERROR, "watch: %s; moved masters will not be remembered across restarts", why);
        return;
    }
    FILE *f = fopen(tmp, "we");
    if (!f) {
        if (!state_warned++)
            evl_log(EVL_ERROR, "watch: %s: %s; moved masters will not be remembered across restarts",
                    tmp, strerror(errno));
        return;
    }
    for (size_t i = 0; i < nk; i++)
        fprintf(f, "%s %s %ld %llu\n", K[i].name, K[i].ip, K[i].port, K[i].epoch);
    int bad = fflush(f) != 0 || fsync(fileno(f)) != 0;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, state_path) != 0) {
        evl_log(EVL_ERROR, "watch: %s: %s", state_path, strerror(errno));
        unlink(tmp);
    }
}

static struct known *find(const char *name)
{
    for (size_t i = 0; i < nk; i++)
        if (strcmp(K[i].name, name) == 0)
            return &K[i];
    return NULL;
}

static struct known *add(const char *name)
{
    if (strlen(name) >= sizeof K->name || strpbrk(name, " \t\n"))
        return NULL; /* not representable in the state file: not tracked */
    if (nk == capk) {
        size_t nc = capk ? capk * 2 : 64;
        struct known *nkp = realloc(K, nc * sizeof *K);
        if (!nkp)
            return NULL;
        K = nkp;
        capk = nc;
    }
    memset(&K[nk], 0, sizeof K[nk]);
    snprintf(K[nk].name, sizeof K[nk].name, "%s", name);
    return &K[nk++];
}

void conn_master_moved(const char *name, const char *ip, long port)
{
    struct known *k = find(name);
    if (!k && !(k = add(name)))
        return;
    if (strcmp(k->ip, ip) == 0 && k->port == port)
        return;
    snprintf(k->ip, sizeof k->ip, "%s", ip);
    k->port = port;
    k->epoch++; /* at least one newer than what we had */
    state_save();
}

/* What Sentinel idx says about one master, against what we knew. */
static void reconcile_master(int idx, const char *name, const char *ip, long port,
                             unsigned long long epoch)
{
    struct known *k = find(name);
    if (!k) {
        if ((k = add(name))) {
            snprintf(k->ip, sizeof k->ip, "%s", ip);
            k->port = port;
            k->epoch = epoch;
            state_save();
        }
        return;
    }
    if (strcmp(k->ip, ip) == 0 && k->port == port) {
        if (epoch > k->epoch) {
            k->epoch = epoch;
            state_save();
        }
        return;
    }
    if (epoch <= k->epoch)
        return; /* this Sentinel has not heard of the newer configuration yet */
    char text[1024];
    snprintf(text, sizeof text, "%s %s %ld %s %ld", name, k->ip, k->port, ip, port);
    evl_log(EVL_INFO, "watch: %s moved from %s:%ld to %s:%ld while nobody was listening "
            "(sentinel %s, config-epoch %llu): a synthetic +switch-master", name, k->ip, k->port,
            ip, port, S[idx].addr, epoch);
    snprintf(k->ip, sizeof k->ip, "%s", ip);
    k->port = port;
    k->epoch = epoch;
    state_save();
    run_intake(idx, "+switch-master", text, 1);
}

static struct evl_sentinel_auth auth(void)
{
    struct evl_sentinel_auth a = {set->s.username, set->s.password};
    return a;
}

/* SENTINEL MASTERS (and SENTINEL SENTINELS) on a command connection. */
static void reconcile(int idx)
{
    char err[256];
    struct evl_sentinel_auth a = auth();
    redisContext *c = evl_sentinel_connect(S[idx].addr, &a, set->s.timeout, err, sizeof err);
    if (!c) {
        evl_log(EVL_WARN, "watch: sentinel %s: reconciliation skipped: %s", S[idx].addr, err);
        return;
    }
    const char *argv[3] = {"SENTINEL", "MASTERS", NULL};
    redisReply *r = evl_sentinel_cmd(c, err, sizeof err, 2, argv);
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        evl_log(EVL_WARN, "watch: sentinel %s: SENTINEL MASTERS: %s; no reconciliation with it",
                S[idx].addr, r ? "not an array" : err);
        if (r)
            freeReplyObject(r);
        redisFree(c);
        return;
    }
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *m = r->element[i];
        const char *name = evl_sentinel_field(m, "name"), *ip = evl_sentinel_field(m, "ip");
        const char *port = evl_sentinel_field(m, "port"), *ep = evl_sentinel_field(m, "config-epoch");
        if (!name || !ip || !port || !watch_wants_master(set, name))
            continue;
        reconcile_master(idx, name, ip, strtol(port, NULL, 10), ep ? strtoull(ep, NULL, 10) : 0);
        if (!set->s.discover)
            continue;
        argv[1] = "SENTINELS";
        argv[2] = name;
        redisReply *ss = evl_sentinel_cmd(c, err, sizeof err, 3, argv);
        for (size_t j = 0; ss && ss->type == REDIS_REPLY_ARRAY && j < ss->elements; j++) {
            const char *sip = evl_sentinel_field(ss->element[j], "ip");
            const char *sport = evl_sentinel_field(ss->element[j], "port");
            if (sip && sport) {
                char addr[320];
                evl_sentinel_format_addr(addr, sizeof addr, sip, atoi(sport));
                conn_add(addr);
            }
        }
        if (ss)
            freeReplyObject(ss);
    }
    freeReplyObject(r);
    redisFree(c);
}

/* ---------------------------------------------------------------- connections */

void conn_add(const char *addr)
{
    for (int i = 0; i < ns; i++)
        if (strcmp(S[i].addr, addr) == 0)
            return;
    if (ns == WATCH_MAX_SENTINELS) {
        evl_log(EVL_WARN, "watch: more than %d Sentinels: %s is not watched", WATCH_MAX_SENTINELS, addr);
        return;
    }
    memset(&S[ns], 0, sizeof S[ns]);
    snprintf(S[ns].addr, sizeof S[ns].addr, "%s", addr);
    S[ns].backoff = BACKOFF_FIRST;
    if (ns > 0)
        evl_log(EVL_INFO, "watch: sentinel %s: discovered", addr);
    ns++;
}

const char *conn_addr(int idx)
{
    return idx >= 0 && idx < ns ? S[idx].addr : "-";
}

int conn_count(void)
{
    return ns;
}

static void down(int idx, const char *why, double now)
{
    struct sent *s = &S[idx];
    if (s->c) {
        evl_log(EVL_WARN, "watch: sentinel %s: disconnected: %s; reconnecting", s->addr, why);
        redisFree(s->c);
        s->c = NULL;
        s->backoff = BACKOFF_FIRST;
        s->quiet = 1;
    } else if (!s->quiet) {
        evl_log(EVL_WARN, "watch: sentinel %s: cannot connect: %s; retrying (backoff up to %.0f s)",
                s->addr, why, BACKOFF_MAX);
        s->quiet = 1;
    } else {
        evl_log(EVL_DEBUG, "watch: sentinel %s: still no connection: %s", s->addr, why);
    }
    s->next_try = now + s->backoff;
    s->backoff = s->backoff * 2 > BACKOFF_MAX ? BACKOFF_MAX : s->backoff * 2;
}

static void try_connect(int idx, double now)
{
    char err[256];
    struct sent *s = &S[idx];
    struct evl_sentinel_auth a = auth();
    redisContext *c = evl_sentinel_connect(s->addr, &a, set->s.timeout, err, sizeof err);
    if (!c) {
        down(idx, err, now);
        return;
    }
    const char *argv[] = {"PSUBSCRIBE", "[-+]*"};
    redisReply *r = evl_sentinel_cmd(c, err, sizeof err, 2, argv);
    if (!r) {
        redisFree(c);
        down(idx, err, now);
        return;
    }
    freeReplyObject(r);
    int fl = fcntl(c->fd, F_GETFL);
    fcntl(c->fd, F_SETFL, fl | O_NONBLOCK);
    fcntl(c->fd, F_SETFD, FD_CLOEXEC);
    c->flags &= ~REDIS_BLOCK;
    s->c = c;
    s->quiet = 0;
    s->backoff = BACKOFF_FIRST;
    evl_log(EVL_INFO, "watch: sentinel %s: connected and subscribed", s->addr);
    reconcile(idx);
}

double conn_tick(double now)
{
    double next = BACKOFF_MAX;
    for (int i = 0; i < ns && !watch_stopping; i++) {
        if (S[i].c)
            continue;
        if (S[i].next_try <= now)
            try_connect(i, watch_now());
        if (!S[i].c && S[i].next_try - now < next)
            next = S[i].next_try - now;
    }
    return next < 0 ? 0 : next;
}

int conn_pollfds(struct pollfd *pfds, int *idx, int max)
{
    int n = 0;
    for (int i = 0; i < ns && n < max; i++)
        if (S[i].c) {
            pfds[n].fd = S[i].c->fd;
            pfds[n].events = POLLIN;
            pfds[n].revents = 0;
            idx[n++] = i;
        }
    return n;
}

/* One pub/sub reply: pmessage <pattern> <channel> <payload>. */
static void message(int idx, const redisReply *r)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 3)
        return;
    const redisReply *kind = r->element[0];
    size_t at = r->elements == 4 ? 2 : 1;
    if (kind->type != REDIS_REPLY_STRING ||
        (strcmp(kind->str, "pmessage") != 0 && strcmp(kind->str, "message") != 0))
        return; /* (p)subscribe confirmations */
    const redisReply *ch = r->element[at], *pl = r->element[at + 1];
    if (ch->type != REDIS_REPLY_STRING || pl->type != REDIS_REPLY_STRING)
        return;
    if (strlen(ch->str) != (size_t)ch->len || strlen(pl->str) != (size_t)pl->len) {
        evl_log(EVL_WARN, "watch: sentinel %s: a message with a NUL byte on channel %.64s; ignored",
                S[idx].addr, ch->str);
        return;
    }
    run_intake(idx, ch->str, pl->str, 0);
}

void conn_read(int idx)
{
    struct sent *s = &S[idx];
    if (!s->c)
        return;
    if (redisBufferRead(s->c) != REDIS_OK) {
        down(idx, s->c->errstr[0] ? s->c->errstr : "connection lost", watch_now());
        return;
    }
    void *reply;
    while (s->c && redisGetReplyFromReader(s->c, &reply) == REDIS_OK && reply) {
        message(idx, reply);
        freeReplyObject(reply);
    }
    if (s->c && s->c->err)
        down(idx, s->c->errstr, watch_now());
}

void conn_close_all(void)
{
    for (int i = 0; i < ns; i++)
        if (S[i].c) {
            redisFree(S[i].c);
            S[i].c = NULL;
        }
}

/*
 * In a run's child (forked, no exec): close the copies of the subscriber
 * sockets. Closing (not redisFree) touches nothing the watcher shares: the
 * connections stay the watcher's, and a handler cannot read or write them.
 */
void conn_close_fds(void)
{
    for (int i = 0; i < ns; i++)
        if (S[i].c && S[i].c->fd >= 0)
            close(S[i].c->fd);
}

void conn_rediscover(void)
{
    const char *seeds[WATCH_MAX_SENTINELS];
    struct evl_fleet f;
    char err[256];
    for (int i = 0; i < ns; i++)
        seeds[i] = S[i].addr;
    struct evl_sentinel_auth a = auth();
    memset(&f, 0, sizeof f);
    if (evl_sentinel_discover(seeds, (size_t)ns, (const char *const *)set->s.masters,
                              set->s.nmasters, &a, set->s.timeout, &f, err, sizeof err) < 0) {
        evl_log(EVL_WARN, "watch: rediscovery: %s", err);
        return;
    }
    for (size_t i = 0; i < f.ns; i++)
        conn_add(f.s[i].addr);
    evl_fleet_free(&f);
}

void conn_settings(struct watch_set *s)
{
    set = s;
    for (size_t i = 0; i < s->s.nseeds; i++)
        conn_add(s->s.seeds[i]);
}

void conn_init(struct watch_set *s)
{
    set = s;
    state_load();
    for (size_t i = 0; i < s->s.nseeds; i++)
        conn_add(s->s.seeds[i]);
}
