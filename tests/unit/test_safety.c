/* SPDX-License-Identifier: MIT */
/*
 * The daemon's safety core (daemon/safety.c): every arming condition of S1
 * is tried alone, every event that must disarm or fault is driven, the fault
 * latch and its acknowledgement, limits, supervision and the clock.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "safety.h"

#define T0		1000000ULL			/* monotonic ms */
#define WALL0		1767261600000LL			/* 2026-01-01 10:00:00 UTC */
#define SET_UJ		1000u
#define SHOT0		100u
#define GOOD_FLAGS	(SMPL_SF_CALIBRATED | SMPL_SF_PARAMS_SET)

/* ---- fixtures ---------------------------------------------------------------- */

static struct smpl_status_n status_of(uint8_t state, uint16_t interlocks)
{
	struct smpl_status_n st = {
		.state = state,
		.fault = SMPL_FAULT_NONE,
		.interlocks = interlocks,
		.flags = GOOD_FLAGS,
		.shot_count = SHOT0,
		.last_energy_uj = 0,
		.rtc_s = WALL0 / 1000,
	};
	return st;
}

static struct smpl_status_n status_shot(uint8_t state, uint32_t shot_count)
{
	struct smpl_status_n st = status_of(state, 0);

	st.shot_count = shot_count;
	return st;
}

static enum smpl_action_kind feed(struct smpl_safety *s, uint64_t now,
				  struct smpl_status_n st, struct smpl_action *a)
{
	return smpl_safety_status(s, now, WALL0 + (int64_t)(now - T0), &st, a);
}

/* Everything S1 needs, with @l (NULL: defaults). */
static void ready_to_arm(struct smpl_safety *s, const struct smpl_safety_limits *l)
{
	struct smpl_verdict v;

	smpl_safety_init(s, l);
	smpl_safety_connected(s, T0);
	assert_int_equal(feed(s, T0, status_of(SMPL_STATE_STANDBY, 0), NULL), SMPL_ACT_NONE);
	smpl_safety_newest_record(s, WALL0 - 60000);
	assert_int_equal(smpl_safety_session_open(s, &v), 0);
	assert_int_equal(smpl_safety_select_patch(s, true, WALL0, 0, 0, &v), 0);
	assert_int_equal(smpl_safety_confirm_eyewear(s, &v), 0);
	assert_int_equal(smpl_safety_set_params(s, true, SET_UJ, &v), 0);
}

static void may_arm_ok(struct smpl_safety *s, uint64_t now)
{
	struct smpl_verdict v;
	int r = smpl_safety_may_arm(s, now, WALL0 + (int64_t)(now - T0), &v);

	if (r)
		fail_msg("refused: %s (%s)", v.message, smpl_reason_name(v.reason));
	assert_int_equal(v.reason, SMPL_REASON_NONE);
}

static void expect_refused(struct smpl_safety *s, uint64_t now, int64_t wall,
			   enum smpl_reason want)
{
	struct smpl_verdict v;
	bool was_armed = smpl_safety_is_armed(s);
	int r = smpl_safety_may_arm(s, now, wall, &v);

	if (v.reason != want)
		fail_msg("wanted %s, got %s: %s", smpl_reason_name(want),
			 smpl_reason_name(v.reason), v.message);
	assert_true(r < 0);
	assert_int_equal(r, smpl_reason_errno(want));
	assert_true(v.message[0] != '\0');
	/* arm_begin refuses the same way and changes nothing */
	assert_int_equal(smpl_safety_arm_begin(s, now, wall, &v), r);
	assert_int_equal(smpl_safety_is_armed(s), was_armed);
}

/* Armed, unit READY. */
static void armed_ready(struct smpl_safety *s, const struct smpl_safety_limits *l)
{
	struct smpl_verdict v;

	ready_to_arm(s, l);
	assert_int_equal(smpl_safety_arm_begin(s, T0, WALL0, &v), 0);
	assert_true(smpl_safety_is_armed(s));
	assert_int_equal(feed(s, T0 + 10, status_of(SMPL_STATE_ARMING, 0), NULL), SMPL_ACT_NONE);
	assert_int_equal(feed(s, T0 + 2000, status_of(SMPL_STATE_READY, 0), NULL), SMPL_ACT_NONE);
	assert_true(smpl_safety_is_armed(s));
}

static enum smpl_action_kind pulse(struct smpl_safety *s, uint64_t now, uint32_t shot,
				   uint32_t measured, uint32_t set, struct smpl_action *a)
{
	struct smpl_pulse_n p = { .shot = shot, .measured_uj = measured, .set_uj = set };

	return smpl_safety_pulse(s, now, &p, a);
}

/* ---- S1: all satisfied, then each condition missing alone --------------------- */

static void test_all_conditions_allow_arming(void **state)
{
	struct smpl_safety s;
	struct smpl_verdict v;

	(void)state;
	ready_to_arm(&s, NULL);
	may_arm_ok(&s, T0);
	assert_int_equal(smpl_safety_arm_begin(&s, T0, WALL0, &v), 0);
	assert_true(smpl_safety_is_armed(&s));
}

struct breach {
	const char *what;
	void (*apply)(struct smpl_safety *s);
	enum smpl_reason want;
	const char *dbus_error;
	int64_t wall_offset_ms;	/* wall clock at the check, relative to WALL0 */
};

static void br_disconnected(struct smpl_safety *s)
{
	smpl_safety_disconnected(s, T0, NULL);
}

static void br_unit_fault(struct smpl_safety *s)
{
	struct smpl_status_n st = status_of(SMPL_STATE_FAULT, 0);

	st.fault = SMPL_FAULT_OVERTEMP;
	assert_int_equal(feed(s, T0, st, NULL), SMPL_ACT_FAULT);
}

static void br_fault_latched(struct smpl_safety *s)
{
	/* a pulse nobody armed for latches a fault; the unit looks fine */
	assert_int_equal(pulse(s, T0, SHOT0 + 1, SET_UJ, SET_UJ, NULL), SMPL_ACT_FAULT);
}

static void br_self_test(struct smpl_safety *s)
{
	feed(s, T0, status_of(SMPL_STATE_SELF_TEST, 0), NULL);
}

static void br_status_unknown(struct smpl_safety *s)
{
	smpl_safety_connected(s, T0);	/* replugged, no report yet */
	smpl_safety_rtc(s, T0, WALL0 / 1000);
}

static void br_already_armed(struct smpl_safety *s)
{
	struct smpl_verdict v;

	assert_int_equal(smpl_safety_arm_begin(s, T0, WALL0, &v), 0);
}

#define INTERLOCK_BREACH(fn, bit)						\
	static void fn(struct smpl_safety *s)					\
	{									\
		feed(s, T0, status_of(SMPL_STATE_STANDBY, bit), NULL);		\
	}
INTERLOCK_BREACH(br_key, SMPL_IL_KEY)
INTERLOCK_BREACH(br_door, SMPL_IL_DOOR)
INTERLOCK_BREACH(br_estop, SMPL_IL_ESTOP)
INTERLOCK_BREACH(br_handpiece, SMPL_IL_HANDPIECE)
INTERLOCK_BREACH(br_cooling, SMPL_IL_COOLING)
INTERLOCK_BREACH(br_temperature, SMPL_IL_TEMPERATURE)
INTERLOCK_BREACH(br_shutter, SMPL_IL_SHUTTER)
INTERLOCK_BREACH(br_unknown_interlock, 0x100)

static void br_calibration(struct smpl_safety *s)
{
	struct smpl_status_n st = status_of(SMPL_STATE_STANDBY, 0);

	st.flags = SMPL_SF_PARAMS_SET;
	feed(s, T0, st, NULL);
}

static void br_no_rtc(struct smpl_safety *s)
{
	struct smpl_status_n st = status_of(SMPL_STATE_STANDBY, 0);

	smpl_safety_connected(s, T0);
	st.rtc_s = 0;			/* the report carries no RTC */
	feed(s, T0, st, NULL);
}

static void br_clock_behind(struct smpl_safety *s)
{
	smpl_safety_newest_record(s, WALL0 + 1);
}

static void br_rtc_ahead(struct smpl_safety *s)
{
	smpl_safety_rtc(s, T0, WALL0 / 1000 + 301);
}

static void br_rtc_behind(struct smpl_safety *s)
{
	smpl_safety_rtc(s, T0, WALL0 / 1000 - 301);
}

static void br_no_session(struct smpl_safety *s)
{
	smpl_safety_session_close(s, NULL);
}

static void br_owner_gone(struct smpl_safety *s)
{
	assert_int_equal(smpl_safety_owner_vanished(s, NULL), SMPL_ACT_NONE);
}

static void br_no_patch(struct smpl_safety *s)
{
	struct smpl_verdict v;

	smpl_safety_session_close(s, NULL);
	smpl_safety_session_open(s, &v);
	smpl_safety_confirm_eyewear(s, &v);
}

static void br_cooldown(struct smpl_safety *s)
{
	struct smpl_verdict v;

	assert_int_equal(smpl_safety_select_patch(s, false, WALL0 + 3 * 86400000LL, 0, 0, &v), 0);
}

static void br_eyewear(struct smpl_safety *s)
{
	struct smpl_verdict v;

	smpl_safety_session_close(s, NULL);
	smpl_safety_session_open(s, &v);
	smpl_safety_select_patch(s, true, WALL0, 0, 0, &v);
}

static void br_params(struct smpl_safety *s)
{
	struct smpl_verdict v;

	smpl_safety_set_params(s, false, 0, &v);
}

static void br_params_not_on_unit(struct smpl_safety *s)
{
	struct smpl_status_n st = status_of(SMPL_STATE_STANDBY, 0);

	st.flags = SMPL_SF_CALIBRATED;
	feed(s, T0, st, NULL);
}

static void br_pulse_limit(struct smpl_safety *s)
{
	struct smpl_verdict v;

	/* a test spot of 2 pulses, both given */
	smpl_safety_select_patch(s, true, WALL0, 2, 0, &v);
	assert_int_equal(smpl_safety_arm_begin(s, T0, WALL0, &v), 0);
	feed(s, T0 + 1, status_of(SMPL_STATE_READY, 0), NULL);
	assert_int_equal(pulse(s, T0 + 2, SHOT0 + 1, SET_UJ, SET_UJ, NULL), SMPL_ACT_NONE);
	assert_int_equal(pulse(s, T0 + 3, SHOT0 + 2, SET_UJ, SET_UJ, NULL), SMPL_ACT_DISARM);
	feed(s, T0 + 4, status_of(SMPL_STATE_STANDBY, 0), NULL);
}

static void br_energy_limit(struct smpl_safety *s)
{
	struct smpl_verdict v;

	s->limits.max_session_energy_uj = 2 * SET_UJ;
	assert_int_equal(smpl_safety_arm_begin(s, T0, WALL0, &v), 0);
	feed(s, T0 + 1, status_of(SMPL_STATE_READY, 0), NULL);
	pulse(s, T0 + 2, SHOT0 + 1, SET_UJ, SET_UJ, NULL);
	assert_int_equal(pulse(s, T0 + 3, SHOT0 + 2, SET_UJ, SET_UJ, NULL), SMPL_ACT_DISARM);
	feed(s, T0 + 4, status_of(SMPL_STATE_STANDBY, 0), NULL);
	/* a new patch does not reset the session's energy */
	smpl_safety_select_patch(s, true, WALL0, 0, 0, &v);
}

