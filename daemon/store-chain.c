// SPDX-License-Identifier: MIT
/*
 * The records' hash chain: see store-chain.h and docs/records-chain.md.
 * SHA-256 is libgcrypt's: the library libsystemd loads already (OpenSSL's
 * libcrypto cost the daemon 3.4 MiB of resident memory for this one hash).
 */
#include "store-chain.h"
#include "store-private.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pthread.h>

#include <gcrypt.h>

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* ---- the columns ----------------------------------------------------------------- */

#define COL_NAME(n, m)		#n,
#define COL_MASK(n, m)		m,
#define COL_ENUM(n, m)		T_##n,

static const char *const audit_columns[] = { STORE_CHAIN_AUDIT_COLUMNS(COL_NAME) };
static const char *const treatment_columns[] = { STORE_CHAIN_TREATMENT_COLUMNS(COL_NAME) };
static const bool treatment_masked[] = { STORE_CHAIN_TREATMENT_COLUMNS(COL_MASK) };
enum { STORE_CHAIN_TREATMENT_COLUMNS(COL_ENUM) T__COUNT };

struct chained_table {
	const char *name;
	const char *const *columns;
	size_t n;
};

static const char *const endpoint_columns[] = { STORE_CHAIN_ENDPOINT_COLUMNS(COL_NAME) };
static const char *const follow_up_columns[] = { STORE_CHAIN_FOLLOW_UP_COLUMNS(COL_NAME) };
static const char *const adverse_columns[] = { STORE_CHAIN_ADVERSE_COLUMNS(COL_NAME) };
static const char *const review_columns[] = { STORE_CHAIN_REVIEW_COLUMNS(COL_NAME) };

static const struct chained_table tables[] = {
	{ "audit", audit_columns, N_ELEMS(audit_columns) },
	{ "treatments", treatment_columns, N_ELEMS(treatment_columns) },
	/* the clinical record (issue 16, schema step 8): written once each */
	{ "endpoints", endpoint_columns, N_ELEMS(endpoint_columns) },
	{ "follow_ups", follow_up_columns, N_ELEMS(follow_up_columns) },
	{ "adverse_events", adverse_columns, N_ELEMS(adverse_columns) },
	{ "hold_reviews", review_columns, N_ELEMS(review_columns) },
};

static const struct chained_table *table_named(const char *name, size_t len)
{
	for (size_t i = 0; i < N_ELEMS(tables); i++)
		if (strlen(tables[i].name) == len && memcmp(tables[i].name, name, len) == 0)
			return &tables[i];
	return NULL;
}

/* ---- the schema -------------------------------------------------------------------- */

#define NEW_COL(n, m)		", NEW." #n
#define OLD_COL(n, m)		", OLD." #n
#define ROW_COL(n, m)		", " #n

