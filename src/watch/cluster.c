/*
 * cluster.c: the processes of cluster mode (contract section 16,
 * docs/cluster.md), as thin C under Lua loops.
 *
 * - The appender (a fork of the watcher, sink.c): reads the events
 *   the watcher heard from a pipe, as frames, and hands them to
 *   eventilator.cluster_append, which appends them to the stream. C does
 *   the pipe (poll with a timeout, so the loop can retry the store while it
 *   waits), Lua the store.
 * - The worker (`eventilator work`, or a fork of the watcher):
 *   eventilator.cluster_work reads entries and decides; each entry runs in a
 *   runner, a fork of the worker that handles up to watch.reuse entries one
 *   at a time, as a watch runner does (runner.c): the event path of
 *   script mode (watch_set_run) from the loaded rules, with ev.source =
 *   "cluster", the handlers the store says are done skipped, and
 *   each handler that succeeds marked done in the store before the next
 *   starts (h->on_ok calls the loop's mark function, in the runner). The
 *   worker itself stays free while the entry runs, to keep the entry its own
 *   in the store (XCLAIM, so no other worker takes over a live run) and to
 *   stop a run past its budget. A runner dies with its worker
 *   (PR_SET_PDEATHSIG): once the worker is gone its entries are another's
 *   to take over, and a run left behind would race the takeover.
 *
 * One appender or one worker per process: the state here is static.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "cluster.h"
#include "config.h"
#include "deadline.h"
#include "entry.h"
#include "frame.h"
#include "log.h"
#include "record.h"
#include "set.h"

#define READ_MAX 512           /* frames handed to Lua per read */
#define REPLY_TEXT 2048        /* a run's failures, for the log and a dead entry's reason */
#define LOOP_RELOAD (-1)

static volatile sig_atomic_t got_term, got_hup;
static struct watch_set *SET;  /* the loaded set: what runners run */
static int mark_ref = LUA_NOREF;

/* ---------------------------------------------------------------- shared */

static void on_signal(int sig)
{
    if (sig == SIGHUP)
        got_hup = 1;
    else
        got_term = 1;
}

/* SIGTERM and SIGINT: stop after the current entry; SIGHUP: reload then. */
static void loop_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGCHLD, SIG_DFL);
    signal(SIGPIPE, SIG_IGN);
}

/* Wait until fd is readable or `secs` pass: 1, 0 (timed out), -1. A signal ends the wait early. */
static int readable(int fd, double secs)
{
    struct pollfd p = {fd, POLLIN, 0};
    int ms = secs <= 0 ? 0 : secs > 3600 ? 3600000 : (int)(secs * 1000) + 1;
    int n = poll(&p, 1, ms);
    if (n < 0)
        return errno == EINTR ? 0 : -1;
    return n > 0;
}

/* api.now() -> monotonic seconds */
static int l_now(lua_State *L)
{
    lua_pushnumber(L, evl_monotonic());
    return 1;
}

/* api.sleep(seconds): a signal ends it early */
static int l_sleep(lua_State *L)
{
    double s = luaL_checknumber(L, 1);
    if (s > 0 && !got_term)
        readable(-1, s); /* poll on nothing: a timed wait that a signal ends */
    return 0;
}

/* api.stopping() -> SIGTERM or SIGINT came; api.reload() -> SIGHUP came (once) */
static int l_stopping(lua_State *L)
{
    lua_pushboolean(L, got_term);
    return 1;
}

static int l_reload(lua_State *L)
{
    lua_pushboolean(L, got_hup);
    got_hup = 0;
    return 1;
}

/* ---------------------------------------------------------------- the appender */

/* as sink.c writes them; "pod" is "" for an event about no master */
static const char *const event_fields[] = {"name", "text", "sentinel", "time", "id", "watcher",
                                           "seq", "pod", "synthetic"};
#define EVENT_FIELDS 9

static struct {
    int fd;
    char *buf;
    size_t len, cap;
    int eof;
} in = {-1, NULL, 0, 0, 0};

/* Push the frame at in.buf + off (len bytes of payload) as an event table. */
static void push_event(lua_State *L, size_t off, size_t len)
{
    char *f[EVENT_FIELDS];
    frame_fields(in.buf + off, len, f, EVENT_FIELDS);
    lua_createtable(L, 0, EVENT_FIELDS);
    for (int i = 0; i < EVENT_FIELDS - 1; i++) {
        lua_pushstring(L, f[i]);
        lua_setfield(L, -2, event_fields[i]);
    }
    lua_pushboolean(L, strcmp(f[EVENT_FIELDS - 1], "1") == 0);
    lua_setfield(L, -2, "synthetic");
}

