# smplaserd's real-unit backends and their discovery (daemon/discovery.h):
#   kmod     /dev/smplaserN through smplaser.ko (daemon/backend-kmod.c)
#   libusb   the unit's vendor interface through usbfs (daemon/backend-libusb.c)
#   discovery  libudev monitor + enumeration, hotplug (daemon/discovery.c)
# smplaserd links $(BACKENDS_OBJS) and $(BACKENDS_LIBS) (daemon/smplaserd.mk).

BACKENDS_SRCS := daemon/backend-kmod.c daemon/backend-libusb.c daemon/discovery.c
BACKENDS_OBJS := $(patsubst %.c,$(B)/%.o,$(BACKENDS_SRCS))
BACKENDS_LIBS = $(call pkglibs,libudev libusb-1.0 libsystemd)

UNIT_TESTS += $(B)/tests/unit/test_discovery

$(B)/tests/unit/test_discovery: $(B)/tests/unit/test_discovery.o $(BACKENDS_OBJS) \
		$(B)/daemon/log.o $(B)/daemon/text.o $(B)/daemon/backend.o $(B)/daemon/worker.o \
		$(COMMON_LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(BACKENDS_LIBS) $(call pkglibs,cmocka) $(COMMON_LDLIBS)

# discovery against a fake sysfs and fake uevents (umockdev; it re-executes
# itself under libumockdev-preload.so.0).
UNIT_TESTS += $(B)/tests/unit/test_discovery_udev

$(B)/tests/unit/test_discovery_udev.o: override CFLAGS += $(shell pkg-config --cflags umockdev-1.0)

$(B)/tests/unit/test_discovery_udev: $(B)/tests/unit/test_discovery_udev.o $(BACKENDS_OBJS) \
		$(B)/daemon/log.o $(B)/daemon/text.o $(B)/daemon/backend.o $(B)/daemon/worker.o \
		$(COMMON_LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(BACKENDS_LIBS) $(call pkglibs,cmocka umockdev-1.0) $(COMMON_LDLIBS)
