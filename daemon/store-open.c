// SPDX-License-Identifier: MIT
/*
 * Opening smplaserd's records (store.h): the file, its identity, the schema
 * as a list of migration steps (step N brings a database from user_version
 * N-1 to N), the connection's settings, the integrity check, closing.
 * Records are never deleted (triggers refuse it) and a closed treatment's
 * facts never change; only its pulse summary grows when a late pulse report
 * arrives.
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

/*
 * v9: the unit's sessions by id, for its last session (store-restore.c: the
 * account of shots the records miss, at a probe or an arming), which scanned
 * every session before (test_every_query_uses_an_index found it once that
 * file's statements went through the statement cache).
 */
static const char schema_sessions_by_unit[] =
	"CREATE INDEX sessions_by_unit ON sessions(unit_serial, id);";

/*
 * v10: the unit's counter when each session began, in its counter epoch
 * (store-restore.c): shots the records miss that the unit had already fired
 * when a session began are never counted on that session.  NULL when not
 * known (sessions of earlier versions, a unit that did not answer); set at
 * the start, never changed.
 */
static const char schema_session_start_counter[] =
	"ALTER TABLE sessions ADD COLUMN start_counter INTEGER CHECK (start_counter >= 0);"
	"ALTER TABLE sessions ADD COLUMN start_epoch INTEGER;"
	"CREATE TRIGGER sessions_start_counter BEFORE UPDATE OF start_counter, start_epoch"
	"  ON sessions"
	"  BEGIN SELECT RAISE(ABORT, 'the counter a session began at is never changed'); END;";

static const char *const migrations[STORE_SCHEMA_VERSION] = {
	schema_v1,
	schema_v2,
	schema_v3,
	schema_v4,
	store_chain_schema,	/* 5: the hash chain and unit counters (store-chain.c) */
	schema_counter_epochs,	/* 6: counter epochs, a pulse row per (treatment, shot) */
	schema_v7_empty,	/* 7: nothing; databases made while it was declared say 7 */
	store_clinical_schema,	/* 8: the clinical record (store-clinical.c) */
	schema_sessions_by_unit,	/* 9: a unit's last session */
	schema_session_start_counter,	/* 10: the counter each session began at */
};

/* ---- opening ----------------------------------------------------------- */

