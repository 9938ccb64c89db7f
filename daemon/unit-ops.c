/* SPDX-License-Identifier: MIT */
/*
 * What a unit's D-Bus methods do, after authorization: SetParameters, Arm,
 * Disarm, AcknowledgeFault.  Each asks the safety core first; Arm commits
 * the treatment durably before the unit is armed (S3).
 *
 * None waits on the loop (issue 12): each is a chain of steps, the unit's
 * commands on its worker and the records' writes on the writer, and the
 * method call is answered at the end (the handler returned 1 and the flow
 * holds the message).  Between steps anything may happen (a Disarm, a status
 * report, the session ending, the unit going away): each step looks again.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "audit.h"
#include "daemon.h"
#include "eligibility.h"
#include "errors.h"
#include "log.h"
#include "records.h"
#include "session.h"
#include "supervisor.h"
#include "unit-ops.h"
#include "unit.h"

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

/* ---- answering a suspended call --------------------------------------------- */

/* A flow's context: the call it answers, who asked, and its unit kept alive. */
struct flow {
	struct smpl_unit *u;
	sd_bus_message *m;
	uid_t uid;
	int64_t session_id;		/* the session it acts for; 0 none */
};

static struct flow *flow_new(struct smpl_unit *u, sd_bus_message *m, uid_t uid, size_t size)
{
	struct flow *f = calloc(1, size);

	if (!f)
		return NULL;
	f->u = u;
	f->m = sd_bus_message_ref(m);
	f->uid = uid;
	f->session_id = session_id_of(u);
	u->refs++;
	return f;
}

static void flow_free(struct flow *f)
{
	sd_bus_message_unref(f->m);
	smpl_unit_unref(f->u);
	free(f);
}

/* The method's error (set by one of the refusal helpers) as its reply. */
static void flow_fail(struct flow *f, sd_bus_error *e)
{
	(void)sd_bus_reply_method_error(f->m, e);
	sd_bus_error_free(e);
	flow_free(f);
}

static void flow_ok(struct flow *f)
{
	(void)sd_bus_reply_method_return(f->m, NULL);
	flow_free(f);
}

static void flow_unit_error(struct flow *f, int r, const char *what)
{
	sd_bus_error e = SD_BUS_ERROR_NULL;

	(void)smpl_unit_error(f->u, f->uid, &e, r, what);
	flow_fail(f, &e);
}

static void flow_core_refusal(struct flow *f, const struct smpl_verdict *v)
{
	sd_bus_error e = SD_BUS_ERROR_NULL;

	(void)core_refusal(f->u, f->uid, &e, v);
	flow_fail(f, &e);
}

/* The unit went away, or the session the call was for ended, meanwhile. */
static bool flow_stale(struct flow *f, const char *what)
{
	struct smpl_unit *u = f->u;
	sd_bus_error e = SD_BUS_ERROR_NULL;

	if (u->gone || !u->connected) {
		flow_unit_error(f, -ENODEV, what);
		return true;
	}
	if (f->session_id && session_id_of(u) != f->session_id) {
		(void)smpl_refuse(u->daemon, u, f->session_id, f->uid, &e, SMPL_ERROR_NO_SESSION,
				  "%s: the session ended meanwhile", what);
		flow_fail(f, &e);
		return true;
	}
	return false;
}

/* ---- SetParameters ------------------------------------------------------------- */

struct params_flow {
	struct flow f;
	struct smpl_params_n p;
};