/*
 * append.read(timeout) -> events (a list, maybe empty) | nil: the watcher
 * closed the pipe and every event it wrote has been read. Waits at most
 * `timeout` s for the first byte, then takes what has arrived, up to
 * READ_MAX events.
 */
static int l_read(lua_State *L)
{
    double t = luaL_checknumber(L, 1);
    if (!in.eof && in.len < 4 && readable(in.fd, t) < 0)
        in.eof = 1;
    while (!in.eof) {
        if (in.cap - in.len < 65536) {
            size_t ncap = in.cap ? in.cap * 2 : 262144;
            char *nb = realloc(in.buf, ncap);
            if (!nb)
                return luaL_error(L, "out of memory reading events");
            in.buf = nb;
            in.cap = ncap;
        }
        ssize_t r = read(in.fd, in.buf + in.len, in.cap - in.len);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
            in.eof = 1;
        if (r <= 0)
            break;
        in.len += (size_t)r;
        if (in.len > (size_t)READ_MAX * 1024)
            break;
    }
    lua_newtable(L);
    size_t off = 0;
    int n = 0;
    while (n < READ_MAX && in.len - off >= 4) {
        uint32_t l;
        memcpy(&l, in.buf + off, 4);
        if (l == 0 || l > FRAME_MAX) /* not our frame: nothing after it can be trusted */
            return luaL_error(L, "broken event pipe (frame of %u bytes)", (unsigned)l);
        if (in.len - off - 4 < l)
            break;
        push_event(L, off + 4, l);
        lua_rawseti(L, -2, ++n);
        off += 4 + l;
    }
    memmove(in.buf, in.buf + off, in.len - off);
    in.len -= off;
    if (n == 0 && in.eof) {
        lua_pushnil(L);
        return 1;
    }
    return 1;
}

/* append.hangup() -> true once the watcher has closed its end of the pipe (events may still wait in it) */
static int l_hangup(lua_State *L)
{
    struct pollfd p = {in.fd, POLLIN, 0};
    lua_pushboolean(L, in.eof || (poll(&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLERR))));
    return 1;
}

/* ---------------------------------------------------------------- a run, in a runner */

/*
 * h->on_ok: the handler succeeded; the loop's mark function records it in
 * the store before the next handler starts, under the whole call's deadline
 * (the handler's share may be spent). A mark that fails is logged: the
 * handler stays done here (its delivery record), and an entry taken over by
 * another worker runs it again.
 */
static void mark_done(struct evl_host *h, const char *id)
{
    lua_State *L = h->L;
    if (lua_rawgeti(L, LUA_REGISTRYINDEX, mark_ref) != LUA_TFUNCTION) {
        lua_pop(L, 1);
        return;
    }
    lua_pushstring(L, id);
    lua_pushstring(L, h->call.delivery);
    if (evl_call(h, 2, 0, h->call.deadline) != LUA_OK) {
        evl_log(EVL_WARN, "cluster: %s succeeded but is not marked done in the store: %s", id,
                evl_error_text(h, -1));
        lua_pop(L, 2);
    }
}

/* What failed in the run just ended ("file:line: error; ..."), from the handlers' entries. */
static void failures(struct evl_host *h, char *out, size_t cap)
{
    lua_State *L = h->L;
    size_t o = 0;
    out[0] = '\0';
    if (lua_getfield(L, LUA_REGISTRYINDEX, EVL_RAN_KEY) != LUA_TTABLE) {
        lua_settop(L, 0);
        return;
    }
    lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
    for (lua_Integer i = 1; i <= n && o + 1 < cap; i++) {
        lua_rawgeti(L, -1, i);
        lua_getfield(L, -1, EVL_ENTRY_OK);
        lua_getfield(L, -2, EVL_ENTRY_ERR);
        lua_getfield(L, -3, EVL_ENTRY_FILE);
        lua_getfield(L, -4, EVL_ENTRY_LINE);
        if (!lua_toboolean(L, -4) && lua_isstring(L, -3)) {
            int w = snprintf(out + o, cap - o, "%s%s:%d: %s", o ? "; " : "", lua_tostring(L, -2),
                             (int)lua_tointeger(L, -1), lua_tostring(L, -3));
            o = w < 0 ? o : (size_t)w >= cap - o ? cap - 1 : o + (size_t)w;
        }
        lua_pop(L, 5);
    }
    lua_settop(L, 0);
}

