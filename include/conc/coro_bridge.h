/* conc/coro_bridge.h - coroutines meet threads: await futures, mailboxes from any thread -
 * conc v0.1.0
 * SPDX-License-Identifier: MIT
 *
 * A coroutine waits for a thread-pool or fork-pool future, or for items other threads push,
 * without blocking its scheduler's thread (asyncio's wrap_future / run_in_executor and
 * call_soon_threadsafe + a queue). Its own header so that coro.h needs only base.h: this one
 * joins coro.h to future.h and queue.h, and only programs that use both pay for both.
 *
 * CONTENTS
 *   quick start - API - errors - ordering contract - thread safety - configuration - caveats -
 *   design (the one cross-thread sleep/wake protocol, with its timeline); code: await,
 *   mailboxes
 *
 * QUICK START (examples/19_choosing_a_model.c awaits an executor's futures)
 *     static int handler(void *f) {                          // a coroutine
 *         int e = conc_coro_await((conc_future_t *)f, conc_deadline_in(CONC_SEC));
 *         if (e == 0) printf("%p\n", conc_future_result((conc_future_t *)f));
 *         return e;                                          // other coroutines ran meanwhile
 *     }
 *     conc_future_t *f; int status = -1;                     // completed by any thread:
 *     if (conc_future_create(&f) != 0) return;               // an executor, a fork pool, you
 *     if (conc_future_complete(f, 0, (void *)0x49) != 0) puts("already done");
 *     if (conc_run(handler, f, &status) != 0 || status != 0) puts("failed");
 *     conc_future_release(f);
 *
 * API
 *   await     conc_coro_await(f, deadline)          f's outcome (0, its status, ECANCELED if
 *                                                   the future was cancelled), ETIMEDOUT,
 *                                                   ECANCELED (the coroutine was), ENOMEM, EPERM;
 *                                                   the caller's reference to f must last
 *                                                   until the await returns
 *   mailbox   conc_coro_mailbox_create(&mb, s, q)   a scheduler's end of conc_queue_t q (the
 *                                                   caller's; s NULL: the current scheduler)
 *             conc_coro_mailbox_destroy(mb)         owner thread; q stays the caller's; no
 *                                                   coroutine may be parked in a receive on
 *                                                   it unless it is closed (every build
 *                                                   aborts; closed: they wake with EPIPE)
 *             conc_coro_mailbox_send(mb, item)      ANY thread: push (the thread blocks while
 *                                                   full) and wake a parked receiver; 0, EPIPE
 *             conc_coro_mailbox_try_send(mb, item)  any thread: 0, EAGAIN (full, or the
 *                                                   tail slot's consumer is still copying out),
 *                                                   EPIPE; never waits
 *             conc_coro_mailbox_send_until(mb, item, dl)  any thread: 0, ETIMEDOUT, EPIPE
 *             conc_coro_mailbox_notify(mb)          any thread, after a plain conc_queue_push
 *                                                   (or batch push) to q: wakes a receiver
 *             conc_coro_mailbox_close(mb)           any thread: closes q and wakes receivers
 *             conc_coro_mailbox_recv(mb, item)      a coroutine of s: 0, EPIPE (closed and
 *                                                   drained), ECANCELED, ENOMEM
 *             conc_coro_mailbox_try_recv(mb, item)  0, EAGAIN, EPIPE
 *             conc_coro_mailbox_recv_until(mb, item, dl)  ... or ETIMEDOUT
 *
 * ERRORS
 *   EINVAL    NULL arguments; a mailbox used by a coroutine of another scheduler.
 *   EPERM     conc_coro_await or a mailbox receive outside a coroutine.
 *   ENOMEM    no memory for the wake record (allocated before parking, so a wake can never
 *             be lost to a failed allocation on the completing thread), or for the timer of a
 *             wait with a deadline (coro.h's timer heap grows): nothing is left behind.
 *   ETIMEDOUT the deadline passed; the future (or the item) is left as it is: await again, or
 *             receive again, later. ECANCELED: the calling coroutine was cancelled.
 *   EPIPE     the mailbox's queue is closed (send), or closed and drained (receive); also
 *             a receive woken to look again whose mailbox was destroyed before it ran.
 *
 * ORDERING CONTRACT
 *   Everything the completing thread wrote before completing the future is visible to the
 *   coroutine whose await returns its outcome (the future's own release and acquire, then the inbox
 *   mutex). Everything a thread wrote before sending an item is visible to the coroutine that
 *   receives it (the queue's own ordering). Items come out in the queue's order; parked
 *   receivers are woken together and take items in the order they run.
 *
 * THREAD SAFETY
 *   Sends, try_sends, notify and close: from any threads, at any time between create and
 *   destroy, overlapping each other and the receivers. Receives, create and destroy: on the
 *   scheduler's thread (receives in its coroutines). conc_coro_await: in a coroutine; the
 *   future may be completed by any thread, before, during or after the call.
 *
 * CONFIGURATION
 *   None of its own (coro.h's, future.h's and queue.h's apply).
 *
 * CAVEATS
 *   - A parked await keeps the scheduler alive (conc_sched_pin) while it waits, so
 *     conc_sched_run does not return meanwhile. One that ends by its deadline or a cancel
 *     takes its callback off the future before it returns: nothing of it is left to run
 *     when the future completes later (conc_sched_destroy cancels the awaits still parked).
 *     A future you stop waiting for still runs to its end: cancel it (conc_future_cancel,
 *     conc_forkpool_cancel) if its work is no longer wanted.
 *   - conc_coro_mailbox_send blocks its thread while the queue is full: from a coroutine of
 *     the receiving scheduler use try_send (blocking there would stop the receivers).
 *   - A plain conc_queue_push (or conc_queue_close) to q does not wake a parked receiver
 *     until something calls conc_coro_mailbox_notify (queue.h has no hook, and polling would
 *     spin the scheduler); conc_coro_mailbox_close closes and notifies.
 *   - A parked receiver likewise keeps run() from returning (a pin) while it waits: close
 *     the mailbox to end it (conc_sched_destroy cancels it).
 *   - A receive never waits with the thread for a sender that has claimed its slot in q but
 *     not finished copying in (queue.h's try_pop would, with sched_yield): that item counts
 *     as not there yet, and the sender's send (or notify) wakes the receiver once it is. A
 *     sender that never finishes (a process stopped or killed there, CONC_SHARED) holds up
 *     the items behind it, not the scheduler. try_send likewise says EAGAIN rather than wait
 *     for a consumer of q (another thread popping it) still copying out of the tail slot.
 *   - Destroy a mailbox only once it is closed or no receiver is parked on it: close it, or cancel
 *     them, first. Once no send or close can still begin, a receiver that got the last item, or
 *     EPIPE, may destroy it at once: destroy waits for the sends and closes still under way to let
 *     go of it (a send still waiting for room in an open queue makes it abort after 10 s, naming
 *     the call). Not for conc_coro_mailbox_notify after a plain push: its caller must have returned
 *     first. Destroy wakes the receivers still parked on a closed mailbox (the wake close posts
 *     comes through the loop, maybe not yet). Each receiver whose wait has ended but which has not
 *     run yet (cancelled, timed out, woken by a send to look again, or by this destroy) is dropped:
 *     its receive returns without touching the mailbox or q (ECANCELED, ETIMEDOUT, or EPIPE: the
 *     mailbox is gone).
 *
 * DESIGN
 *   await: the coroutine allocates a wake record and a coro.h message, pins the scheduler,
 *   links the record's waker node to the future (as future.h's wait_any does) and parks.
 *   The node runs under the future's lock on the completing thread and posts the message,
 *   which cannot fail; on the scheduler's thread the loop calls the message's function,
 *   which wakes the waiter if it still waits, unpins and drops the record:
 *
 *   awaiting coroutine (scheduler thread)      completer (any thread)
 *   ---------------------------------------    ---------------------------------------
 *   link(node) under f's lock: f final? no     final RMW of f [future.R1], then under f's
 *     wait, its outcome     [coro_bridge.A1]     lock: posted = 1; post(msg)
 *   park                                                           [coro_bridge.A2]
 *   resumed (woken, timed out, cancelled):
 *   unlink(node) under f's lock [coro_bridge.A3]
 *   posted? the message's function drops the rest; else nobody will post: free the
 *     message, unpin, drop the record
 *
 *   The lock puts A2 wholly before or wholly after A3: after A3 no completer touches the
 *   record, and `posted` says which side undoes the pin. So an await that ended leaves
 *   nothing on the future, and run or destroy never waits for a future nobody awaits. The
 *   loop, with nothing to run while an await is out, polls its inbox briefly
 *   before it sleeps (coro.h [coro.I7]), and a poster kicks the eventfd only if it sleeps, so
 *   a task that finishes within microseconds costs no syscall on the scheduler's side. The
 *   completer touches the record only under the future's lock, so its reference count
 *   lives on the owner thread (no atomics).
 *   mailbox: Dekker's pattern between receivers (one scheduler) and senders (any thread), on
 *   one atomic word `armed`:
 *
 *   receiver coroutine (scheduler thread)      sender (any thread)
 *   ---------------------------------------    ----------------------------------------
 *   try_pop(q): EAGAIN                         push(q, item)
 *   first to sleep: msg = create; hold         fence(seq_cst)        [coro_bridge.M3]
 *   store(armed, 1, release) [coro_bridge.M1]  load(armed, relaxed) == 1 and
 *   fence(seq_cst)           [coro_bridge.M2]  swap(armed, 0, acquire) == 1
 *   try_pop(q) again: an item? disarm:           [coro_bridge.M4]: post(msg), ours now
 *     swap(armed, 0) == 1: free msg, unhold    ... on the scheduler: the message's
 *     (else a sender posts: a spare wake)      function wakes every parked receiver,
 *   else park                                  unholds               [coro_bridge.M5]
 *
 *   The two fences order each side's store before its load: either the receiver's second try_pop
 *   sees the item, or the sender's load sees armed == 1 (or both; the swap then gives the message
 *   to exactly one party). The M1 release and the M4 acquire publish the msg pointer.
 *   tests/models/coro_bridge.pml checks this, and catches the receiver that parks without the
 *   second look and the sender that reads armed before it pushes; coro_bridge_two.pml adds a second
 *   receiver that may time out, and catches a wake that wakes only the first waiter and a timed-out
 *   receiver that disarms while another still sleeps (only the last one out may). A push is done
 *   when its slot is published, and the sender's fence comes after that: so try_pop treats an item
 *   whose sender has claimed its slot but not finished copying in as not there yet (EAGAIN, never a
 *   wait on that sender with the scheduler's thread), and that sender's M3-M4, which follow its
 *   publish, wake the receiver that parked meanwhile.
 */
