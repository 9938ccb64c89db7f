// SPDX-License-Identifier: MIT
/*
 * smplaserd's durable treatment records: see store.h for the contract.
 *
 * The schema is a list of migration steps below; step N brings a database
 * from user_version N-1 to N.  Records are never deleted (triggers refuse it)
 * and a closed treatment's facts never change; only its pulse summary grows
 * when a late pulse report arrives.
 */
#include "store.h"
#include "store-chain.h"
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

#define STORE_APPLICATION_ID	0x534d504c	/* "SMPL" */
#define STORE_BUSY_TIMEOUT_MS	250
#define STORE_STMT_CACHE	96	/* more than the statements of store.c and store-clinical.c */
/*
 * Each connection's page cache, in KiB: bounded, so that ten years of records
 * do not grow the daemon (issue 12: 6 MiB RSS with 1M treatments).  The
 * daemon's queries each touch a few pages of an index; the kernel's page
 * cache keeps the rest.  No mmap (its pages would count in the RSS).
 */
#define STORE_CACHE_KIB		512
/*
 * The -wal and -shm outlive the writer: a daemon stopped cleanly starts again
 * on a disk that filled meanwhile (SQLite cannot create a -shm on a full disk,
 * and reading needs it).  journal_size_limit makes the clean close truncate
 * the log to zero bytes (no stale frames beside a restored copy), and bounds
 * what a checkpoint leaves of it.
 */
#define STORE_WAL_LIMIT_BYTES	(8 << 20)

/* ---- schema ------------------------------------------------------------ */

static const char schema_v1[] =
	"CREATE TABLE units ("
	"  serial TEXT PRIMARY KEY NOT NULL CHECK (length(serial) > 0),"
	"  model TEXT NOT NULL,"
	"  firmware TEXT NOT NULL,"
	"  first_seen_ms INTEGER NOT NULL,"
	"  last_seen_ms INTEGER NOT NULL"
	") STRICT;"
	"CREATE TABLE sessions ("
	"  id INTEGER PRIMARY KEY,"
	"  patient TEXT NOT NULL CHECK (length(patient) > 0),"
	"  unit_serial TEXT NOT NULL REFERENCES units(serial),"
	"  operator_uid INTEGER NOT NULL,"
	"  operator_name TEXT NOT NULL,"
	"  start_ms INTEGER NOT NULL,"
	"  end_ms INTEGER,"
	"  state TEXT NOT NULL DEFAULT 'open'"
	"    CHECK (state IN ('open', 'ended', 'interrupted')),"
	"  notes TEXT"
	") STRICT;"
	"CREATE TABLE treatments ("
	"  id INTEGER PRIMARY KEY,"
	"  session_id INTEGER NOT NULL REFERENCES sessions(id),"
	"  patient TEXT NOT NULL CHECK (length(patient) > 0),"
	"  patch TEXT NOT NULL CHECK (length(patch) > 0),"
	"  unit_serial TEXT NOT NULL REFERENCES units(serial),"
	"  unit_firmware TEXT NOT NULL,"
	"  operator_uid INTEGER NOT NULL,"
	"  operator_name TEXT NOT NULL,"
	"  wavelength_nm INTEGER NOT NULL,"
	"  fluence_mj_cm2 INTEGER NOT NULL,"
	"  spot_um INTEGER NOT NULL,"
	"  pulse_ps INTEGER NOT NULL,"
	"  rate_mhz INTEGER NOT NULL,"
	"  set_energy_uj INTEGER NOT NULL,"
	"  armed_ms INTEGER NOT NULL,"
	"  armed_rtc_s INTEGER NOT NULL,"
	"  end_ms INTEGER,"
	"  end_rtc_s INTEGER,"
	"  shot_at_arm INTEGER NOT NULL,"
	"  shot_at_end INTEGER,"
	"  pulse_count INTEGER,"
	"  pulses_recorded INTEGER NOT NULL DEFAULT 0,"
	"  energy_min_uj INTEGER,"
	"  energy_max_uj INTEGER,"
	"  energy_sum_uj INTEGER NOT NULL DEFAULT 0,"
	"  last_pulse_ms INTEGER,"
	"  outcome TEXT NOT NULL DEFAULT 'open' CHECK (outcome IN"
	"    ('open', 'completed', 'interrupted', 'fault', 'reconciled', 'unknown'))"
	") STRICT;"
	"CREATE TABLE pulses ("
	"  id INTEGER PRIMARY KEY,"
	"  treatment_id INTEGER NOT NULL REFERENCES treatments(id),"
	"  unit_serial TEXT NOT NULL REFERENCES units(serial),"
	"  host_ms INTEGER NOT NULL,"
	"  shot INTEGER NOT NULL,"
	"  measured_uj INTEGER NOT NULL,"
	"  set_uj INTEGER NOT NULL,"
	"  UNIQUE (unit_serial, shot)"
	") STRICT;"
	"CREATE TABLE audit ("
	"  id INTEGER PRIMARY KEY,"
	"  time_ms INTEGER NOT NULL,"
	"  kind TEXT NOT NULL,"
	"  operator_uid INTEGER,"
	"  operator_name TEXT,"
	"  unit_serial TEXT,"
	"  session_id INTEGER,"
	"  reason TEXT,"
	"  detail TEXT"
	") STRICT;"
	/* Records are never deleted, pulses and audit never rewritten. */
	"CREATE TRIGGER units_keep BEFORE DELETE ON units"
	"  BEGIN SELECT RAISE(ABORT, 'records are never deleted'); END;"
	"CREATE TRIGGER sessions_keep BEFORE DELETE ON sessions"
	"  BEGIN SELECT RAISE(ABORT, 'records are never deleted'); END;"
	"CREATE TRIGGER treatments_keep BEFORE DELETE ON treatments"
	"  BEGIN SELECT RAISE(ABORT, 'records are never deleted'); END;"
	"CREATE TRIGGER pulses_keep BEFORE DELETE ON pulses"
	"  BEGIN SELECT RAISE(ABORT, 'records are never deleted'); END;"
	"CREATE TRIGGER pulses_fixed BEFORE UPDATE ON pulses"
	"  BEGIN SELECT RAISE(ABORT, 'pulse records are never changed'); END;"
	"CREATE TRIGGER audit_keep BEFORE DELETE ON audit"
	"  BEGIN SELECT RAISE(ABORT, 'records are never deleted'); END;"
	"CREATE TRIGGER audit_fixed BEFORE UPDATE ON audit"
	"  BEGIN SELECT RAISE(ABORT, 'audit records are never changed'); END;"
	/* A closed treatment keeps its facts (only the pulse summary may grow). */
	"CREATE TRIGGER treatments_closed BEFORE UPDATE OF"
	"  id, session_id, patient, patch, unit_serial, unit_firmware,"
	"  operator_uid, operator_name, wavelength_nm, fluence_mj_cm2, spot_um,"
	"  pulse_ps, rate_mhz, set_energy_uj, armed_ms, armed_rtc_s, end_ms,"
	"  end_rtc_s, shot_at_arm, shot_at_end, pulse_count, outcome"
	"  ON treatments WHEN OLD.outcome NOT IN ('open', 'unknown')"
	"  BEGIN SELECT RAISE(ABORT, 'a closed treatment is never changed'); END;";

/* v2: indexes for the cooldown, history, reconciliation and audit queries. */
static const char schema_v2[] =
	"CREATE INDEX treatments_by_patch ON treatments(patient, patch);"
	"CREATE INDEX treatments_open ON treatments(unit_serial)"
	"  WHERE outcome IN ('open', 'unknown');"
	"CREATE INDEX pulses_by_treatment ON pulses(treatment_id, shot);"
	"CREATE INDEX sessions_by_patient ON sessions(patient);"
	"CREATE INDEX audit_by_time ON audit(time_ms);";

/*
 * v3 (DESIGN S2, S3):
 * - a patient id is one patient whatever its letter case (ids are ASCII, so
 *   SQLite's NOCASE is exact): the patient indexes fold case, the queries
 *   compare with COLLATE NOCASE, and the records keep the id as typed;
 * - emitting_ms: the first sign that a treatment emitted (its first pulse, or
 *   the unit EMITTING), committed before anyone hears of it, so a lost count
 *   can never free its patch; set once, never cleared;
 * - a closed treatment whose end counter could not be read gets it once, from
 *   the next good read (only shot_at_end and pulse_count, only while unset);
 * - counter_resets: a unit's counter found below what the records hold, and
 *   accepted by an authorized acknowledge (the audit says who).
 */
