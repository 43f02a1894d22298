/*
 * log.c: one line per message to syslog (ident "eventilator", facility
 * daemon), stderr, or a file opened for append. Control characters and
 * invalid bytes are escaped so a hostile description can't forge log lines.
 *
 * Lines never vanish (docs/config.md, "Where the log goes"). Syslog is its
 * datagram socket, /dev/log, written here as syslog(3) would write it, so
 * that a missing one is known: a host or container without a syslog daemon
 * has none, and the lines go to the fallback file instead
 * (/var/log/redis/eventilator.log, which Debian's sandboxed redis-sentinel
 * unit may write). The socket is tried at the first line, not when the log
 * opens, and a missing one is not tried again for a minute. A log file this
 * user cannot open for append sends its lines to the fallback too, with one
 * line there saying why and how to fix it, once per process. When even the
 * fallback cannot be opened, stderr is what is left (the journal under
 * Debian's unit).
 */
#include "digits.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "paths.h"
#include "statedir.h"

#define LINE_MAX_BYTES 8192

static enum { T_SYSLOG, T_STDERR, T_FILE } target = T_SYSLOG;
static int fd = -1;        /* T_FILE: the file, -1 when it would not open; T_STDERR: 2 */
static int sock = -1;      /* T_SYSLOG: connected to the syslog socket */
static int sock_stream;    /* that socket is a stream: each message ends with a NUL */
static time_t syslog_down; /* when the socket was last missing: not tried again for a minute */
static int fb = -1;        /* the fallback file, opened at its first line (2: it would not open) */
static int also_stderr;
static enum evl_level min_level = EVL_INFO;
static long pid; /* getpid() is a system call each time: ask once */
/* Tests move both (EVENTILATOR_SYSLOG_SOCKET, EVENTILATOR_LOG_FALLBACK); read at open. */
static const char *sock_path = EVL_SYSLOG_SOCKET, *fb_path = EVL_LOG_FALLBACK;
static char *file_target;  /* T_FILE: its path, for evl_log_where */
static char *reported;     /* the file target whose problem was logged: once per process */
static char why[1200];     /* why lines do not go to the file target (only on that path) */

static const char *const names[] = {"debug", "info", "warn", "error"};
static const int prio[] = {LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR};

static int evl_log_level_from(const char *name, enum evl_level *out)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(name, names[i]) == 0) {
            *out = (enum evl_level)i;
            return 0;
        }
    if (strcmp(name, "warning") == 0) {
        *out = EVL_WARN;
        return 0;
    }
    return -1;
}

static void write_all(int to, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = write(to, s, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        s += w;
        n -= (size_t)w;
    }
}

/*
 * A file this process made, as root: give it to the owner and group of its
 * folder. /var/log/redis is redis's, so the file that root's `eventilator
 * check` or a call run by hand makes there is the Sentinel's user's to
 * append to; 0640 root-owned would lock it out. A folder of root's keeps a
 * root-owned file (nobody else could have made one there). Only on the
 * creating path: its buffer stays off the stack of every other open.
 */
__attribute__((noinline)) static void give_to_folder_owner(int f, const char *path)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    size_t n = slash ? (size_t)(slash - path) : 0;
    struct stat st;
    if (n >= sizeof dir)
        return;
    if (slash == path)
        n = 1; /* a file in / */
    memcpy(dir, slash ? path : ".", slash ? n : 1);
    dir[slash ? n : 1] = '\0';
    if (stat(dir, &st) == 0 && st.st_uid != 0)
        (void)fchown(f, st.st_uid, st.st_gid);
}

/*
 * A log file opened for append, made 0640 when missing. Never through a
 * symbolic link: a link in a folder another user may write could point at
 * any file, and root's `check` would append to it. Async-signal-safe (the
 * emergency lines open the fallback with it).
 */
static int open_append(const char *path)
{
    const int flags = O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY;
    int f = open(path, flags);
    if (f >= 0 || errno != ENOENT)
        return f;
    f = open(path, flags | O_CREAT | O_EXCL, 0640);
    if (f < 0) /* EEXIST: a call running at the same time made it first */
        return errno == EEXIST ? open(path, flags) : -1;
    if (geteuid() == 0)
        give_to_folder_owner(f, path);
    return f;
}

