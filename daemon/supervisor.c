/* SPDX-License-Identifier: MIT */
/*
 * The supervision of each laser unit (supervisor.h): probing, the backend's
 * events, the heartbeat, pulses and the treatments they belong to, faults,
 * and the safety core's decisions carried out.  Every decision that could
 * let the unit emit goes through the safety core (safety.h); this file feeds
 * it facts and obeys its answers.
 *
 * Below the sessions: a unit that goes away asks the layer above to end its
 * session through d->upcalls (daemon.h).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "audit.h"
#include "backend-sim.h"
#include "daemon.h"
#include "errors.h"
#include "log.h"
#include "records.h"
#include "supervisor.h"
#include "unit.h"

/* The unit goes away: its session (if any) ends, interrupted (session.c). */
static void end_session(struct smpl_unit *u, const char *why)
{
	if (u->session)
		u->daemon->upcalls->unit_leaving(u, why);
}

/* --- treatments ------------------------------------------------------------- */

static enum store_outcome outcome_of(const struct smpl_action *a)
{
	if (a->kind == SMPL_ACT_FAULT)
		return STORE_OUTCOME_FAULT;
	if (a->reason == SMPL_REASON_REQUESTED || a->reason == SMPL_REASON_SESSION_ENDED)
		return STORE_OUTCOME_COMPLETED;
	return STORE_OUTCOME_INTERRUPTED;
}

static bool armed_state(uint8_t state)
{
	return state == SMPL_STATE_ARMING || state == SMPL_STATE_READY ||
	       state == SMPL_STATE_EMITTING;
}

/*
 * The unit's counter went back under the daemon's eyes (a faulty unit, NV
 * lost while powered): never believed (S3).  The unit faults COUNTER_BACK
 * (disarmed, audited) until an authorized acknowledge accepts the counter.
 */
void smpl_unit_counter_back(struct smpl_unit *u, uint32_t counter, const char *where)
{
	char why[SMPL_SAFETY_MSG_MAX];

	snprintf(why, sizeof(why), "counter-went-back: unit %s reports shot counter %" PRIu32
		 " (%s), below shot %" PRIu32 " it reported before; not believed",
		 smpl_unit_label(u), counter, where, u->max_reported_shot);
	u->counter_back = true;
	smpl_unit_fault(u, SMPL_REASON_COUNTER_BACK, why);
}

/*
 * Pulse reports a unit may lose in one arming (a dropped transfer, a full
 * report queue) before a counter ahead of its reports is taken for a leap.
 */
#define SMPL_LOST_REPORTS_MAX	2

/*
 * The reports come in order, so a counter in them ahead of the open
 * treatment's pulse reports by more than a few lost reports leapt (a faulty
 * unit): never believed (S3).  The unit faults COUNTER_JUMP (disarmed,
 * audited); the treatment counts the pulses reported.
 */
static void check_counter_leap(struct smpl_unit *u, uint32_t counter)
{
	char why[SMPL_SAFETY_MSG_MAX];
	uint32_t since;

	if (!u->treatment_id || u->treatment_jumped || u->counter_back ||
	    counter <= u->treatment_shot_at_arm)
		return;
	since = counter - u->treatment_shot_at_arm;
	if (since <= u->treatment_reported + SMPL_LOST_REPORTS_MAX)
		return;
	snprintf(why, sizeof(why), "counter-jumped: unit %s reports shot counter %" PRIu32
		 ", %" PRIu32 " shots since arming at %" PRIu32 ", but only %" PRIu32
		 " pulses; not believed", smpl_unit_label(u), counter, since,
		 u->treatment_shot_at_arm, u->treatment_reported);
	u->treatment_jumped = true;
	smpl_unit_fault(u, SMPL_REASON_COUNTER_JUMP, why);
}

/* A treatment being closed, while its unit's counter is read. */
struct closing {
	int64_t id;
	enum store_outcome outcome;
	int64_t end_ms;
	bool jumped;			/* count the pulses reported */
};

/*
 * The unit's counter after the disarm is the treatment's end, if the unit
 * says it is disarmed by then; unread (or still armed: the DISARM may not
 * have taken yet), the treatment is settled from the next good read.
 */