static const char schema_v3[] =
	"ALTER TABLE treatments ADD COLUMN emitting_ms INTEGER;"
	"DROP INDEX treatments_by_patch;"
	"DROP INDEX sessions_by_patient;"
	"DROP INDEX treatments_open;"
	"CREATE INDEX treatments_by_patch ON treatments(patient COLLATE NOCASE, patch);"
	"CREATE INDEX sessions_by_patient ON sessions(patient COLLATE NOCASE);"
	"CREATE INDEX treatments_by_session ON treatments(session_id, patch);"
	"CREATE INDEX treatments_by_unit ON treatments(unit_serial, id);"
	"CREATE INDEX treatments_unsettled ON treatments(unit_serial)"
	"  WHERE outcome IN ('open', 'unknown') OR shot_at_end IS NULL;"
	"DROP TRIGGER treatments_closed;"
	"CREATE TRIGGER treatments_closed BEFORE UPDATE OF"
	"  id, session_id, patient, patch, unit_serial, unit_firmware,"
	"  operator_uid, operator_name, wavelength_nm, fluence_mj_cm2, spot_um,"
	"  pulse_ps, rate_mhz, set_energy_uj, armed_ms, armed_rtc_s, end_ms,"
	"  end_rtc_s, shot_at_arm, outcome"
	"  ON treatments WHEN OLD.outcome NOT IN ('open', 'unknown')"
	"  BEGIN SELECT RAISE(ABORT, 'a closed treatment is never changed'); END;"
	"CREATE TRIGGER treatments_end_counter BEFORE UPDATE OF shot_at_end, pulse_count"
	"  ON treatments WHEN OLD.outcome NOT IN ('open', 'unknown')"
	"  AND (OLD.shot_at_end IS NOT NULL OR NEW.shot_at_end IS NULL)"
	"  BEGIN SELECT RAISE(ABORT, 'a closed treatment is never changed'); END;"
	"CREATE TRIGGER treatments_emitting BEFORE UPDATE OF emitting_ms ON treatments"
	"  WHEN OLD.emitting_ms IS NOT NULL"
	"  BEGIN SELECT RAISE(ABORT, 'an emission is never forgotten'); END;"
	"CREATE TABLE counter_resets ("
	"  id INTEGER PRIMARY KEY,"
	"  unit_serial TEXT NOT NULL REFERENCES units(serial),"
	"  high_water INTEGER NOT NULL,"
	"  counter INTEGER NOT NULL,"
	"  time_ms INTEGER NOT NULL,"
	"  operator_uid INTEGER NOT NULL,"
	"  operator_name TEXT NOT NULL"
	") STRICT;"
	"CREATE INDEX counter_resets_by_unit ON counter_resets(unit_serial, high_water);"
	"CREATE TRIGGER counter_resets_keep BEFORE DELETE ON counter_resets"
	"  BEGIN SELECT RAISE(ABORT, 'records are never deleted'); END;"
	"CREATE TRIGGER counter_resets_fixed BEFORE UPDATE ON counter_resets"
	"  BEGIN SELECT RAISE(ABORT, 'records are never changed'); END;";

/*
 * v4 (issue 12: clinic-scale records): every query of the daemon searches an
 * index, none reads a table whose size grows with the records:
 * - a patient's treatments for the rules (S2, at every CheckPatch and Arm):
 *   treatments_by_patch grows into treatments_by_patient, which holds every
 *   column EMISSION_EXPR reads, so that the answer comes from a page or two
 *   of the index rather than a page per treatment;
 * - the newest arming (S8, at every CheckPatch and Arm): max(armed_ms);
 * - the open treatment of a unit (at every Arm): only the open ones;
 * - the sessions a crash left open (at every start): only the open ones;
 * - the highest shot the records hold for a unit (each settle compares the
 *   unit's counter with it, store-restore.c): max(shot_at_arm) and
 *   max(shot_at_end) of its treatments (a unit's 250,000 treatments read
 *   took 21 s on a cold cache);
 * - the patches a session selected, from the audit (a restored copy's last
 *   session, store-restore.c): 3 million audit rows read took 29 s.
 *
 * v5 is the hash chain (issue 15, store-chain.c).  v6 is below (counter
 * epochs), v7 is empty.  v8 is the clinical record (issue 16,
 * store-clinical.c): it needs only schema 1's sessions and treatments and
 * the chain of step 5 (its rows are chained like audit and treatments), and
 * changes no earlier table (test_clinical_step_needs_only_steps_1_to_7).
 */
static const char schema_v4[] =
	"DROP INDEX treatments_by_patch;"
	"CREATE INDEX treatments_by_patient ON treatments(patient COLLATE NOCASE, patch,"
	"  session_id, outcome, pulse_count, pulses_recorded, emitting_ms, end_ms,"
	"  last_pulse_ms, armed_ms);"
	"CREATE INDEX treatments_by_armed ON treatments(armed_ms);"
	"CREATE INDEX treatments_open_by_unit ON treatments(unit_serial)"
	"  WHERE outcome = 'open';"
	"CREATE INDEX sessions_open ON sessions(id) WHERE state = 'open';"
	"CREATE INDEX treatments_shot_at_arm ON treatments(unit_serial, shot_at_arm);"
	"CREATE INDEX treatments_shot_at_end ON treatments(unit_serial, shot_at_end);"
	"CREATE INDEX audit_patch_by_session ON audit(session_id) WHERE kind = 'patch';";

/*
 * v6 (DESIGN S3; holes 101 and 103 of tests/attack): the unit's counter
 * epochs.  Each counter reset an authorized user accepts (counter_resets)
 * starts a new epoch of the unit's counter: its shot numbers may repeat
 * those of earlier epochs, and a counter of one epoch never settles a
 * treatment armed in another.
 * - treatments.counter_epoch: the epoch the treatment was armed in (the
 *   number of resets of its unit accepted before); set at arming, never
 *   changed.  Treatments of a database that had resets already get theirs
 *   from the times of those resets.
 * - pulses are unique per (treatment, shot), no longer per (unit, shot): a
 *   shot number fired again keeps its row (its measured energy) in its own
 *   treatment.  The table is rebuilt for that (SQLite cannot drop a
 *   constraint): every row is copied with its id, then the old table goes.
 * - the highest shot of a unit's treatments is read within its epoch: the
 *   v4 indexes on shot_at_arm and shot_at_end take the epoch too.
 */
static const char schema_counter_epochs[] =
	"ALTER TABLE treatments ADD COLUMN counter_epoch INTEGER NOT NULL DEFAULT 0"
	"  CHECK (counter_epoch >= 0);"
	"UPDATE treatments SET counter_epoch = (SELECT count(*) FROM counter_resets AS r"
	"  WHERE r.unit_serial = treatments.unit_serial AND r.time_ms <= treatments.armed_ms)"
	" WHERE EXISTS (SELECT 1 FROM counter_resets AS r"
	"  WHERE r.unit_serial = treatments.unit_serial);"
	"CREATE TRIGGER treatments_counter_epoch BEFORE UPDATE OF counter_epoch ON treatments"
	"  BEGIN SELECT RAISE(ABORT, 'the counter epoch of a treatment is never changed'); END;"
	"CREATE TABLE pulses_by_treatment_shot ("
	"  id INTEGER PRIMARY KEY,"
	"  treatment_id INTEGER NOT NULL REFERENCES treatments(id),"
	"  unit_serial TEXT NOT NULL REFERENCES units(serial),"
	"  host_ms INTEGER NOT NULL,"
	"  shot INTEGER NOT NULL,"
	"  measured_uj INTEGER NOT NULL,"
	"  set_uj INTEGER NOT NULL,"
	"  UNIQUE (treatment_id, shot)"
	") STRICT;"
	"INSERT INTO pulses_by_treatment_shot (id, treatment_id, unit_serial, host_ms, shot,"
	"  measured_uj, set_uj)"
	" SELECT id, treatment_id, unit_serial, host_ms, shot, measured_uj, set_uj FROM pulses"
	" ORDER BY id;"
	"DROP TABLE pulses;"
	"ALTER TABLE pulses_by_treatment_shot RENAME TO pulses;"
	"CREATE INDEX pulses_by_unit ON pulses(unit_serial, shot);"
	"DROP INDEX treatments_shot_at_arm;"
	"DROP INDEX treatments_shot_at_end;"
	"CREATE INDEX treatments_shot_at_arm ON treatments(unit_serial, counter_epoch, shot_at_arm);"
	"CREATE INDEX treatments_shot_at_end ON treatments(unit_serial, counter_epoch, shot_at_end);"
	"CREATE TRIGGER pulses_keep BEFORE DELETE ON pulses"
	"  BEGIN SELECT RAISE(ABORT, 'records are never deleted'); END;"
	"CREATE TRIGGER pulses_fixed BEFORE UPDATE ON pulses"
	"  BEGIN SELECT RAISE(ABORT, 'pulse records are never changed'); END;";

/*
 * v7: nothing.  main b77a065 declared seven steps and listed six (the
 * counter epochs were step 7 on their branch, with 4-6 kept for others, and
 * became step 6 on merging): its databases say 7 and hold steps 1-6.  The
 * step stays empty so that they migrate on to 8.
 */
static const char schema_v7_empty[] = "";

static const char *const migrations[STORE_SCHEMA_VERSION] = {
	schema_v1,
	schema_v2,
	schema_v3,
	schema_v4,
	store_chain_schema,	/* 5: the hash chain and unit counters (store-chain.c) */
	schema_counter_epochs,	/* 6: counter epochs, a pulse row per (treatment, shot) */
	schema_v7_empty,	/* 7: nothing; databases made while it was declared say 7 */
	store_clinical_schema,	/* 8: the clinical record (store-clinical.c) */
};

/* ---- the store --------------------------------------------------------- */

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

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

const char *store_outcome_name(enum store_outcome o)
{
	return (unsigned)o < N_ELEMS(outcome_names) ? outcome_names[o] : "?";
}

const char *store_audit_kind_name(enum store_audit_kind k)
{
	return (unsigned)k < N_ELEMS(audit_kind_names) ? audit_kind_names[k] : "?";
}

static int name_index(const char *const *names, size_t n, const char *name)
{
	for (size_t i = 0; name && i < n; i++)
		if (names[i] && strcmp(names[i], name) == 0)
			return (int)i;
	return -1;
}

