/* tests/models/rwlock.pml - the conc_rwlock phase-fair protocol (include/conc/rwlock.h), for spin.
 * SPDX-License-Identifier: MIT
 *
 * The word is {inside (the central count), queued, WRITER, WRITER_SLEEPS, READERS_SLEEP,
 * phase}; the readers' slots are separate words, each a count and a WAITER bit (two slots
 * here: the downgrading writer shares slot 0 with the first reader). Each atomic step of
 * rwlock.h is one step here: a slot's fetch_add/fetch_sub (which returns the bit with the
 * count), fetch_or/fetch_and of the bit, a load of the word or of one slot (a writer's scan is
 * several steps: the word first, then slot by slot), every CAS on the word (the writer raises
 * WRITER with one, once its predecessor's phase-ending CAS cleared it), the fetch_and that
 * retires WRITER_SLEEPS. Steps interleave in one order: the model is sequentially consistent,
 * as rwlock.h's seq_cst Dekker pairs are. futex_wait(low half) is the kernel's atomic "compare
 * and queue" on {inside, WRITER, the sleep bits, phase}; readers and writers sleep there with
 * different tags, and a wake for one tag wakes only those. The writer also sleeps on a slot's
 * word (compare: its count and bit), woken by that slot's last reader. The writers' inner
 * lock is conc_lock (tests/models/lock.pml), here one atomic test-and-set; a writer lets go
 * of it before its phase-ending CAS, so that CAS is its release's last touch of the lock.
 *
 * Two readers (one has a deadline that may come at any moment) and two writers (one has a
 * deadline while it waits for readers to leave, and at it waits for the central count to be
 * 0 before it ends its phase; the other may downgrade). rwlock_lap.pml checks why with a
 * phase that can come back round.
 * Checked:
 *   - exclusion: no reader inside its critical section together with a writer, at most one
 *     writer;
 *   - no lost wakeup: every process finishes (a sleeper left asleep is an invalid end state);
 *   - phase fairness: when a writer enters, no reader is still waiting whose phase has ended
 *     (a reader waits for one writer's phase at most; it is never overtaken by a second
 *     writer);
 *   - writer preference: a reader that saw WRITER does not enter until that phase ended;
 *   - at the end the word is back to {0, 0, no bits} and every slot to 0, WAITER down.
 * With DEAD (rwlock_dead.pml) one releaser may die inside its release, after the step that
 * lets the sleepers go and before its wake (a CONC_SHARED lock's process killed there): a
 * reader after its slot fetch_sub, a writer after its phase-ending CAS. Sleepers then also
 * wake when CONC__RWLOCK_SHARED_RECHECK_NS runs out; that timer fires only once somebody has
 * died, so lost wakeups stay visible. Every live process must still finish.
 *
 * // broken: BROKEN_NO_PHASE        a queued reader is admitted only by seeing WRITER clear: the
 *                                   next writer raises it first and waits for the admitted
 *                                   reader forever
 * // broken: BROKEN_READER_BARGES   the reader fast path ignores WRITER (reader preference):
 *                                   a reader enters beside the writer
 * // broken: BROKEN_LOOK_FIRST      the reader loads the word before raising its slot (no
 *                                   Dekker pair): reader and writer both miss each other
 * // broken: BROKEN_SPLIT_RELEASE   a reader leaving its slot reads the slot's WAITER bit before
 *                                   its fetch_sub: the writer raising it in between is never
 *                                   woken
 * // broken: BROKEN_RAISE_OVER_WRITER a writer raises WRITER without waiting for the phase-ending
 *                                   CAS of the writer before it (which let go of the inner lock
 *                                   first): that CAS clears it under the new writer
 * // broken: BROKEN_GONE_NO_WAKE     the phase-ending CAS ignores the WRITER_SLEEPS it returns:
 *                                   the next writer, asleep until that CAS, sleeps for good
 * // broken: BROKEN_SCAN_SLOTS_FIRST the writer reads the slots, then the central count: an
 *                                   admitted reader settling into its slot in between is missed
 * // broken: BROKEN_SETTLE_ORDER    an admitted reader leaves the central count before raising
 *                                   its slot: for a moment it is counted nowhere
 * // broken: BROKEN_NO_RECHECK      futex_wait sleeps without the kernel's compare
 * // broken: BROKEN_TIMEOUT_CLEARS  a writer at its deadline only clears WRITER, admitting the
 *                                   queued readers without counting them inside
 */
// broken: BROKEN_NO_PHASE
// broken: BROKEN_READER_BARGES
// broken: BROKEN_LOOK_FIRST
// broken: BROKEN_SPLIT_RELEASE
// broken: BROKEN_RAISE_OVER_WRITER
// broken: BROKEN_GONE_NO_WAKE
// broken: BROKEN_SCAN_SLOTS_FIRST
// broken: BROKEN_SETTLE_ORDER
// broken: BROKEN_NO_RECHECK
// broken: BROKEN_TIMEOUT_CLEARS
// pan-cc: -DSAFETY -DCOLLAPSE
// pan-run: -m2000000

