/*
 * host.c: the Lua state every call runs in. Standard libraries; a searcher
 * for the shipped lua/ tree compiled into the binary; package.preload for
 * what the caller links in (the lean binary's redis and tcp bindings,
 * opened only on first use; the full runtime finds them as C modules next
 * to itself); and the base of every rule file's environment, whose `redis`,
 * `tcp`, `http` and `json` are looked up lazily so a call whose rules never
 * touch them never pays for them. And evl_call, the one way the host runs
 * Lua.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "budget.h"
#include "deadline.h"
#include "embedded.h"
#include "host.h"
#include "log.h"

/*
 * The Lua state's allocator: realloc/free, counting, with a cap (config
 * `memory_limit`). A refused allocation is Lua's "not enough memory" error,
 * after an emergency collection; it unwinds the handler that asked, and the
 * host reports it as the limit (evl_call). setrlimit is not an option:
 * Debian's sentinel unit filters the @resources system calls.
 */
#if defined(__has_feature)
#if __has_feature(address_sanitizer) /* clang's spelling of __SANITIZE_ADDRESS__ */
#define EVL_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define EVL_ASAN 1
#endif
#if defined(EVL_LEAN) && !defined(EVL_ASAN)
/*
 * The start-up binary's first heap: one prefaulted block, handed out by
 * bumping a pointer. A call with the default rules allocates ~45 KB and
 * exits without freeing (cli/main.c). On a virtual machine the first touch of
 * each heap page can be a fault that goes through the hypervisor (~14 us a
 * page where the benchmarks ran, against ~2 ms for all of /bin/true); the
 * same pages populated by one mmap cost about half, and bumping skips
 * malloc's bookkeeping. The arena is sized to what a call uses, 48 KB for
 * an event with the default rules and 80 KB for a failover record (which
 * loads the metrics module): populating pages a call never touches costs
 * more than it saves. A block freed in it is not reused, and only the last
 * one grows in place; past it, malloc as before. The arena is counted whole
 * for memory_limit when it is mapped (far under any limit), so its blocks
 * need no counting. Not under AddressSanitizer, which must see every block.
 */
#include <stdint.h>
#include <sys/mman.h>
#define ARENA_EVENT (48u << 10)
#define ARENA_RECONFIG (80u << 10)
#define ROUND16(n) (((n) + 15) & ~(size_t)15)
static char *arena, *arena_top, *arena_end, *arena_last;
static size_t arena_size = ARENA_EVENT;

static inline int in_arena(const void *p)
{
    return (uintptr_t)p >= (uintptr_t)arena && (uintptr_t)p < (uintptr_t)arena_end;
}

/* Once, on the first allocation; a failed mmap leaves an empty arena (malloc from then on). */
static __attribute__((noinline)) void arena_open(struct evl_mem *m)
{
    static char none[16];
    void *a = mmap(NULL, arena_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
                   -1, 0);
    arena = arena_top = arena_end = a == MAP_FAILED ? none : a;
    if (a != MAP_FAILED) {
        arena_end += arena_size;
        m->used += arena_size;
    }
}

/* A block from the arena, or NULL when it has no room left. */
static inline void *arena_take(struct evl_mem *m, size_t n)
{
    if (__builtin_expect(arena == NULL, 0))
        arena_open(m);
    n = ROUND16(n);
    if (n > (size_t)(arena_end - arena_top))
        return NULL;
    arena_last = arena_top;
    arena_top += n;
    return arena_last;
}

/* An arena block resized in the arena, or NULL: it must move out. */
static void *arena_resize(struct evl_mem *m, void *p, size_t osize, size_t nsize)
{
    if (p == arena_last && ROUND16(nsize) <= (size_t)(arena_end - arena_last)) {
        arena_top = arena_last + ROUND16(nsize);
        return p;
    }
    if (nsize <= osize)
        return p;
    void *np = arena_take(m, nsize);
    if (np)
        memcpy(np, p, osize);
    return np;
}
#else
#define in_arena(p) 0
#define arena_take(m, n) NULL
#define arena_resize(m, p, o, n) NULL
#endif

#ifdef EVL_PLAIN_ALLOC /* bench/run.sh only: the same blocks, uncounted, for what the counting costs */
#define COUNTED 0
#else
#define COUNTED 1
#endif