/*
 * One entry, in a runner: the event call a watch runner makes (set.c's
 * watch_set_run), with the cluster's fields, the handlers already done
 * skipped, and each success marked (h->on_ok). f: name, text, sentinel,
 * synthetic, delivery, done. Returns the exit code; `why` gets what failed.
 */
static int run_one(char **f, char *why, size_t cap)
{
    char *argv[] = {"eventilator", f[0], f[1], NULL};
    struct evl_origin o = {"cluster", f[2], f[2], strcmp(f[3], "1") == 0};
    int code = watch_set_run(SET, argv, &o, f[4], *f[5] ? f[5] : NULL, NULL);
    failures(SET->host, why, cap);
    watch_set_reset(SET); /* nothing of this entry reaches the next */
    return code;
}

/* The runner: entries from `from`, one answer each on `to`, until the pipe closes. */
static _Noreturn void runner_main(int from, int to, pid_t worker, const sigset_t *mask)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != worker)
        _exit(0); /* the worker died before the line above */
    /* a terminal's ^C or hangup is the worker's to act on: it lets this entry finish */
    signal(SIGINT, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGTERM, SIG_DFL);
    signal(SIGCHLD, SIG_DFL);
    sigprocmask(SIG_SETMASK, mask, NULL);
    evl_log_forked();
    SET->host->on_ok = mark_done;
    char *buf = NULL, why[REPLY_TEXT];
    size_t cap = 0;
    for (;;) {
        long len = frame_read(from, &buf, &cap);
        if (len < 0)
            _exit(0);
        char *f[6], code[16];
        frame_fields(buf, (size_t)len, f, 6);
        snprintf(code, sizeof code, "%d", run_one(f, why, sizeof why));
        const char *reply[] = {code, why};
        if (frame_write(to, reply, 2) < 0)
            _exit(0);
    }
}

/* ---------------------------------------------------------------- the worker's side of its runner */

static struct runner {
    pid_t pid;
    int to, from;  /* the entry pipe's write end, the answer pipe's read end */
    int handled;
    int busy;
} R = {0, -1, -1, 0, 0};
static int reuse = 1000; /* entries a runner takes before a fresh fork (watch.reuse) */

static void runner_close(void)
{
    if (R.to >= 0)
        close(R.to);
    if (R.from >= 0)
        close(R.from);
    R.to = R.from = -1;
    R.busy = 0;
}

/* The runner is gone or must go: SIGKILL, reaped. "exit N" / "signal N" into why. */
static void runner_end(int sig, char *why, size_t cap)
{
    int ws = 0;
    runner_close();
    if (R.pid > 0) {
        if (sig)
            kill(R.pid, sig);
        while (waitpid(R.pid, &ws, 0) < 0 && errno == EINTR) {
        }
        if (why)
            snprintf(why, cap, "%s %d", WIFSIGNALED(ws) ? "signal" : "exit",
                     WIFSIGNALED(ws) ? WTERMSIG(ws) : WEXITSTATUS(ws));
    }
    R.pid = 0;
    R.handled = 0;
}

/* A new runner, forked from this worker with its loaded rules; 0 or -1. */
static int runner_fork(void)
{
    int a[2], b[2];
    if (pipe(a) < 0)
        return -1;
    if (pipe(b) < 0) {
        close(a[0]);
        close(a[1]);
        return -1;
    }
    for (int i = 0; i < 2; i++) {
        fcntl(a[i], F_SETFD, FD_CLOEXEC);
        fcntl(b[i], F_SETFD, FD_CLOEXEC);
    }
    fflush(NULL);
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &old); /* the child's handlers are set before a signal lands */
    pid_t worker = getpid(), pid = fork();
    if (pid == 0) {
        close(a[1]);
        close(b[0]);
        runner_main(a[0], b[1], worker, &old);
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
    close(a[0]);
    close(b[1]);
    if (pid < 0) {
        close(a[1]);
        close(b[0]);
        return -1;
    }
    R = (struct runner){pid, a[1], b[0], 0, 0};
    return 0;
}