#ifndef CONC_CORO_BRIDGE_H
#define CONC_CORO_BRIDGE_H

#include "coro.h"
#include "future.h"
#include "queue.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------------
 * conc_coro_await
 * ------------------------------------------------------------------------------------------- */
typedef struct conc__coro_bridge_await {
    conc__future_node node; /* a waker node on the future: run under its lock, unlinkable */
    conc_sched_t *sched;
    conc_sched_msg_t *msg;
    conc_coro_t *waiter; /* NULL once it stopped waiting (timeout, cancel) */
    int refs;            /* the waiter and the message: owner thread only */
    bool posted;         /* the node ran and posted msg: under the future's lock */
} conc__coro_bridge_await;

CONC_INLINE void conc__coro_bridge_await_put(conc__coro_bridge_await *a) {
    if (--a->refs == 0)
        free(a);
}

/* An await whose message was never posted (and now never will be): undo it all. */
CONC_INLINE void conc__coro_bridge_await_undo(conc__coro_bridge_await *a) {
    conc_sched_msg_free(a->msg);
    conc_sched_unpin_here(a->sched);
    free(a);
}

/* The message's function, called by the scheduler's loop on its thread. */
static inline int conc__coro_bridge_await_wake(void *arg) {
    conc__coro_bridge_await *a = (conc__coro_bridge_await *)arg;
    if (a->waiter)
        (void)conc_coro_wake(a->waiter, 0);
    conc_sched_unpin_here(a->sched);
    conc__coro_bridge_await_put(a);
    return 0;
}

