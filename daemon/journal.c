/* SPDX-License-Identifier: MIT */
/* The workstation's journal for the clinic's records: see journal.h. */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sqlite3.h>

#include "journal.h"

#define BUSY_TIMEOUT_MS		5000

static const char schema[] =
	"CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY NOT NULL, v TEXT NOT NULL) STRICT;"
	"INSERT OR IGNORE INTO meta VALUES ('application', 'smplaser-journal');"
	"INSERT OR IGNORE INTO meta VALUES ('journal_id', lower(hex(randomblob(16))));"
	"CREATE TABLE IF NOT EXISTS outbox ("
	"  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
	"  kind TEXT NOT NULL,"
	"  body TEXT NOT NULL"
	") STRICT;";

struct smpl_journal {
	sqlite3 *db;
	char *path;
	char id[40];
	char msg[SMPL_JOURNAL_MSG_MAX];
	sqlite3_stmt *append;
};

__attribute__((format(printf, 3, 4)))
static int fail(struct smpl_journal *j, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(j->msg, sizeof(j->msg), fmt, ap);
	va_end(ap);
	return err;
}

static int sql_errno(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return -EBUSY;
	case SQLITE_NOMEM:
		return -ENOMEM;
	case SQLITE_READONLY:
		return -EROFS;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		return -EUCLEAN;
	case SQLITE_CANTOPEN:
	case SQLITE_PERM:
		return -EACCES;
	default:
		return -EIO;
	}
}

static int sql_fail(struct smpl_journal *j, int rc, const char *what)
{
	return fail(j, sql_errno(rc), "%s: %s: %s", j->path, what,
		    j->db ? sqlite3_errmsg(j->db) : sqlite3_errstr(rc));
}

static int exec(struct smpl_journal *j, const char *sql, const char *what)
{
	int rc = sqlite3_exec(j->db, sql, NULL, NULL, NULL);

	return rc == SQLITE_OK ? 0 : sql_fail(j, rc, what);
}

