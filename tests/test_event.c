/*
 * Unit tests for the event parser: bytes in, struct out, no I/O but reading
 * the corpus of a real Sentinel's calls (../shared/sentinel/corpus-failover.jsonl).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"

static int failures, checks;

#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        checks++;                                                          \
        if (!(cond)) {                                                     \
            failures++;                                                    \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                  \
            fputc('\n', stderr);                                           \
        }                                                                  \
    } while (0)

static struct evl_event ev;
static char err[512];

static int parse(const char *type, const char *desc)
{
    return evl_parse_notification(&ev, type, desc, err, sizeof err);
}

static int streq(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

/* --- the corpus: one JSON object a line with "argv0" and "args" --------- */

/* Read a JSON string at *p (after the opening quote) into out. */
static char *json_string(const char **p)
{
    char *out = malloc(strlen(*p) + 1), *o = out;
    const char *s = *p;
    while (*s && *s != '"') {
        if (*s == '\\') {
            s++;
            *o++ = *s == 'n' ? '\n' : *s == 't' ? '\t' : *s;
            s++;
        } else {
            *o++ = *s++;
        }
    }
    *o = '\0';
    *p = *s ? s + 1 : s;
    return out;
}

static int corpus(const char *shared)
{
    char path[1024], line[8192];
    snprintf(path, sizeof path, "%s/sentinel/corpus-failover.jsonl", shared);
    FILE *f = fopen(path, "r");
    CHECK(f != NULL, "cannot open %s", path);
    if (!f)
        return 0;
    int n = 0, leader = 0, observer = 0, odown = 0, switches = 0;
    while (fgets(line, sizeof line, f)) {
        const char *a0 = strstr(line, "\"argv0\": \"");
        const char *args = strstr(line, "\"args\": [");
        if (!a0 || !args)
            continue;
        a0 += 10;
        char *argv0 = json_string(&a0);
        char *argv[16];
        int argc = 0;
        const char *p = args + 9;
        while ((p = strchr(p, '"')) && argc < 16) {
            p++;
            argv[argc++] = json_string(&p);
            if (*p != ',')
                break;
        }
        n++;
        int rc;
        if (streq(argv0, "reconfigurator")) {
            CHECK(argc == 7, "reconfigurator with %d args", argc);
            rc = evl_parse_reconfig(&ev, argv, err, sizeof err);
            CHECK(rc == 0, "corpus line %d: %s", n, err);
            CHECK(streq(ev.pod, "pod1") && ev.old_master.port > 0 && ev.new_master.port > 0,
                  "corpus line %d: reconfig fields", n);
            leader += streq(ev.role, "leader");
            observer += streq(ev.role, "observer");
        } else {
            CHECK(argc == 2, "eventilator with %d args", argc);
            rc = parse(argv[0], argv[1]);
            CHECK(rc == 0, "corpus line %d: %s %s: %s", n, argv[0], argv[1], err);
            CHECK(ev.known, "corpus line %d: %s not known", n, argv[0]);
            if (streq(argv[0], "+odown")) {
                odown++;
                CHECK(ev.has_quorum && ev.votes >= 2 && ev.quorum == 2, "odown votes/quorum");
            }
            if (streq(argv[0], "+switch-master")) {
                switches++;
                CHECK(streq(ev.pod, "pod1") && ev.old_master.port != ev.new_master.port,
                      "switch-master fields");
            }
            if (strcmp(argv[0], "+new-epoch") && strcmp(argv[0], "+vote-for-leader"))
                CHECK(streq(ev.pod, "pod1"), "corpus line %d: pod of %s", n, argv[0]);
        }
        for (int i = 0; i < argc; i++)
            free(argv[i]);
        free(argv0);
    }
    fclose(f);
    CHECK(n >= 50, "corpus has %d lines", n);
    CHECK(leader == 2 && observer == 4, "leader %d observer %d", leader, observer);
    CHECK(odown == 3 && switches == 6, "odown %d switch %d", odown, switches);
    return n;
}

/* --- every event of the catalogue, in the shapes events.md gives --------- */

