/* cli.h: the subcommands (cli.c): eventilator.cli drives the host's engine through a private table. */
#ifndef EVENTILATOR_CLI_H
#define EVENTILATOR_CLI_H

#include <lua.h>

#include "host.h"

int evl_cli_main(struct evl_host *h); /* `eventilator <subcommand> ...`: its exit code */
void evl_push_cli_host(lua_State *L, struct evl_host *h); /* the table (also lhost.c's) */

#endif