/* The fallback file, opened at its first line; stderr (2) when even that fails. Signal-safe. */
static int fallback_safe(void)
{
    if (fb < 0 && (fb = open_append(fb_path)) < 0)
        fb = 2;
    return fb;
}

/* The same, saying once on stderr why the fallback would not open. */
static int fallback(void)
{
    if (fb >= 0)
        return fb;
    fb = open_append(fb_path);
    if (fb < 0) {
        char msg[600];
        int e = errno, n = snprintf(msg, sizeof msg, "eventilator: cannot append to the fallback log "
                                    "%s (%s); logging to stderr\n", fb_path, strerror(e));
        fb = 2;
        if (n > 0)
            write_all(2, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
    }
    return fb;
}

/* Syslog's socket, connected: 1, or 0 when there is none. Async-signal-safe. */
static int syslog_open(void)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    size_t len = strlen(sock_path);
    time_t now = time(NULL);
    if (sock >= 0)
        return 1;
    if (syslog_down && now - syslog_down < 60)
        return 0;
    if (len < sizeof a.sun_path) {
        memcpy(a.sun_path, sock_path, len + 1);
        /* a datagram socket, as every syslog daemon offers; a stream one as syslog(3) also takes */
        for (int type = SOCK_DGRAM;; type = SOCK_STREAM) {
            int s = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
            if (s >= 0 && connect(s, (struct sockaddr *)&a, sizeof a) == 0) {
                sock = s;
                sock_stream = type == SOCK_STREAM;
                syslog_down = 0;
                return 1;
            }
            int e = errno;
            if (s >= 0)
                close(s);
            if (type == SOCK_STREAM || e != EPROTOTYPE)
                break;
        }
    }
    syslog_down = now ? now : 1;
    return 0;
}

/* One message to syslog: 1 sent, 0 not (no socket, or it broke and would not come back). */
static int syslog_send(const char *head, size_t hn, const char *msg, size_t len)
{
    struct iovec iov[3] = {{(void *)head, hn}, {(void *)msg, len}, {(void *)"", 1}};
    struct msghdr m = {.msg_iov = iov, .msg_iovlen = 2};
    for (int attempt = 0; attempt < 2; attempt++) {
        if (!syslog_open())
            return 0;
        m.msg_iovlen = sock_stream ? 3 : 2;
        if (sendmsg(sock, &m, MSG_NOSIGNAL) >= 0)
            return 1;
        close(sock); /* the daemon restarted: connect again, once */
        sock = -1;
    }
    syslog_down = time(NULL);
    return 0;
}

/*
 * Why `path` cannot be opened for append (errno err), with a fix that
 * cannot harm: the call does not know the Sentinel's user, so a fix that
 * gives something to the running user says "if it is the Sentinel's user",
 * and one run as root is told to run as that user (the rule of statedir.c).
 */
