/*
 * config.c: /etc/redis/<name>.conf (or $EVENTILATOR_CONF), a Lua chunk run
 * in an empty environment; the globals it assigns are the config. Known
 * sections are checked against the schema below, so a typo such as
 * `slack.webhok_url` or `redis.port = "x"` is an error naming file:line
 * instead of a silently ignored setting. Unknown top-level keys are the
 * user's own sections and reach rules untouched as config.<key>.
 * A file in the Go eventilator's TOML format is recognised and translated by
 * the shipped module eventilator.legacy (only then is that Lua compiled).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "host.h"
#include "log.h"
#include "paths.h"

enum ktype { K_STRING, K_INT, K_NUMBER, K_BOOL, K_LIST, K_TABLE };

static const char *const slack_triggers[] = {"+sdown", "-sdown", "+odown", "-odown",
                                             "+promoted-slave", NULL};
static const char *const sensu_triggers[] = {"+odown", "-odown", "-failover-abort-no-good-slave",
                                             NULL};

/* section NULL = a top-level scalar. A NULL default string = nil. */
static const struct field {
    const char *section, *key;
    enum ktype type;
    const char *str;
    double num;
    const char *const *list;
} schema[] = {
    {"redis", "host", K_STRING, "127.0.0.1", 0, NULL},
    {"redis", "port", K_INT, NULL, 6379, NULL},
    {"redis", "path", K_STRING, NULL, 0, NULL},
    {"redis", "username", K_STRING, NULL, 0, NULL},
    {"redis", "password", K_STRING, NULL, 0, NULL},
    {"redis", "db", K_INT, NULL, 0, NULL},
    {"redis", "timeout", K_NUMBER, NULL, 2, NULL},
    {"metrics", "enabled", K_BOOL, NULL, 1, NULL},
    {"warnings", "enabled", K_BOOL, NULL, 0, NULL},
    {"slack", "enabled", K_BOOL, NULL, 0, NULL},
    {"slack", "webhook_url", K_STRING, NULL, 0, NULL},
    {"slack", "token", K_STRING, NULL, 0, NULL},
    {"slack", "channel", K_STRING, "sentinel-events", 0, NULL},
    {"slack", "username", K_STRING, "eventilator", 0, NULL},
    {"slack", "author_name", K_STRING, "eventilator", 0, NULL},
    {"slack", "trigger_on", K_LIST, NULL, 0, slack_triggers},
    {"slack", "api_url", K_STRING, "https://slack.com/api", 0, NULL},
    {"slack", "timeout", K_NUMBER, NULL, 5, NULL},
    {"sensu", "enabled", K_BOOL, NULL, 0, NULL},
    {"sensu", "host", K_STRING, "127.0.0.1", 0, NULL},
    {"sensu", "port", K_INT, NULL, 3030, NULL},
    {"sensu", "trigger_on", K_LIST, NULL, 0, sensu_triggers},
    {"sensu", "handler_no_good_slave", K_STRING, NULL, 0, NULL},
    {"sensu", "handler_promoted_slave", K_STRING, NULL, 0, NULL},
    {"sensu", "timeout", K_NUMBER, NULL, 5, NULL},
    {"log", "target", K_STRING, "syslog", 0, NULL},
    {"log", "level", K_STRING, "info", 0, NULL},
    {"dedupe", "prefix", K_STRING, "eventilator:dedupe:", 0, NULL},
    {"dedupe", "ttl", K_INT, NULL, 300, NULL},
    /* watch mode and `eventilator sentinels` (contract sections 10, 11) */
    {"watch", "sentinels", K_LIST, NULL, 0, NULL},
    {"watch", "discover", K_BOOL, NULL, 1, NULL},
    {"watch", "username", K_STRING, NULL, 0, NULL},
    {"watch", "password", K_STRING, NULL, 0, NULL},
    {"watch", "masters", K_LIST, NULL, 0, NULL},
    {"watch", "dedupe_window", K_NUMBER, NULL, 5, NULL},
    {"watch", "concurrency", K_INT, NULL, 4, NULL},
    {"watch", "queue", K_INT, NULL, 10000, NULL},
    {"watch", "retries", K_INT, NULL, 10, NULL},
    {"watch", "timeout", K_NUMBER, NULL, 2, NULL},
    {NULL, "rules_dir", K_STRING, EVL_RULES_DIR, 0, NULL},
    {NULL, "state_dir", K_STRING, EVL_STATE_DIR, 0, NULL},
    {NULL, "budget", K_NUMBER, NULL, EVL_DEFAULT_BUDGET, NULL},
};
#define NSCHEMA (sizeof schema / sizeof schema[0])

