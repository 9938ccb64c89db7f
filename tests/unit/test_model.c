// SPDX-License-Identifier: MIT
/*
 * Unit tests of the firmware model (sim/model.c).  Every command travels as
 * a wire frame and every reply and report is checked with the codec's
 * decoder, as a host would see them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <endian.h>

#include <cmocka.h>

#include "codec.h"
#include "model.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define NO_REPLY 0xffff		/* expected "status" of a command that got no reply */
#define WALL_START 1795000000	/* wall clock at t = 0 (2026-11-18) */
#define T0 1000000		/* monotonic ms at which each test starts */

/* ---- a bench: the model, its clock, and a host's sequence numbers --------- */

struct bench {
	struct smpl_model *m;
	struct smpl_model_config cfg;
	uint64_t now;
	uint16_t seq;
};

static const uint16_t all_interlocks[SMPL_IL_COUNT] = {
	SMPL_IL_KEY, SMPL_IL_DOOR, SMPL_IL_ESTOP, SMPL_IL_HANDPIECE,
	SMPL_IL_COOLING, SMPL_IL_TEMPERATURE, SMPL_IL_SHUTTER,
};

static struct smpl_params_n good_params(void)
{
	struct smpl_params_n p = {
		.wavelength_nm = 1064, .spot_um = 3000, .fluence_mj_cm2 = 4000,
		.pulse_ps = 10000, .rate_mhz = 2000,	/* 2 Hz */
	};
	return p;
}

static void bench_start_cfg(struct bench *b, const struct smpl_model_config *cfg,
			    const struct smpl_model_nv *nv)
{
	memset(b, 0, sizeof(*b));
	b->cfg = *cfg;
	b->now = T0;
	b->seq = 100;
	b->m = smpl_model_new(cfg, nv, b->now, WALL_START);
	assert_non_null(b->m);
}

static void bench_start(struct bench *b)
{
	struct smpl_model_config cfg;

	smpl_model_default_config(&cfg);
	cfg.noise_ppm = 0;	/* exact energies unless a test wants noise */
	bench_start_cfg(b, &cfg, NULL);
}

static void bench_stop(struct bench *b)
{
	smpl_model_free(b->m);
	b->m = NULL;
}

static void wait_ms(struct bench *b, uint64_t ms)
{
	b->now += ms;
	smpl_model_advance(b->m, b->now);
}

static struct smpl_model_view look(struct bench *b)
{
	struct smpl_model_view v;

	smpl_model_view(b->m, b->now, &v);
	return v;
}

static bool is_armed_state(uint8_t state)
{
	return state == SMPL_STATE_ARMING || state == SMPL_STATE_READY ||
	       state == SMPL_STATE_EMITTING;
}

static uint8_t state_of(struct bench *b)
{
	return look(b).state;
}

/*
 * Send a command frame; return the reply's status (NO_REPLY if none).  The
 * reply must decode, echo the op and seq, and carry the op's payload when OK.
 */
static uint16_t command(struct bench *b, uint8_t op, const void *payload, size_t len,
			struct smpl_frame *out)
{
	uint8_t frame[SMPL_MAX_FRAME], reply[SMPL_MAX_FRAME + 16];
	struct smpl_frame f;
	int n, r;

	n = smpl_encode(op, ++b->seq, 0, payload, len, frame, sizeof(frame));
	assert_true(n > 0);
	r = smpl_model_handle_frame(b->m, b->now, frame, (size_t)n, reply, sizeof(reply));
	if (r == 0)
		return NO_REPLY;
	assert_true(r > 0);
	assert_int_equal(smpl_decode(reply, (size_t)r, &f), 0);
	assert_int_equal(f.op, op | SMPL_OP_REPLY);
	assert_int_equal(f.seq, b->seq);
	if (f.status == SMPL_ST_OK)
		assert_int_equal(f.len, smpl_payload_size(f.op));
	if (out)
		*out = f;
	return f.status;
}

static uint16_t simple(struct bench *b, uint8_t op)
{
	return command(b, op, NULL, 0, NULL);
}

static uint16_t set_params(struct bench *b, const struct smpl_params_n *p)
{
	struct smpl_params w;

	smpl_params_encode(p, &w);
	return command(b, SMPL_OP_SET_PARAMS, &w, sizeof(w), NULL);
}

static void heartbeat(struct bench *b)
{
	assert_int_equal(simple(b, SMPL_OP_HEARTBEAT), SMPL_ST_OK);
}

/* Let @ms pass while the host heart-beats every 200 ms. */
static void wait_with_heartbeat(struct bench *b, uint64_t ms)
{
	while (ms > 0) {
		uint64_t step = ms < 200 ? ms : 200;

		wait_ms(b, step);
		heartbeat(b);
		ms -= step;
	}
}

static void press(struct bench *b)
{
	smpl_model_set_footswitch(b->m, b->now, true);
}

static void release(struct bench *b)
{
	smpl_model_set_footswitch(b->m, b->now, false);
}

static void open_interlock(struct bench *b, uint16_t bit)
{
	smpl_model_set_interlock(b->m, b->now, bit, true);
}

static void close_interlock(struct bench *b, uint16_t bit)
{
	smpl_model_set_interlock(b->m, b->now, bit, false);
}

static void to_standby(struct bench *b)
{
	smpl_model_power_on(b->m, b->now);
	wait_ms(b, b->cfg.self_test_ms);
	assert_int_equal(state_of(b), SMPL_STATE_STANDBY);
}

static void to_standby_with_params(struct bench *b)
{
	struct smpl_params_n p = good_params();

	to_standby(b);
	assert_int_equal(set_params(b, &p), SMPL_ST_OK);
}

static void to_ready(struct bench *b)
{
	to_standby_with_params(b);
	assert_int_equal(simple(b, SMPL_OP_ARM), SMPL_ST_OK);
	assert_int_equal(state_of(b), SMPL_STATE_ARMING);
	wait_with_heartbeat(b, b->cfg.emission_delay_ms);
	assert_int_equal(state_of(b), SMPL_STATE_READY);
}

/* Read every report that is due now; count pulses and keep the last status. */
struct drained {
	unsigned int pulses;
	unsigned int statuses;
	uint32_t first_shot, last_shot;
	struct smpl_status_n last_status;
	struct smpl_pulse_n last_pulse;
	uint32_t shot_after_fault;	/* a pulse report after a FAULT status */
};

static struct drained drain(struct bench *b)
{
	struct drained d;
	uint8_t buf[SMPL_MAX_REPORT];
	struct smpl_frame f;
	bool fault_seen = false;
	int n;

	memset(&d, 0, sizeof(d));
	while ((n = smpl_model_next_report(b->m, b->now, buf, sizeof(buf))) > 0) {
		assert_true(n <= SMPL_MAX_REPORT);
		assert_int_equal(smpl_decode(buf, (size_t)n, &f), 0);
		if (f.op == SMPL_OP_PULSE) {
			struct smpl_pulse_report w;

			memcpy(&w, f.payload, sizeof(w));
			assert_int_equal(smpl_pulse_decode(&w, &d.last_pulse), 0);
			if (d.pulses++ == 0)
				d.first_shot = d.last_pulse.shot;
			d.last_shot = d.last_pulse.shot;
			if (fault_seen)
				d.shot_after_fault = d.last_pulse.shot;
		} else {
			struct smpl_status_report w;

			assert_int_equal(f.op, SMPL_OP_STATUS);
			memcpy(&w, f.payload, sizeof(w));
			assert_int_equal(smpl_status_decode(&w, &d.last_status), 0);
			if (d.last_status.state == SMPL_STATE_FAULT)
				fault_seen = true;
			d.statuses++;
		}
		assert_true(d.pulses + d.statuses < 10000);
	}
	return d;
}

/* ---- configuration and power ---------------------------------------------- */

static void test_default_config(void **state)
{
	struct smpl_model_config c;

	(void)state;
	smpl_model_default_config(&c);
	assert_string_equal(c.serial, "SMP-000001");
	assert_string_equal(c.model, "SMPL-QS1064");
	assert_int_equal(c.fw_major, 1);
	assert_int_equal(c.fw_minor, 0);
	assert_int_equal(c.fw_patch, 0);
	assert_int_equal(c.wavelength_nm[0], 1064);
	assert_int_equal(c.wavelength_nm[1], 532);
	assert_int_equal(c.max_fluence_mj_cm2, 10000);
	assert_int_equal(c.min_spot_um, 2000);
	assert_int_equal(c.max_spot_um, 6000);
	assert_int_equal(c.min_pulse_ps, 5000);
	assert_int_equal(c.max_pulse_ps, 25000);
	assert_int_equal(c.max_rate_mhz, 10000);
	assert_int_equal(c.emission_delay_ms, 2000);
	assert_int_equal(c.watchdog_ms, 1000);
	assert_true(c.self_test_ms > 0);
	assert_true(c.idle_timeout_ms > 0);
}

static void test_bad_config_refused(void **state)
{
	struct smpl_model_config c;

	(void)state;
	smpl_model_default_config(&c);
	c.watchdog_ms = 0;
	assert_null(smpl_model_new(&c, NULL, 0, 0));
	smpl_model_default_config(&c);
	c.max_rate_mhz = 0;
	assert_null(smpl_model_new(&c, NULL, 0, 0));
}

static void test_get_info(void **state)
{
	struct bench b;
	struct smpl_frame f;
	struct smpl_info w;
	struct smpl_info_n info;

	(void)state;
	bench_start(&b);
	to_standby(&b);
	assert_int_equal(command(&b, SMPL_OP_GET_INFO, NULL, 0, &f), SMPL_ST_OK);
	memcpy(&w, f.payload, sizeof(w));
	assert_int_equal(smpl_info_decode(&w, &info), 0);
	assert_string_equal(info.serial, "SMP-000001");
	assert_string_equal(info.model, "SMPL-QS1064");
	assert_int_equal(info.wavelength_nm[0], 1064);
	assert_int_equal(info.wavelength_nm[1], 532);
	assert_int_equal(info.max_rate_mhz, 10000);
	assert_int_equal(info.watchdog_ms, 1000);
	assert_int_equal(info.emission_delay_ms, 2000);
	assert_int_equal(info.flags & SMPL_INFO_PICOSECOND, 0);
	bench_stop(&b);
}

