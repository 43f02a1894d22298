/*
 * test_sentinel.c: unit test of the Sentinel client (src/sentinel.c).
 * No Redis here: addresses and replies are fed as bytes, and the network
 * cases use listeners made in this process (a port nobody listens on, a
 * listener that never accepts, a forked child with canned replies). The
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

#include "sentinel.h"

static int failures;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: FAILED: %s\n", __FILE__, __LINE__, #cond);                    \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

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

static void test_refused(void)
{
    char addr[64], err[256];
    int port;
    int fd = listener(AF_INET, &port);
    CHECK(fd >= 0);
    close(fd); /* nobody listens there now */
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    redisContext *c = evl_sentinel_connect(addr, NULL, 1.0, err, sizeof err);
    CHECK(c == NULL);
    CHECK(strncmp(err, addr, strlen(addr)) == 0);
    CHECK(strstr(err, "Connection refused") != NULL);
    CHECK(evl_sentinel_connect("::1:26379", NULL, 1.0, err, sizeof err) == NULL);
    CHECK(strstr(err, "bad Sentinel address") != NULL);
}

/* A listener that never answers: every step costs at most the timeout. */
static void test_silent(int family, const char *fmt)
{
    char addr[64], err[256];
    int port;
    int fd = listener(family, &port);
    if (fd < 0) {
        fprintf(stderr, "skipping the silent-listener case for %s: no such loopback\n", fmt);
        return;
    }
    snprintf(addr, sizeof addr, fmt, port);

    double t0 = now();
    redisContext *c = evl_sentinel_connect(addr, NULL, 0.3, err, sizeof err);
    CHECK(c != NULL); /* the kernel completes the handshake from the backlog */
    static const char *const ping[] = {"PING"};
    redisReply *r = evl_sentinel_cmd(c, err, sizeof err, 1, ping);
    CHECK(r == NULL);
    CHECK(strstr(err, "timed out") != NULL);
    CHECK(strncmp(err, addr, strlen(addr)) == 0);
    CHECK(evl_sentinel_dead(c));
    r = evl_sentinel_cmd(c, err, sizeof err, 1, ping); /* dead: fails at once */
    CHECK(r == NULL && strstr(err, "timed out") != NULL);
    redisFree(c);

    struct evl_sentinel_auth auth = {"admin", "secret"};
    c = evl_sentinel_connect(addr, &auth, 0.3, err, sizeof err);
    CHECK(c == NULL);
    CHECK(strstr(err, "timed out") != NULL);
    /* Not a hard bound (the machine may be busy): a wait of seconds would
       mean the timeout is not applied at all. */
    CHECK(now() - t0 < 5.0);
    close(fd);
}

/* A forked peer: answers every command with `reply`, then waits. */
static pid_t canned(const char *reply, int *port)
{
    int fd = listener(AF_INET, port);
    pid_t pid = fork();
    if (pid == 0) {
        int cfd;
        char buf[512];
        alarm(20);
        while ((cfd = accept(fd, NULL, NULL)) >= 0) {
            while (read(cfd, buf, sizeof buf) > 0)
                if (write(cfd, reply, strlen(reply)) < 0)
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

static void test_replies(void)
{
    char addr[64], err[256];
    int port;
    static const char *const ping[] = {"PING"};

    pid_t pid = canned("+PONG\r\n", &port);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    redisContext *c = evl_sentinel_connect(addr, NULL, 2.0, err, sizeof err);
    CHECK(c != NULL);
    redisReply *r = evl_sentinel_cmd(c, err, sizeof err, 1, ping);
    CHECK(r != NULL && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0);
    freeReplyObject(r);
    redisFree(c);
    stop(pid);

    pid = canned("-WRONGPASS invalid username-password pair or user is disabled.\r\n", &port);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    struct evl_sentinel_auth auth = {NULL, "wrong"};
    c = evl_sentinel_connect(addr, &auth, 2.0, err, sizeof err);
    CHECK(c == NULL);
    CHECK(strstr(err, ": authentication failed: WRONGPASS invalid") != NULL);
    CHECK(strncmp(err, addr, strlen(addr)) == 0);
    /* An error reply leaves the context usable, and err is the reply's text. */
    c = evl_sentinel_connect(addr, NULL, 2.0, err, sizeof err);
    CHECK(c != NULL);
    r = evl_sentinel_cmd(c, err, sizeof err, 1, ping);
    CHECK(r == NULL && strncmp(err, "WRONGPASS", 9) == 0 && !evl_sentinel_dead(c));
    redisFree(c);
    stop(pid);

    /* Messages nobody asked for: a wait that times out leaves the context usable. */
    pid = canned("*3\r\n$7\r\nmessage\r\n$6\r\n+sdown\r\n$1\r\nx\r\n", &port);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    c = evl_sentinel_connect(addr, NULL, 2.0, err, sizeof err);
    CHECK(c != NULL);
    int timed_out = 0;
    r = evl_sentinel_read(c, 0.1, &timed_out, err, sizeof err);
    CHECK(r == NULL && timed_out && !evl_sentinel_dead(c));
    static const char *const sub[] = {"SUBSCRIBE", "+sdown"};
    r = evl_sentinel_cmd(c, err, sizeof err, 2, sub); /* the peer answers with a message */
    CHECK(r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 3);
    freeReplyObject(r);
    r = evl_sentinel_read(c, 0.1, &timed_out, err, sizeof err);
    CHECK(r == NULL && timed_out && !evl_sentinel_dead(c));
    redisFree(c);
    stop(pid);

    /* Half a reply, then nothing: the whole reply is bounded, not each read. */
    pid = canned("+PO", &port);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    c = evl_sentinel_connect(addr, NULL, 0.3, err, sizeof err);
    CHECK(c != NULL);
    r = evl_sentinel_cmd(c, err, sizeof err, 1, ping);
    CHECK(r == NULL && strstr(err, "timed out") != NULL && evl_sentinel_dead(c));
    redisFree(c);
    stop(pid);
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
    CHECK(evl_sentinel_discover(seeds, 3, NULL, 0, NULL, 0.3, &f, err, sizeof err) == 0);
    CHECK(f.ns == 2 && f.nm == 0);
    CHECK(strcmp(f.s[0].addr, refused) == 0 && !f.s[0].reachable);
    CHECK(strstr(f.s[0].err, "Connection refused") != NULL);
    CHECK(strcmp(f.s[1].addr, silent) == 0 && !f.s[1].reachable);
    CHECK(strstr(f.s[1].err, "timed out") != NULL);
    evl_fleet_free(&f);
    evl_fleet_free(&f); /* twice is harmless */

    /* a seed without a port is listed as its peers would name it */
    const char *bare[] = {"127.0.0.1"};
    CHECK(evl_sentinel_discover(bare, 1, NULL, 0, NULL, 0.3, &f, err, sizeof err) == 0);
    CHECK(f.ns == 1 && strcmp(f.s[0].addr, "127.0.0.1:26379") == 0);
    evl_fleet_free(&f);

    const char *bad[] = {"nope:"};
    CHECK(evl_sentinel_discover(bad, 1, NULL, 0, NULL, 0.3, &f, err, sizeof err) == -1);
    CHECK(strstr(err, "nope") != NULL && f.s == NULL);
    CHECK(evl_sentinel_discover(NULL, 0, NULL, 0, NULL, 0.3, &f, err, sizeof err) == -1);
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
    test_replies();
    test_discover();
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("sentinel: all checks passed\n");
    return 0;
}
