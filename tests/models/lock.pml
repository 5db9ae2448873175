/* tests/models/lock.pml - the conc_lock protocol (include/conc/lock.h), checked by spin
 * SPDX-License-Identifier: MIT
 *
 * Modelled as lock.h (commit 062f6e0) does it:
 *   - the word: HELD, HANDOFF, STARVING, WAKING and the exact sleeper count (SHARED is left
 *     out: it only picks the futex flavour);
 *   - acquire, try_acquire and acquire_until: the inline fetch_or(word, HELD) [lock.A1] takes the
 *     lock whenever HELD was clear, whatever else the word holds (sleepers, WAKING, and since
 *     551b579 also STARVING: a release frees the lock before it looks at STARVING). If HELD
 *     was set the fetch_or changed nothing: try returns EBUSY; the others go to the slow
 *     path's take-if-free or register CAS (acquire_until may find its deadline passed), and
 *     the sleep loop of conc__lock_acquire_slow with its `woken` flag: claim if the lock is
 *     free, or if woken and HANDOFF is set (conc__lock_claimed); on a timeout with the lock
 *     held by someone else, deregister; else, before sleeping again, retire WAKING if woken
 *     and set STARVING if starving (one CAS), then futex_wait;
 *   - futex_wait(word, seen): a past deadline returns ETIMEDOUT before the syscall; else the
 *     kernel atomically compares (EAGAIN) and queues. A queued sleeper leaves the kernel when
 *     a futex_wake dequeues it (it returns 0: woken), on timeout (acquire_until only, at any
 *     sleep) or on EINTR (a small global budget of spurious returns). Only the first counts
 *     as woken: Linux returns 0 from FUTEX_WAIT only to a thread a wake dequeued, and a
 *     dequeued thread returns 0 even if its timeout fires meanwhile;
 *   - futex_wake(1): dequeues any one queued sleeper (the kernel's FIFO order is not relied
 *     on) and says whether it found one;
 *   - release, two steps. First old = fetch_sub(word, HELD) [lock.R1]: the lock is free from then
 *     on. conc__lock_release_slow's checks on old belong to that step (they read nothing
 *     else): no sleepers in old -> done (STARVING or WAKING may stay in the word); WAKING and
 *     no STARVING in old -> done (the loop's first pass decides on v = old - HELD). Then, as
 *     a later step, the slow path's CAS loop on the current word: HELD (a barger got in) or
 *     no sleepers -> done; STARVING -> take the lock back with HELD|HANDOFF|WAKING [lock.R2];
 *     WAKING -> done; else set WAKING. If its CAS found WAKING clear it wakes, through
 *     conc__lock_wake_one: futex_wake(1); if that found nobody, take stock of the word:
 *     WAKING clear -> done; HANDOFF and no sleepers -> retract it (word = 0, a plain
 *     release); HANDOFF and sleepers -> wake again, or (once lock.h's bounded wait for a
 *     claim ran out; any number of wakes here) retract it into a plain release that keeps
 *     the sleepers but not STARVING, then one last futex_wake; lock free and sleepers -> clear
 *     WAKING, then one last futex_wake; else clear WAKING. No case waits for a registered
 *     sleeper to arrive (one that died or was stopped never would).
 *   N = 3 processes run ROUNDS = 3 rounds each, each round choosing acquire, try_acquire or
 *   acquire_until.
 *
 * One reduction keeps this small: a CAS loop whose decisions depend only on the value it read
 * is one atomic step here. A failed CAS changes nothing but the caller's copy of the word, and
 * the retry decides afresh from the value the CAS returned, so the loop behaves as a single
 * read-modify-write at the moment its successful CAS (or its give-up read) happened. This
 * covers the acquire paths (a fetch_or that finds HELD set writes nothing; the bounded spin
 * only reads, and takes the lock when free: the take-if-free step at a later moment), each
 * pass of the sleep loop, the release slow path's CAS loop (its first CAS, on the stale
 * old - HELD, succeeds only if the word still holds that value, so it too acts on the word
 * as it is at that moment) and wake_one's stock-taking loop. What the reduction may not merge
 * stays separate: the value a sleeper passes to futex_wait is read in one step and compared
 * by the kernel in a later one; a sleeper leaves the kernel in one step and reads the word in
 * a later one; a release's fetch_sub and its slow path's CAS are two steps (anyone may take
 * the lock, time out or claim in between), the wake is a third, and each futex_wake of
 * wake_one is a step of its own, apart from the stock-taking after it.
 *
 * Checked (pan -DSAFETY):
 *   - mutual exclusion: inside == 1 whenever a process enters, and the word then says HELD
 *     with no pending HANDOFF;
 *   - a release never finds the lock free or handed off (lock.h would abort);
 *   - no lost wakeup and no stranded HANDOFF: every process finishes its rounds (a sleeper
 *     left behind is an invalid end state). Plain acquires cannot time out and spurious
 *     returns are budgeted, so a missed wake really strands someone;
 *   - afterwards the word is 0 again: no sleeper count, STARVING, WAKING or HANDOFF leaks;
 *   - handoff fairness: whoever takes the lock from a word with HANDOFF set is a sleeper whose
 *     last futex_wait returned from a futex_wake (not a newcomer, not a sleeper back from
 *     EAGAIN, EINTR or a timeout).
 *
 * History: lock.h as of 551b579 failed the end check: the word was left STARVING. A sleeper that
 * waited long enough to set STARVING is last in line; the holder's fetch_sub frees the lock,
 * and before its slow path looks again the sleeper (back from EAGAIN) finds the lock free
 * and claims it. conc__lock_claimed clears STARVING only for a HANDOFF claim, so the word is
 * HELD|STARVING with no sleeper left; the releaser's slow path sees HELD and leaves, and the
 * claimer's release finds no sleepers in old and leaves STARVING behind for good. Nothing
 * else breaks (with that one check relaxed, 12.1 million states, errors: 0), but every later
 * release takes the cold path, and the next sleeper gets a handoff nobody asked for. The fix
 * modelled here: conc__lock_claimed also clears STARVING when the claimer was the last
 * sleeper, HANDOFF or not; lock.h has it since 062f6e0.
 * Later, wake_one kept waking while any sleeper was registered and the lock free or handed
 * off, so a CONC_SHARED lock's waiter that was killed (or stopped) held its releaser in that
 * loop for good. Retiring WAKING outright instead loses a wake (RETIRE_NO_LAST_WAKE: a
 * sleeper queued after the wake that found nobody, while a release skipped its own wake for
 * the WAKING it saw); retiring it and then waking once more does not. Now: 3 processes x 3
 * rounds, 25.8 million states, errors: 0 (about 40 s, 1.9 GB); no statement unreached.
 * Retracts, wakes that find nobody, wake-again loops and handoffs taken back after a fetch_sub
 * all occur. Also verified by hand: -DROUNDS=2 (2.1 million states), -DSPURIOUS=2 (18.7
 * million states, 1.4 GB) and 4 processes x 1 round (7.0 million states). With the rule of
 * lock.h before f710d39 (any sleeper may claim a HANDOFF: HANDOFF_TO_ANY below) only the
 * fairness check fails.
 *
 * Run: bash tests/run.sh models /tmp/m.log, or by hand:
 *   spin -a lock.pml && gcc -O2 -DSAFETY -o pan pan.c && ./pan -m1000000 | grep errors
 * Spin is sequentially consistent: memory ordering is TSan's job (tests/test_lock.c).
 *
 * Deliberately broken variants (spin -DNAME); each must make pan report errors:
 */
