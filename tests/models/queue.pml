/* tests/models/queue.pml - base.h's eventcount, as conc/queue.h uses it: one side and close
 * SPDX-License-Identifier: MIT
 *
 * What is modelled: the not_empty side (the not_full side is the same code with the roles
 * swapped). The ring is abstracted to an item count plus the CLOSED mark in tail; a try is
 * one atomic step (take an item, or see empty/closed), which is what the real ring
 * guarantees at its linearization point. The eventcount word is (waiters, pending, closed),
 * changed only by atomic read-modify-writes, as in the header. The kernel futex is modelled
 * exactly as far as it matters: futex_wait compares the word and queues the caller in one
 * step; futex_wake(n) wakes up to n queued sleepers, any of them. Promela steps are
 * sequentially consistent: the seq_cst claim [queue.C1], load [eventcount.F1] and RMW
 * [eventcount.W1] of the headers make the real code behave like this on hardware.
 *
 * Processes: one producer pushing 3 items (queue_batch.pml: two pushes of two), one blocking
 * consumer wanting one item, one consumer with a deadline (it may give up at any deadline
 * check, or be timed out of its sleep by the kernel), one plain consumer that never registers
 * (a try only: it steals items from under registered waiters), and a closer that may close at
 * any moment (or never).
 *
 * Checked: every blocking consumer ends with an item or with EPIPE (closed and drained): a
 * consumer left asleep in the kernel is an invalid end state (a lost wakeup, or a waiter
 * stranded by close). Also asserted: pending <= waiters, and EPIPE only when empty.
 * Locals are cleared before a process ends, so finished processes do not multiply states.
 *
 * Broken variants (each must produce errors):
// broken: BROKEN_NO_RECHECK      the waiter sleeps right after registering, without re-checking
// broken: BROKEN_CLOSE_OUTSIDE   close keeps CLOSED out of the word waiters sleep on
// broken: BROKEN_SLEEP_ON_PENDING the waiter sleeps although a wake is pending in the word
// broken: BROKEN_LEAVE_KEEPS_PENDING leaving removes the waiter but not a pending wake
// broken: BROKEN_NO_SEQ          the wake does not bump the sequence (the word can ABA)
 */

#ifndef BATCH
#define BATCH 1 /* items per push, and the notify's k (queue_batch.pml: 2) */
#endif
#ifndef NITEMS
#define NITEMS 3
#endif
#define NCONS 3 /* consumer ids: 0 blocking, 1 timed, 2 try-only */

byte items = 0;      /* published items in the ring */
bool tail_closed = false;
byte waiters = 0;    /* the word: registered waiters */
byte pending = 0;    /*           wakes issued, not yet taken */
bool wclosed = false;/*           CLOSED */
byte seq = 0;        /*           bumped with every pending wake (7 bits in the header) */
bool asleep[NCONS];  /* queued in the kernel on the word */

inline futex_wake(n) {
    atomic {
        woke = 0;
        do
        :: woke < n && asleep[0] -> asleep[0] = false; woke++
        :: woke < n && asleep[1] -> asleep[1] = false; woke++
        :: else -> break
        od
    }
}

/* One try: 1 took an item, 2 EPIPE (closed and empty), 0 EAGAIN. */
inline try_pop(r) {
    atomic {
        if
        :: items > 0 -> items--; r = 1
        :: items == 0 && tail_closed -> r = 2
        :: else -> r = 0
        fi
    }
}

inline leave() {
    atomic {
        assert(waiters > 0);
        waiters--;
#ifndef BROKEN_LEAVE_KEEPS_PENDING
        if
        :: pending > 0 -> pending--
        :: else -> skip
        fi;
#endif
        if
        :: pending > waiters -> pending = waiters
        :: else -> skip
        fi
    }
}

