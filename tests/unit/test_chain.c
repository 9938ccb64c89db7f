// SPDX-License-Identifier: MIT
/*
 * Unit tests of the records' hash chain (store-chain.h), of records older
 * than the units (store-restore.h) and of backups and exports in steps
 * (store-copy.h), issue 15.11-15.13.  The attacker edits the records as the
 * sqlite3 shell would: a connection without the chain's functions, dropping
 * the triggers that stand in the way.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "store.h"
#include "store-chain.h"
#include "store-copy.h"
#include "store-restore.h"

#define DAY_MS		(24LL * 3600 * 1000)
#define COOLDOWN_MS	(42 * DAY_MS)
#define T0		1767225600000LL		/* 2026-01-01T00:00:00Z */

struct fixture {
	char dir[64];
	char path[128];
	struct store *st;
	char msg[STORE_MSG_MAX];
};

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb, (void)flag, (void)ftw;
	return remove(path);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "/tmp/test_chain.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/%s", f->dir, STORE_DB_NAME);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	store_close(f->st);
	nftw(f->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

static void open_store(struct fixture *f)
{
	int err = store_open(&f->st, f->dir, f->msg, sizeof(f->msg));

	if (err)
		fail_msg("store_open: %d %s", err, f->msg);
}

static void close_store(struct fixture *f)
{
	store_close(f->st);
	f->st = NULL;
}

static const struct store_operator OPERATOR = { .uid = 1001, .name = "tech1" };

static const struct store_params PARAMS = {
	.wavelength_nm = 1064, .fluence_mj_cm2 = 4000, .spot_um = 3000,
	.pulse_ps = 10000, .rate_mhz = 5000, .set_energy_uj = 282743,
};

static int64_t session_on(struct fixture *f, const char *patient, const char *unit, int64_t at)
{
	int64_t id = 0;

	assert_int_equal(store_unit_seen(f->st, unit, "SMPL-1064", "1.2.3", T0), 0);
	assert_int_equal(store_session_begin(f->st, patient, unit, &OPERATOR, at, &id), 0);
	return id;
}

static int begin(struct fixture *f, int64_t session, const char *patch, int64_t at,
		 uint32_t shot, int64_t *id)
{
	struct store_treatment_start t = {
		.session_id = session, .patch = patch, .unit_firmware = "1.2.3",
		.op = OPERATOR, .params = PARAMS, .armed_ms = at, .armed_rtc_s = at / 1000,
		.shot_at_arm = shot, .cooldown_ms = COOLDOWN_MS,
	};

	return store_treatment_begin(f->st, &t, id);
}

static void pulses(struct fixture *f, int64_t id, uint32_t first, int n, int64_t at)
{
	for (int i = 0; i < n; i++) {
		struct store_pulse p = {
			.treatment_id = id, .host_ms = at + 100 * i, .shot = first + (uint32_t)i,
			.measured_uj = 280000 + (uint32_t)i, .set_uj = PARAMS.set_energy_uj,
		};

		assert_int_equal(store_add_pulse(f->st, &p), 0);
	}
	assert_int_equal(store_flush(f->st), 0);
}

static void end(struct fixture *f, int64_t id, int64_t at, uint32_t shot)
{
	struct store_treatment_finish fin = {
		.outcome = STORE_OUTCOME_COMPLETED, .end_ms = at, .end_rtc_s = at / 1000,
		.shot_at_end_known = true, .shot_at_end = shot,
	};

	assert_int_equal(store_treatment_end(f->st, id, &fin), 0);
}

static void audit(struct fixture *f, enum store_audit_kind kind, const char *detail)
{
	struct store_audit a = {
		.time_ms = T0, .kind = kind, .has_operator = true, .op = OPERATOR,
		.unit_serial = "U1", .reason = "why", .detail = detail,
	};

	assert_int_equal(store_audit(f->st, &a), 0);
}

/* A few records of every kind: 2 treatments (closed), audit rows. */
static void some_records(struct fixture *f)
{
	int64_t s, t1, t2;

	open_store(f);
	s = session_on(f, "P1", "U1", T0);
	audit(f, STORE_AUDIT_SESSION, "start");
	assert_int_equal(begin(f, s, "crown", T0 + 1000, 0, &t1), 0);
	audit(f, STORE_AUDIT_ARM, "crown");
	pulses(f, t1, 1, 5, T0 + 2000);
	end(f, t1, T0 + 3000, 5);
	audit(f, STORE_AUDIT_DISARM, "requested");
	assert_int_equal(begin(f, s, "occipital", T0 + 4000, 5, &t2), 0);
	pulses(f, t2, 6, 3, T0 + 5000);
	end(f, t2, T0 + 6000, 8);
	audit(f, STORE_AUDIT_SESSION, "end");
}

/* As the sqlite3 shell would: no chain functions. */
static sqlite3 *shell(const struct fixture *f)
{
	sqlite3 *db;

	assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	sqlite3_busy_timeout(db, 2000);
	return db;
}

static void sql_ok(sqlite3 *db, const char *sql)
{
	char *err = NULL;

	if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
		fail_msg("%s: %s", sql, err);
}

/* The statement fails; its message contains @what. */
static void sql_refused(sqlite3 *db, const char *sql, const char *what)
{
	char *err = NULL;

	assert_int_not_equal(sqlite3_exec(db, sql, NULL, NULL, &err), SQLITE_OK);
	if (!err || !strstr(err, what))
		fail_msg("%s: refused with '%s', not '%s'", sql, err ? err : "", what);
	sqlite3_free(err);
}

static int64_t value(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *stmt;
	int64_t v;

	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &stmt, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
	v = sqlite3_column_int64(stmt, 0);
	sqlite3_finalize(stmt);
	return v;
}

static int64_t chain_entries(const struct fixture *f)
{
	sqlite3 *db = shell(f);
	int64_t n = value(db, "SELECT count(*) FROM record_chain");

	sqlite3_close(db);
	return n;
}

/* store_chain_verify on the file at @path, as smplaserctl does. */
static int verify_file(const char *path, const struct store_chain_head *anchor,
		       struct store_chain_report *rep)
{
	char uri[256], msg[256] = "";
	sqlite3 *db;
	int r;

	snprintf(uri, sizeof(uri), "file:%s?mode=ro", path);
	assert_int_equal(sqlite3_open_v2(uri, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, NULL),
			 SQLITE_OK);
	assert_int_equal(store_chain_register(db), SQLITE_OK);
	r = store_chain_verify(db, anchor, rep, msg, sizeof(msg));
	sqlite3_close(db);
	if (r < 0)
		fail_msg("verify: %d %s", r, msg);
	for (size_t i = 0; i < rep->shown; i++)
		fprintf(stderr, "# problem %zu at %lld: %s\n", i, (long long)rep->problem[i].position,
			rep->problem[i].text);
	return r;
}

static int verify(struct fixture *f, struct store_chain_report *rep)
{
	return verify_file(f->path, NULL, rep);
}

/* The first problem names @what. */
static void first_problem_is(const struct store_chain_report *rep, const char *what)
{
	assert_true(rep->shown > 0);
	if (!strstr(rep->problem[0].text, what))
		fail_msg("first problem '%s' does not say '%s'", rep->problem[0].text, what);
}

/* ---- the encoding ----------------------------------------------------------------- */

static void hex_is(const uint8_t *hash, const char *want)
{
	char hex[STORE_CHAIN_HEX_LEN + 1];

	store_chain_hex(hash, hex);
	assert_string_equal(hex, want);
}

#define I(v)	{ .type = STORE_CHAIN_INTEGER, .i = (v) }
#define S(v)	{ .type = STORE_CHAIN_TEXT, .p = (v), .len = sizeof(v) - 1 }
#define N	{ .type = STORE_CHAIN_NULL }

/*
 * The vectors of docs/records-chain.md, computed there by an independent
 * implementation of the documented encoding (Python's hashlib).
 */
static void test_known_answers(void **state)
{
	const struct store_chain_value audit_row[] = {
		I(1767225600000), S("arm"), I(1000), S("alice"), S("SIM00001"), I(7), N, S("crown"),
	};
	struct store_chain_value t[] = {
		I(7), S("p-001"), S("crown"), S("SIM00001"), S("1.0.0"), I(1000), S("alice"),
		I(1064), I(3000), I(3000), I(10000), I(5000), I(212058), I(1767225600000),
		I(1767225600), N, N, I(100), N, N, I(5), I(270000), I(290000), I(1400000),
		I(1767225601000), S("open"), I(1767225600500),
	};
	uint8_t zero[STORE_CHAIN_HASH_LEN] = { 0 }, d1[32], h1[32], d2[32], h2[32], d3[32];

	(void)state;
	assert_int_equal(store_chain_digest("audit", 1, audit_row, 8, d1), 0);
	hex_is(d1, "3a7d3509625b95371087052e9521af354e3a7b2d9a31b2fb90e068ac20426705");
	store_chain_link(zero, 1, d1, h1);
	hex_is(h1, "e8b5c5a8553712d81f03df29b9df6dd13b0c60d093a418ba56339858fcb815e3");
	assert_int_equal(store_chain_digest("treatments", 1, t, 27, d2), 0);
	hex_is(d2, "96a8974be33ac7ba87778b8b758c8d725e6e7ea8db6608820eab21e0bb31115a");
	store_chain_link(h1, 2, d2, h2);
	hex_is(h2, "9a6664625b7fc3a4438745823a3d3451e7b1d54c3ae6f9312ccb35a8d3eb97a6");
	/* Closed, the pulse summary counts. */
	t[25] = (struct store_chain_value)S("completed");
	assert_int_equal(store_chain_digest("treatments", 1, t, 27, d3), 0);
	hex_is(d3, "c152dbaf61e2c333c86b4c657183c442872dd12b4f91c00219b13b519a966197");
	/* Not a chained table, not its columns. */
	assert_int_equal(store_chain_digest("pulses", 1, t, 27, d3), -EINVAL);
	assert_int_equal(store_chain_digest("audit", 1, t, 27, d3), -EINVAL);
}

static void test_head_parses_as_logged(void **state)
{
	struct store_chain_head h;
	char hex[STORE_CHAIN_HEX_LEN + 1], text[96];

	(void)state;
	for (int i = 0; i < STORE_CHAIN_HASH_LEN; i++)
		h.hash[i] = (uint8_t)(i * 7 + 1);
	store_chain_hex(h.hash, hex);
	snprintf(text, sizeof(text), "42:%s", hex);
	memset(&h, 0, sizeof(h));
	assert_int_equal(store_chain_parse_head(text, &h), 0);
	assert_int_equal(h.seq, 42);
	assert_int_equal(h.hash[3], 22);
	assert_int_equal(store_chain_parse_head("42", &h), -EINVAL);
	assert_int_equal(store_chain_parse_head("0:00", &h), -EINVAL);
	text[10] = 'g';
	assert_int_equal(store_chain_parse_head(text, &h), -EINVAL);
}

/* ---- the store chains its writes ---------------------------------------------------- */

static void test_every_write_is_chained_and_verifies(void **state)
{
	struct fixture *f = *state;
	struct store_chain_report rep;
	int64_t s, t, before;

	some_records(f);
	assert_int_equal(verify(f, &rep), 0);
	assert_int_equal(rep.audit_rows, 4);
	assert_int_equal(rep.treatment_rows, 2);
	assert_int_equal(rep.entries, rep.head.seq);

	/* An open treatment's pulse summary grows unchained; what else changes is chained. */
	s = session_on(f, "P2", "U1", T0 + 10000);
	assert_int_equal(begin(f, s, "crown", T0 + 11000, 8, &t), 0);
	before = chain_entries(f);
	pulses(f, t, 9, 4, T0 + 12000);
	assert_int_equal(chain_entries(f), before);
	assert_int_equal(verify(f, &rep), 0);
	assert_int_equal(store_treatment_mark_emitting(f->st, t, T0 + 12000), 0);
	assert_int_equal(chain_entries(f), before + 1);
	end(f, t, T0 + 13000, 12);
	assert_int_equal(chain_entries(f), before + 2);
	/* A late pulse of a closed one is chained. */
	pulses(f, t, 13, 1, T0 + 13100);
	assert_int_equal(chain_entries(f), before + 3);
	assert_int_equal(verify(f, &rep), 0);
	assert_int_equal(rep.head.seq, before + 3);
}

/* The store's own writes need nothing from the caller; the shell cannot write at all. */
static void test_shell_cannot_write_a_chained_row(void **state)
{
	struct fixture *f = *state;
	sqlite3 *db;

	some_records(f);
	db = shell(f);
	sql_refused(db, "INSERT INTO audit (time_ms, kind) VALUES (1, 'fault')",
		    "smpl_chain_digest");
	sql_refused(db, "UPDATE audit SET detail = 'x' WHERE id = 2", "never changed");
	sql_refused(db, "DELETE FROM audit WHERE id = 2", "never deleted");
	sql_refused(db, "DELETE FROM record_chain WHERE seq = 1", "never deleted");
	sql_refused(db, "UPDATE record_chain SET hash = zeroblob(32)", "never changed");
	/* A treatment's triggers name the chain's function: not even prepared. */
	sql_refused(db, "UPDATE treatments SET end_ms = 1 WHERE id = 1", "smpl_chain_digest");
	sql_ok(db, "DROP TRIGGER treatments_closed");
	sql_refused(db, "UPDATE treatments SET end_ms = 1 WHERE id = 1", "smpl_chain_digest");
	sqlite3_close(db);
}

static void test_audit_row_edited_with_triggers_dropped_is_found(void **state)
{
	struct fixture *f = *state;
	struct store_chain_report rep;
	sqlite3 *db;

	some_records(f);
	close_store(f);
	db = shell(f);
	sql_ok(db, "DROP TRIGGER audit_fixed");
	sql_ok(db, "UPDATE audit SET detail = 'nothing happened' WHERE id = 2");
	sqlite3_close(db);
	assert_int_equal(verify(f, &rep), 1);
	assert_int_equal(rep.problems, 1);
	first_problem_is(&rep, "audit row 2 was changed");
}

static void test_treatment_edited_with_triggers_dropped_is_found(void **state)
{
	struct fixture *f = *state;
	struct store_chain_report rep;
	sqlite3 *db;

	some_records(f);
	close_store(f);
	db = shell(f);
	sql_ok(db, "DROP TRIGGER treatments_closed");
	sql_ok(db, "DROP TRIGGER treatments_chain_update");
	/* Forty days earlier: the patch would look eligible again. */
	sql_ok(db, "UPDATE treatments SET end_ms = end_ms - 40 * 86400000,"
	       " armed_ms = armed_ms - 40 * 86400000 WHERE id = 1");
	sqlite3_close(db);
	assert_int_equal(verify(f, &rep), 1);
	first_problem_is(&rep, "treatments row 1 was changed");
}

/*
 * Pulses are not chained one by one: each treatment's chained summary (count,
 * energies, last pulse) stands for them.  A pulse changed, deleted or added
 * with the shell is found against it; a repeated shot number (audited as
 * shot-number-reused, and stored in its own treatment since schema v6) is
 * not taken for one.
 */
static void test_pulses_edited_with_triggers_dropped_are_found(void **state)
{
	struct fixture *f = *state;
	struct store_chain_report rep;
	sqlite3 *db;

	some_records(f);			/* treatment 1: shots 1..5, 2: shots 6..8 */
	pulses(f, 2, 3, 1, T0 + 7000);		/* shot 3 again, for treatment 2 */
	assert_int_equal(verify(f, &rep), 0);
	close_store(f);

	db = shell(f);
	assert_int_equal(value(db, "SELECT count(*) FROM pulses WHERE shot = 3"), 2);
	sql_ok(db, "DROP TRIGGER pulses_fixed");
	sql_ok(db, "UPDATE pulses SET measured_uj = measured_uj + 1 WHERE shot = 2");
	sqlite3_close(db);
	assert_int_equal(verify(f, &rep), 1);
	first_problem_is(&rep, "the pulses of treatment 1 do not match its chained summary");
	assert_int_equal(rep.problems, 1);

	db = shell(f);
	sql_ok(db, "UPDATE pulses SET measured_uj = measured_uj - 1 WHERE shot = 2;"
	       "DROP TRIGGER pulses_keep; DELETE FROM pulses WHERE shot = 7");
	sqlite3_close(db);
	assert_int_equal(verify(f, &rep), 1);
	first_problem_is(&rep, "the pulses of treatment 2 do not match its chained summary");
	assert_int_equal(rep.problems, 1);

	/* Put back as it was, then one added: the count tells. */
	db = shell(f);
	sql_ok(db, "INSERT INTO pulses (treatment_id, unit_serial, host_ms, shot, measured_uj,"
	       " set_uj) SELECT 2, unit_serial, host_ms, 7, 280001, set_uj FROM pulses"
	       " WHERE shot = 6");
	sqlite3_close(db);
	assert_int_equal(verify(f, &rep), 0);
	db = shell(f);
	sql_ok(db, "INSERT INTO pulses (treatment_id, unit_serial, host_ms, shot, measured_uj,"
	       " set_uj) SELECT 1, unit_serial, host_ms, 99, measured_uj, set_uj FROM pulses"
	       " WHERE shot = 5");
	sqlite3_close(db);
	assert_int_equal(verify(f, &rep), 1);
	first_problem_is(&rep, "the pulses of treatment 1 do not match its chained summary");
}

static void test_deleted_rows_and_entries_are_found(void **state)
{
	struct fixture *f = *state;
	struct store_chain_report rep;
	sqlite3 *db;

	some_records(f);
	close_store(f);
	db = shell(f);
	sql_ok(db, "DROP TRIGGER audit_keep");
	sql_ok(db, "DELETE FROM audit WHERE id = 3");
	sqlite3_close(db);
	assert_int_equal(verify(f, &rep), 1);
	assert_int_equal(rep.problems, 1);
	first_problem_is(&rep, "audit row 3 was deleted");

	/* Its chain entry too: the gap shows. */
	db = shell(f);
	sql_ok(db, "DROP TRIGGER record_chain_keep");
	sql_ok(db, "DELETE FROM record_chain WHERE tbl = 'audit' AND row_id = 3");
	sqlite3_close(db);
	assert_int_equal(verify(f, &rep), 1);
	first_problem_is(&rep, "are missing (deleted)");
}

/*
 * The clinical record (issue 16) is chained like the audit: each endpoint,
 * follow-up, adverse event and review once; one changed, deleted or
 * inserted behind smplaserd's back shows.
 */
static void some_clinical_records(struct fixture *f)
{
	struct store_follow_up_in fu = {
		.patient = "P1", .patch = "crown", .time_ms = T0 + 14 * DAY_MS,
		.has_pigment = true, .pigment_pct = 30, .n_adverse = 1,
		.adverse = { "blistering" }, .holds = { true }, .note = "healing",
	};
	struct store_endpoint_in e = {
		.patch = "crown", .endpoint = "whitening", .note = "even", .time_ms = T0 + 3500,
	};
	int64_t s, t, id;

	open_store(f);
	s = session_on(f, "P1", "U1", T0);
	assert_int_equal(begin(f, s, "crown", T0 + 1000, 0, &t), 0);
	pulses(f, t, 1, 5, T0 + 2000);
	end(f, t, T0 + 3000, 5);
	e.session_id = s;
	assert_int_equal(store_endpoint_add(f->st, &e, &OPERATOR, &id), 0);
	assert_int_equal(store_follow_up_add(f->st, &fu, &OPERATOR, &id), 0);
	assert_int_equal(store_hold_clear(f->st, "P1", "crown", "healed", &OPERATOR,
					  T0 + 20 * DAY_MS, &id), 0);
}

static void test_clinical_rows_are_chained(void **state)
{
	struct fixture *f = *state;
	struct store_chain_report rep;
	sqlite3 *db;

	some_clinical_records(f);
	assert_int_equal(verify(f, &rep), 0);
	assert_int_equal(rep.clinical_rows, 4);	/* endpoint, follow-up, event, review */
	close_store(f);

	db = shell(f);
	sql_ok(db, "DROP TRIGGER follow_ups_fixed");
	sql_ok(db, "UPDATE follow_ups SET pigment_remaining_pct = 0");
	sqlite3_close(db);
	assert_int_equal(verify(f, &rep), 1);
	assert_int_equal(rep.problems, 1);
	first_problem_is(&rep, "follow_ups row 1 was changed");

	db = shell(f);
	sql_ok(db, "DROP TRIGGER hold_reviews_keep");
	sql_ok(db, "DELETE FROM hold_reviews");
	sql_ok(db, "DROP TRIGGER adverse_events_chain");
	sql_ok(db, "INSERT INTO adverse_events (follow_up_id, kind, holds) VALUES (1, 'infection', 1)");
	sqlite3_close(db);
	assert_int_equal(verify(f, &rep), 1);
	assert_int_equal(rep.problems, 3);
	for (size_t i = 0; i < rep.shown; i++)
		fprintf(stderr, "# %s\n", rep.problem[i].text);
	assert_true(strstr(rep.problem[0].text, "hold_reviews row 1 was deleted") ||
		    strstr(rep.problem[1].text, "hold_reviews row 1 was deleted") ||
		    strstr(rep.problem[2].text, "hold_reviews row 1 was deleted"));
	assert_true(strstr(rep.problem[0].text, "adverse_events row 2 is not in the chain") ||
		    strstr(rep.problem[1].text, "adverse_events row 2 is not in the chain") ||
		    strstr(rep.problem[2].text, "adverse_events row 2 is not in the chain"));
}

static void test_rows_inserted_behind_or_out_of_order_are_found(void **state)
{
	struct fixture *f = *state;
	struct store_chain_report rep;
	sqlite3 *db;

	some_records(f);
	close_store(f);
	db = shell(f);
	sql_ok(db, "DROP TRIGGER audit_chain");
	sql_ok(db, "INSERT INTO audit (time_ms, kind, reason) VALUES (1, 'ack-fault', 'x')");
	sqlite3_close(db);
	assert_int_equal(verify(f, &rep), 1);
	first_problem_is(&rep, "audit row 5 is not in the chain");

	/*
	 * One who knows the encoding chains what they insert; a row slipped in
	 * before the others still shows (ids only grow).
	 */
	db = shell(f);
	assert_int_equal(store_chain_register(db), SQLITE_OK);
	sql_ok(db, "DROP TRIGGER audit_keep");
	sql_ok(db, "DELETE FROM audit WHERE id = 5");
	sql_ok(db, "CREATE TRIGGER audit_chain AFTER INSERT ON audit BEGIN"
	       " INSERT INTO record_chain_append (tbl, row_id, digest) VALUES ('audit', NEW.id,"
	       " smpl_chain_digest('audit', NEW.id, NEW.time_ms, NEW.kind, NEW.operator_uid,"
	       " NEW.operator_name, NEW.unit_serial, NEW.session_id, NEW.reason, NEW.detail));"
	       " END");
	sql_ok(db, "INSERT INTO audit (id, time_ms, kind, reason) VALUES (0, 1, 'ack-fault', 'x')");
	sqlite3_close(db);
	assert_int_equal(verify(f, &rep), 1);
	assert_int_equal(rep.problems, 1);
	first_problem_is(&rep, "audit row 0 was inserted out of order");
}

static void test_changed_entry_is_found(void **state)
{
	struct fixture *f = *state;
	struct store_chain_report rep;
	sqlite3 *db;

	some_records(f);
	close_store(f);
	db = shell(f);
	sql_ok(db, "DROP TRIGGER record_chain_fixed");
	sql_ok(db, "UPDATE record_chain SET hash = zeroblob(32) WHERE seq = 3");
	sqlite3_close(db);
	assert_int_equal(verify(f, &rep), 1);
	first_problem_is(&rep, "chain entry 3 ");
}

/*
 * Who rewrites the whole chain after an edit is found only against a head
 * logged before (the journal): that is what the journal is for.
 */
static void test_rewritten_chain_is_found_against_the_logged_head(void **state)
{
	struct fixture *f = *state;
	struct store_chain_report rep;
	struct store_chain_head logged;
	sqlite3 *db;

	some_records(f);
	close_store(f);
	assert_int_equal(verify(f, &rep), 0);
	db = shell(f);		/* the head as logged after the fourth entry */
	logged.seq = value(db, "SELECT seq FROM record_chain WHERE seq = 4");
	{
		sqlite3_stmt *stmt;

		assert_int_equal(sqlite3_prepare_v2(db, "SELECT hash FROM record_chain"
						    " WHERE seq = 4", -1, &stmt, NULL), SQLITE_OK);
		assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
		memcpy(logged.hash, sqlite3_column_blob(stmt, 0), STORE_CHAIN_HASH_LEN);
		sqlite3_finalize(stmt);
	}
	sqlite3_close(db);
	assert_int_equal(verify_file(f->path, &logged, &rep), 0);
	db = shell(f);
	assert_int_equal(store_chain_register(db), SQLITE_OK);
	sql_ok(db, "DROP TRIGGER audit_fixed; DROP TRIGGER record_chain_keep;"
	       "UPDATE audit SET detail = 'nothing happened' WHERE id = 2;"
	       "DELETE FROM record_chain;"
	       "INSERT INTO record_chain_append SELECT 'audit', id, smpl_chain_digest('audit', id,"
	       " time_ms, kind, operator_uid, operator_name, unit_serial, session_id, reason,"
	       " detail) FROM audit ORDER BY id;"
	       "INSERT INTO record_chain_append SELECT 'treatments', id,"
	       " smpl_chain_digest('treatments', id, session_id, patient, patch, unit_serial,"
	       " unit_firmware, operator_uid, operator_name, wavelength_nm, fluence_mj_cm2,"
	       " spot_um, pulse_ps, rate_mhz, set_energy_uj, armed_ms, armed_rtc_s, end_ms,"
	       " end_rtc_s, shot_at_arm, shot_at_end, pulse_count, pulses_recorded,"
	       " energy_min_uj, energy_max_uj, energy_sum_uj, last_pulse_ms, outcome,"
	       " emitting_ms) FROM treatments ORDER BY id;");
	sqlite3_close(db);
	assert_int_equal(verify_file(f->path, NULL, &rep), 0);	/* consistent in itself */
	assert_int_equal(verify_file(f->path, &logged, &rep), 1);
	first_problem_is(&rep, "is not the head logged earlier");

	/* An older copy: its chain ends before the head logged. */
	logged.seq = rep.head.seq + 5;
	assert_int_equal(verify_file(f->path, &logged, &rep), 1);
	first_problem_is(&rep, "before the head");
}

static void test_migration_chains_the_rows_there(void **state)
{
	struct fixture *f = *state;
	struct store_chain_report rep;
	sqlite3 *db;

	assert_int_equal(store_create_at_version(f->dir, 3, f->msg, sizeof(f->msg)), 0);
	db = shell(f);
	sql_ok(db, "INSERT INTO units VALUES ('U1', 'm', '1', 1, 1);"
	       "INSERT INTO sessions (id, patient, unit_serial, operator_uid, operator_name,"
	       " start_ms) VALUES (1, 'P1', 'U1', 0, 'root', 1);"
	       "INSERT INTO treatments (session_id, patient, patch, unit_serial, unit_firmware,"
	       " operator_uid, operator_name, wavelength_nm, fluence_mj_cm2, spot_um, pulse_ps,"
	       " rate_mhz, set_energy_uj, armed_ms, armed_rtc_s, shot_at_arm)"
	       " VALUES (1, 'P1', 'crown', 'U1', '1', 0, 'root', 1064, 1, 1, 1, 1, 1, 5, 5, 0);"
	       "INSERT INTO audit (time_ms, kind) VALUES (1, 'arm'), (2, 'disarm'), (3, 'x');");
	sqlite3_close(db);
	open_store(f);
	assert_int_equal(verify(f, &rep), 0);
	assert_int_equal(rep.entries, 4);
	assert_int_equal(rep.audit_rows, 3);
	assert_int_equal(rep.treatment_rows, 1);
}

/*
 * The chain's step does not depend on its place among the migrations (it is
 * schema version 5 once issue 12's indexes are version 4, and the clinical
 * record follows it): other steps before it (indexes changed, a column
 * added, a table added) change nothing, run again on records that have the
 * chain it adds nothing, and a later step may chain a table of its own.
 */
static void test_chain_step_does_not_depend_on_its_place(void **state)
{
	struct fixture *f = *state;
	struct store_chain_report rep;
	sqlite3 *db;

	assert_int_equal(store_create_at_version(f->dir, 3, f->msg, sizeof(f->msg)), 0);
	db = shell(f);
	assert_int_equal(store_chain_register(db), SQLITE_OK);
	sql_ok(db, "INSERT INTO units VALUES ('U1', 'm', '1', 1, 1);"
	       "INSERT INTO sessions (id, patient, unit_serial, operator_uid, operator_name,"
	       " start_ms) VALUES (1, 'P1', 'U1', 0, 'root', 1);"
	       "INSERT INTO treatments (session_id, patient, patch, unit_serial, unit_firmware,"
	       " operator_uid, operator_name, wavelength_nm, fluence_mj_cm2, spot_um, pulse_ps,"
	       " rate_mhz, set_energy_uj, armed_ms, armed_rtc_s, shot_at_arm)"
	       " VALUES (1, 'P1', 'crown', 'U1', '1', 0, 'root', 1064, 1, 1, 1, 1, 1, 5, 5, 0);"
	       "INSERT INTO audit (time_ms, kind) VALUES (1, 'arm'), (2, 'disarm');"
	       /* Another branch's steps first: indexes, a column, a table. */
	       "DROP INDEX treatments_by_patch;"
	       "CREATE INDEX treatments_by_armed ON treatments(armed_ms);"
	       "ALTER TABLE treatments ADD COLUMN note TEXT;"
	       "CREATE TABLE photographs (id INTEGER PRIMARY KEY, treatment_id INTEGER) STRICT;");
	sql_ok(db, "BEGIN");
	sql_ok(db, store_chain_schema);
	sql_ok(db, "COMMIT");
	/* Again, as on records that have the chain already: nothing added. */
	sql_ok(db, "BEGIN");
	sql_ok(db, store_chain_schema);
	sql_ok(db, "COMMIT");
	snprintf(f->msg, sizeof(f->msg), "PRAGMA user_version = %d", STORE_SCHEMA_VERSION);
	sql_ok(db, f->msg);
	/* Later rows, and a later step's own column, are chained as before. */
	sql_ok(db, "INSERT INTO audit (time_ms, kind) VALUES (3, 'x');"
	       "UPDATE treatments SET note = 'n', outcome = 'completed', end_ms = 9 WHERE id = 1;");
	sqlite3_close(db);
	open_store(f);
	assert_int_equal(verify(f, &rep), 0);
	assert_int_equal(rep.entries, 5);
	assert_int_equal(rep.audit_rows, 3);
	assert_int_equal(rep.treatment_rows, 1);
	close_store(f);

	/* A later step may chain a table of its own (this version names it). */
	db = shell(f);
	assert_int_equal(store_chain_register(db), SQLITE_OK);
	sql_ok(db, "INSERT INTO record_chain_append (tbl, row_id, digest)"
	       " VALUES ('photographs', 1, zeroblob(32))");
	sqlite3_close(db);
	open_store(f);
	assert_int_equal(verify(f, &rep), 1);
	first_problem_is(&rep, "chain entry 6 is malformed");
}

/* ---- records older than the units ---------------------------------------------------- */

static int64_t emission_of(struct fixture *f, const char *patient, const char *patch)
{
	int64_t when = 0;

	assert_true(store_last_emission(f->st, patient, patch, &when) >= 0);
	return when;
}

static void test_counter_ahead_counts_on_the_last_session_and_blocks_arming(void **state)
{
	struct fixture *f = *state;
	struct store_records_missing m;
	struct store_chain_report rep;
	int64_t s, t, now = T0 + DAY_MS;

	some_records(f);			/* U1: session of P1, crown and occipital, shot 8 */
	assert_int_equal(store_records_missing_check(f->st, "U1", 8, now, &m), 0);
	assert_int_equal(emission_of(f, "P1", "crown"), T0 + 3000);

	/* Restored from a copy made before 12 more shots: they count on both patches, now. */
	assert_int_equal(store_records_missing_check(f->st, "U1", 20, now, &m), 1);
	assert_true(m.found_now);
	assert_int_equal(m.records_shot, 8);
	assert_int_equal(m.counter, 20);
	assert_int_equal(m.patches, 2);
	fprintf(stderr, "# %s\n", store_errmsg(f->st));
	assert_non_null(strstr(store_errmsg(f->st), "records-missing: unit U1"));
	assert_non_null(strstr(store_errmsg(f->st), "12 shots are not in the records"));
	assert_int_equal(emission_of(f, "P1", "crown"), now);
	assert_int_equal(emission_of(f, "P1", "occipital"), now);
	assert_int_equal(emission_of(f, "P1", "mid-scalp"), 0);

	/* It stands, also across a restart, and no arming is recorded until acknowledged. */
	close_store(f);
	open_store(f);
	assert_int_equal(store_records_missing_check(f->st, "U1", 20, now + 1000, &m), 1);
	assert_false(m.found_now);
	assert_int_equal(m.patches, 2);
	s = session_on(f, "P3", "U1", now + 2000);
	assert_int_equal(begin(f, s, "crown", now + 3000, 20, &t), -ENOLINK);
	assert_non_null(strstr(store_errmsg(f->st), "records-missing"));
	assert_int_equal(store_records_missing_ack(f->st, "U1", &OPERATOR, now + 4000), 1);
	assert_int_equal(store_records_missing_check(f->st, "U1", 20, now + 5000, &m), 0);
	assert_int_equal(begin(f, s, "crown", now + 6000, 20, &t), 0);
	/* The patches stay in their cooldown from when the shots were found. */
	assert_int_equal(emission_of(f, "P1", "crown"), now);
	assert_int_equal(store_records_missing_ack(f->st, "U1", &OPERATOR, now + 7000), 0);
	assert_int_equal(verify(f, &rep), 0);
}

/* Patient @patient's session on U1, started with the unit's counter at @start, @patch selected. */
static int64_t session_started_at(struct fixture *f, const char *patient, uint32_t start,
				  const char *patch, int64_t at)
{
	int64_t id = 0;

	assert_int_equal(store_session_begin_at(f->st, patient, "U1", &OPERATOR, at, &start,
						&id), 0);
	assert_int_equal(store_audit(f->st, &(struct store_audit){
		.time_ms = at, .kind = STORE_AUDIT_PATCH, .has_operator = true, .op = OPERATOR,
		.unit_serial = "U1", .session_id = id, .detail = patch }), 0);
	return id;
}

/*
 * Shots the records miss, fired before a session began (its start read the
 * counter ahead already, while nobody watched): they count on the session
 * before it, never on that session's patient (the attacker's seed
 * 1313415017, liveness-arm).  A session that began in step with the records
 * takes them, as the newest session always did; so does one whose start
 * counter is of an earlier counter epoch.
 */
static void test_shots_before_a_session_began_count_on_the_one_before(void **state)
{
	struct fixture *f = *state;
	struct store_records_missing m;
	int64_t s1 = 1, s2, s3, s4, now = T0 + DAY_MS;

	some_records(f);			/* U1: session of P1 (id 1), crown and occipital, shot 8 */
	s2 = session_started_at(f, "P2", 20, "mid-scalp", now);
	assert_int_equal(store_records_missing_check(f->st, "U1", 20, now + 1000, &m), 1);
	assert_int_equal(m.session_id, s1);
	assert_int_equal(m.patches, 2);
	assert_int_equal(emission_of(f, "P1", "crown"), now + 1000);
	assert_int_equal(emission_of(f, "P2", "mid-scalp"), 0);
	assert_non_null(strstr(store_errmsg(f->st), "12 shots are not in the records"));
	assert_int_equal(store_records_missing_ack(f->st, "U1", &OPERATOR, now + 2000), 1);
	assert_int_equal(store_session_end(f->st, s2, STORE_SESSION_ENDED, NULL, now + 3000), 0);

	/* In step at its start (20): shots missing after that are its own. */
	s3 = session_started_at(f, "P3", 20, "vertex", now + 4000);
	assert_int_equal(store_records_missing_check(f->st, "U1", 30, now + 5000, &m), 1);
	assert_int_equal(m.session_id, s3);
	assert_int_equal(emission_of(f, "P3", "vertex"), now + 5000);
	assert_int_equal(store_records_missing_ack(f->st, "U1", &OPERATOR, now + 6000), 1);
	assert_int_equal(store_session_end(f->st, s3, STORE_SESSION_ENDED, NULL, now + 7000), 0);

	/* Began at 40 in the epoch before a reset to 0: that start says nothing of this one. */
	s4 = session_started_at(f, "P4", 40, "temple", now + 8000);
	assert_int_equal(store_counter_reset(f->st, "U1", 0, &OPERATOR, now + 9000), 0);
	assert_int_equal(store_records_missing_check(f->st, "U1", 5, now + 10000, &m), 1);
	assert_int_equal(m.session_id, s4);
	assert_int_equal(emission_of(f, "P4", "temple"), now + 10000);

	/* The counter each session began at is never changed. */
	{
		sqlite3 *db = shell(f);

		sql_refused(db, "UPDATE sessions SET start_counter = 0 WHERE id = 2",
			    "never changed");
		sql_refused(db, "UPDATE sessions SET start_epoch = 5 WHERE id = 2", "never changed");
		assert_int_equal(value(db, "SELECT start_counter FROM sessions WHERE id = 2"), 20);
		assert_int_equal(value(db, "SELECT start_counter IS NULL FROM sessions"
				       " WHERE id = 1"), 1);
		sqlite3_close(db);
	}
}

static void backup_to(struct fixture *f, const char *path)
{
	struct store_copy *c = NULL;
	char msg[256];
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600), r;

	assert_true(fd >= 0);
	assert_int_equal(store_backup_begin(f->dir, fd, &c, msg, sizeof(msg)), 0);
	close(fd);
	while ((r = store_copy_step(c, 8)) == 0)
		;
	assert_int_equal(r, 1);
	store_copy_free(c);
}