static void *alloc(void *ud, void *p, size_t osize, size_t nsize)
{
    struct evl_mem *m = ud;
    if (p == NULL || in_arena(p)) { /* a new block (osize is its type) or one of the arena */
        if (nsize == 0)
            return NULL;
        void *np = p ? arena_resize(m, p, osize, nsize) : arena_take(m, nsize);
        if (np)
            return np;
        /* a counted malloc block; an arena block moving out was counted with the arena */
        if (COUNTED && m->used + nsize > m->limit) {
            m->hit = 1;
            return NULL;
        }
        /* malloc, not realloc(NULL): that costs a detour on every allocation */
        np = malloc(nsize);
        if (np && p)
            memcpy(np, p, osize < nsize ? osize : nsize);
        if (np && COUNTED)
            m->used += nsize;
        return np;
    }
    if (nsize == 0) {
        free(p);
        if (COUNTED)
            m->used -= osize;
        return NULL;
    }
    if (COUNTED && nsize > osize && m->used + (nsize - osize) > m->limit) {
        m->hit = 1;
        return NULL;
    }
    void *np = realloc(p, nsize);
    if (np && COUNTED)
        m->used += nsize - osize; /* size_t wraps both ways */
    return np;
}

lua_State *evl_state_new(struct evl_host *h)
{
    h->mem.limit = (size_t)EVL_DEFAULT_MEMORY_MIB << 20;
#if defined(EVL_LEAN) && !defined(EVL_ASAN)
    if (h->mode == EVL_RECONFIG)
        arena_size = ARENA_RECONFIG;
#endif
    return lua_newstate(alloc, &h->mem); /* no warnings: lua_setwarnf unset */
}

/*
 * What a stand-in for a full-only module raises (handover.c): an error value
 * no rule can make, so evl_call can tell it from any other and say
 * EVL_CALL_FULL. Only this file knows it.
 */
static char full_marker;

int evl_raise_full(lua_State *L)
{
    lua_pushlightuserdata(L, &full_marker);
    return lua_error(L);
}

/* Message handler: the error with a traceback. Other values pass through (evl_error_text). */
int evl_traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (!msg) {
        if (lua_touserdata(L, 1) == &full_marker || luaL_getmetafield(L, 1, "__tostring") != LUA_TNIL) {
            lua_settop(L, 1); /* turned into text later, protected */
            return 1;
        }
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

int evl_call(struct evl_host *h, int nargs, int nres, double deadline)
{
    lua_State *L = h->L;
    int base = lua_gettop(L) - nargs; /* the function */
    lua_pushcfunction(L, evl_traceback);
    lua_insert(L, base);
    h->mem.hit = 0;
    evl_budget_set(L, deadline);
    int rc = lua_pcall(L, nargs, nres, base);
    evl_budget_clear(L);
    lua_remove(L, base);
    if (rc != LUA_OK && lua_touserdata(L, -1) == &full_marker)
        return EVL_CALL_FULL;
    if (rc == LUA_ERRMEM && h->mem.hit) {
        /* what the handler held is garbage now: give it back, then say why it failed */
        lua_pop(L, 1);
        lua_gc(L, LUA_GCCOLLECT);
        lua_pushfstring(L, "memory limit of %d MiB reached", (int)(h->mem.limit >> 20));
    }
    return rc;
}

#define ERROR_TEXT_MAX 4000
#define ERROR_TEXT_SECONDS 1.0

static int tostring_bounded(lua_State *L)
{
    size_t n;
    const char *s = luaL_tolstring(L, 1, &n);
    if (n > ERROR_TEXT_MAX)
        lua_pushfstring(L, "%s... (%d bytes)", lua_pushlstring(L, s, ERROR_TEXT_MAX), (int)n);
    return 1;
}

/*
 * An error value, or a handler's second return value, as text. A string is
 * taken as it is; anything else goes through tostring() in a protected call
 * with at most a second of the budget, so a __tostring that raises or loops
 * costs the handler its message, not the call its summary.
 */
const char *evl_error_text(struct evl_host *h, int idx)
{
    lua_State *L = h->L;
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) == LUA_TSTRING) {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        if (n <= ERROR_TEXT_MAX) {
            lua_pushvalue(L, idx);
            return s;
        }
    }
    double now = evl_monotonic(), until = now + ERROR_TEXT_SECONDS;
    lua_pushcfunction(L, tostring_bounded);
    lua_pushvalue(L, idx);
    if (evl_call(h, 1, 1, until < h->call.deadline ? until : h->call.deadline) != LUA_OK ||
        lua_type(L, -1) != LUA_TSTRING) {
        lua_pop(L, 1);
        lua_pushfstring(L, "(a %s value whose __tostring failed)", luaL_typename(L, idx));
    }
    return lua_tostring(L, -1);
}

