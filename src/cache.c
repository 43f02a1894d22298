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
 * a torn or tampered entry is recompiled, not run. When the folder can't be
 * written, every call simply compiles. Rules still load "as text only":
 * what runs is always the bytecode of the text on disk.
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

#define MAGIC "EVLRC3\n" /* 7 bytes + NUL = 8 */
#define MAX_SOURCE (4u << 20)

struct header {
    char magic[8];
    uint64_t key, bc_hash, bc_len;
    uint64_t full; /* the text names what only the full runtime has (rules.c) */
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

/* Try the cache; 1 = the chunk is pushed, 0 = nothing usable (stack may hold a message). */
static int from_cache(lua_State *L, const char *file, uint64_t key, const char *chunk, int *full)
{
    static char buf[64 << 10]; /* one read covers every usual entry */
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t got = read(fd, buf, sizeof buf);
    struct header h;
    char *bc = NULL, *big = NULL;
    int ok = 0;
    if (got >= (ssize_t)sizeof h) {
        memcpy(&h, buf, sizeof h);
        if (memcmp(h.magic, MAGIC, 8) == 0 && h.key == key && h.bc_len > 0 && h.bc_len < (16u << 20)) {
            if (sizeof h + h.bc_len <= (size_t)got) {
                bc = buf + sizeof h;
            } else if ((big = malloc(h.bc_len)) &&
                       pread(fd, big, h.bc_len, (off_t)sizeof h) == (ssize_t)h.bc_len) {
                bc = big;
            }
            if (bc && fnv(bc, h.bc_len, FNV0) == h.bc_hash)
                ok = luaL_loadbufferx(L, bc, h.bc_len, chunk, "b") == LUA_OK;
            *full = h.full != 0;
        }
    }
    close(fd);
    free(big);
    return ok;
}

static void to_cache(lua_State *L, const char *dir, const char *file, uint64_t key, int full)
{
    struct wbuf b = {0};
    char sub[4200], tmp[4300];
    if (lua_dump(L, writer, &b, 0) != 0 || !b.p) { /* 0: keep line info for tracebacks */
        free(b.p);
        return;
    }
    snprintf(sub, sizeof sub, "%s/rules-cache", dir);
    if (mkdir(sub, 0750) < 0 && errno != EEXIST) {
        free(b.p);
        return;
    }
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", file, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd >= 0) {
        struct header h;
        memcpy(h.magic, MAGIC, 8);
        h.key = key;
        h.bc_hash = fnv(b.p, b.n, FNV0);
        h.bc_len = b.n;
        h.full = (uint64_t)full;
        int ok = write(fd, &h, sizeof h) == (ssize_t)sizeof h &&
                 write(fd, b.p, b.n) == (ssize_t)b.n;
        ok = close(fd) == 0 && ok;
        if (!ok || rename(tmp, file) < 0)
            unlink(tmp);
    }
    free(b.p);
}

int evl_load_rule_chunk(lua_State *L, const char *dir, const char *path, const char *chunk,
                        int *full)
{
    char file[4200];
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
    uint64_t key = identity(&st, chunk);
    if (dir && *dir) {
        snprintf(file, sizeof file, "%s/rules-cache/%016llx.luac", dir,
                 (unsigned long long)fnv(path, strlen(path), FNV0));
        if (from_cache(L, file, key, chunk, full))
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
    *full = evl_mentions_full_only(src, len);
    free(src);
    if (rc == LUA_OK && dir && *dir)
        to_cache(L, dir, file, key, *full);
    return rc;
}
