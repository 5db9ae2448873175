/* tests/test_verbs.c - the verbs issue 15 adds to existing modules: conc_cond_wait_for and
 * conc_cond_wait_rlock_for, the scoped forms (CONC_WITH_LOCK, CONC_WITH_RWLOCK[_SHARED],
 * CONC_WITH_RLOCK), the queue's opt-in task accounting (push_task, task_done, join), and the
 * executor's initializer, thread name prefix and shutdown without waiting.
 * SPDX-License-Identifier: MIT */
#include "conc/cond.h"
#include "conc/event.h"
#include "conc/executor.h"
#include "conc/queue.h"
#include "conc/rwlock.h"

#include "harness.h"

/* ---- conc_cond_wait_for ------------------------------------------------------------------- */

typedef struct box {
    conc_lock_t lock;
    conc_cond_t cond;
    int value;      /* plain: guarded by lock */
    int pred_calls; /* plain: pred runs with the lock held */
    int want;
    int done; /* release/acquire: the waiter returned */
    bool result;
    int64_t deadline;
} box;

static bool value_reached(void *arg) {
    box *b = (box *)arg;
    TH_CHECK(conc_lock_is_locked(&b->lock)); /* always called with the lock held */
    b->pred_calls++;
    return b->value >= b->want;
}

static void cond_wait_for_checks_before_waiting(void) {
    box b;
    memset(&b, 0, sizeof b);
    b.want = 0;
    conc_lock_acquire(&b.lock);
    TH_CHECK(conc_cond_wait_for(&b.cond, &b.lock, value_reached, &b, conc_now() - 1));
    TH_CHECK_EQ(b.pred_calls, 1); /* true at once: no wait, even with a past deadline */
    b.want = 1;
    TH_CHECK(!conc_cond_wait_for(&b.cond, &b.lock, value_reached, &b, 0));
    TH_CHECK_EQ(b.pred_calls, 2); /* past deadline, false: checked once, no wait */
    /* Before the wait and after it; a preemption past the deadline before the first check
     * rightly makes it check once, so try again, as many times as the harness allows. */
    int calls;
    do {
        calls = b.pred_calls;
        int64_t dl = conc_deadline_in(20 * CONC_MS);
        TH_CHECK(!conc_cond_wait_for(&b.cond, &b.lock, value_reached, &b, dl));
        TH_CHECK_NOT_EARLY(dl);
    } while (b.pred_calls - calls < 2);
    TH_CHECK(conc_lock_is_locked(&b.lock));
    conc_lock_release(&b.lock);
}