#define E(x) "org.smplaser.Laser1.Error." x
static const struct breach breaches[] = {
	{ "disconnected", br_disconnected, SMPL_REASON_DISCONNECTED, E("Disconnected"), 0 },
	{ "unit fault", br_unit_fault, SMPL_REASON_FAULT_LATCHED, E("DeviceFault"), 0 },
	{ "fault latched", br_fault_latched, SMPL_REASON_FAULT_LATCHED, E("DeviceFault"), 0 },
	{ "unit in self-test", br_self_test, SMPL_REASON_BUSY, E("Busy"), 0 },
	{ "unit state unknown", br_status_unknown, SMPL_REASON_BUSY, E("Busy"), 0 },
	{ "already armed", br_already_armed, SMPL_REASON_BUSY, E("Busy"), 0 },
	{ "key switch", br_key, SMPL_REASON_INTERLOCK_OPEN, E("InterlockOpen"), 0 },
	{ "door", br_door, SMPL_REASON_INTERLOCK_OPEN, E("InterlockOpen"), 0 },
	{ "emergency stop", br_estop, SMPL_REASON_ESTOP, E("InterlockOpen"), 0 },
	{ "handpiece", br_handpiece, SMPL_REASON_INTERLOCK_OPEN, E("InterlockOpen"), 0 },
	{ "cooling", br_cooling, SMPL_REASON_INTERLOCK_OPEN, E("InterlockOpen"), 0 },
	{ "temperature", br_temperature, SMPL_REASON_INTERLOCK_OPEN, E("InterlockOpen"), 0 },
	{ "shutter", br_shutter, SMPL_REASON_INTERLOCK_OPEN, E("InterlockOpen"), 0 },
	{ "unknown interlock bit", br_unknown_interlock, SMPL_REASON_INTERLOCK_OPEN, E("InterlockOpen"), 0 },
	{ "calibration", br_calibration, SMPL_REASON_CALIBRATION, E("CalibrationExpired"), 0 },
	{ "no RTC", br_no_rtc, SMPL_REASON_CLOCK_NO_RTC, E("ClockUnreliable"), 0 },
	{ "clock behind records", br_clock_behind, SMPL_REASON_CLOCK_BEHIND, E("ClockUnreliable"), 0 },
	{ "RTC 301 s ahead", br_rtc_ahead, SMPL_REASON_CLOCK_SKEW, E("ClockUnreliable"), 0 },
	{ "RTC 301 s behind", br_rtc_behind, SMPL_REASON_CLOCK_SKEW, E("ClockUnreliable"), 0 },
	{ "no session", br_no_session, SMPL_REASON_NO_SESSION, E("NoSession"), 0 },
	{ "session owner gone", br_owner_gone, SMPL_REASON_OWNER_GONE, E("NoSession"), 0 },
	{ "no patch", br_no_patch, SMPL_REASON_NO_PATCH, E("NoPatch"), 0 },
	{ "cooldown", br_cooldown, SMPL_REASON_COOLDOWN, E("CooldownActive"), 0 },
	{ "eyewear", br_eyewear, SMPL_REASON_EYEWEAR, E("EyewearNotConfirmed"), 0 },
	{ "parameters", br_params, SMPL_REASON_PARAMS, E("ParameterOutOfRange"), 0 },
	{ "parameters not on unit", br_params_not_on_unit, SMPL_REASON_PARAMS, E("ParameterOutOfRange"), 0 },
	{ "patch pulse limit", br_pulse_limit, SMPL_REASON_PULSE_LIMIT, E("ParameterOutOfRange"), 10 },
	{ "session energy limit", br_energy_limit, SMPL_REASON_ENERGY_LIMIT, E("ParameterOutOfRange"), 10 },
};

static void test_one_condition_missing(void **state)
{
	const struct breach *b = *state;
	struct smpl_safety s;
	uint64_t now;

	ready_to_arm(&s, NULL);
	b->apply(&s);
	now = T0 + (uint64_t)b->wall_offset_ms;
	expect_refused(&s, now, WALL0 + b->wall_offset_ms, b->want);
	assert_string_equal(smpl_reason_dbus_error(b->want), b->dbus_error);
}

static void test_cooldown_message_names_date(void **state)
{
	struct smpl_safety s;
	struct smpl_verdict v;

	(void)state;
	ready_to_arm(&s, NULL);
	smpl_safety_select_patch(&s, false, WALL0 + 42 * 86400000LL, 0, 0, &v);
	assert_int_equal(smpl_safety_may_arm(&s, T0, WALL0, &v), -ETIME);
	assert_non_null(strstr(v.message, "2026-02-12 10:00:00 UTC"));
}

/* ---- S5: energy tolerance ---------------------------------------------------- */

static void energy_case(uint32_t tol, uint32_t measured, enum smpl_action_kind want)
{
	struct smpl_safety_limits l;
	struct smpl_safety s;
	struct smpl_action a;

	smpl_safety_default_limits(&l);
	l.energy_tolerance_pct = tol;
	armed_ready(&s, &l);
	assert_int_equal(pulse(&s, T0 + 3000, SHOT0 + 1, measured, SET_UJ, &a), want);
	if (want == SMPL_ACT_FAULT) {
		assert_int_equal(a.reason, SMPL_REASON_ENERGY_TOLERANCE);
		assert_false(smpl_safety_is_armed(&s));
		assert_true(smpl_safety_fault_latched(&s));
	} else {
		assert_true(smpl_safety_is_armed(&s));
		assert_false(smpl_safety_fault_latched(&s));
	}
}

static void test_energy_at_and_beyond_20pct(void **state)
{
	(void)state;
	energy_case(20, 1200, SMPL_ACT_NONE);	/* +20% exactly: inside */
	energy_case(20, 800, SMPL_ACT_NONE);	/* -20% exactly */
	energy_case(20, 1000, SMPL_ACT_NONE);
	energy_case(20, 1201, SMPL_ACT_FAULT);	/* just beyond */
	energy_case(20, 799, SMPL_ACT_FAULT);
	energy_case(20, 0, SMPL_ACT_FAULT);	/* no emission measured */
	energy_case(20, UINT32_MAX, SMPL_ACT_FAULT);
}

static void test_energy_tightened_tolerance(void **state)
{
	(void)state;
	energy_case(10, 1100, SMPL_ACT_NONE);
	energy_case(10, 900, SMPL_ACT_NONE);
	energy_case(10, 1101, SMPL_ACT_FAULT);
	energy_case(10, 899, SMPL_ACT_FAULT);
	energy_case(10, 1200, SMPL_ACT_FAULT);
}

static void test_energy_set_value_mismatch(void **state)
{
	struct smpl_safety s;
	struct smpl_action a;

	(void)state;
	armed_ready(&s, NULL);
	/* rounding by one microjoule is tolerated */
	assert_int_equal(pulse(&s, T0 + 3000, SHOT0 + 1, SET_UJ, SET_UJ + 1, &a), SMPL_ACT_NONE);
	/* the unit fires what we did not set: even a "good" measurement faults */
	assert_int_equal(pulse(&s, T0 + 3100, SHOT0 + 2, 1500, 1500, &a), SMPL_ACT_FAULT);
	assert_int_equal(a.reason, SMPL_REASON_ENERGY_MISMATCH);
}

static void test_parameters_without_energy_never_arm(void **state)
{
	struct smpl_safety s;
	struct smpl_verdict v;

	(void)state;
	ready_to_arm(&s, NULL);
	/* Parameters that ask for no energy would turn the set-energy check off. */
	assert_int_equal(smpl_safety_set_params(&s, true, 0, &v), 0);
	assert_int_equal(smpl_safety_arm_begin(&s, T0, WALL0, &v), -ERANGE);
	assert_int_equal(v.reason, SMPL_REASON_PARAMS);
	assert_false(smpl_safety_is_armed(&s));
}

/* ---- fault latch and acknowledgement ------------------------------------------ */

static void test_energy_fault_latches_until_ack(void **state)
{
	struct smpl_safety s;
	struct smpl_verdict v;
	struct smpl_action a;

	(void)state;
	armed_ready(&s, NULL);
	assert_int_equal(pulse(&s, T0 + 3000, SHOT0 + 1, 500, SET_UJ, &a), SMPL_ACT_FAULT);
	/* the unit goes back to STANDBY, everything else is fine: still refused */
	feed(&s, T0 + 3010, status_of(SMPL_STATE_STANDBY, 0), NULL);
	s.shot_known = true;
	expect_refused(&s, T0 + 3020, WALL0 + 3020, SMPL_REASON_FAULT_LATCHED);
	assert_non_null(strstr(s.fault_message, "measured 500 uJ"));
	/* a second fault does not replace the first one's message */
	assert_int_equal(pulse(&s, T0 + 3030, SHOT0 + 2, SET_UJ, SET_UJ, &a), SMPL_ACT_FAULT);
	assert_non_null(strstr(s.fault_message, "measured 500 uJ"));
	assert_int_equal(smpl_safety_acknowledge(&s, &v), 0);
	assert_false(smpl_safety_fault_latched(&s));
	may_arm_ok(&s, T0 + 3040);
}

static void test_ack_refused_while_cause_persists(void **state)
{
	struct smpl_safety s;
	struct smpl_verdict v;
	struct smpl_status_n st;

	(void)state;
	armed_ready(&s, NULL);
	/* emergency stop while READY: disarm; the unit faults on the interlock */
	assert_int_equal(feed(&s, T0 + 3000, status_of(SMPL_STATE_READY, SMPL_IL_ESTOP), NULL),
			 SMPL_ACT_DISARM);
	st = status_of(SMPL_STATE_FAULT, SMPL_IL_ESTOP);
	st.fault = SMPL_FAULT_INTERLOCK;
	assert_int_equal(feed(&s, T0 + 3010, st, NULL), SMPL_ACT_FAULT);
	assert_int_equal(smpl_safety_acknowledge(&s, &v), -EHOSTDOWN);
	assert_int_equal(v.reason, SMPL_REASON_ESTOP);
	assert_non_null(strstr(v.message, "persists"));
	assert_true(smpl_safety_fault_latched(&s));
	/* e-stop released, but the door is open */
	st.interlocks = SMPL_IL_DOOR;
	feed(&s, T0 + 3020, st, NULL);
	assert_int_equal(smpl_safety_may_acknowledge(&s, &v), -EHOSTDOWN);
	assert_int_equal(v.reason, SMPL_REASON_INTERLOCK_OPEN);
	/* all closed: acknowledged */
	st.interlocks = 0;
	feed(&s, T0 + 3030, st, NULL);
	assert_int_equal(smpl_safety_acknowledge(&s, &v), 0);
	assert_false(smpl_safety_fault_latched(&s));
	/* the unit has not left FAULT yet (stale report): no new fault, but no arming */
	assert_int_equal(feed(&s, T0 + 3040, st, NULL), SMPL_ACT_NONE);
	expect_refused(&s, T0 + 3040, WALL0 + 3040, SMPL_REASON_UNIT_FAULT);
	feed(&s, T0 + 3050, status_of(SMPL_STATE_STANDBY, 0), NULL);
	may_arm_ok(&s, T0 + 3060);
}

static void test_ack_refused_calibration_after_energy_fault(void **state)
{
	struct smpl_safety s;
	struct smpl_verdict v;
	struct smpl_status_n st;

	(void)state;
	armed_ready(&s, NULL);
	pulse(&s, T0 + 3000, SHOT0 + 1, 1300, SET_UJ, NULL);
	st = status_of(SMPL_STATE_STANDBY, 0);
	st.shot_count = SHOT0 + 1;
	st.flags = SMPL_SF_PARAMS_SET;		/* calibration invalid */
	feed(&s, T0 + 3010, st, NULL);
	assert_int_equal(smpl_safety_acknowledge(&s, &v), -EKEYEXPIRED);
	assert_int_equal(v.reason, SMPL_REASON_CALIBRATION);
	st.flags = GOOD_FLAGS;
	feed(&s, T0 + 3020, st, NULL);
	assert_int_equal(smpl_safety_acknowledge(&s, &v), 0);
}

