/* tests/models/lock_any.pml - tests/models/lock.pml with the timers of lock.h firing whenever
 * they can in C
 * SPDX-License-Identifier: MIT
 *
 * The conc_lock model (lock.pml: what is modelled and checked) with ANYTIME and DEAD = 1.
 * lock.pml lets "WAKING is stale", "10 ms passed" and "100 ms passed" happen only when they
 * are needed, so a lost wake or a stranded handoff shows as an invalid end state. In C those
 * timeouts fire whatever happened meanwhile (a woken sleeper that waits long for a CPU, a
 * handoff whose sleeper is held up): a sleeper that slept on WAKING, or any sleeper of a
 * CONC_SHARED lock, may retire a WAKING that is not stale, one that slept on a handoff may
 * claim it before the sleeper it was for, and the WAKING timeout may pass before the
 * syscall. A lock's address may also be reused after it was freed, so a wake meant for the
 * old lock returns 0 to one of the new lock's sleepers (one such foreign wake here). Those
 * only add wakes and claims; this file checks that none of them breaks mutual exclusion or
 * handoff fairness, touches a freed word, or leaks into the final word. With every sleep
 * bounded, a missing wake is only slow here (NO_WAKE passes): lock.pml catches it. One round
 * per process (1.4 million states).
 *
 * Deliberately broken variants (spin -DNAME); each must make pan report errors:
 */
// broken: HANDOFF_DROPS_HELD the release hands off without keeping HELD: a free HANDOFF
// broken: LOOK_AFTER_WAKE the old wake_one: after a wake that found nobody, retire WAKING
// broken: HANDOFF_TO_ANY any sleeper may claim a HANDOFF, newcomers too
// pan-cc: -DSAFETY
// pan-run: -m1000000

#define ANYTIME
#define DEAD 1
#define ROUNDS 1
#include "lock.pml"
