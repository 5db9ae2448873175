/* tests/models/sem.pml - the conc_sem claim/hand-over protocol (include/conc/sem.h), for spin.
 * SPDX-License-Identifier: MIT
 *
 * The word is {count, handed, sleepers}; every atomic operation of sem.h is one atomic step:
 * the fast path's fetch_sub, each CAS of the wait and the release, try_acquire's CAS.
 * futex_wait(handed 0) is the kernel's atomic "compare and queue"; futex_wake(n) wakes up to n
 * queued sleepers, any of them. Three takers (one uses try_acquire, one may time out once
 * and retry) and two releasers (release(1) twice; release(2) once) move exactly 4 tokens
 * through a semaphore bounded at 3. A lost wakeup leaves a taker asleep with tokens in the
 * semaphore: spin reports it as an invalid end state. Checked: no taker gets a token that was
 * not released, the value never passes the bound, every taker finishes, tokens are conserved,
 * and no claim or registration is left behind.
 *
 * // broken: BROKEN_SPLIT_RELEASE      release reads the sleeper count, then adds the tokens in
 *                                      a second step: a sleeper registering in between is missed
 * // broken: BROKEN_NO_RECHECK         futex_wait sleeps without the kernel's compare: a hand-over
 *                                      between registering and sleeping is missed
 * // broken: BROKEN_NO_HANDOVER        release adds to count but hands nothing to the waiters
 *                                      whose claims are in it
 * // broken: BROKEN_WITHDRAW_ANYWAY    a waiter at its deadline withdraws its claim without first
 *                                      picking up a token handed to it
 * // broken: BROKEN_TRY_PICKS_UP_ONLY  try_acquire takes a handed token without also putting a
 *                                      claim in the count, so a waiter loses the token it was owed
 * // broken: BROKEN_STEP_COUNTS_ALL    a release in steps adds all its tokens to the count but
 *                                      hands only what fits: claims covered by nothing handed
 *
 * handed holds at most HANDED_MAX tokens (sem.h: 65,535; here 1, so release(2) with two
 * claims in the count hands its tokens in two steps, waiting for a pick-up in between, as
 * sem.h's conc__sem_release_slow does; sem_hand_two.pml checks this model with 2, where one
 * wake must serve two tokens). An EOVERFLOW after a step (a bounded semaphore filled
 * up by a racing release between steps, see sem.h's CAVEATS) cannot happen here: the value
 * is at most HANDED_MAX while claims are in the count, and n + HANDED_MAX <= LIMIT; the
 * model asserts it.
 */
// broken: BROKEN_SPLIT_RELEASE
// broken: BROKEN_NO_RECHECK
// broken: BROKEN_NO_HANDOVER
// broken: BROKEN_WITHDRAW_ANYWAY
// broken: BROKEN_TRY_PICKS_UP_ONLY
// broken: BROKEN_STEP_COUNTS_ALL
// pan-cc: -DSAFETY
// pan-run: -m1000000

#define TOKENS 4
#ifndef HANDED_MAX /* sem_hand_two.pml sets it to 2 (and LIMIT to 4) */
#define LIMIT 3
#define HANDED_MAX 1
#endif

short count = 0;      /* free tokens, or minus the waiters no token was handed to yet */
byte handed = 0;      /* released for waiters, not yet picked up */
byte sleepers = 0;    /* registered to sleep on the futex */
bool asleep[6];       /* queued on the futex, indexed by _pid */
byte taken = 0;
byte released = 0;

inline futex_wait() {
#ifdef BROKEN_NO_RECHECK
    asleep[_pid] = true;
#else
    atomic { if :: handed == 0 -> asleep[_pid] = true :: else -> skip fi }
#endif
    /* woken, or a timeout/EINTR/spurious return: the taker re-reads the word either way */
    if
    :: !asleep[_pid]
    :: atomic { asleep[_pid] && may_time_out && timeouts < 1 ->
                asleep[_pid] = false; timeouts++; past_deadline = true }
    fi
}

inline futex_wake(n) {
    atomic {
        woke = 0;
        do
        :: woke < n && asleep[0] -> asleep[0] = false; woke++
        :: woke < n && asleep[1] -> asleep[1] = false; woke++
        :: woke < n && asleep[2] -> asleep[2] = false; woke++
        :: woke < n && asleep[3] -> asleep[3] = false; woke++
        :: woke < n && asleep[4] -> asleep[4] = false; woke++
        :: woke < n && asleep[5] -> asleep[5] = false; woke++
        :: else -> break
        od
    }
}

