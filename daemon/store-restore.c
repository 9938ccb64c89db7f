// SPDX-License-Identifier: MIT
/* Records older than the units: see store-restore.h. */
#include "store-restore.h"
#include "store-private.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PATCHES_MAX	32	/* a session selects a few of the clinic's patches */

/*
 * Every counter position the records hold for the unit in its current
 * counter epoch (store.h, store_counter_reset): its treatments and pulses of
 * that epoch, the counters seen since the reset that began it, and the
 * counter accepted then; *found false if none.
 */
static int records_shot(struct store *st, const char *unit, uint32_t *shot, bool *found)
{
	sqlite3_stmt *stmt;
	int rc, err;

	err = store_prepare(st, &stmt,
		      "SELECT max(m) FROM ("
		      " SELECT (SELECT p.shot FROM pulses AS p JOIN treatments AS t"
		      "  ON t.id = p.treatment_id WHERE p.unit_serial = ?1"
		      "  AND t.counter_epoch = " UNIT_EPOCH("?1")
		      "  ORDER BY p.shot DESC LIMIT 1) AS m"
		      " UNION ALL SELECT max(shot_at_arm) FROM treatments WHERE unit_serial = ?1"
		      "  AND counter_epoch = " UNIT_EPOCH("?1")
		      " UNION ALL SELECT max(shot_at_end) FROM treatments WHERE unit_serial = ?1"
		      "  AND counter_epoch = " UNIT_EPOCH("?1")
		      " UNION ALL SELECT max(shot_to) FROM unit_counters WHERE unit_serial = ?1"
		      "  AND time_ms >= coalesce((SELECT max(time_ms) FROM counter_resets"
		      "   WHERE unit_serial = ?1), 0)"
		      " UNION ALL SELECT counter FROM (SELECT counter FROM counter_resets"
		      "  WHERE unit_serial = ?1 ORDER BY id DESC LIMIT 1))");
	if (err)
		return err;
	sqlite3_bind_text(stmt, 1, unit, -1, SQLITE_TRANSIENT);
	rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW) {
		*found = sqlite3_column_type(stmt, 0) != SQLITE_NULL;
		*shot = (uint32_t)sqlite3_column_int64(stmt, 0);
	} else {
		err = store_sql_error(st, rc, "read the unit's counter in the records");
	}
	store_release(st, stmt);
	return err;
}

/*
 * How far the unit's counter may be ahead of its unsettled treatments (left
 * open by a crash, unknown since the unit went away, closed with the end
 * counter unread) for their own shots: those fired after the last pulse that
 * reached the records, until the unit stopped by itself.  A pulse waits at
 * most a flush period to be written, and a unit that loses its host disarms
 * within its watchdog (about a second): STORE_MISSING_WINDOW_S at the
 * treatment's repetition rate, and two more.  Shots beyond are not theirs.
 */
static int unsettled_shot(struct store *st, const char *unit, uint32_t *shot, bool *found)
{
	sqlite3_stmt *stmt;
	int rc, err;

	err = store_prepare(st, &stmt,
		      "SELECT max(max(t.shot_at_arm, coalesce((SELECT max(p.shot) FROM pulses AS p"
		      "   WHERE p.treatment_id = t.id), 0))"
		      "  + (t.rate_mhz * ?2 + 999) / 1000 + 2)"
		      " FROM treatments AS t INDEXED BY treatments_unsettled WHERE t.unit_serial = ?1"
		      " AND (t.outcome IN ('open', 'unknown') OR t.shot_at_end IS NULL)"
		      " AND t.counter_epoch = " UNIT_EPOCH("?1"));
	if (err)
		return err;
	sqlite3_bind_text(stmt, 1, unit, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int(stmt, 2, STORE_MISSING_WINDOW_S);
	rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW) {
		*found = sqlite3_column_type(stmt, 0) != SQLITE_NULL;
		*shot = (uint32_t)sqlite3_column_int64(stmt, 0);
	} else {
		err = store_sql_error(st, rc, "read the unit's unsettled treatments");
	}
	store_release(st, stmt);
	return err;
}

