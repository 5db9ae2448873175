/* examples/02_rlock_reentrant.c - why a re-entrant lock, and how conc_rlock behaves
 * SPDX-License-Identifier: MIT
 *
 * WHAT IT SHOWS
 *   A common shape: a function that takes a lock calls another function that takes the same
 *   lock. Here restock() locks the inventory so a whole batch of additions is atomic, and
 *   calls add_item(), which locks the inventory too because it is also called on its own.
 *     1. With a plain lock the inner acquire waits for a lock its own thread holds: a deadlock
 *        of one thread with itself. The example shows it safely, with a 50 ms deadline
 *        (conc_lock_acquire_until returns ETIMEDOUT) instead of hanging forever.
 *     2. conc_rlock remembers its owner and a depth: the owner may acquire it again, and it is
 *        free only after as many releases as acquires. Four threads restock at once and the
 *        totals come out exact; so do they with the usual alternative, a plain lock taken
 *        once plus an unlocked helper.
 *     3. The depth, seen from another thread: EBUSY until the third of three releases.
 *     4. Only the owner may release: conc_rlock_release from another thread returns EPERM and
 *        changes nothing. conc_rlock_is_owned says whether the calling thread holds it.
 *
 *   Python's threading.RLock, in C:
 *       Python                                C (this file)
 *       r = threading.RLock()                 static conc_rlock_t r = CONC_RLOCK_INIT;
 *       with r:                               conc_rlock_acquire(&r);
 *           with r: ...   # nests             conc_rlock_acquire(&r); ...; release; release
 *       r.release()  # not the owner          conc_rlock_release(&r) == EPERM
 *         -> RuntimeError
 *       r._is_owned()  # private in Python    conc_rlock_is_owned(&r)
 *
 * WHERE C DIFFERS FROM PYTHON
 *   - C has no `with`: every acquire needs a release on every path out of the function,
 *     early returns included. conc_rlock_release returns an int worth checking (EPERM).
 *   - A plain conc_lock has no owner, exactly like threading.Lock: it cannot tell that the
 *     thread waiting for it is the thread holding it, so it cannot report the self-deadlock
 *     (pthread's ERRORCHECK mutex can, at the cost of storing the owner). That is also why any
 *     thread may release a conc_lock, while only the owner may release a conc_rlock.
 *   - Re-entrancy is convenient, not free: a function that calls back into code taking the
 *     same lock may find the protected data half-updated by its own caller. Prefer a plain
 *     lock and an unlocked inner helper (add_item_locked below) where the design allows.
 *
 * RUN
 *   make examples && build/examples/02_rlock_reentrant
 *   cc -std=c11 -D_DEFAULT_SOURCE -Iinclude examples/02_rlock_reentrant.c -pthread && ./a.out
 *
 * PRINTS
 *   1. plain lock, taken twice by one thread: ETIMEDOUT after 50 ms (it waited for itself)
 *   2. rlock, 4 threads x 10000 restocks of 3 items: total 120000, items 120000 (exact)
 *      plain lock + unlocked helper, same work: total 120000 (exact)
 *   3. main takes the rlock 3 deep, then releases level by level; another thread probes:
 *      depth 3: main owns it: yes  other thread: is_owned no, try_acquire EBUSY
 *      depth 2: main owns it: yes  other thread: is_owned no, try_acquire EBUSY
 *      depth 1: main owns it: yes  other thread: is_owned no, try_acquire EBUSY
 *      depth 0: main owns it: no   other thread: is_owned no, try_acquire 0
 *   4. release by a thread that does not own it: EPERM; main still owns it: yes
 *      release when nobody holds it: EPERM
 *   Every result above is checked; the program exits 1 if one is wrong.
 */
#include "conc/rlock.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static int failures;

static void check(bool ok, const char *what) {
    if (!ok) {
        fprintf(stderr, "02_rlock_reentrant: FAILED: %s\n", what);
        failures++;
    }
}

