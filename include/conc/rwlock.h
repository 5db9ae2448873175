/* conc/rwlock.h - a phase-fair reader-writer lock with per-thread reader slots - conc v0.1.0
 * SPDX-License-Identifier: MIT
 *
 * pthread_rwlock_t (and Rust's RwLock, Go's sync.RWMutex) in C: many readers at once, or one
 * writer. A waiting writer stops new readers (writer preference), and a writer that leaves
 * lets in every reader that queued behind it before the next writer goes (phase-fair), so
 * neither side starves.
 *
 * CONTENTS  quick start, API, errors, ordering contract, thread safety, configuration,
 *           caveats, design (policy, word layout, sleep/wake timelines)
 *
 * QUICK START (examples/20_rwlock_cache.c)
 *     static conc_rwlock_t rw = CONC_RWLOCK_INIT;
 *     static long table[64], key;                // what rw guards
 *     conc_rwlock_acquire_shared(&rw);           // many readers at once
 *     long v = table[key];
 *     conc_rwlock_release_shared(&rw);
 *     conc_rwlock_acquire(&rw);                  // one writer, no readers
 *     table[key] = v + 1;
 *     conc_rwlock_downgrade(&rw);                // keep reading what we wrote, let readers in
 *     conc_rwlock_release_shared(&rw);
 *
 * API
 *   init       conc_rwlock_init(rw, flags)                flags: 0 or CONC_SHARED (others abort)
 *              = CONC_RWLOCK_INIT                         private
 *   shared     conc_rwlock_acquire_shared(rw)             blocks
 *              conc_rwlock_try_acquire_shared(rw)         0, EBUSY (EAGAIN); never blocks
 *              conc_rwlock_acquire_shared_until(rw, dl)   0, ETIMEDOUT (EAGAIN)
 *              conc_rwlock_release_shared(rw)
 *   exclusive  conc_rwlock_acquire(rw)                    blocks
 *              conc_rwlock_try_acquire(rw)                0, EBUSY; never blocks
 *              conc_rwlock_acquire_until(rw, dl)          0, ETIMEDOUT
 *              conc_rwlock_release(rw)
 *   downgrade  conc_rwlock_downgrade(rw)                  exclusive -> shared, never blocks
 *   scoped     CONC_WITH_RWLOCK_SHARED(&rw) { ... }       released on every way out but longjmp
 *              CONC_WITH_RWLOCK(&rw) { ... }              (exclusive; as CONC_WITH_LOCK)
 *   query      conc_rwlock_is_locked(rw)                  a writer holds it or waits for the
 *                                                         readers inside to leave: a snapshot
 *              conc_rwlock_readers(rw)                    readers inside or granted: a snapshot
 *   The exclusive verbs are spelled as conc_lock's, so a conc_rwlock_t drops in for a lock.
 *
 * ERRORS
 *   try_*: EBUSY when a writer holds or waits (shared), or anyone holds it (exclusive).
 *   try_acquire_shared, acquire_shared_until: EAGAIN when the caller's reader slot counts
 *   1,069,547,519 shared holds already (pthread_rwlock_rdlock's "too many read locks": a
 *   thread's own recursive holds, with those of threads hashed to its slot); acquire_shared
 *   aborts there ("conc_rwlock_acquire_shared: the calling thread's slot counts ...").
 *   *_until: ETIMEDOUT once the deadline has passed (never earlier); a past deadline tries
 *   once. A writer that times out while readers are still inside leaves no trace: the readers
 *   it held back are let in at once. At its deadline a writer first waits for the readers the
 *   last end of a phase let in to look (that end woke them; DESIGN), so its ETIMEDOUT may come
 *   that much later: as long as one of them takes to run, and for good if one was a process
 *   of a CONC_SHARED lock that died queued (CAVEATS). Releasing a lock not held that way
 *   aborts with "conc_rwlock_release_shared: not held shared" or "conc_rwlock_release: not held
 *   exclusively" (downgrade: "conc_rwlock_downgrade: not held exclusively"). The exclusive
 *   check compares the caller with the holder (a thread of another process that shares the
 *   lock may look the same); the shared check is best-effort: it sees the caller's slot,
 *   which another holder may share.
 *
 * ORDERING CONTRACT
 *   Everything a writer wrote before conc_rwlock_release (or downgrade) is visible to every
 *   thread whose acquire of either kind returns 0 after it. Everything a reader did before
 *   conc_rwlock_release_shared happens before the next writer's acquire returns. Readers
 *   inside together are ordered with nothing (they only read).
 *
 * THREAD SAFETY
 *   Every call may overlap every other except init (needs the lock unused). The thread that
 *   acquired releases, on both sides (TSan checks it): a shared hold is counted in the slot of
 *   the thread that took it, so another thread's release_shared would take it from the wrong
 *   slot (unlike Go's RUnlock). A lock owns no resources, so there is no destroy. As for a
 *   conc_lock (lock.h) and a pthread_rwlock_t, the lock's memory may be freed as soon as it
 *   is unlocked and no other call on it is running: a release touches nothing after the RMW
 *   that lets the next holder in but a futex wake on an address in the lock (harmless once
 *   the memory is gone). A reader's release is one fetch_sub of its slot, which returns the
 *   writer's sleep request with the count; a writer's release lets go of the inner lock
 *   first and ends its phase with one CAS last. So the last reader out may free the object
 *   that holds the lock while the writer that admitted it is still returning, and a writer
 *   may free it while a reader's release is.
 *   Recursion: a reader that acquires shared again while a writer waits deadlocks (as with
 *   pthread_rwlock_t under writer preference). A writer that acquires again, either way,
 *   would wait for itself: without a deadline that aborts naming the call ("the calling
 *   thread holds it exclusively"; glibc says EDEADLK), with one it times out. The check is
 *   for private locks: a CONC_SHARED lock's holder may be another process's thread. A reader
 *   (a downgraded writer too) that acquires exclusively waits for itself for good, unchecked
 *   (pthread_rwlock_wrlock may deadlock there too): its slot may count other threads.
 *
 * CONFIGURATION
 *   CONC_RWLOCK_SPIN  pauses spent looking at the word before sleeping (base.h's conc_spin: a
 *                     look after each pause, ~20 ns), default 128; 0 disables spinning.
 *                     Skipped on one CPU.
 *   CONC_RWLOCK_SLOTS reader slots per lock, a power of two, default 8; each costs a cache
 *                     line (64 bytes) and every writer reads them all. More slots keep more
 *                     CPUs' readers apart (hashed by thread pointer: up to that many threads
 *                     that glibc made in a row with default attributes get a slot each;
 *                     other threads collide now and then); 1 gives one shared reader count,
 *                     as before slots. Every translation unit of a program must agree on it
 *                     (the layout changes).
 *   Writers queue on an inner conc_lock, so CONC_LOCK_SPIN and CONC_LOCK_FAIR_NS apply too.
 *
 * CAVEATS
 *   - 64 * (1 + CONC_RWLOCK_SLOTS) bytes: 576 by default (pthread_rwlock_t: 56). For many
 *     small, rarely contended objects, a conc_lock (4 bytes) or CONC_RWLOCK_SLOTS=1 (128)
 *     may fit better. Align it to 64 for the best spread (it works at any 8-byte alignment:
 *     the slots' stride keeps them on separate lines anyway). Needs lock.h.
 *   - CONC_SHARED rwlocks in MAP_SHARED memory work across processes (no pointers stored). A
 *     process that dies holding the lock leaves it held. So does one whose writer dies while
 *     it waits for the readers inside to leave (it holds the writers' lock and WRITER from
 *     the moment it starts waiting: new readers queue behind it, for good), unlike a
 *     conc_lock's waiter, whose death the lock survives. So does one whose reader dies
 *     queued behind a writer (that writer's end lets it in), and a timed writer that finds
 *     it still let in but not yet looked then waits past its deadline, for good: it cannot
 *     tell a dead reader from one not yet run (ERRORS, DESIGN). A process killed inside a
 *     release after the step that lets the sleepers go (a reader's slot fetch_sub, a writer's
 *     CAS that ends its phase) and before its wake takes the wake with it, so a CONC_SHARED
 *     lock's sleeper sleeps at most CONC__RWLOCK_SHARED_RECHECK_NS (100 ms) at a time, then
 *     looks again: such a death costs the sleepers up to 100 ms, and one that waits long makes
 *     a futex call every 100 ms. A writer killed in release after it let go of the inner lock
 *     and before the CAS that ends its phase leaves WRITER up for good: readers queue behind
 *     it and the next writer waits for it to go, looking every 100 ms (a timed acquire times
 *     out). A writer killed asleep on a slot leaves that slot's WAITER bit up: each
 *     reader that empties the slot then makes one futex wake for nobody, until the next
 *     writer that sleeps there clears it.
 *   - At most 4,194,303 readers inside or queued at once (every thread Linux can create,
 *     PID_MAX_LIMIT); readers of process-shared locks in many pid namespaces count together.
 *   - fork(): a lock held by another thread stays held in the child; re-init it there.
 *   - Under ThreadSanitizer the lock announces itself (__tsan_mutex_* with the read-lock flag
 *     for the shared side), so TSan checks races and lock order through it as through a
 *     pthread_rwlock_t. Downgrade is announced as a write unlock followed by a read lock.
 *
 * DESIGN
 *   Policy: phase-fair (Brandenburg and Anderson, 2009; Go's RWMutex has the same shape).
 *   Writers queue on an inner conc_lock (eventually fair: no writer starves behind other
 *   writers). The writer at its head raises WRITER: from then on new readers queue, and the
 *   writer waits for the readers already inside to leave. Its release (or downgrade, or its
 *   timeout) admits every queued reader in the same atomic step that clears WRITER, so those
 *   readers are inside before the next writer can raise WRITER; that writer waits for them
 *   to leave. A reader waits at most for one writer's phase; a writer waits for the writers
 *   ahead of it and the readers inside when it raised WRITER. tests/models/rwlock.pml
 *   checks exclusion, no lost wakeup and this bound (with broken variants).
 *
 *   Readers: CONC_RWLOCK_SLOTS counts, one per cache line, a thread's slot picked by a hash
 *   of the thread pointer. A reader raises its slot and then looks for WRITER in the word; a
 *   writer raises WRITER and then looks at the word's central count and every slot (both
 *   sides seq_cst: a Dekker pair, so one sees the other). Readers on different CPUs thus
 *   write different lines and share only reads of the word, which changes once per writer
 *   phase: with one shared count (the design before slots, and glibc's), every acquire and
 *   release moves that count's line between CPUs, and with 8 readers on 2 CPUs that cost was
 *   most of the time (bench_rwlock: 86 CPU ns per read-mostly operation against 11 for one
 *   thread). The writer pays for it: it reads every slot when it raises WRITER, and again
 *   each time it looks while readers drain (8 lines by default, a few hundred ns).
 *   The same idea as Linux's brlock and percpu-rwsem, folly SharedMutex's deferred readers
 *   and BRAVO, kept phase-fair: slots only count readers inside; the queue and the phases
 *   stay in the word, so the policy above is unchanged.
 *
 *   One 64-bit word: bits 0..21 the central count (readers admitted by the end of a phase,
 *   not yet moved to their slots), 22 WRITER, 23 WRITER_SLEEPS, 24 READERS_SLEEP, 25 SHARED,
 *   26..31 the phase (advanced by every end of a writer's phase), bits 32..63 readers queued
 *   behind WRITER. The futex is the low half; readers and writers sleep there with different
 *   futex tags, so a wake for one never wakes the other. A slot is a 32-bit word: bits
 *   0..29 its count, 30 SHARED (its futex flag), 31 WAITER (the writer sleeps on this word
 *   until the slot is empty), so a reader's fetch_sub returns all it needs to know.
 *     acquire_shared: slot fetch_add, load of the word. No WRITER: inside. Else the slow path
 *       queues (one CAS on the word) unless the phase it saw has ended already (then it is
 *       inside, by its slot), leaves its slot (waking the writer if it sleeps), and waits
 *       for the phase to end; admitted in the central count, it moves to its slot (slot
 *       +1 first, then central -1).
 *     release_shared: one slot fetch_sub; WAITER with a count of 1 in what it returns -> wake
 *       the writer asleep on the slot (by address).
 *     acquire: the inner lock, then one CAS raising WRITER (once the last writer's phase-
 *       ending CAS has cleared it); wait until the central count and every slot are 0 (read
 *       in that order).
 *     release: release the inner lock, then one CAS: central += queued, queued = 0, WRITER
 *       and the sleep bits cleared, the phase advanced; wake the readers if any sleep.
 *     downgrade: the writer raises its own slot, then ends the phase as release does.
 *   A reader that saw phase p under WRITER is admitted once the phase differs from p. The
 *   phase cannot move twice before such a reader looks again: it is counted (in its slot or,
 *   once queued, in the central count at the first move), so the next writer waits for it,
 *   and a writer at its deadline, which ends its phase without waiting for the readers
 *   inside, first waits for the central count to be 0 (release, downgrade and a failed
 *   try_acquire end a phase with it at 0 already). A timeout that did not wait let 63 timed
 *   writers bring the phase back round to p while an admitted reader had not looked: it took
 *   the next writer's phase for the one it queued in and slept, counted inside, while that
 *   writer waited for it (a timed reader left a queue it was no longer in). A reader still
 *   in its slot may see the phase come back round, which only makes it queue behind one more
 *   writer, who waits for it to leave its slot. Six bits: one would do, and six make the
 *   word easy to read in a debugger.
 */
