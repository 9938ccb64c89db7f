// SPDX-License-Identifier: MIT
/*
 * cmocka tests of smplaser-gadget's control commands (gadget-ctl.c) and its
 * nv file, on a real model with a fake clock.  The USB side is replaced at
 * link time: this file defines gadget.c's functions that gadget-ctl.c calls.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "codec.h"
#include "gadget.h"

/* --- link-time fakes of gadget.c ----------------------------------------- */

static uint64_t fake_ms;
static bool stop_requested;
static int plug_calls, power_calls;

uint64_t gadget_now_ms(void)
{
	return fake_ms;
}

uint64_t gadget_now_ns(void)
{
	return fake_ms * 1000000u;
}

bool gadget_stopping(void)
{
	return stop_requested;
}

void gadget_request_stop(void)
{
	stop_requested = true;
}

void gadget_note_state(struct gadget *g)
{
	struct smpl_model_view v;

	smpl_model_view(g->model, fake_ms, &v);
	if (v.state != g->last_state) {
		g->last_state = v.state;
		g->state_changed_ns = gadget_now_ns();
	}
}

void gadget_flush_replies(struct gadget *g)
{
	g->queue_count = 0;
}

int gadget_set_plugged(struct gadget *g, bool plugged)
{
	plug_calls++;
	g->plugged = plugged;
	return 0;
}

int gadget_set_power(struct gadget *g, bool on)
{
	power_calls++;
	g->powered = on;
	g->plugged = on;
	if (on)
		smpl_model_power_on(g->model, fake_ms);
	else
		smpl_model_power_off(g->model, fake_ms);
	return 0;
}

/* --- fixture ------------------------------------------------------------- */

static int setup(void **state)
{
	struct gadget *g = calloc(1, sizeof(*g));

	assert_non_null(g);
	fake_ms = 1000;
	stop_requested = false;
	plug_calls = power_calls = 0;
	pthread_mutex_init(&g->lock, NULL);
	pthread_cond_init(&g->changed, NULL);
	smpl_model_default_config(&g->cfg);
	g->model = smpl_model_new(&g->cfg, NULL, fake_ms, 1700000000);
	assert_non_null(g->model);
	smpl_model_power_on(g->model, fake_ms);
	g->powered = g->plugged = true;
	fake_ms += g->cfg.self_test_ms + 1;	/* past the self-test: STANDBY */
	smpl_model_advance(g->model, fake_ms);
	*state = g;
	return 0;
}

static int teardown(void **state)
{
	struct gadget *g = *state;

	smpl_model_free(g->model);
	pthread_cond_destroy(&g->changed);
	pthread_mutex_destroy(&g->lock);
	free(g);
	return 0;
}

/* Run @line; returns the reply in a static buffer. */
static const char *run(struct gadget *g, const char *line)
{
	static char reply[2048];
	char buf[300];

	snprintf(buf, sizeof(buf), "%s", line);
	gadget_ctl_run_line(g, buf, reply, sizeof(reply));
	return reply;
}

static bool is_ok(const char *reply)
{
	return strncmp(reply, "ok", 2) == 0 && (reply[2] == '\0' || reply[2] == ' ');
}

static bool is_error(const char *reply)
{
	return strncmp(reply, "error: ", 7) == 0;
}

static struct smpl_model_view view(struct gadget *g)
{
	struct smpl_model_view v;

	smpl_model_advance(g->model, fake_ms);
	smpl_model_view(g->model, fake_ms, &v);
	return v;
}

/* --- tests --------------------------------------------------------------- */

static void test_status_reports_the_unit(void **state)
{
	struct gadget *g = *state;
	const char *r = run(g, "status");

	assert_true(is_ok(r));
	assert_non_null(strstr(r, " serial=SMP-000001 "));
	assert_non_null(strstr(r, " state=STANDBY "));
	assert_non_null(strstr(r, " fault=NONE "));
	assert_non_null(strstr(r, " open=none "));
	assert_non_null(strstr(r, " shots=0 "));
	assert_non_null(strstr(r, " usb=bound "));
	assert_non_null(strstr(r, " powered=1 "));
	assert_non_null(strstr(r, " state_changed_ns="));
}