static void test_power_on_self_test(void **state)
{
	struct bench b;
	uint8_t buf[SMPL_MAX_REPORT];

	(void)state;
	bench_start(&b);
	assert_int_equal(state_of(&b), SMPL_STATE_OFF);
	/* a unit that is off answers nothing and reports nothing */
	assert_int_equal(simple(&b, SMPL_OP_GET_STATUS), NO_REPLY);
	assert_int_equal(smpl_model_next_report(b.m, b.now, buf, sizeof(buf)), 0);

	smpl_model_power_on(b.m, b.now);
	assert_int_equal(state_of(&b), SMPL_STATE_SELF_TEST);
	assert_int_equal(smpl_model_next_deadline(b.m, b.now), b.cfg.self_test_ms);
	wait_ms(&b, b.cfg.self_test_ms - 1);
	assert_int_equal(state_of(&b), SMPL_STATE_SELF_TEST);
	wait_ms(&b, 1);
	assert_int_equal(state_of(&b), SMPL_STATE_STANDBY);
	assert_int_equal(look(&b).fault, SMPL_FAULT_NONE);
	assert_int_equal(smpl_model_next_deadline(b.m, b.now), UINT64_MAX);

	/* STANDBY at power-on even with interlocks closed and params known before */
	smpl_model_power_off(b.m, b.now);
	assert_int_equal(state_of(&b), SMPL_STATE_OFF);
	bench_stop(&b);
}

static void test_self_test_failure_latches(void **state)
{
	struct bench b;

	(void)state;
	bench_start(&b);
	smpl_model_power_on(b.m, b.now);
	smpl_model_inject_fault(b.m, b.now, SMPL_FAULT_SELF_TEST);
	wait_ms(&b, b.cfg.self_test_ms);
	assert_int_equal(state_of(&b), SMPL_STATE_FAULT);
	assert_int_equal(look(&b).fault, SMPL_FAULT_SELF_TEST);
	assert_int_equal(simple(&b, SMPL_OP_ACK_FAULT), SMPL_ST_CAUSE_PERSISTS);
	/* still broken after a power cycle */
	smpl_model_power_off(b.m, b.now);
	smpl_model_power_on(b.m, b.now);
	wait_ms(&b, b.cfg.self_test_ms);
	assert_int_equal(state_of(&b), SMPL_STATE_FAULT);
	/* repaired: acknowledge returns to STANDBY */
	smpl_model_clear_fault_cause(b.m, b.now);
	assert_int_equal(simple(&b, SMPL_OP_ACK_FAULT), SMPL_ST_OK);
	assert_int_equal(state_of(&b), SMPL_STATE_STANDBY);
	assert_int_equal(look(&b).fault, SMPL_FAULT_NONE);
	bench_stop(&b);
}

/* ---- every state with every event (table) ---------------------------------- */

enum event {
	EV_ARM, EV_DISARM, EV_CTRL_DISARM, EV_SET_PARAMS, EV_ACK, EV_SELF_TEST,
	EV_HEARTBEAT, EV_GET_STATUS, EV_PRESS, EV_RELEASE, EV_INTERLOCK, EV_POWER_OFF,
	EV_COUNT,
};

static const char *const event_names[EV_COUNT] = {
	"ARM", "DISARM", "ctrl DISARM", "SET_PARAMS", "ACK_FAULT", "SELF_TEST",
	"HEARTBEAT", "GET_STATUS", "press", "release", "interlock open", "power off",
};

struct transition {
	uint8_t from;
	enum event ev;
	uint8_t to;
	uint16_t status;	/* command reply; ignored for non-commands */
};

#define OK_ SMPL_ST_OK
#define BAD SMPL_ST_BAD_STATE
#define LAT SMPL_ST_FAULT_LATCHED
#define NOR NO_REPLY
#define S(x) SMPL_STATE_##x

static const struct transition transitions[] = {
	{ S(OFF), EV_ARM, S(OFF), NOR },
	{ S(OFF), EV_DISARM, S(OFF), NOR },
	{ S(OFF), EV_CTRL_DISARM, S(OFF), 0 },
	{ S(OFF), EV_SET_PARAMS, S(OFF), NOR },
	{ S(OFF), EV_ACK, S(OFF), NOR },
	{ S(OFF), EV_SELF_TEST, S(OFF), NOR },
	{ S(OFF), EV_HEARTBEAT, S(OFF), NOR },
	{ S(OFF), EV_GET_STATUS, S(OFF), NOR },
	{ S(OFF), EV_PRESS, S(OFF), 0 },
	{ S(OFF), EV_RELEASE, S(OFF), 0 },
	{ S(OFF), EV_INTERLOCK, S(OFF), 0 },
	{ S(OFF), EV_POWER_OFF, S(OFF), 0 },

	{ S(SELF_TEST), EV_ARM, S(SELF_TEST), BAD },
	{ S(SELF_TEST), EV_DISARM, S(SELF_TEST), OK_ },
	{ S(SELF_TEST), EV_CTRL_DISARM, S(SELF_TEST), 0 },
	{ S(SELF_TEST), EV_SET_PARAMS, S(SELF_TEST), BAD },
	{ S(SELF_TEST), EV_ACK, S(SELF_TEST), BAD },
	{ S(SELF_TEST), EV_SELF_TEST, S(SELF_TEST), BAD },
	{ S(SELF_TEST), EV_HEARTBEAT, S(SELF_TEST), OK_ },
	{ S(SELF_TEST), EV_GET_STATUS, S(SELF_TEST), OK_ },
	{ S(SELF_TEST), EV_PRESS, S(SELF_TEST), 0 },
	{ S(SELF_TEST), EV_RELEASE, S(SELF_TEST), 0 },
	{ S(SELF_TEST), EV_INTERLOCK, S(SELF_TEST), 0 },
	{ S(SELF_TEST), EV_POWER_OFF, S(OFF), 0 },

	{ S(STANDBY), EV_ARM, S(ARMING), OK_ },
	{ S(STANDBY), EV_DISARM, S(STANDBY), OK_ },
	{ S(STANDBY), EV_CTRL_DISARM, S(STANDBY), 0 },
	{ S(STANDBY), EV_SET_PARAMS, S(STANDBY), OK_ },
	{ S(STANDBY), EV_ACK, S(STANDBY), BAD },
	{ S(STANDBY), EV_SELF_TEST, S(SELF_TEST), OK_ },
	{ S(STANDBY), EV_HEARTBEAT, S(STANDBY), OK_ },
	{ S(STANDBY), EV_GET_STATUS, S(STANDBY), OK_ },
	{ S(STANDBY), EV_PRESS, S(STANDBY), 0 },
	{ S(STANDBY), EV_RELEASE, S(STANDBY), 0 },
	{ S(STANDBY), EV_INTERLOCK, S(STANDBY), 0 },
	{ S(STANDBY), EV_POWER_OFF, S(OFF), 0 },

	{ S(ARMING), EV_ARM, S(ARMING), BAD },
	{ S(ARMING), EV_DISARM, S(STANDBY), OK_ },
	{ S(ARMING), EV_CTRL_DISARM, S(STANDBY), 0 },
	{ S(ARMING), EV_SET_PARAMS, S(ARMING), BAD },
	{ S(ARMING), EV_ACK, S(ARMING), BAD },
	{ S(ARMING), EV_SELF_TEST, S(ARMING), BAD },
	{ S(ARMING), EV_HEARTBEAT, S(ARMING), OK_ },
	{ S(ARMING), EV_GET_STATUS, S(ARMING), OK_ },
	{ S(ARMING), EV_PRESS, S(ARMING), 0 },
	{ S(ARMING), EV_RELEASE, S(ARMING), 0 },
	{ S(ARMING), EV_INTERLOCK, S(FAULT), 0 },
	{ S(ARMING), EV_POWER_OFF, S(OFF), 0 },

	{ S(READY), EV_ARM, S(READY), BAD },
	{ S(READY), EV_DISARM, S(STANDBY), OK_ },
	{ S(READY), EV_CTRL_DISARM, S(STANDBY), 0 },
	{ S(READY), EV_SET_PARAMS, S(READY), BAD },
	{ S(READY), EV_ACK, S(READY), BAD },
	{ S(READY), EV_SELF_TEST, S(READY), BAD },
	{ S(READY), EV_HEARTBEAT, S(READY), OK_ },
	{ S(READY), EV_GET_STATUS, S(READY), OK_ },
	{ S(READY), EV_PRESS, S(EMITTING), 0 },
	{ S(READY), EV_RELEASE, S(READY), 0 },	/* held since before READY */
	{ S(READY), EV_INTERLOCK, S(FAULT), 0 },
	{ S(READY), EV_POWER_OFF, S(OFF), 0 },

	{ S(EMITTING), EV_ARM, S(EMITTING), BAD },
	{ S(EMITTING), EV_DISARM, S(STANDBY), OK_ },
	{ S(EMITTING), EV_CTRL_DISARM, S(STANDBY), 0 },
	{ S(EMITTING), EV_SET_PARAMS, S(EMITTING), BAD },
	{ S(EMITTING), EV_ACK, S(EMITTING), BAD },
	{ S(EMITTING), EV_SELF_TEST, S(EMITTING), BAD },
	{ S(EMITTING), EV_HEARTBEAT, S(EMITTING), OK_ },
	{ S(EMITTING), EV_GET_STATUS, S(EMITTING), OK_ },
	{ S(EMITTING), EV_PRESS, S(EMITTING), 0 },	/* still held */
	{ S(EMITTING), EV_RELEASE, S(READY), 0 },
	{ S(EMITTING), EV_INTERLOCK, S(FAULT), 0 },
	{ S(EMITTING), EV_POWER_OFF, S(OFF), 0 },

	{ S(FAULT), EV_ARM, S(FAULT), LAT },
	{ S(FAULT), EV_DISARM, S(FAULT), OK_ },
	{ S(FAULT), EV_CTRL_DISARM, S(FAULT), 0 },
	{ S(FAULT), EV_SET_PARAMS, S(FAULT), LAT },
	{ S(FAULT), EV_ACK, S(STANDBY), OK_ },	/* watchdog fault: cause gone */
	{ S(FAULT), EV_SELF_TEST, S(FAULT), BAD },
	{ S(FAULT), EV_HEARTBEAT, S(FAULT), OK_ },
	{ S(FAULT), EV_GET_STATUS, S(FAULT), OK_ },
	{ S(FAULT), EV_PRESS, S(FAULT), 0 },
	{ S(FAULT), EV_RELEASE, S(FAULT), 0 },
	{ S(FAULT), EV_INTERLOCK, S(FAULT), 0 },
	{ S(FAULT), EV_POWER_OFF, S(OFF), 0 },
};

