/* tests/models/lock.pml - the conc_lock protocol (include/conc/lock.h), checked by spin
 * SPDX-License-Identifier: MIT
 *
 * Modelled as lock.h does it since releases stopped looking at the word after freeing it:
 *   - the word: HELD, HANDOFF, STARVING, WAKING, the handoff generation GEN and the exact
 *     sleeper count (SHARED is left out: it only picks the futex flavour);
 *   - acquire, try_acquire and acquire_until: the inline fetch_or(word, HELD) [lock.A1], the
 *     spin and the register loop take the lock whenever HELD is clear, whatever else the word
 *     holds. Otherwise try returns EBUSY, acquire_until may find its deadline passed, and the
 *     rest register: word + SLEEPER in one CAS (WAKING stays);
 *   - the sleep loop of conc__lock_acquire_slow: claim if the lock is free, or if a HANDOFF is
 *     pending and we may claim it: (a) our last futex_wait returned 0 (woken), (b) the value
 *     we last slept on (or tried to) had no HANDOFF, or another GEN: the handoff came after
 *     we slept, (c) we have slept on it for CONC__LOCK_HANDOFF_WAIT_NS (the event "10 ms
 *     passed", below). Else, at our deadline, deregister (the last one out of a pending
 *     HANDOFF frees the lock [lock.R3]); else, if woken, back from a sleep on WAKING that
 *     timed out (stale), or the only sleeper registered, retire WAKING, maybe set STARVING
 *     (one CAS), and futex_wait on that
 *     value (for at most CONC__LOCK_WAKING_WAIT_NS if it shows WAKING: the event "WAKING is
 *     stale", below). A claim retires WAKING on the same condition;
 *   - futex_wait(word, seen): a past deadline returns ETIMEDOUT before the syscall; else the
 *     kernel compares (EAGAIN) and queues in one step. A queued sleeper leaves the kernel when
 *     a futex_wake dequeues it (it returns 0: woken), on its own deadline (acquire_until),
 *     on EINTR (a small global budget of spurious returns), or on the handoff timeout of a
 *     sleeper that sleeps on a pending HANDOFF (c). Only the first counts as woken;
 *   - futex_wake(1): dequeues any one queued sleeper (the kernel's FIFO order and the tag
 *     that prefers a starving sleeper are not relied on: any choice is allowed) and says
 *     whether it found one;
 *   - release: one step, the CAS loop of conc_lock_release / conc__lock_release_slow, decides
 *     everything on the word it reads: no sleepers -> 0; STARVING -> HANDOFF|WAKING, GEN
 *     flipped, HELD kept [lock.R2]; WAKING -> clear HELD; else clear HELD, set WAKING. Then,
 *     unless WAKING was set already, as a separate step that touches nothing but the
 *     kernel's queue, one futex_wake (a
 *     handoff's two wakes, tagged then untagged, are one step here: any one sleeper). The
 *     release is structurally unable to touch the word after its CAS, and every step that
 *     touches the word asserts that its process is not in that phase (`freed`);
 *   - dead sleepers: a registered sleeper may stop for good (DEAD of them: killed, or stopped
 *     and never continued) on its way into futex_wait, while queued (the kernel dequeues
 *     it), or after a futex_wake dequeued it and before it ran (the wake is lost with it, as
 *     it is with a releaser killed between its CAS and its wake). It leaves its registration
 *     in the word. Dying is for CONC_SHARED locks, whose sleepers sleep at most
 *     CONC__LOCK_SHARED_RECHECK_NS at a time: the event "100 ms passed" (a sleeper asleep on
 *     a word without WAKING leaves the kernel and retires a WAKING it then finds), which the
 *     model lets happen once a sleeper has died;
 *   N = 3 processes run ROUNDS = 1 round each (exhaustive), each round choosing acquire,
 *   try_acquire or acquire_until, nobody dying; tests/models/lock_dead.pml checks this file
 *   with DEAD = 1 (and the variant without the fallback), tests/models/lock_r2.pml with
 *   ROUNDS = 2 in bitstate mode (past 100 million states: not exhaustive) and the variants
 *   that need a second round, tests/models/lock_any.pml with ANYTIME: the two timeouts below
 *   whenever C's timers can fire (not only when needed), and a foreign wake (a wake meant
 *   for a freed lock at the same address returns 0 here).
 *
 * A CAS loop whose decisions depend only on the value it read is one atomic step here: a
 * failed CAS changes nothing but the caller's copy of the word, and the retry decides afresh.
 * What may not be merged stays separate: the value a sleeper passes to futex_wait is read in
 * one step and compared by the kernel in a later one; a sleeper leaves the kernel in one step
 * and reads the word in a later one; a release's CAS and its wake are two steps.
 *
 * "WAKING is stale": a wake may find nobody, and the releaser does not look again, so a
 * sleeper that sleeps on WAKING may time out of that sleep and retire it. The model lets that
 * happen only when no wake is still to come for it (ghost wk_pending) and no woken sleeper is
 * in flight: otherwise that one must do, so a lost wake still shows (NO_WAKING_TIMEOUT, checked
 * in lock_r2.pml: a sleeper alone retires a stale WAKING without the timeout, so it takes
 * two sleepers stranded together and a third process taking the lock from them, which one
 * round each cannot reach).
 *
 * "10 ms passed" (c) is the fallback for handoffs nobody eligible claims. The model lets that
 * time pass only when it is needed: a sleeper has died (DEAD), or this sleeper registered
 * before the pending handoff was made (ghost pre[]) yet cannot tell it from an older one (its
 * value had a HANDOFF of the same GEN: it was held up across two handoffs). Without those, a
 * handoff has to be claimed by the eligible sleepers alone, so a protocol that strands one
 * shows as an invalid end state.
 *
 * Checked (pan -DSAFETY):
 *   - mutual exclusion: inside == 1 whenever a process enters, and the word then says HELD
 *     with no pending HANDOFF;
 *   - a release never finds the lock free or handed off (lock.h would abort);
 *   - after the CAS that frees or hands over the lock, the release makes no access to the word;
 *   - no lost wakeup and no stranded HANDOFF: every process that did not die finishes its
 *     rounds. Plain acquires cannot time out and spurious returns are budgeted, so a missed
 *     wake really strands someone;
 *   - afterwards, if nobody died, the word is 0 again (no sleeper count, STARVING, WAKING,
 *     GEN or HANDOFF leaks); if some died, the count is theirs;
 *   - a sleeper alone never sleeps on WAKING (it would sleep CONC__LOCK_WAKING_WAIT_NS
 *     while the releases skip their wakes; NO_SOLE_RETIRE, the protocol before, does);
 *   - handoff fairness: whoever takes the lock from a word with HANDOFF set was registered
 *     when the handoff was made (pre[]), or was woken by a futex_wake (the handoff's own wake
 *     may find a newcomer that got into the kernel after the handoff: lock.h tags starving
 *     sleepers so that it prefers them), or waited out (c): never another newcomer.
 *
 * GEN: lock.h counts handoffs in 4 bits (16 generations); the model keeps 1 bit, so that
 * wraps happen in it, and lets the fallback run once one has (ghost `wrapped`: a sleeper that
 * registered before the pending handoff saw a word of the same generation as its own).
 *
 * History: lock.h as of 551b579 left the word STARVING (fixed in 062f6e0: conc__lock_claimed
 * clears STARVING when the claimer was the last sleeper; since a release with no sleepers
 * clears STARVING too, leaving that out breaks nothing now). Until the releases stopped
 * looking at the word after freeing the lock, the model was the older protocol, whose
 * wake_one took stock after a wake that found nobody (LOOK_AFTER_WAKE below shows the new
 * check catching it). Without GEN (NO_GEN), a sleeper that registered while a handoff was
 * pending is not eligible for the next one, whose wake may find nobody: that strands the
 * handoff for the fallback's 10 ms with nobody dead (found by this model). Sleepers that all
 * clear WAKING (register, re-sleep, claim) keep the protocol correct without the WAKING
 * timeout, but every registration then means another wake: at 8 threads on 2 CPUs, 1.7
 * million wakes a second and a fifth of the throughput. With 1 bit of
 * GEN, a sleeper held up across two handoffs strands the same way (found by this model;
 * hence 4 bits in lock.h). Now: 0.10 million states, errors: 0; lock_dead.pml 0.21 million;
 * ROUNDS = 2 exhaustive ran to 113 million states without errors before 5 GB (-DCOLLAPSE),
 * and lock_r2.pml's bitstate run visits about 83 million (1.5 minutes), errors: 0.
 *
 * Until CONC_SHARED sleeps ended every CONC__LOCK_SHARED_RECHECK_NS, a waiter killed between
 * its wake and its first step (or a releaser killed between its CAS and its wake) left the
 * sleepers asleep on a word without WAKING asleep for good (lock_dead.pml's
 * NO_SHARED_RECHECK; the model left that death out then).
 *
 * Until a sleeper alone retired the WAKING it found, a lone waiter whose wake missed it on
 * its way into the kernel, against a thread that re-took the lock at once, slept on that
 * WAKING for CONC__LOCK_WAKING_WAIT_NS while every release skipped its wake (NO_SOLE_RETIRE).
 *
 * Run: bash tests/run.sh models /tmp/m.log, or by hand:
 *   spin -a lock.pml && gcc -O2 -DSAFETY -o pan pan.c && ./pan -m1000000 | grep errors
 * Spin is sequentially consistent: memory ordering is TSan's job (tests/test_lock.c).
 *
 * Deliberately broken variants (spin -DNAME); each must make pan report errors:
 */
