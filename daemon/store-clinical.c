// SPDX-License-Identifier: MIT
/*
 * The clinical record in the SQLite store: see store-clinical.h.
 *
 * Schema step 8.  It needs only schema 1's sessions and treatments (its
 * REFERENCES) and step 5's chain (record_chain_append: its rows are chained
 * like audit and treatments, store-chain.c), creates only its own tables,
 * indexes and triggers and alters no earlier table.  Its audit records go
 * through insert_audit() like every other.
 * What is SQLite's own here, for the PostgreSQL backend
 * (docs/clinical.md): STRICT tables (PostgreSQL types its columns anyway),
 * COLLATE NOCASE on patient ids (lower() or citext there), the triggers'
 * RAISE (a plpgsql function there), group_concat (string_agg), and
 * "INTEGER PRIMARY KEY" as the row id (bigserial or an identity column).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store-chain.h"
#include "store-private.h"

#define HOLDING_KINDS \
	"'follicle-damage', 'hair-loss', 'blistering', 'scarring', 'infection'"
#define ADVERSE_KINDS HOLDING_KINDS \
	", 'hypopigmentation', 'hyperpigmentation', 'other'"

const char store_clinical_schema[] =
	"CREATE TABLE endpoints ("
	"  id INTEGER PRIMARY KEY,"
	"  session_id INTEGER NOT NULL REFERENCES sessions(id),"
	"  treatment_id INTEGER NOT NULL REFERENCES treatments(id),"
	"  patient TEXT NOT NULL CHECK (length(patient) > 0),"
	"  patch TEXT NOT NULL CHECK (length(patch) > 0),"
	"  endpoint TEXT NOT NULL"
	"    CHECK (endpoint IN ('whitening', 'partial-whitening', 'no-whitening')),"
	"  note TEXT,"
	"  time_ms INTEGER NOT NULL,"
	"  operator_uid INTEGER NOT NULL,"
	"  operator_name TEXT NOT NULL"
	") STRICT;"
	"CREATE INDEX endpoints_by_patient ON endpoints(patient COLLATE NOCASE, patch);"
	"CREATE INDEX endpoints_by_session ON endpoints(session_id, patch);"
	/* The foreign keys' children, searched when a parent row is written. */
	"CREATE INDEX endpoints_by_treatment ON endpoints(treatment_id);"
	"CREATE TABLE follow_ups ("
	"  id INTEGER PRIMARY KEY,"
	"  patient TEXT NOT NULL CHECK (length(patient) > 0),"
	"  patch TEXT NOT NULL CHECK (length(patch) > 0),"
	"  time_ms INTEGER NOT NULL,"
	"  redness_resolved INTEGER CHECK (redness_resolved IN (0, 1)),"
	"  pigment_remaining_pct INTEGER"
	"    CHECK (pigment_remaining_pct BETWEEN 0 AND 100),"
	"  note TEXT,"
	"  operator_uid INTEGER NOT NULL,"
	"  operator_name TEXT NOT NULL"
	") STRICT;"
	"CREATE INDEX follow_ups_by_patch ON follow_ups(patient COLLATE NOCASE, patch);"
	"CREATE TABLE adverse_events ("
	"  id INTEGER PRIMARY KEY,"
	"  follow_up_id INTEGER NOT NULL REFERENCES follow_ups(id),"
	"  kind TEXT NOT NULL CHECK (kind IN (" ADVERSE_KINDS ")),"
	"  holds INTEGER NOT NULL"
	"    CHECK (holds IN (0, 1) AND holds = (kind IN (" HOLDING_KINDS "))),"
	"  UNIQUE (follow_up_id, kind)"
	") STRICT;"
	"CREATE TABLE hold_reviews ("
	"  id INTEGER PRIMARY KEY,"
	"  patient TEXT NOT NULL CHECK (length(patient) > 0),"
	"  patch TEXT NOT NULL CHECK (length(patch) > 0),"
	"  time_ms INTEGER NOT NULL,"
	"  cleared_through INTEGER NOT NULL REFERENCES follow_ups(id),"
	"  note TEXT,"
	"  operator_uid INTEGER NOT NULL,"
	"  operator_name TEXT NOT NULL"
	") STRICT;"
	"CREATE INDEX hold_reviews_by_patch ON hold_reviews(patient COLLATE NOCASE, patch);"
	"CREATE INDEX hold_reviews_by_follow_up ON hold_reviews(cleared_through);"
	/* Records: never deleted, never changed. */
	"CREATE TRIGGER endpoints_keep BEFORE DELETE ON endpoints"
	"  BEGIN SELECT RAISE(ABORT, 'records are never deleted'); END;"
	"CREATE TRIGGER endpoints_fixed BEFORE UPDATE ON endpoints"
	"  BEGIN SELECT RAISE(ABORT, 'records are never changed'); END;"
	"CREATE TRIGGER follow_ups_keep BEFORE DELETE ON follow_ups"
	"  BEGIN SELECT RAISE(ABORT, 'records are never deleted'); END;"
	"CREATE TRIGGER follow_ups_fixed BEFORE UPDATE ON follow_ups"
	"  BEGIN SELECT RAISE(ABORT, 'records are never changed'); END;"
	"CREATE TRIGGER adverse_events_keep BEFORE DELETE ON adverse_events"
	"  BEGIN SELECT RAISE(ABORT, 'records are never deleted'); END;"
	"CREATE TRIGGER adverse_events_fixed BEFORE UPDATE ON adverse_events"
	"  BEGIN SELECT RAISE(ABORT, 'records are never changed'); END;"
	"CREATE TRIGGER hold_reviews_keep BEFORE DELETE ON hold_reviews"
	"  BEGIN SELECT RAISE(ABORT, 'records are never deleted'); END;"
	"CREATE TRIGGER hold_reviews_fixed BEFORE UPDATE ON hold_reviews"
	"  BEGIN SELECT RAISE(ABORT, 'records are never changed'); END;"
	/* Chained like audit rows (store-chain.h, docs/records-chain.md): each row once. */
	STORE_CHAIN_INSERT_TRIGGER("endpoints", STORE_CHAIN_ENDPOINT_COLUMNS)
	STORE_CHAIN_INSERT_TRIGGER("follow_ups", STORE_CHAIN_FOLLOW_UP_COLUMNS)
	STORE_CHAIN_INSERT_TRIGGER("adverse_events", STORE_CHAIN_ADVERSE_COLUMNS)
	STORE_CHAIN_INSERT_TRIGGER("hold_reviews", STORE_CHAIN_REVIEW_COLUMNS);

