/* tests/test_barrier.c - conc_barrier: unit cases, rounds stress on plain data, breaking by
 * deadline and abort, reset, more threads than parties, process-shared use.
 * SPDX-License-Identifier: MIT */
#include "futex_gate.h" /* before conc/barrier.h: it sets the futex seam */

#include "conc/barrier.h"

#include "harness.h"

#include <sys/mman.h>

static void barrier_init_checks_parties(void) {
    TH_CHECK_EQ(sizeof(conc_barrier_t), 32);
    conc_barrier_t b;
    TH_CHECK_EQ(conc_barrier_init(&b, 0, 0), EINVAL);
    TH_CHECK_EQ(conc_barrier_init(NULL, 2, 0), EINVAL);
    TH_CHECK_EQ(conc_barrier_init(&b, CONC_BARRIER_PARTIES_MAX + 1u, 0), EINVAL);
    TH_CHECK_EQ(conc_barrier_init(&b, 3, CONC_SHARED), 0);
    TH_CHECK_EQ(conc_barrier_parties(&b), 3);
    TH_CHECK_EQ(conc_barrier_waiting(&b), 0);
    TH_CHECK(!conc_barrier_is_broken(&b));
    TH_CHECK(CONC_BARRIER_LEADER < 0 && CONC_BARRIER_BROKEN > 0);
    TH_CHECK(CONC_BARRIER_BROKEN != ETIMEDOUT);
    TH_CHECK_EQ(conc_barrier_init(&b, 3, 0x40), EINVAL); /* unknown flags */
    /* a barrier that was never initialised (zeroed memory) is refused, not waited on forever */
    conc_barrier_t zero;
    memset(&zero, 0, sizeof zero);
    TH_CHECK_EQ(conc_barrier_wait(&zero), EINVAL);
    TH_CHECK_EQ(conc_barrier_wait_until(&zero, 0), EINVAL);
    conc_barrier_t none = CONC_BARRIER_INIT(0);
    TH_CHECK_EQ(conc_barrier_wait(&none), EINVAL);
    /* The initializer cannot refuse too many parties: wait does, before it counts an arrival
     * (the arrived field would overflow), and the largest allowed count still arrives. */
    conc_barrier_t too_many = CONC_BARRIER_INIT(CONC_BARRIER_PARTIES_MAX + 1u);
    TH_CHECK_EQ(conc_barrier_wait_until(&too_many, 0), EINVAL);
    conc_barrier_t minus_one = CONC_BARRIER_INIT(-1);
    TH_CHECK_EQ(conc_barrier_wait(&minus_one), EINVAL);
    conc_barrier_t most = CONC_BARRIER_INIT(CONC_BARRIER_PARTIES_MAX);
    TH_CHECK_EQ(conc_barrier_wait_until(&most, 0), ETIMEDOUT); /* arrived, timed out: broken */
    TH_CHECK_EQ(conc_barrier_wait_until(&most, 0), CONC_BARRIER_BROKEN);
}

/* init makes a fresh barrier of any memory, yield hints included (garbage there once turned
 * the yields off for centuries, or shifted by billions). */
static void barrier_init_any_memory(void) {
    conc_barrier_t *b = (conc_barrier_t *)malloc(sizeof *b);
    TH_CHECK(b != NULL);
    memset(b, 0xaa, sizeof *b);
    TH_CHECK_EQ(conc_barrier_init(b, 1, 0), 0);
    TH_CHECK_EQ(b->yields.resume, 0);
    TH_CHECK_EQ(b->yields.strikes, 0);
    TH_CHECK_EQ(b->yields.average, 0);
    TH_CHECK(conc_yield_allowed(&b->yields, conc_now()));
    TH_CHECK_EQ(conc_barrier_wait(b), CONC_BARRIER_LEADER);
    TH_CHECK(!conc_barrier_is_broken(b));
    free(b);
}

static void barrier_one_party_always_leads(void) {
    conc_barrier_t b = CONC_BARRIER_INIT(1);
    for (int i = 0; i < 5; i++)
        TH_CHECK_EQ(conc_barrier_wait(&b), CONC_BARRIER_LEADER);
    TH_CHECK_EQ(conc_barrier_wait_until(&b, 0), CONC_BARRIER_LEADER); /* completes: no timeout */
    conc_barrier_abort(&b);
    TH_CHECK_EQ(conc_barrier_wait(&b), CONC_BARRIER_BROKEN);
    conc_barrier_reset(&b);
    TH_CHECK_EQ(conc_barrier_wait(&b), CONC_BARRIER_LEADER);
}

