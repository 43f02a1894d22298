/*
 * cli.c: the subcommands' entry, and the host's engine offered to the
 * shipped eventilator.cli module (check, test, config, sentinels, watch),
 * so the subcommands run exactly the code an event runs. Only the full
 * runtime serves subcommands; they are not on the hot path.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>

#include <lauxlib.h>
#include <lua.h>

#include "budget.h"
#include "call.h"
#include "cli.h"
#include "config.h"
#include "delivery.h"
#include "log.h"
#include "paths.h"
#include "rules.h"
#include "schema.h"
#include "statedir.h"
#if !defined(EVL_HOST_MODULE) /* the full runtime's own subcommands */
#include "watch.h"
#include "cluster.h"
int luaopen_eventilator_sentinel(lua_State *L); /* bindings/lsentinel.c */
#endif

/* The host; its state is the caller's (eventilator.testing may call from a coroutine). */
static struct evl_host *host(lua_State *L)
{
    struct evl_host *h = lua_touserdata(L, lua_upvalueindex(1));
    h->L = L;
    return h;
}

/* { { path = , format = }, ..., own = } : what a load read, base first. */
static void push_files(lua_State *L, const struct evl_config_files *f)
{
    lua_createtable(L, f->n, 1);
    for (int i = 0; i < f->n; i++) {
        lua_createtable(L, 0, 2);
        lua_pushstring(L, f->path[i]);
        lua_setfield(L, -2, "path");
        lua_pushstring(L, f->format[i]);
        lua_setfield(L, -2, "format");
        lua_rawseti(L, -2, i + 1);
    }
    lua_pushstring(L, f->own);
    lua_setfield(L, -2, "own");
}

/*
 * host.load_config([name]) -> config, path, format, problems, files | nil, path (error logged)
 * Loads the config as a call named `name` (default: this one's) does, for
 * the subcommands to use. Its problems are returned, not logged: the
 * subcommand shows them.
 */
static int h_load_config(lua_State *L)
{
    struct evl_host *h = host(L);
    h->config_partial_ok = 1;
    if (evl_config_load_as(h, luaL_optstring(L, 1, h->name)) < 0) {
        lua_pushnil(L);
        lua_pushstring(L, h->config_path);
        return 2;
    }
    evl_config_push_problems(h);
    int problems = lua_gettop(L);
    evl_config_open_log(h);
    evl_log_also_stderr(1);
    evl_open_host_module(L, h);
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->config_ref);
    lua_pushstring(L, h->config_path);
    lua_pushstring(L, h->config_format);
    lua_pushvalue(L, problems);
    push_files(L, h->config_files);
    return 5;
}

/*
 * host.read_config(name) -> config, problems, files | nil, err, files
 * The config a call named `name` reads, with its problems, built as that
 * call builds it but not loaded: `check` and `sentinels doctor` look at
 * every mode this way without disturbing the loaded one.
 */
static int h_read_config(lua_State *L)
{
    static struct evl_config_files f;
    struct evl_host *h = host(L);
    const char *name = luaL_checkstring(L, 1);
    if (evl_config_build(h, name, &f) < 0) {
        lua_pushnil(L);
        lua_insert(L, -2);
        push_files(L, &f);
        return 3;
    }
    evl_config_materialize(L, -1);
    lua_insert(L, -2); /* config, problems */
    push_files(L, &f);
    return 3;
}

/*
 * host.log_where() -> where log lines go now ("syslog", "stderr" or a file's
 * path), why that is not log.target (or nil), the fallback file. Asks
 * syslog's socket when no line has yet; makes nothing (log.c).
 */
static int h_log_where(lua_State *L)
{
    const char *why, *fallback, *to = evl_log_where(&why, &fallback);
    (void)host(L);
    lua_pushstring(L, to);
    lua_pushstring(L, why); /* nil when NULL */
    lua_pushstring(L, fallback);
    return 3;
}

/*
 * host.private_dir(path, uid) -> true | false, "missing" | "not a folder" |
 * "owner" | "writable": is `path` a folder of state_dir that user `uid` may
 * use (statedir.c's rule, the one every call applies)? Follows links, as a
 * call does.
 */
static int h_private_dir(lua_State *L)
{
    static const char *const broken[] = {"", "not a folder", "owner", "writable"};
    const char *path = luaL_checkstring(L, 1);
    lua_Integer uid = luaL_checkinteger(L, 2);
    struct stat st;
    enum evl_private rule;
    if (stat(path, &st) < 0) {
        lua_pushboolean(L, 0);
        lua_pushstring(L, errno == ENOENT ? "missing" : strerror(errno));
        return 2;
    }
    rule = evl_private_rule(&st, (uid_t)uid);
    lua_pushboolean(L, rule == EVL_PRIVATE_OK);
    if (rule == EVL_PRIVATE_OK)
        return 1;
    lua_pushstring(L, broken[rule]);
    return 2;
}

/* host.load_rules() -> files ({ path, ok, err, patterns }), handlers */
static int h_load_rules(lua_State *L)
{
    struct evl_host *h = host(L);
    evl_rules_load(h);
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->files_ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->handlers_ref);
    return 2;
}

