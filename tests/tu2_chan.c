/* tests/tu2_chan.c - test_chan's second translation unit (the Makefile links tests/tu2_NAME.c
 * into test_NAME)
 * SPDX-License-Identifier: MIT
 *
 * A select's fair pick draws from one random state per thread. Kept in a `static` of the
 * header, each file that includes chan.h had its own, unseen by the others: what
 * chan_select_random_state_is_one_per_program checks from both files.
 */
#include "conc/chan.h"

uint64_t *tu2_chan_select_random_state(void);
uint64_t tu2_chan_select_draw(void);

uint64_t *tu2_chan_select_random_state(void) {
    return &conc__chan_select_random_state;
}

uint64_t tu2_chan_select_draw(void) {
    return conc__chan_random();
}