static void end_counter_read(struct smpl_unit *u, const struct smpl_unit_reply *rep, void *ud)
{
	struct closing *c = ud;
	struct store_treatment_finish f = {
		.outcome = c->outcome, .end_ms = c->end_ms, .count_reported = c->jumped,
	};

	if (u->counter_back && !u->gone) {
		/* The counter went back during it: its end is not believed (S3). */
		f.outcome = STORE_OUTCOME_UNKNOWN;
	} else if (rep->r == 0 && !armed_state(rep->status.state) &&
		   rep->status.shot_count < u->closed.shot_at_arm && u->closed.id == c->id) {
		f.outcome = STORE_OUTCOME_UNKNOWN;	/* below its arming: the same */
		smpl_unit_counter_back(u, rep->status.shot_count, "read after the disarm");
	} else if (rep->r == 0 && !armed_state(rep->status.state)) {
		f.shot_at_end_known = true;
		f.shot_at_end = rep->status.shot_count;
		f.end_rtc_s = rep->status.rtc_s;
	} else if (f.outcome == STORE_OUTCOME_INTERRUPTED && (!u->connected || u->gone)) {
		/* The unit went away: a pulse whose report was lost with it would be
		 * missing.  Unknown counts as emitted until its counter settles it. */
		f.outcome = STORE_OUTCOME_UNKNOWN;
	}
	if (!u->gone && u->closed.id == c->id) {
		u->closed.end_known = f.shot_at_end_known;
		u->closed.shot_at_end = f.shot_at_end;
		/*
		 * Issue 16: its counter moved: it emitted, whatever reports were
		 * lost.  Not a counter that leapt (not believed: the records count
		 * the pulses reported, and an endpoint asked for a treatment they
		 * say emitted nothing could never be recorded, nor the session end).
		 */
		if (f.shot_at_end_known && !c->jumped && f.shot_at_end > u->closed.shot_at_arm &&
		    u->session && u->session->id == u->closed.session_id)
			smpl_session_emitted(u->session, c->id);
	}
	if (!f.shot_at_end_known)
		u->settle_pending = true;
	smpl_records_end_treatment(u->daemon, c->id, &f);
	free(c);
	smpl_records_closing(u->daemon, -1);
}

void smpl_unit_close_treatment(struct smpl_unit *u, enum store_outcome outcome)
{
	struct closing *c;
	struct smpl_unit_reply unread = { .r = -ENODEV };

	if (!u->treatment_id)
		return;
	/* Late reports belong to it from now on, by their shot numbers. */
	u->closed.id = u->treatment_id;
	u->closed.session_id = u->session ? u->session->id : 0;
	u->closed.shot_at_arm = u->treatment_shot_at_arm;
	u->closed.end_known = false;
	u->treatment_id = 0;
	u->treatment_emitting = false;
	u->treatment_pulse_durable = false;
	c = calloc(1, sizeof(*c));
	if (!c) {
		smpl_log(LOG_CRIT, smpl_unit_label(u), NULL, "store-failed",
			 "treatment %" PRId64 ": out of memory to close it; its counter will",
			 u->closed.id);
		u->settle_pending = true;
		return;
	}
	c->id = u->closed.id;
	c->jumped = u->treatment_jumped;
	u->treatment_jumped = false;
	c->outcome = outcome;
	c->end_ms = smpl_wall_ms();
	smpl_records_closing(u->daemon, +1);
	/* On the safe worker, behind the DISARM: a read on the other could overtake it. */
	if (u->connected)
		smpl_unit_io(u, SMPL_UNIT_END_STATUS, NULL, end_counter_read, c);
	else
		end_counter_read(u, &unread, c);
}

/* The fault an action is about: the unit's own (named), or the daemon's reason. */
static const char *action_fault_name(const struct smpl_action *a)
{
	if (a->reason == SMPL_REASON_UNIT_FAULT && a->fault_code != SMPL_FAULT_NONE &&
	    a->fault_code <= SMPL_FAULT__MAX)
		return smpl_fault_slug(a->fault_code);
	return smpl_reason_name(a->reason);
}

void smpl_unit_apply(struct smpl_unit *u, const struct smpl_action *a)
{
	smpl_unit_apply_by(u, a, NULL);
}

/* A decision taken into the audit trail, the journal and the clients' view. */
static void report(struct smpl_unit *u, const struct smpl_action *a, const uid_t *uid,
		   int64_t session_id)
{
	struct smpl_daemon *d = u->daemon;

	smpl_audit(d, a->kind == SMPL_ACT_FAULT ? STORE_AUDIT_FAULT : STORE_AUDIT_DISARM,
		   uid, u, session_id, smpl_reason_name(a->reason), a->message);
	smpl_records_flush(d);
	smpl_log(a->kind == SMPL_ACT_FAULT ? LOG_ERR : LOG_NOTICE, smpl_unit_label(u),
		 NULL, a->kind == SMPL_ACT_FAULT ? "fault" : "disarm",
		 "%s: %s", a->kind == SMPL_ACT_FAULT ? "fault, disarmed" : "disarmed",
		 a->message);
	if (a->kind == SMPL_ACT_FAULT && u->published && d->observer && d->observer->unit_fault)
		d->observer->unit_fault(u, action_fault_name(a), a->message);
}

void smpl_unit_apply_by(struct smpl_unit *u, const struct smpl_action *a, const uid_t *uid)
{
	int64_t session_id = u->session ? u->session->id : 0;

	if (a->kind == SMPL_ACT_NONE)
		return;
	smpl_unit_disarm_now(u);	/* first: on the unit's safe path */
	smpl_unit_close_treatment(u, outcome_of(a));
	report(u, a, uid, session_id);
	smpl_unit_changed(u);
}

