/* levent.h: a parsed event as the Lua table `ev` (contract section 6), and require("eventilator.pattern"). */
#ifndef EVENTILATOR_LEVENT_H
#define EVENTILATOR_LEVENT_H

#include <lua.h>

#include "event.h"

/* Where an event came from beyond Sentinel's argv: watch mode's fields (contract section 10). */
struct evl_origin {
    const char *source;    /* "watch", or NULL: a script call */
    const char *sentinel;  /* "ip:port" of the first Sentinel that reported it */
    const char *sentinels; /* those that had reported it, comma-separated */
    int synthetic;         /* reconstructed by the watcher */
};

/* Push ev for a parsed event, its raw arguments, and where it came from (o may be NULL). */
void evl_push_event(lua_State *L, const struct evl_event *ev, int nargs, char **args,
                    const struct evl_origin *o);
int evl_open_pattern(lua_State *L); /* require("eventilator.pattern") */

#endif
