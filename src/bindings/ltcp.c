/*
 * ltcp.c: the `eventilator.tcp` binding, plain POSIX stream sockets over
 * TCP (IPv4/IPv6) or a unix socket, for line protocols such as the Sensu
 * client socket and the HAProxy runtime API.
 *
 * Shaped after Lua's liolib.c: one userdata type with a named metatable,
 * created closed before it opens, so a connect that fails half way leaves
 * nothing for anyone to leak. Misuse raises; expected failures (refused,
 * timeout, name lookup, peer gone) return nil, msg.
 *
 * Every blocking step is a non-blocking socket plus poll(), bounded by the
 * connection's timeout and by what is left of the handler's time budget
 * (deadline.h): Sentinel kills the whole call at 60 s, and the Lua count
 * hook cannot interrupt a process parked in the kernel.
 */

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <lua.h>
#include <lauxlib.h>

#include "binding.h"

/* Built with -fvisibility=hidden as a C module: require() must still see it. */
#if defined(__GNUC__)
#define TCP_EXPORT __attribute__((visibility("default")))
#else
#define TCP_EXPORT
#endif

#define TCP_MT "eventilator.tcp.conn"

#define TCP_CONNECT_TIMEOUT 2.0 /* seconds, tcp.connect default */
#define TCP_TIMEOUT 5.0         /* seconds, per send/receive default */

/* One receive never holds more than this: a rule talks to local daemons that
 * answer in lines or small documents, and a runaway peer must not be able to
 * grow the process without bound. */
#define TCP_MAX_RECEIVE (16u * 1024u * 1024u)

#define TCP_RBUF 8192 /* read buffer kept in the userdata */
#define TCP_LABEL 300 /* "[host]:port" or a unix path, for messages */

typedef struct {
    int fd;           /* -1 while closed (also before the connect succeeds) */
    double timeout;   /* per-operation timeout in seconds */
    size_t rpos;      /* first unread byte in rbuf */
    size_t rlen;      /* end of the unread bytes in rbuf */
    char label[TCP_LABEL];
    char rbuf[TCP_RBUF];
} TcpConn;

/* Why an operation stopped early; turned into a message once nothing owned
 * by C is left to free. */
enum { TCP_OK = 0, TCP_ETIMEOUT, TCP_EBUDGET, TCP_ECLOSED, TCP_ETOOBIG, TCP_EERRNO, TCP_ELOOKUP };

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */
/* ------------------------------------------------------------------------ */

static TcpConn *tcp_check(lua_State *L, int idx)
{
    return (TcpConn *)luaL_checkudata(L, idx, TCP_MT);
}

/* Every method but close goes through here: a closed conn is a bug in the
 * rule, not a network failure, so it raises. */
static TcpConn *tcp_checkopen(lua_State *L, int idx)
{
    TcpConn *c = tcp_check(L, idx);
    if (c->fd < 0)
        luaL_argerror(L, idx, "attempt to use a closed tcp connection");
    return c;
}

/* Wait until fd is ready for `events` or the deadline passes (binding.h): TCP_OK,
 * TCP_ETIMEOUT, or TCP_EERRNO with errno set. */
static int tcp_wait(int fd, short events, double deadline)
{
    int r = evl_wait_fd(fd, events, deadline);
    return r > 0 ? TCP_OK : r == 0 ? TCP_ETIMEOUT : TCP_EERRNO;
}

/* Push nil, "tcp <label>: <what>" and return 2: the one failure shape.
 * A timeout reads "timed out after N s", N being the timeout that applied
 * (`secs`), as in every binding (binding.h). */
static int tcp_fail(lua_State *L, const char *label, int why, int err, double secs)
{
    char buf[64];
    luaL_Buffer b;
    const char *what;
    switch (why) {
    case TCP_ETIMEOUT: what = evl_timeout_reason(buf, sizeof buf, 0, secs, NULL); break;
    case TCP_EBUDGET: what = evl_timeout_reason(buf, sizeof buf, 1, secs, NULL); break;
    case TCP_ECLOSED: what = "closed"; break;
    case TCP_ETOOBIG: what = "reply larger than 16 MiB"; break;
    default: what = strerror(err); break;
    }
    lua_pushnil(L);
    luaL_buffinit(L, &b);
    luaL_addstring(&b, "tcp ");
    luaL_addstring(&b, label);
    luaL_addstring(&b, ": ");
    evl_add_reason(&b, what);
    luaL_pushresult(&b);
    return 2;
}

