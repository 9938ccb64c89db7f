/* SPDX-License-Identifier: MIT */
/* Whether a patient's patch may be treated now: see eligibility.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "eligibility.h"
#include "errors.h"
#include "records.h"
#include "session.h"
#include "unit.h"

int smpl_patch_decide(const struct smpl_config *cfg, const struct store_patch_facts *facts,
		      const char *patch, int64_t now_ms, struct smpl_patch_verdict *out)
{
	struct smpl_patch_facts f = {
		.patch_emitted = facts->patch_emitted,
		.patch_last_emission_ms = facts->patch_last_emission_ms,
		.patient_treatments = facts->patient_treatments,
		.patient_first_emission_ms = facts->patient_first_emission_ms,
		.on_hold = facts->on_hold,
		.hold_since_ms = facts->hold_since_ms,
		.pigment_assessed = facts->pigment_assessed,
		.pigment_pct = facts->pigment_pct,
		.pigment_ms = facts->pigment_ms,
	};
	uint32_t limit = cfg->protocol.pulses_per_patch;
	int r;

	snprintf(f.hold_events, sizeof(f.hold_events), "%s", facts->hold_events);
	*out = (struct smpl_patch_verdict){ .pulses_used = facts->session_patch_pulses };
	r = smpl_rules_check_patch(&cfg->rules, &f, patch, now_ms, &out->e);
	if (r < 0)
		return r;
	if (out->e.max_pulses && (!limit || out->e.max_pulses < limit))
		limit = out->e.max_pulses;
	out->pulse_limit = limit;
	if (!out->e.eligible)
		return -EAGAIN;
	if (limit && out->pulses_used >= limit) {
		snprintf(out->e.reason, sizeof(out->e.reason),
			 "patch %s has had its %u pulses in this session%s", patch, limit,
			 out->e.test_spot ? " (test spot)" : "");
		return -EDQUOT;
	}
	return 0;
}

static int clock_of_unit(struct smpl_daemon *d, struct smpl_unit *u, int64_t wall_ms,
			 bool need_rtc, struct smpl_verdict *v)
{
	int r = smpl_safety_clock_ok(&u->safety, smpl_now_ms(d), wall_ms, v);

	if (r < 0 && v->reason == SMPL_REASON_CLOCK_NO_RTC && !need_rtc)
		return 0;
	return r;
}

/* The newest arming given to every unit's core (S8). */
static int64_t apply_newest_arming(struct smpl_daemon *d, int64_t newest)
{
	if (newest <= 0)
		return 0;
	for (struct smpl_unit *o = d->units; o; o = o->next)
		smpl_safety_newest_record(&o->safety, newest);
	return newest;
}

int64_t smpl_refresh_newest_arming(struct smpl_daemon *d)
{
	int64_t newest = 0;

	/*
	 * The clinic's records are read off the loop: their last answer
	 * (records-read.c); the arming transaction reads it again there.
	 */
	if (smpl_records_remote(d))
		return apply_newest_arming(d, d->newest_arming_ms);
	if (store_newest_record_ms(d->reader, &newest) != 1)
		return 0;
	return apply_newest_arming(d, newest);
}

/* The clock check against @newest, the newest arming in the records (0: none). */
static int clock_check_at(struct smpl_daemon *d, struct smpl_unit *u, int64_t newest,
			  struct smpl_verdict *v)
{
	int64_t wall = smpl_wall_ms();
	char host[32], other[32];
	int r;

	if (newest) {
		if (wall < newest) {
			smpl_format_utc(wall, host, sizeof(host));
			smpl_format_utc(newest, other, sizeof(other));
			v->reason = SMPL_REASON_CLOCK_BEHIND;
			snprintf(v->message, sizeof(v->message),
				 "host clock (%s) is earlier than the newest arming (%s)", host, other);
			return -ETIMEDOUT;
		}
	}
	if (u)
		return clock_of_unit(d, u, wall, true, v);
	for (struct smpl_unit *o = d->units; o; o = o->next) {
		if (!o->published || !o->connected)
			continue;
		r = clock_of_unit(d, o, wall, false, v);
		if (r < 0)
			return r;
	}
	v->reason = SMPL_REASON_NONE;
	v->message[0] = '\0';
	return 0;
}

int smpl_clock_check(struct smpl_daemon *d, struct smpl_unit *u, struct smpl_verdict *v)
{
	/* Another daemon on these records, or another unit, may have armed since. */
	return clock_check_at(d, u, smpl_refresh_newest_arming(d), v);
}

