/* tests/models/lock_dead.pml - tests/models/lock.pml with a sleeper that may die
 * SPDX-License-Identifier: MIT
 *
 * The conc_lock model (lock.pml: what is modelled and checked) with DEAD = 1: a registered
 * sleeper may stop for good on its way into futex_wait, while queued, or after a wake
 * dequeued it and before it ran (a CONC_SHARED waiter's process killed, or stopped and never
 * continued), leaving its registration. Every live process must still finish (no release
 * waits for the dead one, a handoff made to it is claimed by a later waiter after
 * CONC__LOCK_HANDOFF_WAIT_NS, and the sleepers asleep when it took a wake with it look again
 * after CONC__LOCK_SHARED_RECHECK_NS), and the count left in the word must be the dead one's.
 * One round per process (0.22 million states).
 *
 * Deliberately broken variants (spin -DNAME); each must make pan report errors:
 */
// broken: NO_FALLBACK no claim after 10 ms: a handoff to a dead sleeper strands the lock
// broken: NO_SHARED_RECHECK CONC_SHARED sleeps on a word without WAKING do not end: a wake lost
// pan-cc: -DSAFETY
// pan-run: -m1000000

#define DEAD 1
#define ROUNDS 1
#include "lock.pml"