/* ---- helpers ------------------------------------------------------------------- */

/* store.c's statement cache: @sql a string literal; given back with store_release(). */
static int prepare(struct store *st, sqlite3_stmt **stmt, const char *sql)
{
	return store_prepare(st, stmt, sql);
}

static int step_done(struct store *st, sqlite3_stmt *stmt, const char *what)
{
	int rc;

	do
		rc = sqlite3_step(stmt);
	while (rc == SQLITE_ROW);
	return rc == SQLITE_DONE ? 0 : store_sql_error(st, rc, what);
}

static void bind_text(sqlite3_stmt *stmt, int col, const char *s)
{
	sqlite3_bind_text(stmt, col, s, -1, SQLITE_TRANSIENT);
}

/* Notes are kept, cut at STORE_TEXT_MAX; "" is none. */
static void bind_note(sqlite3_stmt *stmt, int col, const char *s)
{
	if (s && *s)
		sqlite3_bind_text(stmt, col, s, (int)strnlen(s, STORE_TEXT_MAX), SQLITE_TRANSIENT);
	else
		sqlite3_bind_null(stmt, col);
}

static const char *col_text(sqlite3_stmt *stmt, int col)
{
	const unsigned char *s = sqlite3_column_text(stmt, col);

	return s ? (const char *)s : "";
}