/* The copy in place of the records, as the README's restore does. */
static void restore(struct fixture *f, const char *copy)
{
	char name[192];

	close_store(f);
	snprintf(name, sizeof(name), "%s-wal", f->path);
	unlink(name);
	snprintf(name, sizeof(name), "%s-shm", f->path);
	unlink(name);
	assert_int_equal(rename(copy, f->path), 0);
	open_store(f);
}

static int settle_all(const struct store_treatment *t, void *ctx)
{
	int64_t *ids = ctx;

	ids[ids[0]++ + 1] = t->id;
	return ids[0] == 7;
}

/* What the daemon does when it reads the unit's counter: compare, then settle. */
static int probe_counter(struct fixture *f, const char *unit, uint32_t counter, int64_t now)
{
	int64_t ids[8] = { 0 };
	int r = store_records_missing_check(f->st, unit, counter, now, NULL);

	assert_true(r >= 0);
	assert_true(store_unsettled_treatments(f->st, unit, settle_all, ids) >= 0);
	for (int64_t i = 0; i < ids[0]; i++)
		assert_int_equal(store_reconcile_treatment(f->st, ids[i + 1], counter, now), 0);
	return r;
}

/*
 * A copy made while a treatment was open, restored after it and another
 * patient's: the open one does not take the shots of the others (it would
 * then keep the patch it treated, and nothing would stand for the rest).
 */
