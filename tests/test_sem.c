/* tests/test_sem.c - conc_sem: unit cases for every call and error code, race stress (never
 * more than N inside, tokens conserved), deadlock stress (a token around a ring, timed waits
 * under contention), and a process-shared semaphore across fork.
 * SPDX-License-Identifier: MIT */
#include "conc/sem.h"

#include "harness.h"

#include <signal.h>
#include <sys/mman.h>

/* Internals the tests may read: how many sleepers are registered right now. */
static unsigned sleepers_of(conc_sem_t *s) {
    return conc__sem_sleepers(__atomic_load_n(&s->word, __ATOMIC_RELAXED));
}

/* Once every caller has returned: no claim left in the count, no token handed and not picked
 * up, no sleeper registered; the count is the value. */
static void check_settled(conc_sem_t *s) {
    uint64_t w = __atomic_load_n(&s->word, __ATOMIC_RELAXED);
    TH_CHECK_EQ(conc__sem_handed(w), 0);
    TH_CHECK_EQ(conc__sem_sleepers(w), 0);
    TH_CHECK_EQ(conc__sem_count(w), (int64_t)conc_sem_value(s));
}

/* Waits (without assuming any timing) until n threads are registered sleepers. */
static void wait_for_sleepers(conc_sem_t *s, unsigned n) {
    while (sleepers_of(s) != n)
        sched_yield();
}

/* ---- unit -------------------------------------------------------------------------------- */

static void sem_is_sixteen_bytes_and_zero_is_empty(void) {
    TH_CHECK_EQ(sizeof(conc_sem_t), 16);
    conc_sem_t zero;
    memset(&zero, 0, sizeof zero);
    TH_CHECK_EQ(conc_sem_value(&zero), 0);
    TH_CHECK_EQ(conc_sem_try_acquire(&zero), EAGAIN);
    TH_CHECK_EQ(conc_sem_release(&zero, 2), 0); /* all-zero memory: unbounded, private */
    TH_CHECK_EQ(conc_sem_value(&zero), 2);
    conc_sem_t st = CONC_SEM_INIT(5);
    TH_CHECK_EQ(conc_sem_value(&st), 5);
    conc_sem_t bounded = CONC_SEM_INIT_BOUNDED(1, 2);
    TH_CHECK_EQ(conc_sem_value(&bounded), 1);
    TH_CHECK_EQ(conc_sem_release(&bounded, 1), 0);
    TH_CHECK_EQ(conc_sem_release(&bounded, 1), EOVERFLOW);
}

/* CONC_SEM_INIT_BOUNDED(5, 3) with constants does not compile (tests/frontdoor.sh checks that);
 * with run-time values a debug build aborts, naming the macro. The values come through
 * volatiles so that the compiler cannot see them. */
static volatile unsigned bounded_value = 5, bounded_max = 3;
static void init_bounded_value_above_max(void) {
    conc_sem_t s = CONC_SEM_INIT_BOUNDED(bounded_value, bounded_max);
    fprintf(stderr, "not reached: value %u\n", conc_sem_value(&s));
}
static void sem_init_bounded_value_above_max_aborts(void) {
    conc_sem_t ok = CONC_SEM_INIT_BOUNDED(bounded_max, bounded_max);
    TH_CHECK_EQ(conc_sem_value(&ok), 3);
    conc_sem_t unbounded = CONC_SEM_INIT_BOUNDED(bounded_value, 0u);
    TH_CHECK_EQ(conc_sem_value(&unbounded), 5);
    th_check_aborts_with(init_bounded_value_above_max, "CONC_SEM_INIT_BOUNDED: value > max");
}

/* CONC_SEM_INIT(-1) with a constant does not compile (tests/frontdoor.sh); with a run-time
 * value past CONC_SEM_VALUE_MAX a debug build aborts, naming the macro. It used to make a
 * semaphore whose count read as negative: waiters that do not exist, each taking a release's
 * token (here: 65,535 releases, then the next one yielding forever). */
