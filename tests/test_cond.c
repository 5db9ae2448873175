/* tests/test_cond.c - conc_cond: unit cases, race and deadlock stress, rlock waits,
 * process-shared use across fork.
 * SPDX-License-Identifier: MIT */
#include "harness.h"

/* Count futex syscalls (before any conc header): "notify with nobody waiting makes no
 * syscall" is a claim this file checks by counting. Relaxed: a statistic. */
static unsigned long futex_calls;
#define CONC_FUTEX_HOOK(kind) ((void)(kind), __atomic_fetch_add(&futex_calls, 1, __ATOMIC_RELAXED))
#include "conc/cond.h"

#include <signal.h>
#include <sys/mman.h>

static unsigned long futex_count(void) {
    return __atomic_load_n(&futex_calls, __ATOMIC_RELAXED);
}

static uint32_t waiters_of(const conc_cond_t *c) {
    return conc_load(&c->state, CONC_RELAXED) & CONC__COND_WAITER_MASK;
}

/* Runs fn on a new thread; join with pthread_join. */
static pthread_t spawn(void *(*fn)(void *), void *arg) {
    pthread_t t;
    int e = pthread_create(&t, NULL, fn, arg);
    TH_CHECK_MSG(e == 0, "pthread_create: %s", strerror(e));
    return t;
}

/* ---- unit -------------------------------------------------------------------------------- */

static void cond_is_eight_bytes_and_zero_is_ready(void) {
    TH_CHECK(sizeof(conc_cond_t) <= 8);
    conc_cond_t zero;
    memset(&zero, 0, sizeof zero);
    conc_cond_t init = CONC_COND_INIT;
    TH_CHECK(memcmp(&zero, &init, sizeof zero) == 0);
    conc_cond_t c;
    memset(&c, 0xff, sizeof c);
    conc_cond_init(&c, 0);
    TH_CHECK(memcmp(&zero, &c, sizeof zero) == 0);
    conc_cond_init(&c, CONC_SHARED);
    TH_CHECK_EQ(c.state, CONC__COND_SHARED);
    TH_CHECK_EQ(c.seq, 0);

    /* a zero-filled cond works as is: a timed wait on it times out and leaves it clean */
    conc_lock_t l = CONC_LOCK_INIT;
    conc_lock_acquire(&l);
    int64_t dl = conc_deadline_in(CONC_MS);
    TH_CHECK_EQ(conc_cond_wait_until(&zero, &l, dl), ETIMEDOUT);
    TH_CHECK_NOT_EARLY(dl);
    TH_CHECK(conc_lock_is_locked(&l));
    conc_lock_release(&l);
    TH_CHECK_EQ(zero.state, 0);
}

static void cond_notify_without_waiters_makes_no_syscall(void) {
    conc_cond_t c = CONC_COND_INIT;
    conc_cond_t s;
    conc_cond_init(&s, CONC_SHARED);
    unsigned long before = futex_count();
    for (int i = 0; i < 1000; i++) {
        conc_cond_notify(&c);
        conc_cond_notify_all(&c);
        conc_cond_notify(&s);
        conc_cond_notify_all(&s);
    }
    TH_CHECK_EQ(futex_count() - before, 0);
    TH_CHECK_EQ(c.seq, 0); /* not even an RMW: the sequence never moved */
    TH_CHECK_EQ(s.seq, 0);
    TH_CHECK_EQ(s.state, CONC__COND_SHARED);
}

static void cond_wait_until_past_deadline_times_out_with_lock_held(void) {
    conc_cond_t c = CONC_COND_INIT;
    conc_lock_t l = CONC_LOCK_INIT;
    conc_lock_acquire(&l);
    TH_CHECK_EQ(conc_cond_wait_until(&c, &l, conc_now() - 1), ETIMEDOUT);
    TH_CHECK_EQ(conc_cond_wait_until(&c, &l, 0), ETIMEDOUT);
    TH_CHECK_EQ(conc_cond_wait_until(&c, &l, INT64_MIN), ETIMEDOUT);
    TH_CHECK(conc_lock_is_locked(&l));
    TH_CHECK_EQ(conc_lock_try_acquire(&l), EBUSY);
    TH_CHECK_EQ(waiters_of(&c), 0);
    conc_lock_release(&l);
    TH_CHECK_EQ(l.word, 0);
    TH_CHECK_EQ(c.state, 0); /* SLEEPING cleared by the last waiter out */
}

static void cond_wait_until_never_early(void) {
    conc_cond_t c = CONC_COND_INIT;
    conc_lock_t l = CONC_LOCK_INIT;
    conc_lock_acquire(&l);
    const int64_t waits[] = {1, 50 * CONC_US, CONC_MS, 3 * CONC_MS, 10 * CONC_MS};
    for (size_t i = 0; i < sizeof waits / sizeof waits[0]; i++) {
        int64_t deadline = conc_deadline_in(waits[i]);
        int r = conc_cond_wait_until(&c, &l, deadline);
        TH_CHECK_EQ(r, ETIMEDOUT); /* nobody notifies this cond */
        TH_CHECK_NOT_EARLY(deadline);
        TH_CHECK(conc_lock_is_locked(&l));
    }
    conc_lock_release(&l);
}

/* At the deadline another thread holds the lock: the timed-out wait returns only once it
 * has the lock again (it cannot return "ETIMEDOUT without the lock"). The holder can take the
 * lock only while the waiter is inside its wait, and on a loaded machine it may not get there
 * before the deadline: then the wait legitimately times out with the lock free, and the
 * waiter tries again with a fresh deadline. The scenario, not a timing, ends the loop. */
typedef struct holder_ctx {
    conc_lock_t lock;
    conc_cond_t cond;
    int64_t deadline;    /* plain: written by the waiter under the lock */
    int taken;           /* plain: written by the holder under the lock */
    int64_t released_at; /* plain: written by the holder under the lock */
} holder_ctx;

static void *hold_past_deadline(void *arg) {
    holder_ctx *h = (holder_ctx *)arg;
    conc_lock_acquire(&h->lock); /* possible only once the waiter released it in its wait */
    h->taken = 1;
    int64_t until = h->deadline + 5 * CONC_MS;
    for (int64_t now = conc_now(); now < until; now = conc_now())
        th_sleep_ns(until - now);
    h->released_at = conc_now();
    conc_lock_release(&h->lock);
    return NULL;
}