static bool valid_name(const char *s)
{
	return s && *s && strnlen(s, STORE_NAME_MAX + 1) <= STORE_NAME_MAX;
}

static bool valid_operator(const struct store_operator *op)
{
	return op && op->name && strnlen(op->name, STORE_NAME_MAX + 1) <= STORE_NAME_MAX;
}

static int64_t last_rowid(struct store *st)
{
	return sqlite3_last_insert_rowid(store_db(st));
}

/* Commit, or undo and keep the first error. */
static int finish(struct store *st, int err)
{
	if (!err)
		err = store_tx_commit(st);
	return err ? store_tx_rollback(st, err) : 0;
}

static int audit(struct store *st, enum store_audit_kind kind, const struct store_operator *op,
		 int64_t session_id, int64_t time_ms, const char *reason, const char *detail)
{
	struct store_audit a = {
		.time_ms = time_ms, .kind = kind, .has_operator = true, .op = *op,
		.session_id = session_id, .reason = reason, .detail = detail,
	};

	return store_tx_audit(st, &a);
}

/* ---- endpoints ------------------------------------------------------------------ */

/* Inside the transaction: the open session's patient, and its last treatment of @patch that emitted. */
static int endpoint_target(struct store *st, const struct store_endpoint_in *e, char **patient,
			   int64_t *treatment)
{
	sqlite3_stmt *stmt;
	int rc, err;

	err = prepare(st, &stmt, "SELECT patient, state FROM sessions WHERE id = ?1");
	if (err)
		return err;
	sqlite3_bind_int64(stmt, 1, e->session_id);
	rc = sqlite3_step(stmt);
	if (rc == SQLITE_DONE)
		err = store_set_error(st, -ENOENT, "no session %lld", (long long)e->session_id);
	else if (rc != SQLITE_ROW)
		err = store_sql_error(st, rc, "read session");
	else if (strcmp(col_text(stmt, 1), "open") != 0)
		err = store_set_error(st, -ESTALE, "session %lld is %s, not open",
				      (long long)e->session_id, col_text(stmt, 1));
	else if (!(*patient = strdup(col_text(stmt, 0))))
		err = store_set_error(st, -ENOMEM, "out of memory");
	store_release(st, stmt);
	if (err)
		return err;

	err = prepare(st, &stmt, "SELECT max(id) FROM treatments WHERE session_id = ?1"
		      " AND patch = ?2 AND " EMISSION_EXPR " IS NOT NULL");
	if (err)
		return err;
	sqlite3_bind_int64(stmt, 1, e->session_id);
	bind_text(stmt, 2, e->patch);
	rc = sqlite3_step(stmt);
	if (rc != SQLITE_ROW)
		err = store_sql_error(st, rc, "find the patch's treatment");
	else if (sqlite3_column_type(stmt, 0) == SQLITE_NULL)
		err = store_set_error(st, -ENOENT, "%s emitted nothing in session %lld: no "
				      "endpoint to record", e->patch, (long long)e->session_id);
	else
		*treatment = sqlite3_column_int64(stmt, 0);
	store_release(st, stmt);
	return err;
}

