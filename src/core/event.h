/*
 * event.h: Sentinel's script arguments -> a parsed event. No I/O, no Lua:
 * the parser is fed bytes and returns a struct, so it can be unit-tested
 * byte for byte (tests/test_event.c) and reused by a later watch mode for the
 * pub/sub-only events.
 */
#ifndef EVENTILATOR_EVENT_H
#define EVENTILATOR_EVENT_H

#include <stddef.h>

#define EVL_MAX_ARG 4096      /* Sentinel truncates messages at 1023 bytes */
#define EVL_MAX_TOKENS 64

enum evl_mode { EVL_NOTIFY, EVL_RECONFIG };

struct evl_addr {
    const char *ip;           /* NULL when absent; may be a hostname or bare IPv6 */
    long port;
};

struct evl_instance {
    const char *type;         /* "master", "slave", "sentinel"; NULL when absent */
    const char *name;
    struct evl_addr addr;
};

struct evl_event {
    enum evl_mode mode;
    const char *name;         /* "+sdown"; "client-reconfig" */
    const char *text;         /* raw description (NULL in reconfigurator mode) */
    int known;                /* name is in the catalogue */
    int entry;                /* its index in event.c's catalogue; -1 when not in it */
    const char *pod;          /* master name the event concerns */
    struct evl_instance instance;
    struct { const char *name; struct evl_addr addr; } master;
    int has_quorum; long votes, quorum;        /* votes < 0: +monitor's quorum only */
    int has_epoch; unsigned long long epoch;
    const char *leader;       /* +vote-for-leader run id */
    struct evl_addr old_master, new_master;
    const char *role, *state; /* client-reconfig */
    const char *option, *value; /* +set: option, and the rest as given */
    const char *values[3]; int nvalues;
    const char *reported_role;  /* +/-role-change */
    const char *runid;          /* +sentinel-address-switch */
    struct evl_addr new_address;
    long count;                 /* +sentinel-address-update; -1 when absent */
    const char *error;          /* -cmd/-pubsub-link-reconnection, after '#' */
    const char *script;         /* -script-error / -script-timeout path */
    long pid, signal, exit_code; /* -1 when absent */
    /* storage: tokens point into this copy of the description */
    char buf[EVL_MAX_ARG + 1];
};

/*
 * Parse. Returns 0 on success; on failure -1 with a one-line reason in err.
 * The arguments must outlive ev only for ev->name/text (the rest is copied).
 */
int evl_parse_notification(struct evl_event *ev, const char *type, const char *desc,
                           char *err, size_t errlen);
int evl_parse_reconfig(struct evl_event *ev, char *const args[7], char *err, size_t errlen);

/*
 * The event's identity: its name and the parts of its description that every
 * Sentinel reporting this one event writes the same, without those that differ
 * between reporters (+odown's votes, the master's address after '@' as each
 * Sentinel knows it, ...; docs/watch.md, "Event identity", has the table).
 * Two reports of one event have one identity; two events never share one.
 * For an event about the reporting Sentinel itself (evl_event_own: +tilt,
 * +vote-for-leader, ...) the identity ends with " by <reporter>", which the
 * caller supplies: each Sentinel's own is a different event. Writes at most
 * cap bytes, NUL included (nothing when cap is 0), and returns the identity's
 * whole length, as snprintf does. ev must have parsed.
 */
size_t evl_event_identity(const struct evl_event *ev, const char *reporter, char *out, size_t cap);

/* Is the event about the Sentinel that reports it (its identity names the reporter)? */
int evl_event_own(const struct evl_event *ev);

/* Room for any identity with a reporter of up to 255 bytes. */
#define EVL_IDENTITY_MAX (EVL_MAX_ARG + 64 + 300)

/* Is type an event name (a sign, then letters)? Returns 0, or -1 with the reason (and a guess) in err. */
int evl_check_event_name(const char *type, char *err, size_t errlen);

/* Checks an argument: length, UTF-8. Returns 0 or -1 with reason in err. */
int evl_check_arg(const char *s, int index, char *err, size_t errlen);

/* Does `pattern` (an exact name or a `*` glob) match s? */
int evl_glob(const char *pattern, const char *s);

/*
 * Can an on() pattern ever fire? Sentinel's event names are a closed set
 * (the catalogue, plus "client-reconfig"). Returns 1 if the pattern matches
 * one of them; else 0, with *closest the nearest name by edit distance
 * (NULL for an absurdly long pattern), for "did you mean".
 */
int evl_pattern_known(const char *pattern, const char **closest);

#endif
