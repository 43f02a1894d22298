/*
 * record.c: `record = "<path>"` appends every event call as one JSON line,
 *
 *   {"argv0":"eventilator","args":[...],"time":1795600000.123,"sentinel":"pid:1234","exit":0}
 *
 * so a failover seen once can be replayed through new rules as often as one
 * likes (`eventilator test --replay`, lua/eventilator/replay.lua).
 *
 * Sentinel runs scripts concurrently, so a line is built whole in memory and
 * written with one write(2) on an O_APPEND descriptor: Linux takes the
 * inode's lock for the whole write on a local file system, so lines of
 * concurrent calls never interleave. The file is capped at `record_max`
 * bytes with one rotation to <path>.1. Rotation takes an flock on the file it
 * is about to move and checks the path still names that file, so two calls
 * that find the file full at once rotate it once; a call that opened the file
 * just before it moved finishes its line in <path>.1, which can thus end a
 * few lines past the cap. Nothing here changes a call's exit code: a file
 * that cannot be written is a warning in the log.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <lua.h>

#include "config.h"
#include "deadline.h"
#include "digits.h"
#include "log.h"
#include "record.h"
#include "entry.h"

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    unsigned min;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2, min = 0x80;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, min = 0x10000;
    else
        return 0;
    if (n < len)
        return 0;
    unsigned cp = c & (0x7f >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0; /* overlong, out of range, or a surrogate */
    return len;
}

/*
 * A JSON string (quotes included) of s[0..n) into out, which has room for
 * 6 * n + 2 bytes. Valid UTF-8 is copied; any other byte becomes \u00XX
 * (its Latin-1 character), which replay turns back into the byte, so a
 * recorded argument replays byte for byte and the file stays valid UTF-8.
 */
static size_t json_string(char *out, const char *str, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)str;
    size_t o = 0;
    out[o++] = '"';
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        size_t l = c < 0x80 ? 1 : utf8_len(s + i, n - i);
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c == '\n') {
            out[o++] = '\\', out[o++] = 'n';
        } else if (c == '\t') {
            out[o++] = '\\', out[o++] = 't';
        } else if (c == '\r') {
            out[o++] = '\\', out[o++] = 'r';
        } else if (c < 0x20 || l == 0) {
            memcpy(out + o, "\\u00", 4);
            out[o + 4] = hex[c >> 4];
            out[o + 5] = hex[c & 15];
            o += 6;
            l = 1;
        } else {
            memcpy(out + o, s + i, l);
            o += l;
            i += l;
            continue;
        }
        i += 1;
    }
    out[o++] = '"';
    return o;
}

static size_t put(char *out, const char *s)
{
    size_t n = strlen(s);
    memcpy(out, s, n);
    return n;
}

#define ERR_MAX 300 /* bytes of a handler's error kept in the record; the log has it whole */

/*
 * `"handlers":[{"rule":"file:line","outcome":"ok","ms":1.25}, ...]` for what
 * this call's handlers did (the entries call.c left under EVL_RAN_KEY), or
 * an empty string. malloc'd; NULL when out of memory.
 */
