// SPDX-License-Identifier: MIT
/*
 * smplaserd's durable treatment records (see store.h for the contract): a
 * store's connection, as every file of the store uses it.  Its error
 * message, the statement cache, transactions, the audit trail.  Opening and
 * the schema are store-open.c; units, sessions, pulses and treatments are
 * store-records.c; the chain, the clinical record and the counter's account
 * of missing shots are store-chain.c, store-clinical.c and store-restore.c.
 * Each calls down into this file, never the other way (store-private.h).
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

static const char *const audit_kind_names[STORE_AUDIT__COUNT] = {
	[STORE_AUDIT_ARM] = "arm",
	[STORE_AUDIT_DISARM] = "disarm",
	[STORE_AUDIT_FAULT] = "fault",
	[STORE_AUDIT_ACK_FAULT] = "ack-fault",
	[STORE_AUDIT_INTERLOCK] = "interlock",
	[STORE_AUDIT_CONFIG_LOAD] = "config-load",
	[STORE_AUDIT_CLOCK_ANOMALY] = "clock-anomaly",
	[STORE_AUDIT_REFUSED] = "refused",
	[STORE_AUDIT_SESSION] = "session",
	[STORE_AUDIT_RECONCILE] = "reconcile",
	[STORE_AUDIT_PATCH] = "patch",
	[STORE_AUDIT_EYEWEAR] = "eyewear",
	[STORE_AUDIT_PARAMETERS] = "parameters",
	[STORE_AUDIT_RECORDS] = "records",
	[STORE_AUDIT_ENDPOINT] = "endpoint",
	[STORE_AUDIT_FOLLOW_UP] = "follow-up",
	[STORE_AUDIT_HOLD] = "hold",
	[STORE_AUDIT_REVIEW] = "review",
};

const char *store_audit_kind_name(enum store_audit_kind k)
{
	return (unsigned)k < N_ELEMS(audit_kind_names) ? audit_kind_names[k] : "?";
}

int store_name_index(const char *const *names, size_t n, const char *name)
{
	for (size_t i = 0; name && i < n; i++)
		if (names[i] && strcmp(names[i], name) == 0)
			return (int)i;
	return -1;
}

/* ---- errors ------------------------------------------------------------ */

int store_errno_of_sqlite(sqlite3 *db, int rc)
{
	int sys;

	switch (rc & 0xff) {
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		return -EUCLEAN;
	case SQLITE_CANTOPEN:
		sys = db ? sqlite3_system_errno(db) : 0;
		return sys > 0 ? -sys : -EACCES;
	case SQLITE_PERM:
	case SQLITE_AUTH:
		return -EACCES;
	case SQLITE_READONLY:
		return -EROFS;
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return -EBUSY;
	case SQLITE_NOMEM:
		return -ENOMEM;
	case SQLITE_CONSTRAINT:
		return -EINVAL;
	case SQLITE_TOOBIG:
		return -E2BIG;
	case SQLITE_INTERRUPT:
		return -ECANCELED;
	default:
		return -EIO;
	}
}

/* Fail with SQLite's own words about the last error on st->db. */
int store_sql_error(struct store *st, int rc, const char *what)
{
	return store_set_error(st, store_errno_of_sqlite(st->db, rc), "%s: %s: %s", st->path, what,
		    sqlite3_errmsg(st->db));
}

/* ---- for the store's other files (store-private.h) ------------------------ */

sqlite3 *store_db(struct store *st)
{
	return st->db;
}

int store_set_error(struct store *st, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(st->msg, sizeof(st->msg), fmt, ap);
	va_end(ap);
	for (char *c = st->msg; (c = strchr(c, '\n')); )
		*c = ' ';
	return err;
}

const char *store_errmsg(const struct store *st)
{
	return st ? st->msg : "no store";
}

const char *store_path(const struct store *st)
{
	return st->path;
}