// broken: NO_WAKE a release sets WAKING (or hands off) but never wakes anyone
// broken: HANDOFF_WOKEN_ONLY only a woken sleeper may claim a HANDOFF (or after 10 ms)
// broken: HANDOFF_TO_ANY any sleeper may claim a HANDOFF, newcomers too
// broken: HANDOFF_DROPS_HELD the release hands off without keeping HELD: a free HANDOFF
// broken: LOOK_AFTER_WAKE the old wake_one: after a wake that found nobody, retire WAKING
// broken: NO_SOLE_RETIRE a sleeper alone keeps a WAKING whose wake missed it and sleeps on it
// broken: TIMEOUT_ANY any ETIMEDOUT ends the wait as the caller's deadline: plain acquires give up
// pan-cc: -DSAFETY
// pan-run: -m1000000

#define N 3 /* processes: futex_wake_one names each one */
#ifndef ROUNDS
#define ROUNDS 1 /* lock_r2.pml: 2 */
#endif
#ifndef DEAD
#define DEAD 0 /* sleepers that may die: lock_dead.pml */
#endif
#ifndef SPURIOUS
#define SPURIOUS 1
#endif

#define HELD 1
#define HANDOFF 2
#define STARVING 4
#define WAKING 8
#define GEN 16
#define SLEEPER 32
#define SLEEPERS 224 /* bits 5..7: room for 7 sleepers; N is 3 */

