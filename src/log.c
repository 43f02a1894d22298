/*
 * log.c: one line per message to syslog (ident "eventilator", facility
 * daemon), stderr, or a file opened for append. Control characters and
 * invalid bytes are escaped so a hostile description can't forge log lines.
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_BYTES 8192

static enum { T_SYSLOG, T_STDERR, T_FILE } target = T_SYSLOG;
static int fd = -1;
static int also_stderr;
static enum evl_level min_level = EVL_INFO;
static long pid; /* getpid() is a system call each time: ask once */

static const char *const names[] = {"debug", "info", "warn", "error"};
static const int prio[] = {LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR};

int evl_log_level_from(const char *name, enum evl_level *out)
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

int evl_log_open(const char *t, const char *level)
{
    if (level && evl_log_level_from(level, &min_level) < 0)
        min_level = EVL_INFO;
    if (fd > 2)
        close(fd);
    fd = -1;
    if (!t || strcmp(t, "syslog") == 0) {
        target = T_SYSLOG;
        openlog("eventilator", LOG_PID, LOG_DAEMON);
        return 0;
    }
    if (strcmp(t, "stderr") == 0) {
        target = T_STDERR;
        fd = 2;
        return 0;
    }
    fd = open(t, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0) {
        int e = errno;
        target = T_SYSLOG; /* fall back rather than lose the line */
        openlog("eventilator", LOG_PID, LOG_DAEMON);
        errno = e;
        return -1;
    }
    target = T_FILE;
    return 0;
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

static size_t stamp(char *buf, size_t cap, enum evl_level level)
{
    struct timespec ts;
    struct tm tm;
    static char date[40];
    static time_t date_sec = -1; /* a call logs ~4 lines in the same second: convert once */
    clock_gettime(CLOCK_REALTIME, &ts);
    if (ts.tv_sec != date_sec) {
        localtime_r(&ts.tv_sec, &tm);
        strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
        date_sec = ts.tv_sec;
    }
    if (!pid)
        pid = (long)getpid();
    int n = snprintf(buf, cap, "%s.%03ld eventilator[%ld]: %s: ", date, ts.tv_nsec / 1000000, pid,
                     names[level]);
    return n < 0 ? 0 : (size_t)n;
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
    if (also_stderr && target != T_STDERR)
        write_all(2, line, n);
    if (level >= min_level) {
        if (target == T_SYSLOG) {
            line[n - 1] = '\0';
            syslog(prio[level], "%s", line + h);
        } else {
            write_all(fd, line, n);
        }
    }
    free(big);
}

/*
 * The watchdog and SIGTERM end the call from a signal handler, where neither
 * stdio nor syslog(3) is safe: each line is formatted ahead of time (one per
 * slot) and written with write(2), or sent to /dev/log with plain socket
 * calls, which are async-signal-safe. The context (what the call is doing:
 * loading a rule file, running a handler) is set as the call goes, and
 * appended.
 */
static char emergency[EVL_EMERGENCY_SLOTS][1024];
static size_t emergency_len[EVL_EMERGENCY_SLOTS];
static const char *volatile context; /* the caller keeps it alive while it is set */

void evl_log_prepare_emergency(int slot, const char *msg)
{
    char body[900];
    escape(body, sizeof body, msg);
    if (target == T_SYSLOG) {
        snprintf(emergency[slot], sizeof emergency[slot], "<%d>eventilator[%ld]: error: %s",
                 LOG_DAEMON | LOG_ERR, pid ? pid : (long)getpid(), body);
    } else {
        size_t h = stamp(emergency[slot], sizeof emergency[slot], EVL_ERROR);
        snprintf(emergency[slot] + h, sizeof emergency[slot] - h, "%s", body);
    }
    emergency_len[slot] = strlen(emergency[slot]);
}

void evl_log_emergency_context(const char *what)
{
    context = what; /* a pointer: this runs for every rule file and handler */
}

void evl_log_emergency(int slot)
{
    char line[1700];
    /* before the config has given the budget and the log target: a fixed line */
    static const char *const unprepared[EVL_EMERGENCY_SLOTS] = {
        "eventilator: error: time budget exceeded, stopped by the watchdog; exit 1",
        "eventilator: error: stopped by SIGTERM; exit 1"};
    const char *ctx = context;
    size_t n = emergency_len[slot];
    if (n == 0)
        memcpy(line, unprepared[slot], n = strlen(unprepared[slot]));
    else
        memcpy(line, emergency[slot], n);
    if (ctx) {
        memcpy(line + n, " (", 2);
        n += 2;
        n += escape(line + n, 600, ctx); /* escape() is a pure function: safe here */
        line[n++] = ')';
    }
    if (target == T_SYSLOG) {
        int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un a = {.sun_family = AF_UNIX, .sun_path = "/dev/log"};
        if (s >= 0) {
            (void)sendto(s, line, n, 0, (struct sockaddr *)&a, sizeof a);
            close(s);
        }
        line[n++] = '\n';
        write_all(2, line, n);
    } else {
        line[n++] = '\n';
        write_all(fd, line, n);
        if (also_stderr && fd != 2)
            write_all(2, line, n);
    }
}
