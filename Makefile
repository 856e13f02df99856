# dsv4 — build.  Run ./configure first (it writes config.mk); plain `make`
# also works with the CPU-only defaults below.
#
# Layout: every lib/*.c and lib/ref/*.c goes into lib/libdsv4.a (with the
# CUDA objects of kernels/*.cu when configured); every cmd/dsv4-*.c is one
# program in bin/; every tests/unit/test_*.c is one unit-test binary.

-include config.mk

PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
MANDIR     ?= $(PREFIX)/share/man
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR ?= $(PREFIX)/share/zsh/site-functions
CC         ?= cc
CFLAGS     ?= -O2 -g
WARN       ?= -Wall -Wextra -Wno-unused-parameter -Wshadow -Wstrict-prototypes
DEPS_CFLAGS ?=
DEPS_LIBS  ?= -lzstd -lsodium
HAVE_CUDA  ?= 0
NVCC       ?= nvcc
CUDA_ARCH  ?= sm_90
CUDA_GENCODE ?= -gencode arch=compute_90,code=sm_90
CUDA_LIBS  ?=
NVCCFLAGS  ?= -O2
CXX        ?= g++
SANITIZE_FLAGS ?=
SANITIZE_LDFLAGS ?=

BASE_CFLAGS = -std=c11 -D_GNU_SOURCE -pthread $(WARN) $(CFLAGS) $(SANITIZE_FLAGS) $(DEPS_CFLAGS) -Ilib
ALL_CFLAGS = $(BASE_CFLAGS) -DDSV4_HAVE_CUDA=$(HAVE_CUDA)
LIBS       = $(DEPS_LIBS) $(CUDA_LIBS) -lpthread -lm

ifeq ($(V),1)
Q =
else
Q = @
endif

