/* tests/models/coro_bridge.pml - the mailbox's sleep/wake protocol between a scheduler's
 * receiving coroutines and sender threads (include/conc/coro_bridge.h, DESIGN), for spin.
 * SPDX-License-Identifier: MIT
 *
 * Two sender threads push one item each, then look at `armed` [coro_bridge.M3, M4]:
 * whoever swaps it from 1 to 0 owns the wake message and posts it. The scheduler thread runs
 * the receiver, which wants both items: it pops; finding the queue empty, the first sleeper
 * arms (msg, inflight, armed = 1) [coro_bridge.M1, M2], looks at the queue once more and
 * either takes an item (and disarms, unless a sender already took the message) or parks
 * until the posted message's coroutine runs [coro_bridge.M5] (which may also run while the
 * receiver is busy). spin executes the
 * fenced store-then-load pairs sequentially consistently, as the fences make them. A
 * receiver parked while an item sits in the queue with nobody left to post is a lost wakeup:
 * spin reports it as an invalid end state.
 *
 * // broken: BROKEN_NO_SECOND_LOOK    the receiver arms and parks without looking again
 * // broken: BROKEN_SENDER_LOOKS_FIRST  a sender reads armed before it pushes (no M3 fence)
 */
// broken: BROKEN_NO_SECOND_LOOK
// broken: BROKEN_SENDER_LOOKS_FIRST

byte queue = 0;      /* items in the conc_queue */
bool armed = false;  /* the atomic word */
bool posted = false; /* the wake message sits in the scheduler's inbox */
byte inflight = 0;   /* arms not yet undone (owner thread) */
byte got = 0;

inline sender_post() {
    /* [coro_bridge.M4] the swap */
    atomic { if :: armed -> armed = false; posted = true :: else -> skip fi }
}

proctype sender() {
#ifdef BROKEN_SENDER_LOOKS_FIRST
    bool saw = armed;
    queue++;
    if :: saw -> sender_post() :: else -> skip fi
#else
    queue++;                                   /* push */
    if :: armed -> sender_post() :: else -> skip fi   /* [coro_bridge.M3] fence, then the load */
#endif
}

proctype scheduler() {
    do
    :: got == 2 -> break
    :: posted -> atomic { posted = false; inflight = 0 }   /* [coro_bridge.M5] wake runs */
    :: got < 2 ->
        if
        :: queue > 0 -> queue--; got++
        :: else ->
            if
            :: !armed && inflight == 0 ->
                inflight = 1;
                armed = true;                  /* [coro_bridge.M1], then the M2 fence */
#ifndef BROKEN_NO_SECOND_LOOK
                if
                :: queue > 0 ->                            /* the second look */
                    queue--; got++;
                    atomic { if :: armed -> armed = false; inflight = 0 :: else -> skip fi };
                    goto next
                :: else -> skip
                fi;
#endif
            :: else -> skip
            fi;
            posted;                                        /* parked until the wake */
            atomic { posted = false; inflight = 0 };
next:       skip
        fi
    od;
    assert(got == 2)
}

init {
    atomic { run sender(); run sender(); run scheduler() }
}