/* Searcher for the compiled-in lua/ tree ($EVENTILATOR_LUA_DIR overrides it). */
static int search_embedded(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    const char *dir = getenv("EVENTILATOR_LUA_DIR");
    if (dir && *dir) {
        lua_pushstring(L, name);
        luaL_gsub(L, name, ".", "/");
        lua_pushfstring(L, "%s/%s.lua", dir, lua_tostring(L, -1));
        const char *path = lua_tostring(L, -1);
        FILE *f = fopen(path, "r");
        if (f) {
            fclose(f);
            if (luaL_loadfilex(L, path, "t") != LUA_OK)
                return luaL_error(L, "%s", lua_tostring(L, -1));
            lua_pushstring(L, path);
            return 2;
        }
        lua_settop(L, 1);
    }
    for (const struct evl_embedded *e = evl_embedded; e->module; e++) {
        if (strcmp(e->module, name) != 0)
            continue;
        lua_pushfstring(L, "@%s", e->path);
        /* bytecode from this build; the source if the VM refuses it */
        if (luaL_loadbufferx(L, e->bytecode, e->bclen, lua_tostring(L, -1), "b") != LUA_OK) {
            lua_pop(L, 1);
            if (luaL_loadbufferx(L, e->source, e->len, lua_tostring(L, -1), "t") != LUA_OK)
                return luaL_error(L, "%s", lua_tostring(L, -1));
        }
        lua_pushstring(L, e->path);
        return 2;
    }
    lua_pushfstring(L, "no compiled-in module '%s'", name);
    return 1;
}

/*
 * fmt with only %s, %d (of an integer) and %%, formatted as string.format
 * would, into the buffer pushed: 1. Anything else (a width, %q, a float for
 * %d, a missing argument) returns 0 having pushed nothing, and the caller asks
 * string.format itself, errors included. Opening `string` for the shipped
 * log rule's "%s %s" was ~4% of an event call's instructions.
 */
static int simple_format(lua_State *L, int n)
{
    size_t len;
    const char *f = lua_tolstring(L, 1, &len), *end = f + len;
    int arg = 1;
    for (const char *p = f; p < end; p++) {
        if (*p != '%')
            continue;
        if (++p == end)
            return 0; /* a lone % at the end */
        if (*p == '%')
            continue;
        if (++arg > n || !(*p == 's' || (*p == 'd' && lua_isinteger(L, arg))))
            return 0;
    }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    arg = 1;
    for (const char *p = f; p < end; p++) {
        if (*p != '%') {
            luaL_addchar(&b, *p);
        } else if (*++p == '%') {
            luaL_addchar(&b, '%');
        } else if (*p == 'd') {
            char num[32]; /* a 64-bit integer: 20 digits and a sign */
            luaL_addlstring(&b, num, (size_t)snprintf(num, sizeof num, LUA_INTEGER_FMT,
                                                      (LUAI_UACINT)lua_tointeger(L, ++arg)));
        } else {
            luaL_tolstring(L, ++arg, NULL); /* __tostring and __name, as %s does */
            luaL_addvalue(&b);
        }
    }
    luaL_pushresult(&b);
    return 1;
}

/* log.debug/info/warn/error(fmt, ...): string.format, then one log line. */
static int l_log(lua_State *L)
{
    int level = (int)lua_tointeger(L, lua_upvalueindex(1));
    int n = lua_gettop(L);
    if (n > 1 && lua_type(L, 1) == LUA_TSTRING && simple_format(L, n)) {
        /* formatted without the string library */
    } else if (n > 1) {
        lua_getglobal(L, "string");
        lua_getfield(L, -1, "format");
        lua_insert(L, 1);
        lua_pop(L, 1);
        lua_call(L, n, 1);
    } else {
        luaL_tolstring(L, 1, NULL);
    }
    evl_log((enum evl_level)level, "%s", lua_tostring(L, -1));
    return 0;
}

static void push_log_table(lua_State *L)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    lua_createtable(L, 0, 4);
    for (int i = 0; i < 4; i++) {
        lua_pushinteger(L, i);
        lua_pushcclosure(L, l_log, 1);
        lua_setfield(L, -2, names[i]);
    }
}

static int preload_value(lua_State *L)
{
    lua_pushvalue(L, lua_upvalueindex(1));
    return 1;
}

/* The value on top becomes registry[name] and require(name); it stays on top. */
static void expose(lua_State *L, const char *name)
{
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, name);
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushvalue(L, -2);
    lua_pushcclosure(L, preload_value, 1);
    lua_setfield(L, -2, name);
    lua_pop(L, 1);
}

