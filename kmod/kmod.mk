# smplaser.ko: built by "make kmod" (Kbuild in this folder).  Here: the
# style and static-check suite, and the small C programs the VM guest tests
# (tests/vm/guest/2*-kmod*.sh) use; tests/vm/run copies build/tests/vm/*
# into the guest.
CHECK_SUITES += tests/kmod/style-check

KMOD_CLIENT := $(B)/tests/vm/kmod-client
KMOD_FUZZ := $(B)/tests/vm/kmod-fuzz
PROGRAMS += $(KMOD_CLIENT) $(KMOD_FUZZ)
VM_BINS += $(KMOD_CLIENT) $(KMOD_FUZZ)

# Static: under TCG a dynamic link costs the guest about 0.4 s per start.
KMOD_STATIC := $(if $(filter 1,$(SANITIZE)),,-static)

$(KMOD_CLIENT): $(B)/tests/vm/kmod-client.o $(COMMON_LIB)
	$(CC) $(LDFLAGS) $(KMOD_STATIC) -o $@ $^ $(COMMON_LDLIBS)

$(KMOD_FUZZ): $(B)/tests/vm/kmod-fuzz.o
	$(CC) $(LDFLAGS) $(KMOD_STATIC) -o $@ $^
