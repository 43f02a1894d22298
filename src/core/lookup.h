/*
 * lookup.h: host-name lookups with a deadline, the one home for every
 * binding (redis, tcp) and for ev.host.
 *
 * getaddrinfo(3) takes no timeout: with a DNS server that never answers,
 * glibc waits `timeout` x `attempts` x servers (5 s x 2 x up to 3 by
 * default; 20 s and more are common), and neither the count hook nor the
 * binding's own timeout can interrupt it. So a name is resolved in a helper
 * thread, and the caller waits on a condition variable until the deadline.
 * On time the caller gets the result; past it the caller returns "timed
 * out" and leaves the thread behind: the thread frees what it holds when
 * getaddrinfo finally returns, or dies with the process. A literal address
 * never starts a thread (AI_NUMERICHOST first), so the common case costs
 * nothing, and in the static start-up binary never reaches NSS.
 *
 * A caller that must not wait at all (the watcher's poll loop) starts the
 * lookup (evl_lookup_start) and asks later whether it has ended.
 *
 * getaddrinfo_a(3) would do the same but cannot be cancelled once running
 * and signals completion through sigevent; a plain thread is simpler and
 * links the same way statically (glibc >= 2.34 has pthreads in libc).
 *
 * Header-only, like deadline.h: each binding is its own shared object for a
 * stock lua5.4 and must not need a symbol from the host.
 */
#ifndef EVENTILATOR_LOOKUP_H
#define EVENTILATOR_LOOKUP_H

#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Returned instead of an EAI_* code when the deadline passed first. */
#define EVL_LOOKUP_TIMEOUT (-10000)

struct evl_lookup_job {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs; /* the waiter and the thread; the last one out frees */
    int done;
    int rc, err;
    int *live; /* the caller's count of helper threads running, or NULL */
    struct addrinfo hints, *res;
    char serv[16];
    char host[];
};

static inline void evl_lookup_unref(struct evl_lookup_job *j)
{
    int last;
    pthread_mutex_lock(&j->mu);
    last = --j->refs == 0;
    pthread_mutex_unlock(&j->mu);
    if (!last)
        return;
    if (j->res)
        freeaddrinfo(j->res);
    pthread_cond_destroy(&j->cv);
    pthread_mutex_destroy(&j->mu);
    free(j);
}

static inline void *evl_lookup_thread(void *arg)
{
    struct evl_lookup_job *j = (struct evl_lookup_job *)arg;
    struct addrinfo *res = NULL;
    int *live = j->live;
    int rc = getaddrinfo(j->host, j->serv[0] ? j->serv : NULL, &j->hints, &res);
    pthread_mutex_lock(&j->mu);
    j->rc = rc;
    j->err = errno;
    j->res = res;
    j->done = 1;
    pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&j->mu);
    evl_lookup_unref(j);
    if (live)
        __atomic_sub_fetch(live, 1, __ATOMIC_RELAXED);
    return NULL;
}

/*
 * Start resolving host:serv for a caller that must not wait (a poll loop).
 * Returns 0 with *res set (a literal, resolved in place: free it with
 * freeaddrinfo), 0 with *job set (a helper thread is on it: ask
 * evl_lookup_wait / evl_lookup_result, then evl_lookup_drop), or an EAI_*
 * code. `live`, if not NULL, counts the helper threads running: one more
 * from now until the thread ends, even when the caller gave up on it.
 * Never raises.
 */
static inline int evl_lookup_start(const char *host, const char *serv, const struct addrinfo *hints,
                                   struct addrinfo **res, struct evl_lookup_job **job, int *live)
{
    struct addrinfo numeric = *hints;
    struct evl_lookup_job *j;
    pthread_condattr_t ca;
    pthread_attr_t ta;
    pthread_t tid;
    sigset_t all, old;
    size_t hlen = strlen(host);
    int rc;

    *res = NULL;
    *job = NULL;
    numeric.ai_flags |= AI_NUMERICHOST;
    rc = getaddrinfo(host, serv, &numeric, res);
    if (rc != EAI_NONAME)
        return rc; /* a literal (or a hard error): no lookup was needed */
    if (serv && strlen(serv) >= sizeof j->serv)
        return EAI_SERVICE;

