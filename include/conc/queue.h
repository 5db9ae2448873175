/* conc/queue.h - a bounded MPMC queue: lock-free ring, futex eventcounts, close - conc v0.1.0
 * SPDX-License-Identifier: MIT
 *
 * Python's queue.Queue(maxsize) and multiprocessing.Queue in C, and Concurrency Kit's ck_ring
 * with blocking and close: fixed-size items copied in and out of a ring of exactly
 * `capacity` slots, shared by any number of producers and consumers (threads or processes).
 *
 * CONTENTS
 *   QUICK START, API, ERRORS, ORDERING CONTRACT, THREAD SAFETY, CONFIGURATION, CAVEATS,
 *   DESIGN, FOR OTHER CONC HEADERS; then the code: creation, the ring, the blocking layer
 *   (timeline), push, pop, close and queries, and the section for other conc headers.
 *
 * QUICK START (examples/07_queue_pipeline.c)
 *     conc_queue_t *q;
 *     if (conc_queue_create(&q, 1024, sizeof(int)) != 0) abort();
 *     int x = 42;
 *     if (conc_queue_push(q, &x) != 0)        // producer: blocks while full,
 *         puts("closed: not pushed");         //   EPIPE once closed
 *     conc_queue_close(q);                    // producer side, when done: wakes everyone
 *     while (conc_queue_pop(q, &x) == 0)      // consumer: blocks while empty; after the
 *         printf("%d\n", x);                  //   close, drains, then EPIPE ends the loop
 *     conc_queue_destroy(q);                  // after every thread has stopped using it
 *
 * API
 *   create    conc_queue_create(&q, capacity, item_size)          0, EINVAL, ENOMEM
 *             (capacity at most CONC_QUEUE_CAPACITY_MAX, 2^40)
 *             conc_queue_footprint(capacity, item_size)           bytes init_in needs at any
 *                                                                 alignment; 0: invalid
 *             conc_queue_init_in(&q, mem, mem_size, cap, size, flags)  0, EINVAL (flags: 0 or
 *                                                                 CONC_SHARED); caller's memory,
 *                                                                 any alignment (malloc's too)
 *             conc_queue_attach(mem)                              the queue init_in built in mem
 *                                                                 (any mapping address);
 *                                                                 NULL if none
 *             conc_queue_destroy(q)                               frees what create allocated
 *   push      conc_queue_push(q, item)                            0, EPIPE; blocks while full
 *             conc_queue_try_push(q, item)                        0, EAGAIN, EPIPE; never blocks
 *             conc_queue_push_until(q, item, dl)                  0, ETIMEDOUT, EPIPE
 *   pop       conc_queue_pop(q, item)                             0, EPIPE; blocks while empty
 *             conc_queue_try_pop(q, item)                         0, EAGAIN, EPIPE
 *             conc_queue_pop_until(q, item, dl)                   0, ETIMEDOUT, EPIPE
 *   batch     conc_queue_push_batch(q, items, n, &pushed)         0, EPIPE; all n (blocks)
 *             conc_queue_try_push_batch(q, items, n, &pushed)     0, EAGAIN, EPIPE; one claim
 *             conc_queue_push_batch_until(q, items, n, dl, &pushed)   0, ETIMEDOUT, EPIPE
 *             conc_queue_pop_batch(q, items, n, &popped)          0, EPIPE; 1..n (blocks for 1)
 *             conc_queue_try_pop_batch(q, items, n, &popped)      0, EAGAIN, EPIPE; one claim
 *             conc_queue_pop_batch_until(q, items, n, dl, &popped)    0, ETIMEDOUT, EPIPE
 *   close     conc_queue_close(q)                                 idempotent
 *   tasks     conc_queue_push_task(q, item) / _try_push_task / _push_task_until(q, item, dl)
 *                                                                 push, counting a task; as push,
 *                                                                 and EOVERFLOW
 *             conc_queue_task_done(q)                             0, EINVAL (none unfinished)
 *             conc_queue_join(q), conc_queue_join_until(q, dl)    0, ETIMEDOUT; every task done
 *             conc_queue_unfinished(q)                            a snapshot
 *   query     conc_queue_is_closed(q), conc_queue_size(q), conc_queue_capacity(q),
 *             conc_queue_item_size(q)
 *
 *   `items` is an array of n items laid end to end (n * item_size bytes). A batch claim takes
 *   as many consecutive slots as are ready, up to n, with one CAS: try_push_batch pushes
 *   1..n (or fails), push_batch[_until] keeps claiming until all n are in; pop_batch[_until]
 *   waits for one item and then takes whatever is ready, up to n (read(2)-style). The count
 *   (pushed/popped, may be NULL) is set on every return, errors included: on EPIPE or
 *   ETIMEDOUT from push_batch it says how many went in before. n == 0 returns 0 at once.
 *
 * ERRORS
 *   EINVAL   capacity or item_size 0; capacity * slot size overflows; init_in memory that is
 *            NULL or too small (the queue starts at mem's first CONC_QUEUE_ALIGN (64)-byte
 *            boundary and needs the rest of the footprint after it: mem_size at least
 *            conc_queue_footprint() always does); unknown flags.
 *   ENOMEM   create could not allocate.
 *   EAGAIN   try_push found the queue full (exactly capacity items inside); try_pop found it
 *            empty and still open.
 *   ETIMEDOUT the absolute deadline passed (never earlier); a past deadline tries once. Also
 *            while the call waits out a peer mid-copy (CAVEATS: Progress): at its deadline.
 *   EPIPE    closed: pushes fail at once; pops return every item pushed before the close, and
 *            EPIPE once none is left.
 *
 * ORDERING CONTRACT
 *   Everything a thread wrote before pushing an item is visible to the thread whose pop
 *   returns that item. Items of one producer come out in the order it pushed them (the queue
 *   is linearizable FIFO); two producers' items interleave in claim order. Pops that return
 *   EPIPE happen after every successful push (no item can appear after EPIPE).
 *
 * THREAD SAFETY (which calls may overlap)
 *   Every push, pop, batch, close and query call may overlap every other, from any number of
 *   threads and processes. Not overlapping anything: create/init_in (before the queue is
 *   shared) and destroy (after every user has returned; blocked waiters must be released
 *   with close and have returned first: destroy aborts, saying so, when it finds one still
 *   asleep, except in a CONC_SHARED queue). attach may run any time after init_in returned.
 *
 * CONFIGURATION (define before including)
 *   CONC_QUEUE_SPIN     pause rounds before a blocking call registers as a sleeper (default
 *                       64; 0 disables pausing; skipped on one CPU). Each round reads the one
 *                       stamp it waits for and tries only when that changed. A side whose
 *                       last pauses ran out (its peer shares its CPU) pauses only
 *                       CONC_QUEUE_SPIN_PROBE rounds (default 0: it yields at once), and
 *                       all of them again every 64th wait, until pausing pays again.
 *   CONC_QUEUE_YIELDS   sched_yield rounds after the pauses, before sleeping (default 4);
 *                       off for a while (10 ms, doubling up to 1.28 s) while yields keep a
 *                       side off the CPU for over 100 us on average (somebody else runs
 *                       there: its waiters sleep on the futex instead). 0 also keeps a
 *                       blocking call that lost a claim from stepping aside (see DESIGN).
 *   CONC_QUEUE_BIAS     1 (default): a side's first claimer claims by plain store until
 *                       a second claimer comes (DESIGN: "The bias"); 0: every claim a CAS.
 *   CONC_QUEUE_ALLOC(bytes), CONC_QUEUE_FREE(p)   the allocator create/destroy use
 *                       (default: aligned_alloc(64, ...) and free; any alignment will do:
 *                       destroy frees the pointer ALLOC returned). Define both or neither.
 *
 * CAVEATS
 *   - Progress: each operation is lock-free against the others except at one point: a thread
 *     preempted between claiming a slot and finishing its copy holds up the other side at
 *     that slot (no claim can pass it: every thread that reaches it backs off with
 *     sched_yield, try forms and close's EPIPE included). A process that dies (or is stopped)
 *     there leaves that slot stuck forever: only the until forms still return, with ETIMEDOUT
 *     at their deadline. That is the price of one CAS per operation (ck_ring, Vyukov's queue
 *     and crossbeam share it). A side's bias owner (DESIGN) preempted inside its claim window
 *     holds up, the same way, the one thread that revokes its bias.
 *   - Process-shared: init_in(..., CONC_SHARED) in MAP_SHARED / shm_open / memfd memory; other
 *     processes call conc_queue_attach on their mapping (any address: the queue holds offsets,
 *     never pointers). Items are copied bytes: pointers inside items mean nothing in another
 *     process. Every process must be built with the same conc version and word size.
 *   - Items are copied as bytes (memcpy), never constructed or destroyed: in C++ queue
 *     trivially copyable types (a std::string's bytes are not a string), or pointers.
 *   - Where the queue sits: init_in and attach both put it at the first 64-byte boundary at or
 *     after mem. So give attach the same place in the shared object that init_in got (the
 *     mapping's start plus the same offset), or the queue pointer itself: every mapping
 *     starts on a page boundary, so that place has the same remainder modulo 64, and the same
 *     gap before the queue, in every process. A copy of the bytes at another remainder (a
 *     memcpy into a malloc'd buffer, a file read to any address) is not a queue to attach.
 *   - fork(): a queue in private memory is copied, not shared: the child has its own copy,
 *     as the parent's other threads left it: a slot one of them had claimed stays stuck, and
 *     a sleeper stays counted (harmless: destroy of the copy in the child frees it). A side's
 *     owner (DESIGN: "The bias") of the parent's is no owner in the child, the forking
 *     thread included: the child revokes without waiting for it (a claim another thread had
 *     made is such a stuck slot). A child made without the fork handlers (_Fork, a raw
 *     clone) cannot tell, and must not use the copy; nor may a child forked from a signal
 *     handler that interrupted an owner's claim window (that window would resume there).
 *   - Up to 4095 threads blocked on one side of one queue at once sleep until woken; more
 *     wait too, but poll (base.h's eventcount: every 1 to 16 ms), so they may learn of an
 *     item, a free slot or a close that many ms late, until a place among the 4095 frees
 *     up. (An executor's blocked submitters are such threads.)
 *   - A process killed while it sleeps in a push or pop of a CONC_SHARED queue stays counted
 *     as a sleeper for good: it counts toward those 4095, and costs up to one futex wake
 *     (a notifier's syscall) per wait of a live sleeper on that side, since wakes are issued
 *     for it that the live one takes and sleeps again. Killed, it stays queued on the futex
 *     until it runs again, and a wake the kernel hands it meanwhile is lost to the live
 *     sleeper it was meant for: so a CONC_SHARED queue's sleepers sleep at most
 *     CONC_FUTEX_SHARED_RECHECK_NS (100 ms, base.h) at a time and then look again. Such a
 *     death costs a live sleeper up to 100 ms; no item is lost, and one that waits long
 *     makes a futex call every 100 ms.
 *   - Signal handlers may use try_push/try_pop only if the interrupted thread is not itself
 *     inside a call on the same queue between claim and publish, or inside its claim window
 *     as a side's owner (it would wait on itself; close from such a handler too).
 *   - The bias needs membarrier(2) (Linux 4.14): where it is refused at a side's first claim,
 *     every claim is a CAS. A seccomp filter that refuses it after a side was biased leaves
 *     the owner's stores unordered: the next revocation or sleeper aborts, saying so. So does
 *     a thread whose own filter refuses it (seccomp filters can be per thread) when another
 *     thread took a bias: install such filters on every thread, or before any queue is used.
 *   - close revokes the producers' bias first: it waits, as a revoking producer does, for an
 *     owner preempted inside its claim window (the rest of that owner's time slice).
 *   - conc_queue_size is exact when nothing runs concurrently, a snapshot otherwise.
 *
 * DESIGN
 *   The ring (after crossbeam's ArrayQueue, itself after Vyukov). Positions are 64-bit
 *   numbers lap * one_lap + index, where one_lap is the smallest power of two above capacity
 *   and index runs 0..capacity-1: the slot is pos & (one_lap - 1), no division, and capacity
 *   is exact for any value (1, 3, 1000, ...), not rounded to a power of two (choice justified:
 *   ck_ring and rte_ring round and lose a slot; an exact admission counter beside a power-of-
 *   two ring would cost a second contended RMW per operation). Each slot starts with a stamp:
 *     stamp == pos              writable by the producer that claims pos
 *     stamp == pos + 1          holds pos's item, readable by the consumer that claims pos
 *     stamp == pos + one_lap    popped: writable for the next lap
 *   A producer reads the stamp at tail; if writable it claims [tail, tail + k) with one CAS on
 *   tail (k = how many consecutive slots are writable, up to n: a batch is one claim), copies
 *   in and publishes each stamp. Full is exact: the slot at tail still holds the previous
 *   lap's item and head is exactly one lap behind tail. Consumers mirror this on head.
 *   head and tail each own a cache line. Bit 63 of tail is CLOSED: close sets it with one
 *   RMW, so every producer CAS after it fails and reports EPIPE, and a consumer that finds the
 *   ring empty with CLOSED in tail knows no item can ever come.
 *
 *   One item (push, pop and their try/until forms) takes an inline fast path: load tail, check the
 *   one stamp, claim, copy, publish. Everything the copy and the publish need (the slot's address,
 *   the item size, the next stamp) is computed before the claim: no load may pass a locked CAS, so
 *   loads of the queue's fields after it would hold back the stores that the next claim's CAS must
 *   drain (reading them after the claim made an item cost 9.6 ns instead of 7.5, pushed and popped
 *   by one thread). An 8-byte item is read before the claim too, from the slot for a pop (as
 *   ck_ring's dequeue does: the claim's success proves it was the item), so the copy does not wait
 *   for the CAS (1 to 2% of an item pushed and popped on one thread; relaxed atomic words, so a
 *   read that loses its claim races nothing). An earlier version checked a limit that a scan of 64
 *   stamps had verified ahead instead of the stamp: the scan cost more than the loads it saved, and
 *   with several producers the limit's writes bounced a line the claims use (2P2C and 4P4C ran 1.2
 *   to 1.9 times slower with it).
 *
 *   The bias. With one producer (or one consumer), the locked CAS is most of an item's cost
 *   and guards against nobody. A side's first claimer owns the side and claims with a plain
 *   store inside a window of its own; the first other claimer, or close, revokes that for
 *   good with membarrier(2), and the side's claims are CASes from then on. A sleeper of the
 *   other side pays a membarrier before its re-check while the bias lasts, and revokes it
 *   once those cost more than the owner's stores saved. Timelines and proof: the section
 *   "The bias" below, and tests/models/queue_bias.pml. An item pushed and popped by one
 *   thread took ck_ring's time before (two locked CASes: 10.7 and 11.5 ns against 10.4 and
 *   11.1, the headers alternated) and 5.1 and 6.6 after (3.7 in a quieter run), and 1P1C
 *   with both threads on one CPU went from parity with ck_ring + yield to 1.75 to 1.81x.
 *
 *   Blocking: two eventcount words beside the ring (base.h's eventcount), not_empty
 *   (consumers sleep on it) and not_full (producers). Each word: the registered waiters,
 *   pending wakes (issued, not yet taken), a wake sequence, and CLOSED. After every
 *   successful operation the notifier reads the other side's word (seq_cst, after its
 *   seq_cst claim: no fence; after a bias owner's store, the sleeper's membarrier stands
 *   in): if waiters <= pending, every waiter already has a wake coming and no syscall is
 *   made (the busy case: both sides running, waiters 0). Otherwise it adds
 *   up to k pending wakes (k = items moved) and futex-wakes that many, stepping the
 *   sequence: a sleeper is woken only for an item (or slot) it can take, and a burst of
 *   pushes while one consumer wakes up makes one syscall, not one per push. A waiter
 *   registers (+1 waiter), re-checks the ring, takes one pending wake if there is one (it
 *   never sleeps while a wake is pending: that wake may be its own), else futex_waits on
 *   the exact word it read before its re-check (the sequence step makes that word stale
 *   even if another waiter took the pending wake meanwhile: the model found that ABA).
 *   Leaving (success, timeout, EPIPE) removes the waiter and one pending wake. close sets
 *   CLOSED in tail, then in both words, and wakes every sleeper: a waiter that reads a word
 *   without CLOSED sleeps on that value, so the kernel refuses the sleep once CLOSED is in.
 *   tests/models/queue.pml checks all this. Before registering, a waiter pauses
 *   (CONC_QUEUE_SPIN) and then yields (CONC_QUEUE_YIELDS), trying whenever the stamp it
 *   waits for changes. Pauses pay only while the peer runs on another CPU: a side whose last
 *   pauses ran out (the peer shares its CPU, pinned there or placed there by the scheduler)
 *   yields at once (CONC_QUEUE_SPIN_PROBE pauses first), with a full round every 64th
 *   wait to notice the peer has moved. Yields pay only while the scheduler hands the CPU to
 *   the peer: when a side's yields keep it off the CPU for long on average (time slices
 *   spent on somebody else, such as a busy loop beside the queue), they are off for that
 *   side for a period, so its waiters sleep on the futex, whose wake preempts, instead of
 *   giving a time slice away per handoff. A blocking call that loses a claim to a peer of its
 *   own side steps aside (yields, under the same policy): two producers (or consumers)
 *   running at once on two CPUs move their end's cache line across at every claim, and with
 *   more threads than CPUs the yield lets the other side run there instead (4P4C on 2 CPUs:
 *   60-150 ns an item before, 15-20 after). The tries never step aside.
 *
 * FOR OTHER CONC HEADERS (the last section of this file)
 *   conc__queue_item_ready(q, k)   whether the k-th item from the head is published (a hint,
 *                                  read from the slot stamps without touching tail)
 *   conc__queue_sleeper_fence(q)   a sleeper of another header's own, registered, about to
 *                                  re-check the queue: orders a bias owner's push ("The bias")
 */
