/*
 * event.c: parse what Sentinel passes to its scripts (see
 * ../shared/sentinel/events.md section 1). Sentinel builds every message
 * from a fixed printf format, so each known event is matched against its
 * format exactly: a description that does not fit is refused (exit 2 in the
 * caller) rather than half-understood. Unknown event names pass through with
 * their raw text, so a newer Sentinel's events still reach the rules.
 */
#include "event.h"
#include "nearest.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How the description of an event is built (the format after `%@`). */
enum fmt {
    F_AT,           /* %@ */
    F_AT_QUORUM,    /* %@ quorum %d                        (+monitor) */
    F_AT_ODOWN,     /* %@ #quorum %d/%d                    (+odown) */
    F_AT_SET,       /* %@ %s [%s [%s]]                     (+set) */
    F_EPOCH,        /* %llu                                (+new-epoch) */
    F_VOTE,         /* %s %llu                             (+vote-for-leader) */
    F_SWITCH,       /* %s %s %d %s %d                      (+switch-master) */
    F_TEXT,         /* free text                           (+tilt, -tilt) */
    F_SCRIPT_ERROR, /* %s %d %d: path, signal, exit code */
    F_SCRIPT_TIMEOUT, /* %s %ld: path, pid */
    F_CHILD_START,  /* %ld */
    F_CHILD_END,    /* %ld %d %d: pid, exit code, signal */
    F_AT_ADDR_SWITCH, /* %@ ip %s port %d for %s */
    F_AT_ADDR_UPDATE, /* %@ %d additional matching instances */
    F_AT_ROLE,      /* %@ new reported role is %s */
    F_AT_LINK       /* %@ #<error text> */
};

/*
 * What of a report names the event (evl_event_identity). Beside these, every
 * `%@` event about a replica or a Sentinel drops the master's address after
 * '@': it is the address each reporter knows, which differs around a failover.
 */
enum ident {
    I_TEXT,   /* the description */
    I_HEAD,   /* the instance only: the rest differs between reporters */
    I_SOURCE, /* the master after '@' only: the Sentinel named is the peer this reporter heard */
    I_OWN     /* the description and the reporter: about the reporting Sentinel itself */
};

#define M 1 /* master */
#define S 2 /* slave */
#define X 4 /* sentinel */

