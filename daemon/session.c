/* SPDX-License-Identifier: MIT */
/*
 * Treatment sessions: one patient on one unit, from StartSession to End.
 * The client that opened a session is tracked on the bus (sd_bus_track):
 * when it leaves, the unit is disarmed at once and the session closed (S4).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "daemon.h"
#include "eligibility.h"
#include "errors.h"
#include "log.h"

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
	sd_bus_track_unref(s->track);
	sd_event_source_disable_unref(s->end_later);
	free(s->path);
	free(s->patient);
	free(s->owner);
	free(s->operator_name);
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

static int on_owner_gone(sd_bus_track *track, void *userdata)
{
	struct smpl_session *s = userdata;
	struct smpl_unit *u = s->unit;
	struct smpl_action a = { 0 };

	(void)track;
	smpl_log(LOG_WARNING, u ? smpl_unit_label(u) : NULL, s->path, "owner-gone",
		 "the client that opened session %" PRId64 " left the bus", s->id);
	if (u && u->session == s) {
		(void)smpl_safety_owner_vanished(&u->safety, &a);
		smpl_unit_apply(u, &a);		/* disarm now, not later */
	}
	/* Close the session outside the track's own callback. */
	if (!s->end_later &&
	    sd_event_add_defer(s->daemon->event, &s->end_later, end_abandoned, s) < 0)
		return end_abandoned(NULL, s);
	return 0;
}

/* --- the owner (S6) ------------------------------------------------------------ */

int smpl_session_check_owner(struct smpl_session *s, sd_bus_message *m, const char *what,
			     sd_bus_error *error)
{
	const char *sender = sd_bus_message_get_sender(m);
	uid_t uid;

	/* A direct connection (no bus) has one peer: it opened the session. */
	if ((!sender && !s->owner) || (sender && s->owner && strcmp(sender, s->owner) == 0))
		return 0;
	if (smpl_bus_caller_uid(m, &uid) < 0)
		uid = (uid_t)-1;
	return smpl_refuse(s->daemon, s->unit, s->id, uid, error, SMPL_ERROR_NOT_AUTHORIZED,
			   "%s: session %" PRId64 " belongs to the client that opened it (%s): "
			   "only that client changes the session or arms for it",
			   what, s->id, s->owner ? s->owner : "a direct connection");
}

/* --- start -------------------------------------------------------------------- */

static int session_publish(struct smpl_session *s, sd_bus_message *m)
{
	struct smpl_daemon *d = s->daemon;
	int r;

	if (asprintf(&s->path, SMPL_SESSION_PREFIX "/%" PRId64, s->id) < 0) {
		s->path = NULL;
		return -ENOMEM;
	}
	if (sd_bus_message_get_sender(m)) {
		s->owner = strdup(sd_bus_message_get_sender(m));
		if (!s->owner)
			return -ENOMEM;
	}
	r = sd_bus_track_new(d->bus, &s->track, on_owner_gone, s);
	if (r < 0)
		return r;
	r = sd_bus_track_add_sender(s->track, m);
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

	(void)smpl_safety_session_close(&u->safety, &a);
}

int smpl_session_new(struct smpl_unit *u, sd_bus_message *m, const char *patient,
		     uid_t uid, struct smpl_session **ret, sd_bus_error *error)
{
	struct smpl_daemon *d = u->daemon;
	struct smpl_verdict v = { 0 };
	struct store_operator op;
	struct smpl_session *s;
	char err[SMPL_REASON_MAX], name[64];
	int r;

	if (smpl_patient_id_check(patient, err, sizeof(err)) < 0)
		return smpl_refuse(d, u, 0, uid, error, SMPL_ERROR_INVALID_ARGUMENT, "%s", err);
	if (!u->connected)
		return smpl_refuse(d, u, 0, uid, error, SMPL_ERROR_DISCONNECTED,
				   "unit %s is disconnected", smpl_unit_label(u));
	if (u->session)
		return smpl_refuse(d, u, u->session->id, uid, error, SMPL_ERROR_BUSY,
				   "unit %s already has an open session (%s); end it first",
				   smpl_unit_label(u), u->session->path);
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
	smpl_operator(uid, name, sizeof(name), &op);
	s->operator_name = strdup(name);
	if (!s->patient || !s->operator_name) {
		session_free(s);
		session_open_undo(u);
		return -ENOMEM;
	}
	r = store_session_begin(d->store, patient, u->info.serial, &op, smpl_wall_ms(), &s->id);
	if (r < 0) {
		session_free(s);
		session_open_undo(u);
		return smpl_refuse(d, u, 0, uid, error, SMPL_ERROR_DEVICE_FAULT,
				   "cannot record the session: %s", store_errmsg(d->store));
	}
	r = session_publish(s, m);
	if (r < 0) {
		(void)store_session_end(d->store, s->id, STORE_SESSION_INTERRUPTED,
					"could not publish the session", smpl_wall_ms());
		if (u->session == s) {
			u->session = NULL;
			session_unlink(s);
		}
		session_free(s);
		session_open_undo(u);
		return r;
	}
	smpl_audit(d, STORE_AUDIT_SESSION, &uid, u, s->id, "start", NULL);
	smpl_log(LOG_INFO, smpl_unit_label(u), s->path, "session-start",
		 "session %" PRId64 " started by uid %u", s->id, (unsigned int)uid);
	smpl_unit_changed(u);
	smpl_session_changed(s);
	*ret = s;
	return 0;
}

