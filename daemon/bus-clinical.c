/* SPDX-License-Identifier: MIT */
/*
 * The clinical record on org.smplaser.Laser1.Manager (issue 16):
 * RecordFollowUp, ClearPatchHold, Course and the ClinicName property.
 * Their vtable entries are in bus-manager.c (one vtable per interface).
 *
 * Writes go through the records writer (records.h), each with its audit
 * record; Course reads once the records hold what happened before it
 * (smpl_records_barrier), on the reader (smpl_records_read_call: off the
 * loop with the clinic's PostgreSQL), and answers on the loop.  A patch's status is the
 * rules' answer (eligibility.h) on the records now: the same code that
 * decides CheckPatch, SelectPatch and the arming transaction.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "bus.h"
#include "clinical.h"
#include "eligibility.h"
#include "errors.h"
#include "log.h"
#include "records.h"
#include "store-ops.h"

static uint64_t usec(int64_t ms)
{
	return ms > 0 ? (uint64_t)ms * 1000 : 0;
}

/* A call answered later: its message and who asked. */
struct call {
	sd_bus_message *m;
	uid_t uid;
	char patient[SMPL_PATIENT_ID_MAX + 1];
	char patch[SMPL_PATCH_ID_MAX + 1];
	char what[SMPL_HOLD_EVENTS_MAX];
};

static struct call *call_new(sd_bus_message *m, uid_t uid, const char *patient,
			     const char *patch)
{
	struct call *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->m = sd_bus_message_ref(m);
	c->uid = uid;
	snprintf(c->patient, sizeof(c->patient), "%s", patient);
	snprintf(c->patch, sizeof(c->patch), "%s", patch);
	return c;
}

static void call_free(struct call *c)
{
	sd_bus_message_unref(c->m);
	free(c);
}

/* The clinical record's methods on records that do not keep it (store-ops.h). */
static int refuse_unless_kept(struct smpl_daemon *d, const char *method, sd_bus_error *error)
{
	if (smpl_records_clinical(d))
		return 0;
	return sd_bus_error_setf(error, SD_BUS_ERROR_NOT_SUPPORTED, "%s: %s", method,
				 SMPL_CLINICAL_NOT_KEPT);
}

/* Patient and patch arguments, checked (and a refusal audited) before anything else. */
static int check_patient_patch(struct smpl_daemon *d, uid_t uid, const char *patient,
			       const char *patch, sd_bus_error *error)
{
	char err[SMPL_REASON_MAX];

	if (smpl_patient_id_check(patient, err, sizeof(err)) < 0 ||
	    (patch && smpl_patch_name_check(&d->cfg.patches, patch, err, sizeof(err)) < 0))
		return smpl_refuse(d, NULL, 0, uid, error, SMPL_ERROR_INVALID_ARGUMENT, "%s", err);
	return 0;
}

/* A write's answer: the reply, or the store's refusal under @name. */
static void answer_write(struct smpl_daemon *d, struct call *c, const struct smpl_records_call *rc,
			 const char *method, const char *not_found_error)
{
	sd_bus_error e = SD_BUS_ERROR_NULL;

	if (rc->r < 0) {
		(void)smpl_refuse(d, NULL, 0, c->uid, &e,
				  rc->r == -ENOENT && not_found_error ? not_found_error :
				  rc->r == -EINVAL ? SMPL_ERROR_INVALID_ARGUMENT :
				  rc->r == -ENOTCONN ? SMPL_ERROR_RECORDS_UNAVAILABLE :
				  SMPL_ERROR_DEVICE_FAULT, "%s: %s", method, rc->msg);
		(void)sd_bus_reply_method_error(c->m, &e);
		sd_bus_error_free(&e);
	} else {
		(void)sd_bus_reply_method_return(c->m, NULL);
	}
	call_free(c);
}

/* --- RecordFollowUp ---------------------------------------------------------- */

