/* SPDX-License-Identifier: MIT */
/*
 * The daemon's "sim" backend (daemon/backend-sim.c) on a real sd-event loop:
 * the model behind real wire frames, its reports turned into events, the
 * battery-backed state kept across instances, hostile replies turned into
 * errors, unplug and replug.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "backend.h"
#include "backend-sim.h"
#include "model.h"

struct recorder {
	unsigned int statuses, pulses, disconnects, connects;
	struct smpl_status_n last_status;
	uint32_t last_shot;
};

static void record(struct smpl_backend *b, const struct smpl_backend_event *ev, void *userdata)
{
	struct recorder *rec = userdata;

	(void)b;
	switch (ev->type) {
	case SMPL_BEV_STATUS:
		rec->statuses++;
		rec->last_status = ev->status;
		break;
	case SMPL_BEV_PULSE:
		rec->pulses++;
		assert_int_equal(ev->pulse.shot, rec->last_shot + 1);	/* in order, none lost */
		rec->last_shot = ev->pulse.shot;
		break;
	case SMPL_BEV_DISCONNECT:
		rec->disconnects++;
		break;
	case SMPL_BEV_CONNECT:
		rec->connects++;
		break;
	}
}

struct fixture {
	sd_event *event;
	struct smpl_backend *b;
	struct recorder rec;
	char dir[64];
};

/* Runs the loop for @ms milliseconds. */
static void run_for(struct fixture *f, unsigned int ms)
{
	uint64_t now, end;

	assert_true(sd_event_now(f->event, CLOCK_MONOTONIC, &now) >= 0);
	end = now + ms * 1000ULL;
	do {
		assert_true(sd_event_run(f->event, 5 * 1000) >= 0);
		assert_true(sd_event_now(f->event, CLOCK_MONOTONIC, &now) >= 0);
	} while (now < end);
}

/* Runs the loop until the last reported state is @state, at most @ms. */
static void run_until_state(struct fixture *f, uint8_t state, unsigned int ms)
{
	for (unsigned int waited = 0; waited < ms; waited += 10) {
		if (f->rec.statuses && f->rec.last_status.state == state)
			return;
		run_for(f, 10);
	}
	fail_msg("state %u not reached in %u ms (last %u)", state, ms, f->rec.last_status.state);
}

static int open_unit(struct fixture *f, unsigned int index)
{
	struct smpl_sim_options opt = {
		.index = index,
		.nv_dir = f->dir,
		.emission_delay_ms = 50,
	};
	int r = smpl_backend_sim_new(f->event, &opt, record, &f->rec, &f->b);

	if (r < 0)
		return r;
	return f->b->ops->open(f->b);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "/tmp/test-backend-sim-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	assert_int_equal(sd_event_new(&f->event), 0);
	assert_int_equal(open_unit(f, 7), 0);
	run_until_state(f, SMPL_STATE_STANDBY, 2000);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char path[128];

	smpl_backend_free(f->b);
	sd_event_unref(f->event);
	snprintf(path, sizeof(path), "%s/sim-SIM00007.nv", f->dir);
	unlink(path);
	rmdir(f->dir);
	free(f);
	return 0;
}

static const struct smpl_params_n good_params = {
	.wavelength_nm = 1064, .spot_um = 3000, .fluence_mj_cm2 = 3000,
	.pulse_ps = 10000, .rate_mhz = 10000,
};

static void test_info_through_frames(void **state)
{
	struct fixture *f = *state;
	struct smpl_info_n info;
	struct smpl_status_n st;
	int64_t rtc;

	assert_string_equal(smpl_backend_name(f->b), "sim");
	assert_non_null(f->b->sim);
	assert_int_equal(f->b->ops->get_info(f->b, &info), 0);
	assert_string_equal(info.serial, "SIM00007");
	assert_int_equal(info.wavelength_nm[0], 1064);
	assert_int_equal(f->b->ops->get_status(f->b, &st), 0);
	assert_int_equal(st.state, SMPL_STATE_STANDBY);
	assert_int_equal(st.interlocks, 0);
	assert_int_equal(f->b->ops->get_rtc(f->b, &rtc), 0);
	assert_true(rtc > 1700000000);
}

static void test_unit_refusals_come_back_as_status(void **state)
{
	struct fixture *f = *state;
	struct smpl_params_n bad = good_params;

	assert_int_equal(f->b->ops->arm(f->b), SMPL_ST_NO_PARAMS);
	bad.spot_um = 100;
	assert_int_equal(f->b->ops->set_params(f->b, &bad), SMPL_ST_OUT_OF_RANGE);
	assert_int_equal(f->b->ops->set_params(f->b, &good_params), 0);
	assert_int_equal(f->b->sim->set_interlock(f->b, SMPL_IL_DOOR, true), 0);
	assert_int_equal(f->b->ops->arm(f->b), SMPL_ST_INTERLOCK_OPEN);
	run_for(f, 30);
	assert_int_equal(f->rec.last_status.interlocks, SMPL_IL_DOOR);
}