static void test_ack_refused_disconnected_or_armed(void **state)
{
	struct smpl_safety s;
	struct smpl_verdict v;

	(void)state;
	armed_ready(&s, NULL);
	assert_int_equal(smpl_safety_may_acknowledge(&s, &v), -EBUSY);
	pulse(&s, T0 + 3000, SHOT0 + 1, 10, SET_UJ, NULL);
	smpl_safety_disconnected(&s, T0 + 3010, NULL);
	assert_int_equal(smpl_safety_acknowledge(&s, &v), -ENODEV);
	assert_true(smpl_safety_fault_latched(&s));
	/* back, state not reported yet */
	smpl_safety_connected(&s, T0 + 4000);
	assert_int_equal(smpl_safety_acknowledge(&s, &v), -EBUSY);
	/* the latch survives a replug */
	feed(&s, T0 + 4010, status_of(SMPL_STATE_STANDBY, 0), NULL);
	assert_true(smpl_safety_fault_latched(&s));
	assert_int_equal(smpl_safety_acknowledge(&s, &v), 0);
	/* nothing latched: acknowledging again is harmless */
	assert_int_equal(smpl_safety_acknowledge(&s, &v), 0);
}

static void test_unit_fault_once_and_again(void **state)
{
	struct smpl_safety s;
	struct smpl_verdict v;
	struct smpl_status_n st = status_of(SMPL_STATE_FAULT, 0);
	struct smpl_action a;

	(void)state;
	armed_ready(&s, NULL);
	st.fault = SMPL_FAULT_COOLING;
	assert_int_equal(feed(&s, T0 + 3000, st, &a), SMPL_ACT_FAULT);
	assert_int_equal(a.reason, SMPL_REASON_UNIT_FAULT);
	assert_false(smpl_safety_is_armed(&s));
	/* the same fault reported again: no second action */
	assert_int_equal(feed(&s, T0 + 3008, st, &a), SMPL_ACT_NONE);
	feed(&s, T0 + 3016, status_of(SMPL_STATE_STANDBY, 0), NULL);
	assert_int_equal(smpl_safety_acknowledge(&s, &v), 0);
	may_arm_ok(&s, T0 + 3020);
	/* a new fault latches again */
	assert_int_equal(feed(&s, T0 + 4000, st, &a), SMPL_ACT_FAULT);
	assert_true(smpl_safety_fault_latched(&s));
}

/*
 * Hole 104 (tests/attack): the unit faults again while the daemon still
 * latches an earlier fault (its acknowledge reply was lost): the action
 * names the new fault, not the latched one.
 */
static void test_second_unit_fault_while_latched_names_the_new_one(void **state)
{
	struct smpl_safety s;
	struct smpl_status_n st = status_of(SMPL_STATE_FAULT, 0);
	struct smpl_action a;

	(void)state;
	armed_ready(&s, NULL);
	st.fault = SMPL_FAULT_INTERLOCK;
	assert_int_equal(feed(&s, T0 + 3000, st, &a), SMPL_ACT_FAULT);
	assert_int_equal(a.fault_code, SMPL_FAULT_INTERLOCK);
	/* the unit cleared it (its ACK_FAULT reply was lost: the latch stays) */
	feed(&s, T0 + 3016, status_of(SMPL_STATE_STANDBY, 0), NULL);
	assert_true(smpl_safety_fault_latched(&s));
	st.fault = SMPL_FAULT_INTERNAL;
	assert_int_equal(feed(&s, T0 + 4000, st, &a), SMPL_ACT_FAULT);
	assert_int_equal(a.reason, SMPL_REASON_UNIT_FAULT);
	assert_int_equal(a.fault_code, SMPL_FAULT_INTERNAL);
	assert_non_null(strstr(a.message, "internal"));
	/* the first stays latched until acknowledged */
	assert_int_equal(s.fault_code, SMPL_FAULT_INTERLOCK);
}

static void test_unit_already_faulted_at_connect(void **state)
{
	struct smpl_safety s;
	struct smpl_status_n st = status_of(SMPL_STATE_FAULT, 0);

	(void)state;
	smpl_safety_init(&s, NULL);
	smpl_safety_connected(&s, T0);
	st.fault = SMPL_FAULT_SELF_TEST;
	assert_int_equal(feed(&s, T0, st, NULL), SMPL_ACT_FAULT);
	assert_true(smpl_safety_fault_latched(&s));
}

/* ---- S4/S1: status events while armed ----------------------------------------- */

static void test_interlock_opening_disarms(void **state)
{
	static const uint16_t bits[] = {
		SMPL_IL_KEY, SMPL_IL_DOOR, SMPL_IL_ESTOP, SMPL_IL_HANDPIECE,
		SMPL_IL_COOLING, SMPL_IL_TEMPERATURE, SMPL_IL_SHUTTER,
	};
	struct smpl_safety s;
	struct smpl_action a;

	(void)state;
	for (size_t i = 0; i < sizeof(bits) / sizeof(bits[0]); i++) {
		armed_ready(&s, NULL);
		assert_int_equal(feed(&s, T0 + 3000, status_of(SMPL_STATE_EMITTING, bits[i]), &a),
				 SMPL_ACT_DISARM);
		assert_int_equal(a.reason, bits[i] == SMPL_IL_ESTOP ? SMPL_REASON_ESTOP :
				 SMPL_REASON_INTERLOCK_OPEN);
		assert_false(smpl_safety_is_armed(&s));
	}
}

static void test_interlock_while_arming_disarms(void **state)
{
	struct smpl_safety s;
	struct smpl_verdict v;
	struct smpl_action a;

	(void)state;
	ready_to_arm(&s, NULL);
	assert_int_equal(smpl_safety_arm_begin(&s, T0, WALL0, &v), 0);
	/* before the unit even reported ARMING */
	assert_int_equal(feed(&s, T0 + 5, status_of(SMPL_STATE_STANDBY, SMPL_IL_DOOR), &a),
			 SMPL_ACT_DISARM);
	assert_false(smpl_safety_is_armed(&s));
}

static void test_stale_standby_after_arm_keeps_armed(void **state)
{
	struct smpl_safety s;
	struct smpl_verdict v;

	(void)state;
	ready_to_arm(&s, NULL);
	assert_int_equal(smpl_safety_arm_begin(&s, T0, WALL0, &v), 0);
	assert_int_equal(feed(&s, T0 + 1, status_of(SMPL_STATE_STANDBY, 0), NULL), SMPL_ACT_NONE);
	assert_true(smpl_safety_is_armed(&s));
}

static void test_unit_leaving_armed_state_disarms(void **state)
{
	struct smpl_safety s;
	struct smpl_action a;

	(void)state;
	armed_ready(&s, NULL);
	assert_int_equal(feed(&s, T0 + 5000, status_of(SMPL_STATE_STANDBY, 0), &a), SMPL_ACT_DISARM);
	assert_int_equal(a.reason, SMPL_REASON_UNIT_STANDBY);
	assert_false(smpl_safety_is_armed(&s));
	may_arm_ok(&s, T0 + 5001);
}

static void test_unit_armed_without_us(void **state)
{
	struct smpl_safety s;
	struct smpl_action a;

	(void)state;
	ready_to_arm(&s, NULL);
	assert_int_equal(feed(&s, T0 + 10, status_of(SMPL_STATE_READY, 0), &a), SMPL_ACT_DISARM);
	assert_int_equal(a.reason, SMPL_REASON_UNEXPECTED_ARM);
	/* a daemon restarted against a unit left READY */
	smpl_safety_init(&s, NULL);
	smpl_safety_connected(&s, T0);
	assert_int_equal(feed(&s, T0, status_of(SMPL_STATE_READY, 0), &a), SMPL_ACT_DISARM);
	assert_int_equal(a.reason, SMPL_REASON_UNEXPECTED_ARM);
}

/* ---- pulses not armed for -------------------------------------------------------- */

static void test_pulse_while_not_armed_faults(void **state)
{
	struct smpl_safety s;
	struct smpl_action a;

	(void)state;
	ready_to_arm(&s, NULL);
	assert_int_equal(pulse(&s, T0 + 1, SHOT0 + 1, SET_UJ, SET_UJ, &a), SMPL_ACT_FAULT);
	assert_int_equal(a.reason, SMPL_REASON_UNEXPECTED_PULSE);
}

static void test_pulse_in_flight_after_disarm_tolerated(void **state)
{
	struct smpl_safety s;
	struct smpl_action a;

	(void)state;
	armed_ready(&s, NULL);
	assert_int_equal(smpl_safety_disarm_request(&s, &a), SMPL_ACT_DISARM);
	assert_int_equal(a.reason, SMPL_REASON_REQUESTED);
	/* the unit is still READY: a pulse already under way is no fault */
	assert_int_equal(pulse(&s, T0 + 3000, SHOT0 + 1, SET_UJ, SET_UJ, &a), SMPL_ACT_NONE);
	assert_false(smpl_safety_fault_latched(&s));
	/* ... but its energy is still checked */
	assert_int_equal(pulse(&s, T0 + 3001, SHOT0 + 2, 5000, SET_UJ, &a), SMPL_ACT_FAULT);
	assert_int_equal(a.reason, SMPL_REASON_ENERGY_TOLERANCE);
}

static void test_pulse_after_unit_reached_standby_faults(void **state)
{
	struct smpl_safety s;
	struct smpl_action a;

	(void)state;
	armed_ready(&s, NULL);
	smpl_safety_disarm_request(&s, NULL);
	feed(&s, T0 + 3000, status_of(SMPL_STATE_STANDBY, 0), NULL);
	assert_int_equal(pulse(&s, T0 + 3001, SHOT0 + 1, SET_UJ, SET_UJ, &a), SMPL_ACT_FAULT);
	assert_int_equal(a.reason, SMPL_REASON_UNEXPECTED_PULSE);
	/* disarm when nothing is armed: nothing to do */
	assert_int_equal(smpl_safety_disarm_request(&s, &a), SMPL_ACT_NONE);
}

/* ---- S5: limits ------------------------------------------------------------------- */

static void test_pulses_per_patch_limit(void **state)
{
	struct smpl_safety_limits l;
	struct smpl_safety s;
	struct smpl_verdict v;
	struct smpl_action a;

	(void)state;
	smpl_safety_default_limits(&l);
	l.pulses_per_patch = 3;
	armed_ready(&s, &l);
	assert_int_equal(pulse(&s, T0 + 3000, SHOT0 + 1, SET_UJ, SET_UJ, &a), SMPL_ACT_NONE);
	assert_int_equal(pulse(&s, T0 + 3100, SHOT0 + 2, SET_UJ, SET_UJ, &a), SMPL_ACT_NONE);
	assert_int_equal(pulse(&s, T0 + 3200, SHOT0 + 3, SET_UJ, SET_UJ, &a), SMPL_ACT_DISARM);
	assert_int_equal(a.reason, SMPL_REASON_PULSE_LIMIT);
	assert_false(smpl_safety_is_armed(&s));
	feed(&s, T0 + 3300, status_of(SMPL_STATE_STANDBY, 0), NULL);
	expect_refused(&s, T0 + 3300, WALL0 + 3300, SMPL_REASON_PULSE_LIMIT);
	/* another patch may be treated */
	assert_int_equal(smpl_safety_select_patch(&s, true, WALL0, 0, 0, &v), 0);
	may_arm_ok(&s, T0 + 3300);
}