#ifndef CONC_QUEUE_H
#define CONC_QUEUE_H

#include "base.h"
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifndef CONC_QUEUE_SPIN
#define CONC_QUEUE_SPIN 64
#endif
#ifndef CONC_QUEUE_SPIN_PROBE
#define CONC_QUEUE_SPIN_PROBE 0
#endif
#ifndef CONC_QUEUE_YIELDS
#define CONC_QUEUE_YIELDS 4
#endif
#ifndef CONC_QUEUE_BIAS
#define CONC_QUEUE_BIAS 1
#endif
#if defined(CONC_QUEUE_ALLOC) != defined(CONC_QUEUE_FREE)
#error "define both CONC_QUEUE_ALLOC and CONC_QUEUE_FREE, or neither"
#endif
/* The struct's alignment: its hot words sit on their own cache lines. init_in places the queue at
 * the first such boundary inside the caller's memory; create asks its allocator for the slack
 * too, so any alignment will do (malloc's), and destroy frees the block the allocator gave. */
#define CONC_QUEUE_ALIGN CONC_CACHELINE

#ifndef CONC_QUEUE_ALLOC
#define CONC_QUEUE_ALLOC(bytes) aligned_alloc(CONC_QUEUE_ALIGN, (bytes))
#define CONC_QUEUE_FREE(p) free(p)
#endif

typedef struct conc_queue {
    /* Read-only after init: its own line, shared read-only by every CPU. */
    uint64_t magic;      /* CONC__QUEUE_MAGIC once init_in finished; attach checks it */
    uint64_t capacity;   /* exact: items the queue holds when full */
    uint64_t item_size;  /* bytes per item */
    uint64_t slot_size;  /* 8-byte stamp + item, rounded up to 8 */
    uint64_t one_lap;    /* power of two > capacity: position = lap * one_lap + index */
    uint64_t footprint;  /* bytes from the start of this struct to the end of the slots */
    uint32_t flags;      /* CONC_SHARED: non-private futex ops */
    uint32_t allocated;  /* 0: init_in memory; else create's: 1 + bytes from its block to here */
    uint64_t slot_shift; /* log2(slot_size) when that is a power of two (8-byte items), else 0 */
    /* Producers' claim position; bit 63 is CLOSED. */
    __attribute__((aligned(CONC_CACHELINE))) uint64_t tail;
    /* The process that initialized a private queue: destroy's check for blocked threads
     * holds there only (a forked child's copy counts its parent's sleepers). Read-only after
     * init, read by destroy only: spare room in this line costs the producers nothing. */
    int32_t creator_pid;
    /* The producers' bias (see "The bias"): the thread that may claim with a plain store, and
     * its claim window. Beside tail, which the owner writes anyway. */
    uint32_t tail_busy;
    uint64_t tail_bias; /* 64 bits on every target: one layout, 8-byte aligned */
    /* What sleepers have paid in heavy barriers for this side's bias (see
     * conc__queue_bias_fence_slow): tail where the last one paid, and the debt, ns. Hints. */
    uint64_t tail_paid_at;
    uint32_t tail_debt;
    /* Consumers' claim position. */
    __attribute__((aligned(CONC_CACHELINE))) uint64_t head;
    /* The consumers' bias, as the producers'. */
    uint32_t head_busy;
    uint64_t head_bias;
    uint64_t head_paid_at;
    uint32_t head_debt;
    /* The eventcount words (see DESIGN). Read by every notifier, written only when somebody
     * sleeps: one line for both keeps the busy path to one read-shared line. */
    __attribute__((aligned(CONC_CACHELINE))) uint32_t not_empty;
    uint32_t not_full;
    /* Task accounting (push_task, task_done, join): {unfinished: high half; WAITERS bit 0,
     * generation bits 1..31: the low half, a futex}. Touched only by the _task calls, so a
     * queue that never uses them pays nothing: the word fills spare room in this line. */
    uint64_t tasks;
    /* Per side (consumers, producers): 0 while pausing pays (the peer moved within the pause
     * rounds), else how many waits ago the pauses last ran out (the peer shares our CPU, or
     * was away). A hint, written only when it changes: a stale value costs time, never
     * correctness. */
    uint32_t pop_spin_skips, push_spin_skips;
    /* Per side, whether its yields pay (base.h's yield policy; see conc__queue_spin_slow). */
    conc_yield_policy_t pop_yields, push_yields;
    /* The slots follow the struct (offset sizeof(conc_queue_t)): no pointer anywhere. */
} conc_queue_t;

CONC_STATIC_ASSERT(__alignof__(conc_queue_t) == CONC_QUEUE_ALIGN,
                   "init_in places the struct at that alignment");

/* Four lines: read-only, tail, head, eventcounts (the task word fits in the last one's spare
 * room, so a queue that never counts tasks pays nothing for it). */
CONC_STATIC_ASSERT(sizeof(conc_queue_t) == 4 * CONC_CACHELINE, "the task word adds no room");

#define CONC__QUEUE_MAGIC 0x636f6e6371756575ull /* "concqueu" */
#define CONC__QUEUE_CLOSED (1ull << 63)         /* in tail */
#define CONC__QUEUE_STAMP_SIZE 8                /* each slot starts with its 64-bit stamp */
#define CONC__QUEUE_SLOT_ALIGN 8                /* slot sizes keep every stamp 8-byte aligned */
/* The most init_in skips to reach a CONC_QUEUE_ALIGN boundary: footprint counts it, so that
 * malloc(footprint) (16-byte aligned) or any offset into a mapping is enough. */
#define CONC__QUEUE_ALIGN_SLACK (CONC_QUEUE_ALIGN - 1)
/* The largest capacity: one_lap (a power of two > capacity) and the lap arithmetic keep room
 * below bit 63 (CLOSED) for 2^20 laps at the very least. */
#define CONC_QUEUE_CAPACITY_MAX ((uint64_t)1 << 40)
#define CONC__QUEUE_BACKOFF_ROUNDS 6 /* pause rounds of 1..32 before yielding to a peer */
/* A side that skips its pauses still pauses fully once in this many waits: often enough to
 * notice within a millisecond that its peer now runs on another CPU, rarely enough to cost
 * nothing (one run of pauses per 64 yields to a peer that shares the CPU: at 16, and with 4
 * probe pauses per wait, the pauses were 1.4% of a same-CPU 1P1C run). */
#define CONC__QUEUE_SPIN_RETRY 64
/* A yield's credit (base.h's yield policy) per item the other side moved during it: a peer
 * that shares the CPU fills or drains the ring (20 us for 1024 items here: no waste), and so
 * do the side's own threads when there are more of them than CPUs. */
#define CONC__QUEUE_YIELD_ITEM_NS (1 * CONC_US)
/* A side's bias (see "The bias"): nobody has claimed yet, a revocation is under way, or
 * revoked for good (every claim a CAS); else the owner's conc_thread_token (never 0, 1, 2). */
#define CONC__QUEUE_UNOWNED ((uint64_t)0)
#define CONC__QUEUE_REVOKING ((uint64_t)1) /* with the owner's fork generation on top */
#define CONC__QUEUE_REVOKED ((uint64_t)2)
/* An owner is its thread's token with the fork generation in bits 48..63 (thread pointers
 * sit below 2^48 on x86-64 and arm64 user space, and below 2^32 on 32-bit targets). */