static void cond_timed_out_wait_returns_with_lock_held(void) {
    holder_ctx h = {CONC_LOCK_INIT, CONC_COND_INIT, 0, 0, 0};
    conc_lock_acquire(&h.lock);
    pthread_t t = spawn(hold_past_deadline, &h);
    while (!h.taken) {
        h.deadline = conc_deadline_in(10 * CONC_MS);
        int r;
        while ((r = conc_cond_wait_until(&h.cond, &h.lock, h.deadline)) == 0) {
        } /* nobody notifies: a 0 is a spurious wakeup, and the wait goes on */
        TH_CHECK_EQ(r, ETIMEDOUT);
        TH_CHECK_NOT_EARLY(h.deadline);
        TH_CHECK(conc_lock_is_locked(&h.lock));
        TH_CHECK_MSG(!h.taken || h.released_at != 0,
                     "returned before the holder released the lock");
    }
    TH_CHECK(conc_now() >= h.released_at);
    conc_lock_release(&h.lock);
    pthread_join(t, NULL);
}

/* A plain wait returns once notified; the notify comes from a thread that changed the
 * predicate under the lock. Both notify placements (inside, after the release) work. */
typedef struct flag_ctx {
    conc_lock_t lock;
    conc_cond_t cond;
    int flag;   /* plain: guarded by lock */
    int inside; /* notify with the lock held? */
    int use_all;
} flag_ctx;

static void *set_flag(void *arg) {
    flag_ctx *f = (flag_ctx *)arg;
    /* wait until the main thread is registered as a waiter (no sleep-and-hope) */
    while (waiters_of(&f->cond) == 0)
        sched_yield();
    conc_lock_acquire(&f->lock);
    f->flag = 1;
    if (f->inside)
        f->use_all ? conc_cond_notify_all(&f->cond) : conc_cond_notify(&f->cond);
    conc_lock_release(&f->lock);
    if (!f->inside)
        f->use_all ? conc_cond_notify_all(&f->cond) : conc_cond_notify(&f->cond);
    return NULL;
}

static void cond_wait_returns_after_notify(void) {
    for (int mode = 0; mode < 4; mode++) {
        flag_ctx f = {CONC_LOCK_INIT, CONC_COND_INIT, 0, mode & 1, mode >> 1};
        conc_lock_acquire(&f.lock);
        pthread_t t = spawn(set_flag, &f);
        while (!f.flag)
            conc_cond_wait(&f.cond, &f.lock);
        TH_CHECK(conc_lock_is_locked(&f.lock));
        conc_lock_release(&f.lock);
        pthread_join(t, NULL);
        TH_CHECK_EQ(f.cond.state, 0);
        TH_CHECK(f.cond.seq >= 1); /* the notify found a waiter, so it moved the sequence */
    }
}

/* The sleep path proper: the waiter is asleep in the kernel (SLEEPING set, spin long over)
 * before the notify, so only a futex wake can get it out. */
static void *notify_when_asleep(void *arg) {
    flag_ctx *f = (flag_ctx *)arg;
    while (!(conc_load(&f->cond.state, CONC_RELAXED) & CONC__COND_SLEEPING))
        sched_yield();
    th_sleep_ns(2 * CONC_MS); /* likely asleep by now; either way the test is valid */
    conc_lock_acquire(&f->lock);
    f->flag = 1;
    conc_cond_notify(&f->cond);
    conc_lock_release(&f->lock);
    return NULL;
}

static void cond_sleeping_waiter_is_woken(void) {
    flag_ctx f = {CONC_LOCK_INIT, CONC_COND_INIT, 0, 1, 0};
    unsigned long before = futex_count();
    conc_lock_acquire(&f.lock);
    pthread_t t = spawn(notify_when_asleep, &f);
    while (!f.flag)
        conc_cond_wait(&f.cond, &f.lock);
    conc_lock_release(&f.lock);
    pthread_join(t, NULL);
    TH_CHECK(futex_count() - before >= 1); /* the waiter slept, so someone made a syscall */
    TH_CHECK_EQ(f.cond.state, 0);
}

/* One notify_all reaches every waiter: they wait for a generation that moves exactly once,
 * so a waiter left behind would hang (the watchdog would report it). */
typedef struct gate_ctx {
    conc_lock_t lock;
    conc_cond_t cond;
    int arrived; /* plain: guarded by lock */
    int open;
    int left;
} gate_ctx;

static void gate_waiter(int index, void *arg) {
    gate_ctx *g = (gate_ctx *)arg;
    (void)index;
    conc_lock_acquire(&g->lock);
    g->arrived++;
    while (!g->open)
        conc_cond_wait(&g->cond, &g->lock);
    g->left++;
    conc_lock_release(&g->lock);
}

static void *gate_runner(void *arg) {
    th_run_threads(th_threads(8), gate_waiter, arg);
    return NULL;
}

static void cond_notify_all_wakes_every_waiter(void) {
    int n = th_threads(8);
    for (int round = 0; round < 20; round++) {
        gate_ctx g = {CONC_LOCK_INIT, CONC_COND_INIT, 0, 0, 0};
        pthread_t t = spawn(gate_runner, &g);
        for (;
             ;) { /* arrived == n under the lock: all n registered (they only release it in wait) */
            conc_lock_acquire(&g.lock);
            if (g.arrived == n)
                break;
            conc_lock_release(&g.lock);
            sched_yield();
        }
        TH_CHECK_EQ(waiters_of(&g.cond), (uint32_t)n);
        g.open = 1;
        if (round & 1) {
            conc_cond_notify_all(&g.cond);
            conc_lock_release(&g.lock);
        } else {
            conc_lock_release(&g.lock);
            conc_cond_notify_all(&g.cond);
        }
        pthread_join(t, NULL);
        TH_CHECK_EQ(g.left, n);
        TH_CHECK_EQ(g.cond.state, 0);
    }
}

/* n waiters, n notifies, one token each: each notify lets at least one waiter through, so
 * all get through. */
