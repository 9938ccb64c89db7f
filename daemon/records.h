/* SPDX-License-Identifier: MIT */
/*
 * The daemon's way to its records (DESIGN S3), without the event loop ever
 * waiting for the disk (issue 12).
 *
 * One writer thread (worker.h) owns the store's write connection: every
 * write (a treatment begun or ended, pulses, audit records, sessions, units,
 * settling from a counter) runs there, in the order it was asked for.  The
 * loop keeps what waits for the writer: pulses and audit records are queued
 * and committed by a flush at least every SMPL_FLUSH_PERIOD_MS and at every
 * disarm; writes whose result matters (a treatment begun before ARM, a
 * session) call back on the loop when they are durable.  Queries run on the
 * loop on a second, read-only connection (d->reader), or with the clinic's
 * records (PostgreSQL) on a reader worker (records-read.c).  The store is
 * either backend of store-ops.h, chosen at open by [records] backend.
 *
 * While the store refuses writes, every unit is disarmed, nothing arms, and
 * what was accepted stays queued, in memory and in the spill file (spill.h),
 * retried once a second; at start the spill file's records are queued again.
 */
#ifndef SMPLASER_DAEMON_RECORDS_H
#define SMPLASER_DAEMON_RECORDS_H

#include <stdbool.h>
#include <sys/types.h>

#include "store.h"

struct smpl_daemon;
struct smpl_records_call;

/* Opens the writer and reader connections, the writer thread and the spill file. */
int smpl_records_open(struct smpl_daemon *d, char *msg, size_t msg_len);
/* Waits for every write, the last flush included; then closes.  At stop. */
void smpl_records_close(struct smpl_daemon *d);
/* The records cannot take what happened: every unit disarmed, nothing arms until they can. */
void smpl_daemon_records_failed(struct smpl_daemon *d);
/*
 * The records' integrity check, run after READY=1 in a thread by main.c
 * (store_quick_check()).  First, on the loop: where its verdict comes back.
 */
int smpl_records_watch_check(struct smpl_daemon *d);
/*
 * From any thread: the check found the records corrupt (or could not run),
 * @why.  Handed to the loop, which faults every unit (the records_corrupt
 * upcall), logs why, and refuses every arming until smplaserd starts again
 * on sound records.
 */
void smpl_records_corrupt(struct smpl_daemon *d, const char *why);

/* Queued for the next flush (copied). */
void smpl_records_pulse(struct smpl_daemon *d, const struct store_pulse *p);
/* Queued for the next flush; the operator's name is looked up by the writer. */
void smpl_records_audit(struct smpl_daemon *d, const struct store_audit *a, const uid_t *uid);
/* Closes a treatment with the next flush (retried while the store refuses). */
void smpl_records_end_treatment(struct smpl_daemon *d, int64_t id,
				const struct store_treatment_finish *f);
/* Starts a flush now unless one is running; throttled while the store fails. */
void smpl_records_flush(struct smpl_daemon *d);
/* Anything not in the store yet? */
bool smpl_records_pending(const struct smpl_daemon *d);
/* The same, or a write in the writer now. */
bool smpl_records_busy(const struct smpl_daemon *d);

/*
 * A write whose result the caller waits for, on the loop: @then gets the
 * call (r, msg, and the results below); the call is freed after @then.
 */
typedef void (*smpl_records_then)(struct smpl_daemon *d, const struct smpl_records_call *c,
				  void *userdata);
struct smpl_records_call {
	int r;				/* 0 or the store's negative errno */
	char msg[STORE_MSG_MAX];	/* store_errmsg() when r < 0 */
	int64_t id;			/* the new treatment's or session's id */
	int settled;			/* settle: treatments settled */
	bool counter_back;		/* settle: the counter is below the records */
	char counter_msg[STORE_MSG_MAX];
	bool records_missing;		/* settle: the counter is ahead of the records */
	bool missing_unchecked;		/* settle: not compared (records waiting): again later */
	char missing_msg[STORE_MSG_MAX];
};

/* store_treatment_begin() (@t and what it points to are copied; decide runs in the writer). */
void smpl_records_begin_treatment(struct smpl_daemon *d, const struct store_treatment_start *t,
				  uid_t uid, smpl_records_then then, void *userdata);
/* store_session_begin_at() for @uid; @start_counter NULL when the unit's counter is not known. */
void smpl_records_begin_session(struct smpl_daemon *d, const char *patient, const char *serial,
				uid_t uid, int64_t now_ms, const uint32_t *start_counter,
				smpl_records_then then, void *userdata);
void smpl_records_end_session(struct smpl_daemon *d, int64_t id, enum store_session_state state,
			      const char *notes, int64_t now_ms);
void smpl_records_unit_seen(struct smpl_daemon *d, const char *serial, const char *model,
			    const char *firmware, int64_t now_ms);
/*
 * The unit's treatments waiting for its counter (open after a crash, unknown,
 * closed with the end unread), settled from @counter read while it was
 * disarmed, except @open_id (its own open treatment).  A treatment that
 * cannot be settled is ended unknown; counter_back says why.
 */
void smpl_records_settle(struct smpl_daemon *d, const char *serial, uint32_t counter,
			 int64_t open_id, smpl_records_then then, void *userdata);
void smpl_records_mark_emitting(struct smpl_daemon *d, int64_t treatment_id, int64_t when_ms,
				smpl_records_then then, void *userdata);
void smpl_records_counter_reset(struct smpl_daemon *d, const char *serial, uint32_t counter,
				uid_t uid, smpl_records_then then, void *userdata);