void smpl_unit_apply_unattributed(struct smpl_unit *u, const struct smpl_action *a,
				  sd_bus_message *call)
{
	if (a->kind == SMPL_ACT_NONE)
		return;
	(void)smpl_unit_attribute(u, NULL, NULL);	/* one waiting still: unknown */
	u->unattributed.action = *a;
	u->unattributed.session_id = u->session ? u->session->id : 0;
	u->unattributed.call = sd_bus_message_ref(call);
	smpl_unit_disarm_now(u);
	smpl_unit_close_treatment(u, outcome_of(a));
	smpl_unit_changed(u);
}

bool smpl_unit_attribute(struct smpl_unit *u, sd_bus_message *call, const uid_t *uid)
{
	struct smpl_action *a = &u->unattributed.action;
	char who[64];

	if (!u->unattributed.call || (call && call != u->unattributed.call))
		return false;
	if (uid)
		snprintf(who, sizeof(who), " by uid %u", (unsigned int)*uid);
	else
		snprintf(who, sizeof(who), " by a caller the bus never named");
	strncat(a->message, who, sizeof(a->message) - strlen(a->message) - 1);
	report(u, a, uid, u->unattributed.session_id);
	u->unattributed.call = sd_bus_message_unref(u->unattributed.call);
	return true;
}

void smpl_units_disarm_all(struct smpl_daemon *d, enum smpl_reason reason,
			   const char *why)
{
	for (struct smpl_unit *u = d->units; u; u = u->next) {
		struct smpl_action a = { .kind = SMPL_ACT_DISARM, .reason = reason };

		snprintf(a.message, sizeof(a.message), "%s", why);
		if (smpl_safety_is_armed(&u->safety) || u->treatment_id) {
			struct smpl_action ignored;

			(void)smpl_safety_disarm_request(&u->safety, &ignored);
			smpl_unit_apply(u, &a);
		} else {
			smpl_unit_disarm_now(u);
		}
	}
}

/*
 * No heartbeat for a unit armed and not by us (or not disarmed yet), so that
 * its own watchdog disarms a unit that does not obey; the backends' heartbeat
 * threads read the flag.  Returns it.
 */
static bool hold_heartbeats(struct smpl_unit *u)
{
	u->backend->hold_heartbeats = smpl_safety_armed_against_us(&u->safety);
	return u->backend->hold_heartbeats;
}

/* The core sees a fresh read of the unit (decisions never rest on the last report alone). */
void smpl_unit_take_status(struct smpl_unit *u, const struct smpl_status_n *st)
{
	struct smpl_daemon *d = u->daemon;
	struct smpl_action a = { 0 };

	u->status = *st;
	u->status_known = true;
	(void)smpl_safety_status(&u->safety, smpl_now_ms(d), smpl_wall_ms(), st, &a);
	smpl_unit_apply(u, &a);
	(void)hold_heartbeats(u);
}

/* --- settling from the counter, probing -------------------------------------- */

void smpl_unit_fault(struct smpl_unit *u, enum smpl_reason reason, const char *why)
{
	struct smpl_action a = { 0 };

	if (u->safety.fault == reason)
		return;		/* latched already */
	(void)smpl_safety_fault(&u->safety, reason, why, &a);
	smpl_unit_apply(u, &a);
}

static void settled(struct smpl_daemon *d, const struct smpl_records_call *c, void *ud)
{
	struct smpl_unit *u = ud;

	(void)d;
	u->settling = false;
	if (!u->gone) {
		if (c->r < 0) {
			/* The clinic's records away: said once by records.c, tried again. */
			if (c->r != -ENOTCONN)
				smpl_log(LOG_ERR, smpl_unit_label(u), NULL, "reconcile",
					 "treatments waiting for the counter not settled yet: %s",
					 c->msg);
			u->settle_pending = true;
		} else {
			if (c->settled)
				smpl_log(LOG_NOTICE, smpl_unit_label(u), NULL, "reconcile",
					 "%d treatment(s) settled from the shot counter (%" PRIu32 ")",
					 c->settled, u->settle_counter);
			u->settle_pending = false;
			if (u->closed.id && !u->closed.end_known) {
				u->closed.end_known = true;
				u->closed.shot_at_end = u->settle_counter;
			}
		}
		/*
		 * The counter is below what the records hold (NV loss, a reflash, a
		 * faulty unit): never believed; the unit faults until an authorized
		 * acknowledge accepts it (S3).
		 */
		if (c->counter_back)
			smpl_unit_fault(u, SMPL_REASON_COUNTER_BACK, c->counter_msg);
		/*
		 * Ahead of them (a restored older copy, shots fired elsewhere): those
		 * shots count on the last session's patches, and the unit faults
		 * until an authorized acknowledge records it (issue 15.11).
		 */
		if (c->records_missing)
			smpl_unit_fault(u, SMPL_REASON_RECORDS_MISSING, c->missing_msg);
		if (c->r == 0 && c->missing_unchecked)
			u->settle_pending = true;	/* compared at a later read */
	}
	smpl_unit_unref(u);
}

