/*
 * delivery.c: which handlers of an event have succeeded, and the delivery
 * records that keep it across Sentinel's retries.
 *
 * Sentinel re-runs a script that exits 1 (or dies by a signal) with the same
 * arguments, up to ten times over ~4 hours, and only after the run before
 * has ended. When one handler of three failed, the other two must not fire
 * again. So every success is appended to this call's record,
 * <state_dir>/retries/<digest>-<pid>, as it happens: a SIGTERM, the
 * watchdog or a SIGKILL after handler 1 loses nothing. The digest covers the
 * calling Sentinel's pid (a retry always comes from the same process, so two
 * Sentinels on one host never share records), the mode and argv; or, when
 * the watcher passes EVENTILATOR_DELIVERY, that id and the mode.
 *
 * A call holds an flock on its record while it runs. At the start a call
 * looks for records with its digest: one still locked belongs to an
 * identical call that is still running, so this call is a new event (a
 * repeat is not a retry) and runs every handler. One that is not locked
 * belongs to a call that ended with a failure: this call is its retry, takes
 * the record over (rename to its own name, under the lock, so two retries
 * never take the same one) and skips what it lists. The record goes when
 * every handler has succeeded; records older than EVL_RETRY_WINDOW are not
 * retries and are cleaned up.
 *
 * In memory the set is one string, an id a line: what a record listed, what
 * the lean binary ran before it handed over (h->call.inherited), and each
 * success of this call, which a later handover passes on in turn.
 *
 * Writes are single write(2)s of whole lines, appended, to the page cache; a killed
 * process loses none of them, so there is no fsync per handler (what a power
 * loss can cost is one handler run twice, as without records). A torn last
 * line has no newline and is not read. Records are 0600 in a 0700 folder,
 * and a record this user did not write, or others can write, is ignored.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "config.h"
#include "delivery.h"
#include "digits.h"
#include "fnv.h"
#include "log.h"
#include "statedir.h"
#include "trust.h"

#define REC_MAX 65536

/*
 * On the heap, sized to what they hold: as 4-64 KB statics each was a page
 * of its own, and the first touch of a page is a fault (~14 us on a VM).
 */
static char *rec;           /* the header, then scratch for one ok line */
static size_t rec_len, rec_cap;
static char *dir, *mine;    /* <state_dir>/retries, and this call's record in it */
static char prefix[24];     /* "<digest>-" */
static int active;          /* begin found a usable state folder */
static int fd = -1;         /* this call's record, open for append, locked */
static char write_error[4600];
/* write_error holds one: a flag, so that a call without one never touches the buffer's page */
static int has_write_error;
static struct {
    char *p;  /* "id\n" per handler that succeeded; NULL or "" when none */
    size_t n, cap;
} done;

/* One id (len bytes; a list of them, newline-separated, too) into the set. */
static void done_add(const char *id, size_t len)
{
    if (done.n + len + 2 > done.cap) {
        size_t cap = (done.n + len + 2) * 2 < 256 ? 256 : (done.n + len + 2) * 2;
        char *p = realloc(done.p, cap);
        if (!p)
            return; /* out of memory: a retry or a handover runs it again */
        done.p = p;
        done.cap = cap;
    }
    memcpy(done.p + done.n, id, len);
    done.n += len;
    done.p[done.n++] = '\n';
    done.p[done.n] = '\0';
}

int evl_delivery_done(const char *id)
{
    size_t n = strlen(id);
    for (const char *p = done.n ? done.p : NULL; p && *p;) {
        const char *e = strchr(p, '\n');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == n && memcmp(p, id, n) == 0)
            return 1;
        p = e ? e + 1 : NULL;
    }
    return 0;
}

const char *evl_delivery_list(void)
{
    return done.n ? done.p : NULL;
}

