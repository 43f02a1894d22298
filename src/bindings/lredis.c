/*
 * lredis.c: the Redis binding, module "eventilator.redis", on hiredis 0.14.
 *
 *   local redis = require("eventilator.redis")
 *   local c = assert(redis.connect{ host = "127.0.0.1", port = 6379 })
 *   c:call("HINCRBY", "events", "+odown", 1)
 *
 * The shape follows liolib.c: one userdata type with a named metatable, a
 * client that starts closed and only counts as open once hiredis handed us a
 * context, `__gc` = `__close` = close(), and closing twice is harmless.
 * Programmer errors (wrong types, unknown options, use after close) raise;
 * anything the network or the server can do to us returns `nil, msg`.
 *
 * Every blocking step is bounded twice over: by the timeout the caller asked
 * for, and by what is left of the handler's time budget (deadline.h). The
 * count hook that enforces the budget cannot interrupt C code, so it is the
 * binding's job not to sit in read(2) past the deadline.
 *
 * hiredis is used in blocking mode, but replies are read with our own poll(2)
 * loop: SO_RCVTIMEO bounds each read(2), not the whole reply, so a server
 * dribbling one byte a second would otherwise keep us forever.
 *
 * Built both into the static start-up binary and as the Lua C module
 * redis.so: no global state, and nothing but luaopen_eventilator_redis is
 * visible outside this file.
 */

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#include <hiredis.h>
#include <sds.h>
#include <lauxlib.h>
#include <lua.h>

#include <arpa/inet.h>
#include <netdb.h>

#include "binding.h"
#include "digits.h"
#include "replycap.h"

#if defined(__GNUC__)
#define RC_EXPORT __attribute__((visibility("default")))
#else
#define RC_EXPORT
#endif

#define RC_MT "eventilator.redis.client"
#define RC_DEF_HOST "127.0.0.1"
#define RC_DEF_PORT 6379
#define RC_DEF_CONNECT_TIMEOUT 2.0
#define RC_DEF_TIMEOUT 5.0
/* hiredis turns a timeout into int milliseconds; stay well inside that. */
#define RC_MAX_TIMEOUT 1e6
/* argv slots kept on the C stack; longer commands use a userdata buffer. */
#define RC_SMALL_ARGC 16
/* Each argument of a pipelined command sits on the Lua stack while it is
 * appended; Lua's stack stops at a million slots. */
#define RC_MAX_ARGC 500000
/* Default cap on one reply, MiB (config redis.max_reply; how it is enforced: replycap.h). */
#define RC_DEF_MAX_REPLY 64.0
#define RC_MAX_MAX_REPLY 4096.0

typedef struct RClient {
    redisContext *ctx; /* NULL once closed */
    redisReply *reply; /* reply being converted: owned here so a raise cannot leak it */
    double timeout;    /* command timeout, seconds */
    int busy;          /* set during a call; still set later = it was cut short by a raise */
    evl_replycap cap;  /* the reader's hooks point here: a userdata never moves */
    char addr[];       /* "host:port", "[v6]:port" or the socket path, for messages */
} RClient;

/* Message for a timeout that fired inside our own I/O loop. Compared by
 * address, so the caller can tell "timed out" from an errstr. */
static const char rc_timed_out[] = "timed out";
/* Message for a reply over the cap; compared by address the same way. */
static const char rc_too_big[] = "reply too big";

/* ---------------------------------------------------------------------- */
/* Lifetime                                                                */
/* ---------------------------------------------------------------------- */

static void rc_free(RClient *c)
{
    if (c->reply) {
        freeReplyObject(c->reply);
        c->reply = NULL;
    }
    if (c->ctx) {
        redisFree(c->ctx);
        c->ctx = NULL;
    }
    c->busy = 0;
}

/* The client as the first argument of a method: must be open. */
static RClient *rc_open(lua_State *L)
{
    RClient *c = (RClient *)luaL_checkudata(L, 1, RC_MT);
    if (c->ctx == NULL)
        luaL_argerror(L, 1, "attempt to use a closed redis client");
    return c;
}

/* Push nil, and start the message that follows it in b: "redis <addr>: ". */
static void rc_fail_start(lua_State *L, const RClient *c, luaL_Buffer *b)
{
    lua_pushnil(L);
    luaL_buffinit(L, b);
    luaL_addstring(b, "redis ");
    luaL_addstring(b, c->addr);
    luaL_addstring(b, ": ");
}

