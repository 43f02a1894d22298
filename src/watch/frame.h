/*
 * frame.h: the frames on the watcher's pipes (frame.c): a u32 length, then
 * NUL-ended fields. The watcher writes events to a runner (runner.c) and to
 * the appender (sink.c), a worker writes entries to its runner and the
 * runner answers with one (cluster.c).
 */
#ifndef EVENTILATOR_WATCH_FRAME_H
#define EVENTILATOR_WATCH_FRAME_H

#include <stddef.h>

#define FRAME_MAX (64u << 10) /* an event is at most a few KiB; a bigger length is a broken pipe */

/* All n bytes at p written (w) or read, through EINTR: 0, or -1 (EOF, an error). */
int frame_whole(int fd, void *p, size_t n, int w);
/* One frame of the n strings (NULL reads as "") to fd: 0, or -1. */
int frame_write(int fd, const char *const *f, int n);
/* One whole frame from a blocking fd into *buf (grown): its length, or -1 (EOF, broken). */
long frame_read(int fd, char **buf, size_t *cap);
/* Split a frame's payload into up to n fields; missing ones read as "". */
void frame_fields(char *buf, size_t len, char **f, int n);

#endif
