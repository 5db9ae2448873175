/* conc/rlock.h - a re-entrant lock: owner and depth over conc_lock - conc v0.1.0
 * SPDX-License-Identifier: MIT
 *
 * Python's threading.RLock in C: the thread that holds it may acquire it again; it is
 * free once that thread has released it as many times as it acquired it. Needs base.h and
 * lock.h beside it.
 *
 * CONTENTS
 *   QUICK START, API, ERRORS, ORDERING CONTRACT, THREAD SAFETY, CAVEATS, DESIGN; then the
 *   code, and the section for other conc headers.
 *
 * QUICK START (examples/02_rlock_reentrant.c)
 *     static conc_rlock_t r = CONC_RLOCK_INIT;
 *     static long calls;                  // what r guards
 *     static void inner(void) { conc_rlock_acquire(&r); calls++; conc_rlock_release(&r); }
 *     void outer(void) { conc_rlock_acquire(&r); inner(); conc_rlock_release(&r); }
 *
 * API
 *   init      conc_rlock_init(r)                  or = CONC_RLOCK_INIT
 *   acquire   conc_rlock_acquire(r)               blocks; re-entrant for the owner
 *             conc_rlock_try_acquire(r)           0, EBUSY, EOVERFLOW
 *             conc_rlock_acquire_until(r, dl)     0, ETIMEDOUT, EOVERFLOW
 *   release   conc_rlock_release(r)               0, EPERM
 *   scoped    CONC_WITH_RLOCK(&r) { ... }         one level, released on every way out but
 *                                                 longjmp (as CONC_WITH_LOCK)
 *   query     conc_rlock_is_owned(r)              held by the calling thread
 *
 * ERRORS
 *   EPERM: release by a thread that does not hold it (Python: RuntimeError). EOVERFLOW: the
 *   depth would pass UINT32_MAX (conc_rlock_acquire aborts instead, as it cannot report).
 *   EBUSY / ETIMEDOUT: as conc_lock.
 *
 * ORDERING CONTRACT
 *   As conc_lock: the owner's writes before its outermost release are visible to the next
 *   thread whose outermost acquire returns.
 *
 * THREAD SAFETY
 *   All calls may overlap except init. Only the owner may release (unlike conc_lock).
 *
 * CAVEATS
 *   - The owner is identified by pthread_self(). A thread that exits while holding the rlock
 *     leaves it held forever; a new thread may later reuse that pthread_t.
 *   - fork(): an rlock held by another thread stays held in the child, and a thread the
 *     child creates may get the holder's pthread_t (glibc reuses descriptors) and pass for
 *     the owner; init it again in the child.
 *   - Not process-shared: pthread_self() means nothing in another process.
 *   - conc_cond_wait_rlock saves and restores the full depth (Python's Condition does too).
 *
 * DESIGN
 *   owner is written only by the thread that holds the inner lock (set after acquiring,
 *   cleared before releasing), so a thread reading owner == itself is always right: no other
 *   thread can write its id there. Reads are relaxed for that reason; the inner lock orders
 *   the payload. 16 bytes: lock 4, depth 4, owner 8.
 *
 * FOR OTHER CONC HEADERS (the last section of this file)
 *   conc__rlock_release_save(r)                give the rlock up whatever its depth; the depth
 *   conc__rlock_acquire_restore(r, depth, pauses)  take it back with that depth (conc_cond)
 */
#ifndef CONC_RLOCK_H
#define CONC_RLOCK_H

#include "lock.h"
#include <pthread.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct conc_rlock {
    conc_lock_t lock;
    uint32_t depth;  /* acquisitions by the owner; touched only by the owner */
    uintptr_t owner; /* pthread_self() of the holder, 0 when free; relaxed atomics */
} conc_rlock_t;

// clang-format off
#define CONC_RLOCK_INIT {CONC_LOCK_INIT, 0, 0}
// clang-format on

CONC_STATIC_ASSERT(sizeof(conc_rlock_t) == 2 * sizeof(uint32_t) + sizeof(uintptr_t),
                   "an rlock is its lock, its depth and its owner, without padding");

CONC_INLINE uintptr_t conc__rlock_self(void) {
    return (uintptr_t)pthread_self();
}

static inline void conc_rlock_init(conc_rlock_t *r) {
    conc_lock_init(&r->lock, 0);
    r->depth = 0;
    conc_store(&r->owner, (uintptr_t)0, CONC_RELAXED);
}

/* Relaxed: see DESIGN. Only this thread can have stored its own id. */
static inline bool conc_rlock_is_owned(const conc_rlock_t *r) {
    return conc_load(&r->owner, CONC_RELAXED) == conc__rlock_self();
}