static int read_meta(struct smpl_journal *j)
{
	sqlite3_stmt *st;
	bool ours = false;
	int rc;

	rc = sqlite3_prepare_v2(j->db, "SELECT k, v FROM meta", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return sql_fail(j, rc, "read the journal's identity");
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *k = (const char *)sqlite3_column_text(st, 0);
		const char *v = (const char *)sqlite3_column_text(st, 1);

		if (!k || !v)
			continue;
		if (strcmp(k, "application") == 0)
			ours = strcmp(v, "smplaser-journal") == 0;
		else if (strcmp(k, "journal_id") == 0)
			snprintf(j->id, sizeof(j->id), "%s", v);
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return sql_fail(j, rc, "read the journal's identity");
	if (!ours || strlen(j->id) != 32)
		return fail(j, -EMEDIUMTYPE, "%s is not smplaser's journal; refusing to use it",
			    j->path);
	return 0;
}

int smpl_journal_open(const char *state_dir, struct smpl_journal **ret, char *msg,
		      size_t msg_len)
{
	struct smpl_journal *j = calloc(1, sizeof(*j));
	int rc, err;

	*ret = NULL;
	if (!j || asprintf(&j->path, "%s/%s", state_dir, SMPL_JOURNAL_NAME) < 0) {
		free(j);
		snprintf(msg, msg_len, "out of memory");
		return -ENOMEM;
	}
	if (mkdir(state_dir, 0700) < 0 && errno != EEXIST) {
		err = fail(j, -errno, "cannot create %s: %s", state_dir, strerror(errno));
		goto out;
	}
	rc = sqlite3_open_v2(j->path, &j->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
			     SQLITE_OPEN_NOFOLLOW | SQLITE_OPEN_FULLMUTEX, NULL);
	if (rc != SQLITE_OK) {
		err = sql_fail(j, rc, "open");
		goto out;
	}
	(void)chmod(j->path, 0600);	/* whatever the umask (a path, never an fd: see store.c) */
	sqlite3_extended_result_codes(j->db, 1);
	sqlite3_busy_timeout(j->db, BUSY_TIMEOUT_MS);
	err = exec(j, "PRAGMA journal_mode = WAL", "WAL");
	if (!err)
		err = exec(j, "PRAGMA synchronous = FULL", "synchronous");
	if (!err)
		err = exec(j, "BEGIN IMMEDIATE", "begin");
	if (!err) {
		err = exec(j, schema, "create the journal");
		err = err ? err : exec(j, "COMMIT", "commit");
		if (err)
			sqlite3_exec(j->db, "ROLLBACK", NULL, NULL, NULL);
	}
	if (!err)
		err = read_meta(j);
	if (!err) {
		rc = sqlite3_prepare_v2(j->db, "INSERT INTO outbox (kind, body) VALUES (?1, ?2)",
					-1, &j->append, NULL);
		if (rc != SQLITE_OK)
			err = sql_fail(j, rc, "prepare");
	}
out:
	if (err) {
		snprintf(msg, msg_len, "%s", j->msg);
		smpl_journal_close(j);
		return err;
	}
	*ret = j;
	return 0;
}

void smpl_journal_close(struct smpl_journal *j)
{
	if (!j)
		return;
	sqlite3_finalize(j->append);
	sqlite3_close(j->db);
	free(j->path);
	free(j);
}

const char *smpl_journal_errmsg(const struct smpl_journal *j)
{
	return j ? j->msg : "no journal";
}

const char *smpl_journal_id(const struct smpl_journal *j)
{
	return j->id;
}

int smpl_journal_begin(struct smpl_journal *j)
{
	return exec(j, "BEGIN IMMEDIATE", "begin a journal transaction");
}

int smpl_journal_commit(struct smpl_journal *j)
{
	return exec(j, "COMMIT", "commit to the journal");
}

void smpl_journal_rollback(struct smpl_journal *j)
{
	if (!sqlite3_get_autocommit(j->db))
		sqlite3_exec(j->db, "ROLLBACK", NULL, NULL, NULL);
}

int smpl_journal_append(struct smpl_journal *j, const char *kind, const char *body)
{
	int rc;

	sqlite3_reset(j->append);
	sqlite3_bind_text(j->append, 1, kind, -1, SQLITE_STATIC);
	sqlite3_bind_text(j->append, 2, body, -1, SQLITE_STATIC);
	rc = sqlite3_step(j->append);
	sqlite3_reset(j->append);
	sqlite3_clear_bindings(j->append);
	return rc == SQLITE_DONE ? 0 : sql_fail(j, rc, "append to the journal");
}

int smpl_journal_peek(struct smpl_journal *j, unsigned int max, smpl_journal_cb cb, void *ctx)
{
	sqlite3_stmt *st;
	int rc, n = 0;

	rc = sqlite3_prepare_v2(j->db, "SELECT seq, kind, body FROM outbox ORDER BY seq LIMIT ?1",
				-1, &st, NULL);
	if (rc != SQLITE_OK)
		return sql_fail(j, rc, "read the journal");
	sqlite3_bind_int64(st, 1, max);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *kind = (const char *)sqlite3_column_text(st, 1);
		const char *body = (const char *)sqlite3_column_text(st, 2);

		n++;
		if (cb(sqlite3_column_int64(st, 0), kind ? kind : "", body ? body : "", ctx)) {
			rc = SQLITE_DONE;
			break;
		}
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? n : sql_fail(j, rc, "read the journal");
}

int smpl_journal_forget(struct smpl_journal *j, int64_t seq)
{
	sqlite3_stmt *st;
	int rc;

	rc = sqlite3_prepare_v2(j->db, "DELETE FROM outbox WHERE seq <= ?1", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return sql_fail(j, rc, "remove shipped entries");
	sqlite3_bind_int64(st, 1, seq);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : sql_fail(j, rc, "remove shipped entries");
}

int smpl_journal_count(struct smpl_journal *j, int64_t *n)
{
	sqlite3_stmt *st;
	int rc;

	rc = sqlite3_prepare_v2(j->db, "SELECT count(*) FROM outbox", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return sql_fail(j, rc, "count the journal");
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*n = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return rc == SQLITE_ROW ? 0 : sql_fail(j, rc, "count the journal");
}