static void test_restored_copy_with_an_open_treatment(void **state)
{
	struct fixture *f = *state;
	char copy[160];
	int64_t s1, s2, a, b, now = T0 + DAY_MS;

	open_store(f);
	s1 = session_on(f, "P1", "U1", T0);
	assert_int_equal(begin(f, s1, "crown", T0 + 1000, 0, &a), 0);
	pulses(f, a, 1, 5, T0 + 2000);
	snprintf(copy, sizeof(copy), "%s/copy.db", f->dir);
	backup_to(f, copy);
	pulses(f, a, 6, 20, T0 + 3000);
	end(f, a, T0 + 6000, 25);
	assert_int_equal(store_session_end(f->st, s1, STORE_SESSION_ENDED, NULL, T0 + 7000), 0);
	s2 = session_on(f, "P2", "U1", T0 + 8000);
	assert_int_equal(begin(f, s2, "occipital", T0 + 9000, 25, &b), 0);
	pulses(f, b, 26, 10, T0 + 10000);
	end(f, b, T0 + 12000, 35);

	restore(f, copy);
	assert_int_equal(probe_counter(f, "U1", 35, now), 1);
	assert_non_null(strstr(store_errmsg(f->st), "30 shots are not in the records"));
	/* The open one keeps its own pulses; the rest count on its session's patch, now. */
	{
		sqlite3 *db = shell(f);

		assert_int_equal(value(db, "SELECT pulse_count FROM treatments WHERE id = 1"), 5);
		assert_int_equal(value(db, "SELECT outcome = 'reconciled' FROM treatments"
				       " WHERE id = 1"), 1);
		sqlite3_close(db);
	}
	assert_int_equal(emission_of(f, "P1", "crown"), now);
	/* P2's treatment is not in the copy: nothing can know it (README). */
	assert_int_equal(emission_of(f, "P2", "occipital"), 0);
}

