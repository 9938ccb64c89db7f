/* SPDX-License-Identifier: MIT */
/*
 * Treatment sessions: one patient on one unit, from StartSession to End.
 * A session belongs to the connection that opened it (S6), watched on the bus
 * (creds.h): when it leaves, the unit is disarmed at once and the session
 * closed (S4).  StartSession and SelectPatch answer when their steps are
 * done (a record written, the unit read); the loop never waits for them.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "audit.h"
#include "creds.h"
#include "daemon.h"
#include "eligibility.h"
#include "errors.h"
#include "log.h"
#include "records.h"
#include "session.h"
#include "supervisor.h"
#include "unit-ops.h"
#include "unit.h"

const char *smpl_session_state_name(const struct smpl_session *s)
{
	if (s->unit && s->unit->session == s && s->unit->treatment_id)
		return "armed";
	return s->unit ? "open" : "ended";
}

void smpl_session_changed(struct smpl_session *s)
{
	const struct smpl_observer *o = s->daemon->observer;

	if (o && o->session_changed)
		o->session_changed(s);
}

/* --- the endpoint of each treated patch (issue 16): asked before moving on --- */

static bool listed(const char *buf, const char *patch)
{
	size_t n = strlen(patch);

	for (const char *p = buf; (p = strstr(p, patch)); p += n)
		if ((p == buf || p[-1] == ' ') && (p[n] == ',' || p[n] == '\0'))
			return true;
	return false;
}

unsigned int smpl_session_endpoints_missing(const struct smpl_session *s, const char *except,
					    char *buf, size_t len)
{
	unsigned int n = 0;
	size_t at = 0;

	if (len)
		buf[0] = '\0';
	/* Records that cannot keep an endpoint do not ask for one (store-ops.h). */
	if (!smpl_records_clinical(s->daemon))
		return 0;
	for (size_t i = 0; i < s->n_treatments; i++) {
		const struct smpl_session_treatment *t = &s->treatments[i];

		if (!t->emitted || t->documented || (except && strcmp(t->patch, except) == 0))
			continue;
		if (len && listed(buf, t->patch))
			continue;
		n++;
		if (len && at < len)
			at += (size_t)snprintf(buf + at, len - at, "%s%s", at ? ", " : "", t->patch);
	}
	return n;
}

int smpl_session_refuse_missing_endpoint(struct smpl_session *s, const char *except,
					 uid_t uid, const char *what, sd_bus_error *error)
{
	char patches[256];
	unsigned int n = smpl_session_endpoints_missing(s, except, patches, sizeof(patches));

	if (!n)
		return 0;
	return smpl_refuse(s->daemon, s->unit, s->id, uid, error, SMPL_ERROR_ENDPOINT_MISSING,
			   "%s: the endpoint of %s is missing: record the tissue response seen "
			   "when its treatment ended (whitening, partial-whitening or "
			   "no-whitening) first", what, patches);
}

struct smpl_session *smpl_session_by_path(struct smpl_daemon *d, const char *path)
{
	for (struct smpl_session *s = d->sessions; s; s = s->next)
		if (strcmp(s->path, path) == 0)
			return s;
	return NULL;
}

static void session_free(struct smpl_session *s)
{
	if (!s)
		return;
	smpl_owner_watch_free(s->watch);
	sd_event_source_disable_unref(s->end_later);
	free(s->path);
	free(s->patient);
	free(s->owner);
	free(s->treatments);
	sd_bus_message_unref(s->starting);
	free(s);
}

static void session_unlink(struct smpl_session *s)
{
	for (struct smpl_session **pp = &s->daemon->sessions; *pp; pp = &(*pp)->next)
		if (*pp == s) {
			*pp = s->next;
			return;
		}
}

/* --- the owner leaving the bus (S4) -------------------------------------------- */

static int end_abandoned(sd_event_source *src, void *userdata)
{
	struct smpl_session *s = userdata;

	(void)src;
	s->end_later = sd_event_source_disable_unref(s->end_later);
	(void)smpl_session_end(s, STORE_SESSION_INTERRUPTED,
			       "the client that opened the session left the bus", NULL, NULL);
	return 0;
}

