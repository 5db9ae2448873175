#!/usr/bin/env bash
# tests/lint.sh - the house style rules a machine can check (`make lint`, run by `make test`)
# SPDX-License-Identifier: MIT
#
#   tests/lint.sh [--log LOG] [EXCLUDED_MODULE...]
#
# Every header include/conc/NAME.h is module NAME (base.h is module "base"), so a new header
# (coro.h, forkpool.h, rwlock.h ...) is checked the day it lands. EXCLUDED_MODULE names a
# module whose header (and spin model) is not yet conformant: the Makefile keeps that list in
# one visible place (LINT_EXCLUDE). Each check below prints its offenders and counts as one
# passed or failed step; the last line is "N passed, N failed, N skipped" and the exit status
# is 1 if any check failed.
#
# Checks (failing):
#   comment-width   no comment line past 100 columns (headers, tests, benches, examples,
#                   spin models); code lines are clang-format's job (ColumnLimit: 100)
#   module-prefix   in NAME.h every conc__/CONC__ name carries NAME's prefix (conc__NAME_,
#                   CONC__NAME_), or is declared in another header's section "For other conc
#                   headers" (that header's seam)
#   slow-suffix     every CONC_COLD function ends in _slow
#   timeline-tags   timeline tags name their module: [lock.R1], not [R1] (headers, models)
#   config-table    every configuration macro a header defines (#ifndef CONC_X / #define
#                   CONC_X) is a row of README.md's configuration table
#   fence-comment   no bare __atomic_thread_fence outside base.h (conc_fence_seq_cst carries
#                   the TSan annotation)
# Informational (printed, never failing): clang-format drift, cppcheck findings.
set -u
cd "$(dirname "$0")/.."

log=/dev/null
if [ "${1:-}" = --log ]; then log=$2; shift 2; fi
excluded=" $* "
: >"$log"
passed=0 failed=0

say() { echo "$*" | tee -a "$log"; }
step() { # step NAME OFFENDERS_TEXT
    if [ -z "$2" ]; then
        say "ok   lint $1"; passed=$((passed + 1))
    else
        say "FAIL lint $1:"; echo "$2" | sed 's/^/    /' | tee -a "$log"; failed=$((failed + 1))
    fi
}
module_of() { local b; b=$(basename "$1"); echo "${b%.*}"; }
is_excluded() { [[ $excluded == *" $(module_of "$1") "* ]]; }

headers=() models=()
for h in include/conc/*.h; do is_excluded "$h" || headers+=("$h"); done
for m in tests/models/*.pml; do [ -e "$m" ] && ! is_excluded "$m" && models+=("$m"); done
sources=("${headers[@]}" tests/*.c tests/*.h bench/*.c bench/*.h examples/*.c "${models[@]}")
[ -e include/conc.h ] && sources+=(include/conc.h)
if [ "${#excluded}" -gt 2 ]; then say "lint: not yet checked (LINT_EXCLUDE):$excluded"; fi

# --- comment-width -----------------------------------------------------------------------------
out=$(awk 'length > 100 && ($0 ~ /^[ \t]*(\/\*|\*|\/\/)/ || $0 ~ /\/\*|\/\//) {
               printf "%s:%d: %d columns\n", FILENAME, FNR, length }' "${sources[@]}")
step comment-width "$out"

# --- module-prefix -----------------------------------------------------------------------------
# The seam of a header: every conc__ name written after its "For other conc headers" line.
seam_names=$(for h in include/conc/*.h; do
    awk 'tolower($0) ~ /for other conc headers/ && $0 !~ /^ \* FOR OTHER/ { on = 1 } on' "$h" |
        grep -o '\b\(conc\|CONC\)__[A-Za-z0-9_]*' ; done | sort -u)
out=""
for h in "${headers[@]}"; do
    m=$(module_of "$h") M=$(module_of "$h" | tr 'a-z' 'A-Z')
    while read -r name; do
        [ -z "$name" ] && continue
        case $name in conc__${m}_* | CONC__${M}_*) continue ;; esac
        grep -qx "$name" <<<"$seam_names" && continue
        out+="$h: $name (not conc__${m}_*/CONC__${M}_*, and in no header's seam section)"$'\n'
    done < <(grep -o '\b\(conc\|CONC\)__[A-Za-z0-9_]\{1,\}' "$h" | sort -u)
done
step module-prefix "${out%$'\n'}"

# --- slow-suffix -------------------------------------------------------------------------------
out=$(grep -n '^CONC_COLD ' "${headers[@]}" | grep -v '_slow(' || true)
step slow-suffix "$out"

# --- timeline-tags -----------------------------------------------------------------------------
out=$(grep -n '\[[A-Z][0-9]\]' "${headers[@]}" "${models[@]}" || true)
step timeline-tags "$out"

# --- config-table ------------------------------------------------------------------------------
table=$(awk '/^## Configuration/ { on = 1; next } /^## / { on = 0 } on && /^\|/' README.md)
out=""
for h in "${headers[@]}"; do
    while read -r name; do
        [ -z "$name" ] && continue
        [[ $name == *_H ]] && continue # include guards
        grep -q "^#define $name\b" "$h" || continue
        grep -q "\`$name\b" <<<"$table" && continue
        out+="$h: $name is a configuration macro missing from README.md's configuration table"$'\n'
    done < <(sed -n 's/^#ifndef \(CONC_[A-Z0-9_]*\).*/\1/p; s/^#if !defined(\(CONC_[A-Z0-9_]*\)).*/\1/p' "$h" |
             sort -u)
done
[ -n "$table" ] || out="README.md has no '## Configuration' table"
step config-table "${out%$'\n'}"

# --- fence-comment -----------------------------------------------------------------------------
out=$(grep -n '__atomic_thread_fence' include/conc/*.h | grep -v '^include/conc/base.h:' || true)
step fence-comment "$out"

# --- informational -----------------------------------------------------------------------------
if command -v clang-format >/dev/null; then
    n=$(clang-format --dry-run "${headers[@]}" tests/*.c tests/*.h bench/*.c bench/*.h \
        examples/*.c 2>&1 | grep -c 'warning:' || true)
    say "info lint clang-format: $n lines differ from .clang-format (make format)"
else
    say "info lint clang-format: not installed (make deps-test installs it)"
fi
if command -v cppcheck >/dev/null; then
    cppcheck --quiet --std=c11 --enable=warning,performance,portability --inline-suppr \
        --suppress=missingIncludeSystem --suppress=toomanyconfigs -Iinclude \
        "${headers[@]}" tests/*.c examples/*.c 2>&1 | sed 's/^/info cppcheck: /' | tee -a "$log"
else
    say "info lint cppcheck: not installed (make deps-test installs it)"
fi

say "$passed passed, $failed failed, 0 skipped"
[ "$failed" -eq 0 ]