static void explain(int err, const char *path)
{
    char me[64], owner[64], dir[PATH_MAX];
    struct stat st;
    uid_t uid = geteuid();
    int n = snprintf(why, sizeof why, "log file %s cannot be opened for append, so this process "
                     "logs to %s: ", path, fb_path);
    char *w = why + (n > 0 && (size_t)n < sizeof why ? n : 0);
    size_t cap = sizeof why - (size_t)(w - why);
    const char *slash = strrchr(path, '/');
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash == path ? 1 : slash - path) : 1,
             slash ? path : ".");
    evl_user_name(uid, me, sizeof me);
    if (err == ELOOP)
        snprintf(w, cap, "it is a symbolic link, and the log is never written through one; fix: "
                 "give log.target the file it points to");
    else if (err == EISDIR)
        snprintf(w, cap, "it is a folder; fix: give log.target a file's path");
    else if (err == EROFS)
        snprintf(w, cap, "it is on a read-only file system here (Debian's redis-sentinel unit "
                 "lets its scripts write only under /var/log/redis, /var/lib/redis and "
                 "/etc/redis); fix: point log.target into /var/log/redis");
    else if (err == ENOENT)
        snprintf(w, cap, "its folder %s does not exist; fix: make it, writable by the Sentinel's "
                 "user, or point log.target into /var/log/redis", dir);
    else if ((err == EACCES || err == EPERM) && stat(path, &st) == 0 && st.st_uid != uid &&
             uid != 0) {
        evl_user_name(st.st_uid, owner, sizeof owner);
        if (st.st_uid == 0) /* made by root: right to give it away only to the Sentinel's user */
            snprintf(w, cap, "it belongs to root, not to %s, which runs this call: if %s is the "
                     "Sentinel's user, fix (as root): chown %s %s", me, me, me, path);
        else
            snprintf(w, cap, "it belongs to %s, not to %s, which runs this call: run it as the "
                     "Sentinel's user (sudo -u %s ...)", owner, me, owner);
    } else if ((err == EACCES || err == EPERM) && stat(dir, &st) == 0 && st.st_uid != uid &&
               uid != 0) {
        evl_user_name(st.st_uid, owner, sizeof owner);
        if (st.st_uid == 0) /* root's folder: the file alone, never the folder */
            snprintf(w, cap, "%s may not make files in %s, which belongs to root: if %s is the "
                     "Sentinel's user, fix (as root): install -m 640 -o %s /dev/null %s", me, dir,
                     me, me, path);
        else
            snprintf(w, cap, "%s may not make files in %s, which belongs to %s: run it as the "
                     "Sentinel's user (sudo -u %s ...)", me, dir, owner, owner);
    } else {
        snprintf(w, cap, "%s", strerror(err));
    }
}

int evl_log_open(const char *t, const char *level)
{
    const char *e;
    if (level && evl_log_level_from(level, &min_level) < 0)
        min_level = EVL_INFO;
    sock_path = (e = getenv("EVENTILATOR_SYSLOG_SOCKET")) && *e ? e : EVL_SYSLOG_SOCKET;
    fb_path = (e = getenv("EVENTILATOR_LOG_FALLBACK")) && *e ? e : EVL_LOG_FALLBACK;
    if (fd > 2)
        close(fd);
    fd = -1;
    if (fb > 2) /* opened again at its next line: a reload follows a rotated file */
        close(fb);
    fb = -1;
    free(file_target);
    file_target = NULL;
    if (!t || strcmp(t, "syslog") == 0) {
        target = T_SYSLOG; /* the socket is tried at the first line */
        return 0;
    }
    if (sock >= 0)
        close(sock);
    sock = -1;
    if (strcmp(t, "stderr") == 0) {
        target = T_STDERR;
        fd = 2;
        return 0;
    }
    target = T_FILE;
    file_target = strdup(t);
    fd = open_append(t);
    if (fd >= 0)
        return 0;
    int err = errno;
    explain(err, t);
    if (!reported || strcmp(reported, t) != 0) { /* once per process, even when opened again */
        free(reported);
        reported = strdup(t);
        evl_log(EVL_ERROR, "%s", why);
    }
    errno = err;
    return -1;
}

const char *evl_log_where(const char **reason, const char **fallback_path)
{
    static char nosock[PATH_MAX + 80];
    *reason = NULL;
    *fallback_path = fb_path;
    if (target == T_STDERR)
        return "stderr";
    if (target == T_FILE && fd >= 0)
        return file_target;
    if (target == T_FILE) {
        *reason = why;
        return fb_path;
    }
    if (syslog_open())
        return "syslog";
    snprintf(nosock, sizeof nosock, "no syslog socket at %s (no syslog daemon)", sock_path);
    *reason = nosock;
    return fb_path;
}

/* A child forked without exec (watch mode's runs): its own pid in its lines. */
void evl_log_forked(void)
{
    pid = 0;
}

void evl_log_also_stderr(int on)
{
    also_stderr = on;
}

/* Escape what would break a one-line log: controls, DEL, backslash. */
static size_t escape(char *out, size_t cap, const char *in)
{
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p && o + 5 < cap; p++) {
        if (*p < 0x20 || *p == 0x7f) {
            static const char hex[] = "0123456789abcdef";
            if (*p == '\n' && p[1] != '\0') {
                /* tracebacks: keep them readable on one line */
                out[o++] = ' ';
                out[o++] = '|';
                out[o++] = ' ';
                continue;
            }
            if (*p == '\n' || *p == '\t') {
                out[o++] = ' ';
                continue;
            }
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 15];
        } else {
            out[o++] = (char)*p;
        }
    }
    out[o] = '\0';
    return o;
}

