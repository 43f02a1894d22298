/*
 * handover.c: the one home of the lean/full split.
 *
 * The lean start-up binary has no lua-cjson, no libcurl and no crypto
 * (they exist only as shared objects, and the lean binary is static so that
 * it starts as fast as /bin/true). A call that needs them is handed to
 * eventilator-full with the same argv: the full runtime loads the same
 * config and rules, skips the handlers already run (EVENTILATOR_DONE), and
 * keeps the first start's clock (EVENTILATOR_T0) so the time budget is one.
 *
 * Which calls: decided before running anything, per matched handler. Rule
 * files are scanned once when compiled (the result is kept with the cached
 * bytecode) for the lines that name a full-only word: `http`, `json`,
 * `cjson`, `crypto` and every shipped module that needs them, a list the
 * build derives from lua/ (tools/fullonly.lua). A matched handler whose own
 * lines (linedefined..lastlinedefined) hold such a line goes to the full
 * runtime at once. What the scan misses (a helper function of the file, a
 * user's module) reaches a stub that raises the marker, and the call is
 * handed over from there, skipping what already succeeded.
 */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "fullonly.h" /* generated: evl_full_words[] */
#include "host.h"
#include "log.h"
#include "watch_env.h"

#define ENV_T0 "EVENTILATOR_T0"
#define ENV_DONE "EVENTILATOR_DONE"
#define ENV_WHY "EVENTILATOR_HANDOVER"
#define ENV_DELIVERY "EVENTILATOR_DELIVERY"

static char marker;

void evl_push_handover_marker(lua_State *L)
{
    lua_pushlightuserdata(L, &marker);
}

int evl_is_handover_marker(lua_State *L, int idx)
{
    return lua_touserdata(L, idx) == &marker;
}

/*
 * At the start of main: what a handover (or the watcher) passed along is
 * kept in h and taken out of the environment, so what handlers start does
 * not inherit it. evl_handover puts it back for the full runtime.
 */
void evl_handover_take_env(struct evl_host *h)
{
    const char *t0 = getenv(ENV_T0), *done = getenv(ENV_DONE), *why = getenv(ENV_WHY);
    const char *delivery = getenv(ENV_DELIVERY);
    if (t0 && *t0) {
        double v = strtod(t0, NULL);
        if (v > 0 && v <= h->t0)
            h->t0 = v;
    }
    h->done = done ? strdup(done) : NULL;
    h->handover = why ? strdup(why) : NULL;
    h->delivery = delivery && *delivery ? strdup(delivery) : NULL;
    /* unsetenv walks the whole environment (~2k instructions): only what is set */
    if (done)
        unsetenv(ENV_DONE);
    if (why)
        unsetenv(ENV_WHY);
    if (t0)
        unsetenv(ENV_T0);
    if (delivery)
        unsetenv(ENV_DELIVERY);
}

/* A stub for what only the full runtime has: ask for the handover. */
static int needs_full(lua_State *L)
{
    evl_push_handover_marker(L);
    return lua_error(L);
}

/* The lean binary's stand-ins for the full-only C modules. */
void evl_handover_open(lua_State *L, struct evl_host *h)
{
#ifdef EVL_LEAN
    static const char *const stubs[] = {"eventilator.http", "cjson", "eventilator.crypto"};
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    for (size_t i = 0; i < sizeof stubs / sizeof stubs[0]; i++) {
        lua_pushcfunction(L, needs_full);
        lua_setfield(L, -2, stubs[i]);
    }
    lua_pop(L, 1);
    h->lean = 1;
#else
    (void)L;
    (void)h;
    (void)needs_full;
#endif
}

static int is_word(unsigned char c)
{
    return (c | 32) >= 'a' && (c | 32) <= 'z' ? 1 : c == '_' || (c >= '0' && c <= '9');
}

/*
 * Push a string of uint32 line numbers: the lines of src that name a
 * full-only word (as a whole word: `https_port` is not `http`).
 */
void evl_handover_scan(lua_State *L, const char *s, size_t n)
{
    luaL_Buffer b;
    uint32_t line = 1, last = 0;
    luaL_buffinit(L, &b);
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n') {
            line++;
            i++;
        } else if (is_word(c) && !(c >= '0' && c <= '9')) {
            size_t j = i;
            while (j < n && is_word((unsigned char)s[j]))
                j++;
            for (size_t w = 0; last != line && w < sizeof evl_full_words / sizeof evl_full_words[0]; w++)
                if (j - i == evl_full_words[w].n && memcmp(s + i, evl_full_words[w].w, j - i) == 0) {
                    luaL_addlstring(&b, (const char *)&line, sizeof line);
                    last = line;
                }
            i = j;
        } else {
            i++;
        }
    }
    luaL_pushresult(&b);
}

/* Does the handler at the top of the stack (an entry) name a full-only word in its own lines? */
static int handler_needs_full(lua_State *L)
{
    size_t n = 0;
    int need = 0;
    int t = lua_getfield(L, -1, "full_lines"); /* kept with the file (rules.c) */
    const char *lines = lua_tolstring(L, -1, &n);
    if (t == LUA_TSTRING && n > 0) {
        lua_Debug ar;
        lua_getfield(L, -2, "fn");
        if (lua_getinfo(L, ">S", &ar)) {
            for (size_t i = 0; i + sizeof(uint32_t) <= n && !need; i += sizeof(uint32_t)) {
                uint32_t l;
                memcpy(&l, lines + i, sizeof l);
                need = (int)l >= ar.linedefined && (int)l <= ar.lastlinedefined;
            }
        }
    }
    lua_pop(L, 1);
    return need;
}

int evl_handover_needed(struct evl_host *h, int matched)
{
    lua_State *L = h->L;
    if (!h->lean)
        return 0;
    lua_Integer n = (lua_Integer)lua_rawlen(L, matched);
    int need = 0;
    for (lua_Integer i = 1; i <= n && !need; i++) {
        lua_rawgeti(L, matched, i);
        need = handler_needs_full(L);
        lua_pop(L, 1);
    }
    return need;
}

void evl_handover(struct evl_host *h, const char *reason, const char *done)
{
    char exe[PATH_MAX], full[PATH_MAX + 64], t0[64];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) {
        evl_log(EVL_ERROR, "cannot find the full runtime: /proc/self/exe: %s", strerror(errno));
        return;
    }
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash)
        *slash = '\0';
    snprintf(full, sizeof full, "%s/../libexec/eventilator/eventilator-full", exe);
    snprintf(t0, sizeof t0, "%.9f", h->t0);
    setenv(ENV_T0, t0, 1);
    setenv(ENV_WHY, reason, 1);
    setenv(ENV_DONE, done ? done : "", 1);
    if (h->delivery)
        setenv(ENV_DELIVERY, h->delivery, 1);
    evl_watch_env_restore(); /* the full runtime reads watch mode's ev fields again */
    /* the watchdog's timer survives execve; the full runtime re-arms it from the same t0 */
    execv(full, h->argv);
    evl_log(EVL_ERROR, "cannot start the full runtime %s: %s", full, strerror(errno));
}