static volatile int negative_value = -70000;
static volatile unsigned value_past_max = CONC_SEM_VALUE_MAX + 1u;
static void init_value_negative(void) {
    conc_sem_t s = CONC_SEM_INIT(negative_value);
    fprintf(stderr, "not reached: value %u\n", conc_sem_value(&s));
}
static void init_value_past_max(void) {
    conc_sem_t s = CONC_SEM_INIT(value_past_max);
    fprintf(stderr, "not reached: value %u\n", conc_sem_value(&s));
}
static void sem_init_value_past_value_max_aborts(void) {
    conc_sem_t ok = CONC_SEM_INIT(value_past_max - 1u);
    TH_CHECK_EQ(conc_sem_value(&ok), CONC_SEM_VALUE_MAX);
    TH_CHECK_EQ(conc_sem_release(&ok, 1), EOVERFLOW);
    th_check_aborts_with(init_value_negative, "CONC_SEM_INIT: value > CONC_SEM_VALUE_MAX");
    th_check_aborts_with(init_value_past_max, "CONC_SEM_INIT: value > CONC_SEM_VALUE_MAX");
}

static void sem_init_checks_value_and_max(void) {
    conc_sem_t s = CONC_SEM_INIT(7);
    TH_CHECK_EQ(conc_sem_init(&s, 3, 0, 0), 0);
    TH_CHECK_EQ(conc_sem_value(&s), 3);
    TH_CHECK_EQ(conc_sem_init(&s, 5, 5, 0), 0);
    TH_CHECK_EQ(conc_sem_value(&s), 5);
    TH_CHECK_EQ(conc_sem_init(&s, 0, 1, CONC_SHARED), 0);
    TH_CHECK_EQ(conc_sem_value(&s), 0);
    /* EINVAL leaves the semaphore as it was. */
    TH_CHECK_EQ(conc_sem_init(&s, 6, 5, 0), EINVAL);
    TH_CHECK_EQ(conc_sem_init(&s, CONC_SEM_VALUE_MAX + 1u, 0, 0), EINVAL);
    TH_CHECK_EQ(conc_sem_init(&s, 0, CONC_SEM_VALUE_MAX + 1u, 0), EINVAL);
    TH_CHECK_EQ(conc_sem_init(&s, 1, 0, 0x40), EINVAL); /* unknown flags */
    TH_CHECK_EQ(conc_sem_init(&s, UINT_MAX, 0, 0), EINVAL);
    TH_CHECK_EQ(conc_sem_value(&s), 0);
    TH_CHECK_EQ(conc_sem_release(&s, 1), 0);
    TH_CHECK_EQ(conc_sem_release(&s, 1), EOVERFLOW); /* still the bounded max-1 one */
    TH_CHECK_EQ(conc_sem_init(&s, CONC_SEM_VALUE_MAX, CONC_SEM_VALUE_MAX, 0), 0);
    TH_CHECK_EQ(conc_sem_value(&s), CONC_SEM_VALUE_MAX);
}

static void sem_acquire_release_count_tokens(void) {
    conc_sem_t s;
    TH_CHECK_EQ(conc_sem_init(&s, 2, 0, 0), 0);
    conc_sem_acquire(&s);
    TH_CHECK_EQ(conc_sem_try_acquire(&s), 0);
    TH_CHECK_EQ(conc_sem_value(&s), 0);
    TH_CHECK_EQ(conc_sem_try_acquire(&s), EAGAIN); /* empty: EAGAIN, not EBUSY */
    TH_CHECK_EQ(conc_sem_release(&s, 3), 0);
    TH_CHECK_EQ(conc_sem_value(&s), 3);
    TH_CHECK_EQ(conc_sem_acquire_until(&s, CONC_FOREVER), 0);
    TH_CHECK_EQ(conc_sem_acquire_until(&s, conc_deadline_in(CONC_SEC)), 0);
    conc_sem_acquire(&s);
    TH_CHECK_EQ(conc_sem_value(&s), 0);
    check_settled(&s);
}

static void sem_release_zero_is_einval(void) {
    conc_sem_t s = CONC_SEM_INIT(1);
    TH_CHECK_EQ(conc_sem_release(&s, 0), EINVAL);
    TH_CHECK_EQ(conc_sem_value(&s), 1);
    TH_CHECK_EQ(conc_sem_init(NULL, 1, 0, 0), EINVAL);
}