/*
 * Push nil and "redis <addr>: <msg>[ (client closed)]"; returns 2.
 * hiredis messages come from strerror ("Connection refused"); their first
 * letter is lowered so every message reads the same in a log line, but a
 * server's "ERR ..." or "WRONGPASS ..." is left as sent.
 */
static int rc_pushfail(lua_State *L, const RClient *c, const char *prefix,
                       const char *msg, int closed)
{
    luaL_Buffer b;
    rc_fail_start(L, c, &b);
    if (prefix)
        luaL_addstring(&b, prefix);
    evl_add_reason(&b, msg);
    if (closed)
        luaL_addstring(&b, " (client closed)");
    luaL_pushresult(&b);
    return 2;
}

/*
 * A connection-level failure: the stream is out of step or gone, so the
 * context is dead. `was_open`: the caller held the client (not connect),
 * so the message says it is closed now. The message is built first (it may point into
 * ctx->errstr, and building it may raise), and only then is the context
 * freed.
 */
static int rc_die(lua_State *L, RClient *c, const char *msg, int clamped, double secs,
                  int was_open)
{
    char buf[96];
    if (msg == rc_too_big) {
        snprintf(buf, sizeof buf, "reply larger than %g MiB (max_reply)", c->cap.mib);
        msg = buf;
    } else if (msg == rc_timed_out) {
        msg = evl_timeout_reason(buf, sizeof buf, clamped, secs, NULL);
    }
    rc_pushfail(L, c, NULL, msg, was_open);
    rc_free(c);
    return 2;
}

/* ---------------------------------------------------------------------- */
/* Bounded I/O                                                             */
/* ---------------------------------------------------------------------- */

static struct timeval rc_tv(double secs)
{
    struct timeval tv;
    /* A zero timeval means "no timeout" to SO_RCVTIMEO: never pass one. */
    if (secs < 0.001)
        secs = 0.001;
    tv.tv_sec = (time_t)secs;
    tv.tv_usec = (suseconds_t)((secs - (double)tv.tv_sec) * 1e6);
    if (tv.tv_usec >= 1000000)
        tv.tv_usec = 999999;
    return tv;
}

/*
 * Send everything appended so far, before `deadline`. A blocking write(2)
 * is bounded by SO_SNDTIMEO, reset to the time left before each write.
 * Returns NULL, or a message (rc_timed_out or the context's errstr).
 */
static const char *rc_flush(redisContext *ctx, double deadline)
{
    int done = 0;
    do {
        double left = deadline - evl_monotonic();
        if (left <= 0)
            return rc_timed_out;
        if (redisSetTimeout(ctx, rc_tv(left)) != REDIS_OK)
            return ctx->errstr;
        if (redisBufferWrite(ctx, &done) != REDIS_OK)
            return (errno == EAGAIN || errno == EWOULDBLOCK) ? rc_timed_out : ctx->errstr;
    } while (!done);
    return NULL;
}


/*
 * Read one reply, before `deadline`, within the cap (replycap.h). The
 * socket is polled first, so the read(2) that follows never waits: the
 * whole reply is bounded, not each read. On success *out is the reply and
 * the caller owns it.
 */
static const char *rc_read(redisContext *ctx, evl_replycap *cap, double deadline, redisReply **out)
{
    for (;;) {
        int st = evl_hio_reply(ctx, cap, out);
        if (st == EVL_HIO_OK)
            return NULL;
        if (st != EVL_HIO_MORE)
            return st == EVL_HIO_BIG ? rc_too_big : ctx->errstr;
        int ready = evl_wait_fd(ctx->fd, POLLIN, deadline);
        if (ready == 0)
            return rc_timed_out;
        if (ready < 0)
            return strerror(errno);
        /* POLLHUP and POLLERR too: read(2) then reports EOF or the error. */
        if ((st = evl_hio_fill(ctx, cap)) != EVL_HIO_OK)
            return st == EVL_HIO_BIG ? rc_too_big : ctx->errstr;
    }
}

/* ---------------------------------------------------------------------- */
/* Arguments and replies                                                   */
/* ---------------------------------------------------------------------- */