/* ---- errors ------------------------------------------------------------ */

__attribute__((format(printf, 3, 4)))
static int fail(struct store *st, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(st->msg, sizeof(st->msg), fmt, ap);
	va_end(ap);
	for (char *c = st->msg; (c = strchr(c, '\n')); )
		*c = ' ';	/* one line, for the journal */
	return err;
}

static int errno_of_sqlite(sqlite3 *db, int rc)
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
static int sql_fail(struct store *st, int rc, const char *what)
{
	return fail(st, errno_of_sqlite(st->db, rc), "%s: %s: %s", st->path, what,
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

int store_sql_error(struct store *st, int rc, const char *what)
{
	return sql_fail(st, rc, what);
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
static void format_utc(int64_t ms, char *buf, size_t len)
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
 * release().  A statement already in use (a callback that calls the store
 * again) gets a copy of its own, freed by release().
 */
static int prepare(struct store *st, sqlite3_stmt **stmt, const char *sql)
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
			return sql_fail(st, rc, "prepare");
		st->cache[st->n_cached++] = (struct cached_stmt){ sql, *stmt, true };
		return 0;
	}
	rc = sqlite3_prepare_v2(st->db, sql, -1, stmt, NULL);
	return rc == SQLITE_OK ? 0 : sql_fail(st, rc, "prepare");
}

/* Done with a statement of prepare(): reset (ending its read) or freed. */
static void release(struct store *st, sqlite3_stmt *stmt)
{
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
static int exec_as(struct store *st, const char *sql, const char *what)
{
	int rc = sqlite3_exec(st->db, sql, NULL, NULL, NULL);

	return rc == SQLITE_OK ? 0 : sql_fail(st, rc, what);
}

/* A single short statement: it names itself. */
static int exec(struct store *st, const char *sql)
{
	return exec_as(st, sql, sql);
}

/* Step a statement that returns no rows (or ignores them). */
static int step_done(struct store *st, sqlite3_stmt *stmt, const char *what)
{
	int rc;

	do
		rc = sqlite3_step(stmt);
	while (rc == SQLITE_ROW);
	return rc == SQLITE_DONE ? 0 : sql_fail(st, rc, what);
}

/* Run a one-value query (e.g. a pragma); *value NULL-safe as 0. */
static int query_int64(struct store *st, const char *sql, int64_t *value, bool *is_null)
{
	sqlite3_stmt *stmt;
	int rc, err = prepare(st, &stmt, sql);

	if (err)
		return err;
	rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW) {
		if (is_null)
			*is_null = sqlite3_column_type(stmt, 0) == SQLITE_NULL;
		*value = sqlite3_column_int64(stmt, 0);
		err = 0;
	} else {
		err = rc == SQLITE_DONE ? fail(st, -EIO, "%s: no result", sql) : sql_fail(st, rc, sql);
	}
	release(st, stmt);
	return err;
}

static void bind_text_or_null(sqlite3_stmt *stmt, int col, const char *s)
{
	if (s)
		sqlite3_bind_text(stmt, col, s, -1, SQLITE_TRANSIENT);
	else
		sqlite3_bind_null(stmt, col);
}

static const char *column_text(sqlite3_stmt *stmt, int col)
{
	const unsigned char *s = sqlite3_column_text(stmt, col);

	return s ? (const char *)s : "";
}

static const char *column_text_or_null(sqlite3_stmt *stmt, int col)
{
	return sqlite3_column_type(stmt, col) == SQLITE_NULL ? NULL : column_text(stmt, col);
}

static int begin_write(struct store *st)
{
	return exec(st, "BEGIN IMMEDIATE");
}

static int commit(struct store *st)
{
	return exec(st, "COMMIT");
}

/* Undo an unfinished transaction, keeping the first error's message. */
static int rollback(struct store *st, int err)
{
	char keep[STORE_MSG_MAX];

	if (!sqlite3_get_autocommit(st->db)) {
		memcpy(keep, st->msg, sizeof(keep));
		sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
		memcpy(st->msg, keep, sizeof(keep));
	}
	return err;
}

static bool nonempty(const char *s)
{
	return s && *s;
}

/* Serials, patient ids, patches: present, not empty, not too long. */
static bool valid_name(const char *s)
{
	return nonempty(s) && strnlen(s, STORE_NAME_MAX + 1) <= STORE_NAME_MAX;
}

/* Model, firmware, operator names: present, may be empty, not too long. */
static bool valid_label(const char *s)
{
	return s && strnlen(s, STORE_NAME_MAX + 1) <= STORE_NAME_MAX;
}

/* Free text (notes, audit reason and detail): kept, cut at STORE_TEXT_MAX. */
static void bind_free_text(sqlite3_stmt *stmt, int col, const char *s)
{
	if (s)
		sqlite3_bind_text(stmt, col, s, (int)strnlen(s, STORE_TEXT_MAX), SQLITE_TRANSIENT);
	else
		sqlite3_bind_null(stmt, col);
}

/* ---- opening ----------------------------------------------------------- */

static int make_state_dir(struct store *st, const char *dir)
{
	struct stat sb;

	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return fail(st, -errno, "cannot create state directory %s: %s", dir, strerror(errno));
	if (stat(dir, &sb) < 0)
		return fail(st, -errno, "cannot use state directory %s: %s", dir, strerror(errno));
	if (!S_ISDIR(sb.st_mode))
		return fail(st, -ENOTDIR, "state directory %s is not a directory", dir);
	return 0;
}

static int fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int err = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		err = -errno;
	close(fd);
	return err;
}

/*
 * Make sure st->path is a regular file we can read and write: create it
 * empty (0600) if missing, refuse anything else with the reason.
 */
