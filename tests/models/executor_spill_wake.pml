/* tests/models/executor_spill_wake.pml - the wakes around the executor's spill: an idle
 * worker against an append, an outside submitter waiting for an empty spill against the
 * refill that empties it and the close (include/conc/executor.h, "The spill"), checked by spin
 * SPDX-License-Identifier: MIT
 *
 * What is modelled, step for step as executor.h does it (executor_spill.pml checks the order
 * of starts, the end and the drops, with these waits abstracted):
 *   - the spill: `spilled`, its task count, starting at 1 (worker 0's task P spilled one);
 *     taking and appending are one step each (under spill_lock);
 *   - worker 0 runs P: it appends one more task [executor.U0] unless the executor is closed
 *     (EPIPE), then wakes one idle worker [executor.E2], then waits until every task it
 *     appended has run;
 *   - worker 1 may first run a task H that waits until the outside submit has returned (a
 *     producer outside, free to go on once refused); then it loops: `spilled` read (relaxed:
 *     it may miss a task); a task seen: taken [executor.U1], and if that emptied the spill, a
 *     wake of the outside submitters; else, with the executor closed and the spill empty, the
 *     end; else idle: it registers [executor.E1], re-checks (a spilled task, the close) and
 *     sleeps on the idle word unless a wake stepped its sequence since the registration;
 *   - an outside submitter: closed is EPIPE; an empty spill is its push; else it registers in
 *     spill_waiters, reads spill_epoch, then `spilled` and `closed` again, and sleeps on
 *     spill_epoch (a changed value refuses the sleep, as futex_wait does); a wake of the
 *     outside submitters steps spill_epoch when it sees one registered, then wakes;
 *   - a closer: at any time, or once P's wait has ended and the outside submit returned (not
 *     with H: the workers then wait for that submit, and it for them, as CAVEATS say): the
 *     close, then a wake of the outside submitters and of the idle worker.
 * Checked (pan -DSAFETY): every process ends (a lost wake leaves the idle worker asleep and P
 * waiting, or the outside submitter asleep and H or the closer waiting: an invalid end
 * state), and every task appended runs once.
 *
 * Run: bash tests/run.sh models /tmp/m.log
 *
 * Deliberately broken variants (spin -DNAME); each must make pan report errors:
 */
// broken: NO_SPILL_RECHECK an idle worker's re-check ignores the spill (the append's wake,
//         made before the registration, is lost)
// broken: NO_UNSPILL_WAKE the refill that empties the spill wakes no outside submitter
// broken: WAIT_ON_SPILLED the outside submitter sleeps on `spilled`, which the close does not
//         change (the close's wake, between its look and its sleep, is lost: H waits for good)
// broken: NO_EPOCH_STEP a wake of the outside submitters does not step spill_epoch
// pan-cc: -DSAFETY
// pan-run: -m100000

byte spilled = 1;
bool closed = false;
byte appended = 1;       /* tasks that went into the spill */
byte ran = 0;

byte sleepers = 0;       /* the idle word: one worker can sleep */
byte seq = 0;
bool sleeping = false;

byte spill_waiters = 0;
byte sepoch = 0;         /* spill_epoch */
bool osleeping = false;  /* the outside submitter, in futex_wait */

bool hold = false;       /* worker 1 first runs H */
bool p_done = false;
bool x_returned = false;
bool w_exited = false;

inline wake_idle() {                                             /* [executor.E2] */
    atomic { if :: sleepers > 0 -> seq++; sleeping = false :: else -> skip fi }
}

inline wake_unspilled() {
    atomic {
        if
        :: spill_waiters > 0 ->
#ifndef NO_EPOCH_STEP
           sepoch++;
#endif
           osleeping = false
        :: else -> skip
        fi
    }
}

proctype p_task() {
    atomic { if :: !closed -> spilled++; appended++ :: else -> skip fi }; /* [executor.U0] */
    wake_idle();
    ran == appended;
    p_done = true
}

proctype worker() {
    byte v;
    bool seen, work;
    if :: hold -> x_returned :: else -> skip fi;                 /* task H */
    do
    :: if
       :: spilled > 0 -> seen = true
       :: true -> seen = false                                   /* relaxed: it may miss */
       fi;
       if
       :: seen ->
          atomic { spilled--; ran++; seen = spilled == 0 };      /* [executor.U1], then runs */
#ifndef NO_UNSPILL_WAKE
          if :: seen -> wake_unspilled() :: else -> skip fi;
#endif
          seen = false
       :: else ->
          if
          :: atomic { closed && spilled == 0 -> seen = true }    /* the end (under the lock) */
          :: else -> skip
          fi;
          if :: seen -> break :: else -> skip fi;
          atomic { sleepers++; v = seq };                        /* [executor.E1] */
#ifdef NO_SPILL_RECHECK
          work = closed;
#else
          work = closed || spilled > 0;                          /* the re-check */
#endif
          if
          :: !work ->
             atomic { if :: seq == v -> sleeping = true :: else -> skip fi }; /* futex_wait */
             !sleeping
          :: else -> skip
          fi;
          atomic { sleepers--; v = 0; work = false }             /* [executor.E3] */
       fi
    od;
    w_exited = true
}

proctype outsider() {
    byte n, e;
    do
    :: closed -> break                                           /* EPIPE */
    :: !closed ->
       if :: spilled == 0 -> break :: else -> skip fi;           /* the push */
       spill_waiters++;
       e = sepoch;
       n = spilled;
       if
       :: n != 0 && !closed ->
#ifdef WAIT_ON_SPILLED
          atomic { if :: spilled == n -> osleeping = true :: else -> skip fi };
#else
          atomic { if :: sepoch == e -> osleeping = true :: else -> skip fi };
#endif
          !osleeping
       :: else -> skip
       fi;
       spill_waiters--;
       if :: n == 0 -> break :: else -> skip fi
    od;
    x_returned = true
}

proctype closer() {
    bool late;
    /* The choice comes first: a guard beside `late = false` would never block. */
    if
    :: late = false
    :: !hold -> late = true
    fi;
    if :: late -> p_done && x_returned :: else -> skip fi;
    closed = true;
    wake_unspilled();
    wake_idle();
    p_done && x_returned && w_exited;
    assert(ran == appended && spilled == 0)
}

init {
    if
    :: hold = true
    :: skip
    fi;
    atomic {
        run p_task();
        run worker();
        run outsider();
        run closer()
    }
}
