/*
 * config.c: /etc/redis/<name>.conf (or $EVENTILATOR_CONF), a Lua chunk run
 * in an empty environment; the globals it assigns are the config. Known
 * sections are checked against the schema below, so a typo such as
 * `slack.webhok_url` or `redis.port = "x"` is an error naming file:line
 * instead of a silently ignored setting. Unknown top-level keys are the
 * user's own sections and reach rules untouched as config.<key>. In the
 * start-up binary a section's defaults are built when it is first read
 * (lazy_index), since a call reads a handful of the ~100 rows.
 * A file in the Go eventilator's TOML format is recognised and translated by
 * the shipped module eventilator.legacy (only then is that Lua compiled).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
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
#include "statedir.h"

enum ktype { K_STRING, K_INT, K_NUMBER, K_BOOL, K_LIST, K_TABLE, K_STRING_OFF };

static const char *const slack_triggers[] = {"+sdown", "-sdown", "+odown", "-odown",
                                             "+promoted-slave", NULL};
static const char *const sensu_triggers[] = {"+odown", "-odown", "-failover-abort-no-good-slave",
                                             NULL};

static const char *const alertmanager_urls[] = {"http://127.0.0.1:9093", NULL};
static const char *const webhook_triggers[] = {"+sdown", "-sdown", "+odown", "-odown", "+switch-master",
                                               "-failover-abort-no-good-slave", NULL};

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
    {"redis", "max_reply", K_NUMBER, NULL, 64, NULL}, /* MiB: the largest reply a call accepts */
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
    /* receivers (docs/alertmanager.md, pagerduty.md, webhook.md, stream.md) */
    {"alertmanager", "enabled", K_BOOL, NULL, 0, NULL},
    {"alertmanager", "urls", K_LIST, NULL, 0, alertmanager_urls},
    {"alertmanager", "labels", K_TABLE, NULL, 0, NULL},
    {"alertmanager", "generator_url", K_STRING, NULL, 0, NULL},
    {"alertmanager", "ttl", K_NUMBER, NULL, 86400, NULL},
    {"alertmanager", "failover_ttl", K_NUMBER, NULL, 600, NULL},
    {"alertmanager", "timeout", K_NUMBER, NULL, 5, NULL},
    {"pagerduty", "enabled", K_BOOL, NULL, 0, NULL},
    {"pagerduty", "routing_key", K_STRING, NULL, 0, NULL},
    {"pagerduty", "url", K_STRING, "https://events.pagerduty.com/v2/enqueue", 0, NULL},
    {"pagerduty", "severity", K_STRING, "critical", 0, NULL},
    {"pagerduty", "timeout", K_NUMBER, NULL, 5, NULL},
    {"webhook", "enabled", K_BOOL, NULL, 0, NULL},
    {"webhook", "url", K_STRING, NULL, 0, NULL},
    {"webhook", "headers", K_TABLE, NULL, 0, NULL},
    {"webhook", "secret", K_STRING, NULL, 0, NULL},
    {"webhook", "trigger_on", K_LIST, NULL, 0, webhook_triggers},
    {"webhook", "timeout", K_NUMBER, NULL, 5, NULL},
    {"stream", "enabled", K_BOOL, NULL, 0, NULL},
    {"stream", "key", K_STRING, "eventilator:events", 0, NULL},
    {"stream", "maxlen", K_INT, NULL, 100000, NULL},
    {"stream", "redis", K_TABLE, NULL, 0, NULL},
    /* reactions: docs/haproxy.md, docker.md, flap.md, consul.md, examples/rules/ */
    {"haproxy", "socket", K_STRING, "/run/haproxy/admin.sock", 0, NULL},
    {"haproxy", "backends", K_TABLE, NULL, 0, NULL},
    {"haproxy", "timeout", K_NUMBER, NULL, 2, NULL},
    {"docker", "socket", K_STRING, "/var/run/docker.sock", 0, NULL},
    {"docker", "api", K_STRING, "v1.41", 0, NULL},
    {"docker", "timeout", K_NUMBER, NULL, 10, NULL},
    {"flap", "window", K_INT, NULL, 600, NULL},
    {"flap", "threshold", K_INT, NULL, 3, NULL},
    {"flap", "cooldown", K_INT, NULL, 3600, NULL},
    {"flap", "prefix", K_STRING, "eventilator:flap", 0, NULL},
    {"consul", "url", K_STRING, "http://127.0.0.1:8500", 0, NULL},
    {"consul", "prefix", K_STRING, "redis", 0, NULL},
    {"consul", "token", K_STRING, NULL, 0, NULL},
    {"consul", "timeout", K_NUMBER, NULL, 5, NULL},
    {"swarm", "image", K_STRING, "redis:7", 0, NULL},
    {"swarm", "service", K_STRING, NULL, 0, NULL},
    {"swarm", "network", K_STRING, NULL, 0, NULL},
    {"swarm", "max_per_hour", K_INT, NULL, 3, NULL},
    {"hcloud", "url", K_STRING, "https://api.hetzner.cloud/v1", 0, NULL},
    {"hcloud", "token", K_STRING, NULL, 0, NULL},
    {"hcloud", "server_type", K_STRING, "cx22", 0, NULL},
    {"hcloud", "image", K_STRING, "debian-12", 0, NULL},
    {"hcloud", "location", K_STRING, NULL, 0, NULL},
    {"hcloud", "ssh_keys", K_LIST, NULL, 0, NULL},
    {"hcloud", "max_per_hour", K_INT, NULL, 3, NULL},
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
    {"watch", "reuse", K_INT, NULL, 1000, NULL},
    {"watch", "timeout", K_NUMBER, NULL, 2, NULL},
    {NULL, "rules_dir", K_STRING, EVL_RULES_DIR, 0, NULL},
    {NULL, "state_dir", K_STRING, EVL_STATE_DIR, 0, NULL},
    {NULL, "budget", K_NUMBER, NULL, EVL_DEFAULT_BUDGET, NULL},
    {NULL, "memory_limit", K_INT, NULL, EVL_DEFAULT_MEMORY_MIB, NULL},
    {NULL, "strict_modes", K_BOOL, NULL, 1, NULL},
    /* Sentinel's script-retry-delay: sooner than this, an identical call is a repeat (retry.c) */
    {NULL, "script_retry_delay", K_NUMBER, NULL, EVL_SCRIPT_RETRY_DELAY, NULL},
    /* record/replay (docs/testing-rules.md): every call as a JSON line; record_max bytes, 0 = no cap */
    {NULL, "record", K_STRING_OFF, NULL, 0, NULL}, /* nil: <state_dir>/calls.jsonl; false: off */
    {NULL, "record_max", K_INT, NULL, 64 << 20, NULL},
};
#define NSCHEMA (sizeof schema / sizeof schema[0])

