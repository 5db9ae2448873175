/* examples/01_race_counter.c - a race on a shared counter, and the lock that fixes it
 * SPDX-License-Identifier: MIT
 *
 * WHAT IT SHOWS
 *   Four threads each add 1 to a shared counter 100,000 times. Without a lock, some of the
 *   400,000 updates are lost; with a conc_lock around the update the total is exactly 400,000.
 *   Python's threading.Lock, in C:
 *
 *       Python                                C (this file)
 *       lock = threading.Lock()               static conc_lock_t lock = CONC_LOCK_INIT;
 *       with lock:                            conc_lock_acquire(&lock);
 *           counter += 1                      counter += 1;
 *                                             conc_lock_release(&lock);
 *
 * WHY UPDATES GET LOST
 *   `counter += 1` is not one step but three: load the value into a register, add 1, store it
 *   back (a read-modify-write). Two threads can both load 41, both add 1, and both store 42:
 *   two increments, one effect. Nothing in the hardware stops that; only the program can, by
 *   making the three steps a critical section that one thread at a time may enter (a lock) or
 *   by using one indivisible instruction (an atomic fetch-add, shown last).
 *
 * WHERE C DIFFERS FROM PYTHON
 *   - CPython's GIL lets one thread at a time run bytecode, but `counter += 1` is several
 *     bytecodes (load, add, store) and the GIL may pass to another thread between them, so
 *     Python loses updates for the same reason. How often depends on the version: since
 *     CPython 3.10 a thread switch happens at fewer places, and the Python version of this
 *     demo often prints 400000 -- luck, not a guarantee. Free-threaded CPython (3.13t) has no
 *     GIL at all and behaves like C.
 *   - C has no GIL: these threads really run at the same time on different cores, so the
 *     window between load and store is hit constantly, not only at a thread switch.
 *   - In C an unsynchronized `counter += 1` from two threads is a data race, and a data race
 *     is undefined behaviour (C11 5.1.2.4): the compiler may keep the counter in a register for
 *     the whole loop and store once, or do anything else. So the "no lock" run below does not
 *     use a plain `+=`: it does the load and the store as two separate relaxed atomic
 *     operations. Each is well defined (no undefined behaviour, and ThreadSanitizer accepts
 *     it), yet the pair is exactly as breakable as `+=`: another thread's store can land
 *     between them. `volatile` would not help: it is not atomic and still a data race in C.
 *
 * RUN
 *   make examples && build/examples/01_race_counter
 *   cc -std=c11 -D_DEFAULT_SOURCE -Iinclude examples/01_race_counter.c -pthread && ./a.out
 *
 * PRINTS (the lost count changes from run to run; the other two lines never do)
 *   4 threads x 100000 increments on 2 CPUs, expecting 400000
 *   no lock:      counter = 302408  (97592 updates lost, run 1)
 *   conc_lock:    counter = 400000  (exact)
 *   atomic add:   counter = 400000  (exact)
 *
 *   Losses near a multiple of 100,000 are common: a thread loads the counter, is delayed
 *   (preempted, or its cache line is stolen), and its one stale store wipes out everything
 *   the others added meanwhile.
 *
 *   A given unlocked run is not guaranteed to lose anything: on one CPU, or on a busy machine,
 *   a thread often finishes its 100,000 increments within one time slice and the threads
 *   never overlap. So the unlocked run is repeated for up to a second until it loses updates,
 *   and it may still print "nothing lost". Only the locked and atomic totals are checked: the
 *   program exits 1 if either is not exactly 400,000.
 */
#include "conc/lock.h"

#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>

enum { THREADS = 4, INCREMENTS = 100000 };
static const long EXPECTED = (long)THREADS * INCREMENTS;

static long counter; /* the shared data; how it is touched depends on the run */
static conc_lock_t counter_lock = CONC_LOCK_INIT;

/* A start gate, so all threads count at the same moment: 100,000 increments take well under a
 * millisecond, so a thread started a little late would find the others already done and the
 * runs would hardly overlap. Waiters spin (yielding the CPU) rather than sleep, because waking
 * sleepers one by one takes about as long as the whole loop. */