/* After a crash, the shots of the open treatment's last moments are its own. */
static void test_crash_with_an_open_treatment_is_not_records_missing(void **state)
{
	struct fixture *f = *state;
	int64_t s, a, now = T0 + 60000;

	open_store(f);
	s = session_on(f, "P1", "U1", T0);
	assert_int_equal(begin(f, s, "crown", T0 + 1000, 0, &a), 0);
	pulses(f, a, 1, 5, T0 + 2000);
	close_store(f);			/* the crash */
	open_store(f);
	/* 5 Hz for the window of STORE_MISSING_WINDOW_S: up to 5 + 15 + 2 are its own. */
	assert_int_equal(probe_counter(f, "U1", 22, now), 0);
	assert_int_equal(emission_of(f, "P1", "crown"), T0 + 2400);
	{
		sqlite3 *db = shell(f);

		assert_int_equal(value(db, "SELECT pulse_count FROM treatments WHERE id = 1"), 22);
		sqlite3_close(db);
	}
	/* One more would not be its own (the same on another unit). */
	s = session_on(f, "P2", "U2", T0);
	assert_int_equal(begin(f, s, "crown", T0 + 1000, 0, &a), 0);
	pulses(f, a, 1, 5, T0 + 2000);
	close_store(f);
	open_store(f);
	assert_int_equal(probe_counter(f, "U2", 23, now), 1);
}

