# conc - header-only concurrency primitives for C
# SPDX-License-Identifier: MIT
#
#   make test                 everything CI runs: lint, headers, tests (plain, TSan gcc+clang,
#                             ASan+UBSan), spin models, examples; ends "N passed, N failed, N skipped"
#   make bench                every benchmark, conc against its baselines, as markdown tables
#   make stress DURATION=600  the stress cases, CONC_CHAOS delays on, for DURATION seconds
#   make test-shaken ROUNDS=3 every configuration's tests ROUNDS times beside a CPU hog per core
#   make test-emulated        every suite built for aarch64 and armhf, run under qemu-user
#   make test-musl            every suite built with musl-gcc (Alpine's libc) and run
#   make examples             build the examples (build/examples/)
#   make check                one configuration's tests: make check CC=clang SANITIZE=thread
#   make install PREFIX=/usr/local   headers, conc.pc (pkg-config), find_package(conc) files
#   make format / make lint / make clean
#
# Variables: CC=gcc|clang, SANITIZE= | thread | address,undefined | memory (clang only),
# OPT (-O2 -g), WERROR (1); CONC_TEST_* knobs (tests/harness.h) pass through the environment.

ifeq ($(origin CC),default)
CC := gcc
endif
SANITIZE ?=
OPT ?= -O2 -g
WERROR ?= 1
PREFIX ?= /usr/local
DURATION ?= 60

STD := -std=c11 -D_DEFAULT_SOURCE
WARN := -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wstrict-prototypes -Wmissing-prototypes
ifeq ($(WERROR),1)
WARN += -Werror
endif

comma := ,
ifeq ($(SANITIZE),)
SANFLAGS :=
else ifeq ($(SANITIZE),thread)
SANFLAGS := -fsanitize=thread
else ifeq ($(SANITIZE),address,undefined)
# Chaos points on too: a seeded delay right after each racy atomic widens the windows in which
# a use-after-free (say, a release touching memory its waiter has already freed) can show.
SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer \
            -DCONC_CHAOS
else ifeq ($(SANITIZE),address)
SANFLAGS := -fsanitize=address -fno-omit-frame-pointer
else ifeq ($(SANITIZE),undefined)
SANFLAGS := -fsanitize=undefined -fno-sanitize-recover=all
else ifeq ($(SANITIZE),memory)
# clang only: reads of uninitialized memory, with where it came from.
SANFLAGS := -fsanitize=memory -fsanitize-memory-track-origins -fno-omit-frame-pointer
else
$(error SANITIZE must be empty, thread, address, undefined, address$(comma)undefined or memory (TSan and ASan cannot be combined; memory needs clang))
endif

CFLAGS_ALL := $(STD) $(OPT) $(WARN) $(SANFLAGS) -Iinclude $(EXTRA_CFLAGS)
LDLIBS := -pthread -lrt -lm
# A misuse abort prints the caller's frames (backtrace_symbols): tests export their functions
# so that the frames have names, and gcc keeps each function's unlikely paths inside it rather
# than in a separate, unexported `fn.cold` part.
TEST_LDFLAGS := -rdynamic
ifneq ($(findstring gcc,$(notdir $(CC))),)
TEST_LDFLAGS += -fno-reorder-blocks-and-partition
endif