/*
 * Settling (above) also compares the counter with the records once the
 * unit's own records are all written (store-restore.h): records_missing, or
 * missing_unchecked when something still waits for the writer.  This records
 * the authorized acknowledge of shots beyond the records (@uid), the unit's
 * @counter read for it.
 */
void smpl_records_missing_ack(struct smpl_daemon *d, const char *serial, uint32_t counter,
			      uid_t uid, smpl_records_then then, void *userdata);
/*
 * The clinical record (issue 16, store-clinical.h), each with its audit
 * record in the same transaction; @then gets the new record's id.  Copied.
 * The endpoint goes after the pulses queued before it (they may be the
 * first sign that its treatment emitted).
 */
void smpl_records_endpoint(struct smpl_daemon *d, const struct store_endpoint_in *e, uid_t uid,
			   smpl_records_then then, void *userdata);
void smpl_records_follow_up(struct smpl_daemon *d, const struct store_follow_up_in *f,
			    uid_t uid, smpl_records_then then, void *userdata);
void smpl_records_clear_hold(struct smpl_daemon *d, const char *patient, const char *patch,
			     const char *note, uid_t uid, smpl_records_then then,
			     void *userdata);
/*
 * @then once everything queued so far is written (a flush is tried now, also
 * while the store fails): r 0, or -EIO if the store still refuses.
 */
void smpl_records_sync(struct smpl_daemon *d, smpl_records_then then, void *userdata);

/*
 * @then(d, call, @userdata) once every record of what happened so far is
 * written (treatments being closed included): a query then reads its own
 * writes.  call->r is -EIO if the store refuses writes, -ENOTCONN if the
 * clinic's records (PostgreSQL) lack some of them (the journal waits).
 */
void smpl_records_barrier(struct smpl_daemon *d, smpl_records_then then, void *userdata);
/* A treatment's closing began (+1) or its record was queued (-1): barriers wait for 0. */
void smpl_records_closing(struct smpl_daemon *d, int delta);

/* The records are the clinic's, on the network (PostgreSQL): reads go off the loop. */
bool smpl_records_remote(const struct smpl_daemon *d);
/*
 * Do the records keep the clinical record (issue 16)?  Both backends do
 * (store-ops.h); one that did not would answer its methods NotSupported with
 * SMPL_CLINICAL_NOT_KEPT's reason, and ask for no endpoint.
 */
bool smpl_records_clinical(const struct smpl_daemon *d);
#define SMPL_CLINICAL_NOT_KEPT \
	"the clinical record (endpoints, follow-ups, holds, the course) is not kept on " \
	"these records"

/* ---- queries (records-read.c) ------------------------------------------------ */

/*
 * Queries answer on the loop: at once from the SQLite reader (the callback
 * runs before the call returns), or from the reader worker with PostgreSQL
 * (the loop never waits on the network).  r is 0, -ENOTCONN when the
 * clinic's records cannot be reached (RecordsUnavailable, msg says why), or
 * another negative errno.
 */
struct smpl_records_facts {
	int r;
	char msg[STORE_MSG_MAX];
	struct store_patch_facts facts;
	bool newest_known;		/* the newest arming (S8) was read with them */
	int64_t newest_ms;
};
typedef void (*smpl_facts_then)(struct smpl_daemon *d, const struct smpl_records_facts *f,
				void *userdata);
/* store_patch_facts() and store_newest_record_ms(). */
void smpl_records_read_facts(struct smpl_daemon *d, const char *patient, const char *patch,
			     int64_t session_id, smpl_facts_then then, void *userdata);

struct smpl_records_history {
	int r;
	char msg[STORE_MSG_MAX];
	size_t n;
	const struct store_treatment *v;	/* valid during the callback */
};
typedef void (*smpl_history_then)(struct smpl_daemon *d, const struct smpl_records_history *h,
				  void *userdata);
/* store_patient_history(). */
void smpl_records_read_history(struct smpl_daemon *d, const char *patient,
			       smpl_history_then then, void *userdata);

/* A patient's treatments copied out of a store's callback (store_treatment_cb). */
struct smpl_treatments {
	struct store_treatment *v;
	size_t n, cap;
	bool oom;
};
int smpl_treatments_add(const struct store_treatment *t, void *ctx);
void smpl_treatments_free(struct smpl_treatments *c);

/*
 * Any reads: @run(ops, handle, @ctx) on the reader's handle, on the reader
 * worker (PostgreSQL: it may block; it touches nothing but @ctx and the
 * handle), or at once on the loop (SQLite); then @done(d, @ctx) on the loop.
 * -ENOMEM (neither called) if the job cannot be made.
 */
struct store_ops;
typedef void (*smpl_read_run)(const struct store_ops *o, void *h, void *ctx);
typedef void (*smpl_read_done)(struct smpl_daemon *d, void *ctx);
int smpl_records_read_call(struct smpl_daemon *d, smpl_read_run run, smpl_read_done done,
			   void *ctx);

/* PostgreSQL: a call's result (0, or -ENOTCONN) says whether the server answers (logged once). */
void smpl_records_reachable(struct smpl_daemon *d, int r, const char *msg);

/* Starts and stops the reader worker (PostgreSQL); from smpl_records_open/close. */
int smpl_records_reader_start(struct smpl_daemon *d);
void smpl_records_reader_stop(struct smpl_daemon *d);

#endif /* SMPLASER_DAEMON_RECORDS_H */