/* Append to rec, escaping newlines and backslashes of argument text (up to REC_MAX bytes in all). */
static void add(const char *s, int escape)
{
    size_t n = rec_len, want = n + 2 * strlen(s) + 3;
    if (want > REC_MAX)
        want = REC_MAX;
    if (want > rec_cap) {
        size_t cap = want < 512 ? 512 : want * 2 < REC_MAX ? want * 2 : REC_MAX;
        char *r = realloc(rec, cap);
        if (!r)
            return; /* out of memory: the text is cut short, as past REC_MAX */
        rec = r;
        rec_cap = cap;
    }
    for (; *s && n + 3 < rec_cap; s++) {
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

/*
 * The record open at rfd: its "ok" lines into the set, and the
 * CLOCK_BOOTTIME second of its last "start" or "end" line (*t, -1 when it
 * has none: a record of an older version). Returns how many ok lines.
 */
static int read_record(int rfd, double *t)
{
    FILE *f = fdopen(dup(rfd), "r");
    char line[8192];
    int count = 0;
    *t = -1;
    if (!f)
        return 0;
    while (fgets(line, sizeof line, f)) {
        size_t l = strlen(line);
        if (line[l - 1] != '\n')
            continue; /* a torn last line has no newline */
        if (strncmp(line, "start ", 6) == 0 || strncmp(line, "end ", 4) == 0)
            *t = strtod(strchr(line, ' ') + 1, NULL);
        if (strncmp(line, "ok ", 3) != 0)
            continue;
        done_add(line + 3, l - 4);
        count++;
    }
    fclose(f);
    return count;
}

/* config script_retry_delay: Sentinel's script-retry-delay, seconds */
static double retry_delay(struct evl_host *h)
{
    return evl_config_number(h, NULL, "script_retry_delay", EVL_SCRIPT_RETRY_DELAY);
}

static double boottime(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_BOOTTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The record `name` in dir: ours, ended (not locked), recent? Then take it over. */
static __attribute__((noinline)) int claim(struct evl_host *h, const char *name)
{
    char path[4500];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int rfd = open(path, O_RDWR | O_APPEND | O_CLOEXEC | O_NOFOLLOW);
    if (rfd < 0)
        return 0;
    /* locked: that call is still running; empty once locked: being created */
    if (fstat(rfd, &st) < 0 || !S_ISREG(st.st_mode) || !evl_ours(&st) ||
        flock(rfd, LOCK_EX | LOCK_NB) < 0 || fstat(rfd, &st) < 0 || st.st_size == 0) {
        close(rfd);
        return 0;
    }
    if (time(NULL) - st.st_mtime > EVL_RETRY_WINDOW) {
        unlink(path); /* too old to be Sentinel's retry */
        close(rfd);
        return 0;
    }
    /* the lean binary's record, same pid (a watch runner's own earlier event is a retry) */
    int handover = h->call.handover && strcmp(path, mine) == 0;
    double ended;
    size_t before = done.n;
    int skipped = read_record(rfd, &ended);
    /*
     * Sentinel schedules a retry script-retry-delay (30 s) after it collects
     * the failed call's exit, so a record that ended sooner than that is an
     * identical event's, not ours to take: this call is a repeat. A watcher's
     * delivery id names the event itself and needs no such rule.
     */
    if ((!handover && !h->call.delivery && ended >= 0 && boottime() - ended < retry_delay(h)) ||
        (!handover && rename(path, mine) < 0)) { /* a repeat; or another retry took it first */
        done.n = before; /* not ours: what it listed runs */
        if (done.p)
            done.p[done.n] = '\0';
        close(rfd);
        return 0;
    }
    fd = rfd;
    if (!handover) {
        h->call.retry = 1;
        const char *ev = h->call.argc > 1 ? h->call.argv[1] : h->name;
        if (h->call.delivery)
            evl_log(EVL_INFO, "%s: retry of an earlier call with delivery id %s: %d handler(s) "
                    "already succeeded and are skipped", ev, h->call.delivery, skipped);
        else
            evl_log(EVL_INFO, "%s: retry of an earlier call by Sentinel pid %ld: %d handler(s) "
                    "already succeeded and are skipped", ev, (long)getppid(), skipped);
    }
    return 1;
}

void evl_delivery_begin(struct evl_host *h)
{
    char line[32]; /* small: claim's and read_record's big buffers are theirs (a shallow stack) */
    struct stat st;
    rec_len = 0;
    if (h->call.inherited)
        done_add(h->call.inherited, strlen(h->call.inherited));
    if (!h->state.ok)
        return;
    /* digest of (Sentinel's pid, mode, argv), or of (delivery id, mode) */
    long ppid = (long)getppid();
    uint64_t d;
    const struct evl_call *c = &h->call;
    if (c->delivery) { /* the bytes of "delivery <id>\n" and its NUL */
        d = evl_fnv("delivery ", 9, EVL_FNV0);
        d = evl_fnv(c->delivery, strlen(c->delivery), d);
        d = evl_fnv("\n", 2, d);
        d = evl_fnv(mode_name(h), strlen(mode_name(h)) + 1, d);
    } else {
        snprintf(line, sizeof line, "%ld", ppid);
        d = evl_fnv(line, strlen(line) + 1, EVL_FNV0);
        d = evl_fnv(mode_name(h), strlen(mode_name(h)) + 1, d);
        for (int i = 1; i < c->argc; i++)
            d = evl_fnv(c->argv[i], strlen(c->argv[i]) + 1, d);
    }
    size_t dl = strlen(h->state.dir) + sizeof "/retries";
    free(dir);
    free(mine);
    dir = malloc(dl);
    mine = malloc(dl + sizeof prefix + 24);
    if (!dir || !mine)
        return; /* out of memory: no record, as with no state folder */
    snprintf(dir, dl, "%s/retries", h->state.dir);
    snprintf(prefix, sizeof prefix, "%016llx-", (unsigned long long)d);
    snprintf(mine, dl + sizeof prefix + 24, "%s/%s%ld", dir, prefix, (long)getpid());
    active = 1;

    add("eventilator-retry 2\n", 0);
    if (c->delivery) {
        add("delivery ", 0);
        add(c->delivery, 1);
        add("\n", 0);
    } else {
        snprintf(line, sizeof line, "ppid %ld\n", ppid);
        add(line, 0);
    }
    add("mode ", 0);
    add(mode_name(h), 0);
    add("\n", 0);
    for (int i = 1; i < c->argc; i++) {
        add("arg ", 0);
        add(c->argv[i], 1);
        add("\n", 0);
    }

    DIR *dp = opendir(dir);
    if (!dp)
        return; /* no folder yet: no record */
    int seen = fstat(dirfd(dp), &st) == 0;
    if (!seen || !evl_private_check(&st, dir, write_error, sizeof write_error)) {
        has_write_error = seen; /* the check says why whenever it refuses */
        active = 0;
        closedir(dp);
        return;
    }
    struct dirent *de;
    size_t pl = strlen(prefix);
    while ((de = readdir(dp)))
        if (strncmp(de->d_name, prefix, pl) == 0 && claim(h, de->d_name))
            break;
    closedir(dp);
}

/*
 * The first success: the record is created, locked, then written (header, the
 * time it was made, and the line, in one write). A call that opens it before
 * the lock sees it empty and leaves it alone (claim), so no temporary name is
 * needed. The time stands for the call's end should the call be killed
 * before evl_delivery_end writes one.
 */
static int create(size_t header)
{
    int flags = O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC;
    int nfd = open(mine, flags, 0600);
    if (nfd < 0 && errno == ENOENT) { /* the first record ever */
        if (!evl_private_dir(dir, write_error, sizeof write_error)) {
            has_write_error = 1;
            return -1;
        }
        nfd = open(mine, flags, 0600);
    }
    if (nfd < 0)
        return -1;
    char start[48] = "start ";
    size_t sl = 6 + evl_put_fixed(start + 6, boottime(), 3);
    start[sl++] = '\n';
    struct iovec iov[3] = {{rec, header}, {start, sl}, {rec + header, rec_len - header}};
    size_t want = rec_len + sl;
    if (flock(nfd, LOCK_EX) < 0 || writev(nfd, iov, 3) != (ssize_t)want) {
        int e = errno;
        close(nfd);
        unlink(mine);
        errno = e;
        return -1;
    }
    fd = nfd;
    return 0;
}

void evl_delivery_ok(const char *id, int call_ends_ok)
{
    /*
     * The last handler of a call that has had no failure: the call exits 0
     * right after it and the record is removed at once (or was never made),
     * so its line is not written, nor kept in memory (no handover can follow).
     * A kill in the microseconds between this handler's return and the exit
     * makes Sentinel's retry run it again.
     */
    if (call_ends_ok)
        return;
    done_add(id, strlen(id));
    if (!active)
        return;
    size_t header = rec_len;
    add("ok ", 0);
    add(id, 1);
    add("\n", 0);
    int ok;
    if (fd < 0) {
        ok = create(header) == 0; /* writes header and this line at once */
    } else {
        ssize_t w = write(fd, rec + header, rec_len - header);
        ok = w == (ssize_t)(rec_len - header);
    }
    rec_len = header;
    if (!ok && !has_write_error) {
        snprintf(write_error, sizeof write_error, "%s: %s", mine, strerror(errno ? errno : ENOSPC));
        has_write_error = 1;
    }
}

/* Old records (older than the window) go when a call keeps a new one. */
static void expire(void)
{
    char f[4500];
    DIR *d = opendir(dir);
    struct dirent *de;
    struct stat st;
    time_t now = time(NULL);
    if (!d)
        return;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        snprintf(f, sizeof f, "%s/%s", dir, de->d_name);
        if (stat(f, &st) == 0 && now - st.st_mtime > EVL_RETRY_WINDOW)
            unlink(f);
    }
    closedir(d);
}

void evl_delivery_end(struct evl_host *h, int failed)
{
    if (!failed) {
        if (fd >= 0)
            unlink(mine);
        return;
    }
    const char *why = !h->state.ok ? h->state.why : has_write_error ? write_error : NULL;
    if (why) {
        evl_log(EVL_WARN, "cannot keep the delivery record (%s): Sentinel's retry will run every "
                "handler again", why);
        return;
    }
    if (fd >= 0) {
        char end[48] = "end "; /* when this call ended, for the repeat rule (claim) */
        size_t el = 4 + evl_put_fixed(end + 4, boottime(), 3);
        end[el++] = '\n';
        if (write(fd, end, el) != (ssize_t)el)
            evl_log(EVL_WARN, "%s: %s: a repeat of this event within script_retry_delay may "
                    "be taken for its retry", mine, strerror(errno ? errno : ENOSPC));
        expire();
    }
}

void evl_delivery_reset(void)
{
    done.n = 0;
    if (fd >= 0)
        close(fd); /* releases the lock: a failed event's record is now a retry's to take */
    fd = -1;
    active = 0;
    rec_len = 0;
    has_write_error = 0;
}

void evl_delivery_records(struct evl_host *h)
{
    char sub[4200], f[4500];
    size_t len;
    int err;
    lua_newtable(h->L);
    snprintf(sub, sizeof sub, "%s/retries", h->state.dir ? h->state.dir : "");
    DIR *d = h->state.dir ? opendir(sub) : NULL;
    for (struct dirent *de; d && (de = readdir(d));) {
        snprintf(f, sizeof f, "%s/%s", sub, de->d_name);
        char *text = de->d_name[0] == '.' || strstr(de->d_name, ".tmp") ? NULL
                     : evl_read_file(f, 16u << 20, &len, &err, NULL);
        if (text) {
            lua_pushlstring(h->L, text, len);
            lua_setfield(h->L, -2, f);
            free(text);
        }
    }
    if (d)
        closedir(d);
}