static void on_owner_gone(void *userdata)
{
	struct smpl_session *s = userdata;
	struct smpl_unit *u = s->unit;
	struct smpl_action a = { 0 };

	smpl_log(LOG_WARNING, u ? smpl_unit_label(u) : NULL, s->path, "owner-gone",
		 "the client that opened session %" PRId64 " left the bus", s->id);
	if (u && u->session == s) {
		(void)smpl_safety_owner_vanished(&u->safety, &a);
		smpl_unit_apply(u, &a);		/* disarm now, not later */
	}
	/* Close the session outside the watch's own callback. */
	if (!s->end_later &&
	    sd_event_add_defer(s->daemon->event, &s->end_later, end_abandoned, s) < 0)
		(void)end_abandoned(NULL, s);
}

/* --- the owner (S6) ------------------------------------------------------------ */

int smpl_session_check_owner(struct smpl_session *s, sd_bus_message *m, const char *what,
			     sd_bus_error *error)
{
	const char *sender = sd_bus_message_get_sender(m);
	uid_t uid = (uid_t)-1;
	int r;

	/* A direct connection (no bus) has one peer: it opened the session. */
	if ((!sender && !s->owner) || (sender && s->owner && strcmp(sender, s->owner) == 0))
		return 1;
	r = smpl_creds_uid(s->daemon->creds, m, &uid);	/* who, for the audit trail */
	if (r == 0)
		return 0;
	return smpl_refuse(s->daemon, s->unit, s->id, uid, error, SMPL_ERROR_NOT_AUTHORIZED,
			   "%s: session %" PRId64 " belongs to the client that opened it (%s): "
			   "only that client changes the session or arms for it",
			   what, s->id, s->owner ? s->owner : "a direct connection");
}

/* --- start -------------------------------------------------------------------- */

static int session_publish(struct smpl_session *s)
{
	struct smpl_daemon *d = s->daemon;
	int r;

	if (asprintf(&s->path, SMPL_SESSION_PREFIX "/%" PRId64, s->id) < 0) {
		s->path = NULL;
		return -ENOMEM;
	}
	r = smpl_owner_watch_new(d->bus, s->owner, on_owner_gone, s, &s->watch);
	if (r < 0)
		return r;
	s->next = d->sessions;
	d->sessions = s;
	s->unit->session = s;
	if (d->observer && d->observer->session_published)
		d->observer->session_published(s);
	return 0;
}

/*
 * A session the safety core opened but that could not be created (no memory,
 * not recorded, not published): close it again there, or the unit would
 * refuse every later session as "already open".  Not armed (session_open
 * refuses an armed unit), so there is nothing to disarm.
 */
static void session_open_undo(struct smpl_unit *u)
{
	struct smpl_action a;

	u->session_starting = false;
	(void)smpl_safety_session_close(&u->safety, &a);
}

/* The session's record is written: it exists (or the unit went meanwhile). */
static void session_begun(struct smpl_daemon *d, const struct smpl_records_call *c, void *ud)
{
	struct smpl_session *s = ud;
	struct smpl_unit *u = s->unit;
	sd_bus_message *m = s->starting;
	sd_bus_error e = SD_BUS_ERROR_NULL;
	int r;

	s->starting = NULL;
	if (c->r < 0 || u->gone) {
		if (c->r == 0)
			smpl_records_end_session(d, c->id, STORE_SESSION_INTERRUPTED,
						 "the unit was removed", smpl_wall_ms());
		if (!u->gone)
			session_open_undo(u);
		if (u->gone)
			(void)smpl_unit_error(u, s->uid, &e, -ENODEV, "StartSession");
		else
			(void)smpl_refuse(d, u, 0, s->uid, &e,
					  c->r == -ENOTCONN ? SMPL_ERROR_RECORDS_UNAVAILABLE
							    : SMPL_ERROR_DEVICE_FAULT,
					  "cannot record the session: %s", c->msg);
		(void)sd_bus_reply_method_error(m, &e);
		sd_bus_error_free(&e);
		goto out;
	}
	s->id = c->id;
	u->session_starting = false;
	r = session_publish(s);
	if (r < 0) {
		smpl_records_end_session(d, s->id, STORE_SESSION_INTERRUPTED,
					 "could not publish the session", smpl_wall_ms());
		if (u->session == s) {
			u->session = NULL;
			session_unlink(s);
		}
		session_open_undo(u);
		(void)sd_bus_reply_method_errnof(m, -r, "cannot publish the session: %s",
						 strerror(-r));
		goto out;
	}
	smpl_audit(d, STORE_AUDIT_SESSION, &s->uid, u, s->id, "start", NULL);
	smpl_log(LOG_INFO, smpl_unit_label(u), s->path, "session-start",
		 "session %" PRId64 " started by uid %u", s->id, (unsigned int)s->uid);
	smpl_unit_changed(u);
	smpl_session_changed(s);
	(void)sd_bus_reply_method_return(m, "o", s->path);
	sd_bus_message_unref(m);
	smpl_unit_unref(u);
	return;
out:
	sd_bus_message_unref(m);
	session_free(s);
	smpl_unit_unref(u);
}