/*
 * Turn the argument at `idx`, a string or a number (the caller checked),
 * into bytes for the wire, in place. Integers, and floats with an integral
 * value, go out without ".0": Redis rejects "2.0" where it wants an integer
 * (EXPIRE, INCRBY). Other floats go out as tostring shows them.
 */
static const char *rc_arg(lua_State *L, int idx, size_t *len)
{
    if (lua_type(L, idx) == LUA_TNUMBER) {
        int isint;
        lua_Integer i = lua_tointegerx(L, idx, &isint);
        if (isint) {
            lua_pushfstring(L, "%I", (LUAI_UACINT)i);
            lua_replace(L, idx);
        }
    }
    return lua_tolstring(L, idx, len);
}

/* "*<n>\r\n" or "$<n>\r\n" at p (room for 24): its length */
static size_t resp_head(char *p, char kind, size_t n)
{
    size_t o = 1;
    p[0] = kind;
    o += evl_put_uint(p + 1, (unsigned long long)n, 1);
    p[o++] = '\r';
    p[o++] = '\n';
    return o;
}

/*
 * One command in Redis's protocol, appended to the context's output buffer:
 * what redisAppendCommandArgv does, without its per-argument formatter and
 * its copy through a second buffer (~3 k instructions a command, and the
 * failover record sends 27). NULL, or the failure.
 */
static const char *rc_append(redisContext *ctx, int argc, const char **argv, const size_t *len)
{
    size_t total = 24 + (size_t)argc * 24; /* the heads, at most */
    for (int i = 0; i < argc; i++)
        total += len[i] + 2;
    if (total > INT_MAX / 2) /* sdsIncrLen takes an int: very large commands the slow way */
        return redisAppendCommandArgv(ctx, argc, argv, len) == REDIS_OK ? NULL : ctx->errstr;
    sds o = sdsMakeRoomFor(ctx->obuf, total);
    if (o == NULL)
        return "out of memory";
    ctx->obuf = o;
    char *start = o + sdslen(o), *p = start;
    p += resp_head(p, '*', (size_t)argc);
    for (int i = 0; i < argc; i++) {
        p += resp_head(p, '$', len[i]);
        memcpy(p, argv[i], len[i]);
        p += len[i];
        *p++ = '\r';
        *p++ = '\n';
    }
    sdsIncrLen(o, (int)(p - start));
    return NULL;
}

/*
 * Push one reply. `nested` is true for array elements and pipeline
 * results, where nil becomes false (a Lua table cannot hold nil) and an
 * error becomes { err = "message" }, as in Redis's own scripting Lua.
 */