static void params_set(struct smpl_unit *u, const struct smpl_unit_reply *rep, void *ud)
{
	struct params_flow *pf = ud;
	struct smpl_daemon *d = u->daemon;
	struct smpl_verdict v = { 0 };
	const struct smpl_params_n *p = &pf->p;
	char detail[160];

	u->params_changing = false;
	if (flow_stale(&pf->f, "SetParameters"))
		return;
	if (rep->r != 0 || rep->status_r != 0) {
		u->params_set = false;
		smpl_unit_changed(u);
		flow_unit_error(&pf->f, rep->r != 0 ? rep->r : rep->status_r, "SetParameters");
		return;
	}
	smpl_unit_take_status(u, &rep->status);	/* the core sees PARAMS_SET now */
	if (smpl_safety_set_params(&u->safety, true, smpl_params_energy_uj(p), &v) < 0) {
		flow_core_refusal(&pf->f, &v);
		return;
	}
	u->params = *p;
	u->params_set = true;
	snprintf(detail, sizeof(detail), "%u nm, %u mJ/cm2, spot %u um, pulse %u ps, %u mHz, "
		 "%u uJ", p->wavelength_nm, p->fluence_mj_cm2, p->spot_um, p->pulse_ps,
		 p->rate_mhz, smpl_params_energy_uj(p));
	smpl_audit(d, STORE_AUDIT_PARAMETERS, &pf->f.uid, u, session_id_of(u), NULL, detail);
	smpl_log(LOG_INFO, smpl_unit_label(u), NULL, "parameters",
		 "parameters set by uid %u: %s", (unsigned int)pf->f.uid, detail);
	smpl_unit_changed(u);
	flow_ok(&pf->f);
}

int smpl_unit_set_parameters(struct smpl_unit *u, sd_bus_message *m,
			     const struct smpl_params_n *p, uid_t uid, sd_bus_error *error)
{
	struct smpl_daemon *d = u->daemon;
	struct smpl_verdict v = { 0 };
	struct params_flow *pf;
	char err[SMPL_REASON_MAX];
	int r;

	if (!u->connected)
		return smpl_unit_error(u, uid, error, -ENODEV, "SetParameters");
	r = smpl_params_check(&d->cfg.protocol, &u->info, p, err, sizeof(err));
	if (r < 0)
		return smpl_refuse(d, u, session_id_of(u), uid, error,
				   r == -ERANGE ? SMPL_ERROR_OUT_OF_RANGE
						: SMPL_ERROR_INVALID_ARGUMENT, "%s", err);
	if (smpl_safety_is_armed(&u->safety) || u->arming)
		return smpl_refuse(d, u, session_id_of(u), uid, error, SMPL_ERROR_BUSY,
				   "unit %s is armed: disarm before changing parameters",
				   smpl_unit_label(u));
	if (u->params_changing)
		return smpl_refuse(d, u, session_id_of(u), uid, error, SMPL_ERROR_BUSY,
				   "unit %s: its parameters are being set already",
				   smpl_unit_label(u));
	pf = (struct params_flow *)flow_new(u, m, uid, sizeof(*pf));
	if (!pf)
		return -ENOMEM;
	pf->p = *p;
	/* Nothing arms on the old parameters while the unit takes the new ones. */
	(void)smpl_safety_set_params(&u->safety, false, 0, &v);
	u->params_set = false;
	u->params_changing = true;
	smpl_unit_changed(u);
	smpl_unit_io(u, SMPL_UNIT_SET_PARAMS, p, params_set, pf);
	return 1;
}

/* ---- Arm ----------------------------------------------------------------------------- */

struct arm_flow {
	struct flow f;
	int64_t treatment_id;
	struct smpl_status_n st;		/* the fresh read the core decided on */
	char patch[SMPL_PATCH_ID_MAX + 1];
	struct smpl_arm_decision dec;		/* filled in by the writer */
};

static void arm_done(struct arm_flow *af)
{
	af->f.u->arming = false;
	flow_free(&af->f);
}

/* Never armed after all: the committed treatment ends with what the unit counted then. */
static void abandon_committed(struct smpl_unit *u, int64_t id, const struct smpl_status_n *st)
{
	struct store_treatment_finish f = {
		.outcome = STORE_OUTCOME_INTERRUPTED,
		.end_ms = smpl_wall_ms(),
		.shot_at_end_known = true,
		.shot_at_end = st->shot_count,
	};

	smpl_records_end_treatment(u->daemon, id, &f);
}