#define AUDIT_DIGEST(P)		"smpl_chain_digest('audit', " P "id" \
				STORE_CHAIN_AUDIT_COLUMNS(P##_COL) ")"
#define TREATMENT_DIGEST(P)	"smpl_chain_digest('treatments', " P "id" \
				STORE_CHAIN_TREATMENT_COLUMNS(P##_COL) ")"
#define NEW			"NEW."
#define OLD			"OLD."
#define ROW			""

/*
 * The step does not depend on its place among the migrations (schema version
 * 5, after issue 12's indexes): it names every column it chains, creates
 * only what is not there yet, and chains the rows already there only into an
 * empty chain (run again, on records with a chain, it adds nothing: rows
 * written behind that chain stay found by verify).  The table names no
 * chained table in a CHECK, so that a later step can chain one of its own
 * (and a later version of verify knows it); a later step that rebuilds audit
 * or treatments (its triggers go with the table) runs this again after.
 */
const char store_chain_schema[] =
	"CREATE TABLE IF NOT EXISTS record_chain ("
	"  seq INTEGER PRIMARY KEY,"
	"  tbl TEXT NOT NULL,"
	"  row_id INTEGER NOT NULL,"
	"  digest BLOB NOT NULL CHECK (length(digest) = 32),"
	"  hash BLOB NOT NULL CHECK (length(hash) = 32)"
	") STRICT;"
	"CREATE INDEX IF NOT EXISTS record_chain_by_row ON record_chain(tbl, row_id, seq);"
	"CREATE TRIGGER IF NOT EXISTS record_chain_keep BEFORE DELETE ON record_chain"
	"  BEGIN SELECT RAISE(ABORT, 'records are never deleted'); END;"
	"CREATE TRIGGER IF NOT EXISTS record_chain_fixed BEFORE UPDATE ON record_chain"
	"  BEGIN SELECT RAISE(ABORT, 'the record chain is never changed'); END;"
	/* One place computes the link: each row inserted here is the next entry. */
	"CREATE VIEW IF NOT EXISTS record_chain_append AS SELECT tbl, row_id, digest"
	"  FROM record_chain WHERE 0;"
	"CREATE TRIGGER IF NOT EXISTS record_chain_link INSTEAD OF INSERT ON record_chain_append"
	" BEGIN"
	"  INSERT INTO record_chain (seq, tbl, row_id, digest, hash)"
	"   SELECT h.seq + 1, NEW.tbl, NEW.row_id, NEW.digest,"
	"     smpl_chain_link(h.hash, h.seq + 1, NEW.digest) FROM"
	"    (SELECT coalesce((SELECT seq FROM record_chain ORDER BY seq DESC LIMIT 1), 0) AS seq,"
	"     coalesce((SELECT hash FROM record_chain ORDER BY seq DESC LIMIT 1),"
	"      zeroblob(32)) AS hash) AS h;"
	" END;"
	"CREATE TRIGGER IF NOT EXISTS audit_chain AFTER INSERT ON audit BEGIN"
	"  INSERT INTO record_chain_append (tbl, row_id, digest)"
	"   VALUES ('audit', NEW.id, " AUDIT_DIGEST(NEW) ");"
	" END;"
	"CREATE TRIGGER IF NOT EXISTS treatments_chain AFTER INSERT ON treatments BEGIN"
	"  INSERT INTO record_chain_append (tbl, row_id, digest)"
	"   VALUES ('treatments', NEW.id, " TREATMENT_DIGEST(NEW) ");"
	" END;"
	/* A new version when what is chained changed (not an open one's pulse summary). */
	"CREATE TRIGGER IF NOT EXISTS treatments_chain_update AFTER UPDATE ON treatments"
	"  WHEN " TREATMENT_DIGEST(OLD) " IS NOT " TREATMENT_DIGEST(NEW) " BEGIN"
	"  INSERT INTO record_chain_append (tbl, row_id, digest)"
	"   VALUES ('treatments', NEW.id, " TREATMENT_DIGEST(NEW) ");"
	" END;"
	/*
	 * Unit counters (store-restore.c, issue 15.11): a unit's counter when it
	 * was first compared with the records (baseline), and shots its counter
	 * shows beyond the records (missing: restored from an older backup, or
	 * fired on another workstation), until an authorized acknowledge.
	 */
	"CREATE TABLE IF NOT EXISTS unit_counters ("
	"  id INTEGER PRIMARY KEY,"
	"  unit_serial TEXT NOT NULL REFERENCES units(serial),"
	"  kind TEXT NOT NULL CHECK (kind IN ('baseline', 'missing')),"
	"  shot_from INTEGER NOT NULL,"
	"  shot_to INTEGER NOT NULL,"
	"  time_ms INTEGER NOT NULL,"
	"  session_id INTEGER,"
	"  ack_ms INTEGER,"
	"  ack_uid INTEGER,"
	"  ack_name TEXT"
	") STRICT;"
	"CREATE INDEX IF NOT EXISTS unit_counters_by_unit ON unit_counters(unit_serial, shot_to);"
	"CREATE TRIGGER IF NOT EXISTS unit_counters_keep BEFORE DELETE ON unit_counters"
	"  BEGIN SELECT RAISE(ABORT, 'records are never deleted'); END;"
	"CREATE TRIGGER IF NOT EXISTS unit_counters_fixed BEFORE UPDATE ON unit_counters"
	"  WHEN OLD.ack_ms IS NOT NULL OR NEW.id IS NOT OLD.id"
	"   OR NEW.unit_serial IS NOT OLD.unit_serial OR NEW.kind IS NOT OLD.kind"
	"   OR NEW.shot_from IS NOT OLD.shot_from OR NEW.shot_to IS NOT OLD.shot_to"
	"   OR NEW.time_ms IS NOT OLD.time_ms OR NEW.session_id IS NOT OLD.session_id"
	"  BEGIN SELECT RAISE(ABORT, 'records are never changed'); END;"
	/*
	 * What was there before the chain: chained now, audit rows in id order,
	 * then treatments in id order; only into an empty chain (sorted first,
	 * so the test sees the chain as it was before the first entry).
	 */
	"INSERT INTO record_chain_append (tbl, row_id, digest)"
	" SELECT tbl, row_id, digest FROM"
	"  (SELECT 0 AS o, 'audit' AS tbl, id AS row_id, " AUDIT_DIGEST(ROW) " AS digest"
	"    FROM audit"
	"   UNION ALL SELECT 1, 'treatments', id, " TREATMENT_DIGEST(ROW) " FROM treatments)"
	" WHERE NOT EXISTS (SELECT 1 FROM record_chain) ORDER BY o, row_id;";

/* ---- the encoding ------------------------------------------------------------------ */

struct hasher {
	gcry_md_hd_t md;
};

static pthread_once_t gcrypt_once = PTHREAD_ONCE_INIT;
static bool gcrypt_ready;

/* libgcrypt wants its version checked before any use; no secure memory here. */
static void gcrypt_init(void)
{
	if (!gcry_control(GCRYCTL_INITIALIZATION_FINISHED_P)) {
		if (!gcry_check_version(GCRYPT_VERSION))
			return;
		gcry_control(GCRYCTL_DISABLE_SECMEM, 0);
		gcry_control(GCRYCTL_INITIALIZATION_FINISHED, 0);
	}
	gcrypt_ready = true;
}

static bool hasher_init(struct hasher *h)
{
	h->md = NULL;
	pthread_once(&gcrypt_once, gcrypt_init);
	return gcrypt_ready && gcry_md_open(&h->md, GCRY_MD_SHA256, 0) == 0;
}

static void put(struct hasher *h, const void *p, size_t len)
{
	if (len)
		gcry_md_write(h->md, p, len);
}

static void put_be64(struct hasher *h, uint64_t v)
{
	uint8_t b[8];

	for (int i = 7; i >= 0; i--, v >>= 8)
		b[i] = (uint8_t)v;
	put(h, b, sizeof(b));
}

static void put_value(struct hasher *h, const struct store_chain_value *v)
{
	uint8_t tag = (uint8_t)v->type;
	uint8_t len[4];

	put(h, &tag, 1);
	switch (v->type) {
	case STORE_CHAIN_NULL:
		break;
	case STORE_CHAIN_INTEGER:
		put_be64(h, (uint64_t)v->i);
		break;
	case STORE_CHAIN_TEXT:
	case STORE_CHAIN_BLOB:
		len[0] = (uint8_t)(v->len >> 24);
		len[1] = (uint8_t)(v->len >> 16);
		len[2] = (uint8_t)(v->len >> 8);
		len[3] = (uint8_t)v->len;
		put(h, len, sizeof(len));
		put(h, v->p, v->len);
		break;
	}
}

static bool hasher_final(struct hasher *h, uint8_t out[STORE_CHAIN_HASH_LEN])
{
	const unsigned char *digest = gcry_md_read(h->md, GCRY_MD_SHA256);
	if (digest)
		memcpy(out, digest, STORE_CHAIN_HASH_LEN);
	gcry_md_close(h->md);
	h->md = NULL;
	return digest;
}

static struct store_chain_value text_value(const char *s)
{
	return (struct store_chain_value){ .type = STORE_CHAIN_TEXT, .p = s, .len = strlen(s) };
}

static bool is_open_outcome(const struct store_chain_value *v)
{
	return v->type == STORE_CHAIN_TEXT && v->len == 4 && memcmp(v->p, "open", 4) == 0;
}

int store_chain_digest(const char *table, int64_t row_id, const struct store_chain_value *v,
		       size_t n, uint8_t out[STORE_CHAIN_HASH_LEN])
{
	const struct chained_table *t = table ? table_named(table, strlen(table)) : NULL;
	const struct store_chain_value tag = text_value(STORE_CHAIN_TAG), name = text_value(table);
	const struct store_chain_value id = { .type = STORE_CHAIN_INTEGER, .i = row_id };
	const struct store_chain_value null = { .type = STORE_CHAIN_NULL };
	bool treatment, open;
	struct hasher h;

	if (!t || n != t->n)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if ((unsigned int)v[i].type > STORE_CHAIN_BLOB || v[i].len > UINT32_MAX)
			return -EINVAL;
	treatment = t->columns == treatment_columns;
	open = treatment && is_open_outcome(&v[T_outcome]);
	if (!hasher_init(&h))
		return -ENOMEM;
	put_value(&h, &tag);
	put_value(&h, &name);
	put_value(&h, &id);
	for (size_t i = 0; i < n; i++)
		put_value(&h, open && treatment_masked[i] ? &null : &v[i]);
	return hasher_final(&h, out) ? 0 : -EIO;
}

void store_chain_link(const uint8_t prev[STORE_CHAIN_HASH_LEN], int64_t seq,
		      const uint8_t digest[STORE_CHAIN_HASH_LEN], uint8_t out[STORE_CHAIN_HASH_LEN])
{
	struct hasher h;

	memset(out, 0, STORE_CHAIN_HASH_LEN);
	if (!hasher_init(&h))
		return;
	put(&h, prev, STORE_CHAIN_HASH_LEN);
	put_be64(&h, (uint64_t)seq);
	put(&h, digest, STORE_CHAIN_HASH_LEN);
	if (!hasher_final(&h, out))
		memset(out, 0, STORE_CHAIN_HASH_LEN);
}

void store_chain_hex(const uint8_t hash[STORE_CHAIN_HASH_LEN], char *hex)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < STORE_CHAIN_HASH_LEN; i++) {
		hex[2 * i] = digits[hash[i] >> 4];
		hex[2 * i + 1] = digits[hash[i] & 15];
	}
	hex[STORE_CHAIN_HEX_LEN] = '\0';
}

