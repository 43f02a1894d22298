/*
 * sentinel.h: the one Sentinel client, shared by `eventilator sentinels`
 * and watch mode.
 *
 * One connection is a link (struct evl_sentinel_link): it never blocks, and
 * is driven by a poll loop, the caller's own (watch mode runs every link of
 * the fleet in its one loop) or evl_sentinel_drive's (several links at once,
 * for discovery and `sentinels status`). A host name is resolved in a helper
 * thread (lookup.h), then the link connects, sends AUTH when given, and
 * carries commands and their replies. Every step that waits on the Sentinel
 * (the lookup, the connect, each reply asked for) ends at its deadline,
 * `timeout` seconds after it began, so a Sentinel that accepts and never
 * answers costs at most that, and never holds up another link. One reply
 * is capped at `max_reply` MiB (replycap.h): an announced 4 GB bulk or
 * 2 000 000 000-element array is refused before it is kept.
 *
 * The blocking calls (evl_sentinel_open, evl_sentinel_call) are that same
 * link driven alone.
 *
 * Messages (l->err): connection-level failures name the Sentinel
 * ("127.0.0.1:26379: Connection refused", "[::1]:26379: timed out after 2 s",
 * "s1.example:26379: timed out after 2 s (name lookup)", "...: reply larger
 * than 64 MiB"); an error reply is passed on as its text
 * ("ERR Reconfiguration of scripts path is denied ...").
 */
#ifndef EVENTILATOR_SENTINEL_H
#define EVENTILATOR_SENTINEL_H

#include <poll.h>
#include <stddef.h>

#include <hiredis/hiredis.h> /* Debian 12 ships hiredis 0.14 */

#include "replycap.h"

#define EVL_SENTINEL_MAX_REPLY 64.0 /* MiB: one reply to a command (SENTINEL MASTERS of many masters) */
#define EVL_SENTINEL_MAX_FLEET 64   /* Sentinels discovery lists at most (watch mode's reporter mask) */

struct evl_sentinel_opts {
    const char *username; /* ACL user, or NULL / "" for password-only AUTH */
    const char *password; /* NULL / "": no AUTH */
    double timeout;       /* s, each step; <= 0: 2 */
    double max_reply;     /* MiB, one reply; <= 0: EVL_SENTINEL_MAX_REPLY */
};

enum { EVL_SL_CLOSED, EVL_SL_LOOKUP, EVL_SL_CONNECTING, EVL_SL_OPEN, EVL_SL_DEAD };

struct evl_lookup_job;

struct evl_sentinel_link {
    redisContext *c;
    struct evl_lookup_job *job; /* the name lookup while it runs */
    char addr[320];             /* as given, for messages */
    char host[256];
    int port, state;
    int auth_wait;              /* AUTH's reply is still to come: it is the link's own */
    int asked;                  /* replies asked for and not read yet */
    double timeout, deadline;   /* deadline: of the step waited on; 0: none */
    char *out;                  /* commands sent before the connection exists */
    size_t outlen;
    evl_replycap cap;           /* the reader's hooks point here: a link never moves while open */
    char err[768];
};

/* "host:port", "[v6]:port", or either without ":port" (Sentinel's 26379) -> host, port; 0, or -1
   with err */
int evl_sentinel_addr(const char *addr, char *host, size_t hostcap, int *port, char *err,
                      size_t errcap);

/* "host", port -> "host:port", or "[host]:port" when host holds a ':' (IPv6). */
void evl_sentinel_format_addr(char *out, size_t cap, const char *host, int port);

/* ---- a link, driven by the caller's poll loop (never blocks) ---- */

/* Start connecting to `addr`, AUTH queued when a password is given. 0, or -1 with l->err (a bad
   address, out of memory: the link is DEAD). */
int evl_sentinel_link_open(struct evl_sentinel_link *l, const char *addr,
                           const struct evl_sentinel_opts *o);
/* Send one command in argv form (before the connection exists too): its reply is one of the
   link's replies, in order. 0, or -1 (the link is dead). */