/* ------------------------------------------------------------------------ */
/* Connecting                                                                */
/* ------------------------------------------------------------------------ */

/*
 * Start a non-blocking connect on a fresh socket stored in c->fd and wait
 * for it. Returns TCP_OK with c->fd open, or a failure code with c->fd
 * closed again and *err holding errno. The socket is stored in the userdata
 * at once so that __gc owns it whatever happens next.
 */
static int tcp_connect_one(TcpConn *c, int family, int proto, const struct sockaddr *sa,
                           socklen_t salen, double deadline, int *err)
{
    int r, why = TCP_OK;
    c->fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, proto);
    if (c->fd < 0) {
        *err = errno;
        return TCP_EERRNO;
    }
    r = connect(c->fd, sa, salen);
    if (r < 0 && family == AF_UNIX) {
        /* A unix listener with a full backlog answers EAGAIN instead of
         * queueing us; give it until the deadline in short naps. */
        while (r < 0 && errno == EAGAIN) {
            if (evl_monotonic() >= deadline) {
                why = TCP_ETIMEOUT;
                break;
            }
            poll(NULL, 0, 10);
            r = connect(c->fd, sa, salen);
        }
        if (r < 0 && why == TCP_OK) {
            *err = errno;
            why = TCP_EERRNO;
        }
    } else if (r < 0 && (errno == EINPROGRESS || errno == EINTR)) {
        /* EINTR: the connect goes on in the background, same as EINPROGRESS */
        why = tcp_wait(c->fd, POLLOUT, deadline);
        if (why == TCP_OK) {
            socklen_t len = sizeof *err;
            if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, err, &len) < 0)
                *err = errno;
            if (*err != 0)
                why = TCP_EERRNO;
        } else if (why == TCP_EERRNO) {
            *err = errno;
        }
    } else if (r < 0) {
        *err = errno;
        why = TCP_EERRNO;
    }
    if (why != TCP_OK) {
        close(c->fd);
        c->fd = -1;
    }
    return why;
}

/*
 * Resolve host:port within the deadline (binding.h: a literal never reaches
 * NSS, which a static glibc provides only in part, and a name is looked up
 * in a helper thread the deadline can walk away from), then try every
 * address in order until one connects or the deadline passes. Returns
 * TCP_OK or a failure code: TCP_ELOOKUP with the reason in `why` when the
 * lookup ran out of time or failed. Nothing here can raise, so
 * freeaddrinfo always runs.
 */
static int tcp_connect_inet(TcpConn *c, const char *host, int port, double deadline, int clamped,
                            double secs, int *err, char *why, size_t cap)
{
    struct addrinfo hints, *res = NULL, *ai;
    char serv[8];
    int rc = TCP_EERRNO;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    snprintf(serv, sizeof serv, "%d", port);
    if (evl_resolve(host, serv, &hints, deadline, clamped, secs, &res, why, cap) < 0)
        return TCP_ELOOKUP;
    *err = EHOSTUNREACH; /* only if the list is empty, which it never is */
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        rc = tcp_connect_one(c, ai->ai_family, ai->ai_protocol, ai->ai_addr,
                             ai->ai_addrlen, deadline, err);
        if (rc == TCP_OK || rc == TCP_ETIMEOUT)
            break;
    }
    freeaddrinfo(res);
    return rc;
}

static int tcp_connect_unix(TcpConn *c, const char *path, size_t len, double deadline, int *err)
{
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof sun);
    if (len >= sizeof sun.sun_path) {
        *err = ENAMETOOLONG;
        return TCP_EERRNO;
    }
    sun.sun_family = AF_UNIX;
    memcpy(sun.sun_path, path, len + 1);
    return tcp_connect_one(c, AF_UNIX, 0, (const struct sockaddr *)&sun, sizeof sun, deadline,
                           err);
}

/* The options table at idx into *ctimeout and c->timeout; misuse raises (binding.h). */
static void tcp_options(lua_State *L, int idx, TcpConn *c, double *ctimeout)
{
    static const struct evl_option opts[] = {
        {"connect_timeout", LUA_TNUMBER, 1}, {"timeout", LUA_TNUMBER, 1}, {NULL, 0, 0}};
    if (lua_isnoneornil(L, idx))
        return;
    luaL_checktype(L, idx, LUA_TTABLE);
    evl_check_options(L, idx, idx, opts);
    if (lua_getfield(L, idx, "connect_timeout") == LUA_TNUMBER)
        *ctimeout = lua_tonumber(L, -1);
    if (lua_getfield(L, idx, "timeout") == LUA_TNUMBER)
        c->timeout = lua_tonumber(L, -1);
    lua_pop(L, 2);
}

