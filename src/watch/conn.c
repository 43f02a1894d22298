/*
 * conn.c: two links per Sentinel, and what the watcher knows about the
 * masters. Every message heard goes down to intake (intake.c); what an
 * event asks of the connections comes back from it as an action (act()).
 *
 * Every link is the shared client's non-blocking one (sentinel.c), driven
 * by the watcher's one poll() loop: a name lookup, a connect, AUTH and
 * every reply waited on end at their own deadline (watch.timeout), so a
 * Sentinel that accepts and never answers, or a seed whose name never
 * resolves, holds up no other Sentinel, no event and no signal. Each link's
 * reader is drained after every read: replies that came in one read (the
 * PSUBSCRIBE reply and an event, when a Sentinel coalesces them) are all
 * handled at once. Replies are capped: 1 MiB on the subscriber (Sentinel's
 * messages are at most 1 KiB), EVL_SENTINEL_MAX_REPLY on commands.
 *
 * The subscriber: PSUBSCRIBE "[-+]*" (every event channel; not
 * __sentinel__:hello), then each message goes to intake. A Sentinel that
 * is down, or drops within 10 s of subscribing, is retried with a backoff
 * of 0.1 s doubling to 10 s; one that was up longer is retried at once:
 * one log line when it connects, one when it goes.
 *
 * The command link, after every subscribe (and on -dup-sentinel or
 * +sentinel-address-switch): SENTINEL MASTERS (reconciliation) and, with
 * discover, SENTINEL SENTINELS <master> for each; then it closes. Each
 * master's address and config epoch are kept in <state_dir>/watch-masters:
 * a master whose address moved (with a newer config epoch, so a Sentinel
 * that lags behind is not believed) while nobody was listening gets one
 * synthetic +switch-master, and the file remembers it across restarts.
 * Discovery stops at WATCH_MAX_SENTINELS, said once.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "conn.h"
#include "deadline.h"
#include "intake.h"
#include "log.h"
#include "sentinel.h"
#include "statedir.h"

#define BACKOFF_FIRST 0.1
#define BACKOFF_MAX 10.0
#define SUB_MAX_REPLY 1.0 /* MiB: a Sentinel's message is at most 1 KiB */

enum { RC_IDLE, RC_MASTERS, RC_SENTINELS }; /* where a reconciliation is */

/* One cap on a fleet, said the same in `eventilator sentinels` (docs/watch.md, docs/sentinels.md). */
_Static_assert(WATCH_MAX_SENTINELS == EVL_SENTINEL_MAX_FLEET, "one cap on the Sentinels of a fleet");

struct sent {
    char addr[320];
    struct evl_sentinel_link sub; /* the subscriber */
    struct evl_sentinel_link cmd; /* reconciliation, while it runs */
    int subscribed;               /* PSUBSCRIBE confirmed on sub */
    double up_since;              /* when it was */
    int rc, rc_left, rc_again;    /* reconciliation: step, SENTINELS replies to come, asked anew */
    double next_try, backoff;
    int quiet; /* its failure to connect was logged already */
};

static struct sent S[WATCH_MAX_SENTINELS];
static int ns;
static struct watch_set *set;
static int capped; /* the cap on Sentinels was said */
static int closed; /* the watcher stops: nothing more is read */


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

/* <state_dir>/watch-masters joins what is known: a newer config epoch wins. */
static void state_load(void)
{
    FILE *f = fopen(state_path, "re");
    if (!f)
        return;
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        struct known k, *have;
        if (sscanf(line, "%255s %255s %ld %llu", k.name, k.ip, &k.port, &k.epoch) != 4)
            continue;
        if ((have = find(k.name)) == NULL && (have = add(k.name)) == NULL)
            continue;
        if (have->ip[0] == '\0' || k.epoch > have->epoch)
            *have = k;
    }
    fclose(f);
}

/*
 * The state file of the running set. At start it is read. A reload that
 * moved state_dir reads the new one into what is known and writes what is
 * known there: nothing known is lost, no master is announced again.
 */
static void state_use(void)
{
    char path[sizeof state_path];
    snprintf(path, sizeof path, "%s/watch-masters", set->s.state_dir);
    if (strcmp(path, state_path) == 0)
        return;
    int moved = state_path[0] != '\0';
    snprintf(state_path, sizeof state_path, "%s", path);
    state_warned = 0;
    state_load();
    if (moved) {
        evl_log(EVL_INFO, "watch: masters' last known addresses now in %s", state_path);
        if (nk)
            state_save();
    }
}

