/* SPDX-License-Identifier: MIT */
/*
 * The clinic's records on PostgreSQL (DESIGN S2, S3, section 6; issue 14),
 * through libpq: the records backend store_ops_pg (store-ops.h).
 *
 * Every workstation of a clinic runs smplaserd with [records]
 * backend = postgresql on one database.  The schema lives in the schema
 * "smplaser" of that database (store_pg_print_schema() prints it).  The
 * database itself refuses a treatment of a patient's patch inside the
 * cooldown of any workstation's treatment of it: an exclusion constraint
 * (btree_gist) over each treatment's cooldown window, and every arming
 * decided in a SERIALIZABLE transaction (retried on serialization failures),
 * so that the test-spot rule and the session's pulse budget hold across
 * workstations too.
 *
 * What the daemon records as a treatment goes on goes into the
 * workstation's journal (journal.h) and is shipped from there, in order and
 * exactly once, by a shipper thread and before every write that reads the
 * records (arming, a session, settling).  While the server cannot be
 * reached, what needs it fails with -ENOTCONN (RecordsUnavailable) and what
 * does not waits in the journal.
 */
#ifndef SMPLASER_DAEMON_STORE_PG_H
#define SMPLASER_DAEMON_STORE_PG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "store-ops.h"

#define STORE_PG_SCHEMA_VERSION	3
#define STORE_PG_TIMEOUT_MS	10000	/* a round trip to the server, at most */

struct store_pg;

struct store_pg_config {
	const char *conninfo;		/* a libpq connection string (no password) */
	const char *workstation;	/* this workstation's name in the records */
	const char *state_dir;		/* where the journal lives (the writer) */
	int64_t clock_skew_ms;		/* S8: host clock vs the server's, at arming */
	int64_t cooldown_ms;		/* store_pg_import(): imported treatments' cooldown */
};

/*
 * The writer: opens the journal, starts the shipper and connects.  If the
 * server answers, its schema is checked, created in an empty database or
 * migrated; a database that is not ours or newer, or a role without rights,
 * is refused here (-EMEDIUMTYPE, -EPROTONOSUPPORT, -EACCES with @msg).  A
 * server that does not answer is no reason to refuse: the writer connects
 * when it needs to (@msg then says why it could not now, and
 * store_pg_reachable() is false).
 */
int store_pg_open(struct store_pg **out, const struct store_pg_config *cfg, char *msg,
		  size_t msg_len);
/* A handle for queries only: connects when first used. */
int store_pg_open_reader(struct store_pg **out, const struct store_pg_config *cfg, char *msg,
			 size_t msg_len);
void store_pg_close(struct store_pg *h);
/* Connects once: the schema checked, created in an empty database.  0 or -errno, @msg. */
int store_pg_prepare(const struct store_pg_config *cfg, char *msg, size_t msg_len);
bool store_pg_reachable(const struct store_pg *h);

extern const struct store_ops store_ops_pg;

/*
 * The SQL that creates the schema, for a site where an administrator
 * creates it: run by the database's owner; the daemon's login role @role
 * gets SELECT, INSERT and the UPDATEs it needs, never DELETE or TRUNCATE.
 */
void store_pg_print_schema(FILE *f, const char *role);

/* Checks a connection string: no password in it (libpq's pgpass or service file). */
int store_pg_conninfo_check(const char *conninfo, char *msg, size_t msg_len);

/*
 * Import the SQLite records of @state_dir (records.db, store.h) into the
 * clinic's database as workstation cfg->workstation: once; a second run adds
 * nothing.  A conflict is reported, never merged silently: a unit's shot
 * already recorded for another treatment, or an imported treatment inside
 * the cooldown of another workstation's treatment of the same patch (it is
 * imported, marked import_conflict, so the rules still see it).  Every
 * conflict is a line on @report and an audit record.
 */
struct store_pg_import_result {
	unsigned int units, sessions, treatments, pulses, audit;	/* added */
	unsigned int clinical;		/* endpoints, follow-ups, adverse events, reviews added */
	unsigned int skipped;		/* there already (an earlier import) */
	unsigned int conflicts;
};
int store_pg_import(const struct store_pg_config *cfg, const char *sqlite_state_dir,
		    FILE *report, struct store_pg_import_result *res, char *msg, size_t msg_len);

#endif /* SMPLASER_DAEMON_STORE_PG_H */