int store_endpoint_add(struct store *st, const struct store_endpoint_in *e,
		       const struct store_operator *op, int64_t *id)
{
	sqlite3_stmt *stmt = NULL;
	char *patient = NULL, detail[160];
	int64_t treatment = 0;
	int err;

	if (!e || !id || !valid_name(e->patch) || !e->endpoint || !valid_operator(op))
		return store_set_error(st, -EINVAL, "an endpoint needs a session, a patch, the "
				       "endpoint and an operator");
	err = store_tx_begin(st);
	if (err)
		return err;
	err = endpoint_target(st, e, &patient, &treatment);
	if (!err)
		err = prepare(st, &stmt, "INSERT INTO endpoints (session_id, treatment_id, patient,"
			      " patch, endpoint, note, time_ms, operator_uid, operator_name)"
			      " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)");
	if (!err) {
		sqlite3_bind_int64(stmt, 1, e->session_id);
		sqlite3_bind_int64(stmt, 2, treatment);
		bind_text(stmt, 3, patient);
		bind_text(stmt, 4, e->patch);
		bind_text(stmt, 5, e->endpoint);
		bind_note(stmt, 6, e->note);
		sqlite3_bind_int64(stmt, 7, e->time_ms);
		sqlite3_bind_int64(stmt, 8, op->uid);
		bind_text(stmt, 9, op->name);
		err = step_done(st, stmt, "record the endpoint");
		if (err == -EINVAL)
			err = store_set_error(st, -EINVAL, "endpoint \"%s\" is not one of whitening, "
					      "partial-whitening, no-whitening", e->endpoint);
	}
	store_release(st, stmt);
	if (!err) {
		*id = last_rowid(st);
		snprintf(detail, sizeof(detail), "%s: %s (treatment %lld)", e->patch, e->endpoint,
			 (long long)treatment);
		err = audit(st, STORE_AUDIT_ENDPOINT, op, e->session_id, e->time_ms, e->endpoint,
			    detail);
	}
	free(patient);
	return finish(st, err);
}

/* ---- follow-ups ------------------------------------------------------------------ */