/* A real +switch-master was heard: the new address is known. */
static void master_moved(const char *name, const char *ip, long port)
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
    intake_event(idx, "+switch-master", text, 1); /* synthetic: it asks nothing of us */
}

/* A Sentinel to watch: a seed, or one that discovery named. */
static void conn_add(const char *given)
{
    char host[256], addr[320], err[256];
    int port;
    /* as its peers name it ("10.0.0.1" is 10.0.0.1:26379), so a seed and its discovery meet */
    if (evl_sentinel_addr(given, host, sizeof host, &port, err, sizeof err) == 0)
        evl_sentinel_format_addr(addr, sizeof addr, host, port);
    else
        snprintf(addr, sizeof addr, "%s", given); /* connecting says why it is bad */
    for (int i = 0; i < ns; i++)
        if (strcmp(S[i].addr, addr) == 0)
            return;
    if (ns == WATCH_MAX_SENTINELS) {
        if (!capped++) /* one line for the cause, not one per address named */
            evl_log(EVL_WARN, "watch: more than %d Sentinels: %s is not watched, nor any other named "
                    "past the cap (docs/watch.md)", WATCH_MAX_SENTINELS, addr);
        return;
    }
    memset(&S[ns], 0, sizeof S[ns]);
    snprintf(S[ns].addr, sizeof S[ns].addr, "%s", addr);
    S[ns].backoff = BACKOFF_FIRST;
    intake_name(ns, S[ns].addr);
    if (ns > 0)
        evl_log(EVL_INFO, "watch: sentinel %s: discovered", addr);
    ns++;
}

/* ---------------------------------------------------------------- reconciliation */

static struct evl_sentinel_opts opts(double max_reply)
{
    struct evl_sentinel_opts o = {set->s.username, set->s.password, set->s.timeout, max_reply};
    return o;
}

/* l->err without the "<addr>: " it starts with, when the log line names the Sentinel already. */
static const char *why(const struct sent *s, const struct evl_sentinel_link *l)
{
    size_t n = strlen(s->addr);
    if (strncmp(l->err, s->addr, n) == 0 && l->err[n] == ':' && l->err[n + 1] == ' ')
        return l->err + n + 2;
    return l->err[0] ? l->err : "connection lost";
}

/* Ask Sentinel idx for its masters (and their Sentinels) on a short command link. */
static void reconcile_start(int idx)
{
    static const char *const masters[] = {"SENTINEL", "MASTERS"};
    struct sent *s = &S[idx];
    if (s->rc != RC_IDLE) {
        s->rc_again = 1; /* asked while one runs: once more after it */
        return;
    }
    struct evl_sentinel_opts o = opts(0);
    s->rc_again = 0;
    if (evl_sentinel_link_open(&s->cmd, s->addr, &o) < 0 ||
        evl_sentinel_link_send(&s->cmd, 2, masters) < 0) {
        evl_log(EVL_WARN, "watch: sentinel %s: reconciliation skipped: %s", s->addr, s->cmd.err);
        evl_sentinel_link_close(&s->cmd);
        return;
    }
    s->rc = RC_MASTERS;
}

static void reconcile_end(int idx)
{
    struct sent *s = &S[idx];
    evl_sentinel_link_close(&s->cmd);
    s->rc = RC_IDLE;
    if (s->rc_again && s->subscribed)
        reconcile_start(idx);
}

/* SENTINEL MASTERS: each master against what we knew; SENTINEL SENTINELS asked for each. */
static void reconcile_masters(int idx, const redisReply *r)
{
    struct sent *s = &S[idx];
    if (r->type != REDIS_REPLY_ARRAY) {
        evl_log(EVL_WARN, "watch: sentinel %s: SENTINEL MASTERS: %s; no reconciliation with it", s->addr,
                r->type == REDIS_REPLY_ERROR ? r->str : "not an array");
        reconcile_end(idx);
        return;
    }
    s->rc = RC_SENTINELS;
    s->rc_left = 0;
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *m = r->element[i];
        const char *name = evl_sentinel_field(m, "name"), *ip = evl_sentinel_field(m, "ip");
        const char *port = evl_sentinel_field(m, "port"), *ep = evl_sentinel_field(m, "config-epoch");
        if (!name || !ip || !port || !watch_set_wants(set, name))
            continue;
        reconcile_master(idx, name, ip, strtol(port, NULL, 10), ep ? strtoull(ep, NULL, 10) : 0);
        const char *argv[3] = {"SENTINEL", "SENTINELS", name};
        if (set->s.discover && evl_sentinel_link_send(&s->cmd, 3, argv) == 0)
            s->rc_left++;
    }
    if (s->rc_left == 0)
        reconcile_end(idx);
}

