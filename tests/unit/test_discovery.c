/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the real-unit side of smplaserd (daemon/discovery.h):
 * which backend discovery picks for a USB device, and how the kmod backend
 * turns the driver's errnos, info, status and event records into what the
 * daemon expects, hostile values included.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <uapi/smplaser.h>

#include "backend-kmod.h"
#include "backend-libusb.h"
#include "discovery.h"

static const struct smpl_discovery_config both = {
	.kmod = true, .libusb = true, .settle_ms = 1000,
};

static struct smpl_disc_facts unit_facts(void)
{
	struct smpl_disc_facts f = {
		.present = true,
		.is_unit = true,
	};
	return f;
}

/* --- discovery's choice ------------------------------------------------------ */

static void test_node_means_kmod(void **state)
{
	struct smpl_disc_facts f = unit_facts();
	struct smpl_discovery_config no_kmod = both;
	uint64_t wait;

	(void)state;
	f.has_node = true;
	f.intf_driver = "smplaser";
	f.kmod_registered = true;
	assert_int_equal(smpl_discovery_choose(&f, &both, &wait), SMPL_DISC_KMOD);
	no_kmod.kmod = false;
	/* The driver holds it: libusb must not try to take it instead. */
	assert_int_equal(smpl_discovery_choose(&f, &no_kmod, &wait), SMPL_DISC_NONE);
}

static void test_unbound_without_driver_means_libusb(void **state)
{
	struct smpl_disc_facts f = unit_facts();
	struct smpl_discovery_config no_libusb = both;
	uint64_t wait = 99;

	(void)state;
	assert_int_equal(smpl_discovery_choose(&f, &both, &wait), SMPL_DISC_LIBUSB);
	assert_int_equal(wait, 0);
	no_libusb.libusb = false;
	assert_int_equal(smpl_discovery_choose(&f, &no_libusb, &wait), SMPL_DISC_NONE);
}

static void test_registered_driver_gets_time_to_bind(void **state)
{
	struct smpl_disc_facts f = unit_facts();
	struct smpl_discovery_config no_kmod = both;
	uint64_t wait;

	(void)state;
	f.kmod_registered = true;
	f.unbound_for_ms = 300;
	assert_int_equal(smpl_discovery_choose(&f, &both, &wait), SMPL_DISC_WAIT);
	assert_int_equal(wait, 700);
	f.unbound_for_ms = 1000;	/* the probe failed or the unit was unbound */
	assert_int_equal(smpl_discovery_choose(&f, &both, &wait), SMPL_DISC_LIBUSB);
	/* kmod off in the config: nothing to wait for. */
	f.unbound_for_ms = 0;
	no_kmod.kmod = false;
	assert_int_equal(smpl_discovery_choose(&f, &no_kmod, &wait), SMPL_DISC_LIBUSB);
}

static void test_default_settle(void **state)
{
	struct smpl_disc_facts f = unit_facts();
	struct smpl_discovery_config cfg = both;
	uint64_t wait;

	(void)state;
	cfg.settle_ms = 0;
	f.kmod_registered = true;
	assert_int_equal(smpl_discovery_choose(&f, &cfg, &wait), SMPL_DISC_WAIT);
	assert_int_equal(wait, 1000);
}

static void test_bound_without_node_waits(void **state)
{
	struct smpl_disc_facts f = unit_facts();
	uint64_t wait;

	(void)state;
	f.intf_driver = "smplaser";
	f.kmod_registered = true;
	assert_int_equal(smpl_discovery_choose(&f, &both, &wait), SMPL_DISC_WAIT);
	assert_true(wait > 0);
}

static void test_someone_elses_driver_is_left_alone(void **state)
{
	struct smpl_disc_facts f = unit_facts();
	uint64_t wait;

	(void)state;
	f.intf_driver = "usbfs";	/* another program holds it */
	assert_int_equal(smpl_discovery_choose(&f, &both, &wait), SMPL_DISC_NONE);
	f.ours_libusb = true;		/* we do */
	assert_int_equal(smpl_discovery_choose(&f, &both, &wait), SMPL_DISC_LIBUSB);
	f.intf_driver = "usb-storage";
	assert_int_equal(smpl_discovery_choose(&f, &both, &wait), SMPL_DISC_NONE);
}

