/* conn.h: the connections to the Sentinels (conn.c); every message goes down to intake. */
#ifndef EVENTILATOR_WATCH_CONN_H
#define EVENTILATOR_WATCH_CONN_H

#include <poll.h>

#include "set.h"

void conn_settings(struct watch_set *set); /* the set's seeds, auth, state_dir: at start, on reload */
/* The links' sockets into pfds (up to 2 a Sentinel): how many, and the index map for conn_io. */
int conn_pollfds(struct pollfd *pfds, int *idx, int max);
void conn_io(int idx, short revents);
double conn_tick(double now); /* connects what is due, ends what is late; seconds to the next (<= 10) */
void conn_close_all(void);    /* the watcher stops: no more intake */
void conn_close_fds(void);    /* in a runner: the copies of the watcher's sockets */
/* The Sentinels: how many, and (the first max) each one's address and whether it is subscribed. */
int conn_status(const char **addrs, int *up, int max);

#endif