/*
 * Bring a fresh model into @target.  @foot_held: the footswitch goes down
 * before the state is reached (in EMITTING it is held anyway).
 */
static void reach(struct bench *b, uint8_t target, bool foot_held)
{
	if (target == SMPL_STATE_OFF) {
		if (foot_held)
			press(b);
		return;
	}
	smpl_model_power_on(b->m, b->now);
	if (foot_held && target != SMPL_STATE_EMITTING)
		press(b);
	if (target == SMPL_STATE_SELF_TEST)
		return;
	wait_ms(b, b->cfg.self_test_ms);
	struct smpl_params_n p = good_params();
	assert_int_equal(set_params(b, &p), SMPL_ST_OK);
	if (target == SMPL_STATE_STANDBY)
		return;
	assert_int_equal(simple(b, SMPL_OP_ARM), SMPL_ST_OK);
	if (target == SMPL_STATE_ARMING)
		return;
	wait_with_heartbeat(b, b->cfg.emission_delay_ms);
	if (target == SMPL_STATE_READY)
		return;
	if (target == SMPL_STATE_EMITTING) {
		press(b);
		return;
	}
	/* FAULT: the host stops heart-beating */
	wait_ms(b, b->cfg.watchdog_ms);
	assert_int_equal(look(b).fault, SMPL_FAULT_WATCHDOG);
}

static uint16_t apply_event(struct bench *b, enum event ev)
{
	struct smpl_params_n p = good_params();

	switch (ev) {
	case EV_ARM:
		return simple(b, SMPL_OP_ARM);
	case EV_DISARM:
		return simple(b, SMPL_OP_DISARM);
	case EV_CTRL_DISARM:
		smpl_model_disarm(b->m, b->now);
		return 0;
	case EV_SET_PARAMS:
		return set_params(b, &p);
	case EV_ACK:
		return simple(b, SMPL_OP_ACK_FAULT);
	case EV_SELF_TEST:
		return simple(b, SMPL_OP_SELF_TEST);
	case EV_HEARTBEAT:
		return simple(b, SMPL_OP_HEARTBEAT);
	case EV_GET_STATUS:
		return simple(b, SMPL_OP_GET_STATUS);
	case EV_PRESS:
		press(b);
		return 0;
	case EV_RELEASE:
		release(b);
		return 0;
	case EV_INTERLOCK:
		open_interlock(b, SMPL_IL_DOOR);
		return 0;
	case EV_POWER_OFF:
		smpl_model_power_off(b->m, b->now);
		return 0;
	default:
		fail();
	}
	return 0;
}

static bool is_command(enum event ev)
{
	return ev != EV_CTRL_DISARM && ev != EV_PRESS && ev != EV_RELEASE &&
	       ev != EV_INTERLOCK && ev != EV_POWER_OFF;
}

static void test_every_state_every_event(void **state)
{
	bool covered[SMPL_STATE__MAX + 1][EV_COUNT] = { { false } };

	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(transitions); i++) {
		const struct transition *t = &transitions[i];
		struct bench b;
		uint16_t status;
		uint32_t shots;

		bench_start(&b);
		reach(&b, t->from, t->ev == EV_RELEASE);
		assert_int_equal(state_of(&b), t->from);
		status = apply_event(&b, t->ev);
		if (state_of(&b) != t->to || (is_command(t->ev) && status != t->status))
			fail_msg("%s + %s: got %s/%s, want %s/%s", smpl_state_name(t->from),
				 event_names[t->ev], smpl_state_name(state_of(&b)),
				 smpl_status_name(status), smpl_state_name(t->to),
				 smpl_status_name(t->status));

		/* Safety: outside EMITTING no pulse follows, however long we wait
		 * (the host keeps heart-beating, the footswitch stays as it is). */
		shots = look(&b).shot_count;
		if (t->to != SMPL_STATE_EMITTING) {
			for (int k = 0; k < 5; k++) {
				wait_ms(&b, 100);
				if (state_of(&b) != SMPL_STATE_OFF)
					heartbeat(&b);
			}
			assert_int_equal(look(&b).shot_count, shots);
		} else {
			wait_with_heartbeat(&b, 1000);
			assert_true(look(&b).shot_count > shots);
		}
		covered[t->from][t->ev] = true;
		bench_stop(&b);
	}
	for (int s = 0; s <= SMPL_STATE__MAX; s++)
		for (int e = 0; e < EV_COUNT; e++)
			if (!covered[s][e])
				fail_msg("%s + %s not in the table", smpl_state_name((uint8_t)s),
					 event_names[e]);
}

/* ---- footswitch ---------------------------------------------------------- */

static void test_footswitch_held_before_ready_needs_release(void **state)
{
	struct bench b;
	struct drained d;
	uint32_t shots;

	(void)state;
	bench_start(&b);
	to_standby_with_params(&b);
	assert_int_equal(simple(&b, SMPL_OP_ARM), SMPL_ST_OK);
	press(&b);	/* held during the emission delay */
	wait_with_heartbeat(&b, b.cfg.emission_delay_ms);
	assert_int_equal(state_of(&b), SMPL_STATE_READY);
	assert_true(look(&b).need_release);
	d = drain(&b);
	assert_true(d.last_status.flags & SMPL_SF_NEED_RELEASE);
	assert_true(d.last_status.flags & SMPL_SF_FOOTSWITCH);

	/* held for a long time: nothing */
	wait_with_heartbeat(&b, 5000);
	assert_int_equal(state_of(&b), SMPL_STATE_READY);
	assert_int_equal(look(&b).shot_count, 0);
	/* pressing "again" without a release changes nothing */
	press(&b);
	wait_with_heartbeat(&b, 1000);
	assert_int_equal(look(&b).shot_count, 0);

	release(&b);
	assert_false(look(&b).need_release);
	wait_with_heartbeat(&b, 1000);
	assert_int_equal(look(&b).shot_count, 0);
	press(&b);
	assert_int_equal(state_of(&b), SMPL_STATE_EMITTING);
	shots = look(&b).shot_count;
	assert_int_equal(shots, 1);	/* the first pulse comes at once */
	wait_with_heartbeat(&b, 1000);
	assert_true(look(&b).shot_count > shots);
	bench_stop(&b);
}

static void test_footswitch_pressed_before_arm_needs_release(void **state)
{
	struct bench b;

	(void)state;
	bench_start(&b);
	to_standby_with_params(&b);
	press(&b);	/* held in STANDBY, then armed */
	assert_int_equal(simple(&b, SMPL_OP_ARM), SMPL_ST_OK);
	wait_with_heartbeat(&b, b.cfg.emission_delay_ms + 3000);
	assert_int_equal(state_of(&b), SMPL_STATE_READY);
	assert_int_equal(look(&b).shot_count, 0);
	bench_stop(&b);
}

static void test_no_pulse_outside_ready(void **state)
{
	struct bench b;

	(void)state;
	bench_start(&b);
	to_standby_with_params(&b);
	/* footswitch in STANDBY and during ARMING: never a pulse */
	for (int i = 0; i < 5; i++) {
		press(&b);
		wait_ms(&b, 100);
		release(&b);
	}
	assert_int_equal(simple(&b, SMPL_OP_ARM), SMPL_ST_OK);
	for (int i = 0; i < 5; i++) {
		press(&b);
		wait_ms(&b, 100);
		heartbeat(&b);
		release(&b);
	}
	assert_int_equal(state_of(&b), SMPL_STATE_ARMING);
	assert_int_equal(look(&b).shot_count, 0);
	bench_stop(&b);
}

/* ---- interlocks ----------------------------------------------------------- */

static void test_interlock_during_emission_stops_for_good(void **state)
{
	(void)state;
	for (size_t i = 0; i < SMPL_IL_COUNT; i++) {
		struct bench b;
		struct drained d;
		uint32_t shots;

		bench_start(&b);
		to_ready(&b);
		press(&b);
		wait_with_heartbeat(&b, 1600);
		shots = look(&b).shot_count;
		assert_true(shots >= 3);

		open_interlock(&b, all_interlocks[i]);
		assert_int_equal(state_of(&b), SMPL_STATE_FAULT);
		assert_int_equal(look(&b).fault, SMPL_FAULT_INTERLOCK);
		assert_int_equal(look(&b).shot_count, shots);
		d = drain(&b);
		assert_int_equal(d.shot_after_fault, 0);
		assert_int_equal(d.last_shot, shots);
		assert_int_equal(d.last_status.state, SMPL_STATE_FAULT);
		assert_false(d.last_status.flags & SMPL_SF_EMISSION_LED);

		/* footswitch held, host alive, interlock closes again: nothing */
		wait_with_heartbeat(&b, 3000);
		close_interlock(&b, all_interlocks[i]);
		wait_with_heartbeat(&b, 3000);
		assert_int_equal(state_of(&b), SMPL_STATE_FAULT);
		assert_int_equal(simple(&b, SMPL_OP_ARM), SMPL_ST_FAULT_LATCHED);
		assert_int_equal(simple(&b, SMPL_OP_ACK_FAULT), SMPL_ST_OK);
		assert_int_equal(state_of(&b), SMPL_STATE_STANDBY);
		wait_with_heartbeat(&b, 3000);
		/* re-armed with the footswitch still down: READY, but no pulse */
		assert_int_equal(simple(&b, SMPL_OP_ARM), SMPL_ST_OK);
		wait_with_heartbeat(&b, b.cfg.emission_delay_ms + 2000);
		assert_int_equal(state_of(&b), SMPL_STATE_READY);
		assert_int_equal(look(&b).shot_count, shots);
		d = drain(&b);
		assert_int_equal(d.pulses, 0);
		bench_stop(&b);
	}
}