CONFIG := $(notdir $(CC))$(if $(SANITIZE),-$(subst $(comma),+,$(SANITIZE)))
BUILD := build/$(CONFIG)
HEADERS := $(wildcard include/conc/*.h) include/conc.h
VERSION := $(shell sed -n 's/^\#define CONC_VERSION_STRING "\(.*\)"/\1/p' include/conc/base.h)

TEST_SRCS := $(sort $(wildcard tests/test_*.c))
TEST_BINS := $(TEST_SRCS:tests/%.c=$(BUILD)/%)
BENCH_SRCS := $(sort $(wildcard bench/bench_*.c))
BENCH_BINS := $(BENCH_SRCS:bench/%.c=build/bench/%)
EXAMPLE_SRCS := $(sort $(wildcard examples/[0-9]*.c))
EXAMPLE_BINS := $(EXAMPLE_SRCS:examples/%.c=build/examples/%)

# Sanitizer runtime options: stop at the first report, and make a report fail the test.
export TSAN_OPTIONS ?= halt_on_error=1 second_deadlock_stack=1 exitcode=66
export ASAN_OPTIONS ?= detect_leaks=1 abort_on_error=0 detect_stack_use_after_return=1
export UBSAN_OPTIONS ?= halt_on_error=1 print_stacktrace=1

RESULTS := build/results
RUN := bash tests/run.sh

.PHONY: all test check tests bench stress examples install uninstall format lint clean \
        deps-test deps-bench test-headers test-models test-examples test-config test-frontdoor \
        test-snippets-copy test-consumers needs \
        test-lint test-coro-variants test-emulated test-build-emulated test-run-emulated \
        test-musl test-build-musl test-run-musl test-nopidfd test-run-nopidfd \
        test-shaken test-steps test-config-build test-config-run \
        test-build-coro test-run-coro test-build-examples test-run-examples \
        test-models-worker-suites test-models-worker-builds test-models-collect step-models-collect

all: tests examples $(BENCH_BINS)

tests: $(TEST_BINS)

# A suite is one file, tests/test_NAME.c, plus tests/tu2_NAME.c when a case needs a second
# translation unit (what one file's header code makes, another reads): linked into the same test.
.SECONDEXPANSION:
$(BUILD)/test_%: tests/test_%.c $$(wildcard tests/tu2_$$*.c) tests/harness.h tests/group.h \
                 tests/lockish.h tests/futex_gate.h $(HEADERS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) $(TEST_CFLAGS_$*) $(TEST_LDFLAGS) -o $@ $< $(wildcard tests/tu2_$*.c) $(LDLIBS)
# test_once unwinds out of an init function (pthread_exit), as C++ files always can.
TEST_CFLAGS_once := -fexceptions

build/examples/%: examples/%.c $(HEADERS)
	@mkdir -p $(@D)
	$(CC) $(STD) -O2 -g $(WARN) -Iinclude -o $@ $< $(LDLIBS)

build/bench/%: bench/%.c bench/bench.h tests/group.h $(HEADERS)
	@mkdir -p $(@D)
	$(CC) -std=c11 -D_GNU_SOURCE -O2 -g $(WARN) -Iinclude -o $@ $< $(LDLIBS)

examples: $(EXAMPLE_BINS)

# --- make test ---------------------------------------------------------------------------------
# Each step writes its log to build/results/; the summary sums their closing lines. A step that
# fails to build counts as one failure, and the others still run.
#
# Two lanes, one per core (TEST_JOBS). One runs the test binaries, one configuration at a time
# in the order below (never two suites at once: a stress case meets the load it was written
# for, one other job, as under test-shaken's hogs); the other builds the next configuration
# ahead of it, then checks the headers, lint, the examples, the snippets, the copy
# instructions and the consumer projects. Then each lane becomes a worker of one shared
# queue of spin-model checks (tests/run.sh models-worker), so the lanes end together
# whichever was faster, and the models never put two searches beside a suite.
# Each step's output comes out whole when it ends (--output-sync).
TEST_JOBS ?= 2
TEST_CONFIGS := gcc clang gcc-thread clang-thread gcc-address+undefined
CONFIG_CC_gcc := gcc
CONFIG_SAN_gcc :=
CONFIG_CC_clang := clang
CONFIG_SAN_clang :=
CONFIG_CC_gcc-thread := gcc
CONFIG_SAN_gcc-thread := thread
CONFIG_CC_clang-thread := clang
CONFIG_SAN_clang-thread := thread
CONFIG_CC_gcc-address+undefined := gcc
CONFIG_SAN_gcc-address+undefined := address,undefined

# Beside the two lanes, a spare worker checks models whenever a core is idle (a suite's case
# asleep, waiting for a timeout, say): the supertrace search, then the broken variants and
# small models. SCHED_IDLE, so it runs only on a core that neither lane wants, and any wakeup
# takes the core back at once.
test: deps-test
	@rm -rf $(RESULTS) && mkdir -p $(RESULTS) && date +%s >$(RESULTS)/started
	@chrt --idle 0 $(RUN) models-worker $(MODEL_QUEUE) spare >$(RESULTS)/models-spare.out 2>&1 & \
	  $(MAKE) --no-print-directory -j$(TEST_JOBS) --output-sync=recurse test-steps; \
	  rc=$$?; wait; exit $$rc
	@rc=0; $(RUN) summary $(RESULTS)/*.log || rc=$$?; \
	  s=$$(( $$(date +%s) - $$(cat $(RESULTS)/started) )); \
	  echo "make test: $$((s / 60)) min $$((s % 60)) s on $$(nproc) CPUs"; exit $$rc

# make starts whatever it meets first in its walk of the prerequisites, and waits there for a
# free job slot: so each lane is a chain of steps (step-X runs make test-X), and nothing starts
# out of its lane's order. The suites' lane is the test binaries alone, the longest of the
# steps that cannot be shared: it waits only for the first configuration's build, which has
# both cores to itself (13 s). The builds' lane keeps a configuration ahead of it with time to
# spare, so the headers, lint, the examples' run, the front door's snippets, copy and consumer
# projects go there (the headers, lint, examples and consumers are 30 s that the suites' lane,
# the last to end, used to carry).
SUITE_LANE := $(TEST_CONFIGS:%=run-%) run-coro run-nopidfd run-emulated run-musl \
              models-worker-suites
OTHER_LANE := $(TEST_CONFIGS:%=build-%) build-coro build-emulated build-musl build-examples headers \
              lint run-examples \
              snippets-copy consumers models-worker-builds
test-steps: step-models-collect
step-run-gcc: step-build-gcc
step-run-clang: step-run-gcc step-build-clang
step-run-gcc-thread: step-run-clang step-build-gcc-thread
step-run-clang-thread: step-run-gcc-thread step-build-clang-thread
step-run-gcc-address+undefined: step-run-clang-thread step-build-gcc-address+undefined
step-run-coro: step-run-gcc-address+undefined step-build-coro
step-run-nopidfd: step-run-coro
step-run-emulated: step-run-nopidfd step-build-emulated
step-run-musl: step-run-emulated step-build-musl
step-models-worker-suites: step-run-musl
step-build-clang: step-build-gcc
step-build-gcc-thread: step-build-clang
step-build-clang-thread: step-build-gcc-thread
step-build-gcc-address+undefined: step-build-clang-thread
step-build-coro: step-build-gcc-address+undefined
step-build-emulated: step-build-coro
step-build-musl: step-build-emulated
step-build-examples: step-build-musl
step-headers: step-build-examples
step-lint: step-headers
step-run-examples: step-lint
step-snippets-copy: step-run-examples
step-consumers: step-snippets-copy
step-models-worker-builds: step-consumers
step-models-collect: step-models-worker-suites step-models-worker-builds
	@$(MAKE) --no-print-directory test-models-collect

$(SUITE_LANE:%=step-%) $(OTHER_LANE:%=step-%): step-%:
	@$(MAKE) --no-print-directory test-$*
.PHONY: $(SUITE_LANE:%=step-%) $(OTHER_LANE:%=step-%)

# make test builds with line tables only (-g1): a sanitizer report's and a deadlock dump's
# frames keep their functions, files and lines, and the builds take a fifth less time. The
# ASan+UBSan build is -O1, the level AddressSanitizer's documentation starts from: at -O2 it
# took 61 CPU-seconds, at -O1 39, and its suite runs as fast (37 s either way). The checks are
# the same at both levels; what -O2's code generation could break shows in the plain build and
# under TSan.
TEST_OPT ?= -O2 -g1
TEST_OPT_gcc-address+undefined ?= -O1 -g1
$(TEST_CONFIGS:%=test-build-%): test-build-%:
	@$(MAKE) --no-print-directory test-config-build CC=$(CONFIG_CC_$*) SANITIZE=$(CONFIG_SAN_$*) \
	  OPT="$(or $(TEST_OPT_$*),$(TEST_OPT))"

$(TEST_CONFIGS:%=test-run-%): test-run-%:
	@$(MAKE) --no-print-directory test-config-run CC=$(CONFIG_CC_$*) SANITIZE=$(CONFIG_SAN_$*)
.PHONY: $(TEST_CONFIGS:%=test-build-%) $(TEST_CONFIGS:%=test-run-%)

# Sanitizer builds run slower: stretch deadlines, shrink iteration counts.
SANITIZED_ENV := CONC_TEST_TIMEOUT_SCALE=$${CONC_TEST_TIMEOUT_SCALE:-4} \
                 CONC_TEST_ITERS=$${CONC_TEST_ITERS:-25}
ifneq ($(SANITIZE),)
SAN_ENV := $(SANITIZED_ENV)
endif

# One configuration's tests (test-shaken runs them through here): build, then run.
test-config:
	@$(MAKE) --no-print-directory test-config-build
	@$(MAKE) --no-print-directory test-config-run

# A build that fails leaves the configuration's log with one failure; the run step sees it.
# Under make test the build takes its jobs from the two lanes' (jobserver) instead of two more.
SUBMAKE_JOBS = $(if $(findstring jobserver-auth,$(MAKEFLAGS)),,-j2)
test-config-build:
	@mkdir -p $(RESULTS)
	@$(RUN) build $(RESULTS)/$(CONFIG).log $(CONFIG) $(MAKE) --no-print-directory $(SUBMAKE_JOBS) tests

test-config-run:
	@$(SAN_ENV) $(RUN) run $(CONFIG) $(RESULTS)/$(CONFIG).log $(TEST_BINS)

# The coroutine switch has backends and build modes the five configurations do not reach: a
# C++17 build, a -D_FORTIFY_SOURCE=2 -O2 build (glibc's longjmp check), the swapcontext and
# setjmp fallbacks; and valgrind memcheck over the plain build (stack registration, no
# suppressions), with iterations scaled down.
CORO_VARIANTS := fortify cxx swapcontext setjmp
CORO_FLAGS_fortify := -O2 -D_FORTIFY_SOURCE=2
CORO_FLAGS_swapcontext := -DCONC_CORO_SWAPCONTEXT
CORO_FLAGS_setjmp := -DCONC_CORO_SETJMP
CXXWARN := -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Werror
VALGRIND := valgrind -q --error-exitcode=99

build/coro-%/test_coro: tests/test_coro.c tests/harness.h $(HEADERS)
	@mkdir -p $(@D)
	$(if $(filter cxx,$*),g++ -x c++ -std=c++17 $(CXXWARN),gcc $(STD) $(WARN)) $(TEST_OPT) \
	  $(CORO_FLAGS_$*) -Iinclude -o $@ $< $(LDLIBS)

# The variants' builds, and the plain build valgrind runs (a build that fails leaves its log
# with one failure, as a configuration's does).
test-build-coro:
	@mkdir -p $(RESULTS)
	@for v in $(CORO_VARIANTS); do \
	  $(RUN) build $(RESULTS)/coro-$$v.log coro-$$v \
	    $(MAKE) --no-print-directory build/coro-$$v/test_coro; \
	done
	@$(RUN) build $(RESULTS)/coro-valgrind.log coro-valgrind \
	  $(MAKE) --no-print-directory build/gcc/test_coro build/gcc/test_chan CC=gcc SANITIZE=

test-run-coro:
	@for v in $(CORO_VARIANTS); do \
	  $(RUN) run coro-$$v $(RESULTS)/coro-$$v.log build/coro-$$v/test_coro; \
	done
	@CONC_TEST_WRAPPER="$(VALGRIND)" CONC_TEST_ITERS=$${CONC_TEST_ITERS:-5} \
	  CONC_TEST_TIMEOUT_SCALE=$${CONC_TEST_TIMEOUT_SCALE:-20} \
	  $(RUN) run coro-valgrind $(RESULTS)/coro-valgrind.log build/gcc/test_coro build/gcc/test_chan

test-coro-variants: test-build-coro
	@$(MAKE) --no-print-directory test-run-coro

# Two more architectures, every suite, cross-built and run under qemu-user: aarch64 (the asm
# switch's other half, and the atomics of a weakly ordered CPU, though the emulator on x86-64
# does not reorder them) and armhf (32 bits: size_t and long, 64-bit atomics on a 32-bit CPU,
# the setjmp switch). CONC_TEST_EMULATED tells the cases where qemu-user differs from a
# kernel (tests/harness.h, th_emulated). Not test_forkpool nor test_harness: they test process
# control that qemu-user 7.2 does not emulate (MADV_WIPEONFORK, PR_SET_CHILD_SUBREAPER, prlimit
# on another process, RLIMIT_AS, running the test binary itself through sh), and fail ten and
# seven of their cases there for those reasons; the five configurations above run them.
EMULATED := aarch64 armhf
EMU_SUITES := $(filter-out test_forkpool test_harness,$(TEST_SRCS:tests/%.c=%))
EMU_CC_aarch64 := aarch64-linux-gnu-gcc
EMU_QEMU_aarch64 := qemu-aarch64
EMU_CC_armhf := arm-linux-gnueabihf-gcc
EMU_QEMU_armhf := qemu-arm
EMU_CFLAGS_armhf := -funwind-tables # EHABI: C has no unwind tables, so no backtrace, without it

test-build-emulated:
	@mkdir -p $(RESULTS)
	@for a in $(EMULATED); do \
	  case $$a in aarch64) cc=$(EMU_CC_aarch64) f=;; \
	              armhf) cc=$(EMU_CC_armhf) f="$(EMU_CFLAGS_armhf)";; esac; \
	  $(RUN) build $(RESULTS)/emu-$$a.log $$a \
	    $(MAKE) --no-print-directory $(SUBMAKE_JOBS) tests CC=$$cc OPT="$(TEST_OPT)" EXTRA_CFLAGS="$$f"; \
	done

test-run-emulated:
	@for a in $(EMULATED); do \
	  case $$a in aarch64) cc=$(EMU_CC_aarch64) q=$(EMU_QEMU_aarch64);; \
	              armhf) cc=$(EMU_CC_armhf) q=$(EMU_QEMU_armhf);; esac; \
	  CONC_TEST_EMULATED=1 QEMU_LD_PREFIX=/usr/$${cc%-gcc} CONC_TEST_WRAPPER=$$q \
	  CONC_TEST_TIMEOUT_SCALE=$${CONC_TEST_TIMEOUT_SCALE:-4} CONC_TEST_ITERS=$${CONC_TEST_ITERS:-25} \
	  $(RUN) run "$$a (qemu-user)" $(RESULTS)/emu-$$a.log $(EMU_SUITES:%=build/$$cc/%); \
	done

test-emulated: test-build-emulated
	@$(MAKE) --no-print-directory test-run-emulated

# musl, Alpine's libc: every suite built with Debian's musl-gcc and run here, but test_harness
# (gdb shows no frames through musl's system call stubs). musl-gcc searches musl's headers
# only: the kernel's (linux/futex.h) come from a directory of links to them, which is what
# Alpine's linux-headers package installs. test_once without -fexceptions: Debian's
# libgcc_eh is glibc's (it calls _dl_find_object), so musl programs cannot link it here.
MUSL_CC := musl-gcc
MUSL_INCLUDE := build/musl-include
MUSL_SUITES := $(filter-out test_harness,$(TEST_SRCS:tests/%.c=%))

test-build-musl:
	@mkdir -p $(RESULTS) $(MUSL_INCLUDE)
	@ln -sfn /usr/include/linux $(MUSL_INCLUDE)/linux && \
	  ln -sfn /usr/include/asm-generic $(MUSL_INCLUDE)/asm-generic && \
	  ln -sfn /usr/include/$$(gcc -print-multiarch)/asm $(MUSL_INCLUDE)/asm
	@$(RUN) build $(RESULTS)/musl.log musl \
	  $(MAKE) --no-print-directory $(SUBMAKE_JOBS) tests CC=$(MUSL_CC) OPT="$(TEST_OPT)" \
	  EXTRA_CFLAGS="-isystem $(MUSL_INCLUDE)" TEST_CFLAGS_once=

test-run-musl:
	@$(RUN) run musl $(RESULTS)/musl.log $(MUSL_SUITES:%=build/$(MUSL_CC)/%)

test-musl: test-build-musl
	@$(MAKE) --no-print-directory test-run-musl

# The fork pool on a kernel without pidfds (Linux before 5.3, or a seccomp profile older than
# them): test_forkpool again, plain, under TSan and under ASan+UBSan, with pidfd_open and
# pidfd_send_signal refused (a seccomp filter the suite installs: CONC_TEST_NO_PIDFD); and
# plain on Linux 5.3's pidfds, which have no waitid (CONC_TEST_NO_PIDFD=waitid).
NOPIDFD_CONFIGS := gcc clang-thread gcc-address+undefined
test-run-nopidfd:
	@rm -f $(NOPIDFD_CONFIGS:%=$(RESULTS)/nopidfd-%.log) $(RESULTS)/nopidfd-waitid-gcc.log
	@$(foreach c,$(NOPIDFD_CONFIGS),CONC_TEST_NO_PIDFD=1 $(if $(CONFIG_SAN_$(c)),$(SANITIZED_ENV)) \
	  $(RUN) run nopidfd-$(c) $(RESULTS)/nopidfd-$(c).log build/$(c)/test_forkpool;)
	@CONC_TEST_NO_PIDFD=waitid $(RUN) run nopidfd-waitid-gcc $(RESULTS)/nopidfd-waitid-gcc.log \
	  build/gcc/test_forkpool

test-nopidfd:
	@$(foreach c,$(NOPIDFD_CONFIGS),$(MAKE) --no-print-directory build/$(c)/test_forkpool \
	  CC=$(CONFIG_CC_$(c)) SANITIZE=$(CONFIG_SAN_$(c)) &&) true
	@mkdir -p $(RESULTS)
	@$(MAKE) --no-print-directory test-run-nopidfd

check: tests
	@mkdir -p $(RESULTS)
	@$(SAN_ENV) $(RUN) suite $(RESULTS)/$(CONFIG).log $(TEST_BINS)
	@$(RUN) summary $(RESULTS)/$(CONFIG).log

test-headers:
	@echo "== headers"
	@mkdir -p $(RESULTS)
	@$(RUN) headers $(RESULTS)/headers.log | tail -1

# What a new user meets first (tests/frontdoor.sh): the quick starts and README snippets compile
# -Werror; README's copy instruction and needs lists hold; pkg-config, CMake and Meson consumers.
# make test runs the two parts in different lanes (test-snippets-copy, test-consumers).
test-frontdoor: test-snippets-copy test-consumers

test-snippets-copy:
	@echo "== front door: snippets, copying"
	@mkdir -p $(RESULTS)
	@bash tests/frontdoor.sh snippets $(RESULTS)/snippets.log | grep -E '^FAIL|^    |passed'
	@bash tests/frontdoor.sh copy $(RESULTS)/copy.log | grep -E '^FAIL|^    |passed'

test-consumers:
	@echo "== front door: consumer projects"
	@mkdir -p $(RESULTS)
	@bash tests/frontdoor.sh consumers $(RESULTS)/consumers.log | grep -E '^FAIL|^    |passed'

# The dependency list README.md shows after <!-- needs -->, from the headers' includes.
needs:
	@bash tests/frontdoor.sh needs

test-models:
	@echo "== spin models"
	@mkdir -p $(RESULTS)
	@$(RUN) models $(RESULTS)/models.log

# make test's share of the models: a worker per lane, then the results in model order.
MODEL_QUEUE := $(RESULTS)/models.queue
test-models-worker-suites test-models-worker-builds:
	@mkdir -p $(RESULTS)
	@$(RUN) models-worker $(MODEL_QUEUE)

test-models-collect:
	@echo "== spin models"
	@$(RUN) models-collect $(MODEL_QUEUE) $(RESULTS)/models.log

test-examples: test-build-examples
	@$(MAKE) --no-print-directory test-run-examples

test-build-examples:
	@mkdir -p $(RESULTS)
	@$(RUN) build $(RESULTS)/examples.log examples \
	  $(MAKE) --no-print-directory $(SUBMAKE_JOBS) examples

test-run-examples:
	@echo "== examples"
	@[ -e $(RESULTS)/examples.log ] && cat $(RESULTS)/examples.log || \
	  $(RUN) examples $(RESULTS)/examples.log $(EXAMPLE_BINS) | grep -E '^\[|passed'

deps-test:
	@$(RUN) deps gcc:gcc clang:clang g++:g++ clang++:clang spin:spin gdb:gdb valgrind:valgrind \
	  pkg-config:pkgconf cmake:cmake meson:meson ninja:ninja-build \
	  cppcheck:cppcheck clang-format:clang-format \
	  /usr/lib/llvm-14/lib/clang/14.0.6/lib/linux/libclang_rt.tsan-x86_64.a:libclang-rt-14-dev \
	  aarch64-linux-gnu-gcc:gcc-aarch64-linux-gnu arm-linux-gnueabihf-gcc:gcc-arm-linux-gnueabihf \
	  qemu-aarch64:qemu-user musl-gcc:musl-tools

# --- make test-shaken ---------------------------------------------------------------------------
# A test that assumes timing fails here sooner or later: every test binary of every
# configuration, ROUNDS times, with a busy loop on every core beside it (other builds and CI
# neighbours do the same to a test, only less often). Ends with how many rounds passed.
# Besides make test's five, clang's ASan+UBSan and MemorySanitizer, which make test leaves
# out for time: clang's ASan memset interceptor is what showed that the stack painter could
# overwrite its own callee's frames.
ROUNDS ?= 3
SHAKEN_CONFIGS := gcc: clang: gcc:thread clang:thread gcc:address,undefined \
                  clang:address,undefined clang:memory
test-shaken: deps-test
	@rm -rf $(RESULTS)/shaken && mkdir -p $(RESULTS)/shaken
	@for c in $(SHAKEN_CONFIGS); do \
	  $(MAKE) --no-print-directory -j2 tests CC=$${c%%:*} SANITIZE=$${c#*:} || exit 1; done
	@$(RUN) shaken $(ROUNDS) $(RESULTS)/shaken "$(MAKE) --no-print-directory" $(SHAKEN_CONFIGS)

# --- make stress -------------------------------------------------------------------------------
stress: deps-test
	@$(MAKE) --no-print-directory -j2 tests SANITIZE= EXTRA_CFLAGS=-DCONC_CHAOS BUILD=build/chaos \
	  CONFIG=chaos
	@CONC_TEST_THREADS=$${CONC_TEST_THREADS:-16} $(RUN) stress $(DURATION) \
	  $(TEST_SRCS:tests/%.c=build/chaos/%)

# --- make bench --------------------------------------------------------------------------------
# One benchmark at a time (a lock file guards against two runs on one machine at once).
bench: deps-bench $(BENCH_BINS)
	@for b in $(BENCH_BINS); do flock /tmp/conc-bench.lock $$b || exit 1; done

deps-bench:
	@$(RUN) deps gcc:gcc python3:python3 /usr/include/ck_spinlock.h:libck-dev

# --- housekeeping ------------------------------------------------------------------------------
# The installed umbrella is <conc/conc.h>; conc.h at the top only forwards to it, and replaces
# nothing but an earlier conc.h of ours (it carries the tag conc-forwarding-header).
INSTALLED_CONC_H = $(DESTDIR)$(PREFIX)/include/conc.h
install:
	install -d $(DESTDIR)$(PREFIX)/include/conc $(DESTDIR)$(PREFIX)/share/pkgconfig \
	  $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/share/cmake/conc
	install -m 644 include/conc/*.h $(DESTDIR)$(PREFIX)/include/conc/
	@if [ ! -e $(INSTALLED_CONC_H) ] || grep -q conc-forwarding-header $(INSTALLED_CONC_H); then \
	  install -m 644 include/conc.h $(DESTDIR)$(PREFIX)/include/; \
	else echo "warning: $(INSTALLED_CONC_H) belongs to another package: kept; use <conc/conc.h>"; fi
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' conc.pc.in \
	  >$(DESTDIR)$(PREFIX)/share/pkgconfig/conc.pc
	install -m 644 $(DESTDIR)$(PREFIX)/share/pkgconfig/conc.pc $(DESTDIR)$(PREFIX)/lib/pkgconfig/
	install -m 644 cmake/conc-config.cmake $(DESTDIR)$(PREFIX)/share/cmake/conc/
	sed 's|@VERSION@|$(VERSION)|' cmake/conc-config-version.cmake.in \
	  >$(DESTDIR)$(PREFIX)/share/cmake/conc/conc-config-version.cmake

uninstall:
	rm -rf $(DESTDIR)$(PREFIX)/include/conc $(DESTDIR)$(PREFIX)/share/cmake/conc \
	  $(DESTDIR)$(PREFIX)/share/pkgconfig/conc.pc $(DESTDIR)$(PREFIX)/lib/pkgconfig/conc.pc
	@! grep -qs conc-forwarding-header $(INSTALLED_CONC_H) || rm -f $(INSTALLED_CONC_H)

FORMAT_FILES = $(HEADERS) tests/*.c tests/*.h bench/*.c bench/*.h examples/*.c
format:
	clang-format -i $(FORMAT_FILES)

# lint: the house style a machine can check (tests/lint.sh lists the rules): comment lines
# within 100 columns, internal names with their module's prefix or from a declared seam, _slow
# on cold paths, module-qualified timeline tags, every configuration macro in README's
# table, no bare fences; clang-format drift and cppcheck are reported. Every header
# include/conc/NAME.h is checked as module NAME, except the modules listed here, whose
# headers do not follow the house style yet. Remove a name once its header conforms
# (empty: every header conforms).
LINT_EXCLUDE :=
lint:
	@bash tests/lint.sh $(LINT_EXCLUDE)

test-lint:
	@echo "== lint"
	@mkdir -p $(RESULTS)
	@bash tests/lint.sh --log $(RESULTS)/lint.log $(LINT_EXCLUDE) | grep -E '^(FAIL|    |[0-9]+ passed)' || true

clean:
	rm -rf build
