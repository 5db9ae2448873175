#!/usr/bin/env bash
# tests/frontdoor.sh - what a new user meets first, checked the way a new user would meet it.
# SPDX-License-Identifier: MIT
#
#   tests/frontdoor.sh snippets LOG   every header's QUICK START and every ```c block of README.md,
#                                     compiled -Wall -Wextra -Wpedantic -Werror, gcc and clang,
#                                     C11 and C++17
#   tests/frontdoor.sh copy LOG       the README's "needs" lists match the headers' includes; the
#                                     folder README says to copy, copied alone into an empty
#                                     directory, builds every example; so does each example's
#                                     module with only the headers README says it needs
#   tests/frontdoor.sh consumers LOG  fresh consumer projects: pkg-config after `make install`,
#                                     CMake add_subdirectory / FetchContent / find_package (after
#                                     `make install` and after `cmake --install`), Meson subproject
#
# Everything is found mechanically (headers by wildcard, snippets by their markers), so a new
# header is covered the moment it lands. Each step ends its LOG with
# "N passed, N failed, N skipped".
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD

STRICT="-Wall -Wextra -Wpedantic -Werror -O2"
COMPILERS=("gcc -std=c11 -D_DEFAULT_SOURCE" "clang -std=c11 -D_DEFAULT_SOURCE"
           "g++ -std=c++17" "clang++ -std=c++17")

pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok   $*"; }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }
closing() { echo "$pass passed, $fail failed, 0 skipped"; }

