/*
 * cache.h: a store of compiled rule files (cache.c), one bundle per rules
 * folder, keyed by what the caller says makes an entry valid. It trusts
 * nothing it did not write itself, and decides nothing else: the rule
 * files' own trust and what is kept beside the bytecode are rules.c's.
 */
#ifndef EVENTILATOR_CACHE_H
#define EVENTILATOR_CACHE_H

#include <stdint.h>
#include <sys/stat.h>

#include <lua.h>

/* The key of a file's entry: its identity as stat sees it, and the chunk name. */
uint64_t evl_cache_key(const struct stat *st, const char *chunk);
/* Read the bundle of rules folder `rules_dir` from folder `dir` (NULL: no store, every get misses). */
void evl_cache_open(const char *dir, const char *rules_dir);
/* The entry for key, if whole: pushes the chunk, then its extra string, and returns 1; else 0. */
int evl_cache_get(lua_State *L, uint64_t key, const char *chunk);
/* Keep the chunk at -2 and the extra string at -1 (both stay) as the entry for key. */
void evl_cache_put(lua_State *L, uint64_t key);
/* After the last file: write the bundle back if it changed (write = 0: only forget it). */
void evl_cache_close(int write);
#endif
