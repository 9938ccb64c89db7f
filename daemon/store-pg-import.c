// SPDX-License-Identifier: MIT
/*
 * Importing a workstation's SQLite records into the clinic's (store-pg.h).
 *
 * The SQLite file is read on a read-only connection, in one read
 * transaction, table by table (units, sessions, treatments with their
 * pulses, counter resets, the clinical record, audit); the clinic's database gets them in one
 * transaction.  Every imported session, treatment, counter reset and audit
 * record keeps where it came from (origin 'sqlite:<workstation>', origin_id
 * its id there), unique: a second run finds them and adds nothing.  Each
 * treatment keeps its unit's counter epoch (schema 6 and later; before, it is
 * counted from the resets of its unit before its arming, as store.c's
 * migration does), and pulses are unique per (treatment, shot): one already
 * there for the same treatment is the same pulse; a shot number that the
 * unit fired again after an accepted counter reset keeps its row.
 *
 * A conflict is reported (a line on the report and an audit record), never
 * merged silently:
 *  - a unit's shot recorded for another treatment of the same counter epoch
 *    (the unit reused it without an accepted reset, or the records disagree):
 *    both rows are kept, as store.c keeps a reused shot;
 *  - a treatment inside the cooldown of another workstation's treatment of
 *    the same patch (the exclusion constraint refuses it): it happened, so it
 *    is imported, marked import_conflict (its window does not take part in
 *    the constraint, the arming rules still count its emission).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pq-dlopen.h"
#include <sqlite3.h>

#include "store-pg.h"

struct id_map {
	int64_t *v;
	size_t n;
};

struct import {
	const struct store_pg_config *cfg;
	FILE *report;
	struct store_pg_import_result *res;
	PGconn *pg;
	sqlite3 *db;
	char origin[STORE_NAME_MAX + 16];
	char msg[STORE_MSG_MAX];
	bool has_epochs;		/* treatments.counter_epoch (SQLite schema 6) */
	unsigned int new_conflicts;	/* recorded by this run */
	/* local session, treatment and follow-up ids -> the clinic's */
	struct id_map session_map, treatment_map, follow_up_map;
};

__attribute__((format(printf, 3, 4)))
static int fail(struct import *im, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(im->msg, sizeof(im->msg), fmt, ap);
	va_end(ap);
	for (char *c = im->msg; (c = strchr(c, '\n')); )
		*c = ' ';
	return err;
}

/* ---- the clinic's side -------------------------------------------------------------- */

struct vals {
	int n;
	const char *v[40];
	char num[40][24];
};

static void v_i64(struct vals *v, int64_t x)
{
	snprintf(v->num[v->n], sizeof(v->num[0]), "%" PRId64, x);
	v->v[v->n] = v->num[v->n];
	v->n++;
}

static void v_str(struct vals *v, const char *s)
{
	v->v[v->n++] = s;
}

/* The value of column @col of @st, as text for libpq (NULL stays NULL). */
static void v_col(struct vals *v, sqlite3_stmt *st, int col)
{
	if (sqlite3_column_type(st, col) == SQLITE_NULL)
		v_str(v, NULL);
	else if (sqlite3_column_type(st, col) == SQLITE_INTEGER)
		v_i64(v, sqlite3_column_int64(st, col));
	else
		v_str(v, (const char *)sqlite3_column_text(st, col));
}

/* One statement; the result if it returns rows (PQclear it), else NULL. */
static int pg(struct import *im, const char *what, const char *sql, const struct vals *v,
	      PGresult **out)
{
	PGresult *r = sym_PQexecParams(im->pg, sql, v ? v->n : 0, NULL, v ? v->v : NULL, NULL, NULL, 0);
	ExecStatusType st = sym_PQresultStatus(r);
	const char *state;
	int err = 0;

	if (out)
		*out = NULL;
	if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
		if (out)
			*out = r;
		else
			sym_PQclear(r);
		return 0;
	}
	state = sym_PQresultErrorField(r, PG_DIAG_SQLSTATE);
	err = state && strcmp(state, "23P01") == 0 ? -EKEYREJECTED : -EIO;
	fail(im, err, "%s: %s", what, sym_PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY)
	     ? sym_PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : sym_PQerrorMessage(im->pg));
	sym_PQclear(r);
	return err;
}

static int pg_id(struct import *im, const char *what, const char *sql, const struct vals *v,
		 int64_t *id, bool *found)
{
	PGresult *r;
	int err = pg(im, what, sql, v, &r);

	if (err)
		return err;
	*found = sym_PQntuples(r) > 0 && !sym_PQgetisnull(r, 0, 0);
	*id = *found ? strtoll(sym_PQgetvalue(r, 0, 0), NULL, 10) : 0;
	sym_PQclear(r);
	return 0;
}