/* [coro_bridge.A2] On the completing thread, under the future's lock: reads sched and msg,
 * written before the link (the lock orders them), and marks the message posted. */
static inline void conc__coro_bridge_await_done(conc_future_t *f, void *arg) {
    CONC_UNUSED(f);
    conc__coro_bridge_await *a = (conc__coro_bridge_await *)arg;
    a->posted = true;
    conc_sched_msg_post(a->sched, a->msg);
}

CONC_COLD void conc__coro_bridge_describe_future_slow(const conc_coro_wait_t *w, char *buf,
                                                      size_t size) {
    snprintf(buf, size, "future %p (from another thread)", w->object);
}

CONC_NODISCARD static inline int conc_coro_await(conc_future_t *f, int64_t deadline) {
    if (!f)
        return EINVAL;
    conc_coro_t *co = conc_coro_self();
    if (!co)
        return EPERM;
    if (conc_future_is_done(f))
        return conc_future_wait(f); /* final: returns the outcome at once */
    if (conc_coro_is_cancelled(co))
        return ECANCELED;
    if (deadline != CONC_FOREVER && deadline <= conc_now())
        return ETIMEDOUT;
    conc__coro_bridge_await *a = (conc__coro_bridge_await *)conc_malloc_keep_errno(sizeof *a);
    if (!a)
        return ENOMEM;
    a->sched = conc_coro_sched(co);
    a->waiter = co;
    a->refs = 2;
    a->posted = false;
    a->node.fn = conc__coro_bridge_await_done;
    a->node.arg = a;
    a->node.waker = true;
    if (conc_sched_msg_create(&a->msg, conc__coro_bridge_await_wake, a) != 0) {
        free(a);
        return ENOMEM;
    }
    conc_sched_pin(a->sched); /* a completion may come: run() must not end, nor say EDEADLK,
                               * nor destroy free the scheduler it posts to */
    if (!conc__future_link(f, &a->node)) { /* [coro_bridge.A1] final meanwhile: no wait */
        conc__coro_bridge_await_undo(a);
        return conc_future_wait(f);
    }
    const conc_coro_wait_t wait =
        conc_coro_wait_make("future", f, 0, conc__coro_bridge_describe_future_slow);
    int e = conc_coro_park(&wait, deadline); /* 0: the message's function woke us */
    a->waiter = NULL;
    /* [coro_bridge.A3] Unlinked, the node is ours: either it ran (the message is in the inbox
     * and its function drops the rest) or it never will (undo it all here). */
    conc__future_unlink(f, &a->node);
    if (a->posted)
        conc__coro_bridge_await_put(a); /* the message keeps it */
    else
        conc__coro_bridge_await_undo(a); /* never posted: both references are ours */
    if (e == 0)
        return conc_future_wait(f); /* done: the node ran after completion */
    return e;
}