# A snippet is file-scope lines (preprocessor lines, `static`/type declarations, function
# definitions: the lines that open them and every line up to their closing brace) and
# statements; the statements go into the body of one function. Prints the translation unit.
wrap_snippet() { # PRELUDE-LINES < snippet
    awk -v prelude="$1" '
    function bare(s) { # strings, characters and comments out, so braces count right
        gsub(/"([^"\\]|\\.)*"/, "\"\"", s); gsub(/\047([^\047\\]|\\.)*\047/, "0", s)
        gsub(/\/\*([^*]|\*[^\/])*\*\//, "", s); sub(/\/\/.*/, "", s); return s
    }
    {
        s = bare($0); t = s; sub(/^[ \t]+/, "", t)
        if (depth == 0)
            top = (t ~ /^#/ || t ~ /^(static|typedef|struct|union|enum|extern)[ \t]/ ||
                   (t ~ /^[A-Za-z_][A-Za-z0-9_]*[ \t*]+[A-Za-z_][A-Za-z0-9_]*[ \t]*\(/ &&
                    t !~ /^(if|else|while|for|switch|return|do|case|goto)[^A-Za-z0-9_]/ &&
                    t ~ /\{/))
        if (top) tops = tops $0 "\n"; else body = body $0 "\n"
        depth += gsub(/\{/, "{", s) - gsub(/\}/, "}", s)
    }
    END {
        if (prelude != "") print prelude
        printf "%s", tops
        if (body != "")
            printf "void conc_snippet(void);\nvoid conc_snippet(void) {\n%s}\n", body
    }'
}

compile_all() { # LABEL FILE.c: compile FILE as C with gcc and clang, and as C++ with g++ and clang++
    local label=$1 src=$2 c dir
    dir=$(dirname "$src")
    cp "$src" "$dir/snippet.cpp"
    for c in "${COMPILERS[@]}"; do
        local f=$src
        [[ $c == *++* ]] && f=$dir/snippet.cpp
        if $c $STRICT -Iinclude -c -o "$dir/snippet.o" "$f" 2>"$dir/err"; then
            ok "$label: ${c%% *}"
        else
            bad "$label: $c"
            sed 's/^/    /' "$dir/err" | head -20
            echo "    --- the translation unit:"; cat -n "$src" | sed 's/^/    /'
        fi
    done
}

must_not_compile() { # TMP LABEL PRELUDE BAD GOOD EPILOGUE: BAD fails everywhere, GOOD builds
    local tmp=$1 label=$2 c f
    for c in "${COMPILERS[@]}"; do
        f=$tmp/must.c; [[ $c == *++* ]] && f=$tmp/must.cpp
        printf '%s\n%s\n%s\n' "$3" "$4" "$6" >"$f"
        if $c $STRICT -Iinclude -c -o "$tmp/must.o" "$f" >"$tmp/err" 2>&1; then
            bad "$label: compiles with $c"; continue
        fi
        printf '%s\n%s\n%s\n' "$3" "$5" "$6" >"$f"
        if $c $STRICT -Iinclude -c -o "$tmp/must.o" "$f" >"$tmp/err" 2>&1; then
            ok "$label: refused by ${c%% *} (and the right line compiles)"
        else
            bad "$label: the right line ($5) does not compile with $c"; sed 's/^/    /' "$tmp/err" | head
        fi
    done
}

snippets() {
    local log=$1 tmp h n
    tmp=$(mktemp -d)
    {
        for h in include/conc/*.h; do
            local rel=${h#include/}
            # The doc block's QUICK START: from its title line to the next empty comment line.
            sed -n '1,/\*\//p' "$h" |
                awk '/^ \* QUICK START/ { on = 1; next } on && /^ \*[ \t]*$/ { exit }
                     on && /^ \*\// { exit } on { sub(/^ \*/, ""); print }' >"$tmp/qs"
            if [ ! -s "$tmp/qs" ]; then bad "$rel: no QUICK START in the doc block"; continue; fi
            wrap_snippet "$(printf '#include "%s"\n#include "conc/conc.h"\n' "$rel")" \
                <"$tmp/qs" >"$tmp/snippet.c"
            compile_all "$rel QUICK START" "$tmp/snippet.c"
        done
        n=0
        while IFS= read -r -d '' block; do
            n=$((n + 1))
            local prelude='#include "conc/conc.h"\n'
            grep -q '^#include' <<<"$block" && prelude=''
            printf '%s\n' "$block" | wrap_snippet "$(printf "$prelude")" >"$tmp/snippet.c"
            compile_all "README.md C block $n" "$tmp/snippet.c"
        done < <(awk '/^```c[ \t]*$/ { on = 1; next } on && /^```/ { on = 0; printf "%c", 0; next }
                      on { print }' README.md)
        [ "$n" -gt 0 ] || bad "README.md: no \`\`\`c block found"
        # Misuse the compiler must refuse, beside the same line done right (which must compile).
        must_not_compile "$tmp" 'CONC_SEM_INIT_BOUNDED(5, 3): value above max' \
            '#include "conc/sem.h"' 'static conc_sem_t s = CONC_SEM_INIT_BOUNDED(5, 3);' \
            'static conc_sem_t s = CONC_SEM_INIT_BOUNDED(3, 3);' \
            'unsigned conc_snippet(void); unsigned conc_snippet(void) { return conc_sem_value(&s); }'
        must_not_compile "$tmp" 'CONC_SEM_INIT(-1): value past CONC_SEM_VALUE_MAX' \
            '#include "conc/sem.h"' 'static conc_sem_t s = CONC_SEM_INIT(-1);' \
            'static conc_sem_t s = CONC_SEM_INIT(0);' \
            'unsigned conc_snippet(void); unsigned conc_snippet(void) { return conc_sem_value(&s); }'
        must_not_compile "$tmp" 'CONC_LATCH_INIT(-1): count past CONC_LATCH_MAX' \
            '#include "conc/latch.h"' 'static conc_latch_t l = CONC_LATCH_INIT(-1);' \
            'static conc_latch_t l = CONC_LATCH_INIT(CONC_LATCH_MAX);' \
            'unsigned conc_snippet(void); unsigned conc_snippet(void) { return conc_latch_count(&l); }'
        # Lines a user writes that must build under DESIGN's flags. The same initializers with
        # run-time arguments, which their headers say a debug build checks when it runs,
        # whatever the arguments' types (a uint16_t against a constant bound made gcc's
        # -Wtype-limits stop the build, and the refusal's array was a variable-length one
        # g++ -Wpedantic refused); and a wait_rlock loop, whose result was CONC_NODISCARD.
        cat >"$tmp/init_args.c" <<'INIT'
#include <stddef.h>
#include <stdint.h>
#include "conc/cond.h"
#include "conc/latch.h"
#include "conc/sem.h"
void conc_wait_rlock_loop(conc_cond_t *c, conc_rlock_t *r, const int *ready);
void conc_wait_rlock_loop(conc_cond_t *c, conc_rlock_t *r, const int *ready) {
    while (!*ready)
        conc_cond_wait_rlock(c, r);
}
unsigned conc_init_args(unsigned workers, uint16_t permits, uint8_t few, int n, size_t z);
unsigned conc_init_args(unsigned workers, uint16_t permits, uint8_t few, int n, size_t z) {
    conc_latch_t a = CONC_LATCH_INIT(workers), b = CONC_LATCH_INIT(permits);
    conc_latch_t c = CONC_LATCH_INIT(n);
    conc_sem_t s1 = CONC_SEM_INIT(permits), s2 = CONC_SEM_INIT(few), s3 = CONC_SEM_INIT(z);
    conc_sem_t s4 = CONC_SEM_INIT_BOUNDED(few, permits);
    conc_sem_t s5 = CONC_SEM_INIT_BOUNDED(permits, 100000);
    conc_sem_t s6 = CONC_SEM_INIT_BOUNDED(workers, workers), s7 = CONC_SEM_INIT_BOUNDED(0, few);
    return conc_latch_count(&a) + conc_latch_count(&b) + conc_latch_count(&c) +
           conc_sem_value(&s1) + conc_sem_value(&s2) + conc_sem_value(&s3) +
           conc_sem_value(&s4) + conc_sem_value(&s5) + conc_sem_value(&s6) + conc_sem_value(&s7);
}
INIT
        STRICT="$STRICT -Wshadow -Wconversion" compile_all "run-time initializers, a wait_rlock loop" \
            "$tmp/init_args.c"
        echo "snippets: every QUICK START and README C block, -Werror, gcc/clang, C11/C++17"
        closing
    } 2>&1 | tee "$log"
    rm -rf "$tmp"
}