/* The local time of the line being written, and its second (dates are made once a second). */
static struct tm now_tm;
static time_t now_sec = -1;

static size_t stamp(char *buf, size_t cap, enum evl_level level)
{
    struct timespec ts;
    static char date[40];
    static time_t date_sec = -1; /* a call logs ~4 lines in the same second: convert once */
    clock_gettime(CLOCK_REALTIME, &ts);
    if (ts.tv_sec != date_sec) {
        localtime_r(&ts.tv_sec, &now_tm);
        strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &now_tm);
        date_sec = now_sec = ts.tv_sec;
    }
    if (!pid)
        pid = (long)getpid();
    /* "<date>.mmm eventilator[pid]: level: " by hand (digits.h): snprintf was ~3 k instructions a line */
    char head[96];
    size_t n = strlen(date);
    memcpy(head, date, n);
    head[n++] = '.';
    n += evl_put_uint(head + n, (unsigned long long)(ts.tv_nsec / 1000000), 3);
    memcpy(head + n, " eventilator[", 13);
    n += 13;
    n += evl_put_uint(head + n, (unsigned long long)pid, 1);
    head[n++] = ']';
    head[n++] = ':';
    head[n++] = ' ';
    size_t ln = strlen(names[level]);
    memcpy(head + n, names[level], ln);
    n += ln;
    head[n++] = ':';
    head[n++] = ' ';
    if (cap == 0)
        return 0;
    if (n >= cap)
        n = cap - 1;
    memcpy(buf, head, n);
    buf[n] = '\0';
    return n;
}

/*
 * The line (its stamp h bytes long, then the message and a newline, n in
 * all) where the target says, or to the fallback. on_stderr: a copy went to
 * stderr already, so a fallback that ended there writes nothing more.
 */
static void deliver(enum evl_level level, const char *line, size_t n, size_t h, int on_stderr)
{
    if (target == T_SYSLOG) {
        /* RFC 3164, as syslog(3) sends it: <facility|priority>Mmm dd hh:mm:ss ident[pid]: */
        static char sdate[20];
        static time_t sdate_sec = -1;
        char head[64];
        if (sdate_sec != now_sec) {
            strftime(sdate, sizeof sdate, "%b %e %H:%M:%S", &now_tm);
            sdate_sec = now_sec;
        }
        int hn = snprintf(head, sizeof head, "<%d>%s eventilator[%ld]: ", LOG_DAEMON | prio[level],
                          sdate, pid);
        if (hn > 0 && (size_t)hn < sizeof head && syslog_send(head, (size_t)hn, line + h, n - h - 1))
            return;
    }
    int to = target == T_SYSLOG || fd < 0 ? fallback() : fd;
    if (!(to == 2 && on_stderr))
        write_all(to, line, n);
}

/* What a line can grow to when escape() writes \xNN for every byte, plus the stamp. */
#define ESCAPED(n) (4 * (n) + 128)

void evl_log(enum evl_level level, const char *fmt, ...)
{
    /*
     * Most lines are short: a small frame keeps the stack shallow (the first
     * touch of each stack page is a fault, ~14 us on a VM, and a call logs
     * from deep in the VM); a longer one is formatted again on the heap.
     */
    char small_raw[256], small_line[ESCAPED(256)], *big = NULL;
    char *raw = small_raw, *line = small_line;
    size_t raw_cap = sizeof small_raw, line_cap = sizeof small_line;
    va_list ap;
    if (level < min_level && !(also_stderr && level >= (also_stderr > 1 ? EVL_DEBUG : EVL_INFO)))
        return;
    va_start(ap, fmt);
    int want = vsnprintf(raw, raw_cap, fmt, ap);
    va_end(ap);
    if (want >= (int)raw_cap) {
        size_t need = (size_t)want < LINE_MAX_BYTES ? (size_t)want + 1 : LINE_MAX_BYTES;
        if ((big = malloc(need + ESCAPED(need)))) { /* else: the short start of it */
            raw = big;
            raw_cap = need;
            line = big + need;
            line_cap = ESCAPED(need);
            va_start(ap, fmt);
            vsnprintf(raw, raw_cap, fmt, ap);
            va_end(ap);
        }
    }
    size_t h = stamp(line, line_cap, level);
    size_t n = h + escape(line + h, line_cap - h - 1, raw);
    line[n++] = '\n';
    int copied = also_stderr && target != T_STDERR;
    if (copied)
        write_all(2, line, n);
    if (level >= min_level)
        deliver(level, line, n, h, copied);
    free(big);
}

