/* tests/lockish.h - the shared conformance cases for lock-like primitives
 * SPDX-License-Identifier: MIT
 *
 * Written once against a handful of macros, included by each lock-like test file (the
 * Concurrency Kit "validate" idea): every lock-like primitive faces the same stress.
 *
 *     #define LK_T              conc_lock_t
 *     #define LK_INIT(p)        conc_lock_init((p), 0)
 *     #define LK_ACQUIRE(p)     conc_lock_acquire(p)
 *     #define LK_TRY(p)         conc_lock_try_acquire(p)          (0 or EBUSY)
 *     #define LK_UNTIL(p, dl)   conc_lock_acquire_until((p), (dl)) (0 or ETIMEDOUT)
 *     #define LK_RELEASE(p)     conc_lock_release(p)
 *     #include "lockish.h"
 *     TH_MAIN("lock", LOCKISH_CASES, ...)
 *
 * Invariants: the payload is plain, non-atomic data that only the lock protects (TSan sees
 * every unprotected access); "inside" is a relaxed atomic, an instrument, never a
 * synchronizer: if it ever reads 2, two threads were inside at once.
 */
#ifndef CONC_TESTS_LOCKISH_H
#define CONC_TESTS_LOCKISH_H

#include "harness.h"

typedef struct lockish_shared {
    LK_T lock;
    int inside;         /* relaxed atomic instrument */
    long payload_a;     /* plain: protected by lock */
    long payload_b;     /* plain: always 3 * payload_a when the lock is free */
    long successes[64]; /* per thread, written only by that thread */
    long timeouts[64];
    int64_t stop_at;
} lockish_shared;

static void lockish_critical_section(lockish_shared *s) {
    int was = __atomic_fetch_add(&s->inside, 1, __ATOMIC_RELAXED);
    TH_CHECK_MSG(was == 0, "two threads inside the lock at once");
    TH_CHECK_EQ(s->payload_b, 3 * s->payload_a);
    long a = s->payload_a + 1; /* a read-modify-write split in two on purpose */
    s->payload_a = a;
    s->payload_b = 3 * a;
    __atomic_fetch_sub(&s->inside, 1, __ATOMIC_RELAXED);
}

/* Each thread mixes blocking, try and timed acquires at random until the clock runs out. */
static void lockish_mixed_worker(int index, void *arg) {
    lockish_shared *s = (lockish_shared *)arg;
    th_rng rng = th_rng_make((uint64_t)index + 1);
    long ok = 0, timeouts = 0;
    for (long n = 0;; n++) {
        if (n > 0 && (n & 63) == 0 && th_now() > s->stop_at) /* a late starter still works */
            break;
        int got;
        switch (th_rand_below(&rng, 3)) {
        case 0:
            LK_ACQUIRE(&s->lock);
            got = 1;
            break;
        case 1: {
            int e = LK_TRY(&s->lock);
            TH_CHECK(e == 0 || e == EBUSY);
            got = e == 0;
            break;
        }
        default: {
            int64_t deadline = th_now() + (int64_t)th_rand_below(&rng, 50000);
            int e = LK_UNTIL(&s->lock, deadline);
            TH_CHECK(e == 0 || e == ETIMEDOUT);
            if (e == ETIMEDOUT) {
                TH_CHECK_NOT_EARLY(deadline);
                timeouts++;
            }
            got = e == 0;
            break;
        }
        }
        if (got) {
            lockish_critical_section(s);
            ok++;
            LK_RELEASE(&s->lock);
        }
    }
    s->successes[index] = ok;
    s->timeouts[index] = timeouts;
}

/* Runs worker on `threads` threads for the case's duration over one lock, then checks that
 * the payload counts every success exactly once (no increment lost, none doubled) and that the
 * lock ends free. Returns the number of successful acquisitions. */
static long lockish_run(th_thread_fn worker) {
    int threads = th_threads(8);
    TH_CHECK(threads <= 64);
    lockish_shared *s = (lockish_shared *)calloc(1, sizeof *s);
    TH_CHECK(s != NULL);
    LK_INIT(&s->lock);
    s->stop_at = th_now() + th_duration_ns(0.5);
    th_run_threads(threads, worker, s);
    long total = 0;
    for (int i = 0; i < threads; i++)
        total += s->successes[i];
    TH_CHECK_EQ(s->payload_a, total);
    TH_CHECK_EQ(LK_TRY(&s->lock), 0);
    LK_RELEASE(&s->lock);
    free(s);
    return total;
}

