/* SPDX-License-Identifier: MIT */
/* The SQLite records (store.c) as a records backend: see store-ops.h. */
#include "store-ops.h"
#include "store-restore.h"

static int sq_records_missing_check(void *h, const char *unit_serial, uint32_t counter,
				    int64_t now_ms)
{
	return store_records_missing_check(h, unit_serial, counter, now_ms, NULL);
}

static int sq_records_missing_ack(void *h, const char *unit_serial, uint32_t counter,
				  const struct store_operator *op, int64_t now_ms)
{
	(void)counter;		/* what the check recorded is acknowledged */
	return store_records_missing_ack(h, unit_serial, op, now_ms);
}

static const char *sq_errmsg(const void *h)
{
	return store_errmsg(h);
}

static const char *sq_where(const void *h)
{
	return store_path(h);
}

static void sq_close(void *h)
{
	store_close(h);
}

static int sq_unit_seen(void *h, const char *serial, const char *model, const char *firmware,
			int64_t now_ms)
{
	return store_unit_seen(h, serial, model, firmware, now_ms);
}

static int sq_session_begin(void *h, const char *patient, const char *unit_serial,
			    const struct store_operator *op, int64_t now_ms,
			    const uint32_t *start_counter, int64_t *session_id)
{
	return store_session_begin_at(h, patient, unit_serial, op, now_ms, start_counter,
				      session_id);
}

static int sq_session_end(void *h, int64_t session_id, enum store_session_state state,
			  const char *notes, int64_t now_ms)
{
	return store_session_end(h, session_id, state, notes, now_ms);
}

static int sq_sessions_interrupt_open(void *h, int64_t now_ms)
{
	return store_sessions_interrupt_open(h, now_ms);
}

static int sq_treatment_begin(void *h, const struct store_treatment_start *t,
			      int64_t *treatment_id)
{
	return store_treatment_begin(h, t, treatment_id);
}

static int sq_treatment_end(void *h, int64_t treatment_id, const struct store_treatment_finish *f)
{
	return store_treatment_end(h, treatment_id, f);
}

static int sq_reconcile_treatment(void *h, int64_t treatment_id, uint32_t shot_count_now,
				  int64_t now_ms)
{
	return store_reconcile_treatment(h, treatment_id, shot_count_now, now_ms);
}

static int sq_mark_emitting(void *h, int64_t treatment_id, int64_t when_ms)
{
	return store_treatment_mark_emitting(h, treatment_id, when_ms);
}

static int sq_counter_check(void *h, const char *unit_serial, uint32_t counter)
{
	return store_counter_check(h, unit_serial, counter);
}

static int sq_counter_reset(void *h, const char *unit_serial, uint32_t counter,
			    const struct store_operator *op, int64_t now_ms)
{
	return store_counter_reset(h, unit_serial, counter, op, now_ms);
}

static int sq_unsettled_treatments(void *h, const char *unit_serial, store_treatment_cb cb,
				   void *ctx)
{
	return store_unsettled_treatments(h, unit_serial, cb, ctx);
}

static int sq_add_pulse(void *h, const struct store_pulse *p)
{
	return store_add_pulse(h, p);
}

static int sq_flush(void *h)
{
	return store_flush(h);
}

static void sq_drop_pending(void *h)
{
	store_drop_pending(h);
}

static int sq_audit(void *h, const struct store_audit *a)
{
	return store_audit(h, a);
}

static int sq_audit_once(void *h, const struct store_audit *a)
{
	return store_audit_once(h, a);
}

static int sq_sync(void *h, unsigned int *waiting)
{
	(void)h;
	*waiting = 0;
	return 0;
}

static int sq_patch_facts(void *h, const char *patient, const char *patch, int64_t session_id,
			  struct store_patch_facts *out)
{
	return store_patch_facts(h, patient, patch, session_id, out);
}

static int sq_patient_history(void *h, const char *patient, store_treatment_cb cb, void *ctx)
{
	return store_patient_history(h, patient, cb, ctx);
}

static int sq_newest_record_ms(void *h, int64_t *when_ms)
{
	return store_newest_record_ms(h, when_ms);
}

static int sq_patient_endpoints(void *h, const char *patient, store_endpoint_cb cb, void *ctx)
{
	return store_patient_endpoints(h, patient, cb, ctx);
}

static int sq_patient_follow_ups(void *h, const char *patient, store_follow_up_cb cb, void *ctx)
{
	return store_patient_follow_ups(h, patient, cb, ctx);
}

static int sq_patient_reviews(void *h, const char *patient, store_review_cb cb, void *ctx)
{
	return store_patient_reviews(h, patient, cb, ctx);
}

static int sq_endpoint_add(void *h, const struct store_endpoint_in *e,
			   const struct store_operator *op, int64_t *id)
{
	return store_endpoint_add(h, e, op, id);
}

static int sq_follow_up_add(void *h, const struct store_follow_up_in *f,
			    const struct store_operator *op, int64_t *id)
{
	return store_follow_up_add(h, f, op, id);
}

static int sq_hold_clear(void *h, const char *patient, const char *patch, const char *note,
			 const struct store_operator *op, int64_t time_ms, int64_t *id)
{
	return store_hold_clear(h, patient, patch, note, op, time_ms, id);
}

const struct store_ops store_ops_sqlite = {
	.name = "sqlite",
	.errmsg = sq_errmsg,
	.where = sq_where,
	.close = sq_close,
	.unit_seen = sq_unit_seen,
	.session_begin = sq_session_begin,
	.session_end = sq_session_end,
	.sessions_interrupt_open = sq_sessions_interrupt_open,
	.treatment_begin = sq_treatment_begin,
	.treatment_end = sq_treatment_end,
	.reconcile_treatment = sq_reconcile_treatment,
	.mark_emitting = sq_mark_emitting,
	.counter_check = sq_counter_check,
	.counter_reset = sq_counter_reset,
	.unsettled_treatments = sq_unsettled_treatments,
	.add_pulse = sq_add_pulse,
	.flush = sq_flush,
	.drop_pending = sq_drop_pending,
	.audit = sq_audit,
	.audit_once = sq_audit_once,
	.sync = sq_sync,
	.records_missing_check = sq_records_missing_check,
	.records_missing_ack = sq_records_missing_ack,
	.endpoint_add = sq_endpoint_add,
	.follow_up_add = sq_follow_up_add,
	.hold_clear = sq_hold_clear,
	.patient_endpoints = sq_patient_endpoints,
	.patient_follow_ups = sq_patient_follow_ups,
	.patient_reviews = sq_patient_reviews,
	.patch_facts = sq_patch_facts,
	.patient_history = sq_patient_history,
	.newest_record_ms = sq_newest_record_ms,
};
