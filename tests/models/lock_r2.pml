/* tests/models/lock_r2.pml - tests/models/lock.pml with two rounds per process
 * SPDX-License-Identifier: MIT
 *
 * The conc_lock model (lock.pml: what is modelled and checked) with ROUNDS = 2: handoffs after
 * handoffs, newcomers to one handoff waiting for the next, sleepers timing out of a pending
 * one. Exhaustively this runs past 113 million states (5 GB with -DCOLLAPSE), so pan runs in
 * bitstate (supertrace) mode: about 83 million states in 2 minutes, a partial search that
 * still finds the variants below at once.
 *
 * Deliberately broken variants (spin -DNAME); each must make pan report errors:
 */
// broken: NO_GEN no handoff generation: a newcomer to one handoff cannot claim the next
// broken: LAST_OUT_KEEPS_HANDOFF the last sleeper out leaves a pending HANDOFF held
// broken: NO_WAKING_TIMEOUT sleepers keep WAKING and sleep on it without a timeout: a wake lost
// pan-cc: -DSAFETY -DBITSTATE
// pan-run: -m1000000 -w28

#define ROUNDS 2
#include "lock.pml"
