/*
 * spawnbench: start each command N times, interleaved (a round runs each once,
 * in an order shuffled for every round) so that load on the machine hits all
 * of them alike and none always follows another, and print the median and
 * mean wall time of fork+exec+wait, the ratio to the first command, and the
 * peak RSS (ru_maxrss of the child), and the median CPU time (user + system
 * of the child: less sensitive than wall time to a machine others load). Usage:
 *   spawnbench N label1 cmd1 args... ::: label2 cmd2 args... [::: ...]
 * A command that exits non-zero is reported (once) and counted.
 */
#define _GNU_SOURCE
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>

extern char **environ;

#define MAXC 16

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: spawnbench N label cmd args... [::: label cmd args...]\n");
        return 2;
    }
    int n = atoi(argv[1]), nc = 0;
    char *label[MAXC];
    char **cmd[MAXC];
    char **envp[MAXC];
    size_t nenv = 0;
    while (environ[nenv])
        nenv++;
    for (int i = 2; i < argc && nc < MAXC;) {
        label[nc] = argv[i];
        int k = i + 1;
        envp[nc] = calloc(nenv + (size_t)argc + 1, sizeof(char *));
        size_t e = 0;
        while (k < argc && argv[k][0] != '/' && strchr(argv[k], '='))
            envp[nc][e++] = argv[k++];
        for (size_t x = 0; x < nenv; x++)
            envp[nc][e++] = environ[x];
        cmd[nc] = &argv[k];
        int j = k;
        while (j < argc && strcmp(argv[j], ":::") != 0)
            j++;
        if (j < argc)
            argv[j] = NULL;
        nc++;
        i = j + 1;
    }
    double *t[MAXC], *cpu[MAXC];
    long rss[MAXC] = {0};
    int bad[MAXC] = {0};
    for (int c = 0; c < nc; c++)
        t[c] = calloc((size_t)n, sizeof(double)), cpu[c] = calloc((size_t)n, sizeof(double));
    int order[MAXC];
    for (int c = 0; c < nc; c++)
        order[c] = c;
    srand48(1);
    for (int r = 0; r < n; r++) {
        for (int i = nc - 1; i > 0; i--) { /* each round in a fresh order: no command always runs after another */
            int j = (int)(lrand48() % (i + 1)), x = order[i];
            order[i] = order[j];
            order[j] = x;
        }
        for (int o = 0; o < nc; o++) {
            int c = order[o];
            pid_t pid;
            int st;
            struct rusage ru;
            double t0 = now();
            if (posix_spawn(&pid, cmd[c][0], NULL, NULL, cmd[c], envp[c]) != 0) {
                perror(cmd[c][0]);
                return 1;
            }
            wait4(pid, &st, 0, &ru);
            t[c][r] = now() - t0;
            cpu[c][r] = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                        (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
            if (ru.ru_maxrss > rss[c])
                rss[c] = ru.ru_maxrss;
            if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
                if (!bad[c])
                    fprintf(stderr, "%s: exit status %d\n", label[c], WEXITSTATUS(st));
                bad[c]++;
            }
        }
    }
    double base = 0, cbase = 0;
    printf("%-38s %10s %10s %8s %9s %8s %12s %6s\n", "command", "median ms", "mean ms", "ratio",
           "cpu ms", "ratio", "peak RSS KiB", "fails");
    for (int c = 0; c < nc; c++) {
        double sum = 0;
        for (int r = 0; r < n; r++)
            sum += t[c][r];
        qsort(t[c], (size_t)n, sizeof(double), cmpd);
        qsort(cpu[c], (size_t)n, sizeof(double), cmpd);
        double med = t[c][n / 2], cmed = cpu[c][n / 2];
        if (c == 0)
            base = med, cbase = cmed;
        printf("%-38s %10.3f %10.3f %7.2fx %9.3f %7.2fx %12ld %6d\n", label[c], med * 1e3,
               sum / n * 1e3, med / base, cmed * 1e3, cbase > 0 ? cmed / cbase : 0, rss[c], bad[c]);
    }
    return 0;
}
