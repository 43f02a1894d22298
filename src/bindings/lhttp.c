/*
 * lhttp.c: the http binding (module eventilator.http), on libcurl.
 *
 * One blocking request per call, one easy handle per request: the program
 * lives for one Sentinel event, so there is no connection pool to keep warm.
 * C does the request and nothing else; defaults that are policy (retries,
 * friendly wrappers) belong in lua/.
 *
 * Ownership: everything C allocates for a request (the curl handle, the
 * header list, the response buffers) hangs off a userdata with __gc, created
 * before anything is allocated. Any Lua error raised while a request is being
 * set up or its result pushed (bad option, out of memory) therefore frees
 * them when the userdata is collected; nothing is owned by a C local across a
 * call that can raise. libcurl never calls back into Lua: the callbacks only
 * append to those buffers, so no error can longjmp over libcurl's frames.
 *
 * Errors follow the house rule: misuse (unknown option, wrong type, header
 * with a line break) raises; transport failures (refused, DNS, TLS, timeout,
 * body too big, budget spent) return nil, "http METHOD URL: reason". The URL
 * in a message has its user:password@ and its query removed, and request
 * headers never appear: both may carry tokens, and messages end up in logs.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <lauxlib.h>
#include <lua.h>

#include "binding.h"

#ifndef EVENTILATOR_VERSION
#define EVENTILATOR_VERSION "dev" /* a string literal when defined */
#endif

/* Built with -fvisibility=hidden: only the opener is exported. */
#if defined(__GNUC__)
#define HTTP_EXPORT __attribute__((visibility("default")))
#else
#define HTTP_EXPORT
#endif

#define HTTP_REQ "eventilator.http.req" /* metatable of the internal userdata */
#define HTTP_MAX_BODY 1048576           /* default max_body: 1 MiB */
#define HTTP_MAX_HEAD (256 * 1024)      /* cap on one response's header block */
#define HTTP_MAX_REDIRS 5L
#define HTTP_TIMEOUT 5.0
#define HTTP_CONNECT_TIMEOUT 2.0
#define HTTP_TIMEOUT_CAP 86400.0 /* keeps the ms conversion inside a long */

HTTP_EXPORT int luaopen_eventilator_http(lua_State *L);

/* ------------------------------------------------------------------------ */
/* The request userdata                                                      */
/* ------------------------------------------------------------------------ */

typedef struct {
    char *p;
    size_t len, cap;
} HBuf;

enum { OVER_NONE, OVER_BODY, OVER_HEAD, OVER_NOMEM };

typedef struct {
    CURL *curl;
    struct curl_slist *hdrs;
    HBuf body;          /* body of the latest response */
    HBuf head;          /* header lines of the latest response, no status line */
    curl_off_t max_body;
    int over;           /* which limit made a callback abort the transfer */
    char err[CURL_ERROR_SIZE];
} Req;

static void buf_free(HBuf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* Append n bytes; 0 when memory runs out (the caller aborts the transfer). */
static int buf_add(HBuf *b, const char *p, size_t n)
{
    if (n > b->cap - b->len) {
        size_t cap = b->cap ? b->cap : 1024;
        char *np;
        while (cap - b->len < n) {
            if (cap > (size_t)-1 / 2)
                return 0;
            cap *= 2;
        }
        np = realloc(b->p, cap);
        if (np == NULL)
            return 0;
        b->p = np;
        b->cap = cap;
    }
    if (n > 0)
        memcpy(b->p + b->len, p, n);
    b->len += n;
    return 1;
}

/* Frees what the request owns; safe to call twice (__gc after an early free). */
static void req_release(Req *r)
{
    if (r->curl != NULL) {
        curl_easy_cleanup(r->curl);
        r->curl = NULL;
    }
    curl_slist_free_all(r->hdrs);
    r->hdrs = NULL;
    buf_free(&r->body);
    buf_free(&r->head);
}

static int req_gc(lua_State *L)
{
    req_release((Req *)luaL_checkudata(L, 1, HTTP_REQ));
    return 0;
}

/* Create the userdata "closed" (nothing allocated yet) with its __gc set, so
 * that whatever is attached to it later is freed on any error path. */
static Req *req_new(lua_State *L)
{
    Req *r = (Req *)lua_newuserdatauv(L, sizeof(Req), 0);
    memset(r, 0, sizeof *r);
    luaL_setmetatable(L, HTTP_REQ);
    return r;
}

/* ------------------------------------------------------------------------ */
/* libcurl callbacks: plain C, never touch the Lua state                     */
/* ------------------------------------------------------------------------ */

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    Req *r = (Req *)ud;
    size_t len = size * n;
    /* body.len <= max_body holds, so the subtraction cannot go negative */
    if ((curl_off_t)len > r->max_body - (curl_off_t)r->body.len) {
        r->over = OVER_BODY;
        return 0; /* anything but len aborts with CURLE_WRITE_ERROR */
    }
    if (!buf_add(&r->body, p, len)) {
        r->over = OVER_NOMEM;
        return 0;
    }
    return len;
}

