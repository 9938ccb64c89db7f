// SPDX-License-Identifier: MIT
/*
 * smplaserd's records of units, sessions, pulses and treatments (store.h):
 * arming decided in one transaction with the cooldown, the test spot, the
 * clinical rules (store-clinical.c) and the unit's counter (store-restore.c),
 * and every treatment settled from the counter the unit reports.
 */
#include "store.h"
#include "store-private.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

/* ---- names ------------------------------------------------------------- */

static const char *const outcome_names[] = {
	[STORE_OUTCOME_OPEN] = "open",
	[STORE_OUTCOME_COMPLETED] = "completed",
	[STORE_OUTCOME_INTERRUPTED] = "interrupted",
	[STORE_OUTCOME_FAULT] = "fault",
	[STORE_OUTCOME_RECONCILED] = "reconciled",
	[STORE_OUTCOME_UNKNOWN] = "unknown",
};

static const char *const session_state_names[] = {
	[STORE_SESSION_OPEN] = "open",
	[STORE_SESSION_ENDED] = "ended",
	[STORE_SESSION_INTERRUPTED] = "interrupted",
};

const char *store_outcome_name(enum store_outcome o)
{
	return (unsigned)o < N_ELEMS(outcome_names) ? outcome_names[o] : "?";
}

/* ---- units ------------------------------------------------------------- */

