/* tests/tu2_forkpool.c - test_forkpool's second translation unit: fork-pool futures submitted
 * in one file and read in the other (the Makefile links tests/tu2_NAME.c into test_NAME)
 * SPDX-License-Identifier: MIT
 *
 * A fork-pool future is told from other futures by a tag that must be one address for the
 * whole program. Each function here submits a task, or reads the result, outcome or cancel of
 * a future, for a case in tests/test_forkpool.c that does the same with the other file's.
 */
#include "conc/forkpool.h"

#include <string.h>

int tu2_forkpool_submit(conc_forkpool_t *p, const char *text, conc_future_t **f);
const void *tu2_forkpool_result(conc_future_t *f, size_t *len);
int tu2_forkpool_outcome(conc_future_t *f, conc_forkpool_outcome_t *out);
int tu2_forkpool_cancel(conc_future_t *f);

/* The argument bytes back as the result. */
static int tu2_echo(const void *arg, size_t len, void **result, size_t *result_len) {
    void *r = malloc(len);
    if (!r)
        return ENOMEM;
    memcpy(r, arg, len);
    *result = r;
    *result_len = len;
    return 0;
}

/* text, with its terminating zero, echoed by a worker. */
int tu2_forkpool_submit(conc_forkpool_t *p, const char *text, conc_future_t **f) {
    return conc_forkpool_submit(p, tu2_echo, text, strlen(text) + 1, f);
}

const void *tu2_forkpool_result(conc_future_t *f, size_t *len) {
    return conc_forkpool_result(f, len);
}

int tu2_forkpool_outcome(conc_future_t *f, conc_forkpool_outcome_t *out) {
    return conc_forkpool_outcome(f, out);
}

int tu2_forkpool_cancel(conc_future_t *f) {
    return conc_forkpool_cancel(f);
}