static void test_interlock_in_standby_no_fault(void **state)
{
	struct bench b;
	struct drained d;

	(void)state;
	bench_start(&b);
	to_standby(&b);
	drain(&b);
	open_interlock(&b, SMPL_IL_KEY);
	d = drain(&b);
	assert_int_equal(d.statuses, 1);	/* a change is reported at once */
	assert_int_equal(d.last_status.interlocks, SMPL_IL_KEY);
	assert_int_equal(state_of(&b), SMPL_STATE_STANDBY);
	assert_int_equal(look(&b).fault, SMPL_FAULT_NONE);
	close_interlock(&b, SMPL_IL_KEY);
	assert_int_equal(look(&b).interlocks, 0);
	bench_stop(&b);
}

static void test_arm_refused_per_interlock(void **state)
{
	struct bench b;

	(void)state;
	bench_start(&b);
	to_standby_with_params(&b);
	for (size_t i = 0; i < SMPL_IL_COUNT; i++) {
		open_interlock(&b, all_interlocks[i]);
		assert_int_equal(simple(&b, SMPL_OP_ARM), SMPL_ST_INTERLOCK_OPEN);
		assert_int_equal(state_of(&b), SMPL_STATE_STANDBY);
		press(&b);
		wait_with_heartbeat(&b, b.cfg.emission_delay_ms + 500);
		release(&b);
		assert_int_equal(look(&b).shot_count, 0);
		close_interlock(&b, all_interlocks[i]);
	}
	/* all closed: ARM is accepted */
	assert_int_equal(simple(&b, SMPL_OP_ARM), SMPL_ST_OK);
	assert_int_equal(simple(&b, SMPL_OP_DISARM), SMPL_ST_OK);
	/* several open at once: still refused, until the last one closes */
	open_interlock(&b, SMPL_IL_ESTOP);
	open_interlock(&b, SMPL_IL_SHUTTER);
	close_interlock(&b, SMPL_IL_ESTOP);
	assert_int_equal(simple(&b, SMPL_OP_ARM), SMPL_ST_INTERLOCK_OPEN);
	close_interlock(&b, SMPL_IL_SHUTTER);
	assert_int_equal(simple(&b, SMPL_OP_ARM), SMPL_ST_OK);
	bench_stop(&b);
}

static void test_arm_refusals(void **state)
{
	struct bench b;

	(void)state;
	/* no parameters */
	bench_start(&b);
	to_standby(&b);
	assert_int_equal(simple(&b, SMPL_OP_ARM), SMPL_ST_NO_PARAMS);
	assert_int_equal(simple(&b, SMPL_OP_GET_PARAMS), SMPL_ST_NO_PARAMS);
	assert_int_equal(state_of(&b), SMPL_STATE_STANDBY);
	/* interlock outranks missing parameters */
	open_interlock(&b, SMPL_IL_DOOR);
	assert_int_equal(simple(&b, SMPL_OP_ARM), SMPL_ST_INTERLOCK_OPEN);
	bench_stop(&b);

	/* parameters are forgotten at power off */
	bench_start(&b);
	to_standby_with_params(&b);
	smpl_model_power_off(b.m, b.now);
	to_standby(&b);
	assert_int_equal(simple(&b, SMPL_OP_ARM), SMPL_ST_NO_PARAMS);
	bench_stop(&b);

	/* latched fault, even with the cause gone */
	bench_start(&b);
	to_standby_with_params(&b);
	smpl_model_inject_fault(b.m, b.now, SMPL_FAULT_COOLING);
	smpl_model_clear_fault_cause(b.m, b.now);
	assert_int_equal(simple(&b, SMPL_OP_ARM), SMPL_ST_FAULT_LATCHED);
	assert_int_equal(state_of(&b), SMPL_STATE_FAULT);
	bench_stop(&b);
}

/* ---- watchdog, faults ------------------------------------------------------ */

static void test_watchdog(void **state)
{
	static const uint8_t armed_states[] = {
		SMPL_STATE_ARMING, SMPL_STATE_READY, SMPL_STATE_EMITTING,
	};

	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(armed_states); i++) {
		struct bench b;
		uint32_t shots;

		bench_start(&b);
		reach(&b, armed_states[i], false);
		heartbeat(&b);
		assert_int_equal(smpl_model_next_deadline(b.m, b.now) <= b.cfg.watchdog_ms, true);
		wait_ms(&b, b.cfg.watchdog_ms - 1);
		if (armed_states[i] != SMPL_STATE_ARMING)
			assert_int_equal(state_of(&b), armed_states[i]);
		assert_int_not_equal(state_of(&b), SMPL_STATE_FAULT);
		shots = look(&b).shot_count;
		wait_ms(&b, 1);
		assert_int_equal(state_of(&b), SMPL_STATE_FAULT);
		assert_int_equal(look(&b).fault, SMPL_FAULT_WATCHDOG);
		/* a late heartbeat does not revive it, and nothing fires */
		heartbeat(&b);
		wait_with_heartbeat(&b, 2000);
		assert_int_equal(state_of(&b), SMPL_STATE_FAULT);
		assert_int_equal(look(&b).shot_count, shots);
		/* the cause is gone: ACK returns to STANDBY */
		assert_int_equal(simple(&b, SMPL_OP_ACK_FAULT), SMPL_ST_OK);
		assert_int_equal(state_of(&b), SMPL_STATE_STANDBY);
		bench_stop(&b);
	}
}

static void test_watchdog_fed_keeps_armed_and_standby_has_none(void **state)
{
	struct bench b;

	(void)state;
	bench_start(&b);
	to_ready(&b);
	wait_with_heartbeat(&b, 20000);
	assert_int_equal(state_of(&b), SMPL_STATE_READY);
	/* other commands do not feed the watchdog */
	for (int i = 0; i < 10; i++) {
		wait_ms(&b, 100);
		assert_int_equal(simple(&b, SMPL_OP_GET_STATUS), SMPL_ST_OK);
	}
	assert_int_equal(state_of(&b), SMPL_STATE_FAULT);
	assert_int_equal(look(&b).fault, SMPL_FAULT_WATCHDOG);
	bench_stop(&b);

	bench_start(&b);
	to_standby_with_params(&b);
	wait_ms(&b, 100000);
	assert_int_equal(state_of(&b), SMPL_STATE_STANDBY);
	bench_stop(&b);
}

static void test_watchdog_wins_tie_with_pulse(void **state)
{
	struct bench b;
	struct smpl_params_n p = good_params();
	uint32_t shots;

	(void)state;
	bench_start(&b);
	to_standby(&b);
	p.rate_mhz = 10000;	/* a pulse every 100 ms */
	assert_int_equal(set_params(&b, &p), SMPL_ST_OK);
	assert_int_equal(simple(&b, SMPL_OP_ARM), SMPL_ST_OK);
	wait_with_heartbeat(&b, b.cfg.emission_delay_ms);
	press(&b);		/* pulse at t, the watchdog expires at t + 1000 */
	wait_ms(&b, 999);
	shots = look(&b).shot_count;
	assert_int_equal(shots, 10);
	wait_ms(&b, 1);
	assert_int_equal(state_of(&b), SMPL_STATE_FAULT);
	assert_int_equal(look(&b).shot_count, shots);
	bench_stop(&b);
}

static void test_ack_refused_while_cause_persists(void **state)
{
	struct bench b;

	(void)state;
	/* interlock fault: refused while the interlock (or any other) is open */
	bench_start(&b);
	to_ready(&b);
	open_interlock(&b, SMPL_IL_COOLING);
	assert_int_equal(look(&b).fault, SMPL_FAULT_INTERLOCK);
	assert_int_equal(simple(&b, SMPL_OP_ACK_FAULT), SMPL_ST_CAUSE_PERSISTS);
	open_interlock(&b, SMPL_IL_KEY);
	close_interlock(&b, SMPL_IL_COOLING);
	assert_int_equal(simple(&b, SMPL_OP_ACK_FAULT), SMPL_ST_CAUSE_PERSISTS);
	assert_int_equal(state_of(&b), SMPL_STATE_FAULT);
	close_interlock(&b, SMPL_IL_KEY);
	assert_int_equal(simple(&b, SMPL_OP_ACK_FAULT), SMPL_ST_OK);
	assert_int_equal(state_of(&b), SMPL_STATE_STANDBY);
	assert_int_equal(look(&b).fault, SMPL_FAULT_NONE);
	/* nothing to acknowledge now */
	assert_int_equal(simple(&b, SMPL_OP_ACK_FAULT), SMPL_ST_BAD_STATE);
	bench_stop(&b);

	/* an injected fault: refused until its cause is cleared */
	for (uint8_t fault = SMPL_FAULT_WATCHDOG; fault <= SMPL_FAULT__MAX; fault++) {
		bench_start(&b);
		to_ready(&b);
		press(&b);
		wait_with_heartbeat(&b, 700);
		smpl_model_inject_fault(b.m, b.now, fault);
		assert_int_equal(state_of(&b), SMPL_STATE_FAULT);
		assert_int_equal(look(&b).fault, fault);
		/* a second fault does not overwrite the latched one */
		smpl_model_inject_fault(b.m, b.now, fault == SMPL_FAULT_INTERNAL ?
					SMPL_FAULT_ENERGY : SMPL_FAULT_INTERNAL);
		assert_int_equal(look(&b).fault, fault);
		assert_int_equal(simple(&b, SMPL_OP_ACK_FAULT), SMPL_ST_CAUSE_PERSISTS);
		assert_int_equal(simple(&b, SMPL_OP_DISARM), SMPL_ST_OK);
		assert_int_equal(state_of(&b), SMPL_STATE_FAULT);
		smpl_model_clear_fault_cause(b.m, b.now);
		assert_int_equal(state_of(&b), SMPL_STATE_FAULT);	/* still latched */
		assert_int_equal(simple(&b, SMPL_OP_ACK_FAULT), SMPL_ST_OK);
		assert_int_equal(state_of(&b), SMPL_STATE_STANDBY);
		bench_stop(&b);
	}
}

/* ---- pulses and energy ---------------------------------------------------- */

