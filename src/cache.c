/*
 * cache.c: compiled rule files, kept in <state_dir>/rules-cache.
 *
 * Parsing is half of what a call does (~50 us per KB of rules), and the
 * same files are parsed on every event. So the bytecode the VM made from a
 * rule file's text is kept, keyed by the file's identity as stat(2) reports
 * it: device, inode, size, and modification and change times to the
 * nanosecond (any write to the file moves its ctime, which no user can set
 * back). A changed file never meets stale bytecode; the cache never holds
 * anything this program did not compile from the text itself. Each entry
 * also carries a hash of its bytecode, so a torn entry is recompiled, not
 * run.
 *
 * One file holds the entries of a whole rules folder (a bundle), in load
 * order: a call costs one stat per rule file, which the trust rule needs
 * anyway, and one open and read for the folder. A system call costs ~5 us
 * on a small VM, and four per rule file were a tenth of a default call.
 * The bundle is written again (to a temporary name, then renamed over)
 * only when a file was compiled or an entry went unused.
 *
 * The key is public (anyone can stat the rule file) and entries load as
 * binary chunks, so the cache is only as safe as the hands that can write
 * it: a bundle is used only when this user wrote it and nobody else can
 * write it or its folder (and state_dir, readfile.c). Anything else is
 * ignored and the files compiled from their text. Bundles are created 0600
 * in a 0700 folder. Rules still load "as text only": what runs is always
 * this program's compilation of the text on disk.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "cache.h"
#include "fnv.h"
#include "host.h"
#include "statedir.h"

#define MAGIC "EVLRC5\n" /* 7 bytes + NUL = 8, at the head of every entry */
#define MAX_SOURCE (4u << 20)
#define MAX_BUNDLE (64u << 20)

struct header {
    char magic[8];
    uint64_t key, hash, bc_len;
    uint64_t lines_len; /* after the bytecode: evl_handover_scan's lines (handover.c) */
};

/* An entry of the bundle being made: a slice of the one read, or compiled now (own). */
struct piece {
    const char *p;
    size_t n;
    char *own;
};

static struct {
    int on;                /* a usable cache folder: read and write bundles */
    char *file;            /* this rules folder's bundle (malloc'd: a static path buffer is a page of its own to fault in) */
    char *old;             /* the bundle as read (NULL: none) */
    size_t old_len, old_entries;
    struct piece *pieces;  /* the next bundle, in load order */
    size_t n, cap;
    int changed;           /* a file was compiled since the read */
} B;

/* The file's identity and the chunk name: what makes an entry valid. */
static uint64_t identity(const struct stat *st, const char *chunk)
{
    uint64_t v[8] = {(uint64_t)st->st_dev, (uint64_t)st->st_ino, (uint64_t)st->st_size,
                     (uint64_t)st->st_mtim.tv_sec, (uint64_t)st->st_mtim.tv_nsec,
                     (uint64_t)st->st_ctim.tv_sec, (uint64_t)st->st_ctim.tv_nsec, 0};
    return evl_fnv(chunk, strlen(chunk), evl_fnv(v, sizeof v, EVL_FNV0));
}

/* <state_dir>/rules-cache, when it is ours alone (made 0700 if missing): checked once a process,
   and again when state_dir is another (watch mode reloads its config on SIGHUP). */
static const char *cache_dir(struct evl_host *h)
{
    /* on the heap, not in 4 KB statics: each of those was a page fault a call (~14 us on a VM) */
    static char *sub, *of;
    static int state; /* 0 unknown, 1 usable, -1 not */
    const char *sd = h->state_dir ? h->state_dir : "";
    if (state != 0 && strcmp(of, sd) != 0)
        state = 0;
    if (state == 0) {
        char path[4200], why[900];
        free(of);
        free(sub);
        sub = NULL;
        state = (of = strdup(sd)) && evl_state_sub(h, "rules-cache", path, sizeof path, why, sizeof why) &&
                (sub = strdup(path)) ? 1 : -1;
        if (!of) /* out of memory: ask again next time */
            state = 0;
    }
    return state > 0 ? sub : NULL;
}

/* The bundle at B.file into B.old, when this user alone wrote it. */
static void read_bundle(void)
{
    int fd = open(B.file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    struct stat st;
    if (fd < 0)
        return;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && evl_ours(&st) && /* written by us alone */
        st.st_size > 0 && (size_t)st.st_size <= MAX_BUNDLE && (B.old = malloc((size_t)st.st_size))) {
        size_t got = 0;
        ssize_t r;
        while (got < (size_t)st.st_size && (r = read(fd, B.old + got, (size_t)st.st_size - got)) > 0)
            got += (size_t)r;
        B.old_len = got; /* a shorter file than fstat said: what was read */
    }
    close(fd);
}