static void sem_bounded_overflow_releases_nothing(void) {
    conc_sem_t s;
    TH_CHECK_EQ(conc_sem_init(&s, 1, 3, 0), 0);
    TH_CHECK_EQ(conc_sem_release(&s, 3), EOVERFLOW); /* 1 + 3 > 3: none of the 3 released */
    TH_CHECK_EQ(conc_sem_value(&s), 1);
    TH_CHECK_EQ(conc_sem_release(&s, 2), 0);
    TH_CHECK_EQ(conc_sem_value(&s), 3);
    TH_CHECK_EQ(conc_sem_release(&s, 1), EOVERFLOW);
    TH_CHECK_EQ(conc_sem_release(&s, UINT_MAX), EOVERFLOW); /* no wraparound either */
    TH_CHECK_EQ(conc_sem_value(&s), 3);
    TH_CHECK_EQ(conc_sem_try_acquire(&s), 0);
    TH_CHECK_EQ(conc_sem_release(&s, 1), 0);
    TH_CHECK_EQ(conc_sem_value(&s), 3);
}

static void sem_unbounded_overflow_at_value_max(void) {
    conc_sem_t s;
    TH_CHECK_EQ(conc_sem_init(&s, CONC_SEM_VALUE_MAX - 1, 0, 0), 0);
    TH_CHECK_EQ(conc_sem_release(&s, 2), EOVERFLOW);
    TH_CHECK_EQ(conc_sem_value(&s), CONC_SEM_VALUE_MAX - 1);
    TH_CHECK_EQ(conc_sem_release(&s, 1), 0);
    TH_CHECK_EQ(conc_sem_release(&s, 1), EOVERFLOW);
    TH_CHECK_EQ(conc_sem_value(&s), CONC_SEM_VALUE_MAX);
    TH_CHECK_EQ(conc_sem_try_acquire(&s), 0); /* the max bits were not disturbed */
    TH_CHECK_EQ(conc_sem_value(&s), CONC_SEM_VALUE_MAX - 1);
}

/* More waiters' claims in the count than handed can hold (65,535), and a release of more
 * tokens than that: it hands them in steps as takers pick them up, and returns. The claims
 * are written into the word (70,000 waiters are more threads than pid_max allows here);
 * try_acquire is the taker: it claims and picks up a handed token in one CAS. */
typedef struct big_release {
    conc_sem_t sem;
    int done; /* relaxed: a flag the taker polls; the join orders the rest */
    int result;
} big_release;

static void *big_releaser(void *p) {
    big_release *b = (big_release *)p;
    b->result = conc_sem_release(&b->sem, 70000);
    __atomic_store_n(&b->done, 1, __ATOMIC_RELAXED);
    return NULL;
}

static void sem_release_past_what_handed_holds_goes_in_steps(void) {
    enum { CLAIMS = 70000 };
    big_release *b = (big_release *)calloc(1, sizeof *b);
    TH_CHECK(b);
    TH_CHECK_EQ(conc_sem_init(&b->sem, 0, 0, 0), 0);
    conc_store(&b->sem.word, (uint64_t)(-(int64_t)CLAIMS) << CONC__SEM_COUNT_SHIFT, CONC_RELAXED);
    pthread_t t;
    TH_CHECK_EQ(pthread_create(&t, NULL, big_releaser, b), 0);
    long taken = 0;
    int64_t give_up = conc_deadline_in(60 * CONC_SEC); /* a hang, not a timing: fails then */
    while (!__atomic_load_n(&b->done, __ATOMIC_RELAXED)) {
        TH_CHECK_MSG(conc_now() < give_up, "the release never returned (%ld taken)", taken);
        if (conc_sem_try_acquire(&b->sem) == 0)
            taken++;
        else
            sched_yield();
    }
    TH_CHECK_EQ(pthread_join(t, NULL), 0);
    TH_CHECK_EQ(b->result, 0);
    /* 70,000 handed in all: what the taker took came out of them, and its claims replaced
     * the fabricated ones it robbed. Handed never held more than 65,535 at once. */
    uint64_t w = conc_load(&b->sem.word, CONC_RELAXED);
    TH_CHECK(taken >= CLAIMS - (long)CONC__SEM_HANDED_MAX);
    TH_CHECK_EQ(conc__sem_handed(w), (uint32_t)(CLAIMS - taken));
    TH_CHECK_EQ(conc__sem_count(w), -(int64_t)taken);
    free(b);
}

