# tests/vm: the QEMU (TCG) rig that boots Debian's kernel with dummy_hcd and
# runs the FunctionFS gadget and tests/vm/guest/*.sh inside (tests/vm/README.md).

VM_SMOKE := $(B)/tests/vm/usb-smoke
PROGRAMS += $(VM_SMOKE)
CHECK_SUITES += tests/vm/run

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

.PHONY: vm-bins vm-check
vm-bins: $(VM_BINS)
vm-check: vm-bins
	@tests/run-suites $(TEST_LOGS) tests/vm/run