static void test_gone_or_foreign_device_means_none(void **state)
{
	struct smpl_disc_facts f = unit_facts();
	uint64_t wait;

	(void)state;
	f.has_node = true;
	f.present = false;
	assert_int_equal(smpl_discovery_choose(&f, &both, &wait), SMPL_DISC_NONE);
	f.present = true;
	f.is_unit = false;
	assert_int_equal(smpl_discovery_choose(&f, &both, &wait), SMPL_DISC_NONE);
}

static void test_kind_names(void **state)
{
	(void)state;
	assert_string_equal(smpl_disc_kind_name(SMPL_DISC_KMOD), "kmod");
	assert_string_equal(smpl_disc_kind_name(SMPL_DISC_LIBUSB), "libusb");
	assert_string_equal(smpl_disc_kind_name(SMPL_DISC_NONE), "none");
}

/* --- the kmod backend's translations ----------------------------------------------- */

static void test_errno_mapping(void **state)
{
	(void)state;
	assert_int_equal(smpl_kmod_errno_to_status(0), 0);
	assert_int_equal(smpl_kmod_errno_to_status(EPERM), SMPL_ST_INTERLOCK_OPEN);
	assert_int_equal(smpl_kmod_errno_to_status(ENOTRECOVERABLE), SMPL_ST_FAULT_LATCHED);
	assert_int_equal(smpl_kmod_errno_to_status(ERANGE), SMPL_ST_OUT_OF_RANGE);
	assert_int_equal(smpl_kmod_errno_to_status(EBUSY), SMPL_ST_BAD_STATE);
	assert_int_equal(smpl_kmod_errno_to_status(EAGAIN), SMPL_ST_CAUSE_PERSISTS);
	assert_int_equal(smpl_kmod_errno_to_status(ENODATA), SMPL_ST_NO_PARAMS);
	assert_int_equal(smpl_kmod_errno_to_status(EOPNOTSUPP), SMPL_ST_UNKNOWN_OP);
	/* Transport errors stay negative errnos: never mistaken for a refusal or OK. */
	assert_int_equal(smpl_kmod_errno_to_status(ENODEV), -ENODEV);
	assert_int_equal(smpl_kmod_errno_to_status(ETIMEDOUT), -ETIMEDOUT);
	assert_int_equal(smpl_kmod_errno_to_status(EPROTO), -EPROTO);
	assert_int_equal(smpl_kmod_errno_to_status(EIO), -EIO);
}

static struct smplaser_info good_info(void)
{
	struct smplaser_info ki;

	memset(&ki, 0, sizeof(ki));
	strcpy(ki.serial, "SL-000123");
	strcpy(ki.model, "SMP-1064 QS");
	ki.fw_major = 1;
	ki.fw_minor = 2;
	ki.fw_patch = 3;
	ki.wavelength_nm[0] = 1064;
	ki.max_fluence_mj_cm2 = 10000;
	ki.min_spot_um = 2000;
	ki.max_spot_um = 6000;
	ki.min_pulse_ps = 5000;
	ki.max_pulse_ps = 25000;
	ki.max_rate_mhz = 10000;
	ki.watchdog_ms = 1500;
	ki.emission_delay_ms = 1000;
	ki.heartbeat_ms = 500;
	return ki;
}

static void test_info_conversion(void **state)
{
	struct smplaser_info ki = good_info();
	struct smpl_info_n n;

	(void)state;
	assert_int_equal(smpl_kmod_info_to_native(&ki, &n), 0);
	assert_string_equal(n.serial, "SL-000123");
	assert_string_equal(n.model, "SMP-1064 QS");
	assert_int_equal(n.fw_minor, 2);
	assert_int_equal(n.wavelength_nm[0], 1064);
	assert_int_equal(n.max_spot_um, 6000);
	assert_int_equal(n.watchdog_ms, 1500);
	assert_int_equal(n.emission_delay_ms, 1000);

	/* 16 characters (the wire's maximum) fit. */
	memset(ki.serial, 'A', 16);
	assert_int_equal(smpl_kmod_info_to_native(&ki, &n), 0);
	assert_int_equal(strlen(n.serial), 16);
}

