/* SPDX-License-Identifier: MIT */
/*
 * daemon/discovery.c against a fake sysfs and fake uevents (umockdev): what
 * enumeration finds at start, and what hotplug (add, bind, unbind, remove)
 * makes of a unit.  The backends discovery creates are checked by name and
 * never opened.
 *
 * umockdev works by LD_PRELOAD: the test re-executes itself under
 * libumockdev-preload.so.0 when it is not there yet (with ASan told not to
 * insist on coming first).
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <umockdev.h>

#include "discovery.h"

#define USB_PATH	"/sys/devices/pci0000:00/0000:00:14.0/usb1/1-1"
#define INTF_PATH	USB_PATH "/1-1:1.0"
#define NODE_PATH	INTF_PATH "/smplaser/smplaser0"

struct seen {
	int adds, removes;
	int refuse;			/* the next adds the "daemon" cannot adopt */
	char last_backend[16];
	char last_key[256];
	int handle_seq;
};

static void *on_add(void *userdata, const char *key, struct smpl_backend *b)
{
	struct seen *s = userdata;

	s->adds++;
	snprintf(s->last_backend, sizeof(s->last_backend), "%s", smpl_backend_name(b));
	snprintf(s->last_key, sizeof(s->last_key), "%s", key);
	smpl_backend_free(b);		/* the daemon would open it; we only look */
	if (s->refuse > 0) {
		s->refuse--;
		return NULL;
	}
	return (void *)(intptr_t)++s->handle_seq;
}

static void on_remove(void *userdata, void *handle)
{
	struct seen *s = userdata;

	assert_true((intptr_t)handle > 0);
	s->removes++;
}

static const struct smpl_discovery_callbacks callbacks = {
	.add = on_add,
	.remove = on_remove,
};

struct fixture {
	UMockdevTestbed *tb;
	sd_event *event;
	struct seen seen;
	struct smpl_discovery *disc;
	struct smpl_discovery_config cfg;
};

static void add_usb_device(UMockdevTestbed *tb, const char *vid)
{
	assert_true(umockdev_testbed_add_from_string(tb,
		"P: /devices/pci0000:00/0000:00:14.0/usb1/1-1\n"
		"N: bus/usb/001/002\n"
		"E: SUBSYSTEM=usb\n"
		"E: DEVTYPE=usb_device\n"
		"E: DEVNAME=/dev/bus/usb/001/002\n"
		"E: BUSNUM=001\n"
		"E: DEVNUM=002\n"
		"A: busnum=1\n"
		"A: devnum=2\n", NULL));
	umockdev_testbed_set_attribute(tb, USB_PATH, "idVendor", vid);
	umockdev_testbed_set_attribute(tb, USB_PATH, "idProduct", "534c");
}

static void add_interface(UMockdevTestbed *tb, const char *subclass)
{
	assert_true(umockdev_testbed_add_from_string(tb,
		"P: /devices/pci0000:00/0000:00:14.0/usb1/1-1/1-1:1.0\n"
		"E: SUBSYSTEM=usb\n"
		"E: DEVTYPE=usb_interface\n"
		"A: bInterfaceClass=ff\n"
		"A: bInterfaceNumber=00\n", NULL));
	umockdev_testbed_set_attribute(tb, INTF_PATH, "bInterfaceSubClass", subclass);
}

/* The driver binds: "driver" link, then the class device with its node. */
static void bind_kmod(struct fixture *f)
{
	char link[512], target[512];

	snprintf(link, sizeof(link), "%s%s/driver", umockdev_testbed_get_root_dir(f->tb),
		 INTF_PATH);
	snprintf(target, sizeof(target), "%s/sys/bus/usb/drivers/smplaser",
		 umockdev_testbed_get_root_dir(f->tb));
	assert_int_equal(symlink(target, link), 0);
	assert_true(umockdev_testbed_add_from_string(f->tb,
		"P: /devices/pci0000:00/0000:00:14.0/usb1/1-1/1-1:1.0/smplaser/smplaser0\n"
		"N: smplaser0\n"
		"E: SUBSYSTEM=smplaser\n"
		"E: DEVNAME=/dev/smplaser0\n", NULL));
}

static void register_kmod_driver(struct fixture *f)
{
	char dir[512];

	snprintf(dir, sizeof(dir), "%s/sys/bus/usb/drivers/smplaser",
		 umockdev_testbed_get_root_dir(f->tb));
	assert_int_equal(g_mkdir_with_parents(dir, 0755), 0);
}

