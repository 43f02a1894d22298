/*
 * watch_env.h: the variables watch mode passes to the run of an event
 * (EVENTILATOR_SOURCE, _SENTINEL, _SENTINELS, _SYNTHETIC) for the ev fields,
 * read and unset once by levent.c, or set by a run the watcher forks
 * (evl_watch_fields_set). EVENTILATOR_DELIVERY is the handover's
 * (handover.c keeps it in the host struct; retry.c keys records by it).
 */
#ifndef EVENTILATOR_WATCH_ENV_H
#define EVENTILATOR_WATCH_ENV_H

/* Put the variables back before an exec of the full runtime. */
void evl_watch_env_restore(void);
/* A run forked from the watcher: the fields as the watcher has them (the strings must outlive the run). */
void evl_watch_fields_set(const char *sentinel, const char *sentinels, int synthetic);
/* A run of a cluster worker: ev.source = "cluster", ev.sentinel(s) the entry's (the string must outlive the run). */
void evl_cluster_fields_set(const char *sentinel, int synthetic);
/* ev.sentinel of this call, or NULL (record.c). */
const char *evl_watch_sentinel(void);

#endif