/*
 * The unit's treatments waiting for its counter (left open by a crash,
 * unknown since it went away, or closed with the end unread), settled from
 * @counter, read while the unit was disarmed.  Its own open treatment is not.
 */
static void settle(struct smpl_unit *u, uint32_t counter)
{
	if (u->settling || u->gone)
		return;
	u->settling = true;
	u->settle_counter = counter;
	u->refs++;
	smpl_records_settle(u->daemon, u->info.serial, counter, u->treatment_id, settled, u);
}

static void settle_counter_read(struct smpl_unit *u, const struct smpl_unit_reply *rep, void *ud)
{
	(void)ud;
	u->settle_reading = false;
	if (!u->gone && rep->r == 0 && !armed_state(rep->status.state) &&
	    !smpl_safety_is_armed(&u->safety) && !u->treatment_id)
		settle(u, rep->status.shot_count);
}

/* Heartbeat: a treatment waits for the counter; read it once the unit is disarmed. */
static void settle_if_pending(struct smpl_unit *u)
{
	if (!u->settle_pending || u->settling || u->settle_reading || !u->connected ||
	    !u->published || u->treatment_id || smpl_safety_is_armed(&u->safety))
		return;
	u->settle_reading = true;
	smpl_unit_io(u, SMPL_UNIT_GET_STATUS, NULL, settle_counter_read, NULL);
}

static void publish(struct smpl_unit *u)
{
	struct smpl_daemon *d = u->daemon;
	int r;

	if (!u->path) {
		r = sd_bus_path_encode(SMPL_UNIT_PREFIX, u->info.serial, &u->path);
		if (r < 0)
			return;
	}
	u->published = true;
	if (d->observer && d->observer->unit_published)
		d->observer->unit_published(u);
	smpl_daemon_changed(d, "Units");
	smpl_unit_changed(u);
}

static void probe_done(struct smpl_daemon *d)
{
	if (d->probing > 0 && --d->probing == 0) {
		d->state = "running";
		smpl_daemon_changed(d, "State");
	}
	smpl_units_notify_status(d);
}

/* Units are keyed on their serial: two at once would share an object. */
static bool serial_taken(const struct smpl_unit *u, const char *serial)
{
	for (const struct smpl_unit *o = u->daemon->units; o; o = o->next)
		if (o != u && o->published && strcmp(o->info.serial, serial) == 0)
			return true;
	return false;
}

static void probed(struct smpl_unit *u, const struct smpl_unit_reply *rep, void *ud)
{
	struct smpl_daemon *d = u->daemon;

	(void)ud;
	u->probing_now = false;
	if (u->gone)
		return;
	if (rep->r != 0) {
		smpl_log(LOG_WARNING, u->name, NULL, "probe", "probe failed (%d), will retry",
			 rep->r);
		return;
	}
	if (serial_taken(u, rep->info.serial)) {
		smpl_log(LOG_ERR, u->name, NULL, "probe",
			 "another unit already has serial %s: this one is ignored",
			 rep->info.serial);
		u->ignored = true;
		return;
	}
	u->info = rep->info;
	snprintf(u->firmware, sizeof(u->firmware), "%u.%u.%u",
		 u->info.fw_major, u->info.fw_minor, u->info.fw_patch);
	if (rep->rtc_r == 0)
		smpl_safety_rtc(&u->safety, smpl_now_ms(d), rep->rtc_s);
	smpl_records_unit_seen(d, u->info.serial, u->info.model, u->firmware, smpl_wall_ms());
	/* What did it do while we were away?  Its counter says, once disarmed. */
	u->settle_pending = true;
	if (u->status_known && !armed_state(u->status.state))
		settle(u, u->status.shot_count);
	u->reprobe = false;
	smpl_log(LOG_INFO, u->info.serial, NULL, "probed",
		 "unit %s (%s, firmware %s, backend %s), shot count %" PRIu32,
		 u->info.serial, u->info.model, u->firmware, smpl_backend_name(u->backend),
		 u->status.shot_count);
	if (!u->published) {
		publish(u);
		probe_done(d);
	}
}

/* The unit has finished its self-test: who is it, what did it do while we were away. */
static void probe(struct smpl_unit *u)
{
	if (u->probing_now || u->ignored || u->gone)
		return;
	u->probing_now = true;
	smpl_unit_io(u, SMPL_UNIT_PROBE, NULL, probed, NULL);
}

/* --- backend events ------------------------------------------------------------ */