struct check {
	struct smpl_unit *u;
	char patch[SMPL_PATCH_ID_MAX + 1];
	smpl_patch_then then;
	void *userdata;
};

/* The records read: the clock, then the rules decide. */
static int check_on(struct smpl_daemon *d, struct check *c, const struct smpl_records_facts *f,
		    struct smpl_patch_verdict *out, sd_bus_error *error)
{
	struct smpl_verdict v = { 0 };
	int64_t newest;
	int r;

	/* Read with the facts (the clinic's: their newest answer, kept in the daemon). */
	if (smpl_records_remote(d))
		newest = smpl_refresh_newest_arming(d);
	else
		newest = f->newest_known ? apply_newest_arming(d, f->newest_ms) : 0;
	r = clock_check_at(d, c->u, newest, &v);
	if (r < 0)
		return smpl_error_setf(error, SMPL_ERROR_CLOCK,
				       "cannot tell whether the patch is eligible: %s", v.message);
	if (f->r == -ENOTCONN)
		return smpl_error_setf(error, SMPL_ERROR_RECORDS_UNAVAILABLE,
				       "cannot tell whether the patch is eligible: %s", f->msg);
	if (f->r < 0)
		return smpl_error_setf(error, SMPL_ERROR_DEVICE_FAULT,
				       "cannot read the records: %s", f->msg);
	r = smpl_patch_decide(&d->cfg, &f->facts, c->patch, smpl_wall_ms(), out);
	if (r < 0 && r != -EAGAIN && r != -EDQUOT)
		return smpl_error_setf(error, SMPL_ERROR_INVALID_ARGUMENT, "%s", out->e.reason);
	if (r == -EDQUOT)
		out->e.eligible = false;
	return 0;
}

static void check_read(struct smpl_daemon *d, const struct smpl_records_facts *f, void *ud)
{
	struct check *c = ud;
	struct smpl_patch_verdict pv = { 0 };
	sd_bus_error e = SD_BUS_ERROR_NULL;
	int r = check_on(d, c, f, &pv, &e);

	c->then(d, r, &pv, &e, c->userdata);
	sd_bus_error_free(&e);
	free(c);
}

void smpl_check_patch(struct smpl_daemon *d, struct smpl_unit *u, const char *patient,
		      const char *patch, int64_t session_id, smpl_patch_then then,
		      void *userdata)
{
	struct check *c = calloc(1, sizeof(*c));

	if (!c) {
		struct smpl_patch_verdict pv = { 0 };
		sd_bus_error e = SD_BUS_ERROR_NULL;
		int r = smpl_error_setf(&e, SMPL_ERROR_DEVICE_FAULT, "out of memory");

		then(d, r, &pv, &e, userdata);
		sd_bus_error_free(&e);
		return;
	}
	c->u = u;
	snprintf(c->patch, sizeof(c->patch), "%s", patch);
	c->then = then;
	c->userdata = userdata;
	smpl_records_read_facts(d, patient, patch, session_id, check_read, c);
}

int smpl_arm_decide(const struct store_patch_facts *facts, int64_t armed_ms, void *ctx,
		    char *why, size_t why_len)
{
	struct smpl_arm_decision *dec = ctx;
	int r = smpl_patch_decide(dec->cfg, facts, dec->patch, armed_ms, &dec->verdict);

	if (r < 0)
		snprintf(why, why_len, "%s", dec->verdict.e.reason);
	return r;
}

const char *smpl_refusal_error(const struct smpl_patch_verdict *pv)
{
	switch (pv->e.refusal) {
	case SMPL_REFUSAL_HOLD:
		return SMPL_ERROR_PATCH_ON_HOLD;
	case SMPL_REFUSAL_CLEAR:
		return SMPL_ERROR_PATCH_CLEAR;
	case SMPL_REFUSAL_FOLLOW_UP:
		return SMPL_ERROR_FOLLOW_UP_REQUIRED;
	case SMPL_REFUSAL_COOLDOWN:
	case SMPL_REFUSAL_TEST_SPOT_REVIEW:
		return SMPL_ERROR_COOLDOWN_ACTIVE;
	case SMPL_REFUSAL_NONE:
		break;
	}
	if (pv->pulse_limit && pv->pulses_used >= pv->pulse_limit)
		return SMPL_ERROR_OUT_OF_RANGE;
	return SMPL_ERROR_COOLDOWN_ACTIVE;
}
