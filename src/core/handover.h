/*
 * handover.h: the lean/full split (handover.c), and what crosses an exec in
 * the environment: the handover's own variables, the watcher's delivery id
 * and watch mode's fields.
 */
#ifndef EVENTILATOR_HANDOVER_H
#define EVENTILATOR_HANDOVER_H

#include <stddef.h>

#include <lua.h>

#include "host.h"

/* At the start of main: what the environment passed, into h->call, and out of the environment. */
void evl_handover_take_env(struct evl_host *h);
/* The start-up binary's stand-ins for the full-only modules (json, http, crypto). */
void evl_handover_open(lua_State *L, struct evl_host *h);
/* Push the lines of a rule file's text that name a full-only word: a string of uint32s. */
void evl_handover_scan(lua_State *L, const char *src, size_t len);
/* Does an entry of the list at `matched` need the full runtime (its own lines, by the scan)? */
int evl_handover_needed(struct evl_host *h, int matched);
/* exec the full runtime with this call's argv; `done`: handler ids it skips. Returns on failure. */
void evl_handover(struct evl_host *h, const char *reason, const char *done);

#endif