/*
 * The watchdog and SIGTERM end the call from a signal handler, where neither
 * stdio nor syslog(3) is safe: each message is escaped ahead of time (one per
 * slot), with the line's start, and written with write(2), or sent to syslog
 * with plain socket calls, which are async-signal-safe; a syslog that is
 * missing sends it to the fallback file, as any other line. The context
 * (what the call is doing: loading a rule file, running a handler) is set as
 * the call goes, and appended.
 */
static char emergency[EVL_EMERGENCY_SLOTS][900];
static size_t emergency_len[EVL_EMERGENCY_SLOTS];
static char ehead_file[80], ehead_syslog[48]; /* the line's start: a file's, syslog's */
static size_t ehead_file_len, ehead_syslog_len;
static const char *volatile context; /* the caller keeps it alive while it is set */

void evl_log_prepare_emergency(int slot, const char *msg)
{
    emergency_len[slot] = escape(emergency[slot], sizeof emergency[slot], msg);
}

/* The lines' starts, every slot's (the time is the arming's): once per arming, not per slot. */
void evl_log_prepare_emergency_heads(void)
{
    ehead_file_len = stamp(ehead_file, sizeof ehead_file, EVL_ERROR);
    int n = snprintf(ehead_syslog, sizeof ehead_syslog, "<%d>eventilator[%ld]: error: ",
                     LOG_DAEMON | LOG_ERR, pid);
    ehead_syslog_len = n > 0 && (size_t)n < sizeof ehead_syslog ? (size_t)n : 0;
}

void evl_log_emergency_context(const char *what)
{
    context = what; /* a pointer: this runs for every rule file and handler */
}

/* head and tail as one write, so lines of calls appending at once do not mix */
static void write_two(int to, const char *head, size_t hn, const char *tail, size_t tn)
{
    struct iovec iov[2] = {{(void *)head, hn}, {(void *)tail, tn}};
    if (writev(to, iov, 2) < 0) { /* nothing else to try from a signal handler */
    }
}

void evl_log_emergency(int slot)
{
    char tail[1700];
    /* before the config has given the budget and the log target: a fixed line */
    static const char *const unprepared[EVL_EMERGENCY_SLOTS] = {
        "time budget exceeded, stopped by the watchdog; exit 1", "stopped by SIGTERM; exit 1"};
    static const char plain_head[] = "eventilator: error: ";
    const char *ctx = context;
    const char *fh = ehead_file_len ? ehead_file : plain_head;
    const char *sh = ehead_syslog_len ? ehead_syslog : plain_head;
    size_t fhn = ehead_file_len ? ehead_file_len : sizeof plain_head - 1;
    size_t shn = ehead_syslog_len ? ehead_syslog_len : sizeof plain_head - 1;
    size_t n = emergency_len[slot];
    if (n == 0)
        memcpy(tail, unprepared[slot], n = strlen(unprepared[slot]));
    else
        memcpy(tail, emergency[slot], n);
    if (ctx) {
        memcpy(tail + n, " (", 2);
        n += 2;
        n += escape(tail + n, 600, ctx); /* escape() is a pure function: safe here */
        tail[n++] = ')';
    }
    tail[n++] = '\n';
    if (target == T_SYSLOG) {
        int sent = syslog_send(sh, shn, tail, n - 1);
        write_two(2, fh, fhn, tail, n);
        if (!sent && fallback_safe() != 2)
            write_two(fb, fh, fhn, tail, n);
    } else {
        int to = fd >= 0 ? fd : fallback_safe();
        write_two(to, fh, fhn, tail, n);
        if (also_stderr && to != 2)
            write_two(2, fh, fhn, tail, n);
    }
}