/*
 * tcp.connect(host, port [, opts]) -> conn
 * tcp.connect(unix_path [, opts])  -> conn
 *   host: IPv4/IPv6 literal or a name; every address it resolves to is tried
 *   in order. A first argument containing '/' is a unix socket path.
 *   opts.connect_timeout: seconds for the whole connect (default 2);
 *   opts.timeout: seconds for each later send/receive (default 5).
 * Returns conn, or nil, "tcp <addr>: <reason>" (refused, "connect timed
 * out", lookup failure, "time budget exhausted").
 * Raises on wrong argument types, a port outside 1..65535, an unknown
 * option or a non-positive timeout.
 */
static int tcp_connect(lua_State *L)
{
    size_t len;
    const char *host = luaL_checklstring(L, 1, &len);
    int is_unix = strchr(host, '/') != NULL;
    int port = 0, optidx = is_unix ? 2 : 3, why, err = 0, clamped;
    double ctimeout = TCP_CONNECT_TIMEOUT, deadline;
    char reason[300];
    TcpConn *c;

    luaL_argcheck(L, strlen(host) == len, 1, "contains a zero byte");
    if (!is_unix) {
        lua_Integer p = luaL_checkinteger(L, 2);
        luaL_argcheck(L, p >= 1 && p <= 65535, 2, "port out of range");
        port = (int)p;
    } else if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE); /* connect("/path", 3030) is a bug */
    }

    /* Created closed: fd = -1 until a connect succeeds, and the metatable is
     * set before any socket exists, so __gc covers every path below. The
     * settop keeps a missing opts argument from naming the userdata. */
    lua_settop(L, optidx);
    c = (TcpConn *)lua_newuserdatauv(L, sizeof *c, 0);
    c->fd = -1;
    c->timeout = TCP_TIMEOUT;
    c->rpos = c->rlen = 0;
    c->label[0] = '\0';
    luaL_setmetatable(L, TCP_MT);
    tcp_options(L, optidx, c, &ctimeout);

    if (is_unix)
        snprintf(c->label, sizeof c->label, "%s", host);
    else if (strchr(host, ':') != NULL)
        snprintf(c->label, sizeof c->label, "[%s]:%d", host, port);
    else
        snprintf(c->label, sizeof c->label, "%s:%d", host, port);

    deadline = evl_op_deadline(L, ctimeout, &clamped);
    if (deadline <= 0)
        return tcp_fail(L, c->label, TCP_EBUDGET, 0, 0);

    if (is_unix)
        why = tcp_connect_unix(c, host, len, deadline, &err);
    else
        why = tcp_connect_inet(c, host, port, deadline, clamped, ctimeout, &err, reason,
                               sizeof reason);

    if (why == TCP_OK)
        return 1; /* the userdata on top */
    if (why == TCP_ELOOKUP) { /* ran out of time, or failed: the reason says which */
        lua_pushnil(L);
        lua_pushfstring(L, "tcp %s: %s", c->label, reason);
        return 2;
    }
    if (why == TCP_ETIMEOUT && clamped)
        why = TCP_EBUDGET;
    return tcp_fail(L, c->label, why, err, ctimeout);
}

/* ------------------------------------------------------------------------ */
/* Methods                                                                   */
/* ------------------------------------------------------------------------ */

/*
 * conn:send(data) -> number of bytes sent (always #data)
 * Sends all of data, waiting for the socket as needed within the timeout.
 * Returns nil, "tcp <addr>: <reason>", bytes_sent_before_failure on a
 * timeout, the time budget, or a peer that went away (EPIPE/ECONNRESET:
 * MSG_NOSIGNAL turns SIGPIPE into an error return).
 * Raises if conn is closed or data is not a string.
 */