static void test_hostile_info_refused(void **state)
{
	struct smplaser_info ki;
	struct smpl_info_n n;

	(void)state;
	ki = good_info();
	memset(ki.serial, 'A', sizeof(ki.serial));	/* not terminated */
	assert_int_equal(smpl_kmod_info_to_native(&ki, &n), -EPROTO);
	ki = good_info();
	memset(ki.serial, 'A', 17);			/* longer than the wire allows */
	assert_int_equal(smpl_kmod_info_to_native(&ki, &n), -EPROTO);
	ki = good_info();
	ki.serial[0] = '\0';				/* no serial: no object path */
	assert_int_equal(smpl_kmod_info_to_native(&ki, &n), -EPROTO);
	ki = good_info();
	strcpy(ki.serial, "../../x");			/* not [A-Za-z0-9-] */
	assert_int_equal(smpl_kmod_info_to_native(&ki, &n), -EPROTO);
	ki = good_info();
	ki.model[3] = '\n';
	assert_int_equal(smpl_kmod_info_to_native(&ki, &n), -EPROTO);
}

static void test_status_conversion(void **state)
{
	struct smplaser_status ks;
	struct smpl_status_n n;

	(void)state;
	memset(&ks, 0, sizeof(ks));
	ks.state = SMPLASER_STATE_READY;
	ks.interlocks = SMPLASER_IL_DOOR;
	ks.flags = SMPL_SF_PARAMS_SET;
	ks.shot_count = 42;
	ks.last_energy_uj = 1234;
	ks.rtc_s = 1764000000;
	assert_int_equal(smpl_kmod_status_to_native(&ks, &n), 0);
	assert_int_equal(n.state, SMPL_STATE_READY);
	assert_int_equal(n.interlocks, SMPL_IL_DOOR);
	assert_int_equal(n.shot_count, 42);
	assert_int_equal(n.rtc_s, 1764000000);

	ks.state = SMPL_STATE__MAX + 1;
	assert_int_equal(smpl_kmod_status_to_native(&ks, &n), -EPROTO);
	ks.state = SMPLASER_STATE_STANDBY;
	ks.fault = SMPL_FAULT__MAX + 1;
	assert_int_equal(smpl_kmod_status_to_native(&ks, &n), -EPROTO);
}

static struct smplaser_event record(uint16_t type)
{
	struct smplaser_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.type = type;
	return ev;
}

static void test_event_status_and_interlock(void **state)
{
	struct smpl_status_n st = { .state = SMPL_STATE_STANDBY, .rtc_s = 77 };
	struct smpl_pulse_n p;
	struct smplaser_event ev = record(SMPLASER_EV_STATUS);

	(void)state;
	ev.status.state = SMPLASER_STATE_READY;
	ev.status.shot_count = 10;
	ev.status.flags = SMPL_SF_FOOTSWITCH;
	assert_int_equal(smpl_kmod_apply_event(&ev, &st, &p), SMPL_KMOD_STATUS);
	assert_int_equal(st.state, SMPL_STATE_READY);
	assert_int_equal(st.shot_count, 10);
	assert_int_equal(st.flags, SMPL_SF_FOOTSWITCH);
	assert_int_equal(st.rtc_s, 77);		/* records carry no RTC: kept */

	ev = record(SMPLASER_EV_INTERLOCK);
	ev.interlock.interlocks = SMPLASER_IL_ESTOP;
	ev.interlock.changed = SMPLASER_IL_ESTOP;
	assert_int_equal(smpl_kmod_apply_event(&ev, &st, &p), SMPL_KMOD_STATUS);
	assert_int_equal(st.interlocks, SMPL_IL_ESTOP);
	assert_int_equal(st.state, SMPL_STATE_READY);

	ev = record(SMPLASER_EV_FAULT);
	ev.fault.fault = SMPL_FAULT_INTERLOCK;
	ev.fault.state = SMPLASER_STATE_FAULT;
	assert_int_equal(smpl_kmod_apply_event(&ev, &st, &p), SMPL_KMOD_STATUS);
	assert_int_equal(st.state, SMPL_STATE_FAULT);
	assert_int_equal(st.fault, SMPL_FAULT_INTERLOCK);
}

