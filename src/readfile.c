/* readfile.c: a whole regular file into memory, for the config and rule files. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "host.h"

/*
 * Returns a NUL-terminated malloc'ed copy and its length, or NULL with
 * *err = errno (EISDIR for a folder or other non-file, EFBIG over max).
 */
char *evl_read_file(const char *path, size_t max, size_t *len, int *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    *err = 0;
    if (fd < 0) {
        *err = errno;
        return NULL;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > max) {
        *err = S_ISREG(st.st_mode) ? EFBIG : EISDIR;
        close(fd);
        return NULL;
    }
    char *buf = malloc((size_t)st.st_size + 1);
    size_t got = 0;
    while (buf && got < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    if (!buf) {
        *err = ENOMEM;
        return NULL;
    }
    buf[got] = '\0';
    *len = got;
    return buf;
}
