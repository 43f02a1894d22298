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
 * build derives from lua/ (tools/derive.lua). A matched handler whose own
 * lines (linedefined..lastlinedefined) hold such a line goes to the full
 * runtime at once. What the scan misses (a helper function of the file, a
 * user's module) reaches a stub that raises evl_raise_full (host.c), and
 * the call is handed over from there, skipping what already succeeded.
 *
 * Every variable a call takes from the environment lives here (the
 * handover's, the watcher's delivery id and ev fields): read once into
 * h->call, unset so handlers do not inherit it, put back for an exec.
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
#include "handover.h"
#include "log.h"
#include "entry.h"

/* What a call takes from the environment, in h->call (the order of `env`). */
enum { E_T0, E_DONE, E_WHY, E_DELIVERY, E_SOURCE, E_SENTINEL, E_SENTINELS, E_SYNTHETIC, E_N };
static const char *const env[E_N] = {
    "EVENTILATOR_T0", "EVENTILATOR_DONE", "EVENTILATOR_HANDOVER", "EVENTILATOR_DELIVERY",
    "EVENTILATOR_SOURCE", "EVENTILATOR_SENTINEL", "EVENTILATOR_SENTINELS", "EVENTILATOR_SYNTHETIC",
};
static const char *taken[E_N]; /* as they were, to put back */

void evl_handover_take_env(struct evl_host *h)
{
    struct evl_call *c = &h->call;
    for (int i = 0; i < E_N; i++) {
        const char *v = getenv(env[i]);
        taken[i] = v && *v ? strdup(v) : NULL;
        /* unsetenv walks the whole environment (~2k instructions): only what is set */
        if (v)
            unsetenv(env[i]);
    }
    if (taken[E_T0]) {
        double v = strtod(taken[E_T0], NULL);
        if (v > 0 && v <= c->t0) {
            c->deadline += v - c->t0;
            c->t0 = v;
        }
    }
    c->inherited = taken[E_DONE];
    c->handover = taken[E_WHY];
    c->delivery = taken[E_DELIVERY];
    c->origin.source = taken[E_SOURCE];
    c->origin.sentinel = taken[E_SENTINEL];
    c->origin.sentinels = taken[E_SENTINELS];
    c->origin.synthetic = taken[E_SYNTHETIC] && strcmp(taken[E_SYNTHETIC], "1") == 0;
}

/* The lean binary's stand-ins for the full-only C modules: each asks for the handover. */
void evl_handover_open(lua_State *L, struct evl_host *h)
{
#ifdef EVL_LEAN
    static const char *const stubs[] = {"eventilator.http", "cjson", "eventilator.crypto"};
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    for (size_t i = 0; i < sizeof stubs / sizeof stubs[0]; i++) {
        lua_pushcfunction(L, evl_raise_full);
        lua_setfield(L, -2, stubs[i]);
    }
    lua_pop(L, 1);
    h->lean = 1;
#else
    (void)L;
    (void)h;
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
    int t = lua_getfield(L, -1, EVL_ENTRY_FULL_LINES); /* kept with the file (rules.c) */
    const char *lines = lua_tolstring(L, -1, &n);
    if (t == LUA_TSTRING && n > 0) {
        lua_Debug ar;
        lua_getfield(L, -2, EVL_ENTRY_FN);
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
    if (!evl_exe_dir(exe, sizeof exe)) {
        evl_log(EVL_ERROR, "cannot find the full runtime: /proc/self/exe: %s", strerror(errno));
        return;
    }
    snprintf(full, sizeof full, "%s/../libexec/eventilator/eventilator-full", exe);
    snprintf(t0, sizeof t0, "%.9f", h->call.t0);
    for (int i = E_DELIVERY; i < E_N; i++) /* the full runtime reads them again */
        if (taken[i])
            setenv(env[i], taken[i], 1);
    setenv(env[E_T0], t0, 1);
    setenv(env[E_WHY], reason, 1);
    setenv(env[E_DONE], done ? done : "", 1);
    /* the watchdog's timer survives execve; the full runtime re-arms it from the same t0 */
    execv(full, h->call.argv);
    evl_log(EVL_ERROR, "cannot start the full runtime %s: %s", full, strerror(errno));
}
