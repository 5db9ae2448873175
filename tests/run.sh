#!/usr/bin/env bash
# tests/run.sh - the steps behind `make test`, `make stress` and the dependency checks.
# SPDX-License-Identifier: MIT
#
#   tests/run.sh deps CMD:PKG ...        install missing Debian packages (root) or name them
#   tests/run.sh build LOG NAME CMD...   run a build (CMD), its output kept beside LOG; if it
#                                        fails, show that output and leave LOG with one
#                                        failure, "[ FAIL ] build NAME", for the run step
#   tests/run.sh run NAME LOG BIN...     make test's run step: "== tests: NAME", then LOG if the
#                                        build step left it there (a failed build), else the
#                                        suite's run, showing its failures and closing line
#   tests/run.sh suite LOG BIN...        run test binaries, keep their output in LOG
#                                        (under $CONC_TEST_WRAPPER if set: valgrind ...)
#   tests/run.sh headers LOG             compile each header alone: C11/C++17 x gcc/clang;
#                                        conc.h in two units linked with -flto
#   tests/run.sh models LOG              check every spin model (and its broken variants)
#   tests/run.sh models-worker DIR [spare]  claim and check models from the queue in DIR
#                                        (spare: the supertrace search, then small checks)
#   tests/run.sh models-collect DIR LOG  the queue's results in model order
#   tests/run.sh examples LOG BIN...     run the examples; each must exit 0
#   tests/run.sh summary LOG...          sum the closing lines; exit 1 if anything failed
#   tests/run.sh stress SECONDS BIN...   repeat the stress cases until SECONDS have passed
#   tests/run.sh shaken ROUNDS DIR MAKE CC:SANITIZE...
#                                        every configuration's tests ROUNDS times (through
#                                        MAKE test-config), a CPU hog on every core beside them
#
# Every step ends its LOG with the line "N passed, N failed, N skipped".
set -u

closing_re='^[0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$'

