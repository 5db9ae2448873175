/* tests/test_latch.c - conc_latch: counts and errors, wait-group rounds on plain data, a zero
 * followed at once by an add, timed waits under signals, process-shared use.
 * SPDX-License-Identifier: MIT */
#include "conc/latch.h"

#include "harness.h"

#include <signal.h>
#include <sys/mman.h>

static void latch_counts_and_refuses_bad_input(void) {
    TH_CHECK_EQ(sizeof(conc_latch_t), 8);
    conc_latch_t l = CONC_LATCH_INIT(2);
    TH_CHECK_EQ(conc_latch_count(&l), 2);
    TH_CHECK_EQ(conc_latch_wait_until(&l, conc_now()), ETIMEDOUT); /* past: looks once */
    TH_CHECK_EQ(conc_latch_add(&l, 0), EINVAL);
    TH_CHECK_EQ(conc_latch_add(&l, CONC_LATCH_MAX), EOVERFLOW);
    TH_CHECK_EQ(conc_latch_count(&l), 2); /* refused: nothing changed */
    TH_CHECK_EQ(conc_latch_count_down(&l, 3), EINVAL);
    TH_CHECK_EQ(conc_latch_count_down(&l, 0), EINVAL);
    TH_CHECK_EQ(conc_latch_done(&l), 0);
    TH_CHECK_EQ(conc_latch_done(&l), 0);
    TH_CHECK_EQ(conc_latch_done(&l), EINVAL); /* Go: "negative WaitGroup counter" */
    TH_CHECK_EQ(conc_latch_count(&l), 0);
    conc_latch_wait(&l);
    TH_CHECK_EQ(conc_latch_wait_until(&l, 0), 0);
    TH_CHECK_EQ(conc_latch_add(&l, 5), 0); /* reusable */
    TH_CHECK_EQ(conc_latch_count_down(&l, 5), 0);
    TH_CHECK_EQ(conc_latch_count(&l), 0);
    conc_latch_t s;
    conc_latch_init(&s, 1, CONC_SHARED);
    TH_CHECK_EQ(conc_latch_done(&s), 0);
    conc_latch_wait(&s);
}

/* CONC_LATCH_INIT(-1) with a constant does not compile (tests/frontdoor.sh); with a run-time
 * count past CONC_LATCH_MAX a debug build aborts, naming the macro. It kept the count's low 32
 * bits: -1 made a latch that waited for 4,294,967,295 dones, and 2^32 one that waited for none. */
static volatile int negative_count = -1;
static volatile uint64_t count_past_max = (uint64_t)CONC_LATCH_MAX + 1u;
static void init_count_negative(void) {
    conc_latch_t l = CONC_LATCH_INIT(negative_count);
    fprintf(stderr, "not reached: count %u\n", conc_latch_count(&l));
}
static void init_count_past_max(void) {
    conc_latch_t l = CONC_LATCH_INIT(count_past_max);
    fprintf(stderr, "not reached: count %u\n", conc_latch_count(&l));
}
static void latch_init_count_past_max_aborts(void) {
    conc_latch_t ok = CONC_LATCH_INIT(count_past_max - 1u);
    TH_CHECK_EQ(conc_latch_count(&ok), CONC_LATCH_MAX);
    TH_CHECK_EQ(conc_latch_add(&ok, 1), EOVERFLOW);
    if (!CONC_DEBUG)
        TH_SKIP("a release build leaves run-time counts unchecked");
    th_check_aborts_with(init_count_negative, "CONC_LATCH_INIT: count > CONC_LATCH_MAX");
    th_check_aborts_with(init_count_past_max, "CONC_LATCH_INIT: count > CONC_LATCH_MAX");
}

/* Wait-group rounds: the coordinator adds n, n workers each write a plain slot and call done,
 * the coordinator waits and reads every slot. The same latch every round. */
typedef struct group_ctx {
    conc_latch_t wg;
    long slot[64]; /* plain */
    int round;     /* the round the workers may start (tgroup_advance / tgroup_wait_at_least) */
} group_ctx;

