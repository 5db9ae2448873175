/* tests/models/executor_pool.pml - the future pool's lifetime: futures that outlive their
 * executor (include/conc/executor.h, "The future pool", [executor.A5]/[executor.R5]), checked
 * by spin
 * SPDX-License-Identifier: MIT
 *
 * What is modelled, step for step as executor.h does it:
 *   - `returned`, the lock-free LIFO of released futures, as one word: CLOSED and how many
 *     futures are on it (a push is a CAS on that word, which fails once it changed);
 *   - the closer (conc_executor_destroy): one swap puts CLOSED in and takes the list
 *     [executor.A5]; it counts the futures still out (carved minus those in its lists and
 *     the uncarved rest) and adds that to `live` [executor.R5]; if that brings live to zero
 *     it frees the pool;
 *   - each last release of a future: it reads `returned`; without CLOSED it pushes with a CAS
 *     (retry on failure); with CLOSED it subtracts one from `live` [executor.R5], and the one
 *     that brings it to zero frees the pool. live is modular (a byte here): the subtractions
 *     may come before the closer's add.
 * Processes: the closer and OUT releasers, each holding one future; IN futures were already
 * released before (on the list) and UNCARVED were never handed out. Checked (pan -DSAFETY):
 * every access to the pool happens before its free; the pool is freed exactly once, by
 * whoever comes last.
 *
 * Run: bash tests/run.sh models /tmp/m.log
 *
 * Deliberately broken variants (spin -DNAME); each must make pan report errors:
 */
// broken: CLOSE_BY_STORE closer reads the list, then stores CLOSED (a push between: lost)
// broken: PUSH_BY_STORE a release checks CLOSED, then pushes by a plain store
// broken: COUNT_ONLY_LIST the closer counts only the swapped list, not its local one
// pan-cc: -DSAFETY
// pan-run: -m100000

#define OUT 2
#define IN 1
#define LOCAL 1
#define UNCARVED 1
#define CARVED (OUT + IN + LOCAL + UNCARVED)

bool closed = false;
byte listed = IN; /* futures on `returned` */
byte live = 0;    /* modular */
bool freed = false;
byte frees = 0;
byte done = 0;

inline free_pool() {
    atomic { assert(!freed); freed = true; frees++ }
}

proctype releaser() {
    bool c;
    byte n, old;
retry:
    atomic { assert(!freed); c = closed; n = listed };
    if
    :: c ->
       atomic { assert(!freed); old = live; live = (live + 255) % 256 };  /* [executor.R5] */
       if
       :: old == 1 -> free_pool()
       :: else -> skip
       fi
    :: else ->
#ifdef PUSH_BY_STORE
       atomic { assert(!freed); listed = n + 1 }
#else
       atomic {                                                  /* [executor.R4] */
           assert(!freed);
           if
           :: !closed && listed == n -> listed = n + 1
           :: else -> goto retry
           fi
       }
#endif
    fi;
    atomic { c = false; n = 0; old = 0; done++ }
}

proctype closer() {
    byte h, in, out, old;
#ifdef CLOSE_BY_STORE
    atomic { assert(!freed); h = listed };
    atomic { closed = true; listed = 0 };
#else
    atomic { assert(!freed); h = listed; closed = true; listed = 0 };   /* [executor.A5] */
#endif
#ifdef COUNT_ONLY_LIST
    in = h + UNCARVED;
#else
    in = LOCAL + h + UNCARVED;
#endif
    out = CARVED - in;
    atomic { assert(!freed); old = live; live = (live + out) % 256 };          /* [executor.R5] */
    if
    :: (old + out) % 256 == 0 -> free_pool()
    :: else -> skip
    fi;
    done++
}

init {
    byte i = 0;
    atomic {
        run closer();
        do
        :: i < OUT -> run releaser(); i++
        :: else -> break
        od
    };
    done == OUT + 1;
    assert(frees == 1)
}