proctype Consumer(byte me; bool timed; bool sleeps) {
    byte r, vw, vp, vs;
    bool vc;
    try_pop(r);
    if
    :: r != 0 || !sleeps -> goto done
    :: else -> skip
    fi;
    /* [eventcount.W1] register and read the word in one RMW */
    atomic { waiters++; vw = waiters; vp = pending; vc = wclosed; vs = seq };
#ifdef BROKEN_NO_RECHECK
    goto sleep;
#endif
loop:
    try_pop(r);
    if
    :: r != 0 -> goto out
    :: else -> skip
    fi;
#ifndef BROKEN_SLEEP_ON_PENDING
    if
    :: vp > 0 ->
        /* take the pending wake: CAS v -> v - PENDING */
        atomic {
            if
            :: waiters == vw && pending == vp && wclosed == vc && seq == vs -> pending--; vp--
            :: else -> vw = waiters; vp = pending; vc = wclosed; vs = seq
            fi
        };
        goto loop
    :: else -> skip
    fi;
#endif
    if
    :: vc -> goto loop /* never sleep on a closed word: the try will see tail closed */
    :: else -> skip
    fi;
    if
    :: timed -> goto out /* the deadline passed: leave with ETIMEDOUT */
    :: true -> skip
    fi;
sleep:
    /* futex_wait(word, v): compare and queue in one step */
    atomic {
        if
        :: waiters == vw && pending == vp && wclosed == vc && seq == vs -> asleep[me] = true
        :: else -> skip /* EAGAIN */
        fi
    };
    if
    :: !asleep[me] -> skip                    /* woken (or never slept) */
    :: timed -> atomic { asleep[me] = false } /* the kernel timed us out */
    fi;
    atomic { vw = waiters; vp = pending; vc = wclosed; vs = seq };
    goto loop;
out:
    leave();
done:
    atomic { assert(r != 2 || items == 0); r = 0; vw = 0; vp = 0; vc = false; vs = 0 }
}

proctype Producer() {
    byte k = 0, ww, wp, ws, woke, m;
    bool wc;
    do
    :: k < NITEMS ->
        atomic {
            if
            :: tail_closed -> goto finished /* EPIPE */
            :: else -> items = items + BATCH
            fi
        };
        k = k + BATCH;
        /* [eventcount.F1] then load the word */
        atomic { ww = waiters; wp = pending; wc = wclosed; ws = seq };
notify:
        if
        :: ww > wp ->
            atomic { /* [eventcount.N1] CAS w -> w + PENDING */
                if
                :: waiters == ww && pending == wp && wclosed == wc && seq == ws ->
                   /* m = min(waiters - pending, k) pending wakes */
                   if
                   :: ww - wp < BATCH -> m = ww - wp
                   :: else -> m = BATCH
                   fi;
                   pending = pending + m; wp = 255;
#ifndef BROKEN_NO_SEQ
                   seq = (seq + 1) % 8;
#endif

                   assert(pending <= waiters) /* every pending wake has a waiter to take it */
                :: else -> ww = waiters; wp = pending; wc = wclosed; ws = seq
                fi
            };
            if
#ifdef BROKEN_WAKE_ONE
            :: wp == 255 -> futex_wake(1) /* wakes one though it made m wakes pending */
#else
            :: wp == 255 -> futex_wake(m)
#endif
            :: else -> goto notify
            fi
        :: else -> skip
        fi
    :: k >= NITEMS -> break
    od;
finished:
    atomic { ww = 0; wp = 0; ws = 0; wc = false; woke = 0; k = 0; m = 0 }
}

proctype Closer() {
    byte ww, woke;
    if
    :: true ->
        tail_closed = true;
#ifndef BROKEN_CLOSE_OUTSIDE
        atomic { ww = waiters; wclosed = true };
#else
        ww = waiters;
#endif
        if
        :: ww > 0 -> futex_wake(NCONS)
        :: else -> skip
        fi;
        atomic { ww = 0; woke = 0 }
    :: true -> skip /* never closes */
    fi
}


init {
    atomic {
        run Producer();
        run Closer();
        run Consumer(0, false, true);
        run Consumer(1, true, true);
        run Consumer(2, false, false);
    }
}