/* A row with this origin, or a new one: *id, and whether it was added. */
static int upsert(struct import *im, const char *what, const char *table, const char *insert,
		  const struct vals *v, int64_t origin_id, int64_t *id, bool *added)
{
	struct vals q = { 0 };
	char sql[160];
	bool found;
	int err;

	err = pg_id(im, what, insert, v, id, &found);
	if (err || found) {
		*added = found;
		return err;
	}
	*added = false;
	v_str(&q, im->origin);
	v_i64(&q, origin_id);
	snprintf(sql, sizeof(sql), "SELECT id FROM smplaser.%s WHERE origin = $1 AND origin_id = $2",
		 table);
	err = pg_id(im, what, sql, &q, id, &found);
	if (!err && !found)
		err = fail(im, -EIO, "%s: neither added nor there", what);
	return err;
}

__attribute__((format(printf, 4, 5)))
static int conflict(struct import *im, const char *unit, int64_t time_ms, const char *fmt, ...)
{
	char detail[600];
	struct vals v = { 0 };
	PGresult *r = NULL;
	bool fresh = false;
	va_list ap;
	int err;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	im->res->conflicts++;
	v_str(&v, im->cfg->workstation);
	v_i64(&v, time_ms);
	v_str(&v, unit);
	v_str(&v, detail);
	/* Reported at every run; recorded once (a second run adds nothing). */
	err = pg(im, "record the conflict",
		 "INSERT INTO smplaser.audit (workstation, time_ms, kind, unit_serial, reason, detail)"
		 " SELECT $1, $2, 'fault', $3, 'import-conflict', $4 WHERE NOT EXISTS"
		 " (SELECT 1 FROM smplaser.audit WHERE reason = 'import-conflict' AND detail = $4)"
		 " RETURNING id", &v, &r);
	if (!err) {
		fresh = sym_PQntuples(r) > 0;
		im->new_conflicts += fresh;
		sym_PQclear(r);
	}
	if (im->report)
		fprintf(im->report, "conflict: %s%s\n", detail, fresh ? "" : " (known)");
	return err;
}

/* ---- the tables ----------------------------------------------------------------------- */

static int prepare(struct import *im, sqlite3_stmt **st, const char *sql)
{
	if (sqlite3_prepare_v2(im->db, sql, -1, st, NULL) == SQLITE_OK)
		return 0;
	return fail(im, -EIO, "cannot read the workstation's records: %s", sqlite3_errmsg(im->db));
}

static int step_end(struct import *im, int rc)
{
	return rc == SQLITE_DONE ? 0 : fail(im, -EIO, "cannot read the workstation's records: %s",
					    sqlite3_errmsg(im->db));
}

static int import_units(struct import *im)
{
	sqlite3_stmt *st;
	int rc, err = prepare(im, &st, "SELECT serial, model, firmware, first_seen_ms, last_seen_ms"
			      " FROM units ORDER BY serial");

	while (!err && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct vals v = { 0 };
		PGresult *r;

		for (int c = 0; c < 5; c++)
			v_col(&v, st, c);
		v_str(&v, im->cfg->workstation);
		err = pg(im, "import a unit",
			 "INSERT INTO smplaser.units (serial, model, firmware, first_seen_ms,"
			 "  last_seen_ms, workstation) VALUES ($1, $2, $3, $4, $5, $6)"
			 " ON CONFLICT (serial) DO NOTHING RETURNING serial", &v, &r);
		if (!err) {
			if (sym_PQntuples(r))
				im->res->units++;
			sym_PQclear(r);
		}
	}
	if (!err)
		err = step_end(im, rc);
	sqlite3_finalize(st);
	return err;
}

static int map_put(struct import *im, struct id_map *m, int64_t local, int64_t clinic);
static int64_t map_get(const struct id_map *m, int64_t local);

/* A row upserted: counted as added (in *@added_count) or as there already. */
static void count_row(struct import *im, bool added, unsigned int *added_count)
{
	if (added)
		(*added_count)++;
	else
		im->res->skipped++;
}

