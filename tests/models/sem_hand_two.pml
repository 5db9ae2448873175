/* tests/models/sem_hand_two.pml - sem.pml with two tokens handed at a time, for spin.
 * SPDX-License-Identifier: MIT
 *
 * sem.pml hands at most one token per step (HANDED_MAX 1), so each of its wakes is for one
 * token and a release that woke only one sleeper whatever it handed would pass it. Here a
 * step hands up to two (release(2) facing two claims hands both at once, as sem.h does up to
 * 65,535), so the wake must be for min(handed, sleepers): wake one, and the second token
 * stays handed while its claimant sleeps on, which spin reports as an invalid end state.
 * LIMIT grows with HANDED_MAX to keep sem.pml's n + HANDED_MAX <= LIMIT (see its comment).
 *
 * // broken: BROKEN_WAKE_ONE   release(n) hands n tokens but wakes one sleeper
 */
// broken: BROKEN_WAKE_ONE
// pan-cc: -DSAFETY
// pan-run: -m1000000

#define LIMIT 4
#define HANDED_MAX 2
#include "sem.pml"