/*
 * The unit's counter as the session begins, read now (the one it last
 * reported may be a status period old): shots the records miss that it
 * shows already were fired before this session and are never counted on it
 * (store-restore.c).  Not read: not known, and such shots count on it as on
 * any session (fail closed).
 */
static void session_counter_read(struct smpl_unit *u, const struct smpl_unit_reply *rep,
				 void *ud)
{
	struct smpl_session *s = ud;
	uint32_t counter = rep->status.shot_count;

	if (u->gone) {
		session_begun(u->daemon, &(struct smpl_records_call){ .r = -ENODEV }, s);
		return;
	}
	smpl_records_begin_session(u->daemon, s->patient, u->info.serial, s->uid, smpl_wall_ms(),
				   rep->r == 0 ? &counter : NULL, session_begun, s);
}

int smpl_session_new(struct smpl_unit *u, sd_bus_message *m, const char *patient,
		     uid_t uid, sd_bus_error *error)
{
	struct smpl_daemon *d = u->daemon;
	struct smpl_verdict v = { 0 };
	struct smpl_session *s;
	char err[SMPL_REASON_MAX];
	int r;

	if (smpl_patient_id_check(patient, err, sizeof(err)) < 0)
		return smpl_refuse(d, u, 0, uid, error, SMPL_ERROR_INVALID_ARGUMENT, "%s", err);
	if (!u->connected)
		return smpl_refuse(d, u, 0, uid, error, SMPL_ERROR_DISCONNECTED,
				   "unit %s is disconnected", smpl_unit_label(u));
	if (u->session || u->session_starting)
		return smpl_refuse(d, u, u->session ? u->session->id : 0, uid, error,
				   SMPL_ERROR_BUSY,
				   "unit %s already has an open session (%s); end it first",
				   smpl_unit_label(u), u->session ? u->session->path : "starting");
	r = smpl_safety_session_open(&u->safety, &v);
	if (r < 0)
		return smpl_refuse(d, u, 0, uid, error, SMPL_ERROR_BUSY, "%s", v.message);

	s = calloc(1, sizeof(*s));
	if (!s) {
		session_open_undo(u);
		return -ENOMEM;
	}
	s->daemon = d;
	s->unit = u;
	s->uid = uid;
	s->patient = strdup(patient);
	if (sd_bus_message_get_sender(m))
		s->owner = strdup(sd_bus_message_get_sender(m));
	if (!s->patient || (sd_bus_message_get_sender(m) && !s->owner)) {
		session_free(s);
		session_open_undo(u);
		return -ENOMEM;
	}
	s->starting = sd_bus_message_ref(m);
	u->session_starting = true;
	u->refs++;
	smpl_unit_io(u, SMPL_UNIT_GET_STATUS, NULL, session_counter_read, s);
	return 1;
}

/* --- steps -------------------------------------------------------------------- */

struct select_flow {
	struct smpl_unit *u;
	sd_bus_message *m;
	int64_t session_id;
	uid_t uid;
	char patch[SMPL_PATCH_ID_MAX + 1];
};

static void select_reply(struct select_flow *f, sd_bus_error *e)
{
	if (e && sd_bus_error_is_set(e))
		(void)sd_bus_reply_method_error(f->m, e);
	else
		(void)sd_bus_reply_method_return(f->m, NULL);
	sd_bus_error_free(e);
	sd_bus_message_unref(f->m);
	smpl_unit_unref(f->u);
	free(f);
}

