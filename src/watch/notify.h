/*
 * notify.h: systemd's service notifications (sd_notify(3)), for a service
 * of Type=notify: READY=1, STATUS=..., STOPPING=1 and the watchdog's
 * WATCHDOG=1. The protocol is one datagram to the unix socket named by
 * $NOTIFY_SOCKET, written here directly rather than by linking libsystemd
 * (docs/watch.md "systemd"). Without $NOTIFY_SOCKET every call does nothing.
 */
#ifndef EVENTILATOR_NOTIFY_H
#define EVENTILATOR_NOTIFY_H

/*
 * Reads $NOTIFY_SOCKET, $WATCHDOG_USEC and $WATCHDOG_PID, and unsets them:
 * what this process starts (runners' handlers) is not the service.
 */
void evl_notify_init(void);
/* One message: "READY=1\nSTATUS=...", lines of KEY=VALUE. */
void evl_notify(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* WATCHDOG=1 when due (every half of WatchdogSec=); returns the seconds until the next is due. */
double evl_notify_tick(double now);
/*
 * The caller is about to block for up to `secs` (a reload runs rule files'
 * top-level code): the watchdog's timeout is raised to that for the while,
 * and put back by evl_notify_release.
 */
void evl_notify_hold(double secs);
void evl_notify_release(double now);

#endif