#define CONC__QUEUE_GEN_SHIFT 48
#define CONC__QUEUE_GEN_MASK (~(uint64_t)0 << CONC__QUEUE_GEN_SHIFT)
/* What an owner's claim saves against the CAS (5 ns a locked CAS here, 1 ns the window), and
 * the debt in heavy barriers that sleepers may run up for a side's bias beyond what its
 * owner's claims saved: past it, they revoke it. A sleeper's barrier costs it 0.3 us here with
 * the owner off the CPU, 10 to 100 us with the owner running on the other CPU of a VM (an
 * IPI), and that interrupt costs the owner too: the debt counts the sleeper's time twice.
 * The executor's idle workers, a sleep every 9,000 submits, revoke their submitter's bias
 * after a few sleeps (their barriers had made its no-op tasks 40% slower); a stream's
 * consumer, a sleep every 1,000 to 800,000 items, keeps it. */
#define CONC__QUEUE_BIAS_ITEM_NS 4
#define CONC__QUEUE_BIAS_DEBT_NS (100 * CONC_US)

CONC_STATIC_ASSERT(offsetof(conc_queue_t, tail) % CONC_CACHELINE == 0 &&
                       offsetof(conc_queue_t, head) % CONC_CACHELINE == 0 &&
                       offsetof(conc_queue_t, not_empty) % CONC_CACHELINE == 0,
                   "tail, head and the eventcount words each start a cache line");
CONC_STATIC_ASSERT(offsetof(conc_queue_t, tail) >= CONC_CACHELINE &&
                       offsetof(conc_queue_t, head) - offsetof(conc_queue_t, tail) >=
                           CONC_CACHELINE &&
                       offsetof(conc_queue_t, not_empty) - offsetof(conc_queue_t, head) >=
                           CONC_CACHELINE,
                   "the read-only fields, tail, head and the words own a line each");
CONC_STATIC_ASSERT(sizeof(conc_queue_t) % CONC__QUEUE_SLOT_ALIGN == 0,
                   "the slots after the struct keep their stamps aligned");
CONC_STATIC_ASSERT(CONC_QUEUE_CAPACITY_MAX < (CONC__QUEUE_CLOSED >> 20),
                   "2^20 laps of the largest ring stay below CLOSED");

/* -------------------------------------------------------------------------------------------
 * Creation
 * ------------------------------------------------------------------------------------------- */
/* A slot's bytes: the stamp, then the item, rounded up to CONC__QUEUE_SLOT_ALIGN. A constant
 * expression for a constant size (the 8-byte fast path's assertion uses it). */
#define CONC__QUEUE_SLOT_SIZE(item_size)                                                           \
    (((uint64_t)(item_size) + CONC__QUEUE_STAMP_SIZE + CONC__QUEUE_SLOT_ALIGN - 1) &               \
     ~(uint64_t)(CONC__QUEUE_SLOT_ALIGN - 1))
CONC_INLINE uint64_t conc__queue_slot_size(size_t item_size) {
    return CONC__QUEUE_SLOT_SIZE(item_size);
}

/* Whether a size exceeds a 64-bit limit. A function, not `(uint64_t)n > limit` in place: where
 * size_t has 32 bits (armhf, i386) that comparison with a constant is always false, and gcc's
 * -Wtype-limits (in -Wextra) says so, which -Werror turns into a failed build of the user's
 * file. */
CONC_INLINE bool conc__queue_size_above(size_t n, uint64_t limit) {
    uint64_t wide = n;
    return wide > limit;
}

/* Bytes of the queue itself, from its aligned start to the end of the slots; 0 if invalid. */
CONC_INLINE size_t conc__queue_bytes(size_t capacity, size_t item_size) {
    if (capacity == 0 || item_size == 0 || conc__queue_size_above(item_size, UINT64_MAX >> 2))
        return 0;
    uint64_t slot = conc__queue_slot_size(item_size);
    /* room keeps bytes + CONC__QUEUE_ALIGN_SLACK (footprint) and create's rounding in size_t. */
    uint64_t room = (uint64_t)SIZE_MAX - sizeof(conc_queue_t) - CONC_CACHELINE;
    if ((uint64_t)capacity > room / slot ||
        conc__queue_size_above(capacity, CONC_QUEUE_CAPACITY_MAX))
        return 0;
    return sizeof(conc_queue_t) + (size_t)((uint64_t)capacity * slot);
}

/* Bytes from mem to the queue: 0 up to CONC__QUEUE_ALIGN_SLACK. The same in every process
 * that maps the memory (mappings start on page boundaries, pages are multiples of 64). */
CONC_INLINE size_t conc__queue_gap(const void *mem) {
    return (size_t)(-(uintptr_t)mem & (uintptr_t)(CONC_QUEUE_ALIGN - 1));
}

static inline size_t conc_queue_footprint(size_t capacity, size_t item_size) {
    size_t bytes = conc__queue_bytes(capacity, item_size);
    return bytes ? bytes + CONC__QUEUE_ALIGN_SLACK : 0;
}

/* The slot of position pos, where slot_shift is q->slot_shift (or that value as a constant:
 * see conc__queue_one_fast). */
CONC_INLINE unsigned char *conc__queue_slot_at(const conc_queue_t *q, uint64_t pos,
                                               uint64_t slot_shift) {
    uint64_t index = pos & (q->one_lap - 1);
    /* A shift is two cycles shorter than a multiply on the way to a stamp. */
    uint64_t offset = slot_shift ? index << slot_shift : index * q->slot_size;
    return (unsigned char *)(uintptr_t)(q + 1) + offset;
}
CONC_INLINE unsigned char *conc__queue_slot(const conc_queue_t *q, uint64_t pos) {
    return conc__queue_slot_at(q, pos, q->slot_shift);
}
CONC_INLINE uint64_t *conc__queue_stamp(unsigned char *slot) {
    return (uint64_t *)(void *)slot;
}

/* pos advanced by k <= capacity places: index wraps at capacity into the next lap. */
CONC_INLINE uint64_t conc__queue_advance(const conc_queue_t *q, uint64_t pos, uint64_t k) {
    uint64_t index = pos & (q->one_lap - 1);
    uint64_t lap = pos - index;
    index += k;
    if (index >= q->capacity) {
        index -= q->capacity;
        lap += q->one_lap;
    }
    return lap + index;
}

/* A slot at position p is ready for a producer when its stamp is p (written), and for a
 * consumer when it is p + 1 (published). */
#define CONC__QUEUE_WRITABLE 0u
#define CONC__QUEUE_READABLE 1u

/* How many slots from pos on (pos's own already checked: at least 1, at most n and capacity)
 * are ready for the same side, so that one claim can take them all. Acquire, per slot: a
 * producer's load is [queue.A1] (the consumer that emptied it is done reading), a consumer's is
 * [queue.A2] (the producer's copy-in is visible). */
CONC_INLINE uint64_t conc__queue_ready_run(const conc_queue_t *q, uint64_t pos, size_t n,
                                           unsigned ready) {
    uint64_t limit = n < q->capacity ? (uint64_t)n : q->capacity;
    uint64_t k = 1;
    while (k < limit) {
        uint64_t next = conc__queue_advance(q, pos, 1);
        if (conc_load(conc__queue_stamp(conc__queue_slot(q, next)), CONC_ACQUIRE) != next + ready)
            break;
        pos = next;
        k++;
    }
    return k;
}

/* Items from position a to position b (a at or before b, less than 2^20 laps apart). */
CONC_INLINE uint64_t conc__queue_distance(const conc_queue_t *q, uint64_t a, uint64_t b) {
    uint64_t mask = q->one_lap - 1;
    return ((b & ~mask) - (a & ~mask)) / q->one_lap * q->capacity + (b & mask) - (a & mask);
}

/* Not CONC_NODISCARD: the only error is EINVAL for arguments the caller chose (base.h). */
static inline int conc_queue_init_in(conc_queue_t **out, void *mem, size_t mem_size,
                                     size_t capacity, size_t item_size, int flags) {
    if (out) /* NULL on failure, as every create leaves it: a caller's cleanup may test it */
        *out = NULL;
    size_t need = conc__queue_bytes(capacity, item_size);
    size_t gap = mem ? conc__queue_gap(mem) : 0;
    if (!out || !mem || need == 0 || mem_size < gap || mem_size - gap < need ||
        (flags & ~CONC_SHARED) != 0)
        return EINVAL;
    conc_queue_t *q = (conc_queue_t *)(void *)((unsigned char *)mem + gap);
    memset(q, 0, sizeof *q);
    q->capacity = capacity;
    q->item_size = item_size;
    q->slot_size = conc__queue_slot_size(item_size);
    if ((q->slot_size & (q->slot_size - 1)) == 0)
        while ((1ull << q->slot_shift) < q->slot_size)
            q->slot_shift++;
    uint64_t lap = 1;
    while (lap <= q->capacity)
        lap <<= 1;
    q->one_lap = lap;
    q->footprint = need;
    q->flags = (uint32_t)(flags & CONC_SHARED);
    q->creator_pid = (int32_t)getpid();
    /* A queue between processes is never biased: the heavy barrier reaches one process. */
    uint64_t bias =
        CONC_QUEUE_BIAS && !(flags & CONC_SHARED) ? CONC__QUEUE_UNOWNED : CONC__QUEUE_REVOKED;
    q->tail_bias = bias;
    q->head_bias = bias;
    for (uint64_t i = 0; i < q->capacity; i++) /* lap 0: slot i writable at position i */
        conc_store(conc__queue_stamp(conc__queue_slot(q, i)), i, CONC_RELAXED);
    /* Release: pairs with attach's acquire, so a process that sees the magic sees the ring. */
    conc_store(&q->magic, CONC__QUEUE_MAGIC, CONC_RELEASE);
    *out = q;
    return 0;
}

CONC_NODISCARD static inline int conc_queue_create(conc_queue_t **out, size_t capacity,
                                                   size_t item_size) {
    if (out) /* NULL on failure, as in init_in */
        *out = NULL;
    size_t need = conc__queue_bytes(capacity, item_size);
    if (!out || need == 0)
        return EINVAL;
    /* With the slack, as footprint: a user's CONC_QUEUE_ALLOC may return memory at any
     * alignment (malloc's 16), and the queue sits at its first CONC_QUEUE_ALIGN boundary.
     * Rounded up to a multiple of the alignment, as C11's aligned_alloc wants. */
    size_t rounded =
        (need + CONC__QUEUE_ALIGN_SLACK + CONC_CACHELINE - 1) & ~(size_t)(CONC_CACHELINE - 1);
    if (rounded < need)
        return EINVAL;
    int saved_errno = conc_errno_save(); /* a failed allocation sets it: no conc call does */
    void *mem = CONC_QUEUE_ALLOC(rounded);
    int r = mem ? conc_queue_init_in(out, mem, rounded, capacity, item_size, 0) : ENOMEM;
    if (r == 0) /* destroy frees mem, not the queue's address: remember the gap */
        (*out)->allocated = 1 + (uint32_t)conc__queue_gap(mem);
    else if (mem)
        CONC_QUEUE_FREE(mem);
    conc_errno_restore(saved_errno);
    return r;
}

/* The queue that init_in built in mem, seen from a process that mapped it anywhere: at mem's
 * first CONC_QUEUE_ALIGN boundary, as init_in placed it (CAVEATS: where the queue sits). */
CONC_NODISCARD static inline conc_queue_t *conc_queue_attach(void *mem) {
    if (!mem)
        return NULL;
    conc_queue_t *q = (conc_queue_t *)(void *)((unsigned char *)mem + conc__queue_gap(mem));
    /* Hide the pointer's origin from the optimizer: gcc's object-size tracking otherwise
     * warns (-Wstringop-overflow) when mem is an offset into a mapping it sized itself. */
    __asm__("" : "+r"(q));
    /* Acquire: pairs with init_in's release of the magic. */
    return conc_load(&q->magic, CONC_ACQUIRE) == CONC__QUEUE_MAGIC ? q : NULL;
}

/* Frees a created queue. For init_in memory it only clears the magic (later attaches fail):
 * the memory is the caller's. A thread still registered as a sleeper (blocked in a push or
 * pop) is misuse that would sleep on freed memory: it aborts. Not for a CONC_SHARED queue,
 * whose words may still count a process killed while it slept (CAVEATS), nor in a forked
 * child, whose copy counts the parent's sleepers (no thread of the child sleeps there). */