/* "2026-11-25T10:00:00Z" */
void store_format_utc(int64_t ms, char *buf, size_t len)
{
	time_t s = (time_t)(ms / 1000);
	struct tm tm;

	if (!gmtime_r(&s, &tm) || !strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(buf, len, "%lld ms", (long long)ms);
}

/* ---- small SQL helpers ------------------------------------------------- */

/*
 * The prepared statement for @sql, which must be a string literal (its
 * address is the cache key): prepared once and kept, since preparing costs
 * more than running most of the daemon's queries.  Give it back with
 * store_release().  A statement already in use (a callback that calls the store
 * again) gets a copy of its own, freed by store_release().
 */
int store_prepare(struct store *st, sqlite3_stmt **stmt, const char *sql)
{
	struct cached_stmt *c = NULL;
	int rc;

	for (size_t i = 0; i < st->n_cached && !c; i++)
		if (st->cache[i].sql == sql)
			c = &st->cache[i];
	if (c && !c->busy) {
		c->busy = true;
		*stmt = c->stmt;
		return 0;
	}
	if (!c && st->n_cached < STORE_STMT_CACHE) {
		rc = sqlite3_prepare_v3(st->db, sql, -1, SQLITE_PREPARE_PERSISTENT, stmt, NULL);
		if (rc != SQLITE_OK)
			return store_sql_error(st, rc, "prepare");
		st->cache[st->n_cached++] = (struct cached_stmt){ sql, *stmt, true };
		return 0;
	}
	rc = sqlite3_prepare_v2(st->db, sql, -1, stmt, NULL);
	return rc == SQLITE_OK ? 0 : store_sql_error(st, rc, "prepare");
}

/* Done with a statement of store_prepare(): reset (ending its read) or freed. */
void store_release(struct store *st, sqlite3_stmt *stmt)
{
	if (!stmt)
		return;
	for (size_t i = 0; i < st->n_cached; i++) {
		struct cached_stmt *c = &st->cache[i];

		if (c->stmt == stmt && c->busy) {
			sqlite3_reset(stmt);
			sqlite3_clear_bindings(stmt);
			c->busy = false;
			return;
		}
	}
	sqlite3_finalize(stmt);
}

/* Run SQL without results; a failure's message says what it was doing. */
int store_exec_as(struct store *st, const char *sql, const char *what)
{
	int rc = sqlite3_exec(st->db, sql, NULL, NULL, NULL);

	return rc == SQLITE_OK ? 0 : store_sql_error(st, rc, what);
}

/* A single short statement: it names itself. */
int store_exec(struct store *st, const char *sql)
{
	return store_exec_as(st, sql, sql);
}

/* Step a statement that returns no rows (or ignores them). */
int store_step_done(struct store *st, sqlite3_stmt *stmt, const char *what)
{
	int rc;

	do
		rc = sqlite3_step(stmt);
	while (rc == SQLITE_ROW);
	return rc == SQLITE_DONE ? 0 : store_sql_error(st, rc, what);
}

/* Run a one-value query (e.g. a pragma); *value NULL-safe as 0. */
int store_query_int64(struct store *st, const char *sql, int64_t *value, bool *is_null)
{
	sqlite3_stmt *stmt;
	int rc, err = store_prepare(st, &stmt, sql);

	if (err)
		return err;
	rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW) {
		if (is_null)
			*is_null = sqlite3_column_type(stmt, 0) == SQLITE_NULL;
		*value = sqlite3_column_int64(stmt, 0);
		err = 0;
	} else {
		err = rc == SQLITE_DONE ? store_set_error(st, -EIO, "%s: no result", sql) : store_sql_error(st, rc, sql);
	}
	store_release(st, stmt);
	return err;
}

void store_bind_text_or_null(sqlite3_stmt *stmt, int col, const char *s)
{
	if (s)
		sqlite3_bind_text(stmt, col, s, -1, SQLITE_TRANSIENT);
	else
		sqlite3_bind_null(stmt, col);
}

const char *store_column_text(sqlite3_stmt *stmt, int col)
{
	const unsigned char *s = sqlite3_column_text(stmt, col);

	return s ? (const char *)s : "";
}