#ifndef CONC_RWLOCK_H
#define CONC_RWLOCK_H

#include "lock.h"
#include <pthread.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifndef CONC_RWLOCK_SLOTS
#define CONC_RWLOCK_SLOTS 8
#endif

/* One reader slot: a count on a cache line of its own (stride CONC_CACHELINE, so two slots'
 * counts never share a line even if the lock itself is not line-aligned). */
typedef struct conc__rwlock_slot {
    uint32_t readers; /* readers inside through this slot, and the SLOT_ bits; atomic */
    uint8_t pad[CONC_CACHELINE - sizeof(uint32_t)]; /* keeps the next slot off this line */
} conc__rwlock_slot;

typedef struct conc_rwlock {
    uint64_t word __attribute__((aligned(8))); /* see DESIGN; all access atomic */
    conc_lock_t writers;                       /* writers queue here, one at a time */
    uint32_t reserved;
    uintptr_t holder; /* the exclusive holder's thread pointer, 0 (atomic, relaxed: a check) */
    uint8_t pad[CONC_CACHELINE - 16 - sizeof(uintptr_t)]; /* the slots start on the next line */
    conc__rwlock_slot slot[CONC_RWLOCK_SLOTS];            /* readers inside, spread by thread */
} conc_rwlock_t;

// clang-format off
#define CONC_RWLOCK_INIT {0, CONC_LOCK_INIT, 0, 0, {0}, {{0, {0}}}}
// clang-format on

#ifndef CONC_RWLOCK_SPIN
#define CONC_RWLOCK_SPIN 128
#endif