/* Every round, every thread writes its own plain slot, waits, then reads every slot: the
 * barrier must order all writes of a round before every read of it. A second wait keeps the
 * next round's writes after this round's reads. One leader per round, exactly. */
typedef struct rounds_ctx {
    conc_barrier_t b;
    long slot[64]; /* plain */
    int leaders;   /* relaxed instrument */
    long rounds;
    int n;
} rounds_ctx;

static void rounds_worker(int index, void *arg) {
    rounds_ctx *c = (rounds_ctx *)arg;
    for (long r = 1; r <= c->rounds; r++) {
        c->slot[index] = r;
        int e = conc_barrier_wait(&c->b);
        TH_CHECK(e == 0 || e == CONC_BARRIER_LEADER);
        if (e == CONC_BARRIER_LEADER)
            __atomic_fetch_add(&c->leaders, 1, __ATOMIC_RELAXED);
        for (int i = 0; i < c->n; i++)
            TH_CHECK_EQ(c->slot[i], r);
        e = conc_barrier_wait(&c->b);
        TH_CHECK(e == 0 || e == CONC_BARRIER_LEADER);
    }
}

static void run_rounds(int n, long rounds) {
    rounds_ctx *c = (rounds_ctx *)calloc(1, sizeof *c);
    TH_CHECK(c != NULL);
    TH_CHECK_EQ(conc_barrier_init(&c->b, (unsigned)n, 0), 0);
    c->n = n;
    c->rounds = rounds;
    th_run_threads(n, rounds_worker, c);
    TH_CHECK_EQ(c->leaders, rounds);
    TH_CHECK_EQ(conc_barrier_waiting(&c->b), 0);
    free(c);
}

static void barrier_stress_rounds_two_parties(void) {
    run_rounds(2, th_iters(20000));
}
static void barrier_stress_rounds_many_parties(void) {
    run_rounds(th_threads(8), th_iters(2000));
}

/* The yield policy's hints (base.h, conc__barrier_yield_slow), set by hand with more parties
 * than CPUs, where waiters yield before they sleep: the rounds stay exact whatever the hints
 * say, and the policy does what they say. */
/* Presets of the average on either side of the bar, by construction. */
#define YIELD_AVG_BELOW_BAR ((uint32_t)(CONC__BASE_YIELD_SLOW_NS / 2))
#define YIELD_AVG_ABOVE_BAR ((uint32_t)(CONC__BASE_YIELD_SLOW_NS * 10))

static rounds_ctx *yield_case(int64_t resume, uint32_t average, long rounds) {
    rounds_ctx *c = (rounds_ctx *)calloc(1, sizeof *c);
    TH_CHECK(c != NULL);
    c->n = conc_cpu_count() + 2; /* more parties than CPUs: the waiters' yield path */
    if (c->n > (int)(sizeof c->slot / sizeof c->slot[0])) {
        free(c);
        TH_SKIP("more CPUs than the case has slots for parties beyond them");
    }
    TH_CHECK_EQ(conc_barrier_init(&c->b, (unsigned)c->n, 0), 0);
    c->b.yields.resume = resume;
    c->b.yields.average = average;
    c->rounds = rounds;
    th_run_threads(c->n, rounds_worker, c);
    TH_CHECK_EQ(c->leaders, rounds);
    TH_CHECK_EQ(conc_barrier_waiting(&c->b), 0);
    return c;
}

/* Yields off for good: every waiter sleeps at once, and no yield runs (any would move the
 * preset average). */
static void barrier_stress_yields_off(void) {
    rounds_ctx *c = yield_case(CONC_FOREVER, YIELD_AVG_BELOW_BAR, th_iters(500));
    TH_CHECK_EQ(c->b.yields.average, YIELD_AVG_BELOW_BAR);
    TH_CHECK_EQ(c->b.yields.strikes, 0);
    free(c);
}