static int prepare_db_file(struct store *st, const char *dir)
{
	struct stat sb;
	int fd, err;

	if (lstat(st->path, &sb) == 0) {
		if (S_ISDIR(sb.st_mode))
			return fail(st, -EISDIR, "%s is a directory, not a records database", st->path);
		if (!S_ISREG(sb.st_mode))
			return fail(st, -EINVAL, "%s is not a regular file (symlink, device or fifo?)",
				    st->path);
		fd = open(st->path, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			return fail(st, -errno, "cannot open %s for reading and writing: %s",
				    st->path, strerror(errno));
		close(fd);
		return 0;
	}
	if (errno != ENOENT)
		return fail(st, -errno, "cannot stat %s: %s", st->path, strerror(errno));

	fd = open(st->path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return fail(st, -errno, "cannot create %s: %s", st->path, strerror(errno));
	err = fchmod(fd, 0600) < 0 ? -errno : 0;	/* whatever the umask */
	close(fd);
	if (!err)
		err = fsync_dir(dir);
	if (err)
		return fail(st, err, "cannot create %s: %s", st->path, strerror(-err));
	return 0;
}

/* PRAGMA quick_check: "ok" or the first problem. */
static int check_integrity(struct store *st)
{
	sqlite3_stmt *stmt;
	int rc, err = prepare(st, &stmt, "PRAGMA quick_check(1)");

	if (err == -EUCLEAN)
		return fail(st, err, "%s is corrupt (%s)", st->path, sqlite3_errmsg(st->db));
	if (err)
		return fail(st, err, "cannot check %s (%s)", st->path, sqlite3_errmsg(st->db));
	rc = sqlite3_step(stmt);
	if (rc != SQLITE_ROW) {
		err = errno_of_sqlite(st->db, rc);
		err = fail(st, err, err == -EUCLEAN ? "%s is corrupt (%s)" :
			   err == -ECANCELED ? "%s: integrity check cancelled (%s)" :
			   "cannot check %s (%s)", st->path, sqlite3_errmsg(st->db));
	} else if (strcmp(column_text(stmt, 0), "ok") != 0) {
		err = fail(st, -EUCLEAN, "%s is corrupt (quick_check: %s)", st->path,
			   column_text(stmt, 0));
	}
	release(st, stmt);
	return err;
}

/*
 * Read the header (application id, schema version, table count) and decide
 * whether the file is ours, new, or to be refused.
 */
static int identify(struct store *st, int *version)
{
	int64_t app_id, user_version, tables;
	int err;

	err = query_int64(st, "PRAGMA application_id", &app_id, NULL);
	if (!err)
		err = query_int64(st, "PRAGMA user_version", &user_version, NULL);
	if (!err)
		err = query_int64(st, "SELECT count(*) FROM sqlite_schema", &tables, NULL);
	if (err == -EUCLEAN)
		return fail(st, err, "%s is corrupt or not an SQLite database (%s); "
			    "refusing to use it", st->path, sqlite3_errmsg(st->db));
	if (err)
		return fail(st, err, "cannot read %s (%s)", st->path, sqlite3_errmsg(st->db));

	if (app_id == 0 && user_version == 0 && tables == 0) {
		*version = 0;	/* new, empty */
		return 0;
	}
	if (app_id != STORE_APPLICATION_ID)
		return fail(st, -EMEDIUMTYPE, "%s is an SQLite database but not smplaser's "
			    "records (application_id %#llx); refusing to use it",
			    st->path, (unsigned long long)app_id);
	if (user_version > STORE_SCHEMA_VERSION || user_version < 1)
		return fail(st, user_version < 1 ? -EUCLEAN : -EPROTONOSUPPORT,
			    "%s has schema version %lld, this smplaserd knows 1..%d%s; refusing to use it",
			    st->path, (long long)user_version, STORE_SCHEMA_VERSION,
			    user_version > STORE_SCHEMA_VERSION ? " (written by a newer smplaserd)" : "");
	*version = (int)user_version;
	return 0;
}

/* Bounded caches (STORE_CACHE_KIB), no mmap: for every connection. */
static int bound_caches(struct store *st)
{
	char sql[64];
	int err;

	snprintf(sql, sizeof(sql), "PRAGMA cache_size = -%d", STORE_CACHE_KIB);
	err = exec(st, sql);
	if (!err)
		err = exec(st, "PRAGMA mmap_size = 0");
	return err;
}

/*
 * Before migrating: everything but WAL, which rewrites the file's header;
 * a database that its migration refuses is left exactly as it was.
 */
static int configure_before_migration(struct store *st)
{
	int err = exec(st, "PRAGMA synchronous = FULL");

	if (!err)
		err = exec(st, "PRAGMA foreign_keys = ON");
	return err;
}

/* The log and its index stay on disk between two runs (STORE_WAL_LIMIT_BYTES). */
static int keep_the_log(struct store *st)
{
	char sql[64];
	int persist = 1, rc;

	rc = sqlite3_file_control(st->db, "main", SQLITE_FCNTL_PERSIST_WAL, &persist);
	if (rc != SQLITE_OK)
		return sql_fail(st, rc, "keep the log");
	snprintf(sql, sizeof(sql), "PRAGMA journal_size_limit = %d", STORE_WAL_LIMIT_BYTES);
	return exec(st, sql);
}

static int configure_connection(struct store *st)
{
	struct store_settings s;
	int err;

	err = exec(st, "PRAGMA journal_mode = WAL");
	if (!err)
		err = keep_the_log(st);
	if (!err)
		err = exec(st, "PRAGMA synchronous = FULL");
	if (!err)
		err = exec(st, "PRAGMA foreign_keys = ON");
	if (!err)
		err = bound_caches(st);
	if (!err)
		err = store_get_settings(st, &s);
	if (err)
		return err;
	if (strcmp(s.journal_mode, "wal") != 0 || s.synchronous != 2 || !s.foreign_keys)
		return fail(st, -EIO, "%s: cannot set WAL, synchronous=FULL and foreign keys "
			    "(got %s, %d, %d)", st->path, s.journal_mode, s.synchronous,
			    s.foreign_keys);
	return 0;
}

/*
 * Every step from @from to @to in one transaction: a database that a later
 * step refuses is left exactly as it was, not half migrated (the steps
 * before it committed, the file changed, and then refused).
 */
static int migrate(struct store *st, int from, int to)
{
	char sql[96], why[STORE_MSG_MAX];
	int v = from, err;

	if (from >= to)
		return 0;
	err = begin_write(st);
	if (err)
		return err;
	for (; v < to && !err; v++) {
		if (v == 0) {
			snprintf(sql, sizeof(sql), "PRAGMA application_id = %d",
				 STORE_APPLICATION_ID);
			err = exec(st, sql);
		}
		if (!err)
			err = exec_as(st, migrations[v], "schema");
		if (err)
			break;
	}
	snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", to);
	if (!err)
		err = exec(st, sql);
	if (!err)
		err = commit(st);
	if (!err)
		return 0;
	memcpy(why, st->msg, sizeof(why));
	return rollback(st, fail(st, err, "migration to schema version %d failed: %s",
				 v < to ? v + 1 : to, why));
}

static bool file_exists_with_suffix(const char *path, const char *suffix, off_t *size)
{
	char name[PATH_MAX];
	struct stat sb;

	snprintf(name, sizeof(name), "%s%s", path, suffix);
	if (stat(name, &sb) < 0)
		return false;
	if (size)
		*size = sb.st_size;
	return true;
}

/*
 * After refusing a database: SQLite created an empty log and its index
 * beside it; remove them so that the refused file is left as we found it.
 */
static void remove_empty_log_we_created(const struct store *st)
{
	char name[PATH_MAX];
	off_t size;

	if (st->log_existed || !file_exists_with_suffix(st->path, "-wal", &size) || size != 0)
		return;
	snprintf(name, sizeof(name), "%s-wal", st->path);
	unlink(name);
	snprintf(name, sizeof(name), "%s-shm", st->path);
	unlink(name);
}

static void free_store(struct store *st, bool refused)
{
	if (!st)
		return;
	for (size_t i = 0; i < st->n_cached; i++)
		sqlite3_finalize(st->cache[i].stmt);
	if (st->db) {
		sqlite3_close(st->db);
		if (refused && st->path && !st->reader)
			remove_empty_log_we_created(st);
	}
	free(st->batch);
	free(st->path);
	free(st);
}

static void copy_msg(char *msg, size_t msg_len, const char *text)
{
	if (msg && msg_len)
		snprintf(msg, msg_len, "%s", text);
}

enum open_mode {
	OPEN_WRITER,		/* store_open(): created if missing, migrated */
	OPEN_READER,		/* store_open_reader(): read only, migrated already */
	OPEN_CHECK,		/* store_quick_check(): read only, anything */
};

/* The file must be there for reading: a regular file, not a link. */
static int check_db_file(struct store *st)
{
	struct stat sb;

	if (lstat(st->path, &sb) < 0)
		return fail(st, -errno, "cannot use %s: %s", st->path, strerror(errno));
	if (S_ISDIR(sb.st_mode))
		return fail(st, -EISDIR, "%s is a directory, not a records database", st->path);
	if (!S_ISREG(sb.st_mode))
		return fail(st, -EINVAL, "%s is not a regular file (symlink, device or fifo?)",
			    st->path);
	return 0;
}

/*
 * Open up to the point where the schema version is known and checked
 * (OPEN_CHECK: only opened).  The integrity of the whole file is not checked
 * here: that reads every page, seconds for a clinic's records, and is the
 * job of store_quick_check(), which the daemon runs after it is ready.
 *
 * A reader (and the check) opens what the writer of the same process made,
 * and no more: no open() and close() of its own on the file (lstat only),
 * which would drop every POSIX lock the process holds on it (fcntl(2)).
 * Another process closing its last connection would then find the database
 * unused and delete the log the writer still appends to.
 */
static int open_checked(struct store **out, const char *state_dir, int *version,
			enum open_mode mode)
{
	int flags = SQLITE_OPEN_NOFOLLOW;
	struct store *st;
	int rc, err;

	*out = st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	st->reader = mode != OPEN_WRITER;
	if (!nonempty(state_dir))
		return fail(st, -EINVAL, "no state directory given");
	if (asprintf(&st->path, "%s/%s", state_dir, STORE_DB_NAME) < 0) {
		st->path = NULL;
		return fail(st, -ENOMEM, "out of memory");
	}
	if (mode == OPEN_WRITER) {
		err = make_state_dir(st, state_dir);
		if (!err)
			err = prepare_db_file(st, state_dir);
		flags |= SQLITE_OPEN_READWRITE;
	} else {
		err = check_db_file(st);
		flags |= SQLITE_OPEN_READONLY;
	}
	if (err)
		return err;

	st->log_existed = file_exists_with_suffix(st->path, "-wal", NULL);
	rc = sqlite3_open_v2(st->path, &st->db, flags, NULL);
	if (rc != SQLITE_OK)
		return fail(st, errno_of_sqlite(st->db, rc), "cannot open %s: %s",
			    st->path, st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc));
	/*
	 * Nothing may write before the file is known to be ours: not even the
	 * checkpoint SQLite runs when the last connection closes, which would
	 * copy a log left by a crash into a database we refuse.
	 */
	sqlite3_extended_result_codes(st->db, 1);
	sqlite3_busy_timeout(st->db, STORE_BUSY_TIMEOUT_MS);
	rc = store_chain_register(st->db);	/* the triggers of the chain call them */
	if (rc != SQLITE_OK)
		return sql_fail(st, rc, "register the chain's functions");
	sqlite3_db_config(st->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
	if (mode == OPEN_CHECK)
		return 0;
	err = identify(st, version);
	if (!err && mode == OPEN_READER && *version != STORE_SCHEMA_VERSION)
		err = fail(st, -ESTALE, "%s has schema version %d, not %d: open it for writing "
			   "first (store_open migrates it)", st->path, *version,
			   STORE_SCHEMA_VERSION);
	if (!err && mode == OPEN_WRITER)
		sqlite3_db_config(st->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 0, NULL);
	return err;
}

/* Hands the outcome of an open to the caller: *out and msg. */
static int open_done(struct store *st, int err, struct store **out, char *msg, size_t msg_len)
{
	if (err) {
		copy_msg(msg, msg_len, st ? st->msg : "out of memory");
		free_store(st, true);
		return err;
	}
	st->msg[0] = '\0';
	copy_msg(msg, msg_len, "");
	*out = st;
	return 0;
}

int store_open(struct store **out, const char *state_dir, char *msg, size_t msg_len)
{
	struct store *st;
	int version = 0, err;

	if (!out)
		return -EINVAL;
	*out = NULL;
	err = open_checked(&st, state_dir, &version, OPEN_WRITER);
	if (!err)
		err = configure_before_migration(st);
	if (!err)
		err = migrate(st, version, STORE_SCHEMA_VERSION);
	if (!err)
		err = configure_connection(st);
	return open_done(st, err, out, msg, msg_len);
}

int store_open_reader(struct store **out, const char *state_dir, char *msg, size_t msg_len)
{
	struct store *st;
	int version = 0, err;

	if (!out)
		return -EINVAL;
	*out = NULL;
	err = open_checked(&st, state_dir, &version, OPEN_READER);
	if (!err)
		err = bound_caches(st);
	if (!err)
		err = exec(st, "PRAGMA query_only = ON");
	return open_done(st, err, out, msg, msg_len);
}

/* store_quick_check_cancel(true): running checks stop at their next progress call. */
static atomic_bool quick_check_cancelled;

void store_quick_check_cancel(bool cancel)
{
	atomic_store(&quick_check_cancelled, cancel);
}

static int quick_check_progress(void *ctx)
{
	(void)ctx;
	return atomic_load(&quick_check_cancelled) ? 1 : 0;
}

int store_quick_check(const char *state_dir, char *msg, size_t msg_len)
{
	struct store *st;
	int err;

	err = open_checked(&st, state_dir, NULL, OPEN_CHECK);
	if (!err) {
		/* It reads every page once: a big cache would only grow the daemon. */
		sqlite3_exec(st->db, "PRAGMA cache_size = -128", NULL, NULL, NULL);
		sqlite3_progress_handler(st->db, 10000, quick_check_progress, NULL);
		err = check_integrity(st);
	}
	copy_msg(msg, msg_len, st ? st->msg : "out of memory");
	free_store(st, false);
	return err;
}

int store_create_at_version(const char *state_dir, int version, char *msg, size_t msg_len)
{
	struct store *st;
	int have = 0, err;

	if (version < 1 || version > STORE_SCHEMA_VERSION) {
		copy_msg(msg, msg_len, "no such schema version");
		return -EINVAL;
	}
	err = open_checked(&st, state_dir, &have, OPEN_WRITER);
	if (!err && have != 0)
		err = fail(st, -EEXIST, "%s already exists", st->path);
	if (!err)
		err = configure_connection(st);
	if (!err)
		err = migrate(st, 0, version);
	copy_msg(msg, msg_len, st ? st->msg : "out of memory");
	free_store(st, err != 0);
	return err;
}

void store_close(struct store *st)
{
	if (st && st->db)
		store_flush(st);
	free_store(st, false);
}

int store_get_settings(struct store *st, struct store_settings *out)
{
	sqlite3_stmt *stmt;
	int64_t v;
	int rc, err;

	memset(out, 0, sizeof(*out));
	err = prepare(st, &stmt, "PRAGMA journal_mode");
	if (err)
		return err;
	rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW)
		snprintf(out->journal_mode, sizeof(out->journal_mode), "%s", column_text(stmt, 0));
	release(st, stmt);
	if (rc != SQLITE_ROW)
		return sql_fail(st, rc, "PRAGMA journal_mode");

	err = query_int64(st, "PRAGMA synchronous", &v, NULL);
	if (err)
		return err;
	out->synchronous = (int)v;
	err = query_int64(st, "PRAGMA foreign_keys", &v, NULL);
	if (err)
		return err;
	out->foreign_keys = v != 0;
	err = query_int64(st, "PRAGMA user_version", &v, NULL);
	if (err)
		return err;
	out->schema_version = (int)v;
	err = query_int64(st, "PRAGMA cache_size", &out->cache_size, NULL);
	if (!err)
		err = query_int64(st, "PRAGMA mmap_size", &out->mmap_size, NULL);
	return err;
}

/* ---- units ------------------------------------------------------------- */

int store_unit_seen(struct store *st, const char *serial, const char *model,
		    const char *firmware, int64_t now_ms)
{
	sqlite3_stmt *stmt;
	int err;

	if (!valid_name(serial) || !valid_label(model) || !valid_label(firmware))
		return fail(st, -EINVAL, "a unit needs a serial, a model and a firmware "
			    "(at most %d bytes each)", STORE_NAME_MAX);
	err = prepare(st, &stmt,
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
	err = step_done(st, stmt, "record unit");
	release(st, stmt);
	return err;
}

int store_get_unit(struct store *st, const char *serial, store_unit_cb cb, void *ctx)
{
	sqlite3_stmt *stmt;
	int rc, err;

	err = prepare(st, &stmt, "SELECT serial, model, firmware, first_seen_ms, last_seen_ms"
		      " FROM units WHERE serial = ?1");
	if (err)
		return err;
	bind_text_or_null(stmt, 1, serial);
	rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW) {
		struct store_unit u = {
			.serial = column_text(stmt, 0),
			.model = column_text(stmt, 1),
			.firmware = column_text(stmt, 2),
			.first_seen_ms = sqlite3_column_int64(stmt, 3),
			.last_seen_ms = sqlite3_column_int64(stmt, 4),
		};
		cb(&u, ctx);
		err = 0;
	} else {
		err = rc == SQLITE_DONE ? fail(st, -ENOENT, "unit %s is not known", serial)
					: sql_fail(st, rc, "read unit");
	}
	release(st, stmt);
	return err;
}

/* ---- sessions ---------------------------------------------------------- */

int store_session_begin(struct store *st, const char *patient, const char *unit_serial,
			const struct store_operator *op, int64_t now_ms, int64_t *session_id)
{
	sqlite3_stmt *stmt;
	int err;

	if (!valid_name(patient) || !valid_name(unit_serial) || !op || !valid_label(op->name) ||
	    !session_id)
		return fail(st, -EINVAL, "a session needs a patient, a unit and an operator "
			    "(at most %d bytes each)", STORE_NAME_MAX);
	err = prepare(st, &stmt,
		      "INSERT INTO sessions (patient, unit_serial, operator_uid, operator_name,"
		      "  start_ms) VALUES (?1, ?2, ?3, ?4, ?5)");
	if (err)
		return err;
	sqlite3_bind_text(stmt, 1, patient, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(stmt, 2, unit_serial, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(stmt, 3, op->uid);
	sqlite3_bind_text(stmt, 4, op->name, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(stmt, 5, now_ms);
	err = step_done(st, stmt, "begin session");
	release(st, stmt);
	if (err == -EINVAL && sqlite3_extended_errcode(st->db) == SQLITE_CONSTRAINT_FOREIGNKEY)
		return fail(st, -ENOENT, "unit %s is not known (record it first)", unit_serial);
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
		return fail(st, -EINVAL, "a session ends as ended or interrupted");
	err = prepare(st, &stmt, "UPDATE sessions SET state = ?2, end_ms = ?3, notes = ?4"
		      " WHERE id = ?1 AND state = 'open'");
	if (err)
		return err;
	sqlite3_bind_int64(stmt, 1, session_id);
	sqlite3_bind_text(stmt, 2, session_state_names[state], -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 3, now_ms);
	bind_free_text(stmt, 4, notes);
	err = step_done(st, stmt, "end session");
	release(st, stmt);
	if (err || sqlite3_changes(st->db) == 1)
		return err;

	int64_t exists = 0;

	err = prepare(st, &stmt, "SELECT count(*) FROM sessions WHERE id = ?1");
	if (err)
		return err;
	sqlite3_bind_int64(stmt, 1, session_id);
	if (sqlite3_step(stmt) == SQLITE_ROW)
		exists = sqlite3_column_int64(stmt, 0);
	release(st, stmt);
	return exists ? fail(st, -EALREADY, "session %lld is already closed", (long long)session_id)
		      : fail(st, -ENOENT, "no session %lld", (long long)session_id);
}

int store_sessions_interrupt_open(struct store *st, int64_t now_ms)
{
	sqlite3_stmt *stmt;
	int err;

	err = prepare(st, &stmt, "UPDATE sessions SET state = 'interrupted', end_ms = ?1"
		      " WHERE state = 'open'");
	if (err)
		return err;
	sqlite3_bind_int64(stmt, 1, now_ms);
	err = step_done(st, stmt, "interrupt open sessions");
	release(st, stmt);
	return err ? err : sqlite3_changes(st->db);
}

int store_get_session(struct store *st, int64_t session_id, store_session_cb cb, void *ctx)
{
	sqlite3_stmt *stmt;
	int rc, err;

	err = prepare(st, &stmt, "SELECT id, patient, unit_serial, operator_uid, operator_name,"
		      " state, start_ms, coalesce(end_ms, 0), notes FROM sessions WHERE id = ?1");
	if (err)
		return err;
	sqlite3_bind_int64(stmt, 1, session_id);
	rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW) {
		int state = name_index(session_state_names, N_ELEMS(session_state_names),
				       column_text(stmt, 5));
		struct store_session s = {
			.id = sqlite3_column_int64(stmt, 0),
			.patient = column_text(stmt, 1),
			.unit_serial = column_text(stmt, 2),
			.op = { (uint32_t)sqlite3_column_int64(stmt, 3), column_text(stmt, 4) },
			.state = state < 0 ? STORE_SESSION_OPEN : (enum store_session_state)state,
			.start_ms = sqlite3_column_int64(stmt, 6),
			.end_ms = sqlite3_column_int64(stmt, 7),
			.notes = column_text_or_null(stmt, 8),
		};
		cb(&s, ctx);
		err = 0;
	} else {
		err = rc == SQLITE_DONE ? fail(st, -ENOENT, "no session %lld", (long long)session_id)
					: sql_fail(st, rc, "read session");
	}
	release(st, stmt);
	return err;
}

/* ---- pulses ------------------------------------------------------------ */

static int check_treatment_exists(struct store *st, int64_t id)
{
	sqlite3_stmt *stmt;
	int rc, err;

	if (id > 0 && id == st->known_treatment)
		return 0;	/* treatments are never deleted */
	err = prepare(st, &stmt, "SELECT 1 FROM treatments WHERE id = ?1");
	if (err)
		return err;
	sqlite3_bind_int64(stmt, 1, id);
	rc = sqlite3_step(stmt);
	release(st, stmt);
	if (rc == SQLITE_ROW) {
		st->known_treatment = id;
		return 0;
	}
	return rc == SQLITE_DONE ? fail(st, -ENOENT, "no treatment %lld", (long long)id)
				 : sql_fail(st, rc, "look up treatment");
}

int store_add_pulse(struct store *st, const struct store_pulse *p)
{
	int err;

	if (!p)
		return fail(st, -EINVAL, "no pulse");
	err = check_treatment_exists(st, p->treatment_id);
	if (err)
		return err;
	if (st->batch_len == st->batch_cap) {
		size_t cap = st->batch_cap ? st->batch_cap * 2 : 64;
		struct store_pulse *grown;

		if (st->batch_cap >= STORE_PULSE_BATCH_MAX)
			return fail(st, -ENOBUFS, "%zu pulses wait for a flush; the store is failing",
				    st->batch_len);
		if (cap > STORE_PULSE_BATCH_MAX)
			cap = STORE_PULSE_BATCH_MAX;
		grown = realloc(st->batch, cap * sizeof(*grown));
		if (!grown)
			return fail(st, -ENOMEM, "out of memory for the pulse batch");
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

static int insert_audit(struct store *st, const struct store_audit *a);

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
	err = prepare(st, &stmt, "SELECT p.treatment_id, me.unit_serial FROM treatments AS me"
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
		err = insert_audit(st, &(struct store_audit){
			.time_ms = p->host_ms, .kind = STORE_AUDIT_FAULT,
			.unit_serial = column_text(stmt, 1), .reason = "shot-number-reused",
			.detail = detail });
	} else if (rc != SQLITE_DONE) {
		err = sql_fail(st, rc, "look for a reused shot number");
	}
	release(st, stmt);
	return err;
}

/* Insert one pulse; *counts false if it was a repeated report (same treatment, same shot). */
static int insert_pulse(struct store *st, const struct store_pulse *p, bool *counts)
{
	sqlite3_stmt *ins;
	int err;

	err = prepare(st, &ins, "INSERT INTO pulses (treatment_id, unit_serial, host_ms, shot,"
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
	err = step_done(st, ins, "record pulse");
	release(st, ins);
	if (err)
		return err;
	*counts = sqlite3_changes(st->db) == 1;
	return *counts ? audit_reused_shot(st, p) : 0;
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

	err = prepare(st, &sum, "UPDATE treatments SET pulses_recorded = pulses_recorded + ?2,"
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
	err = step_done(st, sum, "update pulse summary");
	release(st, sum);
	return err;
}

/* Inside the transaction: every pulse of the batch, then the summaries. */
static int write_batch(struct store *st)
{
	struct pulse_summary *sums = calloc(st->batch_len, sizeof(*sums));
	size_t n = 0;
	bool counts;
	int err = sums ? 0 : fail(st, -ENOMEM, "out of memory for the pulse summary");

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
	err = begin_write(st);
	if (!err)
		err = write_batch(st);
	if (!err)
		err = commit(st);
	if (err)
		return rollback(st, err);	/* the batch stays for the next try */
	st->batch_len = 0;
	return 0;
}

int store_treatment_pulses(struct store *st, int64_t treatment_id, store_pulse_cb cb, void *ctx)
{
	sqlite3_stmt *stmt;
	int rc, n = 0, err;

	err = prepare(st, &stmt, "SELECT treatment_id, host_ms, shot, measured_uj, set_uj"
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
	err = (rc == SQLITE_ROW || rc == SQLITE_DONE) ? n : sql_fail(st, rc, "read pulses");
	release(st, stmt);
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
	int outcome = name_index(outcome_names, N_ELEMS(outcome_names), column_text(s, 14));

	*t = (struct store_treatment){
		.id = sqlite3_column_int64(s, 0),
		.session_id = sqlite3_column_int64(s, 1),
		.patient = column_text(s, 2),
		.patch = column_text(s, 3),
		.unit_serial = column_text(s, 4),
		.unit_firmware = column_text(s, 5),
		.op = { (uint32_t)sqlite3_column_int64(s, 6), column_text(s, 7) },
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
	return (rc == SQLITE_ROW || rc == SQLITE_DONE) ? n : sql_fail(st, rc, "read treatments");
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

	err = prepare(st, &stmt, "SELECT patient, unit_serial, state FROM sessions WHERE id = ?1");
	if (err)
		return err;
	sqlite3_bind_int64(stmt, 1, id);
	rc = sqlite3_step(stmt);
	if (rc == SQLITE_DONE)
		err = fail(st, -ENOENT, "no session %lld", (long long)id);
	else if (rc != SQLITE_ROW)
		err = sql_fail(st, rc, "read session");
	else if (strcmp(column_text(stmt, 2), "open") != 0)
		err = fail(st, -ESTALE, "session %lld is %s, not open", (long long)id,
			   column_text(stmt, 2));
	else if (!(*patient = strdup(column_text(stmt, 0))) ||
		 !(*unit = strdup(column_text(stmt, 1))))
		err = fail(st, -ENOMEM, "out of memory");
	release(st, stmt);
	return err;
}

static int refuse_if_unit_busy(struct store *st, const char *unit)
{
	sqlite3_stmt *stmt;
	int rc, err;

	err = prepare(st, &stmt, "SELECT id, outcome FROM treatments"
		      " INDEXED BY treatments_open_by_unit"
		      " WHERE unit_serial = ?1 AND outcome = 'open' LIMIT 1");
	if (err)
		return err;
	sqlite3_bind_text(stmt, 1, unit, -1, SQLITE_TRANSIENT);
	rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW)
		err = fail(st, -EBUSY, "unit %s still has treatment %lld %s; reconcile it or end it "
			   "first",
			   unit, (long long)sqlite3_column_int64(stmt, 0), column_text(stmt, 1));
	else if (rc != SQLITE_DONE)
		err = sql_fail(st, rc, "look for open treatments");
	release(st, stmt);
	return err;
}

/* The latest emission on patient's patch in any session but except_session. */
static int last_emission_except(struct store *st, const char *patient, const char *patch,
				int64_t except_session, int64_t *when_ms)
{
	sqlite3_stmt *stmt;
	int rc, err;

	err = prepare(st, &stmt, "SELECT max(" EMISSION_EXPR ") FROM treatments"
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
		err = sql_fail(st, rc, "last emission");
	}
	release(st, stmt);
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
	format_utc(when, last, sizeof(last));
	format_utc(when + t->cooldown_ms, eligible, sizeof(eligible));
	return fail(st, -EAGAIN, "patch %s of patient %s was last treated %s; eligible from %s",
		    t->patch, patient, last, eligible);
}

static int insert_treatment(struct store *st, const struct store_treatment_start *t,
			    const char *patient, const char *unit)
{
	sqlite3_stmt *stmt;
	int err;

	err = prepare(st, &stmt,
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
	err = step_done(st, stmt, "record treatment");
	release(st, stmt);
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

	err = prepare(st, &stmt, sql);
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
		err = sql_fail(st, rc, "read the patch's records");
	}
	release(st, stmt);
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
	err = prepare(st, &stmt, "BEGIN");
	if (!err)
		err = step_done(st, stmt, "BEGIN");
	if (!err)
		release(st, stmt);
	*began = !err;
	return err;
}

static int end_read(struct store *st, bool began, int err)
{
	sqlite3_stmt *stmt;

	if (!began)
		return err;
	if (err)
		return rollback(st, err);
	err = prepare(st, &stmt, "COMMIT");
	if (!err) {
		err = step_done(st, stmt, "COMMIT");
		release(st, stmt);
	}
	return err ? rollback(st, err) : 0;
}

int store_patch_facts(struct store *st, const char *patient, const char *patch,
		      int64_t session_id, struct store_patch_facts *out)
{
	int64_t v[3], pulses;	/* last emission of the patch, first of the patient, count */
	bool began;
	int err;

	if (!nonempty(patient) || !nonempty(patch) || !out)
		return fail(st, -EINVAL, "patch facts need a patient and a patch");
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
		return fail(st, -EAGAIN, "%s", why[0] ? why : "the patch is not eligible now");
	return err < 0 ? fail(st, err, "%s", why[0] ? why : "the rules refused") : 0;
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

	err = prepare(st, &stmt,
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
		err = sql_fail(st, rc, "read the unit's highest shot");
	}
	release(st, stmt);
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
	return fail(st, -ERANGE, "counter-went-back: unit %s reports shot counter %u, below "
		    "shot %u in the records; not believed", unit, counter, high);
}

int store_counter_check(struct store *st, const char *unit_serial, uint32_t counter)
{
	if (!valid_name(unit_serial))
		return fail(st, -EINVAL, "a counter check needs a unit");
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
	err = prepare(st, &stmt, "UPDATE treatments SET shot_at_end = " RECORDED_END ","
		      " pulse_count = " RECORDED_END " - shot_at_arm"
		      " WHERE unit_serial = ?1 AND shot_at_end IS NULL"
		      " AND outcome NOT IN ('open', 'unknown')");
	if (err)
		return err;
	sqlite3_bind_text(stmt, 1, unit, -1, SQLITE_TRANSIENT);
	err = step_done(st, stmt, "settle the earlier counter's treatments from their pulses");
	release(st, stmt);
	n = err ? 0 : sqlite3_changes(st->db);
	if (n > 0) {
		snprintf(detail, sizeof(detail), "%d treatment(s) closed with the end counter unread "
			 "before the reset: settled from their recorded pulses", n);
		err = insert_audit(st, &(struct store_audit){
			.time_ms = now_ms, .kind = STORE_AUDIT_RECONCILE, .unit_serial = unit,
			.reason = "counter-reset", .detail = detail });
	}
	if (err)
		return err;
	err = prepare(st, &stmt, "UPDATE treatments SET outcome = 'unknown', end_ms = ?2"
		      " WHERE unit_serial = ?1 AND outcome = 'open'");
	if (err)
		return err;
	sqlite3_bind_text(stmt, 1, unit, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(stmt, 2, now_ms);
	err = step_done(st, stmt, "end the treatments of the earlier counter");
	release(st, stmt);
	n = err ? 0 : sqlite3_changes(st->db);
	if (n == 0)
		return err;
	snprintf(detail, sizeof(detail), "%d treatment(s) left open on the counter before the "
		 "reset: ended unknown (counted emitted), never settled from the new counter", n);
	return insert_audit(st, &(struct store_audit){
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

	if (!valid_name(unit_serial) || !op || !valid_label(op->name))
		return fail(st, -EINVAL, "a counter reset needs a unit and an operator");
	err = begin_write(st);
	if (!err)
		err = unit_high_water(st, unit_serial, &high, &found);
	if (!err && (!found || counter >= high))
		err = fail(st, -EALREADY, "unit %s: counter %u is not below the records", unit_serial,
			   counter);
	if (!err)
		err = prepare(st, &stmt, "INSERT INTO counter_resets (unit_serial, high_water,"
			      " counter, time_ms, operator_uid, operator_name)"
			      " VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
	if (!err) {
		sqlite3_bind_text(stmt, 1, unit_serial, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(stmt, 2, high);
		sqlite3_bind_int64(stmt, 3, counter);
		sqlite3_bind_int64(stmt, 4, now_ms);
		sqlite3_bind_int64(stmt, 5, op->uid);
		sqlite3_bind_text(stmt, 6, op->name, -1, SQLITE_TRANSIENT);
		err = step_done(st, stmt, "record the counter reset");
		release(st, stmt);
	}
	if (!err)
		err = end_earlier_epoch(st, unit_serial, now_ms);
	if (!err)
		err = commit(st);
	return err ? rollback(st, err) : 0;
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

	err = prepare(st, &stmt, "SELECT id FROM treatments WHERE unit_serial = ?1 AND"
		      " (outcome IN ('open', 'unknown') OR shot_at_end IS NULL)"
		      " AND counter_epoch = " UNIT_EPOCH("?1") " ORDER BY id LIMIT 16");
	if (err)
		return err;
	sqlite3_bind_text(stmt, 1, unit, -1, SQLITE_TRANSIENT);
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW)
		ids[n++] = sqlite3_column_int64(stmt, 0);
	release(st, stmt);
	if (rc != SQLITE_DONE)
		return sql_fail(st, rc, "look for treatments to settle");
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

	if (!t || !treatment_id || !valid_name(t->patch) || !valid_label(t->unit_firmware) ||
	    !valid_label(t->op.name) ||
	    t->cooldown_ms <= 0 || t->armed_ms <= 0 || !params_valid(&t->params))
		return fail(st, -EINVAL, "a treatment needs a session, a patch, the firmware, "
			    "an operator, parameters, the arming time and the cooldown");
	err = store_flush(st);
	if (err)
		return err;

	err = begin_write(st);
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
		err = commit(st);	/* synchronous=FULL: durable on return */
	free(patient);
	free(unit);
	return err ? rollback(st, err) : 0;
}

int store_treatment_mark_emitting(struct store *st, int64_t treatment_id, int64_t when_ms)
{
	sqlite3_stmt *stmt;
	int err;

	err = store_flush(st);		/* its first pulses with it */
	if (!err)
		err = prepare(st, &stmt, "UPDATE treatments SET emitting_ms = ?2"
			      " WHERE id = ?1 AND emitting_ms IS NULL");
	if (err)
		return err;
	sqlite3_bind_int64(stmt, 1, treatment_id);
	sqlite3_bind_int64(stmt, 2, when_ms);
	err = step_done(st, stmt, "record the emission");
	release(st, stmt);
	return err;
}

/* Inside the write transaction: outcome and shot_at_arm of a treatment. */
static int read_treatment_state(struct store *st, int64_t id, enum store_outcome *outcome,
				uint32_t *shot_at_arm, int64_t *recorded)
{
	sqlite3_stmt *stmt;
	int rc, err, o;

	err = prepare(st, &stmt, "SELECT outcome, shot_at_arm, pulses_recorded FROM treatments"
		      " WHERE id = ?1");
	if (err)
		return err;
	sqlite3_bind_int64(stmt, 1, id);
	rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW) {
		o = name_index(outcome_names, N_ELEMS(outcome_names), column_text(stmt, 0));
		*outcome = o < 0 ? STORE_OUTCOME_COMPLETED : (enum store_outcome)o;
		*shot_at_arm = (uint32_t)sqlite3_column_int64(stmt, 1);
		*recorded = sqlite3_column_int64(stmt, 2);
	} else {
		err = rc == SQLITE_DONE ? fail(st, -ENOENT, "no treatment %lld", (long long)id)
					: sql_fail(st, rc, "read treatment");
	}
	release(st, stmt);
	return err;
}

/* @count: the pulse count, or < 0 for the shots since arming. */
static int close_treatment(struct store *st, int64_t id, enum store_outcome outcome,
			   int64_t end_ms, int64_t end_rtc_s, bool shot_known, uint32_t shot_at_end,
			   uint32_t shot_at_arm, int64_t count)
{
	sqlite3_stmt *stmt;
	int err;

	err = prepare(st, &stmt, "UPDATE treatments SET outcome = ?2, end_ms = ?3,"
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
	err = step_done(st, stmt, "close treatment");
	release(st, stmt);
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
		return fail(st, -EINVAL, "a treatment ends completed, interrupted, fault or unknown");
	err = store_flush(st);
	if (!err)
		err = begin_write(st);
	if (!err)
		err = read_treatment_state(st, treatment_id, &now, &shot_at_arm, &recorded);
	if (!err && now != STORE_OUTCOME_OPEN)
		err = fail(st, -EALREADY, "treatment %lld is already %s", (long long)treatment_id,
			   outcome_names[now]);
	if (!err && f->shot_at_end_known && f->shot_at_end < shot_at_arm)
		err = fail(st, -ERANGE, "treatment %lld: shot counter %u is below %u at arming",
			   (long long)treatment_id, f->shot_at_end, shot_at_arm);
	if (!err)
		err = close_treatment(st, treatment_id, f->outcome, f->end_ms, f->end_rtc_s,
				      f->shot_at_end_known, f->shot_at_end, shot_at_arm,
				      f->count_reported ? recorded : -1);
	if (!err)
		err = commit(st);
	return err ? rollback(st, err) : 0;
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

	err = prepare(st, &stmt, "SELECT later.shot_at_arm FROM treatments AS t"
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
		err = sql_fail(st, rc, "look for later treatments");
	release(st, stmt);
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

	err = prepare(st, &stmt, "SELECT unit_serial, shot_at_end IS NOT NULL,"
		      " counter_epoch = " UNIT_EPOCH("treatments.unit_serial") " FROM treatments WHERE id = ?1");
	if (err)
		return err;
	sqlite3_bind_int64(stmt, 1, id);
	rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW) {
		*unit = strdup(column_text(stmt, 0));
		*end_known = sqlite3_column_int(stmt, 1) != 0;
		*this_epoch = sqlite3_column_int(stmt, 2) != 0;
		if (!*unit)
			err = fail(st, -ENOMEM, "out of memory");
	} else {
		err = rc == SQLITE_DONE ? fail(st, -ENOENT, "no treatment %lld", (long long)id)
					: sql_fail(st, rc, "read treatment");
	}
	release(st, stmt);
	return err;
}

/* A closed treatment's end counter, read late. */
static int set_end_counter(struct store *st, int64_t id, uint32_t shot_at_end,
			   uint32_t shot_at_arm)
{
	sqlite3_stmt *stmt;
	int err;

	err = prepare(st, &stmt, "UPDATE treatments SET shot_at_end = ?2, pulse_count = ?3"
		      " WHERE id = ?1 AND shot_at_end IS NULL");
	if (err)
		return err;
	sqlite3_bind_int64(stmt, 1, id);
	sqlite3_bind_int64(stmt, 2, shot_at_end);
	sqlite3_bind_int64(stmt, 3, (int64_t)shot_at_end - shot_at_arm);
	err = step_done(st, stmt, "record the end counter");
	release(st, stmt);
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

	err = prepare(st, &stmt, "SELECT rate_mhz, max(0, coalesce(end_ms, ?2) - armed_ms),"
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
		err = rc == SQLITE_DONE ? fail(st, -ENOENT, "no treatment %lld", (long long)id)
					: sql_fail(st, rc, "read treatment");
	}
	release(st, stmt);
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
		err = fail(st, -EALREADY, "treatment %lld is already %s", (long long)id,
			   outcome_names[now]);
	if (!err && !this_epoch)
		err = fail(st, -ESTALE, "treatment %lld was armed before its unit's counter was "
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
		err = fail(st, -ERANGE, "counter-went-back: treatment %lld: unit shot counter %u is "
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
		err = insert_audit(st, &(struct store_audit){
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
		err = begin_write(st);
	if (!err)
		err = settle_one(st, treatment_id, shot_count_now, now_ms, "the unit's counter");
	if (!err)
		err = commit(st);
	return err ? rollback(st, err) : 0;
}

int store_get_treatment(struct store *st, int64_t treatment_id, store_treatment_cb cb, void *ctx)
{
	sqlite3_stmt *stmt;
	int n, err;

	err = prepare(st, &stmt, "SELECT " TREATMENT_COLUMNS " FROM treatments WHERE id = ?1");
	if (err)
		return err;
	sqlite3_bind_int64(stmt, 1, treatment_id);
	n = visit_treatments(st, stmt, cb, ctx);
	release(st, stmt);
	if (n == 0)
		return fail(st, -ENOENT, "no treatment %lld", (long long)treatment_id);
	return n < 0 ? n : 0;
}

int store_patient_history(struct store *st, const char *patient, store_treatment_cb cb, void *ctx)
{
	sqlite3_stmt *stmt;
	int n, err;

	err = prepare(st, &stmt, "SELECT " TREATMENT_COLUMNS " FROM treatments"
		      " WHERE patient = ?1 COLLATE NOCASE ORDER BY armed_ms, id");
	if (err)
		return err;
	bind_text_or_null(stmt, 1, patient);
	n = visit_treatments(st, stmt, cb, ctx);
	release(st, stmt);
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
		err = prepare(st, &stmt, "SELECT " TREATMENT_COLUMNS " FROM treatments"
			      " INDEXED BY treatments_unsettled"
			      " WHERE (outcome IN ('open', 'unknown') OR shot_at_end IS NULL)"
			      "  AND unit_serial = ?1"
			      "  AND counter_epoch = " UNIT_EPOCH("treatments.unit_serial")
			      " ORDER BY +armed_ms, id");
	else
		err = prepare(st, &stmt, "SELECT " TREATMENT_COLUMNS " FROM treatments"
			      " WHERE (outcome IN ('open', 'unknown') OR shot_at_end IS NULL)"
			      "  AND counter_epoch = " UNIT_EPOCH("treatments.unit_serial")
			      " ORDER BY +armed_ms, id");
	if (err)
		return err;
	if (unit_serial)
		sqlite3_bind_text(stmt, 1, unit_serial, -1, SQLITE_TRANSIENT);
	n = visit_treatments(st, stmt, cb, ctx);
	release(st, stmt);
	return n;
}

/* ---- queries ----------------------------------------------------------- */

int store_last_emission(struct store *st, const char *patient, const char *patch,
			int64_t *when_ms)
{
	if (!nonempty(patient) || !nonempty(patch) || !when_ms)
		return fail(st, -EINVAL, "last emission needs a patient and a patch");
	return last_emission_except(st, patient, patch, 0, when_ms);
}

int store_patient_summary(struct store *st, const char *patient,
			  struct store_patient_summary *out)
{
	sqlite3_stmt *stmt;
	int rc, err;

	if (!nonempty(patient) || !out)
		return fail(st, -EINVAL, "summary needs a patient");
	err = prepare(st, &stmt, "SELECT count(e), coalesce(min(e), 0), coalesce(max(e), 0) FROM"
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
		err = sql_fail(st, rc, "patient summary");
	}
	release(st, stmt);
	return err;
}

int store_newest_record_ms(struct store *st, int64_t *when_ms)
{
	bool is_null = true;
	int err;

	err = query_int64(st, "SELECT max(armed_ms) FROM treatments", when_ms, &is_null);
	if (err)
		return err;
	if (is_null)
		*when_ms = 0;
	return is_null ? 0 : 1;
}

/* ---- audit ------------------------------------------------------------- */

static int insert_audit(struct store *st, const struct store_audit *a)
{
	sqlite3_stmt *stmt;
	int err;

	err = prepare(st, &stmt, "INSERT INTO audit (time_ms, kind, operator_uid, operator_name,"
		      " unit_serial, session_id, reason, detail)"
		      " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
	if (err)
		return err;
	sqlite3_bind_int64(stmt, 1, a->time_ms);
	sqlite3_bind_text(stmt, 2, audit_kind_names[a->kind], -1, SQLITE_STATIC);
	if (a->has_operator) {
		sqlite3_bind_int64(stmt, 3, a->op.uid);
		bind_text_or_null(stmt, 4, a->op.name);
	}
	bind_text_or_null(stmt, 5, a->unit_serial);
	if (a->session_id)
		sqlite3_bind_int64(stmt, 6, a->session_id);
	bind_free_text(stmt, 7, a->reason);
	bind_free_text(stmt, 8, a->detail);
	err = step_done(st, stmt, "record audit");
	release(st, stmt);
	return err;
}

int store_audit(struct store *st, const struct store_audit *a)
{
	if (!a || (unsigned)a->kind >= STORE_AUDIT__COUNT)
		return fail(st, -EINVAL, "bad audit record");
	return insert_audit(st, a);	/* one statement: its own durable transaction */
}

int store_audit_once(struct store *st, const struct store_audit *a)
{
	sqlite3_stmt *stmt;
	int rc, err;

	if (!a || (unsigned)a->kind >= STORE_AUDIT__COUNT)
		return fail(st, -EINVAL, "bad audit record");
	err = prepare(st, &stmt, "SELECT 1 FROM audit WHERE time_ms = ?1 AND kind = ?2"
		      " AND operator_uid IS ?3 AND unit_serial IS ?4 AND session_id IS ?5"
		      " AND reason IS ?6 AND detail IS ?7 LIMIT 1");
	if (err)
		return err;
	sqlite3_bind_int64(stmt, 1, a->time_ms);
	sqlite3_bind_text(stmt, 2, audit_kind_names[a->kind], -1, SQLITE_STATIC);
	if (a->has_operator)
		sqlite3_bind_int64(stmt, 3, a->op.uid);
	bind_text_or_null(stmt, 4, a->unit_serial);
	if (a->session_id)
		sqlite3_bind_int64(stmt, 5, a->session_id);
	bind_free_text(stmt, 6, a->reason);
	bind_free_text(stmt, 7, a->detail);
	rc = sqlite3_step(stmt);
	release(st, stmt);
	if (rc == SQLITE_ROW)
		return 1;
	if (rc != SQLITE_DONE)
		return sql_fail(st, rc, "look for an audit record");
	return insert_audit(st, a);
}

int store_audit_list(struct store *st, int64_t since_ms, store_audit_cb cb, void *ctx)
{
	sqlite3_stmt *stmt;
	int rc, n = 0, err, kind;

	err = prepare(st, &stmt, "SELECT id, time_ms, kind, operator_uid, operator_name,"
		      " unit_serial, coalesce(session_id, 0), reason, detail FROM audit"
		      " WHERE time_ms >= ?1 ORDER BY time_ms, id");
	if (err)
		return err;
	sqlite3_bind_int64(stmt, 1, since_ms);
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		kind = name_index(audit_kind_names, N_ELEMS(audit_kind_names), column_text(stmt, 2));
		struct store_audit a = {
			.time_ms = sqlite3_column_int64(stmt, 1),
			.kind = kind < 0 ? STORE_AUDIT__COUNT : (enum store_audit_kind)kind,
			.has_operator = sqlite3_column_type(stmt, 3) != SQLITE_NULL,
			.op = { (uint32_t)sqlite3_column_int64(stmt, 3), column_text_or_null(stmt, 4) },
			.unit_serial = column_text_or_null(stmt, 5),
			.session_id = sqlite3_column_int64(stmt, 6),
			.reason = column_text_or_null(stmt, 7),
			.detail = column_text_or_null(stmt, 8),
		};
		n++;
		if (cb(sqlite3_column_int64(stmt, 0), &a, ctx))
			break;
	}
	err = (rc == SQLITE_ROW || rc == SQLITE_DONE) ? n : sql_fail(st, rc, "read audit");
	release(st, stmt);
	return err;
}

/* ---- transactions for the store's other files (store-private.h) -------- */

int store_prepare(struct store *st, sqlite3_stmt **stmt, const char *sql)
{
	return prepare(st, stmt, sql);
}

void store_release(struct store *st, sqlite3_stmt *stmt)
{
	if (stmt)
		release(st, stmt);
}

int store_tx_begin(struct store *st)
{
	return begin_write(st);
}

int store_tx_commit(struct store *st)
{
	return commit(st);
}

int store_tx_rollback(struct store *st, int err)
{
	return rollback(st, err);
}

int store_tx_audit(struct store *st, const struct store_audit *a)
{
	if (!a || (unsigned)a->kind >= STORE_AUDIT__COUNT)
		return fail(st, -EINVAL, "bad audit record");
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
			return fail(st, -ENOMEM, "out of memory");
		rc = sqlite3_prepare_v2(st->db, explain, -1, &stmt, NULL);
		free(explain);
		if (rc != SQLITE_OK)
			return sql_fail(st, rc, "explain");
		n++;
		while ((rc = sqlite3_step(stmt)) == SQLITE_ROW)
			if (cb(sql, column_text(stmt, 3), ctx))
				break;
		sqlite3_finalize(stmt);
		if (rc != SQLITE_ROW && rc != SQLITE_DONE)
			return sql_fail(st, rc, "explain");
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
