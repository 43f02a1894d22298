/*
 * nearest.h: "did you mean": the known name nearest to a typo, for the
 * messages that refuse one (an on() pattern no event matches, an event
 * name without its sign, a config key or section that is not ours). One
 * distance and one idea of "close enough" for all of them.
 */
#ifndef EVENTILATOR_NEAREST_H
#define EVENTILATOR_NEAREST_H

#include <stddef.h>

struct evl_near {
    const char *word; /* what was written */
    const char *best; /* the nearest candidate so far, or NULL */
    size_t dist;      /* its distance */
};

/* Start a search for the candidate nearest to word. */
void evl_near_init(struct evl_near *n, const char *word);
/* Consider one candidate. */
void evl_near_add(struct evl_near *n, const char *candidate);
/*
 * The nearest candidate when it is close enough to be what the word meant
 * (the same but for case; or one edit from a name of 4 to 7 letters, two
 * from a longer one), else NULL. A short name (`log`) takes no edit: `lag`
 * is more likely a name of its own than a typo.
 */
const char *evl_near_typo(const struct evl_near *n);

#endif