/* The variant of one finding, into @f (smpl_follow_up_set()). */
static int read_finding(sd_bus_message *m, const char *key, struct smpl_follow_up *f,
			char *err, size_t err_len)
{
	const char *contents = NULL, *s = NULL;
	union { uint8_t y; int16_t n; uint16_t q; int32_t i; uint32_t u; int64_t x;
		uint64_t t; int b; } v = { 0 };
	int64_t i = 0;
	char type;
	int r;

	r = sd_bus_message_peek_type(m, &type, &contents);
	if (r < 0)
		return r;
	if (strcmp(contents, "as") == 0) {
		r = smpl_follow_up_set(f, key, contents, 0, NULL, err, err_len);
		if (r < 0)
			return r;
		r = sd_bus_message_enter_container(m, 'v', "as");
		if (r >= 0)
			r = sd_bus_message_enter_container(m, 'a', "s");
		while (r >= 0 && (r = sd_bus_message_read(m, "s", &s)) > 0) {
			r = smpl_follow_up_add_adverse(f, s, err, err_len);
			if (r < 0)
				return r;
		}
		if (r >= 0)
			r = sd_bus_message_exit_container(m);
		if (r >= 0)
			r = sd_bus_message_exit_container(m);
		return r < 0 ? r : 0;
	}
	if (strlen(contents) != 1 || !strchr("bynqiuxts", contents[0])) {
		r = smpl_follow_up_set(f, key, contents, 0, NULL, err, err_len);
		return r < 0 ? r : sd_bus_message_skip(m, "v");
	}
	if (contents[0] == 's')
		r = sd_bus_message_read(m, "v", "s", &s);
	else
		r = sd_bus_message_read(m, "v", contents, &v);
	if (r < 0)
		return r;
	switch (contents[0]) {
	case 'b': i = v.b; break;
	case 'y': i = v.y; break;
	case 'n': i = v.n; break;
	case 'q': i = v.q; break;
	case 'i': i = v.i; break;
	case 'u': i = v.u; break;
	case 'x': i = v.x; break;
	case 't': i = v.t > INT64_MAX ? INT64_MAX : (int64_t)v.t; break;
	}
	return smpl_follow_up_set(f, key, contents, i, s, err, err_len);
}

/* RecordFollowUp's a{sv}: 0, a bus error (< 0, @err empty), or -EINVAL/-ERANGE with @err. */
static int read_findings(sd_bus_message *m, struct smpl_follow_up *f, char *err, size_t err_len)
{
	const char *key;
	int r;

	err[0] = '\0';
	r = sd_bus_message_enter_container(m, 'a', "{sv}");
	if (r < 0)
		return r;
	while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
		r = sd_bus_message_read(m, "s", &key);
		if (r >= 0)
			r = read_finding(m, key, f, err, err_len);
		if (r >= 0)
			r = sd_bus_message_exit_container(m);
		if (r < 0)
			return r;
	}
	if (r < 0)
		return r;
	r = sd_bus_message_exit_container(m);
	if (r < 0)
		return r;
	return smpl_follow_up_check(f, err, err_len);
}

static void follow_up_recorded(struct smpl_daemon *d, const struct smpl_records_call *rc,
			       void *ud)
{
	struct call *c = ud;

	if (rc->r >= 0) {
		smpl_log(LOG_INFO, NULL, NULL, "follow-up",
			 "follow-up %" PRId64 " of %s recorded by uid %u", rc->id, c->patch,
			 (unsigned int)c->uid);
		if (c->what[0])
			smpl_log(LOG_WARNING, NULL, NULL, "hold",
				 "%s is on hold for %s: an authorized review must clear it",
				 c->patch, c->what);
	}
	answer_write(d, c, rc, "RecordFollowUp", NULL);
}