/*
 * Called once per header line, for every response curl reads: 1xx interim
 * responses, CONNECT replies and each hop of a redirect come before the final
 * one. A status line starts a new response, so it empties both buffers: what
 * is left after the transfer belongs to the final response only.
 */
static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    Req *r = (Req *)ud;
    size_t len = size * n;
    if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
        r->head.len = 0;
        r->body.len = 0;
        return len; /* the status code comes from CURLINFO_RESPONSE_CODE */
    }
    if (len > HTTP_MAX_HEAD - r->head.len) {
        r->over = OVER_HEAD;
        return 0;
    }
    if (!buf_add(&r->head, p, len)) {
        r->over = OVER_NOMEM;
        return 0;
    }
    return len;
}

/* ------------------------------------------------------------------------ */
/* Results and failures                                                      */
/* ------------------------------------------------------------------------ */

/*
 * Push the URL for a message: scheme and host kept, user:password@ dropped,
 * the query replaced by "?...". Webhook and API URLs carry tokens there.
 */
static void add_url(luaL_Buffer *b, const char *url)
{
    const char *sep = strstr(url, "://");
    const char *auth = sep ? sep + 3 : url;
    const char *auth_end = auth + strcspn(auth, "/?#");
    const char *host = auth, *q, *end;
    for (q = auth; q < auth_end; q++)
        if (*q == '@')
            host = q + 1;
    luaL_addlstring(b, url, (size_t)(auth - url));
    end = host + strcspn(host, "?#");
    luaL_addlstring(b, host, (size_t)(end - host));
    if (*end == '?')
        luaL_addstring(b, "?...");
}

/* Return nil, "http METHOD URL: reason" (reason is on top of the stack). */
static int http_fail(lua_State *L, const char *method, const char *url)
{
    luaL_Buffer b;
    int reason = lua_gettop(L);
    luaL_buffinit(L, &b);
    luaL_addstring(&b, "http ");
    luaL_addstring(&b, method);
    luaL_addchar(&b, ' ');
    add_url(&b, url);
    luaL_addstring(&b, ": ");
    lua_pushvalue(L, reason);
    luaL_addvalue(&b);
    luaL_pushresult(&b);
    luaL_pushfail(L);
    lua_insert(L, -2);
    return 2;
}

/* Push the reason for a failed curl_easy_perform. */
static void push_reason(lua_State *L, Req *r, CURLcode rc, int clamped, double timeout,
                        double connect_timeout)
{
    const char *txt = curl_easy_strerror(rc);
    if (r->over == OVER_BODY || rc == CURLE_FILESIZE_EXCEEDED)
        lua_pushfstring(L, "response body over %I bytes", (lua_Integer)r->max_body);
    else if (r->over == OVER_HEAD)
        lua_pushfstring(L, "response headers over %d bytes", HTTP_MAX_HEAD);
    else if (r->over == OVER_NOMEM)
        lua_pushliteral(L, "out of memory reading the response");
    else if (rc == CURLE_OPERATION_TIMEDOUT) {
        /* "timed out after N s", N the timeout that fired: curl's detail
         * says whether it was the lookup/connect or the whole transfer. */
        int conn = strstr(r->err, "onnection timed out") || strstr(r->err, "esolving timed out");
        char why[CURL_ERROR_SIZE + 64];
        lua_pushstring(L, evl_timeout_reason(why, sizeof why, clamped, conn ? connect_timeout : timeout,
                                             r->err[0] ? r->err : txt));
    }
    else if (r->err[0] == '\0' || strstr(r->err, txt) != NULL)
        lua_pushstring(L, r->err[0] ? r->err : txt); /* the detail, when it says it all */
    else
        lua_pushfstring(L, "%s (%s)", txt, r->err); /* curl's category, then the detail */
}

/*
 * Push the final response's headers as a table: names lowercased, values
 * trimmed, a repeated name joined with ", " (RFC 9110 5.3). Obsolete line
 * folding is not supported: such continuation lines are skipped.
 */
