/*
 * watch_env.h: the variables watch mode passes to the run of an event
 * (EVENTILATOR_SOURCE, _SENTINEL, _SENTINELS, _SYNTHETIC) for the ev fields,
 * read and unset once by levent.c. EVENTILATOR_DELIVERY is the handover's
 * (handover.c keeps it in the host struct; retry.c keys records by it).
 */
#ifndef EVENTILATOR_WATCH_ENV_H
#define EVENTILATOR_WATCH_ENV_H

/* Put the variables back before an exec of the full runtime. */
void evl_watch_env_restore(void);

#endif
