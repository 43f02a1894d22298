/*
 * cache.c: compiled rule files, kept in <state_dir>/rules-cache.
 *
 * Parsing is half of what a call does (~50 us per KB of rules), and the
 * same files are parsed on every event. So the bytecode the VM made from a
 * rule file's text is kept, keyed by the file's identity as stat(2) reports
 * it: device, inode, size, and modification and change times to the
 * nanosecond (any write to the file moves its ctime, which no user can set
 * back). A hit costs one stat and one read; a changed file never meets stale
 * bytecode; the cache never holds anything this program did not compile
 * from the text itself. Each entry also carries a hash of its bytecode, so
 * a torn entry is recompiled, not run.
 *
 * The key is public (anyone can stat the rule file) and entries load as
 * binary chunks, so the cache is only as safe as the hands that can write
 * it: an entry is used only when this user wrote it and nobody else can
 * write it or its folder (and state_dir, readfile.c). Anything else is
 * ignored and the file compiled from its text. Entries are created 0600 in a
 * 0700 folder. Rules still load "as text only": what runs is always this
 * program's compilation of the text on disk.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "cache.h"
#include "host.h"

#define MAGIC "EVLRC4\n" /* 7 bytes + NUL = 8 */
#define MAX_SOURCE (4u << 20)

struct header {
    char magic[8];
    uint64_t key, hash, bc_len;
    uint64_t lines_len; /* after the bytecode: evl_handover_scan's lines (handover.c) */
};

static uint64_t fnv(const void *p, size_t n, uint64_t h)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

#define FNV0 0xcbf29ce484222325ULL

/* The file's identity and the chunk name: what makes an entry valid. */
static uint64_t identity(const struct stat *st, const char *chunk)
{
    uint64_t v[8] = {(uint64_t)st->st_dev, (uint64_t)st->st_ino, (uint64_t)st->st_size,
                     (uint64_t)st->st_mtim.tv_sec, (uint64_t)st->st_mtim.tv_nsec,
                     (uint64_t)st->st_ctim.tv_sec, (uint64_t)st->st_ctim.tv_nsec, 0};
    return fnv(chunk, strlen(chunk), fnv(v, sizeof v, FNV0));
}

struct wbuf {
    char *p;
    size_t n, cap;
};

static int writer(lua_State *L, const void *p, size_t sz, void *ud)
{
    struct wbuf *b = ud;
    (void)L;
    if (b->n + sz > b->cap) {
        size_t cap = (b->n + sz) * 2;
        char *np = realloc(b->p, cap);
        if (!np)
            return 1;
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->n, p, sz);
    b->n += sz;
    return 0;
}

/* Try the cache; 1 = the chunk and its lines are pushed, 0 = nothing usable. */
static int from_cache(lua_State *L, const char *file, uint64_t key, const char *chunk)
{
    static char buf[64 << 10]; /* one read covers every usual entry */
    int fd = open(file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return 0;
    struct stat st;
    struct header h;
    char *body = NULL, *big = NULL;
    int ok = 0;
    ssize_t got = -1;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && evl_ours(&st)) /* written by us alone */
        got = read(fd, buf, sizeof buf);
    if (got >= (ssize_t)sizeof h) {
        memcpy(&h, buf, sizeof h);
        size_t len = (size_t)(h.bc_len + h.lines_len);
        if (memcmp(h.magic, MAGIC, 8) == 0 && h.key == key && h.bc_len > 0 && h.bc_len < (16u << 20) &&
            h.lines_len < (4u << 20)) {
            if (sizeof h + len <= (size_t)got) {
                body = buf + sizeof h;
            } else if ((big = malloc(len)) && pread(fd, big, len, (off_t)sizeof h) == (ssize_t)len) {
                body = big;
            }
            if (body && fnv(body, len, FNV0) == h.hash &&
                luaL_loadbufferx(L, body, h.bc_len, chunk, "b") == LUA_OK) {
                lua_pushlstring(L, body + h.bc_len, h.lines_len);
                ok = 1;
            }
        }
    }
    close(fd);
    free(big);
    return ok;
}

/* The chunk at -2 and its lines at -1 into file. */
static void to_cache(lua_State *L, const char *file, uint64_t key)
{
    struct wbuf b = {0};
    char tmp[4400];
    size_t lines_len;
    const char *lines = lua_tolstring(L, -1, &lines_len);
    lua_pushvalue(L, -2);
    int dumped = lua_dump(L, writer, &b, 0) == 0 && b.p; /* 0: keep line info for tracebacks */
    lua_pop(L, 1);
    if (!dumped || writer(L, lines, lines_len, &b) != 0) {
        free(b.p);
        return;
    }
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", file, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) {
        struct header h;
        memcpy(h.magic, MAGIC, 8);
        h.key = key;
        h.hash = fnv(b.p, b.n, FNV0);
        h.bc_len = b.n - lines_len;
        h.lines_len = lines_len;
        int ok = write(fd, &h, sizeof h) == (ssize_t)sizeof h &&
                 write(fd, b.p, b.n) == (ssize_t)b.n;
        ok = close(fd) == 0 && ok;
        if (!ok || rename(tmp, file) < 0)
            unlink(tmp);
    }
    free(b.p);
}

/* <state_dir>/rules-cache, when it is ours alone (made 0700 if missing): checked once a call. */
static const char *cache_dir(struct evl_host *h)
{
    static char sub[4200];
    static int state; /* 0 unknown, 1 usable, -1 not */
    struct stat st;
    if (state == 0) {
        state = -1;
        if (h->state_ok) {
            snprintf(sub, sizeof sub, "%s/rules-cache", h->state_dir);
            int there = stat(sub, &st) == 0 ||
                        (errno == ENOENT && mkdir(sub, 0700) == 0 && stat(sub, &st) == 0);
            if (there && S_ISDIR(st.st_mode) && evl_ours(&st))
                state = 1;
        }
    }
    return state > 0 ? sub : NULL;
}

int evl_load_rule_chunk(struct evl_host *h, const char *path, const char *chunk)
{
    lua_State *L = h->L;
    char file[4300], why[600];
    struct stat st;
    int top = lua_gettop(L);
    if (stat(path, &st) < 0) {
        lua_pushfstring(L, "%s: %s", path, strerror(errno));
        return LUA_ERRFILE;
    }
    if (!S_ISREG(st.st_mode) || (size_t)st.st_size > MAX_SOURCE) {
        lua_pushfstring(L, "%s: not a regular file under 4 MiB", path);
        return LUA_ERRFILE;
    }
    if (h->strict_modes && !evl_trusted(&st, path, why, sizeof why)) {
        lua_pushfstring(L, "%s: refused: %s", path, why);
        return LUA_ERRFILE;
    }
    uint64_t key = identity(&st, chunk);
    const char *dir = cache_dir(h);
    if (dir) {
        snprintf(file, sizeof file, "%s/%016llx.luac", dir,
                 (unsigned long long)fnv(path, strlen(path), FNV0));
        if (from_cache(L, file, key, chunk))
            return LUA_OK;
        lua_settop(L, top);
    }
    size_t len;
    int err;
    char *src = evl_read_file(path, MAX_SOURCE, &len, &err);
    if (!src) {
        lua_pushfstring(L, "%s: %s", path, strerror(err));
        return LUA_ERRFILE;
    }
    int rc = luaL_loadbufferx(L, src, len, chunk, "t");
    if (rc == LUA_OK)
        evl_handover_scan(L, src, len);
    free(src);
    if (rc == LUA_OK && dir)
        to_cache(L, file, key);
    return rc;
}