static void test_test_spot_limit_is_lower(void **state)
{
	struct smpl_safety s;
	struct smpl_verdict v;
	struct smpl_action a;

	(void)state;
	ready_to_arm(&s, NULL);
	smpl_safety_select_patch(&s, true, WALL0, 1, 0, &v);
	assert_int_equal(smpl_safety_arm_begin(&s, T0, WALL0, &v), 0);
	feed(&s, T0 + 1, status_of(SMPL_STATE_READY, 0), NULL);
	assert_int_equal(pulse(&s, T0 + 2, SHOT0 + 1, SET_UJ, SET_UJ, &a), SMPL_ACT_DISARM);
	assert_int_equal(a.reason, SMPL_REASON_PULSE_LIMIT);
}

static void test_session_energy_limit(void **state)
{
	struct smpl_safety_limits l;
	struct smpl_safety s;
	struct smpl_action a;

	(void)state;
	smpl_safety_default_limits(&l);
	l.max_session_energy_uj = 5000;
	armed_ready(&s, &l);
	/* measured above the set value counts as delivered: 4 x 1150 = 4600 */
	for (uint32_t i = 1; i <= 4; i++)
		assert_int_equal(pulse(&s, T0 + 3000 + i, SHOT0 + i, 1150, SET_UJ, &a),
				 SMPL_ACT_NONE);
	assert_int_equal(pulse(&s, T0 + 3005, SHOT0 + 5, 1150, SET_UJ, &a), SMPL_ACT_DISARM);
	assert_int_equal(a.reason, SMPL_REASON_ENERGY_LIMIT);
	assert_int_equal(s.session_energy_uj, 5750);
}

static void test_lost_pulse_reports_still_count(void **state)
{
	struct smpl_safety_limits l;
	struct smpl_safety s;
	struct smpl_action a;
	struct smpl_status_n st;

	(void)state;
	smpl_safety_default_limits(&l);
	l.pulses_per_patch = 5;
	armed_ready(&s, &l);
	assert_int_equal(pulse(&s, T0 + 3000, SHOT0 + 1, SET_UJ, SET_UJ, &a), SMPL_ACT_NONE);
	/* a repeated report is not a new pulse */
	assert_int_equal(pulse(&s, T0 + 3001, SHOT0 + 1, SET_UJ, SET_UJ, &a), SMPL_ACT_NONE);
	assert_int_equal(s.patch_pulses, 1);
	/* the status counter says 3 more than we saw */
	st = status_of(SMPL_STATE_EMITTING, 0);
	st.shot_count = SHOT0 + 4;
	assert_int_equal(feed(&s, T0 + 3100, st, &a), SMPL_ACT_NONE);
	assert_int_equal(s.patch_pulses, 4);
	/* the late reports of those pulses add nothing; a jump of 1 reaches 5 */
	assert_int_equal(pulse(&s, T0 + 3101, SHOT0 + 4, SET_UJ, SET_UJ, &a), SMPL_ACT_NONE);
	assert_int_equal(pulse(&s, T0 + 3200, SHOT0 + 5, SET_UJ, SET_UJ, &a), SMPL_ACT_DISARM);
	assert_int_equal(a.reason, SMPL_REASON_PULSE_LIMIT);
}

static void test_shot_gap_in_pulse_reports_counts(void **state)
{
	struct smpl_safety_limits l;
	struct smpl_safety s;
	struct smpl_action a;

	(void)state;
	smpl_safety_default_limits(&l);
	l.pulses_per_patch = 4;
	armed_ready(&s, &l);
	assert_int_equal(pulse(&s, T0 + 3000, SHOT0 + 1, SET_UJ, SET_UJ, &a), SMPL_ACT_NONE);
	assert_int_equal(pulse(&s, T0 + 3100, SHOT0 + 4, SET_UJ, SET_UJ, &a), SMPL_ACT_DISARM);
	assert_int_equal(s.patch_pulses, 4);
}

/* ---- S4: supervision ------------------------------------------------------------- */

static void owner_vanishes_in(uint8_t unit_state)
{
	struct smpl_safety s;
	struct smpl_action a;

	armed_ready(&s, NULL);
	feed(&s, T0 + 2500, status_of(unit_state, 0), NULL);
	assert_int_equal(smpl_safety_owner_vanished(&s, &a), SMPL_ACT_DISARM);
	assert_int_equal(a.reason, SMPL_REASON_OWNER_GONE);
	assert_false(smpl_safety_is_armed(&s));
	feed(&s, T0 + 2600, status_of(SMPL_STATE_STANDBY, 0), NULL);
	expect_refused(&s, T0 + 2600, WALL0 + 2600, SMPL_REASON_OWNER_GONE);
}

static void test_owner_vanishes_while_ready(void **state)
{
	(void)state;
	owner_vanishes_in(SMPL_STATE_READY);
}

static void test_owner_vanishes_while_emitting(void **state)
{
	(void)state;
	owner_vanishes_in(SMPL_STATE_EMITTING);
}

static void test_owner_vanishes_while_arming(void **state)
{
	struct smpl_safety s;
	struct smpl_verdict v;
	struct smpl_action a;

	(void)state;
	ready_to_arm(&s, NULL);
	smpl_safety_arm_begin(&s, T0, WALL0, &v);
	feed(&s, T0 + 10, status_of(SMPL_STATE_ARMING, 0), NULL);
	assert_int_equal(smpl_safety_owner_vanished(&s, &a), SMPL_ACT_DISARM);
}

static void test_idle_timeout_in_ready(void **state)
{
	struct smpl_safety s;
	struct smpl_action a;
	const uint64_t ready_at = T0 + 2000;	/* armed_ready reports READY here */

	(void)state;
	armed_ready(&s, NULL);
	assert_int_equal(smpl_safety_next_deadline(&s), ready_at + 60000);
	assert_int_equal(smpl_safety_tick(&s, ready_at + 59999, &a), SMPL_ACT_NONE);
	assert_int_equal(smpl_safety_tick(&s, ready_at + 60000, &a), SMPL_ACT_DISARM);
	assert_int_equal(a.reason, SMPL_REASON_IDLE_TIMEOUT);
	assert_false(smpl_safety_is_armed(&s));
	assert_int_equal(smpl_safety_next_deadline(&s), UINT64_MAX);
	assert_int_equal(smpl_safety_tick(&s, ready_at + 120000, &a), SMPL_ACT_NONE);
}

static void test_idle_timer_restarts_on_pulse(void **state)
{
	struct smpl_safety s;
	struct smpl_action a;

	(void)state;
	armed_ready(&s, NULL);
	pulse(&s, T0 + 50000, SHOT0 + 1, SET_UJ, SET_UJ, NULL);
	feed(&s, T0 + 50001, status_of(SMPL_STATE_READY, 0), NULL);
	assert_int_equal(smpl_safety_tick(&s, T0 + 109999, &a), SMPL_ACT_NONE);
	assert_int_equal(smpl_safety_tick(&s, T0 + 110000, &a), SMPL_ACT_DISARM);
}

static void test_no_idle_timeout_while_emitting(void **state)
{
	struct smpl_safety s;
	struct smpl_action a;

	(void)state;
	armed_ready(&s, NULL);
	feed(&s, T0 + 3000, status_of(SMPL_STATE_EMITTING, 0), NULL);
	assert_int_equal(smpl_safety_next_deadline(&s), UINT64_MAX);
	assert_int_equal(smpl_safety_tick(&s, T0 + 200000, &a), SMPL_ACT_NONE);
	assert_true(smpl_safety_is_armed(&s));
}

static void test_idle_timeout_when_unit_never_ready(void **state)
{
	struct smpl_safety s;
	struct smpl_verdict v;
	struct smpl_action a;

	(void)state;
	ready_to_arm(&s, NULL);
	smpl_safety_arm_begin(&s, T0, WALL0, &v);
	feed(&s, T0 + 10, status_of(SMPL_STATE_ARMING, 0), NULL);
	assert_int_equal(smpl_safety_tick(&s, T0 + 60000, &a), SMPL_ACT_DISARM);
	assert_int_equal(a.reason, SMPL_REASON_IDLE_TIMEOUT);
}

static void test_disconnect(void **state)
{
	struct smpl_safety s;
	struct smpl_action a;

	(void)state;
	armed_ready(&s, NULL);
	assert_int_equal(smpl_safety_disconnected(&s, T0 + 3000, &a), SMPL_ACT_DISARM);
	assert_int_equal(a.reason, SMPL_REASON_DISCONNECTED);
	assert_false(smpl_safety_is_armed(&s));
	expect_refused(&s, T0 + 3000, WALL0 + 3000, SMPL_REASON_DISCONNECTED);
	/* again: nothing armed */
	assert_int_equal(smpl_safety_disconnected(&s, T0 + 3001, &a), SMPL_ACT_NONE);
	/* replugged: parameters must be set again, state must be reported */
	smpl_safety_connected(&s, T0 + 4000);
	expect_refused(&s, T0 + 4000, WALL0 + 4000, SMPL_REASON_BUSY);
	feed(&s, T0 + 4010, status_of(SMPL_STATE_STANDBY, 0), NULL);
	expect_refused(&s, T0 + 4010, WALL0 + 4010, SMPL_REASON_PARAMS);
}

/* ---- S8: clock ---------------------------------------------------------------------- */

static void test_clock_bounds_both_ways(void **state)
{
	struct smpl_safety s;
	struct smpl_verdict v;

	(void)state;
	ready_to_arm(&s, NULL);
	/* the wall clock equal to the newest record is fine */
	smpl_safety_newest_record(&s, WALL0);
	assert_int_equal(smpl_safety_clock_ok(&s, T0, WALL0, &v), 0);
	assert_int_equal(smpl_safety_clock_ok(&s, T0, WALL0 - 1, &v), -ETIMEDOUT);
	assert_int_equal(v.reason, SMPL_REASON_CLOCK_BEHIND);
	/* an older record does not lower the newest */
	smpl_safety_newest_record(&s, WALL0 - 100000);
	assert_int_equal(smpl_safety_clock_ok(&s, T0, WALL0 - 1, &v), -ETIMEDOUT);
	/* exactly 300 s off the RTC either way is within the bound */
	smpl_safety_rtc(&s, T0, WALL0 / 1000 + 300);
	assert_int_equal(smpl_safety_clock_ok(&s, T0, WALL0, &v), 0);
	smpl_safety_rtc(&s, T0, WALL0 / 1000 - 300);
	assert_int_equal(smpl_safety_clock_ok(&s, T0, WALL0, &v), 0);
	smpl_safety_rtc(&s, T0, WALL0 / 1000 - 301);
	assert_int_equal(smpl_safety_clock_ok(&s, T0, WALL0, &v), -ETIMEDOUT);
	assert_int_equal(v.reason, SMPL_REASON_CLOCK_SKEW);
	assert_non_null(strstr(v.message, "301 s"));
}

static void test_clock_jump_after_rtc_read(void **state)
{
	struct smpl_safety s;
	struct smpl_verdict v;

	(void)state;
	ready_to_arm(&s, NULL);
	/* RTC read at T0; 1000 s pass on both clocks: fine */
	assert_int_equal(smpl_safety_clock_ok(&s, T0 + 1000000, WALL0 + 1000000, &v), 0);
	/* the host wall clock jumps 400 s ahead (or back) with no new RTC read */
	assert_int_equal(smpl_safety_clock_ok(&s, T0 + 1000, WALL0 + 401000, &v), -ETIMEDOUT);
	assert_int_equal(v.reason, SMPL_REASON_CLOCK_SKEW);
	assert_int_equal(smpl_safety_clock_ok(&s, T0 + 1000, WALL0 - 399000, &v), -ETIMEDOUT);
}