static const char *type_name(enum ktype t)
{
    static const char *const n[] = {"a string", "an integer", "a number", "a boolean",
                                    "a list of strings", "a table"};
    return n[t];
}

static void push_default(lua_State *L, const struct field *f)
{
    switch (f->type) {
    case K_STRING: f->str ? (void)lua_pushstring(L, f->str) : lua_pushnil(L); break;
    case K_INT: lua_pushinteger(L, (lua_Integer)f->num); break;
    case K_NUMBER: lua_pushnumber(L, f->num); break;
    case K_BOOL: lua_pushboolean(L, f->num != 0); break;
    case K_TABLE: lua_newtable(L); break; /* a map of the user's own keys (labels, headers) */
    case K_LIST:
        if (!f->list) { /* no default list: nil */
            lua_pushnil(L);
            break;
        }
        lua_newtable(L);
        for (int i = 0; f->list[i]; i++) {
            lua_pushstring(L, f->list[i]);
            lua_rawseti(L, -2, i + 1);
        }
        break;
    }
}

static int is_section(const char *name)
{
    for (size_t i = 0; i < NSCHEMA; i++)
        if (schema[i].section && strcmp(schema[i].section, name) == 0)
            return 1;
    return 0;
}

static const struct field *lookup(const char *section, const char *key)
{
    for (size_t i = 0; i < NSCHEMA; i++)
        if (((!section && !schema[i].section) ||
             (section && schema[i].section && strcmp(schema[i].section, section) == 0)) &&
            strcmp(schema[i].key, key) == 0)
            return &schema[i];
    return NULL;
}

/* Does the value at idx fit the field's type? */
static int fits(lua_State *L, int idx, enum ktype t)
{
    switch (t) {
    case K_STRING: return lua_type(L, idx) == LUA_TSTRING;
    case K_INT: return lua_isinteger(L, idx) ||
                       (lua_type(L, idx) == LUA_TNUMBER &&
                        lua_tonumber(L, idx) == (lua_Number)(lua_Integer)lua_tonumber(L, idx));
    case K_NUMBER: return lua_type(L, idx) == LUA_TNUMBER;
    case K_BOOL: return lua_type(L, idx) == LUA_TBOOLEAN;
    case K_LIST: {
        if (lua_type(L, idx) != LUA_TTABLE)
            return 0;
        lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
        for (lua_Integer i = 1; i <= n; i++) {
            int ok = lua_rawgeti(L, idx, i) == LUA_TSTRING;
            lua_pop(L, 1);
            if (!ok)
                return 0;
        }
        return 1;
    }
    case K_TABLE: return lua_type(L, idx) == LUA_TTABLE;
    }
    return 0;
}

static void known_keys(const char *section, char *out, size_t cap)
{
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < NSCHEMA; i++)
        if (schema[i].section && strcmp(schema[i].section, section) == 0) {
            int n = snprintf(out + o, cap - o, "%s%s", o ? ", " : "", schema[i].key);
            if (n < 0 || (size_t)n >= cap - o)
                break;
            o += (size_t)n;
        }
}

/* Warnings found while loading, logged once the log goes where the config says. */
#define MAX_WARNINGS 8
static char warnings[MAX_WARNINGS][1024];
static int nwarnings;

/* Edit distance, capped: enough to spot `slak` for `slack`. */
static int distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    int row[33];
    if (la > 32 || lb > 32)
        return 99;
    for (size_t j = 0; j <= lb; j++)
        row[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        int prev = row[0], cur;
        row[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int ca = a[i - 1] | 32, cb = b[j - 1] | 32; /* case-blind */
            cur = row[j];
            int best = prev + (ca != cb);
            if (row[j] + 1 < best)
                best = row[j] + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            prev = cur;
        }
    }
    return row[lb];
}

/* A user's own section that looks like a typo of ours is worth a warning. */
static const char *near_miss(const char *key)
{
    for (size_t i = 0; i < NSCHEMA; i++) {
        const char *known = schema[i].section ? schema[i].section : schema[i].key;
        if (distance(key, known) <= (strlen(known) > 4 ? 2 : 1))
            return known;
    }
    return NULL;
}

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
 * Check the user's globals (table at `values`, lines at `lines`, either may
 * lack lines) and build the merged config on top of the stack. On error
 * returns -1 with the message on top of the stack.
 */
