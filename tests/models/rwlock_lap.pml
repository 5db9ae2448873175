/* tests/models/rwlock_lap.pml - conc_rwlock's phase coming back round (include/conc/rwlock.h),
 * for spin.
 * SPDX-License-Identifier: MIT
 *
 * rwlock.pml checks the protocol with a phase of 4 values and one timed attempt, so the phase
 * never comes back round there. rwlock.h's phase has 64 values and a writer at its deadline
 * ends its phase without waiting for the readers inside, so timed writers can move it any
 * number of times; this model gives it 2 values and lets one writer time out twice, which is
 * what 63 timed-out writers do to 64. The steps are rwlock.pml's (its reader, futex_wait,
 * wakes, scan and end of phase, copied), with one reader, an untimed writer and a writer
 * that tries twice with a deadline that may come at any moment. A writer at its deadline
 * ends its phase only once the central count is 0: a reader counted there was admitted by
 * the last end of a phase and has not looked yet, and one more end would bring the phase
 * back to the one it queued in.
 * Checked:
 *   - exclusion: no reader inside its critical section together with a writer, at most one
 *     writer;
 *   - no lost wakeup and no reader stranded inside: every process finishes (a sleeper left
 *     asleep is an invalid end state);
 *   - at the end the word is back to {0, 0, no bits} and every slot to 0.
 * (A reader still in its slot may see the phase come back round and queue behind one more
 * writer, who waits for it to leave the slot: a longer wait, which rwlock.pml's fairness
 * check, with its 4 values, does not meet here.)
 *
 * // broken: BROKEN_TIMEOUT_LAPS    rwlock.h before the fix: a writer at its deadline ends its
 *                                   phase at once; the admitted reader sees the phase back at
 *                                   its own under the untimed writer's WRITER and sleeps,
 *                                   counted inside, while that writer waits for it
 */
// broken: BROKEN_TIMEOUT_LAPS
// pan-cc: -DSAFETY -DCOLLAPSE
// pan-run: -m1000000

#define PHASES 2

byte inside = 0;        /* the central count: readers admitted by a phase end, not settled */
byte queued = 0;        /* readers queued behind WRITER */
bool writer = false;
bool wsleeps = false;
bool rsleep = false;
byte phase = 0;
byte slot[2];           /* readers inside through each slot */
bool sbit[2];           /* each slot's WAITER bit: the writer sleeps on that slot's word */
byte on_slot[8];        /* where a sleeper sleeps: 0 the word's low half, k + 1 slot k */
bool wl = false;        /* the writers' inner lock */
bool asleep[8];
bool is_writer[8];      /* futex tag */
byte cs_readers = 0;    /* ghost: readers in their critical sections */
bool cs_writer = false; /* ghost */
bool pending[8];        /* ghost: queued reader, not yet inside its critical section */
byte rphase[8];         /* ghost: the phase it queued in */

#define LOW (inside + 8 * writer + 16 * wsleeps + 32 * rsleep + 64 * phase)
#define WORD (LOW + 256 * queued)
#define ADMITTED (!writer || phase != p)

inline futex_wait(expected) {
    atomic { if :: LOW == expected -> asleep[_pid] = true :: else -> skip fi }
    if
    :: !asleep[_pid]                                                       /* woken */
    :: atomic { asleep[_pid] && timed && !past -> asleep[_pid] = false; past = true } /* deadline */
    fi
}

inline futex_wait_slot(k, v) {
    atomic { if :: slot[k] == v && sbit[k] -> asleep[_pid] = true; on_slot[_pid] = k + 1
                :: else -> skip fi };
    if
    :: !asleep[_pid]                                                       /* woken */
    :: atomic { asleep[_pid] && timed && !past -> asleep[_pid] = false; past = true } /* deadline */
    fi;
    on_slot[_pid] = 0
}

