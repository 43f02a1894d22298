/*
 * config.c: the loader (contract sections 3 and 4, docs/config.md). A call
 * named <name> reads EVL_CONFDIR/eventilator.conf, the base of every mode,
 * then EVL_CONFDIR/<name>.conf over it key by key, so a setting written
 * once (the store) reaches both modes; with $EVENTILATOR_CONF set, that one
 * file. A missing file is no settings. Each file is a Lua chunk run in an
 * empty environment, the globals it assigns being its settings, or a file
 * in the Go eventilator's TOML format, recognised here and translated by
 * the shipped module eventilator.legacy (only then is that Lua compiled).
 * The schema (schema.c) checks and merges each file's settings.
 *
 * Nothing here stops a call that a later run could make work (contract
 * section 2): a file that cannot be used at all (unreadable, a syntax or
 * runtime error, refused by the trust rule) fails the call with exit 1, so
 * Sentinel retries it for hours while the operator fixes the file, and a
 * wrong setting fails only what reads it (schema.c). The one loader of
 * every caller: script calls, `check`, `test`, `config`, `sentinels
 * doctor` (through cli.c) and the watcher.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "config.h"
#include "log.h"
#include "paths.h"
#include "schema.h"
#include "statedir.h"
#include "trust.h"

/* The env's __newindex: record the value and the line that assigned it. */
static int env_newindex(lua_State *L)
{
    lua_Debug ar;
    int line = 0;
    if (lua_getstack(L, 1, &ar) && lua_getinfo(L, "l", &ar))
        line = ar.currentline;
    lua_getmetatable(L, 1);
    lua_getfield(L, -1, "values");
    lua_pushvalue(L, 2);
    lua_pushvalue(L, 3);
    lua_rawset(L, -3);
    lua_getfield(L, -2, "lines");
    lua_pushvalue(L, 2);
    lua_pushinteger(L, line);
    lua_rawset(L, -3);
    return 0;
}

static int env_index(lua_State *L)
{
    lua_getmetatable(L, 1);
    lua_getfield(L, -1, "values");
    lua_pushvalue(L, 2);
    lua_rawget(L, -2);
    return 1;
}

/*
 * The one legacy detector. The Go eventilator's TOML has a top-level key
 * (`RedisPort = 6380`, which is also valid Lua, so a key line alone decides)
 * or a `[Section]` header line: the name, optional spaces and an optional
 * `# comment`, nothing else. A Lua table line such as `  [name] = "x",` is
 * not a header, and since no header line can appear in a chunk that compiles
 * as Lua, a text that compiles is Lua whatever its lines look like.
 */
static int toml_ident(int c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '-' || c == '.';
}

static int header_line(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p++ != '[')
        return 0;
    while (*p == ' ' || *p == '\t')
        p++;
    if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || *p == '_'))
        return 0;
    while (toml_ident((unsigned char)*p))
        p++;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p++ != ']')
        return 0;
    while (*p == ' ' || *p == '\t' || *p == '\r')
        p++;
    return *p == '\n' || *p == '\0' || *p == '#';
}

static int looks_legacy(lua_State *L, const char *s, size_t len)
{
    static const char *const keys[] = {"RedisAddress", "RedisPort", "RedisAuth", "RedisEnabled"};
    int header = 0;
    for (const char *line = s; line && *line; line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
        const char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        for (int i = 0; i < 4; i++) {
            size_t n = strlen(keys[i]);
            if (strncmp(p, keys[i], n) == 0) {
                const char *q = p + n;
                while (*q == ' ' || *q == '\t')
                    q++;
                if (*q == '=' && q[1] != '=')
                    return 1;
            }
        }
        header = header || header_line(line);
    }
    if (!header)
        return 0;
    int lua = luaL_loadbufferx(L, s, len, "=config", "t") == LUA_OK;
    lua_pop(L, 1);
    return !lua;
}

/* The files a call named `name` reads, base first, into want; their count. */
static int which_files(const char *name, struct evl_config_files *f, const char *want[2])
{
    const char *env = getenv("EVENTILATOR_CONF");
    if (env && *env) {
        want[0] = f->own = env;
        return 1;
    }
    snprintf(f->buf[1], sizeof f->buf[1], "%s/%s.conf", EVL_CONFDIR, name);
    want[0] = f->own = f->buf[1];
    if (strcmp(name, "eventilator") == 0)
        return 1;
    snprintf(f->buf[0], sizeof f->buf[0], "%s/eventilator.conf", EVL_CONFDIR);
    want[0] = f->buf[0];
    want[1] = f->buf[1];
    return 2;
}

