/* tests/models/executor_stuck_wait.pml - when a waiting worker of include/conc/executor.h runs a
 * task itself ("Running tasks while the pool is stuck"), for spin.
 * SPDX-License-Identifier: MIT
 *
 * Two workers. A worker that waits (no deadline) for a task future links its node on the
 * future under the future's lock (refused if the future is final: not counted), then adds
 * itself to `waiting` [executor.H1]. The add that makes `waiting` equal to the workers is
 * the decision "stuck": that worker takes the oldest queued task, unlinks (if its node was
 * still linked it subtracts itself), runs the task, and starts over unless its own future
 * ended. A completion marks the future final, then runs the linked nodes under the lock,
 * each subtracting its worker [executor.H2]. A waiter that wakes on the final state unlinks
 * and subtracts itself only if its node was still linked.
 * The scripts: worker 0 runs a task that waits for G and then for U; worker 1 runs a task
 * that completes G, then one that waits for U. The queue holds X and U (plain tasks), which
 * idle workers take after their scripts. So worker 1 can complete G and wait while worker 0
 * has not yet left G's wait (the race the count must not mistake for a stuck pool), and both
 * can end up waiting for U (a stuck pool: one of them must run X and then U).
 * Checked: a worker decides "stuck" only while every worker waits for a future that is not
 * final (no task starts before Python's pool would start it); and every run ends (no pool
 * stuck for good with U queued: spin's invalid end states).
 *
 * Deliberately broken variants (spin -DNAME); each must make pan report errors:
// broken: BROKEN_WAITER_SUBTRACTS the completion runs no node; each waiter subtracts itself
//         when it wakes: a worker that completed G and then waits counts the other as
//         waiting still, and runs a task early
// broken: BROKEN_ADD_BEFORE_LINK the add comes before the link (a failed link subtracts
//         again): for a moment the count holds a worker whose future is final
// broken: BROKEN_NO_RECHECK after running one task the stuck worker sleeps without looking
//         at the count again: after X both wait for U for good
// pan-cc: -DSAFETY
// pan-run: -m100000
 */

#define N 2
#define G 1
#define U 2
#define X 3

byte waiting = 0;          /* [executor.H1]/[executor.H2]: the count */
bool final[4];             /* futures 1..3 */
bool linked[N];            /* worker w's node is linked on awaited[w] */
byte awaited[N];           /* ghost: the future worker w waits for (0: none) */
chan q = [2] of { byte };  /* the tasks not yet taken, oldest first */

/* Every worker waits for a future that is not final. */
#define STUCK (awaited[0] != 0 && !final[awaited[0]] && awaited[1] != 0 && !final[awaited[1]])

/* A completion: the final state [future.R1], then the linked nodes under the lock. */
inline complete(f) {
    final[f] = true;
#ifndef BROKEN_WAITER_SUBTRACTS
    atomic {
        if :: linked[0] && awaited[0] == f -> linked[0] = false; waiting-- :: else -> skip fi;
        if :: linked[1] && awaited[1] == f -> linked[1] = false; waiting-- :: else -> skip fi
    }
#endif
}

inline wait_for(w, f) {
    counted = false;
    do
    :: true ->
#ifdef BROKEN_ADD_BEFORE_LINK
        atomic { awaited[w] = f; waiting++; if :: waiting == N -> assert(STUCK); stuck = true :: else -> stuck = false fi };
        atomic { if :: final[f] -> waiting--; awaited[w] = 0; break :: else -> linked[w] = true fi };
#else
        atomic { if :: final[f] -> break :: else -> linked[w] = true; awaited[w] = f fi };
        /* [executor.H1]: the add and its decision */
        atomic { waiting++; if :: waiting == N -> assert(STUCK); stuck = true :: else -> stuck = false fi };
#endif
        if
        :: !stuck -> counted = true; break
        :: stuck ->
            if
            :: atomic { nempty(q) -> q ? t }
            :: atomic { empty(q) -> counted = true }; break
            fi;
            atomic {
                was = linked[w]; linked[w] = false;
#ifdef BROKEN_WAITER_SUBTRACTS
                was = true;
#endif
                if :: was -> waiting-- :: else -> skip fi;
                awaited[w] = 0
            };
            complete(t);   /* runs t: a plain task */
#ifdef BROKEN_NO_RECHECK
            if
            :: final[f] -> break
            :: else ->
                atomic { if :: final[f] -> break :: else -> linked[w] = true; awaited[w] = f fi };
                waiting++; counted = true; break
            fi
#else
            if :: final[f] -> break :: else -> skip fi
#endif
        fi
    od;
    if
    :: counted ->
        final[f];  /* asleep until the future is final */
        atomic {
            was = linked[w]; linked[w] = false;
#ifdef BROKEN_WAITER_SUBTRACTS
            was = true;
#endif
            if :: was -> waiting-- :: else -> skip fi;
            awaited[w] = 0
        }
    :: else -> awaited[w] = 0
    fi
}

inline idle() {
    do
    :: atomic { nempty(q) -> q ? t }; complete(t)
    :: atomic { empty(q) -> break }
    od
}

proctype worker0() {
    bool stuck, counted, was;
    byte t;
    wait_for(0, G);
    wait_for(0, U);
    idle()
}

proctype worker1() {
    bool stuck, counted, was;
    byte t;
    complete(G);
    wait_for(1, U);
    idle()
}

init {
    atomic { q ! X; q ! U; run worker0(); run worker1() }
}