static void push_headers(lua_State *L, const HBuf *h)
{
    const char *p = h->p, *end = h->p + h->len;
    int t;
    lua_newtable(L);
    t = lua_gettop(L);
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end, *next = nl ? nl + 1 : end;
        const char *colon, *v, *ve, *q;
        luaL_Buffer b;
        if (le > p && le[-1] == '\r')
            le--;
        colon = memchr(p, ':', (size_t)(le - p));
        if (colon == NULL || colon == p || *p == ' ' || *p == '\t') {
            p = next;
            continue;
        }
        luaL_buffinit(L, &b);
        for (q = p; q < colon; q++)
            luaL_addchar(&b, (char)tolower((unsigned char)*q));
        luaL_pushresult(&b);
        for (v = colon + 1; v < le && (*v == ' ' || *v == '\t'); v++)
            ;
        for (ve = le; ve > v && (ve[-1] == ' ' || ve[-1] == '\t'); ve--)
            ;
        lua_pushvalue(L, -1);
        if (lua_rawget(L, t) == LUA_TSTRING) {
            lua_pushliteral(L, ", ");
            lua_pushlstring(L, v, (size_t)(ve - v));
            lua_concat(L, 3);
        } else {
            lua_pop(L, 1);
            lua_pushlstring(L, v, (size_t)(ve - v));
        }
        lua_rawset(L, t);
        p = next;
    }
}

/* ------------------------------------------------------------------------ */
/* Options                                                                   */
/* ------------------------------------------------------------------------ */

/* The options: a misspelt or mistyped one is a bug in the rule (binding.h checks them). */
static const struct evl_option http_opts[] = {
    {"url", LUA_TSTRING, 0},         {"method", LUA_TSTRING, 0},
    {"headers", LUA_TTABLE, 0},      {"body", LUA_TSTRING, 0},
    {"timeout", LUA_TNUMBER, 1},     {"connect_timeout", LUA_TNUMBER, 1},
    {"unix_socket", LUA_TSTRING, 0}, {"insecure", LUA_TBOOLEAN, 0},
    {"max_body", LUA_TNUMBER, 0},    {"follow_redirects", LUA_TBOOLEAN, 0},
    {NULL, 0, 0},
};

typedef struct {
    int arg;                   /* argument number of the options table, for luaL_argerror */
    int url, method, body;     /* stack slots of string values, 0 when absent */
    int headers, unix_socket;
    double timeout, connect_timeout;
    curl_off_t max_body;
    int insecure, follow;
    int json;                  /* post_json: add Content-Type unless given */
} Opts;

