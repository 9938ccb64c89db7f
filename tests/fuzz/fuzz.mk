# libFuzzer harnesses (clang -fsanitize=fuzzer,address,undefined) into
# build/fuzz/, whatever SANITIZE says.  Sources are compiled by clang
# directly (not through the gcc pattern rule).
#
#   make fuzz [FUZZ_SECONDS=60]   fuzz each harness for FUZZ_SECONDS
#   make check                    replays the seed corpora and fuzzes each
#                                 harness briefly (tests/fuzz/run-fuzz-suite)
#
# Seeds: tests/fuzz/corpus/<harness>/.  New inputs found by "make fuzz" go
# to build/fuzz/corpus/<harness>/ (copy the useful ones into the seeds);
# crashes to build/fuzz/artifacts/.

FUZZ_CC ?= clang
FUZZ_DIR := build/fuzz
FUZZ_SECONDS ?= 60
FUZZ_FLAGS := -g -O1 -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Werror \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	-fno-omit-frame-pointer -Iinclude -Icommon -Isim -Idaemon
FUZZ_HARNESSES := fuzz_codec fuzz_config fuzz_dbus_args fuzz_store_open \
	fuzz_dbus_dispatch
FUZZ_BINS := $(addprefix $(FUZZ_DIR)/,$(FUZZ_HARNESSES))

FUZZ_CORE_SRCS := $(CORE_SRCS) common/codec.c

$(FUZZ_DIR)/fuzz_codec: tests/fuzz/fuzz_codec.c common/codec.c common/codec.h \
		include/smplaser/proto.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ tests/fuzz/fuzz_codec.c common/codec.c \
		$(call pkglibs,zlib) -lm

$(FUZZ_DIR)/fuzz_config: tests/fuzz/fuzz_config.c $(FUZZ_CORE_SRCS) \
		$(wildcard daemon/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) $(shell pkg-config --cflags inih) -o $@ \
		tests/fuzz/fuzz_config.c $(FUZZ_CORE_SRCS) $(call pkglibs,inih zlib) -lm

$(FUZZ_DIR)/fuzz_dbus_args: tests/fuzz/fuzz_dbus_args.c tests/fuzz/fuzz-input.h $(FUZZ_CORE_SRCS) \
		$(wildcard daemon/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) $(shell pkg-config --cflags inih) -o $@ \
		tests/fuzz/fuzz_dbus_args.c $(FUZZ_CORE_SRCS) $(call pkglibs,inih zlib) -lm

$(FUZZ_DIR)/fuzz_store_open: tests/fuzz/fuzz_store_open.c $(STORE_SRCS) daemon/store.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) $(shell pkg-config --cflags sqlite3) -o $@ \
		tests/fuzz/fuzz_store_open.c $(STORE_SRCS) $(call pkglibs,sqlite3 libgcrypt)

# The whole daemon but main.c (the harness builds the daemon as main() does,
# on a socketpair), the sim backend and the firmware model.
FUZZ_DAEMON_SRCS := $(SMPLASERD_LIB_SRCS) $(STORE_SRCS) sim/model.c \
	$(FUZZ_CORE_SRCS)

$(FUZZ_DIR)/fuzz_dbus_dispatch: tests/fuzz/fuzz_dbus_dispatch.c tests/fuzz/fuzz-input.h $(FUZZ_DAEMON_SRCS) \
		$(wildcard daemon/*.h) sim/model.h include/smplaser/proto.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) $(shell pkg-config --cflags inih sqlite3 libsystemd json-c libpq) -o $@ \
		tests/fuzz/fuzz_dbus_dispatch.c $(FUZZ_DAEMON_SRCS) \
		$(call pkglibs,libsystemd sqlite3 libgcrypt inih zlib json-c libpq) -lm

.PHONY: fuzz fuzz-build
fuzz-build: $(FUZZ_BINS)

fuzz: fuzz-build
	@FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_MODE=fuzz tests/fuzz/run-fuzz-suite

# "make check" builds the harnesses with the sanitized unit tests and runs
# the suite: replay of every seed, then FUZZ_CHECK_SECONDS (8) of fuzzing each.
unit-tests: fuzz-build
CHECK_SUITES += tests/fuzz/run-fuzz-suite