static const struct {
    const char *name;
    enum fmt fmt;
    int types; /* instance types allowed by %@ */
    enum ident ident;
} catalogue[] = {
    /* WARNING with an instance: these reach the notification script */
    {"+monitor", F_AT_QUORUM, M, I_TEXT}, {"-monitor", F_AT, M, I_TEXT},
    {"+reset-master", F_AT, M, I_TEXT}, {"+set", F_AT_SET, M, I_TEXT},
    {"+sdown", F_AT, M | S | X, I_TEXT}, {"-sdown", F_AT, M | S | X, I_TEXT},
    {"+odown", F_AT_ODOWN, M, I_HEAD}, /* #quorum <votes>/<this Sentinel's quorum> */
    {"-odown", F_AT, M, I_TEXT}, {"+new-epoch", F_EPOCH, 0, I_TEXT},
    {"+vote-for-leader", F_VOTE, 0, I_OWN}, /* each Sentinel's own vote */
    {"+try-failover", F_AT, M, I_TEXT}, {"+elected-leader", F_AT, M, I_TEXT},
    {"+failover-state-select-slave", F_AT, M, I_TEXT}, {"+selected-slave", F_AT, S, I_TEXT},
    {"-failover-abort-not-elected", F_AT, M, I_OWN}, /* each candidate's own election */
    {"-failover-abort-no-good-slave", F_AT, M, I_TEXT},
    {"-failover-abort-slave-timeout", F_AT, M, I_TEXT}, {"+promoted-slave", F_AT, S, I_TEXT},
    {"+failover-state-reconf-slaves", F_AT, M, I_TEXT},
    {"+failover-end-for-timeout", F_AT, M, I_TEXT}, {"+failover-end", F_AT, M, I_TEXT},
    {"+switch-master", F_SWITCH, 0, I_TEXT},
    {"+config-update-from", F_AT, X, I_SOURCE},
    /* WARNING without an instance: log and pub/sub only; all about the reporter */
    {"+tilt", F_TEXT, 0, I_OWN}, {"-tilt", F_TEXT, 0, I_OWN},
    {"-script-error", F_SCRIPT_ERROR, 0, I_OWN}, {"-script-timeout", F_SCRIPT_TIMEOUT, 0, I_OWN},
    /* NOTICE */
    {"+slave", F_AT, S, I_TEXT}, {"+sentinel", F_AT, X, I_TEXT},
    {"+sentinel-address-switch", F_AT_ADDR_SWITCH, M, I_TEXT},
    {"+sentinel-invalid-addr", F_AT, X, I_TEXT},
    {"+sentinel-address-update", F_AT_ADDR_UPDATE, X, I_HEAD}, /* count: the reporter's masters */
    {"+reboot", F_AT, M | S, I_TEXT}, {"+convert-to-slave", F_AT, S, I_TEXT},
    {"+fix-slave-config", F_AT, S, I_TEXT},
    {"+failover-state-send-slaveof-noone", F_AT, S, I_TEXT},
    {"+failover-state-wait-promotion", F_AT, S, I_TEXT}, {"+slave-reconf-sent", F_AT, S, I_TEXT},
    {"+slave-reconf-inprog", F_AT, S, I_TEXT}, {"+slave-reconf-done", F_AT, S, I_TEXT},
    {"-slave-reconf-sent-timeout", F_AT, S, I_TEXT}, {"+slave-reconf-sent-be", F_AT, S, I_TEXT},
    /* VERBOSE */
    {"+role-change", F_AT_ROLE, M | S, I_TEXT}, {"-role-change", F_AT_ROLE, M | S, I_TEXT},
    /* DEBUG: never published nor scripted, parsed for completeness; the reporter's own
     * children and links */
    {"+script-child", F_CHILD_START, 0, I_OWN}, {"-script-child", F_CHILD_END, 0, I_OWN},
    {"-cmd-link-reconnection", F_AT_LINK, M | S | X, I_OWN},
    {"-pubsub-link-reconnection", F_AT_LINK, M | S, I_OWN},
};
#define NCATALOGUE (sizeof catalogue / sizeof catalogue[0])

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static int find(const char *name)
{
    for (size_t i = 0; i < NCATALOGUE; i++)
        if (strcmp(catalogue[i].name, name) == 0)
            return (int)i;
    return -1;
}

/* `*` matches any run of characters, everything else itself. */
int evl_glob(const char *p, const char *s)
{
    const char *star = NULL, *back = NULL;
    while (*s) {
        if (*p == '*') {
            star = p++;
            back = s;
        } else if (*p == *s) {
            p++;
            s++;
        } else if (star) {
            p = star + 1;
            s = ++back;
        } else {
            return 0;
        }
    }
    while (*p == '*')
        p++;
    return *p == '\0';
}

int evl_pattern_known(const char *pattern, const char **closest)
{
    static const char reconfig[] = "client-reconfig";
    struct evl_near near;
    *closest = NULL;
    if (evl_glob(pattern, reconfig))
        return 1;
    for (size_t i = 0; i < NCATALOGUE; i++)
        if (evl_glob(pattern, catalogue[i].name))
            return 1;
    /* a pattern is certainly meant for some event: the nearest, however far */
    evl_near_init(&near, pattern);
    for (size_t i = 0; i <= NCATALOGUE; i++)
        evl_near_add(&near, i < NCATALOGUE ? catalogue[i].name : reconfig);
    *closest = near.best;
    return 0;
}