static void test_a_new_unit_gets_a_baseline(void **state)
{
	struct fixture *f = *state;
	struct store_records_missing m;

	open_store(f);
	assert_int_equal(store_unit_seen(f->st, "U9", "SMPL-1064", "1.2.3", T0), 0);
	assert_int_equal(store_records_missing_check(f->st, "U9", 5000, T0, &m), 0);
	assert_int_equal(store_records_missing_check(f->st, "U9", 5000, T0 + 1, &m), 0);
	/* Shots from then on that the records did not see: no session to count them on. */
	assert_int_equal(store_records_missing_check(f->st, "U9", 5003, T0 + 2, &m), 1);
	assert_int_equal(m.patches, 0);
	assert_int_equal(m.session_id, 0);
	/* Below the records is not this check's business (counter-went-back). */
	assert_int_equal(store_records_missing_ack(f->st, "U9", &OPERATOR, T0 + 3), 1);
	assert_int_equal(store_records_missing_check(f->st, "U9", 4000, T0 + 4, &m), 0);
}

/* ---- backups ---------------------------------------------------------------------------- */

struct writer {
	struct fixture *f;
	volatile int stop;
	volatile int written;
	char failed[STORE_MSG_MAX + 16];	/* cmocka asserts on the test's thread only */
};

/* Another thread writes treatments and audit rows through its own store. */
static void *write_records(void *arg)
{
	struct writer *w = arg;
	struct store *st;
	char msg[STORE_MSG_MAX];
	int64_t s = 0, t = 0;

	if (store_open(&st, w->f->dir, msg, sizeof(msg)) < 0) {
		snprintf(w->failed, sizeof(w->failed), "open: %s", msg);
		return NULL;
	}
	if (store_session_begin(st, "P9", "U1", &OPERATOR, T0, &s) < 0)
		snprintf(w->failed, sizeof(w->failed), "session: %s", store_errmsg(st));
	for (int i = 0; !w->failed[0] && !w->stop && i < 2000; i++) {
		struct store_treatment_start ts = {
			.session_id = s, .patch = "crown", .unit_firmware = "1",
			.op = OPERATOR, .params = PARAMS, .armed_ms = T0 + 100000 + i,
			.armed_rtc_s = T0 / 1000, .shot_at_arm = 8,	/* some_records' last */
			.cooldown_ms = COOLDOWN_MS,
		};
		struct store_treatment_finish fin = {
			.outcome = STORE_OUTCOME_COMPLETED, .end_ms = T0 + 100000 + i,
			.shot_at_end_known = true, .shot_at_end = 8,
		};
		struct store_audit a = { .time_ms = T0 + i, .kind = STORE_AUDIT_ARM,
					 .detail = "a concurrent write" };

		if (store_treatment_begin(st, &ts, &t) < 0 || store_treatment_end(st, t, &fin) < 0 ||
		    store_audit(st, &a) < 0) {
			snprintf(w->failed, sizeof(w->failed), "write: %s", store_errmsg(st));
			break;
		}
		w->written++;
	}
	store_close(st);
	return NULL;
}

