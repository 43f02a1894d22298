/* cache.h: compiled rule files, keyed by the file's identity (cache.c). */
#ifndef EVENTILATOR_CACHE_H
#define EVENTILATOR_CACHE_H
#include <lua.h>
/*
 * Push the compiled chunk of rule file `path`: from <dir>/rules-cache when
 * an entry made from this very file (as stat sees it) exists, else by
 * reading and compiling its text, and storing the result (best effort).
 * dir NULL or "" = no cache. Returns a lua_load status (or LUA_ERRFILE);
 * on error the message is pushed. *full: see below.
 */
int evl_load_rule_chunk(lua_State *L, const char *dir, const char *path, const char *chunk,
                        int *full);
/* *full (set on success): does the text name json/http, which only the full runtime has? */
#endif