/* The records read (off the loop with PostgreSQL): the rules decided. */
static void select_checked(struct smpl_daemon *d, int r, const struct smpl_patch_verdict *pv_in,
			   sd_bus_error *check, void *ud)
{
	struct select_flow *f = ud;
	struct smpl_unit *u = f->u;
	struct smpl_session *s = u->session;
	struct smpl_patch_verdict pv = *pv_in;
	struct smpl_verdict v = { 0 };
	sd_bus_error e = SD_BUS_ERROR_NULL;

	/* The world may have moved while the records were read. */
	if (u->gone) {
		(void)smpl_unit_error(u, f->uid, &e, -ENODEV, "SelectPatch");
	} else if (!s || s->id != f->session_id) {
		(void)smpl_refuse(d, u, f->session_id, f->uid, &e, SMPL_ERROR_NO_SESSION,
				  "SelectPatch: the session ended meanwhile");
	} else if (smpl_safety_is_armed(&u->safety) || u->arming) {
		(void)smpl_refuse(d, u, s->id, f->uid, &e, SMPL_ERROR_BUSY,
				  "unit %s is armed: disarm before selecting another patch",
				  smpl_unit_label(u));
	} else if (smpl_session_endpoints_missing(s, f->patch, NULL, 0)) {
		(void)smpl_session_refuse_missing_endpoint(s, f->patch, f->uid, "SelectPatch", &e);
	} else if (r < 0) {
		(void)smpl_refuse(d, u, s->id, f->uid, &e, check->name, "%s", check->message);
	} else if (!pv.e.eligible) {
		/* The rule that refused names the error (issue 16). */
		(void)smpl_refuse(d, u, s->id, f->uid, &e, smpl_refusal_error(&pv), "%s",
				  pv.e.reason);
	} else if (smpl_safety_select_patch(&u->safety, true, pv.e.next_eligible_ms,
					    pv.e.max_pulses, pv.pulses_used, &v) < 0) {
		(void)smpl_refuse(d, u, s->id, f->uid, &e,
				  smpl_reason_dbus_error(v.reason) ? smpl_reason_dbus_error(v.reason)
								   : SMPL_ERROR_BUSY,
				  "%s", v.message);
	} else {
		snprintf(s->patch, sizeof(s->patch), "%s", f->patch);
		smpl_audit(d, STORE_AUDIT_PATCH, &f->uid, u, s->id,
			   pv.e.test_spot ? "test-spot" : NULL, f->patch);
		smpl_log(LOG_INFO, smpl_unit_label(u), s->path, "patch",
			 "patch %s selected by uid %u%s", f->patch, (unsigned int)f->uid,
			 pv.e.test_spot ? " (test spot)" : "");
		smpl_session_changed(s);
	}
	select_reply(f, &e);
}

/* The unit read (its RTC as it is now, S8): the rules decide on the records. */
static void select_read(struct smpl_unit *u, const struct smpl_unit_reply *rep, void *ud)
{
	struct select_flow *f = ud;
	struct smpl_daemon *d = u->daemon;
	struct smpl_session *s = u->session;
	sd_bus_error e = SD_BUS_ERROR_NULL;

	if (u->gone || rep->r != 0) {
		(void)smpl_unit_error(u, f->uid, &e, u->gone ? -ENODEV : rep->r, "SelectPatch");
		select_reply(f, &e);
		return;
	}
	if (!s || s->id != f->session_id) {
		(void)smpl_refuse(d, u, f->session_id, f->uid, &e, SMPL_ERROR_NO_SESSION,
				  "SelectPatch: the session ended meanwhile");
		select_reply(f, &e);
		return;
	}
	smpl_unit_take_status(u, &rep->status);
	if (smpl_safety_is_armed(&u->safety)) {
		(void)smpl_refuse(d, u, s->id, f->uid, &e, SMPL_ERROR_BUSY,
				  "unit %s is armed: disarm before selecting another patch",
				  smpl_unit_label(u));
		select_reply(f, &e);
		return;
	}
	smpl_check_patch(d, u, s->patient, f->patch, s->id, select_checked, f);
}

