/*
 * libFuzzer harness: the event parser (src/core/event.c) and the pattern check.
 * Input: "<event-type>\n<description>" for a notification, or, when the
 * first byte is 'R', seven '\n'-separated arguments for client-reconfig.
 * The parser must return 0 or -1 with a reason, never crash or overrun; a
 * parsed event's identity fits EVL_IDENTITY_MAX, and a short buffer is cut.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void identity(const struct evl_event *ev)
{
    static char out[EVL_IDENTITY_MAX], small[8];
    size_t n = evl_event_identity(ev, "127.0.0.1:26379", out, sizeof out);
    if (n >= sizeof out || strlen(out) != n)
        abort();
    if (evl_event_identity(ev, "127.0.0.1:26379", small, sizeof small) != n ||
        strlen(small) != (n < sizeof small ? n : sizeof small - 1))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct evl_event ev;
    char err[512];
    char *buf = malloc(size + 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    if (size > 0 && buf[0] == 'R') {
        char *args[7];
        char *p = buf + 1;
        int n = 0;
        for (; n < 7; n++) {
            args[n] = p;
            char *nl = strchr(p, '\n');
            if (!nl) {
                n++;
                break;
            }
            *nl = '\0';
            p = nl + 1;
        }
        for (int i = n; i < 7; i++)
            args[i] = "";
        int rc = evl_parse_reconfig(&ev, args, err, sizeof err);
        if (rc < 0 && err[0] == '\0')
            abort(); /* a failure must say why */
        if (rc == 0)
            identity(&ev);
    } else {
        char *nl = strchr(buf, '\n');
        const char *desc = "";
        const char *near;
        if (nl) {
            *nl = '\0';
            desc = nl + 1;
        }
        err[0] = '\0';
        int rc = evl_parse_notification(&ev, buf, desc, err, sizeof err);
        if (rc < 0 && err[0] == '\0')
            abort();
        if (rc == 0)
            identity(&ev);
        (void)evl_pattern_known(buf, &near);
    }
    free(buf);
    return 0;
}
