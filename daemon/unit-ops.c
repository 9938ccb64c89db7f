/* SPDX-License-Identifier: MIT */
/*
 * What a unit's D-Bus methods do, after authorization: SetParameters, Arm,
 * Disarm, AcknowledgeFault.  Each asks the safety core first; Arm commits
 * the treatment durably before the unit is armed (S3).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "daemon.h"
#include "eligibility.h"
#include "errors.h"
#include "log.h"

static int64_t session_id_of(const struct smpl_unit *u)
{
	return u->session ? u->session->id : 0;
}

/* The unit refused (r > 0, enum smpl_status) or could not be reached (r < 0). */
int smpl_unit_error(struct smpl_unit *u, uid_t uid, sd_bus_error *error,
		    int r, const char *what)
{
	struct smpl_daemon *d = u->daemon;
	const char *label = smpl_unit_label(u);
	int64_t sid = session_id_of(u);

	switch (r) {
	case -ENODEV:
		return smpl_refuse(d, u, sid, uid, error, SMPL_ERROR_DISCONNECTED,
				   "%s: unit %s is disconnected", what, label);
	case SMPL_ST_INTERLOCK_OPEN:
		return smpl_refuse(d, u, sid, uid, error, SMPL_ERROR_INTERLOCK_OPEN,
				   "%s: unit %s reports an open interlock", what, label);
	case SMPL_ST_FAULT_LATCHED:
		return smpl_refuse(d, u, sid, uid, error, SMPL_ERROR_DEVICE_FAULT,
				   "%s: unit %s has a latched fault; acknowledge it first",
				   what, label);
	case SMPL_ST_OUT_OF_RANGE:
		return smpl_refuse(d, u, sid, uid, error, SMPL_ERROR_OUT_OF_RANGE,
				   "%s: unit %s refuses the parameters as out of its range",
				   what, label);
	case SMPL_ST_NO_PARAMS:
		return smpl_refuse(d, u, sid, uid, error, SMPL_ERROR_OUT_OF_RANGE,
				   "%s: unit %s has no parameters; call SetParameters", what, label);
	case SMPL_ST_BAD_STATE:
		return smpl_refuse(d, u, sid, uid, error, SMPL_ERROR_BUSY,
				   "%s: unit %s cannot do this in state %s", what, label,
				   smpl_unit_state_name(u));
	case SMPL_ST_CAUSE_PERSISTS:
		return smpl_refuse(d, u, sid, uid, error, SMPL_ERROR_DEVICE_FAULT,
				   "%s: unit %s still reports the cause of its fault (%s)",
				   what, label, smpl_unit_fault_name(u));
	default:
		return smpl_refuse(d, u, sid, uid, error, SMPL_ERROR_DEVICE_FAULT,
				   "%s: unit %s did not answer correctly (%s)", what, label,
				   r < 0 ? strerror(-r) : smpl_status_name((uint16_t)r));
	}
}

/* A refusal from the safety core, under the D-Bus name it gives. */
static int core_refusal(struct smpl_unit *u, uid_t uid, sd_bus_error *error,
			const struct smpl_verdict *v)
{
	const char *name = smpl_reason_dbus_error(v->reason);

	return smpl_refuse(u->daemon, u, session_id_of(u), uid, error,
			   name ? name : SMPL_ERROR_DEVICE_FAULT, "%s",
			   v->message[0] ? v->message : smpl_reason_name(v->reason));
}

/*
 * GET_STATUS now, and the core sees it: 0, or the backend's answer (the
 * unit refused, > 0, or could not be read, < 0).  Decisions are taken on
 * this fresh read, never on the last report alone (S1).
 */
int smpl_unit_read_status(struct smpl_unit *u, struct smpl_status_n *st)
{
	struct smpl_daemon *d = u->daemon;
	struct smpl_action a = { 0 };
	int r;

	if (!u->connected)
		return -ENODEV;
	r = u->backend->ops->get_status(u->backend, st);
	if (r != 0)
		return r;
	u->status = *st;
	u->status_known = true;
	(void)smpl_safety_status(&u->safety, smpl_now_ms(d), smpl_wall_ms(), st, &a);
	smpl_unit_apply(u, &a);
	return 0;
}

