/*
 * cli.h: the subcommands (cli.c). The shipped eventilator.cli module parses
 * and prints; cli.c offers it the host's engine as a private table, so what
 * `check` and `test` report is what a call does.
 */
#ifndef EVENTILATOR_CLI_H
#define EVENTILATOR_CLI_H

#include <lua.h>

#include "host.h"

/* `eventilator <subcommand> ...`: require("eventilator.cli").main(args, host). Returns the exit code. */
int evl_cli_main(struct evl_host *h);
/* The table eventilator.cli (and eventilator.testing, through lhost.c) drives the host with. */
void evl_push_cli_host(lua_State *L, struct evl_host *h);

#endif
