/* SPDX-License-Identifier: MIT */
/*
 * The clinical record in the store (issue 16; schema version 8,
 * store-clinical.c): the endpoint of each treated patch, follow-ups with
 * their findings and adverse events, the holds those events put on a patch,
 * and the authorized reviews that clear them.
 *
 * Like treatments, these are records: never deleted, never changed
 * (triggers refuse it), each written with an audit record in the same
 * transaction.  Conventions as in store.h (0 or a negative errno,
 * store_errmsg() says why; strings handed to callbacks live during the
 * callback only; a patient id matches whatever its letter case).
 *
 * The tables' SQL is plain SQL but for what docs/clinical.md lists
 * (STRICT, COLLATE NOCASE, the triggers' syntax, group_concat), so that
 * the PostgreSQL backend can keep the same tables.
 */
#ifndef SMPLASER_STORE_CLINICAL_H
#define SMPLASER_STORE_CLINICAL_H

#include <stdbool.h>
#include <stdint.h>

struct store;
struct store_operator;

/* ---- writes ---------------------------------------------------------------- */

struct store_endpoint_in {
	int64_t session_id;		/* an OPEN session; the patient comes from it */
	const char *patch;
	const char *endpoint;		/* whitening, partial-whitening, no-whitening */
	const char *note;		/* NULL or "" for none */
	int64_t time_ms;
};

/*
 * The endpoint of @e->patch's treatment in the session: it belongs to the
 * session's last treatment of that patch that emitted.
 *   -ENOENT  no such session, or the patch emitted nothing in it
 *   -ESTALE  the session is closed
 *   -EINVAL  bad arguments (an unknown endpoint)
 */
int store_endpoint_add(struct store *st, const struct store_endpoint_in *e,
		       const struct store_operator *op, int64_t *id);

#define STORE_ADVERSE_MAX	8

struct store_follow_up_in {
	const char *patient, *patch;
	int64_t time_ms;
	bool has_redness, redness_resolved;
	bool has_pigment;
	uint32_t pigment_pct;		/* 0-100 */
	const char *adverse[STORE_ADVERSE_MAX];	/* names; n_adverse of them */
	bool holds[STORE_ADVERSE_MAX];	/* each one holds the patch */
	unsigned int n_adverse;
	const char *note;		/* NULL or "" for none */
};

/*
 * A follow-up visit's findings on one patch, its adverse events, and (in
 * the same transaction) an audit record, plus one of kind "hold" when an
 * event holds the patch.  -EINVAL bad arguments (the schema's checks too).
 */
int store_follow_up_add(struct store *st, const struct store_follow_up_in *f,
			const struct store_operator *op, int64_t *id);

/*
 * An authorized review clears the patch's hold: every holding event
 * recorded up to now.  -ENOENT if the patch is not on hold.
 */
int store_hold_clear(struct store *st, const char *patient, const char *patch,
		     const char *note, const struct store_operator *op, int64_t time_ms,
		     int64_t *id);

/* ---- reading back, oldest first (Manager.Course) ----------------------------- */

struct store_endpoint {
	int64_t id, session_id, treatment_id;
	const char *patch, *endpoint, *note;	/* note "" if none */
	int64_t time_ms;
	uint32_t operator_uid;
	const char *operator_name;
};
typedef int (*store_endpoint_cb)(const struct store_endpoint *e, void *ctx);
int store_patient_endpoints(struct store *st, const char *patient, store_endpoint_cb cb,
			    void *ctx);

struct store_follow_up {
	int64_t id;
	const char *patch;
	int64_t time_ms;
	bool has_redness, redness_resolved;
	bool has_pigment;
	uint32_t pigment_pct;
	const char *adverse;		/* "follicle-damage,other" ("" none), in the schema's order */
	const char *holding;		/* those of them that hold the patch */
	const char *note;
	uint32_t operator_uid;
	const char *operator_name;
};
typedef int (*store_follow_up_cb)(const struct store_follow_up *f, void *ctx);
int store_patient_follow_ups(struct store *st, const char *patient, store_follow_up_cb cb,
			     void *ctx);

struct store_review {
	int64_t id;
	const char *patch;
	int64_t time_ms;
	int64_t cleared_through;	/* the last follow-up whose holds it cleared */
	const char *note;
	uint32_t operator_uid;
	const char *operator_name;
};
typedef int (*store_review_cb)(const struct store_review *r, void *ctx);
int store_patient_reviews(struct store *st, const char *patient, store_review_cb cb,
			  void *ctx);

#endif /* SMPLASER_STORE_CLINICAL_H */
