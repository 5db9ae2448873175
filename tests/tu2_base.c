/* tests/tu2_base.c - test_base's second translation unit: every header as a release build
 * (NDEBUG) under -Wundef includes it (the Makefile links tests/tu2_NAME.c into test_NAME)
 * SPDX-License-Identifier: MIT
 *
 * base.h defined CONC_DEBUG only without NDEBUG, and the headers' `#if CONC_DEBUG` broke
 * -Wundef -Werror release builds: the pragma makes that a build failure of this suite.
 */
#pragma GCC diagnostic error "-Wundef"
#define NDEBUG 1
#include "conc/conc.h"

int tu2_base_conc_debug(void);

/* CONC_DEBUG as a release build sees it: defined, and 0. */
int tu2_base_conc_debug(void) {
    return CONC_DEBUG;
}