static void sem_until_past_deadline_tries_once(void) {
    conc_sem_t s = CONC_SEM_INIT(0);
    TH_CHECK_EQ(conc_sem_acquire_until(&s, conc_now() - 1), ETIMEDOUT);
    TH_CHECK_EQ(conc_sem_acquire_until(&s, 0), ETIMEDOUT);
    check_settled(&s); /* a timed-out waiter leaves no claim and no registration behind */
    TH_CHECK_EQ(conc_sem_release(&s, 1), 0);
    TH_CHECK_EQ(conc_sem_acquire_until(&s, conc_now() - 1), 0); /* a token: past deadline ok */
}

static void sem_until_times_out_never_early(void) {
    conc_sem_t s = CONC_SEM_INIT(0);
    const int64_t waits[] = {0, 1 * CONC_US, 100 * CONC_US, 1 * CONC_MS, 5 * CONC_MS, 20 * CONC_MS};
    for (size_t i = 0; i < sizeof waits / sizeof waits[0]; i++) {
        int64_t deadline = conc_deadline_in(waits[i]);
        TH_CHECK_EQ(conc_sem_acquire_until(&s, deadline), ETIMEDOUT);
        TH_CHECK_NOT_EARLY(deadline);
        check_settled(&s);
    }
}

typedef struct timed_arg {
    conc_sem_t *s;
    int64_t deadline;
    int result;
    int64_t returned_at;
    int done;
} timed_arg;