/* The Go eventilator's TOML (the text on top): replaced by values and a nil for lines. */
static int read_legacy(struct evl_host *h, const char *path)
{
    lua_State *L = h->L;
    lua_getglobal(L, "require");
    lua_pushliteral(L, "eventilator.legacy");
    if (evl_call(h, 1, 1, h->call.deadline) != LUA_OK) {
        lua_pushfstring(L, "%s: %s", path, evl_error_text(h, -1));
        return EVL_CONFIG_BROKEN;
    }
    lua_getfield(L, -1, "parse");
    lua_pushvalue(L, -3);
    lua_pushstring(L, path);
    if (evl_call(h, 2, 2, h->call.deadline) != LUA_OK) {
        lua_pushfstring(L, "%s: %s", path, evl_error_text(h, -1));
        return EVL_CONFIG_BROKEN;
    }
    if (lua_type(L, -2) != LUA_TTABLE) {
        lua_pushstring(L, lua_tostring(L, -1) ? lua_tostring(L, -1) : "?"); /* "file:line: ..." */
        return EVL_CONFIG_BROKEN;
    }
    /* text, module, values, nil -> values, nil */
    lua_pop(L, 1);
    lua_replace(L, -3);
    lua_pushnil(L);
    lua_replace(L, -2);
    return 0;
}