static void test_pulses_at_set_rate(void **state)
{
	static const struct {
		uint32_t rate_mhz;
		uint64_t hold_ms;
		uint32_t expect;	/* pulses in [press, press + hold_ms) */
	} cases[] = {
		{ 10000, 1000, 10 },	/* 10 Hz */
		{ 10000, 950, 10 },
		{ 2000, 3000, 6 },	/* 2 Hz */
		{ 1000, 5000, 5 },	/* 1 Hz */
		{ 3000, 1000, 3 },	/* 3 Hz: 0, 333, 666 */
		{ 2500, 1000, 3 },	/* 2.5 Hz: 0, 400, 800 */
		{ 500, 4000, 2 },	/* 0.5 Hz */
	};

	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct bench b;
		struct smpl_params_n p = good_params();
		struct drained d;
		uint64_t start;

		bench_start(&b);
		to_standby(&b);
		p.rate_mhz = cases[i].rate_mhz;
		assert_int_equal(set_params(&b, &p), SMPL_ST_OK);
		assert_int_equal(simple(&b, SMPL_OP_ARM), SMPL_ST_OK);
		wait_with_heartbeat(&b, b.cfg.emission_delay_ms);
		drain(&b);
		press(&b);
		start = b.now;
		/* heart-beat in 50 ms steps up to just before the end */
		while (b.now + 50 < start + cases[i].hold_ms) {
			wait_ms(&b, 50);
			heartbeat(&b);
		}
		wait_ms(&b, start + cases[i].hold_ms - 1 - b.now);
		release(&b);
		if (look(&b).shot_count != cases[i].expect)
			fail_msg("rate %u mHz over %u ms: %u pulses, want %u",
				 cases[i].rate_mhz, (unsigned)cases[i].hold_ms,
				 look(&b).shot_count, cases[i].expect);
		d = drain(&b);
		assert_int_equal(d.pulses, cases[i].expect);
		assert_int_equal(d.first_shot, 1);
		assert_int_equal(d.last_shot, cases[i].expect);
		assert_int_equal(state_of(&b), SMPL_STATE_READY);
		bench_stop(&b);
	}
}

static void test_pulse_spacing(void **state)
{
	struct bench b;
	uint64_t last = 0;

	(void)state;
	bench_start(&b);
	to_ready(&b);	/* 2 Hz */
	press(&b);
	for (int ms = 0; ms < 2600; ms++) {
		uint32_t before = look(&b).shot_count;

		wait_ms(&b, 1);
		if (ms % 100 == 0)
			heartbeat(&b);
		if (look(&b).shot_count != before) {
			assert_int_equal(look(&b).shot_count, before + 1);
			assert_int_equal(b.now - last, 500);
			last = b.now;
		} else if (last == 0) {
			last = b.now - 1;	/* the press pulse at ms 0 */
		}
	}
	assert_int_equal(look(&b).shot_count, 6);
	bench_stop(&b);
}

static void test_energy_exact_and_with_drift(void **state)
{
	static const int32_t drifts[] = { 0, 50000, -150000, 250000, -999999 };

	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(drifts); i++) {
		struct bench b;
		struct smpl_params_n p = good_params();
		struct drained d;
		uint32_t set = smpl_params_energy_uj(&p);
		uint64_t expect = ((uint64_t)set * (uint64_t)(1000000 + drifts[i]) + 500000) / 1000000;

		bench_start(&b);
		smpl_model_set_drift(b.m, drifts[i]);
		to_ready(&b);
		drain(&b);
		press(&b);
		d = drain(&b);
		assert_int_equal(d.pulses, 1);
		assert_int_equal(d.last_pulse.set_uj, set);
		assert_int_equal(d.last_pulse.measured_uj, expect);
		assert_int_equal(look(&b).last_energy_uj, expect);
		assert_int_equal(d.last_status.last_energy_uj, 0);	/* status queued before */
		bench_stop(&b);
	}
}

/* Measured energies of @n pulses at 10 Hz with @seed, noise and drift. */
static void collect_energies(uint32_t seed, uint32_t noise_ppm, int32_t drift,
			     uint32_t *out, unsigned int n, uint32_t *set)
{
	struct smpl_model_config cfg;
	struct smpl_params_n p = good_params();
	struct bench b;
	unsigned int got = 0;

	smpl_model_default_config(&cfg);
	cfg.seed = seed;
	cfg.noise_ppm = noise_ppm;
	bench_start_cfg(&b, &cfg, NULL);
	smpl_model_set_drift(b.m, drift);
	to_standby(&b);
	p.rate_mhz = 10000;
	assert_int_equal(set_params(&b, &p), SMPL_ST_OK);
	*set = smpl_params_energy_uj(&p);
	assert_int_equal(simple(&b, SMPL_OP_ARM), SMPL_ST_OK);
	wait_with_heartbeat(&b, b.cfg.emission_delay_ms);
	press(&b);
	for (unsigned int step = 0; got < n; step++) {
		struct drained d = drain(&b);

		assert_true(step < 4 * n);	/* 10 Hz: two steps per pulse */
		if (d.pulses) {
			assert_int_equal(d.pulses, 1);
			out[got++] = d.last_pulse.measured_uj;
		}
		wait_ms(&b, 50);
		heartbeat(&b);
	}
	bench_stop(&b);
}

static void test_energy_noise_seeded(void **state)
{
	enum { N = 200 };
	uint32_t a[N], a2[N], c[N], set;
	double sum = 0;
	bool differs = false, varies = false;

	(void)state;
	collect_energies(7, 20000, 100000, a, N, &set);
	collect_energies(7, 20000, 100000, a2, N, &set);
	collect_energies(8, 20000, 100000, c, N, &set);
	assert_memory_equal(a, a2, sizeof(a));	/* deterministic */
	for (int i = 0; i < N; i++) {
		/* set x (1 + 10% drift +/- 2% noise) */
		assert_true(a[i] >= (uint32_t)(set * 1.08) - 1);
		assert_true(a[i] <= (uint32_t)(set * 1.12) + 1);
		sum += a[i];
		differs |= a[i] != c[i];
		varies |= a[i] != a[0];
	}
	assert_true(differs);	/* another seed, another sequence */
	assert_true(varies);
	/* the mean is near the drifted value (noise is centred) */
	assert_true(sum / N > set * 1.095 && sum / N < set * 1.105);
}

/* ---- non-volatile state --------------------------------------------------- */

static void test_shot_counter_survives_power_cycle(void **state)
{
	struct bench b;
	struct smpl_model_nv nv;
	struct smpl_model_config cfg;
	struct drained d;

	(void)state;
	bench_start(&b);
	to_ready(&b);
	press(&b);
	wait_with_heartbeat(&b, 2100);	/* 2 Hz: 0, 500, ..., 2000 */
	release(&b);
	assert_int_equal(look(&b).shot_count, 5);

	/* the same unit, power cycled */
	smpl_model_power_off(b.m, b.now);
	assert_int_equal(look(&b).shot_count, 5);
	to_ready(&b);
	press(&b);
	release(&b);
	assert_int_equal(look(&b).shot_count, 6);

	/* a new model from the saved nv state */
	smpl_model_get_nv(b.m, &nv);
	cfg = b.cfg;
	bench_stop(&b);
	assert_int_equal(nv.shot_count, 6);
	bench_start_cfg(&b, &cfg, &nv);
	to_ready(&b);
	assert_int_equal(look(&b).shot_count, 6);
	drain(&b);
	press(&b);
	d = drain(&b);
	assert_int_equal(d.last_pulse.shot, 7);
	assert_int_equal(d.last_status.shot_count, 6);
	bench_stop(&b);
}

static int64_t get_rtc(struct bench *b)
{
	struct smpl_frame f;
	struct smpl_rtc rtc;

	assert_int_equal(command(b, SMPL_OP_GET_RTC, NULL, 0, &f), SMPL_ST_OK);
	memcpy(&rtc, f.payload, sizeof(rtc));
	return (int64_t)le64toh(rtc.rtc_s);
}

static void test_rtc_and_skew(void **state)
{
	struct bench b;
	struct smpl_model_nv nv;
	struct smpl_model_config cfg;

	(void)state;
	bench_start(&b);
	to_standby(&b);
	assert_int_equal(get_rtc(&b), WALL_START);
	wait_ms(&b, 90500);
	assert_int_equal(get_rtc(&b), WALL_START + 90);
	assert_int_equal(look(&b).rtc_s, WALL_START + 90);

	smpl_model_set_rtc_skew(b.m, -3600);
	assert_int_equal(get_rtc(&b), WALL_START + 90 - 3600);
	assert_int_equal(drain(&b).last_status.rtc_s, WALL_START + 90 - 3600);

	/* battery-backed: survives power off and a new model from nv */
	smpl_model_power_off(b.m, b.now);
	wait_ms(&b, 10000);
	to_standby(&b);
	assert_int_equal(get_rtc(&b), WALL_START + 100 - 3600);
	smpl_model_get_nv(b.m, &nv);
	assert_int_equal(nv.rtc_offset_s, -3600);
	cfg = b.cfg;
	bench_stop(&b);
	bench_start_cfg(&b, &cfg, &nv);
	to_standby(&b);
	assert_int_equal(get_rtc(&b), WALL_START - 3600);
	bench_stop(&b);
}

/* ---- idle timeout ---------------------------------------------------------- */

static void test_idle_timeout(void **state)
{
	struct smpl_model_config cfg;
	struct bench b;

	(void)state;
	smpl_model_default_config(&cfg);
	cfg.idle_timeout_ms = 5000;
	cfg.noise_ppm = 0;
	bench_start_cfg(&b, &cfg, NULL);
	to_ready(&b);
	wait_with_heartbeat(&b, 4800);
	wait_ms(&b, 199);
	assert_int_equal(state_of(&b), SMPL_STATE_READY);
	heartbeat(&b);
	wait_ms(&b, 1);
	assert_int_equal(state_of(&b), SMPL_STATE_STANDBY);
	assert_int_equal(look(&b).fault, SMPL_FAULT_NONE);
	/* and a press now fires nothing */
	press(&b);
	wait_ms(&b, 500);
	assert_int_equal(look(&b).shot_count, 0);
	release(&b);

	/* a burst restarts the idle timer when the footswitch comes up */
	assert_int_equal(simple(&b, SMPL_OP_ARM), SMPL_ST_OK);
	wait_with_heartbeat(&b, b.cfg.emission_delay_ms + 4000);
	press(&b);
	wait_with_heartbeat(&b, 2000);	/* emitting: no idle */
	release(&b);
	wait_with_heartbeat(&b, 4800);
	assert_int_equal(state_of(&b), SMPL_STATE_READY);
	wait_with_heartbeat(&b, 200);
	assert_int_equal(state_of(&b), SMPL_STATE_STANDBY);
	bench_stop(&b);
}