typedef struct token_ctx {
    conc_lock_t lock;
    conc_cond_t cond;
    int arrived, tokens, served; /* plain: guarded by lock */
} token_ctx;

static void token_waiter(int index, void *arg) {
    token_ctx *k = (token_ctx *)arg;
    (void)index;
    conc_lock_acquire(&k->lock);
    k->arrived++;
    while (k->tokens == 0)
        conc_cond_wait(&k->cond, &k->lock);
    k->tokens--;
    k->served++;
    conc_lock_release(&k->lock);
}

static void *token_runner(void *arg) {
    th_run_threads(th_threads(8), token_waiter, arg);
    return NULL;
}

static void cond_each_notify_releases_a_waiter(void) {
    int n = th_threads(8);
    token_ctx k = {CONC_LOCK_INIT, CONC_COND_INIT, 0, 0, 0};
    pthread_t t = spawn(token_runner, &k);
    for (int given = 0; given < n;) {
        conc_lock_acquire(&k.lock);
        if (k.arrived > given) { /* one token per waiter known to be waiting or served */
            k.tokens++;
            given++;
            conc_cond_notify(&k.cond);
        }
        conc_lock_release(&k.lock);
        sched_yield();
    }
    pthread_join(t, NULL);
    TH_CHECK_EQ(k.served, n);
    TH_CHECK_EQ(k.tokens, 0);
    TH_CHECK_EQ(k.cond.state, 0);
}

/* Signals delivered to a timed waiter neither end the wait early nor stretch it. */
typedef struct signal_ctx {
    conc_lock_t lock;
    conc_cond_t cond;
    int done; /* relaxed atomic */
    int result;
    int64_t deadline, returned_at;
} signal_ctx;