/* A Lua config (the text on top): replaced by the globals it assigned and the line of each. */
static int read_lua(struct evl_host *h, const char *path)
{
    lua_State *L = h->L;
    int text = lua_gettop(L);
    lua_newtable(L); /* values */
    lua_newtable(L); /* lines */
    size_t len;
    const char *s = lua_tolstring(L, text, &len);
    /* the chunk name as a Lua string: a 4 KB buffer here was a page of stack to fault in */
    const char *chunk = lua_pushfstring(L, "@%s", path);
    int rc = luaL_loadbufferx(L, s, len, chunk, "t");
    lua_remove(L, -2);
    if (rc != LUA_OK)
        return EVL_CONFIG_BROKEN; /* "file:line: ... near ..." */
    /* env: an empty table whose writes land in `values` with their line */
    lua_newtable(L);
    lua_createtable(L, 0, 4);
    lua_pushvalue(L, text + 1);
    lua_setfield(L, -2, "values");
    lua_pushvalue(L, text + 2);
    lua_setfield(L, -2, "lines");
    lua_pushcfunction(L, env_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushcfunction(L, env_index);
    lua_setfield(L, -2, "__index");
    lua_setmetatable(L, -2);
    lua_setupvalue(L, -2, 1);
    if (evl_call(h, 0, 0, h->call.deadline) != LUA_OK) {
        lua_pushfstring(L, "%s (the config runs in an empty environment: no os, io or require)",
                        evl_error_text(h, -1));
        return EVL_CONFIG_BROKEN;
    }
    lua_remove(L, text);
    return 0;
}

/*
 * One file: pushes its values and lines (nil for TOML) and returns 1, or 0
 * when it does not exist (nothing pushed), or a negative with the message
 * pushed: it cannot be read, it is refused by the trust rule (trust.c),
 * or it does not parse or run.
 */
static int read_globals(struct evl_host *h, const char *path, const char **format)
{
    lua_State *L = h->L;
    size_t len = 0;
    int err;
    struct stat st;
    char why[600];
    char *text = evl_read_file(path, 16u << 20, &len, &err, &st);
    if (!text && err == ENOENT)
        return 0;
    if (!text) {
        lua_pushfstring(L, "%s: %s", path, strerror(err));
        if (err == EACCES)
            lua_pushfstring(L, "; fix: let uid %d, which runs this call, read it (e.g. chgrp %d %s && "
                            "chmod g+r %s)", (int)evl_euid(), (int)getegid(), path, path);
        else
            lua_pushstring(L, err == EISDIR ? "; fix: make it a file" : "");
        lua_concat(L, 2);
        return EVL_CONFIG_BROKEN;
    }
    if (!evl_trusted(&st, path, why, sizeof why)) {
        free(text);
        lua_pushfstring(L, "%s refused: %s", path, why);
        return EVL_CONFIG_REFUSED;
    }
    int legacy = looks_legacy(L, text, len);
    lua_pushlstring(L, text, len); /* from here the text is Lua's */
    free(text);
    *format = legacy ? "legacy TOML" : "lua";
    int rc = legacy ? read_legacy(h, path) : read_lua(h, path);
    if (rc < 0)
        return rc;
    return 1;
}

/* The problems of file `file` (after `before`) get their place: file, then line. */
static void number_problems(lua_State *L, int problems, lua_Integer before, int file)
{
    for (lua_Integer i = before + 1; lua_rawgeti(L, problems, i) == LUA_TTABLE; i++) {
        lua_getfield(L, -1, "line");
        lua_pushinteger(L, (lua_Integer)file << 32 | lua_tointeger(L, -1));
        lua_setfield(L, -3, "order");
        lua_pop(L, 2);
    }
    lua_pop(L, 1);
}

static lua_Integer order_of(lua_State *L, int list, lua_Integer i)
{
    lua_rawgeti(L, list, i);
    lua_getfield(L, -1, "order");
    lua_Integer o = lua_tointeger(L, -1);
    lua_pop(L, 2);
    return o;
}

/* The file's order, not the hash order the globals were walked in: an insertion sort (a few). */
static void sort_problems(lua_State *L, int list)
{
    lua_Integer n = (lua_Integer)lua_rawlen(L, list);
    for (lua_Integer i = 2; i <= n; i++) {
        lua_Integer o = order_of(L, list, i), j = i - 1;
        lua_rawgeti(L, list, i);
        for (; j >= 1 && order_of(L, list, j) > o; j--) {
            lua_rawgeti(L, list, j);
            lua_rawseti(L, list, j + 1);
        }
        lua_rawseti(L, list, j + 1);
    }
}

int evl_config_build(struct evl_host *h, const char *name, struct evl_config_files *f)
{
    lua_State *L = h->L;
    const char *want[2];
    int n = which_files(name, f, want);
    f->n = 0;
    lua_newtable(L);
    int problems = lua_gettop(L);
    evl_schema_new(L);
    int cfg = problems + 1;
    for (int i = 0; i < n; i++) {
        const char *format = NULL;
        int rc = read_globals(h, want[i], &format);
        if (rc < 0) {
            lua_replace(L, problems);
            lua_settop(L, problems);
            return rc;
        }
        if (rc == 0)
            continue;
        f->path[f->n] = want[i];
        f->format[f->n++] = format;
        lua_Integer before = (lua_Integer)lua_rawlen(L, problems);
        evl_schema_apply(L, cfg, cfg + 1, lua_isnil(L, cfg + 2) ? 0 : cfg + 2, want[i], problems);
        lua_settop(L, cfg);
        number_problems(L, problems, before, i);
    }
    sort_problems(L, problems);
    evl_schema_break(L, cfg, problems);
    return 0;
}

/* How many problems of the list at idx stop something: settings and sections (not names). */
static int count_errors(lua_State *L, int idx, int *settings)
{
    int errors = 0;
    *settings = 0;
    for (lua_Integer i = 1; lua_rawgeti(L, idx, i) == LUA_TTABLE; i++) {
        lua_getfield(L, -1, "kind");
        const char *kind = lua_tostring(L, -1);
        errors += strcmp(kind, "name") != 0;
        *settings += strcmp(kind, "setting") == 0;
        lua_pop(L, 2);
    }
    lua_pop(L, 1);
    return errors;
}

/* Log each problem of the list at idx, with what it costs until it is fixed. */
static void log_problems(lua_State *L, int idx)
{
    for (lua_Integer i = 1; lua_rawgeti(L, idx, i) == LUA_TTABLE; i++) {
        lua_getfield(L, -1, "kind");
        lua_getfield(L, -2, "name");
        lua_getfield(L, -3, "msg");
        const char *kind = lua_tostring(L, -3), *name = lua_tostring(L, -2), *msg = lua_tostring(L, -1);
        if (strcmp(kind, "section") == 0)
            evl_log(EVL_ERROR, "config %s; the handlers that read config.%s fail until it is fixed", msg,
                    name);
        else if (strcmp(kind, "setting") == 0)
            evl_log(EVL_ERROR, "config %s; %s is left at its default (or the base file's value), and "
                    "calls exit 1 (Sentinel retries them) until it is fixed", msg, name);
        else
            evl_log(EVL_WARN, "config %s", msg);
        lua_pop(L, 4);
    }
    lua_pop(L, 1);
}

/*
 * Load the config of a call named `name` into the registry (h->config_ref).
 * Returns 0, or after logging the reason EVL_CONFIG_BROKEN or
 * EVL_CONFIG_REFUSED (both exit 1). With h->config_partial_ok a wrong
 * setting is not a failure: its problems wait in h->problems_ref for the
 * log (evl_config_open_log) and h->config_failed counts the top-level
 * ones; without (the watcher's sets) it is one.
 */
int evl_config_load_as(struct evl_host *h, const char *name)
{
    static struct evl_config_files files;
    lua_State *L = h->L;
    int base = lua_gettop(L), settings;
    int rc = evl_config_build(h, name, &files);
    h->config_files = &files;
    h->config_path = files.n ? files.path[files.n - 1] : files.own;
    h->config_format = files.n ? files.format[files.n - 1] : "built-in defaults (no file)";
    if (rc < 0) {
        evl_log(EVL_ERROR, "config %s; exit 1: Sentinel retries the call, and the first retry after "
                "the fix runs it (`eventilator check` shows every error)", lua_tostring(L, -1));
        lua_settop(L, base);
        return rc;
    }
    int errors = count_errors(L, base + 1, &settings);
    if (errors && !h->config_partial_ok) {
        log_problems(L, base + 1);
        lua_settop(L, base);
        return EVL_CONFIG_BROKEN;
    }
    h->config_failed = settings;
    if (h->problems_ref > 0)
        luaL_unref(L, LUA_REGISTRYINDEX, h->problems_ref);
    h->problems_ref = 0;
    if (lua_rawlen(L, base + 1) > 0) {
        lua_pushvalue(L, base + 1);
        h->problems_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    lua_getfield(L, -1, "budget");
    h->budget = lua_tonumber(L, -1);
    lua_getfield(L, -2, "memory_limit");
    if (h->mem.limit != SIZE_MAX) /* a long-running subcommand has no cap (cli/cli.c) */
        h->mem.limit = (size_t)lua_tointeger(L, -1) << 20;
    lua_getfield(L, -3, "strict_modes");
    h->strict_modes = lua_toboolean(L, -1);
    lua_pop(L, 3);
    h->call.deadline = h->call.t0 + h->budget;
#ifndef EVL_LEAN
    /*
     * Lazy sections pay off in the start-up binary only. The full runtime
     * (json, http, watch, subcommands) has cjson, which walks a table with
     * lua_next and so would not see a section nobody has read yet; a call
     * there costs ~3x /bin/true already, and this is ~0.1 ms of it.
     */
    evl_config_materialize(L, -1);
#endif
    h->config_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_settop(L, base);
    evl_state_dir_open(&h->state, evl_config_string(h, NULL, "state_dir"));
    return 0;
}

void evl_config_push_problems(struct evl_host *h)
{
    lua_State *L = h->L;
    if (h->problems_ref > 0) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, h->problems_ref);
        luaL_unref(L, LUA_REGISTRYINDEX, h->problems_ref);
        h->problems_ref = 0;
    } else {
        lua_newtable(L);
    }
}

