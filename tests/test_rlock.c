/* tests/test_rlock.c - conc_rlock: ownership, depth, errors, and the shared lock-like stress
 * SPDX-License-Identifier: MIT */
#include "conc/rlock.h"

#define LK_T conc_rlock_t
#define LK_INIT(p) conc_rlock_init(p)
#define LK_ACQUIRE(p) conc_rlock_acquire(p)
#define LK_TRY(p) conc_rlock_try_acquire(p)
#define LK_UNTIL(p, dl) conc_rlock_acquire_until((p), (dl))
#define LK_RELEASE(p) TH_CHECK_EQ(conc_rlock_release(p), 0)
#include "lockish.h"

static void rlock_fits_sixteen_bytes_and_zero_is_free(void) {
    TH_CHECK(sizeof(conc_rlock_t) <= 16);
    conc_rlock_t zero;
    memset(&zero, 0, sizeof zero);
    TH_CHECK(!conc_rlock_is_owned(&zero));
    TH_CHECK_EQ(conc_rlock_try_acquire(&zero), 0);
    TH_CHECK(conc_rlock_is_owned(&zero));
    TH_CHECK_EQ(conc_rlock_release(&zero), 0);
    conc_rlock_t init = CONC_RLOCK_INIT;
    TH_CHECK(!conc_rlock_is_owned(&init));
    TH_CHECK(!conc_lock_is_locked(&init.lock));
}

static void rlock_nests_and_frees_at_depth_zero(void) {
    conc_rlock_t r;
    conc_rlock_init(&r);
    conc_rlock_acquire(&r);
    TH_CHECK_EQ(conc_rlock_try_acquire(&r), 0);
    TH_CHECK_EQ(conc_rlock_acquire_until(&r, 0), 0); /* owner: succeeds even with a past deadline */
    TH_CHECK_EQ(r.depth, 3);
    TH_CHECK(conc_rlock_is_owned(&r));
    TH_CHECK_EQ(conc_rlock_release(&r), 0);
    TH_CHECK_EQ(conc_rlock_release(&r), 0);
    TH_CHECK(conc_rlock_is_owned(&r));
    TH_CHECK(conc_lock_is_locked(&r.lock));
    TH_CHECK_EQ(conc_rlock_release(&r), 0);
    TH_CHECK(!conc_rlock_is_owned(&r));
    TH_CHECK(!conc_lock_is_locked(&r.lock));
    TH_CHECK_EQ(conc_rlock_release(&r), EPERM); /* nobody holds it now */
}

/* Another thread: try finds it busy, until times out, release is EPERM, is_owned false. */
typedef struct probe {
    conc_rlock_t *r;
    int try_result, until_result, release_result;
    bool owned;
    int64_t deadline, returned_at;
} probe;

static void *probe_main(void *arg) {
    probe *p = (probe *)arg;
    p->owned = conc_rlock_is_owned(p->r);
    p->try_result = conc_rlock_try_acquire(p->r);
    p->release_result = conc_rlock_release(p->r);
    p->deadline = conc_deadline_in(5 * CONC_MS);
    p->until_result = conc_rlock_acquire_until(p->r, p->deadline);
    p->returned_at = conc_now();
    return NULL;
}

static void rlock_other_thread_busy_eperm_timeout(void) {
    conc_rlock_t r = CONC_RLOCK_INIT;
    conc_rlock_acquire(&r);
    conc_rlock_acquire(&r);
    probe p;
    memset(&p, 0, sizeof p);
    p.r = &r;
    pthread_t t;
    TH_CHECK_EQ(pthread_create(&t, NULL, probe_main, &p), 0);
    pthread_join(t, NULL);
    TH_CHECK(!p.owned);
    TH_CHECK_EQ(p.try_result, EBUSY);
    TH_CHECK_EQ(p.release_result, EPERM);
    TH_CHECK_EQ(p.until_result, ETIMEDOUT);
    TH_CHECK(p.returned_at >= p.deadline);
    TH_CHECK_EQ(r.depth, 2); /* the failed release by a non-owner changed nothing */
    TH_CHECK(conc_rlock_is_owned(&r));
    TH_CHECK_EQ(conc_rlock_release(&r), 0);
    TH_CHECK_EQ(conc_rlock_release(&r), 0);
}