int store_chain_parse_head(const char *s, struct store_chain_head *head)
{
	char *end;
	long long seq;

	if (!s)
		return -EINVAL;
	errno = 0;
	seq = strtoll(s, &end, 10);
	if (errno || end == s || *end != ':' || seq < 1 || strlen(end + 1) != STORE_CHAIN_HEX_LEN)
		return -EINVAL;
	for (size_t i = 0; i < STORE_CHAIN_HASH_LEN; i++) {
		unsigned int byte;

		if (sscanf(end + 1 + 2 * i, "%2x", &byte) != 1 ||
		    !strchr("0123456789abcdefABCDEF", end[1 + 2 * i]) ||
		    !strchr("0123456789abcdefABCDEF", end[2 + 2 * i]))
			return -EINVAL;
		head->hash[i] = (uint8_t)byte;
	}
	head->seq = seq;
	return 0;
}

/* ---- the SQL functions --------------------------------------------------------------- */

#define DIGEST_ARGS_MAX	64

static void sql_digest(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
	struct store_chain_value v[DIGEST_ARGS_MAX];
	uint8_t out[STORE_CHAIN_HASH_LEN];
	const void *p;
	char table[16];
	int n = argc - 2, len;

	if (argc < 2 || n > DIGEST_ARGS_MAX || sqlite3_value_type(argv[0]) != SQLITE_TEXT ||
	    sqlite3_value_type(argv[1]) != SQLITE_INTEGER) {
		sqlite3_result_error(ctx, "smpl_chain_digest(table, id, columns...)", -1);
		return;
	}
	len = sqlite3_value_bytes(argv[0]);
	snprintf(table, sizeof(table), "%.*s", len, (const char *)sqlite3_value_text(argv[0]));
	for (int i = 0; i < n; i++) {
		sqlite3_value *a = argv[2 + i];

		switch (sqlite3_value_type(a)) {
		case SQLITE_NULL:
			v[i] = (struct store_chain_value){ .type = STORE_CHAIN_NULL };
			break;
		case SQLITE_INTEGER:
			v[i] = (struct store_chain_value){ .type = STORE_CHAIN_INTEGER,
							   .i = sqlite3_value_int64(a) };
			break;
		case SQLITE_TEXT:
			p = sqlite3_value_text(a);
			v[i] = (struct store_chain_value){ .type = STORE_CHAIN_TEXT, .p = p,
							   .len = (size_t)sqlite3_value_bytes(a) };
			break;
		case SQLITE_BLOB:
			p = sqlite3_value_blob(a);
			v[i] = (struct store_chain_value){ .type = STORE_CHAIN_BLOB, .p = p,
							   .len = (size_t)sqlite3_value_bytes(a) };
			break;
		default:
			/* A real number is not chainable (the tables are STRICT): no digest. */
			sqlite3_result_null(ctx);
			return;
		}
	}
	if (store_chain_digest(table, sqlite3_value_int64(argv[1]), v, (size_t)n, out) < 0) {
		sqlite3_result_error(ctx, "smpl_chain_digest: not a chained table, or not its "
				     "columns", -1);
		return;
	}
	sqlite3_result_blob(ctx, out, sizeof(out), SQLITE_TRANSIENT);
}