int smpl_unit_set_parameters(struct smpl_unit *u, const struct smpl_params_n *p,
			     uid_t uid, sd_bus_error *error)
{
	struct smpl_daemon *d = u->daemon;
	struct smpl_verdict v = { 0 };
	struct smpl_status_n st;
	char err[SMPL_REASON_MAX], detail[160];
	int r;

	if (!u->connected)
		return smpl_unit_error(u, uid, error, -ENODEV, "SetParameters");
	r = smpl_params_check(&d->cfg.protocol, &u->info, p, err, sizeof(err));
	if (r < 0)
		return smpl_refuse(d, u, session_id_of(u), uid, error,
				   r == -ERANGE ? SMPL_ERROR_OUT_OF_RANGE
						: SMPL_ERROR_INVALID_ARGUMENT, "%s", err);
	if (smpl_safety_is_armed(&u->safety))
		return smpl_refuse(d, u, session_id_of(u), uid, error, SMPL_ERROR_BUSY,
				   "unit %s is armed: disarm before changing parameters",
				   smpl_unit_label(u));
	r = u->backend->ops->set_params(u->backend, p);
	if (r != 0) {
		(void)smpl_safety_set_params(&u->safety, false, 0, &v);
		u->params_set = false;
		smpl_unit_changed(u);
		return smpl_unit_error(u, uid, error, r, "SetParameters");
	}
	r = smpl_unit_read_status(u, &st);	/* the core sees the unit's PARAMS_SET flag now */
	if (r != 0) {
		(void)smpl_safety_set_params(&u->safety, false, 0, &v);
		u->params_set = false;
		smpl_unit_changed(u);
		return smpl_unit_error(u, uid, error, r, "SetParameters");
	}
	r = smpl_safety_set_params(&u->safety, true, smpl_params_energy_uj(p), &v);
	if (r < 0)
		return core_refusal(u, uid, error, &v);
	u->params = *p;
	u->params_set = true;
	snprintf(detail, sizeof(detail), "%u nm, %u mJ/cm2, spot %u um, pulse %u ps, %u mHz, "
		 "%u uJ", p->wavelength_nm, p->fluence_mj_cm2, p->spot_um, p->pulse_ps,
		 p->rate_mhz, smpl_params_energy_uj(p));
	smpl_audit(d, STORE_AUDIT_PARAMETERS, &uid, u, session_id_of(u), NULL, detail);
	smpl_log(LOG_INFO, smpl_unit_label(u), NULL, "parameters",
		 "parameters set by uid %u: %u nm, %u mJ/cm2, spot %u um, pulse %u ps, %u mHz",
		 (unsigned int)uid, p->wavelength_nm, p->fluence_mj_cm2, p->spot_um,
		 p->pulse_ps, p->rate_mhz);
	smpl_unit_changed(u);
	return 0;
}

/*
 * S3: the treatment is in the store (fsync'd) before ARM is sent, and S2:
 * inside that transaction the rules decide again, at the arming time, on
 * the records as they are then.  @st is the fresh read the core decided on.
 */
static int commit_treatment(struct smpl_unit *u, uid_t uid, const struct smpl_status_n *st,
			    struct smpl_arm_decision *dec, sd_bus_error *error)
{
	struct smpl_daemon *d = u->daemon;
	struct smpl_session *s = u->session;
	char name[64];
	struct store_treatment_start t = {
		.session_id = s->id,
		.patch = s->patch,
		.unit_firmware = u->firmware,
		.params = {
			.wavelength_nm = u->params.wavelength_nm,
			.fluence_mj_cm2 = u->params.fluence_mj_cm2,
			.spot_um = u->params.spot_um,
			.pulse_ps = u->params.pulse_ps,
			.rate_mhz = u->params.rate_mhz,
			.set_energy_uj = smpl_params_energy_uj(&u->params),
		},
		.armed_ms = smpl_wall_ms(),
		.armed_rtc_s = st->rtc_s,
		.shot_at_arm = st->shot_count,
		.cooldown_ms = (int64_t)d->cfg.rules.cooldown_days * SMPL_DAY_MS,
		.decide = smpl_arm_decide,
		.decide_ctx = dec,
	};
	int r;