#define CONC__RWLOCK_READER_ONE ((uint64_t)1)
#define CONC__RWLOCK_READERS_MASK ((uint64_t)0x3fffff) /* 22 bits: PID_MAX_LIMIT - 1 */
#define CONC__RWLOCK_WRITER ((uint64_t)1 << 22)        /* a writer holds or waits */
#define CONC__RWLOCK_WRITER_SLEEPS ((uint64_t)1 << 23) /* ... asleep until no reader is in */
#define CONC__RWLOCK_READERS_SLEEP ((uint64_t)1 << 24) /* queued readers may be asleep */
#define CONC__RWLOCK_SHARED ((uint64_t)1 << 25)        /* process-shared futex */
#define CONC__RWLOCK_PHASE_ONE ((uint64_t)1 << 26)     /* one end of a writer's phase */
#define CONC__RWLOCK_PHASE_MASK ((uint64_t)0x3f << 26) /* bits 26..31 */
#define CONC__RWLOCK_QUEUED_SHIFT 32
#define CONC__RWLOCK_QUEUED_ONE ((uint64_t)1 << CONC__RWLOCK_QUEUED_SHIFT) /* a queued reader */
/* A slot's word: its count, and two bits a leaving reader's fetch_sub returns with it, so
 * that the RMW that lets a waiting writer in is the last touch of the lock (THREAD SAFETY). */
#define CONC__RWLOCK_SLOT_COUNT_MASK 0x3fffffffu /* readers inside through this slot */
#define CONC__RWLOCK_SLOT_SHARED 0x40000000u     /* a CONC_SHARED lock: the wake's futex flag */
#define CONC__RWLOCK_SLOT_WAITER 0x80000000u     /* the writer sleeps on this slot's word */
#define CONC__RWLOCK_TAG_READER 0x1u             /* futex tag of a sleeping reader */
#define CONC__RWLOCK_TAG_WRITER 0x2u             /* futex tag of the sleeping writer */
/* How long a sleeper on a CONC_SHARED rwlock sleeps at most before it looks again (base.h's
 * recheck): a process killed inside a release, after the RMW that lets the sleepers go and
 * before its wake (a reader after its slot fetch_sub, a writer after the CAS that ends its
 * phase), takes that wake with it, and the writer draining (or the queued readers) would
 * sleep for good on a lock that let them go (CAVEATS). A private lock's threads die with
 * their process. */
#define CONC__RWLOCK_SHARED_RECHECK_NS CONC_FUTEX_SHARED_RECHECK_NS
/* How far apart glibc puts the thread pointers of threads made with default attributes: an
 * 8 MiB stack and its guard page. The slot multipliers below are built around it. */
#define CONC__RWLOCK_GLIBC_STRIDE_PAGES 2049
/* The slot multiplier (conc__rwlock_slot_index), one per slot count (2^bits slots). Each M
 * below has CONC__RWLOCK_GLIBC_STRIDE_PAGES * M = c 2^(64 - bits) mod 2^64 for an odd c, up
 * to a rounding error, so any CONC_RWLOCK_SLOTS such threads in a row get a slot each. The
 * golden-ratio multiplier put 8 of them in 5 of 8 slots: 3 pairs of readers sharing a line,
 * which bounces whenever both run. Among the multipliers with that property,
 * bench/rwlock_slot_hash.py picked the ones that also spread odd and power-of-two strides
 * best (it prints the comparison); more slots than 64 keep the golden ratio. A thread's
 * acquire and release must pick the same slot, so every translation unit (and every process
 * of a CONC_SHARED lock) must use the same rwlock.h. */
#if CONC_RWLOCK_SLOTS == 2
#define CONC__RWLOCK_HASH_MUL 0x8000000000000001ull
#elif CONC_RWLOCK_SLOTS == 4
#define CONC__RWLOCK_HASH_MUL 0x1555555555555555ull
#elif CONC_RWLOCK_SLOTS == 8
#define CONC__RWLOCK_HASH_MUL 0x6db64936d924db65ull
#elif CONC_RWLOCK_SLOTS == 16
#define CONC__RWLOCK_HASH_MUL 0x62c5a74b169d2c5bull
#elif CONC_RWLOCK_SLOTS == 32
#define CONC__RWLOCK_HASH_MUL 0x453059f4c167d305ull
#elif CONC_RWLOCK_SLOTS == 64
#define CONC__RWLOCK_HASH_MUL 0x12073f181cfc6073ull
#else
#define CONC__RWLOCK_HASH_MUL 0x9e3779b97f4a7c15ull /* 2^64 / golden ratio, odd */
#endif
#define CONC__RWLOCK_PAGE_SHIFT 12 /* thread pointers differ above the page offset */
/* Linux's PID_MAX_LIMIT (4 * 1024 * 1024): no more threads can exist, so neither count can
 * pass its field, and inside + queued (a release adds them) cannot reach WRITER. */
#define CONC__RWLOCK_THREADS_MAX ((uint64_t)4 * 1024 * 1024)
CONC_STATIC_ASSERT(CONC__RWLOCK_READERS_MASK == CONC__RWLOCK_THREADS_MAX - 1,
                   "the central reader field holds every thread Linux can create");
CONC_STATIC_ASSERT(CONC__RWLOCK_PHASE_MASK >> 32 == 0, "the sleepers' fields are in the low half");
CONC_STATIC_ASSERT(CONC__RWLOCK_THREADS_MAX <= CONC__RWLOCK_SLOT_COUNT_MASK,
                   "a slot's count holds every thread Linux can create, below its two bits");
/* A slot counts holds, and a thread may hold shared many times over (recursion while no writer
 * waits), so a count could climb into the slot's two bits: a writer would then find the
 * readers gone. An acquire that finds its slot at this many holds takes its one back and
 * fails; at most every thread Linux can create is between such an add and its undo at once
 * (settling and downgrading threads add unchecked, one each), so the count stays below the
 * bits. */
#define CONC__RWLOCK_SLOT_HOLDS_MAX (CONC__RWLOCK_SLOT_COUNT_MASK - CONC__RWLOCK_THREADS_MAX)
/* What conc__rwlock_enter_slot returns for a slot at CONC__RWLOCK_SLOT_HOLDS_MAX: WRITER (so
 * the fast paths' one test sends it to their slow branch) and a bit no word has (queued
 * readers never reach bit 63). */
#define CONC__RWLOCK_SLOT_FULL (((uint64_t)1 << 63) | CONC__RWLOCK_WRITER)
CONC_STATIC_ASSERT(CONC__RWLOCK_SLOT_HOLDS_MAX == 1069547519u,
                   "conc_rwlock_acquire_shared's abort message names this number");
CONC_STATIC_ASSERT(CONC_RWLOCK_SLOTS >= 1 && (CONC_RWLOCK_SLOTS & (CONC_RWLOCK_SLOTS - 1)) == 0,
                   "CONC_RWLOCK_SLOTS is a power of two");
CONC_STATIC_ASSERT(sizeof(conc__rwlock_slot) == CONC_CACHELINE, "one slot per cache line");
CONC_STATIC_ASSERT(sizeof(conc_rwlock_t) == CONC_CACHELINE * (1 + CONC_RWLOCK_SLOTS),
                   "a line for the word and the writers' lock, then one per slot");

/* TSan: the read-lock flag, and unlock annotations that carry it (base.h's pass no flags). */
#if defined(CONC_TSAN)
#define CONC__RWLOCK_TSAN_READ (1u << 3) /* __tsan_mutex_read_lock */
#define CONC__RWLOCK_TSAN_PRE_UNLOCK(a, f) ((void)__tsan_mutex_pre_unlock((void *)(a), (f)))
#define CONC__RWLOCK_TSAN_POST_UNLOCK(a, f) __tsan_mutex_post_unlock((void *)(a), (f))
#else
#define CONC__RWLOCK_TSAN_READ 0u
#define CONC__RWLOCK_TSAN_PRE_UNLOCK(a, f) ((void)0)
#define CONC__RWLOCK_TSAN_POST_UNLOCK(a, f) ((void)0)
#endif