static int insert_follow_up(struct store *st, const struct store_follow_up_in *f,
			    const struct store_operator *op)
{
	sqlite3_stmt *stmt;
	int err;

	err = prepare(st, &stmt, "INSERT INTO follow_ups (patient, patch, time_ms,"
		      " redness_resolved, pigment_remaining_pct, note, operator_uid, operator_name)"
		      " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
	if (err)
		return err;
	bind_text(stmt, 1, f->patient);
	bind_text(stmt, 2, f->patch);
	sqlite3_bind_int64(stmt, 3, f->time_ms);
	if (f->has_redness)
		sqlite3_bind_int(stmt, 4, f->redness_resolved);
	if (f->has_pigment)
		sqlite3_bind_int64(stmt, 5, f->pigment_pct);
	bind_note(stmt, 6, f->note);
	sqlite3_bind_int64(stmt, 7, op->uid);
	bind_text(stmt, 8, op->name);
	err = step_done(st, stmt, "record the follow-up");
	store_release(st, stmt);
	return err;
}

static int insert_adverse(struct store *st, int64_t follow_up, const char *kind, bool holds)
{
	sqlite3_stmt *stmt;
	int err;

	err = prepare(st, &stmt, "INSERT INTO adverse_events (follow_up_id, kind, holds)"
		      " VALUES (?1, ?2, ?3)");
	if (err)
		return err;
	sqlite3_bind_int64(stmt, 1, follow_up);
	bind_text(stmt, 2, kind);
	sqlite3_bind_int(stmt, 3, holds);
	err = step_done(st, stmt, "record an adverse event");
	store_release(st, stmt);
	if (err == -EINVAL)
		err = store_set_error(st, -EINVAL, "adverse event \"%s\" (holds %d) is not one the "
				      "records know, or is given twice", kind, holds);
	return err;
}

/* "crown: 20% pigment remaining, redness resolved, adverse follicle-damage" */
static void follow_up_detail(const struct store_follow_up_in *f, char *buf, size_t len)
{
	size_t at = (size_t)snprintf(buf, len, "%s:", f->patch);

	if (f->has_pigment && at < len)
		at += (size_t)snprintf(buf + at, len - at, " %u%% pigment remaining;",
				       f->pigment_pct);
	if (f->has_redness && at < len)
		at += (size_t)snprintf(buf + at, len - at, " redness %s;",
				       f->redness_resolved ? "resolved" : "not resolved");
	for (unsigned int i = 0; i < f->n_adverse && at < len; i++)
		at += (size_t)snprintf(buf + at, len - at, " %s%s", i ? "" : "adverse ",
				       f->adverse[i]);
}

int store_follow_up_add(struct store *st, const struct store_follow_up_in *f,
			const struct store_operator *op, int64_t *id)
{
	char detail[256], holding[128] = "";
	size_t at = 0;
	int err;

	if (!f || !id || !valid_name(f->patient) || !valid_name(f->patch) ||
	    f->n_adverse > STORE_ADVERSE_MAX || !valid_operator(op) ||
	    (f->has_pigment && f->pigment_pct > 100))
		return store_set_error(st, -EINVAL, "a follow-up needs a patient, a patch, "
				       "findings (pigment 0-100%%) and an operator");
	err = store_tx_begin(st);
	if (err)
		return err;
	err = insert_follow_up(st, f, op);
	if (!err)
		*id = last_rowid(st);
	for (unsigned int i = 0; !err && i < f->n_adverse; i++) {
		err = insert_adverse(st, *id, f->adverse[i], f->holds[i]);
		if (!err && f->holds[i] && at < sizeof(holding))
			at += (size_t)snprintf(holding + at, sizeof(holding) - at, "%s%s",
					       at ? ", " : "", f->adverse[i]);
	}
	if (!err) {
		follow_up_detail(f, detail, sizeof(detail));
		err = audit(st, STORE_AUDIT_FOLLOW_UP, op, 0, f->time_ms, f->patient, detail);
	}
	if (!err && holding[0]) {
		snprintf(detail, sizeof(detail), "%s of %s held for %s (follow-up %lld)", f->patch,
			 f->patient, holding, (long long)*id);
		err = audit(st, STORE_AUDIT_HOLD, op, 0, f->time_ms, f->patient, detail);
	}
	return finish(st, err);
}

/* ---- holds ----------------------------------------------------------------------- */

/* The patch's holds since its last review: the newest holding follow-up (0 none), the first's time. */
#define HOLD_QUERY \
	"SELECT max(f.id), min(f.time_ms), group_concat(DISTINCT a.kind)" \
	" FROM adverse_events a JOIN follow_ups f ON f.id = a.follow_up_id" \
	" WHERE f.patient = ?1 COLLATE NOCASE AND f.patch = ?2 AND a.holds = 1" \
	"  AND f.id > coalesce((SELECT max(cleared_through) FROM hold_reviews" \
	"   WHERE patient = ?1 COLLATE NOCASE AND patch = ?2), 0)"

struct hold {
	int64_t through;		/* 0: no hold */
	int64_t since_ms;
	char events[96];
};

/* "a,b" from SQLite into "a, b". */
static void comma_list(const char *in, char *out, size_t len)
{
	size_t at = 0;

	for (; *in && at + 3 < len; in++) {
		out[at++] = *in;
		if (*in == ',')
			out[at++] = ' ';
	}
	out[at] = '\0';
}

static int read_hold(struct store *st, const char *patient, const char *patch, struct hold *h)
{
	sqlite3_stmt *stmt;
	int rc, err;

	*h = (struct hold){ 0 };
	err = prepare(st, &stmt, HOLD_QUERY);
	if (err)
		return err;
	bind_text(stmt, 1, patient);
	bind_text(stmt, 2, patch);
	rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW && sqlite3_column_type(stmt, 0) != SQLITE_NULL) {
		h->through = sqlite3_column_int64(stmt, 0);
		h->since_ms = sqlite3_column_int64(stmt, 1);
		comma_list(col_text(stmt, 2), h->events, sizeof(h->events));
	} else if (rc != SQLITE_ROW) {
		err = store_sql_error(st, rc, "read the patch's hold");
	}
	store_release(st, stmt);
	return err;
}