static inline void conc_queue_destroy(conc_queue_t *q) {
    if (!q)
        return;
    if (conc_load(&q->magic, CONC_RELAXED) != CONC__QUEUE_MAGIC)
        CONC_ABORT("conc_queue_destroy: not a queue (destroyed twice?)");
    /* Relaxed: a waiter that has returned left before the caller learned it returned. */
    if (!(q->flags & CONC_SHARED) &&
        (conc_eventcount_waiters(conc_load(&q->not_empty, CONC_RELAXED)) |
         conc_eventcount_waiters(conc_load(&q->not_full, CONC_RELAXED))) != 0 &&
        q->creator_pid == (int32_t)getpid())
        CONC_ABORT("conc_queue_destroy: threads still blocked in a push or pop (close the queue "
                   "and let them return first)");
    conc_store(&q->magic, 0, CONC_RELAXED);
    if (q->allocated) {
        unsigned char *block = (unsigned char *)q - (q->allocated - 1); /* the allocator's */
        /* Hide the block's origin: gcc sees through an inlined destroy of an init_in queue to
         * the caller's static or stack array and warns (-Wfree-nonheap-object) on this call,
         * which q->allocated == 0 keeps it from ever making. */
        __asm__("" : "+r"(block));
        int saved_errno = conc_errno_save(); /* a user's CONC_QUEUE_FREE may set it */
        CONC_QUEUE_FREE(block);
        conc_errno_restore(saved_errno);
    }
}

/* -------------------------------------------------------------------------------------------
 * The ring (lock-free fast path)
 * ------------------------------------------------------------------------------------------- */
CONC_INLINE void conc__queue_copy(void *dst, const void *src, uint64_t n) {
    /* Hide where the pointers come from: inlined into a push of an 8-byte object, gcc -O3
     * otherwise warns (-Warray-bounds) about the 16-byte branch, which n never takes there. */
    __asm__("" : "+r"(dst), "+r"(src));
    /* Constant sizes become a register move; the common item sizes get one (8 bytes, the
     * executor's futures, handles and indices, travel as a word: conc__queue_word_in). */
    if (n == 16)
        memcpy(dst, src, 16);
    else if (n == 4)
        memcpy(dst, src, 4);
    else
        memcpy(dst, src, (size_t)n);
}

/* An 8-byte item travels as one word, which the ring reads and writes with relaxed atomics
 * (plain moves on x86 and arm64): a fast pop reads it before its claim (see the fast path),
 * and when that claim then fails the read may overlap the next lap's write of the slot. As
 * atomics the two are no data race; the failed pop drops what it read. */
CONC_INLINE uint64_t *conc__queue_item_word(unsigned char *slot) {
    return (uint64_t *)(void *)(slot + CONC__QUEUE_STAMP_SIZE);
}

/* The word a move carries: the producer's item (push), or the slot's (pop). */
CONC_INLINE uint64_t conc__queue_word_in(unsigned char *slot, bool push, const unsigned char *in) {
    uint64_t word;
    __asm__("" : "+r"(in)); /* as in conc__queue_copy: gcc warns of a smaller caller's object */
    if (push)
        memcpy(&word, in, sizeof word);
    else /* relaxed: ordered after the stamp's acquire [queue.A2] that let us here */
        word = conc_load(conc__queue_item_word(slot), CONC_RELAXED);
    return word;
}

/* Where the word goes: into the slot (push; relaxed, published by [queue.R1]) or to `out`. */
CONC_INLINE void conc__queue_word_out(unsigned char *slot, uint64_t word, bool push,
                                      unsigned char *out) {
    __asm__("" : "+r"(out)); /* see conc__queue_word_in */
    if (push)
        conc_store(conc__queue_item_word(slot), word, CONC_RELAXED);
    else
        memcpy(out, &word, sizeof word);
}

/* Hands a moved slot on with its next stamp. */
CONC_INLINE void conc__queue_publish(unsigned char *slot, uint64_t next_stamp) {
    CONC_CHAOS_POINT();
    /* [queue.R1] release (producer): pairs with the consumer's [queue.A2]: the item is in.
     * [queue.R2] release (consumer): pairs with the next lap's producer [queue.A1]: we are
     * done reading, the slot may be overwritten. */
    conc_store(conc__queue_stamp(slot), next_stamp, CONC_RELEASE);
}

/* Moves one item through a claimed slot: a producer's copy-in (push: from `in`) or a consumer's
 * copy-out (to `out`), then publishes the slot with its next stamp. */
CONC_INLINE void conc__queue_move_at(unsigned char *slot, uint64_t item_size, uint64_t next_stamp,
                                     bool push, unsigned char *out, const unsigned char *in) {
    if (item_size == 8)
        conc__queue_word_out(slot, conc__queue_word_in(slot, push, in), push, out);
    else if (push)
        conc__queue_copy(slot + CONC__QUEUE_STAMP_SIZE, in, item_size);
    else
        conc__queue_copy(out, slot + CONC__QUEUE_STAMP_SIZE, item_size);
    conc__queue_publish(slot, next_stamp);
}

/* The stamp a slot gets once its item at pos is moved: readable (pos + 1) after a push,
 * writable for the next lap (pos + one_lap) after a pop. */
CONC_INLINE uint64_t conc__queue_next_stamp(const conc_queue_t *q, uint64_t pos, bool push) {
    return push ? pos + 1 : pos + q->one_lap;
}

/* The same through the slot claimed at pos. */
CONC_INLINE void conc__queue_move_one(conc_queue_t *q, uint64_t pos, bool push, unsigned char *out,
                                      const unsigned char *in) {
    conc__queue_move_at(conc__queue_slot(q, pos), q->item_size,
                        conc__queue_next_stamp(q, pos, push), push, out, in);
}

/* The same for the k slots claimed from pos, each published as soon as it is done. */
CONC_INLINE void conc__queue_move_claimed(conc_queue_t *q, uint64_t pos, uint64_t k, bool push,
                                          unsigned char *out, const unsigned char *in) {
    for (uint64_t i = 0; i < k; i++) {
        conc__queue_move_one(q, pos, push, push ? NULL : out + i * q->item_size,
                             push ? in + i * q->item_size : NULL);
        pos = conc__queue_advance(q, pos, 1);
    }
}

/* Waiting for one peer between its claim and its publish: short pauses, then yield the CPU
 * (on an oversubscribed machine that peer may be preempted). False once the deadline has
 * passed in the yield phase: that peer may never finish (a process stopped or killed there),
 * and an until form returns ETIMEDOUT at its deadline all the same. */
CONC_INLINE bool conc__queue_backoff(unsigned *round, int64_t deadline) {
    if (*round < CONC__QUEUE_BACKOFF_ROUNDS) {
        for (unsigned i = 0; i < (1u << *round); i++)
            conc_cpu_relax();
        (*round)++;
        return true;
    }
    if (conc_deadline_passed(deadline))
        return false;
    sched_yield();
    return true;
}

/* -------------------------------------------------------------------------------------------
 * The bias: a side with one claimer claims without a CAS
 *
 * A locked CAS is most of an item's cost when nothing contends (5 ns of 5.5 here, a side):
 * with one producer, or one consumer, nobody needs it. So the first thread to claim on a
 * side owns that side's bias and claims with a plain store, inside a window it opens and
 * closes with plain stores too; a second claimer, or close, revokes the bias, and from then
 * on every claim of that side is a CAS (for good: a queue that had two producers once is
 * likely to have them again). After Dice, Moir and Scherer's quickly reacquirable locks and
 * Java's biased locking, with membarrier(2) as the revoker's fence (base.h's asymmetric
 * barrier).
 *
 *   owner (every claim)                           revoker (another claimer, or close: once)
 *   ------------------------------------------    ------------------------------------------
 *   bias == me, busy == 0:                        CAS bias: owner -> REVOKING     [queue.B2]
 *   store busy = 1                  [queue.B1]    heavy barrier
 *   light barrier                                 wait until busy == 0            [queue.B3]
 *   bias still me? else busy = 0, start over        (acquire: the owner's store of the end)
 *   load end, check the stamp, store end + k      CAS REVOKING -> REVOKED (rel.)  [queue.B6]
 *   store busy = 0 (release)        [queue.B3]    claims: CAS, once bias reads REVOKED
 *   light barrier; copy, publish; notify            (acquire: the owner's last store first)
 *
 *   B1 and B2 are an asymmetric Dekker pair: either the revoker sees busy = 1 and waits for
 *   the window to close, or the owner sees REVOKING and claims nothing with a store. So no
 *   store of the owner's ever overwrites a CAS. Any claimer that finds REVOKING finishes the
 *   revocation the same way (its own barrier, the wait, the CAS), so a revoker preempted or
 *   interrupted holds up nobody. REVOKING carries the owner's fork generation, as the owner
 *   value does: an owner of an older generation ran in an ancestor process (this is a forked
 *   child's copy), and nobody waits for its window.
 *
 *   The sleepers of the other side (the eventcount's timeline, below) relied on the claim
 *   being a seq_cst RMW: the notifier's half of their Dekker pair. A plain store then a load
 *   of the word may be reordered (a store buffer), so a registered sleeper issues the heavy
 *   barrier before its re-check [queue.B4] while the side is biased: either the owner's load
 *   sees the registration, or the re-check sees the claim (end moved: it waits for the
 *   publish). Once the bias reads REVOKED, B3 and B6 carry the owner's last claim to the
 *   re-check, and later claims are CASes again. A sleeper that holds a pending wake re-checks
 *   after taking it, with no barrier of its own: a notifier that finds sleepers registered
 *   fences before it trusts such a wake [queue.N2] (tests/models/queue_bias_pending.pml).
 *   A barrier costs a sleeper 0.3 us with the owner off the CPU and 10 to 100 us with it
 *   running on another CPU (a VM's IPI): a side whose
 *   sleepers pay more in barriers than its owner's claims saved (CONC__QUEUE_BIAS_DEBT_NS)
 *   is revoked, so a queue that hands over one item at a time ends with CASes, and a stream
 *   keeps its bias. tests/models/queue_bias.pml checks both pairs, with the owner's stores
 *   in a store buffer.
 *
 *   Where membarrier(2) is refused (before Linux 4.14, seccomp, some emulators) the bias is
 *   never taken; a queue between processes (CONC_SHARED) never has one; CONC_QUEUE_BIAS 0
 *   turns it off.
 * ------------------------------------------------------------------------------------------- */
CONC_INLINE uint64_t *conc__queue_bias_of(conc_queue_t *q, bool push) {
    return push ? &q->tail_bias : &q->head_bias;
}

CONC_INLINE uint32_t *conc__queue_busy_of(conc_queue_t *q, bool push) {
    return push ? &q->tail_busy : &q->head_busy;
}

/* The calling thread as a side's owner: base.h's token, and the fork generation, so that in
 * a forked child no thread (the forking one, or a new one on a parent thread's old stack)
 * passes for an owner of the parent's: the child revokes that bias instead. */
CONC_INLINE uint64_t conc__queue_self(void) {
    return (uint64_t)conc_thread_token() ^
           ((uint64_t)conc_fork_generation() << CONC__QUEUE_GEN_SHIFT);
}

/* Whether a bias value is a revocation under way (of an owner of any generation). */
CONC_INLINE bool conc__queue_revoking(uint64_t bias) {
    return (bias & ~CONC__QUEUE_GEN_MASK) == CONC__QUEUE_REVOKING;
}

/* How a claim on a side is made now (conc__queue_claim_way). */
#define CONC__QUEUE_BY_CAS 0    /* the bias is revoked */
#define CONC__QUEUE_BY_STORE 1  /* the caller owns it and its window is open */
#define CONC__QUEUE_UNSETTLED 2 /* neither yet: conc__queue_bias_settle_slow, then ask again */

/* Opens the owner's window. False when the caller does not own the bias (read as `bias`), a
 * revoker came first, or the caller's own window is open already (a signal handler inside a
 * claim: it waits for itself, as CAVEATS says). */
CONC_INLINE bool conc__queue_window_open(conc_queue_t *q, bool push, uint64_t bias) {
    uint32_t *busy = conc__queue_busy_of(q, push);
    if (CONC_UNLIKELY(bias != conc__queue_self() || conc_load(busy, CONC_RELAXED) != 0))
        return false;
    /* [queue.B1] relaxed, then the light barrier: the revoker's heavy barrier orders it
     * before our load of the bias below (base.h). */
    conc_store(busy, 1u, CONC_RELAXED);
    conc_light_barrier();
    if (CONC_LIKELY(conc_load(conc__queue_bias_of(q, push), CONC_RELAXED) == bias))
        return true;
    conc_store(busy, 0u, CONC_RELEASE); /* [queue.B3]: we stored nothing */
    return false;
}