/* Sleepers wait on the low half: readers, WRITER, the sleep bits, SHARED and the phase. */
CONC_INLINE uint32_t *conc__rwlock_futex(conc_rwlock_t *rw) {
    return conc_futex_half_low(&rw->word);
}
CONC_INLINE int conc__rwlock_futex_flags(uint64_t w) {
    return conc_futex_flags((uint32_t)w, (uint32_t)CONC__RWLOCK_SHARED);
}
CONC_INLINE uint64_t conc__rwlock_readers(uint64_t w) {
    return w & CONC__RWLOCK_READERS_MASK;
}
/* A reader that saw phase `phase` under WRITER is admitted once that phase has ended. */
CONC_INLINE bool conc__rwlock_admitted(uint64_t w, uint64_t phase) {
    return !(w & CONC__RWLOCK_WRITER) || (w & CONC__RWLOCK_PHASE_MASK) != phase;
}

/* The calling thread's slot: the same one on every call, so a release finds the count its
 * acquire raised. base.h's conc_thread_token (the thread pointer) identifies the thread;
 * threads that hash together share a line (correct, only slower).
 * The slot of the thread whose thread pointer is self: its page number times the multiplier,
 * top bits (multiplicative hashing). Thread pointers sit at a fixed stride (the stack size),
 * and the top bits of (first + k * stride) * M spread consecutive k (CONC__RWLOCK_HASH_MUL). */
CONC_INLINE size_t conc__rwlock_slot_index(uintptr_t self) {
    uint64_t h = (uint64_t)(self >> CONC__RWLOCK_PAGE_SHIFT) * CONC__RWLOCK_HASH_MUL;
    unsigned bits = (unsigned)__builtin_ctz(CONC_RWLOCK_SLOTS); /* a constant */
    return bits == 0 ? 0 : (size_t)(h >> (64 - bits));
}

CONC_INLINE uint32_t *conc__rwlock_slot_of_self(conc_rwlock_t *rw) {
    return &rw->slot[conc__rwlock_slot_index(conc_thread_token())].readers;
}

/* True when no reader is inside: the central count of `w` (read first) and then every slot.
 * The order matters: an admitted reader moves from the central count to its slot by raising
 * the slot first (conc__rwlock_settle_slow), so a writer that finds the central count at 0
 * finds the reader in its slot. Seq_cst slot loads: the writer's half of the Dekker pair
 * (its fetch_or of WRITER, then these loads; a reader's slot fetch_add, then its load of
 * WRITER): one of the two sees the other. [rwlock.A2] also: pairs with [rwlock.R1]. */
CONC_INLINE bool conc__rwlock_drained(conc_rwlock_t *rw, uint64_t w) {
    if (conc__rwlock_readers(w) != 0)
        return false;
    for (int i = 0; i < CONC_RWLOCK_SLOTS; i++)
        if (conc_load(&rw->slot[i].readers, CONC_SEQ_CST) & CONC__RWLOCK_SLOT_COUNT_MASK)
            return false;
    return true;
}

static inline void conc_rwlock_init(conc_rwlock_t *rw, int flags) {
    conc__base_check_init_flags(flags, "conc_rwlock_init");
    conc_store(&rw->word, (flags & CONC_SHARED) ? CONC__RWLOCK_SHARED : (uint64_t)0, CONC_RELAXED);
    conc_lock_init(&rw->writers, flags);
    rw->reserved = 0;
    conc_store(&rw->holder, (uintptr_t)0, CONC_RELAXED);
    memset(rw->pad, 0, sizeof rw->pad);
    for (int i = 0; i < CONC_RWLOCK_SLOTS; i++)
        conc_store(&rw->slot[i].readers, (flags & CONC_SHARED) ? CONC__RWLOCK_SLOT_SHARED : 0u,
                   CONC_RELAXED);
    CONC_TSAN_MUTEX_CREATE(rw, 0);
}

/* -------------------------------------------------------------------------------------------
 * Slow paths (cold, out of line)
 *
 * A reader enters by its slot and looks for WRITER; a writer raises WRITER and looks at the
 * slots (the Dekker pair, every step seq_cst):
 *
 *   reader                                     writer
 *   ---------------------------------------    --------------------------------------------
 *   slot fetch_add: +1  [rwlock.A1]            fetch_or: WRITER  [rwlock.A2]
 *   load word: WRITER?                         load word, then every slot: all 0?
 *
 * In the single order of seq_cst operations one of the two loads comes last and sees the
 * other's RMW: the reader sees WRITER (and queues), or the writer sees the reader (and waits).
 *
 * Queued readers sleep on the low half until the writer's phase ends:
 *
 *   writer (holds WRITER, phase p)             reader (in its slot, saw WRITER and p)
 *   ---------------------------------------    --------------------------------------------
 *                                              CAS: +1 queued  [queues]
 *                                              slot fetch_sub: -1 (as a release, below)
 *                                              CAS: raise READERS_SLEEP
 *   release the inner lock (the next writer
 *     may take it, and waits for the CAS)
 *   CAS: inside += queued, queued = 0,
 *        WRITER, READERS_SLEEP off, p+1  [rwlock.R2]  -- the last touch of the lock
 *   old word had READERS_SLEEP: wake(readers)
 *                                              futex_wait(low, word with p, READERS_SLEEP)
 *                                                -> EAGAIN: the phase moved
 *                                              slot fetch_add: +1, then central -1 [settles]
 *
 * The writer waits for the readers inside to leave: the central count first (admitted readers
 * not settled into their slots yet), then the slots. While the central count is not 0 it
 * sleeps on the word's low half (WRITER_SLEEPS: the settling reader's fetch_sub on the word
 * returns it and wakes the writer; that reader is inside, so it may touch the lock after).
 * Then it sleeps on one slot's word at a time, until that slot's last reader leaves:
 *
 *   the last reader of slot i leaving          writer
 *   ---------------------------------------    --------------------------------------------
 *                                              CAS: WRITER (once the last writer's CAS ran)
 *                                              load word, slots: central 0, slot i not
 *                                              slot i fetch_or: WAITER; its count was 1
 *   slot i fetch_sub: -1, returns WAITER and
 *     count 1  [rwlock.R1] -- the last touch
 *   wake(slot i), by its address
 *                                              futex_wait(slot i, count 1 with WAITER)
 *                                                -> EAGAIN: the count went (or woken)
 *                                              slot i fetch_and: WAITER off; look again
 *
 * Both RMWs act on the slot's word, so one comes first: the writer's fetch_or finds the
 * count at 0 (and does not sleep), or the reader's fetch_sub returns WAITER (and it wakes
 * the writer, which either sleeps already or finds the word changed). A reader that leaves
 * a slot with others still in it does not wake: the writer waits for that slot to empty
 * anyway. The central count cannot rise while WRITER is up (only an end of the phase adds to
 * it), so once that slot is empty the writer looks at them all again, and sleeps on the
 * next. A release reads nothing after its RMW (THREAD SAFETY).
 *
 * The next writer takes the inner lock before its predecessor's phase-ending CAS; it waits
 * for that CAS (a few instructions, unless the predecessor is preempted between the two):
 *
 *   writer ending its phase                    next writer (holds the inner lock)
 *   ---------------------------------------    --------------------------------------------
 *   release the inner lock
 *                                              load word: WRITER still up; spin, then
 *                                              CAS: raise WRITER_SLEEPS
 *   CAS: WRITER and the sleep bits off, p+1;
 *     it returns WRITER_SLEEPS: wake(writer)
 *                                              futex_wait(low, word with WRITER_SLEEPS)
 *                                                -> EAGAIN: the word changed (or woken)
 *                                              CAS: raise WRITER  [rwlock.A2]
 *
 * Both write the word, so one comes first: the CAS that raises WRITER_SLEEPS fails on the
 * phase-ending one (and the next writer finds WRITER down), or the phase-ending CAS returns
 * the bit and wakes it. Its own WRITER_SLEEPS went when its readers had left, and no reader
 * settles in this gap (the central count is 0), so the bit is the next writer's; a timeout's
 * leftover one costs a wake for nobody. A CONC_SHARED lock's sleeper also looks again every
 * CONC__RWLOCK_SHARED_RECHECK_NS: a process killed between the RMW that lets it go and the
 * wake takes the wake with it (tests/models/rwlock_dead.pml).
 * ------------------------------------------------------------------------------------------- */

