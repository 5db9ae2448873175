/* tests/models/executor_stuck.pml - workers that submit to their own executor's full queue
 * (include/conc/executor.h, "A full queue and the executor's own workers", [executor.S1]),
 * checked by spin
 * SPDX-License-Identifier: MIT
 *
 * What is modelled, step for step as executor.h does it:
 *   - the queue: a count of tasks in it, at most CAP (a push is one atomic step that needs
 *     room; a take is one atomic step that needs a task; staging is part of "taken");
 *   - each of W workers first runs a spawner task that submits SPAWN leaf tasks to its own
 *     executor, then takes and runs leaves until every leaf has run;
 *   - a submit tries the push; on a full queue it counts itself in `stuck` [executor.S1] (one
 *     atomic add that returns the new count). Below W it sleeps in the push until there is
 *     room (a step that blocks while the queue is full), then uncounts itself. At W it
 *     uncounts itself, takes a task if one is there (the oldest, run inline: a leaf, which
 *     does nothing but count), and tries the push again.
 * With DEEP (executor_stuck_deep.pml) one worker is CONC__EXECUTOR_HELP_DEPTH tasks deep when
 * its submit finds the queue full (which starts full of its chain's entries): it may not run a
 * task there, so it counts itself and sleeps whatever the count; the spawners start once it
 * has counted (a deep worker that is itself the last to count sleeps with the others, as
 * CAVEATS say).
 * Checked (pan -DSAFETY): every process ends (workers that all sleep in a push with the queue
 * full are an invalid end state), and every leaf runs exactly once.
 *
 * Run: bash tests/run.sh models /tmp/m.log
 *
 * Deliberately broken variants (spin -DNAME); each must make pan report errors:
 */
// broken: ALWAYS_SLEEP a worker's submit sleeps in the push whatever the count (the old code)
// broken: COUNT_BY_STORE the count is a load and then a store, not one atomic add
// broken: UNCOUNTED_SLEEP the worker sleeps before it counts itself
// pan-cc: -DSAFETY
// pan-run: -m100000

#define W 3
#define CAP 1
#define SPAWN 2
#ifdef DEEP
#define SPAWNERS (W - 1) /* and the deep worker */
#define PRE CAP          /* the queue starts full: the deep worker's chain */
#define LEAVES (SPAWNERS * SPAWN + 1 + PRE)
#else
#define SPAWNERS W
#define PRE 0
#define LEAVES (W * SPAWN)
#endif

byte queued = PRE; /* tasks in the queue */
byte stuck = 0;    /* workers counted in an untimed submit to the full queue */
byte ran = 0;      /* leaves run */
byte done = 0;
bool deep_counted = false; /* DEEP: the deep worker is at its submit (counted, unless broken) */

inline run_leaf() {
    ran++;
    assert(ran <= LEAVES)
}

/* One submit: returns when the task is in the queue. */
inline submit() {
    byte n;
try_push:
    if
    :: atomic { queued < CAP -> queued++ }
    :: atomic { queued == CAP -> skip };
#ifdef UNCOUNTED_SLEEP
       atomic { queued < CAP -> queued++ };
       n = stuck + 1;
       stuck++;
       stuck--;
       goto pushed;
#endif
#ifdef COUNT_BY_STORE
       n = stuck + 1;
       stuck = n;
#else
       atomic { stuck++; n = stuck };                                   /* [executor.S1] */
#endif
       if
#ifdef ALWAYS_SLEEP
       :: true ->
#else
       :: n < W ->
#endif
          atomic { queued < CAP -> queued++ };  /* sleeps in the push while full */
          stuck--;
          goto pushed
       :: else ->
          stuck--;
          if
          :: atomic { queued > 0 -> queued-- }; run_leaf()  /* the oldest task, inline */
          :: atomic { queued == 0 -> skip }
          fi;
          goto try_push
       fi
    fi;
pushed:
    n = 0
}

inline take_leaves() {
    do
    :: atomic { queued > 0 -> queued-- }; run_leaf()
    :: atomic { ran == LEAVES -> break }
    od
}

proctype worker() {
    byte i = 0;
#ifdef DEEP
    deep_counted; /* the spawners block after the deep worker */
#endif
    do
    :: i < SPAWN -> submit(); i++
    :: else -> break
    od;
    take_leaves();
    done++
}

#ifdef DEEP
/* Too deep to run a task inline: one submit that counts and sleeps whatever the count. */
proctype deep_worker() {
    byte n;
    if
    :: atomic { queued < CAP -> queued++ }
    :: atomic { queued == CAP -> skip };
#ifdef DEEP_UNCOUNTED
       deep_counted = true;                   /* sleeps uncounted (the old code) */
       atomic { queued < CAP -> queued++ }
#else
       atomic { stuck++; n = stuck; deep_counted = true };              /* [executor.S1] */
       atomic { queued < CAP -> queued++ };   /* sleeps in the push while full */
       stuck--
#endif
    fi;
    n = 0;
    take_leaves();
    done++
}
#endif

init {
    byte i = 0;
    atomic {
#ifdef DEEP
        run deep_worker();
#endif
        do
        :: i < SPAWNERS -> run worker(); i++
        :: else -> break
        od
    };
    done == W;
    assert(ran == LEAVES && queued == 0)
}