#define PHASES 4

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
bool died = false;      /* DEAD: a releaser died between its RMW and its wake */

/* DEAD: the releaser may die here (once in all); it takes the wake it owes with it. */
#ifdef DEAD
#define MAY_DIE(m) if :: (m) && !died -> died = true; goto dead :: else -> skip fi
#else
#define MAY_DIE(m) skip
#endif

#define LOW (inside + 8 * writer + 16 * wsleeps + 32 * rsleep + 64 * phase)
#define WORD (LOW + 256 * queued)
#ifdef BROKEN_NO_PHASE
#define ADMITTED (!writer)
#else
#define ADMITTED (!writer || phase != p)
#endif

inline futex_wait(expected) {
#ifdef BROKEN_NO_RECHECK
    asleep[_pid] = true;
#else
    atomic { if :: LOW == expected -> asleep[_pid] = true :: else -> skip fi }
#endif
    if
    :: !asleep[_pid]                                                       /* woken */
    :: atomic { asleep[_pid] && timed && !past -> asleep[_pid] = false; past = true } /* deadline */
#if defined(DEAD) && !defined(BROKEN_NO_SHARED_RECHECK)
    :: atomic { asleep[_pid] && died -> asleep[_pid] = false }         /* 100 ms: look again */
#endif
    fi
}

/* The writer's sleep on slot k's word: the kernel compares {count, WAITER} with what its
 * fetch_or returned (v, and the bit it raised). */