int store_hold_clear(struct store *st, const char *patient, const char *patch,
		     const char *note, const struct store_operator *op, int64_t time_ms,
		     int64_t *id)
{
	sqlite3_stmt *stmt = NULL;
	struct hold h;
	char detail[256];
	int err;

	if (!valid_name(patient) || !valid_name(patch) || !valid_operator(op) || !id)
		return store_set_error(st, -EINVAL, "a review needs a patient, a patch and an "
				       "operator");
	err = store_tx_begin(st);
	if (err)
		return err;
	err = read_hold(st, patient, patch, &h);
	if (!err && !h.through)
		err = store_set_error(st, -ENOENT, "%s of patient %s is not on hold", patch,
				      patient);
	if (!err)
		err = prepare(st, &stmt, "INSERT INTO hold_reviews (patient, patch, time_ms,"
			      " cleared_through, note, operator_uid, operator_name)"
			      " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)");
	if (!err) {
		bind_text(stmt, 1, patient);
		bind_text(stmt, 2, patch);
		sqlite3_bind_int64(stmt, 3, time_ms);
		sqlite3_bind_int64(stmt, 4, h.through);
		bind_note(stmt, 5, note);
		sqlite3_bind_int64(stmt, 6, op->uid);
		bind_text(stmt, 7, op->name);
		err = step_done(st, stmt, "record the review");
	}
	store_release(st, stmt);
	if (!err) {
		*id = last_rowid(st);
		snprintf(detail, sizeof(detail), "%s of %s: hold for %s cleared (through follow-up "
			 "%lld)%s%s", patch, patient, h.events, (long long)h.through,
			 note && *note ? ": " : "", note && *note ? note : "");
		err = audit(st, STORE_AUDIT_REVIEW, op, 0, time_ms, patient, detail);
	}
	return finish(st, err);
}

/* ---- facts for the rules ------------------------------------------------------------ */

int store_clinical_facts(struct store *st, const char *patient, const char *patch,
			 struct store_patch_facts *out)
{
	sqlite3_stmt *stmt;
	struct hold h;
	int rc, err;

	err = read_hold(st, patient, patch, &h);
	if (err)
		return err;
	out->on_hold = h.through != 0;
	out->hold_since_ms = h.since_ms;
	snprintf(out->hold_events, sizeof(out->hold_events), "%s", h.events);

	/* The last pigment finding, in the order the follow-ups were recorded. */
	err = prepare(st, &stmt, "SELECT pigment_remaining_pct, time_ms FROM follow_ups"
		      " WHERE patient = ?1 COLLATE NOCASE AND patch = ?2"
		      "  AND pigment_remaining_pct IS NOT NULL ORDER BY id DESC LIMIT 1");
	if (err)
		return err;
	bind_text(stmt, 1, patient);
	bind_text(stmt, 2, patch);
	rc = sqlite3_step(stmt);
	out->pigment_assessed = rc == SQLITE_ROW;
	if (rc == SQLITE_ROW) {
		out->pigment_pct = (uint32_t)sqlite3_column_int64(stmt, 0);
		out->pigment_ms = sqlite3_column_int64(stmt, 1);
	} else if (rc != SQLITE_DONE) {
		err = store_sql_error(st, rc, "read the patch's follow-ups");
	}
	store_release(st, stmt);
	return err;
}

/* ---- reading back ---------------------------------------------------------------- */

/* The caller's callback, whichever kind of row it takes. */
struct visitor {
	store_endpoint_cb endpoint;
	store_follow_up_cb follow_up;
	store_review_cb review;
	void *ctx;
};

/* Run @stmt (?1 bound to @patient) and hand each row to @row; how many rows. */
static int visit(struct store *st, sqlite3_stmt *stmt, const char *patient,
		 int (*row)(sqlite3_stmt *stmt, const struct visitor *v),
		 const struct visitor *v, const char *what)
{
	int rc, n = 0;

	bind_text(stmt, 1, patient);
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		n++;
		if (row(stmt, v))
			break;
	}
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		n = store_sql_error(st, rc, what);
	store_release(st, stmt);
	return n;
}

static int endpoint_row(sqlite3_stmt *s, const struct visitor *v)
{
	struct store_endpoint e = {
		.id = sqlite3_column_int64(s, 0),
		.session_id = sqlite3_column_int64(s, 1),
		.treatment_id = sqlite3_column_int64(s, 2),
		.patch = col_text(s, 3),
		.endpoint = col_text(s, 4),
		.note = col_text(s, 5),
		.time_ms = sqlite3_column_int64(s, 6),
		.operator_uid = (uint32_t)sqlite3_column_int64(s, 7),
		.operator_name = col_text(s, 8),
	};

	return v->endpoint(&e, v->ctx);
}

