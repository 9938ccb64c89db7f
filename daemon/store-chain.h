/* SPDX-License-Identifier: MIT */
/*
 * Tamper evidence for the records (issue 15.12): every audit row, every
 * version of a treatment row and every row of the clinical record (issue 16)
 * is chained with SHA-256 in the table
 * record_chain, so that a row changed, deleted or inserted behind
 * smplaserd's back shows (store_chain_verify).  docs/records-chain.md is the
 * definition other implementations follow (the PostgreSQL backend); the
 * encoding in short:
 *
 *   enc(NULL)    = 0x00
 *   enc(integer) = 0x01 + 8 bytes, two's complement, big-endian
 *   enc(text)    = 0x02 + 4-byte big-endian length + the UTF-8 bytes
 *   enc(blob)    = 0x03 + 4-byte big-endian length + the bytes
 *
 *   digest(row)  = SHA-256(enc("smplaser-chain-1") enc(table) enc(row id)
 *                          enc(column) ... in the order of the lists below)
 *                  where a treatment whose outcome is 'open' has its pulse
 *                  summary columns (flag 1 below) encoded as NULL
 *   hash(n)      = SHA-256(hash(n-1) || 8-byte big-endian n || digest(n)),
 *                  hash(0) = 32 zero bytes; n = 1, 2, 3 ... without gaps.
 *
 * The chain is kept by triggers (the migration in store_chain_schema), so
 * every write of the store, whoever's code makes it, is chained in the same
 * transaction as the row and on the connection that writes it (the daemon's
 * records writer thread).  The triggers call the SQL functions
 * smpl_chain_digest() and smpl_chain_link(): every connection that writes the
 * records must have them (store_chain_register); store.c registers them on
 * each connection it opens.  A connection without them (the sqlite3 shell)
 * cannot write an audit or treatment row unless it drops the triggers, and
 * then the row is not in the chain.
 */
#ifndef SMPLASER_STORE_CHAIN_H
#define SMPLASER_STORE_CHAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#define STORE_CHAIN_TAG		"smplaser-chain-1"
#define STORE_CHAIN_HASH_LEN	32
#define STORE_CHAIN_HEX_LEN	(2 * STORE_CHAIN_HASH_LEN)

/* The chained columns of each table, in order (X(name, masked while open)). */
#define STORE_CHAIN_AUDIT_COLUMNS(X) \
	X(time_ms, 0) X(kind, 0) X(operator_uid, 0) X(operator_name, 0) \
	X(unit_serial, 0) X(session_id, 0) X(reason, 0) X(detail, 0)

#define STORE_CHAIN_TREATMENT_COLUMNS(X) \
	X(session_id, 0) X(patient, 0) X(patch, 0) X(unit_serial, 0) X(unit_firmware, 0) \
	X(operator_uid, 0) X(operator_name, 0) X(wavelength_nm, 0) X(fluence_mj_cm2, 0) \
	X(spot_um, 0) X(pulse_ps, 0) X(rate_mhz, 0) X(set_energy_uj, 0) X(armed_ms, 0) \
	X(armed_rtc_s, 0) X(end_ms, 0) X(end_rtc_s, 0) X(shot_at_arm, 0) X(shot_at_end, 0) \
	X(pulse_count, 0) X(pulses_recorded, 1) X(energy_min_uj, 1) X(energy_max_uj, 1) \
	X(energy_sum_uj, 1) X(last_pulse_ms, 1) X(outcome, 0) X(emitting_ms, 0)

/*
 * The clinical record (issue 16, schema step 8, store-clinical.c): each row
 * once, when it is inserted (these rows are never changed).
 */
#define STORE_CHAIN_ENDPOINT_COLUMNS(X) \
	X(session_id, 0) X(treatment_id, 0) X(patient, 0) X(patch, 0) X(endpoint, 0) \
	X(note, 0) X(time_ms, 0) X(operator_uid, 0) X(operator_name, 0)

#define STORE_CHAIN_FOLLOW_UP_COLUMNS(X) \
	X(patient, 0) X(patch, 0) X(time_ms, 0) X(redness_resolved, 0) \
	X(pigment_remaining_pct, 0) X(note, 0) X(operator_uid, 0) X(operator_name, 0)

#define STORE_CHAIN_ADVERSE_COLUMNS(X) \
	X(follow_up_id, 0) X(kind, 0) X(holds, 0)

