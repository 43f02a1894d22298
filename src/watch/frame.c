/* frame.c: the frames on the watcher's pipes (frame.h). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frame.h"

int frame_whole(int fd, void *p, size_t n, int w)
{
    for (char *c = p; n > 0;) {
        ssize_t r = w ? write(fd, c, n) : read(fd, c, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        c += r;
        n -= (size_t)r;
    }
    return 0;
}

int frame_write(int fd, const char *const *f, int n)
{
    size_t len = 0;
    for (int i = 0; i < n; i++)
        len += strlen(f[i] ? f[i] : "") + 1;
    if (len > FRAME_MAX)
        return -1;
    char *m = malloc(4 + len);
    if (!m)
        return -1;
    uint32_t l = (uint32_t)len;
    memcpy(m, &l, 4);
    size_t o = 4;
    for (int i = 0; i < n; i++) {
        size_t k = strlen(f[i] ? f[i] : "") + 1;
        memcpy(m + o, f[i] ? f[i] : "", k);
        o += k;
    }
    int rc = frame_whole(fd, m, o, 1);
    free(m);
    return rc;
}

void frame_fields(char *buf, size_t len, char **f, int n)
{
    char *p = buf, *end = buf + len;
    for (int i = 0; i < n; i++) {
        if (p >= end) {
            f[i] = end - 1; /* the payload ends with a NUL */
            continue;
        }
        f[i] = p;
        char *z = memchr(p, '\0', (size_t)(end - p));
        p = z ? z + 1 : end;
    }
}

long frame_read(int fd, char **buf, size_t *cap)
{
    uint32_t len;
    if (frame_whole(fd, &len, 4, 0) < 0 || len == 0 || len > FRAME_MAX)
        return -1;
    if (len > *cap) {
        char *nb = realloc(*buf, len);
        if (!nb)
            return -1;
        *buf = nb;
        *cap = len;
    }
    if (frame_whole(fd, *buf, len, 0) < 0 || (*buf)[len - 1] != '\0')
        return -1;
    return (long)len;
}