static void catalogue(void)
{
    const char *sid = "3e0933e0f052beed0ad6b16337529bae22b2c1f9";
    char buf[512];

    CHECK(parse("+monitor", "master mymaster 10.0.0.1 6379 quorum 2") == 0, "%s", err);
    CHECK(ev.quorum == 2 && ev.votes == -1 && streq(ev.instance.type, "master"), "+monitor");
    for (const char *const *e = (const char *const[]){"-monitor", "+reset-master", "+sdown",
             "-sdown", "-odown", "+try-failover", "+elected-leader", "+failover-state-select-slave",
             "-failover-abort-not-elected", "-failover-abort-no-good-slave",
             "-failover-abort-slave-timeout", "+failover-state-reconf-slaves",
             "+failover-end-for-timeout", "+failover-end", "+reboot", NULL}; *e; e++) {
        CHECK(parse(*e, "master mymaster 10.0.0.1 6379") == 0, "%s: %s", *e, err);
        CHECK(streq(ev.pod, "mymaster") && streq(ev.master.addr.ip, "10.0.0.1") &&
              ev.master.addr.port == 6379 && streq(ev.instance.name, "mymaster"), "%s fields", *e);
    }
    for (const char *const *e = (const char *const[]){"+sdown", "-sdown", "+selected-slave",
             "+promoted-slave", "+slave", "+convert-to-slave", "+fix-slave-config",
             "+failover-state-send-slaveof-noone", "+failover-state-wait-promotion",
             "+slave-reconf-sent", "+slave-reconf-inprog", "+slave-reconf-done",
             "-slave-reconf-sent-timeout", "+slave-reconf-sent-be", "+reboot", NULL}; *e; e++) {
        CHECK(parse(*e, "slave 10.0.0.2:6379 10.0.0.2 6379 @ mymaster 10.0.0.1 6379") == 0,
              "%s: %s", *e, err);
        CHECK(streq(ev.instance.type, "slave") && streq(ev.instance.name, "10.0.0.2:6379") &&
              streq(ev.instance.addr.ip, "10.0.0.2") && ev.instance.addr.port == 6379 &&
              streq(ev.pod, "mymaster") && ev.master.addr.port == 6379, "%s fields", *e);
    }
    snprintf(buf, sizeof buf, "sentinel %s 10.0.0.7 26379 @ mymaster 10.0.0.1 6379", sid);
    for (const char *const *e = (const char *const[]){"+sdown", "-sdown", "+config-update-from",
             "+sentinel", "+sentinel-invalid-addr", NULL}; *e; e++) {
        CHECK(parse(*e, buf) == 0, "%s: %s", *e, err);
        CHECK(streq(ev.instance.type, "sentinel") && streq(ev.instance.name, sid) &&
              ev.instance.addr.port == 26379 && streq(ev.pod, "mymaster"), "%s fields", *e);
    }
    CHECK(parse("+odown", "master mymaster 10.0.0.1 6379 #quorum 2/3") == 0, "%s", err);
    CHECK(ev.votes == 2 && ev.quorum == 3, "+odown votes %ld quorum %ld", ev.votes, ev.quorum);
    CHECK(parse("+new-epoch", "18446744073709551615") == -1, "+new-epoch past a Lua integer");
    snprintf(buf, sizeof buf, "%s 7", sid);
    CHECK(parse("+vote-for-leader", buf) == 0 && ev.epoch == 7 && streq(ev.leader, sid), "vote");
    CHECK(parse("+switch-master", "mymaster 10.0.0.1 6379 10.0.0.2 6380") == 0, "%s", err);
    CHECK(streq(ev.old_master.ip, "10.0.0.1") && ev.old_master.port == 6379 &&
          streq(ev.new_master.ip, "10.0.0.2") && ev.new_master.port == 6380 &&
          streq(ev.master.addr.ip, "10.0.0.2"), "switch fields");
    /* +set with one, two and three values */
    CHECK(parse("+set", "master mymaster 10.0.0.1 6379 quorum 2") == 0, "%s", err);
    CHECK(streq(ev.option, "quorum") && streq(ev.value, "2") && ev.nvalues == 1, "+set 1");
    CHECK(parse("+set", "master mymaster 10.0.0.1 6379 auth-pass ******") == 0 &&
          streq(ev.value, "******"), "+set auth-pass");
    CHECK(parse("+set", "master mymaster 10.0.0.1 6379 rename-command CONFIG MYCONFIG") == 0,
          "%s", err);
    CHECK(streq(ev.option, "rename-command") && streq(ev.value, "CONFIG MYCONFIG") &&
          ev.nvalues == 2 && streq(ev.values[1], "MYCONFIG"), "+set rename-command");
    CHECK(parse("+set", "master mymaster 10.0.0.1 6379 down-after-milliseconds") == 0 &&
          ev.value == NULL && ev.nvalues == 0, "+set option only");
    /* no instance */
    CHECK(parse("+tilt", "#tilt mode entered") == 0 && ev.known, "+tilt");
    CHECK(parse("-tilt", "#tilt mode exited") == 0, "-tilt");
    CHECK(parse("-script-error", "/etc/redis/notify.sh 15 0") == 0 && ev.signal == 15 &&
          ev.exit_code == 0 && streq(ev.script, "/etc/redis/notify.sh"), "-script-error");
    CHECK(parse("-script-error", "/opt/my scripts/n.sh 0 2") == 0 &&
          streq(ev.script, "/opt/my scripts/n.sh") && ev.exit_code == 2, "path with a space");
    CHECK(parse("-script-timeout", "/etc/redis/notify.sh 17863") == 0 && ev.pid == 17863,
          "-script-timeout");
    CHECK(parse("+script-child", "15068") == 0 && ev.pid == 15068, "+script-child");
    CHECK(parse("-script-child", "17863 0 9") == 0 && ev.pid == 17863 && ev.exit_code == 0 &&
          ev.signal == 9, "-script-child");
    /* notice / verbose / debug shapes */
    snprintf(buf, sizeof buf, "master mymaster 10.0.0.1 6379 ip 10.0.0.9 port 26379 for %s", sid);
    CHECK(parse("+sentinel-address-switch", buf) == 0 && ev.new_address.port == 26379 &&
          streq(ev.runid, sid), "address switch: %s", err);
    snprintf(buf, sizeof buf, "sentinel %s 10.0.0.9 26379 @ mymaster 10.0.0.1 6379 2 additional matching instances", sid);
    CHECK(parse("+sentinel-address-update", buf) == 0 && ev.count == 2, "address update: %s", err);
    CHECK(parse("+role-change", "slave 10.0.0.2:6379 10.0.0.2 6379 @ mymaster 10.0.0.1 6379 new reported role is master") == 0 &&
          streq(ev.reported_role, "master"), "+role-change: %s", err);
    CHECK(parse("-role-change", "master mymaster 10.0.0.1 6379 new reported role is slave") == 0 &&
          streq(ev.reported_role, "slave"), "-role-change");
    CHECK(parse("-cmd-link-reconnection", "master mymaster 10.0.0.1 6379 #Connection refused") == 0 &&
          streq(ev.error, "Connection refused"), "link: %s", err);
    CHECK(parse("-pubsub-link-reconnection", "slave 10.0.0.2:6379 10.0.0.2 6379 @ mymaster 10.0.0.1 6379 #Failed to establish connection") == 0 &&
          streq(ev.error, "Failed to establish connection"), "pubsub link");
    /* IPv6 and hostnames */
    CHECK(parse("+sdown", "slave [::1]:6380 ::1 6380 @ mymaster ::1 6379") == 0 &&
          streq(ev.instance.name, "[::1]:6380") && streq(ev.instance.addr.ip, "::1") &&
          streq(ev.master.addr.ip, "::1"), "ipv6: %s", err);
    CHECK(parse("+sdown", "master cache1 redis-1.example.com 6379") == 0 &&
          streq(ev.master.addr.ip, "redis-1.example.com"), "hostname");
    CHECK(parse("+switch-master", "m fe80::1 6379 2001:db8::2 6379") == 0 &&
          streq(ev.new_master.ip, "2001:db8::2"), "ipv6 switch");
    /* unknown events pass through */
    CHECK(parse("+future-event", "anything at all") == 0 && !ev.known && ev.pod == NULL &&
          streq(ev.text, "anything at all"), "unknown event");
    CHECK(parse("+sdown", "master m 10.0.0.1 6379") == 0 && ev.known && parse("+nope", "x") == 0 && !ev.known,
          "known");
}