static int backup_fd(const struct fixture *f, const char *name, char *path, size_t len)
{
	int fd;

	snprintf(path, len, "%s/%s", f->dir, name);
	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	return fd;
}

static void test_backup_while_written_is_one_consistent_snapshot(void **state)
{
	struct fixture *f = *state;
	struct store_chain_report rep;
	struct store_copy_info info;
	struct store_copy *c = NULL;
	struct writer w = { .f = f };
	pthread_t th;
	char path[160], msg[256];
	int r, fd, steps = 0;
	sqlite3 *db;

	some_records(f);
	for (int i = 0; i < 300; i++)		/* a few hundred pages */
		audit(f, STORE_AUDIT_PARAMETERS, "wavelength_nm=1064 fluence_mj_cm2=4000 "
		      "spot_um=3000 pulse_ps=10000 rate_mhz=5000, a longer text to fill pages");
	assert_int_equal(pthread_create(&th, NULL, write_records, &w), 0);
	while (w.written < 20 && !w.failed[0])
		usleep(1000);
	fd = backup_fd(f, "backup.db", path, sizeof(path));
	assert_int_equal(store_backup_begin(f->dir, fd, &c, msg, sizeof(msg)), 0);
	close(fd);			/* the copy has its own */
	while ((r = store_copy_step(c, 2)) == 0) {
		steps++;
		usleep(2000);		/* the writer goes on meanwhile */
	}
	if (r < 0)
		fail_msg("backup: %s", store_copy_errmsg(c));
	store_copy_info(c, &info);
	store_copy_free(c);
	w.stop = 1;
	pthread_join(th, NULL);
	if (w.failed[0])
		fail_msg("the other writer: %s", w.failed);
	fprintf(stderr, "# %d steps, %lld pages, %d records written meanwhile\n", steps,
		(long long)info.pages, w.written);
	assert_true(steps > 5);
	assert_int_equal(info.bytes, info.pages * info.page_size);

	/* An ordinary database (no log needed), whole, its chain intact, as of one instant. */
	assert_int_equal(verify_file(path, NULL, &rep), 0);
	assert_true(rep.head.seq == info.head.seq);
	assert_memory_equal(rep.head.hash, info.head.hash, STORE_CHAIN_HASH_LEN);
	{
		char uri[256];
		sqlite3_stmt *stmt;

		snprintf(uri, sizeof(uri), "file:%s?mode=ro", path);
		assert_int_equal(sqlite3_open_v2(uri, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI,
						 NULL), SQLITE_OK);
		assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &stmt, NULL),
				 SQLITE_OK);
		assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
		assert_string_equal((const char *)sqlite3_column_text(stmt, 0), "ok");
		sqlite3_finalize(stmt);
		/*
		 * The writer's steps are begin, end, audit, each its own transaction:
		 * the copy is between two of them, never inside one.
		 */
		int64_t open_ones = value(db, "SELECT count(*) FROM treatments"
					  " WHERE outcome = 'open'");
		int64_t ahead = value(db, "SELECT count(*) FROM treatments WHERE patient = 'P9'") -
				value(db, "SELECT count(*) FROM audit WHERE detail ="
				      " 'a concurrent write'");

		assert_true(open_ones <= 1);
		assert_true(ahead == 0 || ahead == 1);
		assert_true(open_ones == 0 || ahead == 1);
		assert_true(value(db, "SELECT count(*) FROM treatments WHERE patient = 'P9'") <
			    w.written);
		sqlite3_close(db);
	}
	{
		char hdr[20];
		int rfd = open(path, O_RDONLY);

		assert_int_equal(read(rfd, hdr, sizeof(hdr)), (ssize_t)sizeof(hdr));
		close(rfd);
		assert_int_equal(hdr[18], 1);	/* rollback journal: readable anywhere */
		assert_int_equal(hdr[19], 1);
	}
}