/* ---- parameters ------------------------------------------------------------ */

static void test_set_params_limits(void **state)
{
	static const struct {
		uint16_t wavelength_nm, spot_um;
		uint32_t fluence, pulse_ps, rate_mhz;
		uint16_t expect;
	} cases[] = {
		{ 1064, 3000, 4000, 10000, 2000, SMPL_ST_OK },
		{ 532, 3000, 4000, 10000, 2000, SMPL_ST_OK },
		{ 1064, 2000, 1, 5000, 1, SMPL_ST_OK },			/* lower bounds */
		{ 1064, 6000, 10000, 25000, 10000, SMPL_ST_OK },	/* upper bounds */
		{ 755, 3000, 4000, 10000, 2000, SMPL_ST_OUT_OF_RANGE },
		{ 0, 3000, 4000, 10000, 2000, SMPL_ST_OUT_OF_RANGE },
		{ 1064, 1999, 4000, 10000, 2000, SMPL_ST_OUT_OF_RANGE },
		{ 1064, 6001, 4000, 10000, 2000, SMPL_ST_OUT_OF_RANGE },
		{ 1064, 3000, 0, 10000, 2000, SMPL_ST_OUT_OF_RANGE },
		{ 1064, 3000, 10001, 10000, 2000, SMPL_ST_OUT_OF_RANGE },
		{ 1064, 3000, 4000, 4999, 2000, SMPL_ST_OUT_OF_RANGE },
		{ 1064, 3000, 4000, 25001, 2000, SMPL_ST_OUT_OF_RANGE },
		{ 1064, 3000, 4000, 10000, 0, SMPL_ST_OUT_OF_RANGE },
		{ 1064, 3000, 4000, 10000, 10001, SMPL_ST_OUT_OF_RANGE },
		{ 1064, 3000, UINT32_MAX, 10000, 2000, SMPL_ST_OUT_OF_RANGE },
	};
	struct bench b;
	struct smpl_frame f;
	struct smpl_params w;
	struct smpl_params_n got;

	(void)state;
	bench_start(&b);
	to_standby(&b);
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct smpl_params_n p = {
			.wavelength_nm = cases[i].wavelength_nm, .spot_um = cases[i].spot_um,
			.fluence_mj_cm2 = cases[i].fluence, .pulse_ps = cases[i].pulse_ps,
			.rate_mhz = cases[i].rate_mhz,
		};
		uint16_t st = set_params(&b, &p);

		if (st != cases[i].expect)
			fail_msg("case %zu: %s, want %s", i, smpl_status_name(st),
				 smpl_status_name(cases[i].expect));
		if (st == SMPL_ST_OK) {
			assert_int_equal(command(&b, SMPL_OP_GET_PARAMS, NULL, 0, &f), SMPL_ST_OK);
			memcpy(&w, f.payload, sizeof(w));
			smpl_params_decode(&w, &got);
			assert_memory_equal(&got, &p, sizeof(p));
		}
	}
	/* a refused SET_PARAMS leaves the last accepted ones */
	assert_int_equal(command(&b, SMPL_OP_GET_PARAMS, NULL, 0, &f), SMPL_ST_OK);
	memcpy(&w, f.payload, sizeof(w));
	smpl_params_decode(&w, &got);
	assert_int_equal(got.spot_um, 6000);
	bench_stop(&b);
}

/* ---- malformed commands ----------------------------------------------------- */

static uint16_t send_raw(struct bench *b, const uint8_t *frame, size_t n, uint8_t *op_out)
{
	uint8_t reply[SMPL_MAX_FRAME + 16];
	struct smpl_frame f;
	int r = smpl_model_handle_frame(b->m, b->now, frame, n, reply, sizeof(reply));

	assert_true(r > 0);
	assert_int_equal(smpl_decode(reply, (size_t)r, &f), 0);
	if (op_out)
		*op_out = f.op;
	return f.status;
}

static void test_malformed_commands(void **state)
{
	struct bench b;
	uint8_t frame[SMPL_MAX_FRAME + 8] = { 0 };
	uint8_t op;
	int n;

	(void)state;
	bench_start(&b);
	to_standby_with_params(&b);

	n = smpl_encode(SMPL_OP_ARM, 5, 0, NULL, 0, frame, sizeof(frame));
	frame[14] ^= 1;	/* bad CRC: refused, not armed */
	assert_int_equal(send_raw(&b, frame, (size_t)n, &op), SMPL_ST_BAD_FRAME);
	assert_int_equal(op, SMPL_OP_ARM | SMPL_OP_REPLY);
	assert_int_equal(state_of(&b), SMPL_STATE_STANDBY);
	frame[14] ^= 1;
	assert_int_equal(send_raw(&b, frame, (size_t)n - 1, NULL), SMPL_ST_BAD_FRAME);
	assert_int_equal(send_raw(&b, frame, 3, &op), SMPL_ST_BAD_FRAME);
	assert_int_equal(op, SMPL_OP_REPLY);
	assert_int_equal(send_raw(&b, frame, 0, NULL), SMPL_ST_BAD_FRAME);
	assert_int_equal(send_raw(&b, frame, (size_t)n + 1, NULL), SMPL_ST_BAD_FRAME);
	assert_int_equal(state_of(&b), SMPL_STATE_STANDBY);

	/* valid frames that are not commands */
	n = smpl_encode(0x0b, 6, 0, NULL, 0, frame, sizeof(frame));
	assert_int_equal(send_raw(&b, frame, (size_t)n, &op), SMPL_ST_UNKNOWN_OP);
	assert_int_equal(op, 0x0b | SMPL_OP_REPLY);
	n = smpl_encode(SMPL_OP_ARM | SMPL_OP_REPLY, 6, 0, NULL, 0, frame, sizeof(frame));
	assert_int_equal(send_raw(&b, frame, (size_t)n, NULL), SMPL_ST_UNKNOWN_OP);
	{
		struct smpl_status_n s = { .state = SMPL_STATE_READY };
		struct smpl_status_report w;

		smpl_status_encode(&s, &w);
		n = smpl_encode(SMPL_OP_STATUS, 7, 0, &w, sizeof(w), frame, sizeof(frame));
		assert_int_equal(send_raw(&b, frame, (size_t)n, NULL), SMPL_ST_UNKNOWN_OP);
	}
	assert_int_equal(state_of(&b), SMPL_STATE_STANDBY);
	/* the ARM frame itself, intact, still works */
	n = smpl_encode(SMPL_OP_ARM, 8, 0, NULL, 0, frame, sizeof(frame));
	assert_int_equal(send_raw(&b, frame, (size_t)n, NULL), SMPL_ST_OK);
	assert_int_equal(state_of(&b), SMPL_STATE_ARMING);
	bench_stop(&b);
}