/* The word at the end of a writer's phase (release, downgrade, timeout): the queued readers
 * are let in (counted in the central field until they settle into their slots), WRITER and
 * the sleep bits go, the phase advances. */
CONC_INLINE uint64_t conc__rwlock_phase_end(uint64_t w) {
    uint64_t queued = w >> CONC__RWLOCK_QUEUED_SHIFT;
    return ((w & (CONC__RWLOCK_READERS_MASK | CONC__RWLOCK_SHARED)) + queued) |
           ((w + CONC__RWLOCK_PHASE_ONE) & CONC__RWLOCK_PHASE_MASK);
}

/* Lets the next writer at the inner lock, then ends the writer's phase with one CAS, the last
 * touch of the lock but the readers' wake (an admitted reader may free it at once: THREAD
 * SAFETY); the next writer, holding the inner lock, waits for that CAS before it raises
 * WRITER (conc__rwlock_raise_writer). [rwlock.R2] release: pairs with the admitted readers'
 * [rwlock.A3] and, through the word's release sequence, with the next writer's [rwlock.A2]. */
CONC_INLINE void conc__rwlock_end_phase(conc_rwlock_t *rw, const char *who) {
    uint64_t w = conc_load(&rw->word, CONC_RELAXED), next;
    if (!(w & CONC__RWLOCK_WRITER)) /* only its holder clears WRITER: one look decides */
        CONC_ABORT(who);
    conc_lock_release(&rw->writers);
    CONC_CHAOS_POINT();
    do
        next = conc__rwlock_phase_end(w);
    while (!conc_cas_weak(&rw->word, &w, next, CONC_RELEASE, CONC_RELAXED));
    if (w & CONC__RWLOCK_READERS_SLEEP) {
        CONC_CHAOS_POINT();
        conc_futex_wake_tagged(conc__rwlock_futex(rw), INT_MAX, conc__rwlock_futex_flags(w),
                               CONC__RWLOCK_TAG_READER);
    }
    /* WRITER_SLEEPS: the next writer sleeps until this CAS (or it is our own request, left up
     * by a timeout: then the wake finds nobody). */
    if (w & CONC__RWLOCK_WRITER_SLEEPS) {
        CONC_CHAOS_POINT();
        conc_futex_wake_tagged(conc__rwlock_futex(rw), 1, conc__rwlock_futex_flags(w),
                               CONC__RWLOCK_TAG_WRITER);
    }
}

/* A reader count went down while WRITER_SLEEPS was up: clear it and wake the writer, which
 * looks again. */
CONC_COLD void conc__rwlock_wake_writer_slow(conc_rwlock_t *rw) {
    uint64_t old = conc_fetch_and(&rw->word, ~CONC__RWLOCK_WRITER_SLEEPS, CONC_SEQ_CST);
    if (old & CONC__RWLOCK_WRITER_SLEEPS) {
        CONC_CHAOS_POINT();
        conc_futex_wake_tagged(conc__rwlock_futex(rw), 1, conc__rwlock_futex_flags(old),
                               CONC__RWLOCK_TAG_WRITER);
    }
}

/* The last reader of a slot the writer sleeps on left: wake it, by the slot's address only
 * (the lock may be gone already: a futex wake on freed memory is harmless). */
CONC_COLD void conc__rwlock_wake_slot_writer_slow(uint32_t *slot, uint32_t old) {
    CONC_CHAOS_POINT();
    conc_futex_wake(slot, 1, conc_futex_flags(old, CONC__RWLOCK_SLOT_SHARED));
}

/* A reader leaves its slot (release, a failed try, queuing): one fetch_sub, the last touch of
 * the lock: it returns the WAITER bit with the count, so the reader that empties a slot the
 * writer sleeps on knows to wake it, and reads nothing after (THREAD SAFETY). [rwlock.R1]
 * release: pairs with the writer's [rwlock.A2] slot loads. Returns the slot's old count (0:
 * it was not held). */
CONC_INLINE uint32_t conc__rwlock_leave_slot(uint32_t *slot) {
    uint32_t old = conc_fetch_sub(slot, 1u, CONC_RELEASE);
    if (CONC_UNLIKELY((old & ~CONC__RWLOCK_SLOT_SHARED) == (CONC__RWLOCK_SLOT_WAITER | 1u)))
        conc__rwlock_wake_slot_writer_slow(slot, old);
    return old & CONC__RWLOCK_SLOT_COUNT_MASK;
}

/* One sleep of a reader or the writer on the low half: raises `bit` (READERS_SLEEP or
 * WRITER_SLEEPS) if *w lacks it, a request the waker's RMW reads, then sleeps with `tag` while
 * the low half still equals *w's. (A draining writer sleeps here only while admitted readers
 * are unsettled: each settles with a fetch_sub of the word that reads WRITER_SLEEPS and wakes
 * it, so there is nothing to look at past the word; the slots have their own sleep.) Seq_cst
 * CAS: the writer's half of the second Dekker pair (timeline above); its failure order
 * acquires, as does the reload: a fresh *w may be the word the caller returns on
 * ([rwlock.A2]/[rwlock.A3]). A CONC_SHARED lock's sleep lasts at most
 * CONC__RWLOCK_SHARED_RECHECK_NS, and its end returns 0. Returns 0 (look again) or
 * futex_wait's ETIMEDOUT (the caller's deadline)/EINTR/EAGAIN; *w is fresh either way. */
CONC_INLINE int conc__rwlock_sleep(conc_rwlock_t *rw, uint64_t *w, uint64_t bit, uint32_t tag,
                                   int flags, int64_t deadline) {
    if (!(*w & bit)) {
        if (!conc_cas(&rw->word, w, *w | bit, CONC_SEQ_CST, CONC_ACQUIRE))
            return 0;
        *w |= bit;
    }
    int64_t dl = conc_futex_sleep_until(flags, deadline);
    int r = conc_futex_wait_tagged(conc__rwlock_futex(rw), (uint32_t)*w, flags, tag, dl);
    *w = conc_load(&rw->word, CONC_ACQUIRE); /* [rwlock.A2]/[rwlock.A3] */
    if (r == ETIMEDOUT && dl != deadline)
        return 0; /* the recheck ran out, not the caller's deadline: look again */
    return r;
}

/* A queued reader was admitted by the end of its phase: it is counted in the central field.
 * Move it into its slot (slot first, so it is counted somewhere at every moment, and a writer
 * reading the central field then the slots finds it), so release_shared finds it there. The
 * central fetch_sub publishes nothing of the reader's (it has read nothing yet): relaxed
 * would do, seq_cst is for the Dekker load after it. */
CONC_COLD void conc__rwlock_settle_slow(conc_rwlock_t *rw, uint32_t *slot) {
    (void)conc_fetch_add(slot, 1u, CONC_SEQ_CST);
    uint64_t old = conc_fetch_sub(&rw->word, CONC__RWLOCK_READER_ONE, CONC_SEQ_CST);
    if (old & CONC__RWLOCK_WRITER_SLEEPS)
        conc__rwlock_wake_writer_slow(rw);
}

/* A wait without a deadline by the thread that holds the lock exclusively would wait for
 * itself for good (glibc's rwlock says EDEADLK; the blocking calls return nothing): abort,
 * naming the call. Private locks only: a CONC_SHARED lock's holder may be a thread of
 * another process with the same thread pointer. Relaxed, as in conc__rwlock_unhold: only
 * the holder stores its own number. */
CONC_COLD void conc__rwlock_check_not_holder_slow(const conc_rwlock_t *rw, const char *who) {
    if (!(conc_load(&rw->word, CONC_RELAXED) & CONC__RWLOCK_SHARED) &&
        conc_load(&rw->holder, CONC_RELAXED) == conc_thread_token())
        CONC_ABORT(who);
}

