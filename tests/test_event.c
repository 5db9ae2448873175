/* tests/test_event.c - conc_event: unit cases for every call, set/clear/wait storms where no
 * waiter misses a set it must see, deadlock stress (a token around a ring of events, timed
 * waits under contention), and a process-shared event across fork.
 * SPDX-License-Identifier: MIT */

/* Count futex syscalls: "set with nobody waiting makes no syscall" is checked, not assumed. */
static unsigned long futex_calls;
#define CONC_FUTEX_HOOK(kind) ((void)(kind), __atomic_fetch_add(&futex_calls, 1, __ATOMIC_RELAXED))
#include "conc/event.h"

#include "harness.h"

#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>

static unsigned long futex_count(void) {
    return __atomic_load_n(&futex_calls, __ATOMIC_RELAXED);
}

static uint32_t word_of(conc_event_t *e) {
    return __atomic_load_n(&e->word, __ATOMIC_RELAXED);
}

static pid_t my_tid(void) {
    return (pid_t)syscall(SYS_gettid);
}

/* True when thread tid is inside the futex syscall on addr right now (from /proc): the
 * one way to know, without timing, that a waiter really sleeps before we set. */
static bool sleeps_in_futex(pid_t tid, const void *addr) {
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/self/task/%d/syscall", (int)tid);
    FILE *f = fopen(path, "r");
    if (!f)
        TH_SKIP("cannot read /proc/self/task/*/syscall");
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    long nr = -1;
    unsigned long long a0 = 0;
    if (sscanf(buf, "%ld 0x%llx", &nr, &a0) != 2)
        return false; /* "running" */
    /* Under qemu-user the file shows the host's call, number and address: asleep is all it
     * can say (a waiter here sleeps nowhere but in the futex). */
    if (th_emulated())
        return th_thread_state(tid) == 'S';
    return nr == SYS_futex && (uintptr_t)a0 == (uintptr_t)addr;
}

/* ---- unit -------------------------------------------------------------------------------- */

static void event_is_four_bytes_and_zero_is_unset(void) {
    TH_CHECK_EQ(sizeof(conc_event_t), 4);
    conc_event_t zero;
    memset(&zero, 0, sizeof zero);
    TH_CHECK(!conc_event_is_set(&zero));
    conc_event_set(&zero);
    TH_CHECK(conc_event_is_set(&zero));
    conc_event_t st = CONC_EVENT_INIT;
    TH_CHECK(!conc_event_is_set(&st));
    conc_event_init(&st, CONC_SHARED);
    TH_CHECK(!conc_event_is_set(&st));
    conc_event_set(&st);
    TH_CHECK(conc_event_is_set(&st));
}

static void event_set_and_clear_are_idempotent(void) {
    conc_event_t e;
    conc_event_init(&e, 0);
    conc_event_clear(&e);
    TH_CHECK(!conc_event_is_set(&e));
    conc_event_set(&e);
    conc_event_set(&e);
    TH_CHECK(conc_event_is_set(&e));
    conc_event_clear(&e);
    TH_CHECK(!conc_event_is_set(&e));
    conc_event_clear(&e);
    TH_CHECK(!conc_event_is_set(&e));
    conc_event_set(&e);
    TH_CHECK(conc_event_is_set(&e));
}

static void event_wait_returns_at_once_when_set(void) {
    conc_event_t e = CONC_EVENT_INIT;
    conc_event_set(&e);
    conc_event_wait(&e);
    TH_CHECK_EQ(conc_event_wait_until(&e, CONC_FOREVER), 0);
    TH_CHECK_EQ(conc_event_wait_until(&e, conc_now() - 1), 0); /* set beats a past deadline */
    TH_CHECK_EQ(conc_event_wait_until(&e, 0), 0);
    TH_CHECK(conc_event_is_set(&e)); /* waiting does not consume (manual reset) */
}

static void event_set_with_nobody_waiting_makes_no_syscall(void) {
    conc_event_t e = CONC_EVENT_INIT;
    unsigned long before = futex_count();
    for (int i = 0; i < 1000; i++) {
        conc_event_set(&e);
        TH_CHECK(conc_event_is_set(&e));
        conc_event_wait(&e);
        conc_event_clear(&e);
    }
    TH_CHECK_EQ(futex_count() - before, 0);
}