static void malformed(void)
{
    static const char *const bad[][2] = {
        {"+sdown", ""},
        {"+sdown", "master"},
        {"+sdown", "master pod1 127.0.0.1"},
        {"+sdown", "master pod1 127.0.0.1 port"},
        {"+sdown", "master pod1 127.0.0.1 0"},
        {"+sdown", "master pod1 127.0.0.1 65536"},
        {"+sdown", "master pod1 127.0.0.1 -1"},
        {"+sdown", "master pod1 127.0.0.1 6379 extra"},
        {"+sdown", "master  pod1 127.0.0.1 6379"},
        {"+sdown", " master pod1 127.0.0.1 6379"},
        {"+sdown", "replica 10.0.0.2:6379 10.0.0.2 6379 @ m 10.0.0.1 6379"},
        {"+sdown", "slave 10.0.0.2:6379 10.0.0.2 6379"},
        {"+sdown", "slave 10.0.0.2:6379 10.0.0.2 6379 # m 10.0.0.1 6379"},
        {"+odown", "slave 10.0.0.2:6379 10.0.0.2 6379 @ m 10.0.0.1 6379 #quorum 2/2"},
        {"+odown", "master pod1 127.0.0.1 6379"},
        {"+odown", "master pod1 127.0.0.1 6379 #quorum a/b"},
        {"+odown", "master pod1 127.0.0.1 6379 #quorum 2"},
        {"+odown", "master pod1 127.0.0.1 6379 #quorum 2/"},
        {"+odown", "master pod1 127.0.0.1 6379 quorum 2/3"},
        {"+monitor", "master pod1 127.0.0.1 6379 quorum x"},
        {"+new-epoch", "x"},
        {"+new-epoch", "-1"},
        {"+new-epoch", "1 2"},
        {"+vote-for-leader", "abc"},
        {"+vote-for-leader", "abc def"},
        {"+switch-master", "pod1 10.0.0.1 6379 10.0.0.2"},
        {"+switch-master", "pod1 10.0.0.1 x 10.0.0.2 6379"},
        {"+promoted-slave", "master pod1 127.0.0.1 6379"},
        {"+set", "master pod1 127.0.0.1 6379"},
        {"-script-error", "/x.sh 0"},
        {"sdown", "master pod1 127.0.0.1 6379"},
        {"+", "master pod1 127.0.0.1 6379"},
        {"+sd own", "master pod1 127.0.0.1 6379"},
        {"+sdown\n", "master pod1 127.0.0.1 6379"},
        {"+unknown", ""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(parse(bad[i][0], bad[i][1]) == -1, "'%s' '%s' should fail", bad[i][0], bad[i][1]);
        CHECK(err[0] != '\0', "no reason for '%s' '%s'", bad[i][0], bad[i][1]);
    }
    /* huge and non-UTF-8 arguments */
    char *huge = malloc(100 * 1024 + 1);
    memset(huge, 'a', 100 * 1024);
    huge[100 * 1024] = '\0';
    CHECK(parse("+sdown", huge) == -1 && strstr(err, "over the"), "100 kB: %s", err);
    CHECK(parse("+unknown-event", huge) == -1, "100 kB unknown");
    free(huge);
    CHECK(parse("+sdown", "master p\xff\xfe 127.0.0.1 6379") == -1 && strstr(err, "UTF-8"), "utf8");
    CHECK(parse("+sdown", "master p\xc0\xaf 127.0.0.1 6379") == -1, "overlong");
    CHECK(parse("+sdown", "master p\xed\xa0\x80 127.0.0.1 6379") == -1, "surrogate");
    CHECK(parse("+sdown", "master caf\xc3\xa9 127.0.0.1 6379") == 0 && streq(ev.pod, "caf\xc3\xa9"),
          "valid UTF-8 name");
    /* client-reconfig */
    char *ok[7] = {"pod1", "leader", "start", "10.0.0.1", "6379", "10.0.0.2", "6380"};
    CHECK(evl_parse_reconfig(&ev, ok, err, sizeof err) == 0 && streq(ev.role, "leader") &&
          ev.new_master.port == 6380 && streq(ev.name, "client-reconfig"), "reconfig");
    char *badport[7] = {"pod1", "leader", "start", "10.0.0.1", "6379", "10.0.0.2", "x"};
    CHECK(evl_parse_reconfig(&ev, badport, err, sizeof err) == -1 && strstr(err, "to-port"), "port");
    char *empty[7] = {"", "leader", "start", "10.0.0.1", "6379", "10.0.0.2", "6380"};
    CHECK(evl_parse_reconfig(&ev, empty, err, sizeof err) == -1, "empty master");
}

/* Defects found by hostile testing: each must fail before its fix. */
static void edges(void)
{
    /* an epoch that does not fit a Lua integer is refused, never negative */
    CHECK(parse("+new-epoch", "9223372036854775807") == 0 && ev.epoch == 9223372036854775807ULL,
          "2^63-1: %s", err);
    CHECK(parse("+new-epoch", "9223372036854775808") == -1 && strstr(err, "epoch"), "2^63: %s", err);
    CHECK(parse("+new-epoch", "18446744073709551616") == -1, "2^64");
    CHECK(parse("+vote-for-leader", "abc 9223372036854775808") == -1, "vote 2^63");
    /* "--" and signs alone are not event names */
    CHECK(parse("--", "master pod1 127.0.0.1 6379") == -1 && strstr(err, "not an event name"),
          "--: %s", err);
    CHECK(parse("-+", "x") == -1, "-+");
    CHECK(parse("+-sdown", "x") == -1, "+-sdown");
    CHECK(parse("+1x", "x") == 0, "digits may start a future name: %s", err);
    /* reconfigurator mode: the role is leader or observer */
    char *obs[7] = {"pod1", "observer", "start", "10.0.0.1", "6379", "10.0.0.2", "6380"};
    CHECK(evl_parse_reconfig(&ev, obs, err, sizeof err) == 0 && streq(ev.role, "observer"), "observer");
    static char *const roles[] = {"Leader", "follower", "leaderx", "-"};
    for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++) {
        char *r[7] = {"pod1", roles[i], "start", "10.0.0.1", "6379", "10.0.0.2", "6380"};
        CHECK(evl_parse_reconfig(&ev, r, err, sizeof err) == -1 && strstr(err, "role"), "role %s: %s",
              roles[i], err);
    }
}