static void rc_push_reply(lua_State *L, const redisReply *r, int nested)
{
    size_t i;
    switch (r->type) {
    case REDIS_REPLY_INTEGER:
        lua_pushinteger(L, (lua_Integer)r->integer);
        break;
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
        lua_pushlstring(L, r->str, r->len);
        break;
    case REDIS_REPLY_NIL:
        if (nested)
            lua_pushboolean(L, 0);
        else
            lua_pushnil(L);
        break;
    case REDIS_REPLY_ERROR:
        lua_createtable(L, 0, 1);
        lua_pushlstring(L, r->str, r->len);
        lua_setfield(L, -2, "err");
        break;
    case REDIS_REPLY_ARRAY:
        /* hiredis 0.14 refuses nesting deeper than 7, so recursion is shallow. */
        luaL_checkstack(L, 4, "redis reply nested too deep");
        lua_createtable(L, r->elements > 1000000 ? 1000000 : (int)r->elements, 0);
        for (i = 0; i < r->elements; i++) {
            rc_push_reply(L, r->element[i], 1);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        break;
    default: /* the 0.14 reader builds no other type */
        luaL_error(L, "redis reply of unknown type %d", r->type);
    }
}

/*
 * One command, argv at stack index `base` .. `base + argc - 1`, already
 * converted by rc_arg. Sends it, reads the reply into c->reply. Returns NULL
 * or a connection-level message (the caller then calls rc_die).
 */
static const char *rc_roundtrip(lua_State *L, RClient *c, int base, int argc,
                                double deadline)
{
    const char *small[RC_SMALL_ARGC];
    size_t smalllen[RC_SMALL_ARGC];
    const char **argv = small;
    size_t *argvlen = smalllen;
    const char *err;
    int i;
    if (argc > RC_SMALL_ARGC) {
        /* A userdata, so the buffer is collected even if something raises. */
        char *buf = (char *)lua_newuserdatauv(L, (size_t)argc * (sizeof(char *) + sizeof(size_t)), 0);
        argvlen = (size_t *)(void *)buf;
        argv = (const char **)(void *)(buf + (size_t)argc * sizeof(size_t));
    }
    for (i = 0; i < argc; i++)
        argv[i] = lua_tolstring(L, base + i, &argvlen[i]);
    if ((err = rc_append(c->ctx, argc, argv, argvlen)) != NULL)
        return err;
    if (argc > RC_SMALL_ARGC)
        lua_pop(L, 1);
    if ((err = rc_flush(c->ctx, deadline)) != NULL)
        return err;
    return rc_read(c->ctx, &c->cap, deadline, &c->reply);
}

/*
 * Start a bounded operation: the command timeout clamped to the budget.
 * Returns the deadline, or 0 after pushing `nil, msg` (2 results) when the
 * budget is spent or an earlier call was cut short.
 */
static double rc_begin(lua_State *L, RClient *c, double want, int *clamped)
{
    double t;
    if (c->busy) {
        /* A raise (out of memory) interrupted an earlier call between
         * sending and reading: replies may still be in flight, and the
         * next one read would answer the wrong command. */
        rc_pushfail(L, c, NULL, "an earlier call was interrupted", 1);
        rc_free(c);
        return 0;
    }
    if ((t = evl_op_deadline(L, want, clamped)) == 0)
        rc_pushfail(L, c, NULL, "time budget exhausted", 0);
    return t;
}

/* ---------------------------------------------------------------------- */
/* Methods                                                                 */
/* ---------------------------------------------------------------------- */

/*
 * client:call(cmd, ...) -> reply | nil, msg
 * Sends one command in argv form (binary-safe). Arguments: strings or
 * numbers. Returns the reply mapped as in docs/redis.md; an error reply
 * gives nil, "redis <addr>: ERR ..." (the server's text after the prefix)
 * and the client stays usable.
 * A connection-level failure gives nil, "redis <addr>: ... (client closed)".
 * Raises: closed client, no command, an argument of another type.
 */
static int rc_call(lua_State *L)
{
    RClient *c = rc_open(L);
    int argc = lua_gettop(L) - 1, clamped = 0, nret = 1, i;
    const char *err;
    double deadline;
    luaL_checkany(L, 2);
    /* Anything but a string or number raises: sending "true" or a table
     * address to the server would only hide the caller's bug. */
    for (i = 2; i <= argc + 1; i++) {
        int t = lua_type(L, i);
        if (t != LUA_TSTRING && t != LUA_TNUMBER)
            return luaL_typeerror(L, i, "string or number");
        rc_arg(L, i, NULL);
    }
    if ((deadline = rc_begin(L, c, c->timeout, &clamped)) == 0)
        return 2;
    c->busy = 1;
    if ((err = rc_roundtrip(L, c, 2, argc, deadline)) != NULL)
        return rc_die(L, c, err, clamped, c->timeout, 1);
    if (c->reply->type == REDIS_REPLY_ERROR) {
        /* "redis <addr>: ERR ...", like every other failure; copied first,
         * since building the message may raise and the reply is ours. */
        luaL_Buffer b;
        rc_fail_start(L, c, &b);
        luaL_addlstring(&b, c->reply->str, c->reply->len);
        luaL_pushresult(&b);
        nret = 2;
    } else {
        rc_push_reply(L, c->reply, 0);
    }
    freeReplyObject(c->reply);
    c->reply = NULL;
    c->busy = 0;
    return nret;
}

/*
 * client:pipeline(cmds) -> replies | nil, msg
 * cmds is a list of commands, each a list { "SET", "k", "v" }. All are sent
 * in one write and the replies read back in order: one round trip.
 * replies[i] is the reply to cmds[i], with nil as false and an error reply
 * as { err = "..." }; replies.n is #cmds. A connection-level failure gives
 * nil, "redis <addr>: ... (client closed)" and no partial results.
 * Raises: closed client, cmds not a list of non-empty lists of strings and
 * numbers. Everything is checked before anything is sent, so a raise
 * leaves the client usable.
 */
static int rc_pipeline(lua_State *L)
{
    RClient *c = rc_open(L);
    lua_Integer n, i, maxargc = 0;
    const char **argv;
    size_t *argvlen;
    const char *err = NULL;
    double deadline;
    int clamped = 0, res, top;
    luaL_checktype(L, 2, LUA_TTABLE);
    n = (lua_Integer)lua_rawlen(L, 2);
    lua_settop(L, 2);
    /* Pass 1: check shapes and types, so a raise comes before any send. */
    for (i = 1; i <= n; i++) {
        lua_Integer argc, j;
        if (lua_rawgeti(L, 2, i) != LUA_TTABLE)
            return luaL_argerror(L, 2, lua_pushfstring(L, "command %I is a %s, not a list",
                                                       (LUAI_UACINT)i, luaL_typename(L, -1)));
        argc = (lua_Integer)lua_rawlen(L, -1);
        if (argc == 0)
            return luaL_argerror(L, 2, lua_pushfstring(L, "command %I is empty", (LUAI_UACINT)i));
        if (argc > RC_MAX_ARGC)
            return luaL_argerror(L, 2, lua_pushfstring(L, "command %I is too long", (LUAI_UACINT)i));
        for (j = 1; j <= argc; j++) {
            int t = lua_rawgeti(L, -1, j);
            if (t != LUA_TSTRING && t != LUA_TNUMBER)
                return luaL_argerror(L, 2, lua_pushfstring(L,
                    "command %I, argument %I: string or number expected, got %s",
                    (LUAI_UACINT)i, (LUAI_UACINT)j, luaL_typename(L, -1)));
            lua_pop(L, 1);
        }
        if (argc > maxargc)
            maxargc = argc;
        lua_pop(L, 1);
    }
    lua_createtable(L, n > 1000000 ? 1000000 : (int)n, 1);
    res = lua_gettop(L);
    if (n == 0)
        goto done;
    if ((deadline = rc_begin(L, c, c->timeout, &clamped)) == 0)
        return 2;
    /* Scratch argv sized for the longest command, owned by the GC. */
    argvlen = (size_t *)lua_newuserdatauv(L, (size_t)maxargc * (sizeof(char *) + sizeof(size_t)), 0);
    argv = (const char **)(void *)(argvlen + maxargc);
    luaL_checkstack(L, (int)maxargc + 4, "redis command too long"); /* before busy: nothing sent yet */
    top = lua_gettop(L);
    c->busy = 1;
    /* Pass 2: append every command to the output buffer. */
    for (i = 1; i <= n && err == NULL; i++) {
        int argc, j;
        lua_rawgeti(L, 2, i);
        argc = (int)lua_rawlen(L, -1);
        for (j = 0; j < argc; j++) {
            lua_rawgeti(L, top + 1, j + 1);
            argv[j] = rc_arg(L, top + 2 + j, &argvlen[j]);
        }
        err = rc_append(c->ctx, argc, argv, argvlen);
        lua_settop(L, top);
    }
    if (err == NULL)
        err = rc_flush(c->ctx, deadline);
    /* Pass 3: read the replies in order. */
    for (i = 1; i <= n && err == NULL; i++) {
        if ((err = rc_read(c->ctx, &c->cap, deadline, &c->reply)) != NULL)
            break;
        rc_push_reply(L, c->reply, 1);
        lua_rawseti(L, res, i);
        freeReplyObject(c->reply);
        c->reply = NULL;
    }
    if (err != NULL)
        return rc_die(L, c, err, clamped, c->timeout, 1);
    c->busy = 0;
    lua_settop(L, res);
done:
    lua_pushinteger(L, n);
    lua_setfield(L, res, "n");
    return 1;
}

/*
 * client:close() -> true
 * Also __close and __gc. Closing a closed client is harmless.
 */
static int rc_close(lua_State *L)
{
    RClient *c = (RClient *)luaL_checkudata(L, 1, RC_MT);
    rc_free(c);
    lua_pushboolean(L, 1);
    return 1;
}

/* tostring(client) -> "redis client (127.0.0.1:6379)" | "redis client (closed)" */
static int rc_tostring(lua_State *L)
{
    RClient *c = (RClient *)luaL_checkudata(L, 1, RC_MT);
    if (c->ctx == NULL)
        lua_pushliteral(L, "redis client (closed)");
    else
        lua_pushfstring(L, "redis client (%s)", c->addr);
    return 1;
}

/* ---------------------------------------------------------------------- */
/* connect                                                                 */
/* ---------------------------------------------------------------------- */

typedef struct RcOpts {
    const char *host, *path, *username, *password;
    size_t userlen, passlen;
    lua_Integer port, db;
    double timeout, connect_timeout, max_reply;
    int has_port, has_host, has_timeout, has_connect_timeout;
} RcOpts;

static const struct evl_option rc_options[] = {
    {"host", LUA_TSTRING, 0},     {"port", LUA_TNUMBER, 0},     {"path", LUA_TSTRING, 0},
    {"username", LUA_TSTRING, 0}, {"password", LUA_TSTRING, 0}, {"db", LUA_TNUMBER, 0},
    {"timeout", LUA_TNUMBER, 1},  {"connect_timeout", LUA_TNUMBER, 1},
    {"max_reply", LUA_TNUMBER, 0}, {NULL, 0, 0},
};

/* opts[key] pushed (checked by evl_check_options), 1; or 0, nothing pushed, when it is not set. */
static int rc_opt(lua_State *L, const char *key)
{
    if (lua_getfield(L, 1, key) != LUA_TNIL)
        return 1;
    lua_pop(L, 1);
    return 0;
}

/* The option on top: a string without a zero byte (a host name, a path). */
static const char *rc_optname(lua_State *L, const char *key)
{
    size_t l;
    const char *s = lua_tolstring(L, -1, &l);
    if (strlen(s) != l)
        luaL_argerror(L, 1, lua_pushfstring(L, "option '%s' contains a zero byte", key));
    return s; /* anchored: the options table holds it */
}

static lua_Integer rc_optint(lua_State *L, const char *key, lua_Integer lo, lua_Integer hi)
{
    int isint = 0;
    lua_Integer v = lua_tointegerx(L, -1, &isint);
    if (!isint || v < lo || v > hi)
        luaL_argerror(L, 1, lua_pushfstring(L, "option '%s' must be an integer from %I to %I",
                                            key, (LUAI_UACINT)lo, (LUAI_UACINT)hi));
    return v;
}

/* Read the options table at index 1 (or none) into *o; raises on misuse. Leaves values pushed. */
static void rc_readopts(lua_State *L, RcOpts *o)
{
    memset(o, 0, sizeof *o);
    o->host = RC_DEF_HOST;
    o->port = RC_DEF_PORT;
    o->timeout = RC_DEF_TIMEOUT;
    o->connect_timeout = RC_DEF_CONNECT_TIMEOUT;
    o->max_reply = RC_DEF_MAX_REPLY;
    if (lua_isnoneornil(L, 1))
        return;
    luaL_checktype(L, 1, LUA_TTABLE);
    evl_check_options(L, 1, 1, rc_options);
    if ((o->has_host = rc_opt(L, "host")))
        o->host = rc_optname(L, "host");
    if ((o->has_port = rc_opt(L, "port")))
        o->port = rc_optint(L, "port", 1, 65535);
    if (rc_opt(L, "path"))
        o->path = rc_optname(L, "path");
    if (rc_opt(L, "username"))
        o->username = lua_tolstring(L, -1, &o->userlen);
    if (rc_opt(L, "password"))
        o->password = lua_tolstring(L, -1, &o->passlen);
    if (rc_opt(L, "db"))
        o->db = rc_optint(L, "db", 0, INT_MAX);
    if ((o->has_timeout = rc_opt(L, "timeout"))) /* hiredis takes int milliseconds */
        o->timeout = lua_tonumber(L, -1) < RC_MAX_TIMEOUT ? lua_tonumber(L, -1) : RC_MAX_TIMEOUT;
    if ((o->has_connect_timeout = rc_opt(L, "connect_timeout")))
        o->connect_timeout = lua_tonumber(L, -1) < RC_MAX_TIMEOUT ? lua_tonumber(L, -1) : RC_MAX_TIMEOUT;
    if (rc_opt(L, "max_reply"))
        o->max_reply = lua_tonumber(L, -1);
    if (!(o->max_reply > 0 && o->max_reply <= RC_MAX_MAX_REPLY)) /* also NaN */
        luaL_argerror(L, 1, lua_pushfstring(L, "option 'max_reply' must be a number of MiB in (0, %d]",
                                            (int)RC_MAX_MAX_REPLY));
    /* `timeout` alone bounds the connect as well: the config section has
     * no connect_timeout, and a user who writes timeout = 0.5 means it. */
    if (o->has_timeout && !o->has_connect_timeout)
        o->connect_timeout = o->timeout;
    /* The config documents password = "" as "no password" (the Go
     * eventilator's RedisAuth = ""), and the host passes that section
     * straight through; Redis has no empty password to send. */
    if (o->password && o->passlen == 0)
        o->password = NULL;
    if (o->username && o->userlen == 0)
        o->username = NULL;
    if (o->path && (o->has_host || o->has_port))
        luaL_argerror(L, 1, "option 'path' excludes 'host' and 'port'");
    if (o->path && strlen(o->path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
        luaL_argerror(L, 1, "option 'path' is too long for a unix socket");
    if (o->username && !o->password)
        luaL_argerror(L, 1, "option 'username' needs 'password'");
}

/* AUTH or SELECT during connect; returns 0, or 2 after pushing nil, msg. */
static int rc_handshake(lua_State *L, RClient *c, int argc, const char *what,
                        double deadline, int clamped, double secs)
{
    int base = lua_gettop(L) - argc + 1;
    const char *err = rc_roundtrip(L, c, base, argc, deadline);
    if (err != NULL) {
        rc_die(L, c, err, clamped, secs, 0);
        return 2;
    }
    lua_pop(L, argc);
    if (c->reply->type == REDIS_REPLY_ERROR) {
        lua_pushfstring(L, "%s failed: ", what);
        rc_pushfail(L, c, lua_tostring(L, -1), c->reply->str, 0);
        rc_free(c);
        return 2;
    }
    freeReplyObject(c->reply);
    c->reply = NULL;
    return 0;
}

/*
 * Resolve host within the deadline (lookup.h), then connect to each address
 * in turn as an IP literal, so hiredis's own getaddrinfo never waits on DNS.
 * Leaves c->ctx set (maybe with err) and returns 0, or pushes nil, msg and
 * returns 2 when the lookup fails or times out.
 */
static int rc_connect_tcp(lua_State *L, RClient *c, const char *host, int port, double deadline,
                          int clamped, double secs)
{
    struct addrinfo hints, *res = NULL, *ai;
    char ip[INET6_ADDRSTRLEN], why[300];
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (evl_resolve(host, NULL, &hints, deadline, clamped, secs, &res, why, sizeof why) < 0)
        return rc_pushfail(L, c, NULL, why, 0);
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        const void *a = ai->ai_family == AF_INET6
            ? (const void *)&((struct sockaddr_in6 *)(void *)ai->ai_addr)->sin6_addr
            : (const void *)&((struct sockaddr_in *)(void *)ai->ai_addr)->sin_addr;
        double left = deadline - evl_monotonic();
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            continue;
        if (inet_ntop(ai->ai_family, a, ip, sizeof ip) == NULL)
            continue;
        if (c->ctx)
            redisFree(c->ctx);
        c->ctx = redisConnectWithTimeout(ip, port, rc_tv(left > 0 ? left : 0.001));
        if (c->ctx == NULL || !c->ctx->err || left <= 0)
            break;
    }
    freeaddrinfo(res);
    return 0;
}

/*
 * redis.connect([opts]) -> client | nil, msg
 * opts: host ("127.0.0.1"), port (6379), path (unix socket; excludes host
 * and port), username + password (AUTH user pass) or password (AUTH pass;
 * "" means none), db (SELECT when non-zero), timeout (per-call, s, default
 * 5), connect_timeout (s; default: timeout if given, else 2), max_reply
 * (MiB, default 64: the largest reply a call accepts, see replycap.h).
 * connect_timeout bounds the whole of connect: name lookup, TCP handshake,
 * AUTH, SELECT.
 * Returns nil, "redis <addr>: ..." when refused, timed out, the name does
 * not resolve, AUTH or SELECT fail, or the budget is spent.
 * Raises: opts not a table, an unknown key, a value of the wrong type or
 * out of range.
 */
static int rc_connect(lua_State *L)
{
    RcOpts o;
    RClient *c;
    size_t addrlen;
    double t, deadline;
    int clamped;
    rc_readopts(L, &o);
    lua_settop(L, 1);
    if (o.path)
        lua_pushstring(L, o.path);
    else if (strchr(o.host, ':'))
        lua_pushfstring(L, "[%s]:%I", o.host, (LUAI_UACINT)o.port);
    else
        lua_pushfstring(L, "%s:%I", o.host, (LUAI_UACINT)o.port);
    addrlen = lua_rawlen(L, -1);
    /* Created closed: if anything below raises, __gc has nothing to do. */
    c = (RClient *)lua_newuserdatauv(L, sizeof(RClient) + addrlen + 1, 0);
    c->ctx = NULL;
    c->reply = NULL;
    c->busy = 0;
    memset(&c->cap, 0, sizeof c->cap);
    c->timeout = o.timeout;
    memcpy(c->addr, lua_tostring(L, -2), addrlen + 1);
    luaL_setmetatable(L, RC_MT);
    lua_replace(L, 2); /* the client at 2, nothing above it */

    if ((deadline = evl_op_deadline(L, o.connect_timeout, &clamped)) == 0)
        return rc_pushfail(L, c, NULL, "time budget exhausted", 0);
    t = deadline - evl_monotonic();
    if (o.path)
        c->ctx = redisConnectUnixWithTimeout(o.path, rc_tv(t));
    else if (rc_connect_tcp(L, c, o.host, (int)o.port, deadline, clamped, o.connect_timeout))
        return 2;
    if (c->ctx == NULL)
        return rc_pushfail(L, c, NULL, "out of memory", 0);
    if (c->ctx->err) {
        /* hiredis words its own connect timeout "Connection timed out" */
        if (strstr(c->ctx->errstr, "timed out") != NULL)
            return rc_die(L, c, rc_timed_out, clamped, o.connect_timeout, 0);
        rc_pushfail(L, c, NULL, c->ctx->errstr, 0);
        rc_free(c);
        return 2;
    }
    evl_replycap_install(&c->cap, c->ctx->reader, o.max_reply);
    if (o.password) {
        int argc = 2;
        lua_pushliteral(L, "AUTH");
        if (o.username) {
            lua_pushlstring(L, o.username, o.userlen);
            argc++;
        }
        lua_pushlstring(L, o.password, o.passlen);
        if (rc_handshake(L, c, argc, "AUTH", deadline, clamped, o.connect_timeout))
            return 2;
    }
    if (o.db != 0) {
        lua_pushliteral(L, "SELECT");
        lua_pushinteger(L, o.db);
        rc_arg(L, -1, NULL);
        if (rc_handshake(L, c, 2, "SELECT", deadline, clamped, o.connect_timeout))
            return 2;
    }
    lua_settop(L, 2);
    return 1;
}

/* ---------------------------------------------------------------------- */

static const luaL_Reg rc_methods[] = {
    {"call", rc_call},
    {"pipeline", rc_pipeline},
    {"close", rc_close},
    {NULL, NULL}};

static const luaL_Reg rc_meta[] = {
    {"__index", NULL}, /* set to the methods table below */
    {"__gc", rc_close},
    {"__close", rc_close},
    {"__tostring", rc_tostring},
    {NULL, NULL}};

static const luaL_Reg rc_funcs[] = {
    {"connect", rc_connect},
    {NULL, NULL}};

RC_EXPORT int luaopen_eventilator_redis(lua_State *L);

RC_EXPORT int luaopen_eventilator_redis(lua_State *L)
{
    struct sigaction sa;
    /* hiredis writes with write(2), not send(MSG_NOSIGNAL): a write to a
     * connection the server has closed would raise SIGPIPE, whose default
     * action kills the whole process, and with it Sentinel's event script.
     * Ignored, the write fails with EPIPE and the call returns nil, msg.
     * A disposition the host chose on purpose is left alone. */
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && !(sa.sa_flags & SA_SIGINFO) &&
        sa.sa_handler == SIG_DFL)
        signal(SIGPIPE, SIG_IGN);
    if (luaL_newmetatable(L, RC_MT)) {
        luaL_setfuncs(L, rc_meta, 0);
        luaL_newlib(L, rc_methods);
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
    luaL_newlib(L, rc_funcs);
    return 1;
}
