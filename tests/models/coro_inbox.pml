/* tests/models/coro_inbox.pml - conc_sched_spawn, conc_sched_msg_post and conc_sched_unhold from
 * other threads (include/conc/coro.h, "Cross-thread spawn"), for spin.
 * SPDX-License-Identifier: MIT
 *
 * Two threads each hand the scheduler two messages through the inbox, and a third drops the
 * scheduler's one hold. Under the inbox mutex (one atomic step here) a poster appends and
 * raises the pending hint [coro.I1], and claims the kick if the loop announced its sleep
 * [coro.I2] (clearing asleep, counting itself in kicking); the unholder decrements holds and
 * claims the kick the same way when it drops the last hold. After the mutex, a claimer writes
 * the eventfd and leaves kicking [coro.I8]. The scheduler either drains on the pending hint
 * (the busy loop or its poll before sleeping [coro.I7]; the hint is relaxed, so the model lets
 * it miss it at any time), or announces its sleep under the mutex if the inbox is empty and
 * holds is what it read [coro.I6], sleeps in epoll_wait until the eventfd counter is non-zero
 * or (once) an fd event comes, then reads a non-zero counter to zero [coro.I3] and drains
 * [coro.I5], and clears asleep (so a claim can meet a loop that is awake). It stops once it
 * has taken all four and holds is 0, then destroy waits for kicking to reach 0 and closes the
 * eventfd. A message or an unhold left unseen while the scheduler sleeps with the counter at
 * zero is a lost wakeup: spin reports the blocked scheduler as an invalid end state. A write
 * after the close fails the assertion.
 *
 * // broken: BROKEN_DOZE_BLIND    announce the sleep without looking at the inbox under the
 *                                 mutex: a message appended before it is never kicked
 * // broken: BROKEN_DOZE_NO_HOLDS announce the sleep without re-reading holds: the last unhold,
 *                                 made before it, did not kick
 * // broken: BROKEN_CLOSE_EARLY   destroy closes the eventfd without waiting for kicking
 */
// broken: BROKEN_DOZE_BLIND
// broken: BROKEN_DOZE_NO_HOLDS
// broken: BROKEN_CLOSE_EARLY

#define TOTAL 4

byte inbox = 0;     /* messages in the list (under the mutex) */
byte counter = 0;   /* the eventfd counter */
bool pending = false;
bool asleep = false;
byte kicking = 0;
byte holds = 1;
byte taken = 0;
bool closed = false;
byte fdev = 1;      /* epoll_wait may return once for an fd, with the counter at zero */

inline kick() {
    atomic { assert(!closed); counter++ };                              /* the write */
    kicking--                                                           /* [coro.I8] */
}

proctype producer() {
    byte i = 0;
    bool k;
    do
    :: i < 2 ->
        atomic {
            inbox++; pending = true;                                    /* [coro.I1] */
            k = asleep;                                                 /* [coro.I2] */
            if :: k -> asleep = false; kicking++ :: else -> skip fi
        };
        if :: k -> kick() :: else -> skip fi;
        i++
    :: else -> break
    od
}

proctype unholder() {
    bool k;
    atomic {
        holds--;
        k = (holds == 0 && asleep);
        if :: k -> asleep = false; kicking++ :: else -> skip fi
    };
    if :: k -> kick() :: else -> skip fi
}

proctype scheduler() {
    byte h;
    bool ok;
    do
    :: taken == TOTAL && holds == 0 -> break
    :: else ->
        if
        :: pending ->                                   /* busy loop or its poll saw the hint */
            atomic { taken = taken + inbox; inbox = 0; pending = false }
        :: true ->                                      /* idle: announce, then epoll_wait */
            h = holds;
            if
            :: taken == TOTAL && h == 0 -> skip         /* the stop check runs again first */
            :: else ->
                atomic {                                                 /* [coro.I6] */
#if defined(BROKEN_DOZE_BLIND)
                    ok = (holds == h);
#elif defined(BROKEN_DOZE_NO_HOLDS)
                    ok = (inbox == 0);
#else
                    ok = (inbox == 0 && holds == h);
#endif
                    if :: ok -> asleep = true :: else -> skip fi
                };
                if
                :: ok ->
                    if                                  /* epoll_wait returns */
                    :: counter > 0 -> skip
                    :: fdev > 0 -> fdev--
                    fi;
                    if
                    :: counter > 0 ->
                        counter = 0;                                     /* [coro.I3] */
                        atomic { taken = taken + inbox; inbox = 0; pending = false } /* [coro.I5] */
                    :: else -> skip
                    fi;
                    asleep = false
                :: else -> skip
                fi
            fi
        fi
    od;
    assert(taken == TOTAL && inbox == 0);
#ifndef BROKEN_CLOSE_EARLY
    (kicking == 0);                                     /* destroy: mutex, then [coro.I8] */
#endif
    closed = true
}

init {
    atomic { run producer(); run producer(); run unholder(); run scheduler() }
}
