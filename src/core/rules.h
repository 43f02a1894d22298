/*
 * rules.h: the rule files (rules.c): load them, register their handlers
 * with on(), match an event's name against them.
 */
#ifndef EVENTILATOR_RULES_H
#define EVENTILATOR_RULES_H

#include "host.h"

/*
 * A handler entry: the table on() registers, one per handler, in run order
 * (host.match and host.load_rules return them to Lua). This is the one
 * declaration of its fields; C reads them through these names, and
 * lua/eventilator/cli.lua, replay.lua and testing.lua by the same words.
 *
 *   fn          the handler
 *   id          "file:line" of its on() call: its name in the log, in
 *               delivery records and in the record line
 *   file, line  the same, apart
 *   patterns    the patterns it registered (a list)
 *   full_lines  the lines of its file that name a full-only word
 *               (handover.c's scan; absent when there is none)
 *
 * and what its latest run did, set together by call.c (each run sets all
 * four, so nothing of an earlier event stays): ok, err, ms, skipped.
 */
#define EVL_ENTRY_FN "fn"
#define EVL_ENTRY_ID "id"
#define EVL_ENTRY_FILE "file"
#define EVL_ENTRY_LINE "line"
#define EVL_ENTRY_PATTERNS "patterns"
#define EVL_ENTRY_FULL_LINES "full_lines"
#define EVL_ENTRY_OK "ok"
#define EVL_ENTRY_ERR "err"
#define EVL_ENTRY_MS "ms"
#define EVL_ENTRY_SKIPPED "skipped"

/* Load every rule file of the rules folder (again, if loaded): h->files_ref, h->handlers_ref. */
int evl_rules_load(struct evl_host *h);
/* Push the list of entries whose patterns match `name`, loading the rule files first if need be. */
int evl_rules_match(struct evl_host *h, const char *name);

#endif
