/* SPDX-License-Identifier: MIT */
/*
 * Copies of the records while they are in use (issue 15.11, 15.13): a backup
 * (SQLite's online backup API) and an export for audits (CSV or JSON), each
 * made in steps from one snapshot of the records, on its own read-only
 * connection (WAL: the writer goes on meanwhile), into a file descriptor the
 * caller passed: the daemon never opens a path it was given.  Memory does
 * not grow with the records.
 *
 * The steps may block on the disk or the reader of the descriptor: run them
 * on a worker thread (the daemon: daemon/bus-records.c), never on the loop.
 */
#ifndef SMPLASER_STORE_COPY_H
#define SMPLASER_STORE_COPY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store-chain.h"

struct store_copy;

struct store_copy_info {
	int64_t pages, page_size;	/* backup */
	int64_t bytes;			/* written to the descriptor */
	int64_t treatments, audit;	/* export: rows written */
	struct store_chain_head head;	/* the chain head of the snapshot */
};

/*
 * A backup of <state_dir>/records.db into @fd: a regular file, empty, open
 * for reading and writing (it is dup'ed; the caller keeps its own).  The copy
 * is an ordinary SQLite database (rollback journal mode) that a restore puts
 * in place of records.db.  0 or a negative errno with @msg.
 */
int store_backup_begin(const char *state_dir, int fd, struct store_copy **out,
		       char *msg, size_t msg_len);

enum store_export_format {
	STORE_EXPORT_CSV,
	STORE_EXPORT_JSON,
};

/*
 * An export of the treatments armed (with their pulse summary) and the audit
 * records written at or after @since_ms, oldest first, into @fd (a pipe, a
 * socket or a file; dup'ed and made non-blocking: a reader that stops
 * reading for STORE_EXPORT_STALL_MS fails the export).  The formats are
 * documented in smplaserctl(1), "records export".
 */
#define STORE_EXPORT_STALL_MS	60000
/*
 * A backup into the records' own file system must leave this much free there
 * beyond its own size (the records keep growing while units fire); else it
 * is refused (-ENOSPC) before anything is written.
 */
#define STORE_BACKUP_RESERVE_MIB	32
int store_export_begin(const char *state_dir, int fd, int64_t since_ms,
		       enum store_export_format format, struct store_copy **out,
		       char *msg, size_t msg_len);

/*
 * Does up to @amount more (pages of a backup, rows of an export): 0 more to
 * do, 1 finished (the copy is complete and synced to its file), or a negative
 * errno (store_copy_errmsg says why).
 */
int store_copy_step(struct store_copy *c, int amount);
/* What was done so far (complete once a step returned 1). */
void store_copy_info(const struct store_copy *c, struct store_copy_info *info);
const char *store_copy_errmsg(const struct store_copy *c);
/* Ends the snapshot, closes the descriptor.  NULL is fine. */
void store_copy_free(struct store_copy *c);

#endif /* SMPLASER_STORE_COPY_H */
