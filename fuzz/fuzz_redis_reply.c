/*
 * libFuzzer harness: the Redis reply path. Bytes as a server could send
 * them go through hiredis's reader with the binding's reply cap (a small
 * one here, 1 MiB, so the cap's own checks are exercised) and every
 * complete reply is mapped to Lua by lredis.c's mapping, as call() and
 * pipeline() see them. The binding is compiled into this harness, so its
 * static mapping is at hand and no fuzz-only code ships in it.
 */
#include <stdint.h>
#include <stdlib.h>

#include <lualib.h>

#include "lredis.c"

/*
 * Feed bytes to a hiredis reader with the reply cap's
 * hooks, and map every complete reply to Lua exactly as call() and
 * pipeline() do. Each mapping runs under lua_pcall, so a raise (memory)
 * never skips freeing the reply or the reader.
 */
static int rc_fuzz_map(lua_State *L)
{
    const redisReply *r = (const redisReply *)lua_touserdata(L, 1);
    rc_push_reply(L, r, lua_toboolean(L, 2));
    return 1;
}

static int evl_redis_fuzz_reply(lua_State *L, const char *data, size_t len, double max_mib)
{
    evl_replycap cap;
    void *reply = NULL;
    int n = 0;
    redisReader *rd = redisReaderCreate();
    if (rd == NULL)
        return -1;
    evl_replycap_install(&cap, rd, max_mib);
    if (redisReaderFeed(rd, data, len) != REDIS_OK) {
        redisReaderFree(rd);
        return -1;
    }
    while (!evl_replycap_peek(&cap, rd) && redisReaderGetReply(rd, &reply) == REDIS_OK && reply) {
        lua_pushcfunction(L, rc_fuzz_map);
        lua_pushlightuserdata(L, reply);
        lua_pushboolean(L, n & 1);
        lua_pcall(L, 2, 1, 0); /* a raise (memory) is fine: the reply is freed below */
        lua_pop(L, 1);
        freeReplyObject(reply);
        reply = NULL;
        n++;
    }
    redisReaderFree(rd);
    return n;
}

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
