/*
 * test_sentinel.c: unit test of the Sentinel client (src/bindings/sentinel.c).
 * No Redis here: addresses and replies are fed as bytes, and the network
 * cases use listeners made in this process (a port nobody listens on, a
 * listener that never accepts, a forked child with canned replies, one that
 * announces a reply of gigabytes). The
 * specs (spec/sentinels_spec.lua) run the client against real Sentinels.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "sentinel.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_addr(void)
{
    char host[256], err[256];
    int port = 0;
    CHECK(evl_sentinel_addr("127.0.0.1:26379", host, sizeof host, &port, err, sizeof err) == 0);
    CHECK(strcmp(host, "127.0.0.1") == 0 && port == 26379);
    CHECK(evl_sentinel_addr("[::1]:5000", host, sizeof host, &port, err, sizeof err) == 0);
    CHECK(strcmp(host, "::1") == 0 && port == 5000);
    CHECK(evl_sentinel_addr("sentinel-a.example:1", host, sizeof host, &port, err, sizeof err) ==
          0);
    CHECK(strcmp(host, "sentinel-a.example") == 0 && port == 1);
    /* no port: Sentinel's own */
    CHECK(evl_sentinel_addr("sentinel-a", host, sizeof host, &port, err, sizeof err) == 0);
    CHECK(strcmp(host, "sentinel-a") == 0 && port == 26379);
    CHECK(evl_sentinel_addr("10.0.0.1", host, sizeof host, &port, err, sizeof err) == 0);
    CHECK(strcmp(host, "10.0.0.1") == 0 && port == 26379);
    CHECK(evl_sentinel_addr("[::1]", host, sizeof host, &port, err, sizeof err) == 0);
    CHECK(strcmp(host, "::1") == 0 && port == 26379);
    /* "::1:6379" is an address by itself: IPv6 keeps its brackets */
    static const char *bad[] = {"", "host:", ":26379", "host:0", "host:65536", "host:12x",
                                "::1:26379", "::1", "[::1]26379", "[::1", "[]:1", "[]", ":"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        int rc = evl_sentinel_addr(bad[i], host, sizeof host, &port, err, sizeof err);
        if (rc != -1 || err[0] == '\0')
            fprintf(stderr, "accepted bad address '%s'\n", bad[i]);
        CHECK(rc == -1 && err[0] != '\0');
    }
    char small[4];
    CHECK(evl_sentinel_addr("longhost:1", small, sizeof small, &port, err, sizeof err) == -1);

    char out[64];
    evl_sentinel_format_addr(out, sizeof out, "::1", 26379);
    CHECK(strcmp(out, "[::1]:26379") == 0);
    evl_sentinel_format_addr(out, sizeof out, "10.0.0.1", 26379);
    CHECK(strcmp(out, "10.0.0.1:26379") == 0);
}

static redisReply *parse(const char *bytes)
{
    void *r = NULL;
    redisReader *rd = redisReaderCreate();
    redisReaderFeed(rd, bytes, strlen(bytes));
    if (redisReaderGetReply(rd, &r) != REDIS_OK)
        r = NULL;
    redisReaderFree(rd);
    return r;
}

static void test_field(void)
{
    redisReply *r = parse("*6\r\n$4\r\nname\r\n$4\r\npod1\r\n$4\r\nport\r\n$4\r\n6379\r\n"
                          "$5\r\nflags\r\n$-1\r\n");
    CHECK(r != NULL);
    CHECK(strcmp(evl_sentinel_field(r, "name"), "pod1") == 0);
    CHECK(strcmp(evl_sentinel_field(r, "port"), "6379") == 0);
    CHECK(evl_sentinel_field(r, "flags") == NULL); /* nil value */
    CHECK(evl_sentinel_field(r, "nam") == NULL);
    CHECK(evl_sentinel_field(r, "quorum") == NULL);
    CHECK(evl_sentinel_field(r->element[0], "name") == NULL); /* not an array */
    CHECK(evl_sentinel_field(NULL, "name") == NULL);
    freeReplyObject(r);
    r = parse("*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n"); /* odd length: last key has no value */
    CHECK(strcmp(evl_sentinel_field(r, "a"), "b") == 0);
    CHECK(evl_sentinel_field(r, "c") == NULL);
    freeReplyObject(r);
}

