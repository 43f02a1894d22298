/*
 * watch_env.h: the variables watch mode passes to the run of an event
 * (EVENTILATOR_SOURCE, _SENTINEL, _SENTINELS, _SYNTHETIC, _DELIVERY), read
 * and unset once by levent.c.
 */
#ifndef EVENTILATOR_WATCH_ENV_H
#define EVENTILATOR_WATCH_ENV_H

/* The delivery id of this run when the watcher started it, else NULL. */
const char *evl_watch_delivery(void);
/* Put the variables back before an exec of the full runtime. */
void evl_watch_env_restore(void);

#endif