const char *store_column_text_or_null(sqlite3_stmt *stmt, int col)
{
	return sqlite3_column_type(stmt, col) == SQLITE_NULL ? NULL : store_column_text(stmt, col);
}

int store_tx_begin(struct store *st)
{
	return store_exec(st, "BEGIN IMMEDIATE");
}

int store_tx_commit(struct store *st)
{
	return store_exec(st, "COMMIT");
}

/* Undo an unfinished transaction, keeping the first error's message. */
int store_tx_rollback(struct store *st, int err)
{
	char keep[STORE_MSG_MAX];

	if (!sqlite3_get_autocommit(st->db)) {
		memcpy(keep, st->msg, sizeof(keep));
		sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
		memcpy(st->msg, keep, sizeof(keep));
	}
	return err;
}

bool store_nonempty(const char *s)
{
	return s && *s;
}

/* Serials, patient ids, patches: present, not empty, not too long. */
bool store_valid_name(const char *s)
{
	return store_nonempty(s) && strnlen(s, STORE_NAME_MAX + 1) <= STORE_NAME_MAX;
}

/* Model, firmware, operator names: present, may be empty, not too long. */
bool store_valid_label(const char *s)
{
	return s && strnlen(s, STORE_NAME_MAX + 1) <= STORE_NAME_MAX;
}

/* Free text (notes, audit reason and detail): kept, cut at STORE_TEXT_MAX. */
void store_bind_free_text(sqlite3_stmt *stmt, int col, const char *s)
{
	if (s)
		sqlite3_bind_text(stmt, col, s, (int)strnlen(s, STORE_TEXT_MAX), SQLITE_TRANSIENT);
	else
		sqlite3_bind_null(stmt, col);
}

/* ---- audit ------------------------------------------------------------- */

static int insert_audit(struct store *st, const struct store_audit *a)
{
	sqlite3_stmt *stmt;
	int err;

	err = store_prepare(st, &stmt, "INSERT INTO audit (time_ms, kind, operator_uid, operator_name,"
		      " unit_serial, session_id, reason, detail)"
		      " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
	if (err)
		return err;
	sqlite3_bind_int64(stmt, 1, a->time_ms);
	sqlite3_bind_text(stmt, 2, audit_kind_names[a->kind], -1, SQLITE_STATIC);
	if (a->has_operator) {
		sqlite3_bind_int64(stmt, 3, a->op.uid);
		store_bind_text_or_null(stmt, 4, a->op.name);
	}
	store_bind_text_or_null(stmt, 5, a->unit_serial);
	if (a->session_id)
		sqlite3_bind_int64(stmt, 6, a->session_id);
	store_bind_free_text(stmt, 7, a->reason);
	store_bind_free_text(stmt, 8, a->detail);
	err = store_step_done(st, stmt, "record audit");
	store_release(st, stmt);
	return err;
}

int store_audit(struct store *st, const struct store_audit *a)
{
	if (!a || (unsigned)a->kind >= STORE_AUDIT__COUNT)
		return store_set_error(st, -EINVAL, "bad audit record");
	return insert_audit(st, a);	/* one statement: its own durable transaction */
}

int store_audit_once(struct store *st, const struct store_audit *a)
{
	sqlite3_stmt *stmt;
	int rc, err;

	if (!a || (unsigned)a->kind >= STORE_AUDIT__COUNT)
		return store_set_error(st, -EINVAL, "bad audit record");
	err = store_prepare(st, &stmt, "SELECT 1 FROM audit WHERE time_ms = ?1 AND kind = ?2"
		      " AND operator_uid IS ?3 AND unit_serial IS ?4 AND session_id IS ?5"
		      " AND reason IS ?6 AND detail IS ?7 LIMIT 1");
	if (err)
		return err;
	sqlite3_bind_int64(stmt, 1, a->time_ms);
	sqlite3_bind_text(stmt, 2, audit_kind_names[a->kind], -1, SQLITE_STATIC);
	if (a->has_operator)
		sqlite3_bind_int64(stmt, 3, a->op.uid);
	store_bind_text_or_null(stmt, 4, a->unit_serial);
	if (a->session_id)
		sqlite3_bind_int64(stmt, 5, a->session_id);
	store_bind_free_text(stmt, 6, a->reason);
	store_bind_free_text(stmt, 7, a->detail);
	rc = sqlite3_step(stmt);
	store_release(st, stmt);
	if (rc == SQLITE_ROW)
		return 1;
	if (rc != SQLITE_DONE)
		return store_sql_error(st, rc, "look for an audit record");
	return insert_audit(st, a);
}

int store_audit_list(struct store *st, int64_t since_ms, store_audit_cb cb, void *ctx)
{
	sqlite3_stmt *stmt;
	int rc, n = 0, err, kind;

	err = store_prepare(st, &stmt, "SELECT id, time_ms, kind, operator_uid, operator_name,"
		      " unit_serial, coalesce(session_id, 0), reason, detail FROM audit"
		      " WHERE time_ms >= ?1 ORDER BY time_ms, id");
	if (err)
		return err;
	sqlite3_bind_int64(stmt, 1, since_ms);
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		kind = store_name_index(audit_kind_names, N_ELEMS(audit_kind_names), store_column_text(stmt, 2));
		struct store_audit a = {
			.time_ms = sqlite3_column_int64(stmt, 1),
			.kind = kind < 0 ? STORE_AUDIT__COUNT : (enum store_audit_kind)kind,
			.has_operator = sqlite3_column_type(stmt, 3) != SQLITE_NULL,
			.op = { (uint32_t)sqlite3_column_int64(stmt, 3), store_column_text_or_null(stmt, 4) },
			.unit_serial = store_column_text_or_null(stmt, 5),
			.session_id = sqlite3_column_int64(stmt, 6),
			.reason = store_column_text_or_null(stmt, 7),
			.detail = store_column_text_or_null(stmt, 8),
		};
		n++;
		if (cb(sqlite3_column_int64(stmt, 0), &a, ctx))
			break;
	}
	err = (rc == SQLITE_ROW || rc == SQLITE_DONE) ? n : store_sql_error(st, rc, "read audit");
	store_release(st, stmt);
	return err;
}

