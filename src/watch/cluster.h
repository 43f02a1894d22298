/*
 * cluster.h: the processes of cluster mode (cluster.c, docs/cluster.md),
 * for the watcher (sink.c) and the CLI (cli.c).
 */
#ifndef EVENTILATOR_CLUSTER_H
#define EVENTILATOR_CLUSTER_H

#include <lua.h>

struct watch_set;

/* The watcher's appender, in a fork of it: appends what fd brings; returns the exit code. */
int evl_cluster_append(struct watch_set *set, int fd, const char *watcher);
/* The watcher's worker, in a fork of it: works until SIGTERM; returns the exit code. */
int evl_cluster_work(struct watch_set *set);
/* host.work(): `eventilator work`. */
int evl_work_lua(lua_State *L);

#endif