static bool settled_state(uint8_t state)
{
	return state != SMPL_STATE_OFF && state != SMPL_STATE_SELF_TEST;
}

static void mark_emitting(struct smpl_unit *u, bool pulse);
static void release_pulses(struct smpl_unit *u);

static void on_status(struct smpl_unit *u, const struct smpl_status_n *st)
{
	struct smpl_daemon *d = u->daemon;
	struct smpl_action a = { 0 };
	uint16_t old_interlocks = u->status.interlocks;
	bool had_status = u->status_known;
	char detail[96];

	u->status = *st;
	u->status_known = true;
	/* Before the core counts the leap toward the limits as pulses. */
	if (u->published)
		check_counter_leap(u, st->shot_count);
	(void)smpl_safety_status(&u->safety, smpl_now_ms(d), smpl_wall_ms(), st, &a);
	if ((!u->published || !u->info.serial[0] || u->reprobe) && !u->ignored) {
		if (settled_state(st->state))
			probe(u);
	} else if (had_status && old_interlocks != st->interlocks) {
		snprintf(detail, sizeof(detail), "open interlocks 0x%02x -> 0x%02x",
			 old_interlocks, st->interlocks);
		smpl_audit(d, STORE_AUDIT_INTERLOCK, NULL, u, u->session ? u->session->id : 0,
			   st->interlocks & ~old_interlocks ? "opened" : "closed", detail);
	}
	if (st->state == SMPL_STATE_EMITTING) {
		mark_emitting(u, false);
		if (u->session && u->treatment_id)
			smpl_session_emitted(u->session, u->treatment_id);	/* issue 16 */
	}
	smpl_unit_apply(u, &a);
	(void)hold_heartbeats(u);
	/* The reports come in order: a counter below a pulse reported before went back. */
	if (u->published && u->reported_known && st->shot_count < u->max_reported_shot &&
	    !u->counter_back) {
		smpl_unit_counter_back(u, st->shot_count, "in a status report");
		u->max_reported_shot = st->shot_count;
	}
	smpl_unit_changed(u);
}

/*
 * The treatment a pulse was fired in, by its shot number: the open one if
 * the shot is past its counter at arming; the last closed one if the shot
 * is in its range (its report came late, or the end counter is not known
 * yet).  0: fired outside every treatment the daemon armed.
 */
static int64_t treatment_of_pulse(const struct smpl_unit *u, uint32_t shot,
				  int64_t *session_id)
{
	if (u->treatment_id && shot > u->treatment_shot_at_arm) {
		*session_id = u->session ? u->session->id : 0;
		return u->treatment_id;
	}
	if (u->closed.id && shot > u->closed.shot_at_arm &&
	    (!u->closed.end_known || shot <= u->closed.shot_at_end)) {
		*session_id = u->closed.session_id;
		return u->closed.id;
	}
	*session_id = 0;
	return 0;
}

static void record_pulse(struct smpl_unit *u, int64_t treatment_id,
			 const struct smpl_pulse_n *p)
{
	struct store_pulse sp = {
		.treatment_id = treatment_id,
		.host_ms = smpl_wall_ms(),
		.shot = p->shot,
		.measured_uj = p->measured_uj,
		.set_uj = p->set_uj,
	};

	smpl_records_pulse(u->daemon, &sp);
}

/*
 * A pulse fired outside every treatment armed for it: after the unit's
 * disarm was confirmed, or before any arming.  Every pulse goes into the
 * records: against the unit's latest treatment (its patch was the one under
 * the handpiece; counting it there never shortens a cooldown), or, with
 * none, into the audit trail; and the unit faults.
 */
static void stray_pulse(struct smpl_unit *u, const struct smpl_pulse_n *p)
{
	int64_t latest = u->treatment_id ? u->treatment_id : u->closed.id;
	struct smpl_action a = { 0 };
	char why[SMPL_SAFETY_MSG_MAX];

	snprintf(why, sizeof(why), "pulse %" PRIu32 " (%" PRIu32 " uJ) fired outside any "
		 "treatment armed for it (after the disarm)", p->shot, p->measured_uj);
	if (latest)
		record_pulse(u, latest, p);
	else
		smpl_audit(u->daemon, STORE_AUDIT_FAULT, NULL, u, 0, "stray-pulse", why);
	if (latest && u->session && (latest == u->treatment_id ||
				     u->closed.session_id == u->session->id))
		smpl_session_emitted(u->session, latest);	/* counted there: its endpoint is due */
	if (smpl_safety_fault(&u->safety, SMPL_REASON_UNEXPECTED_PULSE, why, &a) != SMPL_ACT_NONE)
		smpl_unit_apply(u, &a);
}

