/* examples/20_rwlock_cache.c - a read-mostly cache behind a reader-writer lock
 * SPDX-License-Identifier: MIT
 *
 * WHAT IT SHOWS
 *   Six threads look up squares in a small cache. Almost every lookup is a hit, read under
 *   the shared side of a conc_rwlock_t, so all six read at once. A miss takes the exclusive
 *   side, checks again (another thread may have filled the slot meanwhile), fills the slot,
 *   and downgrades to shared to read what it wrote without letting a writer in between. Once
 *   in a while a thread clears the whole cache (exclusive). Every lookup checks its answer.
 *   pthreads and Rust spell it like this:
 *
 *       pthreads / Rust                        C with conc (this file)
 *       pthread_rwlock_rdlock / lock.read()     conc_rwlock_acquire_shared(&rw);
 *       pthread_rwlock_wrlock / lock.write()    conc_rwlock_acquire(&rw);
 *       pthread_rwlock_unlock                   conc_rwlock_release_shared / conc_rwlock_release
 *       RwLockWriteGuard::downgrade (nightly)   conc_rwlock_downgrade(&rw);
 *       pthread_rwlock_timedrdlock              conc_rwlock_acquire_shared_until(&rw, deadline)
 *
 * WHY A RWLOCK AND NOT A LOCK
 *   Readers do not change the table, so any number of them may be inside together; only a
 *   writer needs the table to itself. With a plain lock the six readers would take turns.
 *   conc_rwlock is phase-fair: a waiting writer stops new readers (so a steady stream of
 *   readers cannot starve the writer), and when it leaves it lets in every reader that queued
 *   behind it before the next writer (so writers cannot starve readers either).
 *
 * DOWNGRADE
 *   The filler writes a slot, then wants to read it. Releasing the exclusive lock and taking
 *   the shared one would open a gap where a clearer could empty the slot; downgrade turns the
 *   exclusive hold into a shared one in one step, so the value read is the value written.
 *
 * RUN
 *   make examples && build/examples/20_rwlock_cache
 *   cc -std=c11 -D_DEFAULT_SOURCE -Iinclude examples/20_rwlock_cache.c -pthread && ./a.out
 *
 * PRINTS (counts vary from run to run; the last line does not)
 *   6 threads, 60000 lookups
 *   hits 58080, misses filled 1911, filled by another thread first 9, clears 30
 *   every lookup returned key * key
 *
 *   The program exits 1 if any lookup returned a wrong value, or the counts do not add up.
 */
#include "conc/rwlock.h"

#include <pthread.h>
#include <stdio.h>

enum { THREADS = 6, LOOKUPS = 10000, SLOTS = 64, KEYS = 64, CLEAR_EVERY = 2000 };

typedef struct slot {
    int key; /* plain: written under the exclusive side, read under either */
    long value;
    bool full;
} slot;

static conc_rwlock_t rw = CONC_RWLOCK_INIT;
static slot cache[SLOTS];
static long hits, fills, raced, clears, wrong; /* atomics: per-lookup counters */

static long lookup(int key) {
    slot *s = &cache[key % SLOTS];
    conc_rwlock_acquire_shared(&rw); /* many readers at once */
    if (s->full && s->key == key) {
        long v = s->value;
        conc_rwlock_release_shared(&rw);
        __atomic_add_fetch(&hits, 1, __ATOMIC_RELAXED);
        return v;
    }
    conc_rwlock_release_shared(&rw);

    conc_rwlock_acquire(&rw); /* a miss: the table to ourselves */
    if (s->full && s->key == key) {
        __atomic_add_fetch(&raced, 1, __ATOMIC_RELAXED); /* someone filled it meanwhile */
    } else {
        s->key = key;
        s->value = (long)key * key; /* "compute" the value */
        s->full = true;
        __atomic_add_fetch(&fills, 1, __ATOMIC_RELAXED);
    }
    conc_rwlock_downgrade(&rw); /* keep reading, let other readers in, no writer between */
    long v = s->value;
    conc_rwlock_release_shared(&rw);
    return v;
}

static void clear_all(void) {
    conc_rwlock_acquire(&rw);
    for (int i = 0; i < SLOTS; i++)
        cache[i].full = false;
    conc_rwlock_release(&rw);
    __atomic_add_fetch(&clears, 1, __ATOMIC_RELAXED);
}

static void *worker(void *arg) {
    unsigned seed = (unsigned)(uintptr_t)arg * 2654435761u + 1;
    for (int i = 1; i <= LOOKUPS; i++) {
        seed = seed * 1103515245u + 12345u;
        int key = (int)((seed >> 16) % KEYS);
        if (lookup(key) != (long)key * key)
            __atomic_add_fetch(&wrong, 1, __ATOMIC_RELAXED);
        if (i % CLEAR_EVERY == 0)
            clear_all();
    }
    return NULL;
}

int main(void) {
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)i);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    long total = (long)THREADS * LOOKUPS;
    printf("%d threads, %ld lookups\n", THREADS, total);
    printf("hits %ld, misses filled %ld, filled by another thread first %ld, clears %ld\n", hits,
           fills, raced, clears);
    bool ok = wrong == 0 && hits + fills + raced == total &&
              clears == (long)THREADS * (LOOKUPS / CLEAR_EVERY);
    printf("%s\n", ok ? "every lookup returned key * key" : "WRONG: a lookup or a count is off");
    return ok ? 0 : 1;
}