static void sql_link(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
	uint8_t out[STORE_CHAIN_HASH_LEN];

	if (argc != 3 || sqlite3_value_type(argv[0]) != SQLITE_BLOB ||
	    sqlite3_value_bytes(argv[0]) != STORE_CHAIN_HASH_LEN ||
	    sqlite3_value_type(argv[1]) != SQLITE_INTEGER ||
	    sqlite3_value_type(argv[2]) != SQLITE_BLOB ||
	    sqlite3_value_bytes(argv[2]) != STORE_CHAIN_HASH_LEN) {
		sqlite3_result_error(ctx, "smpl_chain_link(previous hash, seq, digest)", -1);
		return;
	}
	store_chain_link(sqlite3_value_blob(argv[0]), sqlite3_value_int64(argv[1]),
			 sqlite3_value_blob(argv[2]), out);
	sqlite3_result_blob(ctx, out, sizeof(out), SQLITE_TRANSIENT);
}

int store_chain_register(sqlite3 *db)
{
	/* Pure functions: usable from triggers and views, also with trusted_schema off. */
	const int flags = SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS;
	int rc;

	rc = sqlite3_create_function(db, "smpl_chain_digest", -1, flags, NULL, sql_digest,
				     NULL, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_create_function(db, "smpl_chain_link", 3, flags, NULL, sql_link,
					     NULL, NULL);
	return rc;
}

/* ---- the head ------------------------------------------------------------------------ */

__attribute__((format(printf, 4, 5)))
static int say(char *msg, size_t len, int err, const char *fmt, ...)
{
	va_list ap;

	if (msg && len) {
		va_start(ap, fmt);
		vsnprintf(msg, len, fmt, ap);
		va_end(ap);
	}
	return err;
}

static int sqlite_errno(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		return -EUCLEAN;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return -EBUSY;
	case SQLITE_NOMEM:
		return -ENOMEM;
	default:
		return -EIO;
	}
}

