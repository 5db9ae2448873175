/* conc/chan.h - channels, select, and locks, semaphores, events and conditions for coroutines -
 * conc v0.1.0
 * SPDX-License-Identifier: MIT
 *
 * What asyncio programs are made of, for coro.h's coroutines: Go's channels (bounded, capacity
 * 0 a rendezvous, close, a fair select with a deadline) and asyncio's Lock, (Bounded)Semaphore,
 * Event and Condition. Every wait parks the coroutine, never the thread, and goes through
 * coro.h's park, so deadlines, cancel (ECANCELED) and the EDEADLK report ("lock 0x... held by
 * coro "a" (#3)") work the same for all of them. Needs coro.h only.
 *
 * CONTENTS
 *   quick start - API - errors - ordering contract - thread safety - configuration - caveats -
 *   design; code: types, helpers, channels, select, lock, semaphore, event, condition
 *
 * QUICK START (examples/17_chan_pipeline.c has producers, workers and a collector)
 *     static int main_coro(void *arg) {                     // a coroutine
 *         conc_chan_t *ch; int x;                           // 4 ints, copied in and out
 *         if (conc_chan_create(&ch, 4, sizeof(int)) != 0) return ENOMEM;
 *         for (int i = 0; i < 3; i++) if (conc_chan_send(ch, &i) != 0) break; // parks if full
 *         conc_chan_close(ch);                              // no more sends; the rest drains
 *         while (conc_chan_recv(ch, &x) == 0) printf("%d\n", x); // 0 1 2, then EPIPE
 *         conc_chan_destroy(ch);
 *         return (void)arg, 0;
 *     }
 *     int st = -1; if (conc_run(main_coro, NULL, &st) != 0 || st != 0) puts("failed");
 *
 * API
 *   channel   conc_chan_create(&ch, capacity, item_size)  0, EINVAL, ENOMEM; capacity 0:
 *                                                    rendezvous (a send waits for its receiver)
 *             conc_chan_destroy(ch)                  nobody may be waiting on it (aborts if
 *                                                    a coroutine is parked on it)
 *             conc_chan_send(ch, item)               0, EPIPE, ECANCELED; copies item_size bytes
 *             conc_chan_try_send(ch, item)           0, EAGAIN, EPIPE, EPERM; never parks
 *             conc_chan_send_until(ch, item, dl)     0, EPIPE, ETIMEDOUT, ECANCELED
 *             conc_chan_recv(ch, item)               0, EPIPE (closed and drained), ECANCELED
 *             conc_chan_try_recv(ch, item)           0, EAGAIN, EPIPE, EPERM
 *             conc_chan_recv_until(ch, item, dl)     0, EPIPE, ETIMEDOUT, ECANCELED
 *             conc_chan_close(ch)                    idempotent; every waiter wakes
 *             conc_chan_is_closed(ch), conc_chan_size(ch), conc_chan_capacity(ch)
 *   select    conc_chan_select(ops, n, dl, &chosen)  one of n sends/receives, fairly chosen among
 *                                                    the ready ones: its result (0, or EPIPE if
 *                                                    its channel is closed), ETIMEDOUT, ECANCELED
 *             conc_chan_try_select(ops, n, &chosen)  ... EAGAIN when none is ready, EPERM
 *             ops[i] = {ch, CONC_CHAN_SEND or CONC_CHAN_RECV, item}; ch NULL: never ready
 *   lock      conc_coro_lock_init(l) / CONC_CORO_LOCK_INIT   asyncio.Lock, FIFO handoff
 *             conc_coro_lock_acquire(l)              0, ECANCELED, EDEADLK (the owner again)
 *             conc_coro_lock_try_acquire(l)          0, EBUSY, EPERM
 *             conc_coro_lock_acquire_until(l, dl)    0, ETIMEDOUT, ECANCELED, EDEADLK
 *             conc_coro_lock_release(l)              0, EPERM (the caller does not own it)
 *             conc_coro_lock_is_locked(l), conc_coro_lock_owner(l)   NULL: free, or its
 *                                                  owner finished without releasing it
 *   semaphore conc_coro_sem_init(s, value, max)      0, EINVAL (value > max); max 0: unbounded
 *             conc_coro_sem_acquire(s)               0, ECANCELED
 *             conc_coro_sem_try_acquire(s)           0, EAGAIN, EPERM
 *             conc_coro_sem_acquire_until(s, dl)     0, ETIMEDOUT, ECANCELED
 *             conc_coro_sem_release(s, n)            0, EOVERFLOW (past max: nothing released),
 *                                                    EINVAL (n 0, as sem.h)
 *             conc_coro_sem_value(s)
 *   event     conc_coro_event_init(e) / CONC_CORO_EVENT_INIT
 *             conc_coro_event_set(e), conc_coro_event_clear(e), conc_coro_event_is_set(e)
 *             conc_coro_event_wait(e)                0, ECANCELED
 *             conc_coro_event_wait_until(e, dl)      0, ETIMEDOUT, ECANCELED
 *   condition conc_coro_cond_init(c, lock)           0, EINVAL; lock NULL: its own (as an
 *                                                    all-zero condition has)
 *             conc_coro_cond_lock(c)                 the lock to acquire around waits/notifies
 *             conc_coro_cond_wait(c)                 0, ECANCELED, EPERM (lock not held); it
 *                                                    returns holding the lock, whatever the result
 *             conc_coro_cond_wait_until(c, dl)       0, ETIMEDOUT, ECANCELED, EPERM
 *             conc_coro_cond_notify(c, n)            0, EPERM; wakes up to n waiters, FIFO
 *             conc_coro_cond_notify_all(c)           0, EPERM
 *             conc_coro_cond_wait_for(c, pred, a, dl) until pred(a): 0, ETIMEDOUT, ECANCELED,
 *                                                    EPERM, EINVAL (pred NULL)
 *
 * ERRORS
 *   EINVAL    NULL arguments (to the calls that return an int; the void ones, lock and
 *             event init, need a valid pointer), item_size 0, capacity * item_size
 *             overflowing, a select op with an unknown direction, a semaphore release of 0
 *             units.
 *   EPERM     a call that takes or waits made outside a coroutine: send, recv, select,
 *             acquire and wait in every form, try forms included (they act for the calling
 *             coroutine; outside one, only create/init, destroy, close, sem release, event
 *             set/clear and the queries work); a lock released by a coroutine that does not
 *             own it, or from outside a coroutine; a condition waited on or notified without
 *             holding its lock.
 *   EPIPE     send on a closed channel (nothing sent); recv on a closed, drained channel.
 *   EAGAIN    try_send: full (rendezvous: no receiver waiting); try_recv: empty and open;
 *             try_select: no op ready. EBUSY: try_acquire of a held lock.
 *   ETIMEDOUT the absolute deadline passed, never before it; a past deadline tries once. A
 *             condition's deadline bounds the wait for a notify, not the re-take of its lock.
 *   ECANCELED the calling coroutine was cancelled: every call that would park returns it; a
 *             call that completes at once still completes. A handoff that came first wins: a
 *             coroutine handed a lock, an item or a unit, or notified, gets it, and ECANCELED
 *             next time. A condition wait that ends (notify, ETIMEDOUT, ECANCELED) always
 *             takes its lock back first, and a cancel cannot interrupt that (asyncio's rule).
 *   EDEADLK   conc_coro_lock_acquire by the lock's owner (it would wait for itself forever).
 *             A coroutine that finishes holding a lock leaves it locked for good (asyncio's
 *             Lock stays locked too, but has no owner: any task may release it there; here
 *             release is the owner's alone); no later coroutine is taken for its owner, even
 *             one that reuses its memory or its id in a later scheduler: acquire waits (the
 *             deadlock report says "held by a finished coroutine"), release is EPERM, and
 *             conc_coro_lock_owner is NULL, also once the owner's scheduler is destroyed.
 *   EOVERFLOW conc_coro_sem_release past a bounded semaphore's max: nothing is released.
 *   ENOMEM    conc_chan_create; conc_chan_select parking on more than four ops (their
 *             waiters come from the heap): nothing was sent or received. Any wait with a
 *             deadline whose timer could not be queued (the timer heap grows): nothing done,
 *             and a condition wait has its lock again.
 *
 * ORDERING CONTRACT
 *   Coroutines of one scheduler run one at a time, so everything a coroutine wrote before a
 *   send is seen by the receiver of that item, and everything before a release by the next
 *   owner. FIFO everywhere: items come out in send order; parked senders, receivers, lock and
 *   semaphore waiters are served in arrival order, and a released lock or unit goes to the
 *   first waiter (no barging: a coroutine arriving later waits behind it even if it runs
 *   first). The coroutine handed something runs next (coro.h's runnext), so ping-pong between
 *   two coroutines is two switches per round trip. select: when several ops are ready, each is
 *   chosen with equal probability (Go's rule); when none is, the first counterpart to arrive
 *   completes exactly one op (the others stay untouched). close: sends after it fail with
 *   EPIPE and send nothing; receivers get every item sent before it, then EPIPE; every parked
 *   sender (EPIPE, its item not sent) and receiver (EPIPE) wakes. condition: notify(n) wakes
 *   the n waiters that have waited longest and are still waiting (one whose timeout or cancel
 *   came first is skipped, so no notification is lost to it); they run in that order and
 *   queue for the lock behind anyone already queued; everything the notifier wrote while
 *   holding the lock is seen by a waiter once its wait returns.
 *
 * THREAD SAFETY
 *   None across threads: a channel, lock, semaphore or event belongs to the scheduler of the
 *   coroutines that use it, and every call runs on that scheduler's thread (debug builds
 *   check it for channels: the first coroutine to use a channel binds it to its scheduler, and
 *   a coroutine of another scheduler aborts naming the function, unless the first one has
 *   been destroyed: then the channel, idle since, passes to the new one). To cross threads use
 *   coro_bridge.h (conc_coro_mailbox_t, conc_coro_await). close and destroy may also run on
 *   the owner thread outside any coroutine, or on any thread once that scheduler is gone.
 *
 * CONFIGURATION
 *   CONC_DEBUG (base.h; on unless NDEBUG)  the channel's one-scheduler check.
 *
 * CAVEATS
 *   - Objects parked coroutines wait on must outlive the wait: destroy a channel only when
 *     nobody waits on it (every build aborts otherwise).
 *   - The items a send or select waits to hand over are read when a receiver arrives, not
 *     when send was called: keep them unchanged until the call returns (they are usually the
 *     caller's locals, so this is automatic).
 *   - A condition wait can return 0 without the awaited state (another coroutine may run
 *     first and change it): test the predicate in a loop, as with asyncio.Condition.
 *   - A condition with its own lock (init with NULL) points into itself: do not move it.
 *   - Items are copied as bytes (memcpy): in C++ send trivially copyable types, or pointers.
 *   - A coroutine in a condition wait re-taking its lock ignores cancels until the lock is
 *     its: conc_sched_destroy waits for the lock's holder to release it (a holder that never
 *     does makes destroy abort, naming the stuck coroutines).
 *
 * DESIGN
 *   Each object is plain data plus coro.h wait queues (intrusive lists of waiters living on
 *   the parked coroutines' stacks). A handoff is: pop the first waiter, conc_coro_wake it (it
 *   succeeds only if the waiter is still parked: one whose timer or cancel fired first is
 *   skipped and unlinks itself when it runs), then copy the item into, or out of, the buffer
 *   its parked call pointed at. Single-threaded, so no atomics: the wake succeeding is the
 *   whole commit. A select parks one waiter per op on the coroutine's stack (up to
 *   CONC__CHAN_SELECT_LOCAL ops, the heap beyond); the first counterpart's wake succeeds, every
 *   later one fails on "no longer parked", so exactly one op completes.
 *
 *   selecting coroutine                        counterpart (runs while it is parked)
 *   ---------------------------------------    ---------------------------------------
 *   no op ready: push one waiter per op        pop waiter w of op i            [chan.S1]
 *   park(select, deadline)                     wake(w->coro, 0) succeeds: commit [chan.S2]
 *                                              copy the item; *w->fired = i
 *   resumed: unlink every waiter (no-op for    another channel pops waiter j: wake fails
 *   the popped one); return ops[fired]         (not parked any more): skipped   [chan.S3]
 */
