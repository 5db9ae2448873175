/* examples/05_condition_producer_consumer.c - a bounded buffer built from a lock and two
 * conditions
 * SPDX-License-Identifier: MIT
 *
 * WHAT IT SHOWS
 *   Three producers put 20,000 numbered items each into an 8-slot buffer; three consumers take
 *   them out. A producer that finds the buffer full waits on the condition "not full"; a
 *   consumer that finds it empty waits on "not empty". Every item arrives exactly once, and
 *   nobody polls or sleeps for a fixed time: each thread sleeps until the state it needs may
 *   have come about (a wait spins a few microseconds first, in case that is how close the
 *   notify is). Python's threading.Condition, in C:
 *
 *       Python                                  C (this file)
 *       lock = threading.Lock()                 conc_lock_t lock = CONC_LOCK_INIT;
 *       not_empty = threading.Condition(lock)   conc_cond_t not_empty = CONC_COND_INIT;
 *       with lock:                              conc_lock_acquire(&lock);
 *           while not items:                    while (count == 0)
 *               not_empty.wait()                    conc_cond_wait(&not_empty, &lock);
 *           item = items.pop()                  item = take();
 *           not_full.notify()                   conc_cond_notify(&not_full);
 *                                               conc_lock_release(&lock);
 *
 * WHAT wait DOES
 *   conc_cond_wait(&c, &lock) must be called with the lock held. In one step it releases the
 *   lock and starts waiting, so a notify sent after the lock was released cannot slip by
 *   unnoticed (a "lost wakeup": the classic bug of hand-made sleep/flag schemes). When it
 *   returns, it holds the lock again, so the thread can look at the buffer safely.
 *
 * WHY wait SITS IN A while LOOP, NEVER AN if
 *   When wait returns, the condition you waited for may be false again:
 *   - another consumer may have run first and taken the item (it was awake, got the lock
 *     before you did, and "stole" it: this program counts how often that happens);
 *   - notify_all wakes every waiter but only some can proceed;
 *   - a wait may return with no notify at all (a "spurious wakeup": signals, races inside
 *     the implementation; POSIX and conc allow them, and Python's docs keep the right to wake
 *     more threads than notify asked for).
 *   So the rule, in every language: re-check the predicate after every wait. Python's
 *   Condition.wait_for(predicate) is exactly this loop written for you.
 *
 * notify OR notify_all?
 *   notify wakes at least one waiter: enough when any one waiter can use the change (one item
 *   added: one consumer can take it). notify_all wakes all of them: needed when waiters wait
 *   for different things on one condition, or when the change lets everyone go (here: "no
 *   more items", which must stop every consumer).
 *
 * WHERE C DIFFERS FROM PYTHON
 *   - Python's Condition owns its lock (`with cond:` takes it); in C the condition and the
 *     lock are separate objects, and you pass the lock to every wait. All waits on one
 *     condition must use the same lock.
 *   - Python's wait(timeout) takes seconds from now and returns False on timeout; conc takes
 *     an absolute deadline: conc_cond_wait_until(&c, &lock, conc_deadline_in(50 * CONC_MS))
 *     returns ETIMEDOUT, and holds the lock again either way. A deadline survives the loop:
 *     compute it once before the while, and every retry waits only for what is left.
 *   - With an RLock: Condition(rlock) in Python; conc_cond_wait_rlock(&c, &rlock) in C (it
 *     gives up every level the thread holds, and takes them all back).
 *
 * RUN
 *   make examples && build/examples/05_condition_producer_consumer
 *   cc -std=c11 -D_DEFAULT_SOURCE -Iinclude examples/05_condition_producer_consumer.c -pthread
 *
 * PRINTS (the wait counts change from run to run; the totals never do)
 *   3 producers x 20000 items through an 8-slot buffer to 3 consumers
 *   consumed 60000 items, sum 1799970000 (expected 1799970000): exact
 *   producers waited for room 7707 times, consumers waited for items 8779 times
 *   consumers woke to an empty buffer 1080 times: with `if` instead of `while` each of those
 *   would have taken an item that was not there      (printed as one line)
 *   a consumer's 50 ms timed wait on an empty buffer: ETIMEDOUT after >= 50 ms, lock held
 *
 *   It exits 1 if an item is lost or duplicated, or the timed wait misbehaves.
 */
#include "conc/cond.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