    j = (struct evl_lookup_job *)calloc(1, sizeof *j + hlen + 1);
    if (!j)
        return EAI_MEMORY;
    memcpy(j->host, host, hlen + 1);
    if (serv)
        strcpy(j->serv, serv);
    j->hints = *hints;
    j->hints.ai_next = NULL;
    j->hints.ai_addr = NULL;
    j->hints.ai_canonname = NULL;
    j->refs = 2;
    j->live = live;
    pthread_mutex_init(&j->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&j->cv, &ca);
    pthread_condattr_destroy(&ca);

    /* The helper takes no signals: the host's watchdog and SIGTERM handler
     * must run on the thread that runs Lua. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_attr_init(&ta);
    pthread_attr_setdetachstate(&ta, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&ta, 256 * 1024);
    if (live)
        __atomic_add_fetch(live, 1, __ATOMIC_RELAXED);
    rc = pthread_create(&tid, &ta, evl_lookup_thread, j);
    pthread_attr_destroy(&ta);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        if (live)
            __atomic_sub_fetch(live, 1, __ATOMIC_RELAXED);
        /* No thread to be had: free the job and look up in place. */
        j->refs = 1;
        evl_lookup_unref(j);
        return getaddrinfo(host, serv, hints, res);
    }
    *job = j;
    return 0;
}

/* Wait for a started lookup until `deadline` (CLOCK_MONOTONIC seconds); 1 when it has ended. */
static inline int evl_lookup_wait(struct evl_lookup_job *j, double deadline)
{
    struct timespec until;
    int done;
    if (deadline < 0)
        deadline = 0;
    until.tv_sec = (time_t)deadline;
    until.tv_nsec = (long)((deadline - (double)until.tv_sec) * 1e9);
    if (until.tv_nsec >= 1000000000L)
        until.tv_nsec = 999999999L;
    pthread_mutex_lock(&j->mu);
    while (!j->done) {
        if (pthread_cond_timedwait(&j->cv, &j->mu, &until) == ETIMEDOUT)
            break;
    }
    done = j->done;
    pthread_mutex_unlock(&j->mu);
    return done;
}

/* An ended lookup's outcome: 0 with *res (the caller owns it now), or an
 * EAI_* code (EAI_SYSTEM with errno set); EVL_LOOKUP_TIMEOUT while it runs. */
static inline int evl_lookup_result(struct evl_lookup_job *j, struct addrinfo **res)
{
    int rc = EVL_LOOKUP_TIMEOUT;
    *res = NULL;
    pthread_mutex_lock(&j->mu);
    if (j->done) {
        rc = j->rc;
        *res = j->res;
        j->res = NULL;
        if (rc == EAI_SYSTEM)
            errno = j->err;
    }
    pthread_mutex_unlock(&j->mu);
    return rc;
}

/* The caller is done with a job, ended or not: a thread still running frees it when it ends. */
static inline void evl_lookup_drop(struct evl_lookup_job *j)
{
    if (j)
        evl_lookup_unref(j);
}

/*
 * getaddrinfo(host, serv, hints, res) that gives up at `deadline`
 * (CLOCK_MONOTONIC seconds, as evl_monotonic() in deadline.h). Returns 0
 * with *res to be freed by freeaddrinfo, an EAI_* code (EAI_SYSTEM with
 * errno set), or EVL_LOOKUP_TIMEOUT. Never raises: safe between a resource
 * and its release.
 */
static inline int evl_lookup(const char *host, const char *serv, const struct addrinfo *hints,
                      double deadline, struct addrinfo **res)
{
    struct evl_lookup_job *j;
    int rc = evl_lookup_start(host, serv, hints, res, &j, NULL);
    if (rc != 0 || j == NULL)
        return rc;
    evl_lookup_wait(j, deadline);
    rc = evl_lookup_result(j, res);
    evl_lookup_drop(j);
    return rc;
}

#endif