CONC_INLINE void conc__queue_window_close(conc_queue_t *q, bool push) {
    /* [queue.B3] release: pairs with the revoker's acquire, so it sees our store of the end. */
    conc_store(conc__queue_busy_of(q, push), 0u, CONC_RELEASE);
    /* A release store lets a later load move before it: the notify's load of the other
     * side's word must stay after our store of the end (the sleepers' pair, [queue.B4]). */
    conc_light_barrier();
}

/* [queue.B6] acquire on REVOKED: the owner's last store of the end comes before our CAS in
 * the end's order, so the CAS cannot be overwritten. */
CONC_INLINE int conc__queue_claim_way(conc_queue_t *q, bool push) {
    uint64_t bias = conc_load(conc__queue_bias_of(q, push), CONC_ACQUIRE);
    if (CONC_LIKELY(bias == CONC__QUEUE_REVOKED))
        return CONC__QUEUE_BY_CAS;
    return conc__queue_window_open(q, push, bias) ? CONC__QUEUE_BY_STORE : CONC__QUEUE_UNSETTLED;
}

/* Takes the claim at *pos for the k slots from it: a store by the owner (its window then
 * closes), else a CAS, which fails when another claim came first (*pos refreshed). */
CONC_INLINE bool conc__queue_take(conc_queue_t *q, uint64_t *end, uint64_t *pos, uint64_t next,
                                  int way, bool push) {
    if (way == CONC__QUEUE_BY_STORE) {
        /* Relaxed: nobody else writes the end while the window is open; B3 publishes it. */
        conc_store(end, next, CONC_RELAXED);
        conc__queue_window_close(q, push);
        return true;
    }
    /* [queue.C1] (tail) / [queue.C2] (head) seq_cst: see conc__queue_claim. */
    return conc_cas(end, pos, next, CONC_SEQ_CST, CONC_RELAXED);
}

/* Finishes a revocation that a revoker began (the bias reads `revoking`): the heavy barrier,
 * the owner's window closed, REVOKED. Any claimer that finds REVOKING finishes it too, so a
 * revoker preempted, or interrupted by a signal handler that uses the queue, holds up nobody.
 * The barrier is as good from a helper: it comes after a load that saw REVOKING. 0, or
 * ETIMEDOUT once the deadline passed while the owner's window stayed open (the revocation
 * stays under way: the next claimer finishes it). */
CONC_COLD int conc__queue_bias_finish_slow(conc_queue_t *q, bool push, uint64_t revoking,
                                           int64_t deadline) {
    conc_heavy_barrier("conc_queue (revoking a side's bias)");
    /* [queue.B3] acquire: once busy reads 0, the owner's last store of the end is ours. Its
     * window holds no wait: a few ns, or the rest of its time slice if it was preempted. An
     * owner of an older fork generation ran in an ancestor process: here nobody will close
     * a window it left open, nor store the end again. */
    bool owner_here = (revoking & CONC__QUEUE_GEN_MASK) ==
                      ((uint64_t)conc_fork_generation() << CONC__QUEUE_GEN_SHIFT);
    unsigned rounds = 0;
    while (owner_here && conc_load(conc__queue_busy_of(q, push), CONC_ACQUIRE) != 0)
        if (!conc__queue_backoff(&rounds, deadline))
            return ETIMEDOUT;
    /* [queue.B6] release: pairs with the claimers' acquire of REVOKED. Fails when a helper
     * finished first. */
    (void)conc_cas(conc__queue_bias_of(q, push), &revoking, CONC__QUEUE_REVOKED, CONC_RELEASE,
                   CONC_RELAXED);
    return 0;
}

/* A claimer whose claim way came back UNSETTLED, or one that needs the bias gone (may_own
 * false: close, a sleeper in debt): one step towards a way, then the caller asks again. The
 * first claimer of a side takes the bias where the heavy barrier works; any other claimer
 * revokes it, or finishes a revocation under way. 0, or ETIMEDOUT (the deadline passed
 * while the owner's window stayed open). */
CONC_COLD int conc__queue_bias_settle_slow(conc_queue_t *q, bool push, bool may_own,
                                           int64_t deadline) {
    uint64_t *bias_at = conc__queue_bias_of(q, push);
    /* Acquire: what the claimers before us did is ours; the CASes below decide. */
    uint64_t bias = conc_load(bias_at, CONC_ACQUIRE);
    uint64_t self = conc__queue_self();
    if (bias == CONC__QUEUE_UNOWNED) {
        /* A CONC_SHARED queue starts REVOKED; checked again for one that memory from
         * elsewhere made (the heavy barrier reaches one process). A thread pointer with bits
         * in the generation's place (a stack mapped above 2^48) could not be told apart. */
        bool own = may_own && !(q->flags & CONC_SHARED) &&
                   ((uint64_t)conc_thread_token() & CONC__QUEUE_GEN_MASK) == 0 &&
                   conc_heavy_barrier_available();
        /* [queue.B5] seq_cst: a sleeper that read UNOWNED after its registration [queue.B4]
         * skipped the barrier; this CAS comes after that read in the one seq_cst order, and
         * so does every later load of the word by the new owner (its notify's load is
         * seq_cst): it sees the registration. */
        (void)conc_cas(bias_at, &bias, own ? self : CONC__QUEUE_REVOKED, CONC_SEQ_CST,
                       CONC_RELAXED);
        return 0;
    }
    if (conc__queue_revoking(bias))
        return conc__queue_bias_finish_slow(q, push, bias, deadline);
    if (bias == self && may_own) {
        /* Our own window is open: a signal handler inside a claim of ours waits for itself
         * (CAVEATS), as for a peer mid-copy. */
        unsigned rounds = 0;
        while (conc_load(conc__queue_busy_of(q, push), CONC_RELAXED) != 0 &&
               conc_load(bias_at, CONC_RELAXED) == bias)
            if (!conc__queue_backoff(&rounds, deadline))
                return ETIMEDOUT;
        return 0;
    }
    if (bias == CONC__QUEUE_REVOKED)
        return 0;
    /* [queue.B2] seq_cst: the revoker's store of the Dekker pair; the heavy barrier that
     * follows orders it before our loads of busy. The owner's generation goes along, so a
     * helper knows whether the owner runs in this process. Failure: the bias changed. */
    uint64_t revoking = (bias & CONC__QUEUE_GEN_MASK) | CONC__QUEUE_REVOKING;
    if (conc_cas(bias_at, &bias, revoking, CONC_SEQ_CST, CONC_RELAXED))
        return conc__queue_bias_finish_slow(q, push, revoking, deadline);
    return 0;
}

/* Until the side's bias is revoked (close: its RMW on tail must not meet an owner's store;
 * a sleeper in debt). 0, or ETIMEDOUT at the deadline (see settle). */
CONC_COLD int conc__queue_bias_drop_slow(conc_queue_t *q, bool push, int64_t deadline) {
    /* Acquire on REVOKED ([queue.B6]): the owner's last store of the end comes first. */
    while (conc_load(conc__queue_bias_of(q, push), CONC_ACQUIRE) != CONC__QUEUE_REVOKED)
        if (conc__queue_bias_settle_slow(q, push, false, deadline) == ETIMEDOUT)
            return ETIMEDOUT;
    return 0;
}

/* The way a try claims on its side (conc__queue_claim_way), the bias settled first where it
 * must be: BY_CAS, BY_STORE (the window open), or -1 once the deadline passed while an
 * owner's window stayed open. */
CONC_INLINE int conc__queue_settled_way(conc_queue_t *q, bool push, int64_t deadline) {
    int way;
    while (CONC_UNLIKELY((way = conc__queue_claim_way(q, push)) == CONC__QUEUE_UNSETTLED))
        if (conc__queue_bias_settle_slow(q, push, true, deadline) == ETIMEDOUT)
            return -1;
    return way;
}

/* [queue.B4] A sleeper of the other side has registered: before its re-check, the owner's
 * plain claims must be ordered against its registration (the timeline above). Costs the
 * sleeper a heavy barrier while the side is biased, and revokes the bias once sleepers have
 * paid more in barriers than the owner's claims saved. */
CONC_COLD void conc__queue_bias_fence_slow(conc_queue_t *q, bool push, int64_t deadline) {
    /* seq_cst: after the registration [eventcount.W1] in the one order; acquire on REVOKED
     * (B6), so the re-check sees the owner's last claim. */
    uint64_t bias = conc_load(conc__queue_bias_of(q, push), CONC_SEQ_CST);
    if (bias == CONC__QUEUE_UNOWNED || bias == CONC__QUEUE_REVOKED)
        return;
    uint64_t *paid_at = push ? &q->tail_paid_at : &q->head_paid_at;
    uint32_t *debt_at = push ? &q->tail_debt : &q->head_debt;
    /* Relaxed, all: hints, which a race between two sleepers may blur, never unsafely. */
    uint64_t at = conc_load(push ? &q->tail : &q->head, CONC_RELAXED) & ~CONC__QUEUE_CLOSED;
    uint64_t from = conc_load(paid_at, CONC_RELAXED);
    uint64_t moved = at > from ? conc__queue_distance(q, from, at) : 0;
    int64_t debt = (int64_t)conc_load(debt_at, CONC_RELAXED);
    debt = moved >= (uint64_t)(debt / CONC__QUEUE_BIAS_ITEM_NS)
               ? 0
               : debt - (int64_t)moved * CONC__QUEUE_BIAS_ITEM_NS;
    /* In debt: revoke (its barrier, then B3/B6, order the owner's claims as a fence would).
     * At the deadline, with the owner's window still open, a barrier of our own does. */
    if (debt > CONC__QUEUE_BIAS_DEBT_NS && conc__queue_bias_drop_slow(q, push, deadline) == 0)
        return;
    int64_t before = conc_now();
    conc_heavy_barrier("conc_queue (a sleeper's fence against a side's bias)");
    debt += 2 * (conc_now() - before); /* ours, and about as much again for the owner's CPU,
                                        * which the barrier interrupted if it ran */
    conc_store(debt_at, (uint32_t)(debt < (int64_t)UINT32_MAX ? debt : (int64_t)UINT32_MAX),
               CONC_RELAXED);
    conc_store(paid_at, at, CONC_RELAXED);
}

/* The claim either side makes once the slot at *pos is ready for it: extend the claim over the
 * ready slots after it (a batch), take them all with one CAS on `end` (tail for producers, head
 * for consumers), or the bias owner's store (`way`), then move the items. False when another
 * claim came first: the failed CAS has refreshed *pos. */
CONC_INLINE bool conc__queue_claim(conc_queue_t *q, uint64_t *end, uint64_t *pos, size_t n,
                                   bool push, unsigned char *out, const unsigned char *in,
                                   size_t *done, int way) {
    uint64_t k =
        conc__queue_ready_run(q, *pos, n, push ? CONC__QUEUE_WRITABLE : CONC__QUEUE_READABLE);
    CONC_CHAOS_POINT();
    /* [queue.C1] (tail) seq_cst: the claim is the event sleeping consumers wait for (a consumer
     * that sees tail past head waits for the publish rather than sleeping), and it is the
     * notifier's half of the Dekker pair with the waiter's [eventcount.W1]: it forbids our later
     * load of not_empty [eventcount.F1] from being ordered before it. [queue.C2] (head): the same
     * for sleeping producers. On x86 every CAS is a full barrier anyway, so this costs nothing
     * there. The data is ordered by the stamps [queue.A1]/[queue.R1] and [queue.A2]/[queue.R2].
     * A side's bias owner stores instead ("The bias": [queue.B4] stands in for the pair). */
    if (!conc__queue_take(q, end, pos, conc__queue_advance(q, *pos, k), way, push))
        return false;
    conc__queue_move_claimed(q, *pos, k, push, out, in);
    *done = (size_t)k;
    return true;
}

/* One yield, booked in a side's policy (base.h) from `before` (a clock read the caller has
 * made), credited with how far `watched` moved meanwhile: the other side's end for a waiter
 * (what frees it), the side's own end for a step aside (its peers' claims). Relaxed loads: a
 * hint, as the policy is. False when this yield turned the side's yields off. */