/* Yields that wasted their time on average: the first waiter that yields turns yields off (a
 * period set, a strike counted), and the rounds stay exact. A probe after the period (10 ms
 * on) may find yields paying and turn them on again: then its waste replaced the average. */
static void barrier_stress_yields_wasteful(void) {
    if (CONC_BARRIER_YIELDS == 0)
        TH_SKIP("built with CONC_BARRIER_YIELDS=0: no waiter yields, none finds yields wasteful");
    rounds_ctx *c = yield_case(0, YIELD_AVG_ABOVE_BAR, th_iters(500));
    bool off = c->b.yields.resume > 0 && c->b.yields.strikes >= 1;
    bool on_again = c->b.yields.resume == 0 && c->b.yields.strikes == 0 &&
                    c->b.yields.average <= CONC__BASE_YIELD_SLOW_NS;
    TH_CHECK_MSG(off || on_again, "resume %lld, strikes %u, average %u",
                 (long long)c->b.yields.resume, c->b.yields.strikes, c->b.yields.average);
    free(c);
}

/* More threads than parties: each round takes the first `parties` arrivals. Six threads on a
 * 3-party barrier until a closer thread aborts it; every completed round released exactly
 * three parties, one of them its leader. */
typedef struct crowd_ctx {
    conc_barrier_t b;
    int leaders, released; /* relaxed instruments */
    int stop;              /* relaxed: a stop signal */
    int64_t stop_at;
} crowd_ctx;
static void crowd_worker(int index, void *arg) {
    crowd_ctx *c = (crowd_ctx *)arg;
    if (index == 6) { /* the closer: not before a round has completed, however late we start */
        while (th_now() < c->stop_at || __atomic_load_n(&c->leaders, __ATOMIC_RELAXED) == 0)
            th_sleep_ns(1000000);
        __atomic_store_n(&c->stop, 1, __ATOMIC_RELAXED);
        conc_barrier_abort(&c->b);
        return;
    }
    while (!__atomic_load_n(&c->stop, __ATOMIC_RELAXED)) {
        int e = conc_barrier_wait(&c->b);
        if (e == CONC_BARRIER_BROKEN)
            break;
        TH_CHECK(e == 0 || e == CONC_BARRIER_LEADER);
        __atomic_fetch_add(&c->released, 1, __ATOMIC_RELAXED);
        if (e == CONC_BARRIER_LEADER)
            __atomic_fetch_add(&c->leaders, 1, __ATOMIC_RELAXED);
    }
}
static void barrier_stress_more_threads_than_parties(void) {
    crowd_ctx c;
    memset(&c, 0, sizeof c);
    TH_CHECK_EQ(conc_barrier_init(&c.b, 3, 0), 0);
    c.stop_at = th_now() + th_duration_ns(0.5);
    th_run_threads(7, crowd_worker, &c);
    TH_CHECK(c.leaders > 0);
    TH_CHECK_EQ(c.released, 3 * c.leaders);
    TH_CHECK_EQ(conc_barrier_waiting(&c.b), 0);
}

typedef struct party {
    conc_barrier_t *b;
    int64_t deadline;
    int result;
} party;
static void *party_main(void *arg) {
    party *p = (party *)arg;
    p->result = p->deadline == CONC_FOREVER ? conc_barrier_wait(p->b)
                                            : conc_barrier_wait_until(p->b, p->deadline);
    return NULL;
}
static void wait_arrived(conc_barrier_t *b, unsigned n) {
    while (conc_barrier_waiting(b) < n)
        th_sleep_ns(100000);
}

/* A deadline breaks the barrier for every party of the round: the one whose deadline passed
 * gets ETIMEDOUT (never early), the others CONC_BARRIER_BROKEN, and so does every arrival until
 * reset. After reset the barrier works again. */
