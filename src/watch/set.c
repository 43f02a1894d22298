/*
 * set.c: the loaded set, at the bottom of watch mode's stack (set.h): the
 * config and rules loaded once into a host and Lua state of their own,
 * exactly as an event call has them once config, log, host module and rule
 * files are loaded; the settings the layers above read; and one event run
 * from it in a runner (watch_set_run), the same event path script mode
 * runs (call.c), and the undoing of what one call leaves
 * (watch_set_reset). SIGHUP builds a new set, validated, and swaps it in
 * (watch.c); a broken file leaves the running one in place, and runners
 * already forked keep their copy until they exit.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "call.h"
#include "config.h"
#include "fnv.h"
#include "log.h"
#include "paths.h"
#include "rules.h"
#include "set.h"

static uint64_t hash(const char *s)
{
    return evl_fnv(s, strlen(s), EVL_FNV0);
}

/*
 * Does any handler match this name? Asked of rules.c once per distinct name
 * per loaded set (the names Sentinel uses are few), then answered from an
 * open-addressed table. Past 1024 names nothing more is cached.
 */
#define NAME_SLOTS 2048
int watch_set_matches(struct watch_set *set, const char *name)
{
    if (!set->names) {
        set->names = calloc(NAME_SLOTS, sizeof *set->names);
        set->capnames = set->names ? NAME_SLOTS : 0;
    }
    size_t i = set->capnames ? hash(name) % set->capnames : 0;
    for (; set->capnames && set->names[i].name; i = (i + 1) % set->capnames)
        if (strcmp(set->names[i].name, name) == 0)
            return set->names[i].hit;
    struct evl_host *h = set->host;
    evl_rules_match(h, name);
    int hit = lua_rawlen(h->L, -1) > 0;
    lua_pop(h->L, 1);
    if (set->capnames && set->nnames < NAME_SLOTS / 2 && (set->names[i].name = strdup(name))) {
        set->names[i].hit = hit;
        set->nnames++;
    }
    return hit;
}

int watch_set_wants(const struct watch_set *set, const char *pod)
{
    if (!set->s.masters || !pod)
        return 1;
    for (size_t i = 0; i < set->s.nmasters; i++)
        if (strcmp(set->s.masters[i], pod) == 0)
            return 1;
    return 0;
}

static char **strlist(lua_State *L, int idx, size_t *n)
{
    *n = 0;
    if (lua_type(L, idx) != LUA_TTABLE)
        return NULL;
    size_t len = lua_rawlen(L, idx);
    char **out = calloc(len + 1, sizeof *out);
    for (size_t i = 0; out && i < len; i++) {
        lua_rawgeti(L, idx, (lua_Integer)i + 1);
        out[(*n)++] = strdup(lua_tostring(L, -1) ? lua_tostring(L, -1) : "");
        lua_pop(L, 1);
    }
    return out;
}

static char *optstr(lua_State *L, int t, const char *k)
{
    lua_getfield(L, t, k);
    char *s = lua_type(L, -1) == LUA_TSTRING ? strdup(lua_tostring(L, -1)) : NULL;
    lua_pop(L, 1);
    return s;
}

static double num(lua_State *L, int t, const char *k)
{
    lua_getfield(L, t, k);
    double v = lua_tonumber(L, -1);
    lua_pop(L, 1);
    return v;
}

/* The ranges the schema does not know; raises with the reason. */
static void check_settings(lua_State *L, const struct evl_host *h, const struct watch_settings *s,
                           double reuse)
{
    if (s->dedupe_window < 0 || s->dedupe_window > 3600)
        luaL_error(L, "%s: watch.dedupe_window: expected seconds between 0 and 3600", h->config_path);
    if (s->concurrency < 1 || s->concurrency > 256)
        luaL_error(L, "%s: watch.concurrency: expected 1 to 256", h->config_path);
    if (s->queue < 1)
        luaL_error(L, "%s: watch.queue: expected at least 1", h->config_path);
    if (s->retries < 0 || s->retries > 100)
        luaL_error(L, "%s: watch.retries: expected 0 to 100", h->config_path);
    if (reuse < 1 || reuse > 1e9 || reuse != (double)(int)reuse)
        luaL_error(L, "%s: watch.reuse: expected an integer, at least 1", h->config_path);
    if (s->timeout <= 0 || s->timeout > 60)
        luaL_error(L, "%s: watch.timeout: expected seconds between 0 and 60", h->config_path);
}

/*
 * config.watch -> settings. The schema (lua/eventilator/watch.lua declares
 * the section) has given every key its default and checked its type.
 */
