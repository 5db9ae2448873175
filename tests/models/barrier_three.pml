/* tests/models/barrier_three.pml - barrier.pml with three parties, for spin.
 * SPDX-License-Identifier: MIT
 *
 * With two parties at most one sleeps, so a release that woke one sleeper where barrier.h
 * wakes them all (the leader's, abort's, a timeout's) would pass barrier.pml. Here three
 * parties wait two rounds (one with a deadline), and the aborter may break one: two may sleep
 * at once, and the one a single wake misses sleeps on for good.
 *
 * // broken: BROKEN_WAKE_ONE  the leader, abort and a timeout wake one sleeper, not all
 */
// broken: BROKEN_WAKE_ONE
// pan-cc: -DSAFETY -DCOLLAPSE
// pan-run: -m1000000

#define PARTIES 3
#include "barrier.pml"