static int import_sessions(struct import *im)
{
	sqlite3_stmt *st;
	int rc, err = prepare(im, &st, "SELECT id, patient, unit_serial, operator_uid, operator_name,"
			      " start_ms, end_ms, state, notes FROM sessions ORDER BY id");

	while (!err && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct vals v = { 0 };
		int64_t id;
		bool added;

		v_str(&v, im->cfg->workstation);
		for (int c = 1; c < 9; c++)
			v_col(&v, st, c);
		v_str(&v, im->origin);
		v_i64(&v, sqlite3_column_int64(st, 0));
		err = upsert(im, "import a session", "sessions",
			     "INSERT INTO smplaser.sessions (workstation, patient, unit_serial,"
			     "  operator_uid, operator_name, start_ms, end_ms, state, notes, origin,"
			     "  origin_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
			     " ON CONFLICT (origin, origin_id) DO NOTHING RETURNING id",
			     &v, sqlite3_column_int64(st, 0), &id, &added);
		if (!err)
			err = map_put(im, &im->session_map, sqlite3_column_int64(st, 0), id);
		if (!err)
			count_row(im, added, &im->res->sessions);
	}
	if (!err)
		err = step_end(im, rc);
	sqlite3_finalize(st);
	return err;
}

#define TREATMENT_INSERT \
	"INSERT INTO smplaser.treatments (session_id, workstation, patient, patch, unit_serial," \
	"  unit_firmware, operator_uid, operator_name, wavelength_nm, fluence_mj_cm2, spot_um," \
	"  pulse_ps, rate_mhz, set_energy_uj, armed_ms, armed_rtc_s, end_ms, end_rtc_s," \
	"  shot_at_arm, shot_at_end, pulse_count, pulses_recorded, energy_min_uj, energy_max_uj," \
	"  energy_sum_uj, last_pulse_ms, emitting_ms, outcome, cooldown_ms, import_conflict," \
	"  origin, origin_id, counter_epoch)" \
	" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17," \
	"  $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31, $32, $33)" \
	" ON CONFLICT (origin, origin_id) DO NOTHING RETURNING id"

/*
 * The columns of the SQLite treatment, in TREATMENT_INSERT's order from $3 to
 * $28, then its counter epoch (column 28): %s is the column, or before
 * SQLite's schema 6 TREATMENT_EPOCH_BEFORE_V6.
 */
#define TREATMENT_SELECT \
	"SELECT id, session_id, patient, patch, unit_serial, unit_firmware, operator_uid," \
	" operator_name, wavelength_nm, fluence_mj_cm2, spot_um, pulse_ps, rate_mhz," \
	" set_energy_uj, armed_ms, armed_rtc_s, end_ms, end_rtc_s, shot_at_arm, shot_at_end," \
	" pulse_count, pulses_recorded, energy_min_uj, energy_max_uj, energy_sum_uj," \
	" last_pulse_ms, emitting_ms, outcome, %s FROM treatments ORDER BY id"
#define TREATMENT_EPOCH_BEFORE_V6 \
	"(SELECT count(*) FROM counter_resets AS r WHERE r.unit_serial = treatments.unit_serial" \
	" AND r.time_ms <= treatments.armed_ms)"

static int treatment_row(struct import *im, sqlite3_stmt *st, bool conflicting, int64_t *id,
			 bool *added)
{
	struct vals v = { 0 };

	v_i64(&v, map_get(&im->session_map, sqlite3_column_int64(st, 1)));
	v_str(&v, im->cfg->workstation);
	for (int c = 2; c < 28; c++)
		v_col(&v, st, c);
	v_i64(&v, im->cfg->cooldown_ms);
	v_str(&v, conflicting ? "true" : "false");
	v_str(&v, im->origin);
	v_i64(&v, sqlite3_column_int64(st, 0));
	v_i64(&v, sqlite3_column_int64(st, 28));
	return upsert(im, "import a treatment", "treatments", TREATMENT_INSERT, &v,
		      sqlite3_column_int64(st, 0), id, added);
}

/* Text for a bigint[] parameter: "{1,2,3}". */
struct array {
	char *s;
	size_t len, cap;
	unsigned int n;
};

static int array_add(struct array *a, int64_t x)
{
	char num[24];
	int n = snprintf(num, sizeof(num), "%s%" PRId64, a->n ? "," : "", x);

	if (a->len + (size_t)n + 2 > a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 256;
		char *s = realloc(a->s, cap);

		if (!s)
			return -ENOMEM;
		a->s = s;
		a->cap = cap;
	}
	memcpy(a->s + a->len, num, (size_t)n);
	a->len += (size_t)n;
	a->n++;
	return 0;
}

static const char *array_text(struct array *a)
{
	if (!a->s && array_add(a, 0) < 0)	/* never empty here: at least one pulse */
		return "{}";
	a->s[a->len] = '\0';
	memmove(a->s + 1, a->s, a->len + 1);
	a->s[0] = '{';
	a->s[a->len + 1] = '}';
	a->s[a->len + 2] = '\0';
	return a->s;
}

/*
 * A treatment's pulses, in one statement; a shot of another treatment of the
 * same unit and counter epoch is a conflict (both rows kept).
 */
