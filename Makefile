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
PKGS := libevent libevent_pthreads jansson libxxhash libpq libcrypto zlib
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

MODULES := lib privacy store ingest identity profiles audiences api cmd
SRCS := $(foreach m,$(MODULES),$(wildcard $(m)/*.c))
MIGRATIONS := $(sort $(wildcard store/migrations/*.sql))
OBJS := $(SRCS:%.c=$(BUILD)/%.o) $(BUILD)/gen/migrations.o
LIBWEFT := $(BUILD)/libweft.a

UNIT_SRCS := $(wildcard tests/unit/*_test.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)

.PHONY: all run test asan fuzz unit clean bootstrap
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
	cp $< $@

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
		build/asan/weft unit
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		WEFT_BIN=build/asan/weft scripts/test-all build/asan

clean:
	rm -rf build weft

-include $(wildcard $(BUILD)/*.d $(BUILD)/*/*.d $(BUILD)/*/*/*.d)