static bool gate_open;

static void wait_at_gate(void) {
    /* Relaxed: the gate only says when to start; it publishes no data (pthread_create has
     * already made the zeroed counter visible to every thread). */
    while (!conc_load(&gate_open, CONC_RELAXED))
        sched_yield();
}

static void open_gate(void) {
    conc_store(&gate_open, true, CONC_RELAXED);
}

static void *increment_without_lock(void *unused) {
    (void)unused;
    wait_at_gate();
    for (int i = 0; i < INCREMENTS; i++) {
        /* The race, made well-defined: two atomic steps, not one. Another thread may store
         * between our load and our store, and our store then overwrites its increment. */
        long seen = conc_load(&counter, CONC_RELAXED);
        conc_store(&counter, seen + 1, CONC_RELAXED);
    }
    return NULL;
}

static void *increment_with_lock(void *unused) {
    (void)unused;
    wait_at_gate();
    for (int i = 0; i < INCREMENTS; i++) {
        conc_lock_acquire(&counter_lock);
        counter += 1; /* plain C: the lock makes this thread the only one here */
        conc_lock_release(&counter_lock);
    }
    return NULL;
}

/* For a single integer, one atomic read-modify-write instruction does the job without a lock.
 * A lock is the general tool: it protects any number of fields and any amount of code. */
static void *increment_atomically(void *unused) {
    (void)unused;
    wait_at_gate();
    for (int i = 0; i < INCREMENTS; i++)
        conc_fetch_add(&counter, 1, CONC_RELAXED); /* only the count matters: no ordering */
    return NULL;
}

/* Runs THREADS copies of worker on a zeroed counter and returns the final count. */
static long run(void *(*worker)(void *)) {
    pthread_t threads[THREADS];
    counter = 0;
    gate_open = false; /* no thread is running yet: plain stores are fine */
    for (int i = 0; i < THREADS; i++) {
        if (pthread_create(&threads[i], NULL, worker, NULL) != 0) {
            fprintf(stderr, "pthread_create failed\n");
            exit(1);
        }
    }
    open_gate();
    /* pthread_join orders everything the threads did before everything after it, so the plain
     * read of counter below is not a race. */
    for (int i = 0; i < THREADS; i++)
        pthread_join(threads[i], NULL);
    return counter;
}

int main(void) {
    printf("%d threads x %d increments on %d CPUs, expecting %ld\n", THREADS, INCREMENTS,
           conc_cpu_count(), EXPECTED);

    /* A race is intermittent: whether updates are lost depends on how the threads happen to
     * be scheduled (on a busy machine they may barely overlap). That is what makes races
     * dangerous -- tests pass, production fails -- so here we simply retry for up to a
     * second until a run loses something. */
    int64_t give_up = conc_deadline_in(1 * CONC_SEC);
    long racy = EXPECTED;
    int attempt = 0;
    while (racy == EXPECTED && (attempt == 0 || conc_now() < give_up)) {
        attempt++;
        racy = run(increment_without_lock);
    }
    if (racy < EXPECTED)
        printf("no lock:      counter = %-7ld (%ld updates lost, run %d)\n", racy, EXPECTED - racy,
               attempt);
    else
        printf("no lock:      counter = %-7ld (nothing lost in %d runs: luck, not safety)\n", racy,
               attempt);

    long locked = run(increment_with_lock);
    printf("conc_lock:    counter = %-7ld %s\n", locked, locked == EXPECTED ? "(exact)" : "WRONG");

    long atomic = run(increment_atomically);
    printf("atomic add:   counter = %-7ld %s\n", atomic, atomic == EXPECTED ? "(exact)" : "WRONG");

    /* A lost update can only make the count smaller, never larger. */
    if (locked != EXPECTED || atomic != EXPECTED || racy > EXPECTED) {
        fprintf(stderr, "01_race_counter: FAILED\n");
        return 1;
    }
    return 0;
}