int smpl_bus_record_follow_up(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
	struct smpl_daemon *d = userdata;
	struct smpl_follow_up *f;
	struct store_follow_up_in in = { 0 };
	const char *patient, *patch;
	char err[SMPL_REASON_MAX];
	struct call *c;
	uid_t uid;
	int r;

	r = sd_bus_message_read(m, "ss", &patient, &patch);
	if (r < 0)
		return r;
	r = smpl_bus_authorize(d, m, SMPL_ACTION_DOCUMENT, &uid, error);
	if (r <= 0)
		return smpl_bus_not_now(r);
	r = refuse_unless_kept(d, "RecordFollowUp", error);
	if (r < 0)
		return r;
	r = check_patient_patch(d, uid, patient, patch, error);
	if (r < 0)
		return r;
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	r = read_findings(m, f, err, sizeof(err));
	if (r < 0) {
		free(f);
		if (!err[0])
			return r;
		return smpl_refuse(d, NULL, 0, uid, error, r == -ERANGE ? SMPL_ERROR_OUT_OF_RANGE :
				   SMPL_ERROR_INVALID_ARGUMENT, "RecordFollowUp: %s", err);
	}
	c = call_new(m, uid, patient, patch);
	if (!c) {
		free(f);
		return -ENOMEM;
	}
	smpl_follow_up_holds(f, c->what, sizeof(c->what));
	in.patient = patient;
	in.patch = patch;
	in.time_ms = smpl_wall_ms();
	in.has_redness = f->has_redness;
	in.redness_resolved = f->redness_resolved;
	in.has_pigment = f->has_pigment;
	in.pigment_pct = f->pigment_pct;
	in.note = f->has_note ? f->note : NULL;
	for (int a = 0; a < SMPL_ADVERSE__COUNT && in.n_adverse < STORE_ADVERSE_MAX; a++)
		if (f->adverse & (1u << a)) {
			in.adverse[in.n_adverse] = smpl_adverse_name((enum smpl_adverse)a);
			in.holds[in.n_adverse++] = smpl_adverse_holds((enum smpl_adverse)a);
		}
	smpl_records_follow_up(d, &in, uid, follow_up_recorded, c);
	free(f);
	return 1;
}

/* --- ClearPatchHold ----------------------------------------------------------- */

static void hold_cleared(struct smpl_daemon *d, const struct smpl_records_call *rc, void *ud)
{
	struct call *c = ud;

	if (rc->r >= 0)
		smpl_log(LOG_NOTICE, NULL, NULL, "review",
			 "the hold on %s cleared by an authorized review (uid %u)", c->patch,
			 (unsigned int)c->uid);
	answer_write(d, c, rc, "ClearPatchHold", SMPL_ERROR_INVALID_ARGUMENT);
}

int smpl_bus_clear_patch_hold(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
	struct smpl_daemon *d = userdata;
	const char *patient, *patch, *note;
	struct call *c;
	uid_t uid;
	int r;

	r = sd_bus_message_read(m, "sss", &patient, &patch, &note);
	if (r < 0)
		return r;
	r = smpl_bus_authorize(d, m, SMPL_ACTION_ACKNOWLEDGE, &uid, error);
	if (r <= 0)
		return smpl_bus_not_now(r);
	r = refuse_unless_kept(d, "ClearPatchHold", error);
	if (r < 0)
		return r;
	r = check_patient_patch(d, uid, patient, patch, error);
	if (r < 0)
		return r;
	if (!smpl_note_valid(note, SMPL_CLINICAL_NOTE_MAX))
		return smpl_refuse(d, NULL, 0, uid, error, SMPL_ERROR_INVALID_ARGUMENT,
				   "note: at most %d characters, no control characters",
				   SMPL_CLINICAL_NOTE_MAX);
	c = call_new(m, uid, patient, patch);
	if (!c)
		return -ENOMEM;
	smpl_records_clear_hold(d, patient, patch, note, uid, hold_cleared, c);
	return 1;
}

/* --- Course ----------------------------------------------------------------- */

/* The patient's endpoints, kept for matching with the treatments. */
struct endpoints {
	struct course_endpoint {
		int64_t id, session_id, treatment_id, time_ms;
		char patch[SMPL_PATCH_ID_MAX + 1];
		char endpoint[24];
		char *note, *operator_name;
		uint32_t operator_uid;
	} *v;
	size_t n;
	bool oom;
};

static int keep_endpoint(const struct store_endpoint *e, void *ctx)
{
	struct endpoints *l = ctx;
	struct course_endpoint *v = realloc(l->v, (l->n + 1) * sizeof(*v)), *ce;

	if (!v) {
		l->oom = true;
		return 1;
	}
	l->v = v;
	ce = &v[l->n];
	*ce = (struct course_endpoint){
		.id = e->id, .session_id = e->session_id, .treatment_id = e->treatment_id,
		.time_ms = e->time_ms, .operator_uid = e->operator_uid,
		.note = strdup(e->note), .operator_name = strdup(e->operator_name),
	};
	snprintf(ce->patch, sizeof(ce->patch), "%s", e->patch);
	snprintf(ce->endpoint, sizeof(ce->endpoint), "%s", e->endpoint);
	if (!ce->note || !ce->operator_name) {
		free(ce->note);
		free(ce->operator_name);
		l->oom = true;
		return 1;
	}
	l->n++;
	return 0;
}