/* The phase-ending CAS returned WRITER_SLEEPS: wake one writer asleep on the word. */
inline wake_word_writer() {
    d_step {
        i = 0;
        do
        :: i < 8 && is_writer[i] && asleep[i] && on_slot[i] == 0 -> asleep[i] = false; break
        :: i < 8 && !(is_writer[i] && asleep[i] && on_slot[i] == 0) -> i++
        :: i == 8 -> break
        od;
        i = 0
    }
}

inline wake_readers() {
    d_step {
        i = 0;
        do
        :: i < 8 -> if :: !is_writer[i] -> asleep[i] = false :: else -> skip fi; i++
        :: else -> break
        od;
        i = 0
    }
}

inline wake_writer() {
    /* fetch_and: WRITER_SLEEPS off; wake one writer if it was up */
    atomic { old_ws = wsleeps; wsleeps = false };
    if
    :: old_ws ->
        d_step {
            i = 0;
            do
            :: i < 8 && is_writer[i] && asleep[i] && on_slot[i] == 0 -> asleep[i] = false; break
            :: i < 8 && !(is_writer[i] && asleep[i] && on_slot[i] == 0) -> i++
            :: i == 8 -> break
            od;
            i = 0; old_ws = false
        }
    :: else -> skip
    fi
}

/* A reader leaves its slot: one fetch_sub [rwlock.R1], which returns the WAITER bit with the
 * count: the reader that empties a slot the writer sleeps on wakes it, by the slot's address. */
inline leave_slot(k) {
    atomic { old_ws = sbit[k] && slot[k] == 1; slot[k]-- };
    if
    :: old_ws ->
        d_step {
            i = 0;
            do
            :: i < 8 && asleep[i] && on_slot[i] == k + 1 -> asleep[i] = false; break
            :: i < 8 && !(asleep[i] && on_slot[i] == k + 1) -> i++
            :: i == 8 -> break
            od;
            i = 0
        }
    :: else -> skip
    fi;
    old_ws = false
}

inline release_shared(k) {
    atomic { cs_readers-- };
    leave_slot(k)
}

inline end_phase() {
    wl = false;   /* the inner lock first: the CAS below is the release's last touch */
    atomic {
        had_rsleep = rsleep; had_wsleeps = wsleeps;
        inside = inside + queued; queued = 0;
        writer = false; wsleeps = false; rsleep = false;
        phase = (phase + 1) % PHASES
    };
    if :: had_rsleep -> wake_readers() :: else -> skip fi;
    if :: had_wsleeps -> wake_word_writer() :: else -> skip fi;
    had_rsleep = false; had_wsleeps = false
}

proctype reader(byte rounds; bool timed; byte k) {
    bool saw_writer, past, old_ws;
    byte p, i;
    int seen;
    do
    :: rounds == 0 -> break
    :: rounds > 0 ->
        past = false;
        atomic { slot[k]++ };                                /* [rwlock.A1] slot fetch_add */
        atomic { saw_writer = writer; p = phase };           /* [rwlock.A1] load of the word */
        if
        :: !saw_writer -> goto enter
        :: else -> skip
        fi;
        /* queue (the CAS), unless the phase ended already: then it is in, by its slot */
        if
        :: atomic { ADMITTED -> goto enter }
        :: atomic { !ADMITTED -> queued++; pending[_pid] = true; rphase[_pid] = p }
        fi;
        leave_slot(k);
        do
        :: atomic { ADMITTED -> goto settle }                                /* [rwlock.A3] */
        :: atomic { !ADMITTED && past ->                                 /* ETIMEDOUT */
                    queued--; pending[_pid] = false; goto next }
        :: atomic { !ADMITTED && timed && !past -> past = true }           /* the deadline comes */
        :: atomic { !ADMITTED && !past && !rsleep -> rsleep = true }
        :: atomic { !ADMITTED && !past && rsleep -> seen = LOW };
           futex_wait(seen); seen = 0
        od;
settle: /* admitted, counted in the central field: move into the slot */
        atomic { slot[k]++ };
        atomic { old_ws = wsleeps; inside-- };
        if :: old_ws -> wake_writer() :: else -> skip fi;
        old_ws = false;
enter:
        atomic {
            assert(!cs_writer);
            cs_readers++; pending[_pid] = false
        };
        release_shared(k);
next:
        rounds--
    od
}