static int import_pulses(struct import *im, int64_t local, int64_t clinic)
{
	struct array col[4] = { 0 };
	sqlite3_stmt *st;
	char unit[STORE_NAME_MAX + 1] = "";
	int rc, err = prepare(im, &st, "SELECT unit_serial, host_ms, shot, measured_uj, set_uj"
			      " FROM pulses WHERE treatment_id = ?1 ORDER BY shot");

	if (!err)
		sqlite3_bind_int64(st, 1, local);
	while (!err && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		snprintf(unit, sizeof(unit), "%s", (const char *)sqlite3_column_text(st, 0));
		for (int c = 0; c < 4 && !err; c++)
			err = array_add(&col[c], sqlite3_column_int64(st, c + 1)) < 0
			      ? fail(im, -ENOMEM, "out of memory") : 0;
	}
	if (!err)
		err = step_end(im, rc);
	sqlite3_finalize(st);
	if (!err && col[0].n) {
		struct vals v = { 0 };
		PGresult *r;

		v_i64(&v, clinic);
		v_str(&v, unit);
		for (int c = 0; c < 4; c++)
			v_str(&v, array_text(&col[c]));
		err = pg(im, "import pulses",
			 "WITH added AS (INSERT INTO smplaser.pulses (treatment_id, unit_serial,"
			 "  host_ms, shot, measured_uj, set_uj)"
			 " SELECT $1, $2, h, s, m, e FROM unnest($3::bigint[], $4::bigint[],"
			 "  $5::bigint[], $6::bigint[]) AS u(h, s, m, e)"
			 " ON CONFLICT (treatment_id, shot) DO NOTHING)"
			 /* the snapshot before the insert: pulses of other treatments */
			 " SELECT p.shot, p.treatment_id, t.workstation, p.host_ms, t.counter_epoch"
			 " FROM smplaser.pulses p JOIN smplaser.treatments t ON t.id = p.treatment_id"
			 " WHERE p.unit_serial = $2 AND p.shot = ANY($4::bigint[])"
			 "  AND p.treatment_id <> $1 AND t.counter_epoch ="
			 "  (SELECT counter_epoch FROM smplaser.treatments WHERE id = $1)"
			 " ORDER BY p.shot", &v, &r);
		for (int i = 0; !err && i < sym_PQntuples(r); i++)
			err = conflict(im, unit, strtoll(sym_PQgetvalue(r, i, 3), NULL, 10),
				       "unit %s shot %s (counter epoch %s) is recorded for treatment "
				       "%s (workstation %s) and for the imported treatment %" PRId64
				       " (%s, local id %" PRId64 "): both rows kept", unit,
				       sym_PQgetvalue(r, i, 0), sym_PQgetvalue(r, i, 4), sym_PQgetvalue(r, i, 1),
				       sym_PQgetvalue(r, i, 2), clinic, im->cfg->workstation, local);
		sym_PQclear(r);
	}
	for (int c = 0; c < 4; c++)
		free(col[c].s);
	return err;
}

static bool known_conflict(struct import *im, int64_t id)
{
	struct vals v = { 0 };
	bool found = false;
	int64_t one = 0;

	v_i64(&v, id);
	return pg_id(im, "look at a treatment", "SELECT 1 FROM smplaser.treatments"
		     " WHERE id = $1 AND import_conflict", &v, &one, &found) == 0 && found;
}

static int import_treatments(struct import *im)
{
	char sql[sizeof(TREATMENT_SELECT) + sizeof(TREATMENT_EPOCH_BEFORE_V6)];
	sqlite3_stmt *st;
	int rc, err;

	snprintf(sql, sizeof(sql), TREATMENT_SELECT,
		 im->has_epochs ? "counter_epoch" : TREATMENT_EPOCH_BEFORE_V6);
	err = prepare(im, &st, sql);

	while (!err && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		int64_t local = sqlite3_column_int64(st, 0), id = 0;
		bool added = false;

		if (!map_get(&im->session_map, sqlite3_column_int64(st, 1))) {
			err = fail(im, -EIO, "treatment %" PRId64 " names no session", local);
			break;
		}
		err = pg(im, "savepoint", "SAVEPOINT treatment", NULL, NULL);
		if (!err)
			err = treatment_row(im, st, false, &id, &added);
		if (!err && !added && known_conflict(im, id))
			err = -EKEYREJECTED;	/* imported by an earlier run: still a conflict */
		if (err == -EKEYREJECTED) {
			/* Inside another workstation's cooldown: it happened; imported, marked. */
			err = pg(im, "rollback", "ROLLBACK TO SAVEPOINT treatment", NULL, NULL);
			if (!err)
				err = treatment_row(im, st, true, &id, &added);
			if (!err)
				err = conflict(im, (const char *)sqlite3_column_text(st, 4),
					       sqlite3_column_int64(st, 14),
					       "treatment of patient %s, patch %s at %" PRId64 " ms "
					       "(%s, local id %" PRId64 ") is inside the cooldown of "
					       "another treatment of that patch in the clinic's records; "
					       "imported as treatment %" PRId64 ", marked import_conflict",
					       (const char *)sqlite3_column_text(st, 2),
					       (const char *)sqlite3_column_text(st, 3),
					       (int64_t)sqlite3_column_int64(st, 14),
					       im->cfg->workstation, local, id);
		}
		if (!err)
			err = pg(im, "release", "RELEASE SAVEPOINT treatment", NULL, NULL);
		if (!err)
			err = map_put(im, &im->treatment_map, local, id);
		if (!err) {
			count_row(im, added, &im->res->treatments);
			err = import_pulses(im, local, id);
		}
	}
	if (!err)
		err = step_end(im, rc);
	sqlite3_finalize(st);
	return err;
}

