/* tests/test_lock.c - conc_lock: unit cases, race, deadlock and starvation stress, and
 * process-shared use (base.h's own cases are in test_base.c).
 * SPDX-License-Identifier: MIT */
/* A stop at the futex seam: a thread that armed wake_stop runs it at its next futex_wake,
 * before the syscall (what a preemption there would do), so a case can let other threads
 * run to completion inside a release; wait_stop, the same at its next futex_wait. */
static __thread void (*wake_stop)(void);
static __thread void (*wait_stop)(void);
static void wake_hook(int kind);
#define CONC_FUTEX_HOOK(kind) wake_hook(kind)

#include "conc/lock.h"

#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define LK_T conc_lock_t
#define LK_INIT(p) conc_lock_init((p), 0)
#define LK_ACQUIRE(p) conc_lock_acquire(p)
#define LK_TRY(p) conc_lock_try_acquire(p)
#define LK_UNTIL(p, dl) conc_lock_acquire_until((p), (dl))
#define LK_RELEASE(p) conc_lock_release(p)
#include "lockish.h"

/* ---- unit -------------------------------------------------------------------------------- */

static void lock_is_four_bytes_and_zero_is_unlocked(void) {
    TH_CHECK_EQ(sizeof(conc_lock_t), 4);
    conc_lock_t zero;
    memset(&zero, 0, sizeof zero);
    TH_CHECK(!conc_lock_is_locked(&zero));
    TH_CHECK_EQ(conc_lock_try_acquire(&zero), 0);
    TH_CHECK(conc_lock_is_locked(&zero));
    conc_lock_release(&zero);
    conc_lock_t init = CONC_LOCK_INIT;
    TH_CHECK(!conc_lock_is_locked(&init));
}

static void lock_try_acquire_busy_then_free(void) {
    conc_lock_t l;
    conc_lock_init(&l, 0);
    TH_CHECK_EQ(conc_lock_try_acquire(&l), 0);
    TH_CHECK_EQ(conc_lock_try_acquire(&l), EBUSY);
    TH_CHECK_EQ(conc_lock_acquire_until(&l, conc_now()), ETIMEDOUT); /* held: try once, fail */
    conc_lock_release(&l);
    TH_CHECK(!conc_lock_is_locked(&l));
    conc_lock_acquire(&l);
    TH_CHECK(conc_lock_is_locked(&l));
    conc_lock_release(&l);
    TH_CHECK_EQ(l.word, 0); /* uncontended use leaves no trace in the word */
}

static void lock_until_past_deadline_takes_a_free_lock(void) {
    conc_lock_t l = CONC_LOCK_INIT;
    TH_CHECK_EQ(conc_lock_acquire_until(&l, 0),
                0); /* past deadline, free lock: tried once, got it */
    conc_lock_release(&l);
    TH_CHECK_EQ(conc_lock_acquire_until(&l, CONC_FOREVER), 0);
    conc_lock_release(&l);
}

static void lock_shared_flag_works_in_private_memory(void) {
    conc_lock_t l;
    conc_lock_init(&l, CONC_SHARED);
    TH_CHECK(!conc_lock_is_locked(&l));
    TH_CHECK_EQ(conc_lock_try_acquire(&l), 0);
    TH_CHECK_EQ(conc_lock_try_acquire(&l), EBUSY);
    conc_lock_release(&l);
    conc_lock_acquire(&l);
    TH_CHECK_EQ(conc_lock_acquire_until(&l, conc_now()), ETIMEDOUT);
    conc_lock_release(&l);
    TH_CHECK_EQ(conc_lock_acquire_until(&l, conc_now()), 0);
    conc_lock_release(&l);
    TH_CHECK_EQ(l.word, CONC__LOCK_SHARED);
}

/* As in Python, a plain lock may be released by a thread other than the one that took it.
 * ThreadSanitizer models every annotated mutex as owned, so under TSan the same program is
 * reported as "unlock ... by a wrong thread": the case checks for exactly that report there
 * (proof that the annotations reach TSan), and for a clean release elsewhere. */
