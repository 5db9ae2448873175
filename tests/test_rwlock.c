/* tests/test_rwlock.c - conc_rwlock: unit cases, the lock-like stress on the exclusive side,
 * reader/writer race stress on plain data, deadlock stress over mixed modes, starvation of
 * either side, downgrade, timeouts that admit the queue, process-shared use.
 * SPDX-License-Identifier: MIT */
#include "futex_gate.h" /* before conc/rwlock.h: it sets the futex seam */

#include "conc/rwlock.h"

#include <signal.h>
#include <sys/mman.h>
#include <time.h>

#define LK_T conc_rwlock_t
#define LK_INIT(p) conc_rwlock_init((p), 0)
#define LK_ACQUIRE(p) conc_rwlock_acquire(p)
#define LK_TRY(p) conc_rwlock_try_acquire(p)
#define LK_UNTIL(p, dl) conc_rwlock_acquire_until((p), (dl))
#define LK_RELEASE(p) conc_rwlock_release(p)
#include "lockish.h"

static uint64_t word_of(conc_rwlock_t *rw) {
    return conc_load(&rw->word, CONC_RELAXED);
}
static uint64_t queued_of(conc_rwlock_t *rw) {
    return word_of(rw) >> CONC__RWLOCK_QUEUED_SHIFT;
}

/* ---- unit -------------------------------------------------------------------------------- */

static void rwlock_is_a_line_per_slot_and_zero_is_free(void) {
    TH_CHECK_EQ(sizeof(conc_rwlock_t), CONC_CACHELINE * (1 + CONC_RWLOCK_SLOTS));
    conc_rwlock_t zero;
    memset(&zero, 0, sizeof zero);
    TH_CHECK(!conc_rwlock_is_locked(&zero));
    TH_CHECK_EQ(conc_rwlock_readers(&zero), 0);
    TH_CHECK_EQ(conc_rwlock_try_acquire(&zero), 0);
    TH_CHECK(conc_rwlock_is_locked(&zero));
    conc_rwlock_release(&zero);
    conc_rwlock_t init = CONC_RWLOCK_INIT;
    TH_CHECK_EQ(conc_rwlock_try_acquire_shared(&init), 0);
    TH_CHECK_EQ(conc_rwlock_readers(&init), 1);
    conc_rwlock_release_shared(&init);
}

/* glibc puts the thread pointers of default threads CONC__RWLOCK_GLIBC_STRIDE_PAGES apart
 * (an 8 MiB stack and its guard page): CONC_RWLOCK_SLOTS of them made in a row get a slot
 * each, wherever the first one sits (the golden-ratio hash put 8 such threads in 5 slots).
 * Pages of up to 35 bits (x86-64 user space; on a 32-bit target, any page the whole run of
 * threads fits above) with the thread pointer's offset in its page, from a fixed LCG. */
static void rwlock_default_threads_in_a_row_get_a_slot_each(void) {
    enum { ROUNDS = 10000 };
    const uintptr_t page = (uintptr_t)1 << CONC__RWLOCK_PAGE_SHIFT;
    const uint64_t pages = sizeof(uintptr_t) >= 8
                               ? (uint64_t)1 << 35
                               : ((uint64_t)1 << (32 - CONC__RWLOCK_PAGE_SHIFT)) -
                                     (uint64_t)CONC_RWLOCK_SLOTS * CONC__RWLOCK_GLIBC_STRIDE_PAGES;
    uint64_t seed = 1;
    for (int round = 0; round < ROUNDS; round++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull; /* Knuth's MMIX LCG */
        uintptr_t first = (uintptr_t)((seed >> 29) % pages) * page + (uintptr_t)(seed & (page - 1));
        bool used[CONC_RWLOCK_SLOTS] = {false};
        for (uintptr_t k = 0; k < CONC_RWLOCK_SLOTS; k++) {
            uintptr_t self = first + k * CONC__RWLOCK_GLIBC_STRIDE_PAGES * page;
            size_t i = conc__rwlock_slot_index(self);
            TH_CHECK(i < CONC_RWLOCK_SLOTS);
            TH_CHECK(!used[i]);
            used[i] = true;
        }
    }
}

static void rwlock_try_forms_see_each_other(void) {
    conc_rwlock_t rw;
    conc_rwlock_init(&rw, 0);
    TH_CHECK_EQ(conc_rwlock_try_acquire_shared(&rw), 0);
    TH_CHECK_EQ(conc_rwlock_try_acquire_shared(&rw), 0); /* readers share */
    conc_rwlock_acquire_shared(&rw);
    TH_CHECK_EQ(conc_rwlock_readers(&rw), 3);
    TH_CHECK_EQ(conc_rwlock_try_acquire(&rw), EBUSY);
    TH_CHECK_EQ(conc_rwlock_acquire_until(&rw, conc_now()), ETIMEDOUT); /* past: tries once */
    TH_CHECK(!conc_rwlock_is_locked(&rw)); /* the failed writer left no trace */
    TH_CHECK(!conc_lock_is_locked(&rw.writers));
    for (int i = 0; i < 3; i++)
        conc_rwlock_release_shared(&rw);
    TH_CHECK_EQ(conc_rwlock_acquire_until(&rw, 0), 0); /* free: a past deadline still gets it */
    TH_CHECK_EQ(conc_rwlock_try_acquire(&rw), EBUSY);
    TH_CHECK_EQ(conc_rwlock_try_acquire_shared(&rw), EBUSY);
    TH_CHECK_EQ(conc_rwlock_acquire_shared_until(&rw, conc_now()), ETIMEDOUT);
    TH_CHECK_EQ(queued_of(&rw), 0); /* the timed-out reader left the queue */
    conc_rwlock_release(&rw);
    TH_CHECK_EQ(conc_rwlock_acquire_shared_until(&rw, CONC_FOREVER), 0);
    conc_rwlock_release_shared(&rw);
    /* Back to zero apart from the phase: two writer phases and a timed-out one ended. */
    TH_CHECK_EQ(word_of(&rw) & ~CONC__RWLOCK_PHASE_MASK, 0);
}