/* ---------------------------------------------------------------------------------------------
 * Mailboxes
 * ------------------------------------------------------------------------------------------- */
typedef struct conc_coro_mailbox {
    uint32_t armed;        /* atomic: a receiver sleeps and msg is ready to post */
    uint32_t calls;        /* atomic: sends and closes under way (destroy waits them out) */
    conc_sched_msg_t *msg; /* written by the arming receiver, taken by whoever disarms */
    conc_queue_t *q;
    conc_sched_t *sched;
    conc_coro_waitq_t waiters; /* owner thread only, like everything below */
    unsigned inflight;         /* arms not yet undone (posted or reclaimed) */
    int dead;                  /* destroyed while a posted wake was in flight */
} conc_coro_mailbox_t;

CONC_NODISCARD static inline int conc_coro_mailbox_create(conc_coro_mailbox_t **out,
                                                          conc_sched_t *s, conc_queue_t *q) {
    if (!out)
        return EINVAL;
    *out = NULL;
    if (!q)
        return EINVAL;
    if (!s)
        s = conc_coro_sched(conc_coro_self());
    if (!s)
        return EINVAL;
    conc_coro_mailbox_t *mb = (conc_coro_mailbox_t *)conc_calloc_keep_errno(1, sizeof *mb);
    if (!mb)
        return ENOMEM;
    mb->q = q;
    mb->sched = s;
    *out = mb;
    return 0;
}