/*
 * The first sign of emission of the open treatment goes into the records
 * before anyone hears of it: the unit EMITTING, and its first pulse with the
 * pulse itself.  A count lost later (a crash in the flush window, then a
 * counter that went back) can then never free the patch (S2), and the
 * recorded shot is the high water a counter is checked against (S3).  The
 * Pulse signals wait for it (u->held).
 */
struct marking {
	struct smpl_unit *u;
	int64_t id;
	bool pulse;
};

static void marked(struct smpl_daemon *d, const struct smpl_records_call *c, void *ud)
{
	struct marking *m = ud;
	struct smpl_unit *u = m->u;

	u->marking = false;
	if (c->r < 0) {
		smpl_log(LOG_CRIT, smpl_unit_label(u), NULL, "store-failed",
			 "cannot record that treatment %" PRId64 " emits: %s", m->id, c->msg);
		smpl_daemon_records_failed(d);
	} else if (u->treatment_id == m->id) {
		u->treatment_emitting = true;
		u->treatment_pulse_durable |= m->pulse;
	}
	if (!u->gone && u->n_held && u->treatment_id == m->id && !u->treatment_pulse_durable)
		mark_emitting(u, true);		/* a pulse came meanwhile: with it */
	else
		release_pulses(u);
	free(m);
	smpl_unit_unref(u);
}

static void mark_emitting(struct smpl_unit *u, bool pulse)
{
	struct marking *m;

	if (!u->treatment_id || u->marking ||
	    (u->treatment_emitting && (!pulse || u->treatment_pulse_durable)))
		return;
	m = calloc(1, sizeof(*m));
	if (!m) {
		smpl_daemon_records_failed(u->daemon);
		return;
	}
	m->u = u;
	m->id = u->treatment_id;
	m->pulse = pulse;
	u->marking = true;
	u->refs++;
	smpl_records_mark_emitting(u->daemon, m->id, smpl_wall_ms(), marked, m);
}

/* The Pulse signals held while the emission was being recorded, in order. */
static void release_pulses(struct smpl_unit *u)
{
	const struct smpl_observer *o = u->daemon->observer;

	for (unsigned int i = 0; i < u->n_held; i++)
		if (!u->gone && u->published && o && o->unit_pulse)
			o->unit_pulse(u, u->held[i].session_id && u->session &&
				      u->session->id == u->held[i].session_id ? u->session : NULL,
				      &u->held[i].pulse);
	u->n_held = 0;
}

/* A Pulse signal now, or after the emission is durable (mark_emitting). */
static void announce_pulse(struct smpl_unit *u, int64_t session_id, const struct smpl_pulse_n *p)
{
	const struct smpl_observer *o = u->daemon->observer;

	if (u->marking || u->n_held) {
		if (u->n_held < SMPL_HELD_PULSES_MAX) {
			u->held[u->n_held].session_id = session_id;
			u->held[u->n_held++].pulse = *p;
		}
		return;
	}
	if (u->published && o && o->unit_pulse)
		o->unit_pulse(u, u->session && session_id == u->session->id ? u->session : NULL, p);
}

static void on_pulse(struct smpl_unit *u, const struct smpl_pulse_n *p)
{
	struct smpl_daemon *d = u->daemon;
	struct smpl_session *s = u->session;
	struct smpl_action a = { 0 };
	int64_t session_id = 0;
	int64_t tid = treatment_of_pulse(u, p->shot, &session_id);
	bool fresh = !u->reported_known || p->shot > u->max_reported_shot;
	/*
	 * The reports come in order: a pulse at or below one reported before,
	 * or below the counter its armed treatment began at, means the counter
	 * went back.  The pulse is real: it belongs to the treatment armed then.
	 */
	bool back = !fresh || (!tid && u->treatment_id && p->shot <= u->treatment_shot_at_arm);

	if (back && !u->counter_back && u->published)
		smpl_unit_counter_back(u, p->shot, "in a pulse report");
	if (back && u->counter_back) {
		fresh = true;
		if (!tid) {
			tid = u->treatment_id ? u->treatment_id : u->closed.id;
			session_id = u->treatment_id ? (s ? s->id : 0) : u->closed.session_id;
		}
	}
	if (p->shot > u->status.shot_count)
		u->status.shot_count = p->shot;
	if (fresh) {
		u->reported_known = true;
		u->max_reported_shot = p->shot;
	}
	if (fresh && tid && tid == u->treatment_id)
		u->treatment_reported++;
	check_counter_leap(u, p->shot);		/* before the core counts the leap */
	/* The rate the unit was set to (parameters never change while armed). */
	smpl_safety_set_rate(&u->safety, u->params_set ? u->params.rate_mhz : 0);
	(void)smpl_safety_pulse(&u->safety, smpl_now_ms(d), p, &a);
	if (tid)
		record_pulse(u, tid, p);
	if (tid && tid == u->treatment_id)
		mark_emitting(u, true);
	if (fresh && s && session_id && s->id == session_id)
		s->pulse_count++;
	if (tid && s && session_id && s->id == session_id)
		smpl_session_emitted(s, tid);	/* issue 16: its endpoint is due */
	if (fresh)
		announce_pulse(u, session_id, p);
	smpl_unit_apply(u, &a);
	if (!tid && fresh)
		stray_pulse(u, p);
	smpl_unit_changed(u);
}