/* cfg.section (a broken one: its checked settings) or cfg itself, pushed; 0 if not a table. */
static int push_section(struct evl_host *h, const char *section)
{
    lua_State *L = h->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->config_ref);
    if (!section)
        return 1;
    lua_getfield(L, -1, section);
    evl_schema_unbreak(L);
    return lua_type(L, -1) == LUA_TTABLE;
}

/* A string from the loaded config, or NULL. Valid while the config lives. */
const char *evl_config_string(struct evl_host *h, const char *section, const char *key)
{
    lua_State *L = h->L;
    const char *s = NULL;
    int top = lua_gettop(L);
    if (push_section(h, section) && lua_getfield(L, -1, key) == LUA_TSTRING)
        s = lua_tostring(L, -1); /* anchored in the config table */
    lua_settop(L, top);
    return s;
}

/* A number from the loaded config, or def. */
double evl_config_number(struct evl_host *h, const char *section, const char *key, double def)
{
    lua_State *L = h->L;
    double v = def;
    int top = lua_gettop(L);
    if (push_section(h, section) && lua_getfield(L, -1, key) == LUA_TNUMBER)
        v = lua_tonumber(L, -1);
    lua_settop(L, top);
    return v;
}

/* Point the log at config.log (or $EVENTILATOR_LOG, which wins), then tell the config's problems. */
void evl_config_open_log(struct evl_host *h)
{
    const char *env = getenv("EVENTILATOR_LOG");
    const char *target = env && *env ? env : evl_config_string(h, "log", "target");
    const char *level = evl_config_string(h, "log", "level");
    evl_log_also_stderr(0);
    /* a file that will not open: log.c says so, once, in the fallback file */
    evl_log_open(target, level);
    if (h->problems_ref > 0) {
        evl_config_push_problems(h);
        log_problems(h->L, lua_gettop(h->L));
        lua_pop(h->L, 1);
    }
}