/* Runs the loop until nothing is pending for a moment (uevents, retries). */
static void run_loop(struct fixture *f, unsigned int ms)
{
	uint64_t end;

	assert_true(sd_event_now(f->event, CLOCK_MONOTONIC, &end) >= 0);
	end += ms * 1000ULL;
	for (;;) {
		uint64_t now;

		assert_true(sd_event_run(f->event, 20 * 1000) >= 0);
		assert_true(sd_event_now(f->event, CLOCK_MONOTONIC, &now) >= 0);
		if (now >= end)
			break;
	}
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->tb = umockdev_testbed_new();
	assert_non_null(f->tb);
	assert_true(sd_event_new(&f->event) >= 0);
	f->cfg.kmod = true;
	f->cfg.libusb = true;
	f->cfg.settle_ms = 200;
	f->cfg.source = "udev";	/* umockdev emulates udevd's messages */
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	smpl_discovery_free(f->disc);
	sd_event_unref(f->event);
	g_object_unref(f->tb);
	free(f);
	return 0;
}

static void start(struct fixture *f)
{
	assert_int_equal(smpl_discovery_new(f->event, &f->cfg, &callbacks, &f->seen, &f->disc), 0);
	assert_string_equal(smpl_discovery_source(f->disc), "udev");
}

static void test_enumerates_a_kmod_unit(void **state)
{
	struct fixture *f = *state;

	add_usb_device(f->tb, "1209");
	add_interface(f->tb, "01");
	register_kmod_driver(f);
	bind_kmod(f);
	start(f);
	assert_int_equal(f->seen.adds, 1);
	assert_string_equal(f->seen.last_backend, "kmod");
	assert_string_equal(f->seen.last_key, USB_PATH);
}

static void test_enumerates_an_unbound_unit_as_libusb(void **state)
{
	struct fixture *f = *state;

	add_usb_device(f->tb, "1209");
	add_interface(f->tb, "01");
	start(f);		/* no smplaser driver registered: at once */
	assert_int_equal(f->seen.adds, 1);
	assert_string_equal(f->seen.last_backend, "libusb");
}

static void test_libusb_off_leaves_an_unbound_unit_alone(void **state)
{
	struct fixture *f = *state;

	f->cfg.libusb = false;
	add_usb_device(f->tb, "1209");
	add_interface(f->tb, "01");
	start(f);
	run_loop(f, 100);
	assert_int_equal(f->seen.adds, 0);
}

static void test_ignores_other_devices(void **state)
{
	struct fixture *f = *state;

	add_usb_device(f->tb, "1d6b");		/* someone else's VID */
	add_interface(f->tb, "01");
	start(f);
	run_loop(f, 50);
	assert_int_equal(f->seen.adds, 0);
}

static void test_ignores_a_unit_without_our_interface(void **state)
{
	struct fixture *f = *state;

	add_usb_device(f->tb, "1209");
	add_interface(f->tb, "07");		/* not SMPL_USB_SUBCLASS */
	start(f);
	run_loop(f, 50);
	assert_int_equal(f->seen.adds, 0);
}

static void test_waits_for_a_registered_driver_then_libusb(void **state)
{
	struct fixture *f = *state;

	add_usb_device(f->tb, "1209");
	add_interface(f->tb, "01");
	register_kmod_driver(f);	/* its probe may be running */
	start(f);
	assert_int_equal(f->seen.adds, 0);
	run_loop(f, 50);
	assert_int_equal(f->seen.adds, 0);
	run_loop(f, 300);		/* past the settle time: libusb */
	assert_int_equal(f->seen.adds, 1);
	assert_string_equal(f->seen.last_backend, "libusb");
}

static void test_hotplug_add_bind_remove(void **state)
{
	struct fixture *f = *state;

	register_kmod_driver(f);
	start(f);
	assert_int_equal(f->seen.adds, 0);

	/* Plugged in: the uevents of the device, its interface, the node. */
	add_usb_device(f->tb, "1209");
	umockdev_testbed_uevent(f->tb, USB_PATH, "add");
	add_interface(f->tb, "01");
	umockdev_testbed_uevent(f->tb, INTF_PATH, "add");
	run_loop(f, 50);
	assert_int_equal(f->seen.adds, 0);	/* the driver may still bind it */
	bind_kmod(f);
	umockdev_testbed_uevent(f->tb, NODE_PATH, "add");
	umockdev_testbed_uevent(f->tb, INTF_PATH, "bind");
	run_loop(f, 100);
	assert_int_equal(f->seen.adds, 1);
	assert_string_equal(f->seen.last_backend, "kmod");

	/* Unplugged: sysfs may still show it when the remove uevent comes. */
	umockdev_testbed_uevent(f->tb, USB_PATH, "remove");
	run_loop(f, 50);
	assert_int_equal(f->seen.removes, 1);
	assert_int_equal(f->seen.adds, 1);
}

