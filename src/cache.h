/* cache.h: compiled rule files, keyed by a hash of their text (cache.c). */
#ifndef EVENTILATOR_CACHE_H
#define EVENTILATOR_CACHE_H
#include <stddef.h>
#include <lua.h>
/*
 * Push the compiled chunk of `src` (the text of rule file `path`), from
 * <dir>/rules-cache when an entry made from this exact text exists, else by
 * compiling it as text and (best effort) storing the result. dir NULL or ""
 * = no cache. Returns a lua_load status; on error the message is pushed.
 */
int evl_load_rule_chunk(lua_State *L, const char *dir, const char *path, const char *src, size_t len,
                        const char *chunk);
#endif
