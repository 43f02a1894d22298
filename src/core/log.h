/* log.h: the program's own log (Sentinel throws stdout/stderr away). */
#ifndef EVENTILATOR_LOG_H
#define EVENTILATOR_LOG_H

enum evl_level { EVL_DEBUG, EVL_INFO, EVL_WARN, EVL_ERROR };

/*
 * target: "syslog", "stderr", or a file path. Returns 0, or -1 (errno set)
 * when the file cannot be opened for append: its lines go to the fallback
 * file then, and the first line there (once per process) says why.
 */
int evl_log_open(const char *target, const char *level);
/*
 * Where lines go now, for `check` and `doctor`: "syslog", "stderr", or a
 * file's path; *why says why that is not the target (NULL when it is),
 * *fallback is the fallback file. Tries syslog's socket if no line has yet.
 * The strings live until the next open.
 */
const char *evl_log_where(const char **why, const char **fallback);
void evl_log(enum evl_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* After fork() without exec: the next line asks for the new pid. */
void evl_log_forked(void);
/*
 * Also copy to stderr (used before the config is known, and by the CLI):
 * 0 no, 1 info and above whatever log.level says, 2 every level (`test --run`).
 */
void evl_log_also_stderr(int on);
/*
 * For the watchdog and SIGTERM: lines formatted ahead of time (one per
 * slot), written from a signal handler with what the call was doing.
 */
enum { EVL_EMERGENCY_WATCHDOG, EVL_EMERGENCY_TERM, EVL_EMERGENCY_SLOTS };
void evl_log_prepare_emergency(int slot, const char *msg);
void evl_log_prepare_emergency_heads(void);
void evl_log_emergency_context(const char *what);
void evl_log_emergency(int slot);

#endif