static void arm_sent(struct smpl_unit *u, const struct smpl_unit_reply *rep, void *ud)
{
	struct arm_flow *af = ud;
	struct smpl_daemon *d = u->daemon;

	if (rep->r != 0 && !u->gone) {
		/* A lost or mangled reply does not mean the unit did not arm. */
		if (rep->r < 0)
			smpl_unit_disarm_now(u);
		smpl_safety_arm_failed(&u->safety);
		smpl_unit_close_treatment(u, STORE_OUTCOME_INTERRUPTED);
		u->arming = false;
		flow_unit_error(&af->f, rep->r, "Arm");
		return;
	}
	if (u->gone) {
		u->arming = false;
		flow_unit_error(&af->f, -ENODEV, "Arm");
		return;
	}
	smpl_audit(d, STORE_AUDIT_ARM, &af->f.uid, u, af->f.session_id, NULL, af->patch);
	smpl_log(LOG_NOTICE, smpl_unit_label(u), u->session ? u->session->path : NULL, "arm",
		 "armed by uid %u for patch %s (treatment %" PRId64 ")",
		 (unsigned int)af->f.uid, af->patch, af->treatment_id);
	if (!smpl_safety_is_armed(&u->safety))
		smpl_unit_disarm_now(u);	/* disarmed while the ARM was on its way */
	smpl_unit_changed(u);
	(void)sd_bus_reply_method_return(af->f.m, NULL);
	arm_done(af);
}

static void arm_committed(struct smpl_daemon *d, const struct smpl_records_call *c, void *ud)
{
	struct arm_flow *af = ud;
	struct smpl_unit *u = af->f.u;
	sd_bus_error e = SD_BUS_ERROR_NULL;

	if (c->r < 0) {
		smpl_safety_arm_failed(&u->safety);
		u->arming = false;
		if (c->r == -EAGAIN)	/* the rule that refused names the error (issue 16) */
			(void)smpl_refuse(d, u, af->f.session_id, af->f.uid, &e,
					  smpl_refusal_error(&af->dec.verdict), "%s", c->msg);
		else if (c->r == -EDQUOT)
			(void)smpl_refuse(d, u, af->f.session_id, af->f.uid, &e,
					  SMPL_ERROR_OUT_OF_RANGE, "%s", c->msg);
		else if (c->r == -ENOTCONN)	/* the clinic's records (PostgreSQL) are away */
			(void)smpl_refuse(d, u, af->f.session_id, af->f.uid, &e,
					  SMPL_ERROR_RECORDS_UNAVAILABLE,
					  "cannot record the treatment, not arming: %s", c->msg);
		else if (c->r == -ETIMEDOUT)	/* the records server's clock disagrees (S8) */
			(void)smpl_refuse(d, u, af->f.session_id, af->f.uid, &e,
					  SMPL_ERROR_CLOCK, "not arming: %s", c->msg);
		else {
			if (c->r == -ERANGE && !u->gone)	/* the counter is below the records */
				smpl_unit_fault(u, SMPL_REASON_COUNTER_BACK, c->msg);
			if (c->r == -ENOLINK && !u->gone) {	/* shots beyond them */
				smpl_unit_fault(u, SMPL_REASON_RECORDS_MISSING, c->msg);
				u->settle_pending = true;	/* which records them */
			}
			(void)smpl_refuse(d, u, af->f.session_id, af->f.uid, &e,
					  SMPL_ERROR_DEVICE_FAULT,
					  "cannot record the treatment, not arming: %s", c->msg);
		}
		flow_fail(&af->f, &e);
		return;
	}
	/* A disarm decision, the session's end or the unit's, came meanwhile. */
	if (u->gone || !smpl_safety_is_armed(&u->safety) || session_id_of(u) != af->f.session_id) {
		abandon_committed(u, c->id, &af->st);
		if (!u->gone)
			smpl_safety_arm_failed(&u->safety);
		u->arming = false;
		(void)smpl_refuse(d, u, af->f.session_id, af->f.uid, &e, SMPL_ERROR_BUSY,
				  "unit %s was disarmed while arming", smpl_unit_label(u));
		flow_fail(&af->f, &e);
		return;
	}
	u->treatment_id = af->treatment_id = c->id;
	u->treatment_shot_at_arm = af->st.shot_count;
	if (u->session)
		smpl_session_treatment_armed(u->session, c->id, af->patch);	/* issue 16 */
	u->treatment_emitting = false;
	u->treatment_pulse_durable = false;
	u->treatment_reported = 0;
	u->treatment_jumped = false;
	smpl_safety_newest_record(&u->safety, smpl_wall_ms());	/* it witnesses the clock */
	smpl_safety_patch_budget(&u->safety, af->dec.verdict.e.max_pulses,
				 af->dec.verdict.pulses_used);
	smpl_unit_changed(u);
	smpl_unit_io(u, SMPL_UNIT_ARM, NULL, arm_sent, af);
}

