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
 * write it or its folder (the caller passes a folder statedir.c checked).
 * Anything else is ignored and the files compiled from their text. Bundles
 * are created 0600 in a 0700 folder. Rules still load "as text only": what
 * runs is always this program's compilation of the text on disk (rules.c).
 *
 * A plain store: what an entry holds beside the bytecode (the handover
 * scan's lines) and whether a rule file may run at all are the caller's.
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
#include "trust.h"

#define MAGIC "EVLRC6\n" /* 7 bytes + NUL = 8, at the head of every entry */
#define MAX_BUNDLE (64u << 20)

struct header {
    char magic[8];
    uint64_t key, hash, bc_len;
    uint64_t lines_len; /* after the bytecode: the caller's extra string */
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

uint64_t evl_cache_key(const struct stat *st, const char *chunk)
{
    uint64_t v[8] = {(uint64_t)st->st_dev, (uint64_t)st->st_ino, (uint64_t)st->st_size,
                     (uint64_t)st->st_mtim.tv_sec, (uint64_t)st->st_mtim.tv_nsec,
                     (uint64_t)st->st_ctim.tv_sec, (uint64_t)st->st_ctim.tv_nsec, 0};
    return evl_fnv(chunk, strlen(chunk), evl_fnv(v, sizeof v, EVL_FNV0));
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

void evl_cache_open(const char *dir, const char *rules_dir)
{
    evl_cache_close(0); /* a load that did not finish (an error) leaves nothing behind */
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

int evl_cache_get(lua_State *L, uint64_t key, const char *chunk)
{
    struct header h;
    if (!B.on)
        return 0;
    for (size_t off = 0, next; entry_at(off, &h, &next); off = next) {
        if (h.key != key)
            continue;
        const char *body = B.old + off + sizeof h;
        size_t len = (size_t)(h.bc_len + h.lines_len);
        if (evl_fnv_words(body, len, EVL_FNV0) != h.hash)
            return 0;
        if (luaL_loadbufferx(L, body, h.bc_len, chunk, "b") != LUA_OK) {
            lua_pop(L, 1);
            return 0;
        }
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

void evl_cache_put(lua_State *L, uint64_t key)
{
    struct header h;
    struct wbuf b = {0};
    if (!B.on)
        return;
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
    h.hash = evl_fnv_words(b.p + sizeof h, b.n - sizeof h, EVL_FNV0);
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

void evl_cache_close(int write)
{
    if (write && B.on && (B.changed || B.n != B.old_entries))
        write_bundle();
    for (size_t i = 0; i < B.n; i++)
        free(B.pieces[i].own);
    free(B.pieces);
    free(B.old);
    free(B.file);
    memset(&B, 0, sizeof B);
}