static void preload(lua_State *L, const char *name, lua_CFunction f)
{
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushcfunction(L, f);
    lua_setfield(L, -2, name);
    lua_pop(L, 1);
}

/*
 * The base's __index: standard globals from _G, and the bindings on first
 * touch (rawset into the base afterwards, so the lookup happens once).
 */
static int base_index(lua_State *L)
{
    const char *k = lua_tostring(L, 2);
    const char *mod = NULL;
    if (k && strcmp(k, "json") == 0)
        mod = "cjson";
    else if (k && (strcmp(k, "http") == 0 || strcmp(k, "tcp") == 0))
        mod = lua_pushfstring(L, "eventilator.%s", k);
    else if (k && strcmp(k, "dedupe") == 0)
        mod = "eventilator.dedupe";
    else if (k && strcmp(k, "silence") == 0)
        mod = "eventilator.silence";
    if (k && strcmp(k, "redis") == 0) {
        /* the binding, with connect() defaulting to config.redis */
        lua_getglobal(L, "require");
        lua_pushliteral(L, "eventilator.store");
        lua_call(L, 1, 1);
        lua_getfield(L, -1, "rule_global");
    } else if (mod) {
        lua_getglobal(L, "require");
        lua_pushstring(L, mod);
        lua_call(L, 1, 1);
    } else {
        lua_pushvalue(L, 2);
        lua_gettable(L, lua_upvalueindex(1)); /* _G */
        return 1;
    }
    lua_pushvalue(L, 2);
    lua_pushvalue(L, -2);
    lua_rawset(L, 1);
    return 1;
}

const char *evl_exe_dir(char *buf, size_t cap)
{
    ssize_t n = readlink("/proc/self/exe", buf, cap - 1); /* always an absolute path */
    if (n <= 0)
        return NULL;
    buf[n] = '\0';
    *strrchr(buf, '/') = '\0';
    return buf;
}

#ifndef EVL_LEAN
/* Where the full runtime's C modules live, relative to the executable: into package.cpath (on top). */
static void add_module_path(lua_State *L)
{
    char exe[PATH_MAX];
    if (!evl_exe_dir(exe, sizeof exe))
        return;
    lua_getfield(L, -1, "cpath"); /* the package table is on top */
    lua_pushfstring(L, "%s/../../lib/eventilator/?.so;%s", exe, lua_tostring(L, -1));
    lua_setfield(L, -3, "cpath");
    lua_pop(L, 1);
}
#endif

/*
 * Standard libraries: opening all ten costs ~45% of a lean call's
 * instructions, so only `base` opens at start; the others open on first
 * touch of their global, or on require. `string` opens on the first string
 * method call too (a stub metatable for strings), and `package` installs the
 * searcher of the compiled-in tree when it opens. Only `pairs(_G)` can tell.
 */
/*
 * A rule cannot end the call: os.exit after a failed handler would turn a
 * retryable failure into a silent success, and skip the delivery record.
 */
static int no_exit(lua_State *L)
{
    return luaL_error(L, "os.exit is not available to rules: return nil, err to fail a handler");
}

static int open_os(lua_State *L)
{
    luaopen_os(L);
    lua_pushcfunction(L, no_exit);
    lua_setfield(L, -2, "exit");
    return 1;
}

static const luaL_Reg lazy_libs[] = {
    {LUA_STRLIBNAME, luaopen_string}, {LUA_TABLIBNAME, luaopen_table},
    {LUA_IOLIBNAME, luaopen_io},      {LUA_OSLIBNAME, open_os},
    {LUA_MATHLIBNAME, luaopen_math},  {LUA_UTF8LIBNAME, luaopen_utf8},
    {LUA_COLIBNAME, luaopen_coroutine}, {LUA_DBLIBNAME, luaopen_debug},
    {NULL, NULL},
};

/* package, with searcher 2 (after preload) for the compiled-in lua/ tree */
static int open_package(lua_State *L)
{
    luaopen_package(L);
    lua_getfield(L, -1, "searchers");
    for (lua_Integer i = (lua_Integer)lua_rawlen(L, -1); i >= 2; i--) {
        lua_rawgeti(L, -1, i);
        lua_rawseti(L, -2, i + 1);
    }
    lua_pushcfunction(L, search_embedded);
    lua_rawseti(L, -2, 2);
    lua_pop(L, 1);
#ifndef EVL_LEAN
    add_module_path(L);
#endif
    return 1;
}