static void test_backup_never_overwrites(void **state)
{
	struct fixture *f = *state;
	struct store_copy *c = NULL;
	char path[160], msg[256];
	int fd;

	some_records(f);
	fd = backup_fd(f, "full.db", path, sizeof(path));
	assert_int_equal(write(fd, "x", 1), 1);
	assert_int_equal(store_backup_begin(f->dir, fd, &c, msg, sizeof(msg)), -EEXIST);
	assert_null(c);
	close(fd);
	fd = open(path, O_RDONLY);
	assert_int_equal(store_backup_begin(f->dir, fd, &c, msg, sizeof(msg)), -EEXIST);
	close(fd);
	fd = open("/dev/null", O_RDWR);
	assert_int_equal(store_backup_begin(f->dir, fd, &c, msg, sizeof(msg)), -EINVAL);
	close(fd);
}

/* ---- exports ---------------------------------------------------------------------------- */

static char *export_to_string(struct fixture *f, int64_t since, enum store_export_format fmt)
{
	struct store_copy *c = NULL;
	char path[160], msg[256], *buf;
	int fd = backup_fd(f, fmt == STORE_EXPORT_CSV ? "export.csv" : "export.json", path,
			   sizeof(path));
	struct stat sb;
	int r;

	assert_int_equal(store_export_begin(f->dir, fd, since, fmt, &c, msg, sizeof(msg)), 0);
	while ((r = store_copy_step(c, 1)) == 0)
		;
	assert_int_equal(r, 1);
	store_copy_free(c);
	assert_int_equal(fstat(fd, &sb), 0);
	buf = calloc(1, (size_t)sb.st_size + 1);
	assert_int_equal(pread(fd, buf, (size_t)sb.st_size, 0), sb.st_size);
	close(fd);
	unlink(path);
	return buf;
}

