/* tests/models/barrier_reset.pml - conc_barrier_reset against broken rounds and other resets
 * (include/conc/barrier.h), for spin.
 * SPDX-License-Identifier: MIT
 *
 * barrier.pml checks the rounds; this model adds what it leaves out: two threads resetting at
 * once while two parties keep waiting (a broken wait counts as one of their rounds, and they
 * go on to the next). The word is {arrived, WAITERS, RESETTING} (low half) and {generation,
 * BROKEN} (high half); every CAS of barrier.h is one atomic step, futex_wait the kernel's
 * atomic "compare and queue". A reset: break the round if anyone waits; then until BROKEN is
 * gone: with nobody left in the round clear BROKEN, WAITERS and RESETTING in one CAS, else
 * raise RESETTING and futex_wait(low half). The last party to leave a broken round wakes the
 * low half if RESETTING is up; it is the only wake a reset needs (a reset sleeps only while
 * someone is still in the round, and nothing clears RESETTING before that one leaves).
 * Checked: every reset returns (invalid end state otherwise; a party left waiting for a
 * partner that ran out of rounds is a valid end: labels end_*).
 *
 * // broken: BROKEN_RESET_NO_FLAG   barrier.h before RESETTING: a reset sleeps on the bare
 *                                   {arrived, WAITERS} and leavers always wake; the other reset
 *                                   clears BROKEN, the next round puts {1, WAITERS} back, and
 *                                   the sleeping reset sleeps through it
 * // broken: BROKEN_LEAVER_NO_WAKE   the last party out of a broken round does not wake the
 *                                   low half: a reset that slept waiting for it sleeps on
 */
// broken: BROKEN_RESET_NO_FLAG
// broken: BROKEN_LEAVER_NO_WAKE
// pan-cc: -DSAFETY -DCOLLAPSE
// pan-run: -m1000000

#define PARTIES 2
#define GENS 8

byte arrived = 0;
bool broken = false;
bool waiters = false;
bool resetting = false;
byte gen = 0;
bool asleep[8];     /* on the high half (parties) */
bool asleep_low[8]; /* on the low half (resets) */
byte resets_done = 0;

#define LOW (arrived + 8 * waiters + 16 * resetting)
#define HIGH (gen + GENS * broken)

#if defined(BROKEN_LEAVER_NO_WAKE)
#define LEAVER_WAKES false
#elif defined(BROKEN_RESET_NO_FLAG)
#define LEAVER_WAKES (arrived == 0)
#else
#define LEAVER_WAKES (arrived == 0 && resetting)
#endif

inline wake_all() {
    d_step { i = 0; do :: i < 8 -> asleep[i] = false; i++ :: else -> break od; i = 0 }
}
inline wake_low() {
    d_step { i = 0; do :: i < 8 -> asleep_low[i] = false; i++ :: else -> break od; i = 0 }
}

proctype party(byte rounds) {
    byte my_gen, i, seen;
    bool had_waiters, wake;
    do
    :: rounds == 0 -> break
    :: rounds > 0 ->
        if
        :: atomic { broken -> skip }                                  /* CONC_BARRIER_BROKEN */
        :: atomic { !broken && arrived + 1 == PARTIES ->              /* the leader */
                    had_waiters = waiters; arrived = 0; waiters = false; gen = (gen + 1) % GENS };
           if :: had_waiters -> wake_all() :: else -> skip fi;
           had_waiters = false
        :: atomic { !broken && arrived + 1 < PARTIES -> my_gen = gen; arrived++ };
end_wait:  do
           :: atomic { gen != my_gen -> break }                                  /* released */
           :: atomic { gen == my_gen && broken -> arrived--; wake = LEAVER_WAKES }; /* leave */
              if :: wake -> wake_low() :: else -> skip fi;
              wake = false; break
           :: atomic { gen == my_gen && !broken && !waiters -> waiters = true }
           :: atomic { gen == my_gen && !broken && waiters -> seen = HIGH };
              atomic { if :: HIGH == seen -> asleep[_pid] = true :: else -> skip fi };
end_sleep:    !asleep[_pid]; seen = 0
           od
        fi;
        rounds--
    od
}

proctype resetter() {
    byte seen, i;
    bool had, abort_it;
    atomic { abort_it = (arrived != 0 && !broken) };
    if
    :: abort_it -> atomic { had = (!broken && waiters); broken = true };  /* conc_barrier_abort */
                   if :: had -> wake_all() :: else -> skip fi
    :: else -> skip
    fi;
    do
    :: atomic { !broken -> break }               /* not broken, or another reset finished first */
    :: atomic { broken && arrived == 0 -> broken = false; waiters = false; resetting = false };
       break
    :: atomic { broken && arrived != 0 ->
#ifndef BROKEN_RESET_NO_FLAG
                resetting = true;
#endif
                seen = LOW };
       atomic { if :: LOW == seen -> asleep_low[_pid] = true :: else -> skip fi };
       !asleep_low[_pid]
    od;
    resets_done++
}

init {
    atomic {
        run party(2);
        run party(2);
        run resetter();
        run resetter()
    }
    (resets_done == 2)
}
