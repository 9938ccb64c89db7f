# smplaser.ko: built by "make kmod" (Kbuild in this folder).  Here: the
# style and static-check suite, and the small C programs the VM guest tests
# (tests/vm/guest/2*-kmod*.sh) use; tests/vm/run copies build/tests/vm/*
# into the guest.
CHECK_SUITES += tests/kmod/style-check

KMOD_CLIENT := $(B)/tests/vm/kmod-client
KMOD_FUZZ := $(B)/tests/vm/kmod-fuzz
KMOD_RACE := $(B)/tests/vm/kmod-race
PROGRAMS += $(KMOD_CLIENT) $(KMOD_FUZZ) $(KMOD_RACE)
VM_BINS += $(KMOD_CLIENT) $(KMOD_FUZZ) $(KMOD_RACE)

# Static: under TCG a dynamic link costs the guest about 0.4 s per start.
KMOD_STATIC := $(if $(filter 1,$(SANITIZE)),,-static)

$(KMOD_CLIENT): $(B)/tests/vm/kmod-client.o $(COMMON_LIB)
	$(CC) $(LDFLAGS) $(KMOD_STATIC) -o $@ $^ $(COMMON_LDLIBS)

$(KMOD_FUZZ): $(B)/tests/vm/kmod-fuzz.o
	$(CC) $(LDFLAGS) $(KMOD_STATIC) -o $@ $^

# Threads and timing against /dev/smplaser0 (tests/vm/guest/28-kmod-races.sh).
$(KMOD_RACE): $(B)/tests/vm/kmod-race.o
	$(CC) $(LDFLAGS) $(KMOD_STATIC) -o $@ $^ -pthread

# The module's frame checks and event queue, built in userspace over a small
# shim of the kernel API and unit-tested with cmocka.
KMOD_CORE_TEST := $(B)/tests/kmod/test_kmod_core
KMOD_CORE_OBJS := $(B)/kmod/frame.o $(B)/kmod/events.o
KMOD_SHIM := -include tests/kmod/shim/kshim.h -Itests/kmod/shim
UNIT_TESTS += $(KMOD_CORE_TEST)

$(KMOD_CORE_OBJS) $(B)/tests/kmod/test_kmod_core.o: CPPFLAGS += $(KMOD_SHIM)

$(KMOD_CORE_TEST): $(B)/tests/kmod/test_kmod_core.o $(KMOD_CORE_OBJS) $(COMMON_LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(COMMON_LDLIBS) $(call pkglibs,cmocka zlib)