static void reconcile_sentinels(int idx, const redisReply *r)
{
    for (size_t j = 0; r->type == REDIS_REPLY_ARRAY && j < r->elements; j++) {
        const char *ip = evl_sentinel_field(r->element[j], "ip");
        const char *port = evl_sentinel_field(r->element[j], "port");
        if (ip && port) {
            char addr[320];
            evl_sentinel_format_addr(addr, sizeof addr, ip, atoi(port));
            conn_add(addr);
        }
    }
    if (--S[idx].rc_left <= 0)
        reconcile_end(idx);
}

/* The command link's replies; then, if it died, why. */
static void reconcile_read(int idx, double now)
{
    struct sent *s = &S[idx];
    redisReply *r;
    while (s->rc != RC_IDLE && (r = evl_sentinel_link_reply(&s->cmd, now)) != NULL) {
        if (s->rc == RC_MASTERS)
            reconcile_masters(idx, r);
        else
            reconcile_sentinels(idx, r);
        freeReplyObject(r);
    }
    if (s->rc != RC_IDLE && s->cmd.state == EVL_SL_DEAD) {
        if (s->rc == RC_MASTERS)
            evl_log(EVL_WARN, "watch: sentinel %s: SENTINEL MASTERS: %s; no reconciliation with it",
                    s->addr, why(s, &s->cmd));
        else
            evl_log(EVL_WARN, "watch: sentinel %s: SENTINEL SENTINELS: %s; some of its peers may "
                    "not be watched", s->addr, why(s, &s->cmd));
        reconcile_end(idx);
    }
}

/* ---------------------------------------------------------------- connections */

int conn_status(const char **addrs, int *up, int max)
{
    for (int i = 0; i < ns && i < max; i++) {
        addrs[i] = S[i].addr;
        up[i] = S[i].subscribed;
    }
    return ns;
}

/* The subscriber is gone (or never came): log once, close, and try again later. */
static void down(int idx, double now)
{
    struct sent *s = &S[idx];
    if (s->subscribed) {
        evl_log(EVL_WARN, "watch: sentinel %s: disconnected: %s; reconnecting", s->addr, why(s, &s->sub));
        /* a connection that lasted is back at once; one that keeps dropping (a Sentinel
           sending what is refused) backs off like one that cannot connect */
        if (now - s->up_since >= BACKOFF_MAX)
            s->backoff = BACKOFF_FIRST;
        s->quiet = 1;
    } else if (!s->quiet) {
        evl_log(EVL_WARN, "watch: sentinel %s: cannot connect: %s; retrying (backoff up to %.0f s)",
                s->addr, s->sub.err, BACKOFF_MAX);
        s->quiet = 1;
    } else {
        evl_log(EVL_DEBUG, "watch: sentinel %s: still no connection: %s", s->addr, s->sub.err);
    }
    evl_sentinel_link_close(&s->sub);
    s->sub.state = EVL_SL_CLOSED;
    s->subscribed = 0;
    s->next_try = now + s->backoff;
    s->backoff = s->backoff * 2 > BACKOFF_MAX ? BACKOFF_MAX : s->backoff * 2;
}

static void try_connect(int idx, double now)
{
    static const char *const psub[] = {"PSUBSCRIBE", "[-+]*"};
    struct sent *s = &S[idx];
    struct evl_sentinel_opts o = opts(SUB_MAX_REPLY);
    if (evl_sentinel_link_open(&s->sub, s->addr, &o) < 0 || evl_sentinel_link_send(&s->sub, 2, psub) < 0)
        down(idx, now);
}

/* PSUBSCRIBE's reply: subscribed (then reconciliation), or why not. */
static void subscribed(int idx, const redisReply *r, double now)
{
    struct sent *s = &S[idx];
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 || r->element[0]->type != REDIS_REPLY_STRING ||
        strcmp(r->element[0]->str, "psubscribe") != 0) {
        snprintf(s->sub.err, sizeof s->sub.err, "%s", r->type == REDIS_REPLY_ERROR ? r->str
                 : "PSUBSCRIBE: an unexpected reply");
        down(idx, now);
        return;
    }
    s->subscribed = 1;
    s->up_since = now;
    s->quiet = 0;
    evl_log(EVL_INFO, "watch: sentinel %s: connected and subscribed", s->addr);
    reconcile_start(idx);
}