static const char *type_name(enum ktype t)
{
    static const char *const n[] = {"a string", "an integer", "a number", "a boolean",
                                    "a list of strings", "a table", "a path, or false for none"};
    return n[t];
}

static void push_default(lua_State *L, const struct field *f)
{
    switch (f->type) {
    case K_STRING:
    case K_STRING_OFF: f->str ? (void)lua_pushstring(L, f->str) : lua_pushnil(L); break;
    case K_INT: lua_pushinteger(L, (lua_Integer)f->num); break;
    case K_NUMBER: lua_pushnumber(L, f->num); break;
    case K_BOOL: lua_pushboolean(L, f->num != 0); break;
    case K_TABLE: lua_newtable(L); break; /* a map of the user's own keys (labels, headers) */
    case K_LIST:
        if (!f->list) { /* no default list: nil */
            lua_pushnil(L);
            break;
        }
        int n = 0;
        while (f->list[n])
            n++;
        lua_createtable(L, n, 0); /* presized: each growth of the array is a rehash */
        for (int i = 0; f->list[i]; i++) {
            lua_pushstring(L, f->list[i]);
            lua_rawseti(L, -2, i + 1);
        }
        break;
    }
}

/*
 * The schema's sections, found once per process: a call builds a section's
 * defaults on the first read of config.<section> (lazy_index below), not all
 * ~100 rows up front, since a call reads a handful of them. A section's rows
 * are adjacent in the schema; one that is not still works (`first` is its
 * first row, `n` counts them all, and build_section skips other rows).
 */
#define MAX_SECTIONS 64
static struct section {
    const char *name;
    unsigned first, n;
} sections[MAX_SECTIONS];
static int nsections;

