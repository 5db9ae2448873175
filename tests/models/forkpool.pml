/* tests/models/forkpool.pml - exactly once under worker deaths: the map chunk protocol of
 * include/conc/forkpool.h (see its DESIGN timeline), for spin.
 * SPDX-License-Identifier: MIT
 *
 * Two workers run a round of 5 items cut into the chunks forkpool.h would make for 2 workers
 * ([0,2) [2,3) [3,4) [4,5): each 1/(2*2) of what remains, rounded up). A worker resets its
 * slot's `running`, takes a chunk number with one fetch_add, records it in its slot, and per
 * item stores "v + 1 running" before it runs v (count[v]++ stands for fn); after the chunk it
 * marks the chunk done. Either worker may die (SIGKILL) between any two of its steps; both
 * may. The parent resolves each death while the other worker still runs (as the monitor
 * does, from the frozen slot): the item named by `running` is the victim, the rest of the
 * chunk runs again, the chunk is marked resolved. At the end of the round every chunk still
 * not done (taken by a worker that died before recording it, or never taken because every
 * worker died) runs again. Reruns are the next round: counted when the round is over.
 * The contract: every item ran exactly once, except a victim, which ran at most once (it may
 * have died before fn started).
 *
 * Deliberately broken variants (spin -DNAME); each must make pan report errors:
// broken: NO_END_SCAN the end-of-round scan is skipped (a chunk taken by a worker that died
//         before recording it is lost)
// broken: DONE_AT_CLAIM the chunk is marked done when taken, not when finished (a death
//         mid-chunk loses the rest)
// broken: RUNNING_AFTER_RUN the slot names an item only after fn ran it (a death in between
//         reruns a finished item)
// broken: NO_RESOLVED_MARK the parent does not mark a resolved chunk done (the end scan reruns
//         it all)
// broken: NO_SLOT_RESET dispatch leaves the slots as the last round left them (a worker that dies
//         before it records its first chunk has a chunk of this round resolved in its name)
// pan-cc: -DSAFETY
// pan-run: -m100000
 */

#define NITEMS 5
#define NCHUNKS 4

byte starts[NCHUNKS + 1];
byte cursor = 0;
bool done[NCHUNKS];
byte count[NITEMS];  /* ghost: times fn ran item v */
byte rerun[NITEMS];  /* ghost: times the next round will run item v */
bool victim[NITEMS]; /* ghost: reported as died */
byte chunk[2];       /* the slots: chunk number + 1 */
byte running[2];     /* ... and item + 1 */
bool dead[2];
bool finished[2];

inline maybe_die(w) {
    if
    :: dead[w] = true; goto out
    :: skip
    fi
}

proctype worker(byte w) {
    byte j, v;
take:
    running[w] = 0;
    maybe_die(w);
    atomic { j = cursor; cursor++ } /* fetch_add */
    maybe_die(w);
    if
    :: j >= NCHUNKS -> goto finish
    :: else
    fi;
#ifdef DONE_AT_CLAIM
    done[j] = true;
#endif
    chunk[w] = j + 1;
    maybe_die(w);
    v = starts[j];
    do
    :: v < starts[j + 1] ->
#ifdef RUNNING_AFTER_RUN
        count[v]++;
        maybe_die(w);
        running[w] = v + 1;
        maybe_die(w);
#else
        running[w] = v + 1;
        maybe_die(w);
        count[v]++;
        maybe_die(w);
#endif
        v++
    :: else -> break
    od;
    done[j] = true;
    maybe_die(w);
    goto take;
finish:
    finished[w] = true;
out:
    skip
}

/* The monitor's death handling for worker w (its slot is frozen: the process is gone). */
inline resolve(w) {
    c = chunk[w];
    r = running[w];
    if
    :: c != 0 && !done[c - 1] ->
        from = starts[c - 1];
        if
        :: r != 0 && r - 1 >= starts[c - 1] && r - 1 < starts[c] ->
            victim[r - 1] = true;
            from = r
        :: else
        fi;
        do
        :: from < starts[c] -> rerun[from]++; from++
        :: else -> break
        od;
#ifndef NO_RESOLVED_MARK
        done[c - 1] = true
#else
        skip
#endif
    :: else
    fi
}

init {
    byte c, r, from, k, i;
    bool handled[2];
    starts[0] = 0; starts[1] = 2; starts[2] = 3; starts[3] = 4; starts[4] = 5;
    /* The slots as the previous round left them (its last chunks were 3 and 4 here, 1-based):
     * dispatch clears them before it sends MAP (conc__forkpool_dispatch). */
    chunk[0] = 4; running[0] = 5; chunk[1] = 3; running[1] = 4;
#ifndef NO_SLOT_RESET
    chunk[0] = 0; running[0] = 0; chunk[1] = 0; running[1] = 0;
#endif
    atomic { run worker(0); run worker(1) }
    /* Deaths are handled as they come; the round ends when neither worker is in it. */
    do
    :: dead[0] && !handled[0] -> atomic { resolve(0); handled[0] = true }
    :: dead[1] && !handled[1] -> atomic { resolve(1); handled[1] = true }
    :: (finished[0] || handled[0]) && (finished[1] || handled[1]) -> break
    od;
#ifndef NO_END_SCAN
    k = 0;
    do
    :: k < NCHUNKS ->
        if
        :: !done[k] ->
            i = starts[k];
            do
            :: i < starts[k + 1] -> rerun[i]++; i++
            :: else -> break
            od
        :: else
        fi;
        k++
    :: else -> break
    od;
#endif
    i = 0;
    do
    :: i < NITEMS ->
        if
        :: victim[i] -> assert(count[i] <= 1 && rerun[i] == 0)
        :: else -> assert(count[i] + rerun[i] == 1)
        fi;
        i++
    :: else -> break
    od
}