/* RFC 9110 token characters: method names and header names. */
static int is_tchar(unsigned char c)
{
    return isalnum(c) || (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static int is_token(const char *s, size_t len)
{
    size_t i;
    if (len == 0)
        return 0;
    for (i = 0; i < len; i++)
        if (!is_tchar((unsigned char)s[i]))
            return 0;
    return 1;
}

/* Raise on an unknown key, a mistyped value, or a key post_json supplies. */
static void check_keys(lua_State *L, int o, int is_json)
{
    evl_check_options(L, o, o, http_opts);
    for (int i = 0; is_json && i < 2; i++)
        if (lua_getfield(L, o, i ? "body" : "url") != LUA_TNIL)
            luaL_argerror(L, o, lua_pushfstring(L, "option '%s' is set by post_json's arguments",
                                                i ? "body" : "url"));
        else
            lua_pop(L, 1);
}

/* Leave a string option on the stack and return its slot, or 0 if absent. */
static int opt_slot(lua_State *L, int o, const char *name)
{
    if (lua_getfield(L, o, name) == LUA_TNIL) {
        lua_pop(L, 1);
        return 0;
    }
    return lua_gettop(L);
}

static double opt_seconds(lua_State *L, int o, const char *name, double dflt)
{
    double v = lua_getfield(L, o, name) == LUA_TNUMBER ? lua_tonumber(L, -1) : dflt; /* checked */
    lua_pop(L, 1);
    return v;
}

static int opt_bool(lua_State *L, int o, const char *name)
{
    int v;
    lua_getfield(L, o, name);
    v = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

/* Raise unless headers is a table of token names -> one-line string values. */
static void check_headers(lua_State *L, const Opts *op)
{
    lua_pushnil(L);
    while (lua_next(L, op->headers) != 0) {
        size_t nlen, vlen, i;
        const char *name, *val;
        if (lua_type(L, -2) != LUA_TSTRING)
            luaL_argerror(L, op->arg, "header names must be strings");
        name = lua_tolstring(L, -2, &nlen);
        if (!is_token(name, nlen))
            luaL_argerror(L, op->arg, lua_pushfstring(L, "invalid header name '%s'", name));
        if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
            luaL_argerror(L, op->arg, lua_pushfstring(L, "header '%s' must be a string (got %s)", name,
                          luaL_typename(L, -1)));
        lua_pushvalue(L, -1); /* convert a copy: the table must stay as it is */
        val = lua_tolstring(L, -1, &vlen);
        for (i = 0; i < vlen; i++)
            if (val[i] == '\r' || val[i] == '\n' || val[i] == '\0')
                luaL_argerror(L, op->arg, lua_pushfstring(L, "header '%s' contains a line break or NUL", name));
        lua_pop(L, 2);
    }
}

/* Validate the options table at o and pin its strings on the stack. */
static void read_opts(lua_State *L, int o, Opts *op)
{
    lua_Integer mb = HTTP_MAX_BODY;
    size_t len;
    const char *s;

    check_keys(L, o, op->json);
    if (!op->json) {
        op->url = opt_slot(L, o, "url");
        if (op->url == 0)
            luaL_argerror(L, o, "option 'url' is required");
        op->body = opt_slot(L, o, "body");
    }
    op->method = opt_slot(L, o, "method");
    if (op->method != 0) {
        s = lua_tolstring(L, op->method, &len);
        if (!is_token(s, len))
            luaL_argerror(L, o, lua_pushfstring(L, "invalid method '%s'", s));
        if (op->body != 0 && strcmp(s, "HEAD") == 0)
            luaL_argerror(L, o, "a HEAD request cannot have a body");
    }
    op->unix_socket = opt_slot(L, o, "unix_socket");
    op->headers = opt_slot(L, o, "headers");
    if (op->headers != 0)
        check_headers(L, op);
    op->timeout = opt_seconds(L, o, "timeout", HTTP_TIMEOUT);
    op->connect_timeout = opt_seconds(L, o, "connect_timeout", HTTP_CONNECT_TIMEOUT);
    if (lua_getfield(L, o, "max_body") != LUA_TNIL) {
        int isint;
        mb = lua_tointegerx(L, -1, &isint);
        if (!isint || mb < 0)
            luaL_argerror(L, o, "option 'max_body' must be a non-negative integer");
    }
    lua_pop(L, 1);
    op->max_body = (curl_off_t)mb;
    op->insecure = opt_bool(L, o, "insecure");
    op->follow = opt_bool(L, o, "follow_redirects");
}

/*
 * Build the request header list on r (r owns it from the first append).
 * curl_slist_append copies, so the Lua strings need not outlive this.
 */
static int build_headers(lua_State *L, Req *r, const Opts *op)
{
    int has_ctype = 0, has_expect = 0;
    struct curl_slist *n;
    if (op->headers != 0) {
        lua_pushnil(L);
        while (lua_next(L, op->headers) != 0) {
            const char *name = lua_tostring(L, -2);
            const char *val;
            lua_pushvalue(L, -1);
            val = lua_tostring(L, -1);
            has_ctype |= strcasecmp(name, "content-type") == 0;
            has_expect |= strcasecmp(name, "expect") == 0;
            /* "Name:" would remove a header curl adds; "Name;" sends it empty */
            if (*val == '\0')
                lua_pushfstring(L, "%s;", name);
            else
                lua_pushfstring(L, "%s: %s", name, val);
            n = curl_slist_append(r->hdrs, lua_tostring(L, -1));
            lua_pop(L, 3);
            if (n == NULL)
                return 0;
            r->hdrs = n;
        }
    }
    if (op->json && !has_ctype) {
        if ((n = curl_slist_append(r->hdrs, "Content-Type: application/json")) == NULL)
            return 0;
        r->hdrs = n;
    }
    /* curl waits up to a second for "100 Continue" before a large body;
     * the bodies sent here are small and the time budget is short. */
    if (!has_expect) {
        if ((n = curl_slist_append(r->hdrs, "Expect:")) == NULL)
            return 0;
        r->hdrs = n;
    }
    return 1;
}

/* Seconds to curl milliseconds; never 0, which curl reads as "no timeout". */
static long to_ms(double s)
{
    long ms;
    if (s > HTTP_TIMEOUT_CAP)
        s = HTTP_TIMEOUT_CAP;
    ms = (long)(s * 1000.0);
    return ms < 1 ? 1 : ms;
}

/* Set every option on r->curl; the first failure wins. */
static CURLcode setup(Req *r, const Opts *op, lua_State *L, const char *method,
                      long timeout_ms, long connect_ms)
{
    CURL *c = r->curl;
    CURLcode rc = CURLE_OK;
#define SET(opt, val) \
    do { \
        if (rc == CURLE_OK) \
            rc = curl_easy_setopt(c, opt, val); \
    } while (0)

    SET(CURLOPT_URL, lua_tostring(L, op->url));
    SET(CURLOPT_NOSIGNAL, 1L); /* no SIGALRM for DNS timeouts: we are a library */
#if LIBCURL_VERSION_NUM >= 0x075500
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
    SET(CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
    SET(CURLOPT_REDIR_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    SET(CURLOPT_USERAGENT, "eventilator/" EVENTILATOR_VERSION);
    SET(CURLOPT_ERRORBUFFER, r->err);
    SET(CURLOPT_TIMEOUT_MS, timeout_ms);
    SET(CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, (void *)r);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, (void *)r);
    SET(CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);
    SET(CURLOPT_HTTPHEADER, r->hdrs);
    if (op->max_body > 0) /* reject early on Content-Length; 0 means "no limit" to curl */
        SET(CURLOPT_MAXFILESIZE_LARGE, op->max_body);
    if (op->insecure) {
        SET(CURLOPT_SSL_VERIFYPEER, 0L);
        SET(CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (op->follow) {
        SET(CURLOPT_FOLLOWLOCATION, 1L);
        SET(CURLOPT_MAXREDIRS, HTTP_MAX_REDIRS);
    }
    if (op->unix_socket != 0)
        SET(CURLOPT_UNIX_SOCKET_PATH, lua_tostring(L, op->unix_socket));
    if (op->body != 0) {
        size_t len;
        const char *b = lua_tolstring(L, op->body, &len);
        /* not copied by curl: the string stays pinned on the Lua stack */
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
        SET(CURLOPT_POSTFIELDS, b);
    } else if (strcmp(method, "POST") == 0) {
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
        SET(CURLOPT_POSTFIELDS, "");
    }
    /* POSTFIELDS made it a POST and GET is curl's default; anything else,
     * and a GET with a body, needs the method named */
    if (strcmp(method, "HEAD") == 0)
        SET(CURLOPT_NOBODY, 1L); /* else curl would wait for a body */
    else if (strcmp(method, "POST") != 0 && (strcmp(method, "GET") != 0 || op->body != 0))
        SET(CURLOPT_CUSTOMREQUEST, method);
#undef SET
    return rc;
}

/* ------------------------------------------------------------------------ */
/* The request core, shared by request and post_json                         */
/* ------------------------------------------------------------------------ */

static int http_perform(lua_State *L, int o, Opts *op)
{
    const char *method, *url;
    double timeout, connect;
    int clamped;
    long status = 0;
    CURLcode rc;
    Req *r;

    read_opts(L, o, op);
    url = lua_tostring(L, op->url);
    method = op->method ? lua_tostring(L, op->method) : op->body ? "POST" : "GET";

    /* libcurl cannot be interrupted by the count hook: bound it by the budget */
    timeout = evl_clamp_timeout(L, op->timeout);
    connect = evl_clamp_timeout(L, op->connect_timeout);
    if (timeout <= 0 || connect <= 0) {
        char why[32];
        lua_pushstring(L, evl_timeout_reason(why, sizeof why, 1, 0, NULL));
        return http_fail(L, method, url);
    }
    clamped = timeout < op->timeout || connect < op->connect_timeout;

    r = req_new(L);
    r->max_body = op->max_body;
    r->curl = curl_easy_init();
    if (r->curl == NULL || !build_headers(L, r, op)) {
        req_release(r);
        lua_pushliteral(L, "out of memory");
        return http_fail(L, method, url);
    }
    rc = setup(r, op, L, method, to_ms(timeout), to_ms(connect));
    if (rc == CURLE_OK)
        rc = curl_easy_perform(r->curl);
    if (rc == CURLE_OK)
        rc = curl_easy_getinfo(r->curl, CURLINFO_RESPONSE_CODE, &status);
    if (rc != CURLE_OK) {
        push_reason(L, r, rc, clamped, op->timeout, op->connect_timeout);
        req_release(r);
        return http_fail(L, method, url);
    }
    /* close the connection now rather than at the next collection */
    curl_easy_cleanup(r->curl);
    r->curl = NULL;

    lua_createtable(L, 0, 3);
    lua_pushinteger(L, (lua_Integer)status);
    lua_setfield(L, -2, "status");
    lua_pushlstring(L, r->body.len ? r->body.p : "", r->body.len);
    lua_setfield(L, -2, "body");
    push_headers(L, &r->head);
    lua_setfield(L, -2, "headers");
    req_release(r);
    return 1;
}

/*
 * http.request(opts) -> response | nil, err
 *
 * opts: url (required), method, headers, body, timeout, connect_timeout,
 * unix_socket, insecure, max_body, follow_redirects (see docs/http.md).
 * response: { status = integer, body = string, headers = { [lowercase name]
 * = string } }, for any status the server sent, 4xx and 5xx included.
 * Returns nil, "http METHOD URL: reason" when no response was obtained
 * (refused, DNS, TLS, timeout, budget spent, body over max_body).
 * Raises on a non-table, an unknown option or a mistyped one.
 */
static int http_request(lua_State *L)
{
    Opts op;
    memset(&op, 0, sizeof op);
    op.arg = 1;
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    return http_perform(L, 1, &op);
}

/*
 * http.post_json(url, value [, opts]) -> response | nil, err
 *
 * POSTs cjson.encode(value) to url with Content-Type: application/json
 * (unless opts.headers sets a Content-Type). opts as for http.request,
 * except url and body, which are the arguments. Returns as http.request.
 * Raises as http.request, and when cjson is missing or cannot encode value
 * (a function, a sparse array, ...).
 */
static int http_post_json(lua_State *L)
{
    Opts op;
    memset(&op, 0, sizeof op);
    op.arg = 3;
    op.json = 1;
    luaL_checktype(L, 1, LUA_TSTRING);
    luaL_checkany(L, 2);
    if (lua_isnoneornil(L, 3)) {
        lua_settop(L, 2);
        lua_newtable(L);
    } else {
        luaL_checktype(L, 3, LUA_TTABLE);
        lua_settop(L, 3);
    }
    /* cjson through require: one shared instance, configured by the host */
    if (lua_getglobal(L, "require") != LUA_TFUNCTION)
        return luaL_error(L, "http.post_json: 'require' is not available");
    lua_pushliteral(L, "cjson");
    if (lua_pcall(L, 1, 1, 0) != LUA_OK)
        return luaL_error(L, "http.post_json: cannot load cjson: %s", lua_tostring(L, -1));
    if (lua_type(L, -1) != LUA_TTABLE || lua_getfield(L, -1, "encode") != LUA_TFUNCTION)
        return luaL_error(L, "http.post_json: cjson.encode not found");
    lua_pushvalue(L, 2);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK)
        return luaL_argerror(L, 2, lua_pushfstring(L, "cannot encode value: %s", lua_tostring(L, -1)));
    if (lua_type(L, -1) != LUA_TSTRING)
        return luaL_error(L, "http.post_json: cjson.encode did not return a string");
    op.body = lua_gettop(L); /* slot 5; the cjson table below it at 4 is harmless */
    op.url = 1;
    return http_perform(L, 3, &op);
}

/* ------------------------------------------------------------------------ */

static const luaL_Reg req_meta[] = {
    {"__gc", req_gc},
    {"__close", req_gc},
    {NULL, NULL},
};

static const luaL_Reg http_funcs[] = {
    {"request", http_request},
    {"post_json", http_post_json},
    {NULL, NULL},
};

HTTP_EXPORT int luaopen_eventilator_http(lua_State *L)
{
    /*
     * curl_global_init is not thread-safe on every libcurl build and must run
     * before the first handle. A process-wide flag is enough: eventilator is
     * single-threaded, and a second lua_State in the same process (tests)
     * must not initialise twice. There is no matching curl_global_cleanup:
     * the process exits right after the event, and cleanup while another
     * state could still hold a handle would be worse than the leak.
     */
    static int curl_ready = 0;
    if (!curl_ready) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
            return luaL_error(L, "eventilator.http: curl_global_init failed");
        curl_ready = 1;
    }
    if (luaL_newmetatable(L, HTTP_REQ))
        luaL_setfuncs(L, req_meta, 0);
    lua_pop(L, 1);
    luaL_newlib(L, http_funcs);
    return 1;
}
