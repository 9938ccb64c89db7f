/* SPDX-License-Identifier: MIT */
/*
 * What the store's files share (store.c, store-open.c, store-records.c,
 * store-chain.c, store-restore.c, store-copy.c, store-clinical.c): a struct
 * store, and store.c's helpers for its connection, error message, statements
 * and transactions.  Not an API: only the store's own files include it,
 * never the daemon.
 */
#ifndef SMPLASER_STORE_PRIVATE_H
#define SMPLASER_STORE_PRIVATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "store.h"

/*
 * The time a treatment counts for the cooldown (NULL: it emitted nothing):
 * it emitted unless the shot counter says 0, no pulse was recorded and the
 * unit was never seen emitting for it; an
 * open or unknown one (crash) at its arming time (DESIGN section 6) or at its
 * last recorded pulse if later, and so is a reconciled one; a closed one at
 * its disarm (or a late pulse after it).  (Comparisons, not "outcome IN (3
 * values)": SQLite builds a temporary table for such a list at every run of
 * the statement, which cost more than the rest of a CheckPatch.)
 */
#define EMISSION_EXPR \
	"(CASE WHEN pulse_count = 0 AND pulses_recorded = 0 AND emitting_ms IS NULL THEN NULL" \
	" WHEN outcome = 'completed' OR outcome = 'interrupted' OR outcome = 'fault'" \
	"  THEN max(end_ms, coalesce(last_pulse_ms, end_ms))" \
	" ELSE max(armed_ms, coalesce(last_pulse_ms, armed_ms)) END)"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

#define STORE_STMT_CACHE	96	/* more than the statements of the store's files */

/* A store: its connection, its pulses not yet written, its statements. */
struct store {
	sqlite3 *db;
	char *path;
	char msg[STORE_MSG_MAX];

	struct store_pulse *batch;
	size_t batch_len, batch_cap;
	int64_t known_treatment;	/* last id store_add_pulse() found */

	bool log_existed;		/* a -wal file was there before we opened */
	bool reader;			/* store_open_reader(): never writes */

	/* Every statement of fixed text, prepared once (see prepare()). */
	struct cached_stmt {
		const char *sql;	/* a string literal: its address is the key */
		sqlite3_stmt *stmt;
		bool busy;		/* in use (a callback may re-enter) */
	} cache[STORE_STMT_CACHE];
	size_t n_cached;
};

/* ---- store.c: the connection, as every file of the store uses it --------- */

/* The SQLite connection of @st. */
sqlite3 *store_db(struct store *st);
/* Sets store_errmsg(@st) (one line) and returns @err. */
int store_set_error(struct store *st, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* The same in SQLite's words about the last error on @st ("<path>: @what: ..."). */
int store_sql_error(struct store *st, int rc, const char *what);

/*
 * store.c's statement cache: the prepared statement for @sql, which must be
 * a string literal (its address is the key), prepared once per connection.
 * Give it back with store_release() (reset, or freed if it was a copy), never
 * sqlite3_finalize().  store_release(st, NULL) does nothing.
 */
int store_prepare(struct store *st, sqlite3_stmt **stmt, const char *sql);
void store_release(struct store *st, sqlite3_stmt *stmt);

/* SQLite's result code @rc as a negative errno (-EUCLEAN: corrupt, -ENOSPC: full, ...). */
int store_errno_of_sqlite(sqlite3 *db, int rc);
/* Run SQL without results; a failure's message says @what it was doing (store_exec: the SQL). */
int store_exec_as(struct store *st, const char *sql, const char *what);
int store_exec(struct store *st, const char *sql);
/* Step a statement that returns no rows (or ignores them). */
int store_step_done(struct store *st, sqlite3_stmt *stmt, const char *what);
/* A one-value query (a pragma, a count); *@is_null (may be NULL) if it was NULL. */
int store_query_int64(struct store *st, const char *sql, int64_t *value, bool *is_null);
void store_bind_text_or_null(sqlite3_stmt *stmt, int col, const char *s);
/* Free text (notes, audit reason and detail): kept, cut at STORE_TEXT_MAX. */
void store_bind_free_text(sqlite3_stmt *stmt, int col, const char *s);
/* A column's text, "" for NULL; or NULL for NULL. */
const char *store_column_text(sqlite3_stmt *stmt, int col);
const char *store_column_text_or_null(sqlite3_stmt *stmt, int col);
bool store_nonempty(const char *s);
/* Serials, patient ids, patches: present, not empty, at most STORE_NAME_MAX bytes. */
bool store_valid_name(const char *s);
/* Model, firmware, operator names: present, may be empty, at most STORE_NAME_MAX bytes. */
bool store_valid_label(const char *s);
/* The index of @name in @names[@n], or -1. */
int store_name_index(const char *const *names, size_t n, const char *name);
/* "2026-11-25T10:00:00Z" */
void store_format_utc(int64_t ms, char *buf, size_t len);

/* BEGIN IMMEDIATE / COMMIT / ROLLBACK keeping the first error; each returns 0 or errno. */
int store_tx_begin(struct store *st);
int store_tx_commit(struct store *st);
int store_tx_rollback(struct store *st, int err);
/* An audit record inside the caller's transaction. */
int store_tx_audit(struct store *st, const struct store_audit *a);

/*
 * The current counter epoch of the unit named by the SQL expression @u: the
 * counter resets of it accepted so far (schema v6, store.c).
 */
#define UNIT_EPOCH(u) \
	"(SELECT count(*) FROM counter_resets WHERE counter_resets.unit_serial = " u ")"

/*
 * Inside the arming transaction (store_treatment_begin): -ENOLINK, with
 * "records-missing: ..." in store_errmsg(), while the unit's counter has
 * shown shots beyond the records that nobody acknowledged (store-restore.h).
 */
int store_refuse_if_records_missing(struct store *st, const char *unit_serial);

/*
 * Also there, before the unit's unsettled treatments are settled from
 * @counter: -ENOLINK if the counter is ahead of everything the records hold
 * for the unit (what store_records_missing_check() would find and record:
 * the caller has it run).  A counter that moved while the unit was plugged in
 * and disarmed is found at its next arming, not only by a probe after an
 * unplug.
 */
int store_refuse_if_counter_ahead(struct store *st, const char *unit_serial, uint32_t counter);

/* store-clinical.c: schema step 8, and the patch's clinical facts for store_patch_facts(). */
extern const char store_clinical_schema[];
int store_clinical_facts(struct store *st, const char *patient, const char *patch,
			 struct store_patch_facts *out);

#endif /* SMPLASER_STORE_PRIVATE_H */
