/*
 * lsentinel.c: module "eventilator.sentinel", the Lua face of the Sentinel
 * client (sentinel.c) for `eventilator sentinels`, plus the few facts about
 * this host its `doctor` needs (the running binary, paths, users) that
 * stock Lua cannot see. Mechanism only: eventilator/sentinels.lua decides.
 *
 *   local S = require("eventilator.sentinel")
 *   local fleet = assert(S.discover{ seeds = { "127.0.0.1:26379" }, timeout = 2 })
 *   local c = assert(S.connect("127.0.0.1:26379", { password = "x", timeout = 2 }))
 *   local m = c:call("SENTINEL", "MASTER", "pod1")   -- flat array of strings
 *   c:close()
 *   local all = S.ask{ sentinels = { ... }, commands = { { "INFO", "sentinel" } }, timeout = 2 }
 *
 * Registered for the full runtime only (src/cli/cli.c), which serves the
 * subcommands; no event call ever loads it.
 */
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "binding.h"
#include "sentinel.h"

#define SC_MT "eventilator.sentinel.client"
#define SC_FLEET_MT "eventilator.sentinel.fleet"
#define SC_ASK_MT "eventilator.sentinel.ask"
#define SC_MAX_ARGS 16
#define SC_MAX_ASK 1024 /* Sentinels one ask may reach at once */
#define SC_MAX_COMMANDS 100000

int luaopen_eventilator_sentinel(lua_State *L);
#define SC_DEF_TIMEOUT 2.0

typedef struct SClient {
    struct evl_sentinel_link link; /* never moves: a userdata */
    redisReply *reply; /* reply being converted: owned here so a raise cannot leak it */
    int open;
    char addr[320];
} SClient;

static void sc_free(SClient *c)
{
    if (c->reply) {
        freeReplyObject(c->reply);
        c->reply = NULL;
    }
    if (c->open)
        evl_sentinel_link_close(&c->link);
    c->open = 0;
}

/* The options table at idx: username, password, timeout (all optional). */
static void sc_opts(lua_State *L, int idx, struct evl_sentinel_opts *o)
{
    memset(o, 0, sizeof *o);
    o->timeout = SC_DEF_TIMEOUT;
    if (lua_isnoneornil(L, idx))
        return;
    luaL_checktype(L, idx, LUA_TTABLE);
    if (lua_getfield(L, idx, "username") != LUA_TNIL)
        o->username = luaL_checkstring(L, -1); /* anchored in the options table */
    if (lua_getfield(L, idx, "password") != LUA_TNIL)
        o->password = luaL_checkstring(L, -1);
    if (lua_getfield(L, idx, "timeout") != LUA_TNIL) {
        double t = evl_check_seconds(L, -1, idx, "option 'timeout'");
        o->timeout = t < 1e6 ? t : 1e6; /* poll's milliseconds fit an int */
    }
    lua_pop(L, 3);
}

/* S.connect(addr [, { username, password, timeout }]) -> client | nil, err */
static int sc_connect(lua_State *L)
{
    const char *addr = luaL_checkstring(L, 1);
    struct evl_sentinel_opts o;
    sc_opts(L, 2, &o);
    SClient *c = lua_newuserdatauv(L, sizeof *c, 0);
    memset(c, 0, sizeof *c);
    luaL_setmetatable(L, SC_MT);
    if (evl_sentinel_open(&c->link, addr, &o) < 0) {
        luaL_pushfail(L);
        lua_pushstring(L, c->link.err);
        return 2;
    }
    c->open = 1;
    snprintf(c->addr, sizeof c->addr, "%s", addr);
    return 1;
}

static SClient *sc_check_open(lua_State *L)
{
    SClient *c = luaL_checkudata(L, 1, SC_MT);
    if (!c->open)
        luaL_error(L, "attempt to use a closed Sentinel client");
    return c;
}