// broken: NO_WAKE the release slow path sets WAKING or hands off but never wakes anyone
// broken: WOKEN_KEEPS_WAKING a woken sleeper goes back to sleep without clearing WAKING
// broken: WAKE_ONCE conc__lock_wake_one stops after one wake even if it found nobody
// broken: HANDOFF_DROPS_HELD the slow path hands off without taking HELD back: a free HANDOFF
// broken: HANDOFF_TO_ANY any sleeper may claim a HANDOFF, woken or not (lock.h before f710d39)
// broken: RELEASE_HELD_TEST_INVERTED the slow path leaves when the lock is free, acts if held
// broken: RELEASE_STALE_OLD the slow path acts on old: a blind fetch_or lands on a barger's lock
// broken: CLAIM_KEEPS_STARVING conc__lock_claimed of lock.h 551b579: STARVING outlives sleepers
// broken: RETIRE_NO_LAST_WAKE a free lock's WAKING is retired without the last wake
// broken: RETRACT_NO_LAST_WAKE a retracted handoff (sleepers left registered) has no last wake
// pan-cc: -DSAFETY
// pan-run: -m1000000

#define N 3 /* processes: futex_wake_one names each one */
#ifndef ROUNDS
#define ROUNDS 3
#endif

#define HELD 1
#define HANDOFF 2
#define STARVING 4
#define WAKING 8
#define SLEEPER 16
#define SLEEPERS 240 /* bits 4..7: room for 15 sleepers; N is 3 */

