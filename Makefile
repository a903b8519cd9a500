# Weft: one flat Makefile (see ../shared/STYLE.md, "Build and tests").
#
#   make            build ./weft
#   make run        install what is missing, build, start PostgreSQL and Weft
#   make test       install what is missing, build, run every suite
#   make asan       the same suites against an AddressSanitizer build
#   make fuzz       run the fuzz harnesses for longer (FUZZ_SECONDS each)
#   make bench-NAME run bench/NAME (not part of make test)

BUILD ?= build
CC ?= cc
CFLAGS ?= -O2 -g
PKGS := libevent libevent_pthreads jansson libxxhash libpq libcrypto zlib libcurl
WARN := -Wall -Wextra -Wstrict-prototypes -Wmissing-prototypes -Wformat=2 -Wvla
ifdef CI
WARN += -Werror
endif
ifdef WERROR
WARN += -Werror
endif

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lhttp_parser -lpthread -lm

# The release build uses jemalloc; sanitizer builds keep the system allocator.
ifeq ($(SANITIZE),)
ALLOC_LIBS := $(shell pkg-config --libs jemalloc 2>/dev/null)
else
CFLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=$(SANITIZE)
LDFLAGS += -fsanitize=$(SANITIZE)
endif

ALL_CFLAGS := -std=gnu11 -I. -MMD -MP $(WARN) $(PKG_CFLAGS) $(CFLAGS)

