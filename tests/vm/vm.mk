# tests/vm: the QEMU (TCG) rig that boots Debian's kernel with dummy_hcd and
# runs the FunctionFS gadget and tests/vm/guest/*.sh inside (tests/vm/README.md).

VM_SMOKE := $(B)/tests/vm/usb-smoke
PROGRAMS += $(VM_SMOKE)
CHECK_SUITES += tests/vm/run

# Binaries tests/vm/run needs in the guest ("make vm-bins" builds them; other
# fragments may append to VM_BINS).  Every executable at the top of build/
# goes into the guest too.
VM_BINS += $(VM_SMOKE)

$(VM_SMOKE): $(B)/tests/vm/usb-smoke.o $(COMMON_LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(COMMON_LDLIBS) $(call pkglibs,libusb-1.0)

.PHONY: vm-bins vm-check
vm-bins: $(VM_BINS)
vm-check: vm-bins
	@tests/run-suites $(TEST_LOGS) tests/vm/run