static void test_footswitch(void **state)
{
	struct gadget *g = *state;

	assert_true(is_ok(run(g, "footswitch 1")));
	assert_true(view(g).footswitch);
	assert_true(is_ok(run(g, "footswitch 0")));
	assert_false(view(g).footswitch);
	assert_true(is_error(run(g, "footswitch 2")));
	assert_true(is_error(run(g, "footswitch on")));
	assert_true(is_error(run(g, "footswitch")));
	assert_true(is_error(run(g, "footswitch 1 1")));
	assert_false(view(g).footswitch);
}

static void test_footswitch_alone_never_fires(void **state)
{
	struct gadget *g = *state;

	assert_true(is_ok(run(g, "footswitch 1")));
	fake_ms += 5000;
	assert_int_equal(view(g).shot_count, 0);
	assert_int_equal(view(g).state, SMPL_STATE_STANDBY);
}

static void test_interlocks(void **state)
{
	struct gadget *g = *state;
	char line[64];

	for (unsigned int i = 0; i < SMPL_IL_COUNT; i++) {
		const char *name = smpl_interlock_name((uint16_t)(1u << i));

		snprintf(line, sizeof(line), "interlock %s open", name);
		assert_true(is_ok(run(g, line)));
		assert_int_equal(view(g).interlocks, 1u << i);
		assert_non_null(strstr(run(g, "status"), name));
		snprintf(line, sizeof(line), "interlock %s closed", name);
		assert_true(is_ok(run(g, line)));
		assert_int_equal(view(g).interlocks, 0);
	}
	assert_true(is_error(run(g, "interlock window open")));
	assert_true(is_error(run(g, "interlock door ajar")));
	assert_true(is_error(run(g, "interlock door")));
	assert_int_equal(view(g).interlocks, 0);
}

static void test_faults_by_number_and_name(void **state)
{
	struct gadget *g = *state;

	assert_true(is_ok(run(g, "fault energy")));
	assert_int_equal(view(g).state, SMPL_STATE_FAULT);
	assert_int_equal(view(g).fault, SMPL_FAULT_ENERGY);
	assert_true(is_ok(run(g, "clear-fault")));

	assert_true(is_error(run(g, "fault 0")));
	assert_true(is_error(run(g, "fault 9")));
	assert_true(is_error(run(g, "fault -1")));
	assert_true(is_error(run(g, "fault melted")));
	assert_true(is_ok(run(g, "fault self-test")));
	assert_true(is_ok(run(g, "fault SELF_TEST")));
	assert_true(is_ok(run(g, "fault 6")));
}

static void test_hostile_reply_reaches_the_frame(void **state)
{
	struct gadget *g = *state;
	uint8_t cmd[SMPL_MAX_FRAME], reply[SMPL_MAX_FRAME + 16];
	int n = smpl_encode(SMPL_OP_GET_STATUS, 7, 0, NULL, 0, cmd, sizeof(cmd));
	int len;

	assert_true(is_ok(run(g, "hostile bad-crc 1")));
	len = smpl_model_handle_frame(g->model, fake_ms, cmd, (size_t)n, reply, sizeof(reply));
	assert_true(len > 0);
	assert_int_equal(smpl_decode(reply, (size_t)len, NULL), SMPL_E_BAD_CRC);
	len = smpl_model_handle_frame(g->model, fake_ms, cmd, (size_t)n, reply, sizeof(reply));
	assert_int_equal(smpl_decode(reply, (size_t)len, NULL), 0);

	assert_true(is_ok(run(g, "hostile stall 1")));
	assert_int_equal(smpl_model_handle_frame(g->model, fake_ms, cmd, (size_t)n, reply,
						 sizeof(reply)), -1);
	assert_true(is_ok(run(g, "hostile no-answer 1")));
	assert_int_equal(smpl_model_handle_frame(g->model, fake_ms, cmd, (size_t)n, reply,
						 sizeof(reply)), 0);

	assert_true(is_error(run(g, "hostile weird 1")));
	assert_true(is_error(run(g, "hostile stall -1")));
	assert_true(is_error(run(g, "hostile stall many")));
	assert_true(is_error(run(g, "hostile stall")));
}