static void read_settings(lua_State *L, struct evl_host *h, struct watch_settings *s)
{
    const char *sd = evl_config_string(h, NULL, "state_dir");
    s->state_dir = strdup(sd ? sd : EVL_STATE_DIR);
    s->budget = h->budget;
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->config_ref);
    lua_getfield(L, -1, "watch");
    int t = lua_gettop(L);
    lua_getfield(L, t, "sentinels");
    s->seeds = strlist(L, -1, &s->nseeds);
    lua_pop(L, 1);
    if (!s->seeds || !s->nseeds) { /* Sentinel's own port, here */
        free(s->seeds);
        s->seeds = calloc(2, sizeof *s->seeds);
        s->seeds[0] = strdup("127.0.0.1:26379");
        s->nseeds = 1;
    }
    lua_getfield(L, t, "discover");
    s->discover = lua_toboolean(L, -1);
    lua_pop(L, 1);
    s->username = optstr(L, t, "username");
    s->password = optstr(L, t, "password");
    lua_getfield(L, t, "masters");
    s->masters = strlist(L, -1, &s->nmasters);
    lua_pop(L, 1);
    s->dedupe_window = num(L, t, "dedupe_window");
    s->concurrency = (int)num(L, t, "concurrency");
    s->queue = (int)num(L, t, "queue");
    s->retries = (int)num(L, t, "retries");
    s->timeout = num(L, t, "timeout");
    double reuse = num(L, t, "reuse");
    lua_settop(L, t - 2);
    check_settings(L, h, s, reuse);
    s->reuse = (int)reuse;
}

/*
 * The preload: what an event call does before its event (cli/main.c's
 * run_event) and that is the same for every event. A set whose config or
 * any rule file fails is refused (at start: no start; on SIGHUP: the running
 * set stays), so a run never meets a failed rule file: the re-load a script
 * call would give a fixed file happens on SIGHUP, validated first.
 */
static int pload(lua_State *L)
{
    struct watch_set *set = lua_touserdata(L, 1);
    struct evl_host *h = set->host;
    evl_host_open(h, NULL);
    if (evl_config_load(h) < 0)
        return luaL_error(L, "the config failed to load (the reason is logged above)");
    evl_open_host_module(L, h);
    read_settings(L, h, &set->s);
    evl_rules_load(h);
    if (h->files_failed)
        return luaL_error(L, "%d rule file(s) failed to load (the reasons are logged above)",
                          h->files_failed);
    return 0;
}

static void free_strs(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

void watch_set_free(struct watch_set *set)
{
    if (!set)
        return;
    if (set->host && set->host->L)
        lua_close(set->host->L);
    free(set->host);
    free_strs(set->s.seeds);
    free_strs(set->s.masters);
    free(set->s.username);
    free(set->s.password);
    free(set->s.state_dir);
    for (size_t i = 0; i < set->capnames; i++)
        free(set->names[i].name);
    free(set->names);
    free(set);
}

struct watch_set *watch_set_load(const char *name, char *why, size_t cap)
{
    struct watch_set *set = calloc(1, sizeof *set);
    struct evl_host *h = calloc(1, sizeof *h);
    lua_State *L = h ? evl_state_new(h) : NULL; /* the allocator of a call: memory_limit applies */
    if (!set || !h || !L) {
        snprintf(why, cap, "out of memory");
        free(set);
        free(h);
        if (L)
            lua_close(L);
        return NULL;
    }
    h->L = L;
    set->host = h;
    h->name = name;
    h->mode = EVL_NOTIFY;
    h->budget = EVL_DEFAULT_BUDGET;
    evl_event_begin(h, 0, NULL);
    h->strict_modes = 1;
    lua_pushcfunction(L, evl_traceback);
    lua_pushcfunction(L, pload);
    lua_pushlightuserdata(L, set);
    if (lua_pcall(L, 1, 0, 1) != LUA_OK) {
        snprintf(why, cap, "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "?");
        char *nl = strchr(why, '\n'); /* the message, not the traceback */
        if (nl)
            *nl = '\0';
        watch_set_free(set);
        return NULL;
    }
    lua_settop(L, 0);
    /* every run starts from this heap: leave it no garbage to copy or count */
    lua_gc(L, LUA_GCCOLLECT);
    return set;
}

void watch_set_seeds(struct watch_set *set, lua_State *L, int idx)
{
    size_t n;
    if (!lua_istable(L, idx) || lua_rawlen(L, idx) == 0)
        return;
    free_strs(set->s.seeds);
    set->s.seeds = strlist(L, idx, &n);
    set->s.nseeds = n;
}

int watch_set_run(struct watch_set *set, char **argv, const struct evl_origin *o,
                  const char *delivery, const sigset_t *mask)
{
    struct evl_host *h = set->host;
    evl_event_begin(h, 3, argv); /* h->call afresh: the budget from now */
    h->call.origin = *o;
    h->call.delivery = delivery && *delivery ? delivery : NULL;
    lua_gc(h->L, LUA_GCSTOP); /* as in a script call (budget.c restarts it if need be) */
    evl_event_arm(h); /* SIGTERM and the watchdog */
    if (mask)
        sigprocmask(SIG_SETMASK, mask, NULL); /* what waited is delivered now */
    lua_settop(h->L, 0);
    int code = evl_event_run(h);
    fflush(NULL); /* io.write from rules: exit() would, _exit does not */
    return code;
}

/* What handlers put in globals and upvalues stays, on purpose (docs/watch.md). */
void watch_set_reset(struct watch_set *set)
{
    evl_event_end(set->host);
}
