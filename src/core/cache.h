/* cache.h: compiled rule files, keyed by the file's identity, one bundle a rules folder (cache.c). */
#ifndef EVENTILATOR_CACHE_H
#define EVENTILATOR_CACHE_H
#include "host.h"
/* Before a rules folder's files load: read its bundle (when h->state_ok). */
void evl_cache_begin(struct evl_host *h, const char *rules_dir);
/*
 * Push the compiled chunk of rule file `path` and, above it, the string of
 * its lines that name full-only words (evl_handover_scan): from
 * <state_dir>/rules-cache when an entry made by this user from this very
 * file (as stat sees it) exists, else by reading and compiling its text and
 * storing the result (best effort; only when h->state_ok). A file others
 * could have written is refused when h->strict_modes. Returns a lua_load
 * status (or LUA_ERRFILE); on error one message is pushed.
 */
int evl_load_rule_chunk(struct evl_host *h, const char *path, const char *chunk);
/* After the last file: write the bundle back if it changed (h NULL: only forget it). */
void evl_cache_end(struct evl_host *h);
#endif