static void test_unbind_moves_to_libusb(void **state)
{
	struct fixture *f = *state;
	char link[512];

	add_usb_device(f->tb, "1209");
	add_interface(f->tb, "01");
	bind_kmod(f);		/* bound, but the driver is not registered any more */
	start(f);
	assert_int_equal(f->seen.adds, 1);
	assert_string_equal(f->seen.last_backend, "kmod");

	/* rmmod or unbind: the node goes, then the interface is unbound. */
	umockdev_testbed_uevent(f->tb, NODE_PATH, "remove");
	umockdev_testbed_remove_device(f->tb, NODE_PATH);
	snprintf(link, sizeof(link), "%s%s/driver", umockdev_testbed_get_root_dir(f->tb),
		 INTF_PATH);
	assert_int_equal(unlink(link), 0);
	umockdev_testbed_uevent(f->tb, INTF_PATH, "unbind");
	run_loop(f, 100);
	assert_int_equal(f->seen.removes, 1);
	assert_int_equal(f->seen.adds, 2);
	assert_string_equal(f->seen.last_backend, "libusb");
	assert_string_equal(f->seen.last_key, USB_PATH);	/* the same unit */
}

/*
 * glib and umockdev keep some allocations for the process's life; LeakSanitizer
 * is told to ignore what glib allocated (our code does not use glib).
 */
static void suppress_glib_leaks(void)
{
	static const char path[] = "/tmp/smplaser-test_discovery_udev.lsan";
	const char *old = getenv("LSAN_OPTIONS");
	char opts[1024];
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);

	if (fd < 0)
		return;
	if (write(fd, "leak:libglib-2.0.so\nleak:libumockdev\n", 37) != 37) {
		close(fd);
		return;
	}
	close(fd);
	snprintf(opts, sizeof(opts), "%s%ssuppressions=%s", old ? old : "",
		 old && *old ? ":" : "", path);
	setenv("LSAN_OPTIONS", opts, 1);
}

static void test_failing_backend_retried_with_backoff(void **state)
{
	struct fixture *f = *state;

	add_usb_device(f->tb, "1209");
	add_interface(f->tb, "01");
	f->seen.refuse = 2;		/* e.g. the node would not open */
	start(f);
	assert_int_equal(f->seen.adds, 1);	/* refused */
	run_loop(f, 300);			/* retried after 200 ms */
	assert_int_equal(f->seen.adds, 2);	/* refused again */
	run_loop(f, 100);			/* the next one waits 400 ms */
	assert_int_equal(f->seen.adds, 2);
	run_loop(f, 400);
	assert_int_equal(f->seen.adds, 3);	/* adopted */
	run_loop(f, 500);
	assert_int_equal(f->seen.adds, 3);	/* and left alone */
	assert_int_equal(f->seen.removes, 0);
}

static bool under_umockdev(void)
{
	const char *p = getenv("LD_PRELOAD");

	return p && strstr(p, "libumockdev-preload");
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_enumerates_a_kmod_unit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_enumerates_an_unbound_unit_as_libusb,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_libusb_off_leaves_an_unbound_unit_alone,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_ignores_other_devices, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ignores_a_unit_without_our_interface,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_waits_for_a_registered_driver_then_libusb,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_hotplug_add_bind_remove, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unbind_moves_to_libusb, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failing_backend_retried_with_backoff,
						setup, teardown),
	};

	(void)argc;
	if (!under_umockdev()) {
		/* ASan wants to be first in the preload list; umockdev must be. */
		const char *asan = getenv("ASAN_OPTIONS");
		char opts[1024];

		snprintf(opts, sizeof(opts), "%s%sverify_asan_link_order=0",
			 asan ? asan : "", asan && *asan ? ":" : "");
		setenv("ASAN_OPTIONS", opts, 1);
		setenv("LD_PRELOAD", "libumockdev-preload.so.0", 1);
		suppress_glib_leaks();
		execv("/proc/self/exe", argv);
		perror("re-executing under libumockdev-preload.so.0");
		return 1;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
