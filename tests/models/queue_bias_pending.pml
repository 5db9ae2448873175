/* tests/models/queue_bias_pending.pml - conc/queue.h's bias: an owner's plain-store claim
 * against a sleeper that takes a pending wake and re-checks
 * SPDX-License-Identifier: MIT
 *
 * What is modelled: the moment queue_bias.pml leaves out. A consumer W is registered on
 * not_empty and holds a pending wake (issued for an item that another consumer, one that
 * never sleeps, took first: the ring is empty again, head == tail == 1). The producers' bias
 * owner claims position 1 with a plain store of tail, which waits in its store buffer (TSO, as
 * in queue_bias.pml; a locked RMW or a fence drains it), and then notifies: its load of the
 * word finds W registered, and it wakes nobody while W's wake is still pending. W, woken,
 * re-checks, takes the pending wake with a CAS (seq_cst, base.h), re-checks, and sleeps on
 * the word it read. The notifier's fence when anyone is registered [queue.N2] is the fix: a
 * notifier that skips the wake has drained its claim first, so W's re-check after its take
 * sees it.
 *
 * Checked: W never stays asleep with an item in the ring (an invalid end state).
 *
 * Broken variants (each must produce errors):
// broken: BROKEN_NO_NOTIFY_FENCE   the notifier decides on the word without the fence
 */

byte tail = 1;      /* in memory */
byte head = 1;
byte sb = 0;        /* the owner's buffered store of tail; 0: none */
byte waiters = 1;   /* the word: W registered, its wake pending */
byte pending = 1;
byte seq = 0;
bool asleep = false;

inline drain() {
    if
    :: sb != 0 -> tail = sb; sb = 0
    :: else -> skip
    fi
}

active proctype flusher() {
end:
    do
    :: atomic { sb != 0 -> tail = sb; sb = 0 }
    od
}

active proctype owner() {
    byte w;
    atomic { sb = 2 };                           /* the window's store of tail: position 1 */
    atomic { w = waiters };                      /* [eventcount.F1] */
    if
    :: w > 0 ->
#ifndef BROKEN_NO_NOTIFY_FENCE
        atomic { drain() };                      /* [queue.N2] */
#endif
        atomic {                                 /* the word again; wake_slow's locked CAS */
            if
            :: waiters > pending -> drain(); pending++; seq++; asleep = false
            :: else -> skip
            fi
        }
    :: else -> skip
    fi
}

active proctype waiter() {
    byte myseq = seq;
recheck:
    if
    :: tail > head -> atomic { waiters--; if :: pending > 0 -> pending-- :: else -> skip fi };
        goto got
    :: else -> skip
    fi;
    if
    :: atomic { pending > 0 -> pending--; myseq = seq }; /* the take: seq_cst CAS */
        goto recheck
    :: atomic {
           pending == 0 ->
           if
           :: seq == myseq -> asleep = true      /* futex_wait on the word it read */
           :: else -> skip
           fi
       };
        (!asleep);
        myseq = seq;
        goto recheck
    fi;
got:
    skip
}
