/*
 * rules.c: the rule files. Every *.lua file of the rules folder, in byte
 * order of name, runs as text in its own environment and registers
 * handlers with on(pattern, handler). A file that fails to load is logged
 * with its file:line and skipped whole; the others run. The folder and each
 * file must pass the trust rule (trust.c) unless strict_modes is off; a
 * missing or refused folder fails the call. A file is compiled once per
 * change (cache.c keeps the bytecode and handover.c's scan beside it).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <lauxlib.h>
#include <lua.h>

#include "cache.h"
#include "config.h"
#include "handover.h"
#include "log.h"
#include "rules.h"
#include "statedir.h"
#include "trust.h"

#define MAX_SOURCE (4u << 20)

/*
 * A pattern no Sentinel event can match is a rule that never fires: it is
 * logged once per rule file and call, and kept in the file entry's
 * `warnings` for `eventilator check`, which fails on it. The handler is
 * still registered: the call runs on. list: the patterns; entry: the rule
 * file's entry; line: of the on() call.
 */
static void warn_patterns(lua_State *L, int list, int entry, int line)
{
    lua_Integer n = (lua_Integer)lua_rawlen(L, list);
    list = lua_absindex(L, list);
    entry = lua_absindex(L, entry);
    for (lua_Integer i = 1; i <= n; i++) {
        const char *near, *p;
        lua_rawgeti(L, list, i);
        p = lua_tostring(L, -1);
        if (!p || evl_pattern_known(p, &near)) {
            lua_pop(L, 1);
            continue;
        }
        if (lua_getfield(L, entry, "warnings") != LUA_TTABLE) {
            lua_pop(L, 1);
            lua_newtable(L);
            lua_pushvalue(L, -1);
            lua_setfield(L, entry, "warnings");
        }
        lua_pushvalue(L, -2);
        if (lua_rawget(L, -2) != LUA_TNIL) { /* already reported for this file */
            lua_pop(L, 3);
            continue;
        }
        lua_pop(L, 1);
        lua_getfield(L, entry, "path");
        if (near)
            lua_pushfstring(L, "%s:%d: `%s` matches no Sentinel event; did you mean `%s`?",
                            lua_tostring(L, -1), line, p, near);
        else
            lua_pushfstring(L, "%s:%d: `%s` matches no Sentinel event", lua_tostring(L, -1), line, p);
        evl_log(EVL_WARN, "%s", lua_tostring(L, -1));
        lua_pushvalue(L, -1);
        lua_rawseti(L, -4, (lua_Integer)lua_rawlen(L, -4) + 1); /* warnings[#+1] = msg */
        lua_pushvalue(L, -4);
        lua_pushboolean(L, 1);
        lua_rawset(L, -5); /* warnings[pattern] = true */
        lua_pop(L, 4);
    }
}

/* on(pattern, handler): upvalue 1 = the file entry, 2 = host. A new handler entry (rules.h). */
static int l_on(lua_State *L)
{
    struct evl_host *h = lua_touserdata(L, lua_upvalueindex(2));
    lua_Debug ar;
    int line = 0;
    if (lua_type(L, 1) == LUA_TTABLE) { /* the patterns, as a list */
        lua_Integer n = (lua_Integer)lua_rawlen(L, 1);
        luaL_argcheck(L, n > 0, 1, "empty pattern list");
        for (lua_Integer i = 1; i <= n; i++) {
            luaL_argcheck(L, lua_rawgeti(L, 1, i) == LUA_TSTRING, 1,
                          "pattern list must hold only strings");
            lua_pop(L, 1);
        }
    } else {
        luaL_checkstring(L, 1);
        lua_createtable(L, 1, 0);
        lua_pushvalue(L, 1);
        lua_rawseti(L, -2, 1);
        lua_replace(L, 1);
    }
    luaL_checktype(L, 2, LUA_TFUNCTION);
    luaL_argcheck(L, lua_gettop(L) == 2, 3, "on() takes a pattern and a handler");
    if (lua_getstack(L, 1, &ar) && lua_getinfo(L, "l", &ar))
        line = ar.currentline;
    warn_patterns(L, 1, lua_upvalueindex(1), line);
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->handlers_ref);
    lua_createtable(L, 0, 10);
    lua_pushvalue(L, 2);
    lua_setfield(L, -2, EVL_ENTRY_FN);
    lua_pushvalue(L, 1);
    lua_setfield(L, -2, EVL_ENTRY_PATTERNS);
    lua_getfield(L, lua_upvalueindex(1), "path");
    lua_pushfstring(L, "%s:%d", lua_tostring(L, -1), line);
    lua_setfield(L, -3, EVL_ENTRY_ID);
    lua_setfield(L, -2, EVL_ENTRY_FILE);
    lua_getfield(L, lua_upvalueindex(1), "full_lines");
    lua_setfield(L, -2, EVL_ENTRY_FULL_LINES);
    lua_pushinteger(L, line);
    lua_setfield(L, -2, EVL_ENTRY_LINE);
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    /* the file's own list, for `eventilator check` */
    lua_getfield(L, lua_upvalueindex(1), "patterns");
    lua_Integer n = (lua_Integer)lua_rawlen(L, 1);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, 1, i);
        lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    }
    return 0;
}