/*
 * What `type`, refused as an event name, probably meant: the name with a
 * sign (`odown` -> `+odown`), or a catalogue name a typo away. NULL if none.
 */
static const char *name_hint(const char *type)
{
    static char signed_name[72];
    struct evl_near near;
    if (type[0] != '+' && type[0] != '-' && strlen(type) < sizeof signed_name - 1) {
        for (const char *sign = "+-"; *sign; sign++) {
            snprintf(signed_name, sizeof signed_name, "%c%s", *sign, type);
            if (find(signed_name) >= 0)
                return signed_name;
        }
    }
    evl_near_init(&near, type);
    for (size_t i = 0; i < NCATALOGUE; i++)
        evl_near_add(&near, catalogue[i].name);
    return evl_near_typo(&near);
}

/* Strict decimal: digits only, no sign, no spaces, within [lo, hi]. */
static int number(const char *s, long lo, long hi, long *out)
{
    char *end;
    if (!s || *s < '0' || *s > '9')
        return 0;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi)
        return 0;
    *out = v;
    return 1;
}

static int port(const char *s, long *out)
{
    return number(s, 1, 65535, out);
}

/* An epoch must fit a Lua integer (signed 64-bit): 2^63 and above would
 * reach the rules as a negative number, so it is refused instead. */
static int epoch(const char *s, unsigned long long *out)
{
    char *end;
    if (!s || *s < '0' || *s > '9')
        return 0;
    errno = 0;
    *out = strtoull(s, &end, 10);
    return errno == 0 && *end == '\0' && *out <= (unsigned long long)LLONG_MAX;
}

/* One UTF-8 check, per RFC 3629 (no overlongs, no surrogates, <= U+10FFFF). */
static size_t utf8_bad_at(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len;
        unsigned min;
        if (c < 0x80) { i++; continue; }
        else if ((c & 0xE0) == 0xC0) { len = 2; min = 0x80; c &= 0x1F; }
        else if ((c & 0xF0) == 0xE0) { len = 3; min = 0x800; c &= 0x0F; }
        else if ((c & 0xF8) == 0xF0) { len = 4; min = 0x10000; c &= 0x07; }
        else return i + 1;
        if (i + len > n)
            return i + 1;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return i + 1;
            c = (c << 6) | (s[i + k] & 0x3F);
        }
        if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
            return i + 1;
        i += len;
    }
    return 0;
}

int evl_check_arg(const char *s, int index, char *err, size_t errlen)
{
    size_t n = strlen(s);
    if (n > EVL_MAX_ARG)
        return fail(err, errlen, "argument %d is %zu bytes, over the %d-byte limit", index, n,
                    EVL_MAX_ARG);
    size_t bad = utf8_bad_at((const unsigned char *)s, n);
    if (bad)
        return fail(err, errlen, "argument %d is not valid UTF-8 (byte %zu)", index, bad);
    return 0;
}

/* Event names: a sign, then a letter or digit, then letters, digits and
 * - _ . : (at most 63 after the sign). "--" or "+-x" is a typo or an option,
 * never one of Sentinel's names. */
static int valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n < 2 || n > 64 || (s[0] != '+' && s[0] != '-'))
        return 0;
    if (!((s[1] >= 'a' && s[1] <= 'z') || (s[1] >= 'A' && s[1] <= 'Z') || (s[1] >= '0' && s[1] <= '9')))
        return 0;
    for (size_t i = 1; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.' || c == ':'))
            return 0;
    }
    return 1;
}

/* Split ev->buf (a copy of the description) on single spaces. */
static int tokenize(struct evl_event *ev, const char *desc, char **tok, size_t *off)
{
    size_t n = strlen(desc);
    int nt = 0;
    memcpy(ev->buf, desc, n + 1);
    char *p = ev->buf;
    for (;;) {
        if (nt == EVL_MAX_TOKENS)
            return -1;
        off[nt] = (size_t)(p - ev->buf);
        tok[nt++] = p;
        char *sp = strchr(p, ' ');
        if (!sp)
            break;
        *sp = '\0';
        p = sp + 1;
    }
    for (int i = 0; i < nt; i++)
        if (tok[i][0] == '\0')
            return -2; /* leading, trailing or doubled space */
    return nt;
}

