# smplaser: top-level Makefile.
#
#   make deps     install every build and test dependency (apt-get, idempotent)
#   make          build all userspace into build/
#   make kmod     build smplaser.ko against Debian's linux-headers (KDIR=...)
#   make demo     a narrated treatment on a simulated unit
#   make check    every test suite; ends with "N passed, N failed".  The unit
#                 tests, and the daemon in the integration suites, run with
#                 ASan+UBSan (the harness takes build/san/smplaserd when newer)
#   make bench    the benchmarks
#   make SANITIZE=1 ...   the same with ASan+UBSan (into build/san)
#
# Each folder adds its programs, tests and suites in its own *.mk fragment.

.DEFAULT_GOAL := all
SHELL := /bin/sh

SANITIZE ?= 0
ifeq ($(SANITIZE),1)
B := build/san
SAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
else
B := build
SAN_FLAGS :=
endif

# Libraries every userspace piece may use, found with pkg-config.
PKGS := libsystemd libudev libusb-1.0 sqlite3 libgcrypt inih cmocka zlib json-c libpq cairo fontconfig
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)

CC ?= cc
CFLAGS ?= -O2 -g
override CFLAGS += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror \
	-Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wvla \
	-Iinclude -Icommon -Isim -Idaemon $(PKG_CFLAGS) $(SAN_FLAGS) -MMD -MP
override LDFLAGS += $(SAN_FLAGS)

pkglibs = $(shell pkg-config --libs $(1))

# Filled in by the build.mk files:
PROGRAMS :=		# userspace programs built by "make"
UNIT_TESTS :=		# cmocka binaries, run by "make check" under ASan+UBSan
CHECK_SUITES :=		# other suites (scripts) run by "make check", in order
# make check runs CHECK_JOBS suites at a time (tests/run-suites), the longest
# first; then, one by one with nothing beside them, the QEMU guests and the
# suites that time the daemon (CHECK_SUITES_ALONE).  The full-boot test's host
# side (tests/system/prepare) runs beside the others; tests/system/run only
# boots what it made (SYSTEM_PREPARED=1).
CHECK_JOBS ?= 3
CHECK_SUITES_FIRST := tests/pg/test_pg.py tests/system/prepare tests/attack/run-attack-check \
	tests/integration/test_daemon.py tests/integration/test_attacks.py \
	tests/soak/run-soak-check
CHECK_SUITES_ALONE := tests/integration/test_stall.py tests/valgrind/run \
	tests/system/run tests/vm/run-all
BENCHES :=		# benchmark programs run by "make bench"
CLEAN_FILES :=

# Static libraries shared between folders.  Named here, before any fragment,
# because a rule's prerequisites are expanded when make reads it: a fragment
# must be able to use them whatever the order the fragments are read in.
# common/common.mk the protocol codec; sim/model.mk the firmware model;
# daemon/core.mk the safety core, rules and config; daemon/store.mk the records.
COMMON_LIB := $(B)/libsmplcommon.a
MODEL_LIB := $(B)/libsmplmodel.a
CORE_LIB := $(B)/libsmplcore.a
STORE_LIB := $(B)/libsmplstore.a

# Each folder's fragments: common/*.mk sim/*.mk daemon/*.mk tests/vm/*.mk ...
include $(sort $(wildcard common/*.mk sim/*.mk kmod/*.mk daemon/*.mk ctl/*.mk \
	udev/*.mk data/*.mk tests/*/*.mk))

$(B)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

# Dependency files live next to the objects, under the source folders' names
# (not elsewhere in $(B): other tools keep whole trees there).
-include $(shell find $(addprefix $(B)/,common sim kmod daemon ctl udev data tests) \
	-name '*.d' -type f 2>/dev/null)

.PHONY: all deps check-pkgs unit-tests kmod check bench demo clean
all: check-pkgs $(PROGRAMS)
unit-tests: check-pkgs $(UNIT_TESTS)

check-pkgs:
	@pkg-config --exists $(PKGS) || { \
		echo "missing build dependencies: run 'make deps'" >&2; exit 1; }

deps:
	@scripts/deps.sh

# --- kernel module ---------------------------------------------------------
KERNEL_ABI = $(shell scripts/kernel-abi.sh)
KDIR ?= /usr/src/linux-headers-$(KERNEL_ABI)-amd64
kmod:
	$(MAKE) -C $(KDIR) M=$(CURDIR) W=1 modules

# --- tests -----------------------------------------------------------------
TEST_LOGS := build/test-logs
check: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory SANITIZE=1 all unit-tests
	@SYSTEM_PREPARED=1 tests/run-suites -j $(CHECK_JOBS) $(TEST_LOGS) \
		$(filter $(CHECK_SUITES_FIRST),$(CHECK_SUITES)) \
		$(patsubst $(B)/%,build/san/%,$(UNIT_TESTS)) \
		$(filter-out $(CHECK_SUITES_FIRST) $(CHECK_SUITES_ALONE),$(CHECK_SUITES)) \
		--alone $(filter $(CHECK_SUITES_ALONE),$(CHECK_SUITES))

bench: all $(BENCHES)
	@for b in $(BENCHES); do $$b || exit 1; done

clean:
	rm -rf build $(CLEAN_FILES)
	-$(MAKE) -C $(KDIR) M=$(CURDIR) clean >/dev/null 2>&1
