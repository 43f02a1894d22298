/*
 * roundtrip: the network part of a failover record and nothing else, as a
 * floor for bench/run.sh: a static binary that connects to redis-server on
 * 127.0.0.1:PORT, sends one MULTI / HINCRBY / SADD / EXEC in one write, reads
 * the reply and exits. What a failover record costs over this is what
 * eventilator itself adds (config, rules, log, records, the metrics module).
 *   roundtrip PORT
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    static const char cmd[] = "*1\r\n$5\r\nMULTI\r\n"
                              "*4\r\n$7\r\nHINCRBY\r\n$15\r\nbench:roundtrip\r\n$4\r\n2026\r\n$1\r\n1\r\n"
                              "*3\r\n$4\r\nSADD\r\n$16\r\nbench:roundtrips\r\n$4\r\npod1\r\n"
                              "*1\r\n$4\r\nEXEC\r\n";
    char buf[4096];
    int one = 1, s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    if (argc != 2 || s < 0)
        return 2;
    a.sin_port = htons((unsigned short)atoi(argv[1]));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(s, (struct sockaddr *)&a, sizeof a) < 0)
        return 1;
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (write(s, cmd, sizeof cmd - 1) != (ssize_t)(sizeof cmd - 1))
        return 1;
    ssize_t n = read(s, buf, sizeof buf); /* the five replies: small, one segment */
    close(s);
    return n > 0 && memchr(buf, '*', (size_t)n) ? 0 : 1;
}
