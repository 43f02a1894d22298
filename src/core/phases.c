/* phases.c: the clock reads of phases.h, in a build with -DEVL_PHASES only. */
#include "phases.h"

#ifdef EVL_PHASES
#include <stdio.h>
#include <stdlib.h>

#include "deadline.h"

#define MAX_PHASES 16

static struct phase {
    const char *name;
    double us;
} ph[MAX_PHASES];
static int n;
static double last;

void evl_phase(const char *name)
{
    double now = evl_monotonic() * 1e6;
    if (name && last > 0 && n < MAX_PHASES)
        ph[n++] = (struct phase){name, now - last};
    last = now;
}

void evl_phases_write(void)
{
    const char *path = getenv("EVENTILATOR_PHASES");
    FILE *f = path && *path ? fopen(path, "a") : NULL;
    if (!f)
        return;
    for (int i = 0; i < n; i++)
        fprintf(f, "%s%s=%.1f", i ? " " : "", ph[i].name, ph[i].us);
    fputc('\n', f);
    fclose(f);
}
#else
typedef int evl_phases_unused; /* ISO C: a translation unit is not empty */
#endif