/* `%@`: returns tokens consumed (4 for a master, 8 otherwise) or -1. */
static int instance(struct evl_event *ev, char **tok, int nt, int types, char *err, size_t errlen)
{
    struct evl_instance *in = &ev->instance;
    if (nt < 4)
        return fail(err, errlen, "expected '<type> <name> <addr> <port>'");
    int bit = strcmp(tok[0], "master") == 0 ? M : strcmp(tok[0], "slave") == 0 ? S
              : strcmp(tok[0], "sentinel") == 0 ? X : 0;
    if (!bit)
        return fail(err, errlen, "unknown instance type '%.32s'", tok[0]);
    if (!(types & bit))
        return fail(err, errlen, "%s is not about a %s", ev->name, tok[0]);
    in->type = tok[0];
    in->name = tok[1];
    in->addr.ip = tok[2];
    if (!port(tok[3], &in->addr.port))
        return fail(err, errlen, "bad port '%.32s'", tok[3]);
    if (bit == M) {
        ev->master.name = in->name;
        ev->master.addr = in->addr;
        ev->pod = in->name;
        return 4;
    }
    if (nt < 8 || strcmp(tok[4], "@") != 0)
        return fail(err, errlen, "expected '@ <master> <addr> <port>' after the %s", tok[0]);
    ev->master.name = tok[5];
    ev->master.addr.ip = tok[6];
    if (!port(tok[7], &ev->master.addr.port))
        return fail(err, errlen, "bad master port '%.32s'", tok[7]);
    ev->pod = tok[5];
    return 8;
}

static void reset(struct evl_event *ev)
{
    memset(ev, 0, offsetof(struct evl_event, buf));
    ev->entry = -1;
    ev->count = ev->pid = ev->signal = ev->exit_code = -1;
}

/* Rest of the description from token i on, as Sentinel wrote it. */
static const char *rest(const char *desc, const size_t *off, int i)
{
    return desc + off[i];
}

/*
 * What follows the instance of a `%@` format: t[0..n), the words after it;
 * desc and off[] (offsets of those words in desc) give the text as
 * Sentinel wrote it, for the fields that keep their spaces.
 */
