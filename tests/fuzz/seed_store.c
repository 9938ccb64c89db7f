/* SPDX-License-Identifier: MIT */
/*
 * Writes the seed records database of fuzz_store_open: a real database
 * made by daemon/store.c with a unit, an ended session with a completed
 * treatment and its pulses, an open session with an open treatment (as
 * after a crash) and an audit record.  Used by tests/fuzz/make-seeds.py:
 *   seed_store DIR    -> DIR/records.db (checkpointed, no WAL left)
 */
#include <stdio.h>
#include <stdlib.h>

#include "store.h"

int main(int argc, char **argv);

#define T0 1764000000000LL

static void ok(int r, struct store *st, const char *what)
{
	if (r < 0) {
		fprintf(stderr, "seed_store: %s: %s\n", what, st ? store_errmsg(st) : "");
		exit(1);
	}
}

static int64_t treatment(struct store *st, int64_t session, const char *patch, int64_t at)
{
	struct store_treatment_start t = {
		.session_id = session, .patch = patch, .unit_firmware = "1.2.3",
		.op = { 1000, "nurse" },
		.params = { 1064, 4000, 3000, 10000, 5000, 282743 },
		.armed_ms = at, .armed_rtc_s = at / 1000, .shot_at_arm = 10,
		.cooldown_ms = 42LL * 86400 * 1000,
	};
	int64_t id;

	ok(store_treatment_begin(st, &t, &id), st, "treatment_begin");
	for (uint32_t i = 1; i <= 3; i++) {
		struct store_pulse p = { id, at + 200 * i, 10 + i, 280000, 282743 };

		ok(store_add_pulse(st, &p), st, "add_pulse");
	}
	ok(store_flush(st), st, "flush");
	return id;
}

int main(int argc, char **argv)
{
	struct store_operator op = { 1000, "nurse" };
	struct store_treatment_finish fin = {
		STORE_OUTCOME_COMPLETED, T0 + 5000, T0 / 1000 + 5, true, 13,
	};
	struct store_audit a = { 0 };
	struct store *st;
	char msg[STORE_MSG_MAX];
	int64_t s1, s2, t1;

	if (argc != 2)
		return 2;
	if (store_open(&st, argv[1], msg, sizeof(msg)) < 0) {
		fprintf(stderr, "seed_store: %s\n", msg);
		return 1;
	}
	ok(store_unit_seen(st, "SIM-0001", "SMP-1064", "1.2.3", T0), st, "unit_seen");
	ok(store_session_begin(st, "P-0001", "SIM-0001", &op, T0, &s1), st, "session_begin");
	t1 = treatment(st, s1, "crown", T0 + 1000);
	ok(store_treatment_end(st, t1, &fin), st, "treatment_end");
	ok(store_session_end(st, s1, STORE_SESSION_ENDED, "fine", T0 + 6000), st, "session_end");
	ok(store_session_begin(st, "P-0002", "SIM-0001", &op, T0 + 7000, &s2), st, "session_begin");
	(void)treatment(st, s2, "occipital", T0 + 8000);
	a.time_ms = T0 + 9000;
	a.kind = (enum store_audit_kind)0;
	a.has_operator = true;
	a.op = op;
	a.unit_serial = "SIM-0001";
	a.session_id = s2;
	a.reason = "seed";
	ok(store_audit(st, &a), st, "audit");
	store_close(st);
	return 0;
}
