/*
 * rules.c: the rules engine. Every *.lua file of the rules folder, in byte
 * order of name, runs as text in its own environment and registers handlers
 * with on(pattern, handler). A file that fails to load is logged with its
 * file:line and skipped as a whole; the others run. Handlers run in
 * registration order, each in lua_pcall with a traceback, each with its share
 * of the time budget (evl_call). The folder and every file must pass the
 * trust rule (readfile.c) unless strict_modes is off; a missing or refused
 * folder is a failure of the call, not an empty set of rules.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <lauxlib.h>
#include <lua.h>

#include "cache.h"
#include "deadline.h"
#include "host.h"
#include "log.h"
#include "retry.h"

static int cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int ends_with_lua(const char *n)
{
    size_t l = strlen(n);
    return l > 4 && strcmp(n + l - 4, ".lua") == 0 && n[0] != '.';
}

/* on(pattern, handler): upvalue 1 = the file entry, 2 = host. */
static int l_on(lua_State *L)
{
    struct evl_host *h = lua_touserdata(L, lua_upvalueindex(2));
    lua_Debug ar;
    int line = 0;
    if (lua_type(L, 1) == LUA_TTABLE) {
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
    evl_warn_patterns(L, 1, lua_upvalueindex(1), line); /* a pattern no event can match */
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->handlers_ref);
    lua_createtable(L, 0, 6);
    lua_pushvalue(L, 2);
    lua_setfield(L, -2, "fn");
    lua_pushvalue(L, 1);
    lua_setfield(L, -2, "patterns");
    lua_getfield(L, lua_upvalueindex(1), "path");
    lua_setfield(L, -2, "file");
    lua_getfield(L, lua_upvalueindex(1), "full_lines");
    lua_setfield(L, -2, "full_lines");
    lua_pushinteger(L, line);
    lua_setfield(L, -2, "line");
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

/* Load one file: entry table at `entry`. Returns 1 if loaded, 0 if not (message pushed). */
static int load_one(struct evl_host *h, int entry, const char *path)
{
    lua_State *L = h->L;
    lua_pushfstring(L, "@%s", path);
    int rc = evl_load_rule_chunk(h, path, lua_tostring(L, -1));
    lua_remove(L, -2 - (rc == LUA_OK));
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
    rc = evl_call(h, 0, 0, h->deadline);
    evl_log_emergency_context(NULL);
    if (rc == LUA_OK)
        return 1;
    if (evl_is_handover_marker(L, -1)) {
        lua_pop(L, 1);
        evl_handover(h, path, "");
        lua_pushfstring(L, "%s: needs the full runtime, which could not start", path);
    } else {
        evl_error_text(h, -1); /* pushed: it replaces the error value */
        lua_remove(L, -2);
    }
    /* drop what the file registered before it failed: a file loads whole or not at all */
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->handlers_ref);
    for (lua_Integer i = (lua_Integer)lua_rawlen(L, -1); i > before; i--) {
        lua_pushnil(L);
        lua_rawseti(L, -2, i);
    }
    lua_pop(L, 1);
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

int evl_rules_load(struct evl_host *h)
{
    lua_State *L = h->L;
    const char *dir = getenv("EVENTILATOR_RULES");
    if (!dir || !*dir)
        dir = evl_config_string(h, NULL, "rules_dir");
    lua_newtable(L);
    h->handlers_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    h->files_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    int files = lua_gettop(L);
    DIR *d = opendir(dir);
    struct stat st;
    char why[600];
    if (!d || fstat(dirfd(d), &st) < 0) {
        folder_failed(h, files, dir, strerror(errno));
        if (d)
            closedir(d);
        lua_pop(L, 1);
        return 0;
    }
    if (h->strict_modes && !evl_trusted(&st, dir, why, sizeof why)) {
        lua_pushfstring(L, "refused: %s", why);
        folder_failed(h, files, dir, lua_tostring(L, -1));
        closedir(d);
        lua_pop(L, 2);
        return 0;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!ends_with_lua(de->d_name))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            char **nn = realloc(names, cap * sizeof *names);
            if (!nn)
                break;
            names = nn;
        }
        names[n] = strdup(de->d_name);
        if (names[n])
            n++;
    }
    closedir(d);
    if (n > 1)
        qsort(names, n, sizeof *names, cmp);
    evl_cache_begin(h, dir);
    for (size_t i = 0; i < n; i++) {
        const char *path = lua_pushfstring(L, "%s/%s", dir, names[i]); /* below the entry */
        free(names[i]);
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
        lua_rawseti(L, files, (lua_Integer)i + 1);
        lua_pop(L, 1); /* path */
    }
    evl_cache_end(h);
    free(names);
    lua_pop(L, 1);
    return 0;
}