static void *wait_for_main(void *arg) {
    box *b = (box *)arg;
    conc_lock_acquire(&b->lock);
    b->result = conc_cond_wait_for(&b->cond, &b->lock, value_reached, b, b->deadline);
    TH_CHECK(conc_lock_is_locked(&b->lock));
    conc_lock_release(&b->lock);
    __atomic_store_n(&b->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

/* Notifies that leave the predicate false do not end the wait; the one that makes it true
 * does, and the waiter returns true having re-checked after every wake. */
static void cond_wait_for_rechecks_after_every_wake(void) {
    box b;
    memset(&b, 0, sizeof b);
    b.want = 5;
    b.deadline = CONC_FOREVER;
    pthread_t t;
    TH_CHECK_EQ(pthread_create(&t, NULL, wait_for_main, &b), 0);
    for (int v = 1; v <= 5; v++) {
        /* Wait for the scenario, not for a timing: the waiter has checked the predicate v
         * times (once before its first wait, once after each earlier notify), found it false
         * each time, and released the lock only inside its wait. */
        for (;;) {
            conc_lock_acquire(&b.lock);
            if (b.pred_calls >= v)
                break;
            conc_lock_release(&b.lock);
            sched_yield();
        }
        if (v > 1)
            TH_CHECK_EQ(__atomic_load_n(&b.done, __ATOMIC_ACQUIRE), 0); /* still false */
        b.value = v;
        conc_cond_notify_all(&b.cond);
        conc_lock_release(&b.lock);
    }
    pthread_join(t, NULL);
    TH_CHECK(b.result);
    TH_CHECK(b.pred_calls >= 6); /* a re-check after every one of the five wakes */
}

static void cond_wait_for_times_out_false(void) {
    box b;
    memset(&b, 0, sizeof b);
    b.want = 1;
    b.deadline = conc_deadline_in(30 * CONC_MS);
    pthread_t t;
    TH_CHECK_EQ(pthread_create(&t, NULL, wait_for_main, &b), 0);
    for (int i = 0; i < 3; i++) { /* wakes with the predicate still false */
        th_sleep_ns(2000000);
        conc_lock_acquire(&b.lock);
        conc_cond_notify(&b.cond);
        conc_lock_release(&b.lock);
    }
    pthread_join(t, NULL);
    TH_CHECK(!b.result);
    TH_CHECK_NOT_EARLY(b.deadline);
}

/* ---- CONC_WITH_LOCK ----------------------------------------------------------------------- */

static conc_lock_t scoped = CONC_LOCK_INIT;
static long scoped_counter; /* plain: guarded by scoped */

static int returns_from_inside(int x) {
    CONC_WITH_LOCK(&scoped) {
        scoped_counter++;
        if (x > 0)
            return x; /* the cleanup releases */
        scoped_counter++;
    }
    return -1;
}

static void with_lock_releases_on_every_way_out(void) {
    CONC_WITH_LOCK(&scoped) {
        TH_CHECK(conc_lock_is_locked(&scoped));
        scoped_counter++;
    }
    TH_CHECK(!conc_lock_is_locked(&scoped)); /* falling off the end */

    TH_CHECK_EQ(returns_from_inside(7), 7);
    TH_CHECK(!conc_lock_is_locked(&scoped)); /* return */
    TH_CHECK_EQ(returns_from_inside(0), -1);
    TH_CHECK(!conc_lock_is_locked(&scoped));

    int runs = 0;
    for (int i = 0; i < 3; i++) {
        CONC_WITH_LOCK(&scoped) {
            runs++;
            if (i == 1)
                break; /* ends the block (the hidden for), not the outer loop */
            scoped_counter++;
        }
        TH_CHECK(!conc_lock_is_locked(&scoped));
    }
    TH_CHECK_EQ(runs, 3); /* the outer loop ran on */

    CONC_WITH_LOCK(&scoped) {
        runs++;
        continue; /* also ends the block, releasing */
    }
    TH_CHECK(!conc_lock_is_locked(&scoped));
    TH_CHECK_EQ(runs, 4);

    CONC_WITH_LOCK(&scoped) {
        if (runs == 4)
            goto out; /* leaving the scope by goto runs the cleanup */
    }
    TH_CHECK(0); /* not reached */
out:
    TH_CHECK(!conc_lock_is_locked(&scoped));

    conc_lock_t second = CONC_LOCK_INIT;
    CONC_WITH_LOCK(&scoped) {
        CONC_WITH_LOCK(&second) { /* nested, in lock order */
            TH_CHECK(conc_lock_is_locked(&scoped) && conc_lock_is_locked(&second));
        }
        TH_CHECK(!conc_lock_is_locked(&second));
    }
    TH_CHECK(!conc_lock_is_locked(&scoped));
}

static void with_lock_worker(int index, void *arg) {
    (void)index;
    long n = *(const long *)arg;
    for (long i = 0; i < n; i++) {
        CONC_WITH_LOCK(&scoped) {
            scoped_counter++;
            if (i % 3 == 0)
                continue;
            if (i % 5 == 0)
                break;
        }
    }
}

static void with_lock_stress_exact_total(void) {
    scoped_counter = 0;
    long n = th_iters(50000);
    int threads = th_threads(8);
    th_run_threads(threads, with_lock_worker, &n);
    TH_CHECK_EQ(scoped_counter, threads * n);
    TH_CHECK(!conc_lock_is_locked(&scoped));
}

/* ---- conc_cond_wait_rlock_for --------------------------------------------------------------- */

typedef struct rbox {
    conc_rlock_t r;
    conc_cond_t cond;
    int value;      /* plain: guarded by r */
    int pred_calls; /* plain: pred runs with r held */
    int want;
    int done; /* release/acquire: the waiter returned */
    int result;
    int64_t deadline;
} rbox;

static bool rvalue_reached(void *arg) {
    rbox *b = (rbox *)arg;
    TH_CHECK(conc_rlock_is_owned(&b->r)); /* always called by the owner */
    b->pred_calls++;
    return b->value >= b->want;
}

/* Checks the rlock is held at exactly `depth` levels by the caller, then restores them. */
static void check_rlock_depth(conc_rlock_t *r, int depth) {
    for (int i = 0; i < depth; i++) {
        TH_CHECK(conc_rlock_is_owned(r));
        TH_CHECK_EQ(conc_rlock_release(r), 0);
    }
    TH_CHECK_EQ(conc_rlock_release(r), EPERM); /* no level left */
    for (int i = 0; i < depth; i++)
        conc_rlock_acquire(r);
}

static void cond_wait_rlock_for_checks_first_and_refuses_non_owner(void) {
    rbox b;
    memset(&b, 0, sizeof b);
    conc_rlock_init(&b.r);
    b.want = 1;
    TH_CHECK_EQ(conc_cond_wait_rlock_for(&b.cond, &b.r, rvalue_reached, &b, CONC_FOREVER), EPERM);
    TH_CHECK_EQ(b.pred_calls, 0); /* not owned: pred never runs */
    conc_rlock_acquire(&b.r);
    conc_rlock_acquire(&b.r); /* depth 2 */
    b.want = 0;
    TH_CHECK_EQ(conc_cond_wait_rlock_for(&b.cond, &b.r, rvalue_reached, &b, 0), 0);
    TH_CHECK_EQ(b.pred_calls, 1); /* true at once: no wait, even with a past deadline */
    b.want = 1;
    TH_CHECK_EQ(conc_cond_wait_rlock_for(&b.cond, &b.r, rvalue_reached, &b, 0), ETIMEDOUT);
    TH_CHECK_EQ(b.pred_calls, 2); /* past deadline, false: checked once, no wait */
    int calls; /* before the wait and after it, as in cond_wait_for_checks_before_waiting */
    do {
        calls = b.pred_calls;
        int64_t dl = conc_deadline_in(20 * CONC_MS);
        TH_CHECK_EQ(conc_cond_wait_rlock_for(&b.cond, &b.r, rvalue_reached, &b, dl), ETIMEDOUT);
        TH_CHECK_NOT_EARLY(dl);
    } while (b.pred_calls - calls < 2);
    check_rlock_depth(&b.r, 2); /* the full depth came back */
    TH_CHECK_EQ(conc_rlock_release(&b.r), 0);
    TH_CHECK_EQ(conc_rlock_release(&b.r), 0);
}

static void *rwait_for_main(void *arg) {
    rbox *b = (rbox *)arg;
    conc_rlock_acquire(&b->r);
    conc_rlock_acquire(&b->r);
    conc_rlock_acquire(&b->r); /* depth 3: every wait must give up all three */
    b->result = conc_cond_wait_rlock_for(&b->cond, &b->r, rvalue_reached, b, b->deadline);
    check_rlock_depth(&b->r, 3);
    for (int i = 0; i < 3; i++)
        TH_CHECK_EQ(conc_rlock_release(&b->r), 0);
    __atomic_store_n(&b->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

/* As cond_wait_for_rechecks_after_every_wake, over an rlock held three deep: the notifier can
 * take the rlock only because each wait gives up every level. */
static void cond_wait_rlock_for_rechecks_after_every_wake(void) {
    rbox b;
    memset(&b, 0, sizeof b);
    conc_rlock_init(&b.r);
    b.want = 5;
    b.deadline = CONC_FOREVER;
    pthread_t t;
    TH_CHECK_EQ(pthread_create(&t, NULL, rwait_for_main, &b), 0);
    for (int v = 1; v <= 5; v++) {
        for (;;) { /* the waiter has checked v times and is inside a wait */
            conc_rlock_acquire(&b.r);
            if (b.pred_calls >= v)
                break;
            TH_CHECK_EQ(conc_rlock_release(&b.r), 0);
            sched_yield();
        }
        if (v > 1)
            TH_CHECK_EQ(__atomic_load_n(&b.done, __ATOMIC_ACQUIRE), 0); /* still false */
        b.value = v;
        conc_cond_notify_all(&b.cond);
        TH_CHECK_EQ(conc_rlock_release(&b.r), 0);
    }
    pthread_join(t, NULL);
    TH_CHECK_EQ(b.result, 0);
    TH_CHECK(b.pred_calls >= 6);
}

static void cond_wait_rlock_for_times_out(void) {
    rbox b;
    memset(&b, 0, sizeof b);
    conc_rlock_init(&b.r);
    b.want = 1;
    b.deadline = conc_deadline_in(30 * CONC_MS);
    pthread_t t;
    TH_CHECK_EQ(pthread_create(&t, NULL, rwait_for_main, &b), 0);
    for (int i = 0; i < 3; i++) { /* wakes with the predicate still false */
        th_sleep_ns(2000000);
        conc_rlock_acquire(&b.r);
        conc_cond_notify(&b.cond);
        TH_CHECK_EQ(conc_rlock_release(&b.r), 0);
    }
    pthread_join(t, NULL);
    TH_CHECK_EQ(b.result, ETIMEDOUT);
    TH_CHECK_NOT_EARLY(b.deadline);
}

/* ---- CONC_WITH_RWLOCK_SHARED, CONC_WITH_RWLOCK, CONC_WITH_RLOCK ----------------------------- */

static conc_rwlock_t scoped_rw = CONC_RWLOCK_INIT;
static conc_rlock_t scoped_r = CONC_RLOCK_INIT;
static long scoped_record[2]; /* plain: written under scoped_rw exclusive, read shared */

static int rw_returns_from_inside(int x, bool exclusive) {
    if (exclusive) {
        CONC_WITH_RWLOCK(&scoped_rw) {
            if (x > 0)
                return x; /* the cleanup releases */
        }
    } else {
        CONC_WITH_RWLOCK_SHARED(&scoped_rw) {
            if (x > 0)
                return x;
        }
    }
    return -1;
}

static bool rw_idle(void) {
    return !conc_rwlock_is_locked(&scoped_rw) && conc_rwlock_readers(&scoped_rw) == 0;
}

static void with_rwlock_releases_on_every_way_out(void) {
    CONC_WITH_RWLOCK_SHARED(&scoped_rw) {
        TH_CHECK_EQ(conc_rwlock_readers(&scoped_rw), 1u);
        TH_CHECK(!conc_rwlock_is_locked(&scoped_rw));
        CONC_WITH_RWLOCK_SHARED(&scoped_rw) { /* a second reader (no writer waits) */
            TH_CHECK_EQ(conc_rwlock_readers(&scoped_rw), 2u);
        }
        TH_CHECK_EQ(conc_rwlock_readers(&scoped_rw), 1u);
    }
    TH_CHECK(rw_idle());
    CONC_WITH_RWLOCK(&scoped_rw) {
        TH_CHECK(conc_rwlock_is_locked(&scoped_rw));
        TH_CHECK_EQ(conc_rwlock_try_acquire_shared(&scoped_rw), EBUSY);
    }
    TH_CHECK(rw_idle());

    for (int ex = 0; ex < 2; ex++) {
        TH_CHECK_EQ(rw_returns_from_inside(3, ex), 3);
        TH_CHECK(rw_idle()); /* return */
        TH_CHECK_EQ(rw_returns_from_inside(0, ex), -1);
        TH_CHECK(rw_idle());
    }

    int runs = 0;
    for (int i = 0; i < 3; i++) {
        CONC_WITH_RWLOCK_SHARED(&scoped_rw) {
            runs++;
            if (i == 1)
                break; /* ends the block, not the loop */
        }
        TH_CHECK(rw_idle());
        CONC_WITH_RWLOCK(&scoped_rw) {
            runs++;
            if (i == 2)
                continue; /* ends the block too */
        }
        TH_CHECK(rw_idle());
    }
    TH_CHECK_EQ(runs, 6);

    CONC_WITH_RWLOCK(&scoped_rw) {
        if (runs == 6)
            goto out; /* the cleanup runs */
    }
    TH_CHECK(0); /* not reached */
out:
    TH_CHECK(rw_idle());
    /* A writer can get in after all of the above: nothing leaked. */
    TH_CHECK_EQ(conc_rwlock_try_acquire(&scoped_rw), 0);
    conc_rwlock_release(&scoped_rw);
}

static int rlock_returns_from_nested(int depth) {
    CONC_WITH_RLOCK(&scoped_r) {
        if (depth == 0)
            return 0; /* releases this level only */
        int r = rlock_returns_from_nested(depth - 1) + 1;
        TH_CHECK(conc_rlock_is_owned(&scoped_r)); /* the outer levels still hold */
        return r;
    }
    return -1;
}

static void with_rlock_releases_on_every_way_out(void) {
    CONC_WITH_RLOCK(&scoped_r) {
        CONC_WITH_RLOCK(&scoped_r) { /* re-entrant */
            check_rlock_depth(&scoped_r, 2);
        }
        check_rlock_depth(&scoped_r, 1);
    }
    TH_CHECK(!conc_rlock_is_owned(&scoped_r));
    TH_CHECK_EQ(rlock_returns_from_nested(4), 4);
    TH_CHECK(!conc_rlock_is_owned(&scoped_r));

    int runs = 0;
    for (int i = 0; i < 3; i++) {
        CONC_WITH_RLOCK(&scoped_r) {
            runs++;
            if (i == 0)
                continue;
            CONC_WITH_RLOCK(&scoped_r) {
                if (i == 1)
                    break; /* ends the inner block: the outer level still holds */
            }
            check_rlock_depth(&scoped_r, 1);
        }
        TH_CHECK(!conc_rlock_is_owned(&scoped_r));
    }
    TH_CHECK_EQ(runs, 3);
    TH_CHECK_EQ(conc_rlock_try_acquire(&scoped_r), 0); /* nothing leaked */
    TH_CHECK_EQ(conc_rlock_release(&scoped_r), 0);
}

/* Readers check the record under CONC_WITH_RWLOCK_SHARED, writers bump it under
 * CONC_WITH_RWLOCK and an rlock-guarded counter under nested CONC_WITH_RLOCK, every block left
 * early now and then: the totals are exact and every lock ends free. */
static long scoped_r_counter; /* plain: guarded by scoped_r */

static void with_rw_worker(int index, void *arg) {
    long n = *(const long *)arg;
    for (long i = 0; i < n; i++) {
        if ((i + index) % 8 == 0) {
            CONC_WITH_RWLOCK(&scoped_rw) {
                scoped_record[0]++;
                scoped_record[1] += 2;
                if (i % 3 == 0)
                    continue;
            }
        } else {
            CONC_WITH_RWLOCK_SHARED(&scoped_rw) {
                if (scoped_record[1] != 2 * scoped_record[0])
                    TH_CHECK(0); /* a torn record: exclusion broke */
                if (i % 5 == 0)
                    break;
            }
        }
        CONC_WITH_RLOCK(&scoped_r) {
            CONC_WITH_RLOCK(&scoped_r) {
                scoped_r_counter++;
                if (i % 7 == 0)
                    break;
            }
        }
    }
}

static void with_rwlock_rlock_stress_exact_total(void) {
    memset(scoped_record, 0, sizeof scoped_record);
    scoped_r_counter = 0;
    long n = th_iters(20000);
    int threads = th_threads(8);
    th_run_threads(threads, with_rw_worker, &n);
    long writes = 0;
    for (int t = 0; t < threads; t++)
        for (long i = 0; i < n; i++)
            writes += (i + t) % 8 == 0;
    TH_CHECK_EQ(scoped_record[0], writes);
    TH_CHECK_EQ(scoped_r_counter, threads * n);
    TH_CHECK(rw_idle());
    TH_CHECK(!conc_rlock_is_owned(&scoped_r));
    TH_CHECK_EQ(conc_rlock_try_acquire(&scoped_r), 0);
    TH_CHECK_EQ(conc_rlock_release(&scoped_r), 0);
}

/* ---- queue task accounting ----------------------------------------------------------------- */

static void queue_tasks_count_and_refuse(void) {
    conc_queue_t *q;
    TH_CHECK_EQ(conc_queue_create(&q, 2, sizeof(int)), 0);
    int x = 1;
    TH_CHECK_EQ(conc_queue_task_done(q), EINVAL); /* nothing unfinished */
    TH_CHECK_EQ(conc_queue_join_until(q, 0), 0);  /* nothing to wait for */
    TH_CHECK_EQ(conc_queue_push(q, &x), 0);       /* plain push: not counted */
    TH_CHECK_EQ(conc_queue_unfinished(q), 0);
    TH_CHECK_EQ(conc_queue_push_task(q, &x), 0);
    TH_CHECK_EQ(conc_queue_unfinished(q), 1);
    TH_CHECK_EQ(conc_queue_try_push_task(q, &x), EAGAIN); /* full: not counted */
    TH_CHECK_EQ(conc_queue_push_task_until(q, &x, conc_now()), ETIMEDOUT);
    TH_CHECK_EQ(conc_queue_unfinished(q), 1);
    int64_t dl = conc_deadline_in(10 * CONC_MS);
    TH_CHECK_EQ(conc_queue_join_until(q, dl), ETIMEDOUT);
    TH_CHECK_NOT_EARLY(dl);
    TH_CHECK_EQ(conc_queue_pop(q, &x), 0);
    TH_CHECK_EQ(conc_queue_pop(q, &x), 0);
    TH_CHECK_EQ(conc_queue_task_done(q), 0);
    TH_CHECK_EQ(conc_queue_unfinished(q), 0);
    conc_queue_join(q);
    conc_queue_close(q);
    TH_CHECK_EQ(conc_queue_push_task(q, &x), EPIPE); /* closed: not counted */
    TH_CHECK_EQ(conc_queue_unfinished(q), 0);
    conc_queue_destroy(q);
}

/* Producers push_task numbered items; consumers pop each, bump its plain counter, then
 * task_done; the main thread joins and reads the counters: join orders every consumer's
 * writes before it returns. Three rounds on the same queue (the count reaches zero each time,
 * and the consumers stay). */
typedef struct tasks_ctx {
    conc_queue_t *q;
    long per_producer;
    unsigned char *seen; /* plain: bumped by the consumer that got the item */
} tasks_ctx;

typedef struct tasks_arg {
    tasks_ctx *c;
    int index;
} tasks_arg;

static void *tasks_producer(void *p) {
    tasks_arg *a = (tasks_arg *)p;
    for (long i = 0; i < a->c->per_producer; i++) {
        long item = a->index * a->c->per_producer + i;
        TH_CHECK_EQ(conc_queue_push_task(a->c->q, &item), 0);
    }
    return NULL;
}

static void *tasks_consumer(void *p) {
    tasks_arg *a = (tasks_arg *)p;
    long item;
    while (conc_queue_pop(a->c->q, &item) == 0) {
        a->c->seen[item]++;
        TH_CHECK_EQ(conc_queue_task_done(a->c->q), 0);
    }
    return NULL;
}

static void queue_tasks_stress_join_sees_every_item(void) {
    enum { PRODUCERS = 2 };
    tasks_ctx c;
    memset(&c, 0, sizeof c);
    int consumers = th_threads(4);
    TH_CHECK(consumers <= 32);
    c.per_producer = th_iters(20000);
    long total = PRODUCERS * c.per_producer;
    c.seen = (unsigned char *)calloc((size_t)total, 1);
    TH_CHECK(c.seen != NULL);
    TH_CHECK_EQ(conc_queue_create(&c.q, 64, sizeof(long)), 0);
    pthread_t ct[32], pt[PRODUCERS];
    tasks_arg ca[32], pa[PRODUCERS];
    for (int i = 0; i < consumers; i++) {
        ca[i] = (tasks_arg){&c, i};
        TH_CHECK_EQ(pthread_create(&ct[i], NULL, tasks_consumer, &ca[i]), 0);
    }
    for (int round = 1; round <= 3; round++) {
        for (int i = 0; i < PRODUCERS; i++) {
            pa[i] = (tasks_arg){&c, i};
            TH_CHECK_EQ(pthread_create(&pt[i], NULL, tasks_producer, &pa[i]), 0);
        }
        for (int i = 0; i < PRODUCERS; i++)
            pthread_join(pt[i], NULL); /* every item of the round is counted */
        conc_queue_join(c.q);
        for (long k = 0; k < total; k++)
            TH_CHECK_EQ(c.seen[k], round); /* each item processed exactly once per round */
        TH_CHECK_EQ(conc_queue_unfinished(c.q), 0);
    }
    conc_queue_close(c.q);
    for (int i = 0; i < consumers; i++)
        pthread_join(ct[i], NULL);
    free(c.seen);
    conc_queue_destroy(c.q);
}

/* ---- executor: initializer, name prefix, shutdown without waiting ------------------------- */

static int inits;                /* relaxed: initializer calls */
static __thread int initialized; /* set by the initializer in its own worker */

static int init_worker(void *arg) {
    TH_CHECK(arg == (void *)&inits);
    initialized = 1;
    __atomic_fetch_add(&inits, 1, __ATOMIC_RELAXED);
    return 0;
}

static int needs_init(void *arg, void **result) {
    (void)arg;
    *result = NULL;
    return initialized ? 0 : 99; /* the initializer ran first in this worker */
}

static void executor_initializer_runs_first_in_every_worker(void) {
    conc_executor_options_t o;
    memset(&o, 0, sizeof o);
    o.threads = 4;
    o.initializer = init_worker;
    o.initarg = &inits;
    conc_executor_t *ex;
    TH_CHECK_EQ(conc_executor_create_with(&ex, &o), 0);
    conc_future_t *fs[200];
    for (int i = 0; i < 200; i++)
        TH_CHECK_EQ(conc_executor_submit(ex, needs_init, NULL, &fs[i]), 0);
    for (int i = 0; i < 200; i++) {
        TH_CHECK_EQ(conc_future_wait(fs[i]), 0);
        conc_future_release(fs[i]);
    }
    TH_CHECK_EQ(conc_executor_broken(ex), 0);
    conc_executor_destroy(ex);
    TH_CHECK_EQ(inits, 4); /* once per worker, every worker */
}

static int failing_init(void *arg) {
    (void)arg;
    return 42;
}

static void executor_failing_initializer_breaks_it(void) {
    conc_executor_options_t o;
    memset(&o, 0, sizeof o);
    o.threads = 2;
    o.initializer = failing_init;
    conc_executor_t *ex;
    TH_CHECK_EQ(conc_executor_create_with(&ex, &o), 0);
    conc_future_t *f;
    int e = conc_executor_submit(ex, needs_init, NULL, &f);
    if (e == 0) { /* queued before the first initializer failed: failed, never run */
        TH_CHECK_EQ(conc_future_wait(f), CONC_EXECUTOR_BROKEN);
        TH_CHECK_EQ(conc_future_state(f), CONC_FUTURE_FAILED);
        conc_future_release(f);
    } else {
        TH_CHECK_EQ(e, CONC_EXECUTOR_BROKEN);
    }
    while (conc_executor_broken(ex) == 0)
        th_sleep_ns(100000);
    TH_CHECK_EQ(conc_executor_broken(ex), 42);
    TH_CHECK_EQ(conc_executor_submit(ex, needs_init, NULL, &f), CONC_EXECUTOR_BROKEN);
    TH_CHECK(f == NULL);
    conc_executor_destroy(ex);
}

static int fail_second(void *arg) {
    int *calls = (int *)arg; /* relaxed atomic */
    if (__atomic_add_fetch(calls, 1, __ATOMIC_RELAXED) == 2)
        return 7;
    initialized = 1;
    return 0;
}

/* One worker's initializer fails, the others' succeed: the executor breaks, and the workers
 * whose initializer succeeded still end (destroy returns: the case's deadline would catch a
 * worker waiting forever for the failed one). */
static void executor_one_failing_initializer_still_ends(void) {
    int calls = 0;
    conc_executor_options_t o;
    memset(&o, 0, sizeof o);
    o.threads = 4;
    o.initializer = fail_second;
    o.initarg = &calls;
    conc_executor_t *ex;
    TH_CHECK_EQ(conc_executor_create_with(&ex, &o), 0);
    conc_future_t *fs[50];
    int queued = 0;
    for (int i = 0; i < 50; i++)
        if (conc_executor_submit(ex, needs_init, NULL, &fs[queued]) == 0)
            queued++;
    for (int i = 0; i < queued; i++) { /* ran after its worker's init succeeded, or failed */
        int e = conc_future_wait(fs[i]);
        TH_CHECK(e == 0 || e == CONC_EXECUTOR_BROKEN);
        conc_future_release(fs[i]);
    }
    while (conc_executor_broken(ex) == 0)
        th_sleep_ns(100000);
    TH_CHECK_EQ(conc_executor_broken(ex), 7);
    conc_executor_destroy(ex);
    TH_CHECK_EQ(calls, 4);
}

static int report_name(void *arg, void **result) {
    char *name = (char *)arg; /* 16 bytes, this task's own */
    TH_CHECK_EQ(prctl(PR_GET_NAME, name, 0, 0, 0), 0);
    *result = name;
    return 0;
}

static void executor_workers_carry_the_name_prefix(void) {
    conc_executor_options_t o;
    memset(&o, 0, sizeof o);
    o.threads = 3;
    o.name_prefix = "verbs-pool-long-prefix"; /* cut to 13 bytes: 15 less "_" and one digit */
    conc_executor_t *ex;
    TH_CHECK_EQ(conc_executor_create_with(&ex, &o), 0);
    char names[12][16];
    memset(names, 0, sizeof names); /* MSan does not see PR_GET_NAME write them */
    conc_future_t *fs[12];
    for (int i = 0; i < 12; i++)
        TH_CHECK_EQ(conc_executor_submit(ex, report_name, names[i], &fs[i]), 0);
    for (int i = 0; i < 12; i++) {
        TH_CHECK_EQ(conc_future_wait(fs[i]), 0);
        TH_CHECK_MSG(strncmp(names[i], "verbs-pool-lo_", 14) == 0, "worker name %s", names[i]);
        int index = atoi(names[i] + 14);
        TH_CHECK(index >= 0 && index < 3);
        conc_future_release(fs[i]);
    }
    conc_executor_destroy(ex);
}

static int wait_for_gate(void *arg, void **result) {
    conc_event_wait((conc_event_t *)arg);
    *result = arg;
    return 0;
}

/* shutdown_nowait returns while a task is still running (it waits for a gate the test opens
 * only afterwards: a joining shutdown would never return), refuses new work, and the task
 * still completes; destroy joins. */
static void executor_shutdown_nowait_returns_before_tasks_end(void) {
    conc_executor_t *ex;
    TH_CHECK_EQ(conc_executor_create(&ex, 2, 16), 0);
    conc_event_t gate = CONC_EVENT_INIT;
    conc_future_t *f, *g;
    TH_CHECK_EQ(conc_executor_submit(ex, wait_for_gate, &gate, &f), 0);
    conc_executor_shutdown_nowait(ex, false);
    TH_CHECK_EQ(conc_executor_submit(ex, wait_for_gate, &gate, &g), EPIPE);
    TH_CHECK(!conc_future_is_done(f)); /* still waiting for the gate */
    conc_event_set(&gate);
    TH_CHECK_EQ(conc_future_wait(f), 0); /* queued work still runs */
    conc_future_release(f);
    conc_executor_destroy(ex);
}

TH_MAIN("verbs", TH_CASE(cond_wait_for_checks_before_waiting),
        TH_CASE(cond_wait_for_rechecks_after_every_wake), TH_CASE(cond_wait_for_times_out_false),
        TH_CASE(cond_wait_rlock_for_checks_first_and_refuses_non_owner),
        TH_CASE(cond_wait_rlock_for_rechecks_after_every_wake),
        TH_CASE(cond_wait_rlock_for_times_out), TH_CASE(with_lock_releases_on_every_way_out),
        TH_CASE(with_lock_stress_exact_total), TH_CASE(with_rwlock_releases_on_every_way_out),
        TH_CASE(with_rlock_releases_on_every_way_out),
        TH_CASE(with_rwlock_rlock_stress_exact_total), TH_CASE(queue_tasks_count_and_refuse),
        TH_CASE(queue_tasks_stress_join_sees_every_item),
        TH_CASE(executor_initializer_runs_first_in_every_worker),
        TH_CASE(executor_failing_initializer_breaks_it),
        TH_CASE(executor_one_failing_initializer_still_ends),
        TH_CASE(executor_workers_carry_the_name_prefix),
        TH_CASE(executor_shutdown_nowait_returns_before_tasks_end))