static void event_until_past_deadline_tries_once(void) {
    conc_event_t e = CONC_EVENT_INIT;
    unsigned long before = futex_count();
    TH_CHECK_EQ(conc_event_wait_until(&e, conc_now() - 1), ETIMEDOUT);
    TH_CHECK_EQ(conc_event_wait_until(&e, 0), ETIMEDOUT);
    TH_CHECK_EQ(futex_count() - before, 0);
    TH_CHECK_EQ(word_of(&e) & CONC__EVENT_WAITERS, 0); /* no "maybe waiters" left behind */
    conc_event_set(&e);
    TH_CHECK_EQ(futex_count() - before, 0);
}

static void event_until_times_out_never_early(void) {
    conc_event_t e = CONC_EVENT_INIT;
    const int64_t waits[] = {1 * CONC_US, 100 * CONC_US, 1 * CONC_MS, 5 * CONC_MS, 20 * CONC_MS};
    for (size_t i = 0; i < sizeof waits / sizeof waits[0]; i++) {
        int64_t deadline = conc_deadline_in(waits[i]);
        TH_CHECK_EQ(conc_event_wait_until(&e, deadline), ETIMEDOUT);
        TH_CHECK_NOT_EARLY(deadline);
    }
    /* Documented cost: after a timed-out sleep, the next set makes one wake syscall. */
    unsigned long before = futex_count();
    conc_event_set(&e);
    TH_CHECK(futex_count() - before <= 1);
}

static void event_wait_after_set_then_clear_blocks(void) {
    conc_event_t e = CONC_EVENT_INIT;
    conc_event_set(&e);
    conc_event_clear(&e);
    int64_t deadline = conc_deadline_in(3 * CONC_MS);
    TH_CHECK_EQ(conc_event_wait_until(&e, deadline), ETIMEDOUT);
    TH_CHECK_NOT_EARLY(deadline);
}

typedef struct waiter_arg {
    conc_event_t *e;
    int64_t deadline; /* CONC_FOREVER: conc_event_wait */
    int result;
    int64_t returned_at;
    pid_t tid;
    int done;
} waiter_arg;

