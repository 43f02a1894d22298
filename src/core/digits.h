/*
 * digits.h: numbers written by hand into the lines every call writes (the
 * log's stamps, the summary line, calls.jsonl, the delivery record). A
 * printf("%f") is ~6 k instructions, and its multi-precision code is text
 * that nothing else touches: a page to fault in for a call that logs ms=0.57.
 */
#ifndef EVENTILATOR_DIGITS_H
#define EVENTILATOR_DIGITS_H
#include <stddef.h>
#include <stdio.h>

/* v in decimal, at least `width` digits (zero-padded), at out (room for 20): the length */
static inline size_t evl_put_uint(char *out, unsigned long long v, int width)
{
    char tmp[24];
    int n = 0;
    do
        tmp[n++] = (char)('0' + v % 10);
    while ((v /= 10) || n < width);
    for (int i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return (size_t)n;
}

/*
 * v with `decimals` (0-6) after the point, rounded half up, as "%.*f" shows
 * times and durations; room for 40 at out. What no clock gives (negative,
 * 1e15 and above, NaN) goes through snprintf.
 */
static inline size_t evl_put_fixed(char *out, double v, int decimals)
{
    static const unsigned long long scale[] = {1, 10, 100, 1000, 10000, 100000, 1000000};
    if (!(v >= 0 && v < 1e15) || decimals < 0 || decimals > 6) {
        int n = snprintf(out, 40, "%.*f", decimals, v);
        return n < 0 ? 0 : n < 40 ? (size_t)n : 39;
    }
    unsigned long long x = (unsigned long long)(v * (double)scale[decimals] + 0.5);
    size_t o = evl_put_uint(out, x / scale[decimals], 1);
    if (decimals > 0) {
        out[o++] = '.';
        o += evl_put_uint(out + o, x % scale[decimals], decimals);
    }
    return o;
}
#endif
