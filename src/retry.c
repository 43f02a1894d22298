/*
 * retry.c: delivery records.
 *
 * Sentinel re-runs a script that exits 1 with the same arguments, up to ten
 * times over ~4 hours. When one handler of three failed, the other two must
 * not fire again. So when a call ends with a failure, the handlers that
 * succeeded are written to <state_dir>/retries/<digest>, where the digest
 * covers the calling Sentinel's pid (a retry always comes from the same
 * process, so two Sentinels on one host never share records), the mode and
 * argv. A later call with the same digest within EVL_RETRY_WINDOW is a
 * retry and skips them; the record goes when every handler has succeeded.
 *
 * Records are written to a temporary file, fsync'ed, and renamed into
 * place, so a SIGKILL at any point leaves the old record or the new one,
 * never half of one. The watchdog writes the record from its signal handler
 * with plain system calls (all async-signal-safe), from a buffer kept up to
 * date as handlers succeed. When the folder can't be written the call still
 * runs every handler and says why in the log.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "log.h"
#include "retry.h"
#include "watch_env.h"

#define REC_MAX 65536

static char rec[REC_MAX];          /* the record as it would be written now */
static volatile size_t rec_len;    /* header + ok lines so far */
static size_t rec_header;          /* length of the header part */
static char path[4096], tmp[4160]; /* ready before any signal can fire */
static char statedir[4096], retrydir[4200];
static int have_path, existed;
static char *done_merged;

static uint64_t fnv(const char *s, size_t n, uint64_t h)
{
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* Append to rec, escaping newlines and backslashes of argument text. */
static void add(const char *s, int escape)
{
    size_t n = rec_len;
    for (; *s && n + 3 < REC_MAX; s++) {
        if (escape && (*s == '\n' || *s == '\\')) {
            rec[n++] = '\\';
            rec[n++] = *s == '\n' ? 'n' : '\\';
        } else {
            rec[n++] = *s;
        }
    }
    rec[n] = '\0';
    rec_len = n;
}

static const char *mode_name(const struct evl_host *h)
{
    return h->mode == EVL_RECONFIG ? "reconfigurator" : "eventilator";
}

static int ensure_dir(const char *dir, char *why, size_t cap)
{
    char sub[4200];
    snprintf(sub, sizeof sub, "%s/retries", dir);
    if (mkdir(dir, 0750) < 0 && errno != EEXIST) {
        snprintf(why, cap, "%s: %s", dir, strerror(errno));
        return -1;
    }
    if (mkdir(sub, 0750) < 0 && errno != EEXIST) {
        snprintf(why, cap, "%s: %s", sub, strerror(errno));
        return -1;
    }
    return 0;
}

void evl_retry_begin(struct evl_host *h)
{
    const char *dir = evl_config_string(h, NULL, "state_dir");
    char line[8192];
    rec_len = 0;
    if (!dir || !*dir)
        return;
    /* digest of (Sentinel's pid, mode, argv) */
    long ppid = (long)getppid();
    snprintf(line, sizeof line, "%ld", ppid);
    if (evl_watch_delivery()) /* watch mode: the watcher's id of this event, not Sentinel's pid */
        snprintf(line, sizeof line, "delivery %s", evl_watch_delivery());
    uint64_t d = fnv(line, strlen(line) + 1, 0xcbf29ce484222325ULL);
    d = fnv(mode_name(h), strlen(mode_name(h)) + 1, d);
    for (int i = 1; i < h->argc; i++)
        d = fnv(h->argv[i], strlen(h->argv[i]) + 1, d);
    snprintf(path, sizeof path, "%s/retries/%016llx", dir, (unsigned long long)d);
    snprintf(statedir, sizeof statedir, "%s", dir);
    snprintf(retrydir, sizeof retrydir, "%s/retries", dir);
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
    have_path = 1;

    snprintf(line, sizeof line, "eventilator-retry 1\nppid %ld\nmode %s\n", ppid, mode_name(h));
    add(line, 0);
    for (int i = 1; i < h->argc; i++) {
        add("arg ", 0);
        add(h->argv[i], 1);
        add("\n", 0);
    }
    rec_header = rec_len;

    /* a record of an earlier run of this very call? */
    struct stat st;
    FILE *f = fopen(path, "re");
    if (!f)
        return;
    existed = 1;
    if (fstat(fileno(f), &st) == 0 && time(NULL) - st.st_mtime > EVL_RETRY_WINDOW) {
        fclose(f);
        unlink(path); /* too old to be Sentinel's retry: a new call */
        existed = 0;
        return;
    }
    size_t cap = 4096, n = 0;
    int skipped = 0;
    char *done = malloc(cap);
    if (!done) {
        fclose(f);
        return;
    }
    done[0] = '\0';
    if (h->done && *h->done) {
        n = strlen(h->done);
        if (n + 2 > cap) {
            char *nd = realloc(done, cap = n + 4096);
            if (!nd) {
                free(done);
                fclose(f);
                return;
            }
            done = nd;
        }
        memcpy(done, h->done, n + 1);
    }
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "ok ", 3) != 0)
            continue;
        size_t l = strlen(line + 3);
        if (n + l + 2 > cap) {
            char *nd = realloc(done, cap = cap * 2 + l);
            if (!nd)
                break;
            done = nd;
        }
        if (n)
            done[n++] = '\n';
        memcpy(done + n, line + 3, l);
        n += l;
        if (n && done[n - 1] == '\n')
            n--;
        done[n] = '\0';
        skipped++;
    }
    fclose(f);
    free(done_merged);
    done_merged = done;
    h->done = done;
    h->retry = 1;
    evl_log(EVL_INFO, "%s: retry of an earlier call by Sentinel pid %ld: %d handler(s) already "
            "succeeded and are skipped", h->argc > 1 ? h->argv[1] : h->name, ppid, skipped);
}