	smpl_operator(uid, name, sizeof(name), &t.op);
	r = store_treatment_begin(d->store, &t, &u->treatment_id);
	if (r == 0) {
		u->treatment_shot_at_arm = st->shot_count;
		u->treatment_emitting = false;
		u->treatment_pulse_durable = false;
		smpl_safety_newest_record(&u->safety, t.armed_ms);	/* it witnesses the clock */
		return 0;
	}
	u->treatment_id = 0;
	if (r == -EAGAIN)
		return smpl_refuse(d, u, s->id, uid, error, SMPL_ERROR_COOLDOWN_ACTIVE,
				   "%s", store_errmsg(d->store));
	if (r == -EDQUOT)
		return smpl_refuse(d, u, s->id, uid, error, SMPL_ERROR_OUT_OF_RANGE,
				   "%s", store_errmsg(d->store));
	if (r == -ERANGE)	/* the unit's counter is below the records */
		smpl_unit_fault(u, SMPL_REASON_COUNTER_BACK, store_errmsg(d->store));
	return smpl_refuse(d, u, s->id, uid, error, SMPL_ERROR_DEVICE_FAULT,
			   "cannot record the treatment, not arming: %s",
			   store_errmsg(d->store));
}

int smpl_unit_arm(struct smpl_unit *u, uid_t uid, sd_bus_error *error)
{
	struct smpl_daemon *d = u->daemon;
	struct smpl_verdict v = { 0 };
	struct smpl_arm_decision dec = { .cfg = &d->cfg };
	struct smpl_status_n st;
	int r;

	if (d->store_failed) {		/* try the store now rather than at the next retry */
		d->store_retry_ms = 0;
		smpl_daemon_flush(d);
	}
	if (d->store_failed)
		return smpl_refuse(d, u, session_id_of(u), uid, error, SMPL_ERROR_DEVICE_FAULT,
				   "the records store fails: nothing may be armed");
	r = smpl_unit_read_status(u, &st);	/* the unit read once: state, counter, RTC */
	if (r != 0)
		return smpl_unit_error(u, uid, error, r, "Arm");
	smpl_refresh_newest_arming(d);	/* another unit or daemon may have armed since */
	r = smpl_safety_arm_begin(&u->safety, smpl_now_ms(d), smpl_wall_ms(), &v);
	if (r < 0)
		return core_refusal(u, uid, error, &v);
	if (!u->session) {	/* the core checked it; never trust one layer */
		smpl_safety_arm_failed(&u->safety);
		return smpl_refuse(d, u, 0, uid, error, SMPL_ERROR_NO_SESSION,
				   "unit %s has no open session", smpl_unit_label(u));
	}
	dec.patch = u->session->patch;
	r = commit_treatment(u, uid, &st, &dec, error);
	if (r < 0) {
		smpl_safety_arm_failed(&u->safety);
		return r;
	}
	smpl_safety_patch_budget(&u->safety, dec.verdict.e.max_pulses, dec.verdict.pulses_used);
	r = u->backend->ops->arm(u->backend);
	if (r != 0) {
		/* A lost or mangled reply does not mean the unit did not arm. */
		if (r < 0)
			(void)u->backend->ops->disarm(u->backend);
		smpl_safety_arm_failed(&u->safety);
		smpl_unit_close_treatment(u, STORE_OUTCOME_INTERRUPTED);
		return smpl_unit_error(u, uid, error, r, "Arm");
	}
	smpl_audit(d, STORE_AUDIT_ARM, &uid, u, u->session->id, NULL, u->session->patch);
	smpl_log(LOG_NOTICE, smpl_unit_label(u), u->session->path, "arm",
		 "armed by uid %u for patch %s (treatment %" PRId64 ")",
		 (unsigned int)uid, u->session->patch, u->treatment_id);
	if (!smpl_safety_is_armed(&u->safety)) {
		struct smpl_action a = { .kind = SMPL_ACT_DISARM,
					 .reason = SMPL_REASON_UNIT_STANDBY,
					 .message = "disarmed while arming" };

		smpl_unit_apply(u, &a);
	}
	smpl_unit_changed(u);
	return 0;
}