int store_unit_seen(struct store *st, const char *serial, const char *model,
		    const char *firmware, int64_t now_ms)
{
	sqlite3_stmt *stmt;
	int err;

	if (!store_valid_name(serial) || !store_valid_label(model) || !store_valid_label(firmware))
		return store_set_error(st, -EINVAL, "a unit needs a serial, a model and a firmware "
			    "(at most %d bytes each)", STORE_NAME_MAX);
	err = store_prepare(st, &stmt,
		      "INSERT INTO units (serial, model, firmware, first_seen_ms, last_seen_ms)"
		      " VALUES (?1, ?2, ?3, ?4, ?4)"
		      " ON CONFLICT (serial) DO UPDATE SET model = ?2, firmware = ?3,"
		      "  last_seen_ms = max(last_seen_ms, ?4)");
	if (err)
		return err;
	sqlite3_bind_text(stmt, 1, serial, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(stmt, 2, model, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(stmt, 3, firmware, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(stmt, 4, now_ms);
	err = store_step_done(st, stmt, "record unit");
	store_release(st, stmt);
	return err;
}

int store_get_unit(struct store *st, const char *serial, store_unit_cb cb, void *ctx)
{
	sqlite3_stmt *stmt;
	int rc, err;

	err = store_prepare(st, &stmt, "SELECT serial, model, firmware, first_seen_ms, last_seen_ms"
		      " FROM units WHERE serial = ?1");
	if (err)
		return err;
	store_bind_text_or_null(stmt, 1, serial);
	rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW) {
		struct store_unit u = {
			.serial = store_column_text(stmt, 0),
			.model = store_column_text(stmt, 1),
			.firmware = store_column_text(stmt, 2),
			.first_seen_ms = sqlite3_column_int64(stmt, 3),
			.last_seen_ms = sqlite3_column_int64(stmt, 4),
		};
		cb(&u, ctx);
		err = 0;
	} else {
		err = rc == SQLITE_DONE ? store_set_error(st, -ENOENT, "unit %s is not known", serial)
					: store_sql_error(st, rc, "read unit");
	}
	store_release(st, stmt);
	return err;
}

/* ---- sessions ---------------------------------------------------------- */

int store_session_begin(struct store *st, const char *patient, const char *unit_serial,
			const struct store_operator *op, int64_t now_ms, int64_t *session_id)
{
	return store_session_begin_at(st, patient, unit_serial, op, now_ms, NULL, session_id);
}

int store_session_begin_at(struct store *st, const char *patient, const char *unit_serial,
			   const struct store_operator *op, int64_t now_ms,
			   const uint32_t *start_counter, int64_t *session_id)
{
	sqlite3_stmt *stmt;
	int err;

	if (!store_valid_name(patient) || !store_valid_name(unit_serial) || !op || !store_valid_label(op->name) ||
	    !session_id)
		return store_set_error(st, -EINVAL, "a session needs a patient, a unit and an operator "
			    "(at most %d bytes each)", STORE_NAME_MAX);
	err = store_prepare(st, &stmt,
		      "INSERT INTO sessions (patient, unit_serial, operator_uid, operator_name,"
		      "  start_ms, start_counter, start_epoch) VALUES (?1, ?2, ?3, ?4, ?5, ?6,"
		      "  CASE WHEN ?6 IS NULL THEN NULL ELSE " UNIT_EPOCH("?2") " END)");
	if (err)
		return err;
	sqlite3_bind_text(stmt, 1, patient, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(stmt, 2, unit_serial, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(stmt, 3, op->uid);
	sqlite3_bind_text(stmt, 4, op->name, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(stmt, 5, now_ms);
	if (start_counter)
		sqlite3_bind_int64(stmt, 6, *start_counter);
	else
		sqlite3_bind_null(stmt, 6);
	err = store_step_done(st, stmt, "begin session");
	store_release(st, stmt);
	if (err == -EINVAL && sqlite3_extended_errcode(st->db) == SQLITE_CONSTRAINT_FOREIGNKEY)
		return store_set_error(st, -ENOENT, "unit %s is not known (record it first)", unit_serial);
	if (!err)
		*session_id = sqlite3_last_insert_rowid(st->db);
	return err;
}

int store_session_end(struct store *st, int64_t session_id, enum store_session_state state,
		      const char *notes, int64_t now_ms)
{
	sqlite3_stmt *stmt;
	int err;

	if (state != STORE_SESSION_ENDED && state != STORE_SESSION_INTERRUPTED)
		return store_set_error(st, -EINVAL, "a session ends as ended or interrupted");
	err = store_prepare(st, &stmt, "UPDATE sessions SET state = ?2, end_ms = ?3, notes = ?4"
		      " WHERE id = ?1 AND state = 'open'");
	if (err)
		return err;
	sqlite3_bind_int64(stmt, 1, session_id);
	sqlite3_bind_text(stmt, 2, session_state_names[state], -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 3, now_ms);
	store_bind_free_text(stmt, 4, notes);
	err = store_step_done(st, stmt, "end session");
	store_release(st, stmt);
	if (err || sqlite3_changes(st->db) == 1)
		return err;

	int64_t exists = 0;

	err = store_prepare(st, &stmt, "SELECT count(*) FROM sessions WHERE id = ?1");
	if (err)
		return err;
	sqlite3_bind_int64(stmt, 1, session_id);
	if (sqlite3_step(stmt) == SQLITE_ROW)
		exists = sqlite3_column_int64(stmt, 0);
	store_release(st, stmt);
	return exists ? store_set_error(st, -EALREADY, "session %lld is already closed", (long long)session_id)
		      : store_set_error(st, -ENOENT, "no session %lld", (long long)session_id);
}

int store_sessions_interrupt_open(struct store *st, int64_t now_ms)
{
	sqlite3_stmt *stmt;
	int err;

	err = store_prepare(st, &stmt, "UPDATE sessions SET state = 'interrupted', end_ms = ?1"
		      " WHERE state = 'open'");
	if (err)
		return err;
	sqlite3_bind_int64(stmt, 1, now_ms);
	err = store_step_done(st, stmt, "interrupt open sessions");
	store_release(st, stmt);
	return err ? err : sqlite3_changes(st->db);
}

int store_get_session(struct store *st, int64_t session_id, store_session_cb cb, void *ctx)
{
	sqlite3_stmt *stmt;
	int rc, err;

	err = store_prepare(st, &stmt, "SELECT id, patient, unit_serial, operator_uid, operator_name,"
		      " state, start_ms, coalesce(end_ms, 0), notes FROM sessions WHERE id = ?1");
	if (err)
		return err;
	sqlite3_bind_int64(stmt, 1, session_id);
	rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW) {
		int state = store_name_index(session_state_names, N_ELEMS(session_state_names),
				       store_column_text(stmt, 5));
		struct store_session s = {
			.id = sqlite3_column_int64(stmt, 0),
			.patient = store_column_text(stmt, 1),
			.unit_serial = store_column_text(stmt, 2),
			.op = { (uint32_t)sqlite3_column_int64(stmt, 3), store_column_text(stmt, 4) },
			.state = state < 0 ? STORE_SESSION_OPEN : (enum store_session_state)state,
			.start_ms = sqlite3_column_int64(stmt, 6),
			.end_ms = sqlite3_column_int64(stmt, 7),
			.notes = store_column_text_or_null(stmt, 8),
		};
		cb(&s, ctx);
		err = 0;
	} else {
		err = rc == SQLITE_DONE ? store_set_error(st, -ENOENT, "no session %lld", (long long)session_id)
					: store_sql_error(st, rc, "read session");
	}
	store_release(st, stmt);
	return err;
}

/* ---- pulses ------------------------------------------------------------ */

static int check_treatment_exists(struct store *st, int64_t id)
{
	sqlite3_stmt *stmt;
	int rc, err;

	if (id > 0 && id == st->known_treatment)
		return 0;	/* treatments are never deleted */
	err = store_prepare(st, &stmt, "SELECT 1 FROM treatments WHERE id = ?1");
	if (err)
		return err;
	sqlite3_bind_int64(stmt, 1, id);
	rc = sqlite3_step(stmt);
	store_release(st, stmt);
	if (rc == SQLITE_ROW) {
		st->known_treatment = id;
		return 0;
	}
	return rc == SQLITE_DONE ? store_set_error(st, -ENOENT, "no treatment %lld", (long long)id)
				 : store_sql_error(st, rc, "look up treatment");
}

int store_add_pulse(struct store *st, const struct store_pulse *p)
{
	int err;

	if (!p)
		return store_set_error(st, -EINVAL, "no pulse");
	err = check_treatment_exists(st, p->treatment_id);
	if (err)
		return err;
	if (st->batch_len == st->batch_cap) {
		size_t cap = st->batch_cap ? st->batch_cap * 2 : 64;
		struct store_pulse *grown;

		if (st->batch_cap >= STORE_PULSE_BATCH_MAX)
			return store_set_error(st, -ENOBUFS, "%zu pulses wait for a flush; the store is failing",
				    st->batch_len);
		if (cap > STORE_PULSE_BATCH_MAX)
			cap = STORE_PULSE_BATCH_MAX;
		grown = realloc(st->batch, cap * sizeof(*grown));
		if (!grown)
			return store_set_error(st, -ENOMEM, "out of memory for the pulse batch");
		st->batch = grown;
		st->batch_cap = cap;
	}
	st->batch[st->batch_len++] = *p;
	return 0;
}

size_t store_pending_pulses(const struct store *st)
{
	return st->batch_len;
}

void store_drop_pending(struct store *st)
{
	st->batch_len = 0;
}

int store_visit_pending(const struct store *st,
			int (*cb)(const struct store_pulse *p, void *ctx), void *ctx)
{
	for (size_t i = 0; i < st->batch_len; i++) {
		int r = cb(&st->batch[i], ctx);

		if (r)
			return r;
	}
	return 0;
}

/* What one flush adds to one treatment's pulse summary. */
struct pulse_summary {
	int64_t treatment_id;
	int64_t count, min_uj, max_uj, sum_uj, last_ms;
};

/*
 * Another treatment of the unit in the same counter epoch holds this shot
 * number: the unit fired it again without a reset anyone accepted (its
 * counter went back under an armed treatment, a broken or hostile unit).
 * The pulse is real and keeps its row; the audit trail says so.
 */
static int audit_reused_shot(struct store *st, const struct store_pulse *p)
{
	sqlite3_stmt *stmt;
	char detail[200];
	int rc, err;

	/* another treatment of the same counter epoch with this shot */
	err = store_prepare(st, &stmt, "SELECT p.treatment_id, me.unit_serial FROM treatments AS me"
		      " JOIN pulses AS p ON p.unit_serial = me.unit_serial AND p.shot = ?2"
		      " JOIN treatments AS t ON t.id = p.treatment_id"
		      " WHERE me.id = ?1 AND p.treatment_id <> ?1"
		      "  AND t.counter_epoch = me.counter_epoch LIMIT 1");
	if (err)
		return err;
	sqlite3_bind_int64(stmt, 1, p->treatment_id);
	sqlite3_bind_int64(stmt, 2, p->shot);
	rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW) {
		snprintf(detail, sizeof(detail), "treatment %lld: shot %u (%u uJ measured, %u set, "
			 "at %lld ms) is already recorded for treatment %lld",
			 (long long)p->treatment_id, p->shot, p->measured_uj, p->set_uj,
			 (long long)p->host_ms, (long long)sqlite3_column_int64(stmt, 0));
		err = store_tx_audit(st, &(struct store_audit){
			.time_ms = p->host_ms, .kind = STORE_AUDIT_FAULT,
			.unit_serial = store_column_text(stmt, 1), .reason = "shot-number-reused",
			.detail = detail });
	} else if (rc != SQLITE_DONE) {
		err = store_sql_error(st, rc, "look for a reused shot number");
	}
	store_release(st, stmt);
	return err;
}

/*
 * A second report of a shot the treatment holds, with another measurement:
 * not a repeat of the same report but a pulse fired without the counter
 * moving (a stuck counter).  Its row is not stored twice (the shot is the
 * key) but its measurement goes into the audit trail (the daemon faults
 * the unit on the counter).
 */
static int audit_repeated_shot(struct store *st, const struct store_pulse *p)
{
	sqlite3_stmt *stmt;
	char detail[200];
	int rc, err;

	err = store_prepare(st, &stmt, "SELECT p.measured_uj, p.set_uj, t.unit_serial"
		      " FROM pulses AS p JOIN treatments AS t ON t.id = p.treatment_id"
		      " WHERE p.treatment_id = ?1 AND p.shot = ?2");
	if (err)
		return err;
	sqlite3_bind_int64(stmt, 1, p->treatment_id);
	sqlite3_bind_int64(stmt, 2, p->shot);
	rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW && (sqlite3_column_int64(stmt, 0) != p->measured_uj ||
				 sqlite3_column_int64(stmt, 1) != p->set_uj)) {
		snprintf(detail, sizeof(detail), "treatment %lld: shot %u (%u uJ measured, %u set, "
			 "at %lld ms) is already recorded with %lld uJ measured: a second pulse "
			 "with the same shot number", (long long)p->treatment_id, p->shot,
			 p->measured_uj, p->set_uj, (long long)p->host_ms,
			 (long long)sqlite3_column_int64(stmt, 0));
		err = store_tx_audit(st, &(struct store_audit){
			.time_ms = p->host_ms, .kind = STORE_AUDIT_FAULT,
			.unit_serial = store_column_text(stmt, 2), .reason = "shot-number-repeated",
			.detail = detail });
	} else if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		err = store_sql_error(st, rc, "look for a repeated shot number");
	}
	store_release(st, stmt);
	return err;
}

/*
 * Insert one pulse; *counts false if it was a repeated report (same treatment,
 * same shot): audited if its measurement differs.
 */
static int insert_pulse(struct store *st, const struct store_pulse *p, bool *counts)
{
	sqlite3_stmt *ins;
	int err;

	err = store_prepare(st, &ins, "INSERT INTO pulses (treatment_id, unit_serial, host_ms, shot,"
		      "  measured_uj, set_uj)"
		      " SELECT id, unit_serial, ?2, ?3, ?4, ?5 FROM treatments WHERE id = ?1"
		      " ON CONFLICT (treatment_id, shot) DO NOTHING");
	if (err)
		return err;
	sqlite3_bind_int64(ins, 1, p->treatment_id);
	sqlite3_bind_int64(ins, 2, p->host_ms);
	sqlite3_bind_int64(ins, 3, p->shot);
	sqlite3_bind_int64(ins, 4, p->measured_uj);
	sqlite3_bind_int64(ins, 5, p->set_uj);
	err = store_step_done(st, ins, "record pulse");
	store_release(st, ins);
	if (err)
		return err;
	*counts = sqlite3_changes(st->db) == 1;
	return *counts ? audit_reused_shot(st, p) : audit_repeated_shot(st, p);
}

/* Fold a pulse into the summary of its treatment (sums has room for it). */
static void add_to_summaries(struct pulse_summary *sums, size_t *n, const struct store_pulse *p)
{
	struct pulse_summary *s = NULL;

	for (size_t i = *n; i-- > 0 && !s; )
		if (sums[i].treatment_id == p->treatment_id)
			s = &sums[i];
	if (!s) {
		s = &sums[(*n)++];
		*s = (struct pulse_summary){ .treatment_id = p->treatment_id,
					     .min_uj = INT64_MAX, .max_uj = INT64_MIN,
					     .last_ms = INT64_MIN };
	}
	s->count++;
	s->sum_uj += p->measured_uj;
	if (p->measured_uj < s->min_uj)
		s->min_uj = p->measured_uj;
	if (p->measured_uj > s->max_uj)
		s->max_uj = p->measured_uj;
	if (p->host_ms > s->last_ms)
		s->last_ms = p->host_ms;
}

static int write_summary(struct store *st, const struct pulse_summary *s)
{
	sqlite3_stmt *sum;
	int err;

	err = store_prepare(st, &sum, "UPDATE treatments SET pulses_recorded = pulses_recorded + ?2,"
		      "  energy_min_uj = min(coalesce(energy_min_uj, ?3), ?3),"
		      "  energy_max_uj = max(coalesce(energy_max_uj, ?4), ?4),"
		      "  energy_sum_uj = energy_sum_uj + ?5,"
		      "  last_pulse_ms = max(coalesce(last_pulse_ms, ?6), ?6)"
		      " WHERE id = ?1");
	if (err)
		return err;
	sqlite3_bind_int64(sum, 1, s->treatment_id);
	sqlite3_bind_int64(sum, 2, s->count);
	sqlite3_bind_int64(sum, 3, s->min_uj);
	sqlite3_bind_int64(sum, 4, s->max_uj);
	sqlite3_bind_int64(sum, 5, s->sum_uj);
	sqlite3_bind_int64(sum, 6, s->last_ms);
	err = store_step_done(st, sum, "update pulse summary");
	store_release(st, sum);
	return err;
}

/* Inside the transaction: every pulse of the batch, then the summaries. */
static int write_batch(struct store *st)
{
	struct pulse_summary *sums = calloc(st->batch_len, sizeof(*sums));
	size_t n = 0;
	bool counts;
	int err = sums ? 0 : store_set_error(st, -ENOMEM, "out of memory for the pulse summary");

	for (size_t i = 0; !err && i < st->batch_len; i++) {
		err = insert_pulse(st, &st->batch[i], &counts);
		if (!err && counts)
			add_to_summaries(sums, &n, &st->batch[i]);
	}
	for (size_t i = 0; !err && i < n; i++)
		err = write_summary(st, &sums[i]);
	free(sums);
	return err;
}

int store_flush(struct store *st)
{
	int err;

	if (st->batch_len == 0)
		return 0;
	err = store_tx_begin(st);
	if (!err)
		err = write_batch(st);
	if (!err)
		err = store_tx_commit(st);
	if (err)
		return store_tx_rollback(st, err);	/* the batch stays for the next try */
	st->batch_len = 0;
	return 0;
}

int store_treatment_pulses(struct store *st, int64_t treatment_id, store_pulse_cb cb, void *ctx)
{
	sqlite3_stmt *stmt;
	int rc, n = 0, err;

	err = store_prepare(st, &stmt, "SELECT treatment_id, host_ms, shot, measured_uj, set_uj"
		      " FROM pulses WHERE treatment_id = ?1 ORDER BY shot");
	if (err)
		return err;
	sqlite3_bind_int64(stmt, 1, treatment_id);
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		struct store_pulse p = {
			.treatment_id = sqlite3_column_int64(stmt, 0),
			.host_ms = sqlite3_column_int64(stmt, 1),
			.shot = (uint32_t)sqlite3_column_int64(stmt, 2),
			.measured_uj = (uint32_t)sqlite3_column_int64(stmt, 3),
			.set_uj = (uint32_t)sqlite3_column_int64(stmt, 4),
		};
		n++;
		if (cb(&p, ctx))
			break;
	}
	err = (rc == SQLITE_ROW || rc == SQLITE_DONE) ? n : store_sql_error(st, rc, "read pulses");
	store_release(st, stmt);
	return err;
}