static char *handlers_json(struct evl_host *h)
{
    lua_State *L = h->L;
    if (lua_getfield(L, LUA_REGISTRYINDEX, EVL_RAN_KEY) != LUA_TTABLE) {
        lua_pop(L, 1);
        return calloc(1, 1);
    }
    int list = lua_gettop(L);
    lua_Integer n = (lua_Integer)lua_rawlen(L, list);
    size_t cap = 16, o = 0;
    for (lua_Integer i = 1; i <= n; i++) { /* room: each entry's id, error and fixed text */
        lua_rawgeti(L, list, i);
        lua_getfield(L, -1, EVL_ENTRY_ID);
        cap += 128 + 6 * (lua_rawlen(L, -1) + ERR_MAX);
        lua_pop(L, 2);
    }
    char *buf = malloc(cap);
    if (!buf) {
        lua_pop(L, 1);
        return NULL;
    }
    o += put(buf, ",\"handlers\":[");
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, list, i);
        int e = lua_gettop(L);
        lua_getfield(L, e, EVL_ENTRY_ID);
        lua_getfield(L, e, EVL_ENTRY_SKIPPED);
        lua_getfield(L, e, EVL_ENTRY_OK);
        lua_getfield(L, e, EVL_ENTRY_MS);
        lua_getfield(L, e, EVL_ENTRY_ERR);
        size_t rl, el;
        const char *rule = lua_tolstring(L, e + 1, &rl), *err = lua_tolstring(L, e + 5, &el);
        o += put(buf + o, i > 1 ? ",{\"rule\":" : "{\"rule\":");
        o += json_string(buf + o, rule ? rule : "?", rule ? rl : 1);
        o += put(buf + o, ",\"outcome\":");
        o += put(buf + o, lua_toboolean(L, e + 2) ? "\"skipped\"" : lua_toboolean(L, e + 3) ? "\"ok\""
                                                                                        : "\"failed\"");
        if (lua_type(L, e + 4) == LUA_TNUMBER) {
            o += put(buf + o, ",\"ms\":");
            o += evl_put_fixed(buf + o, lua_tonumber(L, e + 4), 2);
        }
        if (err) {
            o += put(buf + o, ",\"error\":");
            o += json_string(buf + o, err, el < ERR_MAX ? el : ERR_MAX);
        }
        buf[o++] = '}';
        lua_settop(L, e - 1);
    }
    o += put(buf + o, "]");
    lua_pop(L, 1);
    buf[o] = '\0';
    return buf;
}

/* The line for this call; malloc'd, its length in *len. */
static char *build_line(struct evl_host *h, int code, size_t *len)
{
    /* watch mode's reporting Sentinel */
    const struct evl_call *c = &h->call;
    const char *sentinel = c->origin.sentinel && *c->origin.sentinel ? c->origin.sentinel : NULL;
    char *handlers = handlers_json(h);
    if (!handlers)
        return NULL;
    size_t cap = 128 + 6 * strlen(h->name) + (sentinel ? strlen(sentinel) : 0) * 6 + strlen(handlers);
    for (int i = 1; i < c->argc; i++)
        cap += 6 * strlen(c->argv[i]) + 4;
    char *buf = malloc(cap);
    if (!buf) {
        free(handlers);
        return NULL;
    }
    /* the call's start in wall-clock time: t0 is monotonic (and kept across a handover) */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    double start = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9 - (evl_monotonic() - c->t0);
    unsigned long long ms = start > 0 ? (unsigned long long)(start * 1e3 + 0.5) : 0;
    size_t o = put(buf, "{\"argv0\":");
    o += json_string(buf + o, h->name, strlen(h->name));
    o += put(buf + o, ",\"args\":[");
    for (int i = 1; i < c->argc; i++) {
        if (i > 1)
            buf[o++] = ',';
        o += json_string(buf + o, c->argv[i], strlen(c->argv[i]));
    }
    o += put(buf + o, "],\"time\":");
    o += evl_put_uint(buf + o, ms / 1000, 1);
    buf[o++] = '.';
    o += evl_put_uint(buf + o, ms % 1000, 3);
    o += put(buf + o, ",\"sentinel\":");
    if (sentinel) {
        o += json_string(buf + o, sentinel, strlen(sentinel));
    } else {
        o += put(buf + o, "\"pid:");
        o += evl_put_uint(buf + o, (unsigned long long)getppid(), 1);
        buf[o++] = '"';
    }
    o += put(buf + o, ",\"exit\":");
    o += evl_put_uint(buf + o, (unsigned long long)(code < 0 ? 0 : code), 1);
    o += put(buf + o, handlers);
    free(handlers);
    if (c->retry)
        o += put(buf + o, ",\"retry\":true");
    o += put(buf + o, "}\n");
    *len = o;
    return buf;
}

/*
 * Never through a symlink (one planted where the record goes would have
 * Sentinel's user append to any file it can write), and only a regular file:
 * O_NONBLOCK so a FIFO there cannot hold the call (no effect on a file).
 * -1 with why on failure.
 */
