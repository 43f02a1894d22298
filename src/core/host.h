/*
 * host.h: the host every call runs in (host.c). One struct per process or
 * loaded set; the Lua state owns everything else through registry
 * references. `call` is what lives for one event: a watch runner clears it
 * at once for each (evl_event_begin, call.c); the rest lives as long as the
 * loaded config and rule files.
 */
#ifndef EVENTILATOR_HOST_H
#define EVENTILATOR_HOST_H

#include <stddef.h>

#include <lauxlib.h>
#include <lua.h>

#include "event.h"
#include "levent.h"
#include "statedir.h"

#define EVL_DEFAULT_BUDGET 45.0
#define EVL_MAX_BUDGET 55.0       /* Sentinel kills a script at 60 s */
#define EVL_DEFAULT_MEMORY_MIB 64
#define EVL_SCRIPT_RETRY_DELAY 30.0 /* s: Sentinel's default script-retry-delay */

/* The Lua state's allocator keeps count (host.c). */
struct evl_mem {
    size_t used, limit; /* bytes; SIZE_MAX = none (long-running subcommands) */
    int hit;            /* an allocation was refused for the limit */
};

/* What a config load read (config.c): the files, base first, missing ones left out. */
struct evl_config_files {
    int n;
    const char *path[2];
    const char *format[2]; /* "lua", "legacy TOML" */
    const char *own;       /* the mode's own file: $EVENTILATOR_CONF or <confdir>/<name>.conf */
    char buf[2][4096];
};

struct evl_call {
    int argc;
    char **argv;
    double t0;              /* CLOCK_MONOTONIC at the call's start (the first start, across a handover) */
    double deadline;        /* t0 + budget */
    struct evl_origin origin; /* watch mode's fields */
    const char *delivery;   /* the watcher's id of this event: keys its delivery record */
    const char *handover;   /* why the lean binary handed this call over, or NULL */
    const char *inherited;  /* ids of the handlers the lean binary ran before it handed over */
    int retry;              /* Sentinel's retry of a failed call (delivery.c says so) */
};

struct evl_host {
    lua_State *L;
    const char *name;        /* basename of argv[0] */
    enum evl_mode mode;
    double budget;
    struct evl_mem mem;
    const char *config_path;   /* the last file read, or the mode's own if none exists */
    const char *config_format; /* its format: "lua", "legacy TOML", "built-in defaults (no file)" */
    const struct evl_config_files *config_files; /* every file read */
    int config_ref;          /* the loaded config table */
    int config_partial_ok;   /* a wrong setting fails only what reads it (else the whole load) */
    int config_failed;       /* top-level settings with an error: the call exits 1 */
    int problems_ref;        /* the config's problems, until logged (0: none) */
    int files_ref;           /* list of { path, ok, err, patterns = {...} } */
    int handlers_ref;        /* list of handler entries (entry.h) in run order; 0: not loaded */
    int files_failed;
    int strict_modes;        /* refuse rule files others could have written (config) */
    int lean;                /* the static start-up binary: no cjson, no http */
    struct evl_state state;  /* config state_dir, resolved once (statedir.c) */
    struct evl_call call;
    /* A handler (its id) succeeded, after its delivery record line: a cluster worker marks it
       done in the store before the next one starts (src/watch/cluster.c). NULL: nothing. */
    void (*on_ok)(struct evl_host *h, const char *id);
};

lua_State *evl_state_new(struct evl_host *h);
/*
 * Libraries (opened on first use), the searcher of the compiled-in lua/
 * tree, the base of every rule file's environment, and `linked`: C modules
 * the caller offers through package.preload (the start-up binary's
 * bindings), or NULL.
 */
int evl_host_open(struct evl_host *h, const luaL_Reg *linked);
int evl_traceback(lua_State *L);
/* After the config is loaded: config reaches rules and require("eventilator.config"). */
void evl_open_host_module(lua_State *L, struct evl_host *h);

#define EVL_CALL_FULL 100 /* evl_call's status: it reached for what only the full runtime has */
/*
 * The one way the host calls Lua: function and nargs arguments on the
 * stack, under lua_pcall with a traceback and the budget's count hook until
 * `deadline`. Returns lua_pcall's status with nres results or one error
 * value on the stack, or EVL_CALL_FULL. A refused allocation reads "memory
 * limit of N MiB reached".
 */
int evl_call(struct evl_host *h, int nargs, int nres, double deadline);
int evl_raise_full(lua_State *L); /* what the stand-ins of full-only modules raise */
/* The folder of the running executable (installed files lie relative to it), into buf, or NULL. */
const char *evl_exe_dir(char *buf, size_t cap);
/* The value at idx as text for a log line: protected, bounded in time and length. Pushed. */
const char *evl_error_text(struct evl_host *h, int idx);

#endif
