/* SPDX-License-Identifier: MIT */
/*
 * The endpoint of each treated patch (issue 16): the tissue response the
 * technician sees when a patch's treatment ends (whitening,
 * partial-whitening, no-whitening).  A session keeps its treatments and
 * which emitted: one that emitted needs its patch's endpoint before the
 * session selects another patch or ends (EndpointMissing).  What emitted is
 * what the unit showed: a pulse report, the unit EMITTING, or its counter
 * past the arming one when the treatment closed.
 *
 * RecordEndpoint, here: the endpoint is written by the records writer with
 * an audit record; the writer checks again that the session is open and that
 * the patch's treatment emitted (store_endpoint_add).  The rule that asks for
 * it (EndpointMissing) is the session's own, in session.c.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "clinical.h"
#include "daemon.h"
#include "errors.h"
#include "log.h"
#include "records.h"
#include "session.h"
#include "unit.h"

/* --- RecordEndpoint ------------------------------------------------------------ */

struct endpoint_flow {
	struct smpl_daemon *d;
	sd_bus_message *m;
	int64_t session_id;
	int64_t through;		/* the last of the patch's treatments it documents */
	uid_t uid;
	char patch[SMPL_PATCH_ID_MAX + 1];
	char endpoint[24];
};

static struct smpl_session *session_by_id(struct smpl_daemon *d, int64_t id)
{
	for (struct smpl_session *s = d->sessions; s; s = s->next)
		if (s->id == id)
			return s;
	return NULL;
}

static void endpoint_recorded(struct smpl_daemon *d, const struct smpl_records_call *c, void *ud)
{
	struct endpoint_flow *f = ud;
	struct smpl_session *s = session_by_id(d, f->session_id);
	sd_bus_error e = SD_BUS_ERROR_NULL;

	if (c->r < 0) {
		(void)smpl_refuse(d, s ? s->unit : NULL, f->session_id, f->uid, &e,
				  c->r == -ESTALE ? SMPL_ERROR_NO_SESSION :
				  c->r == -ENOTCONN ? SMPL_ERROR_RECORDS_UNAVAILABLE :
				  c->r == -ENOENT || c->r == -EINVAL ? SMPL_ERROR_INVALID_ARGUMENT :
				  SMPL_ERROR_DEVICE_FAULT, "RecordEndpoint: %s", c->msg);
		(void)sd_bus_reply_method_error(f->m, &e);
		sd_bus_error_free(&e);
		goto out;
	}
	if (s) {
		for (size_t i = 0; i < s->n_treatments; i++)
			if (strcmp(s->treatments[i].patch, f->patch) == 0 &&
			    s->treatments[i].id <= f->through)
				s->treatments[i].documented = true;
		smpl_session_changed(s);
	}
	smpl_log(LOG_INFO, s && s->unit ? smpl_unit_label(s->unit) : NULL, s ? s->path : NULL,
		 "endpoint", "endpoint of %s recorded by uid %u: %s", f->patch,
		 (unsigned int)f->uid, f->endpoint);
	(void)sd_bus_reply_method_return(f->m, NULL);
out:
	sd_bus_message_unref(f->m);
	free(f);
}

int smpl_session_record_endpoint(struct smpl_session *s, sd_bus_message *m, const char *patch,
				 const char *endpoint, const char *note, uid_t uid,
				 sd_bus_error *error)
{
	struct smpl_daemon *d = s->daemon;
	struct smpl_unit *u = s->unit;
	struct endpoint_flow *f;
	enum smpl_endpoint ep;
	char err[SMPL_REASON_MAX];
	int64_t through = 0;

	if (!smpl_records_clinical(d))
		return sd_bus_error_setf(error, SD_BUS_ERROR_NOT_SUPPORTED, "RecordEndpoint: %s",
					 SMPL_CLINICAL_NOT_KEPT);
	if (smpl_patch_name_check(&d->cfg.patches, patch, err, sizeof(err)) < 0 ||
	    smpl_endpoint_parse(endpoint, &ep, err, sizeof(err)) < 0)
		return smpl_refuse(d, u, s->id, uid, error, SMPL_ERROR_INVALID_ARGUMENT, "%s", err);
	if (!smpl_note_valid(note, SMPL_CLINICAL_NOTE_MAX))
		return smpl_refuse(d, u, s->id, uid, error, SMPL_ERROR_INVALID_ARGUMENT,
				   "note: at most %d characters, no control characters",
				   SMPL_CLINICAL_NOTE_MAX);
	if (u && (u->treatment_id || u->arming) && strcmp(s->patch, patch) == 0)
		return smpl_refuse(d, u, s->id, uid, error, SMPL_ERROR_BUSY,
				   "unit %s is armed for %s: disarm first; the endpoint is the "
				   "tissue response seen when the treatment ends",
				   smpl_unit_label(u), patch);
	for (size_t i = 0; i < s->n_treatments; i++)
		if (s->treatments[i].emitted && strcmp(s->treatments[i].patch, patch) == 0)
			through = s->treatments[i].id;
	if (!through)
		return smpl_refuse(d, u, s->id, uid, error, SMPL_ERROR_INVALID_ARGUMENT,
				   "%s emitted nothing in this session: there is no endpoint to "
				   "record", patch);
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->d = d;
	f->m = sd_bus_message_ref(m);
	f->session_id = s->id;
	f->through = through;
	f->uid = uid;
	snprintf(f->patch, sizeof(f->patch), "%s", patch);
	snprintf(f->endpoint, sizeof(f->endpoint), "%s", smpl_endpoint_name(ep));
	smpl_records_endpoint(d, &(struct store_endpoint_in){
		.session_id = s->id, .patch = patch, .endpoint = smpl_endpoint_name(ep),
		.note = note, .time_ms = smpl_wall_ms(),
	}, uid, endpoint_recorded, f);
	return 1;
}