static void test_clock_check_disarms_when_armed(void **state)
{
	struct smpl_safety s;
	struct smpl_action a;
	struct smpl_status_n st;

	(void)state;
	armed_ready(&s, NULL);
	assert_int_equal(smpl_safety_clock_check(&s, T0 + 2500, WALL0 + 2500, &a), SMPL_ACT_NONE);
	assert_int_equal(smpl_safety_clock_check(&s, T0 + 2500, WALL0 - 600000, &a),
			 SMPL_ACT_DISARM);
	assert_int_equal(a.reason, SMPL_REASON_CLOCK_BEHIND);
	/* not armed: nothing to disarm, arming is refused instead */
	assert_int_equal(smpl_safety_clock_check(&s, T0 + 2600, WALL0 - 600000, &a), SMPL_ACT_NONE);

	/* a status report with a skewed RTC while armed disarms too */
	armed_ready(&s, NULL);
	st = status_of(SMPL_STATE_READY, 0);
	st.rtc_s = WALL0 / 1000 + 1000;
	assert_int_equal(feed(&s, T0 + 2600, st, &a), SMPL_ACT_DISARM);
	assert_int_equal(a.reason, SMPL_REASON_CLOCK_SKEW);
}

/* ---- session steps --------------------------------------------------------------- */

static void test_session_steps_refused_while_armed(void **state)
{
	struct smpl_safety s;
	struct smpl_verdict v;
	struct smpl_action a;

	(void)state;
	armed_ready(&s, NULL);
	assert_int_equal(smpl_safety_select_patch(&s, true, WALL0, 0, 0, &v), -EBUSY);
	assert_int_equal(smpl_safety_set_params(&s, true, 2000, &v), -EBUSY);
	assert_int_equal(s.expected_energy_uj, SET_UJ);
	assert_int_equal(smpl_safety_session_open(&s, &v), -EBUSY);
	assert_int_equal(smpl_safety_session_close(&s, &a), SMPL_ACT_DISARM);
	assert_int_equal(a.reason, SMPL_REASON_SESSION_ENDED);
	assert_false(smpl_safety_is_armed(&s));
	/* no session: patch and eyewear are refused */
	assert_int_equal(smpl_safety_select_patch(&s, true, WALL0, 0, 0, &v), -ENOENT);
	assert_int_equal(smpl_safety_confirm_eyewear(&s, &v), -ENOENT);
	assert_int_equal(smpl_safety_owner_vanished(&s, &a), SMPL_ACT_NONE);
}

static void test_new_session_forgets_eyewear_and_patch(void **state)
{
	struct smpl_safety s;
	struct smpl_verdict v;

	(void)state;
	ready_to_arm(&s, NULL);
	smpl_safety_session_close(&s, NULL);
	assert_int_equal(smpl_safety_session_open(&s, &v), 0);
	expect_refused(&s, T0, WALL0, SMPL_REASON_NO_PATCH);
	smpl_safety_select_patch(&s, true, WALL0, 0, 0, &v);
	expect_refused(&s, T0, WALL0, SMPL_REASON_EYEWEAR);
}

static void test_arm_failed_clears_armed(void **state)
{
	struct smpl_safety s;
	struct smpl_verdict v;

	(void)state;
	ready_to_arm(&s, NULL);
	assert_int_equal(smpl_safety_arm_begin(&s, T0, WALL0, &v), 0);
	smpl_safety_arm_failed(&s);
	assert_false(smpl_safety_is_armed(&s));
	may_arm_ok(&s, T0 + 1);
}

static void test_arm_failed_but_unit_armed(void **state)
{
	struct smpl_safety s;
	struct smpl_verdict v;
	struct smpl_action a;

	(void)state;
	/* ARM timed out, yet the unit carried it out */
	ready_to_arm(&s, NULL);
	assert_int_equal(smpl_safety_arm_begin(&s, T0, WALL0, &v), 0);
	smpl_safety_arm_failed(&s);
	assert_int_equal(feed(&s, T0 + 10, status_of(SMPL_STATE_ARMING, 0), &a), SMPL_ACT_DISARM);
	assert_int_equal(a.reason, SMPL_REASON_UNEXPECTED_ARM);
	/* once decided, the unit's further armed reports ask nothing more */
	assert_int_equal(feed(&s, T0 + 18, status_of(SMPL_STATE_ARMING, 0), &a), SMPL_ACT_NONE);

	/* ARMING was reported before the failure came back: READY still disarms */
	ready_to_arm(&s, NULL);
	assert_int_equal(smpl_safety_arm_begin(&s, T0, WALL0, &v), 0);
	assert_int_equal(feed(&s, T0 + 10, status_of(SMPL_STATE_ARMING, 0), &a), SMPL_ACT_NONE);
	smpl_safety_arm_failed(&s);
	assert_int_equal(feed(&s, T0 + 2000, status_of(SMPL_STATE_READY, 0), &a), SMPL_ACT_DISARM);
	assert_int_equal(a.reason, SMPL_REASON_UNEXPECTED_ARM);

	/* and a pulse from such a unit is a fault */
	ready_to_arm(&s, NULL);
	assert_int_equal(smpl_safety_arm_begin(&s, T0, WALL0, &v), 0);
	smpl_safety_arm_failed(&s);
	assert_int_equal(pulse(&s, T0 + 3000, SHOT0 + 1, SET_UJ, SET_UJ, &a), SMPL_ACT_FAULT);
	assert_int_equal(a.reason, SMPL_REASON_UNEXPECTED_PULSE);
}

/*
 * A unit that acknowledges the disarm but stays armed (attack4): once it
 * still reports an armed state SMPL_DISARM_CONFIRM_MS after the decision,
 * the core faults it DISARM_FAILED (once), and while it reports armed it
 * is "armed against us": the daemon feeds no watchdog of it.
 */
static void test_unit_that_does_not_obey_the_disarm_faults(void **state)
{
	struct smpl_safety s;
	struct smpl_action a;
	uint64_t T1 = T0 + 3000;		/* armed_ready() ends at T0 + 2000 */

	(void)state;
	armed_ready(&s, NULL);
	assert_false(smpl_safety_armed_against_us(&s));
	assert_int_equal(smpl_safety_disarm_request(&s, &a), SMPL_ACT_DISARM);
	assert_true(smpl_safety_armed_against_us(&s));	/* until it says STANDBY */
	/* the DISARM not sent yet (its worker starved): no fault however long */
	assert_int_equal(feed(&s, T1 + 5, status_of(SMPL_STATE_READY, 0), &a), SMPL_ACT_NONE);
	assert_int_equal(feed(&s, T1 + 5 + 3000, status_of(SMPL_STATE_READY, 0), &a), SMPL_ACT_NONE);
	smpl_safety_disarm_tried(&s);
	T1 += 3000;
	assert_int_equal(feed(&s, T1 + 10, status_of(SMPL_STATE_READY, 0), &a), SMPL_ACT_NONE);
	assert_int_equal(feed(&s, T1 + 10 + SMPL_DISARM_CONFIRM_MS - 1,
			      status_of(SMPL_STATE_EMITTING, 0), &a), SMPL_ACT_NONE);
	assert_int_equal(feed(&s, T1 + 10 + SMPL_DISARM_CONFIRM_MS,
			      status_of(SMPL_STATE_EMITTING, 0), &a), SMPL_ACT_FAULT);
	assert_int_equal(a.reason, SMPL_REASON_DISARM_FAILED);
	assert_string_equal(smpl_reason_name(a.reason), "disarm-failed");
	assert_int_equal(feed(&s, T1 + 2000, status_of(SMPL_STATE_READY, 0), &a), SMPL_ACT_NONE);
	assert_true(smpl_safety_armed_against_us(&s));
	assert_int_equal(feed(&s, T1 + 2100, status_of(SMPL_STATE_STANDBY, 0), &a), SMPL_ACT_NONE);
	assert_false(smpl_safety_armed_against_us(&s));

	/* a unit that obeys in time: no fault */
	armed_ready(&s, NULL);
	T1 = T0 + 3000;
	assert_int_equal(smpl_safety_disarm_request(&s, &a), SMPL_ACT_DISARM);
	smpl_safety_disarm_tried(&s);
	assert_int_equal(feed(&s, T1 + 10, status_of(SMPL_STATE_READY, 0), &a), SMPL_ACT_NONE);
	assert_int_equal(feed(&s, T1 + 30, status_of(SMPL_STATE_STANDBY, 0), &a), SMPL_ACT_NONE);
	assert_int_equal(feed(&s, T1 + 1000, status_of(SMPL_STATE_STANDBY, 0), &a), SMPL_ACT_NONE);
	assert_false(smpl_safety_armed_against_us(&s));
}

/*
 * Armed, a new pulse after a status saying STANDBY (attack4: a unit whose
 * status encoding is broken shows standby while it fires): its status is not
 * to be trusted, a fault.  A late report (at or below a counter seen) is not.
 */
static void test_pulse_while_the_unit_says_standby_faults(void **state)
{
	struct smpl_safety s;
	struct smpl_verdict v;
	struct smpl_action a;
	struct smpl_status_n st;

	(void)state;
	ready_to_arm(&s, NULL);
	assert_int_equal(smpl_safety_arm_begin(&s, T0, WALL0, &v), 0);
	st = status_of(SMPL_STATE_STANDBY, 0);
	st.shot_count = SHOT0;
	assert_int_equal(feed(&s, T0 + 10, st, &a), SMPL_ACT_NONE);
	/* a late report of a pulse the counter already showed: not new */
	assert_int_equal(pulse(&s, T0 + 20, SHOT0, SET_UJ, SET_UJ, &a), SMPL_ACT_NONE);
	assert_int_equal(pulse(&s, T0 + 3000, SHOT0 + 1, SET_UJ, SET_UJ, &a), SMPL_ACT_FAULT);
	assert_int_equal(a.reason, SMPL_REASON_UNEXPECTED_PULSE);
	assert_non_null(strstr(a.message, "not to be trusted"));
	assert_false(smpl_safety_is_armed(&s));
}

static void test_flags_dropping_while_armed_disarm(void **state)
{
	struct smpl_safety s;
	struct smpl_action a;
	struct smpl_status_n st;

	(void)state;
	armed_ready(&s, NULL);
	st = status_of(SMPL_STATE_READY, 0);
	st.flags = SMPL_SF_PARAMS_SET;
	assert_int_equal(feed(&s, T0 + 3000, st, &a), SMPL_ACT_DISARM);
	assert_int_equal(a.reason, SMPL_REASON_CALIBRATION);

	armed_ready(&s, NULL);
	st = status_of(SMPL_STATE_READY, 0);
	st.flags = SMPL_SF_CALIBRATED;
	assert_int_equal(feed(&s, T0 + 3000, st, &a), SMPL_ACT_DISARM);
	assert_int_equal(a.reason, SMPL_REASON_PARAMS);
}

static void test_reconnect_while_armed_forgets_arming(void **state)
{
	struct smpl_safety s;

	(void)state;
	armed_ready(&s, NULL);
	smpl_safety_connected(&s, T0 + 3000);	/* re-enumerated without a disconnect */
	assert_false(smpl_safety_is_armed(&s));
	expect_refused(&s, T0 + 3000, WALL0 + 3000, SMPL_REASON_BUSY);
}

/*
 * Random walk over every input.  After each step: an armed core implies
 * every S1 condition the core tracks still holds; a DISARM or FAULT answer
 * leaves it disarmed; a latched fault blocks arming.
 */
static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint32_t rnd(uint32_t n)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state % n);
}

#define DAY_MS 86400000LL

static bool unit_faulted_state(const struct smpl_safety *s)
{
	return s->state == SMPL_STATE_FAULT || s->unit_fault != SMPL_FAULT_NONE;
}