/* [coro_bridge.M5] On the scheduler's thread: a sender posted the armed message. */
static inline int conc__coro_bridge_mailbox_wake(void *arg) {
    conc_coro_mailbox_t *mb = (conc_coro_mailbox_t *)arg;
    mb->inflight--;
    conc_sched_unpin_here(mb->sched);
    if (mb->dead) {
        if (!mb->inflight)
            free(mb);
        return 0;
    }
    /* Woken, not popped: each stays linked until its own receive unlinks it, so a destroy
     * that comes before they run still finds them (and tells them the mailbox is gone). */
    for (conc_coro_waiter_t *w = mb->waiters.head; w; w = w->next)
        (void)conc_coro_wake(w->coro, 0);
    return 0;
}

/* Takes the armed message back if no sender took it: true if we did (then nobody posts). */
CONC_INLINE bool conc__coro_bridge_mailbox_disarm(conc_coro_mailbox_t *mb) {
    /* Acquire for symmetry with [coro_bridge.M4]; the msg is our own write here. The swap
     * (not a store) decides against a sender's swap which of us owns the message. */
    if (conc_swap(&mb->armed, 0u, CONC_ACQUIRE) != 1u)
        return false; /* a sender owns the message and posts it */
    conc_sched_msg_free(mb->msg);
    mb->msg = NULL;
    mb->inflight--;
    conc_sched_unpin_here(mb->sched);
    return true;
}

static inline void conc_coro_mailbox_notify(conc_coro_mailbox_t *mb) {
    if (!mb)
        return;
    conc_fence_seq_cst(&mb->armed); /* [coro_bridge.M3]: the push, then the load of armed */
    /* Relaxed look first (the common case, nobody asleep, costs no RMW); the fence above
     * orders it after the push. */
    if (conc_load(&mb->armed, CONC_RELAXED) &&
        conc_swap(&mb->armed, 0u, CONC_ACQUIRE) == 1u) /* [coro_bridge.M4] acquire: msg */
        conc_sched_msg_post(mb->sched, mb->msg);
}

/* A send or close is under way from before its push or close until its notify is done: a
 * receiver that sees the item or the close may destroy the mailbox at once, and destroy
 * waits until the call has let go of it. Relaxed: the push's (or close's) release, which
 * comes after, carries the increment to whoever sees its effect, and the RMWs of calls are
 * in one order, so destroy's load reads it or the decrement. Release on the way out: every
 * access of the call happens before destroy's acquire load that reads the count back at 0. */
CONC_INLINE void conc__coro_bridge_mailbox_call_begins(conc_coro_mailbox_t *mb) {
    conc_fetch_add(&mb->calls, 1u, CONC_RELAXED);
}

CONC_INLINE void conc__coro_bridge_mailbox_call_ends(conc_coro_mailbox_t *mb) {
    conc_fetch_sub(&mb->calls, 1u, CONC_RELEASE);
}

/* Push (without waiting past `deadline`) and notify, as one call destroy waits out. */
CONC_INLINE int conc__coro_bridge_mailbox_push(conc_coro_mailbox_t *mb, const void *item,
                                               int64_t deadline) {
    conc__coro_bridge_mailbox_call_begins(mb);
    int e = conc_queue_push_until(mb->q, item, deadline);
    if (e == 0)
        conc_coro_mailbox_notify(mb);
    conc__coro_bridge_mailbox_call_ends(mb);
    return e;
}

CONC_NODISCARD static inline int conc_coro_mailbox_try_send(conc_coro_mailbox_t *mb,
                                                            const void *item) {
    if (!mb || !item)
        return EINVAL;
    /* Not conc_queue_try_push: it waits out, with sched_yield, a consumer of q caught between
     * claiming the slot at the tail and finishing its copy out, which would stop the
     * scheduler's thread when a coroutine sends. A past deadline gives such a slot a few
     * pauses and says ETIMEDOUT: EAGAIN, as for a full queue. */
    int e = conc__coro_bridge_mailbox_push(mb, item, 0);
    return e == ETIMEDOUT ? EAGAIN : e;
}