CONC_INLINE bool conc__queue_yield_booked(conc_queue_t *q, conc_yield_policy_t *yields,
                                          const uint64_t *watched, int64_t before) {
    uint64_t from = conc_load(watched, CONC_RELAXED) & ~CONC__QUEUE_CLOSED;
    sched_yield();
    int64_t after = conc_now();
    uint64_t moved =
        conc__queue_distance(q, from, conc_load(watched, CONC_RELAXED) & ~CONC__QUEUE_CLOSED);
    return conc_yield_account(yields, before, after, moved, CONC__QUEUE_YIELD_ITEM_NS);
}

/* A blocking call whose claim a peer of its own side took: two of that side run at once, on
 * two CPUs, and each claim moves the end's cache line from one to the other (here 200 ns a
 * move, 5-15% of the claims lost in a 4P4C run on 2 CPUs, 60-150 ns an item). With more
 * threads than CPUs, a yield lets a thread of the other side run here instead, and the two
 * CPUs pair a producer with a consumer, each end's line staying put (15-20 ns an item, claims
 * lost on 0.1 in 1,000). With no other thread to run the yield is a short backoff. Under the
 * side's yield policy, credited by the claims its peers made meanwhile: a yield that gives a
 * time slice away to another program while this end stands still turns yields off. The tries
 * never step aside: they promise to wait for nothing but a peer mid-copy. */
CONC_COLD void conc__queue_step_aside_slow(conc_queue_t *q, bool push) {
    if (CONC_QUEUE_YIELDS <= 0)
        return; /* the build wants no yields */
    conc_yield_policy_t *yields = push ? &q->push_yields : &q->pop_yields;
    int64_t before = conc_now();
    if (conc_yield_allowed(yields, before))
        (void)conc__queue_yield_booked(q, yields, push ? &q->tail : &q->head, before);
}

/* One claim of up to n (>= 1) slots at tail. 0 (*done >= 1), EAGAIN (full), EPIPE, ETIMEDOUT
 * (the deadline passed while a consumer that claimed the slot at tail still copies it out).
 * step_aside (the blocking forms): yield when a producer's claim came first. */
static inline int conc__queue_try_push_n(conc_queue_t *q, const unsigned char *items, size_t n,
                                         size_t *done, int64_t deadline, bool step_aside) {
    uint64_t one_lap = q->one_lap;
    unsigned round = 0;
    *done = 0;
    for (;;) {
        int way = conc__queue_settled_way(q, true, deadline);
        if (CONC_UNLIKELY(way < 0))
            return ETIMEDOUT; /* an owner's window stayed open past the deadline */
        uint64_t tail = conc_load(&q->tail, CONC_RELAXED);
        unsigned char *slot = conc__queue_slot(q, tail);
        /* [queue.A1] acquire: pairs with [queue.R2], the consumer that freed this slot a lap ago,
         * so its copy-out is finished before our copy-in. No stamp has bit 63: CLOSED in tail
         * (only ever with the bias revoked, close's first step) fails this test. */
        uint64_t stamp = conc_load(conc__queue_stamp(slot), CONC_ACQUIRE);
        if (CONC_LIKELY(stamp == tail)) {
            uint64_t claimed_at = tail;
            if (conc__queue_claim(q, &q->tail, &tail, n, true, NULL, items, done, way))
                return 0;
            /* tail refreshed (CLOSED too, if close came first); unchanged: a spurious failure */
            if (step_aside && (tail & ~CONC__QUEUE_CLOSED) != claimed_at)
                conc__queue_step_aside_slow(q, true);
            continue;
        }
        if (way == CONC__QUEUE_BY_STORE)
            conc__queue_window_close(q, true);
        if (CONC_UNLIKELY(tail & CONC__QUEUE_CLOSED))
            return EPIPE;
        bool peer_copying = false; /* else our tail is stale: another producer moved it on */
        bool item_in = stamp + one_lap == tail + 1;
        if (item_in || stamp + one_lap == tail) {
            /* The slot is still the previous lap's: its item is in, or its producer is still
             * copying in (preempted, or stopped for good). Full if head is exactly one lap
             * behind. Otherwise a consumer has claimed that item and is copying it out (we wait
             * for it: never EAGAIN once a consumer has claimed), or, with the producer still
             * copying in, our tail is stale (no consumer passes that slot while tail is current).
             * Seq_cst: a registered waiter's re-check reads head here after its
             * [eventcount.W1], the other half of [queue.C2]/[eventcount.F1]. */
            uint64_t head = conc_load(&q->head, CONC_SEQ_CST);
            if (head + one_lap == tail)
                return EAGAIN;
            peer_copying = item_in;
        }
        /* Only a peer mid-copy may end an until form at its deadline: contention never does. */
        if (!conc__queue_backoff(&round, peer_copying ? deadline : CONC_FOREVER))
            return ETIMEDOUT;
    }
}

/* One claim of up to n (>= 1) items at head. 0 (*done >= 1), EAGAIN (empty), EPIPE, ETIMEDOUT
 * (the deadline passed while a producer that claimed the slot at head still copies in).
 * step_aside: as for a push. */
static inline int conc__queue_try_pop_n(conc_queue_t *q, unsigned char *items, size_t n,
                                        size_t *done, int64_t deadline, bool step_aside) {
    unsigned round = 0;
    *done = 0;
    for (;;) {
        int way = conc__queue_settled_way(q, false, deadline);
        if (CONC_UNLIKELY(way < 0))
            return ETIMEDOUT; /* an owner's window stayed open past the deadline */
        uint64_t head = conc_load(&q->head, CONC_RELAXED);
        unsigned char *slot = conc__queue_slot(q, head);
        /* [queue.A2] acquire: pairs with [queue.R1], the producer's publish: its copy-in is
         * visible. */
        uint64_t stamp = conc_load(conc__queue_stamp(slot), CONC_ACQUIRE);
        if (CONC_LIKELY(stamp == head + 1)) {
            uint64_t claimed_at = head;
            if (conc__queue_claim(q, &q->head, &head, n, false, items, NULL, done, way))
                return 0;
            if (step_aside && head != claimed_at)
                conc__queue_step_aside_slow(q, false);
            continue;
        }
        if (way == CONC__QUEUE_BY_STORE)
            conc__queue_window_close(q, false);
        bool peer_copying = false; /* else our head is stale: another consumer moved it on */
        bool unpublished = stamp == head;
        if (unpublished || stamp + q->one_lap == head + 1) {
            /* Nothing published at head: this lap's item is not in yet, or the previous lap's
             * consumer is still copying out (preempted, or stopped for good). Empty if tail is
             * here too. Otherwise a producer has claimed the slot and is copying in (we wait
             * for it), or, with the previous consumer still there, our head is stale (no
             * producer passes that slot while head is current). Seq_cst: a registered waiter's
             * re-check reads tail here after its [eventcount.W1], the other half of
             * [queue.C1]/[eventcount.F1]. When tail carries CLOSED, that is tail's final value:
             * EPIPE is exact. */
            uint64_t tail = conc_load(&q->tail, CONC_SEQ_CST);
            if ((tail & ~CONC__QUEUE_CLOSED) == head)
                return (tail & CONC__QUEUE_CLOSED) ? EPIPE : EAGAIN;
            peer_copying = unpublished;
        }
        /* Only a peer mid-copy may end an until form at its deadline: contention never does. */
        if (!conc__queue_backoff(&round, peer_copying ? deadline : CONC_FOREVER))
            return ETIMEDOUT;
    }
}

/* One item, the common case: the slot at the end's position (tail for a push, head for a pop)
 * is ready and the claim wins. The n == 1 case of the tries above without their loops;
 * anything else (full, empty, closed, a lost race, a peer mid-copy) returns false and the
 * caller takes the general path (CLOSED in tail: no stamp has bit 63). push, the unused
 * pointer, and item_size and slot_shift (the queue's) are constants once inlined. */
CONC_INLINE bool conc__queue_one_fast_sized(conc_queue_t *q, bool push, unsigned char *out,
                                            const unsigned char *in, uint64_t item_size,
                                            uint64_t slot_shift) {
    uint64_t *end = push ? &q->tail : &q->head;
    int way = conc__queue_claim_way(q, push); /* the bias owner's store, or the CAS */
    if (CONC_UNLIKELY(way == CONC__QUEUE_UNSETTLED))
        return false;
    uint64_t pos = conc_load(end, CONC_RELAXED);
    unsigned char *slot = conc__queue_slot_at(q, pos, slot_shift);
    /* [queue.A1] / [queue.A2] acquire, as in the tries: the freeing consumer's copy-out is
     * done (push), the producer's copy-in is visible (pop). */
    uint64_t stamp = conc_load(conc__queue_stamp(slot), CONC_ACQUIRE);
    if (CONC_UNLIKELY(stamp != pos + (push ? CONC__QUEUE_WRITABLE : CONC__QUEUE_READABLE))) {
        if (way == CONC__QUEUE_BY_STORE)
            conc__queue_window_close(q, push);
        return false;
    }
    /* What the move needs, computed before the claim (DESIGN: no load passes the locked CAS).
     * That includes an 8-byte item: the producer's, and the slot's for a pop, as ck_ring's
     * dequeue copies before its CAS. The claim's success proves the slot's word is the item we
     * checked the stamp of: head was pos from our load to our CAS (positions never repeat), so
     * no other consumer claimed pos, and the slot is not written again before our [queue.R2]. */
    uint64_t next_stamp = conc__queue_next_stamp(q, pos, push);
    uint64_t word = item_size == 8 ? conc__queue_word_in(slot, push, in) : 0;
    CONC_CHAOS_POINT();
    /* [queue.C1] / [queue.C2] seq_cst, as in conc__queue_claim (the notifier's half of the
     * Dekker pair), or the owner's store. Success means the position was still the one whose
     * stamp we checked. */
    if (CONC_UNLIKELY(!conc__queue_take(q, end, &pos, conc__queue_advance(q, pos, 1), way, push)))
        return false;
    if (item_size == 8) {
        conc__queue_word_out(slot, word, push, out);
        conc__queue_publish(slot, next_stamp); /* [queue.R1] / [queue.R2] */
    } else {
        conc__queue_move_at(slot, item_size, next_stamp, push, out, in);
    }
    return true;
}

/* 8-byte items (pointers, handles, indices: the executor's futures) get a copy of the fast
 * path with their sizes as constants: a shift by 4 and a register move, where the general copy
 * shifts by a loaded count and tests the size before it copies. With both threads on one CPU,
 * where an item costs its instructions and nothing else, that was 1.0 ns of 10.7 an item. */
#define CONC__QUEUE_SLOT8_SHIFT 4
CONC_STATIC_ASSERT(CONC__QUEUE_SLOT_SIZE(8) == 1u << CONC__QUEUE_SLOT8_SHIFT,
                   "an 8-byte item's slot is 16 bytes");

CONC_INLINE bool conc__queue_one_fast(conc_queue_t *q, bool push, unsigned char *out,
                                      const unsigned char *in) {
    if (CONC_LIKELY(q->item_size == 8))
        return conc__queue_one_fast_sized(q, push, out, in, 8, CONC__QUEUE_SLOT8_SHIFT);
    return conc__queue_one_fast_sized(q, push, out, in, q->item_size, q->slot_shift);
}

/* The empty asm hides where q came from: inlined after a call that may return NULL (attach),
 * gcc 12 would warn (-Wstringop-overflow) about the NULL path. */
CONC_INLINE bool conc__queue_push_one_fast(conc_queue_t *q, const void *item) {
    __asm__("" : "+r"(q));
    return conc__queue_one_fast(q, true, NULL, (const unsigned char *)item);
}

CONC_INLINE bool conc__queue_pop_one_fast(conc_queue_t *q, void *item) {
    __asm__("" : "+r"(q)); /* see push */
    return conc__queue_one_fast(q, false, (unsigned char *)item, NULL);
}

/* -------------------------------------------------------------------------------------------
 * The blocking layer: an eventcount per side (base.h's, see DESIGN).
 *
 *   notifier (pusher, for sleeping poppers)        waiter (found the ring empty)
 *   -------------------------------------------    ------------------------------------------
 *                                                  v = enter(word)          [eventcount.W1]
 *   CAS tail: claim the slot       [queue.C1]
 *   copy in, store stamp (publish) [queue.R1]
 *   notify(word, k)                [eventcount.F1] re-check: stamp, then tail     seq_cst
 *     waiters > pending: step the word                (tail past head: wait for the publish)
 *     [eventcount.N1], futex_wake                  wait(word, &v): take a pending wake, or
 *                                                    futex_wait(word, v)
 *
 *   [eventcount.W1] and [queue.C1] + [eventcount.F1] are the two halves of a Dekker pair
 *   (seq_cst: one total order): either the notifier's load sees the registration (and wakes),
 *   or the waiter's re-check, after W1, sees the claim (and waits for that item instead of
 *   sleeping). Poppers notify sleeping pushers the same way with [queue.C2] on head. The
 *   rest of the protocol (pending wakes, the sequence step, close) is base.h's eventcount,
 *   whose proof is tests/models/queue.pml.
 * ------------------------------------------------------------------------------------------- */