static bool has_chain(sqlite3 *db)
{
	sqlite3_stmt *stmt;
	bool found = false;

	if (sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_schema WHERE type = 'table'"
			       " AND name = 'record_chain'", -1, &stmt, NULL) != SQLITE_OK)
		return false;
	found = sqlite3_step(stmt) == SQLITE_ROW;
	sqlite3_finalize(stmt);
	return found;
}

int store_chain_read_head(sqlite3 *db, struct store_chain_head *head, char *msg, size_t msg_len)
{
	sqlite3_stmt *stmt;
	int rc, err = 0;

	memset(head, 0, sizeof(*head));
	if (!has_chain(db))
		return say(msg, msg_len, -ENOENT, "the records have no hash chain");
	rc = sqlite3_prepare_v2(db, "SELECT seq, hash FROM record_chain ORDER BY seq DESC LIMIT 1",
				-1, &stmt, NULL);
	if (rc != SQLITE_OK)
		return say(msg, msg_len, sqlite_errno(rc), "cannot read the chain: %s",
			   sqlite3_errmsg(db));
	rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW) {
		head->seq = sqlite3_column_int64(stmt, 0);
		if (sqlite3_column_bytes(stmt, 1) == STORE_CHAIN_HASH_LEN)
			memcpy(head->hash, sqlite3_column_blob(stmt, 1), STORE_CHAIN_HASH_LEN);
	} else if (rc != SQLITE_DONE) {
		err = say(msg, msg_len, sqlite_errno(rc), "cannot read the chain: %s",
			  sqlite3_errmsg(db));
	}
	sqlite3_finalize(stmt);
	return err;
}

int store_chain_head(struct store *st, struct store_chain_head *head)
{
	char msg[STORE_MSG_MAX];
	int err = store_chain_read_head(store_db(st), head, msg, sizeof(msg));

	return err ? store_set_error(st, err, "%s", msg) : 0;
}

/* ---- verifying ----------------------------------------------------------------------- */

struct verify {
	sqlite3 *db;
	struct store_chain_report *rep;
	char *msg;
	size_t msg_len;
};

/* Keeps the STORE_CHAIN_PROBLEMS_MAX first problems by position. */
__attribute__((format(printf, 3, 4)))
static void problem(struct verify *v, int64_t position, const char *fmt, ...)
{
	struct store_chain_report *rep = v->rep;
	struct store_chain_problem p = { .position = position };
	size_t at;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(p.text, sizeof(p.text), fmt, ap);
	va_end(ap);
	rep->problems++;
	for (at = rep->shown; at > 0 && rep->problem[at - 1].position > position; at--)
		;
	if (at >= STORE_CHAIN_PROBLEMS_MAX)
		return;
	if (rep->shown == STORE_CHAIN_PROBLEMS_MAX)
		rep->shown--;
	memmove(&rep->problem[at + 1], &rep->problem[at],
		(rep->shown - at) * sizeof(rep->problem[0]));
	rep->problem[at] = p;
	rep->shown++;
}

static int prepare(struct verify *v, sqlite3_stmt **stmt, const char *sql)
{
	int rc = sqlite3_prepare_v2(v->db, sql, -1, stmt, NULL);

	if (rc != SQLITE_OK)
		return say(v->msg, v->msg_len, sqlite_errno(rc), "cannot read the records: %s",
			   sqlite3_errmsg(v->db));
	return 0;
}

static int step_failed(struct verify *v, int rc)
{
	return say(v->msg, v->msg_len, sqlite_errno(rc), "cannot read the records: %s",
		   sqlite3_errmsg(v->db));
}