/* -dup-sentinel, +sentinel-address-switch: every subscribed Sentinel is asked again. */
static void conn_rediscover(void)
{
    for (int i = 0; i < ns; i++)
        if (S[i].subscribed)
            reconcile_start(i);
}

/* What intake says an event asks of the connections. */
static void act(struct intake_action a)
{
    char addr[320];
    if (a.what == INTAKE_MOVED) {
        master_moved(a.pod, a.ip, a.port);
    } else if (a.what == INTAKE_ADD) {
        evl_sentinel_format_addr(addr, sizeof addr, a.ip, (int)a.port);
        conn_add(addr);
    } else if (a.what == INTAKE_REDISCOVER) {
        conn_rediscover();
    }
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
    act(intake_event(idx, ch->str, pl->str, 0));
}

/* Everything the subscriber's reader holds, then whether it died. */
static void sub_read(int idx, double now)
{
    struct sent *s = &S[idx];
    redisReply *r;
    while (!closed && (r = evl_sentinel_link_reply(&s->sub, now)) != NULL) {
        if (s->subscribed)
            message(idx, r);
        else
            subscribed(idx, r, now);
        freeReplyObject(r);
        if (s->sub.state != EVL_SL_OPEN)
            break; /* down() closed it */
    }
    if (s->sub.state == EVL_SL_DEAD)
        down(idx, now);
}

double conn_tick(double now)
{
    double next = now + BACKOFF_MAX;
    for (int i = 0; i < ns && !closed; i++) {
        struct sent *s = &S[i];
        if (s->sub.state == EVL_SL_CLOSED && s->next_try <= now)
            try_connect(i, now);
        evl_sentinel_link_step(&s->sub, now);
        sub_read(i, now); /* a link that just died */
        if (s->rc != RC_IDLE) {
            evl_sentinel_link_step(&s->cmd, now);
            reconcile_read(i, now);
        }
        double w = s->sub.state == EVL_SL_CLOSED ? s->next_try : evl_sentinel_link_wake(&s->sub, now);
        if (w > 0 && w < next)
            next = w;
        w = s->rc != RC_IDLE ? evl_sentinel_link_wake(&s->cmd, now) : 0;
        if (w > 0 && w < next)
            next = w;
    }
    return next - now < 0 ? 0 : next - now;
}

int conn_pollfds(struct pollfd *pfds, int *idx, int max)
{
    int n = 0;
    for (int i = 0; i < ns && n + 2 <= max; i++) {
        if (evl_sentinel_link_pollfd(&S[i].sub, &pfds[n]))
            idx[n++] = 2 * i;
        if (S[i].rc != RC_IDLE && evl_sentinel_link_pollfd(&S[i].cmd, &pfds[n]))
            idx[n++] = 2 * i + 1;
    }
    return n;
}

void conn_io(int idx, short revents)
{
    int i = idx / 2;
    double now = evl_monotonic();
    if (i < 0 || i >= ns || closed)
        return;
    if (idx % 2 == 0) {
        evl_sentinel_link_io(&S[i].sub, revents, now);
        sub_read(i, now);
    } else if (S[i].rc != RC_IDLE) {
        evl_sentinel_link_io(&S[i].cmd, revents, now);
        reconcile_read(i, now);
    }
}

void conn_close_all(void)
{
    closed = 1;
    for (int i = 0; i < ns; i++) {
        evl_sentinel_link_close(&S[i].sub);
        evl_sentinel_link_close(&S[i].cmd);
        S[i].rc = RC_IDLE;
        S[i].subscribed = 0;
    }
}

/*
 * In a run's child (forked, no exec): close the copies of the watcher's
 * sockets. Closing (not redisFree) touches nothing the watcher shares: the
 * connections stay the watcher's, and a handler cannot read or write them.
 */
void conn_close_fds(void)
{
    for (int i = 0; i < ns; i++) {
        if (S[i].sub.c && S[i].sub.c->fd >= 0)
            close(S[i].sub.c->fd);
        if (S[i].cmd.c && S[i].cmd.c->fd >= 0)
            close(S[i].cmd.c->fd);
    }
}

void conn_settings(struct watch_set *s)
{
    set = s;
    state_use();
    for (size_t i = 0; i < s->s.nseeds; i++)
        conn_add(s->s.seeds[i]);
}