#define ACQUIRE 0
#define TRY 1
#define UNTIL 2

#define ETIMEDOUT 1

#ifndef SPURIOUS
#define SPURIOUS 1
#endif

byte word;         /* the lock word */
bool sleeping[N];  /* queued on the word in the kernel */
bool woke[N];      /* dequeued by a futex_wake: the pending futex_wait returns 0 */
byte inside;       /* processes between a successful acquire and their release */
byte spurious = SPURIOUS; /* spurious returns (EINTR) left to hand out */
hidden byte nv;    /* scratch inside one atomic step */
hidden byte prev;  /* the word before a successful acquire */
hidden byte woken; /* lock.h's `woken`: our last futex_wait returned 0 */

/* A process got the lock (prev: the word before): nobody else may be inside, the word must
 * say so, and a HANDOFF went to a sleeper that a futex_wake took out of the kernel. */
#define ENTER                                                                                   \
    inside++;                                                                                   \
    assert(inside == 1 && (word & HELD) != 0 && (word & HANDOFF) == 0);                         \
    assert((prev & HANDOFF) == 0 || woken)

/* The end of a round: forget its locals, so equal global states compare equal. */
#define NEXT_ROUND                                                                              \
    round++;                                                                                    \
    mode = 0;                                                                                   \
    v = 0;                                                                                      \
    r = 0;                                                                                      \
    starving = false

/* conc_futex_wake(word, 1): wake any one queued sleeper (the kernel's FIFO order is not
 * relied on), or nobody; proceed at `woke_one` or `woke_none`. */
#define FUTEX_WAKE_ONE(woke_one, woke_none)                                                     \
    if                                                                                          \
    :: sleeping[0] -> sleeping[0] = false; woke[0] = true; goto woke_one                        \
    :: sleeping[1] -> sleeping[1] = false; woke[1] = true; goto woke_one                        \
    :: sleeping[2] -> sleeping[2] = false; woke[2] = true; goto woke_one                        \
    :: else -> goto woke_none                                                                   \
    fi

/* conc__lock_claimed(v, woken, starving) into nv, with the fix lock.h 551b579 lacks (the
 * last block; CLAIM_KEEPS_STARVING leaves it out) */
inline claimed() {
    nv = (v | HELD) - SLEEPER;
    if
    :: woken -> nv = nv & ~WAKING
    :: else -> skip
    fi;
    if
    :: (v & HANDOFF) != 0 ->
        nv = nv & ~HANDOFF;
        if
        :: !starving || (nv & SLEEPERS) == 0 -> nv = nv & ~STARVING
        :: else -> skip
        fi
    :: else -> skip
    fi;
#ifndef CLAIM_KEEPS_STARVING
    /* The last sleeper out ends handoff mode also when it claims a free lock: since 551b579
     * a release frees the lock before it looks at STARVING, so a sleeper can find the lock
     * free with STARVING set. */
    if
    :: (nv & SLEEPERS) == 0 -> nv = nv & ~STARVING
    :: else -> skip
    fi
#endif
}