static void rwlock_downgrade_keeps_readers_out_of_nothing(void) {
    conc_rwlock_t rw = CONC_RWLOCK_INIT;
    conc_rwlock_acquire(&rw);
    conc_rwlock_downgrade(&rw);
    TH_CHECK(!conc_rwlock_is_locked(&rw));
    TH_CHECK_EQ(conc_rwlock_readers(&rw), 1);
    TH_CHECK_EQ(conc_rwlock_try_acquire(&rw), EBUSY);    /* we still read */
    TH_CHECK_EQ(conc_rwlock_try_acquire_shared(&rw), 0); /* and others may */
    conc_rwlock_release_shared(&rw);
    conc_rwlock_release_shared(&rw);
    TH_CHECK_EQ(conc_rwlock_try_acquire(&rw), 0);
    conc_rwlock_release(&rw);
}

static void rwlock_shared_flag_in_private_memory(void) {
    conc_rwlock_t rw;
    conc_rwlock_init(&rw, CONC_SHARED);
    conc_rwlock_acquire_shared(&rw);
    TH_CHECK_EQ(conc_rwlock_try_acquire(&rw), EBUSY);
    conc_rwlock_release_shared(&rw);
    conc_rwlock_acquire(&rw);
    conc_rwlock_release(&rw);
    TH_CHECK(word_of(&rw) & CONC__RWLOCK_SHARED);
    TH_CHECK_EQ(rw.writers.word, CONC__LOCK_SHARED);
}

/* Misuse that cannot be reported aborts with a message naming the function (under TSan the
 * annotation reports it first, which shows the annotations reach TSan). */
static void release_shared_unheld(void) {
    conc_rwlock_t rw = CONC_RWLOCK_INIT;
    conc_rwlock_release_shared(&rw);
}
static void release_unheld(void) {
    conc_rwlock_t rw = CONC_RWLOCK_INIT;
    conc_rwlock_release(&rw);
}
static void downgrade_unheld(void) {
    conc_rwlock_t rw = CONC_RWLOCK_INIT;
    conc_rwlock_acquire_shared(&rw);
    conc_rwlock_downgrade(&rw);
}
/* The same mistakes while a writer waits for the caller's shared hold to end: WRITER is up
 * then, yet nobody holds the lock exclusively (a check of WRITER alone let the release end
 * that writer's phase under it, and the writer slept for good). */
static conc_rwlock_t waited_on = CONC_RWLOCK_INIT;
static void *writer_waits(void *arg) {
    (void)arg;
    conc_rwlock_acquire(&waited_on);
    return NULL;
}
static void start_writer_behind_reader(void) {
    conc_rwlock_acquire_shared(&waited_on);
    pthread_t t;
    if (pthread_create(&t, NULL, writer_waits, NULL) != 0)
        _exit(2);
    while (!conc_rwlock_is_locked(&waited_on)) /* the writer raised WRITER: it waits for us */
        th_sleep_ns(100000);
}
static void release_while_writer_waits(void) {
    start_writer_behind_reader();
    conc_rwlock_release(&waited_on);
}
static void downgrade_while_writer_waits(void) {
    start_writer_behind_reader();
    conc_rwlock_downgrade(&waited_on);
}
static void check_abort(void (*fn)(void), const char *msg) {
    char err[4096];
    int status = th_run_child_capturing_stderr(fn, err, sizeof err);
#if defined(CONC_TSAN)
    /* TSan reports a write unlock of an unlocked mutex itself; a read unlock it lets through
     * to our own check. */
    TH_CHECK_MSG(status != 0 && (strstr(err, "unlock of an unlocked mutex") != NULL ||
                                 strstr(err, msg) != NULL),
                 "stderr: %s", err);
#else
    TH_CHECK_MSG(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "status %d", status);
    TH_CHECK_MSG(strstr(err, msg) != NULL, "stderr: %s", err);
#endif
}
static void rwlock_misuse_aborts_with_message(void) {
    check_abort(release_shared_unheld, "conc_rwlock_release_shared: not held shared");
    check_abort(release_unheld, "conc_rwlock_release: not held exclusively");
    check_abort(downgrade_unheld, "conc_rwlock_downgrade: not held exclusively");
    check_abort(release_while_writer_waits, "conc_rwlock_release: not held exclusively");
    check_abort(downgrade_while_writer_waits, "conc_rwlock_downgrade: not held exclusively");
}

/* A wait without a deadline by the thread that holds the lock exclusively would wait for
 * itself for good: it aborts naming the call (glibc's rwlock says EDEADLK). With a deadline it
 * times out, as any wait for a holder does. */
static void acquire_while_holding(void) {
    static conc_rwlock_t rw = CONC_RWLOCK_INIT;
    conc_rwlock_acquire(&rw);
    conc_rwlock_acquire(&rw);
}
static void acquire_shared_while_holding(void) {
    static conc_rwlock_t rw = CONC_RWLOCK_INIT;
    conc_rwlock_acquire(&rw);
    conc_rwlock_acquire_shared(&rw);
}
static void acquire_until_forever_while_holding(void) {
    static conc_rwlock_t rw = CONC_RWLOCK_INIT;
    conc_rwlock_acquire(&rw);
    if (conc_rwlock_acquire_until(&rw, CONC_FOREVER) == 0)
        abort(); /* not reached: the call aborts with its own message first */
}
static void check_self_wait_aborts(void (*fn)(void), const char *msg) {
    char err[4096];
    int status = th_run_child_capturing_stderr(fn, err, sizeof err);
    TH_CHECK_MSG(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "status %d", status);
    TH_CHECK_MSG(strstr(err, msg) != NULL, "stderr: %s", err);
}
static void rwlock_holder_waiting_for_itself_aborts(void) {
    check_self_wait_aborts(acquire_while_holding, "conc_rwlock_acquire: the calling thread holds");
    check_self_wait_aborts(acquire_until_forever_while_holding,
                           "conc_rwlock_acquire: the calling thread holds");
    check_self_wait_aborts(acquire_shared_while_holding,
                           "conc_rwlock_acquire_shared: the calling thread holds");
    conc_rwlock_t rw = CONC_RWLOCK_INIT;
    conc_rwlock_acquire(&rw);
    int64_t dl = conc_deadline_in(CONC_MS);
    TH_CHECK_EQ(conc_rwlock_acquire_until(&rw, dl), ETIMEDOUT);
    TH_CHECK_NOT_EARLY(dl);
    dl = conc_deadline_in(CONC_MS);
    TH_CHECK_EQ(conc_rwlock_acquire_shared_until(&rw, dl), ETIMEDOUT);
    TH_CHECK_NOT_EARLY(dl);
    TH_CHECK_EQ(conc_rwlock_try_acquire(&rw), EBUSY);
    conc_rwlock_release(&rw);
    TH_CHECK_EQ(conc_rwlock_readers(&rw), 0u);
}

