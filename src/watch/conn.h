/*
 * conn.h: the connections to the Sentinels (conn.c), above intake: every
 * message a subscriber hears goes down to intake.c, and what it returns
 * (discovery, a master that moved) is acted on here. Driven by the loop
 * (watch.c) through poll().
 */
#ifndef EVENTILATOR_WATCH_CONN_H
#define EVENTILATOR_WATCH_CONN_H

#include <poll.h>

#include "set.h"

/* The set's seeds, auth and state_dir: at start, and after a reload. */
void conn_settings(struct watch_set *set);
/* Fills pfds with the Sentinel links' sockets (up to 2 per Sentinel); returns how many, and the
   index map for conn_io. */
int conn_pollfds(struct pollfd *pfds, int *idx, int max);
void conn_io(int idx, short revents);
/* Connects what is due, ends what is past its deadline; returns the seconds until it must run
   again (at most 10). */
double conn_tick(double now);
void conn_close_all(void); /* the watcher stops: no more intake */
void conn_close_fds(void); /* in a runner: the copies of the watcher's sockets */

#endif