/* Is there an entry for (@tbl, @row_id) before @seq? */
static int chained_before(struct verify *v, sqlite3_stmt *stmt, const char *tbl,
			  int64_t row_id, int64_t seq, bool *found)
{
	int rc;

	sqlite3_reset(stmt);
	sqlite3_bind_text(stmt, 1, tbl, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(stmt, 2, row_id);
	sqlite3_bind_int64(stmt, 3, seq);
	rc = sqlite3_step(stmt);
	*found = rc == SQLITE_ROW;
	sqlite3_reset(stmt);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : step_failed(v, rc);
}

/*
 * The entries in order: no gap, each link right, each row's first entry
 * after those of the rows before it, an audit row chained once.
 */
static int walk_entries(struct verify *v, const struct store_chain_head *anchor)
{
	uint8_t prev[STORE_CHAIN_HASH_LEN] = { 0 }, want[STORE_CHAIN_HASH_LEN];
	int64_t expect = 1, max_row[N_ELEMS(tables)];
	sqlite3_stmt *all = NULL, *before = NULL;
	bool anchor_seen = false;
	int rc, err;

	for (size_t i = 0; i < N_ELEMS(max_row); i++)
		max_row[i] = INT64_MIN;
	err = prepare(v, &all, "SELECT seq, tbl, row_id, digest, hash FROM record_chain"
		      " ORDER BY seq");
	if (!err)
		err = prepare(v, &before, "SELECT 1 FROM record_chain WHERE tbl = ?1"
			      " AND row_id = ?2 AND seq < ?3 LIMIT 1");
	while (!err && (rc = sqlite3_step(all)) == SQLITE_ROW) {
		int64_t seq = sqlite3_column_int64(all, 0), row = sqlite3_column_int64(all, 2);
		const char *tbl = (const char *)sqlite3_column_text(all, 1);
		const struct chained_table *t = tbl ? table_named(tbl, strlen(tbl)) : NULL;
		const void *digest = sqlite3_column_blob(all, 3);
		const void *hash = sqlite3_column_blob(all, 4);
		bool sizes = sqlite3_column_bytes(all, 3) == STORE_CHAIN_HASH_LEN &&
			     sqlite3_column_bytes(all, 4) == STORE_CHAIN_HASH_LEN;

		v->rep->entries++;
		if (seq != expect)
			problem(v, expect, "chain entries %" PRId64 "..%" PRId64 " are missing "
				"(deleted)", expect, seq - 1);
		expect = seq + 1;
		if (!t || !sizes) {
			problem(v, seq, "chain entry %" PRId64 " is malformed (changed)", seq);
			memset(prev, 0, sizeof(prev));
			continue;
		}
		store_chain_link(prev, seq, digest, want);
		if (memcmp(want, hash, sizeof(want)) != 0)
			problem(v, seq, "chain entry %" PRId64 " (%s row %" PRId64 ") does not "
				"follow from the one before it (changed, or inserted)", seq, t->name,
				row);
		memcpy(prev, hash, sizeof(prev));
		if (anchor && anchor->seq == seq) {
			anchor_seen = true;
			if (memcmp(anchor->hash, hash, sizeof(want)) != 0)
				problem(v, seq, "chain entry %" PRId64 " is not the head logged "
					"earlier: the records before it were rewritten", seq);
		}

		size_t ti = (size_t)(t - tables);
		bool earlier;

		if (row > max_row[ti]) {
			max_row[ti] = row;
			continue;
		}
		err = chained_before(v, before, t->name, row, seq, &earlier);
		if (err)
			break;
		if (!earlier)
			problem(v, seq, "%s row %" PRId64 " was inserted out of order (first "
				"chained at entry %" PRId64 ", after row %" PRId64 ")", t->name,
				row, seq, max_row[ti]);
		else if (t->columns != treatment_columns)
			problem(v, seq, "%s row %" PRId64 " was changed (chained again at "
				"entry %" PRId64 "; %s rows are written once)", t->name, row, seq,
				t->name);
	}
	if (!err && rc != SQLITE_DONE)
		err = step_failed(v, rc);
	if (!err && anchor && anchor->seq > 0 && !anchor_seen)
		problem(v, expect, "the chain ends at entry %" PRId64 ", before the head %" PRId64
			" logged earlier: these records are older, or their newest entries were "
			"deleted", expect - 1, anchor->seq);
	sqlite3_finalize(all);
	sqlite3_finalize(before);
	return err;
}

/* Each row of @t against its newest entry. */
static int check_rows(struct verify *v, const struct chained_table *t, const char *sql,
		      int64_t *count)
{
	sqlite3_stmt *stmt = NULL;
	int64_t prev_first = 0;
	int rc, err = prepare(v, &stmt, sql);

	while (!err && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		int64_t id = sqlite3_column_int64(stmt, 0);
		bool chained = sqlite3_column_type(stmt, 2) != SQLITE_NULL;
		int64_t newest = sqlite3_column_int64(stmt, 3);

		(*count)++;
		if (sqlite3_column_type(stmt, 1) != SQLITE_BLOB) {
			problem(v, newest, "%s row %" PRId64 " cannot be read back (changed)",
				t->name, id);
		} else if (!chained) {
			problem(v, prev_first, "%s row %" PRId64 " is not in the chain (inserted "
				"behind smplaserd's back)", t->name, id);
		} else if (sqlite3_column_bytes(stmt, 2) != STORE_CHAIN_HASH_LEN ||
			   memcmp(sqlite3_column_blob(stmt, 1), sqlite3_column_blob(stmt, 2),
				  STORE_CHAIN_HASH_LEN) != 0) {
			problem(v, newest, "%s row %" PRId64 " was changed (it is not what chain "
				"entry %" PRId64 " says)", t->name, id, newest);
		}
		if (chained)
			prev_first = sqlite3_column_int64(stmt, 4);
	}
	if (!err && rc != SQLITE_DONE)
		err = step_failed(v, rc);
	sqlite3_finalize(stmt);
	return err;
}

/* Entries whose row is not there any more. */
static int check_deleted(struct verify *v, const char *sql, const char *name)
{
	sqlite3_stmt *stmt = NULL;
	int rc, err = prepare(v, &stmt, sql);

	while (!err && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		int64_t row = sqlite3_column_int64(stmt, 0), seq = sqlite3_column_int64(stmt, 1);

		problem(v, seq, "%s row %" PRId64 " was deleted (chained at entry %" PRId64 ")",
			name, row, seq);
	}
	if (!err && rc != SQLITE_DONE)
		err = step_failed(v, rc);
	sqlite3_finalize(stmt);
	return err;
}

/*
 * Pulses are not chained one by one: each treatment's summary, chained with
 * it, stands for them (docs/records-chain.md).  A repeated shot number is
 * audited: "treatment ID: shot N (E uJ measured, ..."; before schema v6 it
 * was counted in the summary but not stored again, and the audit record
 * (chained) stood for it.
 */
#define PULSES_AGAINST_SUMMARY \
	"SELECT t.id, (SELECT max(seq) FROM record_chain c WHERE c.tbl = 'treatments'" \
	"   AND c.row_id = t.id)," \
	" t.pulses_recorded, t.energy_sum_uj, t.energy_min_uj, t.energy_max_uj," \
	" t.last_pulse_ms, coalesce(p.n, 0), coalesce(p.sum, 0), p.min, p.max, p.last," \
	" coalesce(k.n, 0), coalesce(k.sum, 0)" \
	" FROM treatments AS t" \
	" LEFT JOIN (SELECT treatment_id AS id, count(*) AS n, sum(measured_uj) AS sum," \
	"   min(measured_uj) AS min, max(measured_uj) AS max, max(host_ms) AS last" \
	"   FROM pulses GROUP BY treatment_id) AS p ON p.id = t.id" \
	" LEFT JOIN (SELECT CAST(substr(detail, 11) AS INTEGER) AS id, count(*) AS n," \
	"   sum(CAST(substr(detail, instr(detail, ' (') + 2) AS INTEGER)) AS sum" \
	"   FROM audit WHERE kind = 'fault' AND reason = 'shot-number-reused'" \
	"   AND detail LIKE 'treatment %' GROUP BY 1) AS k ON k.id = t.id" \
	" ORDER BY t.id"

/*
 * The stored pulses (count, sum, min, max, last) against the summary, with
 * @extra_n pulses of @extra_sum uJ counted but not stored.
 */
static bool summary_is(sqlite3_stmt *s, int64_t extra_n, int64_t extra_sum)
{
	int64_t recorded = sqlite3_column_int64(s, 2), sum = sqlite3_column_int64(s, 3);
	int64_t n = sqlite3_column_int64(s, 7), psum = sqlite3_column_int64(s, 8);

	if (n + extra_n != recorded || psum + extra_sum != sum)
		return false;
	if (n == 0)
		return true;
	for (int i = 0; i < 3; i++) {		/* min, max, last */
		int64_t summary = sqlite3_column_int64(s, 4 + i);
		int64_t pulses = sqlite3_column_int64(s, 9 + i);

		if (sqlite3_column_type(s, 4 + i) == SQLITE_NULL)
			return false;
		/* A shot not stored may hold the extreme. */
		if (extra_n ? (i == 0 ? pulses < summary : pulses > summary) : pulses != summary)
			return false;
	}
	return true;
}

/*
 * Since schema v6 a repeated shot number keeps its own row; before, it was
 * counted in the summary and only its audit record kept it.
 */
static bool pulses_match(sqlite3_stmt *s)
{
	int64_t repeated = sqlite3_column_int64(s, 12), rsum = sqlite3_column_int64(s, 13);

	return summary_is(s, 0, 0) || (repeated && summary_is(s, repeated, rsum));
}

static int check_pulses(struct verify *v)
{
	sqlite3_stmt *stmt = NULL;
	int rc, err = prepare(v, &stmt, PULSES_AGAINST_SUMMARY);

	while (!err && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		int64_t row = sqlite3_column_int64(stmt, 0), seq = sqlite3_column_int64(stmt, 1);

		if (!pulses_match(stmt))
			problem(v, seq, "the pulses of treatment %" PRId64 " do not match its "
				"chained summary (%" PRId64 " recorded, %" PRId64 " stored): a pulse "
				"was changed, deleted or added", row,
				(int64_t)sqlite3_column_int64(stmt, 2),
				(int64_t)sqlite3_column_int64(stmt, 7));
	}
	if (!err && rc != SQLITE_DONE)
		err = step_failed(v, rc);
	sqlite3_finalize(stmt);
	return err;
}

#define ROWS_AGAINST_CHAIN(table, digest) \
	"SELECT t.id, " digest "," \
	" (SELECT digest FROM record_chain c WHERE c.tbl = '" table "' AND c.row_id = t.id" \
	"   ORDER BY c.seq DESC LIMIT 1)," \
	" (SELECT max(seq) FROM record_chain c WHERE c.tbl = '" table "' AND c.row_id = t.id)," \
	" (SELECT min(seq) FROM record_chain c WHERE c.tbl = '" table "' AND c.row_id = t.id)" \
	" FROM " table " AS t ORDER BY t.id"

#define ROWS_GONE(table) \
	"SELECT c.row_id, min(c.seq) FROM record_chain AS c WHERE c.tbl = '" table "'" \
	" AND NOT EXISTS (SELECT 1 FROM " table " AS t WHERE t.id = c.row_id)" \
	" GROUP BY c.row_id ORDER BY c.row_id"

#define T_ROW_COL(n, m)		", t." #n
#define AUDIT_DIGEST_T		"smpl_chain_digest('audit', t.id" \
				STORE_CHAIN_AUDIT_COLUMNS(T_ROW_COL) ")"
#define TREATMENT_DIGEST_T	"smpl_chain_digest('treatments', t.id" \
				STORE_CHAIN_TREATMENT_COLUMNS(T_ROW_COL) ")"

#define ENDPOINT_DIGEST_T	"smpl_chain_digest('endpoints', t.id" \
				STORE_CHAIN_ENDPOINT_COLUMNS(T_ROW_COL) ")"
#define FOLLOW_UP_DIGEST_T	"smpl_chain_digest('follow_ups', t.id" \
				STORE_CHAIN_FOLLOW_UP_COLUMNS(T_ROW_COL) ")"
#define ADVERSE_DIGEST_T	"smpl_chain_digest('adverse_events', t.id" \
				STORE_CHAIN_ADVERSE_COLUMNS(T_ROW_COL) ")"
#define REVIEW_DIGEST_T		"smpl_chain_digest('hold_reviews', t.id" \
				STORE_CHAIN_REVIEW_COLUMNS(T_ROW_COL) ")"

static bool has_table(sqlite3 *db, const char *name)
{
	sqlite3_stmt *stmt;
	bool found;

	if (sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_schema WHERE type = 'table'"
			       " AND name = ?1", -1, &stmt, NULL) != SQLITE_OK)
		return false;
	sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
	found = sqlite3_step(stmt) == SQLITE_ROW;
	sqlite3_finalize(stmt);
	return found;
}