/* A slot counts holds, and a thread that held shared about 2^30 times over (recursion that
 * never releases) carried its slot's count into the slot's two bits: the lock then showed no
 * reader, and a writer got in. Past CONC__RWLOCK_SLOT_HOLDS_MAX the try and until forms say
 * EAGAIN, the blocking form aborts naming itself, and nothing changes: the holds stay
 * counted, and a writer still waits for them. The count is set by hand (no case needs a
 * billion acquires). */
static void acquire_shared_on_a_full_slot(void) {
    static conc_rwlock_t rw = CONC_RWLOCK_INIT;
    conc_store(conc__rwlock_slot_of_self(&rw), CONC__RWLOCK_SLOT_HOLDS_MAX, CONC_RELAXED);
    conc_rwlock_acquire_shared(&rw);
}
static void rwlock_slot_full_of_holds_refuses_more(void) {
    conc_rwlock_t rw = CONC_RWLOCK_INIT;
    uint32_t *slot = conc__rwlock_slot_of_self(&rw);
    conc_store(slot, CONC__RWLOCK_SLOT_HOLDS_MAX - 1, CONC_RELAXED); /* as if held that often */
    TH_CHECK_EQ(conc_rwlock_try_acquire_shared(&rw), 0);             /* the last hold that fits */
    TH_CHECK_EQ(conc_rwlock_try_acquire_shared(&rw), EAGAIN);
    TH_CHECK_EQ(conc_rwlock_acquire_shared_until(&rw, conc_deadline_in(CONC_MS)), EAGAIN);
    TH_CHECK_EQ(conc_rwlock_acquire_shared_until(&rw, CONC_FOREVER), EAGAIN);
    TH_CHECK_EQ(conc_load(slot, CONC_RELAXED), CONC__RWLOCK_SLOT_HOLDS_MAX);
    TH_CHECK_EQ(conc_rwlock_readers(&rw), CONC__RWLOCK_SLOT_HOLDS_MAX);
    TH_CHECK_EQ(conc_rwlock_try_acquire(&rw), EBUSY); /* readers inside: no writer */
    conc_rwlock_release_shared(&rw);
    TH_CHECK_EQ(conc_rwlock_try_acquire_shared(&rw), 0); /* room for one again */
    conc_rwlock_release_shared(&rw);
    conc_store(slot, 0u, CONC_RELAXED); /* the holds that never were */
    TH_CHECK_EQ(conc_rwlock_try_acquire(&rw), 0);
    conc_rwlock_release(&rw);
    th_check_aborts_with(acquire_shared_on_a_full_slot,
                         "conc_rwlock_acquire_shared: the calling thread's slot counts "
                         "1,069,547,519 shared holds already");
}

/* ---- orderings of events between threads ------------------------------------------------- */

typedef struct actor {
    conc_rwlock_t *rw;
    int64_t deadline;
    int result;
    int done;   /* release/acquire: the call has returned */
    int let_go; /* release/acquire: a reader holding the lock may release it (only the
                 * thread that acquired a shared hold may release it) */
} actor;

static void *writer_until(void *arg) {
    actor *a = (actor *)arg;
    a->result = conc_rwlock_acquire_until(a->rw, a->deadline);
    if (a->result == 0)
        conc_rwlock_release(a->rw);
    __atomic_store_n(&a->done, 1, __ATOMIC_RELEASE);
    return NULL;
}
static void *reader_blocking(void *arg) {
    actor *a = (actor *)arg;
    conc_rwlock_acquire_shared(a->rw);
    a->result = 0;
    __atomic_store_n(&a->done, 1, __ATOMIC_RELEASE);
    while (!__atomic_load_n(&a->let_go, __ATOMIC_ACQUIRE))
        th_sleep_ns(100000);
    conc_rwlock_release_shared(a->rw);
    return NULL;
}
static void *reader_until(void *arg) {
    actor *a = (actor *)arg;
    a->result = conc_rwlock_acquire_shared_until(a->rw, a->deadline);
    __atomic_store_n(&a->done, 1, __ATOMIC_RELEASE);
    return NULL;
}
static void wait_for(bool (*cond)(conc_rwlock_t *), conc_rwlock_t *rw) {
    while (!cond(rw))
        th_sleep_ns(100000);
}
static void wait_done(actor *a) {
    while (!__atomic_load_n(&a->done, __ATOMIC_ACQUIRE))
        th_sleep_ns(100000);
}
static void let_go(actor *a, pthread_t t) {
    __atomic_store_n(&a->let_go, 1, __ATOMIC_RELEASE);
    pthread_join(t, NULL);
}
static bool has_writer(conc_rwlock_t *rw) {
    return conc_rwlock_is_locked(rw);
}
static bool has_queued(conc_rwlock_t *rw) {
    return queued_of(rw) > 0;
}

/* A timed writer held at its first futex sleep (its gate) until the test has arranged what it
 * must find on waking, so its deadline, taken as it starts, cannot pass during that setup. */
