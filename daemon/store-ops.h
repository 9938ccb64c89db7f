/* SPDX-License-Identifier: MIT */
/*
 * The records backends (DESIGN section 6): the operations of store.h that
 * the daemon uses, as a table, so that the daemon runs on either
 *
 *   store_ops_sqlite   the embedded database of one workstation (store.c), or
 *   store_ops_pg       the clinic's PostgreSQL database shared by every
 *                      workstation (store-pg.c, libpq), with the workstation's
 *                      local journal (journal.h) for what the server cannot
 *                      take now.
 *
 * Every operation has the contract of its namesake in store.h (same
 * arguments after the handle, same return values), with these additions for
 * a backend on the network:
 *   -ENOTCONN    the records server cannot be reached (or its connection
 *                broke and could not be made again): RecordsUnavailable.
 *                store_errmsg-like text from ops->errmsg says what failed.
 *   -ETIMEDOUT   treatment_begin only: the host clock disagrees with the
 *                records server's, or is earlier than this workstation's
 *                newest arming there (S8): ClockUnreliable.
 *
 * A handle is used by one thread at a time (the records writer owns the one
 * opened for writing, the reader worker the one opened for reading).
 */
#ifndef SMPLASER_DAEMON_STORE_OPS_H
#define SMPLASER_DAEMON_STORE_OPS_H

#include "store.h"
#include "store-clinical.h"

struct store_ops {
	const char *name;			/* "sqlite", "postgresql" */
	const char *(*errmsg)(const void *h);
	const char *(*where)(const void *h);	/* for the start-up log */
	void (*close)(void *h);

	/* writes (the records writer's handle) */
	int (*unit_seen)(void *h, const char *serial, const char *model, const char *firmware,
			 int64_t now_ms);
	/* @start_counter: the unit's counter as it began, NULL if not known */
	int (*session_begin)(void *h, const char *patient, const char *unit_serial,
			     const struct store_operator *op, int64_t now_ms,
			     const uint32_t *start_counter, int64_t *session_id);
	int (*session_end)(void *h, int64_t session_id, enum store_session_state state,
			   const char *notes, int64_t now_ms);
	int (*sessions_interrupt_open)(void *h, int64_t now_ms);
	int (*treatment_begin)(void *h, const struct store_treatment_start *t,
			       int64_t *treatment_id);
	int (*treatment_end)(void *h, int64_t treatment_id, const struct store_treatment_finish *f);
	int (*reconcile_treatment)(void *h, int64_t treatment_id, uint32_t shot_count_now,
				   int64_t now_ms);
	int (*mark_emitting)(void *h, int64_t treatment_id, int64_t when_ms);
	int (*counter_check)(void *h, const char *unit_serial, uint32_t counter);
	int (*counter_reset)(void *h, const char *unit_serial, uint32_t counter,
			     const struct store_operator *op, int64_t now_ms);
	int (*unsettled_treatments)(void *h, const char *unit_serial, store_treatment_cb cb,
				    void *ctx);
	int (*add_pulse)(void *h, const struct store_pulse *p);
	int (*flush)(void *h);
	void (*drop_pending)(void *h);
	int (*audit)(void *h, const struct store_audit *a);
	int (*audit_once)(void *h, const struct store_audit *a);
	/*
	 * Everything written so far is in the records everyone reads (for the
	 * SQLite store it always is): 0, or -ENOTCONN while some of it waits in
	 * the workstation's journal (*waiting says how many entries).
	 */
	int (*sync)(void *h, unsigned int *waiting);
	/*
	 * A unit's counter ahead of the records (store-restore.h): 1, 0 or
	 * -errno as store_records_missing_check(); the acknowledge as
	 * store_records_missing_ack().  records_missing_check is NULL on
	 * PostgreSQL: there the counter ahead is refused at arming only
	 * (-ENOLINK, as on SQLite), the shots are not counted on any patch,
	 * and the acknowledge accepts @counter, the unit's counter read for
	 * it, as a new counter epoch (docs/records-postgresql.md); the daemon
	 * settles without the check.  SQLite acknowledges what it recorded
	 * and ignores @counter.  A NULL acknowledge is refused.
	 */
	int (*records_missing_check)(void *h, const char *unit_serial, uint32_t counter,
				     int64_t now_ms);
	int (*records_missing_ack)(void *h, const char *unit_serial, uint32_t counter,
				   const struct store_operator *op, int64_t now_ms);

	/*
	 * The clinical record (issue 16, store-clinical.h): as
	 * store_endpoint_add(), store_follow_up_add(), store_hold_clear().
	 * NULL on a backend that does not keep it: the daemon then answers the
	 * clinical methods NotSupported and asks no endpoint at End or
	 * SelectPatch.  Both backends keep it (the PostgreSQL one since its
	 * schema step 3, docs/records-postgresql.md); endpoint_add may answer
	 * 0 with *id 0 there: journaled while the server is away.
	 */
	int (*endpoint_add)(void *h, const struct store_endpoint_in *e,
			    const struct store_operator *op, int64_t *id);
	int (*follow_up_add)(void *h, const struct store_follow_up_in *f,
			     const struct store_operator *op, int64_t *id);
	int (*hold_clear)(void *h, const char *patient, const char *patch, const char *note,
			  const struct store_operator *op, int64_t time_ms, int64_t *id);

	/* reads (either handle) */
	int (*patch_facts)(void *h, const char *patient, const char *patch, int64_t session_id,
			   struct store_patch_facts *out);
	int (*patient_history)(void *h, const char *patient, store_treatment_cb cb, void *ctx);
	int (*newest_record_ms)(void *h, int64_t *when_ms);
	/* Manager.Course: as store_patient_endpoints(), _follow_ups(), _reviews(). */
	int (*patient_endpoints)(void *h, const char *patient, store_endpoint_cb cb, void *ctx);
	int (*patient_follow_ups)(void *h, const char *patient, store_follow_up_cb cb, void *ctx);
	int (*patient_reviews)(void *h, const char *patient, store_review_cb cb, void *ctx);
};

extern const struct store_ops store_ops_sqlite;

#endif /* SMPLASER_DAEMON_STORE_OPS_H */