/*
 * S3: the treatment is in the store (fsync'd) before ARM is sent, and S2:
 * inside that transaction the rules decide again, at the arming time, on
 * the records as they are then.
 */
static void arm_commit(struct arm_flow *af)
{
	struct smpl_unit *u = af->f.u;
	struct smpl_daemon *d = u->daemon;
	struct store_treatment_start t = {
		.session_id = af->f.session_id,
		.patch = af->patch,
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
		.armed_rtc_s = af->st.rtc_s,
		.shot_at_arm = af->st.shot_count,
		.cooldown_ms = (int64_t)d->cfg.rules.cooldown_days * SMPL_DAY_MS,
		.decide = smpl_arm_decide,
		.decide_ctx = &af->dec,
	};

	af->dec.cfg = &d->cfg;
	af->dec.patch = af->patch;
	smpl_records_begin_treatment(d, &t, af->f.uid, arm_committed, af);
}

static void arm_read(struct smpl_unit *u, const struct smpl_unit_reply *rep, void *ud)
{
	struct arm_flow *af = ud;
	struct smpl_daemon *d = u->daemon;
	struct smpl_verdict v = { 0 };

	if (u->gone || rep->r != 0) {
		u->arming = false;
		flow_unit_error(&af->f, u->gone ? -ENODEV : rep->r, "Arm");
		return;
	}
	af->st = rep->status;
	smpl_unit_take_status(u, &rep->status);
	smpl_refresh_newest_arming(d);	/* another unit or daemon may have armed since */
	if (session_id_of(u) != af->f.session_id) {
		u->arming = false;
		flow_stale(&af->f, "Arm");
		return;
	}
	if (smpl_safety_arm_begin(&u->safety, smpl_now_ms(d), smpl_wall_ms(), &v) < 0) {
		u->arming = false;
		flow_core_refusal(&af->f, &v);
		return;
	}
	if (!u->session) {	/* the core checked it; never trust one layer */
		sd_bus_error e = SD_BUS_ERROR_NULL;

		smpl_safety_arm_failed(&u->safety);
		u->arming = false;
		(void)smpl_refuse(d, u, 0, af->f.uid, &e, SMPL_ERROR_NO_SESSION,
				  "unit %s has no open session", smpl_unit_label(u));
		flow_fail(&af->f, &e);
		return;
	}
	snprintf(af->patch, sizeof(af->patch), "%s", u->session->patch);
	arm_commit(af);
}

