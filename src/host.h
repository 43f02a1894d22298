/*
 * host.h: what the pieces of the host share. One struct per call; the Lua
 * state owns everything else (config, handlers, rule files) through
 * registry references.
 */
#ifndef EVENTILATOR_HOST_H
#define EVENTILATOR_HOST_H

#include <stddef.h>
#include <sys/stat.h>

#include <lua.h>
#include "event.h"

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

struct evl_host {
    lua_State *L;
    const char *name;        /* basename of argv[0] */
    enum evl_mode mode;
    int argc;
    char **argv;
    double t0;               /* CLOCK_MONOTONIC at the first start (kept across handover) */
    double deadline;         /* t0 + budget */
    double armed;            /* the deadline the watchdog is armed for */
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
    int handlers_ref;        /* list of { fn, file, line, patterns } in run order */
    int ran_ref;             /* this event's matched entries, after they ran (ok, err, ms, skipped) */
    int files_failed;
    int strict_modes;        /* refuse rule files others could have written (config) */
    int lean;                /* the static start-up binary: no cjson, no http */
    int retry;               /* this call is Sentinel's retry of a failed one */
    const char *state_dir;   /* config state_dir, resolved once (statedir.c) */
    int state_ok;            /* state_dir exists, is ours, and only we can write it */
    const char *state_why;   /* why not, for the log */
    const char *done;        /* handover: handler numbers already run */
    const char *handover;    /* why the lean binary handed over, or NULL */
    const char *delivery;    /* $EVENTILATOR_DELIVERY: the watcher's id of this event */
    /* A handler (by "file:line") succeeded, after its delivery record line: a cluster worker
       marks it done in the store before the next one starts (cluster.c). NULL: nothing. */
    void (*on_ok)(struct evl_host *h, const char *id);
};

/* host.c */
lua_State *evl_state_new(struct evl_host *h);
int evl_host_open(struct evl_host *h);
int evl_traceback(lua_State *L);
void evl_open_host_module(lua_State *L, struct evl_host *h);
/*
 * The one way the host calls Lua: function and nargs arguments on the
 * stack, run under lua_pcall with a traceback and the count hook of the
 * budget until `deadline`. Like lua_pcall: returns its status, with nres
 * results or the error value on the stack. A refused allocation reads
 * "memory limit of N MiB reached".
 */
int evl_call(struct evl_host *h, int nargs, int nres, double deadline);
/* The value at idx as text for a log line: protected, bounded in time and length. Pushed. */
const char *evl_error_text(struct evl_host *h, int idx);

/* main.c: the event path (script mode, and the runs the watcher forks) */
void evl_event_arm(struct evl_host *h);
int evl_event_run(struct evl_host *h, int rules_loaded);

/* config.c: the one loader (docs/config.md) */
#define EVL_CONFIG_BROKEN (-1)  /* unreadable, does not parse or run: exit 1 */
#define EVL_CONFIG_REFUSED (-2) /* the trust rule: exit 1 */
int evl_config_load(struct evl_host *h);                      /* for h->name */
int evl_config_load_as(struct evl_host *h, const char *name); /* as a call named `name` loads it */
/*
 * Build the config a call named `name` reads, without installing it: pushes
 * the list of its problems (schema.h), then the config; returns 0, or a
 * negative with only the message pushed. f: what was read.
 */
int evl_config_build(struct evl_host *h, const char *name, struct evl_config_files *f);
/* The loaded config's problems (a list, maybe empty), taken: the log no longer tells them. */
void evl_config_push_problems(struct evl_host *h);
void evl_config_open_log(struct evl_host *h);
const char *evl_config_string(struct evl_host *h, const char *section, const char *key);
double evl_config_number(struct evl_host *h, const char *section, const char *key, double def);
/*
 * A loaded config builds a section's defaults on its first read; whatever
 * walks the whole table (printing, checking, pairs) calls this first.
 */
void evl_config_materialize(lua_State *L, int idx);

/* rules.c */
int evl_rules_load(struct evl_host *h);
int evl_rules_match(struct evl_host *h, const char *name); /* pushes a list */
int evl_rules_run(struct evl_host *h, int matched, int ev, int *failed, int *ran);

/* levent.c */
void evl_push_event(lua_State *L, const struct evl_event *ev, int nargs, char **args);
void evl_warn_patterns(lua_State *L, int list, int entry, int line);
int evl_open_pattern(lua_State *L); /* require("eventilator.pattern") */

/* budget.c */
void evl_budget_set(lua_State *L, double deadline);
void evl_budget_clear(lua_State *L);
/*
 * The watchdog: `seconds` from now, `expired` runs (from a signal handler:
 * async-signal-safe calls only) and the process exits 1. Re-arming moves it.
 */
void evl_watchdog_arm(double seconds, void (*expired)(void));
void evl_watchdog_disarm(void);

/* handover.c: everything about the lean/full split */
void evl_handover_take_env(struct evl_host *h);
void evl_handover_open(lua_State *L, struct evl_host *h);
void evl_push_handover_marker(lua_State *L);
int evl_is_handover_marker(lua_State *L, int idx);
/* Lines of a rule file's text that name what only the full runtime has: a string of uint32s. */
void evl_handover_scan(lua_State *L, const char *src, size_t len);
/* Does a matched handler need the full runtime? (its own lines, by the scan) */
int evl_handover_needed(struct evl_host *h, int matched);
void evl_handover(struct evl_host *h, const char *reason, const char *done);

/* readfile.c */
char *evl_read_file(const char *path, size_t max, size_t *len, int *err);
/* The same, and the file's stat (for the trust rule). */
char *evl_read_file_stat(const char *path, size_t max, size_t *len, int *err, struct stat *out);
/*
 * The trust rule (sshd's StrictModes): a file or folder is trusted when it
 * is owned by root or the user running the call and nobody else may write
 * it. Returns 1, or 0 with the reason and the fix in why.
 */
int evl_trusted(const struct stat *st, const char *path, char *why, size_t cap);
uid_t evl_euid(void); /* the running user, asked once */
/* Stricter, for what only this program writes (state_dir): owned by this user, not root. */
int evl_ours(const struct stat *st);

/* cli.c */
void evl_push_cli_host(lua_State *L, struct evl_host *h);

#endif