void evl_retry_ok(const char *id)
{
    if (!have_path)
        return;
    add("ok ", 0);
    add(id, 1);
    add("\n", 0);
}

/* Write rec to path via tmp + fsync + rename; only system calls. */
static int write_record(void)
{
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0)
        return -1;
    size_t off = 0, len = rec_len;
    while (off < len) {
        ssize_t w = write(fd, rec + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int e = errno ? errno : ENOSPC;
            close(fd);
            unlink(tmp);
            errno = e;
            return -1;
        }
        off += (size_t)w;
    }
    if (fsync(fd) < 0 || close(fd) < 0) {
        int e = errno;
        unlink(tmp);
        errno = e;
        return -1;
    }
    if (rename(tmp, path) < 0) {
        int e = errno;
        unlink(tmp);
        errno = e;
        return -1;
    }
    return 0;
}

void evl_retry_emergency(void)
{
    if (have_path && rec_len > rec_header) {
        (void)mkdir(statedir, 0750);
        (void)mkdir(retrydir, 0750);
        (void)write_record();
    }
}

/* Old records (older than the window) go when a new one is written. */
static void expire(const char *dir)
{
    char sub[4200], f[4500];
    snprintf(sub, sizeof sub, "%s/retries", dir);
    DIR *d = opendir(sub);
    struct dirent *de;
    struct stat st;
    time_t now = time(NULL);
    if (!d)
        return;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        snprintf(f, sizeof f, "%s/%s", sub, de->d_name);
        if (stat(f, &st) == 0 && now - st.st_mtime > EVL_RETRY_WINDOW)
            unlink(f);
    }
    closedir(d);
}

void evl_retry_end(struct evl_host *h, int failed)
{
    char why[4400] = "";
    if (!have_path)
        return;
    if (!failed) {
        if (existed)
            unlink(path);
        return;
    }
    const char *dir = evl_config_string(h, NULL, "state_dir");
    if (ensure_dir(dir, why, sizeof why) < 0 || write_record() < 0) {
        if (!why[0]) /* ensure_dir said nothing: the write itself failed */
            snprintf(why, sizeof why, "%s: %s", path, strerror(errno));
        evl_log(EVL_WARN, "cannot keep the delivery record (%s): Sentinel's retry will run every "
                "handler again", why);
        return;
    }
    expire(dir);
}

void evl_retry_find(struct evl_host *h, const char *mode, int nargs, char **args)
{
    lua_State *L = h->L;
    const char *dir = evl_config_string(h, NULL, "state_dir");
    char sub[4200], f[4500], line[8192];
    lua_newtable(L);
    if (!dir)
        return;
    /* the header a record of these args would carry, after its ppid line */
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    lua_pushfstring(L, "mode %s\n", mode);
    luaL_addvalue(&b);
    for (int i = 0; i < nargs; i++) {
        rec_len = 0;
        add("arg ", 0);
        add(args[i], 1);
        add("\n", 0);
        luaL_addlstring(&b, rec, rec_len);
    }
    rec_len = 0;
    luaL_pushresult(&b);
    const char *want = lua_tostring(L, -1);
    snprintf(sub, sizeof sub, "%s/retries", dir);
    DIR *d = opendir(sub);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (de->d_name[0] == '.' || strstr(de->d_name, ".tmp"))
            continue;
        snprintf(f, sizeof f, "%s/%s", sub, de->d_name);
        FILE *fp = fopen(f, "re");
        if (!fp)
            continue;
        luaL_Buffer all;
        luaL_buffinit(L, &all);
        while (fgets(line, sizeof line, fp))
            luaL_addstring(&all, line);
        fclose(fp);
        luaL_pushresult(&all);
        const char *text = lua_tostring(L, -1);
        const char *m = strstr(text, "\nmode ");
        /* the same mode and args, and no further arg after them */
        if (m && strncmp(m + 1, want, strlen(want)) == 0 &&
            strncmp(m + 1 + strlen(want), "arg ", 4) != 0) {
            lua_pushstring(L, f);
            lua_pushvalue(L, -2);
            lua_settable(L, -5);
        }
        lua_pop(L, 1);
    }
    if (d)
        closedir(d);
    lua_pop(L, 1);
}