static void *timed_waiter(void *arg) {
    signal_ctx *s = (signal_ctx *)arg;
    conc_lock_acquire(&s->lock);
    s->result = conc_cond_wait_until(&s->cond, &s->lock, s->deadline);
    s->returned_at = conc_now();
    conc_lock_release(&s->lock);
    __atomic_store_n(&s->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

static void cond_until_survives_signals_keeps_deadline(void) {
    th_interrupt_waits_with(SIGUSR1);
    TH_UNTIL_SIGNALLED(sent) {
        signal_ctx s = {CONC_LOCK_INIT, CONC_COND_INIT, 0, -1, conc_deadline_in(50 * CONC_MS), 0};
        sent = th_run_interrupted(timed_waiter, &s, SIGUSR1, &s.done);
        TH_CHECK_EQ(s.result, ETIMEDOUT); /* EINTR sleeps again: nobody notified */
        TH_CHECK(s.returned_at >= s.deadline);
    }
}

/* ---- rlock waits ------------------------------------------------------------------------- */

typedef struct rlock_ctx {
    conc_rlock_t r;
    conc_cond_t cond;
    int flag; /* plain: guarded by r */
} rlock_ctx;

/* Needs the rlock fully released: a waiter that gave up one level of three would block it. */
static void *rlock_setter(void *arg) {
    rlock_ctx *x = (rlock_ctx *)arg;
    while (waiters_of(&x->cond) == 0)
        sched_yield();
    conc_rlock_acquire(&x->r);
    conc_rlock_acquire(&x->r); /* re-entrant here too */
    x->flag = 1;
    conc_cond_notify(&x->cond);
    TH_CHECK_EQ(conc_rlock_release(&x->r), 0);
    TH_CHECK_EQ(conc_rlock_release(&x->r), 0);
    return NULL;
}

static void cond_wait_rlock_restores_full_depth(void) {
    rlock_ctx x = {CONC_RLOCK_INIT, CONC_COND_INIT, 0};
    for (int i = 0; i < 3; i++)
        conc_rlock_acquire(&x.r);
    pthread_t t = spawn(rlock_setter, &x);
    while (!x.flag)
        TH_CHECK_EQ(conc_cond_wait_rlock(&x.cond, &x.r), 0);
    TH_CHECK(conc_rlock_is_owned(&x.r));
    TH_CHECK_EQ(x.r.depth, 3);
    pthread_join(t, NULL);

    /* timed: ETIMEDOUT, still owned at the same depth */
    int64_t deadline = conc_deadline_in(2 * CONC_MS);
    TH_CHECK_EQ(conc_cond_wait_rlock_until(&x.cond, &x.r, deadline), ETIMEDOUT);
    TH_CHECK_NOT_EARLY(deadline);
    TH_CHECK(conc_rlock_is_owned(&x.r));
    TH_CHECK_EQ(x.r.depth, 3);
    TH_CHECK_EQ(conc_cond_wait_rlock_until(&x.cond, &x.r, 0), ETIMEDOUT); /* past deadline */
    TH_CHECK_EQ(x.r.depth, 3);
    for (int i = 0; i < 3; i++)
        TH_CHECK_EQ(conc_rlock_release(&x.r), 0);
    TH_CHECK_EQ(conc_rlock_release(&x.r), EPERM); /* exactly three levels were restored */
    TH_CHECK(!conc_lock_is_locked(&x.r.lock));
    TH_CHECK_EQ(x.cond.state, 0);
}

typedef struct owner_ctx {
    conc_rlock_t *r;
    int phase; /* acq/rel atomic: 1 holds it, 2 may release */
} owner_ctx;

static void *hold_rlock(void *arg) {
    owner_ctx *o = (owner_ctx *)arg;
    conc_rlock_acquire(o->r);
    conc_rlock_acquire(o->r);
    __atomic_store_n(&o->phase, 1, __ATOMIC_RELEASE);
    while (__atomic_load_n(&o->phase, __ATOMIC_ACQUIRE) != 2)
        sched_yield();
    TH_CHECK_EQ(o->r->depth, 2); /* the other thread's EPERM calls touched nothing */
    TH_CHECK_EQ(conc_rlock_release(o->r), 0);
    TH_CHECK_EQ(conc_rlock_release(o->r), 0);
    return NULL;
}

static void cond_wait_rlock_by_non_owner_is_eperm(void) {
    conc_rlock_t r = CONC_RLOCK_INIT;
    conc_cond_t c = CONC_COND_INIT;
    unsigned long before = futex_count();
    TH_CHECK_EQ(conc_cond_wait_rlock(&c, &r), EPERM); /* nobody holds it */
    TH_CHECK_EQ(conc_cond_wait_rlock_until(&c, &r, conc_deadline_in(CONC_MS)), EPERM);
    TH_CHECK_EQ(futex_count() - before, 0);
    TH_CHECK_EQ(c.state, 0); /* nothing registered */

    owner_ctx o = {&r, 0};
    pthread_t t = spawn(hold_rlock, &o);
    while (__atomic_load_n(&o.phase, __ATOMIC_ACQUIRE) != 1)
        sched_yield();
    TH_CHECK_EQ(conc_cond_wait_rlock(&c, &r), EPERM); /* someone else holds it */
    TH_CHECK_EQ(conc_cond_wait_rlock_until(&c, &r, CONC_FOREVER), EPERM);
    TH_CHECK(conc_lock_is_locked(&r.lock));
    TH_CHECK_EQ(c.state, 0);
    __atomic_store_n(&o.phase, 2, __ATOMIC_RELEASE);
    pthread_join(t, NULL);
    TH_CHECK(!conc_lock_is_locked(&r.lock));
}

/* ---- misuse that cannot be reported: aborts with a message -------------------------------- */

static void wait_on_unheld_lock(void) {
    conc_lock_t l = CONC_LOCK_INIT;
    conc_cond_t c = CONC_COND_INIT;
    conc_cond_wait(&c, &l);
}

static void wait_with_shared_mismatch(void) {
    conc_lock_t l = CONC_LOCK_INIT; /* private */
    conc_cond_t c;
    conc_cond_init(&c, CONC_SHARED);
    conc_lock_acquire(&l);
    int r = conc_cond_wait_until(&c, &l, 0);
    (void)r;
}

static void wait_until_on_unheld_lock(void) {
    conc_lock_t l = CONC_LOCK_INIT;
    conc_cond_t c = CONC_COND_INIT;
    int r = conc_cond_wait_until(&c, &l, CONC_FOREVER);
    (void)r;
}

static bool cond_never(void *arg) {
    (void)arg;
    return false;
}

static void wait_for_on_unheld_lock(void) {
    conc_lock_t l = CONC_LOCK_INIT;
    conc_cond_t c = CONC_COND_INIT;
    bool r = conc_cond_wait_for(&c, &l, cond_never, NULL, CONC_FOREVER);
    (void)r;
}

static bool cond_always(void *arg) {
    (void)arg;
    return true;
}

/* wait_for checks the lock before pred's first run: a pred that already holds, or a past
 * deadline, never reaches a wait, and used to return with the lock never held. */
static void wait_for_true_pred_on_unheld_lock(void) {
    conc_lock_t l = CONC_LOCK_INIT;
    conc_cond_t c = CONC_COND_INIT;
    bool r = conc_cond_wait_for(&c, &l, cond_always, NULL, CONC_FOREVER);
    printf("wait_for returned %d\n", r); /* not reached */
}

static void wait_for_past_deadline_on_unheld_lock(void) {
    conc_lock_t l = CONC_LOCK_INIT;
    conc_cond_t c = CONC_COND_INIT;
    bool r = conc_cond_wait_for(&c, &l, cond_never, NULL, 0);
    printf("wait_for returned %d\n", r); /* not reached */
}

static void wait_for_true_pred_with_shared_mismatch(void) {
    conc_lock_t l = CONC_LOCK_INIT; /* private */
    conc_cond_t c;
    conc_cond_init(&c, CONC_SHARED);
    conc_lock_acquire(&l);
    bool r = conc_cond_wait_for(&c, &l, cond_always, NULL, CONC_FOREVER);
    printf("wait_for returned %d\n", r); /* not reached */
}

/* An rlock is always private: a CONC_SHARED cond with one aborts in each rlock form (it used
 * to wait as a private pair). alarm: a header that waits instead fails the case at once. */
static void shared_cond_rlock(int form) {
    conc_rlock_t r = CONC_RLOCK_INIT;
    conc_cond_t c;
    conc_cond_init(&c, CONC_SHARED);
    conc_rlock_acquire(&r);
    alarm(2);
    int e = form == 0   ? conc_cond_wait_rlock(&c, &r)
            : form == 1 ? conc_cond_wait_rlock_until(&c, &r, conc_now())
                        : conc_cond_wait_rlock_for(&c, &r, cond_always, NULL, CONC_FOREVER);
    printf("returned %d\n", e); /* not reached */
}
static void wait_rlock_with_shared_cond(void) {
    shared_cond_rlock(0);
}
static void wait_rlock_until_with_shared_cond(void) {
    shared_cond_rlock(1);
}
static void wait_rlock_for_with_shared_cond(void) {
    shared_cond_rlock(2);
}

/* Each wait names itself, the call the user wrote. */
static void cond_misuse_aborts_with_message(void) {
    static const th_abort_case cases[] = {
        {wait_on_unheld_lock, "conc_cond_wait: the lock is not held"},
        {wait_until_on_unheld_lock, "conc_cond_wait_until: the lock is not held"},
        {wait_for_on_unheld_lock, "conc_cond_wait_for: the lock is not held"},
        {wait_for_true_pred_on_unheld_lock, "conc_cond_wait_for: the lock is not held"},
        {wait_for_past_deadline_on_unheld_lock, "conc_cond_wait_for: the lock is not held"},
        {wait_for_true_pred_with_shared_mismatch,
         "conc_cond_wait_for: the cond and the lock disagree on CONC_SHARED"},
        {wait_with_shared_mismatch,
         "conc_cond_wait_until: the cond and the lock disagree on CONC_SHARED"},
        {wait_rlock_with_shared_cond,
         "conc_cond_wait_rlock: a CONC_SHARED cond with an rlock (always private)"},
        {wait_rlock_until_with_shared_cond,
         "conc_cond_wait_rlock_until: a CONC_SHARED cond with an rlock (always private)"},
        {wait_rlock_for_with_shared_cond,
         "conc_cond_wait_rlock_for: a CONC_SHARED cond with an rlock (always private)"},
    };
    th_check_each_aborts(cases, sizeof cases / sizeof cases[0]);
}

/* A NULL pred: wait_for (a bool, no room for an error) aborts naming itself; wait_rlock_for
 * (an int) is EINVAL, with nothing released. Both used to call it: a jump to 0. */
static void wait_for_null_pred(void) {
    conc_lock_t l = CONC_LOCK_INIT;
    conc_cond_t c = CONC_COND_INIT;
    conc_lock_acquire(&l);
    bool r = conc_cond_wait_for(&c, &l, NULL, NULL, CONC_FOREVER);
    printf("wait_for returned %d\n", r); /* not reached */
}

static void cond_wait_for_null_pred_aborts_naming_itself(void) {
    char err[4096];
    int status = th_run_child_capturing_stderr(wait_for_null_pred, err, sizeof err);
    TH_CHECK_MSG(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "status %d", status);
    TH_CHECK_MSG(strstr(err, "conc_cond_wait_for: pred is NULL") != NULL, "stderr: %s", err);
}

static void cond_wait_rlock_for_null_pred_is_einval(void) {
    conc_rlock_t r = CONC_RLOCK_INIT;
    conc_cond_t c = CONC_COND_INIT;
    conc_rlock_acquire(&r);
    conc_rlock_acquire(&r);
    TH_CHECK_EQ(conc_cond_wait_rlock_for(&c, &r, NULL, NULL, CONC_FOREVER), EINVAL);
    TH_CHECK(conc_rlock_is_owned(&r));
    TH_CHECK_EQ(r.depth, 2u);
    TH_CHECK_EQ(c.state, 0); /* nothing registered */
    TH_CHECK_EQ(conc_rlock_release(&r), 0);
    TH_CHECK_EQ(conc_rlock_release(&r), 0);
    TH_CHECK(!conc_lock_is_locked(&r.lock));
}

/* ---- race stress -------------------------------------------------------------------------- */

/* A bounded buffer, two conditions, P producers and C consumers: every item is consumed
 * exactly once, none is lost, nobody hangs. Random placement of notify (inside or after the
 * lock), random timed waits, notify_all to stop the consumers. */
#define RING 4
typedef struct mpmc {
    conc_lock_t lock;
    conc_cond_t not_empty, not_full;
    int producers, consumers;
    long per_producer, total;
    /* plain, guarded by lock: */
    long ring[RING];
    int head, count;
    long taken;
    unsigned char *seen;
    int64_t sum; /* 64 bits where long has 32: the sum of 200,000 items passes 2^31 */
    /* relaxed instruments */
    long timeouts, waits;
} mpmc;

static void mpmc_worker(int index, void *arg) {
    mpmc *m = (mpmc *)arg;
    th_rng rng = th_rng_make((uint64_t)index + 100);
    long waits = 0, timeouts = 0;
    if (index < m->producers) {
        for (long i = 0; i < m->per_producer; i++) {
            long item = index * m->per_producer + i;
            conc_lock_acquire(&m->lock);
            while (m->count == RING) {
                waits++;
                if (th_rand_below(&rng, 4) == 0) {
                    int64_t dl = conc_deadline_in((int64_t)th_rand_below(&rng, 100) * CONC_US);
                    int r = conc_cond_wait_until(&m->not_full, &m->lock, dl);
                    TH_CHECK(r == 0 || r == ETIMEDOUT);
                    if (r == ETIMEDOUT) {
                        TH_CHECK(conc_now() >= dl);
                        timeouts++;
                    }
                } else {
                    conc_cond_wait(&m->not_full, &m->lock);
                }
            }
            m->ring[(m->head + m->count) % RING] = item;
            m->count++;
            if (th_rand_below(&rng, 2)) {
                conc_cond_notify(&m->not_empty);
                conc_lock_release(&m->lock);
            } else {
                conc_lock_release(&m->lock);
                conc_cond_notify(&m->not_empty);
            }
        }
    } else {
        conc_lock_acquire(&m->lock);
        for (;;) {
            while (m->count == 0 && m->taken < m->total) {
                waits++;
                if (th_rand_below(&rng, 4) == 0) {
                    int64_t dl = conc_deadline_in((int64_t)th_rand_below(&rng, 100) * CONC_US);
                    int r = conc_cond_wait_until(&m->not_empty, &m->lock, dl);
                    if (r == ETIMEDOUT) {
                        TH_CHECK(conc_now() >= dl);
                        timeouts++;
                    }
                } else {
                    conc_cond_wait(&m->not_empty, &m->lock);
                }
            }
            if (m->count == 0)
                break; /* everything taken */
            long item = m->ring[m->head];
            m->head = (m->head + 1) % RING;
            m->count--;
            m->taken++;
            TH_CHECK(item >= 0 && item < m->total);
            TH_CHECK_MSG(m->seen[item] == 0, "item %ld consumed twice", item);
            m->seen[item] = 1;
            m->sum += item;
            if (m->taken == m->total)
                conc_cond_notify_all(&m->not_empty); /* the other consumers can stop */
            conc_cond_notify(&m->not_full);
        }
        conc_lock_release(&m->lock);
    }
    __atomic_fetch_add(&m->waits, waits, __ATOMIC_RELAXED);
    __atomic_fetch_add(&m->timeouts, timeouts, __ATOMIC_RELAXED);
}

static void cond_stress_mpmc_handoff(void) {
    int n = th_threads(8);
    if (n < 2)
        n = 2;
    mpmc *m = (mpmc *)calloc(1, sizeof *m);
    TH_CHECK(m != NULL);
    conc_lock_init(&m->lock, 0);
    conc_cond_init(&m->not_empty, 0);
    conc_cond_init(&m->not_full, 0);
    m->producers = n / 2;
    m->consumers = n - n / 2;
    m->per_producer = th_iters(50000);
    m->total = m->producers * m->per_producer;
    m->seen = (unsigned char *)calloc((size_t)m->total, 1);
    TH_CHECK(m->seen != NULL);
    th_run_threads(n, mpmc_worker, m);
    TH_CHECK_EQ(m->taken, m->total);
    TH_CHECK_EQ(m->count, 0);
    for (long i = 0; i < m->total; i++)
        TH_CHECK_MSG(m->seen[i] == 1, "item %ld lost", i);
    TH_CHECK_EQ(m->sum, (int64_t)m->total * (m->total - 1) / 2);
    TH_CHECK_EQ(m->not_empty.state, 0);
    TH_CHECK_EQ(m->not_full.state, 0);
    TH_CHECK(m->waits > 0); /* the buffer is small: the waits really happened */
    printf("    %ld items, %d producers, %d consumers, %ld waits, %ld timed out\n", m->total,
           m->producers, m->consumers, m->waits, m->timeouts);
    free(m->seen);
    free(m);
}

/* The same hand-off over an rlock held at a random depth: every wait gives the whole depth
 * up and restores it. */
typedef struct rmpmc {
    conc_rlock_t r;
    conc_cond_t cond; /* one cond, two predicates: notify_all */
    long per_producer, total;
    int producers;
    long ring[RING];
    int head, count;
    long taken;
    int64_t sum;
} rmpmc;

static void rmpmc_worker(int index, void *arg) {
    rmpmc *m = (rmpmc *)arg;
    th_rng rng = th_rng_make((uint64_t)index + 200);
    bool producer = index < m->producers;
    for (long i = 0;; i++) {
        uint32_t depth = 1 + th_rand_below(&rng, 3);
        for (uint32_t d = 0; d < depth; d++)
            conc_rlock_acquire(&m->r);
        if (producer) {
            if (i == m->per_producer) {
                for (uint32_t d = 0; d < depth; d++)
                    TH_CHECK_EQ(conc_rlock_release(&m->r), 0);
                break;
            }
            while (m->count == RING) {
                TH_CHECK_EQ(conc_cond_wait_rlock(&m->cond, &m->r), 0);
                TH_CHECK_EQ(m->r.depth, depth);
            }
            m->ring[(m->head + m->count) % RING] = index * m->per_producer + i;
            m->count++;
        } else {
            while (m->count == 0 && m->taken < m->total) {
                int r =
                    conc_cond_wait_rlock_until(&m->cond, &m->r, conc_deadline_in(200 * CONC_US));
                TH_CHECK(r == 0 || r == ETIMEDOUT);
                TH_CHECK_EQ(m->r.depth, depth);
            }
            if (m->count == 0) {
                for (uint32_t d = 0; d < depth; d++)
                    TH_CHECK_EQ(conc_rlock_release(&m->r), 0);
                break;
            }
            m->sum += m->ring[m->head];
            m->head = (m->head + 1) % RING;
            m->count--;
            m->taken++;
        }
        conc_cond_notify_all(&m->cond);
        for (uint32_t d = 0; d < depth; d++)
            TH_CHECK_EQ(conc_rlock_release(&m->r), 0);
    }
}

static void cond_stress_rlock_handoff(void) {
    int n = th_threads(8);
    if (n < 2)
        n = 2;
    rmpmc *m = (rmpmc *)calloc(1, sizeof *m);
    TH_CHECK(m != NULL);
    conc_rlock_init(&m->r);
    conc_cond_init(&m->cond, 0);
    m->producers = n / 2;
    m->per_producer = th_iters(5000);
    m->total = m->producers * m->per_producer;
    th_run_threads(n, rmpmc_worker, m);
    TH_CHECK_EQ(m->taken, m->total);
    TH_CHECK_EQ(m->sum, (int64_t)m->total * (m->total - 1) / 2);
    TH_CHECK(!conc_lock_is_locked(&m->r.lock));
    TH_CHECK_EQ(m->cond.state, 0);
    free(m);
}

/* Notifies racing timeouts: consumers wait with deadlines from 0 to 50 us while producers
 * hand them work; a notify that meets a timing-out waiter must not be lost (the item is still
 * counted) and no ETIMEDOUT may come early. The lock is held after every return (the
 * "inside" instrument would read 2 otherwise). */
typedef struct race_ctx {
    conc_lock_t lock;
    conc_cond_t cond;
    int producers;
    long per_producer, total;
    long pending, taken; /* plain, guarded by lock */
    int inside;          /* relaxed instrument */
    long timeouts;       /* relaxed instrument */
} race_ctx;

static void race_worker(int index, void *arg) {
    race_ctx *x = (race_ctx *)arg;
    th_rng rng = th_rng_make((uint64_t)index + 300);
    long timeouts = 0;
    if (index < x->producers) {
        for (long i = 0; i < x->per_producer; i++) {
            conc_lock_acquire(&x->lock);
            x->pending++;
            conc_cond_notify(&x->cond);
            conc_lock_release(&x->lock);
            if (th_rand_below(&rng, 8) == 0)
                sched_yield();
        }
        return;
    }
    conc_lock_acquire(&x->lock);
    for (;;) {
        while (x->pending == 0 && x->taken < x->total) {
            int64_t dl = conc_now() + (int64_t)th_rand_below(&rng, 50) * CONC_US;
            int r = conc_cond_wait_until(&x->cond, &x->lock, dl);
            int was = __atomic_fetch_add(&x->inside, 1, __ATOMIC_RELAXED);
            TH_CHECK_MSG(was == 0, "wait returned without the lock");
            if (r == ETIMEDOUT) {
                TH_CHECK_MSG(conc_now() >= dl, "ETIMEDOUT early");
                timeouts++;
            } else {
                TH_CHECK_EQ(r, 0);
            }
            __atomic_fetch_sub(&x->inside, 1, __ATOMIC_RELAXED);
        }
        if (x->pending == 0)
            break;
        x->pending--;
        if (++x->taken == x->total)
            conc_cond_notify_all(&x->cond);
    }
    conc_lock_release(&x->lock);
    __atomic_fetch_add(&x->timeouts, timeouts, __ATOMIC_RELAXED);
}

static void cond_stress_notify_races_timeouts(void) {
    int n = th_threads(8);
    if (n < 2)
        n = 2;
    race_ctx x = {CONC_LOCK_INIT, CONC_COND_INIT, n / 2, th_iters(20000), 0, 0, 0, 0, 0};
    x.total = x.producers * x.per_producer;
    th_run_threads(n, race_worker, &x);
    TH_CHECK_EQ(x.taken, x.total);
    TH_CHECK_EQ(x.pending, 0);
    TH_CHECK_EQ(x.cond.state, 0);
    printf("    %ld items, %ld timed-out waits\n", x.total, x.timeouts);
}

/* ---- deadlock stress ---------------------------------------------------------------------- */

/* A token passes around a ring of 8 threads through one condition (notify_all: the threads
 * wait for different values of turn) and through one condition per thread (notify). */
typedef struct ring_ctx {
    conc_lock_t lock;
    conc_cond_t shared;
    conc_cond_t own[64];
    int n;
    long laps;
    int turn;    /* plain, guarded by lock */
    long passes; /* plain, guarded by lock */
    bool per_thread;
} ring_ctx;

static void ring_worker(int index, void *arg) {
    ring_ctx *g = (ring_ctx *)arg;
    conc_cond_t *mine = g->per_thread ? &g->own[index] : &g->shared;
    conc_lock_acquire(&g->lock);
    for (long lap = 0; lap < g->laps; lap++) {
        while (g->turn != index)
            conc_cond_wait(mine, &g->lock);
        g->passes++;
        g->turn = (index + 1) % g->n;
        if (g->per_thread)
            conc_cond_notify(&g->own[g->turn]);
        else
            conc_cond_notify_all(&g->shared);
    }
    conc_lock_release(&g->lock);
}

static void cond_deadlock_token_ring(void) {
    for (int mode = 0; mode < 2; mode++) {
        ring_ctx *g = (ring_ctx *)calloc(1, sizeof *g);
        TH_CHECK(g != NULL);
        g->n = th_threads(8);
        if (g->n > 64)
            g->n = 64;
        g->laps = th_iters(mode ? 3000 : 1000);
        g->per_thread = mode == 1;
        th_run_threads(g->n, ring_worker, g);
        TH_CHECK_EQ(g->passes, g->laps * g->n);
        TH_CHECK_EQ(g->turn, 0);
        TH_CHECK_EQ(g->shared.state, 0);
        for (int i = 0; i < g->n; i++)
            TH_CHECK_EQ(g->own[i].state, 0);
        free(g);
    }
}

/* notify_all storm: a reusable barrier made of lock + cond (the last arrival of a round
 * moves the generation and notifies all), plus extra threads notifying all the time (up to 8
 * times a round each). A single missed broadcast hangs the barrier. */
typedef struct barrier_ctx {
    conc_lock_t lock;
    conc_cond_t cond;
    int parties;
    long rounds;
    int arrived;       /* plain, guarded by lock */
    long generation;   /* plain, guarded by lock */
    long checksum[64]; /* per thread */
    int finished;      /* relaxed: parties done, the noise stops at all of them */
    long rounds_done;  /* relaxed: paces the noise */
    long noise;        /* relaxed instrumentation */
} barrier_ctx;

static void barrier_worker(int index, void *arg) {
    barrier_ctx *b = (barrier_ctx *)arg;
    if (index >= b->parties) { /* noise: notify_all with and without the lock */
        long k = 0;
        while (__atomic_load_n(&b->finished, __ATOMIC_RELAXED) < b->parties) {
            /* At most 8 per round and noise thread (alone it makes 2 to 5): beside a CPU hog
             * the noise got the core and the parties did not, 185 per round in 6 s. */
            if (k >= 8 * (__atomic_load_n(&b->rounds_done, __ATOMIC_RELAXED) + 1)) {
                th_sleep_ns(20 * 1000);
                continue;
            }
            if (k++ & 1) {
                conc_cond_notify_all(&b->cond);
            } else {
                conc_lock_acquire(&b->lock);
                conc_cond_notify_all(&b->cond);
                conc_lock_release(&b->lock);
            }
            sched_yield();
        }
        __atomic_fetch_add(&b->noise, k, __ATOMIC_RELAXED);
        return;
    }
    for (long r = 0; r < b->rounds; r++) {
        conc_lock_acquire(&b->lock);
        long gen = b->generation;
        TH_CHECK_EQ(gen, r); /* nobody can be a round ahead: the barrier holds */
        if (++b->arrived == b->parties) {
            b->arrived = 0;
            b->generation++;
            __atomic_store_n(&b->rounds_done, b->generation, __ATOMIC_RELAXED);
            conc_cond_notify_all(&b->cond);
        } else {
            while (b->generation == gen)
                conc_cond_wait(&b->cond, &b->lock);
        }
        conc_lock_release(&b->lock);
        b->checksum[index] += r;
    }
    __atomic_fetch_add(&b->finished, 1, __ATOMIC_RELAXED);
}

static void cond_deadlock_notify_all_storm(void) {
    barrier_ctx *b = (barrier_ctx *)calloc(1, sizeof *b);
    TH_CHECK(b != NULL);
    int n = th_threads(8);
    if (n > 60)
        n = 60;
    b->parties = n;
    b->rounds = th_iters(5000);
    conc_lock_init(&b->lock, 0);
    conc_cond_init(&b->cond, 0);
    th_run_threads(n + 2, barrier_worker, b); /* n parties, 2 noise threads */
    TH_CHECK_EQ(b->generation, b->rounds);
    for (int i = 0; i < n; i++)
        TH_CHECK_EQ(b->checksum[i], b->rounds * (b->rounds - 1) / 2);
    TH_CHECK_EQ(b->cond.state, 0);
    printf("    %d parties x %ld rounds, %ld notify_all from the noise\n", n, b->rounds, b->noise);
    free(b);
}

/* Timed waits under contention always return: holders keep the lock busy and notify at
 * random, timed waiters never hang, never return early, always hold the lock on return. */
typedef struct timed_ctx {
    conc_lock_t lock;
    conc_cond_t cond;
    int64_t stop_at;
    long value;       /* plain, guarded by lock: one per pass of every thread */
    int inside;       /* relaxed instrument */
    long returns[64]; /* per thread */
    long passes[64];  /* per thread */
} timed_ctx;

static void timed_worker(int index, void *arg) {
    timed_ctx *t = (timed_ctx *)arg;
    th_rng rng = th_rng_make((uint64_t)index + 400);
    long returns = 0, n;
    for (n = 0;; n++) {
        if (n > 0 && (n & 15) == 0 && th_now() > t->stop_at)
            break; /* n > 0: every thread waits at least once, however late it starts */
        conc_lock_acquire(&t->lock);
        if (index % 2 == 0) {
            int64_t dl = conc_now() + (int64_t)th_rand_below(&rng, 300) * CONC_US;
            int r = conc_cond_wait_until(&t->cond, &t->lock, dl);
            TH_CHECK(r == 0 || r == ETIMEDOUT);
            if (r == ETIMEDOUT)
                TH_CHECK_MSG(conc_now() >= dl, "ETIMEDOUT early");
            returns++;
        }
        int was = __atomic_fetch_add(&t->inside, 1, __ATOMIC_RELAXED);
        TH_CHECK_MSG(was == 0, "two threads inside: a wait returned without the lock");
        long value = t->value; /* split around the spin: a second thread inside loses one */
        for (uint32_t spin = th_rand_below(&rng, 200); spin; spin--)
            conc_cpu_relax(); /* hold the lock a while: the deadline often passes meanwhile */
        t->value = value + 1;
        __atomic_fetch_sub(&t->inside, 1, __ATOMIC_RELAXED);
        if (index % 2 == 1 && th_rand_below(&rng, 3) == 0)
            th_rand_below(&rng, 2) ? conc_cond_notify(&t->cond) : conc_cond_notify_all(&t->cond);
        conc_lock_release(&t->lock);
    }
    t->returns[index] = returns;
    t->passes[index] = n;
}

static void cond_deadlock_timed_waits_under_contention_return(void) {
    timed_ctx *t = (timed_ctx *)calloc(1, sizeof *t);
    TH_CHECK(t != NULL);
    int n = th_threads(8);
    if (n > 64)
        n = 64;
    t->stop_at = th_now() + th_duration_ns(1.0);
    th_run_threads(n, timed_worker, t);
    long total = 0, passes = 0;
    for (int i = 0; i < n; i += 2) {
        TH_CHECK_MSG(t->returns[i] > 0, "waiter %d never got through", i);
        total += t->returns[i];
    }
    for (int i = 0; i < n; i++)
        passes += t->passes[i];
    TH_CHECK_EQ(t->value, passes); /* every pass counted once: no wait returned without the lock */
    TH_CHECK_EQ(t->cond.state, 0);
    TH_CHECK(!conc_lock_is_locked(&t->lock));
    printf("    %ld timed waits returned\n", total);
    free(t);
}

/* ---- process-shared ----------------------------------------------------------------------- */

/* P processes take turns through one shared lock and cond (notify_all: each waits for its
 * own turn). Lock, cond and counter live in MAP_SHARED memory; no pointers in it. */
typedef struct shared_ring {
    conc_lock_t lock;
    conc_cond_t cond;
    int turn;     /* plain, guarded by lock */
    long counter; /* plain, guarded by lock */
} shared_ring;

static void cond_shared_across_fork(void) {
    enum { PROCS = 4 };
    long laps = th_iters(2000);
    shared_ring *s = (shared_ring *)mmap(NULL, sizeof *s, PROT_READ | PROT_WRITE,
                                         MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    TH_CHECK(s != MAP_FAILED);
    conc_lock_init(&s->lock, CONC_SHARED);
    conc_cond_init(&s->cond, CONC_SHARED);
    s->turn = 0;
    s->counter = 0;
    pid_t pids[PROCS];
    for (int p = 0; p < PROCS; p++) {
        pids[p] = fork();
        TH_CHECK(pids[p] >= 0);
        if (pids[p] == 0) {
            conc_lock_acquire(&s->lock);
            for (long lap = 0; lap < laps; lap++) {
                while (s->turn != p)
                    conc_cond_wait(&s->cond, &s->lock);
                s->counter++;
                s->turn = (p + 1) % PROCS;
                conc_cond_notify_all(&s->cond);
            }
            conc_lock_release(&s->lock);
            _exit(0);
        }
    }
    for (int p = 0; p < PROCS; p++) {
        int status;
        TH_CHECK_EQ(waitpid(pids[p], &status, 0), pids[p]);
        TH_CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %d status %d", p,
                     status);
    }
    TH_CHECK_EQ(s->counter, laps * PROCS);
    TH_CHECK_EQ(s->turn, 0);
    TH_CHECK_EQ(s->cond.state, CONC__COND_SHARED); /* no waiter left counted */
    TH_CHECK_EQ(s->lock.word, CONC__LOCK_SHARED);
    munmap(s, sizeof *s);
}

TH_MAIN("cond", TH_CASE(cond_is_eight_bytes_and_zero_is_ready),
        TH_CASE(cond_notify_without_waiters_makes_no_syscall),
        TH_CASE(cond_wait_until_past_deadline_times_out_with_lock_held),
        TH_CASE(cond_wait_until_never_early), TH_CASE(cond_timed_out_wait_returns_with_lock_held),
        TH_CASE(cond_wait_returns_after_notify), TH_CASE(cond_sleeping_waiter_is_woken),
        TH_CASE(cond_notify_all_wakes_every_waiter), TH_CASE(cond_each_notify_releases_a_waiter),
        TH_CASE(cond_until_survives_signals_keeps_deadline),
        TH_CASE(cond_wait_rlock_restores_full_depth),
        TH_CASE(cond_wait_rlock_by_non_owner_is_eperm), TH_CASE(cond_misuse_aborts_with_message),
        TH_CASE(cond_wait_for_null_pred_aborts_naming_itself),
        TH_CASE(cond_wait_rlock_for_null_pred_is_einval), TH_CASE_T(cond_stress_mpmc_handoff, 120),
        TH_CASE_T(cond_stress_rlock_handoff, 120),
        TH_CASE_T(cond_stress_notify_races_timeouts, 120), TH_CASE_T(cond_deadlock_token_ring, 120),
        TH_CASE_T(cond_deadlock_notify_all_storm, 120),
        TH_CASE_T(cond_deadlock_timed_waits_under_contention_return, 120),
        TH_CASE_T(cond_shared_across_fork, 120))
