/*
 * replycap.h: bounded hiredis I/O, for every hiredis reader we own: the
 * redis binding (lredis.c, config redis.max_reply) and the Sentinel client
 * (sentinel.c), on which one hostile peer must not be able to grow the
 * process. A cap on the size of one reply, and the two steps both take to
 * read one within it (evl_hio_reply, evl_hio_fill); each waits for its
 * socket its own way (a poll of its own, or the watcher's loop).
 *
 * hiredis 0.14 buffers a bulk until all of it has arrived and allocates an
 * array's slots as soon as its header is read, both sized by what the server
 * announces: "$8000000000" alone would grow the process by gigabytes. So one
 * reply is bounded three ways: the bytes read for it (evl_replycap_count), a
 * bulk's announced length (evl_replycap_peek, before the bytes come), and an
 * array's announced count (refused in the reader's createArray hook, before
 * hiredis allocates). Over the cap, the reader's owner closes the connection.
 *
 * Header-only, like deadline.h and lookup.h: the binding is its own shared
 * object for a stock lua5.4 and must not need a symbol from the host.
 */
#ifndef EVENTILATOR_REPLYCAP_H
#define EVENTILATOR_REPLYCAP_H

#include <stddef.h>

#include <hiredis/hiredis.h>

typedef struct evl_replycap {
    redisReplyObjectFunctions fn;          /* ours: the defaults with checks */
    const redisReplyObjectFunctions *orig; /* hiredis's defaults */
    size_t max;                            /* bytes */
    double mib;                            /* as configured, for messages */
    size_t got;                            /* bytes read toward the reply in progress */
    int over;                              /* set by a hook that refused */
} evl_replycap;

/* An array whose announced size cannot fit is refused before hiredis
 * allocates its slots (each element takes at least 3 bytes on the wire). */
static inline void *evl_replycap_array(const redisReadTask *task, int elements)
{
    evl_replycap *cap = (evl_replycap *)task->privdata;
    if (elements > 0 && (size_t)elements > cap->max / 3) {
        cap->over = 1;
        return NULL; /* the reader then fails with "Out of memory" */
    }
    return cap->orig->createArray(task, elements);
}

static inline void *evl_replycap_string(const redisReadTask *task, char *str, size_t len)
{
    evl_replycap *cap = (evl_replycap *)task->privdata;
    if (len > cap->max) {
        cap->over = 1;
        return NULL;
    }
    return cap->orig->createString(task, str, len);
}

static inline void *evl_replycap_integer(const redisReadTask *task, long long v)
{
    return ((evl_replycap *)task->privdata)->orig->createInteger(task, v);
}

static inline void *evl_replycap_nil(const redisReadTask *task)
{
    return ((evl_replycap *)task->privdata)->orig->createNil(task);
}

/* Install the hooks on a reader: `cap` must stay where it is while the reader lives. */
static inline void evl_replycap_install(evl_replycap *cap, redisReader *r, double mib)
{
    cap->orig = r->fn;
    cap->fn = *r->fn;
    cap->fn.createString = evl_replycap_string;
    cap->fn.createArray = evl_replycap_array;
    cap->fn.createInteger = evl_replycap_integer;
    cap->fn.createNil = evl_replycap_nil;
    cap->mib = mib;
    cap->max = (size_t)(mib * 1048576.0);
    cap->got = 0;
    cap->over = 0;
    r->fn = &cap->fn;
    r->privdata = cap;
}

/*
 * After the reader stopped on an incomplete item: a bulk header at the
 * cursor announces how much is still to come. 1 when that cannot fit, so an
 * announced 8 GB is refused before a byte of it is kept.
 */
static inline int evl_replycap_peek(const evl_replycap *cap, const redisReader *r)
{
    const char *p = r->buf + r->pos, *end = r->buf + r->len;
    unsigned long long n = 0;
    /* hiredis consumes the type byte first: a bulk it is waiting for has
     * its task typed STRING and the cursor on the length's digits. */
    if (p < end && *p == '$')
        p++;
    else if (r->ridx < 0 || r->rstack[r->ridx].type != REDIS_REPLY_STRING)
        return 0;
    for (; p < end && *p >= '0' && *p <= '9'; p++) {
        n = n * 10 + (unsigned)(*p - '0');
        if (n > cap->max)
            return 1;
    }
    return 0;
}

/* `n` bytes were just read toward the reply in progress: 1 when that is more
 * than a reply may be (+ a few bytes of framing). */
static inline int evl_replycap_count(evl_replycap *cap, size_t n)
{
    cap->got += n;
    return cap->got > cap->max + 64;
}

/* A whole reply left the reader: what stays buffered belongs to the next. */
static inline void evl_replycap_next(evl_replycap *cap, const redisReader *r)
{
    cap->got = r->len - r->pos;
}

enum { EVL_HIO_OK, EVL_HIO_MORE, EVL_HIO_BIG, EVL_HIO_ERR };

/*
 * The next whole reply in c's reader, within the cap: EVL_HIO_OK with *out
 * (the caller frees it), EVL_HIO_MORE (none is whole yet: read more),
 * EVL_HIO_BIG (over the cap) or EVL_HIO_ERR (c->errstr). After BIG or ERR
 * the stream is out of step: the caller closes the connection.
 */
static inline int evl_hio_reply(redisContext *c, evl_replycap *cap, redisReply **out)
{
    void *r = NULL;
    *out = NULL;
    if (redisGetReplyFromReader(c, &r) != REDIS_OK)
        return cap->over ? EVL_HIO_BIG : EVL_HIO_ERR;
    if (r == NULL)
        return evl_replycap_peek(cap, c->reader) ? EVL_HIO_BIG : EVL_HIO_MORE;
    evl_replycap_next(cap, c->reader);
    *out = (redisReply *)r;
    return EVL_HIO_OK;
}

/* Read what the socket holds into c's reader (one read(2)): EVL_HIO_OK, EVL_HIO_BIG or EVL_HIO_ERR. */
static inline int evl_hio_fill(redisContext *c, evl_replycap *cap)
{
    size_t before = c->reader->len;
    if (redisBufferRead(c) != REDIS_OK)
        return EVL_HIO_ERR;
    return evl_replycap_count(cap, c->reader->len - before) ? EVL_HIO_BIG : EVL_HIO_OK;
}

#endif