/*
 * work.run{ name, text, sentinel, synthetic, delivery, done } -> true | nil, err
 * Starts the entry in the runner (a new one when there is none, or the last
 * one has handled watch.reuse entries). done: the handlers already done,
 * "file:line" one a line.
 */
static int l_run(lua_State *L)
{
    static const char *const keys[] = {"name", "text", "sentinel", "synthetic", "delivery", "done"};
    const char *f[6];
    luaL_checktype(L, 1, LUA_TTABLE);
    if (R.busy)
        return luaL_error(L, "work.run: the runner has an entry already");
    for (int i = 0; i < 6; i++) {
        lua_getfield(L, 1, keys[i]);
        if (i == 3)
            f[i] = lua_toboolean(L, -1) ? "1" : "0";
        else
            f[i] = lua_tostring(L, -1) ? lua_tostring(L, -1) : ""; /* anchored in the table */
        lua_pop(L, 1);
    }
    for (int attempt = 0; attempt < 2; attempt++) {
        if (R.pid && R.handled >= reuse)
            runner_end(0, NULL, 0); /* its pipe closes: it exits */
        if (!R.pid && runner_fork() < 0) {
            lua_pushnil(L);
            lua_pushfstring(L, "cannot start a runner: %s", strerror(errno));
            return 2;
        }
        if (frame_write(R.to, f, 6) == 0) {
            R.busy = 1;
            R.handled++;
            lua_pushboolean(L, 1);
            return 1;
        }
        runner_end(SIGKILL, NULL, 0); /* it died while idle: a fresh one */
    }
    lua_pushnil(L);
    lua_pushfstring(L, "cannot pass the entry to a runner: %s", strerror(errno));
    return 2;
}

/*
 * work.result(timeout) -> code, failures | nil (still running) | false, why
 * Waits up to `timeout` s for the running entry: its exit code (0, 1, 2, as
 * a script call's) and what failed; or false when the runner died with it.
 */
static int l_result(lua_State *L)
{
    double t = luaL_checknumber(L, 1);
    char why[64];
    if (!R.busy)
        return luaL_error(L, "work.result: no entry is running");
    int r = readable(R.from, t);
    if (r == 0) {
        lua_pushnil(L);
        return 1;
    }
    static char *buf;
    static size_t cap;
    long len = r > 0 ? frame_read(R.from, &buf, &cap) : -1;
    if (len < 0) {
        runner_end(SIGKILL, why, sizeof why);
        lua_pushboolean(L, 0);
        lua_pushfstring(L, "its runner ended (%s)", why);
        return 2;
    }
    char *f[2];
    frame_fields(buf, (size_t)len, f, 2);
    R.busy = 0;
    lua_pushinteger(L, strtol(f[0], NULL, 10));
    lua_pushstring(L, f[1]);
    return 2;
}

/* work.kill(): the running entry is past its time: its runner goes (SIGKILL). */
static int l_kill(lua_State *L)
{
    (void)L;
    runner_end(SIGKILL, NULL, 0);
    return 0;
}

/*
 * work.on_done(fn): fn(id, delivery) runs in the runner after each handler
 * that succeeds (id "file:line"; delivery as work.run was given it), before
 * the next one starts; an error it raises is logged.
 */
static int l_on_done(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    luaL_unref(L, LUA_REGISTRYINDEX, mark_ref);
    lua_settop(L, 1);
    mark_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

/* ---------------------------------------------------------------- the loops */

/* The api table of both loops (docs in the functions above), pushed. */
static void push_api(lua_State *L, const char *role)
{
    static const luaL_Reg fns[] = {
        {"now", l_now},       {"sleep", l_sleep},   {"stopping", l_stopping}, {"reload", l_reload},
        {"read", l_read},     {"hangup", l_hangup}, {"run", l_run},           {"result", l_result},
        {"kill", l_kill},     {"on_done", l_on_done}, {NULL, NULL},
    };
    luaL_newlib(L, fns);
    lua_pushstring(L, role);
    lua_setfield(L, -2, "role");
    lua_pushinteger(L, (lua_Integer)getpid());
    lua_setfield(L, -2, "pid");
    lua_pushnumber(L, SET->host->budget);
    lua_setfield(L, -2, "budget");
}

/* require(module).loop(api, ...): the api at 1, its extra fields set by the caller. */
static int ploop(lua_State *L)
{
    const char *module = lua_touserdata(L, 1);
    lua_settop(L, 2); /* the api */
    lua_getglobal(L, "require");
    lua_pushstring(L, module);
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "loop");
    lua_pushvalue(L, 2);
    lua_call(L, 1, 1);
    return 1;
}