static void check_invariants(const struct smpl_safety *s, enum smpl_action_kind k,
			     uint64_t now, int64_t wall, int step)
{
	struct smpl_verdict v;
	uint32_t limit = s->patch_max_pulses;

	if (k != SMPL_ACT_NONE && s->armed)
		fail_msg("step %d: armed after a disarm answer", step);
	if (k == SMPL_ACT_FAULT && s->fault == SMPL_REASON_NONE)
		fail_msg("step %d: FAULT answered but nothing latched", step);
	if (s->fault != SMPL_REASON_NONE &&
	    smpl_safety_may_arm(s, now, wall, &v) != smpl_reason_errno(SMPL_REASON_FAULT_LATCHED) &&
	    v.reason != SMPL_REASON_DISCONNECTED)
		fail_msg("step %d: arming not blocked by a latched fault (%s)", step,
			 smpl_reason_name(v.reason));
	if (!s->armed)
		return;
	if (!s->connected || s->fault != SMPL_REASON_NONE || !s->session_open ||
	    !s->owner_present || !s->patch_selected || !s->patch_eligible ||
	    !s->eyewear_confirmed || !s->params_ok)
		fail_msg("step %d: armed while a session or unit condition fails", step);
	if (s->status_known && (s->interlocks || unit_faulted_state(s) ||
				!(s->flags & SMPL_SF_CALIBRATED)))
		fail_msg("step %d: armed with interlocks 0x%x state %u flags 0x%x", step,
			 s->interlocks, s->state, s->flags);
	if (limit && s->patch_pulses >= limit)
		fail_msg("step %d: armed at the pulse limit", step);
	if (s->limits.max_session_energy_uj &&
	    s->session_energy_uj >= s->limits.max_session_energy_uj)
		fail_msg("step %d: armed at the energy limit", step);
}

static void random_status(struct smpl_status_n *st, uint32_t shot, int64_t wall)
{
	static const uint8_t states[] = {
		SMPL_STATE_STANDBY, SMPL_STATE_STANDBY, SMPL_STATE_ARMING, SMPL_STATE_READY,
		SMPL_STATE_EMITTING, SMPL_STATE_FAULT, SMPL_STATE_SELF_TEST,
	};

	memset(st, 0, sizeof(*st));
	st->state = states[rnd(sizeof(states))];
	st->fault = st->state == SMPL_STATE_FAULT ? (uint8_t)(1 + rnd(SMPL_FAULT__MAX)) : 0;
	st->interlocks = rnd(5) == 0 ? (uint16_t)(1u << rnd(SMPL_IL_COUNT)) : 0;
	static const uint8_t flag_sets[] = {
		GOOD_FLAGS, SMPL_SF_CALIBRATED, SMPL_SF_PARAMS_SET, 0,
	};
	st->flags = rnd(4) ? GOOD_FLAGS : flag_sets[rnd(4)];
	st->shot_count = shot;
	st->rtc_s = wall / 1000 + (rnd(20) == 0 ? (int64_t)rnd(1000) - 500 : 0);
}

static const uint32_t walk_rates[] = {
	1, 1000000, 7, 1000000, 0, UINT32_MAX, 1, 1500,
};
#define N_WALK_RATES (sizeof(walk_rates) / sizeof(walk_rates[0]))

static void test_random_walk_invariants(void **state)
{
	unsigned int rates_set = 0;
	struct smpl_safety_limits l;
	struct smpl_safety s;
	struct smpl_verdict v;
	struct smpl_action a;
	struct smpl_status_n st;
	struct smpl_pulse_n p;
	uint64_t now = T0;
	int64_t wall_skew = 0;
	uint32_t shot = SHOT0;
	unsigned int arms = 0, pulses = 0, faults = 0;
	uint64_t seen = 0;

	(void)state;
	smpl_safety_default_limits(&l);
	l.pulses_per_patch = 10;	/* test spots (5) reach theirs first */
	l.max_session_energy_uj = 9000;
	smpl_safety_init(&s, &l);
	for (int step = 0; step < 1000000; step++) {
		enum smpl_action_kind k = SMPL_ACT_NONE;
		int64_t wall;

		now += rnd(3000);
		if (rnd(500) == 0)
			wall_skew = (int64_t)rnd(1200000) - 600000;
		wall = WALL0 + (int64_t)(now - T0) + wall_skew;
		switch (rnd(18)) {
		case 0: case 1: case 2:
			random_status(&st, shot, wall);
			if (s.armed && rnd(10)) {	/* mostly a healthy armed unit */
				st = status_of(rnd(2) ? SMPL_STATE_READY : SMPL_STATE_EMITTING, 0);
				st.shot_count = shot;
				st.rtc_s = wall / 1000;
			} else if (!s.armed && rnd(3)) {	/* mostly a healthy idle one */
				st = status_of(SMPL_STATE_STANDBY, 0);
				st.shot_count = shot;
				st.rtc_s = wall / 1000;
			}
			k = smpl_safety_status(&s, now, wall, &st, &a);
			break;
		case 3: case 4:
			/* a unit emits when armed; a broken one, rarely, when not */
			if (!s.armed && rnd(50))
				break;
			if (s.armed && rnd(10) && s.state != SMPL_STATE_READY &&
			    s.state != SMPL_STATE_EMITTING) {
				/* a healthy unit reports EMITTING before its pulses */
				st = status_of(SMPL_STATE_EMITTING, 0);
				st.shot_count = shot;
				st.rtc_s = wall / 1000;
				k = smpl_safety_status(&s, now, wall, &st, &a);
				if (k != SMPL_ACT_NONE)
					break;
			}
			shot += rnd(3);
			p.shot = shot;
			p.set_uj = rnd(8) ? SET_UJ : SET_UJ + rnd(500);
			p.measured_uj = SET_UJ - 250 + rnd(500);
			k = smpl_safety_pulse(&s, now, &p, &a);
			pulses++;
			break;
		case 5: case 6:
			if (smpl_safety_arm_begin(&s, now, wall, &v) == 0)
				arms++;
			break;
		case 7:
			if (rnd(4) == 0)
				smpl_safety_arm_failed(&s);
			break;
		case 8:
			k = smpl_safety_disarm_request(&s, &a);
			break;
		case 9:
			if (rnd(2))
				smpl_safety_session_open(&s, &v);
			else
				k = smpl_safety_session_close(&s, &a);
			break;
		case 10:
			if (rnd(4) == 0)
				k = smpl_safety_owner_vanished(&s, &a);
			break;
		case 11:
			smpl_safety_select_patch(&s, rnd(5) != 0, wall + DAY_MS, rnd(3) ? 0 : 5, 0, &v);
			break;
		case 12:
			smpl_safety_confirm_eyewear(&s, &v);
			break;
		case 13:
			smpl_safety_set_params(&s, rnd(6) != 0, SET_UJ, &v);
			/* mostly a rate the walk's pulses keep, some it outruns, 0 and the top
			 * (in turn, not from rnd(): the walk's course stays the same) */
			smpl_safety_set_rate(&s, walk_rates[rates_set++ % N_WALK_RATES]);
			break;
		case 14:
			now += rnd(70000);
			k = smpl_safety_tick(&s, now, &a);
			break;
		case 15:
			k = smpl_safety_clock_check(&s, now, wall, &a);
			break;
		case 16:
			if (rnd(10) == 0)
				k = smpl_safety_disconnected(&s, now, &a);
			else if (!s.connected)
				smpl_safety_connected(&s, now);
			break;
		case 17:
			if (smpl_safety_acknowledge(&s, &v) == 0 && rnd(3) == 0)
				smpl_safety_newest_record(&s, wall - (int64_t)rnd(5000));
			break;
		}
		if (k == SMPL_ACT_FAULT)
			faults++;
		if (k != SMPL_ACT_NONE)
			seen |= 1ULL << a.reason;
		check_invariants(&s, k, now, wall, step);
	}
	/* the walk reached the interesting places */
	assert_true(arms > 300);
	assert_true(pulses > 500);
	assert_true(faults > 100);
	for (int r = SMPL_REASON_UNIT_FAULT; r < SMPL_REASON__COUNT; r++)
		if (r != SMPL_REASON_FAULT_LATCHED && r != SMPL_REASON_BUSY &&
		    r != SMPL_REASON_CLOCK_NO_RTC && r != SMPL_REASON_NO_SESSION &&
		    r != SMPL_REASON_NO_PATCH && r != SMPL_REASON_COOLDOWN &&
		    r != SMPL_REASON_EYEWEAR && r != SMPL_REASON_DAEMON_STOPPING &&
		    r != SMPL_REASON_COUNTER_BACK && r != SMPL_REASON_COUNTER_JUMP &&
		    r != SMPL_REASON_RECORDS_FAILED && r != SMPL_REASON_RECORDS_MISSING &&
		    r != SMPL_REASON_DISARM_FAILED &&	/* needs the daemon's DISARM sent */
		    !(seen & (1ULL << r)))
			fail_msg("the walk never disarmed for %s",
				 smpl_reason_name((enum smpl_reason)r));
}

/* Issue 11.7: a late pulse report never moves the counter back nor counts twice. */
static void test_late_pulse_report_counts_once(void **state)
{
	struct smpl_safety s;
	struct smpl_action a;

	(void)state;
	armed_ready(&s, NULL);
	/* A status says 3 shots since arming: counted as 3 pulses. */
	feed(&s, T0 + 3000, status_shot(SMPL_STATE_EMITTING, SHOT0 + 3), NULL);
	assert_int_equal(s.patch_pulses, 3);
	/* Their reports come late: nothing more counted, the counter stays. */
	for (uint32_t i = 1; i <= 3; i++)
		assert_int_equal(pulse(&s, T0 + 3000 + i, SHOT0 + i, SET_UJ, SET_UJ, &a),
				 SMPL_ACT_NONE);
	assert_int_equal(s.last_shot, SHOT0 + 3);
	assert_int_equal(s.patch_pulses, 3);
	/* The next status at the same counter counts nothing either. */
	feed(&s, T0 + 3100, status_shot(SMPL_STATE_EMITTING, SHOT0 + 3), NULL);
	assert_int_equal(s.patch_pulses, 3);
	/* An older status (the stream and a GET_STATUS crossed) never moves it back. */
	feed(&s, T0 + 3200, status_shot(SMPL_STATE_EMITTING, SHOT0 + 1), NULL);
	assert_int_equal(s.last_shot, SHOT0 + 3);
	feed(&s, T0 + 3300, status_shot(SMPL_STATE_EMITTING, SHOT0 + 3), NULL);
	assert_int_equal(s.patch_pulses, 3);
}

/* Issue 11.7: a hostile RTC cannot overflow the clock check: unreliable. */
static void test_hostile_rtc_is_unreliable(void **state)
{
	static const int64_t hostile[] = { INT64_MAX, INT64_MAX / 1000 + 1, -1, INT64_MIN,
					   253402300800LL };
	struct smpl_safety s;
	struct smpl_verdict v;

	(void)state;
	for (size_t i = 0; i < sizeof(hostile) / sizeof(hostile[0]); i++) {
		ready_to_arm(&s, NULL);
		smpl_safety_rtc(&s, T0, hostile[i]);
		assert_int_equal(smpl_safety_clock_ok(&s, T0 + 5000, WALL0, &v), -ETIMEDOUT);
		assert_int_equal(v.reason, SMPL_REASON_CLOCK_SKEW);
		assert_int_equal(smpl_safety_arm_begin(&s, T0 + 5000, WALL0, &v), -ETIMEDOUT);
	}
}

