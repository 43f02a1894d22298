/* rules.h: the rule files (rules.c): load them, register their handlers with on(), match a name. */
#ifndef EVENTILATOR_RULES_H
#define EVENTILATOR_RULES_H

#include "entry.h"
#include "host.h"

/* Load every rule file of the rules folder (again, if loaded): h->files_ref, h->handlers_ref. */
int evl_rules_load(struct evl_host *h);
/* Push the list of entries whose patterns match `name`, loading the rule files first if need be. */
int evl_rules_match(struct evl_host *h, const char *name);

#endif