static int merge(lua_State *L, const char *path, int values, int lines)
{
    lua_createtable(L, 0, 16);
    int cfg = lua_gettop(L);
    /* defaults first */
    for (size_t i = 0; i < NSCHEMA; i++) {
        const struct field *f = &schema[i];
        if (!f->section) {
            push_default(L, f);
            lua_setfield(L, cfg, f->key);
            continue;
        }
        if (lua_getfield(L, cfg, f->section) != LUA_TTABLE) {
            int n = 0; /* presized: growing a table rehashes it every time */
            for (size_t k = i; k < NSCHEMA && schema[k].section &&
                               strcmp(schema[k].section, f->section) == 0; k++)
                n++; /* a section's fields are adjacent in the schema */
            lua_pop(L, 1);
            lua_createtable(L, 0, n);
            lua_pushvalue(L, -1);
            lua_setfield(L, cfg, f->section);
        }
        push_default(L, f);
        lua_setfield(L, -2, f->key);
        lua_pop(L, 1);
    }
    /* then what the file set */
    lua_pushnil(L);
    while (lua_next(L, values)) {
        int line = 0;
        if (lua_type(L, -2) != LUA_TSTRING) {
            lua_pop(L, 1);
            continue;
        }
        const char *key = lua_tostring(L, -2);
        if (lines) {
            lua_pushvalue(L, -2);
            lua_rawget(L, lines);
            line = (int)lua_tointeger(L, -1);
            lua_pop(L, 1);
        }
        char where[600];
        if (line)
            snprintf(where, sizeof where, "%s:%d", path, line);
        else
            snprintf(where, sizeof where, "%s", path);
        const struct field *top = lookup(NULL, key);
        if (top) {
            if (!fits(L, -1, top->type)) {
                lua_pushfstring(L, "%s: %s: expected %s, got %s", where, key, type_name(top->type),
                                luaL_typename(L, -1));
                return -1;
            }
            lua_pushvalue(L, -1);
            lua_setfield(L, cfg, key);
        } else if (is_section(key)) {
            if (lua_type(L, -1) != LUA_TTABLE) {
                lua_pushfstring(L, "%s: %s: expected a table, got %s", where, key,
                                luaL_typename(L, -1));
                return -1;
            }
            int sect = lua_gettop(L);
            lua_getfield(L, cfg, key);
            int dst = lua_gettop(L);
            lua_pushnil(L);
            while (lua_next(L, sect)) {
                const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
                const struct field *f = k ? lookup(key, k) : NULL;
                if (!f) {
                    char known[400];
                    known_keys(key, known, sizeof known);
                    lua_pushfstring(L, "%s: %s.%s: unknown key (known keys: %s)", where, key,
                                    k ? k : luaL_typename(L, -2), known);
                    return -1;
                }
                if (!fits(L, -1, f->type)) {
                    lua_pushfstring(L, "%s: %s.%s: expected %s, got %s", where, key, k,
                                    type_name(f->type), luaL_typename(L, -1));
                    return -1;
                }
                lua_pushvalue(L, -2);
                lua_insert(L, -2);
                lua_rawset(L, dst);
            }
            lua_pop(L, 1);
        } else {
            const char *near = near_miss(key);
            if (near && nwarnings < MAX_WARNINGS)
                snprintf(warnings[nwarnings++], sizeof warnings[0],
                         "config %.600s: '%.64s' is not a setting of eventilator (did you mean "
                         "'%.32s'?); rules see it as config.%.64s", where, key, near, key);
            lua_pushvalue(L, -2);
            lua_pushvalue(L, -2);
            lua_rawset(L, cfg); /* the user's own section */
        }
        lua_pop(L, 1);
    }
    lua_getfield(L, cfg, "budget");
    double b = lua_tonumber(L, -1);
    lua_pop(L, 1);
    if (b <= 0 || b > 3600) {
        lua_pushfstring(L, "%s: budget: expected seconds between 0 and 3600", path);
        return -1;
    }
    return 0;
}

/* The Go eventilator's TOML: a [Section] line or one of its top-level keys. */
static int looks_legacy(const char *s)
{
    static const char *const keys[] = {"RedisAddress", "RedisPort", "RedisAuth", "RedisEnabled"};
    for (const char *line = s; line && *line; line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
        while (*line == ' ' || *line == '\t')
            line++;
        if (*line == '[' && ((line[1] >= 'A' && line[1] <= 'Z') || (line[1] >= 'a' && line[1] <= 'z')))
            return 1;
        for (int i = 0; i < 4; i++) {
            size_t n = strlen(keys[i]);
            if (strncmp(line, keys[i], n) == 0 && (line[n] == '=' || line[n] == ' ' || line[n] == '\t'))
                return 1;
        }
    }
    return 0;
}

/*
 * Load the config into the registry (h->config_ref). Returns 0, or -1 after
 * logging the reason (the caller exits 2).
 */