static void test_every_bit_flip_of_arm_is_refused(void **state)
{
	struct bench b;
	uint8_t good[SMPL_MAX_FRAME], frame[SMPL_MAX_FRAME];
	int n;

	(void)state;
	bench_start(&b);
	to_standby_with_params(&b);
	n = smpl_encode(SMPL_OP_ARM, 9, 0, NULL, 0, good, sizeof(good));
	for (int bit = 0; bit < n * 8; bit++) {
		memcpy(frame, good, (size_t)n);
		frame[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		assert_int_equal(send_raw(&b, frame, (size_t)n, NULL), SMPL_ST_BAD_FRAME);
		assert_int_equal(state_of(&b), SMPL_STATE_STANDBY);
	}
	bench_stop(&b);
}

/* ---- a hostile host: damaged frames never arm ------------------------------ */

static void test_damaged_frames_never_arm(void **state)
{
	static const uint8_t ops[] = {
		SMPL_OP_GET_INFO, SMPL_OP_SET_PARAMS, SMPL_OP_ARM, SMPL_OP_DISARM,
		SMPL_OP_HEARTBEAT, SMPL_OP_SELF_TEST, SMPL_OP_GET_RTC, SMPL_OP_ACK_FAULT,
		SMPL_OP_GET_STATUS, SMPL_OP_GET_PARAMS,
	};
	unsigned short rng[3] = { 7, 7, 7 };
	unsigned long armed = 0, answered = 0;
	struct bench b;

	(void)state;
	bench_start(&b);
	to_standby_with_params(&b);
	for (int i = 0; i < 100000; i++) {
		uint8_t frame[SMPL_MAX_FRAME + 4], reply[SMPL_MAX_FRAME + 16];
		struct smpl_params w;
		struct smpl_params_n p = good_params();
		struct smpl_frame f, rf;
		uint8_t op = ops[nrand48(rng) % ARRAY_LEN(ops)];
		bool with_payload = op == SMPL_OP_SET_PARAMS;
		int n, r;

		smpl_params_encode(&p, &w);
		n = smpl_encode(op, (uint16_t)i, 0, &w, with_payload ? sizeof(w) : 0,
				frame, sizeof(frame));
		/* 1-3 bit flips anywhere, then often a CRC that matches again */
		for (long k = 0, flips = 1 + nrand48(rng) % 3; k < flips; k++) {
			long bit = nrand48(rng) % (n * 8);

			frame[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		}
		if (nrand48(rng) % 2) {
			uint32_t crc = smpl_frame_crc(frame, frame + SMPL_HDR_SIZE,
						      (size_t)n - SMPL_HDR_SIZE);

			frame[12] = (uint8_t)crc;
			frame[13] = (uint8_t)(crc >> 8);
			frame[14] = (uint8_t)(crc >> 16);
			frame[15] = (uint8_t)(crc >> 24);
		}
		r = smpl_model_handle_frame(b.m, b.now, frame, (size_t)n, reply, sizeof(reply));
		assert_true(r >= SMPL_HDR_SIZE);
		assert_int_equal(smpl_decode(reply, (size_t)r, &rf), 0);
		assert_true(rf.op & SMPL_OP_REPLY);
		answered++;

		if (state_of(&b) == SMPL_STATE_STANDBY)
			continue;
		/* the state moved: only an intact ARM or SELF_TEST may do that */
		assert_int_equal(smpl_decode(frame, (size_t)n, &f), 0);
		assert_int_equal(rf.status, SMPL_ST_OK);
		if (state_of(&b) == SMPL_STATE_ARMING) {
			assert_int_equal(f.op, SMPL_OP_ARM);
			armed++;
			smpl_model_disarm(b.m, b.now);
		} else {
			assert_int_equal(state_of(&b), SMPL_STATE_SELF_TEST);
			assert_int_equal(f.op, SMPL_OP_SELF_TEST);
			wait_ms(&b, b.cfg.self_test_ms);
		}
		assert_int_equal(state_of(&b), SMPL_STATE_STANDBY);
		/* a damaged SET_PARAMS that decoded must have been in range */
		assert_int_equal(set_params(&b, &p), SMPL_ST_OK);
	}
	print_message("# damaged frames: %lu answered, %lu decoded as an intact ARM\n",
		      answered, armed);
	assert_int_equal(look(&b).shot_count, 0);
	bench_stop(&b);
}

/* ---- hostile replies ------------------------------------------------------- */

static int raw_command(struct bench *b, uint8_t op, uint8_t *reply, size_t size)
{
	uint8_t frame[SMPL_MAX_FRAME];
	int n = smpl_encode(op, ++b->seq, 0, NULL, 0, frame, sizeof(frame));

	return smpl_model_handle_frame(b->m, b->now, frame, (size_t)n, reply, size);
}

static void test_hostile_replies(void **state)
{
	static const struct {
		enum smpl_hostile mode;
		int expect_err;		/* decode error, or 0 */
	} cases[] = {
		{ SMPL_HOSTILE_SHORT, SMPL_E_TRUNCATED },
		{ SMPL_HOSTILE_OVERSIZE, SMPL_E_OVERSIZE },
		{ SMPL_HOSTILE_BAD_CRC, SMPL_E_BAD_CRC },
		{ SMPL_HOSTILE_WRONG_SEQ, 0 },
	};
	static const uint8_t ops[] = { SMPL_OP_GET_STATUS, SMPL_OP_HEARTBEAT, SMPL_OP_GET_INFO };

	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		for (size_t k = 0; k < ARRAY_LEN(ops); k++) {
			struct bench b;
			uint8_t reply[SMPL_MAX_FRAME + 16];
			struct smpl_frame f;
			int r;

			bench_start(&b);
			to_standby(&b);
			smpl_model_set_hostile(b.m, cases[i].mode, 2);
			for (int round = 0; round < 3; round++) {
				r = raw_command(&b, ops[k], reply, sizeof(reply));
				assert_true(r > 0);
				int err = smpl_decode(reply, (size_t)r, &f);

				if (round == 2) {	/* count used up: a good reply */
					assert_int_equal(err, 0);
					assert_int_equal(f.seq, b.seq);
				} else if (cases[i].mode == SMPL_HOSTILE_WRONG_SEQ) {
					assert_int_equal(err, 0);
					assert_int_equal(f.op, ops[k] | SMPL_OP_REPLY);
					assert_int_not_equal(f.seq, b.seq);
				} else {
					assert_int_equal(err, cases[i].expect_err);
				}
			}
			bench_stop(&b);
		}
	}
}

static void test_hostile_stall_and_silence_still_obey(void **state)
{
	static const struct {
		enum smpl_hostile mode;
		int expect;
	} cases[] = {
		{ SMPL_HOSTILE_STALL, -1 },
		{ SMPL_HOSTILE_NO_ANSWER, 0 },
	};

	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct bench b;
		uint8_t reply[SMPL_MAX_FRAME + 16];

		bench_start(&b);
		to_ready(&b);
		smpl_model_set_hostile(b.m, cases[i].mode, 1);
		/* DISARM is obeyed even though its reply is lost */
		assert_int_equal(raw_command(&b, SMPL_OP_DISARM, reply, sizeof(reply)),
				 cases[i].expect);
		assert_int_equal(state_of(&b), SMPL_STATE_STANDBY);
		/* one only: the next command is answered */
		assert_int_equal(simple(&b, SMPL_OP_GET_STATUS), SMPL_ST_OK);
		bench_stop(&b);
	}
}

static void test_hostile_flood(void **state)
{
	struct bench b;
	uint8_t buf[SMPL_MAX_REPORT];
	struct smpl_frame f;
	uint16_t seq = 0;

	(void)state;
	bench_start(&b);
	to_standby(&b);
	drain(&b);
	assert_int_equal(smpl_model_next_report(b.m, b.now, buf, sizeof(buf)), 0);
	smpl_model_set_hostile(b.m, SMPL_HOSTILE_FLOOD, 50);
	for (int i = 0; i < 50; i++) {	/* no time passes: a burst */
		int n = smpl_model_next_report(b.m, b.now, buf, sizeof(buf));

		assert_true(n > 0);
		assert_int_equal(smpl_decode(buf, (size_t)n, &f), 0);
		assert_int_equal(f.op, SMPL_OP_STATUS);
		if (i > 0)
			assert_int_equal(f.seq, (uint16_t)(seq + 1));
		seq = f.seq;
	}
	assert_int_equal(smpl_model_next_report(b.m, b.now, buf, sizeof(buf)), 0);
	/* flood does not touch replies */
	assert_int_equal(simple(&b, SMPL_OP_GET_STATUS), SMPL_ST_OK);
	bench_stop(&b);
}

/* ---- reports ---------------------------------------------------------------- */

static void test_status_reports_periodic_and_on_change(void **state)
{
	struct bench b;
	uint8_t buf[SMPL_MAX_REPORT];
	struct smpl_frame f;
	struct drained d;
	int n;

	(void)state;
	bench_start(&b);
	to_standby(&b);
	d = drain(&b);
	assert_true(d.statuses >= 1);
	assert_int_equal(d.last_status.state, SMPL_STATE_STANDBY);
	assert_true(d.last_status.flags & SMPL_SF_CALIBRATED);

	/* nothing changed: next one after SMPL_STATUS_PERIOD_MS */
	wait_ms(&b, SMPL_STATUS_PERIOD_MS - 1);
	assert_int_equal(smpl_model_next_report(b.m, b.now, buf, sizeof(buf)), 0);
	wait_ms(&b, 1);
	n = smpl_model_next_report(b.m, b.now, buf, sizeof(buf));
	assert_true(n > 0);
	assert_int_equal(smpl_decode(buf, (size_t)n, &f), 0);
	assert_int_equal(f.op, SMPL_OP_STATUS);
	assert_int_equal(smpl_model_next_report(b.m, b.now, buf, sizeof(buf)), 0);

	/* a change is reported at once, each transition in order */
	smpl_model_set_calibrated(b.m, b.now, false);
	d = drain(&b);
	assert_int_equal(d.statuses, 1);
	assert_false(d.last_status.flags & SMPL_SF_CALIBRATED);
	smpl_model_set_calibrated(b.m, b.now, true);
	struct smpl_params_n p = good_params();
	assert_int_equal(set_params(&b, &p), SMPL_ST_OK);
	assert_int_equal(simple(&b, SMPL_OP_ARM), SMPL_ST_OK);
	d = drain(&b);
	assert_int_equal(d.statuses, 3);	/* calibrated, params set, arming */
	assert_int_equal(d.last_status.state, SMPL_STATE_ARMING);
	assert_true(d.last_status.flags & SMPL_SF_EMISSION_LED);
	assert_true(d.last_status.flags & SMPL_SF_PARAMS_SET);

	/* a too-small buffer gets nothing and loses nothing */
	wait_with_heartbeat(&b, b.cfg.emission_delay_ms);
	assert_int_equal(smpl_model_next_report(b.m, b.now, buf, SMPL_MAX_REPORT - 1), 0);
	d = drain(&b);
	assert_int_equal(d.last_status.state, SMPL_STATE_READY);
	bench_stop(&b);
}

static void test_report_sequence_numbers(void **state)
{
	struct bench b;
	uint8_t buf[SMPL_MAX_REPORT];
	struct smpl_frame f;
	int n, count = 0;
	uint16_t prev = 0;

	(void)state;
	bench_start(&b);
	to_ready(&b);
	press(&b);
	for (int i = 0; i < 300; i++) {
		wait_ms(&b, 3);
		if (i % 50 == 0)
			heartbeat(&b);
		while ((n = smpl_model_next_report(b.m, b.now, buf, sizeof(buf))) > 0) {
			assert_int_equal(smpl_decode(buf, (size_t)n, &f), 0);
			if (count++ > 0)
				assert_int_equal(f.seq, (uint16_t)(prev + 1));
			prev = f.seq;
		}
	}
	assert_true(count > 100);
	bench_stop(&b);
}

static void test_report_queue_bounded(void **state)
{
	struct bench b;
	struct smpl_params_n p = good_params();
	struct drained d;

	(void)state;
	bench_start(&b);
	to_standby(&b);
	p.rate_mhz = 10000;
	assert_int_equal(set_params(&b, &p), SMPL_ST_OK);
	assert_int_equal(simple(&b, SMPL_OP_ARM), SMPL_ST_OK);
	wait_with_heartbeat(&b, b.cfg.emission_delay_ms);
	press(&b);
	wait_with_heartbeat(&b, 10000);	/* 100 pulses nobody reads */
	release(&b);
	assert_int_equal(look(&b).shot_count, 101);
	assert_int_equal(smpl_model_reports_queued(b.m), 64);	/* full, never more */
	assert_true(smpl_model_reports_dropped(b.m) > 0);
	d = drain(&b);
	/* the newest pulses are kept; the gap shows in the shot numbers */
	assert_int_equal(d.last_shot, 101);
	assert_true(d.first_shot > 1);
	assert_int_equal(d.pulses, d.last_shot - d.first_shot + 1);
	assert_int_equal(smpl_model_reports_queued(b.m), 0);
	bench_stop(&b);
}