int evl_sentinel_link_send(struct evl_sentinel_link *l, int argc, const char *const *argv);
/* The descriptor and events to poll for: 1, or 0 when there is none (a lookup, a dead link). */
int evl_sentinel_link_pollfd(const struct evl_sentinel_link *l, struct pollfd *p);
/* When the caller must call evl_sentinel_link_step at the latest (monotonic s); 0: no need. */
double evl_sentinel_link_wake(const struct evl_sentinel_link *l, double now);
/* Deadlines, and a lookup that ended: call once per loop turn. */
void evl_sentinel_link_step(struct evl_sentinel_link *l, double now);
/* The poll revents of its descriptor: writes what waits, reads what came. */
void evl_sentinel_link_io(struct evl_sentinel_link *l, short revents, double now);
/* The next whole reply (free with freeReplyObject), or NULL: none complete yet, or the link
   died (state EVL_SL_DEAD, l->err says why). Call until NULL after every io: the reader may hold
   several. Unasked replies (Pub/Sub messages) come here too. */
redisReply *evl_sentinel_link_reply(struct evl_sentinel_link *l, double now);
/* Something is still on its way: a lookup, the connect, AUTH, a reply asked for, unsent bytes. */
int evl_sentinel_link_busy(const struct evl_sentinel_link *l);
void evl_sentinel_link_close(struct evl_sentinel_link *l); /* harmless twice, or when never opened */

/* Helper threads of the links' name lookups still running (a lookup given up on included): watch
   mode forks runs while they run, as it would not for threads a rule file left. */
int evl_sentinel_lookups(void);

/* Drive n links until none is busy: every reply goes to on_reply(i, reply, ud), which owns it
   and may send more on link i or close it (NULL: replies are dropped). */
void evl_sentinel_drive(struct evl_sentinel_link *l, size_t n,
                        void (*on_reply)(size_t i, redisReply *r, void *ud), void *ud);

/* ---- the same, blocking ---- */

/* Connect (lookup, TCP, AUTH) within the timeout: 0, or -1 with l->err ("127.0.0.1:26379:
   Connection refused", "...: authentication failed: WRONGPASS ..."); the link is closed then. */
int evl_sentinel_open(struct evl_sentinel_link *l, const char *addr,
                      const struct evl_sentinel_opts *o);
/* One command. The reply (free with freeReplyObject), or NULL with l->err: an I/O error, a
   timeout, a reply over the cap (the link is dead: evl_sentinel_dead), or an error reply (its
   text; the link stays usable). */
redisReply *evl_sentinel_call(struct evl_sentinel_link *l, int argc, const char *const *argv);
/* 1 when the link cannot be used (never opened, closed, an I/O error or a timeout happened). */
int evl_sentinel_dead(const struct evl_sentinel_link *l);

/* A field of a flat key/value array reply (SENTINEL MASTERS / MASTER / SENTINELS entries), or NULL
   (absent, or not a string). */
const char *evl_sentinel_field(const redisReply *kv, const char *key);

/* Discovery (sentinel_fleet.c): the seeds, plus every Sentinel that `SENTINEL SENTINELS <m>`
   names, for every master of `SENTINEL MASTERS` (or only the `only` names when nonly > 0), across
   all reachable Sentinels, each round of new ones asked at once. At most EVL_SENTINEL_MAX_FLEET:
   past it, `capped` counts the addresses named that were left out. Unreachable ones are kept
   with reachable = 0 and err. */
struct evl_fleet_sentinel {
    char addr[320];
    int reachable;
    char err[768];
};
struct evl_fleet {
    struct evl_fleet_sentinel *s;
    size_t ns;
    char (*masters)[256];
    size_t nm;
    size_t capped;
};
int evl_sentinel_discover(const char *const *seeds, size_t nseeds, const char *const *only,
                          size_t nonly, const struct evl_sentinel_opts *o, struct evl_fleet *out,
                          char *err, size_t errcap);
void evl_fleet_free(struct evl_fleet *f);

#endif