CONC_INLINE int conc__queue_futex_flags(const conc_queue_t *q) {
    return conc_futex_flags(q->flags, CONC_SHARED);
}

/* With sleepers registered, after a claim that may have been a bias owner's plain store: the
 * word again after a fence [queue.N2]. A notifier that finds every sleeper with a wake
 * pending wakes nobody, counting on the holder of that wake to re-check after taking it (its
 * seq_cst CAS): a pair with our store of the end that only a fence completes (the heavy
 * barrier [queue.B4] covers a sleeper's registration, not its later takes). Found by a
 * review; the model is tests/models/queue_bias_pending.pml. */
CONC_COLD void conc__queue_notify_fenced_slow(conc_queue_t *q, uint32_t *word, size_t k) {
    conc_fence_seq_cst(word);
    uint32_t w = conc_eventcount_wants_wake(word);
    if (w != 0)
        conc_eventcount_wake_slow(word, w, k, conc__queue_futex_flags(q));
}

/* After k items (or slots) became available to the side that sleeps on word. The caller's
 * claim [queue.C1]/[queue.C2] was the seq_cst RMW that the eventcount's notify needs, or a
 * bias owner's store (the sleepers' barrier [queue.B4] and the fence above stand in). */
CONC_INLINE void conc__queue_notify(conc_queue_t *q, uint32_t *word, size_t k) {
    /* [eventcount.F1] seq_cst, as conc_eventcount_wants_wake's; nobody registered, the busy
     * case, is one test and no fence. */
    if (CONC_UNLIKELY(conc_eventcount_waiters(conc_load(word, CONC_SEQ_CST)) != 0))
        conc__queue_notify_fenced_slow(q, word, k);
}

/* The blocking loop shared by every blocking form. try_once is the side's one-claim try; it
 * returns 0/EPIPE/ETIMEDOUT (done), EAGAIN (wait). */
typedef int (*conc__queue_try_fn)(conc_queue_t *q, unsigned char *items, size_t n, size_t *done,
                                  int64_t deadline);

/* Whether the one stamp this side waits for has changed (the slot at its position is ready)
 * or the queue closed: then a try may succeed. Relaxed: a hint; the try decides. Read-only,
 * and no load of the other side's head/tail line, which its owner writes on every operation. */
CONC_INLINE bool conc__queue_worth_a_try(const conc_queue_t *q, bool push) {
    uint64_t pos = conc_load(push ? &q->tail : &q->head, CONC_RELAXED);
    uint64_t stamp = conc_load(conc__queue_stamp(conc__queue_slot(q, pos)), CONC_RELAXED);
    return stamp == (push ? pos : pos + 1) || (pos & CONC__QUEUE_CLOSED);
}

/* Before a waiter registers: pauses while they pay, then yields while they pay, trying
 * whenever the stamp it waits for changes. 0/EPIPE (done), EAGAIN (sleep now). */
CONC_COLD int conc__queue_spin_slow(conc_queue_t *q, bool push, conc__queue_try_fn try_once,
                                    unsigned char *items, size_t n, int64_t deadline,
                                    size_t *done) {
    /* Pauses pay only while the peer runs on another CPU. When the last ones ran out
     * (relaxed: a hint), the peer likely shares our CPU (pinned together, or placed
     * together by the scheduler): a few probe pauses, then yield to it at once, and a
     * full round of pauses every CONC__QUEUE_SPIN_RETRY waits to notice when it moved. */
    uint32_t *skips = push ? &q->push_spin_skips : &q->pop_spin_skips;
    uint32_t skipped = conc_load(skips, CONC_RELAXED);
    bool full = skipped == 0 || skipped >= CONC__QUEUE_SPIN_RETRY;
    if (skipped != 0)
        conc_store(skips, full ? 1u : skipped + 1, CONC_RELAXED);
    int pauses = conc_cpu_count() == 1 ? 0 : full ? CONC_QUEUE_SPIN : CONC_QUEUE_SPIN_PROBE;
    if (pauses > CONC_QUEUE_SPIN)
        pauses = CONC_QUEUE_SPIN;
    for (int i = 0; i < pauses; i++) {
        conc_cpu_relax();
        if (!conc__queue_worth_a_try(q, push))
            continue;
        int r = try_once(q, items, n, done, deadline);
        if (r != EAGAIN) {
            if (conc_load(skips, CONC_RELAXED) != 0)
                conc_store(skips, 0u, CONC_RELAXED); /* the peer moved while we paused */
            return r;
        }
    }
    if (full && pauses > 0 && skipped == 0)
        conc_store(skips, 1u, CONC_RELAXED); /* the pauses ran out */
    /* Then yields, while they pay (base.h's yield policy): when the peer shares our CPU a
     * pause cannot let it run, and a yield hands it the CPU. */
    conc_yield_policy_t *yields = push ? &q->push_yields : &q->pop_yields;
    const uint64_t *other = push ? &q->head : &q->tail; /* the side that frees us */
    for (int i = 0; i < CONC_QUEUE_YIELDS; i++) {
        int64_t before = conc_now();
        if (before >= deadline || (i == 0 && !conc_yield_allowed(yields, before)))
            break; /* the deadline decides in the caller; or yields are off: sleep at once */
        if (!conc__queue_yield_booked(q, yields, other, before))
            return conc__queue_worth_a_try(q, push) ? try_once(q, items, n, done, deadline)
                                                    : EAGAIN;
        if (!conc__queue_worth_a_try(q, push))
            continue;
        int r = try_once(q, items, n, done, deadline);
        if (r != EAGAIN)
            return r;
    }
    return EAGAIN;
}

CONC_COLD int conc__queue_wait_slow(conc_queue_t *q, uint32_t *word, conc__queue_try_fn try_once,
                                    unsigned char *items, size_t n, int64_t deadline,
                                    size_t *done) {
    if (conc_deadline_passed(deadline))
        return ETIMEDOUT; /* a past deadline: the caller has tried once */
    int r = conc__queue_spin_slow(q, word == &q->not_full, try_once, items, n, deadline, done);
    if (r != EAGAIN)
        return r;
    /* Registered ([eventcount.W1]), every try below is the re-check the eventcount needs:
     * its loads of the stamp and of head/tail are seq_cst where they decide "wait". */
    bool notifiers_push = word == &q->not_empty;
    uint32_t v = conc_eventcount_enter(word);
    conc__queue_bias_fence_slow(q, notifiers_push, deadline); /* [queue.B4] */
    for (;;) {
        CONC_CHAOS_POINT();
        r = try_once(q, items, n, done, deadline);
        if (r != EAGAIN)
            break;
        bool ticket = conc_eventcount_waiters(v) == 0; /* registered nobody (4,095 are) */
        /* A closed word: the try above sees CLOSED in tail (close sets it first), so a push
         * has returned EPIPE and a pop returns an item or EPIPE; only a peer mid-copy can
         * bring us here, and the eventcount yields while the try waits that out. */
        if (conc_eventcount_wait(word, &v, conc__queue_futex_flags(q), deadline) == ETIMEDOUT) {
            r = ETIMEDOUT;
            break;
        }
        if (ticket && conc_eventcount_waiters(v) != 0) /* the poll registered us just now */
            conc__queue_bias_fence_slow(q, notifiers_push, deadline);
    }
    conc_eventcount_leave(word, v);
    return r;
}

/* -------------------------------------------------------------------------------------------
 * Push
 * ------------------------------------------------------------------------------------------- */
/* The tries as plain functions, for the blocking loop (cold: an indirect call is fine). */
static int conc__queue_try_push_cb(conc_queue_t *q, unsigned char *items, size_t n, size_t *done,
                                   int64_t deadline) __attribute__((unused));
static int conc__queue_try_push_cb(conc_queue_t *q, unsigned char *items, size_t n, size_t *done,
                                   int64_t deadline) {
    return conc__queue_try_push_n(q, items, n, done, deadline, true);
}
static int conc__queue_try_pop_cb(conc_queue_t *q, unsigned char *items, size_t n, size_t *done,
                                  int64_t deadline) __attribute__((unused));
static int conc__queue_try_pop_cb(conc_queue_t *q, unsigned char *items, size_t n, size_t *done,
                                  int64_t deadline) {
    return conc__queue_try_pop_n(q, items, n, done, deadline, true);
}

/* All n items in, claim after claim, or the first error (count in *pushed). */
CONC_INLINE int conc__queue_push_all(conc_queue_t *q, const void *items, size_t n, size_t *pushed,
                                     int64_t deadline, bool block) {
    const unsigned char *p = (const unsigned char *)items;
    size_t total = 0;
    int r = 0;
    while (total < n) {
        size_t done = 0;
        unsigned char *at = (unsigned char *)(uintptr_t)(p + total * q->item_size);
        r = conc__queue_try_push_n(q, at, n - total, &done, deadline, block);
        if (CONC_UNLIKELY(r == EAGAIN)) {
            if (!block)
                break;
            r = conc__queue_wait_slow(q, &q->not_full, conc__queue_try_push_cb, at, n - total,
                                      deadline, &done);
        }
        if (r != 0)
            break;
        total += done;
        conc__queue_notify(q, &q->not_empty, done);
    }
    if (pushed)
        *pushed = total;
    return r;
}

/* One item: the fast path inline, everything else out of line. Not CONC_COLD: with a cold
 * callee on its failure side, gcc 12 moves the fast path's success side to .text.unlikely. */
CONC_NOINLINE int conc__queue_push_one_slow(conc_queue_t *q, const void *item, int64_t deadline,
                                            bool block) {
    return conc__queue_push_all(q, item, 1, NULL, deadline, block);
}

CONC_INLINE int conc__queue_push_one(conc_queue_t *q, const void *item, int64_t deadline,
                                     bool block) {
    if (CONC_LIKELY(conc__queue_push_one_fast(q, item))) {
        conc__queue_notify(q, &q->not_empty, 1);
        return 0;
    }
    return conc__queue_push_one_slow(q, item, deadline, block);
}

/* The single-item forms are always inline (CONC_INLINE), unlike the rest of the API: the fast
 * path is the point of them, and gcc 12 keeps a plain `static inline` out of line in a caller
 * with several calls to it (bench_queue's producer), a call that cost 3.3 ns of a 23 ns item
 * with both threads on one CPU. Their slow paths stay out of line, so a call site grows by
 * the fast path only: its 8-byte and general copies, about 360 bytes of x86-64. */
CONC_NODISCARD CONC_INLINE int conc_queue_push(conc_queue_t *q, const void *item) {
    return conc__queue_push_one(q, item, CONC_FOREVER, true);
}

CONC_NODISCARD CONC_INLINE int conc_queue_try_push(conc_queue_t *q, const void *item) {
    return conc__queue_push_one(q, item, CONC_FOREVER, false);
}

CONC_NODISCARD CONC_INLINE int conc_queue_push_until(conc_queue_t *q, const void *item,
                                                     int64_t deadline) {
    return conc__queue_push_one(q, item, deadline, true);
}

CONC_NODISCARD static inline int conc_queue_push_batch(conc_queue_t *q, const void *items, size_t n,
                                                       size_t *pushed) {
    return conc__queue_push_all(q, items, n, pushed, CONC_FOREVER, true);
}

CONC_NODISCARD static inline int conc_queue_push_batch_until(conc_queue_t *q, const void *items,
                                                             size_t n, int64_t deadline,
                                                             size_t *pushed) {
    return conc__queue_push_all(q, items, n, pushed, deadline, true);
}

/* One claim: 1..n items in, or EAGAIN/EPIPE with none. */
CONC_NODISCARD static inline int conc_queue_try_push_batch(conc_queue_t *q, const void *items,
                                                           size_t n, size_t *pushed) {
    size_t done = 0;
    int r = 0;
    if (n > 0) {
        r = conc__queue_try_push_n(q, (const unsigned char *)items, n, &done, CONC_FOREVER, false);
        if (r == 0)
            conc__queue_notify(q, &q->not_empty, done);
    }
    if (pushed)
        *pushed = done;
    return r;
}

/* -------------------------------------------------------------------------------------------
 * Pop
 * ------------------------------------------------------------------------------------------- */