static void lockish_stress_mixed(void) {
    TH_CHECK(lockish_run(lockish_mixed_worker) > 0);
}

/* Deadlock stress: every thread takes a random subset of K locks, always in ascending order,
 * so no cycle can form; the watchdog turns a protocol bug that strands a sleeper into a
 * reported failure. Each lock guards its own plain counter. */
#define LOCKISH_K 4
typedef struct lockish_multi {
    LK_T locks[LOCKISH_K];
    long counters[LOCKISH_K];
    long taken[64][LOCKISH_K];
    long rounds;
} lockish_multi;

static void lockish_ordered_worker(int index, void *arg) {
    lockish_multi *m = (lockish_multi *)arg;
    th_rng rng = th_rng_make((uint64_t)index + 101);
    for (long r = 0; r < m->rounds; r++) {
        unsigned subset = th_rand_below(&rng, 1u << LOCKISH_K);
        for (int k = 0; k < LOCKISH_K; k++) /* ascending: the global lock order */
            if (subset & (1u << k)) {
                if (th_rand_below(&rng, 2)) {
                    LK_ACQUIRE(&m->locks[k]);
                } else {
                    int e;
                    while ((e = LK_UNTIL(&m->locks[k], th_now() + 20000)) != 0)
                        TH_CHECK_EQ(e, ETIMEDOUT); /* not any error the retry would hide */
                }
            }
        for (int k = 0; k < LOCKISH_K; k++)
            if (subset & (1u << k)) {
                m->counters[k]++;
                m->taken[index][k]++;
            }
        for (int k = LOCKISH_K - 1; k >= 0; k--)
            if (subset & (1u << k))
                LK_RELEASE(&m->locks[k]);
    }
}

static void lockish_deadlock_ordered_multi(void) {
    int threads = th_threads(8);
    TH_CHECK(threads <= 64);
    lockish_multi *m = (lockish_multi *)calloc(1, sizeof *m);
    TH_CHECK(m != NULL);
    for (int k = 0; k < LOCKISH_K; k++)
        LK_INIT(&m->locks[k]);
    m->rounds = th_iters(20000);
    th_run_threads(threads, lockish_ordered_worker, m);
    for (int k = 0; k < LOCKISH_K; k++) {
        long want = 0;
        for (int i = 0; i < threads; i++)
            want += m->taken[i][k];
        TH_CHECK_EQ(m->counters[k], want);
    }
    free(m);
}

/* Timed acquires under contention always return, and never before their deadline. Half the
 * threads hold the lock for a while, the other half poll with tiny deadlines. */
static void lockish_timed_worker(int index, void *arg) {
    lockish_shared *s = (lockish_shared *)arg;
    th_rng rng = th_rng_make((uint64_t)index + 7);
    long ok = 0, timeouts = 0;
    while (th_now() < s->stop_at) {
        if (index % 2 == 0) {
            LK_ACQUIRE(&s->lock);
            lockish_critical_section(s);
            ok++;
            for (uint32_t spin = th_rand_below(&rng, 2000); spin; spin--)
                __asm__ __volatile__("" ::: "memory");
            LK_RELEASE(&s->lock);
        } else {
            int64_t deadline = th_now() + (int64_t)th_rand_below(&rng, 200000);
            int e = LK_UNTIL(&s->lock, deadline);
            if (e == 0) {
                lockish_critical_section(s);
                ok++;
                LK_RELEASE(&s->lock);
            } else {
                TH_CHECK_EQ(e, ETIMEDOUT);
                TH_CHECK_NOT_EARLY(deadline);
                timeouts++;
            }
        }
    }
    s->successes[index] = ok;
    s->timeouts[index] = timeouts;
}

static void lockish_deadlock_timed_contention(void) {
    (void)lockish_run(lockish_timed_worker);
}

/* Starvation: hammer threads take the lock back to back and stop only when the victim has
 * got through LOCKISH_VICTIM_ROUNDS times. Without eventual fairness the victim could lose
 * every race forever; the case deadline is the bound. The plain payload counts every round
 * of every thread exactly once. */