#define ACQUIRE 0
#define TRY 1
#define UNTIL 2

byte word;         /* the lock word */
bool sleeping[N];  /* queued on the word in the kernel */
bool woke[N];      /* dequeued by a futex_wake: the pending futex_wait returns 0 */
bool reg[N];       /* ghost: registered as a sleeper */
bool pre[N];       /* ghost: registered when the pending HANDOFF was made */
byte inside;       /* processes between a successful acquire and their release */
byte dead;         /* sleepers that died */
bool wrapped;      /* ghost: a sleeper was held up across two handoffs (GEN wrapped) */
byte wk_pending;   /* ghost: releases that set WAKING and have not made their wake yet */
byte spurious = SPURIOUS; /* spurious returns (EINTR) left to hand out */
#ifdef ANYTIME
byte foreign = 1;  /* returns of 0 with no wake of this lock's (lock_any.pml) */
#endif
hidden byte nv;    /* scratch inside one atomic step */
hidden byte prev;  /* the word before a successful acquire */
hidden byte found; /* the last futex_wake found somebody */
hidden byte woken; /* lock.h's `woken`: our last futex_wait returned 0 (read in one step) */
hidden byte claim; /* scratch: we take the lock in this step */

/* A process got the lock (prev: the word before): nobody else may be inside, the word must
 * say so, and a HANDOFF went to a sleeper registered before it was made, or woken, or after
 * (c). */
#define ENTER(fair)                                                                             \
    inside++;                                                                                   \
    assert(inside == 1 && (word & HELD) != 0 && (word & HANDOFF) == 0);                         \
    assert((prev & HANDOFF) == 0 || (fair))

/* The WAKING in the word is stale: no wake is still to come for it (wk_pending) and no woken
 * sleeper is in flight; a sleeper that slept on it for CONC__LOCK_WAKING_WAIT_NS may then
 * time out and retire it. The model lets that time pass only then: while a wake or a woken
 * sleeper is on its way, that one must do. */
