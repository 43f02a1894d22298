/*
 * libFuzzer harness: the Redis reply path. Bytes as a server could send
 * them go through hiredis's reader with the binding's reply cap (a small
 * one here, 1 MiB, so the cap's own checks are exercised) and every
 * complete reply is mapped to Lua by lredis.c's mapping, as call() and
 * pipeline() see them.
 */
#include <stdint.h>
#include <stdlib.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

int evl_redis_fuzz_reply(lua_State *L, const char *data, size_t len, double max_mib);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static lua_State *L;
    if (!L)
        L = luaL_newstate();
    evl_redis_fuzz_reply(L, (const char *)data, size, 1.0);
    lua_settop(L, 0);
    lua_gc(L, LUA_GCCOLLECT);
    return 0;
}