int store_patient_endpoints(struct store *st, const char *patient, store_endpoint_cb cb,
			    void *ctx)
{
	sqlite3_stmt *stmt;
	int err = prepare(st, &stmt, "SELECT id, session_id, treatment_id, patch, endpoint,"
			  " coalesce(note, ''), time_ms, operator_uid, operator_name FROM endpoints"
			  " WHERE patient = ?1 COLLATE NOCASE ORDER BY id");

	const struct visitor v = { .endpoint = cb, .ctx = ctx };

	return err ? err : visit(st, stmt, patient, endpoint_row, &v, "read endpoints");
}

static int follow_up_row(sqlite3_stmt *s, const struct visitor *v)
{
	struct store_follow_up f = {
		.id = sqlite3_column_int64(s, 0),
		.patch = col_text(s, 1),
		.time_ms = sqlite3_column_int64(s, 2),
		.has_redness = sqlite3_column_type(s, 3) != SQLITE_NULL,
		.redness_resolved = sqlite3_column_int64(s, 3) != 0,
		.has_pigment = sqlite3_column_type(s, 4) != SQLITE_NULL,
		.pigment_pct = (uint32_t)sqlite3_column_int64(s, 4),
		.note = col_text(s, 5),
		.operator_uid = (uint32_t)sqlite3_column_int64(s, 6),
		.operator_name = col_text(s, 7),
		.adverse = col_text(s, 8),
		.holding = col_text(s, 9),
	};

	return v->follow_up(&f, v->ctx);
}

int store_patient_follow_ups(struct store *st, const char *patient, store_follow_up_cb cb,
			     void *ctx)
{
	sqlite3_stmt *stmt;
	int err = prepare(st, &stmt,
			  "SELECT f.id, f.patch, f.time_ms, f.redness_resolved,"
			  " f.pigment_remaining_pct, coalesce(f.note, ''), f.operator_uid,"
			  " f.operator_name,"
			  " coalesce((SELECT group_concat(kind) FROM (SELECT kind FROM adverse_events"
			  "  WHERE follow_up_id = f.id ORDER BY id)), ''),"
			  " coalesce((SELECT group_concat(kind) FROM (SELECT kind FROM adverse_events"
			  "  WHERE follow_up_id = f.id AND holds = 1 ORDER BY id)), '')"
			  " FROM follow_ups f WHERE f.patient = ?1 COLLATE NOCASE ORDER BY f.id");

	const struct visitor v = { .follow_up = cb, .ctx = ctx };

	return err ? err : visit(st, stmt, patient, follow_up_row, &v, "read follow-ups");
}

static int review_row(sqlite3_stmt *s, const struct visitor *v)
{
	struct store_review r = {
		.id = sqlite3_column_int64(s, 0),
		.patch = col_text(s, 1),
		.time_ms = sqlite3_column_int64(s, 2),
		.cleared_through = sqlite3_column_int64(s, 3),
		.note = col_text(s, 4),
		.operator_uid = (uint32_t)sqlite3_column_int64(s, 5),
		.operator_name = col_text(s, 6),
	};

	return v->review(&r, v->ctx);
}

int store_patient_reviews(struct store *st, const char *patient, store_review_cb cb,
			  void *ctx)
{
	sqlite3_stmt *stmt;
	int err = prepare(st, &stmt, "SELECT id, patch, time_ms, cleared_through,"
			  " coalesce(note, ''), operator_uid, operator_name FROM hold_reviews"
			  " WHERE patient = ?1 COLLATE NOCASE ORDER BY id");

	const struct visitor v = { .review = cb, .ctx = ctx };

	return err ? err : visit(st, stmt, patient, review_row, &v, "read reviews");
}
