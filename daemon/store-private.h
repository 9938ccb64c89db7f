/* SPDX-License-Identifier: MIT */
/*
 * store.c's helpers for the store's other files (store-chain.c,
 * store-restore.c, store-copy.c, store-clinical.c): the connection of a
 * struct store, its error message, its transactions.  Not an API: only the
 * store's own files include it, never the daemon.
 */
#ifndef SMPLASER_STORE_PRIVATE_H
#define SMPLASER_STORE_PRIVATE_H

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
