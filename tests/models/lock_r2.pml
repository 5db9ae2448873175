/* tests/models/lock_r2.pml - tests/models/lock.pml with two rounds per process
 * SPDX-License-Identifier: MIT
 *
 * The conc_lock model (lock.pml: what is modelled and checked) with ROUNDS = 2: handoffs after
 * handoffs, newcomers to one handoff waiting for the next, sleepers timing out of a pending
 * one. Exhaustively this runs past 113 million states (5 GB with -DCOLLAPSE), so pan runs in
 * bitstate (supertrace) mode: about 83 million states in 1.5 minutes, a partial search that
 * still finds the variants below at once.
 *
 * -m4000, not a million: the search goes 396 steps deep, and in bitstate mode pan keeps the
 * states on its stack in a table of -m slots, looked up at every step; a million slots (8 MB)
 * miss the cache and took a tenth of the time. A search that outgrows -m fails (run.sh).
 *
 * Deliberately broken variants (spin -DNAME); each must make pan report errors:
 */
// broken: NO_GEN no handoff generation: a newcomer to one handoff cannot claim the next
// broken: LAST_OUT_KEEPS_HANDOFF the last sleeper out leaves a pending HANDOFF held
// broken: NO_WAKING_TIMEOUT sleepers keep WAKING and sleep on it without a timeout: a wake lost
// pan-cc: -DSAFETY -DBITSTATE
// pan-run: -m4000 -w28

#define ROUNDS 2
#include "lock.pml"
