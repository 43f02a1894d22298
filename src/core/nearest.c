/*
 * nearest.c: the one "did you mean" of the program (nearest.h).
 */
#include "nearest.h"

#include <string.h>

static int lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

/*
 * Optimal string alignment: Levenshtein plus the swap of two neighbours as
 * one edit, the commonest typo (`enabeld`, `sdwon`), blind to ASCII case; a
 * `*` in a (a glob) is skipped. Three rows of the table: the one before the
 * previous is what a swap looks back to.
 */
static size_t evl_distance(const char *a, const char *b)
{
    enum { CAP = 72 };
    size_t rows[3][CAP], lb = strlen(b);
    size_t *back = rows[0], *prev = rows[1], *cur = rows[2];
    size_t la = 0;
    for (const char *p = a; *p && la <= 200; p++)
        la += *p != '*';
    if (lb >= CAP || la > 200)
        return (size_t)-1; /* not a name: nothing is near it */
    if (la > lb + 16 || lb > la + 16)
        return la > lb ? la - lb : lb - la; /* far whatever the letters: the table is not needed */
    for (size_t j = 0; j <= lb; j++)
        prev[j] = j;
    int last = -1; /* the previous letter of a that counted ('*' does not) */
    size_t i = 0;
    for (const char *p = a; *p; p++) {
        if (*p == '*')
            continue;
        int c = lower((unsigned char)*p);
        cur[0] = ++i;
        for (size_t j = 1; j <= lb; j++) {
            int d = lower((unsigned char)b[j - 1]);
            size_t best = prev[j - 1] + (c != d);
            if (prev[j] + 1 < best)
                best = prev[j] + 1;
            if (cur[j - 1] + 1 < best)
                best = cur[j - 1] + 1;
            if (i > 1 && j > 1 && c == lower((unsigned char)b[j - 2]) && last == d &&
                back[j - 2] + 1 < best)
                best = back[j - 2] + 1;
            cur[j] = best;
        }
        size_t *t = back;
        back = prev;
        prev = cur;
        cur = t;
        last = c;
    }
    return prev[lb];
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
