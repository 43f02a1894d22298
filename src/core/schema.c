/*
 * schema.c: the keys the config may set, their types and defaults, and what
 * one file's globals become (for the loader, config.c). A known section is
 * checked key by key, so a typo such as `slack.webhok_url` or
 * `redis.port = "x"` is an error naming file:line instead of a silently
 * ignored setting; an unknown top-level name is the user's own section and
 * reaches rules untouched, unless it is a near miss of ours (`slak`).
 *
 * An error costs only what depends on it (contract section 2): the loader
 * collects every problem in a list instead of stopping at the first, and
 * a section with one becomes a broken section, whose every read raises the
 * error, so the handlers that read config.slack fail with it while the
 * others run. A wrong top-level setting (budget, state_dir, ...) is left at
 * the value it had (the default, or the base file's) and the call exits 1.
 *
 * The shipped modules declare their own sections beside their code (the
 * `--[==[settings` block in lua/eventilator/), and the build turns that into
 * the rows below (tools/derive.lua); the host's own settings are declared
 * here, where the C that reads them is.
 *
 * In the start-up binary a section's defaults are built when it is first
 * read (lazy_index), since a call reads a handful of the ~100 rows.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "host.h"
#include "nearest.h"
#include "paths.h"
#include "schema.h"

/* K_ENUM: one of `list`; K_TARGET: "syslog", "stderr" or an absolute path (log.target) */
enum ktype { K_STRING, K_INT, K_NUMBER, K_BOOL, K_LIST, K_TABLE, K_ENUM, K_TARGET, K_STRING_OFF };

#include "schema_fields.h" /* generated from lua/ by tools/derive.lua: EVL_MODULE_FIELDS, evl_optional_sections */

/* "warning" too: log.c has always taken it for "warn" */
static const char *const log_levels[] = {"debug", "info", "warn", "error", "warning", NULL};

/*
 * section NULL = a top-level scalar. A NULL default string = nil. `list` is
 * the default of a K_LIST and the allowed values of a K_ENUM.
 */
static const struct field {
    const char *section, *key;
    enum ktype type;
    const char *str;
    double num;
    const char *const *list;
} schema[] = {
    /* every shipped module's sections, declared beside its code (lua/, tools/derive.lua) */
    EVL_MODULE_FIELDS
    /* the host's own: the log (log.c), then the top-level settings */
    {"log", "target", K_TARGET, "syslog", 0, NULL},
    {"log", "level", K_ENUM, "info", 0, log_levels},
    {NULL, "rules_dir", K_STRING, EVL_RULES_DIR, 0, NULL},
    {NULL, "state_dir", K_STRING, EVL_STATE_DIR, 0, NULL},
    {NULL, "budget", K_NUMBER, NULL, EVL_DEFAULT_BUDGET, NULL},
    {NULL, "memory_limit", K_INT, NULL, EVL_DEFAULT_MEMORY_MIB, NULL},
    {NULL, "strict_modes", K_BOOL, NULL, 1, NULL},
    /* Sentinel's script-retry-delay: sooner than this, an identical call is a repeat (delivery.c) */
    {NULL, "script_retry_delay", K_NUMBER, NULL, EVL_SCRIPT_RETRY_DELAY, NULL},
    /* record/replay (docs/testing-rules.md): every call as a JSON line; record_max bytes, 0 = no cap */
    {NULL, "record", K_STRING_OFF, NULL, 0, NULL}, /* nil: <state_dir>/calls.jsonl; false: off */
    {NULL, "record_max", K_INT, NULL, 64 << 20, NULL},
};
#define NSCHEMA (sizeof schema / sizeof schema[0])
static const char *type_name(enum ktype t)
{
    static const char *const n[] = {"a string", "an integer", "a number", "a boolean",
                                    "a list of strings", "a table", "a string", "a string",
                                    "a path, or false for none"};
    return n[t];
}