typedef struct worker_arg {
    group_ctx *g;
    int index;
    long rounds;
} worker_arg;

static void *group_worker(void *p) {
    worker_arg *a = (worker_arg *)p;
    for (long r = 1; r <= a->rounds; r++) {
        tgroup_wait_at_least(&a->g->round, (int)r); /* the start of a round is not tested */
        a->g->slot[a->index] = r;
        TH_CHECK_EQ(conc_latch_done(&a->g->wg), 0);
    }
    return NULL;
}

static void latch_stress_wait_group_rounds(void) {
    group_ctx *g = (group_ctx *)calloc(1, sizeof *g);
    TH_CHECK(g != NULL);
    int n = th_threads(8);
    TH_CHECK(n <= 64);
    long rounds = th_iters(2000);
    conc_latch_init(&g->wg, 0, 0);
    pthread_t t[64];
    worker_arg args[64];
    for (int i = 0; i < n; i++) {
        args[i] = (worker_arg){g, i, rounds};
        TH_CHECK_EQ(pthread_create(&t[i], NULL, group_worker, &args[i]), 0);
    }
    for (long r = 1; r <= rounds; r++) {
        TH_CHECK_EQ(conc_latch_add(&g->wg, (unsigned)n), 0);
        tgroup_advance(&g->round, 1, (int)r);
        conc_latch_wait(&g->wg);
        for (int i = 0; i < n; i++)
            TH_CHECK_EQ(g->slot[i], r);
    }
    for (int i = 0; i < n; i++)
        pthread_join(t[i], NULL);
    free(g);
}

/* A waiter that was waiting when the count reached zero returns 0 even if an add raised the
 * count again before it ran (the generation). The waiter has registered (WAITERS is up) before
 * the zero, so its wait surely began before it. */
typedef struct pulse_ctx {
    conc_latch_t l;
    int returned; /* relaxed */
} pulse_ctx;
static void *pulse_waiter(void *p) {
    pulse_ctx *c = (pulse_ctx *)p;
    conc_latch_wait(&c->l);
    __atomic_fetch_add(&c->returned, 1, __ATOMIC_RELAXED);
    return NULL;
}
static void latch_zero_then_add_releases_current_waiters(void) {
    for (long r = 0; r < th_iters(200); r++) {
        pulse_ctx c;
        memset(&c, 0, sizeof c);
        conc_latch_init(&c.l, 1, 0);
        pthread_t t;
        TH_CHECK_EQ(pthread_create(&t, NULL, pulse_waiter, &c), 0);
        while (!(conc_load(&c.l.word, CONC_RELAXED) & CONC__LATCH_WAITERS))
            sched_yield();
        TH_CHECK_EQ(conc_latch_done(&c.l), 0);
        TH_CHECK_EQ(conc_latch_add(&c.l, 1), 0); /* up again at once */
        pthread_join(t, NULL);                   /* it returned: it did not miss the zero */
        TH_CHECK_EQ(c.returned, 1);
    }
}

/* Many waiters, many counters, many rounds: each round the coordinator raises the count to
 * the number of counters, the counters each write a plain slot and call done, and every
 * waiter (half of them with a far deadline) must return 0 and see every slot of its round.
 * The coordinator waits too, then starts the next round only once every waiter has reported. */
enum { MW_WAITERS = 4, MW_COUNTERS = 4 };
typedef struct multi_ctx {
    conc_latch_t l;
    conc_latch_t reported;  /* waiters that finished the round */
    long slot[MW_COUNTERS]; /* plain */
    int round;              /* the round in progress (tgroup_advance / tgroup_wait_at_least) */
    long rounds;
} multi_ctx;

static void multi_worker(int index, void *arg) {
    multi_ctx *c = (multi_ctx *)arg;
    for (long r = 1; r <= c->rounds; r++) {
        tgroup_wait_at_least(&c->round, (int)r);
        if (index < MW_COUNTERS) {
            c->slot[index] = r;
            TH_CHECK_EQ(conc_latch_done(&c->l), 0);
        } else {
            if (index % 2)
                conc_latch_wait(&c->l);
            else
                TH_CHECK_EQ(conc_latch_wait_until(&c->l, conc_deadline_in(60 * CONC_SEC)), 0);
            for (int i = 0; i < MW_COUNTERS; i++)
                TH_CHECK(c->slot[i] >= r); /* the round's writes are visible */
            TH_CHECK_EQ(conc_latch_done(&c->reported), 0);
        }
    }
}