/* The identity: one string per event, whoever reports it (docs/watch.md, "Event identity"). */
static const char *identity(const char *type, const char *desc, const char *reporter)
{
    static char out[EVL_IDENTITY_MAX];
    if (parse(type, desc) != 0)
        return err;
    size_t n = evl_event_identity(&ev, reporter, out, sizeof out);
    CHECK(n == strlen(out), "%s: length %zu for '%s'", type, n, out);
    return out;
}

static void identities(void)
{
    static const char *const cases[][4] = {
        /* type, description, reporter, identity */
        {"+odown", "master pod1 10.0.0.1 6379 #quorum 3/2", "a", "+odown master pod1 10.0.0.1 6379"},
        {"+sdown", "master pod1 10.0.0.1 6379", "a", "+sdown master pod1 10.0.0.1 6379"},
        {"+sdown", "slave [::1]:6380 ::1 6380 @ pod1 10.0.0.1 6379", "a",
         "+sdown slave [::1]:6380 ::1 6380 @ pod1"},
        {"-sdown", "sentinel 3e09c1f9 10.0.0.7 26379 @ pod1 10.0.0.1 6379", "a",
         "-sdown sentinel 3e09c1f9 10.0.0.7 26379 @ pod1"},
        {"+role-change", "slave 10.0.0.2:6379 10.0.0.2 6379 @ pod1 10.0.0.1 6379 new reported role is master",
         "a", "+role-change slave 10.0.0.2:6379 10.0.0.2 6379 @ pod1 new reported role is master"},
        {"+sentinel-address-update", "sentinel 3e09 10.0.0.9 26379 @ pod1 10.0.0.1 6379 2 additional matching instances",
         "a", "+sentinel-address-update sentinel 3e09 10.0.0.9 26379 @ pod1"},
        {"+config-update-from", "sentinel 3e09 10.0.0.7 26379 @ pod1 10.0.0.1 6379", "a",
         "+config-update-from @ pod1 10.0.0.1 6379"},
        {"+set", "master pod1 10.0.0.1 6379 rename-command CONFIG CONFIG", "a",
         "+set master pod1 10.0.0.1 6379 rename-command CONFIG CONFIG"},
        {"+monitor", "master pod1 10.0.0.1 6379 quorum 2", "a", "+monitor master pod1 10.0.0.1 6379 quorum 2"},
        {"+new-epoch", "7", "a", "+new-epoch 7"},
        {"+switch-master", "pod1 10.0.0.1 6379 10.0.0.2 6379", "a", "+switch-master pod1 10.0.0.1 6379 10.0.0.2 6379"},
        {"+vote-for-leader", "3e09 7", "10.0.0.7:26379", "+vote-for-leader 3e09 7 by 10.0.0.7:26379"},
        {"-failover-abort-not-elected", "master pod1 10.0.0.1 6379", "h:12",
         "-failover-abort-not-elected master pod1 10.0.0.1 6379 by h:12"},
        {"+tilt", "#tilt mode entered", "h:12", "+tilt #tilt mode entered by h:12"},
        {"-script-error", "/etc/redis/my notify.sh 0 2", "h:12", "-script-error /etc/redis/my notify.sh 0 2 by h:12"},
        {"-cmd-link-reconnection", "master pod1 10.0.0.1 6379 #Connection refused", "h:12",
         "-cmd-link-reconnection master pod1 10.0.0.1 6379 #Connection refused by h:12"},
        {"+x-new", "anything  at all", "a", "+x-new anything  at all"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *got = identity(cases[i][0], cases[i][1], cases[i][2]);
        CHECK(streq(got, cases[i][3]), "%s '%s': '%s', wanted '%s'", cases[i][0], cases[i][1], got, cases[i][3]);
    }
    CHECK(parse("+vote-for-leader", "3e09 7") == 0 && evl_event_own(&ev), "a vote is the reporter's own");
    CHECK(parse("+odown", "master pod1 10.0.0.1 6379 #quorum 2/2") == 0 && !evl_event_own(&ev), "+odown is not");
    char *r[7] = {"pod1", "observer", "start", "10.0.0.1", "6379", "10.0.0.2", "6380"};
    char out[128];
    CHECK(evl_parse_reconfig(&ev, r, err, sizeof err) == 0 && !evl_event_own(&ev), "reconfig: %s", err);
    evl_event_identity(&ev, NULL, out, sizeof out);
    CHECK(streq(out, "client-reconfig pod1 start 10.0.0.1 6379 10.0.0.2 6380"), "reconfig: '%s'", out);
    /* a short buffer: cut, NUL-ended, the whole length returned (snprintf's contract) */
    CHECK(parse("+odown", "master pod1 10.0.0.1 6379 #quorum 2/2") == 0, "%s", err);
    memset(out, 'x', sizeof out);
    size_t n = evl_event_identity(&ev, NULL, out, 8);
    CHECK(n == strlen("+odown master pod1 10.0.0.1 6379") && streq(out, "+odown ") && out[8] == 'x',
          "cut: %zu '%s'", n, out);
    CHECK(evl_event_identity(&ev, NULL, NULL, 0) == n, "length only");
}

/* Patterns that can never fire, and the name a typo meant. */
static void patterns(void)
{
    const char *near = NULL;
    static const char *const good[] = {"+sdown", "*", "+*down", "-*", "client-reconfig",
                                       "client-*", "+script-child", "*-master", "+*"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        CHECK(evl_pattern_known(good[i], &near) == 1, "'%s' should match", good[i]);
    static const char *const bad[][2] = {
        {"+sdwon", "+sdown"}, {"switch-master", "+switch-master"}, {"+odwn", "+odown"},
        {"client_reconfig", "client-reconfig"}, {"+failover-ended", "+failover-end"},
        {"+sdown ", "+sdown"}, {"+SDOWN*", NULL}, {"", NULL}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(evl_pattern_known(bad[i][0], &near) == 0, "'%s' should match nothing", bad[i][0]);
        CHECK(near != NULL && (!bad[i][1] || streq(near, bad[i][1])), "'%s': closest %s, wanted %s",
              bad[i][0], near ? near : "(none)", bad[i][1] ? bad[i][1] : "any");
    }
    CHECK(evl_glob("+*down", "+sdown") && evl_glob("*", "") && !evl_glob("+s", "+sdown"), "glob");
}

int main(int argc, char **argv)
{
    const char *shared = argc > 1 ? argv[1] : "../shared";
    int n = corpus(shared);
    catalogue();
    malformed();
    edges();
    identities();
    patterns();
    printf("corpus lines parsed: %d\n", n);
    printf("%d passed, %d failed\n", checks - failures, failures);
    return failures ? 1 : 0;
}