/* The store failed: it was tried again now; nothing arms unless it works. */
static void arm_store_tried(struct smpl_daemon *d, const struct smpl_records_call *c, void *ud)
{
	struct arm_flow *af = ud;
	struct smpl_unit *u = af->f.u;
	sd_bus_error e = SD_BUS_ERROR_NULL;

	if (c->r < 0 || flow_stale(&af->f, "Arm")) {
		u->arming = false;
		if (c->r < 0) {
			(void)smpl_refuse(d, u, af->f.session_id, af->f.uid, &e,
					  SMPL_ERROR_DEVICE_FAULT,
					  "the records store fails: nothing may be armed");
			flow_fail(&af->f, &e);
		}
		return;
	}
	smpl_unit_io(u, SMPL_UNIT_GET_STATUS, NULL, arm_read, af);
}

int smpl_unit_arm(struct smpl_unit *u, sd_bus_message *m, uid_t uid, sd_bus_error *error)
{
	struct smpl_daemon *d = u->daemon;
	struct arm_flow *af;

	if (u->arming || u->params_changing)
		return smpl_refuse(d, u, session_id_of(u), uid, error, SMPL_ERROR_BUSY,
				   "unit %s is busy arming or taking its parameters",
				   smpl_unit_label(u));
	if (!u->connected)
		return smpl_unit_error(u, uid, error, -ENODEV, "Arm");
	af = (struct arm_flow *)flow_new(u, m, uid, sizeof(*af));
	if (!af)
		return -ENOMEM;
	u->arming = true;
	if (d->store_failed) {		/* try the store now rather than at the next retry */
		smpl_records_sync(d, arm_store_tried, af);
		return 1;
	}
	/* The unit read once (state, counter, RTC), then ARM: twice in all. */
	smpl_unit_io(u, SMPL_UNIT_GET_STATUS, NULL, arm_read, af);
	return 1;
}

/* ---- Disarm ------------------------------------------------------------------------- */

int smpl_unit_disarm(struct smpl_unit *u, sd_bus_message *m, const uid_t *uid)
{
	struct smpl_action a = { 0 };
	char who[64];

	if (uid && smpl_unit_attribute(u, m, uid))
		return 0;	/* this call disarmed before its caller was known */
	(void)smpl_safety_disarm_request(&u->safety, &a);
	if (a.kind == SMPL_ACT_NONE && u->treatment_id) {
		a.kind = SMPL_ACT_DISARM;
		a.reason = SMPL_REASON_REQUESTED;
		snprintf(a.message, sizeof(a.message), "disarm requested by the operator");
	}
	if (a.kind == SMPL_ACT_NONE) {
		smpl_unit_disarm_now(u);	/* belt and braces */
		return 0;
	}
	if (!uid) {
		smpl_unit_apply_unattributed(u, &a, m);
		return 0;
	}
	snprintf(who, sizeof(who), " by uid %u", (unsigned int)*uid);
	strncat(a.message, who, sizeof(a.message) - strlen(a.message) - 1);
	smpl_unit_apply_by(u, &a, uid);
	return 0;
}

/* ---- AcknowledgeFault ---------------------------------------------------------------- */

struct ack_flow {
	struct flow f;
	char fault[64];
	uint32_t counter;		/* the counter accepted (COUNTER_BACK) */
};

static void ack_finish(struct ack_flow *af)
{
	struct smpl_unit *u = af->f.u;
	struct smpl_verdict v = { 0 };

	if (smpl_safety_acknowledge(&u->safety, &v) < 0) {
		flow_core_refusal(&af->f, &v);
		return;
	}
	smpl_audit(u->daemon, STORE_AUDIT_ACK_FAULT, &af->f.uid, u, session_id_of(u),
		   af->fault, NULL);
	smpl_log(LOG_NOTICE, smpl_unit_label(u), NULL, "acknowledge",
		 "fault %s acknowledged by uid %u", af->fault, (unsigned int)af->f.uid);
	smpl_unit_changed(u);
	flow_ok(&af->f);
}