static void endpoints_free(struct endpoints *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->v[i].note);
		free(l->v[i].operator_name);
	}
	free(l->v);
}

/* The endpoint that documents treatment @t: the newest of its session and patch recorded after it. */
static const struct course_endpoint *endpoint_of(const struct endpoints *l,
						 const struct store_treatment *t)
{
	const struct course_endpoint *found = NULL;

	for (size_t i = 0; i < l->n; i++)
		if (l->v[i].session_id == t->session_id && strcmp(l->v[i].patch, t->patch) == 0 &&
		    l->v[i].treatment_id >= t->id)
			found = &l->v[i];
	return found;
}

/* What a patch's entries are built from. */
struct course {
	struct smpl_daemon *d;
	sd_bus_message *reply;
	const char *patch;
	const struct endpoints *endpoints;
	uint32_t treatments, pulses;
	uint64_t energy_uj;
	int r;
};

/* {"key": <aa{sv}>} opened; each element then closed by the caller. */
static int open_list(sd_bus_message *reply, const char *key)
{
	int r = sd_bus_message_open_container(reply, 'e', "sv");

	if (r >= 0)
		r = sd_bus_message_append(reply, "s", key);
	if (r >= 0)
		r = sd_bus_message_open_container(reply, 'v', "aa{sv}");
	if (r >= 0)
		r = sd_bus_message_open_container(reply, 'a', "a{sv}");
	return r;
}

static int close_list(sd_bus_message *reply)
{
	int r = sd_bus_message_close_container(reply);

	if (r >= 0)
		r = sd_bus_message_close_container(reply);
	if (r >= 0)
		r = sd_bus_message_close_container(reply);
	return r;
}

static uint32_t pulses_of(const struct store_treatment *t)
{
	return t->pulse_count_known && t->pulse_count > t->pulses_recorded ? t->pulse_count
									   : t->pulses_recorded;
}

static int add_treatment(const struct store_treatment *t, void *ctx)
{
	struct course *c = ctx;
	const struct course_endpoint *e;

	if (strcmp(t->patch, c->patch) != 0)
		return 0;
	e = t->emission_ms ? endpoint_of(c->endpoints, t) : NULL;	/* none for no emission */
	if (t->emission_ms) {
		c->treatments++;
		c->pulses += pulses_of(t);
		c->energy_uj += t->energy_sum_uj;
	}
	c->r = sd_bus_message_append(c->reply, "a{sv}", 20,
		"id", "x", t->id,
		"session", "x", t->session_id,
		"emitted", "b", t->emission_ms != 0,
		"armed_usec", "t", usec(t->armed_ms),
		"end_usec", "t", usec(t->end_ms),
		"outcome", "s", store_outcome_name(t->outcome),
		"pulses", "u", pulses_of(t),
		"energy_uj", "t", t->energy_sum_uj,
		"wavelength_nm", "u", (uint32_t)t->params.wavelength_nm,
		"fluence_mj_cm2", "u", t->params.fluence_mj_cm2,
		"spot_um", "u", (uint32_t)t->params.spot_um,
		"pulse_ps", "u", t->params.pulse_ps,
		"rate_mhz", "u", t->params.rate_mhz,
		"unit", "s", t->unit_serial,
		"operator_uid", "u", t->op.uid,
		"operator", "s", t->op.name ? t->op.name : "",
		"endpoint", "s", e ? e->endpoint : "",
		"endpoint_note", "s", e ? e->note : "",
		"endpoint_usec", "t", e ? usec(e->time_ms) : 0,
		"endpoint_id", "x", e ? e->id : (int64_t)0);
	return c->r < 0;
}