proctype taker(byte rounds; bool may_time_out; bool uses_try) {
    byte timeouts = 0;
    bool past_deadline, registered;
    do
    :: rounds == 0 -> break
    :: rounds > 0 ->
        past_deadline = false;
        registered = false;
        if
        :: uses_try ->
            /* try_acquire: a free token, or claim and pick up a handed one; never a claim left */
            if
            :: atomic { count > 0 -> count--; goto got }
#ifdef BROKEN_TRY_PICKS_UP_ONLY
            :: atomic { count <= 0 && handed > 0 -> handed--; goto got }
#else
            :: atomic { count <= 0 && handed > 0 -> count--; handed--; goto got }
#endif
            :: atomic { count <= 0 && handed == 0 -> goto retry }   /* EAGAIN */
            fi
        :: else ->
            /* the fast path's fetch_sub: a free token, or our claim is now in the count */
            atomic { if :: count > 0 -> count--; goto got :: else -> count-- fi }
        fi;
        do
#ifdef BROKEN_WITHDRAW_ANYWAY
        :: atomic { past_deadline -> count++;
                    if :: registered -> sleepers-- :: else -> skip fi; goto retry }
#endif
        :: atomic { handed > 0 -> handed--;                          /* [sem.A2] pick up */
                    if :: registered -> sleepers-- :: else -> skip fi; break }
        :: atomic { handed == 0 && past_deadline -> count++;         /* withdraw the claim */
                    assert(count <= 0);
                    if :: registered -> sleepers-- :: else -> skip fi; goto retry }
        :: atomic { handed == 0 && !past_deadline && !registered -> sleepers++; registered = true }
        :: atomic { handed == 0 && !past_deadline && registered -> skip };
           futex_wait()
        :: atomic { may_time_out && timeouts < 1 && !past_deadline ->  /* the deadline passes */
                    timeouts++; past_deadline = true }
        od;
got:
        atomic { taken++; assert(taken <= released); rounds-- };
retry:
        skip
    od
}

proctype releaser(byte n; byte times) {
    byte old_sleepers, hand, wake_n, woke, left, step;
    do
    :: times == 0 -> break
    :: times > 0 ->
        left = n;
next_step:
#ifdef BROKEN_SPLIT_RELEASE
        old_sleepers = sleepers;
#endif
        /* [sem.R1] one CAS per step: the bound, count + step, the hand-over, and the sleepers
         * it read; a step waits (sem.h yields) while handed is full */
        atomic {
            if
            :: (count > 0 -> count : 0) + handed + left > LIMIT ->
                assert(left == n); goto overflow /* EOVERFLOW: nothing released */
            :: else -> skip
            fi;
#ifdef BROKEN_NO_HANDOVER
            hand = 0;
#else
            hand = (count < 0 -> (left < -count -> left : -count) : 0);
#endif
            step = left;
            if
            :: hand > HANDED_MAX - handed && handed == HANDED_MAX -> goto no_room
            :: hand > HANDED_MAX - handed ->
                hand = HANDED_MAX - handed;
#ifndef BROKEN_STEP_COUNTS_ALL
                step = hand
#endif
            :: else -> skip
            fi;
#ifndef BROKEN_SPLIT_RELEASE
            old_sleepers = sleepers;
#endif
            count = count + step;
            handed = handed + hand;
            released = released + step;
            assert(handed <= HANDED_MAX);
            assert((count > 0 -> count : 0) + handed <= LIMIT)
        };
        if
        :: hand > 0 && old_sleepers > 0 ->
#ifdef BROKEN_WAKE_ONE
            wake_n = 1;
#else
            wake_n = (hand < old_sleepers -> hand : old_sleepers);
#endif
            futex_wake(wake_n)
        :: else -> skip
        fi;
        left = left - step;
        if
        :: left > 0 -> goto next_step
        :: else -> skip
        fi;
        times--;
        goto overflow;
no_room:
        (handed < HANDED_MAX); /* sem.h: sched_yield until a waiter picks one up */
        goto next_step;
overflow:
        skip
    od
}

init {
    atomic {
        run taker(2, false, false);
        run taker(1, true, false);
        run taker(1, false, true);
        run releaser(1, 2);
        run releaser(2, 1);
    }
    (_nr_pr == 1);
    assert(taken == TOKENS && released == TOKENS && count == 0 && handed == 0 && sleepers == 0)
}