int evl_config_load(struct evl_host *h)
{
    lua_State *L = h->L;
    static char pathbuf[4096];
    const char *env = getenv("EVENTILATOR_CONF");
    if (env && *env) {
        h->config_path = env;
    } else {
        snprintf(pathbuf, sizeof pathbuf, "%s/%s.conf", EVL_CONFDIR, h->name);
        h->config_path = pathbuf;
    }
    size_t len = 0;
    int err;
    char *text = evl_read_file(h->config_path, 16u << 20, &len, &err);
    lua_newtable(L); /* values */
    int values = lua_gettop(L);
    int lines = 0;
    if (!text) {
        if (err != ENOENT) {
            evl_log(EVL_ERROR, "config %s: %s", h->config_path, strerror(err));
            return -1;
        }
        h->config_format = "built-in defaults (no file)";
    } else if (looks_legacy(text)) {
        h->config_format = "legacy TOML";
        lua_getglobal(L, "require");
        lua_pushliteral(L, "eventilator.legacy");
        if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
            free(text);
            evl_log(EVL_ERROR, "config %s: %s", h->config_path, lua_tostring(L, -1));
            return -1;
        }
        lua_getfield(L, -1, "parse");
        lua_pushlstring(L, text, len);
        lua_pushstring(L, h->config_path);
        free(text);
        if (lua_pcall(L, 2, 2, 0) != LUA_OK || lua_type(L, -2) != LUA_TTABLE) {
            evl_log(EVL_ERROR, "config %s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "?");
            return -1;
        }
        lua_pop(L, 1);
        lua_replace(L, values);
        lua_settop(L, values);
    } else {
        h->config_format = "lua";
        lua_newtable(L); /* lines */
        lines = lua_gettop(L);
        char chunk[4200];
        snprintf(chunk, sizeof chunk, "@%s", h->config_path);
        int rc = luaL_loadbufferx(L, text, len, chunk, "t");
        free(text);
        if (rc != LUA_OK) {
            evl_log(EVL_ERROR, "config %s", lua_tostring(L, -1));
            return -1;
        }
        /* env: an empty table whose writes land in `values` with their line */
        lua_newtable(L);
        lua_createtable(L, 0, 4);
        lua_pushvalue(L, values);
        lua_setfield(L, -2, "values");
        lua_pushvalue(L, lines);
        lua_setfield(L, -2, "lines");
        lua_pushcfunction(L, env_newindex);
        lua_setfield(L, -2, "__newindex");
        lua_pushcfunction(L, env_index);
        lua_setfield(L, -2, "__index");
        lua_setmetatable(L, -2);
        lua_setupvalue(L, -2, 1);
        lua_pushcfunction(L, evl_traceback);
        lua_insert(L, -2);
        evl_budget_set(L, h->deadline);
        rc = lua_pcall(L, 0, 0, -2);
        evl_budget_clear(L);
        if (rc != LUA_OK) {
            evl_log(EVL_ERROR, "config %s", lua_tostring(L, -1));
            return -1;
        }
        lua_pop(L, 1);
    }
    if (merge(L, h->config_path, values, lines) < 0) {
        evl_log(EVL_ERROR, "config %s", lua_tostring(L, -1));
        return -1;
    }
    lua_getfield(L, -1, "budget");
    h->budget = lua_tonumber(L, -1);
    lua_pop(L, 1);
    h->deadline = h->t0 + h->budget;
    h->config_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_settop(L, values - 1);
    return 0;
}

/* A string from the loaded config, or NULL. Valid while the config lives. */
const char *evl_config_string(struct evl_host *h, const char *section, const char *key)
{
    lua_State *L = h->L;
    const char *s = NULL;
    int top = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->config_ref);
    if (section && lua_getfield(L, -1, section) != LUA_TTABLE)
        goto out;
    if (lua_getfield(L, -1, key) == LUA_TSTRING)
        s = lua_tostring(L, -1); /* anchored in the config table */
out:
    lua_settop(L, top);
    return s;
}

/* Point the log at config.log (or $EVENTILATOR_LOG, which wins). */
void evl_config_open_log(struct evl_host *h)
{
    const char *env = getenv("EVENTILATOR_LOG");
    const char *target = env && *env ? env : evl_config_string(h, "log", "target");
    const char *level = evl_config_string(h, "log", "level");
    evl_log_also_stderr(0);
    int opened = evl_log_open(target, level);
    for (int i = 0; i < nwarnings; i++)
        evl_log(EVL_WARN, "%s", warnings[i]);
    nwarnings = 0;
    if (opened < 0)
        evl_log(EVL_ERROR, "log file %s cannot be opened; logging to syslog", target);
    else if (level) {
        enum evl_level lv;
        if (evl_log_level_from(level, &lv) < 0)
            evl_log(EVL_WARN, "log.level '%s' is not debug/info/warn/error; using info", level);
    }
}