/* The reader's slot fetch_add was followed by a load that saw WRITER up in `w`, phase p: this
 * reader is counted in its slot but may not read. Queue (unless the phase ended already),
 * leave the slot, then wait for the phase to end or the deadline. */
CONC_COLD int conc__rwlock_shared_slow(conc_rwlock_t *rw, uint32_t *slot, uint64_t w,
                                       int64_t deadline) {
    const uint64_t phase = w & CONC__RWLOCK_PHASE_MASK;
    int flags = conc__rwlock_futex_flags(w);
    if (deadline == CONC_FOREVER)
        conc__rwlock_check_not_holder_slow(rw, "conc_rwlock_acquire_shared: the calling thread "
                                               "holds it exclusively (it would wait for itself)");
    for (;;) {
        CONC_CHAOS_POINT();
        /* [rwlock.A3] acquire (the failure order): pairs with [rwlock.R2], the end of the
         * phase. Admitted while still in the slot: the next writer will wait for it there. */
        if (conc__rwlock_admitted(w, phase))
            return 0;
        /* Queuing publishes nothing; acquire for the failure case, where w is fresh and may be
         * the end of the phase we return on ([rwlock.A3]). */
        if (conc_cas(&rw->word, &w, w + CONC__RWLOCK_QUEUED_ONE, CONC_ACQUIRE, CONC_ACQUIRE)) {
            w += CONC__RWLOCK_QUEUED_ONE;
            break;
        }
    }
    (void)conc__rwlock_leave_slot(slot); /* the writer may wait for this */

    conc_spin_t spin = conc_spin_begin(CONC_RWLOCK_SPIN, CONC_SPIN_STEADY, deadline);
    while (!conc__rwlock_admitted(w, phase) && !(w & CONC__RWLOCK_READERS_SLEEP) &&
           conc_spin_next(&spin))
        w = conc_load(&rw->word, CONC_ACQUIRE); /* [rwlock.A3] */

    int r = 0;
    for (;;) {
        CONC_CHAOS_POINT();
        if (conc__rwlock_admitted(w, phase)) {
            /* [rwlock.A3] by the acquire load or CAS failure that read w */
            conc__rwlock_settle_slow(rw, slot);
            return 0;
        }
        if (r == ETIMEDOUT || conc_deadline_passed(deadline)) {
            /* Leave the queue: publishes nothing (acquire for the failure case, as above). */
            if (conc_cas(&rw->word, &w, w - CONC__RWLOCK_QUEUED_ONE, CONC_ACQUIRE, CONC_ACQUIRE))
                return ETIMEDOUT;
            continue;
        }
        /* READERS_SLEEP: a request the writer's [rwlock.R2] CAS reads. */
        r = conc__rwlock_sleep(rw, &w, CONC__RWLOCK_READERS_SLEEP, CONC__RWLOCK_TAG_READER, flags,
                               deadline);
    }
}

/* The central count is 0 and a slot is not: sleep on the first such slot's word until its
 * last reader leaves. That reader's fetch_sub returns WAITER with its count, so it wakes us by
 * the slot's address and reads nothing after (THREAD SAFETY); a fetch_sub between our
 * fetch_or and our sleep changes the word, and the kernel's compare refuses the sleep. The
 * central count cannot rise while we hold WRITER (only an end of our phase adds to it), so
 * once that slot is empty the caller looks at them all again. WAITER goes when we are back,
 * however we came back (a bit left up would cost a later reader a wake for nobody). Returns
 * 0 (look again) or futex_wait's ETIMEDOUT (the caller's deadline)/EINTR/EAGAIN; *w fresh. */
CONC_COLD int conc__rwlock_sleep_on_slot_slow(conc_rwlock_t *rw, uint64_t *w, int flags,
                                              int64_t deadline) {
    uint32_t *slot = NULL;
    for (int i = 0; i < CONC_RWLOCK_SLOTS && !slot; i++) /* relaxed: a guess, the RMW decides */
        if (conc_load(&rw->slot[i].readers, CONC_RELAXED) & CONC__RWLOCK_SLOT_COUNT_MASK)
            slot = &rw->slot[i].readers;
    int r = 0;
    if (slot) {
        /* Relaxed: the request publishes nothing; ordered against the readers' fetch_sub by
         * being an RMW of the same word. */
        uint32_t v = conc_fetch_or(slot, CONC__RWLOCK_SLOT_WAITER, CONC_RELAXED);
        if (v & CONC__RWLOCK_SLOT_COUNT_MASK) {
            int64_t dl = conc_futex_sleep_until(flags, deadline);
            CONC_CHAOS_POINT();
            r = conc_futex_wait(slot, v | CONC__RWLOCK_SLOT_WAITER, flags, dl);
            if (r == ETIMEDOUT && dl != deadline)
                r = 0; /* the recheck ran out, not the caller's deadline: look again */
        }
        (void)conc_fetch_and(slot, ~CONC__RWLOCK_SLOT_WAITER, CONC_RELAXED); /* as the fetch_or */
    }
    *w = conc_load(&rw->word, CONC_SEQ_CST); /* [rwlock.A2]: the caller scans again */
    return r;
}

/* The writer holds the inner lock and raised WRITER; `w` is the word after that. Wait for
 * the readers inside to leave; at the deadline, end the phase as a release would, but only
 * once the central count is 0: readers admitted by the last end of a phase, not yet settled
 * into their slots, have not seen the phase move, and another end would let the phase come
 * back round to the one they wait to see end (DESIGN). They are running (the end that
 * admitted them woke them), so the wait past the deadline is short. */
CONC_COLD int conc__rwlock_drain_slow(conc_rwlock_t *rw, uint64_t w, int64_t deadline) {
    int flags = conc__rwlock_futex_flags(w);
    conc_spin_t spin = conc_spin_begin(CONC_RWLOCK_SPIN, CONC_SPIN_STEADY, deadline);
    while (!conc__rwlock_drained(rw, w) && conc_spin_next(&spin))
        w = conc_load(&rw->word, CONC_SEQ_CST); /* [rwlock.A2] */
    int r = 0;
    bool late = false; /* the deadline passed: waiting only for the central count */
    for (;;) {
        CONC_CHAOS_POINT();
        if (conc__rwlock_drained(rw, w)) {
            /* [rwlock.A2] Retire our sleep request, so readers queuing in our phase do not
             * wake nobody. */
            if (w & CONC__RWLOCK_WRITER_SLEEPS)
                (void)conc_fetch_and(&rw->word, ~CONC__RWLOCK_WRITER_SLEEPS, CONC_RELAXED);
            return 0;
        }
        if (late || r == ETIMEDOUT || conc_deadline_passed(deadline)) {
            if (conc__rwlock_readers(w) == 0) {
                conc__rwlock_end_phase(rw, "conc_rwlock_acquire_until: lost WRITER");
                return ETIMEDOUT;
            }
            /* Settling readers wake us (WRITER_SLEEPS), and each changes the futex word. */
            late = true;
            deadline = CONC_FOREVER;
        }
        if (conc__rwlock_readers(w) != 0) {
            /* Admitted readers not settled yet. WRITER_SLEEPS: a request their settling
             * fetch_sub on the word reads. */
            r = conc__rwlock_sleep(rw, &w, CONC__RWLOCK_WRITER_SLEEPS, CONC__RWLOCK_TAG_WRITER,
                                   flags, deadline);
            if (r == 0)
                w = conc_load(&rw->word, CONC_SEQ_CST);
        } else {
            r = conc__rwlock_sleep_on_slot_slow(rw, &w, flags, deadline);
        }
    }
}

/* The exclusive holder, for release's and downgrade's check. WRITER alone cannot tell:
 * it is up while a writer still waits for readers to leave, and a release by anyone else
 * then would end that writer's phase under it and leave it asleep for good. Relaxed: only
 * the holder stores its own number; another thread reads "not me" whatever it sees. */