/* ---- treatments -------------------------------------------------------- */

#define TREATMENT_COLUMNS \
	"id, session_id, patient, patch, unit_serial, unit_firmware, operator_uid," \
	" operator_name, wavelength_nm, fluence_mj_cm2, spot_um, pulse_ps, rate_mhz," \
	" set_energy_uj, outcome, armed_ms, armed_rtc_s, coalesce(end_ms, 0)," \
	" coalesce(end_rtc_s, 0), shot_at_arm, shot_at_end, pulse_count," \
	" pulses_recorded, coalesce(energy_min_uj, 0), coalesce(energy_max_uj, 0)," \
	" energy_sum_uj, coalesce(last_pulse_ms, 0), coalesce(" EMISSION_EXPR ", 0)," \
	" coalesce(emitting_ms, 0)"

static void read_treatment(sqlite3_stmt *s, struct store_treatment *t)
{
	int outcome = store_name_index(outcome_names, N_ELEMS(outcome_names), store_column_text(s, 14));

	*t = (struct store_treatment){
		.id = sqlite3_column_int64(s, 0),
		.session_id = sqlite3_column_int64(s, 1),
		.patient = store_column_text(s, 2),
		.patch = store_column_text(s, 3),
		.unit_serial = store_column_text(s, 4),
		.unit_firmware = store_column_text(s, 5),
		.op = { (uint32_t)sqlite3_column_int64(s, 6), store_column_text(s, 7) },
		.params = {
			.wavelength_nm = (uint16_t)sqlite3_column_int64(s, 8),
			.fluence_mj_cm2 = (uint32_t)sqlite3_column_int64(s, 9),
			.spot_um = (uint16_t)sqlite3_column_int64(s, 10),
			.pulse_ps = (uint32_t)sqlite3_column_int64(s, 11),
			.rate_mhz = (uint32_t)sqlite3_column_int64(s, 12),
			.set_energy_uj = (uint32_t)sqlite3_column_int64(s, 13),
		},
		.outcome = outcome < 0 ? STORE_OUTCOME_UNKNOWN : (enum store_outcome)outcome,
		.armed_ms = sqlite3_column_int64(s, 15),
		.armed_rtc_s = sqlite3_column_int64(s, 16),
		.end_ms = sqlite3_column_int64(s, 17),
		.end_rtc_s = sqlite3_column_int64(s, 18),
		.shot_at_arm = (uint32_t)sqlite3_column_int64(s, 19),
		.shot_at_end_known = sqlite3_column_type(s, 20) != SQLITE_NULL,
		.shot_at_end = (uint32_t)sqlite3_column_int64(s, 20),
		.pulse_count_known = sqlite3_column_type(s, 21) != SQLITE_NULL,
		.pulse_count = (uint32_t)sqlite3_column_int64(s, 21),
		.pulses_recorded = (uint32_t)sqlite3_column_int64(s, 22),
		.energy_min_uj = (uint32_t)sqlite3_column_int64(s, 23),
		.energy_max_uj = (uint32_t)sqlite3_column_int64(s, 24),
		.energy_sum_uj = (uint64_t)sqlite3_column_int64(s, 25),
		.last_pulse_ms = sqlite3_column_int64(s, 26),
		.emission_ms = sqlite3_column_int64(s, 27),
		.emitting_ms = sqlite3_column_int64(s, 28),
	};
}