static int after_instance(struct evl_event *ev, int fmt, char **t, int n, const char *desc,
                          const size_t *off, char *err, size_t errlen)
{
    long a, b;
    switch (fmt) {
    case F_AT_QUORUM:
        if (n != 2 || strcmp(t[0], "quorum") != 0 || !number(t[1], 0, 1000000, &a))
            return fail(err, errlen, "expected 'quorum <n>' after the instance");
        ev->has_quorum = 1;
        ev->votes = -1;
        ev->quorum = a;
        return 0;
    case F_AT_ODOWN: {
        char *slash = n == 2 ? strchr(t[1], '/') : NULL;
        if (n != 2 || strcmp(t[0], "#quorum") != 0 || !slash)
            return fail(err, errlen, "expected '#quorum <votes>/<quorum>' after the instance");
        *slash = '\0';
        if (!number(t[1], 0, 1000000, &a) || !number(slash + 1, 0, 1000000, &b))
            return fail(err, errlen, "bad '#quorum %s/%s': expected two numbers", t[1], slash + 1);
        ev->has_quorum = 1;
        ev->votes = a;
        ev->quorum = b;
        return 0;
    }
    case F_AT_SET:
        if (n < 1 || n > 4)
            return fail(err, errlen, "expected '<option> [<value>...]' after the instance");
        ev->option = t[0];
        for (int i = 1; i < n && i <= 3; i++)
            ev->values[ev->nvalues++] = t[i];
        ev->value = n > 1 ? rest(desc, off, 1) : NULL;
        return 0;
    case F_AT_ADDR_SWITCH:
        if (n != 6 || strcmp(t[0], "ip") != 0 || strcmp(t[2], "port") != 0 ||
            strcmp(t[4], "for") != 0 || !port(t[3], &ev->new_address.port))
            return fail(err, errlen, "expected 'ip <addr> port <port> for <run id>'");
        ev->new_address.ip = t[1];
        ev->runid = t[5];
        return 0;
    case F_AT_ADDR_UPDATE:
        if (n != 4 || !number(t[0], 0, 1000000, &ev->count) || strcmp(t[1], "additional") != 0 ||
            strcmp(t[2], "matching") != 0 || strcmp(t[3], "instances") != 0)
            return fail(err, errlen, "expected '<n> additional matching instances'");
        return 0;
    case F_AT_ROLE:
        if (n != 5 || strcmp(t[0], "new") != 0 || strcmp(t[1], "reported") != 0 ||
            strcmp(t[2], "role") != 0 || strcmp(t[3], "is") != 0)
            return fail(err, errlen, "expected 'new reported role is <role>'");
        ev->reported_role = t[4];
        return 0;
    case F_AT_LINK:
        if (n < 1 || t[0][0] != '#')
            return fail(err, errlen, "expected '#<error>' after the instance");
        ev->error = rest(desc, off, 0) + 1;
        return 0;
    default: /* F_AT */
        if (n != 0)
            return fail(err, errlen, "unexpected text after the instance: '%.40s'", t[0]);
        return 0;
    }
}

/* The script-queue events: a path (spaces and all) or a pid, then numbers. */
static int script_fields(struct evl_event *ev, int fmt, char **tok, int nt, char *err, size_t errlen)
{
    long a, b;
    if (fmt == F_CHILD_START) {
        if (nt != 1 || !number(tok[0], 0, 1L << 30, &ev->pid))
            return fail(err, errlen, "expected a pid");
        return 0;
    }
    if (fmt == F_SCRIPT_TIMEOUT) {
        if (nt < 2 || !number(tok[nt - 1], 0, 1L << 30, &ev->pid))
            return fail(err, errlen, "expected '<path> <pid>'");
        ev->script = ev->buf;
        for (char *p = ev->buf; p < tok[nt - 1] - 1; p++)
            if (*p == '\0')
                *p = ' ';
        return 0;
    }
    if (nt < 3)
        return fail(err, errlen, "expected three fields");
    if (!number(tok[nt - 2], 0, 1000000, &a) || !number(tok[nt - 1], 0, 1000000, &b))
        return fail(err, errlen, "expected two numbers at the end");
    if (fmt == F_SCRIPT_ERROR) {
        ev->signal = a;
        ev->exit_code = b;
        /* the path may hold spaces: everything before the two numbers */
        tok[nt - 2][-1] = '\0';
        ev->script = ev->buf;
        for (char *p = ev->buf; p < tok[nt - 2] - 1; p++)
            if (*p == '\0')
                *p = ' ';
        return 0;
    }
    if (nt != 3 || !number(tok[0], 0, 1L << 30, &ev->pid)) /* F_CHILD_END */
        return fail(err, errlen, "expected '<pid> <exit code> <signal>'");
    ev->exit_code = a;
    ev->signal = b;
    return 0;
}

