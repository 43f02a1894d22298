/*
 * sentinel.h: the one Sentinel client, shared by `eventilator sentinels`
 * and watch mode. Blocking hiredis contexts, every connect and command
 * bounded by one timeout, so a Sentinel that accepts and never answers
 * costs at most that timeout and the rest of the fleet still reports.
 *
 * Messages: connection-level failures name the Sentinel
 * ("127.0.0.1:26379: Connection refused", "[::1]:26379: timed out");
 * an error reply from the Sentinel is passed on as its text
 * ("ERR Reconfiguration of scripts path is denied ...").
 */
#ifndef EVENTILATOR_SENTINEL_H
#define EVENTILATOR_SENTINEL_H

#include <stddef.h>

#include <hiredis/hiredis.h> /* Debian 12 ships hiredis 0.14 */

struct evl_sentinel_auth {
    const char *username; /* ACL user, or NULL / "" for password-only AUTH */
    const char *password; /* NULL / "": no AUTH */
};

/* "host:port", "[v6]:port", or either without ":port" (Sentinel's 26379) -> host, port; 0, or -1
   with err */
int evl_sentinel_addr(const char *addr, char *host, size_t hostcap, int *port, char *err,
                      size_t errcap);

/* "host", port -> "host:port", or "[host]:port" when host holds a ':' (IPv6). */
void evl_sentinel_format_addr(char *out, size_t cap, const char *host, int port);

/* Connect with `timeout` seconds on connect and on every later command; AUTH (ACL user+password,
   or password only) when given. NULL with err ("127.0.0.1:26379: Connection refused",
   "...: authentication failed: ...") on failure. */
redisContext *evl_sentinel_connect(const char *addr, const struct evl_sentinel_auth *auth,
                                   double timeout, char *err, size_t errcap);

/* One command in argv form. The reply (free with freeReplyObject), or NULL with err on an I/O
   error, a timeout, or an error reply (err holds the reply's text). After an I/O error or timeout
   the context is dead (hiredis semantics). */
redisReply *evl_sentinel_cmd(redisContext *c, char *err, size_t errcap, int argc,
                             const char *const *argv);

/* Wait up to `timeout` seconds for one reply nobody asked for (a Pub/Sub message after SUBSCRIBE /
   PSUBSCRIBE). The reply; or NULL with *timed_out = 1 when nothing came (the context stays usable,
   and a reply cut in half is kept for the next call); or NULL with err when the connection failed
   (the context is dead then). */
redisReply *evl_sentinel_read(redisContext *c, double timeout, int *timed_out, char *err,
                              size_t errcap);

/* 1 when the context is dead (an I/O error or a timeout happened on it). */
int evl_sentinel_dead(const redisContext *c);

/* A field of a flat key/value array reply (SENTINEL MASTERS / MASTER / SENTINELS entries), or NULL. */
const char *evl_sentinel_field(const redisReply *kv, const char *key);

/* Discovery: the seeds, plus every Sentinel that `SENTINEL SENTINELS <m>` names, for every master
   of `SENTINEL MASTERS` (or only the `only` names when nonly > 0), across all reachable Sentinels.
   Unreachable ones are kept with reachable = 0 and err. */
struct evl_fleet_sentinel {
    char addr[320];
    int reachable;
    char err[256];
};
struct evl_fleet {
    struct evl_fleet_sentinel *s;
    size_t ns;
    char (*masters)[256];
    size_t nm;
};
int evl_sentinel_discover(const char *const *seeds, size_t nseeds, const char *const *only,
                          size_t nonly, const struct evl_sentinel_auth *auth, double timeout,
                          struct evl_fleet *out, char *err, size_t errcap);
void evl_fleet_free(struct evl_fleet *f);

#endif