enum { PRODUCERS = 3, CONSUMERS = 3, ITEMS_EACH = 20000, SLOTS = 8 };

static conc_lock_t lock = CONC_LOCK_INIT;
static conc_cond_t not_empty = CONC_COND_INIT; /* "count > 0 or no more items" may now hold */
static conc_cond_t not_full = CONC_COND_INIT;  /* "count < SLOTS" may now hold */

/* Everything below is guarded by `lock`: plain variables, no atomics needed. */
static long buffer[SLOTS];
static int head, count;
static int producers_left = PRODUCERS;
static long producer_waits, consumer_waits, empty_wakeups;
static long consumed, sum;
static unsigned char seen[PRODUCERS * ITEMS_EACH];
static int duplicates;

static void *producer(void *arg) {
    long first = (long)(intptr_t)arg * ITEMS_EACH;
    for (long i = first; i < first + ITEMS_EACH; i++) {
        conc_lock_acquire(&lock);
        while (count == SLOTS) { /* full: wait for a consumer to make room */
            producer_waits++;
            conc_cond_wait(&not_full, &lock);
        }
        buffer[(head + count) % SLOTS] = i;
        count++;
        conc_cond_notify(&not_empty); /* one item: one consumer can use it */
        conc_lock_release(&lock);
    }
    conc_lock_acquire(&lock);
    if (--producers_left == 0)
        conc_cond_notify_all(&not_empty); /* "no more items" concerns every consumer */
    conc_lock_release(&lock);
    return NULL;
}

static void *consumer(void *arg) {
    (void)arg;
    conc_lock_acquire(&lock);
    for (;;) {
        bool woke = false;
        while (count == 0 && producers_left > 0) { /* while, not if: see the top of the file */
            if (woke)
                empty_wakeups++; /* woke, yet nothing to take: someone else got there first */
            consumer_waits++;
            conc_cond_wait(&not_empty, &lock);
            woke = true;
        }
        if (count == 0)
            break; /* empty and no producer left: done */
        long item = buffer[head];
        head = (head + 1) % SLOTS;
        count--;
        consumed++;
        sum += item;
        if (seen[item]++)
            duplicates++;
        conc_cond_notify(&not_full);
        /* Let the lock go between items so the other threads get their turn. */
        conc_lock_release(&lock);
        conc_lock_acquire(&lock);
    }
    conc_lock_release(&lock);
    return NULL;
}

int main(void) {
    pthread_t threads[PRODUCERS + CONSUMERS];
    printf("%d producers x %d items through an %d-slot buffer to %d consumers\n", PRODUCERS,
           ITEMS_EACH, SLOTS, CONSUMERS);
    for (int i = 0; i < CONSUMERS; i++)
        pthread_create(&threads[i], NULL, consumer, NULL);
    for (int i = 0; i < PRODUCERS; i++)
        pthread_create(&threads[CONSUMERS + i], NULL, producer, (void *)(intptr_t)i);
    for (int i = 0; i < PRODUCERS + CONSUMERS; i++)
        pthread_join(threads[i], NULL);

    long n = (long)PRODUCERS * ITEMS_EACH;
    long expected = n * (n - 1) / 2;
    bool exact = consumed == n && sum == expected && duplicates == 0;
    printf("consumed %ld items, sum %ld (expected %ld): %s\n", consumed, sum, expected,
           exact ? "exact" : "WRONG");
    printf("producers waited for room %ld times, consumers waited for items %ld times\n",
           producer_waits, consumer_waits);
    printf("consumers woke to an empty buffer %ld times: with `if` instead of `while` each of "
           "those would have taken an item that was not there\n",
           empty_wakeups);

    /* A timed wait: nobody will produce again, so it must time out -- not early, and with the
     * lock held again when it returns. */
    int64_t deadline = conc_deadline_in(50 * CONC_MS);
    conc_lock_acquire(&lock);
    int r = 0;
    while (count == 0 && r == 0)
        r = conc_cond_wait_until(&not_empty, &lock, deadline);
    bool timed_ok = r == ETIMEDOUT && conc_now() >= deadline && conc_lock_is_locked(&lock);
    conc_lock_release(&lock);
    printf("a consumer's 50 ms timed wait on an empty buffer: %s\n",
           timed_ok ? "ETIMEDOUT after >= 50 ms, lock held" : "WRONG");
    return exact && timed_ok ? 0 : 1;
}