static int import_counter_resets(struct import *im)
{
	sqlite3_stmt *st;
	int rc, err = prepare(im, &st, "SELECT id, unit_serial, high_water, counter, time_ms,"
			      " operator_uid, operator_name FROM counter_resets ORDER BY id");

	while (!err && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct vals v = { 0 };
		int64_t id;
		bool added;

		for (int c = 1; c < 7; c++)
			v_col(&v, st, c);
		v_str(&v, im->cfg->workstation);
		v_str(&v, im->origin);
		v_i64(&v, sqlite3_column_int64(st, 0));
		err = upsert(im, "import a counter reset", "counter_resets",
			     "INSERT INTO smplaser.counter_resets (unit_serial, high_water, counter,"
			     "  time_ms, operator_uid, operator_name, workstation, origin, origin_id)"
			     " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
			     " ON CONFLICT (origin, origin_id) DO NOTHING RETURNING id",
			     &v, sqlite3_column_int64(st, 0), &id, &added);
		if (!err && !added)
			im->res->skipped++;
	}
	if (!err)
		err = step_end(im, rc);
	sqlite3_finalize(st);
	return err;
}

static int import_audit(struct import *im)
{
	sqlite3_stmt *st;
	int rc, err = prepare(im, &st, "SELECT id, time_ms, kind, operator_uid, operator_name,"
			      " unit_serial, session_id, reason, detail FROM audit ORDER BY id");

	while (!err && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct vals v = { 0 };
		int64_t id, session = sqlite3_column_int64(st, 6);
		bool added;

		v_str(&v, im->cfg->workstation);
		for (int c = 1; c < 6; c++)
			v_col(&v, st, c);
		if (map_get(&im->session_map, session))
			v_i64(&v, map_get(&im->session_map, session));
		else
			v_str(&v, NULL);
		v_col(&v, st, 7);
		v_col(&v, st, 8);
		v_str(&v, im->origin);
		v_i64(&v, sqlite3_column_int64(st, 0));
		err = upsert(im, "import an audit record", "audit",
			     "INSERT INTO smplaser.audit (workstation, time_ms, kind, operator_uid,"
			     "  operator_name, unit_serial, session_id, reason, detail, origin,"
			     "  origin_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
			     " ON CONFLICT (origin, origin_id) DO NOTHING RETURNING id",
			     &v, sqlite3_column_int64(st, 0), &id, &added);
		if (!err)
			count_row(im, added, &im->res->audit);
	}
	if (!err)
		err = step_end(im, rc);
	sqlite3_finalize(st);
	return err;
}

/* Pulses added by this run: the clinic's count before and after. */
static int count_pulses(struct import *im, int64_t *n)
{
	struct vals v = { 0 };
	bool found;

	v_str(&v, im->origin);
	return pg_id(im, "count pulses",
		     "SELECT count(*) FROM smplaser.pulses p JOIN smplaser.treatments t"
		     " ON t.id = p.treatment_id WHERE t.origin = $1", &v, n, &found);
}

/* ---- the whole ---------------------------------------------------------------------- */