#if defined(NO_WAKING_TIMEOUT)
#define STALE_EVENT false
#elif defined(ANYTIME)
#define STALE_EVENT ((slept & WAKING) != 0)
#else
#define STALE_EVENT                                                                             \
    ((slept & WAKING) != 0 && (word & WAKING) != 0 && wk_pending == 0 && !woke[0] && !woke[1] &&    \
     !woke[2])
#endif

/* pre[] matters only while a HANDOFF is pending: forget it when none is. */
#define CLEAR_PRE pre[0] = false; pre[1] = false; pre[2] = false

/* Every step that reads or writes the word: not a release past its freeing CAS. */
#define TOUCH assert(!freed)

/* (c) may happen: a handoff is pending that needs it (see the top). */
#define STALE (pre[me] && (slept & HANDOFF) != 0 && ((slept ^ word) & GEN) == 0)
#define FALLBACK_OK ((word & HANDOFF) != 0 && (dead > 0 || wrapped || STALE))

/* A CONC_SHARED sleep on a word without WAKING ran out (CONC__LOCK_SHARED_RECHECK_NS). The
 * model lets that time pass only when it is needed: a sleeper died (it may have taken a wake
 * with it), no wake is still to come and no woken sleeper is in flight, and the word shows a
 * WAKING to retire or a free lock. (Else a sleeper that may not claim a pending handoff would
 * go round for ever instead of showing as stranded: NO_FALLBACK.) */
#if defined(NO_SHARED_RECHECK)
#define RECHECK_EVENT false
#elif defined(ANYTIME)
#define RECHECK_EVENT ((slept & WAKING) == 0)
#else
#define RECHECK_EVENT                                                                           \
    ((slept & WAKING) == 0 && dead > 0 && wk_pending == 0 && !woke[0] && !woke[1] && !woke[2] && \
     ((word & WAKING) != 0 || (word & HELD) == 0))
#endif

#if defined(NO_FALLBACK)
#define FALLBACK_EVENT false
#elif defined(ANYTIME)
#define FALLBACK_EVENT ((slept & HANDOFF) != 0)
#else
#define FALLBACK_EVENT ((slept & HANDOFF) != 0 && FALLBACK_OK)
#endif

/* The end of a round: forget its locals, so equal global states compare equal. */
#define NEXT_ROUND                                                                              \
    round++;                                                                                    \
    mode = 0;                                                                                   \
    v = 0;                                                                                      \
    slept = 0;                                                                                  \
    timedout = false;                                                                            \
    expired = false;                                                                            \
    stale = false;                                                                              \
    freed = false;                                                                              \
    starving = false

/* conc_futex_wake(word, 1): wake any one queued sleeper, or nobody. */
#define FUTEX_WAKE_ONE                                                                          \
    if                                                                                          \
    :: sleeping[0] -> sleeping[0] = false; woke[0] = true; found = true                         \
    :: sleeping[1] -> sleeping[1] = false; woke[1] = true; found = true                         \
    :: sleeping[2] -> sleeping[2] = false; woke[2] = true; found = true                         \
    :: else -> found = false                                                                    \
    fi

/* A dead sleeper: its registration stays, it never runs again. */
#define DIE dead++; goto finished

/* conc__lock_claimed(v, starving) into nv */
inline claimed() {
    nv = ((v | HELD) - SLEEPER) & ~WAKING;
    if
    :: (v & HANDOFF) != 0 ->
        nv = nv & ~HANDOFF;
        if
        :: !starving -> nv = nv & ~STARVING
        :: else -> skip
        fi
    :: else -> skip
    fi;
#ifndef CLAIM_KEEPS_STARVING
    if
    :: (nv & SLEEPERS) == 0 -> nv = nv & ~(STARVING | GEN)
    :: else -> skip
    fi
#else
    if
    :: (nv & SLEEPERS) == 0 -> nv = nv & ~GEN
    :: else -> skip
    fi
#endif
}