/* Push the list of handlers whose patterns match `name`. */
int evl_rules_match(struct evl_host *h, const char *name)
{
    lua_State *L = h->L;
    lua_newtable(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->handlers_ref);
    lua_Integer n = (lua_Integer)lua_rawlen(L, -1), k = 0;
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, i);
        lua_getfield(L, -1, "patterns");
        lua_Integer np = (lua_Integer)lua_rawlen(L, -1);
        int hit = 0;
        for (lua_Integer j = 1; j <= np && !hit; j++) {
            lua_rawgeti(L, -1, j);
            hit = evl_glob(lua_tostring(L, -1), name); /* the glob `check` judges patterns by */
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
        if (hit) {
            lua_pushinteger(L, i);
            lua_setfield(L, -2, "n");
            lua_rawseti(L, -3, ++k);
        } else {
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    return 1;
}

/* "file:line" of a handler entry at idx, pushed. */
static const char *where(lua_State *L, int idx)
{
    lua_getfield(L, idx, "file");
    lua_getfield(L, idx, "line");
    lua_pushfstring(L, "%s:%d", lua_tostring(L, -2), (int)lua_tointeger(L, -1));
    lua_replace(L, -3);
    lua_pop(L, 1);
    return lua_tostring(L, -1);
}

static int in_list(const char *list, const char *id)
{
    size_t n = strlen(id);
    for (const char *p = list; p && *p;) {
        const char *e = strchr(p, '\n');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == n && memcmp(p, id, n) == 0)
            return 1;
        p = e ? e + 1 : NULL;
    }
    return 0;
}

/* The ids of handlers 1..upto that succeeded (plus earlier ones), one a line. */
static void push_done(lua_State *L, int matched, lua_Integer upto, const char *before)
{
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    if (before && *before) {
        luaL_addstring(&b, before);
        luaL_addchar(&b, '\n');
    }
    for (lua_Integer i = 1; i <= upto; i++) {
        lua_rawgeti(L, matched, i);
        lua_getfield(L, -1, "ok");
        int ok = lua_toboolean(L, -1);
        lua_pop(L, 1);
        if (ok) {
            where(L, lua_gettop(L));
            lua_remove(L, -2);
            luaL_addvalue(&b);
            luaL_addchar(&b, '\n');
        } else {
            lua_pop(L, 1);
        }
    }
    luaL_pushresult(&b);
}

/*
 * Run the matched handlers on ev. Each gets an equal share of what is left
 * of the budget, so one stuck handler cannot starve the ones after it.
 * Results land in each entry (ok, err, ms). Returns how many ran.
 */
int evl_rules_run(struct evl_host *h, int matched, int ev, int *failed, int *ran)
{
    lua_State *L = h->L;
    lua_Integer n = (lua_Integer)lua_rawlen(L, matched);
    *failed = *ran = 0;
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, matched, i);
        int entry = lua_gettop(L);
        const char *id = where(L, entry);
        if (h->done && in_list(h->done, id)) {
            lua_pushboolean(L, 1);
            lua_setfield(L, entry, "ok");
            lua_pushboolean(L, 1);
            lua_setfield(L, entry, "skipped");
            lua_pop(L, 2);
            continue;
        }
        double now = evl_monotonic();
        double share = (h->deadline - now) / (double)(n - i + 1);
        lua_getfield(L, entry, "fn");
        lua_pushvalue(L, ev);
        evl_log_emergency_context(id); /* the watchdog's line names the handler */
        int rc = evl_call(h, 1, 2, now + share);
        evl_log_emergency_context(NULL);
        double ms = (evl_monotonic() - now) * 1e3;
        (*ran)++;
        const char *err = NULL;
        if (rc != LUA_OK) {
            if (evl_is_handover_marker(L, -1)) {
                /* a rule reached for json/http after all: hand over, skipping what ran */
                push_done(L, matched, i - 1, h->done);
                evl_handover(h, id, lua_tostring(L, -1));
                err = "needs the full runtime, which could not start";
            } else {
                err = evl_error_text(h, -1);
            }
        } else if (lua_toboolean(L, -2) == 0 && (lua_type(L, -2) == LUA_TBOOLEAN || !lua_isnil(L, -1))) {
            const char *first = lua_type(L, -2) == LUA_TBOOLEAN ? "false" : "nil";
            const char *why = lua_isnil(L, -1) ? "no reason" : evl_error_text(h, -1);
            err = lua_pushfstring(L, "returned %s, %s", first, why);
        }
        lua_pushnumber(L, ms);
        lua_setfield(L, entry, "ms");
        lua_pushboolean(L, err == NULL);
        lua_setfield(L, entry, "ok");
        if (!err)
            evl_retry_ok(id, i == n && *failed == 0 && !h->files_failed && !h->config_failed);
        if (!err && h->on_ok)
            h->on_ok(h, id);
        if (err) {
            (*failed)++;
            lua_pushstring(L, err);
            lua_setfield(L, entry, "err");
            evl_log(EVL_ERROR, "rule %s failed: %s", id, err);
        }
        lua_settop(L, entry - 1);
    }
    return *ran;
}