/* Visit the rows of a treatment query; returns how many were visited. */
static int visit_treatments(struct store *st, sqlite3_stmt *stmt, store_treatment_cb cb,
			    void *ctx)
{
	struct store_treatment t;
	int rc, n = 0;

	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		read_treatment(stmt, &t);
		n++;
		if (cb(&t, ctx))
			break;
	}
	return (rc == SQLITE_ROW || rc == SQLITE_DONE) ? n : store_sql_error(st, rc, "read treatments");
}

static bool params_valid(const struct store_params *p)
{
	return p->wavelength_nm && p->fluence_mj_cm2 && p->spot_um && p->pulse_ps &&
	       p->rate_mhz && p->set_energy_uj;
}

/* Inside the write transaction: the session must be open; its patient and unit. */
static int read_open_session(struct store *st, int64_t id, char **patient, char **unit)
{
	sqlite3_stmt *stmt;
	int rc, err;

	err = store_prepare(st, &stmt, "SELECT patient, unit_serial, state FROM sessions WHERE id = ?1");
	if (err)
		return err;
	sqlite3_bind_int64(stmt, 1, id);
	rc = sqlite3_step(stmt);
	if (rc == SQLITE_DONE)
		err = store_set_error(st, -ENOENT, "no session %lld", (long long)id);
	else if (rc != SQLITE_ROW)
		err = store_sql_error(st, rc, "read session");
	else if (strcmp(store_column_text(stmt, 2), "open") != 0)
		err = store_set_error(st, -ESTALE, "session %lld is %s, not open", (long long)id,
			   store_column_text(stmt, 2));
	else if (!(*patient = strdup(store_column_text(stmt, 0))) ||
		 !(*unit = strdup(store_column_text(stmt, 1))))
		err = store_set_error(st, -ENOMEM, "out of memory");
	store_release(st, stmt);
	return err;
}

static int refuse_if_unit_busy(struct store *st, const char *unit)
{
	sqlite3_stmt *stmt;
	int rc, err;

	err = store_prepare(st, &stmt, "SELECT id, outcome FROM treatments"
		      " INDEXED BY treatments_open_by_unit"
		      " WHERE unit_serial = ?1 AND outcome = 'open' LIMIT 1");
	if (err)
		return err;
	sqlite3_bind_text(stmt, 1, unit, -1, SQLITE_TRANSIENT);
	rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW)
		err = store_set_error(st, -EBUSY, "unit %s still has treatment %lld %s; reconcile it or end it "
			   "first",
			   unit, (long long)sqlite3_column_int64(stmt, 0), store_column_text(stmt, 1));
	else if (rc != SQLITE_DONE)
		err = store_sql_error(st, rc, "look for open treatments");
	store_release(st, stmt);
	return err;
}