static void on_disconnect(struct smpl_unit *u)
{
	struct smpl_action a = { 0 };

	(void)smpl_safety_disconnected(&u->safety, smpl_now_ms(u->daemon), &a);
	u->connected = false;
	u->status_known = false;
	smpl_log(LOG_WARNING, smpl_unit_label(u), NULL, "disconnect", "unit disconnected");
	smpl_audit(u->daemon, STORE_AUDIT_INTERLOCK, NULL, u,
		   u->session ? u->session->id : 0, "disconnected", "the unit went away");
	smpl_unit_apply(u, &a);
	if (u->treatment_id)	/* not armed as far as the core knew: close anyway */
		smpl_unit_close_treatment(u, STORE_OUTCOME_INTERRUPTED);
	smpl_unit_changed(u);
}

/*
 * A simulated unit unplugged goes the way of a real one: its session ends,
 * its Unit object goes away (the Simulator interface stays at the path, for
 * the technician's hands to plug it in again) and a replug publishes it anew.
 */
static void unpublish(struct smpl_unit *u)
{
	struct smpl_daemon *d = u->daemon;

	end_session(u, "the unit was removed");
	if (!u->published)
		return;
	if (d->observer && d->observer->unit_unpublished)
		d->observer->unit_unpublished(u, false);
	u->published = false;
	smpl_daemon_changed(d, "Units");
	smpl_units_notify_status(d);
}

static void on_connect(struct smpl_unit *u)
{
	u->connected = true;
	u->status_known = false;
	u->reprobe = u->published;	/* the same unit? what did it do while away? */
	u->params_set = false;	/* the unit forgot them */
	memset(&u->params, 0, sizeof(u->params));
	u->reported_known = false;	/* its counter may have changed while away */
	smpl_safety_connected(&u->safety, smpl_now_ms(u->daemon));
	smpl_log(LOG_INFO, smpl_unit_label(u), NULL, "connect", "unit connected");
	smpl_unit_changed(u);
}

static void on_backend_event(struct smpl_backend *b, const struct smpl_backend_event *ev,
			     void *userdata)
{
	struct smpl_unit *u = userdata;

	(void)b;
	switch (ev->type) {
	case SMPL_BEV_STATUS:
		on_status(u, &ev->status);
		break;
	case SMPL_BEV_PULSE:
		on_pulse(u, &ev->pulse);
		break;
	case SMPL_BEV_DISCONNECT:
		on_disconnect(u);
		if (b->sim)
			unpublish(u);	/* as a real unit's node going away */
		break;
	case SMPL_BEV_CONNECT:
		on_connect(u);
		break;
	}
}

/* --- timers ------------------------------------------------------------------------ */

/*
 * S8 while not armed too: the audit trail says when the host clock stops
 * agreeing with the unit's RTC or the records, and when it agrees again.
 */
static void watch_clock(struct smpl_unit *u)
{
	struct smpl_daemon *d = u->daemon;
	struct smpl_verdict v = { 0 };
	bool bad;

	bad = smpl_safety_clock_ok(&u->safety, smpl_now_ms(d), smpl_wall_ms(), &v) < 0 &&
	      v.reason != SMPL_REASON_CLOCK_NO_RTC;
	if (bad == u->clock_bad)
		return;
	u->clock_bad = bad;
	if (!bad)
		snprintf(v.message, sizeof(v.message), "the host clock is right again");
	smpl_log(bad ? LOG_WARNING : LOG_NOTICE, smpl_unit_label(u), NULL, "clock", "%s",
		 v.message);
	smpl_audit(d, STORE_AUDIT_CLOCK_ANOMALY, NULL, u, u->session ? u->session->id : 0,
		   bad ? smpl_reason_name(v.reason) : "clock-ok", v.message);
}

static void heartbeat_done(struct smpl_unit *u, const struct smpl_unit_reply *rep, void *ud)
{
	(void)rep, (void)ud;
	u->heartbeat_inflight = false;
}