static void *release_it(void *arg) {
    conc_lock_release((conc_lock_t *)arg);
    return NULL;
}
static void release_from_other_thread(void) {
    conc_lock_t l = CONC_LOCK_INIT;
    conc_lock_acquire(&l);
    pthread_t t;
    TH_CHECK_EQ(pthread_create(&t, NULL, release_it, &l), 0);
    pthread_join(t, NULL);
    TH_CHECK(!conc_lock_is_locked(&l));
    TH_CHECK_EQ(conc_lock_try_acquire(&l), 0);
    conc_lock_release(&l);
}
static void lock_release_by_another_thread(void) {
    char err[4096];
    int status = th_run_child_capturing_stderr(release_from_other_thread, err, sizeof err);
#if defined(CONC_TSAN)
    TH_CHECK_MSG(strstr(err, "unlock of an unlocked mutex (or by a wrong thread)") != NULL,
                 "TSan did not see the annotated lock: %s", err);
#else
    TH_CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d: %s", status, err);
#endif
    (void)status;
}

/* Releasing a lock nobody holds is misuse that cannot be reported: it aborts with a message
 * that names the function and then the caller's frames, so the user's own function is in it.
 * (Under TSan the annotation reports it first, with a stack that names the caller too.)
 * Exported and never inlined, as a user's function would be: tests link with -rdynamic, which
 * is what backtrace_symbols needs to print names. */
void test_lock_misuse_by_this_function(void);
__attribute__((noinline)) void test_lock_misuse_by_this_function(void) {
    conc_lock_t l = CONC_LOCK_INIT;
    conc_lock_release(&l);
}
static void lock_release_unheld_aborts_naming_the_caller(void) {
    char err[8192];
    int status = th_run_child_capturing_stderr(test_lock_misuse_by_this_function, err, sizeof err);
#if defined(CONC_TSAN)
    TH_CHECK_MSG(status != 0 && strstr(err, "unlock of an unlocked mutex") != NULL, "stderr: %s",
                 err);
#else
    TH_CHECK_MSG(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "status %d", status);
    TH_CHECK_MSG(strstr(err, "conc_lock_release: the lock is not held") != NULL, "stderr: %s", err);
#endif
#if defined(__GLIBC__) /* the frames come from glibc's backtrace(): musl prints none */
    TH_CHECK_MSG(strstr(err, "test_lock_misuse_by_this_function") != NULL, "stderr: %s", err);
#endif
}

/* A waiter blocked in acquire wakes when the holder releases (the sleep/wake path), and
 * signals delivered to it do not end a timed wait early. */
typedef struct sleeper_ctx {
    conc_lock_t lock;
    int state; /* relaxed-atomic handshake: 1 waiting, 2 acquired */
    pid_t tid; /* the blocking sleeper's thread id, set before state 1 */
    int done;  /* release/acquire: the timed sleeper's wait has returned */
    int result;
    int64_t deadline;
} sleeper_ctx;