typedef struct gated_writer {
    conc_rwlock_t *rw;
    futex_gate gate;
    int64_t deadline;
    int result;
    int done; /* release/acquire: the call has returned */
} gated_writer;
static void *gated_writer_main(void *arg) {
    gated_writer *g = (gated_writer *)arg;
    g->deadline = conc_deadline_in(200 * CONC_MS);
    gate_here = &g->gate;
    g->result = conc_rwlock_acquire_until(g->rw, g->deadline);
    gate_here = NULL;
    if (g->result == 0)
        conc_rwlock_release(g->rw);
    __atomic_store_n(&g->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

/* Writer preference: a reader arriving while a writer waits queues behind it, even though
 * another reader is inside. The writer times out (the first reader never leaves) and its
 * timeout admits the queued reader, while the first reader still holds the lock. */
static void rwlock_writer_timeout_admits_queued_readers(void) {
    conc_rwlock_t rw = CONC_RWLOCK_INIT;
    conc_rwlock_acquire_shared(&rw);
    gated_writer w;
    pthread_t tw, tr;
    for (;;) {
        memset(&w, 0, sizeof w);
        w.rw = &rw;
        TH_CHECK_EQ(pthread_create(&tw, NULL, gated_writer_main, &w), 0);
        while (!__atomic_load_n(&w.gate.reached, __ATOMIC_ACQUIRE) &&
               !__atomic_load_n(&w.done, __ATOMIC_ACQUIRE))
            th_sleep_ns(100000);
        if (__atomic_load_n(&w.gate.reached, __ATOMIC_ACQUIRE))
            break;
        /* Done without sleeping: preempted past its deadline on its way; not this scenario. */
        pthread_join(tw, NULL);
        TH_CHECK_EQ(w.result, ETIMEDOUT);
    }
    /* it raised WRITER before it slept */
    TH_CHECK(has_writer(&rw));
    TH_CHECK_EQ(conc_rwlock_try_acquire_shared(&rw), EBUSY); /* a writer waits: no new reader */
    actor r = {&rw, CONC_FOREVER, -1, 0, 0};
    TH_CHECK_EQ(pthread_create(&tr, NULL, reader_blocking, &r), 0);
    wait_for(has_queued, &rw);
    gate_open(&w.gate);
    pthread_join(tw, NULL);
    TH_CHECK_EQ(w.result, ETIMEDOUT);
    TH_CHECK_NOT_EARLY(w.deadline);
    wait_done(&r); /* admitted while we still hold our read lock */
    TH_CHECK_EQ(conc_rwlock_readers(&rw), 2);
    conc_rwlock_release_shared(&rw);
    let_go(&r, tr);
    TH_CHECK_EQ(word_of(&rw) & ~CONC__RWLOCK_PHASE_MASK, 0);
    TH_CHECK_EQ(conc_rwlock_readers(&rw), 0);
}

/* A timed reader behind a writer times out (never early) and leaves the queue; signals do
 * not end or stretch its wait. */
static void rwlock_shared_until_times_out_under_signals(void) {
    th_interrupt_waits_with(SIGUSR1);
    conc_rwlock_t rw = CONC_RWLOCK_INIT;
    conc_rwlock_acquire(&rw);
    TH_UNTIL_SIGNALLED(sent) {
        actor r = {&rw, conc_deadline_in(100 * CONC_MS), -1, 0, 0};
        sent = th_run_interrupted(reader_until, &r, SIGUSR1, &r.done);
        TH_CHECK_EQ(r.result, ETIMEDOUT);
        TH_CHECK(conc_now() >= r.deadline);
        TH_CHECK_EQ(queued_of(&rw), 0);
    }
    conc_rwlock_release(&rw);
    TH_CHECK_EQ(word_of(&rw) & ~CONC__RWLOCK_PHASE_MASK, 0);
}

/* Phase fairness: readers queued behind a writer get in when it leaves, before the next
 * writer (already waiting on the inner lock) can. Then that writer waits for them. */
static void rwlock_release_admits_readers_before_next_writer(void) {
    conc_rwlock_t rw = CONC_RWLOCK_INIT;
    conc_rwlock_acquire(&rw);
    actor r1 = {&rw, CONC_FOREVER, -1, 0, 0}, r2 = {&rw, CONC_FOREVER, -1, 0, 0};
    actor w2 = {&rw, CONC_FOREVER, -1, 0, 0};
    pthread_t t1, t2, tw;
    TH_CHECK_EQ(pthread_create(&t1, NULL, reader_blocking, &r1), 0);
    TH_CHECK_EQ(pthread_create(&t2, NULL, reader_blocking, &r2), 0);
    while (queued_of(&rw) < 2)
        th_sleep_ns(100000);
    TH_CHECK_EQ(pthread_create(&tw, NULL, writer_until, &w2), 0);
    while (!(conc_load(&rw.writers.word, CONC_RELAXED) & CONC__LOCK_SLEEPER_MASK))
        th_sleep_ns(100000); /* the second writer sleeps on the inner lock */
    conc_rwlock_release(&rw);
    wait_done(&r1);
    wait_done(&r2); /* both readers got in (they still hold the lock) */
    TH_CHECK_EQ(__atomic_load_n(&w2.done, __ATOMIC_ACQUIRE), 0); /* the writer waits for them */
    let_go(&r1, t1);
    TH_CHECK_EQ(__atomic_load_n(&w2.done, __ATOMIC_ACQUIRE), 0); /* ... for both */
    let_go(&r2, t2);
    pthread_join(tw, NULL);
    TH_CHECK_EQ(w2.result, 0);
}

/* Downgrade admits the queued readers with the downgrading writer, atomically: a waiting
 * writer cannot get in between. */
static void rwlock_downgrade_admits_queue_not_writer(void) {
    conc_rwlock_t rw = CONC_RWLOCK_INIT;
    conc_rwlock_acquire(&rw);
    actor r = {&rw, CONC_FOREVER, -1, 0, 0}, w = {&rw, CONC_FOREVER, -1, 0, 0};
    pthread_t tr, tw;
    TH_CHECK_EQ(pthread_create(&tr, NULL, reader_blocking, &r), 0);
    wait_for(has_queued, &rw);
    TH_CHECK_EQ(pthread_create(&tw, NULL, writer_until, &w), 0);
    while (!(conc_load(&rw.writers.word, CONC_RELAXED) & CONC__LOCK_SLEEPER_MASK))
        th_sleep_ns(100000);
    conc_rwlock_downgrade(&rw);
    wait_done(&r); /* the reader is in beside us */
    TH_CHECK_EQ(conc_rwlock_readers(&rw), 2);
    TH_CHECK_EQ(__atomic_load_n(&w.done, __ATOMIC_ACQUIRE), 0);
    conc_rwlock_release_shared(&rw);
    TH_CHECK_EQ(__atomic_load_n(&w.done, __ATOMIC_ACQUIRE), 0); /* the reader still reads */
    let_go(&r, tr);
    pthread_join(tw, NULL);
    TH_CHECK_EQ(w.result, 0);
}

/* A queued reader admitted by a release but not yet looking (stopped before its futex_wait,
 * as a preemption would) must not see the phase come back round: 63 writers with a past
 * deadline each ended a phase while it was counted inside, so the 64th end brought the
 * phase back to the one it saw, and an untimed writer that raised WRITER then looked to it
 * like the writer it queued behind. It slept, counted inside; the writer waited for it; both
 * for good. Now a writer at its deadline waits for admitted readers to settle before it
 * ends its phase. */
typedef struct gated_reader {
    conc_rwlock_t *rw;
    futex_gate gate;
    int done;   /* release/acquire: holds the lock shared */
    int let_go; /* release/acquire */
} gated_reader;
static void *gated_reader_main(void *arg) {
    gated_reader *g = (gated_reader *)arg;
    gate_here = &g->gate;
    conc_rwlock_acquire_shared(g->rw);
    gate_here = NULL;
    __atomic_store_n(&g->done, 1, __ATOMIC_RELEASE);
    while (!__atomic_load_n(&g->let_go, __ATOMIC_ACQUIRE))
        th_sleep_ns(100000);
    conc_rwlock_release_shared(g->rw);
    return NULL;
}
typedef struct past_writers {
    conc_rwlock_t *rw;
    int ends[64]; /* what each acquire_until returned */
    int done;     /* release/acquire */
} past_writers;
static void *past_writers_main(void *arg) {
    past_writers *p = (past_writers *)arg;
    for (int i = 0; i < 63; i++) { /* one lap of the phase but one */
        p->ends[i] = conc_rwlock_acquire_until(p->rw, 0);
        if (p->ends[i] == 0)
            conc_rwlock_release(p->rw);
    }
    __atomic_store_n(&p->done, 1, __ATOMIC_RELEASE);
    return NULL;
}
static void rwlock_timeouts_never_lap_an_admitted_reader(void) {
    conc_rwlock_t rw = CONC_RWLOCK_INIT;
    conc_rwlock_acquire(&rw);
    gated_reader r = {&rw, {0, 0}, 0, 0};
    past_writers p = {&rw, {0}, 0};
    actor w = {&rw, CONC_FOREVER, -1, 0, 0};
    pthread_t tr, tp, tw;
    TH_CHECK_EQ(pthread_create(&tr, NULL, gated_reader_main, &r), 0);
    gate_wait_reached(&r.gate); /* queued behind us, about to sleep */
    conc_rwlock_release(&rw);   /* admits it: counted in the central count until it looks */
    TH_CHECK_EQ(conc_rwlock_readers(&rw), 1);
    TH_CHECK_EQ(pthread_create(&tp, NULL, past_writers_main, &p), 0);
    /* Either the 63 writers ended their phases (the old protocol), or the first of them
     * waits for the admitted reader to settle. */
    while (!__atomic_load_n(&p.done, __ATOMIC_ACQUIRE) &&
           !(word_of(&rw) & CONC__RWLOCK_WRITER_SLEEPS))
        th_sleep_ns(100000);
    TH_CHECK_EQ(pthread_create(&tw, NULL, writer_until, &w), 0);
    while (!has_writer(&rw)) /* the old protocol: the untimed writer raised WRITER */
        th_sleep_ns(100000);
    gate_open(&r.gate);
    while (!__atomic_load_n(&r.done, __ATOMIC_ACQUIRE))
        th_sleep_ns(100000); /* the reader got in (hung here before) */
    __atomic_store_n(&r.let_go, 1, __ATOMIC_RELEASE);
    pthread_join(tr, NULL);
    pthread_join(tp, NULL);
    for (int i = 0; i < 63; i++)
        TH_CHECK(p.ends[i] == 0 || p.ends[i] == ETIMEDOUT);
    pthread_join(tw, NULL);
    TH_CHECK_EQ(w.result, 0);
    TH_CHECK_EQ(word_of(&rw) & ~CONC__RWLOCK_PHASE_MASK, 0);
    TH_CHECK_EQ(conc_rwlock_readers(&rw), 0);
}

/* A CONC_SHARED lock whose releaser is killed after the RMW that lets the sleepers go and
 * before its wake (here it stops for good at its futex_wake, through the wake gate): a reader
 * killed in release_shared, with the writer asleep until the readers leave, or a writer
 * killed in release, with a reader asleep in the queue. The sleeper must still get in; it
 * slept for good, with nobody left to wake it and the lock free for it. */
typedef struct dying_releaser {
    conc_rwlock_t *rw;
    bool exclusive;
    futex_gate wake; /* stops it at its wake */
    int held;        /* release/acquire */
    int go;          /* release/acquire */
} dying_releaser;
static void *dying_releaser_main(void *arg) {
    dying_releaser *d = (dying_releaser *)arg;
    if (d->exclusive)
        conc_rwlock_acquire(d->rw);
    else
        conc_rwlock_acquire_shared(d->rw);
    __atomic_store_n(&d->held, 1, __ATOMIC_RELEASE);
    while (!__atomic_load_n(&d->go, __ATOMIC_ACQUIRE))
        th_sleep_ns(100000);
    gate_wake_here = &d->wake;
    if (d->exclusive)
        conc_rwlock_release(d->rw);
    else
        conc_rwlock_release_shared(d->rw);
    gate_wake_here = NULL;
    return NULL;
}
typedef struct rw_sleeper {
    conc_rwlock_t *rw;
    bool exclusive;
    pid_t tid; /* relaxed */
} rw_sleeper;
static void *rw_sleeper_main(void *arg) {
    rw_sleeper *s = (rw_sleeper *)arg;
    __atomic_store_n(&s->tid, (pid_t)syscall(SYS_gettid), __ATOMIC_RELAXED);
    if (s->exclusive) {
        conc_rwlock_acquire(s->rw);
        conc_rwlock_release(s->rw);
    } else {
        conc_rwlock_acquire_shared(s->rw);
        conc_rwlock_release_shared(s->rw);
    }
    return NULL;
}
static bool writer_sleeps_on_a_slot(conc_rwlock_t *rw) {
    for (int i = 0; i < CONC_RWLOCK_SLOTS; i++)
        if (conc_load(&rw->slot[i].readers, CONC_RELAXED) & CONC__RWLOCK_SLOT_WAITER)
            return true;
    return false;
}
static void rwlock_shared_releaser_dead_before_its_wake_strands_no_sleeper(void) {
    for (int writer_dies = 0; writer_dies < 2; writer_dies++) {
        conc_rwlock_t rw;
        conc_rwlock_init(&rw, CONC_SHARED);
        dying_releaser d = {&rw, writer_dies != 0, {0, 0}, 0, 0};
        rw_sleeper s = {&rw, writer_dies == 0, 0};
        pthread_t td, ts;
        TH_CHECK_EQ(pthread_create(&td, NULL, dying_releaser_main, &d), 0);
        while (!__atomic_load_n(&d.held, __ATOMIC_ACQUIRE))
            th_sleep_ns(100000);
        TH_CHECK_EQ(pthread_create(&ts, NULL, rw_sleeper_main, &s), 0);
        /* the reader queued asleep raises READERS_SLEEP in the word; the writer asleep until
         * the readers leave raises WAITER on the slot it sleeps on */
        while (!(writer_dies ? (word_of(&rw) & CONC__RWLOCK_READERS_SLEEP) != 0
                             : writer_sleeps_on_a_slot(&rw)) ||
               __atomic_load_n(&s.tid, __ATOMIC_RELAXED) == 0 ||
               th_thread_state(__atomic_load_n(&s.tid, __ATOMIC_RELAXED)) != 'S')
            th_sleep_ns(100000); /* asleep in futex_wait, its bit raised */
        __atomic_store_n(&d.go, 1, __ATOMIC_RELEASE);
        gate_wait_reached(&d.wake); /* it let the sleeper go and took the wake with it */
        pthread_join(ts, NULL);     /* the sleeper got in (hung here before) */
        gate_open(&d.wake);
        pthread_join(td, NULL);
        TH_CHECK_EQ(word_of(&rw) & ~CONC__RWLOCK_PHASE_MASK, CONC__RWLOCK_SHARED);
        TH_CHECK_EQ(conc_rwlock_readers(&rw), 0);
    }
}

/* ---- freed right after a release --------------------------------------------------------
 * As a conc_lock's (test_lock.c), an rwlock's memory may be freed as soon as it is unlocked
 * (THREAD SAFETY): the last one out frees it while the release that let it in may still be
 * returning. Each round puts a lock alone in a fresh page; the main thread holds it, the other
 * thread waits in acquire, gets in once main's release lets it, releases and unmaps the page.
 * Main's release must touch nothing after its RMW: a load or a store after it faults. Both
 * ways: a writer's release admitting a waiting reader (it let go of the inner lock after its
 * phase-ending CAS), and a reader's release letting in a waiting writer (it loaded the word
 * after its slot fetch_sub, for WRITER_SLEEPS). The window is a few instructions, so a timer
 * signal stretches main's steps now and then (a handler that spins, as a preemption would),
 * (every 50 us, for 10 us), and many rounds go by (8,000, or 5 s at most: ASan's build stops
 * at about 4,000): the old code faulted in every run. */
typedef struct freed_rw {
    conc_rwlock_t *rw; /* this round's lock: release/acquire */
    int stage;         /* 0 idle, 1 held by main, 2 the other waits, 3 unmapped: rel/acq */
    bool writer_first; /* this round: main holds it exclusively, the other comes shared */
    bool last;         /* this round is the last: release/acquire with stage */
    long rounds;
} freed_rw;
static freed_rw freed_rounds;

static void freed_rw_stretch(int sig) { /* a stand-in for a preemption: 10 us off main's path */
    (void)sig;
    int64_t until = th_now() + 10000;
    while (th_now() < until)
        conc_cpu_relax();
}

static void *freed_rw_last_user(void *arg) {
    freed_rw *f = (freed_rw *)arg;
    for (bool last = false; !last;) {
        while (__atomic_load_n(&f->stage, __ATOMIC_ACQUIRE) != 1)
            sched_yield();
        last = f->last;
        conc_rwlock_t *rw = __atomic_load_n(&f->rw, __ATOMIC_ACQUIRE);
        bool shared = __atomic_load_n(&f->writer_first, __ATOMIC_RELAXED);
        __atomic_store_n(&f->stage, 2, __ATOMIC_RELEASE);
        if (shared) {
            conc_rwlock_acquire_shared(rw);
            conc_rwlock_release_shared(rw);
        } else {
            conc_rwlock_acquire(rw);
            conc_rwlock_release(rw);
        }
        TH_CHECK_EQ(munmap(rw, 4096), 0); /* the last user frees it */
        __atomic_store_n(&f->stage, 3, __ATOMIC_RELEASE);
    }
    return NULL;
}

static void rwlock_freed_by_the_next_holder_right_after_release(void) {
    CONC_STATIC_ASSERT(sizeof(conc_rwlock_t) <= 4096, "a lock alone in a page");
    freed_rw *f = &freed_rounds;
    memset(f, 0, sizeof *f);
    f->rounds = th_iters(8000);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = freed_rw_stretch;
    sa.sa_flags = SA_RESTART;
    TH_CHECK_EQ(sigaction(SIGUSR2, &sa, NULL), 0);
    struct sigevent sev;
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_THREAD_ID;
    sev.sigev_signo = SIGUSR2;
    pid_t releaser = (pid_t)syscall(SYS_gettid); /* main */
#ifdef sigev_notify_thread_id
    sev.sigev_notify_thread_id = releaser; /* musl; glibc from 2.37 */
#else
    sev._sigev_un._tid = releaser; /* glibc's only name for it before 2.37 */
#endif
    timer_t timer;
    TH_CHECK_EQ(timer_create(CLOCK_MONOTONIC, &sev, &timer), 0);
    struct itimerspec every = {{0, 50000}, {0, 50000}};
    TH_CHECK_EQ(timer_settime(timer, 0, &every, NULL), 0);
    pthread_t t;
    TH_CHECK_EQ(pthread_create(&t, NULL, freed_rw_last_user, f), 0);
    int64_t stop_at = th_now() + 5 * CONC_SEC;
    for (long i = 0; !f->last; i++) {
        f->last = i + 1 == f->rounds || th_now() > stop_at;
        conc_rwlock_t *rw = (conc_rwlock_t *)mmap(NULL, 4096, PROT_READ | PROT_WRITE,
                                                  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        TH_CHECK(rw != MAP_FAILED);
        conc_rwlock_init(rw, 0);
        bool writer_first = (i & 1) == 0;
        if (writer_first)
            conc_rwlock_acquire(rw);
        else
            conc_rwlock_acquire_shared(rw);
        __atomic_store_n(&f->writer_first, writer_first, __ATOMIC_RELAXED);
        __atomic_store_n(&f->rw, rw, __ATOMIC_RELEASE);
        __atomic_store_n(&f->stage, 1, __ATOMIC_RELEASE);
        while (__atomic_load_n(&f->stage, __ATOMIC_ACQUIRE) != 2)
            sched_yield();
        if (writer_first)
            conc_rwlock_release(rw); /* the other may unmap the page from here on */
        else
            conc_rwlock_release_shared(rw);
        while (__atomic_load_n(&f->stage, __ATOMIC_ACQUIRE) != 3)
            sched_yield();
        __atomic_store_n(&f->stage, 0, __ATOMIC_RELAXED);
    }
    pthread_join(t, NULL);
    TH_CHECK_EQ(timer_delete(timer), 0);
    signal(SIGUSR2, SIG_DFL);
}

/* ---- race stress: plain payload, readers and writers mixing every form ------------------- */

typedef struct rw_race {
    conc_rwlock_t rw;
    long a, b;      /* plain: b == 3 * a whenever no writer is inside */
    int readers_in; /* relaxed instruments */
    int writers_in;
    long writes[64]; /* per thread */
    int64_t stop_at;
} rw_race;

static void race_read_check(rw_race *s) {
    __atomic_fetch_add(&s->readers_in, 1, __ATOMIC_RELAXED);
    TH_CHECK_MSG(__atomic_load_n(&s->writers_in, __ATOMIC_RELAXED) == 0,
                 "a reader inside with a writer");
    TH_CHECK_EQ(s->b, 3 * s->a);
    __atomic_fetch_sub(&s->readers_in, 1, __ATOMIC_RELAXED);
}

static void race_worker(int index, void *arg) {
    rw_race *s = (rw_race *)arg;
    th_rng rng = th_rng_make((uint64_t)index + 31);
    long writes = 0;
    for (long n = 0;; n++) {
        if (n > 0 && (n & 31) == 0 && th_now() > s->stop_at)
            break; /* n > 0: a thread that starts after stop_at still does its 32 operations */
        uint32_t op = th_rand_below(&rng, 16);
        if (op < 12) { /* read, by every form */
            int e = 0;
            if (op < 8)
                conc_rwlock_acquire_shared(&s->rw);
            else if (op < 10)
                e = conc_rwlock_try_acquire_shared(&s->rw);
            else {
                int64_t dl = th_now() + (int64_t)th_rand_below(&rng, 100000);
                e = conc_rwlock_acquire_shared_until(&s->rw, dl);
                if (e == ETIMEDOUT)
                    TH_CHECK_NOT_EARLY(dl);
            }
            TH_CHECK(e == 0 || e == EBUSY || e == ETIMEDOUT);
            if (e == 0) {
                race_read_check(s);
                conc_rwlock_release_shared(&s->rw);
            }
            continue;
        }
        int e = 0;
        if (op < 14)
            conc_rwlock_acquire(&s->rw);
        else if (op == 14)
            e = conc_rwlock_try_acquire(&s->rw);
        else {
            int64_t dl = th_now() + (int64_t)th_rand_below(&rng, 100000);
            e = conc_rwlock_acquire_until(&s->rw, dl);
            if (e == ETIMEDOUT)
                TH_CHECK_NOT_EARLY(dl);
        }
        TH_CHECK(e == 0 || e == EBUSY || e == ETIMEDOUT);
        if (e != 0)
            continue;
        TH_CHECK_EQ(__atomic_fetch_add(&s->writers_in, 1, __ATOMIC_RELAXED), 0);
        TH_CHECK_EQ(__atomic_load_n(&s->readers_in, __ATOMIC_RELAXED), 0);
        TH_CHECK_EQ(s->b, 3 * s->a);
        long a = s->a + 1;
        s->a = a;
        s->b = 3 * a;
        writes++;
        __atomic_fetch_sub(&s->writers_in, 1, __ATOMIC_RELAXED);
        if (th_rand_below(&rng, 2)) {
            conc_rwlock_downgrade(&s->rw);
            race_read_check(s);
            TH_CHECK_EQ(s->a, a); /* no writer since ours */
            conc_rwlock_release_shared(&s->rw);
        } else {
            conc_rwlock_release(&s->rw);
        }
    }
    s->writes[index] = writes;
}

static void rwlock_stress_readers_writers_plain_payload(void) {
    int threads = th_threads(8);
    TH_CHECK(threads <= 64);
    rw_race *s = (rw_race *)calloc(1, sizeof *s);
    TH_CHECK(s != NULL);
    conc_rwlock_init(&s->rw, 0);
    s->stop_at = th_now() + th_duration_ns(0.5);
    th_run_threads(threads, race_worker, s);
    long total = 0;
    for (int i = 0; i < threads; i++)
        total += s->writes[i];
    TH_CHECK(total > 0);
    TH_CHECK_EQ(s->a, total);
    TH_CHECK_EQ(word_of(&s->rw) & ~CONC__RWLOCK_PHASE_MASK, 0);
    free(s);
}

/* ---- deadlock stress: K rwlocks taken in ascending order, each shared or exclusive -------- */

#define RW_K 4
typedef struct rw_multi {
    conc_rwlock_t locks[RW_K];
    long counters[RW_K]; /* plain: written under the exclusive side */
    long taken[64][RW_K];
    long rounds;
} rw_multi;

static void multi_worker(int index, void *arg) {
    rw_multi *m = (rw_multi *)arg;
    th_rng rng = th_rng_make((uint64_t)index + 77);
    for (long r = 0; r < m->rounds; r++) {
        unsigned subset = th_rand_below(&rng, 1u << RW_K);
        unsigned excl = th_rand_below(&rng, 1u << RW_K);
        long seen[RW_K];
        for (int k = 0; k < RW_K; k++) {
            if (!(subset & (1u << k)))
                continue;
            bool timed = th_rand_below(&rng, 2);
            if (excl & (1u << k)) {
                if (timed)
                    while (conc_rwlock_acquire_until(&m->locks[k], th_now() + 20000) != 0) {
                    }
                else
                    conc_rwlock_acquire(&m->locks[k]);
            } else {
                if (timed)
                    while (conc_rwlock_acquire_shared_until(&m->locks[k], th_now() + 20000) != 0) {
                    }
                else
                    conc_rwlock_acquire_shared(&m->locks[k]);
            }
            seen[k] = m->counters[k];
        }
        for (int k = RW_K - 1; k >= 0; k--) {
            if (!(subset & (1u << k)))
                continue;
            TH_CHECK_EQ(m->counters[k], seen[k]); /* nobody wrote while we held it */
            if (excl & (1u << k)) {
                m->counters[k]++;
                m->taken[index][k]++;
                conc_rwlock_release(&m->locks[k]);
            } else {
                conc_rwlock_release_shared(&m->locks[k]);
            }
        }
    }
}

static void rwlock_deadlock_ordered_mixed_modes(void) {
    int threads = th_threads(8);
    TH_CHECK(threads <= 64);
    rw_multi *m = (rw_multi *)calloc(1, sizeof *m);
    TH_CHECK(m != NULL);
    for (int k = 0; k < RW_K; k++)
        conc_rwlock_init(&m->locks[k], 0);
    m->rounds = th_iters(10000);
    th_run_threads(threads, multi_worker, m);
    for (int k = 0; k < RW_K; k++) {
        long want = 0;
        for (int i = 0; i < threads; i++)
            want += m->taken[i][k];
        TH_CHECK_EQ(m->counters[k], want);
    }
    free(m);
}

/* ---- starvation ---------------------------------------------------------------------------- */

#define RW_VICTIM_ROUNDS 100
typedef struct rw_starve {
    conc_rwlock_t rw;
    long payload;    /* plain */
    int victim_done; /* relaxed: a stop signal only */
    long victim_rounds;
} rw_starve;

static void spin_a_little(void) {
    for (int i = 0; i < 300; i++)
        __asm__ __volatile__("" ::: "memory");
}

/* Readers overlap without pause (a reader-preferring lock never lets the writer in); the
 * writer (thread 0) must get through RW_VICTIM_ROUNDS times. */
static void writer_victim_worker(int index, void *arg) {
    rw_starve *s = (rw_starve *)arg;
    if (index == 0) {
        for (int r = 0; r < RW_VICTIM_ROUNDS; r++) {
            conc_rwlock_acquire(&s->rw);
            s->payload++;
            s->victim_rounds++;
            conc_rwlock_release(&s->rw);
        }
        __atomic_store_n(&s->victim_done, 1, __ATOMIC_RELAXED);
        return;
    }
    while (!__atomic_load_n(&s->victim_done, __ATOMIC_RELAXED)) {
        conc_rwlock_acquire_shared(&s->rw);
        long p = s->payload;
        spin_a_little();
        TH_CHECK_EQ(s->payload, p);
        conc_rwlock_release_shared(&s->rw);
    }
}

static void rwlock_starvation_writer_gets_through_readers(void) {
    rw_starve *s = (rw_starve *)calloc(1, sizeof *s);
    TH_CHECK(s != NULL);
    conc_rwlock_init(&s->rw, 0);
    th_run_threads(th_threads(8), writer_victim_worker, s);
    TH_CHECK_EQ(s->victim_rounds, RW_VICTIM_ROUNDS);
    free(s);
}

/* Writers take the lock back to back (a writer-preferring lock without phases never lets the
 * reader in); the reader (thread 0) must get through RW_VICTIM_ROUNDS times. */
static void reader_victim_worker(int index, void *arg) {
    rw_starve *s = (rw_starve *)arg;
    if (index == 0) {
        for (int r = 0; r < RW_VICTIM_ROUNDS; r++) {
            conc_rwlock_acquire_shared(&s->rw);
            long p = s->payload;
            TH_CHECK_EQ(s->payload, p);
            __atomic_store_n(&s->victim_rounds, s->victim_rounds + 1, __ATOMIC_RELAXED);
            conc_rwlock_release_shared(&s->rw);
        }
        __atomic_store_n(&s->victim_done, 1, __ATOMIC_RELAXED);
        return;
    }
    while (!__atomic_load_n(&s->victim_done, __ATOMIC_RELAXED)) {
        conc_rwlock_acquire(&s->rw);
        s->payload++;
        spin_a_little();
        conc_rwlock_release(&s->rw);
    }
}

static void rwlock_starvation_reader_gets_through_writers(void) {
    rw_starve *s = (rw_starve *)calloc(1, sizeof *s);
    TH_CHECK(s != NULL);
    conc_rwlock_init(&s->rw, 0);
    th_run_threads(th_threads(8), reader_victim_worker, s);
    TH_CHECK_EQ(s->victim_rounds, RW_VICTIM_ROUNDS);
    free(s);
}

/* ---- process-shared ----------------------------------------------------------------------- */

typedef struct shared_rw {
    conc_rwlock_t rw;
    long a, b; /* plain: b == 2 * a outside writes, across processes */
} shared_rw;

static void rwlock_shared_across_processes_exact_total(void) {
    shared_rw *s = (shared_rw *)mmap(NULL, sizeof *s, PROT_READ | PROT_WRITE,
                                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    TH_CHECK(s != MAP_FAILED);
    conc_rwlock_init(&s->rw, CONC_SHARED);
    s->a = s->b = 0;
    enum { PROCS = 4 };
    long per_proc = th_iters(20000);
    pid_t pids[PROCS];
    for (int p = 0; p < PROCS; p++) {
        pids[p] = fork();
        TH_CHECK(pids[p] >= 0);
        if (pids[p] == 0) {
            for (long i = 0; i < per_proc; i++) {
                conc_rwlock_acquire_shared(&s->rw);
                if (s->b != 2 * s->a)
                    _exit(3);
                conc_rwlock_release_shared(&s->rw);
                conc_rwlock_acquire(&s->rw);
                s->a++;
                s->b += 2;
                conc_rwlock_release(&s->rw);
            }
            _exit(0);
        }
    }
    for (int p = 0; p < PROCS; p++) {
        int status;
        TH_CHECK_EQ(waitpid(pids[p], &status, 0), pids[p]);
        TH_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    TH_CHECK_EQ(s->a, PROCS * per_proc);
    TH_CHECK_EQ(s->b, 2 * PROCS * per_proc);
    munmap(s, sizeof *s);
}

TH_MAIN("rwlock", TH_CASE(rwlock_is_a_line_per_slot_and_zero_is_free),
        TH_CASE(rwlock_default_threads_in_a_row_get_a_slot_each),
        TH_CASE(rwlock_try_forms_see_each_other),
        TH_CASE(rwlock_downgrade_keeps_readers_out_of_nothing),
        TH_CASE(rwlock_shared_flag_in_private_memory), TH_CASE(rwlock_misuse_aborts_with_message),
        TH_CASE(rwlock_holder_waiting_for_itself_aborts),
        TH_CASE(rwlock_slot_full_of_holds_refuses_more),
        TH_CASE(rwlock_writer_timeout_admits_queued_readers),
        TH_CASE(rwlock_shared_until_times_out_under_signals),
        TH_CASE(rwlock_release_admits_readers_before_next_writer),
        TH_CASE(rwlock_downgrade_admits_queue_not_writer),
        TH_CASE(rwlock_timeouts_never_lap_an_admitted_reader),
        TH_CASE(rwlock_shared_releaser_dead_before_its_wake_strands_no_sleeper),
        TH_CASE(rwlock_freed_by_the_next_holder_right_after_release),
        TH_CASE(rwlock_stress_readers_writers_plain_payload),
        TH_CASE(rwlock_deadlock_ordered_mixed_modes),
        TH_CASE(rwlock_starvation_writer_gets_through_readers),
        TH_CASE(rwlock_starvation_reader_gets_through_writers),
        TH_CASE(rwlock_shared_across_processes_exact_total), LOCKISH_CASES)