static void test_event_pulse(void **state)
{
	struct smpl_status_n st = { .state = SMPL_STATE_EMITTING, .shot_count = 5 };
	struct smpl_pulse_n p;
	struct smplaser_event ev = record(SMPLASER_EV_PULSE);

	(void)state;
	ev.pulse.shot = 6;
	ev.pulse.measured_uj = 1010;
	ev.pulse.set_uj = 1000;
	assert_int_equal(smpl_kmod_apply_event(&ev, &st, &p), SMPL_KMOD_PULSE);
	assert_int_equal(p.shot, 6);
	assert_int_equal(p.measured_uj, 1010);
	assert_int_equal(p.set_uj, 1000);
	assert_int_equal(st.shot_count, 6);
}

static void test_event_hostile_and_special(void **state)
{
	struct smpl_status_n st = { .state = SMPL_STATE_STANDBY };
	struct smpl_status_n before;
	struct smpl_pulse_n p;
	struct smplaser_event ev = record(SMPLASER_EV_STATUS);

	(void)state;
	ev.status.state = 200;			/* out of range: resync, not believed */
	before = st;
	assert_int_equal(smpl_kmod_apply_event(&ev, &st, &p), SMPL_KMOD_RESYNC);
	assert_memory_equal(&st, &before, sizeof(st));
	ev = record(SMPLASER_EV_FAULT);
	ev.fault.fault = 250;
	assert_int_equal(smpl_kmod_apply_event(&ev, &st, &p), SMPL_KMOD_RESYNC);
	assert_memory_equal(&st, &before, sizeof(st));

	ev = record(SMPLASER_EV_OVERFLOW);
	ev.overflow.lost = 3;
	assert_int_equal(smpl_kmod_apply_event(&ev, &st, &p), SMPL_KMOD_RESYNC);
	ev = record(SMPLASER_EV_DISCONNECT);
	assert_int_equal(smpl_kmod_apply_event(&ev, &st, &p), SMPL_KMOD_DISCONNECT);
	ev = record(SMPLASER_EV_DISARM);
	ev.disarm.reason = SMPLASER_DISARM_HEARTBEAT;
	assert_int_equal(smpl_kmod_apply_event(&ev, &st, &p), SMPL_KMOD_LOG);
	ev = record(999);
	assert_int_equal(smpl_kmod_apply_event(&ev, &st, &p), SMPL_KMOD_IGNORE);
	assert_memory_equal(&st, &before, sizeof(st));
}

static void test_constructors(void **state)
{
	struct smpl_backend *b = NULL;

	(void)state;
	assert_int_equal(smpl_backend_kmod_new(NULL, "/dev/smplaser7", &b), 0);
	assert_string_equal(smpl_backend_name(b), "kmod");
	/* Not opened: every command fails -ENODEV, none pretends to work. */
	assert_int_equal(b->ops->arm(b), -ENODEV);
	assert_int_equal(b->ops->disarm(b), -ENODEV);
	smpl_backend_free(b);
	b = NULL;
	assert_int_equal(smpl_backend_libusb_new(NULL, "/dev/bus/usb/001/002", &b), 0);
	assert_string_equal(smpl_backend_name(b), "libusb");
	assert_int_equal(b->ops->arm(b), -ENODEV);
	smpl_backend_free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_node_means_kmod),
		cmocka_unit_test(test_unbound_without_driver_means_libusb),
		cmocka_unit_test(test_registered_driver_gets_time_to_bind),
		cmocka_unit_test(test_default_settle),
		cmocka_unit_test(test_bound_without_node_waits),
		cmocka_unit_test(test_someone_elses_driver_is_left_alone),
		cmocka_unit_test(test_gone_or_foreign_device_means_none),
		cmocka_unit_test(test_kind_names),
		cmocka_unit_test(test_errno_mapping),
		cmocka_unit_test(test_info_conversion),
		cmocka_unit_test(test_hostile_info_refused),
		cmocka_unit_test(test_status_conversion),
		cmocka_unit_test(test_event_status_and_interlock),
		cmocka_unit_test(test_event_pulse),
		cmocka_unit_test(test_event_hostile_and_special),
		cmocka_unit_test(test_constructors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