/* ---- transactions for the store's other files (store-private.h) -------- */

int store_tx_audit(struct store *st, const struct store_audit *a)
{
	if (!a || (unsigned)a->kind >= STORE_AUDIT__COUNT)
		return store_set_error(st, -EINVAL, "bad audit record");
	return insert_audit(st, a);
}

/* ---- testing ----------------------------------------------------------- */

int store_query_plans(struct store *st, store_plan_cb cb, void *ctx)
{
	int n = 0;

	for (size_t i = 0; i < st->n_cached; i++) {
		const char *sql = st->cache[i].sql;
		sqlite3_stmt *stmt;
		char *explain;
		int rc;

		if (strncmp(sql, "PRAGMA", 6) == 0)
			continue;
		if (asprintf(&explain, "EXPLAIN QUERY PLAN %s", sql) < 0)
			return store_set_error(st, -ENOMEM, "out of memory");
		rc = sqlite3_prepare_v2(st->db, explain, -1, &stmt, NULL);
		free(explain);
		if (rc != SQLITE_OK)
			return store_sql_error(st, rc, "explain");
		n++;
		while ((rc = sqlite3_step(stmt)) == SQLITE_ROW)
			if (cb(sql, store_column_text(stmt, 3), ctx))
				break;
		sqlite3_finalize(stmt);
		if (rc != SQLITE_ROW && rc != SQLITE_DONE)
			return store_sql_error(st, rc, "explain");
	}
	return n;
}

int store_query_steps(struct store *st, bool reset, store_steps_cb cb, void *ctx)
{
	for (size_t i = 0; i < st->n_cached; i++) {
		sqlite3_stmt *stmt = st->cache[i].stmt;
		int steps = sqlite3_stmt_status(stmt, SQLITE_STMTSTATUS_VM_STEP, reset);

		if (cb && cb(st->cache[i].sql, (uint64_t)steps, ctx))
			break;
	}
	return (int)st->n_cached;
}