#ifndef CONC_CHAN_H
#define CONC_CHAN_H

#include "coro.h"

#ifdef __cplusplus
extern "C" {
#endif

/* CONC_DEBUG (base.h) may be undefined (NDEBUG): the checks below read this. */
#if defined(CONC_DEBUG) && CONC_DEBUG
#define CONC__CHAN_DEBUG 1
#else
#define CONC__CHAN_DEBUG 0
#endif

#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdangling-pointer" /* waiters on parked stacks: see coro.h */
#define CONC__CHAN_POP_DIAGNOSTIC 1
#endif

/* ---------------------------------------------------------------------------------------------
 * Types and constants
 * ------------------------------------------------------------------------------------------- */
typedef struct conc_chan conc_chan_t;

#define CONC_CHAN_SEND 1
#define CONC_CHAN_RECV 2

typedef struct conc_chan_op {
    conc_chan_t *chan; /* NULL: never ready (Go's nil channel: a case switched off) */
    int dir;           /* CONC_CHAN_SEND or CONC_CHAN_RECV */
    void *item;        /* send: the item to copy in; recv: where the item goes */
} conc_chan_op_t;

typedef struct conc_coro_lock {
    conc_coro_t *owner;
    conc_coro_waitq_t waiters;
    /* Who `owner` was: coroutine structs are pooled, so a coroutine that finishes holding the
     * lock leaves `owner` pointing at a slot the next spawn reuses (its id tells them apart),
     * and a destroyed scheduler's slots are unmapped, or reused by a later scheduler whose ids
     * start at 1 again (its serial tells them apart, and says whether owner may be read). */
    uint64_t owner_id, owner_serial;
} conc_coro_lock_t;

typedef struct conc_coro_sem {
    unsigned value;
    unsigned max; /* 0: unbounded */
    conc_coro_waitq_t waiters;
} conc_coro_sem_t;

typedef struct conc_coro_event {
    int set;
    conc_coro_waitq_t waiters;
} conc_coro_event_t;

typedef struct conc_coro_cond {
    conc_coro_lock_t *lock; /* the caller's, or own */
    conc_coro_lock_t own;
    conc_coro_waitq_t waiters;
} conc_coro_cond_t;

// clang-format off
#define CONC_CORO_LOCK_INIT {NULL, CONC_CORO_WAITQ_INIT, 0, 0}
#define CONC_CORO_EVENT_INIT {0, CONC_CORO_WAITQ_INIT}
// clang-format on

/* Select ops whose waiters live on the caller's stack; more come from the heap. Four covers
 * the usual "data, quit, timer channel" selects without a malloc (a waiter is 56 bytes). */
#define CONC__CHAN_SELECT_LOCAL 4u
/* Marks a select's `fired` slot while no op completed. */
#define CONC__CHAN_NONE SIZE_MAX

/* One parked send, receive or select op: its coro.h waiter and what to hand over. */
typedef struct conc__chan_wait {
    conc_coro_waiter_t w; /* w.data points back here */
    void *item;           /* send: source; recv: destination */
    size_t index;         /* the op's index in a select (0 for send/recv) */
    size_t *fired;        /* written with index when this op completes */
    int *status;          /* written with the op's result (0 or EPIPE) */
} conc__chan_wait;

struct conc_chan {
    size_t item_size, capacity;
    size_t head, count; /* ring of capacity slots in buf */
    int closed;
    uint64_t sched_serial; /* bound by the first coroutine that uses it (the debug check) */
    conc_coro_waitq_t senders, receivers;
    unsigned char *buf;
};

CONC_STATIC_ASSERT(CONC_CHAN_SEND != CONC_CHAN_RECV, "directions differ");

/* ---------------------------------------------------------------------------------------------
 * Shared helpers
 * ------------------------------------------------------------------------------------------- */
/* Pops waiters until one is still parked, wakes it with status and returns it; NULL if none.
 * [chan.S1]/[chan.S2]: the wake succeeding is the commit; a waiter whose timer or cancel came
 * first (runnable, still linked) is dropped from the queue and will find itself unlinked. */
CONC_INLINE conc__chan_wait *conc__chan_pop_live(conc_coro_waitq_t *q, int status) {
    conc_coro_waiter_t *w;
    while ((w = conc_coro_waitq_pop(q)) != NULL) {
        if (conc_coro_wake(w->coro, status)) {
            conc__chan_wait *cw = (conc__chan_wait *)w->data;
            if (cw) {
                *cw->fired = cw->index;
                *cw->status = status;
            }
            return cw;
        }
    }
    return NULL;
}

/* A waiter that a handoff would find: the first still-parked one (stale ones stay linked). */
CONC_INLINE bool conc__chan_has_live(const conc_coro_waitq_t *q) {
    for (const conc_coro_waiter_t *w = q->head; w; w = w->next)
        if (conc_coro_is_parked(w->coro))
            return true;
    return false;
}

/* The caller's coroutine, or EPERM. */
CONC_INLINE int conc__chan_self(conc_coro_t **co) {
    *co = conc_coro_self();
    return *co ? 0 : EPERM;
}

/* The checks every call on a coroutine lock, semaphore, event or condition starts with: 0 with
 * the caller's coroutine, EINVAL for no object, EPERM outside a coroutine (in that order). */
CONC_INLINE int conc__chan_caller(const void *obj, conc_coro_t **co) {
    if (!obj)
        return EINVAL;
    if (conc__chan_self(co) != 0)
        return EPERM;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Channels
 * ------------------------------------------------------------------------------------------- */
CONC_NODISCARD static inline int conc_chan_create(conc_chan_t **out, size_t capacity,
                                                  size_t item_size) {
    if (!out)
        return EINVAL;
    *out = NULL;
    if (item_size == 0 || (capacity && item_size > (SIZE_MAX - sizeof(conc_chan_t)) / capacity))
        return EINVAL;
    conc_chan_t *ch = (conc_chan_t *)conc_calloc_keep_errno(1, sizeof *ch + capacity * item_size);
    if (!ch)
        return ENOMEM;
    ch->item_size = item_size;
    ch->capacity = capacity;
    ch->buf = (unsigned char *)(ch + 1);
    *out = ch;
    return 0;
}

/* Unlinks the waiters of q whose wait is over: a select that completed on another channel
 * leaves its waiter here until its coroutine runs and removes it (a no-op once unlinked).
 * False if a coroutine still waits (is parked) on q. */
CONC_INLINE bool conc__chan_drop_finished_waiters(conc_coro_waitq_t *q) {
    conc_coro_waiter_t *w = q->head, *next;
    for (; w; w = next) {
        next = w->next;
        if (conc_coro_is_parked(w->coro))
            return false;
        conc_coro_waitq_remove(q, w);
    }
    return true;
}

static inline void conc_chan_destroy(conc_chan_t *ch) {
    if (!ch)
        return;
    if (!conc__chan_drop_finished_waiters(&ch->senders) ||
        !conc__chan_drop_finished_waiters(&ch->receivers))
        CONC_ABORT("conc_chan_destroy: coroutines still wait on the channel");
    free(ch);
}

CONC_COLD void conc__chan_foreign_slow(const char *fn) {
    fprintf(stderr,
            "conc: %s: the channel belongs to another scheduler (a channel is used by "
            "the coroutines of one scheduler only)\n",
            fn);
    CONC_ABORT("conc_chan: channel used from another scheduler");
}

/* A coroutine of another scheduler than the one the channel is bound to: fine once that one
 * is gone (the channel, idle since its destroy, moves to this one), else an abort. */
CONC_COLD void conc__chan_rebind_slow(conc_chan_t *ch, uint64_t serial, const char *fn) {
    if (ch->sched_serial && conc_sched_lookup(ch->sched_serial) != CONC_SCHED_GONE)
        conc__chan_foreign_slow(fn);
    ch->sched_serial = serial;
}

/* The owner check: binds the channel to the first scheduler that uses it, by serial (the
 * scheduler may be destroyed before the channel: no pointer into it is kept). */
CONC_INLINE void conc__chan_check(conc_chan_t *ch, conc_coro_t *co, const char *fn) {
#if CONC__CHAN_DEBUG
    uint64_t serial = conc_sched_serial(conc_coro_sched(co));
    if (CONC_UNLIKELY(ch->sched_serial != serial))
        conc__chan_rebind_slow(ch, serial, fn);
#else
    CONC_UNUSED(ch);
    CONC_UNUSED(co);
    CONC_UNUSED(fn);
#endif
}

CONC_INLINE unsigned char *conc__chan_slot(conc_chan_t *ch, size_t i) {
    size_t at = ch->head + i;
    if (at >= ch->capacity)
        at -= ch->capacity;
    return ch->buf + at * ch->item_size;
}

/* Send without parking: 0, EAGAIN, EPIPE. */
CONC_INLINE int conc__chan_send_now(conc_chan_t *ch, const void *item) {
    if (CONC_UNLIKELY(ch->closed))
        return EPIPE;
    conc__chan_wait *r = conc__chan_pop_live(&ch->receivers, 0);
    if (r) { /* receivers wait only while the buffer is empty: straight into theirs */
        memcpy(r->item, item, ch->item_size);
        return 0;
    }
    if (ch->count < ch->capacity) {
        memcpy(conc__chan_slot(ch, ch->count), item, ch->item_size);
        ch->count++;
        return 0;
    }
    return EAGAIN;
}

/* Receive without parking: 0, EAGAIN, EPIPE. */
CONC_INLINE int conc__chan_recv_now(conc_chan_t *ch, void *item) {
    if (ch->count) {
        memcpy(item, conc__chan_slot(ch, 0), ch->item_size);
        ch->head = ch->head + 1 == ch->capacity ? 0 : ch->head + 1;
        ch->count--;
        conc__chan_wait *s = conc__chan_pop_live(&ch->senders, 0);
        if (s) { /* a sender waited for this slot: its item joins the tail */
            memcpy(conc__chan_slot(ch, ch->count), s->item, ch->item_size);
            ch->count++;
        }
        return 0;
    }
    conc__chan_wait *s = conc__chan_pop_live(&ch->senders, 0);
    if (s) { /* rendezvous */
        memcpy(item, s->item, ch->item_size);
        return 0;
    }
    return ch->closed ? EPIPE : EAGAIN;
}

CONC_COLD void conc__chan_describe_slow(const conc_coro_wait_t *w, char *buf, size_t size) {
    const conc_chan_t *ch = (const conc_chan_t *)w->object;
    snprintf(buf, size, "channel %p %s (capacity %zu, %zu items%s)", w->object,
             w->detail == CONC_CHAN_SEND ? "send" : "recv", ch->capacity, ch->count,
             ch->closed ? ", closed" : "");
}

/* Parks the caller on one channel op until a counterpart completes it. */
CONC_NOINLINE int conc__chan_park_slow(conc_chan_t *ch, int dir, void *item, int64_t deadline) {
    size_t fired = CONC__CHAN_NONE;
    int status = 0;
    conc__chan_wait me;
    memset(&me, 0, sizeof me);
    me.w.coro = conc_coro_self();
    me.w.data = &me;
    me.item = item;
    me.fired = &fired;
    me.status = &status;
    if (conc_coro_is_cancelled(me.w.coro))
        return ECANCELED;
    const conc_coro_wait_t wait =
        conc_coro_wait_make(dir == CONC_CHAN_SEND ? "channel send" : "channel recv", ch,
                            (long)(dir), conc__chan_describe_slow);
    conc_coro_waitq_t *q = dir == CONC_CHAN_SEND ? &ch->senders : &ch->receivers;
    conc_coro_waitq_push(q, &me.w);
    int e = conc_coro_park(&wait, deadline);
    conc_coro_waitq_remove(q, &me.w);
    return fired != CONC__CHAN_NONE ? status : e;
}

/* Every send and receive: the checks, the op if it can complete now, else (park) a park. dir
 * and park are constants at each call, so each public call inlines only its own path. */
CONC_INLINE int conc__chan_call(conc_chan_t *ch, int dir, void *item, bool park, int64_t deadline,
                                const char *fn) {
    conc_coro_t *co;
    if (CONC_UNLIKELY(!ch || !item))
        return EINVAL;
    if (CONC_UNLIKELY(conc__chan_self(&co) != 0))
        return EPERM;
    conc__chan_check(ch, co, fn);
    int e = dir == CONC_CHAN_SEND ? conc__chan_send_now(ch, item) : conc__chan_recv_now(ch, item);
    if (CONC_LIKELY(e != EAGAIN) || !park)
        return e;
    return conc__chan_park_slow(ch, dir, item, deadline);
}

/* A send's item is only read: the const goes away here, once, for the shared path. */
#define CONC__CHAN_SEND_ITEM(item) ((void *)(uintptr_t)(item))

CONC_NODISCARD static inline int conc_chan_send_until(conc_chan_t *ch, const void *item,
                                                      int64_t deadline) {
    return conc__chan_call(ch, CONC_CHAN_SEND, CONC__CHAN_SEND_ITEM(item), true, deadline,
                           "conc_chan_send");
}

CONC_NODISCARD static inline int conc_chan_send(conc_chan_t *ch, const void *item) {
    return conc_chan_send_until(ch, item, CONC_FOREVER);
}

CONC_NODISCARD static inline int conc_chan_try_send(conc_chan_t *ch, const void *item) {
    return conc__chan_call(ch, CONC_CHAN_SEND, CONC__CHAN_SEND_ITEM(item), false, CONC_FOREVER,
                           "conc_chan_try_send");
}

CONC_NODISCARD static inline int conc_chan_recv_until(conc_chan_t *ch, void *item,
                                                      int64_t deadline) {
    return conc__chan_call(ch, CONC_CHAN_RECV, item, true, deadline, "conc_chan_recv");
}

CONC_NODISCARD static inline int conc_chan_recv(conc_chan_t *ch, void *item) {
    return conc_chan_recv_until(ch, item, CONC_FOREVER);
}

CONC_NODISCARD static inline int conc_chan_try_recv(conc_chan_t *ch, void *item) {
    return conc__chan_call(ch, CONC_CHAN_RECV, item, false, CONC_FOREVER, "conc_chan_try_recv");
}

static inline void conc_chan_close(conc_chan_t *ch) {
    if (!ch || ch->closed)
        return;
    conc_coro_t *co = conc_coro_self();
    if (co)
        conc__chan_check(ch, co, "conc_chan_close");
    else if (CONC__CHAN_DEBUG && ch->sched_serial &&
             conc_sched_lookup(ch->sched_serial) == CONC_SCHED_THEIRS)
        conc__chan_foreign_slow("conc_chan_close");
    ch->closed = 1;
    /* Receivers wait only on an empty buffer: nothing left for them. Senders' items were
     * never taken. Both wake in FIFO order with EPIPE. */
    while (conc__chan_pop_live(&ch->receivers, EPIPE))
        ;
    while (conc__chan_pop_live(&ch->senders, EPIPE))
        ;
}

static inline bool conc_chan_is_closed(const conc_chan_t *ch) {
    return ch && ch->closed;
}

static inline size_t conc_chan_size(const conc_chan_t *ch) {
    return ch ? ch->count : 0;
}

static inline size_t conc_chan_capacity(const conc_chan_t *ch) {
    return ch ? ch->capacity : 0;
}

/* ---------------------------------------------------------------------------------------------
 * Select
 * ------------------------------------------------------------------------------------------- */
/* The select's random state: one per thread (schedulers never share one), and one for the
 * whole program, as coro.h's current scheduler is (weak: every translation unit that includes
 * this header defines it, the linker keeps one; a `static` one would give each file its own
 * stream). 0: not seeded yet. */
extern __thread uint64_t conc__chan_select_random_state CONC__ABI(conc__chan_select_random_state);
CONC__ONE_PER_PROGRAM __thread uint64_t conc__chan_select_random_state = 0;

/* xorshift64*: the select's fair pick. */
CONC_INLINE uint64_t conc__chan_random(void) {
    uint64_t x = conc__chan_select_random_state;
    if (CONC_UNLIKELY(x == 0)) { /* the thread's first pick: its state's address, the time */
        x = (uint64_t)(uintptr_t)&conc__chan_select_random_state ^ (uint64_t)conc_now();
        x = (x ^ 0x9e3779b97f4a7c15ull) | 1u; /* never 0: xorshift would stay there */
    }
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    conc__chan_select_random_state = x;
    return x * 0x2545f4914f6cdd1dull;
}

CONC_INLINE bool conc__chan_op_ready(const conc_chan_op_t *op) {
    const conc_chan_t *ch = op->chan;
    if (!ch)
        return false;
    if (op->dir == CONC_CHAN_SEND)
        return ch->closed || ch->count < ch->capacity || conc__chan_has_live(&ch->receivers);
    return ch->count || ch->closed || conc__chan_has_live(&ch->senders);
}

CONC_COLD void conc__chan_describe_select_slow(const conc_coro_wait_t *w, char *buf, size_t size) {
    const conc_chan_op_t *ops = (const conc_chan_op_t *)w->object;
    size_t n = (size_t)w->detail, at = 0, live = 0;
    at += (size_t)snprintf(buf, size, "select over %zu channel ops:", n);
    for (size_t i = 0; i < n && at < size; i++)
        if (ops[i].chan) {
            live++;
            at += (size_t)snprintf(buf + at, size - at, " %s %p",
                                   ops[i].dir == CONC_CHAN_SEND ? "send" : "recv",
                                   (void *)ops[i].chan);
        }
    if (live == 0 && at < size) /* every op switched off (NULL channels): it can never end */
        snprintf(buf + at, size - at, " none of them on a channel");
}

/* Validates ops and performs one ready op chosen uniformly (reservoir sampling over the ready
 * ones): its result, or EAGAIN if none is ready. */
CONC_INLINE int conc__chan_select_now(conc_chan_op_t *ops, size_t n, conc_coro_t *co,
                                      size_t *chosen) {
    size_t pick = CONC__CHAN_NONE, ready = 0;
    for (size_t i = 0; i < n; i++) {
        if (ops[i].dir != CONC_CHAN_SEND && ops[i].dir != CONC_CHAN_RECV)
            return EINVAL;
        if (ops[i].chan && !ops[i].item)
            return EINVAL;
        if (ops[i].chan)
            conc__chan_check(ops[i].chan, co, "conc_chan_select");
        if (conc__chan_op_ready(&ops[i]) && conc__chan_random() % ++ready == 0)
            pick = i;
    }
    if (pick == CONC__CHAN_NONE)
        return EAGAIN;
    *chosen = pick;
    conc_chan_op_t *op = &ops[pick];
    return op->dir == CONC_CHAN_SEND ? conc__chan_send_now(op->chan, op->item)
                                     : conc__chan_recv_now(op->chan, op->item);
}

CONC_NOINLINE int conc__chan_select_park_slow(conc_chan_op_t *ops, size_t n, conc_coro_t *co,
                                              int64_t deadline, size_t *chosen) {
    conc__chan_wait local[CONC__CHAN_SELECT_LOCAL];
    conc__chan_wait *ws =
        (conc__chan_wait *)conc__base_scratch(local, CONC__CHAN_SELECT_LOCAL, n, sizeof *ws);
    if (!ws)
        return ENOMEM;
    size_t fired = CONC__CHAN_NONE;
    int status = 0, e;
    if (conc_coro_is_cancelled(co)) {
        e = ECANCELED;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        memset(&ws[i], 0, sizeof ws[i]);
        ws[i].w.coro = co;
        ws[i].w.data = &ws[i];
        ws[i].item = ops[i].item;
        ws[i].index = i;
        ws[i].fired = &fired;
        ws[i].status = &status;
        if (ops[i].chan)
            conc_coro_waitq_push(ops[i].dir == CONC_CHAN_SEND ? &ops[i].chan->senders
                                                              : &ops[i].chan->receivers,
                                 &ws[i].w);
    }
    { /* a block: C++ forbids the goto above to jump over an initialisation */
        const conc_coro_wait_t wait =
            conc_coro_wait_make("channel select", ops, (long)n, conc__chan_describe_select_slow);
        e = conc_coro_park(&wait, deadline);
    }
    for (size_t i = 0; i < n; i++) /* [chan.S3]: the popped one is already unlinked */
        if (ops[i].chan)
            conc_coro_waitq_remove(ops[i].dir == CONC_CHAN_SEND ? &ops[i].chan->senders
                                                                : &ops[i].chan->receivers,
                                   &ws[i].w);
    if (fired != CONC__CHAN_NONE) {
        *chosen = fired;
        e = status;
    }
out:
    conc__base_scratch_free(ws, local);
    return e;
}

/* select and try_select: the checks, a ready op if any, else (park) a park. */
CONC_INLINE int conc__chan_select_call(conc_chan_op_t *ops, size_t n, bool park, int64_t deadline,
                                       size_t *chosen) {
    conc_coro_t *co;
    if (!chosen)
        return EINVAL;
    *chosen = CONC__CHAN_NONE;
    if (!ops && n)
        return EINVAL;
    if (conc__chan_self(&co) != 0)
        return EPERM;
    int e = conc__chan_select_now(ops, n, co, chosen);
    if (e != EAGAIN || !park)
        return e;
    return conc__chan_select_park_slow(ops, n, co, deadline, chosen);
}

CONC_NODISCARD static inline int conc_chan_select(conc_chan_op_t *ops, size_t n, int64_t deadline,
                                                  size_t *chosen) {
    return conc__chan_select_call(ops, n, true, deadline, chosen);
}

CONC_NODISCARD static inline int conc_chan_try_select(conc_chan_op_t *ops, size_t n,
                                                      size_t *chosen) {
    return conc__chan_select_call(ops, n, false, CONC_FOREVER, chosen);
}

/* ---------------------------------------------------------------------------------------------
 * Lock (asyncio.Lock): FIFO handoff, no barging
 * ------------------------------------------------------------------------------------------- */
static inline void conc_coro_lock_init(conc_coro_lock_t *l) {
    l->owner = NULL;
    l->waiters.head = l->waiters.tail = NULL;
    l->owner_id = l->owner_serial = 0;
}

CONC_INLINE void conc__chan_lock_set_owner(conc_coro_lock_t *l, conc_coro_t *co) {
    l->owner = co;
    l->owner_id = conc_coro_id(co);
    l->owner_serial = conc_sched_serial(conc_coro_sched(co));
}

/* Whether co, a live coroutine (the caller, or one just woken), owns l: the same slot, the
 * same coroutine of its scheduler (ids are never reused in a scheduler; a slot is, once its
 * coroutine finished) and the same scheduler (ids are reused across schedulers, and so are
 * addresses). Only co is read, never the owner: it may be gone with its scheduler. */
CONC_INLINE bool conc__chan_lock_held_by(const conc_coro_lock_t *l, const conc_coro_t *co) {
    return l->owner == co && co != NULL && l->owner_id == conc_coro_id(co) &&
           l->owner_serial == conc_sched_serial(conc_coro_sched(co));
}

/* l's owner if it still runs or waits, else NULL (free, or its owner finished, with its
 * scheduler maybe). */
CONC_INLINE conc_coro_t *conc__chan_lock_live_owner(const conc_coro_lock_t *l) {
    return l->owner ? conc_coro_find(l->owner, l->owner_serial, l->owner_id) : NULL;
}

CONC_COLD void conc__chan_lock_describe_slow(const conc_coro_wait_t *w, char *buf, size_t size) {
    const conc_coro_lock_t *l = (const conc_coro_lock_t *)w->object;
    conc_coro_t *owner = conc__chan_lock_live_owner(l);
    if (owner)
        snprintf(buf, size, "lock %p held by coro \"%s\" (#%llu)", w->object, conc_coro_name(owner),
                 (unsigned long long)conc_coro_id(owner));
    else if (l->owner)
        snprintf(buf, size, "lock %p held by a finished coroutine (#%llu) that never released it",
                 w->object, (unsigned long long)l->owner_id);
    else
        snprintf(buf, size, "lock %p (being handed over)", w->object);
}

CONC_NODISCARD static inline int conc_coro_lock_try_acquire(conc_coro_lock_t *l) {
    conc_coro_t *co;
    int e = conc__chan_caller(l, &co);
    if (e)
        return e;
    if (l->owner)
        return EBUSY;
    conc__chan_lock_set_owner(l, co);
    return 0;
}

CONC_NODISCARD static inline int conc_coro_lock_acquire_until(conc_coro_lock_t *l,
                                                              int64_t deadline) {
    conc_coro_t *co;
    int e = conc__chan_caller(l, &co);
    if (e)
        return e;
    if (CONC_LIKELY(!l->owner)) { /* free means nobody waits: release hands it to the first */
        conc__chan_lock_set_owner(l, co);
        return 0;
    }
    if (conc__chan_lock_held_by(l, co))
        return EDEADLK;
    const conc_coro_wait_t wait = conc_coro_wait_make("lock", l, 0, conc__chan_lock_describe_slow);
    /* status 0: release made us the owner (it sets owner before waking us) */
    return conc_coro_waitq_wait(&l->waiters, &wait, deadline);
}

CONC_NODISCARD static inline int conc_coro_lock_acquire(conc_coro_lock_t *l) {
    return conc_coro_lock_acquire_until(l, CONC_FOREVER);
}

static inline int conc_coro_lock_release(conc_coro_lock_t *l) {
    if (!l)
        return EINVAL;
    conc_coro_t *co = conc_coro_self();
    if (!conc__chan_lock_held_by(l, co))
        return EPERM;
    /* Hand it to the first waiter still parked: it owns the lock before it runs, so a
     * coroutine that runs in between finds it held (no barging). */
    conc_coro_waiter_t *w;
    while ((w = conc_coro_waitq_pop(&l->waiters)) != NULL) {
        if (conc_coro_wake(w->coro, 0)) {
            conc__chan_lock_set_owner(l, w->coro);
            return 0;
        }
    }
    l->owner = NULL;
    return 0;
}

static inline bool conc_coro_lock_is_locked(const conc_coro_lock_t *l) {
    return l && l->owner;
}

static inline conc_coro_t *conc_coro_lock_owner(const conc_coro_lock_t *l) {
    return l ? conc__chan_lock_live_owner(l) : NULL;
}

/* ---------------------------------------------------------------------------------------------
 * Semaphore (asyncio.Semaphore / BoundedSemaphore): FIFO handoff
 * ------------------------------------------------------------------------------------------- */
static inline int conc_coro_sem_init(conc_coro_sem_t *s, unsigned value, unsigned max) {
    if (!s || (max && value > max))
        return EINVAL;
    s->value = value;
    s->max = max;
    s->waiters.head = s->waiters.tail = NULL;
    return 0;
}

CONC_COLD void conc__chan_sem_describe_slow(const conc_coro_wait_t *w, char *buf, size_t size) {
    const conc_coro_sem_t *s = (const conc_coro_sem_t *)w->object;
    if (s->max)
        snprintf(buf, size, "semaphore %p (value %u of max %u)", w->object, s->value, s->max);
    else
        snprintf(buf, size, "semaphore %p (value %u)", w->object, s->value);
}

CONC_NODISCARD static inline int conc_coro_sem_try_acquire(conc_coro_sem_t *s) {
    conc_coro_t *co;
    int e = conc__chan_caller(s, &co);
    if (e)
        return e;
    if (!s->value)
        return EAGAIN;
    s->value--;
    return 0;
}

CONC_NODISCARD static inline int conc_coro_sem_acquire_until(conc_coro_sem_t *s, int64_t deadline) {
    conc_coro_t *co;
    int e = conc__chan_caller(s, &co);
    if (e)
        return e;
    if (s->value) { /* a value above 0 means nobody waits (release hands units over first) */
        s->value--;
        return 0;
    }
    const conc_coro_wait_t wait =
        conc_coro_wait_make("semaphore", s, 0, conc__chan_sem_describe_slow);
    return conc_coro_waitq_wait(&s->waiters, &wait, deadline); /* 0: a unit was handed over */
}

CONC_NODISCARD static inline int conc_coro_sem_acquire(conc_coro_sem_t *s) {
    return conc_coro_sem_acquire_until(s, CONC_FOREVER);
}

/* Releases n units: each goes to the first parked waiter, the rest raise the value. Bounded:
 * if the units left after the parked waiters would take the value past max, EOVERFLOW and
 * nothing changes. Owner thread; from a coroutine or outside one. */
CONC_NODISCARD static inline int conc_coro_sem_release(conc_coro_sem_t *s, unsigned n) {
    if (!s || n == 0) /* as sem.h (Python's Semaphore.release(0) raises ValueError) */
        return EINVAL;
    if (s->max) {
        unsigned parked = 0;
        for (const conc_coro_waiter_t *w = s->waiters.head; w && parked < n; w = w->next)
            parked += conc_coro_is_parked(w->coro);
        if ((unsigned long long)s->value + (n - parked) > s->max)
            return EOVERFLOW;
    } else if (n > UINT_MAX - s->value) {
        return EOVERFLOW;
    }
    s->value += n - (unsigned)conc_coro_waitq_wake_n(&s->waiters, n, 0);
    return 0;
}

static inline unsigned conc_coro_sem_value(const conc_coro_sem_t *s) {
    return s ? s->value : 0;
}

/* ---------------------------------------------------------------------------------------------
 * Event (asyncio.Event)
 * ------------------------------------------------------------------------------------------- */
static inline void conc_coro_event_init(conc_coro_event_t *e) {
    e->set = 0;
    e->waiters.head = e->waiters.tail = NULL;
}

static inline void conc_coro_event_set(conc_coro_event_t *e) {
    if (!e || e->set)
        return;
    e->set = 1;
    conc_coro_waitq_wake_all(&e->waiters, 0);
}

static inline void conc_coro_event_clear(conc_coro_event_t *e) {
    if (e)
        e->set = 0;
}

static inline bool conc_coro_event_is_set(const conc_coro_event_t *e) {
    return e && e->set;
}

CONC_NODISCARD static inline int conc_coro_event_wait_until(conc_coro_event_t *e,
                                                            int64_t deadline) {
    conc_coro_t *co;
    int r = conc__chan_caller(e, &co);
    if (r || e->set) /* a set event: r is 0, nothing to wait for */
        return r;
    const conc_coro_wait_t wait = conc_coro_wait_make("event", e, 0, NULL);
    /* 0: set woke us (a clear right after does not take it back, as in asyncio) */
    return conc_coro_waitq_wait(&e->waiters, &wait, deadline);
}

CONC_NODISCARD static inline int conc_coro_event_wait(conc_coro_event_t *e) {
    return conc_coro_event_wait_until(e, CONC_FOREVER);
}

/* ---------------------------------------------------------------------------------------------
 * Condition (asyncio.Condition): wait releases the lock, parks, and takes the lock again
 * before it returns, whatever ended the wait.
 *
 *   waiter (holds the lock)                    notifier (holds the lock, runs later)
 *   ---------------------------------------    ---------------------------------------
 *   cancelled, or deadline past? return it,    change the state the waiter tests
 *     the lock still held           [cond.C1]  notify(n): wake the first n waiters
 *   release: the first lock waiter owns it       still parked, FIFO          [cond.C3]
 *   park on the condition (cancellable,        ... release: the lock goes to the first
 *     deadline)                     [cond.C2]    lock waiter (no barging)
 *   woken (notify, timeout or cancel: the
 *     first wins); unlink
 *   re-take the lock: free? take it; else
 *     park in the lock's FIFO, immune to a
 *     cancel (it stays pending) [cond.C4]
 *   return the park's status
 *   A notify never wakes a waiter whose timeout or cancel came first (it is no longer
 *   parked, [cond.C3] skips it), so no notification is lost to a waiter that is leaving. A
 *   waiter notified first returns 0 even if a cancel comes while it re-takes the lock: the
 *   cancel stays pending and its next blocking call returns ECANCELED (the module's rule:
 *   a handoff that came first wins).
 * ------------------------------------------------------------------------------------------- */
static inline int conc_coro_cond_init(conc_coro_cond_t *c, conc_coro_lock_t *lock) {
    if (!c)
        return EINVAL;
    conc_coro_lock_init(&c->own);
    c->lock = lock ? lock : &c->own;
    c->waiters.head = c->waiters.tail = NULL;
    return 0;
}

/* c's lock; an all-zero condition (never initialised) gets its own here. Plain writes: a
 * condition is used by the coroutines of one scheduler, one at a time. */
CONC_INLINE conc_coro_lock_t *conc__chan_cond_lock_of(conc_coro_cond_t *c) {
    if (CONC_UNLIKELY(!c->lock))
        c->lock = &c->own;
    return c->lock;
}

static inline conc_coro_lock_t *conc_coro_cond_lock(conc_coro_cond_t *c) {
    return c ? conc__chan_cond_lock_of(c) : NULL;
}

CONC_COLD void conc__chan_cond_describe_slow(const conc_coro_wait_t *w, char *buf, size_t size) {
    const conc_coro_cond_t *c = (const conc_coro_cond_t *)w->object;
    snprintf(buf, size, "condition %p (lock %p)", w->object, (void *)c->lock);
}

/* The caller's coroutine if it owns c's lock: 0, EINVAL, EPERM. */
CONC_INLINE int conc__chan_cond_owner(conc_coro_cond_t *c, conc_coro_t **co) {
    int e = conc__chan_caller(c, co);
    if (e)
        return e;
    if (!conc__chan_lock_held_by(conc__chan_cond_lock_of(c), *co))
        return EPERM;
    return 0;
}

/* [cond.C4] Takes l back for co: at once if free, else in the lock's FIFO, uncancellably. */
CONC_INLINE void conc__chan_cond_relock(conc_coro_lock_t *l, conc_coro_t *co) {
    if (!l->owner) {
        conc__chan_lock_set_owner(l, co);
        return;
    }
    const conc_coro_wait_t wait = conc_coro_wait_make("lock", l, 0, conc__chan_lock_describe_slow);
    /* Only a release wakes a lock waiter (status 0, owner set); nothing else can end it. */
    if (conc_coro_waitq_wait_uncancellable(&l->waiters, &wait) != 0 ||
        !conc__chan_lock_held_by(l, co))
        CONC_ABORT("conc_coro_cond_wait: re-taking the lock failed");
}

CONC_NODISCARD static inline int conc_coro_cond_wait_until(conc_coro_cond_t *c, int64_t deadline) {
    conc_coro_t *co;
    int e = conc__chan_cond_owner(c, &co);
    if (e)
        return e;
    if (conc_coro_is_cancelled(co)) /* [cond.C1] */
        return ECANCELED;
    if (deadline != CONC_FOREVER && deadline <= conc_now())
        return ETIMEDOUT;
    const conc_coro_wait_t wait =
        conc_coro_wait_make("condition", c, 0, conc__chan_cond_describe_slow);
    (void)conc_coro_lock_release(c->lock); /* owned: 0; a lock waiter runs once we park */
    e = conc_coro_waitq_wait(&c->waiters, &wait, deadline); /* [cond.C2] */
    conc__chan_cond_relock(c->lock, co);
    return e;
}

CONC_NODISCARD static inline int conc_coro_cond_wait(conc_coro_cond_t *c) {
    return conc_coro_cond_wait_until(c, CONC_FOREVER);
}

/* [cond.C3] Wakes up to n waiters (FIFO); the caller must hold the lock. */
static inline int conc_coro_cond_notify(conc_coro_cond_t *c, size_t n) {
    conc_coro_t *co;
    int e = conc__chan_cond_owner(c, &co);
    if (e)
        return e;
    (void)conc_coro_waitq_wake_n(&c->waiters, n, 0);
    return 0;
}

static inline int conc_coro_cond_notify_all(conc_coro_cond_t *c) {
    return conc_coro_cond_notify(c, SIZE_MAX);
}

/* asyncio's wait_for(predicate): waits until pred(arg) holds, tested under the lock before
 * each wait and after it; 0 (it holds), ETIMEDOUT (still false at the deadline), ECANCELED,
 * EPERM. The lock is held on return, as for every wait. */
CONC_NODISCARD static inline int
conc_coro_cond_wait_for(conc_coro_cond_t *c, bool (*pred)(void *arg), void *arg, int64_t deadline) {
    conc_coro_t *co;
    int e = conc__chan_cond_owner(c, &co);
    if (e || !pred)
        return e ? e : EINVAL;
    while (!pred(arg)) {
        e = conc_coro_cond_wait_until(c, deadline);
        if (e == ETIMEDOUT && pred(arg))
            return 0; /* it came true as the deadline passed: asyncio returns it too */
        if (e)
            return e;
    }
    return 0;
}

#if defined(CONC__CHAN_POP_DIAGNOSTIC)
#pragma GCC diagnostic pop
#endif

#ifdef __cplusplus
}
#endif
#endif /* CONC_CHAN_H */
