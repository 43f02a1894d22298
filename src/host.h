/*
 * host.h: what the pieces of the host share. One struct per call; the Lua
 * state owns everything else (config, handlers, rule files) through
 * registry references.
 */
#ifndef EVENTILATOR_HOST_H
#define EVENTILATOR_HOST_H

#include <lua.h>
#include "event.h"

#define EVL_DEFAULT_BUDGET 45.0

struct evl_host {
    lua_State *L;
    const char *name;        /* basename of argv[0] */
    enum evl_mode mode;
    int argc;
    char **argv;
    double t0;               /* CLOCK_MONOTONIC at the first start (kept across handover) */
    double deadline;         /* t0 + budget */
    double budget;
    const char *config_path;
    const char *config_format; /* "lua", "legacy TOML", "built-in defaults" */
    int config_ref;          /* the loaded config table */
    int files_ref;           /* list of { path, ok, err, patterns = {...} } */
    int handlers_ref;        /* list of { fn, file, line, patterns } in run order */
    int files_failed;
    int lean;                /* the static start-up binary: no cjson, no http */
    int retry;               /* this call is Sentinel's retry of a failed one */
    const char *cache_dir;   /* state_dir when writable: compiled rule files */
    const char *done;        /* handover: handler numbers already run */
    const char *handover;    /* why the lean binary handed over, or NULL */
};

/* host.c */
int evl_host_open(struct evl_host *h);
int evl_traceback(lua_State *L);
/* A unique value a lean stub raises to ask for the full runtime. */
void evl_push_handover_marker(lua_State *L);
int evl_is_handover_marker(lua_State *L, int idx);
void evl_open_host_module(lua_State *L, struct evl_host *h);

/* config.c */
int evl_config_load(struct evl_host *h);
void evl_config_open_log(struct evl_host *h);
const char *evl_config_string(struct evl_host *h, const char *section, const char *key);

/* rules.c */
int evl_rules_load(struct evl_host *h);
int evl_rules_match(struct evl_host *h, const char *name); /* pushes a list */
int evl_rules_need_full(struct evl_host *h, int matched);
int evl_mentions_full_only(const char *s, size_t n);
int evl_rules_run(struct evl_host *h, int matched, int ev, int *failed, int *ran);

/* levent.c */
void evl_push_event(lua_State *L, const struct evl_event *ev, int nargs, char **args);
void evl_warn_patterns(lua_State *L, int list, int entry, int line);

/* budget.c */
void evl_budget_set(lua_State *L, double deadline);
void evl_budget_clear(lua_State *L);
void evl_watchdog_arm(double seconds, const char *what);
void evl_watchdog_disarm(void);

/* handover.c */
void evl_handover(struct evl_host *h, const char *reason, const char *done);

/* readfile.c */
char *evl_read_file(const char *path, size_t max, size_t *len, int *err);

/* cli.c */
void evl_push_cli_host(lua_State *L, struct evl_host *h);

#endif
