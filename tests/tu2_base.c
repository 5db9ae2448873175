/* tests/tu2_base.c - test_base's second translation unit: every header as a release build
 * (NDEBUG) includes it, under warnings a user's build may add (the Makefile links
 * tests/tu2_NAME.c into test_NAME)
 * SPDX-License-Identifier: MIT
 *
 * base.h defined CONC_DEBUG only without NDEBUG, and the headers' `#if CONC_DEBUG` broke
 * -Wundef -Werror release builds; `e == EAGAIN || e == EWOULDBLOCK` broke gcc's -Wlogical-op,
 * a second declaration of a defined function -Wredundant-decls. The pragmas make each a build
 * failure of this suite (tests/run.sh headers checks every header under them too). And the
 * umbrella's include guard was CONC_H, which a project's own conc.h may well use: defined
 * first here, it left the file with none of conc.
 */
#pragma GCC diagnostic error "-Wundef"
#pragma GCC diagnostic error "-Wredundant-decls"
#if !defined(__clang__)
#pragma GCC diagnostic error "-Wlogical-op"
#endif
#define NDEBUG 1
#define CONC_H 1 /* an application's own conc.h, included before */
#include "conc/conc.h"

int tu2_base_conc_debug(void);
int tu2_base_cpu_count(void);

/* CONC_DEBUG as a release build sees it: defined, and 0. */
int tu2_base_conc_debug(void) {
    return CONC_DEBUG;
}

/* conc_cpu_count() as this file calls it: its cache is the one the other file reads. */
int tu2_base_cpu_count(void) {
    return conc_cpu_count();
}
