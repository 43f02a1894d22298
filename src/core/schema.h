/*
 * schema.h: the config's schema (schema.c), for the loader (config.c) and
 * what shows a whole config (cli.c): the keys, their types and defaults, how one file's
 * globals are checked and merged, and what a section with an error becomes.
 */
#ifndef EVENTILATOR_SCHEMA_H
#define EVENTILATOR_SCHEMA_H

#include <lua.h>

/* Push a new config: every top-level setting at its default, sections built on first read. */
void evl_schema_new(lua_State *L);
/*
 * Check one file's globals (the table at `values`; `lines`: the line that
 * set each, or 0) and merge them into the config at `cfg`: a setting or a
 * user's own global replaces what was there, a known section is merged key
 * by key. What is wrong is appended to the list at `problems`, each entry
 * { msg = "file:line: ...", kind, name }: kind "setting" (a top-level
 * setting, left as it was), "section" (a known section), or "name" (a
 * user's global that is a near miss of ours, kept as the user's).
 */
void evl_schema_apply(lua_State *L, int cfg, int values, int lines, const char *path, int problems);
/* Once every file is applied: each section with a problem becomes broken (any read raises it). */
void evl_schema_break(lua_State *L, int cfg, int problems);
/* The value on top, if it is a broken section, is replaced by its checked settings (the host's reads). */
void evl_schema_unbreak(lua_State *L);
/*
 * A loaded config builds a section's defaults on its first read; whatever
 * walks the whole table (printing, checking, pairs) calls this first.
 */
void evl_config_materialize(lua_State *L, int idx);

#endif
