/* examples/16_crash_resilient_pool.c - a worker crashes, another is killed: the map goes on
 * SPDX-License-Identifier: MIT
 *
 * WHAT IT SHOWS
 *   A map of 1,000 items over a fork pool in which item 13 segfaults and the worker running
 *   item 500 is SIGKILLed from outside while it runs. Python's Pool.map waits forever when
 *   a worker dies (CPython gh-66587); ProcessPoolExecutor marks the whole pool broken. Here
 *   map returns: items 13 and 500 come back as ECHILD naming the signal (SIGSEGV, SIGKILL),
 *   every other result arrives exactly once, replacements are forked, and a second map on
 *   the same pool runs clean.
 *
 *       Python                                        C (this file)
 *       pool.map(work, range(1000))  # hangs          st = conc_forkpool_map(p, work, s, 1000,
 *                                                                          out);
 *                                                     out[13].status == ECHILD, .signal == SIGSEGV
 *
 * RUN
 *   make examples && build/examples/16_crash_resilient_pool
 *   It checks every claim above and exits 1 if one fails.
 *
 * HOW
 *   Each worker records in shared memory the item it is running, so a death pins the exact
 *   item; items of the dead worker's chunk it had not started run on another worker; items
 *   it finished stay done. The killer here is a separate process that waits for item 500 to
 *   raise a flag in shared memory, then kills the pid it wrote there.
 */
#include "conc/forkpool.h"

#include <stdio.h>

enum { N = 1000, CRASH = 13, KILLED = 500 };

typedef struct shared {
    uint32_t runs[N]; /* how often each item ran: must be 1 */
    int64_t result[N];
    uint32_t flag; /* item KILLED is running */
    pid_t pid;     /* ... in this worker */
} shared;

static int work(size_t i, void *arg) {
    shared *s = (shared *)arg;
    __atomic_fetch_add(&s->runs[i], 1u, __ATOMIC_RELAXED);
    if (i == CRASH)
        raise(SIGSEGV); /* stands for a bug in the item's code */
    if (i == KILLED) {
        s->pid = getpid();
        __atomic_store_n(&s->flag, 1u, __ATOMIC_RELEASE);
        for (;;)
            pause(); /* until the killer's SIGKILL */
    }
    s->result[i] = (int64_t)i * (int64_t)i;
    return 0;
}

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "16_crash_resilient_pool: failed: %s\n", #c);                          \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

int main(void) {
    conc_forkpool_opts_t o;
    memset(&o, 0, sizeof o);
    o.workers = 2;
    conc_forkpool_t *p;
    if (conc_forkpool_create(&p, &o) != 0)
        return 1;
    shared *s = (shared *)conc_forkpool_alloc(p, sizeof *s);
    CHECK(s != NULL);
    memset(s, 0, sizeof *s);

    fflush(NULL);
    pid_t killer = fork(); /* the outside world: waits for item KILLED, kills its worker */
    if (killer == 0) {
        while (!__atomic_load_n(&s->flag, __ATOMIC_ACQUIRE))
            usleep(100);
        kill(s->pid, SIGKILL);
        _exit(0);
    }
    static conc_forkpool_outcome_t out[N];
    int st = conc_forkpool_map(p, work, s, N, out);
    waitpid(killer, NULL, 0);

    printf("map returned %s (the first failing item's status)\n", strerror(st));
    for (int i = 0; i < N; i++)
        if (out[i].status != 0)
            printf("  item %d: %s, signal %d (%s), attempts %u\n", i, strerror(out[i].status),
                   out[i].signal, strsignal(out[i].signal), out[i].attempts);
    CHECK(st == ECHILD);
    CHECK(out[CRASH].status == ECHILD && out[CRASH].signal == SIGSEGV);
    CHECK(out[KILLED].status == ECHILD && out[KILLED].signal == SIGKILL);
    int others = 0;
    for (int i = 0; i < N; i++) {
        CHECK(s->runs[i] == 1); /* exactly once, the two that died included */
        if (i != CRASH && i != KILLED) {
            CHECK(out[i].status == 0 && s->result[i] == (int64_t)i * i);
            others++;
        }
    }
    printf("the other %d items: every result arrived, each item ran exactly once\n", others);

    /* The pool replaced both workers and is as good as new. */
    memset(s, 0, sizeof *s);
    s->flag = 1; /* item KILLED must not wait for a killer this time */
    st = conc_forkpool_map(p, work, s, CRASH, NULL); /* items before the crashing one */
    CHECK(st == 0);
    printf("a second map on the same pool: %s\n", strerror(st));
    conc_forkpool_destroy(p);
    return 0;
}