MODULES := lib privacy store ingest identity engine profiles audiences export api cmd
SRCS := $(foreach m,$(MODULES),$(wildcard $(m)/*.c))
MIGRATIONS := $(sort $(wildcard store/migrations/*.sql))
OBJS := $(SRCS:%.c=$(BUILD)/%.o) $(BUILD)/gen/migrations.o
LIBWEFT := $(BUILD)/libweft.a

UNIT_SRCS := $(wildcard tests/unit/*_test.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)

.PHONY: all run test asan fuzz unit clean bootstrap
# Keep objects make would treat as intermediate (test and fuzz objects).
.SECONDARY:
all: weft

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD)/gen/migrations.c: $(MIGRATIONS) scripts/embed-migrations
	@mkdir -p $(dir $@)
	scripts/embed-migrations $@ $(MIGRATIONS)

$(BUILD)/gen/migrations.o: $(BUILD)/gen/migrations.c
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(LIBWEFT): $(OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/weft: $(BUILD)/weft.o $(LIBWEFT)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) $(ALLOC_LIBS)

weft: $(BUILD)/weft
	cp $< $@.tmp && chmod 755 $@.tmp && mv -f $@.tmp $@

$(BUILD)/tests/%_test: $(BUILD)/tests/unit/%_test.o $(LIBWEFT)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) $(shell pkg-config --libs cmocka)

unit: $(UNIT_BINS)

bootstrap:
	@scripts/bootstrap

run: bootstrap weft
	@scripts/run

test: bootstrap
	@$(MAKE) --no-print-directory weft unit fuzz-replay
	@scripts/test-all $(BUILD)

asan: bootstrap
	@$(MAKE) --no-print-directory BUILD=build/asan SANITIZE=address,undefined \
		build/asan/weft unit fuzz-replay
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		WEFT_BIN=build/asan/weft scripts/test-all build/asan

clean:
	rm -rf build weft

# ---- fuzz (tests/fuzz): fuzz-replay for make test, fuzz for long runs ----
# Every tests/fuzz/fuzz_NAME.c is a libFuzzer harness (tests/fuzz/fuzz.h).
# fuzz-replay links each, with this build's compiler and flags, to
# tests/fuzz/replay.c as $(BUILD)/fuzz/replay/NAME, which replays the corpus
# tests/fuzz/corpus/NAME (scripts/test-all runs every program there).
# `make fuzz` builds Weft and the harnesses again with clang, libFuzzer,
# ASan and UBSan in build/libfuzzer (system allocator), then
# tests/fuzz/fuzz-run fuzzes each for FUZZ_SECONDS and merges what it found
# into its corpus, minimised; `make fuzz-merge` only minimises. Pick
# harnesses with FUZZ_NAMES, e.g. make fuzz FUZZ_NAMES=http FUZZ_SECONDS=600;
# FUZZ_FLAGS adds libFuzzer flags, e.g. "-fork=2 -ignore_crashes=1".
FUZZ_ALL := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_NAMES ?= $(FUZZ_ALL)
FUZZ_SECONDS ?= 60
FUZZ_BUILD := build/libfuzzer
FUZZ_REPLAYS := $(FUZZ_ALL:%=$(BUILD)/fuzz/replay/%)
FUZZ_REPLAY_OBJS := $(FUZZ_ALL:%=$(BUILD)/tests/fuzz/replay_%.o)
FUZZ_BINS := $(FUZZ_ALL:%=$(BUILD)/fuzz/%)
FUZZ_TO_LIBFUZZER := $(MAKE) --no-print-directory BUILD=$(FUZZ_BUILD) CC=clang \
	SANITIZE=fuzzer-no-link,address,undefined

.PHONY: fuzz-replay fuzz-build fuzz-merge
fuzz-replay: $(FUZZ_REPLAYS)

$(FUZZ_REPLAY_OBJS): $(BUILD)/tests/fuzz/replay_%.o: tests/fuzz/replay.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -DFUZZ_NAME='"$*"' -c -o $@ $<

$(FUZZ_REPLAYS): $(BUILD)/fuzz/replay/%: $(BUILD)/tests/fuzz/fuzz_%.o \
		$(BUILD)/tests/fuzz/replay_%.o $(LIBWEFT)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

# The libFuzzer binaries; only meaningful in the clang build fuzz makes.
fuzz-build: $(FUZZ_BINS)

$(FUZZ_BINS): $(BUILD)/fuzz/%: $(BUILD)/tests/fuzz/fuzz_%.o $(LIBWEFT)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -fsanitize=fuzzer -o $@ $^ $(PKG_LIBS)

fuzz: bootstrap
	@$(FUZZ_TO_LIBFUZZER) fuzz-build
	@FUZZ_FLAGS='$(FUZZ_FLAGS)' tests/fuzz/fuzz-run $(FUZZ_BUILD)/fuzz $(FUZZ_SECONDS) \
		$(FUZZ_NAMES)

fuzz-merge:
	@$(FUZZ_TO_LIBFUZZER) fuzz-build
	@tests/fuzz/fuzz-run --merge $(FUZZ_BUILD)/fuzz $(FUZZ_NAMES)

# ---- benchmarks (bench/): make bench-NAME ----
# bench-ingest: Weft's durable events/s against PostgreSQL's COPY ceiling,
# measured in the same run (docs/benchmarks.md). bench-identity: the
# identity graph's events/s, memory and rebuild time on 10M synthetic
# events, and its speedup over connected components in SQL in the same
# PostgreSQL. bench-lookup: traits lookups by user_id and email over 1M
# profiles against the same server's trivial-route ceiling, apply lag under
# bench-ingest's load, memory per profile. bench/ingest, bench/identity and
# bench/lookup build what they need through bench-programs.
# bench-audiences: with 1M profiles and 20 audiences of mixed kinds, the
# ingest benchmark's events/s with the audiences live against without, the
# full recompute time against reading the same log, and export rows/s
# against writing the same bytes to the same disk (bench/audiences).
BENCH_BINS := $(BUILD)/bench/loadgen $(BUILD)/bench/copy_ceiling \
	$(BUILD)/bench/identity_bench $(BUILD)/bench/identity_mem \
	$(BUILD)/bench/lookupgen $(BUILD)/bench/audgen
BENCH_IDENTITY_OBJS := $(BUILD)/bench/idgen.o $(BUILD)/bench/uf.o $(BUILD)/bench/span.o

$(BUILD)/bench/loadgen: $(BUILD)/bench/loadgen.o $(BUILD)/bench/gen.o
	$(CC) $(LDFLAGS) -o $@ $^

$(BUILD)/bench/lookupgen: $(BUILD)/bench/lookupgen.o $(BUILD)/bench/gen.o
	$(CC) $(LDFLAGS) -o $@ $^ $(shell pkg-config --libs libcrypto)

$(BUILD)/bench/audgen: $(BUILD)/bench/audgen.o $(BUILD)/bench/gen.o
	$(CC) $(LDFLAGS) -o $@ $^ -lpthread

$(BUILD)/bench/copy_ceiling: $(BUILD)/bench/copy_ceiling.o $(BUILD)/bench/gen.o $(LIBWEFT)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) $(ALLOC_LIBS)

$(BUILD)/bench/identity_bench: $(BUILD)/bench/identity_bench.o $(BENCH_IDENTITY_OBJS) $(LIBWEFT)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) $(ALLOC_LIBS)

$(BUILD)/bench/identity_mem: $(BUILD)/bench/identity_mem.o $(BENCH_IDENTITY_OBJS) $(LIBWEFT)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) $(ALLOC_LIBS)

.PHONY: bench-programs bench-ingest bench-identity bench-lookup bench-audiences
bench-programs: $(BENCH_BINS)

bench-ingest:
	@BUILD=$(BUILD) bench/ingest

bench-identity:
	@BUILD=$(BUILD) bench/identity

bench-lookup:
	@BUILD=$(BUILD) bench/lookup

bench-audiences:
	@BUILD=$(BUILD) bench/audiences


-include $(wildcard $(BUILD)/*.d $(BUILD)/*/*.d $(BUILD)/*/*/*.d)
