/* The shipped lua/ tree, compiled in as source text (cmake/embed.cmake). */
#ifndef EVENTILATOR_EMBEDDED_H
#define EVENTILATOR_EMBEDDED_H
#include <stddef.h>
struct evl_embedded {
    const char *module;   /* "eventilator.metrics" */
    const char *path;     /* "lua/eventilator/metrics.lua", for messages */
    const char *source;
    size_t len;
    const char *bytecode; /* compiled at build time by the same Lua library */
    size_t bclen;
};
extern const struct evl_embedded evl_embedded[];
#endif