CONC_INLINE void conc__rlock_took(conc_rlock_t *r, uintptr_t self) {
    r->depth = 1;
    conc_store(&r->owner, self, CONC_RELAXED); /* ordered by the inner lock's acquire */
}

/* The owner acquiring again: one more level. 0, or EOVERFLOW at UINT32_MAX levels. */
CONC_INLINE int conc__rlock_reenter(conc_rlock_t *r) {
    if (CONC_UNLIKELY(r->depth == UINT32_MAX))
        return EOVERFLOW;
    r->depth++;
    return 0;
}

static inline void conc_rlock_acquire(conc_rlock_t *r) {
    uintptr_t self = conc__rlock_self();
    if (conc_load(&r->owner, CONC_RELAXED) == self) {
        if (CONC_UNLIKELY(conc__rlock_reenter(r) != 0))
            CONC_ABORT("conc_rlock_acquire: recursion depth overflow");
        return;
    }
    conc_lock_acquire(&r->lock);
    conc__rlock_took(r, self);
}

CONC_NODISCARD static inline int conc_rlock_try_acquire(conc_rlock_t *r) {
    uintptr_t self = conc__rlock_self();
    if (conc_load(&r->owner, CONC_RELAXED) == self)
        return conc__rlock_reenter(r);
    int e = conc_lock_try_acquire(&r->lock);
    if (e == 0)
        conc__rlock_took(r, self);
    return e;
}

CONC_NODISCARD static inline int conc_rlock_acquire_until(conc_rlock_t *r, int64_t deadline) {
    uintptr_t self = conc__rlock_self();
    if (conc_load(&r->owner, CONC_RELAXED) == self)
        return conc__rlock_reenter(r);
    int e = conc_lock_acquire_until(&r->lock, deadline);
    if (e == 0)
        conc__rlock_took(r, self);
    return e;
}

static inline int conc_rlock_release(conc_rlock_t *r) {
    if (CONC_UNLIKELY(conc_load(&r->owner, CONC_RELAXED) != conc__rlock_self()))
        return EPERM;
    if (--r->depth == 0) {
        conc_store(&r->owner, (uintptr_t)0, CONC_RELAXED); /* before the release that orders it */
        conc_lock_release(&r->lock);
    }
    return 0;
}

/* -------------------------------------------------------------------------------------------
 * Scoped form: CONC_WITH_RLOCK(&r) { ... }  (Python's `with rlock:`)
 *
 * Acquires r (one more level for its owner), runs the block, releases that level however the
 * block is left. lock.h's mechanism (CONC__LOCK_WITH), with CONC_WITH_LOCK's caveats; nests,
 * as the rlock does. The release cannot see EPERM (the guard's thread owns r); if it does,
 * something released r behind the guard's back, and it aborts.
 * ------------------------------------------------------------------------------------------- */

static inline void conc__rlock_release_scoped(conc_rlock_t *r) {
    if (conc_rlock_release(r) != 0)
        CONC_ABORT("CONC_WITH_RLOCK: the rlock was released inside the block");
}
CONC__LOCK_GUARD_DEFINE(conc__rlock_guard, conc_rlock_t, conc_rlock_acquire,
                        conc__rlock_release_scoped)

#define CONC_WITH_RLOCK(r) CONC__LOCK_WITH(conc__rlock_guard, (r))

/* -------------------------------------------------------------------------------------------
 * For other conc headers. The only rlock internals another header may use.
 * ------------------------------------------------------------------------------------------- */

/* Gives the rlock up entirely, whatever the depth, and returns the depth; the caller owns it
 * (Python's Condition._release_save). */
static inline uint32_t conc__rlock_release_save(conc_rlock_t *r) {
    uint32_t depth = r->depth;
    r->depth = 0;
    conc_store(&r->owner, (uintptr_t)0, CONC_RELAXED); /* before the release that orders it */
    conc_lock_release(&r->lock);
    return depth;
}

/* Takes the rlock back with the depth release_save returned (Python's
 * Condition._acquire_restore), polling the inner lock for up to `pauses` pauses first (see
 * conc__lock_acquire_polling_slow). */
static inline void conc__rlock_acquire_restore(conc_rlock_t *r, uint32_t depth, int pauses) {
    conc__lock_acquire_polling_slow(&r->lock, pauses);
    conc__rlock_took(r, conc__rlock_self());
    r->depth = depth;
}

#ifdef __cplusplus
}
#endif
#endif /* CONC_RLOCK_H */
