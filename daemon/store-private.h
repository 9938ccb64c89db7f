/* SPDX-License-Identifier: MIT */
/*
 * For the store's other files (store-chain.c, store-restore.c, store-copy.c):
 * the connection of a struct store and its error message.  Not for the daemon.
 */
#ifndef SMPLASER_STORE_PRIVATE_H
#define SMPLASER_STORE_PRIVATE_H

#include <sqlite3.h>

#include "store.h"

/* The SQLite connection of @st. */
sqlite3 *store_db(struct store *st);
/* Sets store_errmsg(@st) (one line) and returns @err. */
int store_set_error(struct store *st, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* The same in SQLite's words about the last error on @st ("<path>: @what: ..."). */
int store_sql_error(struct store *st, int rc, const char *what);

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

#endif /* SMPLASER_STORE_PRIVATE_H */