int smpl_session_select_patch(struct smpl_session *s, sd_bus_message *m, const char *patch,
			      uid_t uid, sd_bus_error *error)
{
	struct smpl_daemon *d = s->daemon;
	struct smpl_unit *u = s->unit;
	struct select_flow *f;
	char err[SMPL_REASON_MAX];

	if (smpl_patch_name_check(&d->cfg.patches, patch, err, sizeof(err)) < 0)
		return smpl_refuse(d, u, s->id, uid, error, SMPL_ERROR_INVALID_ARGUMENT, "%s", err);
	if (smpl_safety_is_armed(&u->safety) || u->arming)
		return smpl_refuse(d, u, s->id, uid, error, SMPL_ERROR_BUSY,
				   "unit %s is armed: disarm before selecting another patch",
				   smpl_unit_label(u));
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->u = u;
	f->m = sd_bus_message_ref(m);
	f->session_id = s->id;
	f->uid = uid;
	snprintf(f->patch, sizeof(f->patch), "%s", patch);
	u->refs++;
	smpl_unit_io(u, SMPL_UNIT_GET_STATUS, NULL, select_read, f);
	return 1;
}

int smpl_session_confirm_eyewear(struct smpl_session *s, uid_t uid, sd_bus_error *error)
{
	struct smpl_unit *u = s->unit;
	struct smpl_verdict v = { 0 };

	if (smpl_safety_confirm_eyewear(&u->safety, &v) < 0)
		return smpl_refuse(s->daemon, u, s->id, uid, error, SMPL_ERROR_NO_SESSION,
				   "%s", v.message);
	s->eyewear_confirmed = true;
	smpl_audit(s->daemon, STORE_AUDIT_EYEWEAR, &uid, u, s->id, NULL, NULL);
	smpl_log(LOG_INFO, smpl_unit_label(u), s->path, "eyewear",
		 "protective eyewear confirmed by uid %u", (unsigned int)uid);
	smpl_session_changed(s);
	return 0;
}

/* --- end ---------------------------------------------------------------------- */

static bool notes_valid(const char *notes)
{
	if (strlen(notes) > SMPL_NOTES_MAX)
		return false;
	for (const unsigned char *p = (const unsigned char *)notes; *p; p++)
		if (*p < 0x20 && *p != '\n' && *p != '\t')
			return false;
	return true;
}

int smpl_session_end(struct smpl_session *s, enum store_session_state state,
		     const char *notes, const uid_t *uid, sd_bus_error *error)
{
	struct smpl_daemon *d = s->daemon;
	struct smpl_unit *u = s->unit;
	struct smpl_action a = { 0 };

	if (notes && !notes_valid(notes))
		return smpl_refuse(d, u, s->id, uid ? *uid : getuid(), error,
				   SMPL_ERROR_INVALID_ARGUMENT,
				   "notes: at most %d characters, no control characters",
				   SMPL_NOTES_MAX);
	if (u && u->session == s) {
		(void)smpl_safety_session_close(&u->safety, &a);
		if (a.kind == SMPL_ACT_NONE && u->treatment_id) {
			a.kind = SMPL_ACT_DISARM;
			a.reason = SMPL_REASON_SESSION_ENDED;
		}
		smpl_unit_apply_by(u, &a, uid);
	}
	smpl_records_end_session(d, s->id, state, notes && *notes ? notes : NULL, smpl_wall_ms());
	smpl_audit(d, STORE_AUDIT_SESSION, uid, u, s->id,
		   state == STORE_SESSION_ENDED ? "end" : "interrupted", notes);
	smpl_log(LOG_INFO, u ? smpl_unit_label(u) : NULL, s->path, "session-end",
		 "session %" PRId64 " %s, %" PRIu32 " pulses", s->id,
		 state == STORE_SESSION_ENDED ? "ended" : "interrupted", s->pulse_count);

	if (u && u->session == s)
		u->session = NULL;
	s->unit = NULL;
	smpl_session_changed(s);	/* State: ended */
	if (d->observer && d->observer->session_unpublished)
		d->observer->session_unpublished(s);
	session_unlink(s);
	if (u)
		smpl_unit_changed(u);
	session_free(s);
	return 0;
}
