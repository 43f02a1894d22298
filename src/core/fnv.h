/*
 * fnv.h: 64-bit FNV-1a, the one hash of the program: delivery-record and
 * cache file names, cache entries' keys and checks, the watcher's dedupe
 * keys. Not a defence against anyone (what it names is this user's alone);
 * start with EVL_FNV0, or chain: evl_fnv(b, n, evl_fnv(a, m, EVL_FNV0)).
 */
#ifndef EVENTILATOR_FNV_H
#define EVENTILATOR_FNV_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define EVL_FNV0 0xcbf29ce484222325ULL

static inline uint64_t evl_fnv(const void *p, size_t n, uint64_t h)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}
/*
 * The same, 8 bytes a step (little-endian words, then the tail byte by byte):
 * the check of a rules-cache entry, which covers kilobytes on every call,
 * where the byte loop above was 4% of an event call's instructions.
 */
static inline uint64_t evl_fnv_words(const void *p, size_t n, uint64_t h)
{
    const unsigned char *s = p;
    for (; n >= 8; s += 8, n -= 8) {
        uint64_t w;
        memcpy(&w, s, 8); /* unaligned-safe; one load on x86 */
        h ^= w;
        h *= 0x100000001b3ULL;
    }
    return evl_fnv(s, n, h);
}
#endif
