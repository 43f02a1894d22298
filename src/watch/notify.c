/*
 * notify.c: systemd's notification protocol (notify.h).
 *
 * Why not libsystemd's sd_notify: the protocol is documented and stable (a
 * datagram of KEY=VALUE lines to $NOTIFY_SOCKET, a path or, with a leading
 * '@', an abstract name), it is a dozen lines, and the full runtime would
 * otherwise load libsystemd (and its own dependencies) in every call that
 * hands over to it, not only in watch mode.
 *
 * A socket is opened per message: messages are rare (READY once, a
 * watchdog ping every few seconds, a status when it changes), and no
 * descriptor is left for a runner's fork to inherit.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "notify.h"

static struct sockaddr_un addr;
static socklen_t addrlen;
static double watchdog;      /* s: WatchdogSec=, 0 when off */
static double next_ping;     /* monotonic s */
static int held, complained;

void evl_notify_init(void)
{
    const char *path = getenv("NOTIFY_SOCKET");
    const char *usec = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");
    size_t n = path ? strlen(path) : 0;
    if (n >= 2 && n < sizeof addr.sun_path && (path[0] == '/' || path[0] == '@')) {
        addr.sun_family = AF_UNIX;
        memcpy(addr.sun_path, path, n);
        if (path[0] == '@')
            addr.sun_path[0] = '\0'; /* abstract: the length says where the name ends */
        addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    } else if (path && *path) {
        evl_log(EVL_WARN, "systemd: NOTIFY_SOCKET=%s is not a unix socket's path or abstract name: "
                "no notifications", path);
    }
    /* the watchdog is ours only if it names this process (or no process: older systemd) */
    if (addrlen && usec && (!pid || !*pid || strtol(pid, NULL, 10) == (long)getpid())) {
        double us = strtod(usec, NULL);
        watchdog = us > 0 ? us / 1e6 : 0;
    }
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
}

void evl_notify(const char *fmt, ...)
{
    char msg[1024];
    if (!addrlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof msg)
        n = (int)sizeof msg - 1;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ssize_t sent = fd < 0 ? -1 : sendto(fd, msg, (size_t)n, MSG_NOSIGNAL, (struct sockaddr *)&addr, addrlen);
    if (sent < 0 && !complained++) /* once: the service manager will say what it misses */
        evl_log(EVL_WARN, "systemd: cannot notify %s%s: %s", addr.sun_path[0] ? "" : "@",
                addr.sun_path + (addr.sun_path[0] ? 0 : 1), strerror(errno));
    if (fd >= 0)
        close(fd);
}

double evl_notify_tick(double now)
{
    if (!watchdog)
        return 3600;
    if (now >= next_ping) {
        evl_notify("WATCHDOG=1");
        next_ping = now + watchdog / 2;
    }
    return next_ping - now;
}

void evl_notify_hold(double secs)
{
    if (!watchdog || secs <= watchdog)
        return;
    evl_notify("WATCHDOG=1\nWATCHDOG_USEC=%.0f", secs * 1e6);
    held = 1;
}

void evl_notify_release(double now)
{
    if (!held)
        return;
    held = 0;
    evl_notify("WATCHDOG=1\nWATCHDOG_USEC=%.0f", watchdog * 1e6);
    next_ping = now + watchdog / 2;
}