CONC_INLINE int conc__queue_pop_some(conc_queue_t *q, void *items, size_t n, size_t *popped,
                                     int64_t deadline, bool block) {
    size_t done = 0;
    int r = 0;
    if (n > 0) {
        r = conc__queue_try_pop_n(q, (unsigned char *)items, n, &done, deadline, block);
        if (CONC_UNLIKELY(r == EAGAIN) && block)
            r = conc__queue_wait_slow(q, &q->not_empty, conc__queue_try_pop_cb,
                                      (unsigned char *)items, n, deadline, &done);
        if (r == 0)
            conc__queue_notify(q, &q->not_full, done);
    }
    if (popped)
        *popped = done;
    return r;
}

/* One item: the fast path inline, everything else out of line (not CONC_COLD: see push). */
CONC_NOINLINE int conc__queue_pop_one_slow(conc_queue_t *q, void *item, int64_t deadline,
                                           bool block) {
    return conc__queue_pop_some(q, item, 1, NULL, deadline, block);
}

CONC_INLINE int conc__queue_pop_one(conc_queue_t *q, void *item, int64_t deadline, bool block) {
    if (CONC_LIKELY(conc__queue_pop_one_fast(q, item))) {
        conc__queue_notify(q, &q->not_full, 1);
        return 0;
    }
    return conc__queue_pop_one_slow(q, item, deadline, block);
}

CONC_NODISCARD CONC_INLINE int conc_queue_pop(conc_queue_t *q, void *item) {
    return conc__queue_pop_one(q, item, CONC_FOREVER, true);
}

CONC_NODISCARD CONC_INLINE int conc_queue_try_pop(conc_queue_t *q, void *item) {
    return conc__queue_pop_one(q, item, CONC_FOREVER, false);
}

CONC_NODISCARD CONC_INLINE int conc_queue_pop_until(conc_queue_t *q, void *item, int64_t deadline) {
    return conc__queue_pop_one(q, item, deadline, true);
}

CONC_NODISCARD static inline int conc_queue_pop_batch(conc_queue_t *q, void *items, size_t n,
                                                      size_t *popped) {
    return conc__queue_pop_some(q, items, n, popped, CONC_FOREVER, true);
}

CONC_NODISCARD static inline int conc_queue_try_pop_batch(conc_queue_t *q, void *items, size_t n,
                                                          size_t *popped) {
    return conc__queue_pop_some(q, items, n, popped, CONC_FOREVER, false);
}

CONC_NODISCARD static inline int conc_queue_pop_batch_until(conc_queue_t *q, void *items, size_t n,
                                                            int64_t deadline, size_t *popped) {
    return conc__queue_pop_some(q, items, n, popped, deadline, true);
}

/* -------------------------------------------------------------------------------------------
 * Close and queries
 * ------------------------------------------------------------------------------------------- */
static inline void conc_queue_close(conc_queue_t *q) {
    /* An owner's store of tail would overwrite CLOSED: the producers' bias goes first.
     * Acquire on REVOKED ([queue.B6]): our RMW comes after the owner's last store. */
    if (conc_load(&q->tail_bias, CONC_ACQUIRE) != CONC__QUEUE_REVOKED)
        (void)conc__queue_bias_drop_slow(q, true, CONC_FOREVER);
    /* Release: pairs with the acquire loads of tail in the tries. CLOSED goes into tail
     * first, so a waiter that sees CLOSED in its word also sees it in tail. */
    conc_fetch_or(&q->tail, CONC__QUEUE_CLOSED, CONC_RELEASE);
    /* Then both words: a waiter that sees CLOSED there never sleeps again (eventcount). */
    conc_eventcount_close(&q->not_empty, conc__queue_futex_flags(q));
    conc_eventcount_close(&q->not_full, conc__queue_futex_flags(q));
}

static inline bool conc_queue_is_closed(const conc_queue_t *q) {
    return (conc_load(&q->tail, CONC_ACQUIRE) & CONC__QUEUE_CLOSED) != 0;
}

static inline size_t conc_queue_capacity(const conc_queue_t *q) {
    return (size_t)q->capacity;
}

static inline size_t conc_queue_item_size(const conc_queue_t *q) {
    return (size_t)q->item_size;
}

/* Items inside: exact when nothing runs concurrently, else a snapshot in [0, capacity]. */
static inline size_t conc_queue_size(const conc_queue_t *q) {
    for (;;) {
        uint64_t tail = conc_load(&q->tail, CONC_ACQUIRE) & ~CONC__QUEUE_CLOSED;
        uint64_t head = conc_load(&q->head, CONC_ACQUIRE);
        if ((conc_load(&q->tail, CONC_ACQUIRE) & ~CONC__QUEUE_CLOSED) != tail)
            continue; /* tail moved: retry for a consistent pair */
        uint64_t mask = q->one_lap - 1, hix = head & mask, tix = tail & mask;
        if (hix < tix)
            return (size_t)(tix - hix);
        if (hix > tix)
            return (size_t)(q->capacity - hix + tix);
        return tail == head ? 0 : (size_t)q->capacity;
    }
}

/* -------------------------------------------------------------------------------------------
 * Task accounting (Python's Queue.task_done / Queue.join), opt-in
 *
 * push_task counts the item as an unfinished task before pushing it (a push that fails takes
 * the count back); a consumer calls task_done once it has finished with an item it popped;
 * join waits until every counted task is done. Plain push never touches the count, and a
 * queue whose users never call the _task verbs pays nothing (bench_queue shows it).
 *
 *   last task_done                             joiner
 *   ---------------------------------------    --------------------------------------------
 *                                              load: unfinished 1, generation g
 *                                              CAS: raise WAITERS
 *   CAS: 1 -> 0, generation g+1,
 *        WAITERS off   [queue.T1]
 *   old word had WAITERS: wake(all)
 *                                              futex_wait(low, {g, WAITERS})
 *                                                -> EAGAIN: the generation moved
 *
 * Either the CAS comes first and futex_wait finds the low half changed, or the joiner is
 * queued first and the wake, decided from the very bit it raised, finds it. A join returns
 * when the count is 0 or a zero happened after it began (a push_task right after the zero
 * does not strand it). tests/models/latch.pml checks the same protocol (conc_latch).
 * ------------------------------------------------------------------------------------------- */

#define CONC__QUEUE_TASK_ONE ((uint64_t)1 << 32)
#define CONC__QUEUE_TASK_WAITERS ((uint64_t)0x1)
#define CONC__QUEUE_TASK_GEN_ONE ((uint64_t)0x2)
#define CONC__QUEUE_TASK_GEN_MASK ((uint64_t)0xfffffffe)

CONC_INLINE uint32_t *conc__queue_tasks_futex(conc_queue_t *q) {
    return conc_futex_half_low(&q->tasks); /* WAITERS and the generation */
}

/* Relaxed: counting a task publishes nothing (the push that follows publishes the item). */
CONC_INLINE int conc__queue_task_add(conc_queue_t *q) {
    uint64_t w = conc_load(&q->tasks, CONC_RELAXED);
    do {
        if ((w >> 32) == UINT32_MAX)
            return EOVERFLOW;
    } while (!conc_cas_weak(&q->tasks, &w, w + CONC__QUEUE_TASK_ONE, CONC_RELAXED, CONC_RELAXED));
    return 0;
}

/* [queue.T1] release: what the consumer did with its items goes to the joiners the zero
 * releases (the word's RMWs form one release sequence). */
CONC_INLINE int conc__queue_task_sub(conc_queue_t *q) {
    uint64_t w = conc_load(&q->tasks, CONC_RELAXED), next;
    do {
        if ((w >> 32) == 0)
            return EINVAL;
        next = w - CONC__QUEUE_TASK_ONE;
        if ((next >> 32) == 0)
            next = (next & ~(CONC__QUEUE_TASK_GEN_MASK | CONC__QUEUE_TASK_WAITERS)) |
                   ((w + CONC__QUEUE_TASK_GEN_ONE) & CONC__QUEUE_TASK_GEN_MASK);
    } while (!conc_cas_weak(&q->tasks, &w, next, CONC_RELEASE, CONC_RELAXED));
    if ((next >> 32) == 0 && (w & CONC__QUEUE_TASK_WAITERS))
        conc_futex_wake(conc__queue_tasks_futex(q), INT_MAX, conc__queue_futex_flags(q));
    return 0;
}

/* [queue.T2] acquire (every load and CAS failure in base.h's wait): pairs with the [queue.T1]
 * of the zero. */
CONC_COLD int conc__queue_join_slow(conc_queue_t *q, uint64_t w, int64_t deadline) {
    return conc_futex_wait_zero(&q->tasks, w, CONC__QUEUE_TASK_WAITERS, CONC__QUEUE_TASK_GEN_MASK,
                                conc__queue_futex_flags(q), deadline);
}

/* push, counting the item as an unfinished task: 0, EPIPE (closed: not counted),
 * EOVERFLOW (2^32 - 1 tasks unfinished: not pushed). */
CONC_NODISCARD static inline int conc_queue_push_task(conc_queue_t *q, const void *item) {
    int e = conc__queue_task_add(q);
    if (e == 0 && (e = conc_queue_push(q, item)) != 0)
        (void)conc__queue_task_sub(q);
    return e;
}

CONC_NODISCARD static inline int conc_queue_try_push_task(conc_queue_t *q, const void *item) {
    int e = conc__queue_task_add(q);
    if (e == 0 && (e = conc_queue_try_push(q, item)) != 0)
        (void)conc__queue_task_sub(q);
    return e;
}

CONC_NODISCARD static inline int conc_queue_push_task_until(conc_queue_t *q, const void *item,
                                                            int64_t deadline) {
    int e = conc__queue_task_add(q);
    if (e == 0 && (e = conc_queue_push_until(q, item, deadline)) != 0)
        (void)conc__queue_task_sub(q);
    return e;
}

/* One counted task is finished: 0, or EINVAL when no task is unfinished (Python: ValueError
 * "task_done() called too many times"); the count is left as it was then. */
static inline int conc_queue_task_done(conc_queue_t *q) {
    return conc__queue_task_sub(q);
}

/* Waits until every counted task is done: 0, ETIMEDOUT. */
CONC_NODISCARD static inline int conc_queue_join_until(conc_queue_t *q, int64_t deadline) {
    uint64_t w = conc_load(&q->tasks, CONC_ACQUIRE); /* [queue.T2] */
    if ((w >> 32) == 0)
        return 0;
    return conc__queue_join_slow(q, w, deadline);
}

static inline void conc_queue_join(conc_queue_t *q) {
    uint64_t w = conc_load(&q->tasks, CONC_ACQUIRE); /* [queue.T2] */
    if ((w >> 32) != 0)
        (void)conc__queue_join_slow(q, w, CONC_FOREVER);
}

/* Counted tasks not yet done: a relaxed snapshot. */
static inline size_t conc_queue_unfinished(const conc_queue_t *q) {
    return (size_t)(conc_load(&q->tasks, CONC_RELAXED) >> 32);
}

/* -------------------------------------------------------------------------------------------
 * For other conc headers. The only queue internals another header may use: a change to the
 * ring's layout or stamps breaks here, at one declared place.
 * ------------------------------------------------------------------------------------------- */

/* Whether the k-th item from the queue's head (k >= 1) is published: a hint, read from the
 * slot stamps (DESIGN), so a consumer can watch the queue without touching its tail (the
 * producers' line). Only a claim (try_pop, try_pop_batch) decides anything. */
static inline bool conc__queue_item_ready(const conc_queue_t *q, size_t k) {
    if (k == 0 || k > q->capacity) /* no such item; and advance wraps at most one lap */
        return false;
    uint64_t head = conc_load(&q->head, CONC_RELAXED); /* relaxed: a hint */
    uint64_t pos = k > 1 ? conc__queue_advance(q, head, k - 1) : head;
    /* Relaxed: a hint too; the claim's own loads order the item. */
    return conc_load(conc__queue_stamp(conc__queue_slot(q, pos)), CONC_RELAXED) == pos + 1;
}

/* For a thread that sleeps on a futex of its own until items arrive (the executor's idle
 * workers), after it registered there with a seq_cst RMW and before its re-check of the queue:
 * a push may be the producers' bias owner's plain store, not a seq_cst RMW ("The bias"), and
 * this is the sleeper's half of the pair that then orders it ([queue.B4]). */
static inline void conc__queue_sleeper_fence(conc_queue_t *q) {
    conc__queue_bias_fence_slow(q, true, CONC_FOREVER);
}

#ifdef __cplusplus
}
#endif
#endif /* CONC_QUEUE_H */