/* A fault the daemon finds (a counter below the records) latches like any other. */
static void test_daemon_found_fault_latches(void **state)
{
	struct smpl_safety s;
	struct smpl_verdict v;
	struct smpl_action a;

	(void)state;
	armed_ready(&s, NULL);
	assert_int_equal(smpl_safety_fault(&s, SMPL_REASON_COUNTER_BACK, "counter 3 < 9", &a),
			 SMPL_ACT_FAULT);
	assert_int_equal(a.reason, SMPL_REASON_COUNTER_BACK);
	assert_false(smpl_safety_is_armed(&s));
	assert_true(smpl_safety_fault_latched(&s));
	feed(&s, T0 + 4000, status_of(SMPL_STATE_STANDBY, 0), NULL);
	assert_int_equal(smpl_safety_may_arm(&s, T0 + 4000, WALL0, &v), -EIO);
	assert_int_equal(v.reason, SMPL_REASON_FAULT_LATCHED);
	assert_string_equal(smpl_reason_name(SMPL_REASON_COUNTER_BACK), "counter-went-back");
	assert_int_equal(smpl_safety_acknowledge(&s, &v), 0);
	assert_false(smpl_safety_fault_latched(&s));
	/* hole 102: a counter that leapt, the same way */
	assert_string_equal(smpl_reason_name(SMPL_REASON_COUNTER_JUMP), "counter-jumped");
	assert_string_equal(smpl_reason_dbus_error(SMPL_REASON_COUNTER_JUMP),
			    "org.smplaser.Laser1.Error.DeviceFault");
	assert_int_equal(smpl_safety_fault(&s, SMPL_REASON_COUNTER_JUMP, "leapt", &a),
			 SMPL_ACT_FAULT);
	assert_true(smpl_safety_fault_latched(&s));
}

static void test_reason_tables(void **state)
{
	(void)state;
	assert_null(smpl_reason_dbus_error(SMPL_REASON_NONE));
	assert_int_equal(smpl_reason_errno(SMPL_REASON_NONE), 0);
	for (int r = 1; r < SMPL_REASON__COUNT; r++) {
		const char *e = smpl_reason_dbus_error((enum smpl_reason)r);
		const char *n = smpl_reason_name((enum smpl_reason)r);

		assert_true(n && n[0] && strcmp(n, "unknown") != 0);
		assert_true(smpl_reason_errno((enum smpl_reason)r) < 0);
		if (e)
			assert_true(strncmp(e, "org.smplaser.Laser1.Error.", 26) == 0);
	}
	assert_string_equal(smpl_reason_name(SMPL_REASON__COUNT), "unknown");
	assert_null(smpl_reason_dbus_error(SMPL_REASON_IDLE_TIMEOUT));
}

/* ---- repetition rate (S1/S5: the unit fires at the rate it was set) ------------ */

#define RATE_5HZ	5000u		/* milli-Hz */
#define RATE_1HZ	1000u

/* Armed, READY, the rate set; the counter at SHOT0. */
static void armed_at_rate(struct smpl_safety *s, uint32_t rate_mhz)
{
	struct smpl_safety_limits l;

	smpl_safety_default_limits(&l);
	l.pulses_per_patch = 0;		/* long bursts: no limit in the way */
	l.max_session_energy_uj = 0;
	armed_ready(s, &l);
	smpl_safety_set_rate(s, rate_mhz);
}

/* The footswitch pressed at @t: the unit reports EMITTING (counter at @shot). */
static enum smpl_action_kind state_at(struct smpl_safety *s, uint64_t t, uint8_t state,
				      uint32_t shot, struct smpl_action *a)
{
	struct smpl_status_n st = status_shot(state, shot);

	st.rtc_s = (WALL0 + (int64_t)(t - T0)) / 1000;	/* the unit's clock goes on */
	return feed(s, t, st, a);
}

static enum smpl_action_kind emitting(struct smpl_safety *s, uint64_t t, uint32_t shot,
				      struct smpl_action *a)
{
	return state_at(s, t, SMPL_STATE_EMITTING, shot, a);
}

static enum smpl_action_kind released(struct smpl_safety *s, uint64_t t, uint32_t shot,
				      struct smpl_action *a)
{
	return state_at(s, t, SMPL_STATE_READY, shot, a);
}

/*
 * A burst of @n pulses fired every @period_ms from @t0, each received
 * @late_ms(i) after it was fired (jitter); returns the first pulse (1-based)
 * that was not answered NONE, 0 if none.
 */
static uint32_t burst(struct smpl_safety *s, uint64_t t0, uint32_t n, uint64_t period_ms,
		      uint64_t (*late_ms)(uint32_t i), struct smpl_action *a)
{
	uint32_t shot0 = s->last_shot;

	if (emitting(s, t0 + (late_ms ? late_ms(0) : 0), shot0, a) != SMPL_ACT_NONE)
		return 1;
	for (uint32_t i = 1; i <= n; i++) {
		uint64_t at = t0 + (i - 1) * period_ms + (late_ms ? late_ms(i) : 0);

		if (pulse(s, at, shot0 + i, SET_UJ, SET_UJ, a) != SMPL_ACT_NONE)
			return i;
	}
	return 0;
}

static uint64_t jitter(uint32_t i)
{
	return (uint64_t)((i * 37u) % 31u);	/* 0..30 ms, in no order */
}

static void test_rate_held_at_the_set_rate_never_faults(void **state)
{
	static const uint32_t rates[] = { 1, 100, RATE_1HZ, 3333, RATE_5HZ, 7000, 10000, 20000 };
	struct smpl_safety s;
	struct smpl_action a;

	(void)state;
	for (size_t i = 0; i < sizeof(rates) / sizeof(rates[0]); i++) {
		/* the firmware's own timing: burst start + k * 1e6 / rate, in whole ms */
		uint64_t period = 1000000u / rates[i];
		uint32_t n = (uint32_t)(10000 / period) + 1;	/* 10 s held (1 pulse at 1 mHz) */

		armed_at_rate(&s, rates[i]);
		assert_int_equal(burst(&s, T0 + 3000, n, period, jitter, &a), 0);
		assert_true(smpl_safety_is_armed(&s));
		assert_int_equal(s.patch_pulses, n);
		/* held on: a second burst of the same length after a release */
		assert_int_equal(released(&s, T0 + 3000 + n * period, SHOT0 + n, &a), SMPL_ACT_NONE);
		assert_int_equal(burst(&s, T0 + 3100 + n * period, n, period, NULL, &a), 0);
		assert_true(smpl_safety_is_armed(&s));
	}
}

static void test_rate_footswitch_taps_faster_than_the_rate_never_fault(void **state)
{
	struct smpl_safety s;
	struct smpl_action a;
	uint64_t t = T0 + 3000;
	uint32_t shot = SHOT0;

	(void)state;
	/* a technician tapping at 8 Hz, the rate set to 1 Hz: a pulse per tap */
	armed_at_rate(&s, RATE_1HZ);
	for (int tap = 0; tap < 40; tap++, t += 125) {
		assert_int_equal(emitting(&s, t, shot, &a), SMPL_ACT_NONE);
		assert_int_equal(pulse(&s, t + 1, ++shot, SET_UJ, SET_UJ, &a), SMPL_ACT_NONE);
		assert_int_equal(released(&s, t + 60, shot, &a), SMPL_ACT_NONE);
	}
	/* the same taps received in a batch (a stalled daemon): each its own burst */
	for (int tap = 0; tap < 40; tap++) {
		assert_int_equal(emitting(&s, t, shot, &a), SMPL_ACT_NONE);
		assert_int_equal(pulse(&s, t, ++shot, SET_UJ, SET_UJ, &a), SMPL_ACT_NONE);
		assert_int_equal(released(&s, t, shot, &a), SMPL_ACT_NONE);
	}
	assert_true(smpl_safety_is_armed(&s));
	assert_int_equal(s.patch_pulses, 80);
}

static void test_rate_ten_times_faults_within_a_few_pulses(void **state)
{
	struct smpl_safety s;
	struct smpl_action a;
	uint32_t at;

	(void)state;
	armed_at_rate(&s, RATE_5HZ);
	/* 50 Hz: n > 4 + 6.25 * (0.5 + (n - 1) / 50), first at n = 9 (160 ms) */
	at = burst(&s, T0 + 3000, 100, 20, NULL, &a);
	assert_int_equal(at, 9);
	assert_int_equal(a.kind, SMPL_ACT_FAULT);
	assert_int_equal(a.reason, SMPL_REASON_RATE_EXCEEDED);
	assert_string_equal(smpl_reason_name(a.reason), "rate-exceeded");
	assert_non_null(strstr(a.message, "5.000 Hz"));
	assert_false(smpl_safety_is_armed(&s));
	assert_true(smpl_safety_fault_latched(&s));
	/* the pulses fired before the unit obeys count, and fault no more */
	for (uint32_t i = 10; i <= 14; i++)
		assert_int_equal(pulse(&s, T0 + 3000 + (i - 1) * 20, SHOT0 + i, SET_UJ, SET_UJ, &a),
				 SMPL_ACT_NONE);
	assert_int_equal(s.patch_pulses, 14);
	assert_int_equal(s.fault, SMPL_REASON_RATE_EXCEEDED);
}

static void test_rate_twice_is_caught_a_fifth_more_is_not(void **state)
{
	struct smpl_safety s;
	struct smpl_action a;

	(void)state;
	/* 2x (10 Hz for 5): n > 4 + 6.25 (0.5 + (n - 1) / 10), first at n = 18 */
	armed_at_rate(&s, RATE_5HZ);
	assert_int_equal(burst(&s, T0 + 3000, 100, 100, NULL, &a), 18);
	assert_int_equal(a.reason, SMPL_REASON_RATE_EXCEEDED);
	/* 1.3x (76 ms for 100): caught in a long burst (n > 10.25 + 0.95 (n - 1), n = 187) */
	armed_at_rate(&s, 10000);
	assert_int_equal(burst(&s, T0 + 3000, 300, 1000 / 13, NULL, &a), 187);
	assert_int_equal(a.reason, SMPL_REASON_RATE_EXCEEDED);
	/* 1.2x is inside the margin: a minute held, no fault */
	armed_at_rate(&s, RATE_5HZ);
	assert_int_equal(burst(&s, T0 + 3000, 360, 1000 / 6, NULL, &a), 0);
	assert_true(smpl_safety_is_armed(&s));
}

static uint64_t stalled_1140(uint32_t i)
{
	/* the daemon stalled until 1140 ms after the press; then on time */
	uint64_t fired = i ? (uint64_t)(i - 1) * 200 : 0;

	return fired < 1140 ? 1140 - fired : 0;
}

static uint64_t stalled_3s_after_pulse_2(uint32_t i)
{
	uint64_t fired = i ? (uint64_t)(i - 1) * 200 : 0;

	return i > 2 && fired < 3200 ? 3200 - fired : 0;
}

static void test_rate_late_batch_within_the_bound_never_faults(void **state)
{
	struct smpl_safety s;
	struct smpl_action a;
	uint32_t shot;

	(void)state;
	/* 5 Hz: the burst's beginning and its pulses 1-6 received at once 1140 ms late,
	 * 0.5 s + (3 + 0.2) / 5 Hz: the bound */
	armed_at_rate(&s, RATE_5HZ);
	assert_int_equal(burst(&s, T0 + 3000, 50, 200, stalled_1140, &a), 0);
	assert_true(smpl_safety_is_armed(&s));
	/* a stall in the middle of a burst (its beginning on time): any length */
	armed_at_rate(&s, RATE_5HZ);
	assert_int_equal(burst(&s, T0 + 3000, 50, 200, stalled_3s_after_pulse_2, &a), 0);
	assert_true(smpl_safety_is_armed(&s));
	/* 1 Hz: a batch of 4 at once (3 s late; the bound is 3.7 s) */
	armed_at_rate(&s, RATE_1HZ);
	shot = s.last_shot;
	assert_int_equal(emitting(&s, T0 + 6200, shot, &a), SMPL_ACT_NONE);
	for (uint32_t i = 1; i <= 4; i++)
		assert_int_equal(pulse(&s, T0 + 6200, shot + i, SET_UJ, SET_UJ, &a), SMPL_ACT_NONE);
	assert_int_equal(pulse(&s, T0 + 7000, shot + 5, SET_UJ, SET_UJ, &a), SMPL_ACT_NONE);
	assert_true(smpl_safety_is_armed(&s));
	/* beyond the bound: at 5 Hz, 8 at once is more than the slack, whatever the cause */
	armed_at_rate(&s, RATE_5HZ);
	shot = s.last_shot;
	assert_int_equal(emitting(&s, T0 + 4000, shot, &a), SMPL_ACT_NONE);
	for (uint32_t i = 1; i <= 7; i++)
		assert_int_equal(pulse(&s, T0 + 4000, shot + i, SET_UJ, SET_UJ, &a), SMPL_ACT_NONE);
	assert_int_equal(pulse(&s, T0 + 4000, shot + 8, SET_UJ, SET_UJ, &a), SMPL_ACT_FAULT);
	assert_int_equal(a.reason, SMPL_REASON_RATE_EXCEEDED);
}