/*
 * The compiled chunk of rule file `path` and, above it, the lines of its
 * text that name a full-only word: from the cache when it has this very
 * file (as stat sees it), else compiled from the text and kept there.
 * Returns a lua_load status (or LUA_ERRFILE) with one message pushed.
 */
static int compile(struct evl_host *h, const char *path, const char *chunk)
{
    lua_State *L = h->L;
    char why[700];
    struct stat st;
    size_t len;
    int err;
    if (!evl_rule_file_ok(path, h->strict_modes, MAX_SOURCE, &st, why, sizeof why)) {
        lua_pushstring(L, why);
        return LUA_ERRFILE;
    }
    uint64_t key = evl_cache_key(&st, chunk);
    if (evl_cache_get(L, key, chunk))
        return LUA_OK;
    char *src = evl_read_file(path, MAX_SOURCE, &len, &err, NULL);
    if (!src) {
        lua_pushfstring(L, "%s: %s", path, strerror(err));
        return LUA_ERRFILE;
    }
    int rc = luaL_loadbufferx(L, src, len, chunk, "t");
    if (rc == LUA_OK)
        evl_handover_scan(L, src, len);
    free(src);
    if (rc == LUA_OK)
        evl_cache_put(L, key);
    return rc;
}

/* Drop what a file registered before it failed (handlers past `before`): a file loads whole or not at all. */
static void unregister(struct evl_host *h, lua_Integer before)
{
    lua_State *L = h->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->handlers_ref);
    for (lua_Integer i = (lua_Integer)lua_rawlen(L, -1); i > before; i--) {
        lua_pushnil(L);
        lua_rawseti(L, -2, i);
    }
    lua_pop(L, 1);
}

/* Load one file: entry table at `entry`. Returns 1 if loaded, 0 if not (message pushed). */
static int load_one(struct evl_host *h, int entry, const char *path)
{
    lua_State *L = h->L;
    const char *chunk = lua_pushfstring(L, "@%s", path);
    int rc = compile(h, path, chunk);
    lua_remove(L, -2 - (rc == LUA_OK)); /* the chunk name */
    if (rc != LUA_OK) {
        if (strncmp(lua_tostring(L, -1), path, strlen(path)) != 0) {
            lua_pushfstring(L, "%s: %s", path, lua_tostring(L, -1));
            lua_remove(L, -2);
        }
        return 0;
    }
    if (lua_rawlen(L, -1) > 0)
        lua_setfield(L, entry, "full_lines"); /* handover.c decides per handler */
    else
        lua_pop(L, 1);
    /* its own environment: on() bound to this file, the rest from the base */
    lua_createtable(L, 0, 2);
    lua_pushvalue(L, entry);
    lua_pushlightuserdata(L, h);
    lua_pushcclosure(L, l_on, 2);
    lua_setfield(L, -2, "on");
    lua_getfield(L, LUA_REGISTRYINDEX, "eventilator.base_mt");
    lua_setmetatable(L, -2);
    lua_setupvalue(L, -2, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->handlers_ref);
    lua_Integer before = (lua_Integer)lua_rawlen(L, -1);
    lua_pop(L, 1);
    evl_log_emergency_context(path); /* the watchdog's line names the file */
    rc = evl_call(h, 0, 0, h->call.deadline);
    evl_log_emergency_context(NULL);
    if (rc == LUA_OK)
        return 1;
    if (rc == EVL_CALL_FULL) {
        lua_pop(L, 1);
        evl_handover(h, path, NULL);
        lua_pushfstring(L, "%s: needs the full runtime, which could not start", path);
    } else {
        evl_error_text(h, -1); /* pushed: it replaces the error value */
        lua_remove(L, -2);
    }
    unregister(h, before);
    return 0;
}

