/* SPDX-License-Identifier: MIT */
/*
 * The workstation's journal for the clinic's records (DESIGN S3, section 6).
 *
 * With the PostgreSQL backend, what the daemon records as a treatment goes
 * on (pulses, the first sign of emission, a treatment's end, a session's end,
 * audit records, units seen) is first committed here, in a local SQLite
 * database <state_dir>/journal.db (WAL, synchronous=FULL), and then shipped
 * to the clinic's database by store-pg.c.  So a treatment already armed goes
 * on while the server is away, and nothing is lost when the daemon is killed
 * before the server is back.
 *
 * Each entry has a sequence number that is never used twice in one journal
 * (AUTOINCREMENT) and the journal has a random id made when it was created.
 * The clinic's database keeps, per journal id, the highest sequence number
 * it has applied, updated in the same transaction as the entries: an entry
 * is applied once whatever crashes between that commit and the entry's
 * removal here (store-pg.c, ship()).
 *
 * One struct smpl_journal per thread; several may be open on one file.
 */
#ifndef SMPLASER_DAEMON_JOURNAL_H
#define SMPLASER_DAEMON_JOURNAL_H

#include <stddef.h>
#include <stdint.h>

#define SMPL_JOURNAL_NAME	"journal.db"
#define SMPL_JOURNAL_MSG_MAX	256

struct smpl_journal;

/* Opens (creating it 0600 if missing) <state_dir>/journal.db.  -errno and @msg. */
int smpl_journal_open(const char *state_dir, struct smpl_journal **ret, char *msg,
		      size_t msg_len);
void smpl_journal_close(struct smpl_journal *j);
const char *smpl_journal_errmsg(const struct smpl_journal *j);
/* The journal's random id (32 hex digits), made when it was created. */
const char *smpl_journal_id(const struct smpl_journal *j);

/*
 * Entries appended between begin and commit are one durable transaction
 * (commit returns once they are fsync'd).  rollback undoes them.
 */
int smpl_journal_begin(struct smpl_journal *j);
int smpl_journal_append(struct smpl_journal *j, const char *kind, const char *body);
int smpl_journal_commit(struct smpl_journal *j);
void smpl_journal_rollback(struct smpl_journal *j);

/* Up to @max of the oldest entries, in order; @cb non-zero stops.  Returns how many. */
typedef int (*smpl_journal_cb)(int64_t seq, const char *kind, const char *body, void *ctx);
int smpl_journal_peek(struct smpl_journal *j, unsigned int max, smpl_journal_cb cb, void *ctx);
/* Removes the entries up to @seq (shipped). */
int smpl_journal_forget(struct smpl_journal *j, int64_t seq);
/* How many entries wait. */
int smpl_journal_count(struct smpl_journal *j, int64_t *n);

#endif /* SMPLASER_DAEMON_JOURNAL_H */