static int add_endpoints(sd_bus_message *reply, const struct endpoints *l, const char *patch)
{
	int r = open_list(reply, "endpoints");

	for (size_t i = 0; r >= 0 && i < l->n; i++) {
		const struct course_endpoint *e = &l->v[i];

		if (strcmp(e->patch, patch) != 0)
			continue;
		r = sd_bus_message_append(reply, "a{sv}", 8,
					  "id", "x", e->id,
					  "session", "x", e->session_id,
					  "treatment", "x", e->treatment_id,
					  "time_usec", "t", usec(e->time_ms),
					  "endpoint", "s", e->endpoint,
					  "note", "s", e->note,
					  "operator_uid", "u", e->operator_uid,
					  "operator", "s", e->operator_name);
	}
	return r < 0 ? r : close_list(reply);
}

/* "a,b" as an "as" variant entry. */
static int append_names(sd_bus_message *reply, const char *key, const char *list)
{
	char buf[256];
	int r = sd_bus_message_open_container(reply, 'e', "sv");

	if (r >= 0)
		r = sd_bus_message_append(reply, "s", key);
	if (r >= 0)
		r = sd_bus_message_open_container(reply, 'v', "as");
	if (r >= 0)
		r = sd_bus_message_open_container(reply, 'a', "s");
	snprintf(buf, sizeof(buf), "%s", list);
	for (char *save = NULL, *p = strtok_r(buf, ", ", &save); r >= 0 && p;
	     p = strtok_r(NULL, ", ", &save))
		r = sd_bus_message_append(reply, "s", p);
	for (int i = 0; r >= 0 && i < 3; i++)
		r = sd_bus_message_close_container(reply);
	return r;
}

static int add_follow_up(const struct store_follow_up *f, void *ctx)
{
	struct course *c = ctx;
	sd_bus_message *reply = c->reply;
	int r;

	if (strcmp(f->patch, c->patch) != 0)
		return 0;
	r = sd_bus_message_open_container(reply, 'a', "{sv}");
	if (r >= 0)
		r = sd_bus_message_append(reply, "{sv}{sv}{sv}{sv}{sv}",
					  "id", "x", f->id,
					  "time_usec", "t", usec(f->time_ms),
					  "note", "s", f->note,
					  "operator_uid", "u", f->operator_uid,
					  "operator", "s", f->operator_name);
	if (r >= 0 && f->has_pigment)
		r = sd_bus_message_append(reply, "{sv}", "pigment_remaining_pct", "u",
					  f->pigment_pct);
	if (r >= 0 && f->has_redness)
		r = sd_bus_message_append(reply, "{sv}", "redness_resolved", "b",
					  (int)f->redness_resolved);
	if (r >= 0)
		r = append_names(reply, "adverse", f->adverse);
	if (r >= 0)
		r = append_names(reply, "holding", f->holding);
	if (r >= 0)
		r = sd_bus_message_close_container(reply);
	c->r = r;
	return r < 0;
}

static int add_review(const struct store_review *v, void *ctx)
{
	struct course *c = ctx;

	if (strcmp(v->patch, c->patch) != 0)
		return 0;
	c->r = sd_bus_message_append(c->reply, "a{sv}", 6,
				     "id", "x", v->id,
				     "time_usec", "t", usec(v->time_ms),
				     "cleared_through", "x", v->cleared_through,
				     "note", "s", v->note,
				     "operator_uid", "u", v->operator_uid,
				     "operator", "s", v->operator_name);
	return c->r < 0;
}

/* What Course answers from, read off the loop with PostgreSQL (smpl_records_read_call). */
struct follow_ups {
	struct store_follow_up *v;
	size_t n;
	bool oom;
};

struct reviews {
	struct store_review *v;
	size_t n;
	bool oom;
};

struct course_read {
	struct call *call;
	int r;				/* 0, -ENOTCONN, -ENOMEM or -EIO (msg) */
	char msg[STORE_MSG_MAX];
	struct endpoints endpoints;
	struct smpl_treatments history;
	struct follow_ups follow_ups;
	struct reviews reviews;
	/* the configured patches (copied on the loop), then those only the records name */
	char (*patches)[SMPL_PATCH_ID_MAX + 1];
	size_t n_configured, n_patches;
	struct store_patch_facts *facts;	/* one per patch */
};