/* A reply as Lua: strings, integers, tables; nil elements become false. */
static void sc_push_reply(lua_State *L, const redisReply *r, int depth)
{
    luaL_checkstack(L, 3, "reply too deep");
    if (depth > 16)
        luaL_error(L, "reply nested too deep");
    switch (r->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_ERROR: lua_pushlstring(L, r->str, r->len); break;
    case REDIS_REPLY_INTEGER: lua_pushinteger(L, (lua_Integer)r->integer); break;
    case REDIS_REPLY_ARRAY:
        lua_createtable(L, (int)r->elements, 0);
        for (size_t i = 0; i < r->elements; i++) {
            sc_push_reply(L, r->element[i], depth + 1);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        break;
    default: lua_pushboolean(L, 0); break; /* nil */
    }
}

/*
 * client:call(cmd, ...) -> reply | nil, err, dead
 * Arguments are strings or numbers. `dead` is true when the connection is
 * gone (I/O error, timeout): the client is closed then.
 */
static int sc_call(lua_State *L)
{
    SClient *c = sc_check_open(L);
    int argc = lua_gettop(L) - 1;
    const char *argv[SC_MAX_ARGS];
    luaL_argcheck(L, argc >= 1 && argc <= SC_MAX_ARGS, 2, "1 to 16 command arguments expected");
    for (int i = 0; i < argc; i++) {
        if (lua_type(L, i + 2) != LUA_TSTRING && lua_type(L, i + 2) != LUA_TNUMBER)
            luaL_typeerror(L, i + 2, "string");
        argv[i] = lua_tostring(L, i + 2); /* converts numbers in place */
    }
    c->reply = evl_sentinel_call(&c->link, argc, argv);
    if (c->reply == NULL) {
        int dead = evl_sentinel_dead(&c->link);
        luaL_pushfail(L);
        lua_pushstring(L, c->link.err);
        lua_pushboolean(L, dead);
        if (dead)
            sc_free(c);
        return 3;
    }
    sc_push_reply(L, c->reply, 0);
    freeReplyObject(c->reply);
    c->reply = NULL;
    return 1;
}

/* client:close(); closing twice is harmless */
static int sc_close(lua_State *L)
{
    sc_free(luaL_checkudata(L, 1, SC_MT));
    return 0;
}

static int sc_tostring(lua_State *L)
{
    SClient *c = luaL_checkudata(L, 1, SC_MT);
    lua_pushfstring(L, "sentinel client (%s%s)", c->addr, c->open ? "" : ", closed");
    return 1;
}

/* A list of strings at field `key` of the table at idx, as a C array kept
   alive by a userdata left on the stack. */
static const char **sc_strings(lua_State *L, int idx, const char *key, size_t *n)
{
    const char **v;
    *n = 0;
    if (lua_getfield(L, idx, key) == LUA_TNIL) {
        lua_pop(L, 1);
        lua_newuserdatauv(L, 1, 0);
        return NULL;
    }
    luaL_argexpected(L, lua_istable(L, -1), idx, "list of strings");
    *n = lua_rawlen(L, -1);
    v = lua_newuserdatauv(L, (*n ? *n : 1) * sizeof *v, 1);
    lua_pushvalue(L, -2);
    lua_setiuservalue(L, -2, 1); /* the list keeps the strings alive */
    for (size_t i = 0; i < *n; i++) {
        if (lua_rawgeti(L, -2, (lua_Integer)i + 1) != LUA_TSTRING)
            luaL_error(L, "%s[%d]: expected a string", key, (int)i + 1);
        v[i] = lua_tostring(L, -1);
        lua_pop(L, 1);
    }
    lua_remove(L, -2);
    return v;
}

/*
 * S.discover{ seeds = {...}, masters = {...}|nil, username, password, timeout }
 *   -> { sentinels = { { addr, reachable, err }... }, masters = { names }, capped = n } | nil, err
 * capped: how many addresses were named past the cap on the fleet (EVL_SENTINEL_MAX_FLEET).
 */
static int sc_fleet_gc(lua_State *L)
{
    evl_fleet_free(luaL_checkudata(L, 1, SC_FLEET_MT));
    return 0;
}

static int sc_discover(lua_State *L)
{
    struct evl_sentinel_opts o;
    size_t ns, nm;
    const char **seeds, **only;
    char err[512];
    luaL_checktype(L, 1, LUA_TTABLE);
    sc_opts(L, 1, &o);
    seeds = sc_strings(L, 1, "seeds", &ns);
    only = sc_strings(L, 1, "masters", &nm);
    /* The fleet lives in a userdata while it is copied, so a raise (out of
       memory) cannot leak it. */
    struct evl_fleet *fp = lua_newuserdatauv(L, sizeof *fp, 0);
    memset(fp, 0, sizeof *fp);
    luaL_setmetatable(L, SC_FLEET_MT);
    if (evl_sentinel_discover(seeds, ns, only, nm, &o, fp, err, sizeof err) < 0) {
        luaL_pushfail(L);
        lua_pushstring(L, err);
        return 2;
    }
    struct evl_fleet f = *fp;
    lua_createtable(L, 0, 3);
    lua_createtable(L, (int)f.ns, 0);
    for (size_t i = 0; i < f.ns; i++) {
        lua_createtable(L, 0, 3);
        lua_pushstring(L, f.s[i].addr);
        lua_setfield(L, -2, "addr");
        lua_pushboolean(L, f.s[i].reachable);
        lua_setfield(L, -2, "reachable");
        if (f.s[i].err[0]) {
            lua_pushstring(L, f.s[i].err);
            lua_setfield(L, -2, "err");
        }
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, "sentinels");
    lua_createtable(L, (int)f.nm, 0);
    for (size_t i = 0; i < f.nm; i++) {
        lua_pushstring(L, f.masters[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, "masters");
    lua_pushinteger(L, (lua_Integer)f.capped);
    lua_setfield(L, -2, "capped");
    evl_fleet_free(fp);
    return 1;
}

/* ------------------------------------------------------------ ask */

/* One S.ask: its links and the replies, owned by a userdata so a raise frees them. */
typedef struct SAsk {
    size_t n, ncmd;
    struct evl_sentinel_link *l;
    redisReply **r; /* n x ncmd: r[i * ncmd + j], the reply to command j on Sentinel i */
    size_t *got;
} SAsk;

static int sc_ask_gc(lua_State *L)
{
    SAsk *a = luaL_checkudata(L, 1, SC_ASK_MT);
    for (size_t i = 0; a->l && i < a->n; i++)
        evl_sentinel_link_close(&a->l[i]);
    for (size_t k = 0; a->r && k < a->n * a->ncmd; k++)
        if (a->r[k])
            freeReplyObject(a->r[k]);
    free(a->l);
    free(a->r);
    free(a->got);
    a->l = NULL;
    a->r = NULL;
    a->got = NULL;
    return 0;
}

static void sc_ask_reply(size_t i, redisReply *r, void *ud)
{
    SAsk *a = ud;
    if (a->got[i] < a->ncmd)
        a->r[i * a->ncmd + a->got[i]++] = r;
    else
        freeReplyObject(r); /* nobody asked for it */
}

/* One command of an ask, as argv. */
typedef struct SCmd {
    int argc;
    const char *argv[SC_MAX_ARGS];
} SCmd;

/* The commands at field `commands` of the table at 1, checked, as argv lists: a userdata left on
   the stack, above the list that anchors their strings. */
static SCmd *sc_ask_commands(lua_State *L, size_t *n)
{
    luaL_argexpected(L, lua_getfield(L, 1, "commands") == LUA_TTABLE, 1, "commands: a list of commands");
    *n = lua_rawlen(L, -1);
    luaL_argcheck(L, *n >= 1 && *n <= SC_MAX_COMMANDS, 1, "commands: 1 to 100000 commands");
    SCmd *c = lua_newuserdatauv(L, *n * sizeof *c, 0);
    for (size_t j = 0; j < *n; j++) {
        if (lua_rawgeti(L, -2, (lua_Integer)j + 1) != LUA_TTABLE)
            luaL_error(L, "commands[%d]: expected a list of strings", (int)j + 1);
        c[j].argc = (int)lua_rawlen(L, -1);
        if (c[j].argc < 1 || c[j].argc > SC_MAX_ARGS)
            luaL_error(L, "commands[%d]: 1 to 16 words expected", (int)j + 1);
        for (int k = 0; k < c[j].argc; k++) {
            if (lua_rawgeti(L, -1, k + 1) != LUA_TSTRING)
                luaL_error(L, "commands[%d][%d]: expected a string", (int)j + 1, k + 1);
            c[j].argv[k] = lua_tostring(L, -1); /* anchored in the list */
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    return c;
}

/* Push what Sentinel i answered: { replies = { ... }, errors = { [j] = text }, err = why }. */
static void sc_ask_push(lua_State *L, SAsk *a, size_t i)
{
    lua_createtable(L, 0, 3);
    lua_createtable(L, (int)a->ncmd, 0);
    lua_createtable(L, 0, 0);
    for (size_t j = 0; j < a->got[i]; j++) {
        const redisReply *r = a->r[i * a->ncmd + j];
        if (r->type == REDIS_REPLY_ERROR) {
            lua_pushlstring(L, r->str, r->len);
            lua_rawseti(L, -2, (lua_Integer)j + 1);
            lua_pushboolean(L, 0);
        } else {
            sc_push_reply(L, r, 0);
        }
        lua_rawseti(L, -3, (lua_Integer)j + 1);
    }
    lua_setfield(L, -3, "errors");
    lua_setfield(L, -2, "replies");
    if (a->l[i].state == EVL_SL_DEAD) {
        lua_pushstring(L, a->l[i].err);
        lua_setfield(L, -2, "err");
    }
}

/*
 * S.ask{ sentinels = { addr... }, commands = { { word... }... }, username, password, timeout }
 *   -> { [i] = { replies = { [j] = reply | false }, errors = { [j] = text }, err = why } }
 * Every Sentinel at once, each on its own link, the commands in one pipeline: N that accept
 * and never answer cost one timeout, not N. replies[j] is false when command j got an error
 * reply (its text in errors[j]); err, when set, says why the link failed (the replies that came
 * before it are kept). Raises on bad arguments.
 */
static int sc_ask(lua_State *L)
{
    struct evl_sentinel_opts o;
    size_t n, ncmd;
    luaL_checktype(L, 1, LUA_TTABLE);
    sc_opts(L, 1, &o);
    const char **addrs = sc_strings(L, 1, "sentinels", &n);
    luaL_argcheck(L, n <= SC_MAX_ASK, 1, "sentinels: at most 1024");
    SCmd *cmds = sc_ask_commands(L, &ncmd);
    SAsk *a = lua_newuserdatauv(L, sizeof *a, 0);
    memset(a, 0, sizeof *a);
    luaL_setmetatable(L, SC_ASK_MT);
    a->n = n;
    a->ncmd = ncmd;
    a->l = calloc(n ? n : 1, sizeof *a->l);
    a->r = calloc(n ? n * ncmd : 1, sizeof *a->r);
    a->got = calloc(n ? n : 1, sizeof *a->got);
    if (!a->l || !a->r || !a->got)
        return luaL_error(L, "not enough memory");
    for (size_t i = 0; i < n; i++) {
        if (evl_sentinel_link_open(&a->l[i], addrs[i], &o) < 0)
            continue;
        for (size_t j = 0; j < ncmd; j++)
            evl_sentinel_link_send(&a->l[i], cmds[j].argc, cmds[j].argv);
    }
    evl_sentinel_drive(a->l, n, sc_ask_reply, a);
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        sc_ask_push(L, a, i);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_replace(L, 1);
    lua_settop(L, 1);
    return 1; /* the userdata is collected: its replies and links with it */
}

static int sc_errno(lua_State *L, const char *what)
{
    luaL_pushfail(L);
    lua_pushfstring(L, "%s: %s", what, strerror(errno));
    return 2;
}

/* S.exe() -> the running binary's path (/proc/self/exe) | nil, err */
static int sc_exe(lua_State *L)
{
    char buf[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n <= 0)
        return sc_errno(L, "/proc/self/exe");
    lua_pushlstring(L, buf, (size_t)n);
    return 1;
}

/* S.realpath(path) -> absolute path with every link resolved | nil, err */
static int sc_realpath(lua_State *L)
{
    const char *p = luaL_checkstring(L, 1);
    char buf[PATH_MAX];
    if (realpath(p, buf) == NULL)
        return sc_errno(L, p);
    lua_pushstring(L, buf);
    return 1;
}

/* S.stat(path) -> { type = "file"|"dir"|"other", mode (permission bits), uid, gid } | nil, err
   (follows links) */
static int sc_stat(lua_State *L)
{
    const char *p = luaL_checkstring(L, 1);
    struct stat st;
    if (stat(p, &st) < 0)
        return sc_errno(L, p);
    lua_createtable(L, 0, 4);
    lua_pushstring(L, S_ISREG(st.st_mode) ? "file" : S_ISDIR(st.st_mode) ? "dir" : "other");
    lua_setfield(L, -2, "type");
    lua_pushinteger(L, (lua_Integer)(st.st_mode & 07777));
    lua_setfield(L, -2, "mode");
    lua_pushinteger(L, (lua_Integer)st.st_uid);
    lua_setfield(L, -2, "uid");
    lua_pushinteger(L, (lua_Integer)st.st_gid);
    lua_setfield(L, -2, "gid");
    return 1;
}

/* S.user(name) -> { name, uid, gid, groups = { gid... } } | nil, err */
static int sc_user(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    struct passwd *pw;
    gid_t groups[256];
    int ng = 256;
    errno = 0;
    pw = getpwnam(name);
    if (pw == NULL) {
        luaL_pushfail(L);
        lua_pushfstring(L, "no such user: %s", name);
        return 2;
    }
    lua_createtable(L, 0, 4);
    lua_pushstring(L, pw->pw_name);
    lua_setfield(L, -2, "name");
    lua_pushinteger(L, (lua_Integer)pw->pw_uid);
    lua_setfield(L, -2, "uid");
    lua_pushinteger(L, (lua_Integer)pw->pw_gid);
    lua_setfield(L, -2, "gid");
    if (getgrouplist(pw->pw_name, pw->pw_gid, groups, &ng) < 0)
        ng = 256; /* more than 256 groups: the first 256 */
    lua_createtable(L, ng, 0);
    for (int i = 0; i < ng; i++) {
        lua_pushinteger(L, (lua_Integer)groups[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "groups");
    return 1;
}

/* S.whoami() -> the effective user's name (or its uid as a string) */
static int sc_whoami(lua_State *L)
{
    struct passwd *pw = getpwuid(geteuid());
    if (pw)
        lua_pushstring(L, pw->pw_name);
    else
        lua_pushfstring(L, "%d", (int)geteuid());
    return 1;
}

int luaopen_eventilator_sentinel(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"call", sc_call}, {"close", sc_close}, {NULL, NULL},
    };
    static const luaL_Reg meta[] = {
        {"__gc", sc_close}, {"__close", sc_close}, {"__tostring", sc_tostring},
        {"__index", NULL},  {NULL, NULL},
    };
    static const luaL_Reg fns[] = {
        {"ask", sc_ask}, {"connect", sc_connect}, {"discover", sc_discover}, {"exe", sc_exe},
        {"realpath", sc_realpath}, {"stat", sc_stat}, {"user", sc_user},
        {"whoami", sc_whoami},   {NULL, NULL},
    };
    luaL_newmetatable(L, SC_FLEET_MT);
    lua_pushcfunction(L, sc_fleet_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    luaL_newmetatable(L, SC_ASK_MT);
    lua_pushcfunction(L, sc_ask_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    luaL_newmetatable(L, SC_MT);
    luaL_setfuncs(L, meta, 0);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    luaL_newlib(L, fns);
    return 1;
}