static int same(const char *a, const char *b)
{
    /* equal literals are usually one pointer; most names differ in the first letter */
    return a == b || (a[0] == b[0] && strcmp(a, b) == 0);
}

static void find_sections(void)
{
    if (nsections)
        return;
    for (size_t i = 0; i < NSCHEMA; i++) {
        const char *name = schema[i].section;
        if (!name)
            continue;
        int k = nsections - 1;
        if (k < 0 || !same(sections[k].name, name))
            for (k = 0; k < nsections && !same(sections[k].name, name); k++)
                ;
        if (k < nsections) {
            sections[k].n++;
        } else if (nsections < MAX_SECTIONS) {
            sections[nsections++] = (struct section){name, (unsigned)i, 1};
        }
    }
}

/* The section's index, or -1: not one of ours. */
static int section_index(const char *name)
{
    find_sections();
    for (int i = 0; i < nsections; i++)
        if (same(sections[i].name, name))
            return i;
    return -1;
}

/* Push section i's defaults, a new table. */
static void build_section(lua_State *L, int i)
{
    const struct section *sec = &sections[i];
    lua_createtable(L, 0, (int)sec->n); /* presized: growing a table rehashes it every time */
    for (unsigned r = sec->first, left = sec->n; left > 0 && r < NSCHEMA; r++) {
        const struct field *f = &schema[r];
        if (!f->section || !same(f->section, sec->name))
            continue;
        push_default(L, f);
        lua_setfield(L, -2, f->key);
        left--;
    }
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
    case K_STRING_OFF: return lua_type(L, idx) == LUA_TSTRING ||
                              (lua_type(L, idx) == LUA_TBOOLEAN && !lua_toboolean(L, idx));
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

/* "file:line" (or the file) into buf: only a message needs it, not every key */
static const char *at(char *buf, size_t cap, const char *path, int line)
{
    if (line)
        snprintf(buf, cap, "%s:%d", path, line);
    else
        snprintf(buf, cap, "%s", path);
    return buf;
}
#define AT at(where, sizeof where, path, line)

/*
 * Top-level numbers with a range. The budget must end the call before
 * Sentinel's SIGKILL at 60 s, with the watchdog's 2 s of slack and time to
 * exit; NaN and infinity are not seconds. Pushes the message and returns 1.
 */
static int range_error(lua_State *L, const char *path, int line, const char *key)
{
    char where[600];
    double v = lua_tonumber(L, -1);
    if (strcmp(key, "budget") == 0 && !(v > 0 && v <= EVL_MAX_BUDGET)) {
        lua_pushfstring(L, "%s: budget: expected seconds above 0 and at most %d (Sentinel kills a "
                        "script at 60 s), got %s", AT, (int)EVL_MAX_BUDGET,
                        luaL_tolstring(L, -1, NULL));
        return 1;
    }
    if (strcmp(key, "script_retry_delay") == 0 && !(v >= 0 && v <= 86400)) {
        lua_pushfstring(L, "%s: script_retry_delay: expected seconds from 0 to 86400 (Sentinel's "
                        "script-retry-delay), got %s", AT, luaL_tolstring(L, -1, NULL));
        return 1;
    }
    if (strcmp(key, "memory_limit") == 0 && !(v >= 1 && v <= 65536)) {
        lua_pushfstring(L, "%s: memory_limit: expected MiB from 1 to 65536, got %s", AT,
                        luaL_tolstring(L, -1, NULL));
        return 1;
    }
    return 0;
}

/*
 * The loaded config is lazy: its metatable builds a schema section's
 * defaults on the first read of config.<section> (from a rule, a module or
 * evl_config_string), and remembers which sections it has built ("built", one
 * byte per section), so a section a rule assigns or removes stays as the rule
 * left it. Whatever walks the whole table (`config`, `check`, `test`, pairs()
 * in a rule) gets it whole from evl_config_materialize, which also drops the
 * metatable: from then on the table is a plain one, as if built eagerly.
 */
static unsigned char *built_flags(lua_State *L, int cfg)
{
    unsigned char *flags = NULL;
    if (lua_getmetatable(L, cfg)) {
        if (lua_getfield(L, -1, "built") == LUA_TUSERDATA)
            flags = lua_touserdata(L, -1);
        lua_pop(L, 2);
    }
    return flags; /* anchored in the metatable, which the caller's table holds */
}

static int lazy_index(lua_State *L)
{
    int i = lua_type(L, 2) == LUA_TSTRING ? section_index(lua_tostring(L, 2)) : -1;
    unsigned char *flags = i >= 0 ? built_flags(L, 1) : NULL;
    if (!flags || flags[i])
        return 0; /* not one of ours, or built and since removed: nil */
    flags[i] = 1;
    build_section(L, i);
    lua_pushvalue(L, 2);
    lua_pushvalue(L, -2);
    lua_rawset(L, 1);
    return 1;
}

static int lazy_newindex(lua_State *L)
{
    int i = lua_type(L, 2) == LUA_TSTRING ? section_index(lua_tostring(L, 2)) : -1;
    unsigned char *flags = i >= 0 ? built_flags(L, 1) : NULL;
    if (flags)
        flags[i] = 1; /* what the rule assigned replaces the defaults */
    lua_settop(L, 3);
    lua_rawset(L, 1);
    return 0;
}

static int plain_next(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 2);
    if (lua_next(L, 1))
        return 2;
    lua_pushnil(L);
    return 1;
}