static int global_index(lua_State *L)
{
    const char *k = lua_tostring(L, 2);
    if (k && (strcmp(k, "require") == 0 || strcmp(k, LUA_LOADLIBNAME) == 0)) {
        luaL_requiref(L, LUA_LOADLIBNAME, open_package, 1); /* also sets _G.require */
        lua_pushvalue(L, 2);
        lua_rawget(L, 1);
        return 1;
    }
    for (const luaL_Reg *lib = lazy_libs; k && lib->name; lib++)
        if (strcmp(lib->name, k) == 0) {
            luaL_requiref(L, lib->name, lib->func, 1); /* sets _G[name] too */
            return 1;
        }
    return 0;
}

/* The strings' stand-in metatable: the first method call opens `string`. */
static int string_index(lua_State *L)
{
    luaL_requiref(L, LUA_STRLIBNAME, luaopen_string, 1); /* sets the real metatable */
    lua_pushvalue(L, 2);
    lua_gettable(L, -2);
    return 1;
}

/*
 * The tables every call fills, made at their final size: lua_newstate's
 * globals table starts empty, and growing it to base's 25 functions rehashed
 * it six times (with package.loaded and .preload, ~3% of a call). Only in a
 * fresh state (empty globals: nothing loaded can hold the old table); the
 * host module in a stock lua5.4 (lhost.c) opens into the caller's state.
 */
static void presize(lua_State *L)
{
    int top = lua_gettop(L);
    lua_pushglobaltable(L);
    lua_pushnil(L);
    int fresh = lua_next(L, -2) == 0 && !lua_getmetatable(L, -1);
    lua_settop(L, top);
    if (!fresh)
        return;
    lua_createtable(L, 0, 40);
    lua_rawseti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
    const char *const subs[] = {LUA_LOADED_TABLE, LUA_PRELOAD_TABLE};
    for (int i = 0; i < 2; i++) {
        if (lua_getfield(L, LUA_REGISTRYINDEX, subs[i]) == LUA_TNIL) {
            lua_createtable(L, 0, 16);
            lua_setfield(L, LUA_REGISTRYINDEX, subs[i]);
        }
        lua_pop(L, 1);
    }
}

static void open_libs(lua_State *L)
{
    presize(L);
    luaL_requiref(L, LUA_GNAME, luaopen_base, 1);
    lua_pop(L, 1);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushcfunction(L, open_package);
    lua_setfield(L, -2, LUA_LOADLIBNAME);
    for (const luaL_Reg *lib = lazy_libs; lib->name; lib++) {
        lua_pushcfunction(L, lib->func);
        lua_setfield(L, -2, lib->name);
    }
    lua_pop(L, 1);
    lua_pushglobaltable(L);
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, global_index);
    lua_setfield(L, -2, "__index");
    lua_setmetatable(L, -2);
    lua_pop(L, 1);
    lua_pushliteral(L, "");
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, string_index);
    lua_setfield(L, -2, "__index");
    lua_setmetatable(L, -2);
    lua_pop(L, 1);
}


/* Runs inside the caller's lua_pcall. */
int evl_host_open(struct evl_host *h, const luaL_Reg *linked)
{
    lua_State *L = h->L;
    open_libs(L);
    for (; linked && linked->name; linked++)
        preload(L, linked->name, linked->func);
    preload(L, "eventilator.pattern", evl_open_pattern);
    /* the log table, also as require("eventilator.log") */
    push_log_table(L);
    expose(L, "eventilator.log");
    /* the base every rule environment inherits from */
    lua_createtable(L, 0, 8); /* base table, log at -2 */
    lua_insert(L, -2);
    lua_setfield(L, -2, "log");
    lua_createtable(L, 0, 1);
    lua_pushglobaltable(L);
    lua_pushcclosure(L, base_index, 1);
    lua_setfield(L, -2, "__index");
    lua_setmetatable(L, -2);
    /* a rule env = { on = ... } with metatable { __index = base } */
    lua_createtable(L, 0, 1);
    lua_insert(L, -2);
    lua_setfield(L, -2, "__index");
    lua_setfield(L, LUA_REGISTRYINDEX, "eventilator.base_mt");
    return 0;
}

/* After the config is loaded: expose it to rules and modules. */
void evl_open_host_module(lua_State *L, struct evl_host *h)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->config_ref);
    expose(L, "eventilator.config");
    lua_getfield(L, LUA_REGISTRYINDEX, "eventilator.base_mt");
    lua_getfield(L, -1, "__index");
    lua_pushvalue(L, -3);
    lua_setfield(L, -2, "config");
    lua_pop(L, 3);
}