static void *multi_coordinator(void *arg) {
    multi_ctx *c = (multi_ctx *)arg;
    for (long r = 1; r <= c->rounds; r++) {
        TH_CHECK_EQ(conc_latch_add(&c->l, MW_COUNTERS), 0);
        TH_CHECK_EQ(conc_latch_add(&c->reported, MW_WAITERS), 0);
        tgroup_advance(&c->round, 1, (int)r);
        conc_latch_wait(&c->reported);
    }
    return NULL;
}

static void latch_stress_many_waiters_many_counters(void) {
    multi_ctx *c = (multi_ctx *)calloc(1, sizeof *c);
    TH_CHECK(c != NULL);
    c->rounds = th_iters(2000);
    pthread_t coord;
    TH_CHECK_EQ(pthread_create(&coord, NULL, multi_coordinator, c), 0);
    th_run_threads(MW_COUNTERS + MW_WAITERS, multi_worker, c);
    pthread_join(coord, NULL);
    TH_CHECK_EQ(conc_latch_count(&c->l), 0);
    TH_CHECK_EQ(conc_latch_count(&c->reported), 0);
    free(c);
}

typedef struct timed_ctx {
    conc_latch_t l;
    int64_t deadline;
    int result;
    int done; /* release/acquire */
} timed_ctx;
static void *timed_waiter(void *p) {
    timed_ctx *c = (timed_ctx *)p;
    c->result = conc_latch_wait_until(&c->l, c->deadline);
    __atomic_store_n(&c->done, 1, __ATOMIC_RELEASE);
    return NULL;
}
static void latch_wait_until_times_out_under_signals(void) {
    th_interrupt_waits_with(SIGUSR1);
    timed_ctx c;
    memset(&c, 0, sizeof c);
    conc_latch_init(&c.l, 1, 0);
    TH_UNTIL_SIGNALLED(sent) {
        c.deadline = conc_deadline_in(100 * CONC_MS);
        c.done = 0;
        sent = th_run_interrupted(timed_waiter, &c, SIGUSR1, &c.done);
        TH_CHECK_EQ(c.result, ETIMEDOUT);
        TH_CHECK(conc_now() >= c.deadline);
        TH_CHECK_EQ(conc_latch_count(&c.l), 1);
    }
}

static void latch_shared_across_processes(void) {
    conc_latch_t *l = (conc_latch_t *)mmap(NULL, sizeof *l, PROT_READ | PROT_WRITE,
                                           MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    TH_CHECK(l != MAP_FAILED);
    enum { PROCS = 4 };
    conc_latch_init(l, PROCS, CONC_SHARED);
    pid_t pids[PROCS];
    for (int p = 0; p < PROCS; p++) {
        pids[p] = fork();
        TH_CHECK(pids[p] >= 0);
        if (pids[p] == 0)
            _exit(conc_latch_done(l) == 0 ? 0 : 3);
    }
    conc_latch_wait(l);
    TH_CHECK_EQ(conc_latch_count(l), 0);
    for (int p = 0; p < PROCS; p++) {
        int status;
        TH_CHECK_EQ(waitpid(pids[p], &status, 0), pids[p]);
        TH_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    munmap(l, sizeof *l);
}

TH_MAIN("latch", TH_CASE(latch_counts_and_refuses_bad_input),
        TH_CASE(latch_init_count_past_max_aborts), TH_CASE(latch_stress_wait_group_rounds),
        TH_CASE(latch_zero_then_add_releases_current_waiters),
        TH_CASE(latch_stress_many_waiters_many_counters),
        TH_CASE(latch_wait_until_times_out_under_signals), TH_CASE(latch_shared_across_processes))