proctype P(byte me) {
    byte round, mode, v, slept;
    bool starving, timedout, expired, freed, stale;

next:
    atomic {
        TOUCH;
        if
        :: round == ROUNDS -> goto finished
        :: else -> skip
        fi;
        if
        :: mode = ACQUIRE
        :: mode = TRY
        :: mode = UNTIL
        fi;
        if
        :: (word & HELD) == 0 -> prev = word; word = word | HELD; ENTER(false); goto critical
        :: else -> skip
        fi;
        if
        :: mode == TRY -> NEXT_ROUND; goto next                   /* EBUSY */
        :: mode == UNTIL -> NEXT_ROUND; goto next                 /* ETIMEDOUT */
        :: mode != TRY ->                                         /* registered */
            word = word + SLEEPER;
            v = word;
            reg[me] = true;
            pre[me] = false
        fi
    };
    /* The first pass of the sleep loop decides on v, the value it registered: HELD, not
     * woken, not timed out, no handoff seen yet, not starving, WAKING clear: futex_wait(v). */
    goto futex_wait;

/* A futex wait that ends in ETIMEDOUT on one of lock.h's own timers (the 10 ms fallback, the
 * WAKING sleep, the shared re-check) is no timeout of the caller's: only the deadline's is. */
#ifdef TIMEOUT_ANY
#define GAVE_UP timedout = true
#else
#define GAVE_UP skip
#endif
sleep_loop:
    if
    /* leaving the kernel: on our deadline, on EINTR, on the handoff timeout (c), or dead */
    :: atomic { mode == UNTIL && sleeping[me] -> sleeping[me] = false; timedout = true;
                goto sleep_loop }
    :: atomic { spurious > 0 && sleeping[me] -> spurious--; sleeping[me] = false;
                goto sleep_loop }
    :: atomic { sleeping[me] && FALLBACK_EVENT -> sleeping[me] = false; expired = true;
                GAVE_UP; goto sleep_loop }
    :: atomic { sleeping[me] && STALE_EVENT -> sleeping[me] = false; stale = true;
                GAVE_UP; goto sleep_loop }
    :: atomic { sleeping[me] && RECHECK_EVENT -> sleeping[me] = false; stale = true;
                GAVE_UP; goto sleep_loop }
    :: atomic { sleeping[me] && dead < DEAD -> sleeping[me] = false; DIE }
    :: atomic { woke[me] && dead < DEAD -> woke[me] = false; DIE } /* woken, dies before it runs */
#ifdef ANYTIME
    /* a wake from whatever lives at a freed lock's address now returns 0 here */
    :: atomic { foreign > 0 && sleeping[me] -> foreign--; sleeping[me] = false; woke[me] = true;
                goto sleep_loop }
#endif
    :: atomic {
        !sleeping[me] ->
        TOUCH;
        /* Back from futex_wait (or never asleep): the later passes, each one step. */
        woken = woke[me];
        woke[me] = false;
        if
        :: FALLBACK_EVENT -> expired = true /* 10 ms passed meanwhile */
        :: true -> skip
        fi;
#ifdef ANYTIME
        if /* the WAKING sleep's timeout passed before the syscall */
        :: STALE_EVENT -> stale = true
        :: true -> skip
        fi;
#endif
        if
        :: STALE -> wrapped = true
        :: else -> skip
        fi;
        v = word;
        claim = (v & HELD) == 0;
        if
        :: (v & HELD) != 0 && (v & HANDOFF) != 0 ->
#if defined(HANDOFF_TO_ANY)
            claim = true
#elif defined(HANDOFF_WOKEN_ONLY)
            claim = woken || expired
#elif defined(NO_GEN)
            claim = woken || (slept & HANDOFF) == 0 || expired
#else
            claim = woken || (slept & HANDOFF) == 0 || ((slept ^ v) & GEN) != 0 || expired
#endif
        :: else -> skip
        fi;
        if
        :: claim ->
            claimed(); prev = word; word = nv; ENTER(woken || pre[me] || expired); /* [lock.A2] */
            reg[me] = false;
            CLEAR_PRE;
            goto critical
        :: else -> skip
        fi;
        if
        :: timedout ->
            /* conc_lock_acquire ignores the result: only a timed acquire may give up */
            assert(mode == UNTIL);
            /* held by someone else at our deadline: deregister; the last one out ends
             * handoff mode and frees a pending HANDOFF [lock.R3] */
            nv = (v - SLEEPER) & ~WAKING;
            if
            :: (nv & SLEEPERS) == 0 ->
                nv = nv & ~(STARVING | GEN);
#ifndef LAST_OUT_KEEPS_HANDOFF
                if
                :: (nv & HANDOFF) != 0 -> nv = nv & ~(HELD | HANDOFF)
                :: else -> skip
                fi
#endif
            :: else -> skip
            fi;
            word = nv;
            reg[me] = false;
            if
            :: (word & HANDOFF) == 0 -> CLEAR_PRE
            :: else -> pre[me] = false
            fi;
            NEXT_ROUND;
            goto next
        :: else -> skip
        fi;
        if
        :: !starving -> starving = true /* waited CONC_LOCK_FAIR_NS by now */
        :: true -> skip
        fi;
        /* before sleeping again: retire WAKING, ask for a handoff (one CAS) */
        if
#ifdef NO_SOLE_RETIRE
        :: woken || stale -> nv = v & ~WAKING
#else
        :: woken || stale || (v & SLEEPERS) == SLEEPER -> nv = v & ~WAKING
#endif
        :: else -> nv = v
        fi;
        if
        :: starving -> nv = nv | STARVING
        :: else -> skip
        fi;
        word = nv;
        v = nv
       }
    fi;
futex_wait:
    /* slept = v; the handoff clock (handoff_seen); r = futex_wait(&word, v, deadline): a
     * past deadline returns before the syscall; else the kernel compares and queues in one
     * step (EAGAIN if the word changed). The next pass reloads v. */
    atomic {
        TOUCH;
        assert((v & WAKING) == 0 || (v & SLEEPERS) != SLEEPER); /* alone: never on WAKING */
        if /* all that lock.h's `slept` and `on_waking` are asked for */
        :: (v & HANDOFF) != 0 -> slept = v & (HANDOFF | GEN | WAKING)
        :: else -> slept = v & WAKING
        fi;
        stale = false;
        if
        :: (v & HANDOFF) == 0 -> expired = false /* the handoff clock stops */
        :: else -> skip
        fi;
        if
        :: mode == UNTIL -> timedout = true
        :: dead < DEAD -> DIE
        :: word == v -> sleeping[me] = true
        :: word != v -> skip
        fi;
        v = 0
    };
    goto sleep_loop;

critical:
    /* conc_lock_release: its CAS loop, one step, decides everything. */
    atomic {
        TOUCH;
        inside--;
        v = word;
        assert((v & HELD) != 0 && (v & HANDOFF) == 0); /* "the lock is not held" */
        if
        :: (v & SLEEPERS) == 0 -> word = 0; NEXT_ROUND; goto next
        :: (v & SLEEPERS) != 0 && (v & STARVING) != 0 ->
#ifdef HANDOFF_DROPS_HELD
            word = ((v | HANDOFF | WAKING) ^ GEN) & ~HELD;
#else
            word = (v | HANDOFF | WAKING) ^ GEN; /* [lock.R2]: a handoff */
#endif
            pre[0] = reg[0]; pre[1] = reg[1]; pre[2] = reg[2];
            wk_pending++ /* a handoff always wakes */
        :: (v & SLEEPERS) != 0 && (v & STARVING) == 0 && (v & WAKING) != 0 ->
            word = v & ~HELD; NEXT_ROUND; goto next /* a woken sleeper is on its way */
        :: (v & SLEEPERS) != 0 && (v & STARVING) == 0 && (v & WAKING) == 0 ->
            word = (v & ~HELD) | WAKING;
            wk_pending++
        fi;
        freed = true
    };
#ifdef NO_WAKE
    atomic { NEXT_ROUND; goto next };
#endif
    /* The wake: it touches the kernel's queue only. */
    atomic {
        FUTEX_WAKE_ONE;
        wk_pending--;
#ifdef LOOK_AFTER_WAKE
        /* the old wake_one's stock-taking: a wake that found nobody retires WAKING */
        if
        :: !found -> TOUCH; word = word & ~WAKING
        :: else -> skip
        fi;
#endif
        NEXT_ROUND;
        goto next
    };

finished:
    skip
}

init {
    atomic { run P(0); run P(1); run P(2) };
    (_nr_pr == 1); /* every process finished its rounds (or died): nobody is stranded */
    assert(!sleeping[0] && !sleeping[1] && !sleeping[2]);
    assert(!woke[0] && !woke[1] && !woke[2]);
    assert((word & SLEEPERS) == dead * SLEEPER);
    assert(dead > 0 || word == 0)
}