static int insert_counter_row(struct store *st, const char *unit, const char *kind,
			      uint32_t from, uint32_t to, int64_t now_ms, int64_t session_id)
{
	sqlite3_stmt *stmt;
	int rc, err;

	err = store_prepare(st, &stmt, "INSERT INTO unit_counters (unit_serial, kind, shot_from,"
		      " shot_to, time_ms, session_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
	if (err)
		return err;
	sqlite3_bind_text(stmt, 1, unit, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(stmt, 2, kind, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 3, from);
	sqlite3_bind_int64(stmt, 4, to);
	sqlite3_bind_int64(stmt, 5, now_ms);
	if (session_id)
		sqlite3_bind_int64(stmt, 6, session_id);
	rc = sqlite3_step(stmt);
	store_release(st, stmt);
	return rc == SQLITE_DONE ? 0 : store_sql_error(st, rc, "record the unit's counter");
}

/* The standing (unacknowledged) finding for the unit, as its message. */
static int standing(struct store *st, const char *unit, struct store_records_missing *out)
{
	sqlite3_stmt *stmt;
	int rc, err;

	err = store_prepare(st, &stmt, "SELECT shot_from, shot_to, coalesce(session_id, 0),"
		      " (SELECT count(*) FROM treatments WHERE unit_serial = ?1"
		      "   AND operator_name = ?2 AND shot_at_arm = u.shot_from"
		      "   AND shot_at_end = u.shot_to)"
		      " FROM unit_counters AS u WHERE unit_serial = ?1 AND kind = 'missing'"
		      " AND ack_ms IS NULL ORDER BY id DESC LIMIT 1");
	if (err)
		return err;
	sqlite3_bind_text(stmt, 1, unit, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(stmt, 2, STORE_MISSING_OPERATOR_NAME, -1, SQLITE_STATIC);
	rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW) {
		*out = (struct store_records_missing){
			.records_shot = (uint32_t)sqlite3_column_int64(stmt, 0),
			.counter = (uint32_t)sqlite3_column_int64(stmt, 1),
			.session_id = sqlite3_column_int64(stmt, 2),
			.patches = (unsigned int)sqlite3_column_int64(stmt, 3),
		};
		err = 1;
	} else if (rc != SQLITE_DONE) {
		err = store_sql_error(st, rc, "read the unit's counters");
	}
	store_release(st, stmt);
	return err;
}

int store_refuse_if_records_missing(struct store *st, const char *unit_serial)
{
	struct store_records_missing m;
	int r = standing(st, unit_serial, &m);

	if (r <= 0)
		return r;
	return store_set_error(st, -ENOLINK, "records-missing: unit %s showed shot %" PRIu32
			       ", beyond shot %" PRIu32 " in the records, and nobody acknowledged it",
			       unit_serial, m.counter, m.records_shot);
}

struct last_session {
	int64_t id;
	char patient[STORE_NAME_MAX + 1];
	char patch[PATCHES_MAX][STORE_NAME_MAX + 1];
	unsigned int n;
};

/*
 * The unit's newest session that began before the records lost step with
 * its counter (at @records_shot), and every patch it treated or selected.
 * A session whose start found the counter ahead of that, in the same epoch,
 * began after those shots were fired: they are never counted on it (the
 * attacker's seed 1313415017, liveness-arm).  A start counter not known
 * counts as in step: the shots go on the newest session, as before.
 */
static int read_last_session(struct store *st, const char *unit, uint32_t records_shot,
			     struct last_session *ls)
{
	sqlite3_stmt *stmt;
	int rc, err;

	err = store_prepare(st, &stmt, "SELECT id, patient FROM sessions WHERE unit_serial = ?1"
		      " AND (start_counter IS NULL OR start_counter <= ?2"
		      "  OR start_epoch IS NOT " UNIT_EPOCH("?1") ")"
		      " ORDER BY id DESC LIMIT 1");
	if (err)
		return err;
	sqlite3_bind_text(stmt, 1, unit, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(stmt, 2, records_shot);
	rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW) {
		ls->id = sqlite3_column_int64(stmt, 0);
		snprintf(ls->patient, sizeof(ls->patient), "%s",
			 (const char *)sqlite3_column_text(stmt, 1));
	} else if (rc != SQLITE_DONE) {
		err = store_sql_error(st, rc, "read the unit's last session");
	}
	store_release(st, stmt);
	if (err || !ls->id)
		return err;
	err = store_prepare(st, &stmt, "SELECT patch FROM treatments WHERE session_id = ?1"
		      " UNION SELECT detail FROM audit WHERE session_id = ?1 AND kind = 'patch'"
		      "  AND detail IS NOT NULL AND length(detail) BETWEEN 1 AND ?2"
		      " ORDER BY 1");
	if (err)
		return err;
	sqlite3_bind_int64(stmt, 1, ls->id);
	sqlite3_bind_int(stmt, 2, STORE_NAME_MAX);
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW && ls->n < PATCHES_MAX)
		snprintf(ls->patch[ls->n++], sizeof(ls->patch[0]), "%s",
			 (const char *)sqlite3_column_text(stmt, 0));
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		err = store_sql_error(st, rc, "read the last session's patches");
	store_release(st, stmt);
	return err;
}

/*
 * One treatment for the missing shots on @patch: settled (reconciled) from
 * the counter, emitted at @now_ms, parameters as last recorded for the patch
 * in the session (or for the unit; 0 when never), by nobody known.
 */
/* The parameters a missing-shots treatment takes: of the patch in the session, else the unit's last. */
#define MISSING_PARAMS \
	"wavelength_nm, fluence_mj_cm2, spot_um, pulse_ps, rate_mhz, set_energy_uj"

static int insert_missing_treatment(struct store *st, const char *unit,
				    const struct last_session *ls, const char *patch,
				    uint32_t from, uint32_t to, int64_t now_ms)
{
	sqlite3_stmt *stmt;
	int rc, err;

	err = store_prepare(st, &stmt,
		      "INSERT INTO treatments (session_id, patient, patch, unit_serial,"
		      "  unit_firmware, operator_uid, operator_name, wavelength_nm,"
		      "  fluence_mj_cm2, spot_um, pulse_ps, rate_mhz, set_energy_uj,"
		      "  armed_ms, armed_rtc_s, end_ms, shot_at_arm, shot_at_end, pulse_count,"
		      "  outcome, emitting_ms)"
		      " SELECT ?1, ?2, ?3, ?4, coalesce((SELECT firmware FROM units"
		      "   WHERE serial = ?4), ''), ?5, ?6,"
		      "  coalesce(p.wavelength_nm, 0), coalesce(p.fluence_mj_cm2, 0),"
		      "  coalesce(p.spot_um, 0), coalesce(p.pulse_ps, 0), coalesce(p.rate_mhz, 0),"
		      "  coalesce(p.set_energy_uj, 0), ?7, 0, ?7, ?8, ?9, ?9 - ?8, 'reconciled', ?7"
		      " FROM (SELECT 1) LEFT JOIN (SELECT * FROM ("
		      "   SELECT * FROM (SELECT 0 AS o, " MISSING_PARAMS " FROM treatments"
		      "    WHERE session_id = ?1 AND patch = ?3 AND unit_serial = ?4"
		      "    AND operator_name != ?6 ORDER BY id DESC LIMIT 1)"
		      "   UNION ALL SELECT * FROM (SELECT 1, " MISSING_PARAMS " FROM treatments"
		      "    WHERE unit_serial = ?4 AND operator_name != ?6 ORDER BY id DESC LIMIT 1))"
		      "  ORDER BY o LIMIT 1) AS p");
	if (err)
		return err;
	sqlite3_bind_int64(stmt, 1, ls->id);
	sqlite3_bind_text(stmt, 2, ls->patient, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(stmt, 3, patch, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(stmt, 4, unit, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(stmt, 5, STORE_MISSING_OPERATOR_UID);
	sqlite3_bind_text(stmt, 6, STORE_MISSING_OPERATOR_NAME, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 7, now_ms);
	sqlite3_bind_int64(stmt, 8, from);
	sqlite3_bind_int64(stmt, 9, to);
	rc = sqlite3_step(stmt);
	store_release(st, stmt);
	return rc == SQLITE_DONE ? 0 : store_sql_error(st, rc, "record the missing shots");
}

/* Inside the transaction: the shots beyond the records, counted and audited. */
static int record_missing(struct store *st, const char *unit, uint32_t from, uint32_t to,
			  int64_t now_ms, struct store_records_missing *out)
{
	struct last_session *ls = calloc(1, sizeof(*ls));
	char detail[2 * STORE_NAME_MAX + 320], list[160] = "";
	size_t used = 0;
	int err = ls ? read_last_session(st, unit, from, ls) : store_set_error(st, -ENOMEM,
									  "out of memory");

	for (unsigned int i = 0; !err && i < ls->n; i++) {
		err = insert_missing_treatment(st, unit, ls, ls->patch[i], from, to, now_ms);
		if (used < sizeof(list))
			used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%s",
						 i ? ", " : "", ls->patch[i]);
	}
	if (!err)
		err = insert_counter_row(st, unit, "missing", from, to, now_ms, ls->id);
	if (!err) {
		*out = (struct store_records_missing){
			.records_shot = from, .counter = to, .session_id = ls->id,
			.patches = ls->n, .found_now = true,
		};
		if (ls->n)
			snprintf(detail, sizeof(detail), "shots %" PRIu32 "..%" PRIu32 " are not in "
				 "the records; counted as an emission on %s of patient %s "
				 "(session %" PRId64 ")", from + 1, to, list, ls->patient, ls->id);
		else
			snprintf(detail, sizeof(detail), "shots %" PRIu32 "..%" PRIu32 " are not in "
				 "the records; no session of the unit is known to count them on",
				 from + 1, to);
		err = store_audit(st, &(struct store_audit){
			.time_ms = now_ms, .kind = STORE_AUDIT_FAULT, .unit_serial = unit,
			.session_id = ls->id, .reason = "records-missing", .detail = detail });
	}
	free(ls);
	return err;
}

int store_refuse_if_counter_ahead(struct store *st, const char *unit_serial, uint32_t counter)
{
	uint32_t shot = 0, theirs = 0;
	bool found = false, unsettled = false;
	int err = records_shot(st, unit_serial, &shot, &found);

	if (!err)
		err = unsettled_shot(st, unit_serial, &theirs, &unsettled);
	if (err || !found || counter <= shot || (unsettled && counter <= theirs))
		return err;
	return store_set_error(st, -ENOLINK, "records-missing: unit %s's shot counter is at %"
			       PRIu32 " at arming, the records end at shot %" PRIu32 ": %" PRIu32
			       " shot%s fired outside the records (with no host arming the unit?); "
			       "not arming", unit_serial, counter, shot, counter - shot,
			       counter - shot == 1 ? "" : "s");
}

static int missing_message(struct store *st, const char *unit,
			   const struct store_records_missing *m)
{
	uint32_t shots = m->counter - m->records_shot;

	return store_set_error(st, 1, "records-missing: unit %s's shot counter is at %" PRIu32
			       ", the records end at shot %" PRIu32 ": %" PRIu32 " shot%s not in "
			       "the records (restored from an older backup, or fired elsewhere?); "
			       "counted as an emission on %u patch%s of the unit's last session; "
			       "acknowledge to arm again", unit, m->counter, m->records_shot, shots,
			       shots == 1 ? " is" : "s are", m->patches,
			       m->patches == 1 ? "" : "es");
}

int store_records_missing_check(struct store *st, const char *unit_serial, uint32_t counter,
				int64_t now_ms, struct store_records_missing *out)
{
	struct store_records_missing m = { 0 };
	uint32_t shot = 0, theirs = 0;
	bool found = false, unsettled = false;
	int err;

	if (!unit_serial || !*unit_serial || strlen(unit_serial) > STORE_NAME_MAX)
		return store_set_error(st, -EINVAL, "a counter check needs a unit");
	err = store_tx_begin(st);
	if (!err)
		err = records_shot(st, unit_serial, &shot, &found);
	if (!err)
		err = unsettled_shot(st, unit_serial, &theirs, &unsettled);
	if (!err && !found)		/* new to these records: where it starts */
		err = insert_counter_row(st, unit_serial, "baseline", counter, counter, now_ms, 0);
	else if (!err && counter > shot && (!unsettled || counter > theirs))
		err = record_missing(st, unit_serial, shot, counter, now_ms, &m);
	if (!err && !m.found_now)
		err = standing(st, unit_serial, &m);
	if (err >= 0 && store_tx_commit(st) < 0)
		err = -EIO;
	if (err < 0)
		return store_tx_rollback(st, err);
	if (out)
		*out = m;
	return err == 0 && !m.found_now ? 0 : missing_message(st, unit_serial, &m);
}

int store_records_missing_ack(struct store *st, const char *unit_serial,
			      const struct store_operator *op, int64_t now_ms)
{
	sqlite3_stmt *stmt;
	int rc, err;

	if (!unit_serial || !op || !op->name)
		return store_set_error(st, -EINVAL, "an acknowledge needs a unit and an operator");
	err = store_prepare(st, &stmt, "UPDATE unit_counters SET ack_ms = ?2, ack_uid = ?3,"
		      " ack_name = ?4 WHERE unit_serial = ?1 AND kind = 'missing'"
		      " AND ack_ms IS NULL");
	if (err)
		return err;
	sqlite3_bind_text(stmt, 1, unit_serial, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(stmt, 2, now_ms);
	sqlite3_bind_int64(stmt, 3, op->uid);
	sqlite3_bind_text(stmt, 4, op->name, -1, SQLITE_TRANSIENT);
	rc = sqlite3_step(stmt);
	store_release(st, stmt);
	if (rc != SQLITE_DONE)
		return store_sql_error(st, rc, "record the acknowledge");
	return sqlite3_changes(store_db(st));
}