/* pairs(config) walks the whole config */
static int lazy_pairs(lua_State *L)
{
    evl_config_materialize(L, 1);
    lua_pushcfunction(L, plain_next);
    lua_pushvalue(L, 1);
    lua_pushnil(L);
    return 3;
}

void evl_config_materialize(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    unsigned char *flags = built_flags(L, idx);
    if (!flags)
        return; /* not lazy, or already whole */
    for (int i = 0; i < nsections; i++)
        if (!flags[i]) {
            flags[i] = 1;
            lua_pushstring(L, sections[i].name);
            build_section(L, i);
            lua_rawset(L, idx);
        }
    lua_pushnil(L);
    lua_setmetatable(L, idx);
}

/*
 * Check the user's globals (table at `values`, lines at `lines`, either may
 * lack lines) and build the config on top of the stack: the top-level
 * settings and every section the file sets, with their defaults, at once;
 * the other sections on first read (above). On error returns -1 with the
 * message on top of the stack.
 */
static int merge(lua_State *L, const char *path, int values, int lines)
{
    find_sections();
    /* presized for the whole table: materializing it then never rehashes */
    lua_createtable(L, 0, nsections + 8);
    int cfg = lua_gettop(L);
    unsigned char *flags = lua_newuserdatauv(L, (size_t)nsections, 0);
    memset(flags, 0, (size_t)nsections);
    for (size_t i = 0; i < NSCHEMA; i++)
        if (!schema[i].section) {
            push_default(L, &schema[i]);
            lua_setfield(L, cfg, schema[i].key);
        }
    /* then what the file set */
    lua_pushnil(L);
    while (lua_next(L, values)) {
        int line = 0, sec;
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
        char where[600]; /* file:line, formatted only for a message (AT) */
        const struct field *top = lookup(NULL, key);
        if (top) {
            if (!fits(L, -1, top->type)) {
                lua_pushfstring(L, "%s: %s: expected %s, got %s", AT, key, type_name(top->type),
                                luaL_typename(L, -1));
                return -1;
            }
            if (range_error(L, path, line, key))
                return -1;
            lua_pushvalue(L, -1);
            lua_setfield(L, cfg, key);
        } else if ((sec = section_index(key)) >= 0) {
            if (lua_type(L, -1) != LUA_TTABLE) {
                lua_pushfstring(L, "%s: %s: expected a table, got %s", AT, key,
                                luaL_typename(L, -1));
                return -1;
            }
            int sect = lua_gettop(L);
            flags[sec] = 1;
            build_section(L, sec);
            lua_pushvalue(L, -1);
            lua_setfield(L, cfg, key);
            int dst = lua_gettop(L);
            lua_pushnil(L);
            while (lua_next(L, sect)) {
                const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
                const struct field *f = k ? lookup(key, k) : NULL;
                if (!f) {
                    char known[400];
                    known_keys(key, known, sizeof known);
                    lua_pushfstring(L, "%s: %s.%s: unknown key (known keys: %s)", AT, key,
                                    k ? k : luaL_typename(L, -2), known);
                    return -1;
                }
                if (!fits(L, -1, f->type)) {
                    lua_pushfstring(L, "%s: %s.%s: expected %s, got %s", AT, key, k,
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
                         "'%.32s'?); rules see it as config.%.64s", AT, key, near, key);
            lua_pushvalue(L, -2);
            lua_pushvalue(L, -2);
            lua_rawset(L, cfg); /* the user's own section */
        }
        lua_pop(L, 1);
    }
    /* the other sections: on first read */
    lua_createtable(L, 0, 4);
    lua_pushvalue(L, cfg + 1);
    lua_setfield(L, -2, "built");
    lua_pushcfunction(L, lazy_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, lazy_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushcfunction(L, lazy_pairs);
    lua_setfield(L, -2, "__pairs");
    lua_setmetatable(L, cfg);
    lua_settop(L, cfg);
    return 0;
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

/*
 * Load the config into the registry (h->config_ref). Returns 0, or after
 * logging the reason EVL_CONFIG_BROKEN (exit 2: a retry cannot fix it) or
 * EVL_CONFIG_REFUSED (exit 1: refused by the trust rule, readfile.c; the
 * operator's chmod/chown fixes it, and Sentinel's retries give the event
 * hours to get through once it is fixed). Both are negative.
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
    struct stat st;
    char why[600];
    char *text = evl_read_file_stat(h->config_path, 16u << 20, &len, &err, &st);
    if (text && !evl_trusted(&st, h->config_path, why, sizeof why)) {
        free(text);
        evl_log(EVL_ERROR, "config %s refused: %s", h->config_path, why);
        return EVL_CONFIG_REFUSED;
    }
    lua_newtable(L); /* values */
    int values = lua_gettop(L);
    int lines = 0;
    if (!text) {
        if (err != ENOENT) {
            evl_log(EVL_ERROR, "config %s: %s", h->config_path, strerror(err));
            return EVL_CONFIG_BROKEN;
        }
        h->config_format = "built-in defaults (no file)";
    } else if (looks_legacy(L, text, len)) {
        h->config_format = "legacy TOML";
        lua_getglobal(L, "require");
        lua_pushliteral(L, "eventilator.legacy");
        if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
            free(text);
            evl_log(EVL_ERROR, "config %s: %s", h->config_path, lua_tostring(L, -1));
            return EVL_CONFIG_BROKEN;
        }
        lua_getfield(L, -1, "parse");
        lua_pushlstring(L, text, len);
        lua_pushstring(L, h->config_path);
        free(text);
        if (lua_pcall(L, 2, 2, 0) != LUA_OK || lua_type(L, -2) != LUA_TTABLE) {
            evl_log(EVL_ERROR, "config %s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "?");
            return EVL_CONFIG_BROKEN;
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
            return EVL_CONFIG_BROKEN;
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
        if (evl_call(h, 0, 0, h->deadline) != LUA_OK) {
            evl_log(EVL_ERROR, "config %s", evl_error_text(h, -1));
            return EVL_CONFIG_BROKEN;
        }
    }
    if (merge(L, h->config_path, values, lines) < 0) {
        evl_log(EVL_ERROR, "config %s", lua_tostring(L, -1));
        return EVL_CONFIG_BROKEN;
    }
    lua_getfield(L, -1, "budget");
    h->budget = lua_tonumber(L, -1);
    lua_getfield(L, -2, "memory_limit");
    if (h->mem.limit != SIZE_MAX) /* a long-running subcommand has no cap (main.c) */
        h->mem.limit = (size_t)lua_tointeger(L, -1) << 20;
    lua_getfield(L, -3, "strict_modes");
    h->strict_modes = lua_toboolean(L, -1);
    lua_pop(L, 3);
    h->deadline = h->t0 + h->budget;
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
    lua_settop(L, values - 1);
    evl_state_dir_open(h, evl_config_string(h, NULL, "state_dir"));
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

/* A number from the loaded config, or def. */
double evl_config_number(struct evl_host *h, const char *section, const char *key, double def)
{
    lua_State *L = h->L;
    double v = def;
    int top = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->config_ref);
    if (section && lua_getfield(L, -1, section) != LUA_TTABLE)
        goto out;
    if (lua_getfield(L, -1, key) == LUA_TNUMBER)
        v = lua_tonumber(L, -1);
out:
    lua_settop(L, top);
    return v;
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