deps() {
    local missing=() want
    for want in "$@"; do
        local cmd=${want%%:*} pkg=${want#*:}
        if [[ $cmd == /* ]]; then [ -e "$cmd" ] && continue
        else command -v "$cmd" >/dev/null 2>&1 && continue; fi
        missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing ${missing[*]} (apt-get)"
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } \
            >/tmp/conc-apt.log 2>&1 || { cat /tmp/conc-apt.log; echo "apt-get failed"; return 1; }
        return 0
    fi
    echo "missing packages: run: sudo apt-get install ${missing[*]}"
    return 1
}

build() {
    local log=$1 name=$2; shift 2
    local out
    out="$(dirname "$log")/build-$(basename "$log" .log).out"
    rm -f "$log"
    "$@" >"$out" 2>&1 && return 0
    cat "$out"
    printf '0 passed, 1 failed, 0 skipped\n[ FAIL ] build %s\n' "$name" >"$log"
}

run() {
    local name=$1 log=$2; shift 2
    echo "== tests: $name"
    if [ -e "$log" ]; then
        cat "$log"
        return 0
    fi
    suite "$log" "$@" | grep -E '^(==|\[ FAIL|DEADLOCK|    FAIL|[0-9]+ passed)' || true
}

suite() {
    local log=$1; shift
    : >"$log"
    local bin
    for bin in "$@"; do
        echo "== $bin" | tee -a "$log"
        ${CONC_TEST_WRAPPER:-} "$bin" 2>&1 | tee -a "$log.one" # wrapper: valgrind, say
        local rc=${PIPESTATUS[0]}
        if ! grep -Eq "$closing_re" "$log.one"; then
            echo "0 passed, 1 failed, 0 skipped" | tee -a "$log.one" # crashed before its closing line
        elif [ "$rc" -ne 0 ] && ! grep -E "$closing_re" "$log.one" | grep -vq ' 0 failed'; then
            echo "0 passed, 1 failed, 0 skipped" | tee -a "$log.one" # failed exit, clean counts
        fi
        cat "$log.one" >>"$log"
        rm -f "$log.one"
    done
}

headers() {
    local log=$1 tmp
    tmp=$(mktemp -d)
    # Warnings a user's build may add: -Wundef, -Wredundant-decls and gcc's -Wlogical-op
    # (clang has none); and every header twice, as a debug build and as a release build
    # (NDEBUG: CONC_DEBUG is 0, and the code behind `#if CONC_DEBUG` is left out).
    local strict="-Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wundef -Wredundant-decls"
    strict+=" -Werror -Iinclude"
    {
    for h in include/conc/*.h include/conc.h; do
        local rel=${h#include/}
        printf '#include "%s"\nint main(void) { return 0; }\n' "$rel" >"$tmp/t.c"
        printf '#include "%s"\nint main() { return 0; }\n' "$rel" >"$tmp/t.cpp"
        for c in "gcc -std=c11 -D_DEFAULT_SOURCE $tmp/t.c" "clang -std=c11 -D_DEFAULT_SOURCE $tmp/t.c" \
                 "gcc -std=gnu11 $tmp/t.c" \
                 "g++ -std=c++17 $tmp/t.cpp" "clang++ -std=c++17 $tmp/t.cpp" \
                 "clang++ -std=c++11 $tmp/t.cpp"; do
            local gcc_only=
            [[ $c == gcc* || $c == g++* ]] && gcc_only=-Wlogical-op
            for mode in "" -DNDEBUG; do
                if ! $c $strict $gcc_only $mode -c -o "$tmp/t.o" 2>"$tmp/err"; then
                    echo "FAIL header $rel: $c${gcc_only:+ $gcc_only}${mode:+ $mode}"; cat "$tmp/err"
                fi
            done
        done
    done
    # future.h and coro.h copied alone (with what they need) into a project whose own
    # include path holds an executor.h, a chan.h and a coro_bridge.h of its own: the
    # companions they include when conc's own sit beside them must not be those.
    mkdir -p "$tmp/alone/conc" "$tmp/app"
    for h in executor.h chan.h coro_bridge.h; do
        printf '#error "the application'"'"'s own %s"\n' "$h" >"$tmp/app/$h"
    done
    cp include/conc/base.h include/conc/lock.h include/conc/future.h include/conc/coro.h \
        "$tmp/alone/conc/"
    printf '#include "conc/future.h"\n#include "conc/coro.h"\nint main(void) { return 0; }\n' \
        >"$tmp/t.c"
    if ! gcc -std=c11 -D_DEFAULT_SOURCE -Wall -Werror -I"$tmp/alone" -I"$tmp/app" \
        -c -o "$tmp/t.o" "$tmp/t.c" 2>"$tmp/err"; then
        echo "FAIL header future.h and coro.h copied alone, an application's executor.h and chan.h in the path"
        cat "$tmp/err"
    fi
    # Two translation units that include everything, linked with link-time optimization (gcc
    # merges their top-level asm into one file: the context switch must be emitted once), a
    # coroutine switching in each, spawned with a compound literal for its options (the
    # spawn macros that add the call site must take one: its braces hold a comma).
    cat >"$tmp/lto1.c" <<'LTO'
#include "conc/conc.h"
int lto_in_other_unit(void);
static int lto_body(void *arg) {
    int *laps = arg;
    for (int i = 0; i < 3; i++) {
        ++*laps;
        if (conc_coro_yield() != 0)
            return -1;
    }
    return lto_in_other_unit();
}
static int lto_main(void *arg) {
    conc_coro_t *c;
    int st = -1;
    if (conc_coro_spawn(NULL, lto_body, arg, &(conc_coro_opts_t){.stack_size = 0, .name = "lto"},
                        &c) != 0 || conc_coro_join(c, CONC_FOREVER, &st) != 0)
        return -1;
    conc_coro_release(c);
    return st;
}
int main(void) {
    int laps = 0, st = -1;
    return !(conc_run(lto_main, &laps, &st) == 0 && st == 7 && laps == 3);
}
LTO
    cat >"$tmp/lto2.c" <<'LTO'
#include "conc/conc.h"
int lto_in_other_unit(void);
int lto_in_other_unit(void) { return conc_coro_yield() == 0 ? 7 : -1; }
LTO
    for cc in gcc clang; do
        if ! $cc -std=c11 -D_DEFAULT_SOURCE -O2 -flto -Wall -Wextra -Werror -Iinclude \
            -o "$tmp/lto" "$tmp/lto1.c" "$tmp/lto2.c" -pthread 2>"$tmp/err" || ! "$tmp/lto"; then
            echo "FAIL header conc.h in two translation units, $cc -flto, a coroutine switching in each"
            cat "$tmp/err"
        fi
    done
    } 2>&1 | tee "$log"
    rm -rf "$tmp"
    local total fails
    total=$(( $(ls include/conc/*.h include/conc.h | wc -l) * 6 * 2 + 1 + 2 ))
    fails=$(grep -c '^FAIL header' "$log")
    echo "headers: each alone as C11 and C++17 with gcc and clang and as C++11 with clang," \
        "-Werror, with and without" \
        "NDEBUG; future.h and coro.h" \
        "copied alone beside an application's own executor.h and chan.h; conc.h in two" \
        "translation units linked with -flto (gcc, clang)" | tee -a "$log"
    echo "$((total - fails)) passed, $fails failed, 0 skipped" | tee -a "$log"
}

# One model, or one broken variant of it ($2 empty: the model as written), checked in its own
# directory; its result line goes to $3.
model_one() {
    local m=$1 v=$2 res=$3 dir=$4 name cc runflags
    name=$(basename "$m" .pml)
    cc=$(sed -n 's|^// pan-cc: ||p' "$m" | head -1); cc=${cc:--DSAFETY}
    runflags=$(sed -n 's|^// pan-run: ||p' "$m" | head -1); runflags=${runflags:--m1000000}
    # Compiling pan.c takes 0.5 s at -O0 and 1.5 to 2.5 s at -O2, and -O2 pays only in the
    # searches of tens of millions of states (the models that set -DCOLLAPSE or -DBITSTATE);
    # elsewhere it saves less run time than its compile costs. A broken variant stops at its
    # first violation, a few hundred steps in, and most of its run is zeroing pan's 128 MiB
    # hash table (-w24): a smaller one (-w20, 8 MiB) costs a search collisions, never states
    # (a table of lists; a model's own -w, as with BITSTATE, stays).
    local opt=-O0
    [ -z "$v" ] && [[ $cc == *-DCOLLAPSE* || $cc == *-DBITSTATE* ]] && opt=-O2
    [ -n "$v" ] && [[ " $runflags" != *" -w"* ]] && runflags="$runflags -w20"
    # pan reads its hash table or bit array (32 to 128 MiB) at random, and on 4 KiB pages
    # nearly every probe misses the TLB as well as the cache: glibc's malloc.hugetlb=1 asks
    # for transparent huge pages for its big allocations (kernel THP mode madvise or always;
    # elsewhere it changes nothing). lock_r2 went from 111 to 92 s, executor from 40 to 33 s.
    local tunables="glibc.malloc.hugetlb=1${GLIBC_TUNABLES:+:$GLIBC_TUNABLES}"
    local label="$name${v:+ (broken: $v)}" out="$dir/out" errors
    mkdir -p "$dir"
    (cd "$dir" && spin ${v:+-D$v} -a "$OLDPWD/$m" >/dev/null 2>"$dir/spin.err" &&
        gcc $opt $cc -o pan pan.c 2>>"$dir/spin.err" &&
        GLIBC_TUNABLES=$tunables ./pan $runflags >"$out" 2>&1)
    errors=$(sed -n 's/.*errors: \([0-9]*\).*/\1/p' "$out" 2>/dev/null | head -1)
    {
        if [ -z "$errors" ]; then
            echo "FAIL model $label: spin/pan did not run"; cat "$dir/spin.err"
        elif [ -z "$v" ] && grep -qE 'max search depth too small|out of memory' "$out"; then
            # pan counts neither as an error, but the search stopped short of every state: a
            # violation past the cut would go unseen. Raise the model's pan-run -m (or -w).
            echo "FAIL model $label: search incomplete ($(grep -m1 -E 'max search depth too small|out of memory' "$out" | xargs))"
        elif [ -z "$v" ] && [ "$errors" = 0 ]; then
            echo "ok   model $label: $(grep -m1 'states, stored' "$out" | xargs), errors: 0"
        elif [ -n "$v" ] && [ "$errors" != 0 ]; then
            echo "ok   model $label: caught ($(grep -m1 -E 'pan:[0-9]+:|assertion|invalid end state|acceptance cycle' "$out" | xargs))"
        else
            echo "FAIL model $label: errors: $errors"; grep -E 'pan:|error' "$out" | head
        fi
    } >"$res" 2>&1
    rm -rf "$dir"
}

# Every model as written must verify, over its whole state space (a search cut short by the
# depth bound or memory fails); each "// broken: NAME" variant must fail.
#
# The checks form one queue in DIR that any number of workers (models_worker) share: each
# claims its next check with mkdir, which exactly one claimant wins, and writes the result
# to DIR/res.N, N being the check's place in model order. A worker runs one check at a time,
# so each worker is one core's worth of load. make test starts one worker at the end of each
# of its two lanes: whichever lane is free first takes the big searches, the other joins it,
# and neither ever has two searches beside a suite's stress cases (two CPU hogs beside them
# slowed some cases tenfold). The big searches are claimed first, so that the last checks left
# are the short ones and the two workers end close together. A spare worker at SCHED_IDLE
# runs from the start on the cores' idle time (models_worker DIR spare).
model_checks() { # one line per check, in model order: "N MODEL VARIANT" (VARIANT may be empty)
    local m v n=0
    for m in tests/models/*.pml; do
        [ -e "$m" ] || continue
        n=$((n + 1)); echo "$n $m"
        while read -r v; do
            n=$((n + 1)); echo "$n $m $v"
        done < <(sed -n 's|^// broken: \([A-Za-z0-9_]*\).*|\1|p' "$m")
    done
}

model_claim_rank() { # MODEL VARIANT: 0 a supertrace search (it runs until its bit array is
    # full: the longest), 1 an exhaustive search big enough to need -DCOLLAPSE, 2 the rest
    local cc
    cc=$(sed -n 's|^// pan-cc: ||p' "$1" | head -1)
    if [ -n "$2" ]; then echo 2
    elif [[ $cc == *-DBITSTATE* ]]; then echo 0
    elif [[ $cc == *-DCOLLAPSE* ]]; then echo 1
    else echo 2; fi
}

models_worker() { # DIR [spare]: claim and run checks until none is left
    # With "spare" (make test's third worker, at SCHED_IDLE: it runs only on a core neither
    # lane wants), the supertrace search first, then only the checks that take seconds: the
    # broken variants, last first (each stops at its first violation), then the models as
    # written that need neither -DCOLLAPSE nor -DBITSTATE (3 to 6 s), last first. The cores
    # sit idle for 50 to 100 s of a run (cases asleep on a timeout), about what the
    # supertrace search takes (90 s): run by a lane's worker, it was the last check to end.
    # The lanes' workers claim the big searches first and meet the spare in the middle; once
    # they are done, whatever the spare still runs has a core.
    local dir n m v ran=0 spare=${2:-}
    mkdir -p "$1" && dir=$(cd "$1" && pwd) # absolute: each check runs in its own directory
    if [ "$spare" = spare ]; then
        exec 9>"$dir/spare.lock" && flock 9 # models_collect waits for it to be let go
    fi
    while read -r n m v; do
        mkdir "$dir/claim.$n" 2>/dev/null || continue
        model_one "$m" "$v" "$dir/res.$(printf %04d "$n")" "$dir/work.$n"
        ran=$((ran + 1))
    done < <(model_checks | while read -r n m v; do echo "$(model_claim_rank "$m" "$v") $n $m $v"; done |
             if [ "$spare" = spare ]; then # rank 0, then rank 2: a broken variant (4 fields) first
                 awk '$1 == 0 { print 0, $0 } $1 == 2 { print (NF == 4 ? 1 : 2), $0 }' |
                     sort -k1,1n -k3,3nr | cut -d' ' -f2-
             else sort -s -k1,1n; fi | cut -d' ' -f2-)
    echo "== spin models: this worker ran $ran checks"
}

models_collect() { # DIR LOG: every check's result in model order, then the closing line
    local dir=$1 log=$2 n m v passed failed
    [ -e "$dir/spare.lock" ] && flock "$dir/spare.lock" true # a spare worker's last check
    : >"$log"
    while read -r n m v; do
        local res
        res="$dir/res.$(printf %04d "$n")"
        if [ -e "$res" ]; then
            cat "$res" >>"$log"
        else # claimed by a worker that died, or never claimed
            echo "FAIL model $(basename "$m" .pml)${v:+ (broken: $v)}: no result" >>"$log"
        fi
    done < <(model_checks)
    cat "$log"
    passed=$(grep -c '^ok   model' "$log"); failed=$(grep -c '^FAIL model' "$log")
    echo "$passed passed, $failed failed, 0 skipped" | tee -a "$log"
    rm -rf "$dir"
}

# Alone (make test-models): one worker per CPU.
models() {
    local log=$1 dir i
    dir=$(mktemp -d)
    for ((i = 0; i < $(nproc 2>/dev/null || echo 2); i++)); do
        models_worker "$dir" >/dev/null &
    done
    wait
    models_collect "$dir" "$log"
}

examples() {
    local log=$1; shift
    : >"$log"
    local passed=0 failed=0 bin
    for bin in "$@"; do
        echo "== $bin" | tee -a "$log"
        if timeout 120 "$bin" 2>&1 | tee -a "$log"; [ "${PIPESTATUS[0]}" -eq 0 ]; then
            passed=$((passed + 1)); echo "[  OK  ] $bin" | tee -a "$log"
        else
            failed=$((failed + 1)); echo "[ FAIL ] $bin" | tee -a "$log"
        fi
    done
    echo "examples: $passed passed, $failed failed, 0 skipped" | sed 's/^examples: //' | tee -a "$log"
}

summary() {
    local p=0 f=0 s=0 log line logs=("$@") # kept: the loop's set -- takes over "$@"
    echo
    echo "== summary"
    for log in "${logs[@]}"; do
        [ -e "$log" ] || continue
        local lp=0 lf=0 ls=0
        while read -r line; do
            set -- $line
            lp=$((lp + $1)); lf=$((lf + $3)); ls=$((ls + $5))
        done < <(grep -E "$closing_re" "$log")
        printf '%-40s %4d passed, %d failed, %d skipped\n' "$(basename "$log" .log)" $lp $lf $ls
        p=$((p + lp)); f=$((f + lf)); s=$((s + ls))
    done
    [ $f -ne 0 ] && failures "${logs[@]}"
    echo "$p passed, $f failed, $s skipped"
    [ $f -eq 0 ] && [ $p -gt 0 ]
}

# Each failure's lines, named by configuration and binary, wherever they start in their line:
# a case's child (or a worker it forked) may leave half a line that the harness's verdict then
# ends. A binary whose closing line counts a failure that no line explains is named too.
failures() {
    awk -v closing="$closing_re" '
        FNR == 1 { cfg = FILENAME; sub(/.*\//, "", cfg); sub(/\.log$/, "", cfg); at = cfg; seen = 0 }
        /^== / { bin = $2; sub(/.*\//, "", bin); at = cfg " " bin; seen = 0; next }
        /\[ FAIL \]|DEADLOCK\?|^FAIL |[^A-Za-z_]FAIL [^ ]+:[0-9]+:/ {
            printf "  %s: %s\n", at, substr($0, 1, 300); seen = 1; next }
        $0 ~ closing && $3 != 0 && !seen {
            printf "  %s: %s (no failure line: a crash, or a failing exit)\n", at, $0 }
    ' "$@" 2>/dev/null
}

# The time is checked before each binary (at least one runs), so the run ends within one
# binary's stress cases of SECONDS; the progress line follows every binary.
stress() {
    local seconds=$1; shift
    local bins=("$@") end=$((SECONDS + seconds)) round=0 runs=0 p=0 f=0 bin out line left
    [ ${#bins[@]} -gt 0 ] || { echo "0 passed, 0 failed, 0 skipped"; return 0; }
    while [ $SECONDS -lt $end ] || [ $runs -eq 0 ]; do
        round=$((round + 1))
        for bin in "${bins[@]}"; do
            [ $runs -gt 0 ] && [ $SECONDS -ge $end ] && break
            runs=$((runs + 1))
            out=$(CONC_TEST_FILTER=stress,deadlock,starv "$bin" 2>&1)
            line=$(echo "$out" | grep -E "$closing_re" | tail -1)
            read -r bp _ bf _ _ _ <<<"${line:-0 passed, 1 failed, 0 skipped}"
            p=$((p + bp)); f=$((f + bf))
            [ "$bf" = 0 ] || { echo; echo "$out" | grep -E 'FAIL|DEADLOCK|seed'; }
            left=$((end - SECONDS)); [ $left -lt 0 ] && left=0
            printf '\rstress: round %d, %-18s %d s left, %d passed, %d failed   ' $round \
                "${bin##*/}," $left $p $f
        done
    done
    echo
    echo "$p passed, $f failed, 0 skipped"
    [ $f -eq 0 ]
}

shaken() {
    local rounds=$1 dir=$2 make=$3; shift 3
    local configs=("$@") i round cfg clean=0 p=0 f=0 s=0 line
    # One busy loop per core, at the caller's priority, killed by pid however this ends
    # (shaken_hogs is global: the EXIT trap runs after this function has returned).
    shaken_hogs=()
    for ((i = 0; i < $(nproc); i++)); do
        (while :; do :; done) &
        shaken_hogs+=($!)
    done
    trap 'kill "${shaken_hogs[@]}" 2>/dev/null; wait "${shaken_hogs[@]}" 2>/dev/null' EXIT
    trap 'exit 130' INT TERM
    echo "shaken: ${#shaken_hogs[@]} CPU hogs beside every test binary, $rounds rounds"
    for ((round = 1; round <= rounds; round++)); do
        local started=$SECONDS
        mkdir -p "$dir/round-$round"
        for cfg in "${configs[@]}"; do
            $make test-config CC="${cfg%%:*}" SANITIZE="${cfg#*:}" RESULTS="$dir/round-$round"
        done
        summary "$dir/round-$round"/*.log >"$dir/round-$round.summary"
        line=$(tail -1 "$dir/round-$round.summary")
        read -r rp _ rf _ rs _ <<<"$line"
        p=$((p + rp)); f=$((f + rf)); s=$((s + rs))
        [ "$rf" = 0 ] && [ "$rp" -gt 0 ] && clean=$((clean + 1))
        echo "shaken: round $round ($(date -u +%H:%M), $(( (SECONDS - started) / 60 )) min $(( (SECONDS - started) % 60 )) s): $line"
        grep '^  ' "$dir/round-$round.summary" # the failures, if any
    done
    echo "shaken: $clean of $rounds rounds passed"
    echo "$p passed, $f failed, $s skipped"
    [ $f -eq 0 ] && [ $clean -eq "$rounds" ]
}

cmd=${1//-/_}; shift
"$cmd" "$@"