/* The folder itself failed (missing, refused): one failed entry for it, so `check` fails too. */
static void folder_failed(struct evl_host *h, int files, const char *dir, const char *why)
{
    lua_State *L = h->L;
    h->files_failed++;
    evl_log(EVL_ERROR, "rules folder %s: %s; no rules loaded", dir, why);
    lua_createtable(L, 0, 4);
    lua_pushstring(L, dir);
    lua_setfield(L, -2, "path");
    lua_newtable(L);
    lua_setfield(L, -2, "patterns");
    lua_pushfstring(L, "rules folder %s: %s", dir, why);
    lua_setfield(L, -2, "err");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "ok");
    lua_rawseti(L, files, 1);
}

/* File entry i of the list at `files`: path, patterns, ok, and err when it failed. */
static void load_file(struct evl_host *h, int files, lua_Integer i, const char *dir, const char *name)
{
    lua_State *L = h->L;
    const char *path = lua_pushfstring(L, "%s/%s", dir, name); /* below the entry */
    lua_createtable(L, 0, 5);
    int entry = lua_gettop(L);
    lua_pushvalue(L, entry - 1);
    lua_setfield(L, entry, "path");
    lua_newtable(L);
    lua_setfield(L, entry, "patterns");
    int ok = load_one(h, entry, path);
    if (!ok) {
        h->files_failed++;
        evl_log(EVL_ERROR, "rule file skipped: %s", lua_tostring(L, -1));
        lua_setfield(L, entry, "err");
    }
    lua_pushboolean(L, ok);
    lua_setfield(L, entry, "ok");
    lua_rawseti(L, files, i);
    lua_pop(L, 1); /* path */
}

int evl_rules_load(struct evl_host *h)
{
    lua_State *L = h->L;
    const char *dir = getenv("EVENTILATOR_RULES");
    char why[900];
    size_t n;
    if (!dir || !*dir)
        dir = evl_config_string(h, NULL, "rules_dir");
    lua_newtable(L);
    h->handlers_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    h->files_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    int files = lua_gettop(L);
    char **names = evl_rule_files(dir, h->strict_modes, &n, why, sizeof why);
    if (!names) {
        folder_failed(h, files, dir, why);
        lua_pop(L, 1);
        return 0;
    }
    /* no usable <state_dir>/rules-cache: every file is compiled from its text. The
     * path as a Lua string: a 4 KB buffer here was a page of stack to fault in. */
    const char *cache = lua_pushfstring(L, "%s/rules-cache", h->state.dir ? h->state.dir : "");
    evl_cache_open(h->state.ok && evl_private_dir(cache, why, sizeof why) ? cache : NULL, dir);
    lua_pop(L, 1);
    for (size_t i = 0; i < n; i++) {
        load_file(h, files, (lua_Integer)i + 1, dir, names[i]);
        free(names[i]);
    }
    evl_cache_close(1);
    free(names);
    lua_pop(L, 1);
    return 0;
}

int evl_rules_match(struct evl_host *h, const char *name)
{
    lua_State *L = h->L;
    if (!h->handlers_ref)
        evl_rules_load(h);
    lua_newtable(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->handlers_ref);
    lua_Integer n = (lua_Integer)lua_rawlen(L, -1), k = 0;
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, i);
        lua_getfield(L, -1, EVL_ENTRY_PATTERNS);
        lua_Integer np = (lua_Integer)lua_rawlen(L, -1);
        int hit = 0;
        for (lua_Integer j = 1; j <= np && !hit; j++) {
            lua_rawgeti(L, -1, j);
            hit = evl_glob(lua_tostring(L, -1), name); /* the glob `check` judges patterns by */
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
        if (hit)
            lua_rawseti(L, -3, ++k);
        else
            lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return 1;
}