static void counter_accepted(struct smpl_daemon *d, const struct smpl_records_call *c, void *ud)
{
	struct ack_flow *af = ud;
	sd_bus_error e = SD_BUS_ERROR_NULL;

	if (c->r < 0) {
		(void)smpl_refuse(d, af->f.u, session_id_of(af->f.u), af->f.uid, &e,
				  SMPL_ERROR_DEVICE_FAULT, "cannot record the accepted counter: %s",
				  c->msg);
		flow_fail(&af->f, &e);
		return;
	}
	if (flow_stale(&af->f, "AcknowledgeFault"))
		return;
	/*
	 * A new epoch of the unit's counter: counting goes on from it, and no
	 * report of the counter left behind is taken for one of the new (S3).
	 */
	smpl_safety_counter_reset(&af->f.u->safety, af->counter);
	af->f.u->counter_back = false;
	af->f.u->reported_known = false;
	af->f.u->closed.id = 0;
	ack_finish(af);
}

static void missing_accepted(struct smpl_daemon *d, const struct smpl_records_call *c, void *ud)
{
	struct ack_flow *af = ud;
	sd_bus_error e = SD_BUS_ERROR_NULL;

	if (c->r < 0) {
		(void)smpl_refuse(d, af->f.u, session_id_of(af->f.u), af->f.uid, &e,
				  SMPL_ERROR_DEVICE_FAULT, "cannot record the acknowledge of the "
				  "missing records: %s", c->msg);
		flow_fail(&af->f, &e);
		return;
	}
	if (!flow_stale(&af->f, "AcknowledgeFault"))
		ack_finish(af);
}

/*
 * Acknowledging a counter below the records accepts it there too (S3); one
 * ahead of them is recorded as acknowledged by this user (issue 15.11).
 */
static void ack_read(struct smpl_unit *u, const struct smpl_unit_reply *rep, void *ud)
{
	struct ack_flow *af = ud;
	int r = rep->r != 0 ? rep->r : rep->status_r;

	if (flow_stale(&af->f, "AcknowledgeFault"))
		return;
	if (r != 0) {
		flow_unit_error(&af->f, r, "AcknowledgeFault");
		return;
	}
	smpl_unit_take_status(u, &rep->status);
	if (u->safety.fault == SMPL_REASON_COUNTER_BACK) {
		af->counter = rep->status.shot_count;
		smpl_records_counter_reset(u->daemon, u->info.serial, rep->status.shot_count,
					   af->f.uid, counter_accepted, af);
		return;
	}
	if (u->safety.fault == SMPL_REASON_RECORDS_MISSING) {
		smpl_records_missing_ack(u->daemon, u->info.serial, rep->status.shot_count,
					 af->f.uid, missing_accepted, af);
		return;
	}
	ack_finish(af);
}

int smpl_unit_acknowledge(struct smpl_unit *u, sd_bus_message *m, uid_t uid,
			  sd_bus_error *error)
{
	struct smpl_verdict v = { 0 };
	bool unit_faulted = u->status_known && u->status.state == SMPL_STATE_FAULT;
	struct ack_flow *af;
	int r;

	if (!smpl_safety_fault_latched(&u->safety) && !unit_faulted)
		return sd_bus_reply_method_return(m, NULL) < 0 ? -EIO : 1;	/* nothing to do */
	r = smpl_safety_may_acknowledge(&u->safety, &v);
	if (r < 0)
		return core_refusal(u, uid, error, &v);
	af = (struct ack_flow *)flow_new(u, m, uid, sizeof(*af));
	if (!af)
		return -ENOMEM;
	snprintf(af->fault, sizeof(af->fault), "%s", smpl_unit_fault_name(u));
	if (unit_faulted)
		smpl_unit_io(u, SMPL_UNIT_ACK_FAULT, NULL, ack_read, af);
	else if (u->safety.fault == SMPL_REASON_COUNTER_BACK ||
		 u->safety.fault == SMPL_REASON_RECORDS_MISSING)
		smpl_unit_io(u, SMPL_UNIT_GET_STATUS, NULL, ack_read, af);
	else
		ack_finish(af);
	return 1;
}