proctype P(byte me) {
    byte round, mode, v, r;
    bool starving;

next:
    atomic {
        if
        :: round == ROUNDS -> goto finished
        :: else -> skip
        fi;
        if
        :: mode = ACQUIRE
        :: mode = TRY
        :: mode = UNTIL
        fi;
        /* The fetch_or(word, HELD) [lock.A1], the spin and the register loop all take the lock
         * if HELD is clear, keeping the rest of the word; otherwise try returns EBUSY,
         * acquire_until may find its deadline passed, and the rest register as a sleeper. */
        if
        :: (word & HELD) == 0 -> prev = word; word = word | HELD; woken = false; ENTER; goto critical
        :: else -> skip
        fi;
        if
        :: mode == TRY -> NEXT_ROUND; goto next                   /* EBUSY */
        :: mode == UNTIL -> NEXT_ROUND; goto next                 /* ETIMEDOUT */
        :: mode != TRY -> word = word + SLEEPER; v = word         /* registered */
        fi
    };
    /* The first pass of the sleep loop decides on v, the word as we registered it: HELD, and
     * we were not woken, r is 0, and the clock has only just been read (not starving), so it
     * goes straight to futex_wait(v). */
    goto futex_wait;

sleep_loop:
    if
    :: atomic { mode == UNTIL && sleeping[me] -> sleeping[me] = false; r = ETIMEDOUT }
    :: atomic { spurious > 0 && sleeping[me] -> spurious--; sleeping[me] = false } /* EINTR */
    :: atomic {
        !sleeping[me] ->
        /* Back from futex_wait (or never asleep): woken = (r == 0), then the later passes.
         * Each reads the word and acts on it in one step (a failed CAS only refreshes v and
         * decides again); its CAS, if any, is that step's write. */
        woken = woke[me];
        woke[me] = false;
        v = word;
#ifdef HANDOFF_TO_ANY
        if
        :: (v & HELD) == 0 || (v & HANDOFF) != 0 ->
#else
        if
        :: (v & HELD) == 0 || (woken && (v & HANDOFF) != 0) ->
#endif
            claimed(); prev = word; word = nv; ENTER; goto critical /* [lock.A2] */
        :: else -> skip
        fi;
        if
        :: r == ETIMEDOUT ->
            /* held by someone else at our deadline: deregister; the last one out ends
             * handoff mode */
            nv = v - SLEEPER;
            if
            :: (nv & SLEEPERS) == 0 -> nv = nv & ~STARVING
            :: else -> skip
            fi;
            word = nv;
            NEXT_ROUND;
            goto next
        :: else -> skip
        fi;
        if
        :: !starving -> starving = true /* waited CONC_LOCK_FAIR_NS by now */
        :: true -> skip
        fi;
        /* before sleeping again: retire our WAKING, ask for a handoff (one CAS) */
        nv = v;
#ifndef WOKEN_KEEPS_WAKING
        if
        :: woken -> nv = nv & ~WAKING
        :: else -> skip
        fi;
#endif
        if
        :: starving -> nv = nv | STARVING
        :: else -> skip
        fi;
        word = nv;
        v = nv
       }
    fi;
futex_wait:
    /* r = conc_futex_wait(&word, v, deadline): a past deadline returns before the syscall;
     * else the kernel compares and queues in one step (EAGAIN if the word changed). The next
     * pass reloads v. */
    atomic {
        if
        :: mode == UNTIL -> r = ETIMEDOUT
        :: word == v -> sleeping[me] = true
        :: else -> skip
        fi;
        v = 0
    };
    goto sleep_loop;

critical:
    /* conc_lock_release: old = fetch_sub(word, HELD) [lock.R1]; the lock is free from here on,
     * whatever else the word holds. The slow path's checks on `old` (misuse, no sleepers) and
     * the first pass of its loop, which decides on the stale v = old - HELD, are decisions on
     * the value this step read, so they belong to it; only a CAS of that loop goes further. */
    atomic {
        inside--;
        v = word;
        assert((v & HELD) != 0 && (v & HANDOFF) == 0); /* "the lock is not held" */
        word = v - HELD;
        if
        :: (v & SLEEPERS) == 0 -> NEXT_ROUND; goto next /* fast path, or nobody to wake */
        :: (v & SLEEPERS) != 0 && (v & STARVING) == 0 && (v & WAKING) != 0 ->
            NEXT_ROUND; goto next /* a woken sleeper is on its way */
#ifdef RELEASE_STALE_OLD
        :: else -> v = v - HELD
#else
        :: else -> v = 0
#endif
        fi
    };
    /* conc__lock_release_slow's CAS loop, one step at its successful CAS or its give-up read
     * (a failed CAS refreshes v and decides again; a first CAS on the stale v succeeds only
     * if the word still is old - HELD, the value read here anyway). */
release_slow:
    atomic {
#ifdef RELEASE_STALE_OLD
        /* act on old without looking again: a blind fetch_or of what old asked for */
        if
        :: (v & STARVING) != 0 -> word = word | HELD | HANDOFF | WAKING
        :: else -> word = word | WAKING
        fi;
#else
        v = word;
#ifdef RELEASE_HELD_TEST_INVERTED
        if
        :: (v & HELD) == 0 || (v & SLEEPERS) == 0 -> NEXT_ROUND; goto next
        :: else -> skip
        fi;
#else
        if
        :: (v & HELD) != 0 || (v & SLEEPERS) == 0 -> NEXT_ROUND; goto next /* barged, or gone */
        :: else -> skip
        fi;
#endif
        if
#ifdef HANDOFF_DROPS_HELD
        :: (v & STARVING) != 0 -> word = v | HANDOFF | WAKING
#else
        :: (v & STARVING) != 0 -> word = v | HELD | HANDOFF | WAKING /* take it back, hand off */
#endif
        :: (v & STARVING) == 0 && (v & WAKING) != 0 -> NEXT_ROUND; goto next
        :: (v & STARVING) == 0 && (v & WAKING) == 0 -> word = v | WAKING
        fi;
#endif
#ifdef NO_WAKE
        NEXT_ROUND; goto next
#else
        if
        :: (v & WAKING) != 0 -> NEXT_ROUND; goto next /* a woken sleeper is on its way */
        :: else -> v = 0
        fi
#endif
    };
    /* conc__lock_wake_one: wake; if that found nobody, take stock in one step (its load and
     * CAS loop) and maybe wake again. */
wake:
    atomic {
        FUTEX_WAKE_ONE(woke_one, woke_none);
woke_one:
        NEXT_ROUND;
        goto next
    };
woke_none:
    atomic {
#ifdef WAKE_ONCE
        NEXT_ROUND; goto next
#else
        v = word;
        if
        :: (v & WAKING) == 0 -> skip /* a later release or a woken sleeper took over */
        :: else ->
            if
            :: (v & HANDOFF) != 0 && (v & SLEEPERS) == 0 -> word = 0 /* [lock.R3] retract */
            :: else ->
                if
                :: (v & SLEEPERS) != 0 && (v & HANDOFF) != 0 ->
                    v = 0; goto wake /* lock.h: while its bounded count of wakes lasts */
                :: (v & SLEEPERS) != 0 && (v & HANDOFF) != 0 ->
                    word = v & ~(HELD | HANDOFF | WAKING | STARVING); /* [lock.R3] retracted */
                    v = 0;
#ifdef RETRACT_NO_LAST_WAKE
                    NEXT_ROUND; goto next
#else
                    goto last_wake
#endif
                :: (v & SLEEPERS) != 0 && (v & HELD) == 0 ->
                    word = v & ~WAKING;
                    v = 0;
#ifdef RETIRE_NO_LAST_WAKE
                    NEXT_ROUND; goto next
#else
                    goto last_wake
#endif
                :: else -> word = v & ~WAKING
                fi
            fi
        fi;
        NEXT_ROUND;
        goto next
#endif
    };

    /* The last wake after WAKING was retired (or a handoff retracted): for a sleeper that got
     * into the kernel before that step. Done whether it finds one or not. */
last_wake:
    atomic {
        FUTEX_WAKE_ONE(last_woke, last_none);
last_woke:
last_none:
        NEXT_ROUND;
        goto next
    };

finished:
    skip
}

init {
    atomic { run P(0); run P(1); run P(2) };
    (_nr_pr == 1); /* every process finished its rounds: nobody is stranded asleep */
    assert(word == 0 && !sleeping[0] && !sleeping[1] && !sleeping[2]);
    assert(!woke[0] && !woke[1] && !woke[2])
}
