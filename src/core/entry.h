/*
 * entry.h: a handler entry, declared once. rules.c makes one per on() call,
 * call.c sets what its run did, handover.c and record.c read it, and the
 * Lua side (eventilator.cli, .replay, .testing) reads the same fields by
 * the same names through host.match and host.load_rules.
 */
#ifndef EVENTILATOR_ENTRY_H
#define EVENTILATOR_ENTRY_H

/*
 * The table on() registers, one per handler, in run order:
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

#endif