static int open_sqlite(struct import *im, const char *dir)
{
	char *uri = NULL;
	sqlite3_stmt *st;
	int64_t app = 0, version = 0;
	int rc;

	if (asprintf(&uri, "file:%s/%s?mode=ro", dir, STORE_DB_NAME) < 0)
		return fail(im, -ENOMEM, "out of memory");
	rc = sqlite3_open_v2(uri, &im->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, NULL);
	free(uri);
	if (rc != SQLITE_OK)
		return fail(im, -ENOENT, "cannot open %s/%s: %s", dir, STORE_DB_NAME,
			    im->db ? sqlite3_errmsg(im->db) : sqlite3_errstr(rc));
	sqlite3_busy_timeout(im->db, 5000);
	if (sqlite3_prepare_v2(im->db, "SELECT (SELECT application_id FROM pragma_application_id),"
			       " (SELECT user_version FROM pragma_user_version)", -1, &st,
			       NULL) != SQLITE_OK)
		return fail(im, -EUCLEAN, "%s/%s: %s", dir, STORE_DB_NAME, sqlite3_errmsg(im->db));
	if (sqlite3_step(st) == SQLITE_ROW) {
		app = sqlite3_column_int64(st, 0);
		version = sqlite3_column_int64(st, 1);
	}
	sqlite3_finalize(st);
	if (app != 0x534d504c)
		return fail(im, -EMEDIUMTYPE, "%s/%s is not smplaser's records", dir, STORE_DB_NAME);
	if (version < 3)
		return fail(im, -EPROTONOSUPPORT, "%s/%s has schema version %" PRId64 "; start "
			    "smplaserd on it once (it migrates) before importing it", dir,
			    STORE_DB_NAME, version);
	if (sqlite3_exec(im->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
		return fail(im, -EIO, "%s", sqlite3_errmsg(im->db));
	if (sqlite3_prepare_v2(im->db, "SELECT count(*) FROM pragma_table_info('treatments')"
			       " WHERE name = 'counter_epoch'", -1, &st, NULL) != SQLITE_OK)
		return fail(im, -EUCLEAN, "%s/%s: %s", dir, STORE_DB_NAME, sqlite3_errmsg(im->db));
	im->has_epochs = sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int64(st, 0) > 0;
	sqlite3_finalize(st);
	return 0;
}

/* ---- the clinical record (issue 16: SQLite schema step 8, the clinic's step 3) ---------- */

/* local id -> clinic id, for the clinical rows' references */
static int map_put(struct import *im, struct id_map *m, int64_t local, int64_t clinic)
{
	if (local <= 0)
		return fail(im, -EIO, "a row without its id");
	if ((size_t)local >= m->n) {
		size_t n = (size_t)local * 2 + 16;
		int64_t *v = realloc(m->v, n * sizeof(*v));

		if (!v)
			return fail(im, -ENOMEM, "out of memory");
		memset(v + m->n, 0, (n - m->n) * sizeof(*v));
		m->v = v;
		m->n = n;
	}
	m->v[local] = clinic;
	return 0;
}

static int64_t map_get(const struct id_map *m, int64_t local)
{
	return local > 0 && (size_t)local < m->n ? m->v[local] : 0;
}

/* Does the workstation's file keep the clinical record (its schema step 8)? */
static bool has_clinical(struct import *im)
{
	sqlite3_stmt *st;
	bool yes;

	if (sqlite3_prepare_v2(im->db, "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
			       " AND name IN ('endpoints', 'follow_ups', 'adverse_events',"
			       " 'hold_reviews')", -1, &st, NULL) != SQLITE_OK)
		return false;
	yes = sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int64(st, 0) == 4;
	sqlite3_finalize(st);
	return yes;
}

static int import_endpoints(struct import *im)
{
	sqlite3_stmt *st;
	int rc, err = prepare(im, &st, "SELECT id, session_id, treatment_id, patient, patch,"
			      " endpoint, note, time_ms, operator_uid, operator_name FROM endpoints"
			      " ORDER BY id");

	while (!err && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		int64_t local = sqlite3_column_int64(st, 0), id;
		int64_t session = map_get(&im->session_map, sqlite3_column_int64(st, 1));
		int64_t treatment = map_get(&im->treatment_map, sqlite3_column_int64(st, 2));
		struct vals v = { 0 };
		bool added;

		if (!session || !treatment) {
			err = fail(im, -EIO, "endpoint %" PRId64 " names no session or treatment",
				   local);
			break;
		}
		v_i64(&v, session);
		v_i64(&v, treatment);
		v_str(&v, im->cfg->workstation);
		for (int c = 3; c < 10; c++)
			v_col(&v, st, c);
		v_str(&v, im->origin);
		v_i64(&v, local);
		err = upsert(im, "import an endpoint", "endpoints",
			     "INSERT INTO smplaser.endpoints (session_id, treatment_id, workstation,"
			     "  patient, patch, endpoint, note, time_ms, operator_uid, operator_name,"
			     "  origin, origin_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,"
			     "  $11, $12) ON CONFLICT (origin, origin_id) DO NOTHING RETURNING id",
			     &v, local, &id, &added);
		if (!err)
			count_row(im, added, &im->res->clinical);
	}
	if (!err)
		err = step_end(im, rc);
	sqlite3_finalize(st);
	return err;
}

/* A follow-up's adverse events, when the follow-up was added now (else they are there). */
static int import_adverse(struct import *im, int64_t local, int64_t clinic)
{
	sqlite3_stmt *st;
	int rc, err = prepare(im, &st, "SELECT kind, holds FROM adverse_events"
			      " WHERE follow_up_id = ?1 ORDER BY id");

	if (err)
		return err;
	sqlite3_bind_int64(st, 1, local);
	while (!err && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct vals v = { 0 };

		v_i64(&v, clinic);
		v_col(&v, st, 0);
		v_str(&v, sqlite3_column_int64(st, 1) ? "true" : "false");
		err = pg(im, "import an adverse event",
			 "INSERT INTO smplaser.adverse_events (follow_up_id, kind, holds)"
			 " VALUES ($1, $2, $3)", &v, NULL);
		if (!err)
			im->res->clinical++;
	}
	if (!err)
		err = step_end(im, rc);
	sqlite3_finalize(st);
	return err;
}

static int import_follow_ups(struct import *im)
{
	sqlite3_stmt *st;
	int rc, err = prepare(im, &st, "SELECT id, patient, patch, time_ms, redness_resolved,"
			      " pigment_remaining_pct, note, operator_uid, operator_name"
			      " FROM follow_ups ORDER BY id");

	while (!err && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		int64_t local = sqlite3_column_int64(st, 0), id;
		struct vals v = { 0 };
		bool added;

		v_str(&v, im->cfg->workstation);
		for (int c = 1; c < 4; c++)
			v_col(&v, st, c);
		if (sqlite3_column_type(st, 4) == SQLITE_NULL)
			v_str(&v, NULL);
		else
			v_str(&v, sqlite3_column_int64(st, 4) ? "true" : "false");
		for (int c = 5; c < 9; c++)
			v_col(&v, st, c);
		v_str(&v, im->origin);
		v_i64(&v, local);
		err = upsert(im, "import a follow-up", "follow_ups",
			     "INSERT INTO smplaser.follow_ups (workstation, patient, patch, time_ms,"
			     "  redness_resolved, pigment_remaining_pct, note, operator_uid,"
			     "  operator_name, origin, origin_id) VALUES ($1, $2, $3, $4, $5, $6, $7,"
			     "  $8, $9, $10, $11) ON CONFLICT (origin, origin_id) DO NOTHING"
			     " RETURNING id", &v, local, &id, &added);
		if (!err)
			err = map_put(im, &im->follow_up_map, local, id);
		if (!err)
			count_row(im, added, &im->res->clinical);
		if (!err && added)
			err = import_adverse(im, local, id);
	}
	if (!err)
		err = step_end(im, rc);
	sqlite3_finalize(st);
	return err;
}

static int import_reviews(struct import *im)
{
	sqlite3_stmt *st;
	int rc, err = prepare(im, &st, "SELECT id, patient, patch, time_ms, cleared_through, note,"
			      " operator_uid, operator_name FROM hold_reviews ORDER BY id");

	while (!err && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		int64_t local = sqlite3_column_int64(st, 0), id;
		int64_t through = map_get(&im->follow_up_map, sqlite3_column_int64(st, 4));
		struct vals v = { 0 };
		bool added;

		if (!through) {
			err = fail(im, -EIO, "review %" PRId64 " names no follow-up", local);
			break;
		}
		v_str(&v, im->cfg->workstation);
		for (int c = 1; c < 4; c++)
			v_col(&v, st, c);
		v_i64(&v, through);
		for (int c = 5; c < 8; c++)
			v_col(&v, st, c);
		v_str(&v, im->origin);
		v_i64(&v, local);
		/* It clears this workstation's holds only (the clinic's PG_HOLD_ROWS). */
		err = upsert(im, "import a review", "hold_reviews",
			     "INSERT INTO smplaser.hold_reviews (workstation, patient, patch, time_ms,"
			     "  cleared_through, note, operator_uid, operator_name, origin, origin_id)"
			     " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
			     " ON CONFLICT (origin, origin_id) DO NOTHING RETURNING id",
			     &v, local, &id, &added);
		if (!err)
			count_row(im, added, &im->res->clinical);
	}
	if (!err)
		err = step_end(im, rc);
	sqlite3_finalize(st);
	return err;
}

static int import_clinical(struct import *im)
{
	int err;

	if (!has_clinical(im))
		return 0;	/* records older than SQLite's step 8: none */
	err = import_endpoints(im);
	if (!err)
		err = import_follow_ups(im);
	if (!err)
		err = import_reviews(im);
	return err;
}

/*
 * The patches an imported adverse event holds, not reviewed on the
 * workstation: their holds came along (the clinic's rules refuse them until
 * a review there); said on the report so that nobody is surprised.
 */
static void report_imported_holds(struct import *im)
{
	sqlite3_stmt *st = NULL;

	if (!im->report || !has_clinical(im) ||
	    sqlite3_prepare_v2(im->db, "SELECT DISTINCT f.patient, f.patch FROM adverse_events a"
			       " JOIN follow_ups f ON f.id = a.follow_up_id WHERE a.holds = 1"
			       " AND f.id > coalesce((SELECT max(cleared_through) FROM hold_reviews r"
			       "  WHERE r.patient = f.patient COLLATE NOCASE AND r.patch = f.patch), 0)"
			       " ORDER BY 1, 2", -1, &st, NULL) != SQLITE_OK) {
		sqlite3_finalize(st);
		return;
	}
	while (sqlite3_step(st) == SQLITE_ROW)
		fprintf(im->report, "hold: patient %s's %s is on hold (an adverse event not "
			"reviewed on this workstation); it is on hold on the clinic's records too, "
			"until ClearPatchHold\n", (const char *)sqlite3_column_text(st, 0),
			(const char *)sqlite3_column_text(st, 1));
	sqlite3_finalize(st);
}

int store_pg_import(const struct store_pg_config *cfg, const char *sqlite_state_dir,
		    FILE *report, struct store_pg_import_result *res, char *msg, size_t msg_len)
{
	struct import im = { .cfg = cfg, .report = report, .res = res };
	int64_t before = 0, after = 0;
	char summary[400];
	struct vals v = { 0 };
	int err;

	*res = (struct store_pg_import_result){ 0 };
	if (cfg->cooldown_ms <= 0) {
		snprintf(msg, msg_len, "no cooldown for the imported treatments");
		return -EINVAL;
	}
	/* The schema, checked or created as the daemon would. */
	err = store_pg_prepare(cfg, msg, msg_len);
	if (err < 0)
		return err;
	snprintf(im.origin, sizeof(im.origin), "sqlite:%s", cfg->workstation);
	err = open_sqlite(&im, sqlite_state_dir);
	if (!err) {
		im.pg = sym_PQconnectdb(cfg->conninfo);
		if (sym_PQstatus(im.pg) != CONNECTION_OK)
			err = fail(&im, -ENOTCONN, "cannot reach the clinic's records: %s",
				   sym_PQerrorMessage(im.pg));
	}
	if (!err)
		err = pg(&im, "begin", "BEGIN", NULL, NULL);
	if (!err)
		err = count_pulses(&im, &before);
	if (!err)
		err = import_units(&im);
	if (!err)
		err = import_sessions(&im);
	if (!err)
		err = import_treatments(&im);
	if (!err)
		err = count_pulses(&im, &after);
	if (!err) {
		res->pulses = (unsigned int)(after - before);
		err = import_counter_resets(&im);
	}
	if (!err)
		err = import_clinical(&im);
	if (!err)
		err = import_audit(&im);
	if (!err && (res->units || res->sessions || res->treatments || res->pulses ||
		     res->audit || res->clinical || im.new_conflicts)) {
		snprintf(summary, sizeof(summary), "imported from %s: %u units, %u sessions, "
			 "%u treatments, %u pulses, %u clinical records, %u audit records; "
			 "%u conflicts", sqlite_state_dir, res->units, res->sessions,
			 res->treatments, res->pulses, res->clinical, res->audit, res->conflicts);
		v_str(&v, cfg->workstation);
		v_i64(&v, (int64_t)time(NULL) * 1000);
		v_str(&v, summary);
		err = pg(&im, "record the import",
			 "INSERT INTO smplaser.audit (workstation, time_ms, kind, reason, detail)"
			 " VALUES ($1, $2, 'config-load', 'import', $3)", &v, NULL);
	}
	if (!err)
		err = pg(&im, "commit", "COMMIT", NULL, NULL);
	if (!err)
		report_imported_holds(&im);
	if (err) {
		snprintf(msg, msg_len, "%s", im.msg);
		*res = (struct store_pg_import_result){ 0 };	/* nothing was kept */
	}
	if (im.pg)
		sym_PQfinish(im.pg);
	sqlite3_close(im.db);
	free(im.session_map.v);
	free(im.treatment_map.v);
	free(im.follow_up_map.v);
	return err;
}