CONC_INLINE void conc__rwlock_hold(conc_rwlock_t *rw) {
    conc_store(&rw->holder, conc_thread_token(), CONC_RELAXED);
}
CONC_INLINE void conc__rwlock_unhold(conc_rwlock_t *rw, const char *who) {
    if (CONC_UNLIKELY(conc_load(&rw->holder, CONC_RELAXED) != conc_thread_token()))
        CONC_ABORT(who);
    conc_store(&rw->holder, (uintptr_t)0, CONC_RELAXED);
}

/* The writers' lock: a try first, so that a wait can check who waits (above). */
CONC_INLINE int conc__rwlock_writers_acquire(conc_rwlock_t *rw, int64_t deadline) {
    if (CONC_LIKELY(conc_lock_try_acquire(&rw->writers) == 0))
        return 0;
    if (deadline == CONC_FOREVER)
        conc__rwlock_check_not_holder_slow(rw, "conc_rwlock_acquire: the calling thread holds "
                                               "it exclusively already (it would wait for itself)");
    return conc_lock_acquire_until(&rw->writers, deadline);
}

/* WRITER is still up behind the inner lock: the previous writer let go of it and has not
 * made the CAS that ends its phase yet (preempted between the two; a CONC_SHARED one killed
 * there never will: CAVEATS). Waits for that CAS: spins, then sleeps on the low half with
 * WRITER_SLEEPS raised, a request that CAS returns (its own request went when its readers
 * had left, and no reader settles in this gap: the central count is 0), so it wakes us by
 * the address. 0 with *w fresh and WRITER down, or ETIMEDOUT. Relaxed loads: the CAS that
 * then raises WRITER acquires what the predecessor released. */
CONC_COLD int conc__rwlock_wait_writer_gone_slow(conc_rwlock_t *rw, uint64_t *w, int64_t deadline) {
    conc_spin_t spin = conc_spin_begin(CONC_RWLOCK_SPIN, CONC_SPIN_STEADY, deadline);
    while ((*w & CONC__RWLOCK_WRITER) && conc_spin_next(&spin))
        *w = conc_load(&rw->word, CONC_RELAXED);
    int flags = conc__rwlock_futex_flags(*w);
    while (*w & CONC__RWLOCK_WRITER) {
        if (conc_deadline_passed(deadline))
            return ETIMEDOUT;
        (void)conc__rwlock_sleep(rw, w, CONC__RWLOCK_WRITER_SLEEPS, CONC__RWLOCK_TAG_WRITER, flags,
                                 deadline);
    }
    return 0;
}

/* Raise WRITER (the caller holds the inner lock) once the previous writer's phase-ending CAS
 * has cleared it: 0 with *w the word after, or ETIMEDOUT. [rwlock.A2] seq_cst: acquire pairs
 * with the readers' [rwlock.R1] and the last writer's [rwlock.R2]; seq_cst for the Dekker
 * pair with the readers' [rwlock.A1]. */
CONC_INLINE int conc__rwlock_raise_writer(conc_rwlock_t *rw, uint64_t *w, int64_t deadline) {
    *w = conc_load(&rw->word, CONC_RELAXED);
    for (;;) {
        if (CONC_UNLIKELY(*w & CONC__RWLOCK_WRITER)) {
            int r = conc__rwlock_wait_writer_gone_slow(rw, w, deadline);
            if (r != 0)
                return r;
        }
        if (conc_cas_weak(&rw->word, w, *w | CONC__RWLOCK_WRITER, CONC_SEQ_CST, CONC_RELAXED)) {
            *w |= CONC__RWLOCK_WRITER;
            return 0;
        }
    }
}

/* Raise WRITER (the caller holds the inner lock) and wait for the readers inside. On
 * ETIMEDOUT (WRITER never came down) the inner lock is released. */
CONC_INLINE int conc__rwlock_exclusive(conc_rwlock_t *rw, int64_t deadline) {
    uint64_t w;
    if (CONC_UNLIKELY(conc__rwlock_raise_writer(rw, &w, deadline) != 0)) {
        conc_lock_release(&rw->writers);
        return ETIMEDOUT;
    }
    if (CONC_UNLIKELY(!conc__rwlock_drained(rw, w)))
        return conc__rwlock_drain_slow(rw, w, deadline);
    return 0;
}

/* -------------------------------------------------------------------------------------------
 * Fast paths (inline)
 * ------------------------------------------------------------------------------------------- */

/* The slot held CONC__RWLOCK_SLOT_HOLDS_MAX already: take back the hold just added (as a
 * release would: a writer may be asleep on the slot) and say so. */
CONC_COLD uint64_t conc__rwlock_slot_full_slow(uint32_t *slot) {
    (void)conc__rwlock_leave_slot(slot);
    return CONC__RWLOCK_SLOT_FULL;
}

/* The slot fetch_add, then the load of the word. [rwlock.A1] seq_cst: the reader's half of
 * the Dekker pair; the load acquires the end of the last writer's phase ([rwlock.R2]). Returns
 * the word it saw; WRITER in it means the reader may not read (it is counted in its slot),
 * unless it is CONC__RWLOCK_SLOT_FULL (it is not). */
CONC_INLINE uint64_t conc__rwlock_enter_slot(conc_rwlock_t *rw, uint32_t *slot) {
    uint32_t old = conc_fetch_add(slot, 1u, CONC_SEQ_CST);
    if (CONC_UNLIKELY((old & CONC__RWLOCK_SLOT_COUNT_MASK) >= CONC__RWLOCK_SLOT_HOLDS_MAX))
        return conc__rwlock_slot_full_slow(slot);
    return conc_load(&rw->word, CONC_SEQ_CST);
}

static inline void conc_rwlock_acquire_shared(conc_rwlock_t *rw) {
    CONC_TSAN_MUTEX_PRE_LOCK(rw, CONC__RWLOCK_TSAN_READ);
    uint32_t *slot = conc__rwlock_slot_of_self(rw);
    uint64_t w = conc__rwlock_enter_slot(rw, slot);
    if (CONC_UNLIKELY(w & CONC__RWLOCK_WRITER)) {
        if (w == CONC__RWLOCK_SLOT_FULL)
            CONC_ABORT("conc_rwlock_acquire_shared: the calling thread's slot counts 1,069,547,519 "
                       "shared holds already (recursion that never releases?)");
        (void)conc__rwlock_shared_slow(rw, slot, w, CONC_FOREVER);
    }
    CONC_TSAN_MUTEX_POST_LOCK(rw, CONC__RWLOCK_TSAN_READ);
}

CONC_NODISCARD static inline int conc_rwlock_acquire_shared_until(conc_rwlock_t *rw,
                                                                  int64_t deadline) {
    CONC_TSAN_MUTEX_PRE_LOCK(rw, CONC__RWLOCK_TSAN_READ | CONC_TSAN_MUTEX_TRY_LOCK);
    uint32_t *slot = conc__rwlock_slot_of_self(rw);
    uint64_t w = conc__rwlock_enter_slot(rw, slot);
    int r = CONC_LIKELY(!(w & CONC__RWLOCK_WRITER)) ? 0
            : w == CONC__RWLOCK_SLOT_FULL           ? EAGAIN
                                          : conc__rwlock_shared_slow(rw, slot, w, deadline);
    CONC_TSAN_MUTEX_POST_LOCK(rw, CONC__RWLOCK_TSAN_READ | CONC_TSAN_MUTEX_TRY_LOCK |
                                      (r ? CONC_TSAN_MUTEX_TRY_LOCK_FAILED : 0u));
    return r;
}

/* Enters the slot and leaves it again if a writer holds or waits: a writer may see the count
 * for that moment (and, asleep, be woken to look again), which costs it a look, not a phase. */