/* The latest emission on patient's patch in any session but except_session. */
static int last_emission_except(struct store *st, const char *patient, const char *patch,
				int64_t except_session, int64_t *when_ms)
{
	sqlite3_stmt *stmt;
	int rc, err;

	err = store_prepare(st, &stmt, "SELECT max(" EMISSION_EXPR ") FROM treatments"
		      " WHERE patient = ?1 COLLATE NOCASE AND patch = ?2 AND session_id != ?3");
	if (err)
		return err;
	sqlite3_bind_text(stmt, 1, patient, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(stmt, 2, patch, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(stmt, 3, except_session);
	rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW) {
		err = sqlite3_column_type(stmt, 0) == SQLITE_NULL ? 0 : 1;
		*when_ms = sqlite3_column_int64(stmt, 0);
	} else {
		err = store_sql_error(st, rc, "last emission");
	}
	store_release(st, stmt);
	return err;
}

static int refuse_if_cooling_down(struct store *st, const struct store_treatment_start *t,
				  const char *patient)
{
	char last[32], eligible[32];
	int64_t when;
	int found = last_emission_except(st, patient, t->patch, t->session_id, &when);

	if (found <= 0)
		return found;
	if (when <= t->armed_ms - t->cooldown_ms)
		return 0;
	store_format_utc(when, last, sizeof(last));
	store_format_utc(when + t->cooldown_ms, eligible, sizeof(eligible));
	return store_set_error(st, -EAGAIN, "patch %s of patient %s was last treated %s; eligible from %s",
		    t->patch, patient, last, eligible);
}

static int insert_treatment(struct store *st, const struct store_treatment_start *t,
			    const char *patient, const char *unit)
{
	sqlite3_stmt *stmt;
	int err;

	err = store_prepare(st, &stmt,
		      "INSERT INTO treatments (session_id, patient, patch, unit_serial,"
		      "  unit_firmware, operator_uid, operator_name, wavelength_nm,"
		      "  fluence_mj_cm2, spot_um, pulse_ps, rate_mhz, set_energy_uj,"
		      "  armed_ms, armed_rtc_s, shot_at_arm, counter_epoch)"
		      " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14,"
		      "  ?15, ?16, " UNIT_EPOCH("?4") ")");
	if (err)
		return err;
	sqlite3_bind_int64(stmt, 1, t->session_id);
	sqlite3_bind_text(stmt, 2, patient, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(stmt, 3, t->patch, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(stmt, 4, unit, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(stmt, 5, t->unit_firmware, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(stmt, 6, t->op.uid);
	sqlite3_bind_text(stmt, 7, t->op.name, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(stmt, 8, t->params.wavelength_nm);
	sqlite3_bind_int64(stmt, 9, t->params.fluence_mj_cm2);
	sqlite3_bind_int64(stmt, 10, t->params.spot_um);
	sqlite3_bind_int64(stmt, 11, t->params.pulse_ps);
	sqlite3_bind_int64(stmt, 12, t->params.rate_mhz);
	sqlite3_bind_int64(stmt, 13, t->params.set_energy_uj);
	sqlite3_bind_int64(stmt, 14, t->armed_ms);
	sqlite3_bind_int64(stmt, 15, t->armed_rtc_s);
	sqlite3_bind_int64(stmt, 16, t->shot_at_arm);
	err = store_step_done(st, stmt, "record treatment");
	store_release(st, stmt);
	return err;
}

/*
 * The values of a one-row query bound to (patient, patch, session): the
 * first (of @n) -1 when NULL.
 */
static int facts_query(struct store *st, const char *sql, const char *patient,
		       const char *patch, int64_t session_id, int64_t *v, int n)
{
	sqlite3_stmt *stmt;
	int rc, err;

	err = store_prepare(st, &stmt, sql);
	if (err)
		return err;
	sqlite3_bind_text(stmt, 1, patient, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(stmt, 2, patch, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(stmt, 3, session_id);
	rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW) {
		for (int i = 0; i < n; i++)
			v[i] = sqlite3_column_int64(stmt, i);
		if (sqlite3_column_type(stmt, 0) == SQLITE_NULL)
			v[0] = -1;
	} else {
		err = store_sql_error(st, rc, "read the patch's records");
	}
	store_release(st, stmt);
	return err;
}

/* Outside a transaction, the queries of one answer read one snapshot. */
static int begin_read(struct store *st, bool *began)
{
	sqlite3_stmt *stmt;
	int err;

	*began = false;
	if (!sqlite3_get_autocommit(st->db))
		return 0;	/* inside the caller's */
	err = store_prepare(st, &stmt, "BEGIN");
	if (!err)
		err = store_step_done(st, stmt, "BEGIN");
	if (!err)
		store_release(st, stmt);
	*began = !err;
	return err;
}

static int end_read(struct store *st, bool began, int err)
{
	sqlite3_stmt *stmt;

	if (!began)
		return err;
	if (err)
		return store_tx_rollback(st, err);
	err = store_prepare(st, &stmt, "COMMIT");
	if (!err) {
		err = store_step_done(st, stmt, "COMMIT");
		store_release(st, stmt);
	}
	return err ? store_tx_rollback(st, err) : 0;
}

int store_patch_facts(struct store *st, const char *patient, const char *patch,
		      int64_t session_id, struct store_patch_facts *out)
{
	int64_t v[3], pulses;	/* last emission of the patch, first of the patient, count */
	bool began;
	int err;

	if (!store_nonempty(patient) || !store_nonempty(patch) || !out)
		return store_set_error(st, -EINVAL, "patch facts need a patient and a patch");
	*out = (struct store_patch_facts){ 0 };
	err = begin_read(st, &began);
	/*
	 * One pass over the patient's treatments, all in the covering index
	 * treatments_by_patient.  This session's own treatments of this patch
	 * are one visit, not history.
	 */
	if (!err)
		err = facts_query(st, "SELECT max(CASE WHEN patch = ?2 AND session_id != ?3 THEN e END),"
				  " count(CASE WHEN NOT (session_id = ?3 AND patch = ?2) THEN e END),"
				  " min(CASE WHEN NOT (session_id = ?3 AND patch = ?2) THEN e END)"
				  " FROM (SELECT " EMISSION_EXPR " AS e, patch, session_id"
				  "  FROM treatments WHERE patient = ?1 COLLATE NOCASE)",
				  patient, patch, session_id, v, 3);
	if (!err)
		err = facts_query(st, "SELECT coalesce(sum(max(coalesce(pulse_count, 0),"
				  "  pulses_recorded)), 0) FROM treatments"
				  " WHERE session_id = ?3 AND patch = ?2 AND ?1 IS NOT NULL",
				  patient, patch, session_id, &pulses, 1);
	if (!err)	/* issue 16: the hold and the last pigment finding, same snapshot */
		err = store_clinical_facts(st, patient, patch, out);
	err = end_read(st, began, err);
	if (err)
		return err;
	out->patch_emitted = v[0] >= 0;
	out->patch_last_emission_ms = v[0] >= 0 ? v[0] : 0;
	out->patient_treatments = (uint32_t)v[1];
	out->patient_first_emission_ms = v[2];	/* min() of none: NULL, 0 */
	out->session_patch_pulses = pulses > UINT32_MAX ? UINT32_MAX : (uint32_t)pulses;
	return 0;
}

/* Inside the transaction: the rules, at the arming time, on the records now. */
static int refuse_unless_eligible(struct store *st, const struct store_treatment_start *t,
				  const char *patient)
{
	struct store_patch_facts facts;
	char why[STORE_MSG_MAX] = "";
	int err;

	if (!t->decide)
		return 0;
	err = store_patch_facts(st, patient, t->patch, t->session_id, &facts);
	if (err)
		return err;
	err = t->decide(&facts, t->armed_ms, t->decide_ctx, why, sizeof(why));
	if (err == -EAGAIN)
		return store_set_error(st, -EAGAIN, "%s", why[0] ? why : "the patch is not eligible now");
	return err < 0 ? store_set_error(st, err, "%s", why[0] ? why : "the rules refused") : 0;
}

/*
 * The highest shot number the records hold for a unit in its current counter
 * epoch: its recorded pulses and its newest treatment's counters of that
 * epoch, and the counter an authorized user accepted when the epoch began.
 * 0 and *found false if none.
 */
static int unit_high_water(struct store *st, const char *unit, uint32_t *shot, bool *found)
{
	sqlite3_stmt *stmt;
	int rc, err;

	err = store_prepare(st, &stmt,
		      "SELECT max(m) FROM (SELECT (SELECT p.shot FROM pulses AS p"
		      "   JOIN treatments AS t ON t.id = p.treatment_id"
		      "   WHERE p.unit_serial = ?1 AND t.counter_epoch = " UNIT_EPOCH("?1")
		      "   ORDER BY p.shot DESC LIMIT 1) AS m"
		      " UNION ALL SELECT (SELECT max(shot_at_arm, coalesce(shot_at_end, 0))"
		      "   FROM treatments WHERE unit_serial = ?1"
		      "   AND counter_epoch = " UNIT_EPOCH("?1") " ORDER BY id DESC LIMIT 1)"
		      " UNION ALL SELECT (SELECT counter FROM counter_resets WHERE unit_serial = ?1"
		      "   ORDER BY id DESC LIMIT 1))");
	if (err)
		return err;
	sqlite3_bind_text(stmt, 1, unit, -1, SQLITE_TRANSIENT);
	rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW) {
		*found = sqlite3_column_type(stmt, 0) != SQLITE_NULL;
		*shot = (uint32_t)sqlite3_column_int64(stmt, 0);
	} else {
		err = store_sql_error(st, rc, "read the unit's highest shot");
	}
	store_release(st, stmt);
	return err;
}

/* -ERANGE when @counter is below what the records hold for @unit (S3). */
static int refuse_if_counter_went_back(struct store *st, const char *unit, uint32_t counter)
{
	uint32_t high = 0;
	bool found = false;
	int err = unit_high_water(st, unit, &high, &found);

	if (err || !found || counter >= high)
		return err;
	return store_set_error(st, -ERANGE, "counter-went-back: unit %s reports shot counter %u, below "
		    "shot %u in the records; not believed", unit, counter, high);
}

int store_counter_check(struct store *st, const char *unit_serial, uint32_t counter)
{
	if (!store_valid_name(unit_serial))
		return store_set_error(st, -EINVAL, "a counter check needs a unit");
	return refuse_if_counter_went_back(st, unit_serial, counter);
}

/* The end of a treatment by its recorded pulses: its highest shot above its arming. */
#define RECORDED_END \
	"max(shot_at_arm, coalesce((SELECT max(shot) FROM pulses" \
	" WHERE pulses.treatment_id = treatments.id AND pulses.shot > treatments.shot_at_arm)," \
	" shot_at_arm))"

/*
 * Inside the reset's transaction: a treatment of the unit still open was
 * armed on the counter now left behind, which can never settle it: it ends
 * unknown (counted emitted from its arming, with its recorded pulses).  One
 * closed with its end counter unread gets the end its recorded pulses show.
 */
static int end_earlier_epoch(struct store *st, const char *unit, int64_t now_ms)
{
	sqlite3_stmt *stmt;
	char detail[160];
	int n, err;

	/* Closed with the end unread: the counter that could settle them is gone. */
	err = store_prepare(st, &stmt, "UPDATE treatments SET shot_at_end = " RECORDED_END ","
		      " pulse_count = " RECORDED_END " - shot_at_arm"
		      " WHERE unit_serial = ?1 AND shot_at_end IS NULL"
		      " AND outcome NOT IN ('open', 'unknown')");
	if (err)
		return err;
	sqlite3_bind_text(stmt, 1, unit, -1, SQLITE_TRANSIENT);
	err = store_step_done(st, stmt, "settle the earlier counter's treatments from their pulses");
	store_release(st, stmt);
	n = err ? 0 : sqlite3_changes(st->db);
	if (n > 0) {
		snprintf(detail, sizeof(detail), "%d treatment(s) closed with the end counter unread "
			 "before the reset: settled from their recorded pulses", n);
		err = store_tx_audit(st, &(struct store_audit){
			.time_ms = now_ms, .kind = STORE_AUDIT_RECONCILE, .unit_serial = unit,
			.reason = "counter-reset", .detail = detail });
	}
	if (err)
		return err;
	err = store_prepare(st, &stmt, "UPDATE treatments SET outcome = 'unknown', end_ms = ?2"
		      " WHERE unit_serial = ?1 AND outcome = 'open'");
	if (err)
		return err;
	sqlite3_bind_text(stmt, 1, unit, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(stmt, 2, now_ms);
	err = store_step_done(st, stmt, "end the treatments of the earlier counter");
	store_release(st, stmt);
	n = err ? 0 : sqlite3_changes(st->db);
	if (n == 0)
		return err;
	snprintf(detail, sizeof(detail), "%d treatment(s) left open on the counter before the "
		 "reset: ended unknown (counted emitted), never settled from the new counter", n);
	return store_tx_audit(st, &(struct store_audit){
		.time_ms = now_ms, .kind = STORE_AUDIT_RECONCILE, .unit_serial = unit,
		.reason = "counter-reset", .detail = detail });
}

int store_counter_reset(struct store *st, const char *unit_serial, uint32_t counter,
			const struct store_operator *op, int64_t now_ms)
{
	sqlite3_stmt *stmt;
	uint32_t high = 0;
	bool found = false;
	int err;

	if (!store_valid_name(unit_serial) || !op || !store_valid_label(op->name))
		return store_set_error(st, -EINVAL, "a counter reset needs a unit and an operator");
	err = store_tx_begin(st);
	if (!err)
		err = unit_high_water(st, unit_serial, &high, &found);
	if (!err && (!found || counter >= high))
		err = store_set_error(st, -EALREADY, "unit %s: counter %u is not below the records", unit_serial,
			   counter);
	if (!err)
		err = store_prepare(st, &stmt, "INSERT INTO counter_resets (unit_serial, high_water,"
			      " counter, time_ms, operator_uid, operator_name)"
			      " VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
	if (!err) {
		sqlite3_bind_text(stmt, 1, unit_serial, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(stmt, 2, high);
		sqlite3_bind_int64(stmt, 3, counter);
		sqlite3_bind_int64(stmt, 4, now_ms);
		sqlite3_bind_int64(stmt, 5, op->uid);
		sqlite3_bind_text(stmt, 6, op->name, -1, SQLITE_TRANSIENT);
		err = store_step_done(st, stmt, "record the counter reset");
		store_release(st, stmt);
	}
	if (!err)
		err = end_earlier_epoch(st, unit_serial, now_ms);
	if (!err)
		err = store_tx_commit(st);
	return err ? store_tx_rollback(st, err) : 0;
}

static int settle_one(struct store *st, int64_t id, uint32_t counter, int64_t now_ms,
		      const char *how);

/*
 * The unit's counter at this arming is the end counter of its earlier
 * treatments whose end was not read (DESIGN S3: reconciled from the next
 * good read).
 */
static int settle_earlier(struct store *st, const char *unit, uint32_t shot_at_arm,
			  int64_t now_ms)
{
	sqlite3_stmt *stmt;
	int64_t ids[16];
	size_t n = 0;
	int rc, err;

	err = store_prepare(st, &stmt, "SELECT id FROM treatments WHERE unit_serial = ?1 AND"
		      " (outcome IN ('open', 'unknown') OR shot_at_end IS NULL)"
		      " AND counter_epoch = " UNIT_EPOCH("?1") " ORDER BY id LIMIT 16");
	if (err)
		return err;
	sqlite3_bind_text(stmt, 1, unit, -1, SQLITE_TRANSIENT);
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW)
		ids[n++] = sqlite3_column_int64(stmt, 0);
	store_release(st, stmt);
	if (rc != SQLITE_DONE)
		return store_sql_error(st, rc, "look for treatments to settle");
	for (size_t i = 0; i < n && !err; i++) {
		err = settle_one(st, ids[i], shot_at_arm, now_ms, "the counter at the next arming");
		if (err == -ERANGE || err == -EALREADY || err == -ESTALE)
			err = 0;	/* left as it is: unknown counts as emitted */
	}
	return err;
}

int store_treatment_begin(struct store *st, const struct store_treatment_start *t,
			  int64_t *treatment_id)
{
	char *patient = NULL, *unit = NULL;
	int err;

	if (!t || !treatment_id || !store_valid_name(t->patch) || !store_valid_label(t->unit_firmware) ||
	    !store_valid_label(t->op.name) ||
	    t->cooldown_ms <= 0 || t->armed_ms <= 0 || !params_valid(&t->params))
		return store_set_error(st, -EINVAL, "a treatment needs a session, a patch, the firmware, "
			    "an operator, parameters, the arming time and the cooldown");
	err = store_flush(st);
	if (err)
		return err;

	err = store_tx_begin(st);
	if (!err)
		err = read_open_session(st, t->session_id, &patient, &unit);
	if (!err)
		err = refuse_if_unit_busy(st, unit);
	if (!err)
		err = refuse_if_counter_went_back(st, unit, t->shot_at_arm);
	if (!err)
		err = store_refuse_if_records_missing(st, unit);
	if (!err)
		err = store_refuse_if_counter_ahead(st, unit, t->shot_at_arm);
	if (!err)
		err = settle_earlier(st, unit, t->shot_at_arm, t->armed_ms);
	if (!err)
		err = refuse_if_cooling_down(st, t, patient);
	if (!err)
		err = refuse_unless_eligible(st, t, patient);
	if (!err)
		err = insert_treatment(st, t, patient, unit);
	if (!err)
		*treatment_id = sqlite3_last_insert_rowid(st->db);
	if (!err)
		err = store_tx_commit(st);	/* synchronous=FULL: durable on return */
	free(patient);
	free(unit);
	return err ? store_tx_rollback(st, err) : 0;
}

int store_treatment_mark_emitting(struct store *st, int64_t treatment_id, int64_t when_ms)
{
	sqlite3_stmt *stmt;
	int err;

	err = store_flush(st);		/* its first pulses with it */
	if (!err)
		err = store_prepare(st, &stmt, "UPDATE treatments SET emitting_ms = ?2"
			      " WHERE id = ?1 AND emitting_ms IS NULL");
	if (err)
		return err;
	sqlite3_bind_int64(stmt, 1, treatment_id);
	sqlite3_bind_int64(stmt, 2, when_ms);
	err = store_step_done(st, stmt, "record the emission");
	store_release(st, stmt);
	return err;
}

/* Inside the write transaction: outcome and shot_at_arm of a treatment. */
static int read_treatment_state(struct store *st, int64_t id, enum store_outcome *outcome,
				uint32_t *shot_at_arm, int64_t *recorded)
{
	sqlite3_stmt *stmt;
	int rc, err, o;

	err = store_prepare(st, &stmt, "SELECT outcome, shot_at_arm, pulses_recorded FROM treatments"
		      " WHERE id = ?1");
	if (err)
		return err;
	sqlite3_bind_int64(stmt, 1, id);
	rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW) {
		o = store_name_index(outcome_names, N_ELEMS(outcome_names), store_column_text(stmt, 0));
		*outcome = o < 0 ? STORE_OUTCOME_COMPLETED : (enum store_outcome)o;
		*shot_at_arm = (uint32_t)sqlite3_column_int64(stmt, 1);
		*recorded = sqlite3_column_int64(stmt, 2);
	} else {
		err = rc == SQLITE_DONE ? store_set_error(st, -ENOENT, "no treatment %lld", (long long)id)
					: store_sql_error(st, rc, "read treatment");
	}
	store_release(st, stmt);
	return err;
}

/* @count: the pulse count, or < 0 for the shots since arming. */
static int close_treatment(struct store *st, int64_t id, enum store_outcome outcome,
			   int64_t end_ms, int64_t end_rtc_s, bool shot_known, uint32_t shot_at_end,
			   uint32_t shot_at_arm, int64_t count)
{
	sqlite3_stmt *stmt;
	int err;

	err = store_prepare(st, &stmt, "UPDATE treatments SET outcome = ?2, end_ms = ?3,"
		      " end_rtc_s = ?4, shot_at_end = ?5, pulse_count = ?6 WHERE id = ?1");
	if (err)
		return err;
	sqlite3_bind_int64(stmt, 1, id);
	sqlite3_bind_text(stmt, 2, outcome_names[outcome], -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 3, end_ms);
	if (end_rtc_s)
		sqlite3_bind_int64(stmt, 4, end_rtc_s);
	else
		sqlite3_bind_null(stmt, 4);
	if (shot_known) {
		sqlite3_bind_int64(stmt, 5, shot_at_end);
		sqlite3_bind_int64(stmt, 6, count >= 0 ? count : (int64_t)shot_at_end - shot_at_arm);
	} else {
		sqlite3_bind_null(stmt, 5);
		sqlite3_bind_null(stmt, 6);
	}
	err = store_step_done(st, stmt, "close treatment");
	store_release(st, stmt);
	return err;
}

int store_treatment_end(struct store *st, int64_t treatment_id,
			const struct store_treatment_finish *f)
{
	enum store_outcome now;
	uint32_t shot_at_arm;
	int64_t recorded;
	int err;

	if (!f || (f->outcome != STORE_OUTCOME_COMPLETED && f->outcome != STORE_OUTCOME_INTERRUPTED &&
		   f->outcome != STORE_OUTCOME_FAULT && f->outcome != STORE_OUTCOME_UNKNOWN))
		return store_set_error(st, -EINVAL, "a treatment ends completed, interrupted, fault or unknown");
	err = store_flush(st);
	if (!err)
		err = store_tx_begin(st);
	if (!err)
		err = read_treatment_state(st, treatment_id, &now, &shot_at_arm, &recorded);
	if (!err && now != STORE_OUTCOME_OPEN)
		err = store_set_error(st, -EALREADY, "treatment %lld is already %s", (long long)treatment_id,
			   outcome_names[now]);
	if (!err && f->shot_at_end_known && f->shot_at_end < shot_at_arm)
		err = store_set_error(st, -ERANGE, "treatment %lld: shot counter %u is below %u at arming",
			   (long long)treatment_id, f->shot_at_end, shot_at_arm);
	if (!err)
		err = close_treatment(st, treatment_id, f->outcome, f->end_ms, f->end_rtc_s,
				      f->shot_at_end_known, f->shot_at_end, shot_at_arm,
				      f->count_reported ? recorded : -1);
	if (!err)
		err = store_tx_commit(st);
	return err ? store_tx_rollback(st, err) : 0;
}


/*
 * Once its unit armed again, the counter at that arming is where its pulses
 * end: *found true and *shot that counter.
 */
static int next_arming_counter(struct store *st, int64_t treatment_id, uint32_t *shot,
			       bool *found)
{
	sqlite3_stmt *stmt;
	int rc, err;

	err = store_prepare(st, &stmt, "SELECT later.shot_at_arm FROM treatments AS t"
		      " JOIN treatments AS later"
		      " ON later.unit_serial = t.unit_serial AND later.id > t.id"
		      "  AND later.counter_epoch = t.counter_epoch"
		      " WHERE t.id = ?1 ORDER BY later.id LIMIT 1");
	if (err)
		return err;
	sqlite3_bind_int64(stmt, 1, treatment_id);
	rc = sqlite3_step(stmt);
	*found = rc == SQLITE_ROW;
	if (*found)
		*shot = (uint32_t)sqlite3_column_int64(stmt, 0);
	else if (rc != SQLITE_DONE)
		err = store_sql_error(st, rc, "look for later treatments");
	store_release(st, stmt);
	return err;
}

/*
 * Inside the transaction: the unit, whether the end counter is known and
 * whether the treatment was armed in the unit's current counter epoch.
 */
static int read_settle_state(struct store *st, int64_t id, char **unit, bool *end_known,
			     bool *this_epoch)
{
	sqlite3_stmt *stmt;
	int rc, err;

	err = store_prepare(st, &stmt, "SELECT unit_serial, shot_at_end IS NOT NULL,"
		      " counter_epoch = " UNIT_EPOCH("treatments.unit_serial") " FROM treatments WHERE id = ?1");
	if (err)
		return err;
	sqlite3_bind_int64(stmt, 1, id);
	rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW) {
		*unit = strdup(store_column_text(stmt, 0));
		*end_known = sqlite3_column_int(stmt, 1) != 0;
		*this_epoch = sqlite3_column_int(stmt, 2) != 0;
		if (!*unit)
			err = store_set_error(st, -ENOMEM, "out of memory");
	} else {
		err = rc == SQLITE_DONE ? store_set_error(st, -ENOENT, "no treatment %lld", (long long)id)
					: store_sql_error(st, rc, "read treatment");
	}
	store_release(st, stmt);
	return err;
}

/* A closed treatment's end counter, read late. */
static int set_end_counter(struct store *st, int64_t id, uint32_t shot_at_end,
			   uint32_t shot_at_arm)
{
	sqlite3_stmt *stmt;
	int err;

	err = store_prepare(st, &stmt, "UPDATE treatments SET shot_at_end = ?2, pulse_count = ?3"
		      " WHERE id = ?1 AND shot_at_end IS NULL");
	if (err)
		return err;
	sqlite3_bind_int64(stmt, 1, id);
	sqlite3_bind_int64(stmt, 2, shot_at_end);
	sqlite3_bind_int64(stmt, 3, (int64_t)shot_at_end - shot_at_arm);
	err = store_step_done(st, stmt, "record the end counter");
	store_release(st, stmt);
	return err;
}

/*
 * The shots a treatment could have fired: at its repetition rate for as long
 * as it was armed (to its end, or @now_ms while open), a quarter more and 5
 * for the clocks and the reports in flight; and the highest shot recorded in
 * it (0 if none).  A counter beyond its arming by more leapt while the unit
 * was not watched (a faulty unit): never believed (S3, hole 102).
 */
static int plausible_shots(struct store *st, int64_t id, int64_t now_ms, int64_t *most,
			   uint32_t *recorded_high)
{
	sqlite3_stmt *stmt;
	int rc, err;

	err = store_prepare(st, &stmt, "SELECT rate_mhz, max(0, coalesce(end_ms, ?2) - armed_ms),"
		      " (SELECT max(shot) FROM pulses WHERE treatment_id = t.id"
		      "  AND shot > t.shot_at_arm) FROM treatments AS t WHERE id = ?1");
	if (err)
		return err;
	sqlite3_bind_int64(stmt, 1, id);
	sqlite3_bind_int64(stmt, 2, now_ms);
	rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW) {
		int64_t rate_mhz = sqlite3_column_int64(stmt, 0);
		int64_t span_ms = sqlite3_column_int64(stmt, 1);

		if (span_ms > INT64_MAX / 2 / (rate_mhz > 0 ? rate_mhz : 1))
			*most = INT64_MAX;
		else
			*most = span_ms * rate_mhz / 1000000 * 5 / 4 + 5;
		*recorded_high = (uint32_t)sqlite3_column_int64(stmt, 2);
	} else {
		err = rc == SQLITE_DONE ? store_set_error(st, -ENOENT, "no treatment %lld", (long long)id)
					: store_sql_error(st, rc, "read treatment");
	}
	store_release(st, stmt);
	return err;
}

/*
 * Inside a write transaction: settle treatment @id from the unit's counter
 * @counter (or the counter at its unit's next arming, if there was one).
 */
static int settle_one(struct store *st, int64_t id, uint32_t counter, int64_t now_ms,
		      const char *how)
{
	enum store_outcome now;
	uint32_t shot_at_arm, next = 0;
	int64_t recorded;
	char *unit = NULL;
	char detail[200];
	bool end_known = false, later = false, this_epoch = false;
	const char *reason = NULL;
	uint32_t recorded_high = 0;
	int64_t most = 0;
	char leap[120];
	int err;

	err = read_treatment_state(st, id, &now, &shot_at_arm, &recorded);
	if (!err)
		err = read_settle_state(st, id, &unit, &end_known, &this_epoch);
	if (!err && now != STORE_OUTCOME_OPEN && now != STORE_OUTCOME_UNKNOWN && end_known)
		err = store_set_error(st, -EALREADY, "treatment %lld is already %s", (long long)id,
			   outcome_names[now]);
	if (!err && !this_epoch)
		err = store_set_error(st, -ESTALE, "treatment %lld was armed before its unit's counter was "
			   "reset: never settled from the new counter; left %s", (long long)id,
			   outcome_names[now]);
	if (!err)
		err = next_arming_counter(st, id, &next, &later);
	if (!err && later) {
		counter = next;
		how = "the counter at its unit's next arming";
	} else if (!err) {
		err = refuse_if_counter_went_back(st, unit, counter);
	}
	if (!err && counter < shot_at_arm)
		err = store_set_error(st, -ERANGE, "counter-went-back: treatment %lld: unit shot counter %u is "
			   "below %u at arming; left %s", (long long)id, counter, shot_at_arm,
			   outcome_names[now]);
	if (!err)
		err = plausible_shots(st, id, now_ms, &most, &recorded_high);
	if (!err && counter - shot_at_arm > most) {
		uint32_t leapt = counter;

		counter = recorded_high > shot_at_arm ? recorded_high : shot_at_arm;
		snprintf(leap, sizeof(leap), "its recorded pulses: the counter (%u) leapt past "
			 "what it could fire armed, not believed", leapt);
		how = leap;
		reason = "counter-jumped";
	}
	if (!err && (now == STORE_OUTCOME_OPEN || now == STORE_OUTCOME_UNKNOWN))
		err = close_treatment(st, id, STORE_OUTCOME_RECONCILED, now_ms, 0, true,
				      counter, shot_at_arm, -1);
	else if (!err)
		err = set_end_counter(st, id, counter, shot_at_arm);
	if (!err) {
		snprintf(detail, sizeof(detail), "treatment %lld: %u shots since arming (%s), "
			 "%lld pulses recorded", (long long)id, counter - shot_at_arm, how,
			 (long long)recorded);
		err = store_tx_audit(st, &(struct store_audit){
			.time_ms = now_ms, .kind = STORE_AUDIT_RECONCILE, .unit_serial = unit,
			.reason = reason, .detail = detail });
	}
	free(unit);
	return err;
}

int store_reconcile_treatment(struct store *st, int64_t treatment_id, uint32_t shot_count_now,
			      int64_t now_ms)
{
	int err;

	err = store_flush(st);
	if (!err)
		err = store_tx_begin(st);
	if (!err)
		err = settle_one(st, treatment_id, shot_count_now, now_ms, "the unit's counter");
	if (!err)
		err = store_tx_commit(st);
	return err ? store_tx_rollback(st, err) : 0;
}

int store_get_treatment(struct store *st, int64_t treatment_id, store_treatment_cb cb, void *ctx)
{
	sqlite3_stmt *stmt;
	int n, err;

	err = store_prepare(st, &stmt, "SELECT " TREATMENT_COLUMNS " FROM treatments WHERE id = ?1");
	if (err)
		return err;
	sqlite3_bind_int64(stmt, 1, treatment_id);
	n = visit_treatments(st, stmt, cb, ctx);
	store_release(st, stmt);
	if (n == 0)
		return store_set_error(st, -ENOENT, "no treatment %lld", (long long)treatment_id);
	return n < 0 ? n : 0;
}

int store_patient_history(struct store *st, const char *patient, store_treatment_cb cb, void *ctx)
{
	sqlite3_stmt *stmt;
	int n, err;

	err = store_prepare(st, &stmt, "SELECT " TREATMENT_COLUMNS " FROM treatments"
		      " WHERE patient = ?1 COLLATE NOCASE ORDER BY armed_ms, id");
	if (err)
		return err;
	store_bind_text_or_null(stmt, 1, patient);
	n = visit_treatments(st, stmt, cb, ctx);
	store_release(st, stmt);
	return n;
}

int store_unsettled_treatments(struct store *st, const char *unit_serial, store_treatment_cb cb,
			  void *ctx)
{
	sqlite3_stmt *stmt;
	int n, err;

	/*
	 * Through the partial index treatments_unsettled, which holds only these
	 * (its condition is the first term), then sorted: "+armed_ms" keeps the
	 * planner from reading every treatment in treatments_by_armed's order.
	 */
	if (unit_serial)
		err = store_prepare(st, &stmt, "SELECT " TREATMENT_COLUMNS " FROM treatments"
			      " INDEXED BY treatments_unsettled"
			      " WHERE (outcome IN ('open', 'unknown') OR shot_at_end IS NULL)"
			      "  AND unit_serial = ?1"
			      "  AND counter_epoch = " UNIT_EPOCH("treatments.unit_serial")
			      " ORDER BY +armed_ms, id");
	else
		err = store_prepare(st, &stmt, "SELECT " TREATMENT_COLUMNS " FROM treatments"
			      " WHERE (outcome IN ('open', 'unknown') OR shot_at_end IS NULL)"
			      "  AND counter_epoch = " UNIT_EPOCH("treatments.unit_serial")
			      " ORDER BY +armed_ms, id");
	if (err)
		return err;
	if (unit_serial)
		sqlite3_bind_text(stmt, 1, unit_serial, -1, SQLITE_TRANSIENT);
	n = visit_treatments(st, stmt, cb, ctx);
	store_release(st, stmt);
	return n;
}

/* ---- queries ----------------------------------------------------------- */

int store_last_emission(struct store *st, const char *patient, const char *patch,
			int64_t *when_ms)
{
	if (!store_nonempty(patient) || !store_nonempty(patch) || !when_ms)
		return store_set_error(st, -EINVAL, "last emission needs a patient and a patch");
	return last_emission_except(st, patient, patch, 0, when_ms);
}

int store_patient_summary(struct store *st, const char *patient,
			  struct store_patient_summary *out)
{
	sqlite3_stmt *stmt;
	int rc, err;

	if (!store_nonempty(patient) || !out)
		return store_set_error(st, -EINVAL, "summary needs a patient");
	err = store_prepare(st, &stmt, "SELECT count(e), coalesce(min(e), 0), coalesce(max(e), 0) FROM"
		      " (SELECT " EMISSION_EXPR " AS e FROM treatments"
		      "  WHERE patient = ?1 COLLATE NOCASE)");
	if (err)
		return err;
	sqlite3_bind_text(stmt, 1, patient, -1, SQLITE_TRANSIENT);
	rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW) {
		out->treatments = (uint32_t)sqlite3_column_int64(stmt, 0);
		out->first_emission_ms = sqlite3_column_int64(stmt, 1);
		out->last_emission_ms = sqlite3_column_int64(stmt, 2);
	} else {
		err = store_sql_error(st, rc, "patient summary");
	}
	store_release(st, stmt);
	return err;
}

int store_newest_record_ms(struct store *st, int64_t *when_ms)
{
	bool is_null = true;
	int err;

	err = store_query_int64(st, "SELECT max(armed_ms) FROM treatments", when_ms, &is_null);
	if (err)
		return err;
	if (is_null)
		*when_ms = 0;
	return is_null ? 0 : 1;
}