static void barrier_deadline_breaks_it_for_everyone(void) {
    conc_barrier_t b = CONC_BARRIER_INIT(3);
    party p1 = {&b, CONC_FOREVER, -2}, p2 = {&b, 0, -2};
    pthread_t t1, t2;
    TH_CHECK_EQ(pthread_create(&t1, NULL, party_main, &p1), 0);
    wait_arrived(&b, 1);
    p2.deadline = conc_deadline_in(50 * CONC_MS);
    TH_CHECK_EQ(pthread_create(&t2, NULL, party_main, &p2), 0);
    pthread_join(t2, NULL);
    TH_CHECK_EQ(p2.result, ETIMEDOUT);
    TH_CHECK_NOT_EARLY(p2.deadline);
    pthread_join(t1, NULL);
    TH_CHECK_EQ(p1.result, CONC_BARRIER_BROKEN);
    TH_CHECK(conc_barrier_is_broken(&b));
    TH_CHECK_EQ(conc_barrier_wait(&b), CONC_BARRIER_BROKEN); /* stays broken */
    TH_CHECK_EQ(conc_barrier_waiting(&b), 0);                /* everyone left */
    conc_barrier_reset(&b);
    TH_CHECK(!conc_barrier_is_broken(&b));
    party q[2] = {{&b, CONC_FOREVER, -2}, {&b, CONC_FOREVER, -2}};
    pthread_t tq[2];
    for (int i = 0; i < 2; i++)
        TH_CHECK_EQ(pthread_create(&tq[i], NULL, party_main, &q[i]), 0);
    int mine = conc_barrier_wait(&b);
    for (int i = 0; i < 2; i++)
        pthread_join(tq[i], NULL);
    int leaders = (mine == CONC_BARRIER_LEADER) + (q[0].result == CONC_BARRIER_LEADER) +
                  (q[1].result == CONC_BARRIER_LEADER);
    TH_CHECK_EQ(leaders, 1);
    TH_CHECK(mine >= -1 && mine <= 0 && q[0].result <= 0 && q[1].result <= 0);
}

/* A deadline already past when the arrival completes the round does not break anything. */
static void barrier_past_deadline_completing_arrival_leads(void) {
    conc_barrier_t b = CONC_BARRIER_INIT(2);
    party p = {&b, CONC_FOREVER, -2};
    pthread_t t;
    TH_CHECK_EQ(pthread_create(&t, NULL, party_main, &p), 0);
    wait_arrived(&b, 1);
    TH_CHECK_EQ(conc_barrier_wait_until(&b, 0), CONC_BARRIER_LEADER);
    pthread_join(t, NULL);
    TH_CHECK_EQ(p.result, 0);
    TH_CHECK(!conc_barrier_is_broken(&b));
}

/* abort wakes the sleeping waiters with CONC_BARRIER_BROKEN. */
static void barrier_abort_releases_waiters_broken(void) {
    conc_barrier_t b = CONC_BARRIER_INIT(4);
    party p[3] = {{&b, CONC_FOREVER, -2}, {&b, CONC_FOREVER, -2}, {&b, CONC_FOREVER, -2}};
    pthread_t t[3];
    for (int i = 0; i < 3; i++)
        TH_CHECK_EQ(pthread_create(&t[i], NULL, party_main, &p[i]), 0);
    wait_arrived(&b, 3);
    conc_barrier_abort(&b);
    for (int i = 0; i < 3; i++) {
        pthread_join(t[i], NULL);
        TH_CHECK_EQ(p[i].result, CONC_BARRIER_BROKEN);
    }
    TH_CHECK_EQ(conc_barrier_waiting(&b), 0);
}

/* reset with waiters: they get CONC_BARRIER_BROKEN, reset returns once they left, and the
 * barrier is fresh (a full round completes). */