static int on_heartbeat(sd_event_source *src, uint64_t usec, void *userdata)
{
	struct smpl_unit *u = userdata;
	struct smpl_daemon *d = u->daemon;
	struct smpl_action a = { 0 };
	uint32_t period_ms = d->cfg.safety.heartbeat_ms / 2;

	if (hold_heartbeats(u) && u->connected && u->published) {
		/* Armed, and not by us (or not disarmed yet): the disarm once more. */
		smpl_unit_disarm_now(u);
	} else if (u->connected && u->published && !u->heartbeat_inflight) {
		u->heartbeat_inflight = true;	/* a stuck unit gets no pile of them */
		smpl_unit_io(u, SMPL_UNIT_HEARTBEAT, NULL, heartbeat_done, NULL);
	}
	if (u->connected && (!u->published || u->reprobe) && !u->ignored &&
	    u->status_known && settled_state(u->status.state))
		probe(u);		/* the last probe failed: try again */
	settle_if_pending(u);
	if (u->published) {
		(void)smpl_safety_tick(&u->safety, smpl_now_ms(d), &a);
		smpl_unit_apply(u, &a);
		a.kind = SMPL_ACT_NONE;
		(void)smpl_safety_clock_check(&u->safety, smpl_now_ms(d), smpl_wall_ms(), &a);
		smpl_unit_apply(u, &a);
		watch_clock(u);
	}
	(void)usec;
	return sd_event_source_set_time_relative(src, (period_ms ? period_ms : 100) * 1000ULL);
}

/* --- lifetime ------------------------------------------------------------------------ */

static int unit_start(struct smpl_unit *u)
{
	struct smpl_daemon *d = u->daemon;
	struct smpl_safety_limits limits;
	int64_t newest;
	int r;

	smpl_config_safety_limits(&d->cfg, &limits);
	smpl_safety_init(&u->safety, &limits);
	if (smpl_records_remote(d))	/* read off the loop: its last answer */
		newest = d->newest_arming_ms;
	else if (store_newest_record_ms(d->reader, &newest) != 1)
		newest = 0;
	if (newest)
		smpl_safety_newest_record(&u->safety, newest);
	r = smpl_unit_io_start(u);
	if (r < 0)
		return r;
	r = u->backend->ops->open(u->backend);
	if (r < 0)
		return r;
	u->connected = true;
	smpl_safety_connected(&u->safety, smpl_now_ms(d));
	r = sd_event_add_time_relative(d->event, &u->heartbeat, CLOCK_MONOTONIC,
				       100 * 1000, 10 * 1000, on_heartbeat, u);
	if (r < 0)
		return r;
	(void)sd_event_source_set_enabled(u->heartbeat, SD_EVENT_ON);
	d->probing++;
	return 0;
}

int smpl_unit_adopt(struct smpl_daemon *d, const char *name, struct smpl_backend *b,
		    struct smpl_unit **ret)
{
	struct smpl_unit *u;
	int r;

	if (!d->upcalls || !d->upcalls->unit_leaving) {	/* its session could outlive it */
		smpl_backend_free(b);
		return -EINVAL;
	}
	u = calloc(1, sizeof(*u));
	if (!u) {
		smpl_backend_free(b);
		return -ENOMEM;
	}
	u->daemon = d;
	u->backend = b;
	u->refs = 1;		/* the daemon's list */
	b->on_event = on_backend_event;
	b->userdata = u;
	snprintf(u->name, sizeof(u->name), "%s", name);
	u->next = d->units;
	d->units = u;
	r = unit_start(u);
	if (r < 0) {
		smpl_log(LOG_ERR, name, NULL, "probe", "cannot open the unit: %s", strerror(-r));
		smpl_unit_drop(u);
		return r;
	}
	if (ret)
		*ret = u;
	return 0;
}

int smpl_unit_add_sim(struct smpl_daemon *d, unsigned int index)
{
	struct smpl_backend *b = NULL;
	struct smpl_sim_options opt = {
		.index = index,
		.nv_dir = d->state_dir,
		.idle_timeout_ms = (d->cfg.safety.idle_timeout_s + 5) * 1000,
		/* A reply that never comes is waited for as a transfer would be. */
		.reply_timeout_ms = d->inline_io ? 0 : SMPL_SIM_REPLY_TIMEOUT_MS,
		.workstation = smpl_records_remote(d) ? d->cfg.records.workstation : NULL,
	};
	char name[32];
	int r;

	r = smpl_backend_sim_new(d->event, &opt, NULL, NULL, &b);
	if (r < 0)
		return r;
	snprintf(name, sizeof(name), "sim%u", index);
	return smpl_unit_adopt(d, name, b, NULL);
}

void smpl_unit_drop(struct smpl_unit *u)
{
	struct smpl_daemon *d = u->daemon;
	bool published = u->published;

	if (u->connected)
		on_disconnect(u);	/* disarm, close the treatment, record it */
	(void)smpl_unit_attribute(u, NULL, NULL);
	end_session(u, "the unit was removed");
	if (published && d->observer && d->observer->unit_unpublished)
		d->observer->unit_unpublished(u, true);
	else if (!published && u->heartbeat)
		probe_done(d);		/* it was still being probed */
	smpl_log(LOG_INFO, smpl_unit_label(u), NULL, "remove", "unit removed");
	smpl_unit_bury(u);		/* until its calls in flight are done */
	if (published)
		smpl_daemon_changed(d, "Units");
}