static void push_default(lua_State *L, const struct field *f)
{
    switch (f->type) {
    case K_STRING:
    case K_ENUM:
    case K_TARGET:
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

/* From the section's first row (a section's rows are adjacent; the host's own come last). */
static const struct field *lookup(const char *section, const char *key)
{
    int k = section ? section_index(section) : -1;
    for (size_t i = k >= 0 ? sections[k].first : 0; i < NSCHEMA; i++)
        if (((!section && !schema[i].section) ||
             (section && schema[i].section && strcmp(schema[i].section, section) == 0)) &&
            strcmp(schema[i].key, key) == 0)
            return &schema[i];
    return NULL;
}

/* Does the value at idx fit the field's type? (K_ENUM and K_TARGET: a string; their values: below) */
static int fits(lua_State *L, int idx, enum ktype t)
{
    switch (t) {
    case K_STRING:
    case K_ENUM:
    case K_TARGET: return lua_type(L, idx) == LUA_TSTRING;
    case K_STRING_OFF: return lua_type(L, idx) == LUA_TSTRING ||
                              (lua_type(L, idx) == LUA_TBOOLEAN && !lua_toboolean(L, idx));
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

/* "a, b, c" into out: the keys of a section, or the values of an enum. */
static void join(const char *const *names, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n && names[i]; i++) {
        int w = snprintf(out + o, cap - o, "%s%s", o ? ", " : "", names[i]);
        if (w < 0 || (size_t)w >= cap - o)
            break;
        o += (size_t)w;
    }
}

static void known_keys(const char *section, char *out, size_t cap)
{
    const char *keys[64];
    size_t n = 0;
    for (size_t i = 0; i < NSCHEMA && n < 64; i++)
        if (schema[i].section && strcmp(schema[i].section, section) == 0)
            keys[n++] = schema[i].key;
    join(keys, n, out, cap);
}

/*
 * The name `word` was probably meant to be: one of `among`, or a key of
 * `section`, or (both NULL) a top-level name of ours. NULL: none is near.
 */
static const char *meant(const char *word, const char *section, const char *const *among)
{
    struct evl_near near;
    evl_near_init(&near, word);
    for (size_t i = 0; among && among[i]; i++)
        evl_near_add(&near, among[i]);
    for (size_t i = 0; !among && i < NSCHEMA; i++) {
        if (section && schema[i].section && strcmp(schema[i].section, section) == 0)
            evl_near_add(&near, schema[i].key);
        else if (!section)
            evl_near_add(&near, schema[i].section ? schema[i].section : schema[i].key);
    }
    return evl_near_typo(&near);
}

/* ", did you mean `name`?", or "" for no name: into out. */
static const char *hint(const char *name, char *out, size_t cap)
{
    if (name)
        snprintf(out, cap, ", did you mean `%s`?", name);
    else
        out[0] = '\0';
    return out;
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

/*
 * Top-level numbers with a range. The budget must end the call before
 * Sentinel's SIGKILL at 60 s, with the watchdog's 2 s of slack and time to
 * exit; NaN and infinity are not seconds. Pushes what is wrong, or returns 0.
 */
static int range_error(lua_State *L, const char *key)
{
    double v = lua_tonumber(L, -1);
    if (strcmp(key, "budget") == 0 && !(v > 0 && v <= EVL_MAX_BUDGET)) {
        lua_pushfstring(L, "expected seconds above 0 and at most %d (Sentinel kills a script at 60 s), "
                        "got %s", (int)EVL_MAX_BUDGET, luaL_tolstring(L, -1, NULL));
    } else if (strcmp(key, "script_retry_delay") == 0 && !(v >= 0 && v <= 86400)) {
        lua_pushfstring(L, "expected seconds from 0 to 86400 (Sentinel's script-retry-delay), got %s",
                        luaL_tolstring(L, -1, NULL));
    } else if (strcmp(key, "memory_limit") == 0 && !(v >= 1 && v <= 65536)) {
        lua_pushfstring(L, "expected MiB from 1 to 65536, got %s", luaL_tolstring(L, -1, NULL));
    } else {
        return 0;
    }
    lua_remove(L, -2); /* luaL_tolstring's copy */
    return 1;
}

/*
 * Is the value on top fit for field f? 0, or 1 with what is wrong pushed
 * ("expected a boolean, got string"): the type, an enum's values, a range.
 */
static int value_error(lua_State *L, const struct field *f)
{
    char buf[400], h[100];
    if (!fits(L, -1, f->type)) {
        lua_pushfstring(L, "expected %s, got %s", type_name(f->type), luaL_typename(L, -1));
        return 1;
    }
    const char *s = f->type == K_ENUM || f->type == K_TARGET ? lua_tostring(L, -1) : NULL;
    if (f->type == K_ENUM) {
        for (size_t i = 0; f->list[i]; i++)
            if (strcmp(s, f->list[i]) == 0)
                return 0;
        join(f->list, SIZE_MAX, buf, sizeof buf);
        lua_pushfstring(L, "expected one of %s, got \"%s\"%s", buf, s,
                        hint(meant(s, NULL, f->list), h, sizeof h));
        return 1;
    }
    if (f->type == K_TARGET && s[0] != '/' && strcmp(s, "syslog") != 0 && strcmp(s, "stderr") != 0) {
        static const char *const kinds[] = {"syslog", "stderr", NULL};
        lua_pushfstring(L, "expected \"syslog\", \"stderr\" or an absolute file path, got \"%s\"%s", s,
                        hint(meant(s, NULL, kinds), h, sizeof h));
        return 1;
    }
    return !f->section && range_error(L, f->key);
}

/*
 * One problem: the message on top (popped) into the list at `problems`, as
 * { msg = "file:line: ...", kind = kind, name = section or setting, line }.
 */
static void problem(lua_State *L, int problems, const char *kind, const char *name, int line)
{
    lua_createtable(L, 0, 5);
    lua_insert(L, -2);
    lua_setfield(L, -2, "msg");
    lua_pushinteger(L, line);
    lua_setfield(L, -2, "line");
    lua_pushstring(L, kind);
    lua_setfield(L, -2, "kind");
    lua_pushstring(L, name);
    lua_setfield(L, -2, "name");
    lua_rawseti(L, problems, (lua_Integer)lua_rawlen(L, problems) + 1);
}

/*
 * A name of the user's that is ours but for case or a typo (`Redis`,
 * `slak`, `warning`) is worth telling: the settings under it do nothing.
 * Our name with digits after it (`redis2`) is taken to be on purpose.
 */
static const char *near_miss(const char *key)
{
    const char *name = meant(key, NULL, NULL);
    size_t n = name ? strlen(name) : 0;
    if (name && strncmp(key, name, n) == 0 && strspn(key + n, "0123456789") == strlen(key + n))
        return NULL;
    return name;
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

/*
 * A section declared `optional` is off unless a file sets it: `cluster = nil`
 * means plain watch mode (contract section 16), so reading it gives nil, not
 * defaults. Once a file sets it, it is merged with its defaults like any other.
 */
static int optional_section(int i)
{
    for (const char *const *o = evl_optional_sections; *o; o++)
        if (same(sections[i].name, *o))
            return 1;
    return 0;
}

static int lazy_index(lua_State *L)
{
    int i = lua_type(L, 2) == LUA_TSTRING ? section_index(lua_tostring(L, 2)) : -1;
    unsigned char *flags = i >= 0 ? built_flags(L, 1) : NULL;
    if (!flags || flags[i] || optional_section(i))
        return 0; /* not one of ours, or built and since removed, or off: nil */
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
        if (!flags[i] && !optional_section(i)) {
            flags[i] = 1;
            lua_pushstring(L, sections[i].name);
            build_section(L, i);
            lua_rawset(L, idx);
        }
    lua_pushnil(L);
    lua_setmetatable(L, idx);
}

void evl_schema_new(lua_State *L)
{
    find_sections();
    /* presized for the whole table: materializing it then never rehashes */
    lua_createtable(L, 0, nsections + 8);
    for (size_t i = 0; i < NSCHEMA; i++)
        if (!schema[i].section) {
            push_default(L, &schema[i]);
            lua_setfield(L, -2, schema[i].key);
        }
    lua_createtable(L, 0, 4);
    unsigned char *flags = lua_newuserdatauv(L, (size_t)nsections, 0);
    memset(flags, 0, (size_t)nsections);
    lua_setfield(L, -2, "built");
    lua_pushcfunction(L, lazy_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, lazy_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushcfunction(L, lazy_pairs);
    lua_setfield(L, -2, "__pairs");
    lua_setmetatable(L, -2);
}

/* cfg[section i], built from the defaults if no file has set it yet: pushed. */
static void section_table(lua_State *L, int cfg, int i, unsigned char *flags)
{
    if (flags[i]) {
        lua_pushstring(L, sections[i].name);
        if (lua_rawget(L, cfg) == LUA_TTABLE)
            return;
        lua_pop(L, 1);
    }
    flags[i] = 1;
    build_section(L, i);
    lua_pushstring(L, sections[i].name);
    lua_pushvalue(L, -2);
    lua_rawset(L, cfg);
}

/* "file:line" of a message (formatted only when there is one: a clean load formats none) */
#define WHERE at(where, sizeof where, path, line)

/* One known section's table (value on top) merged key by key into the config's. */
static void apply_section(lua_State *L, int cfg, int sec, const char *path, int line, int problems)
{
    const char *name = sections[sec].name;
    int src = lua_gettop(L);
    section_table(L, cfg, sec, built_flags(L, cfg));
    int dst = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, src)) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
        const struct field *f = k ? lookup(name, k) : NULL;
        char known[400], h[100], where[600];
        if (!f) {
            known_keys(name, known, sizeof known);
            lua_pushfstring(L, "%s: %s.%s: unknown key%s (known keys: %s)", WHERE, name,
                            k ? k : luaL_typename(L, -2), hint(k ? meant(k, name, NULL) : NULL, h, sizeof h),
                            known);
            problem(L, problems, "section", name, line);
        } else if (value_error(L, f)) {
            lua_pushfstring(L, "%s: %s.%s: %s", WHERE, name, k, lua_tostring(L, -1));
            lua_remove(L, -2);
            problem(L, problems, "section", name, line);
        } else {
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_rawset(L, dst);
            continue;
        }
        lua_pop(L, 1);
    }
    lua_settop(L, src);
}

/* One global (key at -2, value at -1) into the config at cfg. */
static void apply_one(lua_State *L, int cfg, const char *path, int line, int problems)
{
    const char *key = lua_tostring(L, -2);
    const struct field *top = lookup(NULL, key);
    const char *near;
    char h[100], where[600];
    int sec;
    if (top) {
        if (value_error(L, top)) {
            lua_pushfstring(L, "%s: %s: %s", WHERE, key, lua_tostring(L, -1));
            lua_remove(L, -2);
            problem(L, problems, "setting", key, line);
            return;
        }
    } else if ((sec = section_index(key)) >= 0) {
        if (lua_type(L, -1) == LUA_TTABLE) {
            apply_section(L, cfg, sec, path, line, problems);
            return;
        }
        lua_pushfstring(L, "%s: %s: expected a table, got %s", WHERE, key, luaL_typename(L, -1));
        problem(L, problems, "section", key, line);
        return;
    } else if ((near = near_miss(key))) {
        lua_pushfstring(L, "%s: `%s` is not a setting of eventilator%s (rules see it as config.%s)",
                        WHERE, key, hint(near, h, sizeof h), key);
        problem(L, problems, "name", key, line);
    }
    lua_pushvalue(L, -2);
    lua_pushvalue(L, -2);
    lua_rawset(L, cfg); /* a setting, or the user's own section: replaced whole */
}

void evl_schema_apply(lua_State *L, int cfg, int values, int lines, const char *path, int problems)
{
    lua_pushnil(L);
    while (lua_next(L, values)) {
        int line = 0;
        if (lua_type(L, -2) == LUA_TSTRING) {
            if (lines) {
                lua_pushvalue(L, -2);
                lua_rawget(L, lines);
                line = (int)lua_tointeger(L, -1);
                lua_pop(L, 1);
            }
            apply_one(L, cfg, path, line, problems);
        }
        lua_pop(L, 1);
    }
}

/* Any read of a broken section: raise its error, where the rule read it. */
static int broken_read(lua_State *L)
{
    lua_getmetatable(L, 1);
    lua_getfield(L, -1, "section");
    lua_getfield(L, -2, "error");
    return luaL_error(L, "config.%s cannot be used: %s", lua_tostring(L, -2), lua_tostring(L, -1));
}

#define BROKEN_NAME "eventilator.broken_section"

/* cfg[name] becomes broken: an empty table whose metatable raises `msg` and keeps what was valid. */
static void break_section(lua_State *L, int cfg, const char *name, const char *msg)
{
    section_table(L, cfg, section_index(name), built_flags(L, cfg)); /* the checked values */
    lua_newtable(L);
    lua_createtable(L, 0, 8);
    lua_pushliteral(L, BROKEN_NAME);
    lua_setfield(L, -2, "__name");
    lua_pushstring(L, name);
    lua_setfield(L, -2, "section");
    lua_pushstring(L, msg);
    lua_setfield(L, -2, "error");
    lua_pushvalue(L, -3);
    lua_setfield(L, -2, "values");
    static const char *const events[] = {"__index", "__newindex", "__pairs", "__len"};
    for (int i = 0; i < 4; i++) {
        lua_pushcfunction(L, broken_read);
        lua_setfield(L, -2, events[i]);
    }
    lua_setmetatable(L, -2);
    lua_setfield(L, cfg, name); /* cfg's __newindex marks it built; the file set it anyway */
    lua_pop(L, 1);
}

void evl_schema_break(lua_State *L, int cfg, int problems)
{
    lua_Integer n = (lua_Integer)lua_rawlen(L, problems);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, problems, i);
        lua_getfield(L, -1, "kind");
        if (strcmp(lua_tostring(L, -1), "section") == 0) {
            lua_getfield(L, -2, "name");
            lua_getfield(L, -3, "msg");
            const char *name = lua_tostring(L, -2);
            /* a section's errors together, so that the first read tells them all */
            lua_pushstring(L, name);
            if (lua_rawget(L, cfg) == LUA_TTABLE && lua_getmetatable(L, -1)) {
                lua_getfield(L, -1, "error");
                lua_pushfstring(L, "%s; %s", lua_tostring(L, -1), lua_tostring(L, -4));
                lua_setfield(L, -3, "error");
                lua_pop(L, 3);
            } else {
                lua_pop(L, 1);
                break_section(L, cfg, name, lua_tostring(L, -1));
            }
            lua_pop(L, 2);
        }
        lua_pop(L, 2);
    }
}

void evl_schema_unbreak(lua_State *L)
{
    if (lua_type(L, -1) != LUA_TTABLE || !lua_getmetatable(L, -1))
        return; /* the usual case: a plain table, one call */
    if (lua_getfield(L, -1, "__name") == LUA_TSTRING && strcmp(lua_tostring(L, -1), BROKEN_NAME) == 0) {
        lua_getfield(L, -2, "values");
        lua_replace(L, -4);
    }
    lua_pop(L, 2);
}