/* host.parse(args, reconfig) -> ev | nil, err */
static int h_parse(lua_State *L)
{
    static struct evl_event ev;
    static char *argv[8];
    static char err[512];
    luaL_checktype(L, 1, LUA_TTABLE);
    int reconfig = lua_toboolean(L, 2);
    int n = (int)lua_rawlen(L, 1), want = reconfig ? 7 : 2;
    if (!reconfig && n >= 1) { /* `test odown`: the name's problem first, with its guess */
        lua_rawgeti(L, 1, 1);
        const char *type = lua_tostring(L, -1);
        if (type && evl_check_event_name(type, err, sizeof err) < 0) {
            lua_pushnil(L);
            lua_pushstring(L, err);
            return 2;
        }
        lua_pop(L, 1);
    }
    if (n != want) {
        lua_pushnil(L);
        lua_pushfstring(L, "wrong number of arguments: expected %d, got %d", want, n);
        return 2;
    }
    for (int i = 0; i < n; i++) {
        lua_rawgeti(L, 1, i + 1);
        argv[i] = (char *)luaL_checkstring(L, -1); /* anchored in the args table */
        lua_pop(L, 1);
    }
    int rc = reconfig ? evl_parse_reconfig(&ev, argv, err, sizeof err)
                      : evl_parse_notification(&ev, argv[0], argv[1], err, sizeof err);
    if (rc < 0) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    evl_push_event(L, &ev, n, argv, NULL);
    return 1;
}

/* host.match(name) -> list of handler entries */
static int h_match(lua_State *L)
{
    evl_rules_match(host(L), luaL_checkstring(L, 1));
    return 1;
}

/* host.run(matched, ev) -> ran, failed (entries get their outcome: ok, err, ms, skipped) */
static int h_run(lua_State *L)
{
    struct evl_host *h = host(L);
    int failed = 0, ran;
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checktype(L, 2, LUA_TTABLE);
    ran = evl_event_handlers(h, 1, 2, &failed);
    lua_pushinteger(L, ran);
    lua_pushinteger(L, failed);
    return 2;
}

/* host.retries() -> { [record path] = record text }: every delivery record in state_dir */
static int h_retries(lua_State *L)
{
    evl_delivery_records(host(L));
    return 1;
}

/* host.begin_call(): a replayed call starts now, with a budget (and a delivery set) of its own. */
static int h_begin_call(lua_State *L)
{
    struct evl_host *h = host(L);
    evl_event_begin(h, h->call.argc, h->call.argv);
    return 0;
}

/* host.show_log(all): the terminal's copy of the log gets every level (all) or info and above */
static int h_show_log(lua_State *L)
{
    evl_log_also_stderr(lua_toboolean(L, 1) ? 2 : 1);
    return 0;
}

void evl_push_cli_host(lua_State *L, struct evl_host *h)
{
    static const luaL_Reg fns[] = {
        {"load_config", h_load_config}, {"read_config", h_read_config},
        {"load_rules", h_load_rules},   {"parse", h_parse},           {"show_log", h_show_log},
        {"match", h_match},             {"run", h_run},               {"retries", h_retries},
        {"log_where", h_log_where},     {"private_dir", h_private_dir},
#if !defined(EVL_HOST_MODULE)
        {"sentinel", luaopen_eventilator_sentinel}, /* host.sentinel() -> the module */
        {"watch", evl_watch_lua}, /* watch.c: `eventilator watch` */
        {"work", evl_work_lua},   /* cluster.c: `eventilator work` */
#endif
        {"begin_call", h_begin_call},
        {NULL, NULL},
    };
    lua_createtable(L, 0, 8);
    lua_pushlightuserdata(L, h);
    luaL_setfuncs(L, fns, 1);
    lua_pushstring(L, EVENTILATOR_VERSION);
    lua_setfield(L, -2, "version");
    lua_pushstring(L, EVL_CONFDIR);
    lua_setfield(L, -2, "confdir");
    lua_pushstring(L, h->name);
    lua_setfield(L, -2, "name");
}

int evl_cli_main(struct evl_host *h)
{
    lua_State *L = h->L;
    /*
     * `check` loads the rules as a call does, under the same watchdog and
     * memory cap; the other subcommands (test, watch, sentinels, ...) are
     * interactive or long-running and keep their own time.
     */
    if (strcmp(h->call.argv[1], "check") != 0) {
        evl_watchdog_disarm();
        if (strcmp(h->call.argv[1], "test") != 0)
            h->mem.limit = SIZE_MAX;
    }
    lua_gc(L, LUA_GCRESTART);
    evl_log_also_stderr(1);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "eventilator.cli");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "main");
    lua_newtable(L);
    for (int i = 1; i < h->call.argc; i++) {
        lua_pushstring(L, h->call.argv[i]);
        lua_rawseti(L, -2, i);
    }
    evl_push_cli_host(L, h);
    lua_call(L, 2, 1);
    return (int)luaL_optinteger(L, -1, 0);
}