# The headers a header needs: every conc header it includes, directly or not, sorted.
needs_of() { # conc/X.h
    local seen=" " todo=("${1#conc/}") h dep
    while [ ${#todo[@]} -gt 0 ]; do
        h=${todo[0]}; todo=("${todo[@]:1}")
        for dep in $(sed -n 's/^[ \t]*#[ \t]*include[ \t]*"\([a-z0-9_]*\.h\)".*/\1/p' "include/conc/$h"); do
            [[ $seen == *" $dep "* ]] && continue
            seen="$seen$dep "; todo+=("$dep")
        done
    done
    echo $seen | tr ' ' '\n' | grep -v "^${1#conc/}\$" | sort | xargs
}
modules() { for h in include/conc/*.h; do [ "$h" = include/conc/conc.h ] || echo "conc/${h##*/}"; done; }

# What README.md's "needs" list (the block after <!-- needs -->) should say: `make needs` prints it.
needs_block() {
    local m
    for m in $(modules); do printf '%-18s needs %s\n' "$m" "$(needs_of "$m" | sed 's/^$/nothing/')"; done
}
needs() { needs_block; }

readme_block() { # MARKER: the lines of the fenced block right after <!-- MARKER -->
    awk -v m="<!-- $1 -->" '$0 == m { state = 1; next }
        state == 1 && /^```/ { state = 2; next } state == 2 && /^```/ { exit } state == 2 { print }' README.md
}

copy() {
    local log=$1 tmp m
    tmp=$(mktemp -d)
    {
        # 1. README's dependency list and the modules table's "needs" column say what the
        #    headers' includes say, for every header there is.
        readme_block needs >"$tmp/readme-needs"
        needs_block >"$tmp/want-needs"
        if diff -u "$tmp/want-needs" "$tmp/readme-needs" >"$tmp/diff"; then
            ok "README.md: the needs list matches the headers' includes ($(modules | wc -l) headers)"
        else
            bad "README.md: the needs list (<!-- needs -->) differs from the headers' includes:"
            sed 's/^/    /' "$tmp/diff"
        fi
        for m in $(modules); do
            local row cell want
            row=$(grep -E "^\| \`$m\` \|" README.md | head -1)
            if [ -z "$row" ]; then bad "README.md: no modules-table row for $m"; continue; fi
            cell=$(awk -F'|' '{ print $3 }' <<<"$row" | grep -o '[a-z0-9_]*\.h' | sort | xargs)
            want=$(needs_of "$m")
            if [ "$cell" = "$want" ]; then ok "README.md: modules table, $m needs: ${want:-nothing}"
            else bad "README.md: modules table says $m needs '${cell}', its includes say '${want}'"; fi
        done

        # 2. The copy instruction, run as written (your-project: an empty directory), then every
        #    example built against what it copied with the compile line README gives.
        local cp_line cc_line proj=$tmp/your-project
        cp_line=$(readme_block copy | grep -m1 '^cp ')
        cc_line=$(readme_block copy | grep -m1 '^cc ')
        if [ -z "$cp_line" ] || [ -z "$cc_line" ]; then
            bad "README.md: no cp/cc lines in the <!-- copy --> block"
        else
            mkdir -p "$proj/include"
            ( eval "${cp_line//your-project/$proj}" ) && ls "$proj/include/conc" >"$tmp/copied"
            local ex
            for ex in examples/[0-9]*.c; do
                build_copied "$proj" "$cc_line" "$ex" "copied folder"
            done
            # 3. One module and exactly the headers README says it needs, per example.
            for ex in examples/[0-9]*.c; do
                local one=$tmp/one/$(basename "$ex" .c) used h
                mkdir -p "$one/include/conc"
                for used in $(sed -n 's/^#include "conc\/\([a-z0-9_]*\.h\)".*/\1/p' "$ex"); do
                    cp "include/conc/$used" "$one/include/conc/"
                    for h in $(grep -E "^conc/$used " "$tmp/readme-needs" | sed 's/.* needs //;s/nothing//'); do
                        cp "include/conc/$h" "$one/include/conc/"
                    done
                done
                build_copied "$one" "$cc_line" "$ex" "$(ls "$one/include/conc" | xargs)"
            done
        fi
        echo "copy: README's copy instruction and needs lists, every example built from the copy"
        closing
    } 2>&1 | tee "$log"
    rm -rf "$tmp"
}

build_copied() { # PROJECT CC-LINE EXAMPLE LABEL: build EXAMPLE in PROJECT with README's cc line
    local proj=$1 line=$2 ex=$3 label=$4 name
    name=$(basename "$ex" .c)
    mkdir -p "$proj/src"; cp "$ex" "$proj/src/$name.c"
    line=${line//your-project/$proj}; line=${line//x.c/$proj/src/$name.c}
    if ( cd "$proj/src" && eval "${line%%#*} -Werror -o $name -lrt -lm" ) >"$proj/err" 2>&1; then
        ok "$name: built from $label"
    else
        bad "$name: not built from $label: ${line%%#*}"; sed 's/^/    /' "$proj/err" | head -20
    fi
}

# A consumer program: every module through the umbrella, one run of each kind of call.
consumer_main() { # INCLUDE-LINE
    cat <<EOF
$1
#include <stdio.h>
static int echo_task(void *arg, void **result) { *result = arg; return 0; }
int main(void) {
    static conc_lock_t lock = CONC_LOCK_INIT;
    static char msg[] = "consumer ok";
    conc_lock_acquire(&lock);
    conc_lock_release(&lock);
    conc_executor_t *ex;
    conc_future_t *f;
    if (conc_executor_create(&ex, 2, 8) != 0 || conc_executor_submit(ex, echo_task, msg, &f) != 0)
        return 1;
    int status = conc_future_wait(f);
    if (status == 0) puts((const char *)conc_future_result(f));
    conc_future_release(f);
    conc_executor_destroy(ex);
    return status;
}
EOF
}

run_consumer() { # LABEL DIR COMMAND...: run COMMAND in DIR; the built ./app must print "consumer ok"
    local label=$1 dir=$2; shift 2
    if (cd "$dir" && eval "$*") >"$dir/out" 2>&1 && "$dir/app" 2>&1 | grep -q 'consumer ok'; then
        ok "$label"
    else
        bad "$label: $*"; sed 's/^/    /' "$dir/out" | tail -25
    fi
}

consumers() {
    local log=$1 tmp
    tmp=$(mktemp -d)
    local gen=() ; command -v ninja >/dev/null && gen=(-G Ninja)
    local cm="cmake ${gen[*]} -Wno-dev -DCMAKE_BUILD_TYPE=Release"
    {
        # The tree a consumer fetches: the files git tracks (CI's fresh clone has nothing else).
        mkdir -p "$tmp/src/conc"
        { git ls-files -z --cached --others --exclude-standard 2>/dev/null ||
              find . -path ./build -prune -o -path ./.git -prune -o -type f -print0; } |
            grep -zv '^build/' | xargs -0 tar cf - | tar xf - -C "$tmp/src/conc"
        tar czf "$tmp/conc.tar.gz" -C "$tmp/src" conc

        # (a) pkg-config after `make install`: strict C11 and C++17, the umbrella by both names.
        local pfx=$tmp/prefix-make
        if make -s -C "$tmp/src/conc" install PREFIX="$pfx" >"$tmp/install.out" 2>&1; then
            ok "make install PREFIX=..."
        else bad "make install"; sed 's/^/    /' "$tmp/install.out"; fi
        local pc="PKG_CONFIG_PATH=$pfx/share/pkgconfig"
        mkdir -p "$tmp/pc"
        consumer_main '#include <conc/conc.h>' >"$tmp/pc/app.c"
        consumer_main '#include "conc.h"' >"$tmp/pc/app.cpp"
        run_consumer "pkg-config: gcc -std=c11 \$(pkg-config --cflags --libs conc), <conc/conc.h>" \
            "$tmp/pc" "gcc -std=c11 -Wall -Wextra -Werror app.c -o app \$($pc pkg-config --cflags --libs conc)"
        run_consumer "pkg-config: clang -std=c11" "$tmp/pc" \
            "clang -std=c11 -Wall -Wextra -Werror app.c -o app \$($pc pkg-config --cflags --libs conc)"
        run_consumer "pkg-config: g++ -std=c++17, \"conc.h\" (the forwarding header)" "$tmp/pc" \
            "g++ -std=c++17 -Wall -Wextra -Werror app.cpp -o app \$($pc pkg-config --cflags --libs conc)"
        local version
        version=$(sed -n 's/^#define CONC_VERSION_STRING "\(.*\)"/\1/p' include/conc/base.h)
        if [ "$(env $pc pkg-config --modversion conc)" = "$version" ]
        then ok "pkg-config --modversion conc is CONC_VERSION_STRING"
        else bad "pkg-config --modversion conc: $(env $pc pkg-config --modversion conc)"; fi
        if cmp -s "$pfx/share/pkgconfig/conc.pc" "$pfx/lib/pkgconfig/conc.pc" &&
           [ "$(env PKG_CONFIG_PATH="$pfx/lib/pkgconfig" pkg-config --cflags conc)" = \
             "$(env $pc pkg-config --cflags conc)" ]
        then ok "PREFIX/lib/pkgconfig/conc.pc is the same file"
        else bad "PREFIX/lib/pkgconfig/conc.pc missing or different"; fi
        # An installed conc.h of another package is never overwritten.
        local other=$tmp/prefix-other
        mkdir -p "$other/include"; echo '/* another package */' >"$other/include/conc.h"
        make -s -C "$tmp/src/conc" install PREFIX="$other" >/dev/null 2>&1
        if grep -q 'another package' "$other/include/conc.h" && [ -e "$other/include/conc/conc.h" ]
        then ok "make install keeps a conc.h that is not conc's"
        else bad "make install replaced another package's conc.h"; fi
        # A shared library built with -fvisibility=hidden shares the program's state (the
        # headers' weak variables are exported whatever the default): in a coroutine of the
        # program's scheduler, the library's code is in a coroutine too.
        mkdir -p "$tmp/so"
        cat >"$tmp/so/lib.c" <<'EOF'
#include <conc/conc.h>
__attribute__((visibility("default"))) int lib_yields_in_a_coroutine(void) {
    return conc_coro_self() != NULL && conc_coro_yield() == 0;
}
EOF
        cat >"$tmp/so/app.c" <<'EOF'
#include <conc/conc.h>
#include <stdio.h>
int lib_yields_in_a_coroutine(void);
static int body(void *arg) { return (void)arg, lib_yields_in_a_coroutine() ? 0 : 1; }
int main(void) {
    int status = -1;
    if (conc_run(body, NULL, &status) == 0 && status == 0)
        puts("consumer ok");
    return status;
}
EOF
        run_consumer "a shared library built with -fvisibility=hidden shares the program's scheduler" \
            "$tmp/so" "gcc -std=gnu11 -O2 -fPIC -shared -fvisibility=hidden -I$PWD/include lib.c -o libl.so &&
                       gcc -std=gnu11 -O2 -I$PWD/include app.c -o app -L. -ll -Wl,-rpath,$tmp/so -pthread"
        # Two libraries that vendor different builds of conc (here the setjmp backend and the
        # default one, whose schedulers differ in layout), both -fvisibility=hidden, keep their
        # state apart: with both schedulers alive, each finds its own in its own registry.
        mkdir -p "$tmp/twolibs"
        for side in a b; do
            cat >"$tmp/twolibs/lib$side.c" <<EOF
#include <conc/conc.h>
#define EXPORTED __attribute__((visibility("default")))
static conc_sched_t *s;
EXPORTED int ${side}_create(void) { return conc_sched_create(&s, NULL) == 0; }
EXPORTED int ${side}_finds_its_own(void) {
    return conc_sched_lookup(conc_sched_serial(s)) == CONC_SCHED_OURS;
}
EXPORTED void ${side}_destroy(void) { conc_sched_destroy(s); }
EOF
        done
        cat >"$tmp/twolibs/app.c" <<'EOF'
#include <stdio.h>
int a_create(void), b_create(void), a_finds_its_own(void), b_finds_its_own(void);
void a_destroy(void), b_destroy(void);
int main(void) {
    if (!a_create() || !b_create())
        return 1;
    if (a_finds_its_own() && b_finds_its_own())
        puts("consumer ok");
    a_destroy();
    b_destroy();
    return 0;
}
EOF
        run_consumer "two -fvisibility=hidden libraries with different conc builds keep their state apart" \
            "$tmp/twolibs" "gcc -std=gnu11 -O2 -fPIC -shared -fvisibility=hidden -DCONC_CORO_SETJMP -I$PWD/include liba.c -o liba.so &&
                            gcc -std=gnu11 -O2 -fPIC -shared -fvisibility=hidden -I$PWD/include libb.c -o libb.so &&
                            gcc -std=gnu11 -O2 app.c -o app -L. -la -lb -Wl,-rpath,$tmp/twolibs -pthread"
        # A C file runs the scheduler, a C++ file the coroutines: two of them block inside their
        # catch blocks, and each rethrows its own exception (the switches of the C file swap
        # the C++ runtime's record too).
        mkdir -p "$tmp/mixed"
        cat >"$tmp/mixed/run.c" <<'EOF'
#include <conc/conc.h>
#include <stdio.h>
int rethrows_its_own(void *name);
static int two(void *arg) {
    static char a[] = "A", b[] = "B";
    conc_coro_t *ca, *cb;
    int sa = -1, sb = -1;
    (void)arg;
    if (conc_coro_spawn(NULL, rethrows_its_own, a, NULL, &ca) ||
        conc_coro_spawn(NULL, rethrows_its_own, b, NULL, &cb))
        return 1;
    if (conc_coro_join(ca, CONC_FOREVER, &sa) || conc_coro_join(cb, CONC_FOREVER, &sb))
        return 1;
    conc_coro_release(ca);
    conc_coro_release(cb);
    return sa || sb;
}
int main(void) {
    int status = -1;
    if (conc_run(two, NULL, &status) == 0 && status == 0)
        puts("consumer ok");
    return status;
}
EOF
        cat >"$tmp/mixed/body.cpp" <<'EOF'
#include <conc/conc.h>
#include <cstring>
#include <stdexcept>
extern "C" int rethrows_its_own(void *name) {
    try {
        throw std::runtime_error(static_cast<const char *>(name));
    } catch (const std::exception &) {
        if (conc_coro_yield() != 0)
            return 1;
        try {
            throw;
        } catch (const std::exception &again) {
            return std::strcmp(again.what(), static_cast<const char *>(name)) != 0;
        }
    }
}
EOF
        run_consumer "a C file's scheduler runs C++ coroutines that block in catch blocks" \
            "$tmp/mixed" "gcc -std=gnu11 -O2 -Wall -Wextra -Werror -I$PWD/include -c run.c &&
                          g++ -std=c++17 -O2 -Wall -Wextra -Werror -I$PWD/include -c body.cpp &&
                          g++ run.o body.o -o app -pthread"

        # (b) CMake: strict C11 (no extensions), so the target must carry _DEFAULT_SOURCE.
        local head='cmake_minimum_required(VERSION 3.14)
project(consumer LANGUAGES C)
set(CMAKE_C_STANDARD 11)
set(CMAKE_C_STANDARD_REQUIRED ON)
set(CMAKE_C_EXTENSIONS OFF)
set(CMAKE_C_FLAGS "${CMAKE_C_FLAGS} -Wall -Wextra -Werror")'
        local tail='add_executable(app app.c)
target_link_libraries(app PRIVATE conc::conc)'
        local d
        for d in subdir fetch find-make find-cmake; do
            mkdir -p "$tmp/cm-$d"; consumer_main '#include "conc/conc.h"' >"$tmp/cm-$d/app.c"
        done
        printf '%s\nadd_subdirectory(%s conc)\n%s\n' "$head" "$tmp/src/conc" "$tail" \
            >"$tmp/cm-subdir/CMakeLists.txt"
        printf '%s\ninclude(FetchContent)\nFetchContent_Declare(conc URL file://%s)\nFetchContent_MakeAvailable(conc)\n%s\n' \
            "$head" "$tmp/conc.tar.gz" "$tail" >"$tmp/cm-fetch/CMakeLists.txt"
        printf '%s\nfind_package(conc 0.1 CONFIG REQUIRED)\n%s\n' "$head" "$tail" \
            >"$tmp/cm-find-make/CMakeLists.txt"
        cp "$tmp/cm-find-make/CMakeLists.txt" "$tmp/cm-find-cmake/"
        local build="$cm -S . -B b && cmake --build b && cp b/app app"
        run_consumer "CMake: add_subdirectory(conc), conc::conc" "$tmp/cm-subdir" "$build"
        run_consumer "CMake: FetchContent from a file:// archive, conc::conc" "$tmp/cm-fetch" "$build"
        run_consumer "CMake: find_package(conc CONFIG REQUIRED) after make install" "$tmp/cm-find-make" \
            "$cm -DCMAKE_PREFIX_PATH=$pfx -S . -B b && cmake --build b && cp b/app app"
        local pfx2=$tmp/prefix-cmake
        if (cd "$tmp/src/conc" && $cm -S . -B "$tmp/cm-self" && cmake --install "$tmp/cm-self" --prefix "$pfx2") \
            >"$tmp/cm-install.out" 2>&1; then ok "cmake --install --prefix ..."
        else bad "cmake --install"; sed 's/^/    /' "$tmp/cm-install.out" | tail -20; fi
        run_consumer "CMake: find_package(conc CONFIG REQUIRED) after cmake --install" "$tmp/cm-find-cmake" \
            "$cm -DCMAKE_PREFIX_PATH=$pfx2 -S . -B b && cmake --build b && cp b/app app"
        if diff -r "$pfx/include" "$pfx2/include" >"$tmp/d" && diff -r "$pfx/share/cmake" "$pfx2/share/cmake" >>"$tmp/d" &&
           diff <(grep -v '^prefix=' "$pfx/share/pkgconfig/conc.pc") \
                <(grep -v '^prefix=' "$pfx2/share/pkgconfig/conc.pc") >>"$tmp/d" &&
           diff <(grep -v '^prefix=' "$pfx/lib/pkgconfig/conc.pc") \
                <(grep -v '^prefix=' "$pfx2/lib/pkgconfig/conc.pc") >>"$tmp/d"
        then ok "make install and cmake --install lay out the same files"
        else bad "make install and cmake --install differ"; head "$tmp/d" | sed 's/^/    /'; fi

        # (c) Meson: conc as a subproject, its conc_dep; the version matches base.h.
        mkdir -p "$tmp/meson/subprojects"
        cp -r "$tmp/src/conc" "$tmp/meson/subprojects/conc"
        consumer_main '#include "conc/conc.h"' >"$tmp/meson/app.c"
        cat >"$tmp/meson/meson.build" <<'EOF'
project('consumer', 'c', default_options: ['c_std=c11', 'warning_level=2', 'werror=true'])
conc_dep = dependency('conc', version: '>= 0.1', fallback: ['conc', 'conc_dep'])
executable('app', 'app.c', dependencies: conc_dep)
EOF
        run_consumer "Meson: subproject conc, conc_dep, c_std=c11" "$tmp/meson" \
            "meson setup b >/dev/null && ninja -C b && cp b/app app"
        if grep -q "version: '$version'" meson.build
        then ok "meson.build's version is CONC_VERSION_STRING"
        else bad "meson.build's project version differs from CONC_VERSION_STRING ($version)"; fi

        echo "consumers: pkg-config, a hidden-visibility shared library, C and C++ files, CMake (add_subdirectory, FetchContent, find_package x2), Meson"
        closing
    } 2>&1 | tee "$log"
    rm -rf "$tmp"
}

cmd=$1; shift
"$cmd" "$@"