/* ---- control disarm, time ------------------------------------------------- */

static void test_control_disarm_and_time_going_backwards(void **state)
{
	struct bench b;
	uint32_t shots;

	(void)state;
	bench_start(&b);
	to_ready(&b);
	press(&b);
	wait_with_heartbeat(&b, 600);
	smpl_model_disarm(b.m, b.now);
	assert_int_equal(state_of(&b), SMPL_STATE_STANDBY);
	shots = look(&b).shot_count;
	wait_with_heartbeat(&b, 3000);
	assert_int_equal(look(&b).shot_count, shots);

	/* an earlier "now" is taken as the latest time seen */
	smpl_model_advance(b.m, b.now - 5000);
	assert_int_equal(state_of(&b), SMPL_STATE_STANDBY);
	assert_int_equal(simple(&b, SMPL_OP_ARM), SMPL_ST_OK);
	smpl_model_advance(b.m, 0);
	assert_int_equal(state_of(&b), SMPL_STATE_ARMING);
	assert_int_equal(smpl_model_next_deadline(b.m, b.now), b.cfg.watchdog_ms);
	bench_stop(&b);
}

/* ---- random walk: safety invariants under any order of events -------------- */

/* What the host and the technician did, as the test saw it (times in ms). */
struct walk_log {
	uint64_t powered_on_at;
	uint64_t last_arm_ok;		/* 0: none since power on */
	uint64_t last_feed;		/* last accepted ARM or HEARTBEAT */
	uint64_t last_press;		/* last footswitch down edge */
	bool foot;
	bool powered;
};

struct walk_stats {
	unsigned long checks, pulses, faults_acked;
	unsigned int visits[SMPL_STATE__MAX + 1];
	unsigned int faults[SMPL_FAULT__MAX + 1];
};

/*
 * After each event, or each millisecond of waiting: a pulse since the last
 * check must have every condition for emission, and a latched FAULT ends
 * only through an accepted ACK_FAULT or power off.
 */
static void walk_check(struct bench *b, const struct walk_log *log,
		       struct smpl_model_view *prev, bool acked_or_off,
		       struct walk_stats *st)
{
	struct smpl_model_view v = look(b);

	st->checks++;
	st->visits[v.state]++;
	if (v.shot_count != prev->shot_count) {
		st->pulses += v.shot_count - prev->shot_count;
		assert_int_equal(v.state, SMPL_STATE_EMITTING);
		assert_int_equal(v.interlocks, 0);
		assert_true(log->foot && v.footswitch);
		assert_true(log->powered);
		assert_true(log->last_arm_ok > 0 && log->last_arm_ok >= log->powered_on_at);
		assert_true(b->now >= log->last_arm_ok + b->cfg.emission_delay_ms);
		assert_true(log->last_press >= log->last_arm_ok + b->cfg.emission_delay_ms);
		assert_true(b->now - log->last_feed < b->cfg.watchdog_ms);
	}
	if (is_armed_state(v.state))
		assert_int_equal(v.interlocks, 0);
	if (v.state == SMPL_STATE_EMITTING)
		assert_true(v.footswitch);
	if (prev->state != SMPL_STATE_FAULT && v.state == SMPL_STATE_FAULT)
		st->faults[v.fault]++;
	if (prev->state == SMPL_STATE_FAULT && v.state != SMPL_STATE_FAULT) {
		assert_true(acked_or_off);
		if (v.state != SMPL_STATE_OFF)
			st->faults_acked++;
	}
	*prev = v;
}

static void test_random_walk_safety_invariants(void **state)
{
	struct smpl_model_config cfg;
	struct bench b;
	struct walk_log log = { 0 };
	struct walk_stats st = { 0 };
	struct smpl_model_view prev;
	unsigned short rng[3] = { 0x1234, 0x5678, 0x9abc };

	(void)state;
	smpl_model_default_config(&cfg);
	cfg.emission_delay_ms = 300;	/* a lively unit: more of everything per step */
	cfg.watchdog_ms = 400;
	cfg.idle_timeout_ms = 3000;
	bench_start_cfg(&b, &cfg, NULL);
	prev = look(&b);

	for (int step = 0; step < 40000; step++) {
		long dice = nrand48(rng) % 100;
		bool acked_or_off = false;
		uint16_t status;

		smpl_model_advance(b.m, b.now);	/* time-driven events first */
		walk_check(&b, &log, &prev, false, &st);

		if (!log.powered && dice >= 80) {
			smpl_model_power_on(b.m, b.now);
			log.powered = true;
			log.powered_on_at = b.now;
			log.last_arm_ok = 0;
		} else if (dice < 25) {		/* time passes */
			long ms = 1 + nrand48(rng) % 120;

			for (long i = 0; i < ms; i++) {
				wait_ms(&b, 1);
				walk_check(&b, &log, &prev, false, &st);
			}
			continue;
		} else if (dice < 50) {
			if (simple(&b, SMPL_OP_HEARTBEAT) == SMPL_ST_OK)
				log.last_feed = b.now;
		} else if (dice < 58) {
			if (simple(&b, SMPL_OP_ARM) == SMPL_ST_OK)
				log.last_arm_ok = log.last_feed = b.now;
		} else if (dice < 60) {
			simple(&b, SMPL_OP_DISARM);
		} else if (dice < 61) {
			smpl_model_disarm(b.m, b.now);
		} else if (dice < 66) {
			struct smpl_params_n p = good_params();

			p.rate_mhz = 1000 + (uint32_t)(nrand48(rng) % 9001);
			set_params(&b, &p);
		} else if (dice < 72) {
			status = simple(&b, SMPL_OP_ACK_FAULT);
			acked_or_off = status == SMPL_ST_OK;
		} else if (dice < 73) {
			simple(&b, SMPL_OP_SELF_TEST);
		} else if (dice < 85) {
			bool held = nrand48(rng) % 2;

			if (held && !log.foot)
				log.last_press = b.now;
			log.foot = held;
			smpl_model_set_footswitch(b.m, b.now, held);
		} else if (dice < 90) {
			/* now and then open one, mostly close the lowest open one */
			uint16_t open_bits = look(&b).interlocks;
			bool open = open_bits == 0 ? nrand48(rng) % 4 == 0 : nrand48(rng) % 5 == 0;
			uint16_t bit = open ? all_interlocks[nrand48(rng) % SMPL_IL_COUNT] :
				       (uint16_t)(open_bits & -open_bits);

			smpl_model_set_interlock(b.m, b.now, bit, open);
		} else if (dice < 91) {
			if (nrand48(rng) % 8 == 0)
				smpl_model_inject_fault(b.m, b.now,
					(uint8_t)(1 + nrand48(rng) % SMPL_FAULT__MAX));
			else
				smpl_model_clear_fault_cause(b.m, b.now);
		} else if (dice < 99) {
			drain(&b);
		} else if (log.powered) {
			smpl_model_power_off(b.m, b.now);
			log.powered = false;
			acked_or_off = true;
		}
		walk_check(&b, &log, &prev, acked_or_off, &st);
	}
	/* the walk went everywhere: otherwise it proves little */
	for (int s = 0; s <= SMPL_STATE__MAX; s++)
		if (st.visits[s] == 0)
			fail_msg("state %s never visited", smpl_state_name((uint8_t)s));
	print_message("# random walk: visits");
	for (int s = 0; s <= SMPL_STATE__MAX; s++)
		print_message(" %s=%u", smpl_state_name((uint8_t)s), st.visits[s]);
	print_message("\n# faults:");
	for (int f = 0; f <= SMPL_FAULT__MAX; f++)
		print_message(" %s=%u", smpl_fault_name((uint8_t)f), st.faults[f]);
	print_message("\n");
	print_message("# random walk: %lu checks, %lu pulses, %lu faults acknowledged\n",
		      st.checks, st.pulses, st.faults_acked);
	assert_true(st.pulses > 100);
	assert_true(st.faults_acked > 10);
	bench_stop(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_default_config),
		cmocka_unit_test(test_bad_config_refused),
		cmocka_unit_test(test_get_info),
		cmocka_unit_test(test_power_on_self_test),
		cmocka_unit_test(test_self_test_failure_latches),
		cmocka_unit_test(test_every_state_every_event),
		cmocka_unit_test(test_footswitch_held_before_ready_needs_release),
		cmocka_unit_test(test_footswitch_pressed_before_arm_needs_release),
		cmocka_unit_test(test_no_pulse_outside_ready),
		cmocka_unit_test(test_interlock_during_emission_stops_for_good),
		cmocka_unit_test(test_interlock_in_standby_no_fault),
		cmocka_unit_test(test_arm_refused_per_interlock),
		cmocka_unit_test(test_arm_refusals),
		cmocka_unit_test(test_watchdog),
		cmocka_unit_test(test_watchdog_fed_keeps_armed_and_standby_has_none),
		cmocka_unit_test(test_watchdog_wins_tie_with_pulse),
		cmocka_unit_test(test_ack_refused_while_cause_persists),
		cmocka_unit_test(test_pulses_at_set_rate),
		cmocka_unit_test(test_pulse_spacing),
		cmocka_unit_test(test_energy_exact_and_with_drift),
		cmocka_unit_test(test_energy_noise_seeded),
		cmocka_unit_test(test_shot_counter_survives_power_cycle),
		cmocka_unit_test(test_rtc_and_skew),
		cmocka_unit_test(test_idle_timeout),
		cmocka_unit_test(test_set_params_limits),
		cmocka_unit_test(test_malformed_commands),
		cmocka_unit_test(test_every_bit_flip_of_arm_is_refused),
		cmocka_unit_test(test_damaged_frames_never_arm),
		cmocka_unit_test(test_hostile_replies),
		cmocka_unit_test(test_hostile_stall_and_silence_still_obey),
		cmocka_unit_test(test_hostile_flood),
		cmocka_unit_test(test_status_reports_periodic_and_on_change),
		cmocka_unit_test(test_report_sequence_numbers),
		cmocka_unit_test(test_report_queue_bounded),
		cmocka_unit_test(test_control_disarm_and_time_going_backwards),
		cmocka_unit_test(test_random_walk_safety_invariants),
	};

	return cmocka_run_group_tests_name("model", tests, NULL, NULL);
}