static int tcp_send(lua_State *L)
{
    TcpConn *c = tcp_checkopen(L, 1);
    size_t len, sent = 0;
    const char *data = luaL_checklstring(L, 2, &len);
    int clamped, why = TCP_OK, err = 0;
    double deadline = evl_op_deadline(L, c->timeout, &clamped);

    if (deadline <= 0)
        why = TCP_EBUDGET;
    while (why == TCP_OK && sent < len) {
        ssize_t n = send(c->fd, data + sent, len - sent, MSG_NOSIGNAL);
        if (n >= 0) {
            sent += (size_t)n;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            why = tcp_wait(c->fd, POLLOUT, deadline);
            if (why == TCP_EERRNO)
                err = errno;
        } else if (errno != EINTR) {
            err = errno;
            why = TCP_EERRNO;
        }
    }
    if (why == TCP_OK) {
        lua_pushinteger(L, (lua_Integer)sent);
        return 1;
    }
    if (why == TCP_ETIMEOUT && clamped)
        why = TCP_EBUDGET;
    tcp_fail(L, c->label, why, err, c->timeout);
    lua_pushinteger(L, (lua_Integer)sent);
    return 3;
}

/*
 * Refill the read buffer with one recv, waiting up to the deadline.
 * Returns TCP_OK (some bytes arrived), TCP_ECLOSED (orderly EOF),
 * TCP_ETIMEOUT or TCP_EERRNO (*err set). Only called when it is empty.
 */
static int tcp_fill(TcpConn *c, double deadline, int *err)
{
    for (;;) {
        ssize_t n = recv(c->fd, c->rbuf, sizeof c->rbuf, 0);
        if (n > 0) {
            c->rpos = 0;
            c->rlen = (size_t)n;
            return TCP_OK;
        }
        if (n == 0)
            return TCP_ECLOSED;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            int why = tcp_wait(c->fd, POLLIN, deadline);
            if (why == TCP_EERRNO)
                *err = errno;
            if (why != TCP_OK)
                return why;
        } else if (errno != EINTR) {
            *err = errno;
            return TCP_EERRNO;
        }
    }
}

/*
 * conn:receive([pattern]) -> data
 *   pattern: n (exactly n bytes), "*l"/"l" (a line, LF and a trailing CR
 *   removed; the default), "*a"/"a" (everything until the peer closes).
 * Returns data, or nil, "tcp <addr>: <reason>", partial where reason is
 * "timeout", "time budget exhausted", "closed" (EOF before a whole line or
 * n bytes), "reply larger than 16 MiB" or an OS error, and partial is what
 * had arrived. Bytes after a line stay buffered for the next call.
 * Raises if conn is closed, on an unknown pattern, or n < 0 or > 16 MiB.
 */
static int tcp_receive(lua_State *L)
{
    TcpConn *c = tcp_checkopen(L, 1);
    enum { P_LINE, P_ALL, P_COUNT } pat = P_LINE;
    size_t want = 0, got = 0;
    int clamped, why = TCP_OK, err = 0;
    double deadline;
    luaL_Buffer b;

    if (lua_type(L, 2) == LUA_TNUMBER) {
        lua_Integer n = luaL_checkinteger(L, 2);
        luaL_argcheck(L, n >= 0 && (lua_Unsigned)n <= TCP_MAX_RECEIVE, 2,
                      "byte count out of range (0..16 MiB)");
        pat = P_COUNT;
        want = (size_t)n;
    } else if (!lua_isnoneornil(L, 2)) {
        const char *p = luaL_checkstring(L, 2);
        if (*p == '*')
            p++;
        if (strcmp(p, "l") == 0)
            pat = P_LINE;
        else if (strcmp(p, "a") == 0)
            pat = P_ALL;
        else
            return luaL_argerror(L, 2, "invalid pattern (expected n, \"*l\" or \"*a\")");
    }

    /* Everything that pushes goes before buffinit: the luaL_Buffer must stay
     * on top of the stack until luaL_pushresult. It also owns the partial
     * data, so a memory error while growing it leaks nothing. */
    deadline = evl_op_deadline(L, c->timeout, &clamped);
    lua_settop(L, 1);
    luaL_buffinit(L, &b);
    if (deadline <= 0)
        why = TCP_EBUDGET;

    while (why == TCP_OK) {
        size_t avail = c->rlen - c->rpos, take;
        const char *p = c->rbuf + c->rpos;
        if (avail == 0) {
            if (pat == P_COUNT && got == want)
                break;
            why = tcp_fill(c, deadline, &err);
            if (why == TCP_ECLOSED && pat == P_ALL) {
                why = TCP_OK; /* EOF is how "*a" is meant to end */
                break;
            }
            continue;
        }
        if (pat == P_LINE) {
            const char *nl = memchr(p, '\n', avail);
            take = nl ? (size_t)(nl - p) : avail;
            if (got + take > TCP_MAX_RECEIVE) {
                why = TCP_ETOOBIG;
                break;
            }
            luaL_addlstring(&b, p, take);
            got += take;
            c->rpos += take;
            if (nl) {
                c->rpos++; /* the LF itself */
                /* the CR may have come in an earlier chunk: look at the
                 * buffer, not at this chunk */
                if (luaL_bufflen(&b) > 0 && luaL_buffaddr(&b)[luaL_bufflen(&b) - 1] == '\r')
                    luaL_buffsub(&b, 1);
                break;
            }
        } else if (pat == P_COUNT) {
            take = want - got < avail ? want - got : avail;
            luaL_addlstring(&b, p, take);
            got += take;
            c->rpos += take;
            if (got == want)
                break;
        } else { /* P_ALL */
            if (got + avail > TCP_MAX_RECEIVE) {
                why = TCP_ETOOBIG;
                break;
            }
            luaL_addlstring(&b, p, avail);
            got += avail;
            c->rpos += avail;
        }
        if (c->rpos == c->rlen)
            c->rpos = c->rlen = 0;
    }
    if (c->rpos == c->rlen)
        c->rpos = c->rlen = 0;

    luaL_pushresult(&b);
    if (why == TCP_OK)
        return 1;
    if (why == TCP_ETIMEOUT && clamped)
        why = TCP_EBUDGET;
    tcp_fail(L, c->label, why, err, c->timeout); /* stack: partial, nil, msg */
    lua_rotate(L, -3, -1);            /* nil, msg, partial */
    return 3;
}

