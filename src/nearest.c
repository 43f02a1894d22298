/*
 * nearest.c: the one "did you mean" of the program (nearest.h).
 */
#include "nearest.h"

#include <string.h>

static int lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

size_t evl_distance(const char *a, const char *b)
{
    size_t row[72], lb = strlen(b);
    if (lb >= sizeof row / sizeof row[0] || strlen(a) > 200)
        return (size_t)-1; /* not a name: nothing is near it */
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 0; a[i]; i++) {
        size_t diag = row[0];
        if (a[i] == '*')
            continue;
        row[0]++;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (lower((unsigned char)a[i]) != lower((unsigned char)b[j - 1]));
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

void evl_near_init(struct evl_near *n, const char *word)
{
    n->word = word;
    n->best = NULL;
    n->dist = (size_t)-1;
}

void evl_near_add(struct evl_near *n, const char *candidate)
{
    size_t d = evl_distance(n->word, candidate);
    if (d < n->dist) {
        n->dist = d;
        n->best = candidate;
    }
}

const char *evl_near_typo(const struct evl_near *n)
{
    if (!n->best)
        return NULL;
    size_t len = strlen(n->best);
    size_t allowed = len <= 3 ? 0 : len <= 7 ? 1 : 2;
    return n->dist <= allowed ? n->best : NULL;
}
