# tests/vm: the QEMU (TCG) rig that boots Debian's kernel with dummy_hcd and
# runs the FunctionFS gadget and tests/vm/guest/*.sh inside (tests/vm/README.md).

VM_SMOKE := $(B)/tests/vm/usb-smoke
PROGRAMS += $(VM_SMOKE)
# Debian's 6.1, 6.12 and 6.12-rt, side by side with the debug kernel (built
# once, cached in /var/cache/smplaser); then the daemon's scripts alone:
# tests/vm/run-all.
CHECK_SUITES += tests/vm/run-all

# Binaries tests/vm/run needs in the guest ("make vm-bins" builds them; other
# fragments may append to VM_BINS).  Every executable at the top of build/
# goes into the guest too.
VM_BINS += $(VM_SMOKE)

# libusb linked in statically unless sanitizing: under TCG the dynamic
# loader costs ~150 ms per start, and the guest tests start usb-smoke often.
# (libudev has no static library in Debian: it stays dynamic.)
ifeq ($(SANITIZE),1)
VM_SMOKE_LIBUSB := $(call pkglibs,libusb-1.0)
else
VM_SMOKE_LIBUSB := -Wl,-Bstatic -lusb-1.0 -Wl,-Bdynamic -ludev -pthread
endif

$(VM_SMOKE): $(B)/tests/vm/usb-smoke.o $(COMMON_LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(VM_SMOKE_LIBUSB) $(COMMON_LDLIBS)

# The firmware model behind raw-gadget, with hostile descriptors (the debug
# kernel's hostile-device tests, tests/vm/guest/5*-raw-*.sh).  It shares the
# gadget's control commands (sim/gadget-ctl.c).  Static: see above.
RAW_GADGET := $(B)/tests/vm/smplaser-rawgadget
PROGRAMS += $(RAW_GADGET)
VM_BINS += $(RAW_GADGET)
RAW_GADGET_STATIC := $(if $(filter 1,$(SANITIZE)),,-static)

$(RAW_GADGET): $(B)/tests/vm/raw-gadget.o $(B)/sim/gadget-ctl.o $(MODEL_LIB) $(COMMON_LIB)
	$(CC) $(LDFLAGS) $(RAW_GADGET_STATIC) -o $@ $^ $(COMMON_LDLIBS) -pthread

.PHONY: vm-bins vm-check debug-kernel
vm-bins: $(VM_BINS)
vm-check: vm-bins
	@tests/run-suites $(TEST_LOGS) tests/vm/run-all
debug-kernel:
	@tests/vm/kernel/build-debug