static int parse_known(struct evl_event *ev, int k, const char *desc, char *err, size_t errlen)
{
    char *tok[EVL_MAX_TOKENS];
    size_t off[EVL_MAX_TOKENS];
    int fmt = catalogue[k].fmt, at;
    int nt = tokenize(ev, desc, tok, off); /* F_TEXT too: ev->buf holds its words, as always */
    if (fmt == F_TEXT)
        return 0;
    if (nt == -1)
        return fail(err, errlen, "description has more than %d words", EVL_MAX_TOKENS);
    if (nt == -2)
        return fail(err, errlen, "description has a stray space");
    switch (fmt) {
    case F_AT: case F_AT_QUORUM: case F_AT_ODOWN: case F_AT_SET:
    case F_AT_ADDR_SWITCH: case F_AT_ADDR_UPDATE: case F_AT_ROLE: case F_AT_LINK:
        if ((at = instance(ev, tok, nt, catalogue[k].types, err, errlen)) < 0)
            return -1;
        return after_instance(ev, fmt, tok + at, nt - at, desc, off + at, err, errlen);
    case F_EPOCH:
        if (nt != 1 || !epoch(tok[0], &ev->epoch))
            return fail(err, errlen, "expected an epoch number from 0 to 2^63-1");
        ev->has_epoch = 1;
        return 0;
    case F_VOTE:
        if (nt != 2 || !epoch(tok[1], &ev->epoch))
            return fail(err, errlen, "expected '<leader run id> <epoch>', epoch from 0 to 2^63-1");
        ev->leader = tok[0];
        ev->has_epoch = 1;
        return 0;
    case F_SWITCH:
        if (nt != 5)
            return fail(err, errlen, "expected '<master> <old addr> <old port> <new addr> <new port>'");
        if (!port(tok[2], &ev->old_master.port) || !port(tok[4], &ev->new_master.port))
            return fail(err, errlen, "bad port in '%.80s'", desc);
        ev->pod = ev->master.name = tok[0];
        ev->old_master.ip = tok[1];
        ev->new_master.ip = tok[3];
        ev->master.addr = ev->new_master; /* the master as Sentinel now knows it */
        return 0;
    default: /* F_SCRIPT_ERROR, F_SCRIPT_TIMEOUT, F_CHILD_START, F_CHILD_END */
        return script_fields(ev, fmt, tok, nt, err, errlen);
    }
}

int evl_check_event_name(const char *type, char *err, size_t errlen)
{
    if (valid_name(type))
        return 0;
    const char *hint = name_hint(type);
    if (hint)
        return fail(err, errlen, "'%.64s' is not an event name; did you mean `%s`?", type, hint);
    return fail(err, errlen, "'%.64s' is not an event name", type);
}

int evl_parse_notification(struct evl_event *ev, const char *type, const char *desc, char *err,
                           size_t errlen)
{
    reset(ev);
    ev->mode = EVL_NOTIFY;
    if (evl_check_arg(type, 1, err, errlen) || evl_check_arg(desc, 2, err, errlen))
        return -1;
    if (evl_check_event_name(type, err, errlen) < 0)
        return -1;
    if (desc[0] == '\0')
        return fail(err, errlen, "empty description for %s", type);
    ev->name = type;
    ev->text = desc;
    int k = find(type);
    if (k < 0)
        return 0; /* unknown: dispatched with name, text, args */
    ev->known = 1;
    ev->entry = k;
    if (parse_known(ev, k, desc, err, errlen) < 0) {
        char why[256];
        snprintf(why, sizeof why, "%s", err);
        return fail(err, errlen, "cannot parse %s '%.120s': %s", type, desc, why);
    }
    return 0;
}

