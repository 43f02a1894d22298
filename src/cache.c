/*
 * cache.c: compiled rule files, kept in <state_dir>/rules-cache.
 *
 * Parsing is half of what a call does (~50 us per KB of rules), and the
 * same files are parsed on every event. So the bytecode the VM made from a
 * rule file's text is kept, keyed by a hash of that exact text: a changed
 * file never meets stale bytecode, and the cache never holds anything this
 * process did not compile itself from the text. A cache entry also carries
 * a hash of its bytecode, so a torn or tampered file is recompiled, not
 * run. When the folder can't be written, every call simply compiles.
 * Rules still load "as text only": what runs is always this text's bytecode.
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

#define MAGIC "EVLRC1\n" /* 7 bytes + NUL = 8 */

struct header {
    char magic[8];
    uint64_t src_hash, bc_hash, bc_len;
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

static void entry_path(char *out, size_t cap, const char *dir, const char *path)
{
    snprintf(out, cap, "%s/rules-cache/%016llx.luac", dir,
             (unsigned long long)fnv(path, strlen(path), FNV0));
}

/* Try the cache; 1 = the chunk is pushed, 0 = nothing pushed. */
static int from_cache(lua_State *L, const char *file, uint64_t src_hash, const char *chunk)
{
    struct header h;
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    int ok = 0;
    char *bc = NULL;
    if (read(fd, &h, sizeof h) == (ssize_t)sizeof h && memcmp(h.magic, MAGIC, 8) == 0 &&
        h.src_hash == src_hash && h.bc_len > 0 && h.bc_len < (16u << 20) &&
        (bc = malloc(h.bc_len)) && read(fd, bc, h.bc_len) == (ssize_t)h.bc_len &&
        fnv(bc, h.bc_len, FNV0) == h.bc_hash)
        ok = luaL_loadbufferx(L, bc, h.bc_len, chunk, "b") == LUA_OK;
    close(fd);
    free(bc);
    return ok; /* a refused entry may leave a message: the caller resets the stack */
}

static void to_cache(lua_State *L, const char *dir, const char *file, uint64_t src_hash)
{
    struct wbuf b = {0};
    char sub[4200], tmp[4300];
    if (lua_dump(L, writer, &b, 0) != 0 || !b.p) {
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
        h.src_hash = src_hash;
        h.bc_hash = fnv(b.p, b.n, FNV0);
        h.bc_len = b.n;
        int ok = write(fd, &h, sizeof h) == (ssize_t)sizeof h &&
                 write(fd, b.p, b.n) == (ssize_t)b.n;
        ok = close(fd) == 0 && ok;
        if (!ok || rename(tmp, file) < 0)
            unlink(tmp);
    }
    free(b.p);
}

int evl_load_rule_chunk(lua_State *L, const char *dir, const char *path, const char *src, size_t len,
                        const char *chunk)
{
    char file[4200];
    uint64_t h = fnv(src, len, fnv(chunk, strlen(chunk), FNV0));
    int top = lua_gettop(L);
    if (dir && *dir) {
        entry_path(file, sizeof file, dir, path);
        if (from_cache(L, file, h, chunk))
            return LUA_OK;
        lua_settop(L, top);
    }
    int rc = luaL_loadbufferx(L, src, len, chunk, "t");
    if (rc == LUA_OK && dir && *dir)
        to_cache(L, dir, file, h);
    return rc;
}
