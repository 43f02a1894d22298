/* config.h: the one loader of the config (config.c; docs/config.md). */
#ifndef EVENTILATOR_CONFIG_H
#define EVENTILATOR_CONFIG_H

#include "host.h"

#define EVL_CONFIG_BROKEN (-1)  /* unreadable, does not parse or run: exit 1 */
#define EVL_CONFIG_REFUSED (-2) /* the trust rule: exit 1 */
int evl_config_load_as(struct evl_host *h, const char *name); /* as a call named `name` loads it */
/*
 * Build the config a call named `name` reads, without installing it: pushes
 * the list of its problems (schema.h), then the config; returns 0, or a
 * negative with only the message pushed. f: what was read.
 */
int evl_config_build(struct evl_host *h, const char *name, struct evl_config_files *f);
/* The loaded config's problems (a list, maybe empty), taken: the log no longer tells them. */
void evl_config_push_problems(struct evl_host *h);
void evl_config_open_log(struct evl_host *h);
const char *evl_config_string(struct evl_host *h, const char *section, const char *key);
double evl_config_number(struct evl_host *h, const char *section, const char *key, double def);

#endif