inline futex_wait_slot(k, v) {
#ifdef BROKEN_NO_RECHECK
    asleep[_pid] = true; on_slot[_pid] = k + 1;
#else
    atomic { if :: slot[k] == v && sbit[k] -> asleep[_pid] = true; on_slot[_pid] = k + 1
                :: else -> skip fi };
#endif
    if
    :: !asleep[_pid]                                                       /* woken */
    :: atomic { asleep[_pid] && timed && !past -> asleep[_pid] = false; past = true } /* deadline */
#if defined(DEAD) && !defined(BROKEN_NO_SHARED_RECHECK)
    :: atomic { asleep[_pid] && died -> asleep[_pid] = false }         /* 100 ms: look again */
#endif
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

inline wake_writer(may_die) {
    /* fetch_and: WRITER_SLEEPS off; wake one writer if it was up */
    atomic { old_ws = wsleeps; wsleeps = false };
    if
    :: old_ws ->
        MAY_DIE(may_die);
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
inline leave_slot(k, may_die) {
#ifdef BROKEN_SPLIT_RELEASE
    atomic { old_ws = sbit[k] };
    atomic { old_ws = old_ws && slot[k] == 1; slot[k]-- };
#else
    atomic { old_ws = sbit[k] && slot[k] == 1; slot[k]-- };
#endif
    if
    :: old_ws ->
        MAY_DIE(may_die);
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

inline release_shared(k, may_die) {
    atomic { cs_readers-- };
    leave_slot(k, may_die)
}

inline end_phase(may_die) {
    wl = false;   /* the inner lock first: the CAS below is the release's last touch */
    atomic {
#ifdef BROKEN_TIMEOUT_CLEARS
        if
        :: timed && past -> had_rsleep = rsleep; had_wsleeps = wsleeps; writer = false;
                            rsleep = false; wsleeps = false
        :: else ->
#endif
        had_rsleep = rsleep; had_wsleeps = wsleeps;
        inside = inside + queued; queued = 0;
        writer = false; wsleeps = false; rsleep = false;
        phase = (phase + 1) % PHASES
#ifdef BROKEN_TIMEOUT_CLEARS
        fi
#endif
    };
    if :: had_rsleep -> MAY_DIE(may_die); wake_readers() :: else -> skip fi;
#ifndef BROKEN_GONE_NO_WAKE
    if :: had_wsleeps -> MAY_DIE(may_die); wake_word_writer() :: else -> skip fi;
#endif
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
#ifdef BROKEN_LOOK_FIRST
        atomic { saw_writer = writer; p = phase };
        atomic { slot[k]++ };
#else
        atomic { slot[k]++ };                                /* [rwlock.A1] slot fetch_add */
        atomic { saw_writer = writer; p = phase };           /* [rwlock.A1] load of the word */
#endif
#ifdef BROKEN_READER_BARGES
        saw_writer = false;
#endif
        if
        :: !saw_writer -> goto enter
        :: else -> skip
        fi;
        /* queue (the CAS), unless the phase ended already: then it is in, by its slot */
        if
        :: atomic { ADMITTED -> goto enter }
        :: atomic { !ADMITTED -> queued++; pending[_pid] = true; rphase[_pid] = p }
        fi;
        leave_slot(k, false);
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
#ifdef BROKEN_SETTLE_ORDER
        atomic { old_ws = wsleeps; inside-- };
        atomic { slot[k]++ };
#else
        atomic { slot[k]++ };
        atomic { old_ws = wsleeps; inside-- };
#endif
        if :: old_ws -> wake_writer(false) :: else -> skip fi;
        old_ws = false;
enter:
        atomic {
            assert(!cs_writer);
            assert(!saw_writer || phase != p);  /* waited for the writer it saw */
            cs_readers++; pending[_pid] = false
        };
        release_shared(k, true);
next:
        rounds--
    od;
dead:
    skip
}

/* drained(ww): the central count of the word the writer holds (loaded first), then each slot */
inline scan() {
#ifdef BROKEN_SCAN_SLOTS_FIRST
    atomic { drained = (slot[0] == 0) };
    atomic { drained = drained && slot[1] == 0 };
    atomic { drained = drained && inside == 0 }
#else
    drained = (ww % 8 == 0);
    if
    :: drained -> atomic { drained = (slot[0] == 0) };
        if
        :: drained -> atomic { drained = (slot[1] == 0) }
        :: else -> skip
        fi
    :: else -> skip
    fi
#endif
}

proctype writer_proc(bool timed; bool may_downgrade; byte k) {
    bool past = false, had_rsleep, had_wsleeps, old_ws, drained, cas_ok;
    byte i, k2, v;
    int ww, seen;
    is_writer[_pid] = true;
    atomic { !wl -> wl = true };                                            /* inner lock */
#ifdef BROKEN_RAISE_OVER_WRITER
    atomic { writer = true; ww = WORD };
#else
    /* [rwlock.A2] raise WRITER once the last writer's phase-ending CAS ran: until then sleep
     * on the word with WRITER_SLEEPS, which that CAS returns (and wakes for); a timed writer
     * gives up at its deadline (ETIMEDOUT, letting go of the inner lock) */
    do
    :: atomic { !writer -> writer = true; ww = WORD }; break
    :: atomic { writer && !wsleeps -> wsleeps = true }
    :: atomic { writer && wsleeps -> seen = LOW }; futex_wait(seen); seen = 0
    :: atomic { writer && past -> wl = false }; goto done
    od;
#endif
    do
    :: true ->
        scan();
        if
        :: drained -> atomic { wsleeps = false; drained = false; ww = 0 }; break /* fetch_and */
        :: else -> skip
        fi;
        if
        :: past && ww % 8 == 0 -> end_phase(true); goto done                     /* ETIMEDOUT */
        :: timed && !past -> past = true; atomic { ww = WORD }          /* the deadline comes */
        :: !past && ww % 8 == 0 ->
            /* no admitted reader unsettled: sleep on the first slot with readers in it */
            atomic { if :: slot[0] != 0 -> k2 = 0 :: else -> k2 = 2 fi };
            if :: k2 == 2 -> atomic { if :: slot[1] != 0 -> k2 = 1 :: else -> skip fi }
               :: else -> skip fi;
            if
            :: k2 < 2 ->
                atomic { v = slot[k2]; sbit[k2] = true };                         /* fetch_or */
                if :: v != 0 -> futex_wait_slot(k2, v) :: else -> skip fi;
                atomic { sbit[k2] = false };                                     /* fetch_and */
                v = 0
            :: else -> skip
            fi;
            k2 = 0;
            atomic { ww = WORD }                                     /* [rwlock.A2] reload */
        :: ww % 8 != 0 ->   /* past too: admitted readers settle first (no deadline) */
            /* admitted readers unsettled: raise WRITER_SLEEPS (a CAS against ww) unless ww
             * has it, and sleep on the word */
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
            atomic { ww = WORD }                                     /* [rwlock.A2] reload */
        fi
    od;
    atomic {
        assert(cs_readers == 0 && !cs_writer);
        i = 0;
        do   /* phase fairness: nobody admitted is overtaken */
        :: i < 8 -> assert(!(pending[i] && rphase[i] != phase)); i++
        :: else -> break
        od;
        cs_writer = true
    };
    if
    :: may_downgrade ->
        atomic { cs_writer = false; cs_readers++ };    /* keeps reading: in its slot first */
        atomic { slot[k]++ };
        end_phase(false);
        release_shared(k, true)
    :: true ->
        cs_writer = false;
        end_phase(true)
    fi;
done:
dead:
    skip
}

init {
    atomic {
        run reader(1, false, 0);
        run reader(1, true, 1);
        run writer_proc(false, true, 0);
        run writer_proc(true, false, 1)
    }
    (_nr_pr == 1);
    assert(inside == 0 && queued == 0 && !writer && !wsleeps && !wl && cs_readers == 0);
    assert(slot[0] == 0 && slot[1] == 0 && !sbit[0] && !sbit[1])
}