static void *timed_sleeper(void *arg) {
    sleeper_ctx *c = (sleeper_ctx *)arg;
    __atomic_store_n(&c->state, 1, __ATOMIC_RELAXED);
    c->result = conc_lock_acquire_until(&c->lock, c->deadline);
    __atomic_store_n(&c->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

static void lock_until_survives_signals_keeps_deadline(void) {
    th_interrupt_waits_with(SIGUSR1);
    sleeper_ctx c;
    memset(&c, 0, sizeof c);
    conc_lock_acquire(&c.lock);
    TH_UNTIL_SIGNALLED(sent) {
        c.deadline = conc_deadline_in(100 * CONC_MS);
        c.done = 0;
        sent = th_run_interrupted(timed_sleeper, &c, SIGUSR1, &c.done);
        TH_CHECK_EQ(c.result, ETIMEDOUT);
        TH_CHECK(conc_now() >= c.deadline);
    }
    conc_lock_release(&c.lock);
}

static void *blocking_sleeper(void *arg) {
    sleeper_ctx *c = (sleeper_ctx *)arg;
    __atomic_store_n(&c->tid, (pid_t)syscall(SYS_gettid), __ATOMIC_RELAXED);
    __atomic_store_n(&c->state, 1, __ATOMIC_RELAXED);
    conc_lock_acquire(&c->lock);
    __atomic_store_n(&c->state, 2, __ATOMIC_RELEASE);
    conc_lock_release(&c->lock);
    return NULL;
}

/* Holds c->lock and starts a blocking_sleeper on it; returns once the sleeper has registered
 * (the sleeper count shows in the word). */
static pthread_t start_sleeper_on_held_lock(sleeper_ctx *c) {
    memset(c, 0, sizeof *c);
    conc_lock_acquire(&c->lock);
    pthread_t t;
    TH_CHECK_EQ(pthread_create(&t, NULL, blocking_sleeper, c), 0);
    while ((conc_load(&c->lock.word, CONC_RELAXED) & CONC__LOCK_SLEEPER_MASK) == 0)
        th_sleep_ns(100000);
    return t;
}

static void lock_sleeper_wakes_on_release(void) {
    sleeper_ctx c;
    pthread_t t = start_sleeper_on_held_lock(&c);
    TH_CHECK_EQ(__atomic_load_n(&c.state, __ATOMIC_ACQUIRE), 1);
    conc_lock_release(&c.lock);
    pthread_join(t, NULL);
    TH_CHECK_EQ(c.state, 2);
    TH_CHECK_EQ(c.lock.word, 0); /* sleeper count back to zero, no flag left behind */
}

/* A sleeper that has waited past CONC_LOCK_FAIR_NS asks for a handoff; the next release then
 * hands the lock over, so a thread that re-acquires immediately cannot barge past it. The
 * release comes once the starving sleeper is back asleep in the kernel: one on its way there
 * for longer than CONC__LOCK_HANDOFF_WAIT_NS (a loaded machine, a sanitizer) would see its
 * handoff retracted, which is right for a sleeper that never arrives but not what this
 * case tests. */
static void lock_starving_sleeper_gets_handoff(void) {
    sleeper_ctx c;
    pthread_t t = start_sleeper_on_held_lock(&c);
    /* Wake it without letting it in, until it declares itself starving. */
    while (!(conc_load(&c.lock.word, CONC_RELAXED) & CONC__LOCK_STARVING)) {
        th_sleep_ns(2 * 1000000);
        conc_futex_wake(&c.lock.word, 1, 0);
    }
    /* set STARVING, then futex_wait: asleep again */
    while (th_thread_state(__atomic_load_n(&c.tid, __ATOMIC_RELAXED)) != 'S')
        th_sleep_ns(100 * 1000);
    conc_lock_release(&c.lock); /* hands off: stays HELD for the sleeper */
    /* Tries, not a blocking acquire: a blocking acquirer may claim a handoff left unclaimed
     * for CONC__LOCK_HANDOFF_WAIT_NS (a sleeper preempted that long), a try never does. So
     * every try fails until the sleeper has been through, however late it runs. */
    while (conc_lock_try_acquire(&c.lock) == EBUSY)
        th_sleep_ns(100 * 1000);
    TH_CHECK_EQ(__atomic_load_n(&c.state, __ATOMIC_ACQUIRE), 2);
    conc_lock_release(&c.lock);
    pthread_join(t, NULL);
    TH_CHECK_EQ(c.lock.word, 0);
}

static void wake_hook(int kind) {
    void (**armed)(void) = kind == CONC_FUTEX_HOOK_WAKE ? &wake_stop : &wait_stop;
    void (*stop)(void) = *armed;
    if (!stop)
        return;
    *armed = NULL; /* one stop per arming */
    stop();
}

/* A sleeper alone whose wake missed it (it was on its way into futex_wait when the release
 * woke nobody) and that finds the lock taken again must not sleep on the WAKING that wake
 * left: the releases would skip their wakes for CONC__LOCK_WAKING_WAIT_NS (10 ms) while a
 * thread that re-takes the lock at once kept it, and a lone waiter against such a thread
 * waited 10 ms again and again, not the CONC_LOCK_FAIR_NS before a handoff. Here the sleeper
 * is stopped before its first futex_wait while main releases (the wake finds nobody) and
 * takes the lock again; at its next futex_wait the word must show no WAKING. */
typedef struct sole_sleeper {
    conc_lock_t lock;
    int reached;     /* release/acquire: 1 at its first futex_wait, 2 at its second */
    int open;        /* release/acquire: how many stops main has opened */
    uint32_t second; /* the word at its second futex_wait */
    int state;       /* release/acquire: 2 once it got the lock */
} sole_sleeper;
static sole_sleeper sole;
static void sole_stop_wait(int n) {
    __atomic_store_n(&sole.reached, n, __ATOMIC_RELEASE);
    while (__atomic_load_n(&sole.open, __ATOMIC_ACQUIRE) < n)
        th_sleep_ns(100000);
}
static void sole_second_stop(void) {
    sole.second = conc_load(&sole.lock.word, CONC_RELAXED); /* what it is about to sleep on */
    sole_stop_wait(2);
}
static void sole_first_stop(void) {
    wait_stop = sole_second_stop;
    sole_stop_wait(1);
}
static void *sole_sleeper_main(void *arg) {
    (void)arg;
    wait_stop = sole_first_stop;
    conc_lock_acquire(&sole.lock);
    __atomic_store_n(&sole.state, 2, __ATOMIC_RELEASE);
    conc_lock_release(&sole.lock);
    return NULL;
}
static void lock_sole_sleeper_retires_a_wake_that_missed_it(void) {
    memset(&sole, 0, sizeof sole);
    conc_lock_acquire(&sole.lock);
    pthread_t t;
    TH_CHECK_EQ(pthread_create(&t, NULL, sole_sleeper_main, NULL), 0);
    /* It registers and stops before its futex_wait; the release sets WAKING and its wake
     * finds nobody; main takes the free lock again at once, as a barger would; the sleeper's
     * futex_wait then returns EAGAIN and it finds the lock held. */
    while (__atomic_load_n(&sole.reached, __ATOMIC_ACQUIRE) < 1)
        th_sleep_ns(100000);
    conc_lock_release(&sole.lock);
    TH_CHECK(conc_load(&sole.lock.word, CONC_RELAXED) & CONC__LOCK_WAKING);
    conc_lock_acquire(&sole.lock);
    __atomic_store_n(&sole.open, 1, __ATOMIC_RELEASE);
    while (__atomic_load_n(&sole.reached, __ATOMIC_ACQUIRE) < 2)
        th_sleep_ns(100000);
    TH_CHECK_MSG(!(sole.second & CONC__LOCK_WAKING) &&
                     (sole.second & CONC__LOCK_SLEEPER_MASK) == CONC__LOCK_SLEEPER_ONE,
                 "word %#x", sole.second);
    __atomic_store_n(&sole.open, 2, __ATOMIC_RELEASE);
    conc_lock_release(&sole.lock); /* wakes it */
    pthread_join(t, NULL);
    TH_CHECK_EQ(sole.state, 2);
    TH_CHECK_EQ(sole.lock.word, 0);
}

/* POSIX lets a mutex be freed as soon as it is unlocked, and so does conc: the next owner may
 * take, release and free the lock while the release that freed it has not returned yet (a
 * refcount's last owner frees the object that holds the lock). Here the lock is alone in a
 * page; A holds it, B sleeps in acquire. A releases: at its wake (stopped there through the
 * futex hook), B is let out of futex_wait, takes the lock, releases it and unmaps the page;
 * then A's release goes on. It must touch nothing but the futex address (a wake on an unmapped
 * address fails harmlessly). It crashed with SIGSEGV when a release that found sleepers looked
 * at the word again after its wake. */
typedef struct freed_ctx {
    conc_lock_t *lock;
    pthread_t b;
    int registered; /* relaxed: B is about to acquire */
    int done;       /* release/acquire: B has unmapped the page */
} freed_ctx;
static freed_ctx freed;

static void *freed_next_owner(void *arg) {
    (void)arg;
    __atomic_store_n(&freed.registered, 1, __ATOMIC_RELAXED);
    conc_lock_acquire(freed.lock);
    conc_lock_release(freed.lock);
    TH_CHECK_EQ(munmap(freed.lock, 4096), 0); /* the last user frees it */
    __atomic_store_n(&freed.done, 1, __ATOMIC_RELEASE);
    return NULL;
}
static void freed_let_next_owner_finish(void) {
    while (!__atomic_load_n(&freed.done, __ATOMIC_ACQUIRE)) {
        pthread_kill(freed.b, SIGUSR1); /* out of futex_wait: EINTR */
        th_sleep_ns(1000000);
    }
}
static void lock_freed_by_next_owner_after_release(void) {
    th_interrupt_waits_with(SIGUSR1);
    memset(&freed, 0, sizeof freed);
    freed.lock =
        (conc_lock_t *)mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    TH_CHECK(freed.lock != MAP_FAILED);
    conc_lock_init(freed.lock, 0);
    conc_lock_acquire(freed.lock);
    TH_CHECK_EQ(pthread_create(&freed.b, NULL, freed_next_owner, NULL), 0);
    while ((conc_load(&freed.lock->word, CONC_RELAXED) & CONC__LOCK_SLEEPER_MASK) == 0)
        th_sleep_ns(100000);
    wake_stop = freed_let_next_owner_finish;
    conc_lock_release(freed.lock); /* B runs to completion at its wake */
    TH_CHECK(wake_stop == NULL);   /* the release did wake (and stopped there) */
    pthread_join(freed.b, NULL);
    TH_CHECK_EQ(__atomic_load_n(&freed.done, __ATOMIC_ACQUIRE), 1);
}

/* A handoff whose sleeper is not there (a registration that never claims: a CONC_SHARED
 * waiter that died, made here by hand) holds the lock until a newcomer has waited
 * CONC__LOCK_HANDOFF_WAIT_NS for it; then the newcomer claims it. Newcomers cannot barge past
 * a handoff before that, and the release that made it returns at once. */
typedef struct absent_ctx {
    conc_lock_t lock;
    int64_t waited; /* ns the newcomer's acquire took */
    int result;
} absent_ctx;
static void *absent_newcomer(void *arg) {
    absent_ctx *c = (absent_ctx *)arg;
    int64_t t0 = conc_now();
    c->result = conc_lock_acquire_until(&c->lock, conc_deadline_in(60 * CONC_SEC));
    c->waited = conc_now() - t0;
    if (c->result == 0)
        conc_lock_release(&c->lock);
    return NULL;
}
static void lock_handoff_to_absent_sleeper_claimed_by_newcomer(void) {
    absent_ctx c;
    memset(&c, 0, sizeof c);
    conc_lock_acquire(&c.lock);
    /* A starving sleeper registers, then goes away. */
    conc_fetch_add(&c.lock.word, CONC__LOCK_SLEEPER_ONE | CONC__LOCK_STARVING, CONC_RELAXED);
    conc_lock_release(&c.lock); /* hands off to it: the lock stays held */
    uint32_t w = conc_load(&c.lock.word, CONC_RELAXED);
    TH_CHECK((w & CONC__LOCK_HELD) && (w & CONC__LOCK_HANDOFF));
    TH_CHECK_EQ(conc_lock_try_acquire(&c.lock), EBUSY);
    pthread_t t;
    TH_CHECK_EQ(pthread_create(&t, NULL, absent_newcomer, &c), 0);
    pthread_join(t, NULL);
    TH_CHECK_EQ(c.result, 0);
    TH_CHECK_MSG(c.waited >= CONC__LOCK_HANDOFF_WAIT_NS, "claimed after %lld ns",
                 (long long)c.waited);
    /* The absent sleeper's registration stays (WAKING too: nobody came to retire it); no
     * handoff, no STARVING. Take it out by hand: the lock is as new. */
    w = conc_load(&c.lock.word, CONC_RELAXED);
    TH_CHECK_EQ(w & ~(CONC__LOCK_WAKING | CONC__LOCK_HANDOFF_GEN), CONC__LOCK_SLEEPER_ONE);
    conc_store(&c.lock.word, 0u, CONC_RELAXED);
    TH_CHECK_EQ(conc_lock_try_acquire(&c.lock), 0);
    conc_lock_release(&c.lock);
}

/* A CONC_SHARED lock's releaser whose process is killed (here: stopped for good, through the
 * futex hook) between the CAS that frees the lock or hands it over and its wake leaves WAKING
 * (or a HANDOFF) with no wake coming, as does a waiter killed after that wake and before it
 * ran. A sleeper asleep already, on a word without WAKING, must still get the lock while the
 * lock is free and in use (PLAIN: others take it uncontended, and their releases skip their
 * wakes) or handed to it (HANDOFF: it was starving). It slept for good before the sleeps of a
 * CONC_SHARED lock's sleepers ended every CONC__LOCK_SHARED_RECHECK_NS. */
typedef struct stalled_ctx {
    conc_lock_t *lock;
    int held;        /* release/acquire: the releaser holds the lock */
    int go;          /* release/acquire: the releaser may release */
    int stopped;     /* release/acquire: the releaser is past its CAS, before its wake */
    uint32_t resume; /* release/acquire, a futex: the releaser may wake */
} stalled_ctx;
static stalled_ctx stalled;

static void stalled_stop(void) {
    __atomic_store_n(&stalled.stopped, 1, __ATOMIC_RELEASE);
    while (!__atomic_load_n(&stalled.resume, __ATOMIC_ACQUIRE)) /* asleep, as if dead */
        (void)conc_futex_wait(&stalled.resume, 0, 0, CONC_FOREVER);
}
static void *stalled_releaser(void *arg) {
    (void)arg;
    conc_lock_acquire(stalled.lock);
    __atomic_store_n(&stalled.held, 1, __ATOMIC_RELEASE);
    while (!__atomic_load_n(&stalled.go, __ATOMIC_ACQUIRE))
        th_sleep_ns(100000);
    wake_stop = stalled_stop;
    conc_lock_release(stalled.lock);
    return NULL;
}
static void lock_shared_releaser_dead_before_its_wake_strands_no_sleeper(void) {
    enum { PLAIN, HANDOFF, MODES };
    for (int mode = PLAIN; mode < MODES; mode++) {
        sleeper_ctx c;
        memset(&c, 0, sizeof c);
        conc_lock_init(&c.lock, CONC_SHARED);
        memset(&stalled, 0, sizeof stalled);
        stalled.lock = &c.lock;
        pthread_t r, t;
        TH_CHECK_EQ(pthread_create(&r, NULL, stalled_releaser, NULL), 0);
        while (!__atomic_load_n(&stalled.held, __ATOMIC_ACQUIRE))
            th_sleep_ns(100000);
        TH_CHECK_EQ(pthread_create(&t, NULL, blocking_sleeper, &c), 0);
        while ((conc_load(&c.lock.word, CONC_RELAXED) & CONC__LOCK_SLEEPER_MASK) == 0)
            th_sleep_ns(100000);
        if (mode == HANDOFF) /* woken without being let in until it asks for a handoff */
            while (!(conc_load(&c.lock.word, CONC_RELAXED) & CONC__LOCK_STARVING)) {
                th_sleep_ns(2 * 1000000);
                conc_futex_wake(&c.lock.word, 1, CONC_SHARED);
            }
        /* asleep in futex_wait, on a word without WAKING */
        while (th_thread_state(__atomic_load_n(&c.tid, __ATOMIC_RELAXED)) != 'S')
            th_sleep_ns(100 * 1000);
        __atomic_store_n(&stalled.go, 1, __ATOMIC_RELEASE);
        while (!__atomic_load_n(&stalled.stopped, __ATOMIC_ACQUIRE))
            th_sleep_ns(100000);
        /* The word the dead releaser left; or none of it, if the sleeper's own recheck came
         * first (its sleep began before the stop, on a loaded machine maybe long before): it
         * claimed the lock, and no sleeper is left in the word. */
        uint32_t w = conc_load(&c.lock.word, CONC_RELAXED);
        bool claimed = (w & CONC__LOCK_SLEEPER_MASK) == 0;
        bool handed = (w & CONC__LOCK_HELD) && (w & CONC__LOCK_HANDOFF);
        /* A PLAIN round whose sleeper rechecked (every CONC__LOCK_SHARED_RECHECK_NS) before the
         * release, a loaded machine's doing, asked for a handoff and got one: HANDOFF's
         * scenario, checked as such, and the PLAIN round runs again. */
        bool plain_became_handoff = mode == PLAIN && !claimed && (w & CONC__LOCK_STARVING);
        if (mode == PLAIN && !plain_became_handoff)
            TH_CHECK_MSG(claimed || (!(w & CONC__LOCK_HELD) && (w & CONC__LOCK_WAKING)), "word %#x",
                         w);
        else
            TH_CHECK_MSG(claimed || handed, "word %#x", w);
        for (int i = 0; mode == PLAIN && !plain_became_handoff && i < 3; i++) {
            conc_lock_acquire(&c.lock); /* free: taken at once, released with no wake */
            conc_lock_release(&c.lock);
        }
        pthread_join(t, NULL); /* the sleeper got the lock (it hung here) */
        TH_CHECK_EQ(c.state, 2);
        __atomic_store_n(&stalled.resume, 1u, __ATOMIC_RELEASE);
        conc_futex_wake(&stalled.resume, 1, 0);
        pthread_join(r, NULL);
        TH_CHECK_EQ(c.lock.word, CONC__LOCK_SHARED);
        if (plain_became_handoff)
            mode--;
    }
}

/* ---- process-shared ---------------------------------------------------------------------- */

typedef struct shared_counter {
    conc_lock_t lock;
    long counter; /* plain: protected by lock, across processes */
} shared_counter;

static void lock_shared_across_processes_exact_total(void) {
    shared_counter *s = (shared_counter *)mmap(NULL, sizeof *s, PROT_READ | PROT_WRITE,
                                               MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    TH_CHECK(s != MAP_FAILED);
    conc_lock_init(&s->lock, CONC_SHARED);
    s->counter = 0;
    enum { PROCS = 4 };
    long per_proc = th_iters(50000);
    pid_t pids[PROCS];
    for (int p = 0; p < PROCS; p++) {
        pids[p] = fork();
        TH_CHECK(pids[p] >= 0);
        if (pids[p] == 0) {
            for (long i = 0; i < per_proc; i++) {
                if (i % 3 == 0)
                    conc_lock_acquire(&s->lock);
                else if (i % 3 == 1)
                    while (conc_lock_try_acquire(&s->lock) != 0)
                        sched_yield();
                else
                    while (conc_lock_acquire_until(&s->lock, conc_deadline_in(100 * CONC_US)))
                        ;
                s->counter++;
                conc_lock_release(&s->lock);
            }
            _exit(0);
        }
    }
    for (int p = 0; p < PROCS; p++) {
        int status;
        TH_CHECK_EQ(waitpid(pids[p], &status, 0), pids[p]);
        TH_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    TH_CHECK_EQ(s->counter, PROCS * per_proc);
    TH_CHECK_EQ(s->lock.word, CONC__LOCK_SHARED);
    munmap(s, sizeof *s);
}

/* A CONC_SHARED lock's waiter in another process is killed, or stopped, while it sleeps (or
 * killed once it asked for a handoff). The holder's release returns (it used to wait for that
 * waiter to arrive: for good, or until it was continued), the lock goes on working, and a
 * stopped waiter takes its turn once continued. A killed one's registration stays in the
 * word; its unclaimed handoff is retracted, STARVING with it. */
static char proc_state(pid_t pid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    return th_stat_state(path);
}

static void lock_shared_waiter_killed_or_stopped_holds_up_no_release(void) {
    shared_counter *s = (shared_counter *)mmap(NULL, sizeof *s, PROT_READ | PROT_WRITE,
                                               MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    TH_CHECK(s != MAP_FAILED);
    conc_lock_init(&s->lock, CONC_SHARED);
    s->counter = 0;
    enum { KILLED, STOPPED, STARVING_KILLED, MODES };
    for (int mode = KILLED; mode < MODES; mode++) {
        bool stop = mode == STOPPED;
        conc_lock_acquire(&s->lock);
        pid_t pid = fork();
        TH_CHECK(pid >= 0);
        if (pid == 0) {
            conc_lock_acquire(&s->lock);
            s->counter++;
            conc_lock_release(&s->lock);
            _exit(0);
        }
        /* Until the child is registered in the word and asleep in the kernel. */
        uint32_t sleepers_before = mode == KILLED ? 0 : CONC__LOCK_SLEEPER_ONE; /* the killed */
        while ((__atomic_load_n(&s->lock.word, __ATOMIC_RELAXED) & CONC__LOCK_SLEEPER_MASK) ==
                   sleepers_before ||
               proc_state(pid) != 'S')
            th_sleep_ns(100 * 1000);
        if (mode == STARVING_KILLED) {
            /* Woken without being let in until it asks for a handoff, then asleep again: the
             * release below hands off to a waiter that will never claim it. */
            while (!(__atomic_load_n(&s->lock.word, __ATOMIC_RELAXED) & CONC__LOCK_STARVING)) {
                th_sleep_ns(2 * 1000000);
                conc_futex_wake(&s->lock.word, 1, CONC_SHARED);
            }
            while (proc_state(pid) != 'S')
                th_sleep_ns(100 * 1000);
        }
        int status;
        if (stop) {
            TH_CHECK_EQ(kill(pid, SIGSTOP), 0);
            TH_CHECK_EQ(waitpid(pid, &status, WUNTRACED), pid);
            TH_CHECK(WIFSTOPPED(status));
        } else {
            TH_CHECK_EQ(kill(pid, SIGKILL), 0);
            TH_CHECK_EQ(waitpid(pid, &status, 0), pid);
            TH_CHECK(WIFSIGNALED(status));
        }
        conc_lock_release(&s->lock); /* returns, with the waiter dead or stopped */
        conc_lock_acquire(&s->lock); /* and the lock works */
        conc_lock_release(&s->lock);
        if (stop) {
            TH_CHECK_EQ(kill(pid, SIGCONT), 0);
            TH_CHECK_EQ(waitpid(pid, &status, 0), pid);
            TH_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        }
    }
    TH_CHECK_EQ(s->counter, 1); /* the stopped one, continued */
    /* The killed waiters' registrations, and no STARVING or HANDOFF. (WAKING may stay: the
     * last release's wake found nobody, and no live sleeper came to retire it; the handoff
     * generation stays while sleepers are registered.) */
    TH_CHECK_EQ(s->lock.word & ~(CONC__LOCK_WAKING | CONC__LOCK_HANDOFF_GEN),
                CONC__LOCK_SHARED | 2 * CONC__LOCK_SLEEPER_ONE);
    munmap(s, sizeof *s);
}

/* ---- more stress ---------------------------------------------------------------------------- */

/* Many threads, one lock, blocking acquire only: the payload total must be exact and the
 * word must return to 0 (no sleeper count or flag leaked by any interleaving). */
typedef struct hammer {
    conc_lock_t lock;
    long payload;
    long per_thread;
} hammer;

static void hammer_worker(int index, void *arg) {
    (void)index;
    hammer *h = (hammer *)arg;
    for (long i = 0; i < h->per_thread; i++) {
        conc_lock_acquire(&h->lock);
        h->payload++;
        conc_lock_release(&h->lock);
    }
}

static void lock_stress_hammer_exact_total(void) {
    hammer h;
    memset(&h, 0, sizeof h);
    int threads = th_threads(16);
    h.per_thread = th_iters(100000);
    th_run_threads(threads, hammer_worker, &h);
    TH_CHECK_EQ(h.payload, threads * h.per_thread);
    TH_CHECK_EQ(h.lock.word, 0);
}

TH_MAIN("lock", TH_CASE(lock_is_four_bytes_and_zero_is_unlocked),
        TH_CASE(lock_try_acquire_busy_then_free),
        TH_CASE(lock_until_past_deadline_takes_a_free_lock),
        TH_CASE(lock_shared_flag_works_in_private_memory), TH_CASE(lock_release_by_another_thread),
        TH_CASE(lock_release_unheld_aborts_naming_the_caller),
        TH_CASE(lock_until_survives_signals_keeps_deadline), TH_CASE(lock_sleeper_wakes_on_release),
        TH_CASE(lock_starving_sleeper_gets_handoff),
        TH_CASE(lock_freed_by_next_owner_after_release),
        TH_CASE(lock_handoff_to_absent_sleeper_claimed_by_newcomer),
        TH_CASE(lock_shared_releaser_dead_before_its_wake_strands_no_sleeper),
        TH_CASE(lock_sole_sleeper_retires_a_wake_that_missed_it),
        TH_CASE(lock_shared_across_processes_exact_total),
        TH_CASE(lock_shared_waiter_killed_or_stopped_holds_up_no_release),
        TH_CASE(lock_stress_hammer_exact_total), LOCKISH_CASES)