static int open_append(const char *path, const char **why, struct stat *st)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0640);
    if (fd < 0) {
        /* ENXIO: O_NONBLOCK's answer for a FIFO with no reader, or a device */
        *why = errno == ELOOP ? "a symbolic link, not followed" : errno == ENXIO ? "not a regular file"
                                                                : strerror(errno);
    } else if (fstat(fd, st) < 0 || !S_ISREG(st->st_mode)) {
        *why = "not a regular file";
        close(fd);
        fd = -1;
    }
    return fd;
}

/*
 * The file at fd (opened as path) is full: move it to <path>.1 unless
 * another call already did, and return a descriptor on the new file. Not
 * inlined: its 4 KB buffer stays in a frame only a rotation enters, so that
 * every other call's record is written a page of stack higher.
 */
static __attribute__((noinline)) int rotate(const char *path, int fd, const char **why, struct stat *st)
{
    struct stat mine, now;
    char old[4300]; /* path and ".1" */
    snprintf(old, sizeof old, "%s.1", path);
    /* lstat: a symlink put in the file's place since it was opened is never renamed */
    if (flock(fd, LOCK_EX) == 0 && fstat(fd, &mine) == 0 && lstat(path, &now) == 0 &&
        mine.st_ino == now.st_ino && mine.st_dev == now.st_dev && rename(path, old) != 0)
        evl_log(EVL_WARN, "record %s: cannot rotate to %s: %s", path, old, strerror(errno));
    close(fd); /* drops the lock */
    return open_append(path, why, st);
}

/*
 * Where this call is recorded: config `record` (a path), nothing for
 * `record = false`, and <state_dir>/calls.jsonl when it is not set and
 * state_dir can be used (contract section 15). NULL: not recorded.
 */
/* This call's line, appended to path (rotated first when record_max says so). */
static void write_record(struct evl_host *h, int code, const char *path)
{
    size_t len = 0;
    char *line = build_line(h, code, &len);
    if (!line)
        return;
    const char *why = NULL;
    struct stat st;
    int fd = open_append(path, &why, &st);
    long long max = (long long)evl_config_number(h, NULL, "record_max", 0); /* bytes; <= 0: no cap */
    if (fd >= 0 && max > 0 && st.st_size > 0 && (long long)st.st_size + (long long)len > max)
        fd = rotate(path, fd, &why, &st);
    if (fd < 0) {
        evl_log(EVL_WARN, "record %s: %s; call not recorded", path, why);
    } else {
        ssize_t w = write(fd, line, len); /* one write: whole line or (disk full) a short one */
        if (w != (ssize_t)len)
            evl_log(EVL_WARN, "record %s: %s; call not recorded whole", path,
                    w < 0 ? strerror(errno) : "short write");
        close(fd);
    }
    free(line);
}

/*
 * The file to record in; *own is set when the path is the default one, made
 * here (free it). On the heap, not in a 4 KB stack buffer (a page of stack to
 * fault in), and not as a Lua string: a handler that ran into memory_limit
 * must not keep its call from being recorded.
 */
static const char *record_path(struct evl_host *h, char **own)
{
    lua_State *L = h->L;
    *own = NULL;
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->config_ref);
    int t = lua_getfield(L, -1, "record");
    const char *path = t == LUA_TSTRING ? lua_tostring(L, -1) : NULL; /* anchored in the config */
    lua_pop(L, 2);
    if (t == LUA_TNIL && h->state.ok) {
        size_t n = strlen(h->state.dir) + sizeof "/calls.jsonl";
        if ((*own = malloc(n)))
            snprintf(*own, n, "%s/calls.jsonl", h->state.dir);
        path = *own;
    }
    return path && *path ? path : NULL;
}

void evl_record(struct evl_host *h, int code)
{
    char *own;
    if (h->config_ref <= 0)
        return; /* no config loaded: nowhere to record */
    const char *path = record_path(h, &own);
    if (path)
        write_record(h, code, path);
    free(own);
}