static void *timed_acquirer(void *p) {
    timed_arg *a = (timed_arg *)p;
    a->result = conc_sem_acquire_until(a->s, a->deadline);
    a->returned_at = conc_now();
    __atomic_store_n(&a->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

/* EINTR loops inside with the same absolute deadline: signals neither end nor stretch it. */
static void sem_until_survives_signals_keeps_deadline(void) {
    th_interrupt_waits_with(SIGUSR1);
    conc_sem_t s = CONC_SEM_INIT(0);
    TH_UNTIL_SIGNALLED(signals) {
        timed_arg a = {&s, conc_deadline_in(60 * CONC_MS), -1, 0, 0};
        signals = th_run_interrupted(timed_acquirer, &a, SIGUSR1, &a.done);
        TH_CHECK_EQ(a.result, ETIMEDOUT);
        TH_CHECK_MSG(a.returned_at >= a.deadline, "returned %lld ns early after %d signals",
                     (long long)(a.deadline - a.returned_at), signals);
        check_settled(&s);
    }
}

typedef struct wake_arg {
    conc_sem_t *s;
    int through; /* relaxed counter: threads that got a token */
} wake_arg;

static void blocking_taker(int index, void *p) {
    (void)index;
    wake_arg *a = (wake_arg *)p;
    conc_sem_acquire(a->s);
    __atomic_fetch_add(&a->through, 1, __ATOMIC_RELAXED);
}

typedef struct release_plan {
    wake_arg *a;
    int sleepers;
} release_plan;

/* release(n) wakes n registered sleepers, no more: the rest stay asleep, counted. */
static void *releaser_main(void *p) {
    release_plan *plan = (release_plan *)p;
    wake_arg *a = plan->a;
    wait_for_sleepers(a->s, (unsigned)plan->sleepers);
    TH_CHECK_EQ(conc_sem_release(a->s, 3), 0);
    while (__atomic_load_n(&a->through, __ATOMIC_RELAXED) != 3)
        sched_yield();
    wait_for_sleepers(a->s, (unsigned)plan->sleepers - 3); /* the 3 deregistered as they took */
    TH_CHECK_EQ(conc_sem_value(a->s), 0);
    TH_CHECK_EQ(conc_sem_release(a->s, (unsigned)plan->sleepers - 3), 0);
    return NULL;
}

static void sem_release_n_wakes_n_sleepers(void) {
    conc_sem_t s = CONC_SEM_INIT(0);
    wake_arg a = {&s, 0};
    release_plan plan = {&a, 6};
    pthread_t r;
    TH_CHECK_EQ(pthread_create(&r, NULL, releaser_main, &plan), 0);
    th_run_threads(plan.sleepers, blocking_taker, &a);
    pthread_join(r, NULL);
    TH_CHECK_EQ(a.through, 6);
    TH_CHECK_EQ(conc_sem_value(&s), 0);
    check_settled(&s);
}

/* A sleeper with a deadline takes a token released while it sleeps. */
static void sem_until_sleeper_gets_token(void) {
    conc_sem_t s = CONC_SEM_INIT(0);
    timed_arg a = {&s, conc_deadline_in(30 * CONC_SEC), -1, 0, 0};
    pthread_t t;
    TH_CHECK_EQ(pthread_create(&t, NULL, timed_acquirer, &a), 0);
    wait_for_sleepers(&s, 1);
    TH_CHECK_EQ(conc_sem_release(&s, 1), 0);
    pthread_join(t, NULL);
    TH_CHECK_EQ(a.result, 0);
    TH_CHECK_EQ(conc_sem_value(&s), 0);
    check_settled(&s);
}

/* ---- race stress ------------------------------------------------------------------------- */

enum { LIMIT = 3 };

typedef struct limit_state {
    conc_sem_t sem;
    conc_sem_t mutex; /* a binary semaphore guarding the plain payload below */
    long payload;     /* plain, non-atomic: only touched while holding `mutex` */
    int inside;       /* relaxed instrumentation */
    int most_inside;
    long entries;
    long rounds;
} limit_state;

static void take_one(conc_sem_t *s, th_rng *rng) {
    switch (th_rand_below(rng, 3)) {
    case 0:
        conc_sem_acquire(s);
        return;
    case 1:
        while (conc_sem_try_acquire(s) == EAGAIN)
            sched_yield();
        return;
    default:
        while (conc_sem_acquire_until(
                   s, conc_deadline_in((int64_t)th_rand_below(rng, 200) * CONC_US)) == ETIMEDOUT) {
        }
        return;
    }
}

static void limit_worker(int index, void *p) {
    limit_state *st = (limit_state *)p;
    th_rng rng = th_rng_make((uint64_t)index + 1);
    for (long i = 0; i < st->rounds; i++) {
        take_one(&st->sem, &rng);
        int now = __atomic_add_fetch(&st->inside, 1, __ATOMIC_RELAXED);
        TH_CHECK_MSG(now <= LIMIT, "%d threads inside a %d-token semaphore", now, LIMIT);
        int seen = __atomic_load_n(&st->most_inside, __ATOMIC_RELAXED);
        while (now > seen && !__atomic_compare_exchange_n(&st->most_inside, &seen, now, true,
                                                          __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
        }
        take_one(&st->mutex, &rng);
        st->payload++; /* [R1]/[A1] of the binary semaphore must order this */
        TH_CHECK_EQ(conc_sem_release(&st->mutex, 1), 0);
        for (uint32_t k = th_rand_below(&rng, 64); k; k--)
            conc_cpu_relax();
        __atomic_fetch_sub(&st->inside, 1, __ATOMIC_RELAXED);
        __atomic_fetch_add(&st->entries, 1, __ATOMIC_RELAXED);
        TH_CHECK_EQ(conc_sem_release(&st->sem, 1), 0);
        if (th_rand_below(&rng, 16) == 0)
            sched_yield();
    }
}

static void sem_stress_never_more_than_n_inside(void) {
    static limit_state st;
    TH_CHECK_EQ(conc_sem_init(&st.sem, LIMIT, LIMIT, 0), 0);
    TH_CHECK_EQ(conc_sem_init(&st.mutex, 1, 1, 0), 0);
    int threads = th_threads(12);
    st.rounds = th_iters(20000);
    th_run_threads(threads, limit_worker, &st);
    TH_CHECK_EQ(st.entries, threads * st.rounds);
    TH_CHECK_EQ(st.payload, threads * st.rounds); /* the binary semaphore lost no update */
    TH_CHECK_EQ(conc_sem_value(&st.sem), LIMIT);  /* every token came back */
    TH_CHECK_EQ(conc_sem_value(&st.mutex), 1);
    check_settled(&st.sem);
    check_settled(&st.mutex);
    TH_CHECK(st.most_inside >= 1 && st.most_inside <= LIMIT);
    printf("    %d threads x %ld rounds, at most %d inside\n", threads, st.rounds, st.most_inside);
}

/* Producers release random batches into a bounded semaphore (retrying on EOVERFLOW, which
 * must release nothing); consumers take exact quotas with every kind of acquire. Tokens are
 * conserved: everything released is taken, and the semaphore ends empty. */
typedef struct flow_state {
    conc_sem_t sem;
    int producers, consumers;
    long per_producer, per_consumer;
    long released, taken, overflows; /* relaxed */
} flow_state;

static void flow_worker(int index, void *p) {
    flow_state *st = (flow_state *)p;
    th_rng rng = th_rng_make((uint64_t)index + 77);
    if (index < st->producers) {
        long left = st->per_producer;
        while (left > 0) {
            unsigned n = 1 + th_rand_below(&rng, 4);
            if ((long)n > left)
                n = (unsigned)left;
            int r = conc_sem_release(&st->sem, n);
            if (r == EOVERFLOW) {
                __atomic_fetch_add(&st->overflows, 1, __ATOMIC_RELAXED);
                sched_yield();
                continue;
            }
            TH_CHECK_EQ(r, 0);
            left -= (long)n;
            __atomic_fetch_add(&st->released, n, __ATOMIC_RELAXED);
        }
    } else {
        for (long i = 0; i < st->per_consumer; i++) {
            take_one(&st->sem, &rng);
            __atomic_fetch_add(&st->taken, 1, __ATOMIC_RELAXED);
        }
    }
}

static void sem_stress_tokens_conserved(void) {
    static flow_state st;
    TH_CHECK_EQ(conc_sem_init(&st.sem, 0, 8, 0), 0);
    st.producers = 4;
    st.consumers = th_threads(12) - st.producers;
    if (st.consumers < 2)
        st.consumers = 2;
    st.per_consumer = th_iters(30000);
    long total = st.per_consumer * st.consumers;
    st.per_producer = total / st.producers;
    long extra = total - st.per_producer * st.producers;
    if (extra) { /* keep the quotas exact: the remainder goes in before the threads start */
        TH_CHECK_EQ(conc_sem_release(&st.sem, (unsigned)extra), 0);
        st.released = extra;
    }
    th_run_threads(st.producers + st.consumers, flow_worker, &st);
    TH_CHECK_EQ(st.released, total);
    TH_CHECK_EQ(st.taken, total);
    TH_CHECK_EQ(conc_sem_value(&st.sem), 0);
    check_settled(&st.sem);
    printf("    %d producers, %d consumers, %ld tokens, %ld EOVERFLOW retries\n", st.producers,
           st.consumers, total, st.overflows);
}

/* THREAD SAFETY promises the semaphore may be freed once the last call on it has returned:
 * here the waiter frees it the moment its acquire returns, while the releaser may still be
 * inside conc_sem_release (after its CAS). Under ASan, a release that touched the memory
 * after the CAS would be a heap-use-after-free report. */
typedef struct freeing_state {
    conc_sem_t *current;    /* plain: published by `ready`'s release, [R1]/[A1] */
    conc_sem_t ready, done; /* the ping-pong that paces the rounds */
    long rounds;
} freeing_state;

static void *freeing_waiter(void *p) {
    freeing_state *st = (freeing_state *)p;
    for (long i = 0; i < st->rounds; i++) {
        conc_sem_acquire(&st->ready);
        conc_sem_t *s = st->current;
        if (i % 2)
            conc_sem_acquire(s);
        else
            TH_CHECK_EQ(conc_sem_acquire_until(s, CONC_FOREVER), 0);
        free(s);
        TH_CHECK_EQ(conc_sem_release(&st->done, 1), 0);
    }
    return NULL;
}

static void sem_freed_by_waiter_as_release_returns(void) {
    static freeing_state st;
    st.ready = (conc_sem_t)CONC_SEM_INIT(0);
    st.done = (conc_sem_t)CONC_SEM_INIT(0);
    st.rounds = th_iters(20000);
    pthread_t t;
    TH_CHECK_EQ(pthread_create(&t, NULL, freeing_waiter, &st), 0);
    for (long i = 0; i < st.rounds; i++) {
        conc_sem_t *s = (conc_sem_t *)malloc(sizeof *s);
        TH_CHECK(s != NULL);
        TH_CHECK_EQ(conc_sem_init(s, 0, 1, 0), 0);
        st.current = s;
        TH_CHECK_EQ(conc_sem_release(&st.ready, 1), 0);
        if (i % 3 == 0) /* sometimes let the waiter get to sleep first, so release wakes it */
            for (int k = 0; k < 2000 && sleepers_of(s) == 0; k++)
                sched_yield();
        TH_CHECK_EQ(conc_sem_release(s, 1), 0); /* s may be freed from here on */
        conc_sem_acquire(&st.done);
    }
    pthread_join(t, NULL);
}

/* ---- deadlock stress --------------------------------------------------------------------- */

enum { RING = 8 };

/* Each hop is a binary semaphore: the token is one unit moving around the ring. */
static void ring_take(void *ctx, int me, th_rng *rng) {
    conc_sem_t *hop = &((conc_sem_t *)ctx)[me];
    if (th_rand_below(rng, 2))
        conc_sem_acquire(hop);
    else
        while (conc_sem_acquire_until(hop, conc_deadline_in(CONC_MS)) == ETIMEDOUT) {
        }
}

static void ring_give(void *ctx, int next) {
    TH_CHECK_EQ(conc_sem_release(&((conc_sem_t *)ctx)[next], 1), 0);
}

static void sem_deadlock_token_ring(void) {
    static conc_sem_t hop[RING];
    for (int i = 0; i < RING; i++)
        TH_CHECK_EQ(conc_sem_init(&hop[i], i == 0, 1, 0), 0);
    th_ring ring = {ring_take, ring_give, hop, RING, th_iters(5000), 0};
    th_ring_run(&ring);
    TH_CHECK_EQ(conc_sem_value(&hop[0]), 1); /* the token is back where it started */
    for (int i = 0; i < RING; i++) {
        TH_CHECK_EQ(conc_sem_value(&hop[i]), i == 0);
        check_settled(&hop[i]);
    }
}

typedef struct timed_state {
    conc_sem_t sem;
    long rounds;
    long got, timeouts; /* relaxed */
} timed_state;

static void timed_worker(int index, void *p) {
    timed_state *st = (timed_state *)p;
    th_rng rng = th_rng_make((uint64_t)index + 99);
    for (long i = 0; i < st->rounds; i++) {
        int64_t deadline = conc_deadline_in((int64_t)th_rand_below(&rng, 300) * CONC_US);
        int r = conc_sem_acquire_until(&st->sem, deadline);
        if (r == ETIMEDOUT) {
            TH_CHECK_NOT_EARLY(deadline);
            __atomic_fetch_add(&st->timeouts, 1, __ATOMIC_RELAXED);
            continue;
        }
        TH_CHECK_EQ(r, 0);
        __atomic_fetch_add(&st->got, 1, __ATOMIC_RELAXED);
        for (uint32_t k = th_rand_below(&rng, 2000); k; k--)
            conc_cpu_relax();
        TH_CHECK_EQ(conc_sem_release(&st->sem, 1), 0);
    }
}

static void sem_deadlock_timed_waits_under_contention(void) {
    static timed_state st;
    TH_CHECK_EQ(conc_sem_init(&st.sem, 2, 2, 0), 0);
    st.rounds = th_iters(3000);
    int threads = th_threads(10);
    th_run_threads(threads, timed_worker, &st);
    TH_CHECK_EQ(st.got + st.timeouts, threads * st.rounds);
    TH_CHECK_EQ(conc_sem_value(&st.sem), 2);
    check_settled(&st.sem);
    printf("    %ld taken, %ld timed out\n", st.got, st.timeouts);
}

/* ---- process-shared ---------------------------------------------------------------------- */

typedef struct shared_pair {
    conc_sem_t ping, pong;
    long volley; /* plain: passed back and forth by the two semaphores */
} shared_pair;

static void sem_shared_across_fork_ping_pong(void) {
    shared_pair *sp = (shared_pair *)mmap(NULL, sizeof *sp, PROT_READ | PROT_WRITE,
                                          MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    TH_CHECK(sp != MAP_FAILED);
    TH_CHECK_EQ(conc_sem_init(&sp->ping, 0, 1, CONC_SHARED), 0);
    TH_CHECK_EQ(conc_sem_init(&sp->pong, 0, 1, CONC_SHARED), 0);
    sp->volley = 0;
    long rounds = th_iters(20000);
    pid_t child = fork();
    TH_CHECK(child >= 0);
    if (child == 0) {
        for (long i = 0; i < rounds; i++) {
            if (i % 2)
                conc_sem_acquire(&sp->ping);
            else
                while (conc_sem_acquire_until(&sp->ping, conc_deadline_in(CONC_MS)) == ETIMEDOUT) {
                }
            sp->volley++;
            if (conc_sem_release(&sp->pong, 1) != 0)
                _exit(3);
        }
        _exit(0);
    }
    for (long i = 0; i < rounds; i++) {
        sp->volley++;
        TH_CHECK_EQ(conc_sem_release(&sp->ping, 1), 0);
        conc_sem_acquire(&sp->pong);
    }
    int status = 0;
    TH_CHECK_EQ(waitpid(child, &status, 0), child);
    TH_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    TH_CHECK_EQ(sp->volley, 2 * rounds);
    TH_CHECK_EQ(conc_sem_value(&sp->ping), 0);
    TH_CHECK_EQ(conc_sem_value(&sp->pong), 0);
    munmap(sp, sizeof *sp);
}

/* A process killed while it waits leaves its claim in the count (CAVEATS): the next release
 * hands a token to it, and the survivors must still be able to pick that token up. */
static void sem_shared_waiter_killed_tokens_still_flow(void) {
    conc_sem_t *s = (conc_sem_t *)mmap(NULL, sizeof *s, PROT_READ | PROT_WRITE,
                                       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    TH_CHECK(s != MAP_FAILED);
    TH_CHECK_EQ(conc_sem_init(s, 0, 2, CONC_SHARED), 0);
    pid_t child = fork();
    TH_CHECK(child >= 0);
    if (child == 0) {
        conc_sem_acquire(s); /* never gets a token: killed while asleep */
        _exit(1);
    }
    wait_for_sleepers(s, 1);
    TH_CHECK_EQ(kill(child, SIGKILL), 0);
    int status = 0;
    TH_CHECK_EQ(waitpid(child, &status, 0), child);
    TH_CHECK(WIFSIGNALED(status));
    TH_CHECK_EQ(conc_sem_release(s, 1), 0); /* handed to the dead waiter's claim */
    TH_CHECK_EQ(conc_sem_value(s), 1);
    TH_CHECK_EQ(conc_sem_try_acquire(s), 0); /* picked up by a survivor */
    TH_CHECK_EQ(conc_sem_value(s), 0);
    TH_CHECK_EQ(conc_sem_try_acquire(s), EAGAIN);
    TH_CHECK_EQ(conc_sem_release(s, 1), 0);
    conc_sem_acquire(s); /* a blocking acquire picks it up too, and does not hang */
    TH_CHECK_EQ(conc_sem_acquire_until(s, conc_now() - 1), ETIMEDOUT);
    TH_CHECK_EQ(conc_sem_release(s, 2), 0);
    TH_CHECK_EQ(conc_sem_value(s), 2);
    TH_CHECK_EQ(conc_sem_release(s, 1), EOVERFLOW); /* the bound counts handed tokens too */
    TH_CHECK_EQ(conc_sem_value(s), 2);
    TH_CHECK_EQ(conc_sem_try_acquire(s), 0);
    TH_CHECK_EQ(conc_sem_try_acquire(s), 0);
    TH_CHECK_EQ(conc_sem_try_acquire(s), EAGAIN);
    munmap(s, sizeof *s);
}

TH_MAIN("sem", TH_CASE(sem_is_sixteen_bytes_and_zero_is_empty),
        TH_CASE(sem_init_checks_value_and_max), TH_CASE(sem_init_bounded_value_above_max_aborts),
        TH_CASE(sem_init_value_past_value_max_aborts), TH_CASE(sem_acquire_release_count_tokens),
        TH_CASE(sem_release_zero_is_einval), TH_CASE(sem_bounded_overflow_releases_nothing),
        TH_CASE(sem_release_past_what_handed_holds_goes_in_steps),
        TH_CASE(sem_unbounded_overflow_at_value_max), TH_CASE(sem_until_past_deadline_tries_once),
        TH_CASE(sem_until_times_out_never_early),
        TH_CASE(sem_until_survives_signals_keeps_deadline), TH_CASE(sem_release_n_wakes_n_sleepers),
        TH_CASE(sem_until_sleeper_gets_token), TH_CASE(sem_stress_never_more_than_n_inside),
        TH_CASE(sem_stress_tokens_conserved), TH_CASE_T(sem_deadlock_token_ring, 60),
        TH_CASE(sem_deadlock_timed_waits_under_contention),
        TH_CASE(sem_freed_by_waiter_as_release_returns), TH_CASE(sem_shared_across_fork_ping_pong),
        TH_CASE(sem_shared_waiter_killed_tokens_still_flow))