CONC_NODISCARD static inline int conc_rwlock_try_acquire_shared(conc_rwlock_t *rw) {
    CONC_TSAN_MUTEX_PRE_LOCK(rw, CONC__RWLOCK_TSAN_READ | CONC_TSAN_MUTEX_TRY_LOCK);
    uint32_t *slot = conc__rwlock_slot_of_self(rw);
    int r = 0;
    uint64_t w = conc__rwlock_enter_slot(rw, slot); /* [rwlock.A1] */
    if (w == CONC__RWLOCK_SLOT_FULL) {
        r = EAGAIN;
    } else if (w & CONC__RWLOCK_WRITER) {
        (void)conc__rwlock_leave_slot(slot);
        r = EBUSY;
    }
    CONC_TSAN_MUTEX_POST_LOCK(rw, CONC__RWLOCK_TSAN_READ | CONC_TSAN_MUTEX_TRY_LOCK |
                                      (r ? CONC_TSAN_MUTEX_TRY_LOCK_FAILED : 0u));
    return r;
}

/* The slot fetch_sub and the Dekker load ([rwlock.R1]). A slot already at 0 means the caller
 * held nothing (caught only when no other holder shares its slot: a best-effort check). */
static inline void conc_rwlock_release_shared(conc_rwlock_t *rw) {
    CONC__RWLOCK_TSAN_PRE_UNLOCK(rw, CONC__RWLOCK_TSAN_READ);
    uint32_t *slot = conc__rwlock_slot_of_self(rw);
    if (CONC_UNLIKELY((conc_load(slot, CONC_RELAXED) & CONC__RWLOCK_SLOT_COUNT_MASK) == 0))
        CONC_ABORT("conc_rwlock_release_shared: not held shared");
    (void)conc__rwlock_leave_slot(slot);
    CONC__RWLOCK_TSAN_POST_UNLOCK(rw, CONC__RWLOCK_TSAN_READ);
}

static inline void conc_rwlock_acquire(conc_rwlock_t *rw) {
    CONC_TSAN_MUTEX_PRE_LOCK(rw, 0);
    (void)conc__rwlock_writers_acquire(rw, CONC_FOREVER);
    (void)conc__rwlock_exclusive(rw, CONC_FOREVER);
    conc__rwlock_hold(rw);
    CONC_TSAN_MUTEX_POST_LOCK(rw, 0);
}

CONC_NODISCARD static inline int conc_rwlock_acquire_until(conc_rwlock_t *rw, int64_t deadline) {
    CONC_TSAN_MUTEX_PRE_LOCK(rw, CONC_TSAN_MUTEX_TRY_LOCK);
    int r = conc__rwlock_writers_acquire(rw, deadline);
    if (r == 0)
        r = conc__rwlock_exclusive(rw, deadline);
    if (r == 0)
        conc__rwlock_hold(rw);
    CONC_TSAN_MUTEX_POST_LOCK(rw, CONC_TSAN_MUTEX_TRY_LOCK |
                                      (r ? CONC_TSAN_MUTEX_TRY_LOCK_FAILED : 0u));
    return r;
}

/* Raises WRITER only if no reader is seen inside first, so a failed try seldom disturbs
 * anyone; a reader that slipped into its slot meanwhile (the Dekker look after raising)
 * makes it end the phase it opened, which admits any reader that queued in that moment. */
CONC_NODISCARD static inline int conc_rwlock_try_acquire(conc_rwlock_t *rw) {
    CONC_TSAN_MUTEX_PRE_LOCK(rw, CONC_TSAN_MUTEX_TRY_LOCK);
    int r = conc_lock_try_acquire(&rw->writers);
    if (r == 0) {
        uint64_t w = conc_load(&rw->word, CONC_RELAXED);
        /* A past deadline: WRITER still up (the last writer just before its phase-ending
         * CAS) is busy, as readers inside are. */
        if (!conc__rwlock_drained(rw, w) || conc__rwlock_raise_writer(rw, &w, 0) != 0) {
            r = EBUSY;
            conc_lock_release(&rw->writers);
        } else {
            if (!conc__rwlock_drained(rw, w)) {
                r = EBUSY;
                conc__rwlock_end_phase(rw, "conc_rwlock_try_acquire: lost WRITER");
            } else {
                conc__rwlock_hold(rw);
            }
        }
    }
    CONC_TSAN_MUTEX_POST_LOCK(rw, CONC_TSAN_MUTEX_TRY_LOCK |
                                      (r ? CONC_TSAN_MUTEX_TRY_LOCK_FAILED : 0u));
    return r;
}

static inline void conc_rwlock_release(conc_rwlock_t *rw) {
    CONC__RWLOCK_TSAN_PRE_UNLOCK(rw, 0);
    conc__rwlock_unhold(rw, "conc_rwlock_release: not held exclusively");
    conc__rwlock_end_phase(rw, "conc_rwlock_release: not held exclusively");
    CONC__RWLOCK_TSAN_POST_UNLOCK(rw, 0);
}

/* Exclusive to shared: the caller enters its slot while it still holds WRITER (no writer can
 * come between), then ends the phase, admitting the readers queued behind it. */
static inline void conc_rwlock_downgrade(conc_rwlock_t *rw) {
    CONC__RWLOCK_TSAN_PRE_UNLOCK(rw, 0);
    conc__rwlock_unhold(rw, "conc_rwlock_downgrade: not held exclusively");
    (void)conc_fetch_add(conc__rwlock_slot_of_self(rw), 1u, CONC_RELAXED); /* ordered by R2 */
    conc__rwlock_end_phase(rw, "conc_rwlock_downgrade: not held exclusively");
    CONC__RWLOCK_TSAN_POST_UNLOCK(rw, 0);
    CONC_TSAN_MUTEX_PRE_LOCK(rw, CONC__RWLOCK_TSAN_READ);
    CONC_TSAN_MUTEX_POST_LOCK(rw, CONC__RWLOCK_TSAN_READ);
}

/* Relaxed snapshots for assertions and diagnostics: ordered with nothing. is_locked is true
 * while a writer holds the lock or waits for readers to leave. */
static inline bool conc_rwlock_is_locked(const conc_rwlock_t *rw) {
    return (conc_load(&rw->word, CONC_RELAXED) & CONC__RWLOCK_WRITER) != 0;
}
static inline unsigned conc_rwlock_readers(const conc_rwlock_t *rw) {
    uint64_t n = conc__rwlock_readers(conc_load(&rw->word, CONC_RELAXED));
    for (int i = 0; i < CONC_RWLOCK_SLOTS; i++)
        n += conc_load(&rw->slot[i].readers, CONC_RELAXED) & CONC__RWLOCK_SLOT_COUNT_MASK;
    return (unsigned)n;
}

/* -------------------------------------------------------------------------------------------
 * Scoped forms: CONC_WITH_RWLOCK_SHARED(&rw) { ... } and CONC_WITH_RWLOCK(&rw) { ... }
 *
 * Acquire rw (shared, or exclusive), run the block, release it however the block is left
 * (the end, return, break, continue, goto out). lock.h's mechanism (CONC__LOCK_WITH) with
 * CONC_WITH_LOCK's caveats: break and continue end the block, not an enclosing loop;
 * longjmp and exit() skip the release; blocking acquires only; a downgrade inside
 * CONC_WITH_RWLOCK would leave the guard releasing the wrong side (not supported: release
 * by hand instead).
 * ------------------------------------------------------------------------------------------- */

CONC__LOCK_GUARD_DEFINE(conc__rwlock_guard_shared, conc_rwlock_t, conc_rwlock_acquire_shared,
                        conc_rwlock_release_shared)
CONC__LOCK_GUARD_DEFINE(conc__rwlock_guard, conc_rwlock_t, conc_rwlock_acquire, conc_rwlock_release)

#define CONC_WITH_RWLOCK_SHARED(rw) CONC__LOCK_WITH(conc__rwlock_guard_shared, (rw))
#define CONC_WITH_RWLOCK(rw) CONC__LOCK_WITH(conc__rwlock_guard, (rw))

#ifdef __cplusplus
}
#endif
#endif /* CONC_RWLOCK_H */