static void test_export_csv_and_json(void **state)
{
	struct fixture *f = *state;
	char *csv, *json;

	some_records(f);
	assert_int_equal(store_audit(f->st, &(struct store_audit){
		.time_ms = T0 + 9000, .kind = STORE_AUDIT_REFUSED, .reason = "NotAuthorized",
		.detail = "=HYPERLINK(\"http://x\"), \"quoted\"\nline \xff end" }), 0);
	csv = export_to_string(f, T0 + 2000, STORE_EXPORT_CSV);
	fprintf(stderr, "%s", csv);
	assert_non_null(strstr(csv, "record,id,session,unit,"));
	/* The first treatment (armed T0 + 1000) is before --since; the second is in. */
	assert_null(strstr(csv, "treatment,1,"));
	assert_non_null(strstr(csv, "treatment,2,1,U1,1001,tech1,P1,occipital,1.2.3,completed,"
			       "2026-01-01T00:00:04.000Z,2026-01-01T00:00:06.000Z,"));
	assert_non_null(strstr(csv, ",5,8,3,3,280000,280002,280001,,,,\r\n"));	/* the pulse summary */
	assert_null(strstr(csv, "audit,1,"));			/* at T0 */
	assert_non_null(strstr(csv, "\"'=HYPERLINK(\"\"http://x\"\"), \"\"quoted\"\"\nline \xef\xbf\xbd end\"\r\n"));
	json = export_to_string(f, 0, STORE_EXPORT_JSON);
	fprintf(stderr, "%s", json);
	assert_non_null(strstr(json, "{\"export\":{\"format\":\"smplaser-records-1\","));
	assert_non_null(strstr(json, "\"patch\":\"crown\""));
	assert_non_null(strstr(json, "\"detail\":\"=HYPERLINK(\\\"http://x\\\"), \\\"quoted"
			       "\\\"\\u000aline \\ufffd end\""));
	assert_non_null(strstr(json, "\n]}\n"));
	free(csv);
	free(json);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_known_answers),
		cmocka_unit_test(test_head_parses_as_logged),
		cmocka_unit_test_setup_teardown(test_every_write_is_chained_and_verifies, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_shell_cannot_write_a_chained_row, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_audit_row_edited_with_triggers_dropped_is_found,
						setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_treatment_edited_with_triggers_dropped_is_found, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pulses_edited_with_triggers_dropped_are_found,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_deleted_rows_and_entries_are_found, setup,
						teardown),
		cmocka_unit_test_setup_teardown(
			test_rows_inserted_behind_or_out_of_order_are_found, setup, teardown),
		cmocka_unit_test_setup_teardown(test_changed_entry_is_found, setup, teardown),
		cmocka_unit_test_setup_teardown(test_clinical_rows_are_chained, setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_rewritten_chain_is_found_against_the_logged_head, setup, teardown),
		cmocka_unit_test_setup_teardown(test_chain_step_does_not_depend_on_its_place, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_migration_chains_the_rows_there, setup,
						teardown),
		cmocka_unit_test_setup_teardown(
			test_counter_ahead_counts_on_the_last_session_and_blocks_arming, setup,
			teardown),
		cmocka_unit_test_setup_teardown(test_a_new_unit_gets_a_baseline, setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_shots_before_a_session_began_count_on_the_one_before, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restored_copy_with_an_open_treatment, setup,
						teardown),
		cmocka_unit_test_setup_teardown(
			test_crash_with_an_open_treatment_is_not_records_missing, setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_backup_while_written_is_one_consistent_snapshot, setup, teardown),
		cmocka_unit_test_setup_teardown(test_backup_never_overwrites, setup, teardown),
		cmocka_unit_test_setup_teardown(test_export_csv_and_json, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