/* --- steps -------------------------------------------------------------------- */

int smpl_session_select_patch(struct smpl_session *s, const char *patch, uid_t uid,
			      sd_bus_error *error)
{
	struct smpl_daemon *d = s->daemon;
	struct smpl_unit *u = s->unit;
	struct smpl_patch_verdict pv = { 0 };
	struct smpl_verdict v = { 0 };
	sd_bus_error check = SD_BUS_ERROR_NULL;
	struct smpl_status_n st;
	char err[SMPL_REASON_MAX];
	int r;

	if (smpl_patch_name_check(&d->cfg.patches, patch, err, sizeof(err)) < 0)
		return smpl_refuse(d, u, s->id, uid, error, SMPL_ERROR_INVALID_ARGUMENT, "%s", err);
	if (smpl_safety_is_armed(&u->safety))
		return smpl_refuse(d, u, s->id, uid, error, SMPL_ERROR_BUSY,
				   "unit %s is armed: disarm before selecting another patch",
				   smpl_unit_label(u));
	r = smpl_unit_read_status(u, &st);	/* its RTC as it is now (S8) */
	if (r != 0)
		return smpl_unit_error(u, uid, error, r, "SelectPatch");
	r = smpl_check_patch(d, u, s->patient, patch, s->id, &pv, &check);
	if (r < 0) {
		r = smpl_refuse(d, u, s->id, uid, error, check.name, "%s", check.message);
		sd_bus_error_free(&check);
		return r;
	}
	if (!pv.e.eligible)
		return smpl_refuse(d, u, s->id, uid, error, pv.pulses_used && pv.pulse_limit &&
				   pv.pulses_used >= pv.pulse_limit ? SMPL_ERROR_OUT_OF_RANGE
								     : SMPL_ERROR_COOLDOWN_ACTIVE,
				   "%s", pv.e.reason);
	r = smpl_safety_select_patch(&u->safety, true, pv.e.next_eligible_ms,
				     pv.e.max_pulses, pv.pulses_used, &v);
	if (r < 0)
		return smpl_refuse(d, u, s->id, uid, error,
				   smpl_reason_dbus_error(v.reason) ? smpl_reason_dbus_error(v.reason)
								    : SMPL_ERROR_BUSY,
				   "%s", v.message);
	snprintf(s->patch, sizeof(s->patch), "%s", patch);
	smpl_audit(d, STORE_AUDIT_PATCH, &uid, u, s->id, pv.e.test_spot ? "test-spot" : NULL,
		   patch);
	smpl_log(LOG_INFO, smpl_unit_label(u), s->path, "patch",
		 "patch %s selected by uid %u%s", patch, (unsigned int)uid,
		 pv.e.test_spot ? " (test spot)" : "");
	smpl_session_changed(s);
	return 0;
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
	int r;

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
	r = store_session_end(d->store, s->id, state, notes && *notes ? notes : NULL,
			      smpl_wall_ms());
	if (r < 0 && r != -EALREADY)
		smpl_log(LOG_ERR, u ? smpl_unit_label(u) : NULL, s->path, "store-failed",
			 "cannot close session %" PRId64 ": %s", s->id, store_errmsg(d->store));
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