CONC_NODISCARD static inline int conc_coro_mailbox_send_until(conc_coro_mailbox_t *mb,
                                                              const void *item, int64_t deadline) {
    if (!mb || !item)
        return EINVAL;
    return conc__coro_bridge_mailbox_push(mb, item, deadline);
}

CONC_NODISCARD static inline int conc_coro_mailbox_send(conc_coro_mailbox_t *mb, const void *item) {
    return conc_coro_mailbox_send_until(mb, item, CONC_FOREVER);
}

static inline void conc_coro_mailbox_close(conc_coro_mailbox_t *mb) {
    if (!mb)
        return;
    conc__coro_bridge_mailbox_call_begins(mb);
    conc_queue_close(mb->q);
    conc_coro_mailbox_notify(mb);
    conc__coro_bridge_mailbox_call_ends(mb);
}

/* conc_queue_try_pop, except that a sender caught between claiming the slot at the head and
 * publishing it (preempted there, or a process stopped there on a CONC_SHARED queue) is not
 * waited for: queue.h's try forms wait it out with sched_yield, which here would stop every
 * coroutine of the thread, for good if that sender never finishes. A past deadline makes
 * pop_until try once and give such a slot a few pauses (ETIMEDOUT); that is EAGAIN here, and
 * the sender's notify after its publish wakes a receiver that parked meanwhile. */
CONC_INLINE int conc__coro_bridge_mailbox_pop(conc_coro_mailbox_t *mb, void *item) {
    int e = conc_queue_pop_until(mb->q, item, 0);
    return e == ETIMEDOUT ? EAGAIN : e;
}

/* The receives' checks: 0 (*co: the caller), EINVAL, EPERM. */
CONC_INLINE int conc__coro_bridge_mailbox_receiver(conc_coro_mailbox_t *mb, const void *item,
                                                   conc_coro_t **co) {
    if (!mb || !item)
        return EINVAL;
    *co = conc_coro_self();
    if (!*co)
        return EPERM;
    return conc_coro_sched(*co) != mb->sched ? EINVAL : 0;
}

CONC_NODISCARD static inline int conc_coro_mailbox_try_recv(conc_coro_mailbox_t *mb, void *item) {
    conc_coro_t *co;
    int e = conc__coro_bridge_mailbox_receiver(mb, item, &co);
    return e ? e : conc__coro_bridge_mailbox_pop(mb, item);
}

CONC_COLD void conc__coro_bridge_describe_mailbox_slow(const conc_coro_wait_t *w, char *buf,
                                                       size_t size) {
    snprintf(buf, size, "mailbox %p (items from other threads)", w->object);
}