static void barrier_reset_breaks_waiters_then_is_fresh(void) {
    conc_barrier_t b = CONC_BARRIER_INIT(3);
    party p[2] = {{&b, CONC_FOREVER, -2}, {&b, CONC_FOREVER, -2}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        TH_CHECK_EQ(pthread_create(&t[i], NULL, party_main, &p[i]), 0);
    wait_arrived(&b, 2);
    conc_barrier_reset(&b);
    TH_CHECK(!conc_barrier_is_broken(&b));
    TH_CHECK_EQ(conc_barrier_waiting(&b), 0);
    for (int i = 0; i < 2; i++) {
        pthread_join(t[i], NULL);
        TH_CHECK_EQ(p[i].result, CONC_BARRIER_BROKEN);
    }
    for (int i = 0; i < 2; i++) {
        p[i].result = -2;
        TH_CHECK_EQ(pthread_create(&t[i], NULL, party_main, &p[i]), 0);
    }
    int mine = conc_barrier_wait(&b);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    TH_CHECK_EQ((mine == CONC_BARRIER_LEADER) + (p[0].result == CONC_BARRIER_LEADER) +
                    (p[1].result == CONC_BARRIER_LEADER),
                1);
}

/* Two resets at once, steps ordered by futex gates. W1 waits in a round that breaks; reset B
 * finds W1 still in it and stops just before it sleeps; W1 leaves; reset A clears BROKEN; W2
 * starts the next round, leaving the count W1 left ({1, WAITERS}); then B sleeps. A reset that
 * slept on the bare count slept on through that round (nothing wakes the count of a healthy
 * round); with RESETTING in the value it slept on, B finds the word changed and returns. */
typedef struct resetter {
    conc_barrier_t *b;
    futex_gate *gate;
    int done; /* release/acquire */
} resetter;
static void *resetter_main(void *arg) {
    resetter *r = (resetter *)arg;
    gate_here = r->gate;
    conc_barrier_reset(r->b);
    gate_here = NULL;
    __atomic_store_n(&r->done, 1, __ATOMIC_RELEASE);
    return NULL;
}
typedef struct gated_party {
    party p;
    futex_gate *gate;
} gated_party;
static void *gated_party_main(void *arg) {
    gated_party *g = (gated_party *)arg;
    gate_here = g->gate;
    party_main(&g->p);
    gate_here = NULL;
    return NULL;
}
static void barrier_concurrent_resets_both_return(void) {
    conc_barrier_t b = CONC_BARRIER_INIT(2);
    futex_gate g1 = {0, 0}, g2 = {0, 0}, gb = {0, 0};
    gated_party w1 = {{&b, CONC_FOREVER, -2}, &g1}, w2 = {{&b, CONC_FOREVER, -2}, &g2};
    pthread_t t1, t2, ta, tb;
    TH_CHECK_EQ(pthread_create(&t1, NULL, gated_party_main, &w1), 0);
    gate_wait_reached(&g1); /* W1 arrived, raised WAITERS, stopped before its futex_wait */
    conc_barrier_abort(&b);
    resetter rb = {&b, &gb, 0}, ra = {&b, NULL, 0};
    TH_CHECK_EQ(pthread_create(&tb, NULL, resetter_main, &rb), 0);
    gate_wait_reached(&gb); /* B saw W1 in the broken round; it stopped before it sleeps */
    gate_open(&g1);
    pthread_join(t1, NULL);
    TH_CHECK_EQ(w1.p.result, CONC_BARRIER_BROKEN); /* W1 left */
    TH_CHECK_EQ(pthread_create(&ta, NULL, resetter_main, &ra), 0);
    pthread_join(ta, NULL); /* A cleared BROKEN */
    TH_CHECK(!conc_barrier_is_broken(&b));
    TH_CHECK_EQ(pthread_create(&t2, NULL, gated_party_main, &w2), 0);
    gate_wait_reached(&g2); /* the next round: W2 in it, WAITERS up */
    gate_open(&gb);         /* B sleeps now, or finds the word changed */

    int64_t give_up = th_now() + 30 * CONC_SEC; /* a hang detector, not a timing assumption */
    while (!__atomic_load_n(&rb.done, __ATOMIC_ACQUIRE) && th_now() < give_up)
        th_sleep_ns(CONC_MS);
    bool returned = __atomic_load_n(&rb.done, __ATOMIC_ACQUIRE) != 0;
    if (!returned) {
        conc_barrier_abort(&b); /* break W2's round: its leaving wakes B, so we can join */
        gate_open(&g2);
        pthread_join(tb, NULL);
        pthread_join(t2, NULL);
        TH_CHECK_MSG(returned, "reset B slept through the next round (30 s)");
        return;
    }
    pthread_join(tb, NULL);
    gate_open(&g2);
    int mine = conc_barrier_wait(&b); /* W2's round completes */
    pthread_join(t2, NULL);
    TH_CHECK_EQ((mine == CONC_BARRIER_LEADER) + (w2.p.result == CONC_BARRIER_LEADER), 1);
    TH_CHECK(mine == 0 || w2.p.result == 0);
}

/* Deadlock stress: parties with random short deadlines break rounds at random; a coordinator
 * resets after each break. Every wait returns; the counts add up. */
typedef struct chaos_ctx {
    conc_barrier_t b;
    int64_t stop_at;
    long ok[64], broken[64], timeouts[64];
} chaos_ctx;
static void chaos_worker(int index, void *arg) {
    chaos_ctx *c = (chaos_ctx *)arg;
    th_rng rng = th_rng_make((uint64_t)index + 3);
    for (long n = 0; n == 0 || th_now() < c->stop_at; n++) { /* a late start still waits once */
        int64_t dl = th_rand_below(&rng, 4) == 0 ? th_now() + (int64_t)th_rand_below(&rng, 200000)
                                                 : th_now() + 20 * (int64_t)1000000;
        int e = conc_barrier_wait_until(&c->b, dl);
        if (e == 0 || e == CONC_BARRIER_LEADER)
            c->ok[index]++;
        else if (e == ETIMEDOUT) {
            TH_CHECK_NOT_EARLY(dl);
            c->timeouts[index]++;
            conc_barrier_reset(&c->b);
        } else {
            TH_CHECK_EQ(e, CONC_BARRIER_BROKEN);
            c->broken[index]++;
            conc_barrier_reset(&c->b);
        }
    }
}
static void barrier_deadlock_random_breaks_and_resets(void) {
    chaos_ctx *c = (chaos_ctx *)calloc(1, sizeof *c);
    TH_CHECK(c != NULL);
    int n = th_threads(4);
    TH_CHECK(n <= 64);
    TH_CHECK_EQ(conc_barrier_init(&c->b, (unsigned)n, 0), 0);
    c->stop_at = th_now() + th_duration_ns(0.5);
    th_run_threads(n, chaos_worker, c);
    long ok = 0, timeouts = 0;
    for (int i = 0; i < n; i++) {
        ok += c->ok[i];
        timeouts += c->timeouts[i];
    }
    TH_CHECK(ok + timeouts > 0);
    free(c);
}

static void barrier_shared_across_processes(void) {
    conc_barrier_t *b = (conc_barrier_t *)mmap(NULL, sizeof *b, PROT_READ | PROT_WRITE,
                                               MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    TH_CHECK(b != MAP_FAILED);
    enum { PROCS = 3 };
    TH_CHECK_EQ(conc_barrier_init(b, PROCS + 1, CONC_SHARED), 0);
    long rounds = th_iters(500);
    pid_t pids[PROCS];
    for (int p = 0; p < PROCS; p++) {
        pids[p] = fork();
        TH_CHECK(pids[p] >= 0);
        if (pids[p] == 0) {
            for (long r = 0; r < rounds; r++) {
                int e = conc_barrier_wait(b);
                if (e != 0 && e != CONC_BARRIER_LEADER)
                    _exit(3);
            }
            _exit(0);
        }
    }
    int leaders = 0;
    for (long r = 0; r < rounds; r++)
        leaders += conc_barrier_wait(b) == CONC_BARRIER_LEADER;
    for (int p = 0; p < PROCS; p++) {
        int status;
        TH_CHECK_EQ(waitpid(pids[p], &status, 0), pids[p]);
        TH_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    TH_CHECK(leaders <= rounds);
    munmap(b, sizeof *b);
}

TH_MAIN("barrier", TH_CASE(barrier_init_checks_parties), TH_CASE(barrier_init_any_memory),
        TH_CASE(barrier_one_party_always_leads), TH_CASE(barrier_stress_rounds_two_parties),
        TH_CASE(barrier_stress_rounds_many_parties), TH_CASE(barrier_stress_yields_off),
        TH_CASE(barrier_stress_yields_wasteful), TH_CASE(barrier_stress_more_threads_than_parties),
        TH_CASE(barrier_deadline_breaks_it_for_everyone),
        TH_CASE(barrier_past_deadline_completing_arrival_leads),
        TH_CASE(barrier_abort_releases_waiters_broken),
        TH_CASE(barrier_reset_breaks_waiters_then_is_fresh),
        TH_CASE(barrier_concurrent_resets_both_return),
        TH_CASE(barrier_deadlock_random_breaks_and_resets),
        TH_CASE(barrier_shared_across_processes))
