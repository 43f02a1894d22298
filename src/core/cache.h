/*
 * cache.h: a plain store of compiled rule files (cache.c), a bundle per
 * rules folder. It trusts only what it wrote; whether a rule file may run,
 * and what is kept beside its bytecode, are rules.c's.
 */
#ifndef EVENTILATOR_CACHE_H
#define EVENTILATOR_CACHE_H

#include <stdint.h>
#include <sys/stat.h>

#include <lua.h>

uint64_t evl_cache_key(const struct stat *st, const char *chunk); /* the file as stat sees it */
void evl_cache_open(const char *dir, const char *rules_dir); /* dir NULL: no store, every get misses */
/* The entry for key, if whole: pushes the chunk, then its extra string, and returns 1; else 0. */
int evl_cache_get(lua_State *L, uint64_t key, const char *chunk);
void evl_cache_put(lua_State *L, uint64_t key); /* the chunk at -2 and the extra at -1 (both stay) */
void evl_cache_close(int write); /* write the bundle back if it changed (0: only forget it) */
#endif