static int make_state_dir(struct store *st, const char *dir)
{
	struct stat sb;

	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return store_set_error(st, -errno, "cannot create state directory %s: %s", dir, strerror(errno));
	if (stat(dir, &sb) < 0)
		return store_set_error(st, -errno, "cannot use state directory %s: %s", dir, strerror(errno));
	if (!S_ISDIR(sb.st_mode))
		return store_set_error(st, -ENOTDIR, "state directory %s is not a directory", dir);
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
			return store_set_error(st, -EISDIR, "%s is a directory, not a records database", st->path);
		if (!S_ISREG(sb.st_mode))
			return store_set_error(st, -EINVAL, "%s is not a regular file (symlink, device or fifo?)",
				    st->path);
		fd = open(st->path, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			return store_set_error(st, -errno, "cannot open %s for reading and writing: %s",
				    st->path, strerror(errno));
		close(fd);
		return 0;
	}
	if (errno != ENOENT)
		return store_set_error(st, -errno, "cannot stat %s: %s", st->path, strerror(errno));

	fd = open(st->path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return store_set_error(st, -errno, "cannot create %s: %s", st->path, strerror(errno));
	err = fchmod(fd, 0600) < 0 ? -errno : 0;	/* whatever the umask */
	close(fd);
	if (!err)
		err = fsync_dir(dir);
	if (err)
		return store_set_error(st, err, "cannot create %s: %s", st->path, strerror(-err));
	return 0;
}

/* PRAGMA quick_check: "ok" or the first problem. */
static int check_integrity(struct store *st)
{
	sqlite3_stmt *stmt;
	int rc, err = store_prepare(st, &stmt, "PRAGMA quick_check(1)");

	if (err == -EUCLEAN)
		return store_set_error(st, err, "%s is corrupt (%s)", st->path, sqlite3_errmsg(st->db));
	if (err)
		return store_set_error(st, err, "cannot check %s (%s)", st->path, sqlite3_errmsg(st->db));
	rc = sqlite3_step(stmt);
	if (rc != SQLITE_ROW) {
		err = store_errno_of_sqlite(st->db, rc);
		err = store_set_error(st, err, err == -EUCLEAN ? "%s is corrupt (%s)" :
			   err == -ECANCELED ? "%s: integrity check cancelled (%s)" :
			   "cannot check %s (%s)", st->path, sqlite3_errmsg(st->db));
	} else if (strcmp(store_column_text(stmt, 0), "ok") != 0) {
		err = store_set_error(st, -EUCLEAN, "%s is corrupt (quick_check: %s)", st->path,
			   store_column_text(stmt, 0));
	}
	store_release(st, stmt);
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

	err = store_query_int64(st, "PRAGMA application_id", &app_id, NULL);
	if (!err)
		err = store_query_int64(st, "PRAGMA user_version", &user_version, NULL);
	if (!err)
		err = store_query_int64(st, "SELECT count(*) FROM sqlite_schema", &tables, NULL);
	if (err == -EUCLEAN)
		return store_set_error(st, err, "%s is corrupt or not an SQLite database (%s); "
			    "refusing to use it", st->path, sqlite3_errmsg(st->db));
	if (err)
		return store_set_error(st, err, "cannot read %s (%s)", st->path, sqlite3_errmsg(st->db));

	if (app_id == 0 && user_version == 0 && tables == 0) {
		*version = 0;	/* new, empty */
		return 0;
	}
	if (app_id != STORE_APPLICATION_ID)
		return store_set_error(st, -EMEDIUMTYPE, "%s is an SQLite database but not smplaser's "
			    "records (application_id %#llx); refusing to use it",
			    st->path, (unsigned long long)app_id);
	if (user_version > STORE_SCHEMA_VERSION || user_version < 1)
		return store_set_error(st, user_version < 1 ? -EUCLEAN : -EPROTONOSUPPORT,
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
	err = store_exec(st, sql);
	if (!err)
		err = store_exec(st, "PRAGMA mmap_size = 0");
	return err;
}

/*
 * Before migrating: everything but WAL, which rewrites the file's header;
 * a database that its migration refuses is left exactly as it was.
 */
static int configure_before_migration(struct store *st)
{
	int err = store_exec(st, "PRAGMA synchronous = FULL");

	if (!err)
		err = store_exec(st, "PRAGMA foreign_keys = ON");
	return err;
}

/* The log and its index stay on disk between two runs (STORE_WAL_LIMIT_BYTES). */
static int keep_the_log(struct store *st)
{
	char sql[64];
	int persist = 1, rc;

	rc = sqlite3_file_control(st->db, "main", SQLITE_FCNTL_PERSIST_WAL, &persist);
	if (rc != SQLITE_OK)
		return store_sql_error(st, rc, "keep the log");
	snprintf(sql, sizeof(sql), "PRAGMA journal_size_limit = %d", STORE_WAL_LIMIT_BYTES);
	return store_exec(st, sql);
}

static int configure_connection(struct store *st)
{
	struct store_settings s;
	int err;

	err = store_exec(st, "PRAGMA journal_mode = WAL");
	if (!err)
		err = keep_the_log(st);
	if (!err)
		err = store_exec(st, "PRAGMA synchronous = FULL");
	if (!err)
		err = store_exec(st, "PRAGMA foreign_keys = ON");
	if (!err)
		err = bound_caches(st);
	if (!err)
		err = store_get_settings(st, &s);
	if (err)
		return err;
	if (strcmp(s.journal_mode, "wal") != 0 || s.synchronous != 2 || !s.foreign_keys)
		return store_set_error(st, -EIO, "%s: cannot set WAL, synchronous=FULL and foreign keys "
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
	err = store_tx_begin(st);
	if (err)
		return err;
	for (; v < to && !err; v++) {
		if (v == 0) {
			snprintf(sql, sizeof(sql), "PRAGMA application_id = %d",
				 STORE_APPLICATION_ID);
			err = store_exec(st, sql);
		}
		if (!err)
			err = store_exec_as(st, migrations[v], "schema");
		if (err)
			break;
	}
	snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", to);
	if (!err)
		err = store_exec(st, sql);
	if (!err)
		err = store_tx_commit(st);
	if (!err)
		return 0;
	memcpy(why, st->msg, sizeof(why));
	return store_tx_rollback(st, store_set_error(st, err, "migration to schema version %d failed: %s",
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
		return store_set_error(st, -errno, "cannot use %s: %s", st->path, strerror(errno));
	if (S_ISDIR(sb.st_mode))
		return store_set_error(st, -EISDIR, "%s is a directory, not a records database", st->path);
	if (!S_ISREG(sb.st_mode))
		return store_set_error(st, -EINVAL, "%s is not a regular file (symlink, device or fifo?)",
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
	if (!store_nonempty(state_dir))
		return store_set_error(st, -EINVAL, "no state directory given");
	if (asprintf(&st->path, "%s/%s", state_dir, STORE_DB_NAME) < 0) {
		st->path = NULL;
		return store_set_error(st, -ENOMEM, "out of memory");
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
		return store_set_error(st, store_errno_of_sqlite(st->db, rc), "cannot open %s: %s",
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
		return store_sql_error(st, rc, "register the chain's functions");
	sqlite3_db_config(st->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
	if (mode == OPEN_CHECK)
		return 0;
	err = identify(st, version);
	if (!err && mode == OPEN_READER && *version != STORE_SCHEMA_VERSION)
		err = store_set_error(st, -ESTALE, "%s has schema version %d, not %d: open it for writing "
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
		err = store_exec(st, "PRAGMA query_only = ON");
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
		err = store_set_error(st, -EEXIST, "%s already exists", st->path);
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
	err = store_prepare(st, &stmt, "PRAGMA journal_mode");
	if (err)
		return err;
	rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW)
		snprintf(out->journal_mode, sizeof(out->journal_mode), "%s", store_column_text(stmt, 0));
	store_release(st, stmt);
	if (rc != SQLITE_ROW)
		return store_sql_error(st, rc, "PRAGMA journal_mode");

	err = store_query_int64(st, "PRAGMA synchronous", &v, NULL);
	if (err)
		return err;
	out->synchronous = (int)v;
	err = store_query_int64(st, "PRAGMA foreign_keys", &v, NULL);
	if (err)
		return err;
	out->foreign_keys = v != 0;
	err = store_query_int64(st, "PRAGMA user_version", &v, NULL);
	if (err)
		return err;
	out->schema_version = (int)v;
	err = store_query_int64(st, "PRAGMA cache_size", &out->cache_size, NULL);
	if (!err)
		err = store_query_int64(st, "PRAGMA mmap_size", &out->mmap_size, NULL);
	return err;
}