static const char *result_name(int e) {
    switch (e) {
    case 0:
        return "0";
    case EBUSY:
        return "EBUSY";
    case EPERM:
        return "EPERM";
    case ETIMEDOUT:
        return "ETIMEDOUT";
    default:
        return "unexpected";
    }
}

/* Runs fn(arg) on a new thread and returns its result: the "another thread" of parts 3, 4. */
static int on_another_thread(void *(*fn)(void *), void *arg) {
    pthread_t t;
    void *result;
    if (pthread_create(&t, NULL, fn, arg) != 0) {
        fprintf(stderr, "pthread_create failed\n");
        exit(1);
    }
    pthread_join(t, &result);
    return (int)(intptr_t)result;
}

/* ---- 1. a plain lock taken twice by one thread ------------------------------------------- */

static void plain_lock_taken_twice(void) {
    conc_lock_t lock = CONC_LOCK_INIT;
    conc_lock_acquire(&lock); /* the outer function */

    /* The inner function. With conc_lock_acquire this thread would sleep forever, waiting
     * for a release that only it could make. The deadline turns the hang into an answer. */
    int64_t start = conc_now();
    int e = conc_lock_acquire_until(&lock, conc_deadline_in(50 * CONC_MS));
    int64_t waited_ms = (conc_now() - start) / CONC_MS;
    printf("1. plain lock, taken twice by one thread: %s after %lld ms (it waited for itself)\n",
           result_name(e), (long long)waited_ms);
    check(e == ETIMEDOUT, "a second acquire of a held plain lock must time out");
    check(waited_ms >= 50, "acquire_until must not give up before its deadline");
    conc_lock_release(&lock); /* the outer function's release */
}

/* ---- 2. the same shape with a re-entrant lock -------------------------------------------- */

enum { KINDS = 3, THREADS = 4, RESTOCKS = 10000 };

static struct {
    conc_rlock_t guard;
    long count[KINDS]; /* plain data: guard protects it */
    long total;        /* always the sum of count[]: the invariant guard keeps */
} inventory = {CONC_RLOCK_INIT, {0}, 0};

/* Public: callers that add one item take the lock here. */
static void add_item(int kind) {
    conc_rlock_acquire(&inventory.guard);
    inventory.count[kind] += 1;
    inventory.total += 1;
    if (conc_rlock_release(&inventory.guard) != 0)
        abort(); /* cannot happen: we just acquired it */
}

/* Also public, and atomic as a whole: nobody sees the inventory with half a batch added.
 * The nested acquire in add_item only deepens this thread's hold. */
static void restock(void) {
    conc_rlock_acquire(&inventory.guard);
    for (int kind = 0; kind < KINDS; kind++)
        add_item(kind);
    if (conc_rlock_release(&inventory.guard) != 0)
        abort();
}

/* The alternative the caveat above recommends: the lock is taken once, at the public edge,
 * and the helper says in its name that its caller holds the lock. No re-entrancy needed. */
static struct {
    conc_lock_t guard;
    long count[KINDS];
    long total;
} plain_inventory = {CONC_LOCK_INIT, {0}, 0};

static void add_item_locked(int kind) { /* caller holds plain_inventory.guard */
    plain_inventory.count[kind] += 1;
    plain_inventory.total += 1;
}

static void restock_plain(void) {
    conc_lock_acquire(&plain_inventory.guard);
    for (int kind = 0; kind < KINDS; kind++)
        add_item_locked(kind);
    conc_lock_release(&plain_inventory.guard);
}

struct restock_job {
    void (*restock)(void); /* restock or restock_plain */
};

static void *restocker(void *job) {
    const struct restock_job *j = job;
    for (int i = 0; i < RESTOCKS; i++)
        j->restock();
    return NULL;
}