/* drained(ww): the central count of the word the writer holds (loaded first), then each slot */
inline scan() {
    drained = (ww % 8 == 0);
    if
    :: drained -> atomic { drained = (slot[0] == 0) };
        if
        :: drained -> atomic { drained = (slot[1] == 0) }
        :: else -> skip
        fi
    :: else -> skip
    fi
}

proctype writer_proc(bool timed; byte attempts) {
    bool past, had_rsleep, had_wsleeps, old_ws, drained, cas_ok;
    byte i, k2, v;
    int ww, seen;
    is_writer[_pid] = true;
    do
    :: attempts == 0 -> break
    :: attempts > 0 ->
        past = false;
        atomic { !wl -> wl = true };                                        /* inner lock */
        /* [rwlock.A2] raise WRITER once the last writer's phase-ending CAS ran: until then
         * sleep on the word with WRITER_SLEEPS, which that CAS returns (and wakes for) */
        do
        :: atomic { !writer -> writer = true; ww = WORD }; break
        :: atomic { writer && !wsleeps -> wsleeps = true }
        :: atomic { writer && wsleeps -> seen = LOW }; futex_wait(seen); seen = 0
        od;
        do
        :: true ->
            scan();
            if
            :: drained -> atomic { wsleeps = false; drained = false; ww = 0 }; break
            :: else -> skip
            fi;
            if
#ifdef BROKEN_TIMEOUT_LAPS
            :: past -> end_phase(); goto next                                /* ETIMEDOUT */
#else
            :: past && ww % 8 == 0 -> end_phase(); goto next                 /* ETIMEDOUT */
#endif
            :: timed && !past -> past = true; atomic { ww = WORD }      /* the deadline comes */
            :: !past && ww % 8 == 0 ->
                /* no admitted reader unsettled: sleep on the first slot with readers in it */
                atomic { if :: slot[0] != 0 -> k2 = 0 :: else -> k2 = 2 fi };
                if :: k2 == 2 -> atomic { if :: slot[1] != 0 -> k2 = 1 :: else -> skip fi }
                   :: else -> skip fi;
                if
                :: k2 < 2 ->
                    atomic { v = slot[k2]; sbit[k2] = true };                     /* fetch_or */
                    if :: v != 0 -> futex_wait_slot(k2, v) :: else -> skip fi;
                    atomic { sbit[k2] = false };                                 /* fetch_and */
                    v = 0
                :: else -> skip
                fi;
                k2 = 0;
                atomic { ww = WORD }                                 /* [rwlock.A2] reload */
#ifdef BROKEN_TIMEOUT_LAPS
            :: !past && ww % 8 != 0 ->
#else
            :: ww % 8 != 0 ->  /* past too: admitted readers settle first (no deadline) */
#endif
                if
                :: (ww / 16) % 2 == 0 ->
                    atomic {
                        if
                        :: WORD == ww -> wsleeps = true; ww = WORD; cas_ok = true
                        :: else -> ww = WORD; cas_ok = false
                        fi
                    }
                :: else -> cas_ok = true
                fi;
                if
                :: cas_ok -> seen = ww % 256; futex_wait(seen); seen = 0   /* a settle wakes it */
                :: else -> skip
                fi;
                cas_ok = false;
                atomic { ww = WORD }                                 /* [rwlock.A2] reload */
            fi
        od;
        atomic { assert(cs_readers == 0 && !cs_writer); cs_writer = true };
        cs_writer = false;
        end_phase();
next:
        attempts--
    od
}

init {
    atomic {
        run reader(1, false, 0);
        run writer_proc(false, 1);
        run writer_proc(true, 2)
    }
    (_nr_pr == 1);
    assert(inside == 0 && queued == 0 && !writer && !wsleeps && !wl && cs_readers == 0);
    assert(slot[0] == 0 && slot[1] == 0 && !sbit[0] && !sbit[1])
}