/*
 * The clinical record's rows (schema step 8; records of an older schema have
 * none): each against its entry, and entries whose row is gone.
 */
static int check_clinical(struct verify *v)
{
	static const struct {
		size_t table;
		const char *rows, *gone;
	} clinical[] = {
		{ 2, ROWS_AGAINST_CHAIN("endpoints", ENDPOINT_DIGEST_T), ROWS_GONE("endpoints") },
		{ 3, ROWS_AGAINST_CHAIN("follow_ups", FOLLOW_UP_DIGEST_T), ROWS_GONE("follow_ups") },
		{ 4, ROWS_AGAINST_CHAIN("adverse_events", ADVERSE_DIGEST_T),
		  ROWS_GONE("adverse_events") },
		{ 5, ROWS_AGAINST_CHAIN("hold_reviews", REVIEW_DIGEST_T), ROWS_GONE("hold_reviews") },
	};
	int err = 0;

	for (size_t i = 0; !err && i < N_ELEMS(clinical); i++) {
		const struct chained_table *t = &tables[clinical[i].table];

		if (!has_table(v->db, t->name))
			continue;
		err = check_rows(v, t, clinical[i].rows, &v->rep->clinical_rows);
		if (!err)
			err = check_deleted(v, clinical[i].gone, t->name);
	}
	return err;
}

