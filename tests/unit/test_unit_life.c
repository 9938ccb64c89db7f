/* SPDX-License-Identifier: MIT */
/*
 * A unit's life in smplaserd with its real worker threads: adopted, probed,
 * published, then removed as discovery removes a unit that went away (an
 * unplug, the driver unbound), and freed from the event loop's next turn.
 * The simulated Unplug keeps its unit, so only this test walks, on a host
 * without hardware, the path a real removal takes.
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

#include "daemon.h"
#include "lifecycle.h"
#include "records.h"
#include "supervisor.h"
#include "unit.h"

struct fixture {
	struct smpl_daemon d;
	char dir[64];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char msg[256] = "";

	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "/tmp/test_unit_life.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	f->d = (struct smpl_daemon){ .state = "starting", .session_bus = true };
	smpl_daemon_setup(&f->d);
	smpl_config_defaults(&f->d.cfg);
	f->d.state_dir = strdup(f->dir);
	assert_non_null(f->d.state_dir);
	assert_int_equal(sd_event_new(&f->d.event), 0);
	assert_true(smpl_records_open(&f->d, msg, sizeof(msg)) >= 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[128];

	smpl_daemon_stop(&f->d);
	smpl_daemon_free(&f->d);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

/* Runs the loop for about ms milliseconds of wall time. */
static void run_for(struct smpl_daemon *d, unsigned int ms)
{
	for (unsigned int i = 0; i < ms / 10; i++)
		assert_true(sd_event_run(d->event, 10 * 1000) >= 0);
}

static void test_removed_unit_is_freed_from_the_loop(void **state)
{
	struct fixture *f = *state;
	struct smpl_daemon *d = &f->d;

	assert_int_equal(smpl_unit_add_sim(d, 1), 0);
	for (unsigned int i = 0; i < 300 && !(d->units && d->units->published); i++)
		run_for(d, 10);
	assert_non_null(d->units);
	assert_true(d->units->published);

	smpl_unit_drop(d->units);
	assert_null(d->units);
	assert_non_null(d->dying);	/* until its calls in flight are done */
	run_for(d, 200);
	assert_null(d->dying);		/* freed, and the loop still runs */
	run_for(d, 50);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_removed_unit_is_freed_from_the_loop,
						setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
