/* examples/03_deadlock_ordering.c - an ABBA deadlock, caught safely, and its two cures
 * SPDX-License-Identifier: MIT
 *
 * WHAT IT SHOWS
 *   Two bank accounts, A and B, each with its own lock. A transfer locks both accounts, moves
 *   the money and unlocks. The naive transfer locks "from" first and "to" second, so a
 *   transfer A -> B takes A then B while a transfer B -> A takes B then A. If each thread gets
 *   its first lock before the other gets its second, each holds the lock the other needs and
 *   both wait forever: an ABBA deadlock.
 *     1. The deadlock, caught: two threads each take their first lock, meet at a barrier (so
 *        the bad interleaving happens on every run), then wait for their second lock with
 *        conc_lock_acquire_until and a 100 ms deadline. Both get ETIMEDOUT while holding one
 *        lock each. With conc_lock_acquire, they would wait forever: this program would hang.
 *     2. Cure (a), one global lock order: every thread takes the two locks in the same order
 *        (here, lower address first), whichever direction the money flows. A cycle of waiting
 *        needs someone to take them in the other order, so no deadlock is possible.
 *     3. Cure (b), back off: take the first lock, wait a short while for the second, and if it
 *        does not come, release the first, sleep a random moment, and start over. No thread
 *        holds one lock while waiting without limit for another.
 *   Both cures run 4 threads (2 each way) x 20,000 transfers; the balances must come out exact
 *   (and the program must finish: a deadlock would hang it).
 *
 * WHY THESE ARE THE CURES
 *   A deadlock needs all four of: exclusive locks, threads holding one lock while waiting for
 *   another ("hold and wait"), no way to take a lock away from its holder, and a cycle of
 *   waiting (A waits for B waits for A). Cure (a) makes the cycle impossible; cure (b) breaks
 *   hold-and-wait. Prefer (a) when you can know every lock up front: it costs nothing. Use (b)
 *   when you cannot (the second lock is found only after taking the first). Its back-off must
 *   be random: two threads that back off for the same time retry in step and can collide
 *   forever, a livelock.
 *
 * WHERE C DIFFERS FROM PYTHON (and where it does not)
 *   - A deadlock has nothing to do with parallelism or the GIL: this one happens on one core
 *     as readily as on many, in Python exactly as in C. Python's lock.acquire(timeout=0.1)
 *     returning False is conc_lock_acquire_until(&l, conc_deadline_in(100 * CONC_MS))
 *     returning ETIMEDOUT. Note that conc deadlines are absolute times: one deadline can
 *     bound several waits in a row.
 *   - Cure (a) orders by address. In C, comparing pointers to different objects with < is
 *     undefined, so the addresses are compared as uintptr_t. A stable id works just as well.
 *   - C has a tool Python lacks: build with -fsanitize=thread and ThreadSanitizer, which sees
 *     conc_lock as a mutex, reports "lock-order-inversion (potential deadlock)" as soon as it
 *     has seen A-then-B in one place and B-then-A in another with blocking acquires -- even on
 *     a run where the timing was lucky and nothing hung. acquire_until is announced to it as a
 *     try-lock (a timed wait cannot hang forever), so parts 1 and 3 do not trigger it.
 *
 * RUN
 *   make examples && build/examples/03_deadlock_ordering
 *   cc -std=c11 -D_DEFAULT_SOURCE -Iinclude examples/03_deadlock_ordering.c -pthread && ./a.out
 *
 * PRINTS (the back-off count varies from run to run)
 *   1. ABBA: thread 1 holds A, waits for B; thread 2 holds B, waits for A
 *      thread 1: ETIMEDOUT after 100 ms, thread 2: ETIMEDOUT after 100 ms: deadlock
 *      (with conc_lock_acquire instead of acquire_until, both would wait forever)
 *   2. cure (a), lock order by address: 80000 transfers, A = 1000, B = 1000 (exact)
 *   3. cure (b), timed acquire + back-off: 80000 transfers, A = 1000, B = 1000 (exact)
 *      172 back-offs (the second lock did not come within 50 us)
 *   A back-off is a deadlock in the making, or just a holder that was slow (preempted, say):
 *   the waiter cannot tell which, and need not.
 *   Every result is checked; the program exits 1 if one is wrong.
 */
#include "conc/lock.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

struct account {
    conc_lock_t lock;
    long balance; /* plain data: lock protects it */
};