static int keep_follow_up(const struct store_follow_up *f, void *ctx)
{
	struct follow_ups *l = ctx;
	struct store_follow_up *v = realloc(l->v, (l->n + 1) * sizeof(*v)), *n;

	if (!v) {
		l->oom = true;
		return 1;
	}
	l->v = v;
	n = &v[l->n];
	*n = *f;
	n->patch = strdup(f->patch);
	n->adverse = strdup(f->adverse);
	n->holding = strdup(f->holding);
	n->note = strdup(f->note);
	n->operator_name = strdup(f->operator_name);
	l->n++;
	if (!n->patch || !n->adverse || !n->holding || !n->note || !n->operator_name)
		l->oom = true;
	return l->oom;
}

static int keep_review(const struct store_review *r, void *ctx)
{
	struct reviews *l = ctx;
	struct store_review *v = realloc(l->v, (l->n + 1) * sizeof(*v)), *n;

	if (!v) {
		l->oom = true;
		return 1;
	}
	l->v = v;
	n = &v[l->n];
	*n = *r;
	n->patch = strdup(r->patch);
	n->note = strdup(r->note);
	n->operator_name = strdup(r->operator_name);
	l->n++;
	if (!n->patch || !n->note || !n->operator_name)
		l->oom = true;
	return l->oom;
}

static void course_read_free(struct course_read *cr)
{
	endpoints_free(&cr->endpoints);
	smpl_treatments_free(&cr->history);
	for (size_t i = 0; i < cr->follow_ups.n; i++) {
		struct store_follow_up *f = &cr->follow_ups.v[i];

		free((char *)f->patch);
		free((char *)f->adverse);
		free((char *)f->holding);
		free((char *)f->note);
		free((char *)f->operator_name);
	}
	free(cr->follow_ups.v);
	for (size_t i = 0; i < cr->reviews.n; i++) {
		free((char *)cr->reviews.v[i].patch);
		free((char *)cr->reviews.v[i].note);
		free((char *)cr->reviews.v[i].operator_name);
	}
	free(cr->reviews.v);
	free(cr->patches);
	free(cr->facts);
	free(cr);
}

/* A patch the records name and the configuration does not: listed after the configured. */
static void patch_add(struct course_read *cr, const char *patch)
{
	for (size_t i = 0; i < cr->n_patches; i++)
		if (strcmp(cr->patches[i], patch) == 0)
			return;
	if (cr->n_patches < cr->n_configured + SMPL_PATCHES_MAX)
		snprintf(cr->patches[cr->n_patches++], sizeof(cr->patches[0]), "%s", patch);
}

/* Why a read failed: -ENOTCONN stays (RecordsUnavailable), the rest is -EIO. */
static void read_failed(struct course_read *cr, const struct store_ops *o, void *h, int r)
{
	if (cr->r)
		return;
	cr->r = r == -ENOTCONN || r == -ENOMEM ? r : -EIO;
	snprintf(cr->msg, sizeof(cr->msg), "%s", r == -ENOMEM ? "out of memory" : o->errmsg(h));
}

/* On the reader (a worker with PostgreSQL): everything the answer needs. */
static void course_read_run(const struct store_ops *o, void *h, void *ctx)
{
	struct course_read *cr = ctx;
	const char *patient = cr->call->patient;
	int r;

	r = o->patient_endpoints(h, patient, keep_endpoint, &cr->endpoints);
	if (r >= 0 && cr->endpoints.oom)
		r = -ENOMEM;
	if (r >= 0)
		r = o->patient_history(h, patient, smpl_treatments_add, &cr->history);
	if (r >= 0 && cr->history.oom)
		r = -ENOMEM;
	if (r >= 0)
		r = o->patient_follow_ups(h, patient, keep_follow_up, &cr->follow_ups);
	if (r >= 0 && cr->follow_ups.oom)
		r = -ENOMEM;
	if (r >= 0)
		r = o->patient_reviews(h, patient, keep_review, &cr->reviews);
	if (r >= 0 && cr->reviews.oom)
		r = -ENOMEM;
	if (r < 0) {
		read_failed(cr, o, h, r);
		return;
	}
	for (size_t i = 0; i < cr->history.n; i++)
		patch_add(cr, cr->history.v[i].patch);
	for (size_t i = 0; i < cr->follow_ups.n; i++)
		patch_add(cr, cr->follow_ups.v[i].patch);
	cr->facts = calloc(cr->n_patches ? cr->n_patches : 1, sizeof(*cr->facts));
	if (!cr->facts) {
		read_failed(cr, o, h, -ENOMEM);
		return;
	}
	for (size_t i = 0; i < cr->n_patches; i++) {
		r = o->patch_facts(h, patient, cr->patches[i], 0, &cr->facts[i]);
		if (r < 0) {
			read_failed(cr, o, h, r);
			return;
		}
	}
}