static void test_rate_counts_lost_reports_and_a_burst_without_emitting(void **state)
{
	struct smpl_safety s;
	struct smpl_action a;

	(void)state;
	/* no EMITTING status: the first pulse begins the burst; a gap counts */
	armed_at_rate(&s, RATE_5HZ);
	assert_int_equal(pulse(&s, T0 + 3000, SHOT0 + 1, SET_UJ, SET_UJ, &a), SMPL_ACT_NONE);
	assert_int_equal(pulse(&s, T0 + 3020, SHOT0 + 2, SET_UJ, SET_UJ, &a), SMPL_ACT_NONE);
	assert_int_equal(pulse(&s, T0 + 3040, SHOT0 + 8, SET_UJ, SET_UJ, &a), SMPL_ACT_FAULT);
	assert_int_equal(a.reason, SMPL_REASON_RATE_EXCEEDED);
	/* a pulse reported after READY opens no burst that a later press inherits */
	armed_at_rate(&s, RATE_5HZ);
	assert_int_equal(burst(&s, T0 + 3000, 5, 200, NULL, &a), 0);
	assert_int_equal(released(&s, T0 + 3900, SHOT0 + 5, &a), SMPL_ACT_NONE);
	assert_int_equal(pulse(&s, T0 + 3910, SHOT0 + 6, SET_UJ, SET_UJ, &a), SMPL_ACT_NONE);
	/* 20 s later a press; the unit fires at 50 Hz: caught as in a fresh burst */
	assert_int_equal(burst(&s, T0 + 23910, 100, 20, NULL, &a), 9);
	assert_int_equal(a.reason, SMPL_REASON_RATE_EXCEEDED);
	/* a late report (at or below the counter) is no pulse of the burst */
	armed_at_rate(&s, RATE_5HZ);
	assert_int_equal(emitting(&s, T0 + 3000, SHOT0, &a), SMPL_ACT_NONE);
	for (uint32_t i = 0; i < 20; i++)
		assert_int_equal(pulse(&s, T0 + 3000 + i, SHOT0, SET_UJ, SET_UJ, &a),
				 SMPL_ACT_NONE);
	assert_true(smpl_safety_is_armed(&s));
}

static void test_rate_extremes_never_overflow(void **state)
{
	struct smpl_safety s;
	struct smpl_action a;
	struct smpl_verdict v;

	(void)state;
	/* rate 0: unknown, not supervised */
	armed_at_rate(&s, 0);
	assert_int_equal(burst(&s, T0 + 3000, 100, 0, NULL, &a), 0);
	/* the highest rate, the longest times: the allowance saturates */
	armed_at_rate(&s, UINT32_MAX);
	assert_int_equal(emitting(&s, T0 + 3000, SHOT0, &a), SMPL_ACT_NONE);
	assert_int_equal(pulse(&s, T0 + 3000, SHOT0 + 4, SET_UJ, SET_UJ, &a), SMPL_ACT_NONE);
	assert_int_equal(pulse(&s, T0 + 3001, SHOT0 + 1000, SET_UJ, SET_UJ, &a), SMPL_ACT_NONE);
	assert_int_equal(pulse(&s, UINT64_MAX - 1, SHOT0 + 2000, SET_UJ, SET_UJ, &a),
			 SMPL_ACT_NONE);
	assert_true(smpl_safety_is_armed(&s));
	/* 1 mHz, the lowest: 4 pulses at one instant pass, the 5th faults */
	armed_at_rate(&s, 1);
	assert_int_equal(burst(&s, T0 + 3000, 5, 0, NULL, &a), 5);
	/* a time before the burst's beginning (never on a monotonic clock): no wrap */
	armed_at_rate(&s, RATE_1HZ);
	assert_int_equal(emitting(&s, T0 + 9000, SHOT0, &a), SMPL_ACT_NONE);
	assert_int_equal(pulse(&s, T0 + 10, SHOT0 + 1, SET_UJ, SET_UJ, &a), SMPL_ACT_NONE);
	/* the counter near its end */
	armed_at_rate(&s, RATE_1HZ);
	smpl_safety_counter_reset(&s, UINT32_MAX - 3);
	assert_int_equal(emitting(&s, T0 + 3000, UINT32_MAX - 3, &a), SMPL_ACT_NONE);
	for (uint32_t i = 1; i <= 3; i++)
		assert_int_equal(pulse(&s, T0 + 3000 + i * 1000, UINT32_MAX - 3 + i, SET_UJ,
				       SET_UJ, &a), SMPL_ACT_NONE);
	/* a counter reset mid-burst (acknowledged) begins no negative count */
	smpl_safety_counter_reset(&s, 5);
	assert_int_equal(pulse(&s, T0 + 7000, 6, SET_UJ, SET_UJ, &a), SMPL_ACT_NONE);
	assert_true(smpl_safety_is_armed(&s));
	/* a fault, acknowledged, armed again: a new burst */
	armed_at_rate(&s, RATE_5HZ);
	assert_int_equal(burst(&s, T0 + 3000, 12, 20, NULL, &a), 9);
	assert_int_equal(released(&s, T0 + 3300, s.last_shot, &a), SMPL_ACT_NONE);
	assert_int_equal(state_at(&s, T0 + 3400, SMPL_STATE_STANDBY, s.last_shot, &a),
			 SMPL_ACT_NONE);
	assert_int_equal(smpl_safety_acknowledge(&s, &v), 0);
	assert_int_equal(smpl_safety_arm_begin(&s, T0 + 4000, WALL0 + 4000, &v), 0);
	assert_int_equal(released(&s, T0 + 6000, s.last_shot, &a), SMPL_ACT_NONE);
	assert_int_equal(burst(&s, T0 + 7000, 50, 200, jitter, &a), 0);
	assert_true(smpl_safety_is_armed(&s));
}

#define N_BREACHES (sizeof(breaches) / sizeof(breaches[0]))

int main(void)
{
	static char names[N_BREACHES][80];
	static const struct CMUnitTest other_tests[] = {
		cmocka_unit_test(test_all_conditions_allow_arming),
		cmocka_unit_test(test_cooldown_message_names_date),
		cmocka_unit_test(test_energy_at_and_beyond_20pct),
		cmocka_unit_test(test_energy_tightened_tolerance),
		cmocka_unit_test(test_energy_set_value_mismatch),
		cmocka_unit_test(test_parameters_without_energy_never_arm),
		cmocka_unit_test(test_energy_fault_latches_until_ack),
		cmocka_unit_test(test_ack_refused_while_cause_persists),
		cmocka_unit_test(test_ack_refused_calibration_after_energy_fault),
		cmocka_unit_test(test_ack_refused_disconnected_or_armed),
		cmocka_unit_test(test_unit_fault_once_and_again),
		cmocka_unit_test(test_second_unit_fault_while_latched_names_the_new_one),
		cmocka_unit_test(test_unit_already_faulted_at_connect),
		cmocka_unit_test(test_interlock_opening_disarms),
		cmocka_unit_test(test_interlock_while_arming_disarms),
		cmocka_unit_test(test_stale_standby_after_arm_keeps_armed),
		cmocka_unit_test(test_unit_leaving_armed_state_disarms),
		cmocka_unit_test(test_unit_armed_without_us),
		cmocka_unit_test(test_pulse_while_not_armed_faults),
		cmocka_unit_test(test_pulse_in_flight_after_disarm_tolerated),
		cmocka_unit_test(test_pulse_after_unit_reached_standby_faults),
		cmocka_unit_test(test_pulses_per_patch_limit),
		cmocka_unit_test(test_test_spot_limit_is_lower),
		cmocka_unit_test(test_session_energy_limit),
		cmocka_unit_test(test_lost_pulse_reports_still_count),
		cmocka_unit_test(test_shot_gap_in_pulse_reports_counts),
		cmocka_unit_test(test_owner_vanishes_while_ready),
		cmocka_unit_test(test_owner_vanishes_while_emitting),
		cmocka_unit_test(test_owner_vanishes_while_arming),
		cmocka_unit_test(test_idle_timeout_in_ready),
		cmocka_unit_test(test_idle_timer_restarts_on_pulse),
		cmocka_unit_test(test_no_idle_timeout_while_emitting),
		cmocka_unit_test(test_idle_timeout_when_unit_never_ready),
		cmocka_unit_test(test_disconnect),
		cmocka_unit_test(test_clock_bounds_both_ways),
		cmocka_unit_test(test_clock_jump_after_rtc_read),
		cmocka_unit_test(test_clock_check_disarms_when_armed),
		cmocka_unit_test(test_session_steps_refused_while_armed),
		cmocka_unit_test(test_new_session_forgets_eyewear_and_patch),
		cmocka_unit_test(test_arm_failed_clears_armed),
		cmocka_unit_test(test_arm_failed_but_unit_armed),
		cmocka_unit_test(test_unit_that_does_not_obey_the_disarm_faults),
		cmocka_unit_test(test_pulse_while_the_unit_says_standby_faults),
		cmocka_unit_test(test_flags_dropping_while_armed_disarm),
		cmocka_unit_test(test_reconnect_while_armed_forgets_arming),
		cmocka_unit_test(test_random_walk_invariants),
		cmocka_unit_test(test_late_pulse_report_counts_once),
		cmocka_unit_test(test_hostile_rtc_is_unreliable),
		cmocka_unit_test(test_daemon_found_fault_latches),
		cmocka_unit_test(test_reason_tables),
		cmocka_unit_test(test_rate_held_at_the_set_rate_never_faults),
		cmocka_unit_test(test_rate_footswitch_taps_faster_than_the_rate_never_fault),
		cmocka_unit_test(test_rate_ten_times_faults_within_a_few_pulses),
		cmocka_unit_test(test_rate_twice_is_caught_a_fifth_more_is_not),
		cmocka_unit_test(test_rate_late_batch_within_the_bound_never_faults),
		cmocka_unit_test(test_rate_counts_lost_reports_and_a_burst_without_emitting),
		cmocka_unit_test(test_rate_extremes_never_overflow),
	};
	enum { N_OTHER = sizeof(other_tests) / sizeof(other_tests[0]) };
	static struct CMUnitTest tests[N_BREACHES + N_OTHER];

	/* one named test per arming condition, then the event tests */
	for (size_t i = 0; i < N_BREACHES; i++) {
		snprintf(names[i], sizeof(names[i]), "arming refused: %s", breaches[i].what);
		tests[i] = (struct CMUnitTest){
			.name = names[i],
			.test_func = test_one_condition_missing,
			.initial_state = (void *)&breaches[i],
		};
	}
	memcpy(tests + N_BREACHES, other_tests, sizeof(other_tests));
	return _cmocka_run_group_tests("test_safety", tests, N_BREACHES + N_OTHER,
				       NULL, NULL);
}
