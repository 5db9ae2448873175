/* tests/models/coro_bridge_await.pml - conc_coro_await's record between the awaiting
 * coroutine (its scheduler's thread) and the thread that completes the future
 * (include/conc/coro_bridge.h, DESIGN), for spin.
 * SPDX-License-Identifier: MIT
 *
 * The coroutine pins its scheduler, links its waker node under the future's lock
 * [coro_bridge.A1] (a future already final: no wait) and parks. The park ends by the posted
 * message's function (a wake) or by a deadline or cancel, at any time. The coroutine then
 * unlinks the node under the lock [coro_bridge.A3]: if the node ran, its message is in the
 * inbox and the message's function unpins and drops the record; if not, nobody will post,
 * and the coroutine frees the message and the record and unpins itself. The completer makes
 * the future final, then runs a linked node under the lock [coro_bridge.A2]: posted = 1 and
 * the message into the inbox. It may also never complete (a promise left pending). The
 * scheduler's loop runs the inbox's messages until no pin is left and the inbox is empty
 * (conc_sched_run's end). Checked: nobody touches a freed record, the pin is undone exactly
 * once, and nothing is left: no pin (a loop that could never end), no message, no link.
 *
 * // broken: BROKEN_POST_OUTSIDE_LOCK   the node marks and posts after the lock is released
 * // broken: BROKEN_NO_UNLINK           an await that ended leaves its node on the future
 * // broken: BROKEN_KEEP_WAITER         an await that ended by its deadline or a cancel keeps
 *                                       the record's waiter: the message, run later, wakes the
 *                                       coroutine out of whatever it waits on by then
 */
// broken: BROKEN_POST_OUTSIDE_LOCK
// broken: BROKEN_NO_UNLINK
// broken: BROKEN_KEEP_WAITER

bool final = false;   /* the future's state */
bool linked = false;  /* the node is on the future's list (under its lock) */
bool posted = false;  /* the record's flag (under the future's lock) */
bool inbox = false;   /* the message sits in the scheduler's inbox */
bool waiting = false; /* the coroutine is parked in the await */
bool a_waiter = false; /* the record's waiter pointer: set at the park, NULL after it */
bool parked_elsewhere = false; /* ghost: the coroutine, back from the await, waits on another */
bool freed = false;   /* the record (and its message) are freed */
byte pins = 0;
byte refs = 0;        /* the record's: the waiter's and the message's */

inline put() {
    assert(!freed && refs > 0);
    refs--;
    if :: refs == 0 -> freed = true :: else -> skip fi
}

/* The message's function, on the scheduler's thread. */
inline run_message() {
    assert(!freed);
    inbox = false;
    if /* conc_coro_wake(a->waiter): never a wait the coroutine went on to */
    :: a_waiter -> assert(!parked_elsewhere); waiting = false
    :: else -> skip
    fi;
    assert(pins > 0);
    pins--;
    put()
}

proctype completer() {
    if
    :: skip -> skip                                       /* a promise never completed */
    :: skip ->
        final = true;                                     /* [future.R1] */
#ifdef BROKEN_POST_OUTSIDE_LOCK
        bool mine = false;
        atomic { if :: linked -> linked = false; mine = true :: else -> skip fi };
        if
        :: mine -> assert(!freed); posted = true; inbox = true
        :: else -> skip
        fi
#else
        atomic {                                          /* under the future's lock */
            if
            :: linked -> linked = false; assert(!freed); posted = true; inbox = true
            :: else -> skip
            fi
        }
#endif
    fi
}

proctype scheduler() {
    bool was_posted, no_wait = false;
    pins = 1;                                             /* conc_sched_pin */
    refs = 2;
    atomic {                                              /* [coro_bridge.A1] */
        if
        :: final -> pins--; freed = true; refs = 0; no_wait = true  /* its outcome at once */
        :: else -> linked = true
        fi
    }
    if
    :: no_wait -> skip
    :: else ->
        waiting = true;
        a_waiter = true;
        do                                                /* parked */
        :: !waiting -> break                              /* woken by the message */
        :: waiting -> waiting = false; break              /* deadline or cancel */
        :: inbox -> run_message()                         /* the loop runs it */
        od;
#ifndef BROKEN_KEEP_WAITER
        a_waiter = false;                                 /* a->waiter = NULL */
#endif
#ifdef BROKEN_NO_UNLINK
        was_posted = posted;
#else
        atomic { linked = false; was_posted = posted }    /* [coro_bridge.A3] */
#endif
        if
        :: was_posted -> put()
        :: else -> assert(pins > 0); pins--; assert(!freed); freed = true; refs = 0
        fi
    fi;
    parked_elsewhere = true; /* the coroutine goes on, and may park in another wait */
    do                                                    /* the loop, until run ends */
    :: inbox -> run_message()
    :: pins == 0 && !inbox -> break
    od;
    assert(freed && pins == 0 && !inbox && !linked)
}

init {
    atomic { run completer(); run scheduler() }
}
