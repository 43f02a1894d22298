/*
 * check.h: the unit tests' one assertion. CHECK(cond) reports a failed
 * condition with its place and counts it; main() exits 1 when `failures` is
 * not 0, so every check of a run is reported, not only the first.
 */
#ifndef EVL_TEST_CHECK_H
#define EVL_TEST_CHECK_H

#include <stdio.h>

static int failures;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: FAILED: %s\n", __FILE__, __LINE__, #cond);                    \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

#endif
