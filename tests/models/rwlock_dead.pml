/* tests/models/rwlock_dead.pml - tests/models/rwlock.pml with a releaser that may die
 * SPDX-License-Identifier: MIT
 *
 * The conc_rwlock model (rwlock.pml: what is modelled and checked) with DEAD: one releaser
 * may stop for good inside its release, after the step that lets the sleepers go and before
 * its wake (a CONC_SHARED lock's process killed there): a reader in release_shared after its
 * slot fetch_sub; a writer in release (or at its deadline) after the CAS that ends its phase
 * (its inner lock released before it). Every live
 * process must still finish: the sleepers it owed a wake look again after
 * CONC__RWLOCK_SHARED_RECHECK_NS, a timer that fires only once somebody has died.
 *
 * Deliberately broken variants (spin -DNAME); each must make pan report errors:
 */
// broken: BROKEN_NO_SHARED_RECHECK CONC_SHARED sleeps end only by a wake: the writer draining
//                                  behind a dead reader, or a reader queued behind a dead
//                                  writer, sleeps for good
// pan-cc: -DSAFETY -DCOLLAPSE
// pan-run: -m2000000

#define DEAD 1
#include "rwlock.pml"