/*
 * conn:settimeout(seconds) -> true
 * Sets the timeout of each later send/receive (still clamped by the budget).
 * Raises if conn is closed or seconds is not a positive number.
 */
static int tcp_settimeout(lua_State *L)
{
    TcpConn *c = tcp_checkopen(L, 1);
    c->timeout = evl_check_seconds(L, 2, 2, "timeout");
    lua_pushboolean(L, 1);
    return 1;
}

/*
 * conn:shutdown() -> true
 * Half-closes the sending side: the peer reads EOF, and replies can still
 * be received. For protocols that read a request until EOF.
 * Returns nil, "tcp <addr>: <reason>" if the OS refuses.
 * Raises if conn is closed.
 */
static int tcp_shutdown(lua_State *L)
{
    TcpConn *c = tcp_checkopen(L, 1);
    if (shutdown(c->fd, SHUT_WR) < 0)
        return tcp_fail(L, c->label, TCP_EERRNO, errno, 0);
    lua_pushboolean(L, 1);
    return 1;
}

/*
 * conn:close() -> true
 * Also __close and __gc. Closing a closed conn is harmless and returns true.
 */
static int tcp_close(lua_State *L)
{
    TcpConn *c = tcp_check(L, 1);
    if (c->fd >= 0) {
        /* Linux releases the descriptor even when close reports EINTR, so a
         * retry could close someone else's; the result is not interesting. */
        close(c->fd);
        c->fd = -1;
    }
    c->rpos = c->rlen = 0;
    lua_pushboolean(L, 1);
    return 1;
}

/* tostring(conn) -> "tcp conn (<addr>)" or "tcp conn (closed)" */
static int tcp_tostring(lua_State *L)
{
    TcpConn *c = tcp_check(L, 1);
    if (c->fd < 0)
        lua_pushliteral(L, "tcp conn (closed)");
    else
        lua_pushfstring(L, "tcp conn (%s)", c->label);
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Registration                                                              */
/* ------------------------------------------------------------------------ */

static const luaL_Reg tcp_funcs[] = {
    {"connect", tcp_connect},
    {NULL, NULL},
};

static const luaL_Reg tcp_methods[] = {
    {"send", tcp_send},
    {"receive", tcp_receive},
    {"settimeout", tcp_settimeout},
    {"shutdown", tcp_shutdown},
    {"close", tcp_close},
    {NULL, NULL},
};

static const luaL_Reg tcp_metamethods[] = {
    {"__index", NULL}, /* placeholder, set to the methods table below */
    {"__gc", tcp_close},
    {"__close", tcp_close},
    {"__tostring", tcp_tostring},
    {NULL, NULL},
};

TCP_EXPORT int luaopen_eventilator_tcp(lua_State *L);

TCP_EXPORT int luaopen_eventilator_tcp(lua_State *L)
{
    luaL_newmetatable(L, TCP_MT);
    luaL_setfuncs(L, tcp_metamethods, 0);
    luaL_newlibtable(L, tcp_methods);
    luaL_setfuncs(L, tcp_methods, 0);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    luaL_newlib(L, tcp_funcs);
    return 1;
}
