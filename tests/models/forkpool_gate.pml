/* tests/models/forkpool_gate.pml - the start gate of include/conc/forkpool.h ([forkpool.G]):
 * conc_forkpool_cancel of a submit task handed over to a worker races that worker's claim of
 * it, for spin.
 * SPDX-License-Identifier: MIT
 *
 * One worker slot takes NTASKS tasks one after another. For each, dispatch stores the gate
 * (id, HANDED) and marks the task RUNNING in the books, both under the pool lock, then sends
 * the task [forkpool.G0]. The worker, once it has the task, claims it with one CAS from
 * (id, HANDED) to (id, STARTED) [forkpool.G1]: won, fn runs; lost, the gate must say
 * (id, DROPPED) (anything else is "out of step", which the worker aborts on), and it skips
 * fn. Either way it answers, and the monitor takes the task off the books. A canceller, at
 * any moment, under the pool lock, picks the task RUNNING in the books (twice at most) and
 * tries the CAS from (id, HANDED) to (id, DROPPED) [forkpool.G2]: won, the task is dropped
 * and its worker stays; lost, fn may be running: SIGKILL. The worker may also die by itself
 * at any step (a crash, a kill from outside), once. A dead worker takes no further step and
 * answers nothing; once it is gone (the server reaped it), its death is handled under the
 * pool lock: it tries the canceller's CAS [forkpool.G3]: won, the task never started there
 * and goes back to the queue (the model ends the slot at a death: a replacement would start
 * from a fresh dispatch); lost, the death is the task's outcome.
 * Checked, in every state: fn never runs for a task the canceller dropped (the canceller
 * never reports a drop of a started task), a death never puts back a task whose fn started
 * nor one the canceller dropped, and the worker never finds the gate out of step (a stale
 * value from the previous task).
 *
 * Deliberately broken variants (spin -DNAME); each must make pan report errors:
// broken: BROKEN_CHECK_THEN_SET the worker reads HANDED, then stores STARTED in a second
//         step: a drop in between is overwritten and fn runs for a dropped task
// broken: BROKEN_STORE_AFTER_SEND dispatch stores the gate after sending the task: the
//         worker can find the previous task's value there
// broken: BROKEN_DEATH_PUTS_BACK_BY_BOOKS the death puts back the task the books show
//         RUNNING without the CAS: one that started (or was dropped) runs again
// pan-cc: -DSAFETY
// pan-run: -m100000
 */

#define NTASKS 3
#define HANDED 0
#define STARTED 1
#define DROPPED 2

byte gate_id = 0;          /* the slot's gate: task id ... */
byte gate_st = STARTED;    /* ... and its state (an idle slot's leftover) */
byte books = 0;            /* the task RUNNING in the books on this slot; 0: none */
chan task = [1] of { byte };
chan answer = [1] of { byte };
bool dead = false;         /* the worker was SIGKILLed, or died by itself */
bool gone = false;         /* the dead worker has stopped: the server reports its death */
bool ran[NTASKS + 1];      /* ghost: fn ran for task i */
bool dropped[NTASKS + 1];  /* ghost: the canceller dropped task i */
bool skipped[NTASKS + 1];  /* ghost: the worker skipped task i */
bool put_back[NTASKS + 1]; /* ghost: the death put task i back in the queue */
bool out_of_step = false;  /* ghost: the worker found another task's value */

#define GATE_IS(id, st) (gate_id == (id) && gate_st == (st))

active proctype dispatch() {
    byte id = 1, a;
    do
    :: id <= NTASKS ->
#ifdef BROKEN_STORE_AFTER_SEND
        atomic { books = id; task ! id };
        atomic { gate_id = id; gate_st = HANDED };
#else
        atomic { gate_id = id; gate_st = HANDED; books = id };          /* [forkpool.G0] */
        task ! id;
#endif
        if
        :: atomic { answer ? a -> assert(a == id); books = 0 }           /* the monitor */
        :: atomic {                                                      /* the death */
            gone ->
#ifdef BROKEN_DEATH_PUTS_BACK_BY_BOOKS
            put_back[id] = true;
#else
            if
            :: GATE_IS(id, HANDED) -> gate_st = DROPPED; put_back[id] = true /* [forkpool.G3] */
            :: else -> skip
            fi;
#endif
            books = 0
        };
            break
        fi;
        id++
    :: else -> break
    od
}

/* A dead worker stops at its next step: STEP(s) runs s only while it lives. */
#define STEP(s) if :: atomic { !dead -> s } :: dead -> goto stopped fi

active proctype worker() {
    byte id;
    bool go;
end_idle:
    do
    :: atomic { !dead && task ? [id] -> task ? id };
#ifdef BROKEN_CHECK_THEN_SET
        STEP(go = GATE_IS(id, HANDED));
        STEP(if :: go -> gate_st = STARTED :: else -> skip fi);
#else
        STEP(if                                                          /* [forkpool.G1] */
             :: GATE_IS(id, HANDED) -> gate_st = STARTED; go = true
             :: else -> go = false
             fi);
#endif
        if
        :: !go && !GATE_IS(id, DROPPED) -> out_of_step = true
        :: else -> skip
        fi;
        STEP(if :: go -> ran[id] = true :: else -> skipped[id] = true fi);
        STEP(answer ! id)
    :: dead -> goto stopped
    od;
stopped:
    gone = true
}

/* The worker dies by itself, once, at any moment while it holds a task. */
active proctype crash() {
    atomic { books != 0 && !dead -> dead = true }
}

active proctype canceller() {
    byte id, k = 0;
    do
    :: k < 2 ->
        atomic { books != 0 -> id = books };
        atomic {                                                         /* pool lock held */
            if
            :: books == id && GATE_IS(id, HANDED) ->                     /* [forkpool.G2] */
                gate_st = DROPPED;
                dropped[id] = true
            :: books == id && !GATE_IS(id, HANDED) -> dead = true        /* SIGKILL */
            :: else -> skip                                              /* done: EBUSY */
            fi
        };
        k++
    :: k < 2 -> break
    :: else -> break
    od
}

active proctype watch() {
end:
    do
    :: assert(!out_of_step &&
              !(dropped[1] && ran[1]) && !(dropped[2] && ran[2]) && !(dropped[3] && ran[3]) &&
              !(put_back[1] && (ran[1] || dropped[1])) && !(put_back[2] && (ran[2] || dropped[2])) &&
              !(put_back[3] && (ran[3] || dropped[3])) &&
              !(skipped[1] && !dropped[1]) && !(skipped[2] && !dropped[2]) &&
              !(skipped[3] && !dropped[3]))
    od
}
