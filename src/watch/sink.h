/* sink.h: the watcher in cluster mode (sink.c, docs/cluster.md): events go to the appender, not to runners. */
#ifndef EVENTILATOR_WATCH_SINK_H
#define EVENTILATOR_WATCH_SINK_H

#include <stdint.h>
#include <sys/types.h>

#include "set.h"

/* At start; no_work: --no-work; in_child: what a fork drops of the watcher's (as runners_init's). */
void sink_init(struct watch_set *set, int no_work, void (*in_child)(void));
void sink_settings(struct watch_set *set); /* a reload: the new set's appender and worker */
int sink_on(void);
/* An event for the stream: 1 taken, 0 not now (it stays queued); heard on evl_monotonic's clock. */
int sink_item(const char *name, const char *text, const char *sentinel, double heard, uint64_t seq,
              int synthetic);
double sink_tick(double now);               /* starts what is due; seconds to the next start */
void sink_reaped(pid_t pid, int status);    /* a child reaped that is not a runner */
int sink_pollfd(void);                      /* the appender's pipe while it is full, else -1 */
void sink_stop(void);
int sink_busy(void);
void sink_end(void);

#endif
