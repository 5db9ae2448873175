/* examples/04_semaphore_limit.c - a semaphore keeps at most three workers inside at once
 * SPDX-License-Identifier: MIT
 *
 * WHAT IT SHOWS
 *   Ten workers want a resource that can serve only three at a time (think: a server that
 *   accepts three connections). A semaphore holding three tokens is the gate: each worker
 *   takes a token to enter and gives it back when it leaves. The program counts how many
 *   workers are inside at every moment and prints the highest number it saw. Then a bounded
 *   semaphore refuses a release that would create a fourth token. Python's threading
 *   Semaphore and BoundedSemaphore, in C:
 *
 *       Python                                C (this file)
 *       slots = threading.Semaphore(3)        static conc_sem_t slots = CONC_SEM_INIT(3);
 *       with slots:                           conc_sem_acquire(&slots);
 *           use_the_resource()                use_the_resource();
 *                                             conc_sem_release(&slots, 1);
 *       b = threading.BoundedSemaphore(3)     conc_sem_init(&b, 3, 3, 0);
 *       b.release()  # ValueError             conc_sem_release(&b, 1) == EOVERFLOW
 *
 * A LOCK WITH N KEYS
 *   A lock lets one thread in; a semaphore lets N in. Like a plain lock (conc_lock_t, Python's
 *   Lock; not an RLock), a semaphore has no owner: any thread may release, and a token
 *   released by one thread can be taken by another. Unlike a lock it counts: it is a counter
 *   of free resources, not a guard of shared data. Three workers inside at once may still
 *   race on shared variables, so the count below uses atomic operations.
 *
 * WHERE C DIFFERS FROM PYTHON
 *   - No `with` block: every acquire needs its release on every path out. A worker that
 *     returns early without releasing leaks a token, and the semaphore shrinks for good.
 *   - Python's BoundedSemaphore raises ValueError on one release too many; conc returns
 *     EOVERFLOW and releases nothing (also for release(n) with n > 1: all or nothing).
 *   - acquire(timeout=...) is conc_sem_acquire_until(&s, deadline) with an absolute deadline
 *     (conc_deadline_in(ns)); it returns ETIMEDOUT where Python returns False.
 *
 * RUN
 *   make examples && build/examples/04_semaphore_limit
 *   cc -std=c11 -D_DEFAULT_SOURCE -Iinclude examples/04_semaphore_limit.c -pthread && ./a.out
 *
 * PRINTS (the order of the worker lines changes from run to run)
 *   10 workers, 3 slots
 *   worker 0 in  (1 inside)
 *   worker 1 in  (2 inside)
 *   ...
 *   highest concurrency seen: 3 (limit 3), 10 workers served
 *   bounded semaphore, full: one more release -> EOVERFLOW, still 3 tokens
 *
 *   The program exits 1 if more than three workers were ever inside at once, if a worker
 *   was not served, or if the bounded semaphore accepted the extra release.
 */
#include "conc/sem.h"

#include <pthread.h>
#include <stdio.h>

enum { WORKERS = 10, SLOTS = 3 };

static conc_sem_t slots = CONC_SEM_INIT(SLOTS);
static int inside;      /* how many workers are inside now: atomic, several are inside */
static int most_inside; /* the highest value of `inside` ever seen */
static int served;

static void note_entry(int now) {
    int seen = __atomic_load_n(&most_inside, __ATOMIC_RELAXED);
    while (now > seen && !__atomic_compare_exchange_n(&most_inside, &seen, now, false,
                                                      __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
}

static void *worker(void *arg) {
    int id = (int)(intptr_t)arg;
    conc_sem_acquire(&slots); /* waits while three others are inside */
    int now = __atomic_add_fetch(&inside, 1, __ATOMIC_RELAXED);
    note_entry(now);
    printf("worker %d in  (%d inside)\n", id, now);
    struct timespec work = {0, 20 * 1000 * 1000}; /* 20 ms "using the resource" */
    nanosleep(&work, NULL);
    __atomic_sub_fetch(&inside, 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&served, 1, __ATOMIC_RELAXED);
    if (conc_sem_release(&slots, 1) != 0) /* a token back: one waiting worker can enter */
        abort();                          /* (EOVERFLOW only past a bound: none here) */
    return NULL;
}

int main(void) {
    printf("%d workers, %d slots\n", WORKERS, SLOTS);
    pthread_t t[WORKERS];
    for (int i = 0; i < WORKERS; i++)
        pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i);
    for (int i = 0; i < WORKERS; i++)
        pthread_join(t[i], NULL);
    printf("highest concurrency seen: %d (limit %d), %d workers served\n", most_inside, SLOTS,
           served);
    bool ok = most_inside >= 1 && most_inside <= SLOTS && served == WORKERS &&
              conc_sem_value(&slots) == SLOTS;

    conc_sem_t bounded;
    if (conc_sem_init(&bounded, SLOTS, SLOTS, 0) != 0)
        return 1;
    int r = conc_sem_release(&bounded, 1); /* a 4th token would be a bug in the caller */
    printf("bounded semaphore, full: one more release -> %s, still %u tokens\n",
           r == EOVERFLOW ? "EOVERFLOW" : "accepted (wrong)", conc_sem_value(&bounded));
    ok = ok && r == EOVERFLOW && conc_sem_value(&bounded) == SLOTS;
    return ok ? 0 : 1;
}