int store_chain_verify(sqlite3 *db, const struct store_chain_head *anchor,
		       struct store_chain_report *rep, char *msg, size_t msg_len)
{
	struct verify v = { .db = db, .rep = rep, .msg = msg, .msg_len = msg_len };
	int err;

	memset(rep, 0, sizeof(*rep));
	err = store_chain_read_head(db, &rep->head, msg, msg_len);
	if (err)
		return err;
	/* One snapshot for the whole walk. */
	if (sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
		return say(msg, msg_len, -EIO, "cannot read the records: %s", sqlite3_errmsg(db));
	err = store_chain_read_head(db, &rep->head, msg, msg_len);
	if (!err)
		err = walk_entries(&v, anchor);
	if (!err)
		err = check_rows(&v, &tables[0], ROWS_AGAINST_CHAIN("audit", AUDIT_DIGEST_T),
				 &rep->audit_rows);
	if (!err)
		err = check_rows(&v, &tables[1],
				 ROWS_AGAINST_CHAIN("treatments", TREATMENT_DIGEST_T),
				 &rep->treatment_rows);
	if (!err)
		err = check_deleted(&v, ROWS_GONE("audit"), "audit");
	if (!err)
		err = check_deleted(&v, ROWS_GONE("treatments"), "treatments");
	if (!err)
		err = check_pulses(&v);
	if (!err)
		err = check_clinical(&v);
	sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	if (err)
		return err;
	return rep->problems ? 1 : 0;
}