/*
 * Run a loop in the loaded set's state until it returns: its exit code, or
 * LOOP_RELOAD when it returned "reload" (SIGHUP, between two entries).
 * `extra` sets the role's fields on the api at the top.
 */
static int run_loop(struct watch_set *set, const char *module, const char *role,
                    void (*extra)(lua_State *L, void *arg), void *arg)
{
    lua_State *L = set->host->L;
    SET = set;
    reuse = set->s.reuse;
    lua_settop(L, 0);
    lua_gc(L, LUA_GCRESTART); /* a long-running loop: the collector runs, unlike in a call */
    lua_pushcfunction(L, evl_traceback);
    lua_pushcfunction(L, ploop);
    lua_pushlightuserdata(L, (void *)module);
    push_api(L, role);
    if (extra)
        extra(L, arg);
    int code;
    if (lua_pcall(L, 2, 1, 1) != LUA_OK) {
        evl_log(EVL_ERROR, "%s: %s", role, lua_tostring(L, -1) ? lua_tostring(L, -1) : "(no message)");
        code = 1;
    } else if (lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "reload") == 0) {
        code = LOOP_RELOAD;
    } else {
        code = (int)luaL_optinteger(L, -1, 0);
    }
    lua_settop(L, 0);
    runner_end(SIGKILL, NULL, 0); /* an idle runner has nothing to lose; a busy one was waited for */
    luaL_unref(L, LUA_REGISTRYINDEX, mark_ref);
    mark_ref = LUA_NOREF;
    return code;
}

static void append_fields(lua_State *L, void *arg)
{
    lua_pushstring(L, arg);
    lua_setfield(L, -2, "watcher");
    lua_pushinteger(L, (lua_Integer)getppid());
    lua_setfield(L, -2, "watcher_pid");
}

/* The watcher's appender (a fork of it): events from fd until the watcher closes it. */
int evl_cluster_append(struct watch_set *set, int fd, const char *watcher)
{
    loop_signals();
    signal(SIGHUP, SIG_IGN); /* the watcher replaces its appender on a reload */
    fcntl(fd, F_SETFL, O_NONBLOCK);
    in.fd = fd;
    return run_loop(set, "eventilator.cluster_append", "cluster appender", append_fields, (void *)watcher);
}

/* The watcher's worker (a fork of it): until SIGTERM; the watcher starts a new one on a reload. */
int evl_cluster_work(struct watch_set *set)
{
    loop_signals();
    int code = run_loop(set, "eventilator.cluster_work", "cluster worker", NULL, NULL);
    return code == LOOP_RELOAD ? 0 : code;
}

/*
 * host.work() -> exit code: `eventilator work`. Loads config and rules as
 * the watcher does (a broken file refuses the start, and on SIGHUP keeps
 * the running set), then works until SIGTERM or SIGINT.
 */
int evl_work_lua(lua_State *L)
{
    struct evl_host *h = lua_touserdata(L, lua_upvalueindex(1));
    char why[1024];
    loop_signals();
    struct watch_set *set = watch_set_load(h->name, why, sizeof why);
    if (!set) {
        evl_log(EVL_ERROR, "work: cannot start: %s", why);
        lua_pushinteger(L, 2);
        return 1;
    }
    evl_config_open_log(set->host);
    evl_log_also_stderr(0);
    int code;
    while ((code = run_loop(set, "eventilator.cluster_work", "work", NULL, NULL)) == LOOP_RELOAD) {
        struct watch_set *n = watch_set_load(h->name, why, sizeof why);
        if (!n) {
            evl_log(EVL_ERROR, "work: SIGHUP: reload refused, the running config and rules stay: %s", why);
            continue;
        }
        watch_set_free(set);
        set = n;
        evl_config_open_log(set->host);
        evl_log(EVL_INFO, "work: SIGHUP: config and rules reloaded");
    }
    watch_set_free(set);
    lua_pushinteger(L, code);
    return 1;
}