/* One patch's dict. */
static int add_patch(struct smpl_daemon *d, sd_bus_message *reply, const struct course_read *cr,
		     size_t i, const char *label, int64_t now_ms)
{
	const char *patch = cr->patches[i];
	const struct store_patch_facts *facts = &cr->facts[i];
	struct course c = { .d = d, .reply = reply, .patch = patch, .endpoints = &cr->endpoints };
	struct smpl_patch_verdict pv;
	enum smpl_course_status status;
	int64_t cooldown_end = 0;
	int r;

	r = smpl_patch_decide(&d->cfg, facts, patch, now_ms, &pv);
	if (r < 0 && r != -EAGAIN && r != -EDQUOT)
		return -EIO;
	status = smpl_course_status_of(&pv.e, facts->patch_emitted);
	if (facts->patch_emitted)
		cooldown_end = facts->patch_last_emission_ms +
			       (int64_t)d->cfg.rules.cooldown_days * SMPL_DAY_MS;

	r = sd_bus_message_open_container(reply, 'a', "{sv}");
	if (r >= 0)
		r = sd_bus_message_append(reply, "{sv}{sv}{sv}{sv}{sv}{sv}{sv}{sv}{sv}",
			"patch", "s", patch,
			"label", "s", label,
			"status", "s", smpl_course_status_name(status),
			"eligible", "b", (int)pv.e.eligible,
			"reason", "s", pv.e.reason,
			"next_eligible_usec", "t", pv.e.eligible ? usec(now_ms) :
						    usec(pv.e.next_eligible_ms),
			"last_treated_usec", "t", facts->patch_emitted ?
						   usec(facts->patch_last_emission_ms) : 0,
			"cooldown_end_usec", "t", usec(cooldown_end),
			"hold_since_usec", "t", facts->on_hold ? usec(facts->hold_since_ms) : 0);
	if (r >= 0)
		r = append_names(reply, "hold_reasons", facts->on_hold ? facts->hold_events : "");
	if (r >= 0)
		r = open_list(reply, "treatments");
	for (size_t k = 0; r >= 0 && k < cr->history.n; k++)
		if (add_treatment(&cr->history.v[k], &c))
			r = c.r < 0 ? c.r : -EIO;
	if (r >= 0)
		r = close_list(reply);
	if (r >= 0)
		r = sd_bus_message_append(reply, "{sv}{sv}{sv}",
					  "treatment_count", "u", c.treatments,
					  "pulses", "u", c.pulses,
					  "energy_uj", "t", c.energy_uj);
	if (r >= 0)
		r = add_endpoints(reply, &cr->endpoints, patch);
	if (r >= 0)
		r = open_list(reply, "follow_ups");
	for (size_t k = 0; r >= 0 && k < cr->follow_ups.n; k++)
		if (add_follow_up(&cr->follow_ups.v[k], &c))
			r = c.r < 0 ? c.r : -EIO;
	if (r >= 0)
		r = close_list(reply);
	if (r >= 0)
		r = open_list(reply, "reviews");
	for (size_t k = 0; r >= 0 && k < cr->reviews.n; k++)
		if (add_review(&cr->reviews.v[k], &c))
			r = c.r < 0 ? c.r : -EIO;
	if (r >= 0)
		r = close_list(reply);
	if (r >= 0)
		r = sd_bus_message_close_container(reply);
	return r;
}

static int build_course(struct smpl_daemon *d, sd_bus_message *reply, const struct course_read *cr)
{
	int64_t now = smpl_wall_ms();
	int r = sd_bus_message_open_container(reply, 'a', "a{sv}");

	for (size_t i = 0; r >= 0 && i < cr->n_patches; i++)
		r = add_patch(d, reply, cr, i, i < cr->n_configured ? d->cfg.patches.list[i].label
								    : cr->patches[i], now);
	if (r >= 0)
		r = sd_bus_message_close_container(reply);
	return r;
}