LIB_SRC   = $(sort $(wildcard lib/*.c lib/ref/*.c))
LIB_OBJ   = $(LIB_SRC:%.c=build/%.o)
ifeq ($(HAVE_CUDA),1)
CU_SRC    = $(sort $(wildcard kernels/*.cu))
CU_OBJ    = $(CU_SRC:%.cu=build/%.o)
LINK      = $(NVCC) $(CUDA_GENCODE) -Xcompiler -pthread
LINKFLAGS = $(filter-out -pthread,$(LDFLAGS))
else
CU_OBJ    =
LINK      = $(CC) -pthread
LINKFLAGS = $(SANITIZE_FLAGS) $(SANITIZE_LDFLAGS) $(LDFLAGS)
endif
LIBA      = lib/libdsv4.a

CMD_SRC   = $(sort $(wildcard cmd/dsv4-*.c))
PROGS     = $(CMD_SRC:cmd/%.c=bin/%)
CLI_OBJ   = build/cmd/cli.o build/cmd/run.o
TOOL_SRC  = $(sort $(wildcard tests/tools/*.c))
TOOLS     = $(TOOL_SRC:tests/tools/%.c=build/tools/%)
UNIT_SRC  = $(sort $(wildcard tests/unit/test_*.c))
UNITS     = $(UNIT_SRC:tests/unit/%.c=build/tests/%)
KTEST_SRC = $(sort $(wildcard tests/kernels/test_*.c))
KTESTS    = $(KTEST_SRC:tests/kernels/%.c=build/tests/kernels/%)
# the emulated CUDA backend's build (see below)
EMU_CXXFLAGS = -std=c++17 -O1 -g -Wall -Wno-unknown-pragmas -Wno-unused-function $(SANITIZE_FLAGS) \
               -DDSV4_CU_EMU=1 -DDSV4_HAVE_CUDA=1 -Ilib -Ikernels
EMU_CFLAGS   = $(BASE_CFLAGS) -DDSV4_CU_EMU=1 -DDSV4_HAVE_CUDA=1
EMU_OBJ      = $(LIB_SRC:%.c=build/emu/%.o) $(patsubst %.cu,build/emu/%.o,$(sort $(wildcard kernels/*.cu))) build/emu/kernels/emu.o
EMU_LIBA     = build/emu/libdsv4.a
EMU_KTESTS   = $(KTEST_SRC:tests/kernels/%.c=build/emu/tests/kernels/%)
EMU_PROGS    = build/emu/bin/dsv4-prefill build/emu/bin/dsv4-decode

BENCH_SRC = $(sort $(wildcard tests/bench/*.c))
BENCHES   = $(BENCH_SRC:tests/bench/%.c=build/bench/%)

.PHONY: all check check-all check-sanitize check-gpu demo bench install uninstall clean completions tests
all: $(LIBA) $(PROGS) $(TOOLS)

# Objects depend on config.mk: switching --with/--without CUDA rebuilds.
CONFIG_DEP = $(wildcard config.mk)

build/%.o: %.c $(CONFIG_DEP)
	@mkdir -p $(@D)
	@echo "  CC      $<"
	$(Q)$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

build/kernels/%.o: kernels/%.cu $(CONFIG_DEP)
	@mkdir -p $(@D)
	@echo "  NVCC    $<"
	$(Q)$(NVCC) $(NVCCFLAGS) $(CUDA_GENCODE) -Ilib -Ikernels -DDSV4_HAVE_CUDA=1 -c $< -o $@

$(LIBA): $(LIB_OBJ) $(CU_OBJ) $(CONFIG_DEP)
	@echo "  AR      $@"
	$(Q)rm -f $@ && ar rcs $@ $(LIB_OBJ) $(CU_OBJ)

bin/%: build/cmd/%.o $(CLI_OBJ) $(LIBA)
	@mkdir -p $(@D)
	@echo "  LINK    $@"
	$(Q)$(LINK) $(LINKFLAGS) -o $@ $< $(CLI_OBJ) $(LIBA) $(LIBS)

build/tools/%: build/tests/tools/%.o $(LIBA)
	@mkdir -p $(@D)
	@echo "  LINK    $@"
	$(Q)$(LINK) $(LINKFLAGS) -o $@ $< $(LIBA) $(LIBS)

build/tests/test_%: build/tests/unit/test_%.o $(LIBA)
	@mkdir -p $(@D)
	@echo "  LINK    $@"
	$(Q)$(LINK) $(LINKFLAGS) -o $@ $< $(LIBA) $(LIBS)

build/tests/kernels/test_%: build/tests/kernels/test_%.o $(LIBA)
	@mkdir -p $(@D)
	@echo "  LINK    $@"
	$(Q)$(LINK) $(LINKFLAGS) -o $@ $< $(LIBA) $(LIBS)

build/bench/%: build/tests/bench/%.o $(LIBA)
	@mkdir -p $(@D)
	@echo "  LINK    $@"
	$(Q)$(LINK) $(LINKFLAGS) -o $@ $< $(LIBA) $(LIBS)

tests: all $(UNITS) $(KTESTS) $(BENCHES) $(EMU_KTESTS) $(EMU_PROGS)

# ---- the emulated CUDA backend (kernels/emu.h) ----
# kernels/*.cu compiled as C++ for the CPU, with the whole library built
# again as if CUDA were there, into build/emu/: the kernel tests run against
# it on every machine, GPU or not (tests/run.sh kernels).  Needs only a C++17
# compiler.
build/emu/lib/%.o: lib/%.c $(CONFIG_DEP)
	@mkdir -p $(@D)
	@echo "  CC      $< (emulated CUDA)"
	$(Q)$(CC) $(EMU_CFLAGS) -MMD -MP -c $< -o $@

build/emu/kernels/%.o: kernels/%.cu kernels/emu.h $(CONFIG_DEP)
	@mkdir -p $(@D)
	@echo "  CXX     $< (emulated)"
	$(Q)$(CXX) -x c++ $(EMU_CXXFLAGS) -include kernels/emu.h -MMD -MP -c $< -o $@

build/emu/kernels/emu.o: kernels/emu.cc kernels/emu.h $(CONFIG_DEP)
	@mkdir -p $(@D)
	@echo "  CXX     $<"
	$(Q)$(CXX) $(EMU_CXXFLAGS) -MMD -MP -c $< -o $@

$(EMU_LIBA): $(EMU_OBJ)
	@echo "  AR      $@"
	$(Q)rm -f $@ && ar rcs $@ $(EMU_OBJ)

build/emu/tests/kernels/%.o: tests/kernels/%.c $(CONFIG_DEP)
	@mkdir -p $(@D)
	@echo "  CC      $< (emulated CUDA)"
	$(Q)$(CC) $(EMU_CFLAGS) -MMD -MP -c $< -o $@

# dsv4-prefill and dsv4-decode on the emulated device, for the program
# tests of --device cuda (tests/cli/t0530-device.sh)
build/emu/cmd/%.o: cmd/%.c $(CONFIG_DEP)
	@mkdir -p $(@D)
	@echo "  CC      $< (emulated CUDA)"
	$(Q)$(CC) $(EMU_CFLAGS) -MMD -MP -c $< -o $@

build/emu/bin/%: build/emu/cmd/%.o build/emu/cmd/cli.o build/emu/cmd/run.o $(EMU_LIBA)
	@mkdir -p $(@D)
	@echo "  LINK    $@"
	$(Q)$(CXX) -pthread $(SANITIZE_FLAGS) $(SANITIZE_LDFLAGS) $(LDFLAGS) -o $@ $< build/emu/cmd/cli.o \
	    build/emu/cmd/run.o $(EMU_LIBA) $(DEPS_LIBS) -lpthread -lm

build/emu/tests/kernels/test_%: build/emu/tests/kernels/test_%.o $(EMU_LIBA)
	@echo "  LINK    $@"
	$(Q)$(CXX) -pthread $(SANITIZE_FLAGS) $(SANITIZE_LDFLAGS) $(LDFLAGS) -o $@ $< $(EMU_LIBA) $(DEPS_LIBS) -lpthread -lm

# The whole suite: unit tests, kernel tests (skip without a GPU), CLI tests.
check: tests
	$(Q)sh tests/run.sh

# Everything CI runs: the suite under the sanitizers (check-sanitize, below),
# then the suite here and every fuzz target for FUZZ_TIME seconds (skipped
# without clang and libFuzzer unless FUZZ_REQUIRE=1); the last line counts
# the latter.
check-all: tests fuzz-build
	$(Q)$(MAKE) --no-print-directory check-sanitize
	$(Q)FUZZ_TIME=$(FUZZ_TIME) FUZZ_JOBS=$(FUZZ_JOBS) FUZZ_REQUIRE=$(FUZZ_REQUIRE) sh tests/run.sh unit kernels cli fuzz

# The whole suite again, built with ./configure --sanitize (ASan, LSan,
# UBSan), without touching this tree's build: build/, bin/ and the library
# are fixed paths, so the sanitized build gets its own copy of the sources
# in build/sanitize/ (refreshed each time; timestamps kept, so only what
# changed is rebuilt).  Fixtures, spec and tokenizer cache stay this tree's.
# Logs: build/sanitize/tests/out/.
SAN_DIR = build/sanitize
SAN_SRC = $(wildcard Makefile configure INSTALL README.md .ci cmd completions kernels lib man tests)
check-sanitize:
	$(Q)rm -rf $(addprefix $(SAN_DIR)/,$(SAN_SRC)) && mkdir -p $(SAN_DIR)
	$(Q)find $(SAN_SRC) \( -path tests/out -o -name '*.[oad]' \) -prune -o -type f -print | \
		tar -cf - -T - | tar -xpf - -C $(SAN_DIR)
	$(Q)cd $(SAN_DIR) && ./configure --sanitize CC='$(CC)'
	$(Q)$(MAKE) -C $(SAN_DIR) tests
	$(Q)cd $(SAN_DIR) && DSV4_FIXTURES="$${DSV4_FIXTURES:-$(CURDIR)/../shared/fixtures}" \
		DSV4_SPEC="$${DSV4_SPEC:-$(CURDIR)/../shared/spec}" \
		DSV4_TOK_CACHE="$${DSV4_TOK_CACHE:-$(CURDIR)/.cache/tok}" sh tests/run.sh

check-gpu: tests
	$(Q)DSV4_REQUIRE_GPU=1 sh tests/run.sh kernels

demo: all
	$(Q)sh tests/tools/demo.sh

bench: tests
	$(Q)for b in $(BENCHES); do $$b || exit 1; done
	$(Q)sh tests/bench/bench_tok.sh

completions: $(PROGS)
	$(Q)sh completions/gen.sh

install: all
	mkdir -p $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man7
	mkdir -p $(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(ZSHCOMPDIR)
	for p in $(PROGS); do install -m 755 $$p $(DESTDIR)$(BINDIR)/; done
	for m in man/*.1; do install -m 644 $$m $(DESTDIR)$(MANDIR)/man1/; done
	for m in man/*.5; do install -m 644 $$m $(DESTDIR)$(MANDIR)/man5/; done
	for m in man/*.7; do [ -f $$m ] && install -m 644 $$m $(DESTDIR)$(MANDIR)/man7/ || true; done
	install -m 644 completions/dsv4.bash $(DESTDIR)$(BASHCOMPDIR)/dsv4
	for p in $(PROGS); do ln -sf dsv4 $(DESTDIR)$(BASHCOMPDIR)/$$(basename $$p); done
	install -m 644 completions/_dsv4 $(DESTDIR)$(ZSHCOMPDIR)/_dsv4

uninstall:
	for p in $(PROGS); do rm -f $(DESTDIR)$(BINDIR)/$$(basename $$p) $(DESTDIR)$(BASHCOMPDIR)/$$(basename $$p); done
	for m in man/*.1; do rm -f $(DESTDIR)$(MANDIR)/man1/$$(basename $$m); done
	for m in man/*.5; do rm -f $(DESTDIR)$(MANDIR)/man5/$$(basename $$m); done
	for m in man/*.7; do rm -f $(DESTDIR)$(MANDIR)/man7/$$(basename $$m); done
	rm -f $(DESTDIR)$(BASHCOMPDIR)/dsv4 $(DESTDIR)$(ZSHCOMPDIR)/_dsv4

# ---- fuzzing (tests/fuzz/README.md) ----
# libFuzzer targets, built with clang into build/fuzz/ from their own
# sanitized copy of the lib objects (build/fuzz/obj/), so the normal build is
# untouched.  Without a clang that has libFuzzer, fuzz and fuzz-build say so
# and exit 0; FUZZ_REQUIRE=1 makes that an error (for CI).
FUZZ_CC     ?= clang
FUZZ_TIME   ?= 60
FUZZ_JOBS   ?= 2
FUZZ_CFLAGS ?= -O1 -g -fno-omit-frame-pointer
FUZZ_SAN    = -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_ALL_CFLAGS = -std=c11 -D_GNU_SOURCE -pthread $(WARN) $(FUZZ_CFLAGS) $(FUZZ_SAN) $(DEPS_CFLAGS) \
                  -DDSV4_HAVE_CUDA=0 -Ilib -Wno-string-concatenation
FUZZ_SRC    = $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BINS   = $(FUZZ_SRC:tests/fuzz/%.c=build/fuzz/%)
FUZZ_LIBOBJ = $(LIB_SRC:%.c=build/fuzz/obj/%.o)
FUZZ_LIBA   = build/fuzz/libdsv4-fuzz.a

.PHONY: fuzz fuzz-build fuzz-bins
build/fuzz/obj/%.o: %.c $(CONFIG_DEP)
	@mkdir -p $(@D)
	@echo "  FUZZCC  $<"
	$(Q)$(FUZZ_CC) $(FUZZ_ALL_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@

$(FUZZ_LIBA): $(FUZZ_LIBOBJ)
	@echo "  AR      $@"
	$(Q)rm -f $@ && ar rcs $@ $(FUZZ_LIBOBJ)

build/fuzz/fuzz_%: build/fuzz/obj/tests/fuzz/fuzz_%.o $(FUZZ_LIBA)
	@echo "  LINK    $@"
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_SAN) -fsanitize=fuzzer -pthread $(LDFLAGS) -o $@ $< $(FUZZ_LIBA) \
	    $(DEPS_LIBS) -lpthread -lm

# The seed generator is an ordinary program of the normal build.
build/fuzz/mkseeds: build/tests/fuzz/mkseeds.o $(LIBA)
	@mkdir -p $(@D)
	@echo "  LINK    $@"
	$(Q)$(LINK) $(LINKFLAGS) -o $@ $< $(LIBA) $(LIBS)

fuzz-bins: all $(FUZZ_BINS) build/fuzz/mkseeds

fuzz-build:
	$(Q)if FUZZ_REQUIRE=$(FUZZ_REQUIRE) sh tests/fuzz/probe.sh "$(FUZZ_CC)"; then \
	    $(MAKE) --no-print-directory fuzz-bins; else st=$$?; [ $$st = 77 ] || exit $$st; fi

fuzz:
	$(Q)if FUZZ_REQUIRE=$(FUZZ_REQUIRE) sh tests/fuzz/probe.sh "$(FUZZ_CC)"; then \
	    $(MAKE) --no-print-directory fuzz-bins && sh tests/fuzz/seeds.sh && \
	    sh tests/fuzz/run.sh -t $(FUZZ_TIME) -j $(FUZZ_JOBS); else st=$$?; [ $$st = 77 ] || exit $$st; fi

clean:
	rm -rf build bin $(LIBA) tests/out

# (not those of the sanitized copy, whose paths would read as this tree's)
-include $(shell find build -path $(SAN_DIR) -prune -o -name '*.d' -print 2>/dev/null)
.SECONDARY:
