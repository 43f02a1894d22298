/*
 * libFuzzer harness: the config loader (src/core/config.c, src/core/schema.c), Lua and the Go
 * eventilator's TOML alike, through the same entry the binary uses
 * (EVENTILATOR_CONF -> evl_config_load). A config that cannot load must be
 * refused with a log line; nothing may crash, hang or leak.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "config.h"
#include "host.h"
#include "log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static char path[64];

static void cleanup(void)
{
    unlink(path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    snprintf(path, sizeof path, "/tmp/eventilator-fuzz-config.%ld", (long)getpid());
    atexit(cleanup);
    setenv("EVENTILATOR_CONF", path, 1);
    evl_log_open("/dev/null", "error");
    return 0;
}

/*
 * What the binary runs inside its one lua_pcall, up to the config, as a
 * call does it: a wrong setting leaves a broken section, which the host
 * still reads (its checked keys), and a list of problems for the log.
 */
static int pload(lua_State *L)
{
    struct evl_host *h = (struct evl_host *)lua_touserdata(L, 1);
    evl_host_open(h, NULL);
    h->config_partial_ok = 1;
    if (evl_config_load_as(h, h->name) == 0) {
        evl_config_push_problems(h);
        (void)evl_config_string(h, "log", "level");
        (void)evl_config_number(h, "redis", "port", 0);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct evl_host h;
    FILE *f = fopen(path, "wb");
    if (!f)
        return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    memset(&h, 0, sizeof h);
    h.name = "eventilator";
    h.budget = EVL_DEFAULT_BUDGET;
    h.L = luaL_newstate();
    if (!h.L)
        return 0;
    lua_pushcfunction(h.L, pload);
    lua_pushlightuserdata(h.L, &h);
    (void)lua_pcall(h.L, 1, 0, 0);
    lua_close(h.L);
    return 0;
}