static void test_arm_pulses_and_shot_counter_persist(void **state)
{
	struct fixture *f = *state;
	struct fixture g = { 0 };

	assert_int_equal(f->b->ops->set_params(f->b, &good_params), 0);
	assert_int_equal(f->b->ops->arm(f->b), 0);
	run_until_state(f, SMPL_STATE_READY, 1000);
	assert_int_equal(f->b->sim->set_footswitch(f->b, true), 0);
	for (int i = 0; i < 60 && f->rec.pulses < 3; i++) {
		run_for(f, 20);
		assert_int_equal(f->b->ops->heartbeat(f->b), 0);
	}
	assert_int_equal(f->b->sim->set_footswitch(f->b, false), 0);
	assert_int_equal(f->b->ops->disarm(f->b), 0);
	run_until_state(f, SMPL_STATE_STANDBY, 500);
	assert_true(f->rec.pulses >= 3);
	assert_int_equal(f->rec.last_status.shot_count, f->rec.last_shot);

	/* Power the unit off; the same unit again remembers its shot counter. */
	smpl_backend_free(f->b);
	f->b = NULL;
	memcpy(g.dir, f->dir, sizeof(g.dir));
	g.event = f->event;
	assert_int_equal(open_unit(&g, 7), 0);
	run_until_state(&g, SMPL_STATE_STANDBY, 2000);
	assert_int_equal(g.rec.last_status.shot_count, f->rec.last_shot);
	f->b = g.b;
	f->b->userdata = &f->rec;
}

static void test_hostile_replies_are_errors(void **state)
{
	struct fixture *f = *state;
	static const struct {
		enum smpl_hostile mode;
		int expect;
	} cases[] = {
		{ SMPL_HOSTILE_SHORT, -EPROTO },
		{ SMPL_HOSTILE_OVERSIZE, -EPROTO },
		{ SMPL_HOSTILE_BAD_CRC, -EPROTO },
		{ SMPL_HOSTILE_WRONG_SEQ, -EPROTO },
		{ SMPL_HOSTILE_STALL, -EPIPE },
		{ SMPL_HOSTILE_NO_ANSWER, -ETIMEDOUT },
	};
	struct smpl_status_n st;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(f->b->sim->set_hostile(f->b, cases[i].mode, 1), 0);
		assert_int_equal(f->b->ops->get_status(f->b, &st), cases[i].expect);
		assert_int_equal(f->b->ops->get_status(f->b, &st), 0);	/* one reply only */
	}
	/*
	 * DISARM (the control request) is carried out when its answer is lost,
	 * but the host is told it timed out, as a transfer would (one answer only).
	 */
	assert_int_equal(f->b->sim->set_hostile(f->b, SMPL_HOSTILE_NO_ANSWER, 1), 0);
	assert_int_equal(f->b->ops->disarm(f->b), -ETIMEDOUT);
	assert_int_equal(f->b->ops->get_status(f->b, &st), 0);
	assert_int_equal(st.state, SMPL_STATE_STANDBY);
	assert_int_equal(f->b->ops->disarm(f->b), 0);
	/* A flood of reports is drained without stalling the loop. */
	assert_int_equal(f->b->sim->set_hostile(f->b, SMPL_HOSTILE_FLOOD, 5000), 0);
	run_for(f, 200);
	assert_int_equal(f->b->ops->get_status(f->b, &st), 0);
	assert_int_equal(st.state, SMPL_STATE_STANDBY);
}

static void test_unplug_and_replug(void **state)
{
	struct fixture *f = *state;
	struct smpl_status_n st;

	assert_int_equal(f->b->sim->unplug(f->b), 0);
	assert_int_equal(f->rec.disconnects, 0);	/* delivered from the loop, not inside */
	run_for(f, 30);
	assert_int_equal(f->rec.disconnects, 1);
	assert_int_equal(f->b->ops->get_status(f->b, &st), -ENODEV);
	assert_int_equal(f->b->ops->arm(f->b), -ENODEV);
	assert_int_equal(f->b->sim->set_footswitch(f->b, true), -ENODEV);
	assert_int_equal(f->b->sim->unplug(f->b), -ENODEV);
	assert_int_equal(f->b->sim->replug(f->b), 0);
	assert_int_equal(f->b->sim->replug(f->b), -EALREADY);
	run_for(f, 30);
	assert_int_equal(f->rec.connects, 1);
	run_until_state(f, SMPL_STATE_STANDBY, 2000);
	assert_int_equal(f->b->ops->get_status(f->b, &st), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_info_through_frames, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unit_refusals_come_back_as_status, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_arm_pulses_and_shot_counter_persist, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_hostile_replies_are_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unplug_and_replug, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