#define STORE_CHAIN_REVIEW_COLUMNS(X) \
	X(patient, 0) X(patch, 0) X(time_ms, 0) X(cleared_through, 0) X(note, 0) \
	X(operator_uid, 0) X(operator_name, 0)

/* A table's chain trigger (a row chained once, when inserted), for a migration step. */
#define STORE_CHAIN_NEW_COL(n, m)	", NEW." #n
#define STORE_CHAIN_INSERT_TRIGGER(table, COLUMNS) \
	"CREATE TRIGGER IF NOT EXISTS " table "_chain AFTER INSERT ON " table " BEGIN" \
	"  INSERT INTO record_chain_append (tbl, row_id, digest)" \
	"   VALUES ('" table "', NEW.id, smpl_chain_digest('" table "', NEW.id" \
	COLUMNS(STORE_CHAIN_NEW_COL) "));" \
	" END;"

/*
 * The migration step that adds the chain (and the unit counters of
 * store-restore.c) and chains the rows already there: audit rows in id order,
 * then treatments in id order.
 */
extern const char store_chain_schema[];

/* smpl_chain_digest() and smpl_chain_link() on @db.  SQLite result code. */
int store_chain_register(sqlite3 *db);

/* ---- the encoding, for other backends ------------------------------------------ */

enum store_chain_type {
	STORE_CHAIN_NULL = 0,
	STORE_CHAIN_INTEGER,
	STORE_CHAIN_TEXT,
	STORE_CHAIN_BLOB,
};

struct store_chain_value {
	enum store_chain_type type;
	int64_t i;			/* INTEGER */
	const void *p;			/* TEXT (UTF-8, not NUL-terminated) or BLOB */
	size_t len;
};

/*
 * digest(row) of @table ("audit" or "treatments") from the values of its
 * chained columns in order (@n must be their number).  0, or -EINVAL.
 */
int store_chain_digest(const char *table, int64_t row_id, const struct store_chain_value *v,
		       size_t n, uint8_t out[STORE_CHAIN_HASH_LEN]);
/* hash(seq) from hash(seq - 1) and digest(seq). */
void store_chain_link(const uint8_t prev[STORE_CHAIN_HASH_LEN], int64_t seq,
		      const uint8_t digest[STORE_CHAIN_HASH_LEN], uint8_t out[STORE_CHAIN_HASH_LEN]);
/* Lower-case hex, NUL-terminated (@hex has STORE_CHAIN_HEX_LEN + 1 bytes). */
void store_chain_hex(const uint8_t hash[STORE_CHAIN_HASH_LEN], char *hex);

/* ---- the head, and checking a whole database ------------------------------------ */

struct store_chain_head {
	int64_t seq;				/* 0: nothing chained yet */
	uint8_t hash[STORE_CHAIN_HASH_LEN];	/* hash(seq) (zeros for 0) */
};

/* The newest entry.  0, or a negative errno (-ENOENT: no chain in @db). */
int store_chain_read_head(sqlite3 *db, struct store_chain_head *head, char *msg, size_t msg_len);
struct store;
/* The same on a store's connection (store_errmsg() says why it failed). */
int store_chain_head(struct store *st, struct store_chain_head *head);

#define STORE_CHAIN_PROBLEMS_MAX	10

struct store_chain_problem {
	int64_t position;		/* where in the chain (entry seq; for the order) */
	char text[200];
};

struct store_chain_report {
	int64_t entries;		/* chain entries read */
	int64_t audit_rows, treatment_rows;
	int64_t clinical_rows;		/* endpoints, follow-ups, adverse events, reviews */
	struct store_chain_head head;
	int64_t problems;		/* all found */
	size_t shown;			/* the first (by position) of them, below */
	struct store_chain_problem problem[STORE_CHAIN_PROBLEMS_MAX];
};

/*
 * Walks the chain of @db (a connection with store_chain_register) and checks
 * every audit and treatment row against it; memory does not grow with the
 * records.  @anchor (may be NULL): a head logged earlier (the journal), whose
 * entry must still be there with the same hash.  Returns 0 when the records
 * verify, 1 when problems were found (@rep says which, the first first), or a
 * negative errno when @db cannot be checked (@msg says why).
 */
int store_chain_verify(sqlite3 *db, const struct store_chain_head *anchor,
		       struct store_chain_report *rep, char *msg, size_t msg_len);

/* "SEQ:HEX" (as logged) into @head.  0 or -EINVAL. */
int store_chain_parse_head(const char *s, struct store_chain_head *head);

#endif /* SMPLASER_STORE_CHAIN_H */