static void test_numbers_are_checked(void **state)
{
	struct gadget *g = *state;
	int64_t rtc0 = view(g).rtc_s;

	assert_true(is_ok(run(g, "drift -5000")));
	assert_true(is_error(run(g, "drift 2147483648")));
	assert_true(is_error(run(g, "drift 5%")));
	assert_true(is_ok(run(g, "rtc-skew 3600")));
	assert_true(view(g).rtc_s - rtc0 >= 3600 && view(g).rtc_s - rtc0 <= 3601);
	assert_true(is_error(run(g, "rtc-skew soon")));
	assert_true(is_ok(run(g, "calibration expired")));
	assert_true(is_ok(run(g, "calibration valid")));
	assert_true(is_error(run(g, "calibration maybe")));
}

static void test_bad_lines(void **state)
{
	struct gadget *g = *state;

	assert_true(is_error(run(g, "")));
	assert_true(is_error(run(g, "   ")));
	assert_true(is_error(run(g, "arm")));	/* the socket never arms */
	assert_true(is_error(run(g, "fire")));
	assert_true(is_error(run(g, "status now")));
	assert_true(is_error(run(g, "a b c d e f g h i j")));
	assert_true(is_ok(run(g, "status\r")));	/* a CR from a telnet-ish client */
}

static void test_cable_and_power(void **state)
{
	struct gadget *g = *state;

	assert_true(is_ok(run(g, "unplug")));
	assert_int_equal(plug_calls, 1);
	assert_false(g->plugged);
	assert_true(is_ok(run(g, "replug")));
	assert_true(g->plugged);
	assert_true(is_ok(run(g, "power off")));
	assert_int_equal(view(g).state, SMPL_STATE_OFF);
	assert_true(is_error(run(g, "replug")));	/* no power, no USB */
	assert_true(is_error(run(g, "power down")));
	assert_true(is_ok(run(g, "power on")));
	assert_int_equal(power_calls, 2);
	assert_int_equal(view(g).state, SMPL_STATE_SELF_TEST);
}

static void test_quit(void **state)
{
	struct gadget *g = *state;

	assert_false(gadget_stopping());
	assert_true(is_ok(run(g, "quit")));
	assert_true(gadget_stopping());
}

static void test_nv_round_trip(void **state)
{
	char path[] = "/tmp/gadget-test-nv-XXXXXX";
	struct smpl_model_nv in = { .shot_count = 4242, .rtc_offset_s = -77 }, out;
	int fd = mkstemp(path);

	(void)state;
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(gadget_nv_save(path, &in), 0);
	assert_int_equal(gadget_nv_load(path, &out), 0);
	assert_int_equal(out.shot_count, 4242);
	assert_int_equal(out.rtc_offset_s, -77);
	unlink(path);

	/* A unit without a file yet starts from zero. */
	assert_int_equal(gadget_nv_load(path, &out), 0);
	assert_int_equal(out.shot_count, 0);
}

static void test_nv_refuses_garbage(void **state)
{
	char path[] = "/tmp/gadget-test-nv-XXXXXX";
	int fd = mkstemp(path);
	struct smpl_model_nv out;
	FILE *f;

	(void)state;
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	fputs("shot_count=12\nshots=99\n", f);
	fclose(f);
	assert_int_equal(gadget_nv_load(path, &out), -1);

	f = fopen(path, "w");
	fputs("shot_count=99999999999\n", f);	/* more than 32 bits */
	fclose(f);
	assert_int_equal(gadget_nv_load(path, &out), -1);
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_status_reports_the_unit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_footswitch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_footswitch_alone_never_fires, setup, teardown),
		cmocka_unit_test_setup_teardown(test_interlocks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_faults_by_number_and_name, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hostile_reply_reaches_the_frame, setup, teardown),
		cmocka_unit_test_setup_teardown(test_numbers_are_checked, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_lines, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cable_and_power, setup, teardown),
		cmocka_unit_test_setup_teardown(test_quit, setup, teardown),
		cmocka_unit_test(test_nv_round_trip),
		cmocka_unit_test(test_nv_refuses_garbage),
	};

	return cmocka_run_group_tests_name("smplaser-gadget control", tests, NULL, NULL);
}
