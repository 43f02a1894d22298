/*
 * set.c: the loaded set (set.h): config and rules loaded once into a host
 * and Lua state of their own, as an event call has them before its event;
 * and one event run from it in a runner, script mode's own event path
 * (call.c). A reload builds a new set and swaps it in (watch.c); runners
 * already forked keep their copy until they exit.
 */
#include <arpa/inet.h>
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
    size_t i = set->capnames ? evl_fnv(name, strlen(name), EVL_FNV0) % set->capnames : 0;
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

static const char local_seed[] = "127.0.0.1:26379"; /* no watch.sentinels: Sentinel's own port, here */

/*
 * The strings of the list at idx, as a malloc'd array of pointers into it:
 * the strings stay the Lua state's, anchored by the list (the config, or a
 * copy kept in the set's registry), as long as the set lives.
 */
static const char **strlist(lua_State *L, int idx, size_t *n)
{
    *n = lua_type(L, idx) == LUA_TTABLE ? lua_rawlen(L, idx) : 0;
    const char **out = *n ? calloc(*n + 1, sizeof *out) : NULL;
    for (size_t i = 0; out && i < *n; i++) {
        lua_rawgeti(L, idx, (lua_Integer)i + 1);
        out[i] = lua_tostring(L, -1) ? lua_tostring(L, -1) : "";
        lua_pop(L, 1);
    }
    return out;
}

int watch_set_listen(const char *spec, struct sockaddr_storage *ss, socklen_t *len)
{
    char host[INET6_ADDRSTRLEN + 2];
    const char *colon = strrchr(spec, ':');
    memset(ss, 0, sizeof *ss);
    if (!colon || colon == spec || strlen(colon + 1) < 1 || strlen(colon + 1) > 5 ||
        strspn(colon + 1, "0123456789") != strlen(colon + 1) || atoi(colon + 1) > 65535)
        return -1;
    size_t n = (size_t)(colon - spec);
    int port = atoi(colon + 1);
    if (spec[0] == '[') {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        if (n < 3 || spec[n - 1] != ']' || n - 2 >= sizeof host)
            return -1;
        memcpy(host, spec + 1, n - 2);
        host[n - 2] = '\0';
        if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1)
            return -1;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        *len = sizeof *a;
        return 0;
    }
    struct sockaddr_in *a = (struct sockaddr_in *)ss;
    if (n >= sizeof host)
        return -1;
    memcpy(host, spec, n);
    host[n] = '\0';
    if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
        return -1;
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)port);
    *len = sizeof *a;
    return 0;
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
    struct sockaddr_storage ss;
    socklen_t len;
    if (s->listen && watch_set_listen(s->listen, &ss, &len) < 0)
        luaL_error(L, "%s: watch.listen: expected an IP address and a port, such as \"127.0.0.1:9121\" or "
                   "\"[::1]:9121\" (no host names), got \"%s\"", h->config_path, s->listen);
}

/*
 * config.watch -> settings. The schema (lua/eventilator/watch.lua declares
 * the section) has given every key its default and checked its type.
 */
static void read_settings(lua_State *L, struct evl_host *h, struct watch_settings *s)
{
    const char *sd = evl_config_string(h, NULL, "state_dir");
    s->state_dir = sd ? sd : EVL_STATE_DIR;
    s->budget = h->budget;
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->config_ref);
    lua_getfield(L, -1, "watch");
    int t = lua_gettop(L);
    lua_getfield(L, t, "sentinels");
    s->seeds = strlist(L, -1, &s->nseeds);
    lua_pop(L, 1);
    if (!s->seeds) {
        static const char *local[] = {local_seed, NULL};
        s->seeds = local; /* not freed: watch_set_free knows it */
        s->nseeds = 1;
    }
    lua_getfield(L, t, "discover");
    s->discover = lua_toboolean(L, -1);
    lua_getfield(L, t, "masters");
    s->masters = strlist(L, -1, &s->nmasters);
    lua_settop(L, t - 2);
    s->username = evl_config_string(h, "watch", "username");
    s->password = evl_config_string(h, "watch", "password");
    s->dedupe_window = evl_config_number(h, "watch", "dedupe_window", 0);
    s->concurrency = (int)evl_config_number(h, "watch", "concurrency", 0);
    s->queue = (int)evl_config_number(h, "watch", "queue", 0);
    s->retries = (int)evl_config_number(h, "watch", "retries", 0);
    s->timeout = evl_config_number(h, "watch", "timeout", 0);
    s->listen = evl_config_string(h, "watch", "listen");
    double reuse = evl_config_number(h, "watch", "reuse", 0);
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
    if (evl_config_load_as(h, h->name) < 0)
        return luaL_error(L, "the config failed to load (the reason is logged above)");
    evl_open_host_module(L, h);
    read_settings(L, h, &set->s);
    /* cluster = { ... } checked now: a watcher or worker with a wrong one does not start (or reload) */
    lua_getglobal(L, "require");
    lua_pushliteral(L, "eventilator.cluster");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "settings");
    lua_call(L, 0, 2);
    if (lua_isnil(L, -2) && lua_isstring(L, -1))
        return luaL_error(L, "%s: %s", h->config_path, lua_tostring(L, -1));
    lua_pop(L, 3);
    evl_rules_load(h);
    if (h->files_failed)
        return luaL_error(L, "%d rule file(s) failed to load (the reasons are logged above)",
                          h->files_failed);
    return 0;
}

void watch_set_free(struct watch_set *set)
{
    if (!set)
        return;
    if (set->host && set->host->L)
        lua_close(set->host->L);
    free(set->host);
    if (set->s.nseeds && set->s.seeds[0] != local_seed)
        free(set->s.seeds);
    free(set->s.masters);
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
    lua_State *S = set->host->L;
    size_t n = lua_istable(L, idx) ? lua_rawlen(L, idx) : 0;
    if (n == 0)
        return;
    lua_createtable(S, (int)n, 0); /* a copy in the set's own state, which anchors it */
    for (size_t i = 1; i <= n; i++) {
        lua_rawgeti(L, idx, (lua_Integer)i);
        lua_pushstring(S, lua_tostring(L, -1) ? lua_tostring(L, -1) : "");
        lua_rawseti(S, -2, (lua_Integer)i);
        lua_pop(L, 1);
    }
    if (set->s.seeds[0] != local_seed)
        free(set->s.seeds);
    set->s.seeds = strlist(S, -1, &set->s.nseeds);
    lua_setfield(S, LUA_REGISTRYINDEX, "eventilator.watch.seeds");
}

int watch_set_run(struct watch_set *set, char **argv, const struct evl_origin *o,
                  const char *delivery, const char *done, const sigset_t *mask)
{
    struct evl_host *h = set->host;
    evl_event_begin(h, 3, argv); /* h->call afresh: the budget from now */
    h->call.origin = *o;
    h->call.delivery = delivery && *delivery ? delivery : NULL;
    h->call.inherited = done;
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