/* A loopback listener; its port in *port. `backlog_only`: never accepted. */
static int listener(int family, int *port)
{
    int fd = socket(family, SOCK_STREAM, 0);
    struct sockaddr_storage ss;
    socklen_t len;
    int one = 1;
    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    memset(&ss, 0, sizeof ss);
    if (family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_addr = in6addr_loopback;
        len = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        len = sizeof *a;
    }
    if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 16) < 0) {
        close(fd);
        return -1;
    }
    len = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &len);
    *port = ntohs(family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                     : ((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

static const struct evl_sentinel_opts *with(double timeout)
{
    static struct evl_sentinel_opts o;
    memset(&o, 0, sizeof o);
    o.timeout = timeout;
    return &o;
}

static void test_refused(void)
{
    char addr[64];
    int port;
    struct evl_sentinel_link l;
    int fd = listener(AF_INET, &port);
    CHECK(fd >= 0);
    close(fd); /* nobody listens there now */
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    CHECK(evl_sentinel_open(&l, addr, with(1.0)) == -1);
    CHECK(strncmp(l.err, addr, strlen(addr)) == 0);
    CHECK(strstr(l.err, "Connection refused") != NULL);
    CHECK(evl_sentinel_dead(&l));
    CHECK(evl_sentinel_open(&l, "::1:26379", with(1.0)) == -1);
    CHECK(strstr(l.err, "bad Sentinel address") != NULL);
    evl_sentinel_link_close(&l);
    evl_sentinel_link_close(&l); /* twice is harmless */
}

/* A listener that never answers: every step costs at most the timeout. */
static void test_silent(int family, const char *fmt)
{
    char addr[64];
    int port;
    struct evl_sentinel_link l;
    int fd = listener(family, &port);
    if (fd < 0) {
        fprintf(stderr, "skipping the silent-listener case for %s: no such loopback\n", fmt);
        return;
    }
    snprintf(addr, sizeof addr, fmt, port);

    double t0 = now();
    CHECK(evl_sentinel_open(&l, addr, with(0.3)) == 0); /* the kernel completes the handshake */
    static const char *const ping[] = {"PING"};
    redisReply *r = evl_sentinel_call(&l, 1, ping);
    CHECK(r == NULL);
    CHECK(strstr(l.err, "timed out after 0.3 s") != NULL);
    CHECK(strncmp(l.err, addr, strlen(addr)) == 0);
    CHECK(evl_sentinel_dead(&l));
    r = evl_sentinel_call(&l, 1, ping); /* dead: fails at once */
    CHECK(r == NULL && strstr(l.err, "timed out") != NULL);
    evl_sentinel_link_close(&l);

    struct evl_sentinel_opts auth = {"admin", "secret", 0.3, 0};
    CHECK(evl_sentinel_open(&l, addr, &auth) == -1);
    CHECK(strstr(l.err, "timed out") != NULL);
    /* Not a hard bound (the machine may be busy): a wait of seconds would
       mean the timeout is not applied at all. */
    CHECK(now() - t0 < 5.0);
    close(fd);
}

/* Many links to silent listeners, driven at once: one timeout in all, not one each. */
static void test_parallel(void)
{
    enum { N = 40 };
    static struct evl_sentinel_link l[N];
    static const char *const ping[] = {"PING"};
    char addr[64];
    int port, fd = listener(AF_INET, &port);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    double t0 = now();
    for (int i = 0; i < N; i++) {
        CHECK(evl_sentinel_link_open(&l[i], addr, with(0.5)) == 0);
        CHECK(evl_sentinel_link_send(&l[i], 1, ping) == 0);
    }
    evl_sentinel_drive(l, N, NULL, NULL); /* no reply ever comes: no callback */
    double took = now() - t0;
    for (int i = 0; i < N; i++) {
        CHECK(l[i].state == EVL_SL_DEAD && strstr(l[i].err, "timed out") != NULL);
        evl_sentinel_link_close(&l[i]);
    }
    if (took >= 3.0)
        fprintf(stderr, "%d silent links took %.2f s\n", N, took);
    CHECK(took < 3.0);
    close(fd);
}

/* A forked peer: answers every command with `reply`, then waits. A command is
   counted by its '*' at the start of a line (the tests send none inside one). */
static pid_t canned(const char *reply, size_t len, int *port)
{
    int fd = listener(AF_INET, port);
    pid_t pid = fork();
    if (pid == 0) {
        int cfd;
        char buf[4096];
        ssize_t n;
        alarm(20);
        while ((cfd = accept(fd, NULL, NULL)) >= 0) {
            while ((n = read(cfd, buf, sizeof buf)) > 0)
                for (ssize_t i = 0; i < n; i++)
                    if (buf[i] == '*' && (i == 0 || buf[i - 1] == '\n') && write(cfd, reply, len) < 0)
                        break;
            close(cfd);
        }
        _exit(0);
    }
    close(fd);
    return pid;
}

static void stop(pid_t pid)
{
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

/* A peer with canned replies, and a link opened to it. */
static pid_t peer(const char *reply, struct evl_sentinel_link *l, const struct evl_sentinel_opts *o)
{
    char addr[64];
    int port;
    pid_t pid = canned(reply, strlen(reply), &port);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    CHECK(evl_sentinel_open(l, addr, o) == 0);
    return pid;
}

static void count_reply(size_t i, redisReply *r, void *ud)
{
    (void)i;
    ++*(int *)ud;
    freeReplyObject(r);
}

static void test_replies(void)
{
    struct evl_sentinel_link l;
    static const char *const ping[] = {"PING"};

    pid_t pid = peer("+PONG\r\n", &l, with(2.0));
    redisReply *r = evl_sentinel_call(&l, 1, ping);
    CHECK(r != NULL && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0);
    freeReplyObject(r);
    evl_sentinel_link_close(&l);
    stop(pid);

    int port;
    char addr[64];
    const char *wrongpass = "-WRONGPASS invalid username-password pair or user is disabled.\r\n";
    pid = canned(wrongpass, strlen(wrongpass), &port);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    struct evl_sentinel_opts auth = {NULL, "wrong", 2.0, 0};
    CHECK(evl_sentinel_open(&l, addr, &auth) == -1);
    CHECK(strstr(l.err, ": authentication failed: WRONGPASS invalid") != NULL);
    CHECK(strncmp(l.err, addr, strlen(addr)) == 0);
    /* An error reply leaves the link usable, and err is the reply's text. */
    CHECK(evl_sentinel_open(&l, addr, with(2.0)) == 0);
    r = evl_sentinel_call(&l, 1, ping);
    CHECK(r == NULL && strncmp(l.err, "WRONGPASS", 9) == 0 && !evl_sentinel_dead(&l));
    evl_sentinel_link_close(&l);
    stop(pid);

    /* The subscribe reply and a message in one read: both come out of the one drive. */
    pid = peer("*3\r\n$9\r\nsubscribe\r\n$6\r\n+sdown\r\n:1\r\n"
               "*3\r\n$7\r\nmessage\r\n$6\r\n+sdown\r\n$1\r\nx\r\n", &l, with(2.0));
    static const char *const sub[] = {"SUBSCRIBE", "+sdown"};
    int got = 0;
    CHECK(evl_sentinel_link_send(&l, 2, sub) == 0);
    evl_sentinel_drive(&l, 1, count_reply, &got);
    CHECK(got == 2 && !evl_sentinel_dead(&l));
    evl_sentinel_link_close(&l);
    stop(pid);

    /* Half a reply, then nothing: the whole reply is bounded, not each read. */
    pid = peer("+PO", &l, with(0.3));
    r = evl_sentinel_call(&l, 1, ping);
    CHECK(r == NULL && strstr(l.err, "timed out") != NULL && evl_sentinel_dead(&l));
    evl_sentinel_link_close(&l);
    stop(pid);
}

/* Announced sizes past the cap are refused at once, before anything is kept. */
static void test_cap(void)
{
    static const char *const ping[] = {"PING"};
    static const char *const big[] = {"*2000000000\r\n", "$4000000000\r\n", "$2000\r\n"};
    struct evl_sentinel_opts small = {NULL, NULL, 5.0, 0.001}; /* about 1 KiB */
    for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) {
        struct evl_sentinel_link l;
        pid_t pid = peer(big[i], &l, i == 2 ? &small : with(5.0));
        double t0 = now();
        redisReply *r = evl_sentinel_call(&l, 1, ping);
        CHECK(r == NULL && strstr(l.err, "reply larger than") != NULL && evl_sentinel_dead(&l));
        CHECK(now() - t0 < 2.0); /* not the 5 s timeout */
        evl_sentinel_link_close(&l);
        stop(pid);
    }
}

static void test_discover(void)
{
    char refused[64], silent[64], err[256];
    int port, sport;
    int fd = listener(AF_INET, &port);
    close(fd);
    snprintf(refused, sizeof refused, "127.0.0.1:%d", port);
    int sfd = listener(AF_INET, &sport);
    snprintf(silent, sizeof silent, "127.0.0.1:%d", sport);

    const char *seeds[] = {refused, silent, refused};
    struct evl_fleet f;
    CHECK(evl_sentinel_discover(seeds, 3, NULL, 0, with(0.3), &f, err, sizeof err) == 0);
    CHECK(f.ns == 2 && f.nm == 0 && f.capped == 0);
    CHECK(strcmp(f.s[0].addr, refused) == 0 && !f.s[0].reachable);
    CHECK(strstr(f.s[0].err, "Connection refused") != NULL);
    CHECK(strcmp(f.s[1].addr, silent) == 0 && !f.s[1].reachable);
    CHECK(strstr(f.s[1].err, "timed out") != NULL);
    evl_fleet_free(&f);
    evl_fleet_free(&f); /* twice is harmless */

    /* every reply names master pod1 and Sentinel 127.0.0.1:1 (refused): found, asked, listed */
    const char *kv = "*1\r\n*6\r\n$4\r\nname\r\n$4\r\npod1\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n"
                     "$4\r\nport\r\n$1\r\n1\r\n";
    char seed[64];
    pid_t pid = canned(kv, strlen(kv), &port);
    snprintf(seed, sizeof seed, "127.0.0.1:%d", port);
    const char *one[] = {seed};
    CHECK(evl_sentinel_discover(one, 1, NULL, 0, with(2.0), &f, err, sizeof err) == 0);
    CHECK(f.ns == 2 && f.nm == 1 && strcmp(f.masters[0], "pod1") == 0);
    CHECK(f.s[0].reachable && strcmp(f.s[1].addr, "127.0.0.1:1") == 0 && !f.s[1].reachable);
    evl_fleet_free(&f);
    stop(pid);

    /* a seed without a port is listed as its peers would name it (nothing listens on 1 there) */
    const char *bare[] = {"127.0.0.1"};
    CHECK(evl_sentinel_discover(bare, 1, NULL, 0, with(0.3), &f, err, sizeof err) == 0);
    CHECK(f.ns == 1 && strcmp(f.s[0].addr, "127.0.0.1:26379") == 0);
    evl_fleet_free(&f);

    const char *bad[] = {"nope:"};
    CHECK(evl_sentinel_discover(bad, 1, NULL, 0, with(0.3), &f, err, sizeof err) == -1);
    CHECK(strstr(err, "nope") != NULL && f.s == NULL);
    CHECK(evl_sentinel_discover(NULL, 0, NULL, 0, with(0.3), &f, err, sizeof err) == -1);
    CHECK(strstr(err, "--sentinel") != NULL);
    close(sfd);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    test_addr();
    test_field();
    test_refused();
    test_silent(AF_INET, "127.0.0.1:%d");
    test_silent(AF_INET6, "[::1]:%d");
    test_parallel();
    test_replies();
    test_cap();
    test_discover();
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("sentinel: all checks passed\n");
    return 0;
}