CONC_NODISCARD static inline int conc_coro_mailbox_recv_until(conc_coro_mailbox_t *mb, void *item,
                                                              int64_t deadline) {
    conc_coro_t *co;
    int e0 = conc__coro_bridge_mailbox_receiver(mb, item, &co);
    if (e0)
        return e0;
    const conc_coro_wait_t wait =
        conc_coro_wait_make("mailbox", mb, 0, conc__coro_bridge_describe_mailbox_slow);
    for (;;) {
        int e = conc__coro_bridge_mailbox_pop(mb, item);
        if (e != EAGAIN)
            return e; /* 0 or EPIPE */
        if (conc_coro_is_cancelled(co))
            return ECANCELED;
        if (deadline != CONC_FOREVER && deadline <= conc_now())
            return ETIMEDOUT;
        /* Relaxed: only this thread sets armed; a sender can only clear it, and then
         * inflight (ours, plain) is still 1 until the posted wake runs. */
        if (!conc_load(&mb->armed, CONC_RELAXED) && !mb->inflight) {
            /* The first receiver to sleep arms the mailbox. */
            if (conc_sched_msg_create(&mb->msg, conc__coro_bridge_mailbox_wake, mb) != 0)
                return ENOMEM;
            mb->inflight++;
            conc_sched_pin(mb->sched);
            conc_store(&mb->armed, 1u, CONC_RELEASE); /* [coro_bridge.M1] publishes msg */
            conc_fence_seq_cst(&mb->armed);           /* [coro_bridge.M2]: store, then look */
            e = conc__coro_bridge_mailbox_pop(mb, item);
            if (e != EAGAIN) {
                (void)conc__coro_bridge_mailbox_disarm(mb); /* or a sender posts: a spare wake */
                return e;
            }
        }
        /* Park on a waiter of our own: its data is the flag destroy sets when it drops us,
         * after which nothing of the mailbox (or its queue) may be touched. */
        int gone = 0;
        conc_coro_waiter_t me;
        memset(&me, 0, sizeof me);
        me.coro = co;
        me.data = &gone;
        conc_coro_waitq_push(&mb->waiters, &me);
        e = conc_coro_park(&wait, deadline);
        if (gone) /* destroyed after our wait ended: a woken receive finds it closed */
            return e ? e : EPIPE;
        conc_coro_waitq_remove(&mb->waiters, &me);
        if (e != 0) {
            if (conc_coro_waitq_is_empty(&mb->waiters) && mb->inflight)
                (void)conc__coro_bridge_mailbox_disarm(mb); /* the last one leaves: undo the arm */
            return e;
        }
    }
}

CONC_NODISCARD static inline int conc_coro_mailbox_recv(conc_coro_mailbox_t *mb, void *item) {
    return conc_coro_mailbox_recv_until(mb, item, CONC_FOREVER);
}

static inline void conc_coro_mailbox_destroy(conc_coro_mailbox_t *mb) {
    if (!mb)
        return;
    /* A send or close whose item or close a receiver has seen may not have let go of the
     * mailbox yet (its notify comes after): it only has to run once more. Bounded, as a nested
     * scheduler destroy's wait for a pin: a send still waiting for room in an open queue
     * overlaps the destroy (the caller's mistake) and would keep it waiting for good. */
    if (conc_load(&mb->calls, CONC_ACQUIRE)) {
        int64_t until = conc_deadline_in(CONC__CORO_DESTROY_PIN_WAIT_NS);
        while (conc_load(&mb->calls, CONC_ACQUIRE)) {
            if (conc_deadline_passed(until))
                CONC_ABORT("conc_coro_mailbox_destroy: a send or close of the mailbox is still "
                           "under way (a send waiting for room? close the mailbox first)");
            sched_yield();
        }
    }
    /* Every build: a receiver parked on an open mailbox would wake into freed memory. Once q
     * is closed, the wake close posted may not have run yet (it comes through the loop, which
     * a coroutine's yield reaches only now and then): destroy wakes those receivers itself.
     * Each receiver whose wait is over (cancelled, timed out, woken to look again, or woken
     * here) but has not run yet is told the mailbox is gone and dropped, as conc_chan_destroy
     * drops a finished select's waiter: its receive returns EPIPE (ECANCELED, ETIMEDOUT). */
    bool closed = conc_queue_is_closed(mb->q);
    for (const conc_coro_waiter_t *w = mb->waiters.head; w && !closed; w = w->next)
        if (conc_coro_is_parked(w->coro))
            CONC_ABORT("conc_coro_mailbox_destroy: coroutines still wait on the mailbox, and it "
                       "is open (close it or cancel them first)");
    while (mb->waiters.head) {
        if (closed)
            (void)conc_coro_wake(mb->waiters.head->coro, 0); /* a parked one: it sees `gone` */
        *(int *)mb->waiters.head->data = 1;
        (void)conc_coro_waitq_pop(&mb->waiters);
    }
    if (mb->inflight && !conc__coro_bridge_mailbox_disarm(mb)) {
        mb->dead = 1; /* a sender posted the wake: its coroutine frees the mailbox */
        return;
    }
    free(mb);
}

#ifdef __cplusplus
}
#endif
#endif /* CONC_CORO_BRIDGE_H */
