/*
 * handover.c: the lean start-up binary has no lua-cjson and no libcurl
 * (they exist only as shared objects, and the lean binary is static so that
 * it starts as fast as /bin/true). A call that needs them is handed to
 * eventilator-full with the same argv: the full runtime loads the same
 * config and rules, skips the handlers already run (EVENTILATOR_DONE), and
 * keeps the first start's clock (EVENTILATOR_T0) so the time budget is one.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "host.h"
#include "log.h"
#include "watch_env.h"

void evl_handover(struct evl_host *h, const char *reason, const char *done)
{
    char exe[PATH_MAX], full[PATH_MAX + 64], t0[64];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) {
        evl_log(EVL_ERROR, "cannot find the full runtime: /proc/self/exe: %s", strerror(errno));
        return;
    }
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash)
        *slash = '\0';
    snprintf(full, sizeof full, "%s/../libexec/eventilator/eventilator-full", exe);
    snprintf(t0, sizeof t0, "%.9f", h->t0);
    setenv("EVENTILATOR_T0", t0, 1);
    setenv("EVENTILATOR_HANDOVER", reason, 1);
    setenv("EVENTILATOR_DONE", done ? done : "", 1);
    evl_watch_env_restore(); /* the full runtime reads watch mode's variables again */
    evl_watchdog_disarm(); /* an interval timer would survive execve */
    execv(full, h->argv);
    evl_log(EVL_ERROR, "cannot start the full runtime %s: %s", full, strerror(errno));
}