#define LOCKISH_VICTIM_ROUNDS 200
typedef struct lockish_starve {
    LK_T lock;
    long payload;
    int victim_done; /* relaxed atomic: only a stop signal */
    long victim_rounds;
    long rounds[64]; /* per hammer thread, written only by that thread */
} lockish_starve;

static void lockish_starve_worker(int index, void *arg) {
    lockish_starve *s = (lockish_starve *)arg;
    if (index == 0) {
        for (int r = 0; r < LOCKISH_VICTIM_ROUNDS; r++) {
            LK_ACQUIRE(&s->lock);
            s->payload++;
            s->victim_rounds++;
            LK_RELEASE(&s->lock);
        }
        __atomic_store_n(&s->victim_done, 1, __ATOMIC_RELAXED);
        return;
    }
    long rounds = 0;
    while (!__atomic_load_n(&s->victim_done, __ATOMIC_RELAXED)) {
        LK_ACQUIRE(&s->lock);
        /* A critical section worth contending for, and a read-modify-write split around it:
         * a second thread inside loses an increment, which the payload check then sees. */
        long p = s->payload;
        for (int spin = 0; spin < 200; spin++)
            __asm__ __volatile__("" ::: "memory");
        s->payload = p + 1;
        LK_RELEASE(&s->lock);
        rounds++;
    }
    s->rounds[index] = rounds;
}

static void lockish_starvation_victim_gets_through(void) {
    int threads = th_threads(8);
    TH_CHECK(threads <= 64);
    lockish_starve *s = (lockish_starve *)calloc(1, sizeof *s);
    TH_CHECK(s != NULL);
    LK_INIT(&s->lock);
    th_run_threads(threads, lockish_starve_worker, s);
    TH_CHECK_EQ(s->victim_rounds, LOCKISH_VICTIM_ROUNDS);
    long want = LOCKISH_VICTIM_ROUNDS; /* the payload counts every round, the victim's too */
    for (int i = 1; i < threads; i++)
        want += s->rounds[i];
    TH_CHECK_EQ(s->payload, want);
    free(s);
}

/* A timed acquire on a lock held by another thread times out, never early. */
typedef struct lockish_holder {
    LK_T lock;
    int held, release_now; /* relaxed atomics: a handshake with the holder thread */
} lockish_holder;

static void *lockish_hold_main(void *arg) {
    lockish_holder *h = (lockish_holder *)arg;
    LK_ACQUIRE(&h->lock);
    __atomic_store_n(&h->held, 1, __ATOMIC_RELEASE);
    while (!__atomic_load_n(&h->release_now, __ATOMIC_ACQUIRE))
        th_sleep_ns(100000);
    LK_RELEASE(&h->lock);
    return NULL;
}

static void lockish_until_times_out_never_early(void) {
    lockish_holder h;
    memset(&h, 0, sizeof h);
    LK_INIT(&h.lock);
    pthread_t t;
    TH_CHECK_EQ(pthread_create(&t, NULL, lockish_hold_main, &h), 0);
    while (!__atomic_load_n(&h.held, __ATOMIC_ACQUIRE))
        th_sleep_ns(100000);
    for (int64_t wait_ns = 1000; wait_ns <= 20000000; wait_ns *= 10) {
        int64_t deadline = th_now() + wait_ns;
        TH_CHECK_EQ(LK_UNTIL(&h.lock, deadline), ETIMEDOUT);
        TH_CHECK_NOT_EARLY(deadline);
    }
    TH_CHECK_EQ(LK_UNTIL(&h.lock, th_now() - 1000000), ETIMEDOUT); /* past: ETIMEDOUT, not EBUSY */
    TH_CHECK_EQ(LK_TRY(&h.lock), EBUSY);
    __atomic_store_n(&h.release_now, 1, __ATOMIC_RELEASE);
    TH_CHECK_EQ(LK_UNTIL(&h.lock, th_now() + 60 * (int64_t)1000000000), 0); /* gets it once free */
    LK_RELEASE(&h.lock);
    pthread_join(t, NULL);
}

#define LOCKISH_CASES                                                                              \
    TH_CASE(lockish_until_times_out_never_early), TH_CASE(lockish_stress_mixed),                   \
        TH_CASE(lockish_deadlock_ordered_multi), TH_CASE(lockish_deadlock_timed_contention),       \
        TH_CASE(lockish_starvation_victim_gets_through)

#endif /* CONC_TESTS_LOCKISH_H */