int smpl_unit_disarm(struct smpl_unit *u, uid_t uid, sd_bus_error *error)
{
	struct smpl_action a = { 0 };
	char who[64];

	(void)error;
	(void)smpl_safety_disarm_request(&u->safety, &a);
	if (a.kind != SMPL_ACT_NONE) {
		snprintf(who, sizeof(who), " by uid %u", (unsigned int)uid);
		strncat(a.message, who, sizeof(a.message) - strlen(a.message) - 1);
		smpl_unit_apply_by(u, &a, &uid);
	} else if (u->connected) {
		(void)u->backend->ops->disarm(u->backend);	/* belt and braces */
		if (u->treatment_id) {
			a.kind = SMPL_ACT_DISARM;
			a.reason = SMPL_REASON_REQUESTED;
			smpl_unit_apply_by(u, &a, &uid);
		}
	}
	return 0;
}

/* Acknowledging a counter below the records accepts it there too (S3). */
static int accept_counter(struct smpl_unit *u, uid_t uid, sd_bus_error *error)
{
	struct smpl_daemon *d = u->daemon;
	struct store_operator op;
	struct smpl_status_n st;
	char name[64];
	int r;

	r = smpl_unit_read_status(u, &st);
	if (r != 0)
		return smpl_unit_error(u, uid, error, r, "AcknowledgeFault");
	smpl_operator(uid, name, sizeof(name), &op);
	r = store_counter_reset(d->store, u->info.serial, st.shot_count, &op, smpl_wall_ms());
	if (r < 0 && r != -EALREADY)
		return smpl_refuse(d, u, session_id_of(u), uid, error, SMPL_ERROR_DEVICE_FAULT,
				   "cannot record the accepted counter: %s", store_errmsg(d->store));
	return 0;
}

int smpl_unit_acknowledge(struct smpl_unit *u, uid_t uid, sd_bus_error *error)
{
	struct smpl_daemon *d = u->daemon;
	struct smpl_verdict v = { 0 };
	struct smpl_status_n st;
	bool unit_faulted = u->status_known && u->status.state == SMPL_STATE_FAULT;
	char fault[64];
	int r;

	if (!smpl_safety_fault_latched(&u->safety) && !unit_faulted)
		return 0;	/* nothing to acknowledge */
	snprintf(fault, sizeof(fault), "%s", smpl_unit_fault_name(u));
	r = smpl_safety_may_acknowledge(&u->safety, &v);
	if (r < 0)
		return core_refusal(u, uid, error, &v);
	if (unit_faulted) {
		r = u->backend->ops->ack_fault(u->backend);
		if (r != 0)
			return smpl_unit_error(u, uid, error, r, "AcknowledgeFault");
		(void)smpl_unit_read_status(u, &st);
	}
	if (u->safety.fault == SMPL_REASON_COUNTER_BACK) {
		r = accept_counter(u, uid, error);
		if (r < 0)
			return r;
	}
	r = smpl_safety_acknowledge(&u->safety, &v);
	if (r < 0)
		return core_refusal(u, uid, error, &v);
	smpl_audit(d, STORE_AUDIT_ACK_FAULT, &uid, u, session_id_of(u), fault, NULL);
	smpl_log(LOG_NOTICE, smpl_unit_label(u), NULL, "acknowledge",
		 "fault %s acknowledged by uid %u", fault, (unsigned int)uid);
	smpl_unit_changed(u);
	return 0;
}

int smpl_unit_start_session(struct smpl_unit *u, sd_bus_message *m,
			    const char *patient, struct smpl_session **ret,
			    sd_bus_error *error)
{
	uid_t uid;
	int r;

	r = smpl_bus_caller_uid(m, &uid);
	if (r < 0)
		return r;
	return smpl_session_new(u, m, patient, uid, ret, error);
}