/* On the loop: the answer. */
static void course_read_done(struct smpl_daemon *d, void *ctx)
{
	struct course_read *cr = ctx;
	struct call *c = cr->call;
	sd_bus_message *reply = NULL;
	sd_bus_error e = SD_BUS_ERROR_NULL;
	int r = cr->r;

	if (smpl_records_remote(d))
		smpl_records_reachable(d, r, cr->msg);
	if (r >= 0)
		r = sd_bus_message_new_method_return(c->m, &reply);
	if (r >= 0)
		r = build_course(d, reply, cr);
	if (r == -ENOTCONN || r == -EIO) {
		(void)smpl_error_setf(&e, r == -ENOTCONN ? SMPL_ERROR_RECORDS_UNAVAILABLE :
				      SMPL_ERROR_DEVICE_FAULT, "cannot read the records: %s",
				      cr->msg[0] ? cr->msg : "the answer could not be built");
		(void)sd_bus_reply_method_error(c->m, &e);
		sd_bus_error_free(&e);
	} else if (r < 0) {
		(void)sd_bus_reply_method_errnof(c->m, -r, "cannot answer: %s", strerror(-r));
	} else {
		(void)sd_bus_send(NULL, reply, NULL);
	}
	sd_bus_message_unref(reply);
	call_free(c);
	course_read_free(cr);
}

static void course_now(struct smpl_daemon *d, const struct smpl_records_call *rc, void *ud)
{
	struct call *c = ud;
	struct course_read *cr = calloc(1, sizeof(*cr));
	size_t n = d->cfg.patches.count;
	sd_bus_error e = SD_BUS_ERROR_NULL;

	if (rc->r == -ENOTCONN) {
		/* this workstation's own writes are not all in the clinic's records yet */
		free(cr);
		(void)smpl_error_setf(&e, SMPL_ERROR_RECORDS_UNAVAILABLE, "Course: %s", rc->msg);
		(void)sd_bus_reply_method_error(c->m, &e);
		sd_bus_error_free(&e);
		call_free(c);
		return;
	}
	if (cr)
		cr->patches = calloc(n + SMPL_PATCHES_MAX, sizeof(*cr->patches));
	if (!cr || !cr->patches) {
		free(cr);
		(void)sd_bus_reply_method_errnof(c->m, ENOMEM, "cannot answer: out of memory");
		call_free(c);
		return;
	}
	cr->call = c;
	for (size_t i = 0; i < n; i++)
		snprintf(cr->patches[i], sizeof(cr->patches[0]), "%s", d->cfg.patches.list[i].id);
	cr->n_configured = cr->n_patches = n;
	if (smpl_records_read_call(d, course_read_run, course_read_done, cr) < 0) {
		(void)sd_bus_reply_method_errnof(c->m, ENOMEM, "cannot answer: out of memory");
		call_free(c);
		course_read_free(cr);
	}
}

int smpl_bus_course(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
	struct smpl_daemon *d = userdata;
	const char *patient;
	struct call *c;
	uid_t uid;
	int r;

	r = sd_bus_message_read(m, "s", &patient);
	if (r < 0)
		return r;
	r = smpl_bus_authorize(d, m, SMPL_ACTION_RECORDS, &uid, error);
	if (r <= 0)
		return smpl_bus_not_now(r);
	r = refuse_unless_kept(d, "Course", error);
	if (r < 0)
		return r;
	r = check_patient_patch(d, uid, patient, NULL, error);
	if (r < 0)
		return r;
	c = call_new(m, uid, patient, "");
	if (!c)
		return -ENOMEM;
	smpl_records_barrier(d, course_now, c);	/* read your writes */
	return 1;
}

int smpl_bus_property_clinic_name(SMPL_PROPERTY_ARGS)
{
	struct smpl_daemon *d = userdata;

	SMPL_UNUSED_PROPERTY_ARGS;
	return sd_bus_message_append(reply, "s", d->cfg.clinic.name);
}