static void *waiter_main(void *p) {
    waiter_arg *a = (waiter_arg *)p;
    __atomic_store_n(&a->tid, my_tid(), __ATOMIC_RELEASE);
    if (a->deadline == CONC_FOREVER) {
        conc_event_wait(a->e);
        a->result = 0;
    } else {
        a->result = conc_event_wait_until(a->e, a->deadline);
    }
    a->returned_at = conc_now();
    __atomic_store_n(&a->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

static void event_until_survives_signals_keeps_deadline(void) {
    th_interrupt_waits_with(SIGUSR1);
    conc_event_t e = CONC_EVENT_INIT;
    TH_UNTIL_SIGNALLED(signals) {
        waiter_arg a = {&e, conc_deadline_in(60 * CONC_MS), -1, 0, 0, 0};
        signals = th_run_interrupted(waiter_main, &a, SIGUSR1, &a.done);
        TH_CHECK_EQ(a.result, ETIMEDOUT);
        TH_CHECK_MSG(a.returned_at >= a.deadline, "returned %lld ns early after %d signals",
                     (long long)(a.deadline - a.returned_at), signals);
    }
}

enum { SLEEPERS = 6 };

/* Starts SLEEPERS waiters (half blocking, half with a far deadline) and returns once each
 * one sleeps in the kernel on e. */
static void start_sleepers(conc_event_t *e, waiter_arg *a, pthread_t *t) {
    for (int i = 0; i < SLEEPERS; i++) {
        waiter_arg init = {e, i % 2 ? CONC_FOREVER : conc_deadline_in(600 * CONC_SEC), -1, 0, 0, 0};
        a[i] = init;
        TH_CHECK_EQ(pthread_create(&t[i], NULL, waiter_main, &a[i]), 0);
    }
    for (int i = 0; i < SLEEPERS; i++) {
        pid_t tid;
        while ((tid = __atomic_load_n(&a[i].tid, __ATOMIC_ACQUIRE)) == 0)
            sched_yield();
        while (!sleeps_in_futex(tid, &e->word)) {
            TH_CHECK(!__atomic_load_n(&a[i].done, __ATOMIC_ACQUIRE)); /* nobody set it yet */
            sched_yield();
        }
    }
}

static void event_set_wakes_every_sleeper(void) {
    conc_event_t e = CONC_EVENT_INIT;
    waiter_arg a[SLEEPERS];
    pthread_t t[SLEEPERS];
    start_sleepers(&e, a, t);
    unsigned long before = futex_count();
    conc_event_set(&e);
    TH_CHECK_EQ(futex_count() - before, 1); /* one wake-all, whatever the number of sleepers */
    for (int i = 0; i < SLEEPERS; i++) {
        pthread_join(t[i], NULL);
        TH_CHECK_EQ(a[i].result, 0);
    }
    TH_CHECK(conc_event_is_set(&e));
}

/* The documented race: a sleeper woken by set returns 0 even when clear follows at once
 * (Python's Event does the same). A "set(); clear();" pulse releases every current waiter. */
static void event_pulse_releases_every_sleeper(void) {
    conc_event_t e = CONC_EVENT_INIT;
    for (int round = 0; round < 5; round++) {
        waiter_arg a[SLEEPERS];
        pthread_t t[SLEEPERS];
        start_sleepers(&e, a, t);
        conc_event_set(&e);
        conc_event_clear(&e);
        for (int i = 0; i < SLEEPERS; i++) {
            pthread_join(t[i], NULL);
            TH_CHECK_EQ(a[i].result, 0);
        }
        TH_CHECK(!conc_event_is_set(&e));
    }
}

/* ---- race stress ------------------------------------------------------------------------- */

/* Rounds through two events: round r sets go[r % 2] (after clearing the other one, which
 * every waiter has passed), and waits for all waiters to arrive. A waiter that misses a set
 * hangs the round (the watchdog reports it); a waiter that returns without a set sees the
 * wrong round in the plain payload. */
typedef struct rounds_state {
    conc_event_t go[2];
    long rounds;
    int waiters;
    long payload;       /* plain: written before set, read after wait returns */
    int arrived;        /* tells the setter everyone is through (tgroup_advance / _wait) */
    long polled, timed; /* relaxed instrumentation */
} rounds_state;

static void rounds_worker(int index, void *p) {
    rounds_state *st = (rounds_state *)p;
    th_rng rng = th_rng_make((uint64_t)index + 3);
    if (index == st->waiters) { /* the setter */
        for (long r = 1; r <= st->rounds; r++) {
            st->payload = r;
            conc_event_clear(&st->go[(r + 1) % 2]);
            if (th_rand_below(&rng, 2))
                conc_event_set(&st->go[r % 2]);
            else { /* set twice, or set from a clear-set pair: both must count */
                conc_event_set(&st->go[r % 2]);
                conc_event_set(&st->go[r % 2]);
            }
            tgroup_wait_at_least(&st->arrived, (int)(r * st->waiters)); /* scaffolding */
        }
        return;
    }
    for (long r = 1; r <= st->rounds; r++) {
        conc_event_t *e = &st->go[r % 2];
        switch (th_rand_below(&rng, 3)) {
        case 0:
            conc_event_wait(e);
            break;
        case 1:
            while (conc_event_wait_until(e, conc_deadline_in((int64_t)th_rand_below(&rng, 100) *
                                                             CONC_US)) == ETIMEDOUT)
                __atomic_fetch_add(&st->timed, 1, __ATOMIC_RELAXED);
            break;
        default: /* poll: yield at first, then nap, so that a core shared with other work
                  * (a build, a CPU hog) goes to the setter rather than to the pollers' turns */
            for (int polls = 0; !conc_event_is_set(e); polls++) {
                __atomic_fetch_add(&st->polled, 1, __ATOMIC_RELAXED);
                if (polls < 16)
                    sched_yield();
                else
                    th_sleep_ns(20 * 1000);
            }
            break;
        }
        TH_CHECK_MSG(st->payload == r, "round %ld saw payload %ld", r, st->payload);
        tgroup_advance(&st->arrived, 1, (int)(r * st->waiters));
    }
}

static void event_stress_set_clear_wait_rounds(void) {
    static rounds_state st;
    conc_event_init(&st.go[0], 0);
    conc_event_init(&st.go[1], 0);
    st.waiters = th_threads(10);
    st.rounds = th_iters(4000);
    TH_CHECK(st.rounds * st.waiters < INT_MAX);
    th_run_threads(st.waiters + 1, rounds_worker, &st);
    TH_CHECK_EQ(st.arrived, st.rounds * st.waiters);
    printf("    %d waiters x %ld rounds (%ld timed-out waits retried, %ld polls)\n", st.waiters,
           st.rounds, st.timed, st.polled);
}

/* Pulses against sleepers, many rounds: every waiter already asleep when set(); clear();
 * runs must return 0. */
static void event_stress_pulse_rounds(void) {
    conc_event_t e = CONC_EVENT_INIT;
    long rounds = th_iters(40);
    for (long round = 0; round < rounds; round++) {
        waiter_arg a[SLEEPERS];
        pthread_t t[SLEEPERS];
        start_sleepers(&e, a, t);
        conc_event_set(&e);
        if (round % 3 != 2)
            conc_event_clear(&e);
        for (int i = 0; i < SLEEPERS; i++) {
            pthread_join(t[i], NULL);
            TH_CHECK_EQ(a[i].result, 0);
        }
        conc_event_clear(&e);
    }
}

/* A storm of random set/clear/wait_until/is_set on one event: timed waits never return
 * early, nothing hangs, and a final set releases everyone. */
typedef struct storm_state {
    conc_event_t e;
    long ops;
    int done_workers;
    long zeros, timeouts; /* relaxed */
} storm_state;

static void storm_worker(int index, void *p) {
    storm_state *st = (storm_state *)p;
    th_rng rng = th_rng_make((uint64_t)index + 11);
    for (long i = 0; i < st->ops; i++) {
        uint32_t op = th_rand_below(&rng, 10);
        if (op < 2) {
            conc_event_set(&st->e);
        } else if (op < 4) {
            conc_event_clear(&st->e);
        } else if (op < 5) {
            (void)conc_event_is_set(&st->e);
        } else {
            int64_t deadline = conc_deadline_in((int64_t)th_rand_below(&rng, 200) * CONC_US);
            int r = conc_event_wait_until(&st->e, deadline);
            if (r == ETIMEDOUT) {
                TH_CHECK_NOT_EARLY(deadline);
                __atomic_fetch_add(&st->timeouts, 1, __ATOMIC_RELAXED);
            } else {
                TH_CHECK_EQ(r, 0);
                __atomic_fetch_add(&st->zeros, 1, __ATOMIC_RELAXED);
            }
        }
    }
    __atomic_fetch_add(&st->done_workers, 1, __ATOMIC_RELAXED);
    conc_event_set(&st->e);
}

static void event_stress_random_storm(void) {
    static storm_state st;
    conc_event_init(&st.e, 0);
    st.ops = th_iters(20000);
    int threads = th_threads(10);
    th_run_threads(threads, storm_worker, &st);
    TH_CHECK_EQ(st.done_workers, threads);
    TH_CHECK(conc_event_is_set(&st.e));
    printf("    %ld waits returned 0, %ld timed out\n", st.zeros, st.timeouts);
}

/* ---- deadlock stress --------------------------------------------------------------------- */

enum { RING = 8 };

/* Each hop is an event: set hands the token on, and the taker clears its own event before
 * passing the token on, so the next set of it comes after the clear. */
static void ring_take(void *ctx, int me, th_rng *rng) {
    conc_event_t *mine = &((conc_event_t *)ctx)[me];
    if (th_rand_below(rng, 2))
        conc_event_wait(mine);
    else
        while (conc_event_wait_until(mine, conc_deadline_in(CONC_MS)) == ETIMEDOUT) {
        }
    conc_event_clear(mine);
}

static void ring_give(void *ctx, int next) {
    conc_event_set(&((conc_event_t *)ctx)[next]);
}

static void event_deadlock_token_ring(void) {
    static conc_event_t hop[RING];
    for (int i = 0; i < RING; i++)
        conc_event_init(&hop[i], 0);
    conc_event_set(&hop[0]);
    th_ring ring = {ring_take, ring_give, hop, RING, th_iters(5000), 0};
    th_ring_run(&ring);
    TH_CHECK(conc_event_is_set(&hop[0])); /* the token is back where it started */
    for (int i = 1; i < RING; i++)
        TH_CHECK(!conc_event_is_set(&hop[i]));
}

typedef struct timed_state {
    conc_event_t e;
    long rounds;
    int stop;
    long got, timeouts; /* relaxed */
} timed_state;

/* Sets and clears at random until the waiters are done. */
static void *toggler_main(void *p) {
    timed_state *st = (timed_state *)p;
    th_rng rng = th_rng_make(4242);
    while (!__atomic_load_n(&st->stop, __ATOMIC_RELAXED)) {
        conc_event_set(&st->e);
        for (uint32_t k = th_rand_below(&rng, 500); k; k--)
            conc_cpu_relax();
        conc_event_clear(&st->e);
        th_sleep_ns((int64_t)th_rand_below(&rng, 300) * CONC_US);
    }
    return NULL;
}

static void timed_worker(int index, void *p) {
    timed_state *st = (timed_state *)p;
    th_rng rng = th_rng_make((uint64_t)index + 99);
    for (long i = 0; i < st->rounds; i++) {
        int64_t deadline = conc_deadline_in((int64_t)th_rand_below(&rng, 300) * CONC_US);
        int r = conc_event_wait_until(&st->e, deadline);
        if (r == ETIMEDOUT) {
            TH_CHECK_NOT_EARLY(deadline);
            __atomic_fetch_add(&st->timeouts, 1, __ATOMIC_RELAXED);
        } else {
            TH_CHECK_EQ(r, 0);
            __atomic_fetch_add(&st->got, 1, __ATOMIC_RELAXED);
            /* The event stays set for the length of the toggler's wake syscall: step out of
             * that window so that the next wait meets every phase of the toggling. */
            th_sleep_ns((int64_t)th_rand_below(&rng, 200) * CONC_US);
        }
    }
}

static void event_deadlock_timed_waits_under_contention(void) {
    static timed_state st;
    conc_event_init(&st.e, 0);
    st.rounds = th_iters(2000);
    int threads = th_threads(10);
    pthread_t toggler;
    TH_CHECK_EQ(pthread_create(&toggler, NULL, toggler_main, &st), 0);
    th_run_threads(threads, timed_worker, &st);
    __atomic_store_n(&st.stop, 1, __ATOMIC_RELAXED);
    pthread_join(toggler, NULL);
    TH_CHECK_EQ(st.got + st.timeouts, threads * st.rounds);
    printf("    %ld waits returned 0, %ld timed out\n", st.got, st.timeouts);
}

/* ---- process-shared ---------------------------------------------------------------------- */

typedef struct shared_pair {
    conc_event_t ping, pong, never;
    long volley; /* plain: passed back and forth by the two events */
} shared_pair;

static void event_shared_across_fork_ping_pong(void) {
    shared_pair *sp = (shared_pair *)mmap(NULL, sizeof *sp, PROT_READ | PROT_WRITE,
                                          MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    TH_CHECK(sp != MAP_FAILED);
    conc_event_init(&sp->ping, CONC_SHARED);
    conc_event_init(&sp->pong, CONC_SHARED);
    conc_event_init(&sp->never, CONC_SHARED);
    sp->volley = 0;
    long rounds = th_iters(20000);
    pid_t child = fork();
    TH_CHECK(child >= 0);
    if (child == 0) {
        int64_t deadline = conc_deadline_in(2 * CONC_MS);
        if (conc_event_wait_until(&sp->never, deadline) != ETIMEDOUT || conc_now() < deadline)
            _exit(4);
        for (long i = 0; i < rounds; i++) {
            if (i % 2)
                conc_event_wait(&sp->ping);
            else
                while (conc_event_wait_until(&sp->ping, conc_deadline_in(CONC_MS)) == ETIMEDOUT) {
                }
            conc_event_clear(&sp->ping);
            sp->volley++;
            conc_event_set(&sp->pong);
        }
        _exit(0);
    }
    for (long i = 0; i < rounds; i++) {
        sp->volley++;
        conc_event_set(&sp->ping);
        conc_event_wait(&sp->pong);
        conc_event_clear(&sp->pong);
    }
    int status = 0;
    TH_CHECK_EQ(waitpid(child, &status, 0), child);
    TH_CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
    TH_CHECK_EQ(sp->volley, 2 * rounds);
    TH_CHECK(!conc_event_is_set(&sp->ping));
    munmap(sp, sizeof *sp);
}

TH_MAIN("event", TH_CASE(event_is_four_bytes_and_zero_is_unset),
        TH_CASE(event_set_and_clear_are_idempotent), TH_CASE(event_wait_returns_at_once_when_set),
        TH_CASE(event_set_with_nobody_waiting_makes_no_syscall),
        TH_CASE(event_until_past_deadline_tries_once), TH_CASE(event_until_times_out_never_early),
        TH_CASE(event_wait_after_set_then_clear_blocks),
        TH_CASE(event_until_survives_signals_keeps_deadline),
        TH_CASE(event_set_wakes_every_sleeper), TH_CASE(event_pulse_releases_every_sleeper),
        TH_CASE(event_stress_set_clear_wait_rounds), TH_CASE(event_stress_pulse_rounds),
        TH_CASE(event_stress_random_storm), TH_CASE_T(event_deadlock_token_ring, 60),
        TH_CASE(event_deadlock_timed_waits_under_contention),
        TH_CASE(event_shared_across_fork_ping_pong))