static void rlock_depth_overflow_is_eoverflow(void) {
    conc_rlock_t r = CONC_RLOCK_INIT;
    conc_rlock_acquire(&r);
    r.depth = UINT32_MAX; /* white box: four billion nested acquires would take a while */
    TH_CHECK_EQ(conc_rlock_try_acquire(&r), EOVERFLOW);
    TH_CHECK_EQ(conc_rlock_acquire_until(&r, CONC_FOREVER), EOVERFLOW);
    TH_CHECK_EQ(r.depth, UINT32_MAX); /* nothing changed */
    r.depth = 1;
    TH_CHECK_EQ(conc_rlock_release(&r), 0);
    TH_CHECK(!conc_lock_is_locked(&r.lock));
}

/* The release/acquire pair conc_cond uses: the full depth goes and comes back. */
static void rlock_release_save_restores_depth(void) {
    conc_rlock_t r = CONC_RLOCK_INIT;
    for (int i = 0; i < 5; i++)
        conc_rlock_acquire(&r);
    uint32_t depth = conc__rlock_release_save(&r);
    TH_CHECK_EQ(depth, 5);
    TH_CHECK(!conc_rlock_is_owned(&r));
    TH_CHECK(!conc_lock_is_locked(&r.lock));
    conc__rlock_acquire_restore(&r, depth, 0); /* no polling: the lock is free */
    TH_CHECK(conc_rlock_is_owned(&r));
    for (int i = 0; i < 5; i++)
        TH_CHECK_EQ(conc_rlock_release(&r), 0);
    TH_CHECK_EQ(conc_rlock_release(&r), EPERM);
}

/* Deadlock stress for nesting: threads take two rlocks in a fixed order, each re-entered to
 * a random depth, and release them in a random interleaving of depths. A depth or owner
 * bookkeeping bug shows up as a hang (watchdog), EPERM, or a wrong payload total. */
typedef struct nested {
    conc_rlock_t outer, inner;
    long payload;
    long per_thread;
} nested;

static void nested_worker(int index, void *arg) {
    nested *n = (nested *)arg;
    th_rng rng = th_rng_make((uint64_t)index + 55);
    for (long i = 0; i < n->per_thread; i++) {
        uint32_t d_outer = 1 + th_rand_below(&rng, 4), d_inner = 1 + th_rand_below(&rng, 4);
        for (uint32_t k = 0; k < d_outer; k++)
            conc_rlock_acquire(&n->outer);
        for (uint32_t k = 0; k < d_inner; k++) {
            if (k % 2)
                TH_CHECK_EQ(conc_rlock_try_acquire(&n->inner), 0); /* owner: never busy */
            else
                while (conc_rlock_acquire_until(&n->inner, conc_deadline_in(50 * CONC_US)) != 0) {
                }
        }
        TH_CHECK(conc_rlock_is_owned(&n->outer) && conc_rlock_is_owned(&n->inner));
        n->payload++;
        for (uint32_t k = 0; k < d_inner; k++)
            TH_CHECK_EQ(conc_rlock_release(&n->inner), 0);
        TH_CHECK(!conc_rlock_is_owned(&n->inner));
        TH_CHECK(conc_rlock_is_owned(&n->outer));
        for (uint32_t k = 0; k < d_outer; k++)
            TH_CHECK_EQ(conc_rlock_release(&n->outer), 0);
        TH_CHECK(!conc_rlock_is_owned(&n->outer));
    }
}

static void rlock_deadlock_nesting_across_threads(void) {
    nested *n = (nested *)calloc(1, sizeof *n);
    TH_CHECK(n != NULL);
    conc_rlock_init(&n->outer);
    conc_rlock_init(&n->inner);
    int threads = th_threads(8);
    n->per_thread = th_iters(20000);
    th_run_threads(threads, nested_worker, n);
    TH_CHECK_EQ(n->payload, threads * n->per_thread);
    TH_CHECK_EQ(n->outer.lock.word, 0);
    TH_CHECK_EQ(n->inner.lock.word, 0);
    free(n);
}

TH_MAIN("rlock", TH_CASE(rlock_fits_sixteen_bytes_and_zero_is_free),
        TH_CASE(rlock_nests_and_frees_at_depth_zero),
        TH_CASE(rlock_other_thread_busy_eperm_timeout), TH_CASE(rlock_depth_overflow_is_eoverflow),
        TH_CASE(rlock_release_save_restores_depth), TH_CASE(rlock_deadlock_nesting_across_threads),
        LOCKISH_CASES)