enum { THREADS = 4, TRANSFERS = 20000, OPENING_BALANCE = 1000 };

static struct account account_a = {CONC_LOCK_INIT, OPENING_BALANCE};
static struct account account_b = {CONC_LOCK_INIT, OPENING_BALANCE};

static int failures;

static void check(bool ok, const char *what) {
    if (!ok) {
        fprintf(stderr, "03_deadlock_ordering: FAILED: %s\n", what);
        failures++;
    }
}

static void start_thread(pthread_t *t, void *(*fn)(void *), void *arg) {
    if (pthread_create(t, NULL, fn, arg) != 0) {
        fprintf(stderr, "pthread_create failed\n");
        exit(1);
    }
}

/* The work itself, with both locks held. */
static void move_money(struct account *from, struct account *to, long amount) {
    from->balance -= amount;
    to->balance += amount;
}

/* ---- 1. the deadlock, caught with timed acquires ---------------------------------------- */

enum { DEADLOCK_WAIT_MS = 100 };

static pthread_barrier_t both_hold_one, both_gave_up;

struct naive_transfer {
    struct account *from, *to;
    int result;        /* what the wait for the second lock returned */
    int64_t waited_ms; /* how long that wait took */
};

static void *naive_transfer(void *arg) {
    struct naive_transfer *t = arg;
    conc_lock_acquire(&t->from->lock);

    /* Wait until the other thread holds its first lock too: this forces the unlucky
     * interleaving that, without the barrier, happens only now and then. */
    pthread_barrier_wait(&both_hold_one);

    int64_t start = conc_now();
    t->result = conc_lock_acquire_until(&t->to->lock, conc_deadline_in(DEADLOCK_WAIT_MS * CONC_MS));
    t->waited_ms = (conc_now() - start) / CONC_MS;
    if (t->result == 0) {
        move_money(t->from, t->to, 1);
        conc_lock_release(&t->to->lock);
    }

    /* Keep holding the first lock until the other thread has given up as well. Releasing it
     * now would let the other thread through just before its own deadline, and the output
     * would depend on timing. */
    pthread_barrier_wait(&both_gave_up);
    conc_lock_release(&t->from->lock);
    return NULL;
}

static void abba_deadlock_caught(void) {
    struct naive_transfer one = {&account_a, &account_b, -1, 0};
    struct naive_transfer two = {&account_b, &account_a, -1, 0};
    pthread_t t1, t2;
    if (pthread_barrier_init(&both_hold_one, NULL, 2) != 0 ||
        pthread_barrier_init(&both_gave_up, NULL, 2) != 0) {
        fprintf(stderr, "pthread_barrier_init failed\n");
        exit(1);
    }
    printf("1. ABBA: thread 1 holds A, waits for B; thread 2 holds B, waits for A\n");
    start_thread(&t1, naive_transfer, &one);
    start_thread(&t2, naive_transfer, &two);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    pthread_barrier_destroy(&both_hold_one);
    pthread_barrier_destroy(&both_gave_up);

    bool deadlocked = one.result == ETIMEDOUT && two.result == ETIMEDOUT;
    printf("   thread 1: %s after %lld ms, thread 2: %s after %lld ms: %s\n",
           one.result == ETIMEDOUT ? "ETIMEDOUT" : "got it", (long long)one.waited_ms,
           two.result == ETIMEDOUT ? "ETIMEDOUT" : "got it", (long long)two.waited_ms,
           deadlocked ? "deadlock" : "NO DEADLOCK?");
    printf("   (with conc_lock_acquire instead of acquire_until, both would wait forever)\n");
    check(deadlocked, "each thread holds the lock the other waits for: both must time out");
    check(one.waited_ms >= DEADLOCK_WAIT_MS && two.waited_ms >= DEADLOCK_WAIT_MS,
          "a timed acquire never gives up before its deadline");
    check(account_a.balance == OPENING_BALANCE && account_b.balance == OPENING_BALANCE,
          "no money moved");
}

/* ---- 2 and 3: the cures, under load ---------------------------------------------------- */

/* Real code often does some work between its two acquires: checks the funds, logs, looks up
 * the second account. Half a microsecond of busy waiting stands in for it. It widens the
 * window in which another thread takes the second lock; without it, threads rarely meet in
 * the deadlock pattern and cure (b) would seldom have to act. */