static void run_restockers(void (*restock_fn)(void)) {
    struct restock_job job = {restock_fn};
    pthread_t threads[THREADS];
    for (int i = 0; i < THREADS; i++) {
        if (pthread_create(&threads[i], NULL, restocker, &job) != 0) {
            fprintf(stderr, "pthread_create failed\n");
            exit(1);
        }
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(threads[i], NULL);
}

static void rlock_nesting_under_contention(void) {
    run_restockers(restock);

    long expected = (long)THREADS * RESTOCKS * KINDS, items = 0;
    for (int kind = 0; kind < KINDS; kind++) {
        items += inventory.count[kind];
        check(inventory.count[kind] == (long)THREADS * RESTOCKS, "each kind restocked exactly");
    }
    printf("2. rlock, %d threads x %d restocks of %d items: total %ld, items %ld (%s)\n", THREADS,
           RESTOCKS, KINDS, inventory.total, items,
           inventory.total == expected && items == expected ? "exact" : "WRONG");
    check(inventory.total == expected && items == expected, "rlock totals must be exact");

    run_restockers(restock_plain);
    printf("   plain lock + unlocked helper, same work: total %ld (%s)\n", plain_inventory.total,
           plain_inventory.total == expected ? "exact" : "WRONG");
    check(plain_inventory.total == expected, "plain-lock totals must be exact");
}

/* ---- 3. depth, seen from another thread ------------------------------------------------- */

static conc_rlock_t nested = CONC_RLOCK_INIT;

struct probe_result {
    bool owned;  /* conc_rlock_is_owned, asked by the probing thread */
    int try_got; /* conc_rlock_try_acquire, from the probing thread */
};

static void *probe(void *out) {
    struct probe_result *r = out;
    r->owned = conc_rlock_is_owned(&nested);
    r->try_got = conc_rlock_try_acquire(&nested);
    if (r->try_got == 0 && conc_rlock_release(&nested) != 0)
        abort(); /* we own it: the release cannot fail */
    return NULL;
}

static void report_depth(int depth) {
    struct probe_result r;
    bool main_owns = conc_rlock_is_owned(&nested);
    (void)on_another_thread(probe, &r);
    printf("   depth %d: main owns it: %-3s  other thread: is_owned %s, try_acquire %s\n", depth,
           main_owns ? "yes" : "no", r.owned ? "yes" : "no", result_name(r.try_got));
    if (depth > 0)
        check(main_owns && !r.owned && r.try_got == EBUSY, "held while depth > 0");
    else
        check(!main_owns && !r.owned && r.try_got == 0, "free after as many releases as acquires");
}

/* Acquires the rlock once per level of recursion, as nested calls do, and reports on the way
 * back out: the depth while this level still holds it. */
static void nest(int depth, int max_depth) {
    conc_rlock_acquire(&nested);
    if (depth < max_depth)
        nest(depth + 1, max_depth);
    report_depth(depth);
    if (conc_rlock_release(&nested) != 0)
        abort(); /* cannot happen: this thread owns it */
}

static void depth_seen_from_another_thread(void) {
    printf("3. main takes the rlock 3 deep, then releases level by level; another thread "
           "probes:\n");
    nest(1, 3);
    report_depth(0);
}

/* ---- 4. release by a thread that does not own it ---------------------------------------- */

static void *release_someone_elses(void *unused) {
    (void)unused;
    return (void *)(intptr_t)conc_rlock_release(&nested);
}

static void release_by_non_owner(void) {
    conc_rlock_acquire(&nested);
    int e = on_another_thread(release_someone_elses, NULL);
    bool still_owned = conc_rlock_is_owned(&nested);
    printf("4. release by a thread that does not own it: %s; main still owns it: %s\n",
           result_name(e), still_owned ? "yes" : "no");
    check(e == EPERM && still_owned, "a non-owner's release returns EPERM and changes nothing");

    check(conc_rlock_release(&nested) == 0, "the owner's release succeeds");
    e = conc_rlock_release(&nested); /* Python: RuntimeError: cannot release un-acquired lock */
    printf("   release when nobody holds it: %s\n", result_name(e));
    check(e == EPERM, "releasing a free rlock returns EPERM");
}

int main(void) {
    plain_lock_taken_twice();
    rlock_nesting_under_contention();
    depth_seen_from_another_thread();
    release_by_non_owner();
    return failures == 0 ? 0 : 1;
}
