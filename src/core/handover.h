/*
 * handover.h: the lean/full split (handover.c), and what crosses an exec:
 * the start-up binary hands a call to the full runtime, and the watcher's
 * fields reach a separate call, through the environment.
 */
#ifndef EVENTILATOR_HANDOVER_H
#define EVENTILATOR_HANDOVER_H

#include <stddef.h>

#include <lua.h>

#include "host.h"

/*
 * At the start of main: what a handover (or the watcher) passed along is
 * kept in h->call and taken out of the environment, so that what handlers
 * start does not inherit it: the first start's clock, the handlers already
 * run, why, the delivery id, watch mode's fields.
 */
void evl_handover_take_env(struct evl_host *h);
/* The lean binary's stand-ins for the full-only modules (json, http, crypto). */
void evl_handover_open(lua_State *L, struct evl_host *h);
/* Push the lines of a rule file's text that name a full-only word: a string of uint32s. */
void evl_handover_scan(lua_State *L, const char *src, size_t len);
/* Does a matched handler (the list at `matched`) need the full runtime? (its own lines, by the scan) */
int evl_handover_needed(struct evl_host *h, int matched);
/* exec the full runtime with this call's argv; `done`: handler ids it skips. Returns only on failure. */
void evl_handover(struct evl_host *h, const char *reason, const char *done);

#endif