static void between_the_two_locks(void) {
    int64_t until = conc_now() + CONC_US / 2;
    while (conc_now() < until)
        conc_cpu_relax();
}

struct worker {
    struct account *from, *to;
    uint64_t rng;  /* per-thread random state, for the back-off */
    long backoffs; /* how often cure (b) had to let go and retry */
};

/* Cure (a): one order for everyone. Any fixed total order on locks works, as long as every
 * thread uses the same one; the address is one every lock already has. */
static void lock_both_in_order(struct account *x, struct account *y) {
    if ((uintptr_t)x > (uintptr_t)y) {
        struct account *swap = x;
        x = y;
        y = swap;
    }
    conc_lock_acquire(&x->lock);
    between_the_two_locks();
    conc_lock_acquire(&y->lock);
}

static void *transfer_in_order(void *arg) {
    struct worker *w = arg;
    for (int i = 0; i < TRANSFERS; i++) {
        lock_both_in_order(w->from, w->to);
        move_money(w->from, w->to, 1 + i % 7);
        conc_lock_release(&w->to->lock); /* release order does not matter for deadlock */
        conc_lock_release(&w->from->lock);
    }
    return NULL;
}

/* Cure (b): never wait long while holding a lock. These times suit a critical section of a
 * few instructions; scale them with yours. */
enum { SECOND_LOCK_WAIT_US = 50, BACKOFF_MAX_US = 100 };

static uint64_t next_random(uint64_t *state) { /* xorshift64: plenty for a back-off */
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *state = x;
}

static void lock_both_with_backoff(struct worker *w) {
    for (;;) {
        conc_lock_acquire(&w->from->lock);
        between_the_two_locks();
        int64_t deadline = conc_deadline_in(SECOND_LOCK_WAIT_US * CONC_US);
        if (conc_lock_acquire_until(&w->to->lock, deadline) == 0)
            return;
        /* Maybe the other thread holds `to` and waits for our `from`: let go of it, so at
         * least one of us can finish, and come back after a random pause. */
        conc_lock_release(&w->from->lock);
        w->backoffs++;
        long pause_ns = (long)(next_random(&w->rng) % (BACKOFF_MAX_US * 1000)) + 1000;
        nanosleep(&(struct timespec){0, pause_ns}, NULL);
    }
}

static void *transfer_with_backoff(void *arg) {
    struct worker *w = arg;
    for (int i = 0; i < TRANSFERS; i++) {
        lock_both_with_backoff(w);
        move_money(w->from, w->to, 1 + i % 7);
        conc_lock_release(&w->to->lock);
        conc_lock_release(&w->from->lock);
    }
    return NULL;
}

/* Half the threads move money A -> B, half B -> A, with the same amounts, so the balances must
 * end where they started: a broken lock would lose updates and show here. That the run ends
 * at all is the other half of the check: a deadlock would hang it. Returns the back-offs. */
static long run_transfers(const char *title, void *(*transfer)(void *)) {
    struct worker workers[THREADS];
    pthread_t threads[THREADS];
    for (int i = 0; i < THREADS; i++) {
        bool a_to_b = i % 2 == 0;
        workers[i] =
            (struct worker){a_to_b ? &account_a : &account_b, a_to_b ? &account_b : &account_a,
                            0x9E3779B97F4A7C15u * (uint64_t)(i + 1), 0};
        start_thread(&threads[i], transfer, &workers[i]);
    }
    long backoffs = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(threads[i], NULL);
        backoffs += workers[i].backoffs;
    }
    bool exact = account_a.balance == OPENING_BALANCE && account_b.balance == OPENING_BALANCE;
    printf("%s: %d transfers, A = %ld, B = %ld (%s)\n", title, THREADS * TRANSFERS,
           account_a.balance, account_b.balance, exact ? "exact" : "WRONG");
    check(exact, "transfers both ways with the same amounts leave the balances unchanged");
    return backoffs;
}

int main(void) {
    abba_deadlock_caught();

    run_transfers("2. cure (a), lock order by address", transfer_in_order);
    long backoffs = run_transfers("3. cure (b), timed acquire + back-off", transfer_with_backoff);
    printf("   %ld back-offs (the second lock did not come within %d us)\n", backoffs,
           SECOND_LOCK_WAIT_US);

    return failures == 0 ? 0 : 1;
}
