/*
 * entry.h: a handler entry, the table on() registers (rules.c), one per
 * handler in run order, declared once: C reads it through these names,
 * eventilator.cli, .replay and .testing by the same words (host.match).
 *   fn, id ("file:line" of the on() call: its name in logs and records),
 *   file, line, patterns, full_lines (its file's lines that name a
 *   full-only word, handover.c), and what its latest run did, set together
 *   by call.c so nothing of an earlier event stays: ok, err, ms, skipped.
 */
#ifndef EVENTILATOR_ENTRY_H
#define EVENTILATOR_ENTRY_H

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