int evl_parse_reconfig(struct evl_event *ev, char *const args[7], char *err, size_t errlen)
{
    static const char *what[7] = {"master name", "role", "state", "from-ip", "from-port",
                                  "to-ip", "to-port"};
    reset(ev);
    ev->mode = EVL_RECONFIG;
    ev->name = "client-reconfig";
    ev->known = 1;
    for (int i = 0; i < 7; i++) {
        if (evl_check_arg(args[i], i + 1, err, errlen))
            return -1;
        if (args[i][0] == '\0' || strchr(args[i], ' '))
            return fail(err, errlen, "bad %s '%.64s'", what[i], args[i]);
    }
    /* Sentinel passes only these two (events.md section 3); anything else
     * is not a call from Sentinel, and retrying it cannot help. */
    if (strcmp(args[1], "leader") != 0 && strcmp(args[1], "observer") != 0)
        return fail(err, errlen, "bad role '%.64s': expected leader or observer", args[1]);
    if (!port(args[4], &ev->old_master.port))
        return fail(err, errlen, "bad from-port '%.32s'", args[4]);
    if (!port(args[6], &ev->new_master.port))
        return fail(err, errlen, "bad to-port '%.32s'", args[6]);
    ev->pod = ev->master.name = args[0];
    ev->role = args[1];
    ev->state = args[2];
    ev->old_master.ip = args[3];
    ev->new_master.ip = args[5];
    ev->master.addr = ev->new_master;
    return 0;
}

/* ------------------------------------------------------------ identity */

/* An output that counts what does not fit (snprintf's contract). */
struct out {
    char *p;
    size_t cap, len;
};

static void put(struct out *o, const char *s, size_t n)
{
    if (o->len + 1 < o->cap) {
        size_t room = o->cap - 1 - o->len;
        memcpy(o->p + o->len, s, n < room ? n : room);
    }
    o->len += n;
}

static void put_str(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

static void put_addr(struct out *o, const struct evl_addr *a)
{
    char port[24];
    snprintf(port, sizeof port, " %ld", a->port);
    put_str(o, " ");
    put_str(o, a->ip);
    put_str(o, port);
}

/* The start of word n of s (words are separated by single spaces), or its end. */
static const char *word(const char *s, int n)
{
    for (; n > 0 && *s; n--) {
        const char *sp = strchr(s, ' ');
        s = sp ? sp + 1 : s + strlen(s);
    }
    return s;
}

/* From word a up to word b of s, without the space before word b. */
static void words(struct out *o, const char *s, int a, int b)
{
    const char *from = word(s, a), *to = word(from, b - a);
    if (to > from && to[-1] == ' ')
        to--;
    put(o, from, (size_t)(to - from));
}

int evl_event_own(const struct evl_event *ev)
{
    return ev->entry >= 0 && catalogue[ev->entry].ident == I_OWN;
}

size_t evl_event_identity(const struct evl_event *ev, const char *reporter, char *out, size_t cap)
{
    struct out o = {out, cap, 0};
    put_str(&o, ev->name);
    if (ev->mode == EVL_RECONFIG) {
        /* the role (leader, observer) is the reporter's part in the failover */
        put_str(&o, " ");
        put_str(&o, ev->pod);
        put_str(&o, " ");
        put_str(&o, ev->state);
        put_addr(&o, &ev->old_master);
        put_addr(&o, &ev->new_master);
    } else if (ev->entry < 0 || !ev->instance.type || catalogue[ev->entry].ident == I_OWN) {
        /* unknown names, formats without an instance, and the reporter's own */
        put_str(&o, " ");
        put_str(&o, ev->text);
        if (evl_event_own(ev)) {
            put_str(&o, " by ");
            put_str(&o, reporter ? reporter : "");
        }
    } else if (catalogue[ev->entry].ident == I_SOURCE) {
        put_str(&o, " ");
        words(&o, ev->text, 4, 8); /* "@ <master> <addr> <port>" */
    } else {
        /* %@: "<type> <name> <addr> <port>", then for a replica or a Sentinel
         * "@ <master>" without the master's address; then the rest, if kept */
        int master = strcmp(ev->instance.type, "master") == 0;
        put_str(&o, " ");
        words(&o, ev->text, 0, master ? 4 : 6);
        const char *rest = word(ev->text, master ? 4 : 8);
        if (*rest && catalogue[ev->entry].ident == I_TEXT) {
            put_str(&o, " ");
            put_str(&o, rest);
        }
    }
    if (cap > 0)
        out[o.len < cap ? o.len : cap - 1] = '\0';
    return o.len;
}