/* The entry at off in B.old, if whole: its header, and where the next one starts. */
static int entry_at(size_t off, struct header *h, size_t *next)
{
    if (off + sizeof *h > B.old_len)
        return 0;
    memcpy(h, B.old + off, sizeof *h);
    if (memcmp(h->magic, MAGIC, 8) != 0 || h->bc_len == 0 || h->bc_len > MAX_BUNDLE ||
        h->lines_len > MAX_BUNDLE || h->bc_len + h->lines_len > B.old_len - off - sizeof *h)
        return 0;
    *next = off + sizeof *h + (size_t)(h->bc_len + h->lines_len);
    return 1;
}

void evl_cache_begin(struct evl_host *h, const char *rules_dir)
{
    evl_cache_end(NULL); /* a load that did not finish (an error) leaves nothing behind */
    const char *dir = cache_dir(h);
    if (!dir)
        return;
    size_t cap = strlen(dir) + 32;
    if (!(B.file = malloc(cap)))
        return;
    B.on = 1;
    snprintf(B.file, cap, "%s/%016llx.luac", dir,
             (unsigned long long)evl_fnv(rules_dir, strlen(rules_dir), EVL_FNV0));
    read_bundle();
    struct header eh;
    for (size_t off = 0, next; entry_at(off, &eh, &next); off = next)
        B.old_entries++;
}

static int keep(const char *p, size_t n, char *own)
{
    if (B.n == B.cap) {
        size_t cap = B.cap ? B.cap * 2 : 16;
        struct piece *np = realloc(B.pieces, cap * sizeof *np);
        if (!np) {
            free(own);
            B.on = 0; /* no memory to make a bundle: this call does without */
            return 0;
        }
        B.pieces = np;
        B.cap = cap;
    }
    B.pieces[B.n++] = (struct piece){p, n, own};
    return 1;
}

/* The entry for key, if the bundle has a whole one: the chunk and its lines are pushed. */
static int from_bundle(lua_State *L, uint64_t key, const char *chunk)
{
    struct header h;
    for (size_t off = 0, next; entry_at(off, &h, &next); off = next) {
        if (h.key != key)
            continue;
        const char *body = B.old + off + sizeof h;
        size_t len = (size_t)(h.bc_len + h.lines_len);
        if (evl_fnv(body, len, EVL_FNV0) != h.hash ||
            luaL_loadbufferx(L, body, h.bc_len, chunk, "b") != LUA_OK)
            return 0;
        lua_pushlstring(L, body + h.bc_len, h.lines_len);
        keep(B.old + off, next - off, NULL);
        return 1;
    }
    return 0;
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

/* The chunk at -2 and its lines at -1, as an entry of the next bundle. */
static void add_entry(lua_State *L, uint64_t key)
{
    struct header h;
    struct wbuf b = {0};
    size_t lines_len;
    const char *lines = lua_tolstring(L, -1, &lines_len);
    writer(L, &h, sizeof h, &b); /* room for the header, filled below */
    lua_pushvalue(L, -2);
    int dumped = lua_dump(L, writer, &b, 0) == 0 && b.p; /* 0: keep line info for tracebacks */
    lua_pop(L, 1);
    if (!dumped || writer(L, lines, lines_len, &b) != 0) {
        free(b.p);
        B.on = 0;
        return;
    }
    memcpy(h.magic, MAGIC, 8);
    h.key = key;
    h.hash = evl_fnv(b.p + sizeof h, b.n - sizeof h, EVL_FNV0);
    h.bc_len = b.n - sizeof h - lines_len;
    h.lines_len = lines_len;
    memcpy(b.p, &h, sizeof h);
    if (keep(b.p, b.n, b.p))
        B.changed = 1;
}

/* Write the next bundle when it differs from the one read: a temporary name, then rename. */
static void write_bundle(void)
{
    char tmp[4500];
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", B.file, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    int ok = 1;
    for (size_t i = 0; ok && i < B.n; i += 64) { /* IOV_MAX is at least 1024; 64 a call is plenty */
        struct iovec iov[64];
        size_t k = 0, want = 0;
        for (; k < 64 && i + k < B.n; k++) {
            iov[k].iov_base = (void *)B.pieces[i + k].p;
            iov[k].iov_len = B.pieces[i + k].n;
            want += iov[k].iov_len;
        }
        ok = writev(fd, iov, (int)k) == (ssize_t)want;
    }
    ok = close(fd) == 0 && ok;
    if (!ok || rename(tmp, B.file) < 0)
        unlink(tmp);
}

void evl_cache_end(struct evl_host *h)
{
    if (h && B.on && (B.changed || B.n != B.old_entries))
        write_bundle();
    for (size_t i = 0; i < B.n; i++)
        free(B.pieces[i].own);
    free(B.pieces);
    free(B.old);
    free(B.file);
    memset(&B, 0, sizeof B);
}

int evl_load_rule_chunk(struct evl_host *h, const char *path, const char *chunk)
{
    lua_State *L = h->L;
    char why[600];
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
    if (B.on) {
        if (from_bundle(L, key, chunk))
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
    if (rc == LUA_OK && B.on)
        add_entry(L, key);
    return rc;
}
