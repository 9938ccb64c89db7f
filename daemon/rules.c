/* SPDX-License-Identifier: MIT */
/* Treatment rules: cooldown, test spot, D-Bus argument checks.  Pure code. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "rules.h"
#include "text.h"

static void __attribute__((format(printf, 3, 4)))
set_msg(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;

	if (!buf || !len)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, len, fmt, ap);
	va_end(ap);
}

/* ---- time ---------------------------------------------------------------- */

void smpl_format_utc(int64_t wall_ms, char *buf, size_t len)
{
	int64_t secs = wall_ms / 1000;
	struct tm tm;
	time_t t;

	if (wall_ms % 1000 < 0)
		secs--;			/* floor for times before 1970 */
	t = (time_t)secs;
	if (!buf || !len)
		return;
	if (!gmtime_r(&t, &tm) || !strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm))
		set_msg(buf, len, "@%" PRId64 " s", secs);
}

/* a + days, saturating instead of overflowing. */
static int64_t add_days(int64_t when_ms, uint32_t days)
{
	int64_t delta = (int64_t)days * SMPL_DAY_MS;

	if (when_ms > INT64_MAX - delta)
		return INT64_MAX;
	return when_ms + delta;
}

/* ---- cooldown and test spot ---------------------------------------------- */

void smpl_rules_default(struct smpl_rules_cfg *r)
{
	r->cooldown_days = SMPL_COOLDOWN_DAYS_MIN;
	r->test_spot = false;
	r->test_spot_pulses = 20;
	r->test_spot_review_days = 14;
	r->require_follow_up = true;
}

static void explain_cooldown(const struct smpl_rules_cfg *cfg,
			     const struct smpl_patch_facts *f, const char *patch,
			     bool eligible, int64_t until_ms,
			     struct smpl_eligibility *out)
{
	char last[32], next[32];

	smpl_format_utc(f->patch_last_emission_ms, last, sizeof(last));
	smpl_format_utc(until_ms, next, sizeof(next));
	if (eligible)
		set_msg(out->reason, sizeof(out->reason),
			"%s last treated %s; its %" PRIu32 "-day cooldown ended %s",
			patch, last, cfg->cooldown_days, next);
	else
		set_msg(out->reason, sizeof(out->reason),
			"%s last treated %s; %" PRIu32 "-day cooldown: eligible from %s",
			patch, last, cfg->cooldown_days, next);
}

static void explain_review(const struct smpl_rules_cfg *cfg,
			   const struct smpl_patch_facts *f, int64_t until_ms,
			   struct smpl_eligibility *out)
{
	char spot[32], next[32];

	smpl_format_utc(f->patient_first_emission_ms, spot, sizeof(spot));
	smpl_format_utc(until_ms, next, sizeof(next));
	set_msg(out->reason, sizeof(out->reason),
		"test spot on %s is under review (%" PRIu32 " days): "
		"full treatment from %s", spot, cfg->test_spot_review_days, next);
}

/* A patch held by an adverse event (issue 16): refused until a review clears it. */
static void explain_hold(const struct smpl_patch_facts *f, const char *patch,
			 struct smpl_eligibility *out)
{
	char since[32];

	smpl_format_utc(f->hold_since_ms, since, sizeof(since));
	set_msg(out->reason, sizeof(out->reason),
		"%s is on hold since %s for %s: not treated until an authorized review "
		"clears the hold (ClearPatchHold)", patch, since,
		f->hold_events[0] ? f->hold_events : "an adverse event");
}

static void explain_clear(const struct smpl_patch_facts *f, const char *patch,
			  struct smpl_eligibility *out)
{
	char when[32];

	smpl_format_utc(f->pigment_ms, when, sizeof(when));
	set_msg(out->reason, sizeof(out->reason),
		"%s is clear: the follow-up of %s found no pigment remaining; it is not "
		"treated again unless a new follow-up finds pigment", patch, when);
}

/* Has a follow-up after the patch's last emission found pigment remaining? */
static bool follow_up_found_pigment(const struct smpl_patch_facts *f)
{
	return f->pigment_assessed && f->pigment_pct > 0 &&
	       f->pigment_ms > f->patch_last_emission_ms;
}

/* The follow-up rule refuses past the cooldown: it waits for a visit, not a date. */
static void explain_follow_up(const struct smpl_patch_facts *f, const char *patch,
			      struct smpl_eligibility *out)
{
	char last[32];

	smpl_format_utc(f->patch_last_emission_ms, last, sizeof(last));
	set_msg(out->reason, sizeof(out->reason),
		"%s last treated %s: treated again only once a follow-up after that "
		"treatment finds pigment remaining (RecordFollowUp)", patch, last);
}

/* The clinical record's rules, before the dates: 1 when one of them refused. */
static int clinical_refusal(const struct smpl_patch_facts *f, const char *patch,
			    struct smpl_eligibility *out)
{
	if (f->on_hold) {
		explain_hold(f, patch, out);
		out->refusal = SMPL_REFUSAL_HOLD;
	} else if (f->pigment_assessed && f->pigment_pct == 0) {
		explain_clear(f, patch, out);
		out->refusal = SMPL_REFUSAL_CLEAR;
	} else {
		return 0;
	}
	out->eligible = false;
	out->next_eligible_ms = 0;
	return 1;
}

int smpl_rules_check_patch(const struct smpl_rules_cfg *cfg,
			   const struct smpl_patch_facts *facts,
			   const char *patch, int64_t now_ms,
			   struct smpl_eligibility *out)
{
	bool has_cooldown, has_review = false, cooldown_ok, review_ok, follow_up_ok;
	int64_t cooldown_until = INT64_MIN, review_until = INT64_MIN;

	if (!out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	if (!patch || !patch[0])
		patch = "this patch";
	if (!cfg || !facts) {
		set_msg(out->reason, sizeof(out->reason), "internal error: no rules");
		return -EINVAL;
	}
	if (cfg->cooldown_days < SMPL_COOLDOWN_DAYS_MIN) {
		/* config.c refuses this; never let a bad struct shorten S2 */
		set_msg(out->reason, sizeof(out->reason),
			"cooldown of %" PRIu32 " days is below the %d-day minimum",
			cfg->cooldown_days, SMPL_COOLDOWN_DAYS_MIN);
		return -EINVAL;
	}

	has_cooldown = facts->patch_emitted;
	if (has_cooldown)
		cooldown_until = add_days(facts->patch_last_emission_ms, cfg->cooldown_days);
	if (cfg->test_spot && facts->patient_treatments > 0) {
		has_review = true;
		review_until = add_days(facts->patient_first_emission_ms,
					cfg->test_spot_review_days);
	}
	cooldown_ok = now_ms >= cooldown_until;
	review_ok = now_ms >= review_until;
	follow_up_ok = !has_cooldown || !cfg->require_follow_up ||
		       follow_up_found_pigment(facts);

	out->eligible = cooldown_ok && review_ok && follow_up_ok;
	out->next_eligible_ms = now_ms;
	if (has_cooldown || has_review)
		out->next_eligible_ms = cooldown_until > review_until ?
					cooldown_until : review_until;

	if (cfg->test_spot && facts->patient_treatments == 0) {
		out->test_spot = true;
		out->max_pulses = cfg->test_spot_pulses;
	}
	if (clinical_refusal(facts, patch, out))
		return 0;

	/* Explain the rule that decides: the one that ends last. */
	if (has_review && (!has_cooldown || review_until > cooldown_until) && !review_ok) {
		explain_review(cfg, facts, review_until, out);
		out->refusal = SMPL_REFUSAL_TEST_SPOT_REVIEW;
	} else if (has_cooldown && (!cooldown_ok || follow_up_ok)) {
		explain_cooldown(cfg, facts, patch, cooldown_ok, cooldown_until, out);
		if (!cooldown_ok)
			out->refusal = SMPL_REFUSAL_COOLDOWN;
	} else if (has_cooldown) {
		explain_follow_up(facts, patch, out);
		out->refusal = SMPL_REFUSAL_FOLLOW_UP;
		out->next_eligible_ms = 0;
	} else if (out->test_spot) {
		set_msg(out->reason, sizeof(out->reason),
			"%s: first treatment of this patient: test spot only, "
			"at most %" PRIu32 " pulses", patch, cfg->test_spot_pulses);
	} else {
		set_msg(out->reason, sizeof(out->reason),
			"%s has no recorded treatment: eligible", patch);
	}
	if (out->eligible && has_cooldown && cfg->require_follow_up) {
		char when[32];
		size_t n = strlen(out->reason);

		smpl_format_utc(facts->pigment_ms, when, sizeof(when));
		set_msg(out->reason + n, sizeof(out->reason) - n,
			"; the follow-up of %s found %" PRIu32 "%% pigment remaining", when,
			facts->pigment_pct);
	}
	/* The cooldown's date decides; the follow-up is needed as well. */
	if (!follow_up_ok && out->refusal != SMPL_REFUSAL_FOLLOW_UP) {
		size_t n = strlen(out->reason);

		set_msg(out->reason + n, sizeof(out->reason) - n,
			"; then a follow-up must find pigment remaining");
	}
	return 0;
}

/* ---- D-Bus argument checks ----------------------------------------------- */

static bool is_patient_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	       (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

int smpl_patient_id_check(const char *id, char *err, size_t err_len)
{
	size_t n;

	if (!id || !id[0]) {
		set_msg(err, err_len, "patient: empty id (1-%d characters of "
			"A-Z a-z 0-9 . _ -)", SMPL_PATIENT_ID_MAX);
		return -EINVAL;
	}
	for (n = 0; id[n]; n++) {
		if (n >= SMPL_PATIENT_ID_MAX) {
			set_msg(err, err_len, "patient: id longer than %d characters",
				SMPL_PATIENT_ID_MAX);
			return -EINVAL;
		}
		if (!is_patient_char(id[n])) {
			set_msg(err, err_len, "patient: character %zu of the id is not "
				"one of A-Z a-z 0-9 . _ -", n + 1);
			return -EINVAL;
		}
	}
	return 0;
}

void smpl_protocol_default(struct smpl_protocol *p)
{
	memset(p, 0, sizeof(*p));
	p->wavelengths_nm[0] = 1064;
	p->n_wavelengths = 1;
	p->fluence_min_mj_cm2 = 1000;
	p->fluence_max_mj_cm2 = 10000;
	p->spot_min_um = 2000;
	p->spot_max_um = 6000;
	p->qswitch_pulse_min_ps = 5000;
	p->qswitch_pulse_max_ps = 25000;
	p->pico_pulse_min_ps = 300;
	p->pico_pulse_max_ps = 750;
	p->rate_max_mhz = 10000;
	p->pulses_per_patch = 3000;
	p->max_session_energy_uj = 10000ULL * 1000 * 1000;	/* 10 kJ */
}

static const struct {
	const char *name;
	uint32_t max;		/* the field's width */
} param_fields[SMPL_PF__COUNT] = {
	[SMPL_PF_WAVELENGTH]	= { "wavelength_nm",	UINT16_MAX },
	[SMPL_PF_FLUENCE]	= { "fluence_mj_cm2",	UINT32_MAX },
	[SMPL_PF_SPOT]		= { "spot_um",		UINT16_MAX },
	[SMPL_PF_PULSE]		= { "pulse_ps",		UINT32_MAX },
	[SMPL_PF_RATE]		= { "rate_mhz",		UINT32_MAX },
};

const char *smpl_param_field_name(enum smpl_param_field f)
{
	if ((unsigned int)f >= SMPL_PF__COUNT)
		return "?";
	return param_fields[f].name;
}

static void store_field(struct smpl_params_n *p, enum smpl_param_field f,
			uint32_t v)
{
	switch (f) {
	case SMPL_PF_WAVELENGTH: p->wavelength_nm = (uint16_t)v; break;
	case SMPL_PF_FLUENCE:	 p->fluence_mj_cm2 = v; break;
	case SMPL_PF_SPOT:	 p->spot_um = (uint16_t)v; break;
	case SMPL_PF_PULSE:	 p->pulse_ps = v; break;
	case SMPL_PF_RATE:	 p->rate_mhz = v; break;
	case SMPL_PF__COUNT:	 break;
	}
}

static uint32_t get_field(const struct smpl_params_n *p, enum smpl_param_field f)
{
	switch (f) {
	case SMPL_PF_WAVELENGTH: return p->wavelength_nm;
	case SMPL_PF_FLUENCE:	 return p->fluence_mj_cm2;
	case SMPL_PF_SPOT:	 return p->spot_um;
	case SMPL_PF_PULSE:	 return p->pulse_ps;
	case SMPL_PF_RATE:	 return p->rate_mhz;
	case SMPL_PF__COUNT:	 break;
	}
	return 0;
}

int smpl_params_set_field(struct smpl_params_n *p, const char *key,
			  char dbus_type, int64_t value,
			  char *err, size_t err_len)
{
	int f;

	for (f = 0; f < SMPL_PF__COUNT; f++)
		if (key && strcmp(key, param_fields[f].name) == 0)
			break;
	if (f == SMPL_PF__COUNT) {
		char echo[SMPL_ECHO_MAX];

		smpl_text_echo(echo, sizeof(echo), key, SMPL_ECHO_CHARS);
		set_msg(err, err_len, "parameter \"%s\" is unknown (known: "
			"wavelength_nm, fluence_mj_cm2, spot_um, pulse_ps, rate_mhz)", echo);
		return -EINVAL;
	}
	if (!dbus_type || !strchr("ynqiuxt", dbus_type)) {
		set_msg(err, err_len, "parameter %s: must be an integer, not D-Bus "
			"type '%c'", param_fields[f].name,
			dbus_type ? dbus_type : '?');
		return -EINVAL;
	}
	if (value < 0 || (uint64_t)value > param_fields[f].max) {
		set_msg(err, err_len, "parameter %s = %" PRId64 " is outside 0..%" PRIu32,
			param_fields[f].name, value, param_fields[f].max);
		return -ERANGE;
	}
	store_field(p, (enum smpl_param_field)f, (uint32_t)value);
	return 0;
}

static int out_of_range(enum smpl_param_field f, uint32_t v, const char *whose,
			uint32_t lo, uint32_t hi, char *err, size_t err_len)
{
	set_msg(err, err_len, "%s = %" PRIu32 " is outside %s (%" PRIu32 "-%" PRIu32 ")",
		param_fields[f].name, v, whose, lo, hi);
	return -ERANGE;
}

static int check_range(enum smpl_param_field f, uint32_t v, const char *whose,
		       uint32_t lo, uint32_t hi, char *err, size_t err_len)
{
	if (v < lo || v > hi)
		return out_of_range(f, v, whose, lo, hi, err, err_len);
	return 0;
}

static int check_wavelength(const struct smpl_protocol *proto,
			    const struct smpl_info_n *unit, uint16_t wl,
			    char *err, size_t err_len)
{
	bool in_protocol = false;

	for (unsigned int i = 0; i < proto->n_wavelengths &&
				 i < SMPL_PROTOCOL_WAVELENGTHS_MAX; i++)
		if (proto->wavelengths_nm[i] == wl)
			in_protocol = true;
	if (!in_protocol) {
		set_msg(err, err_len, "wavelength_nm = %u is not in the clinic protocol",
			(unsigned int)wl);
		return -ERANGE;
	}
	if (unit && unit->wavelength_nm[0] != wl && unit->wavelength_nm[1] != wl) {
		set_msg(err, err_len, "wavelength_nm = %u is not a wavelength of this "
			"unit (%u, %u)", (unsigned int)wl,
			(unsigned int)unit->wavelength_nm[0],
			(unsigned int)unit->wavelength_nm[1]);
		return -ERANGE;
	}
	return 0;
}

static int check_pulse(const struct smpl_protocol *proto,
		       const struct smpl_info_n *unit, uint32_t ps,
		       char *err, size_t err_len)
{
	bool q_ok = ps >= proto->qswitch_pulse_min_ps && ps <= proto->qswitch_pulse_max_ps;
	bool pico_ok = ps >= proto->pico_pulse_min_ps && ps <= proto->pico_pulse_max_ps;

	if (!unit) {
		if (q_ok || pico_ok)
			return 0;
		set_msg(err, err_len, "pulse_ps = %" PRIu32 " is outside the clinic "
			"protocol (%" PRIu32 "-%" PRIu32 " or %" PRIu32 "-%" PRIu32 ")",
			ps, proto->pico_pulse_min_ps, proto->pico_pulse_max_ps,
			proto->qswitch_pulse_min_ps, proto->qswitch_pulse_max_ps);
		return -ERANGE;
	}
	if (unit->flags & SMPL_INFO_PICOSECOND) {
		if (!pico_ok)
			return out_of_range(SMPL_PF_PULSE, ps,
					    "the clinic protocol for picosecond units",
					    proto->pico_pulse_min_ps,
					    proto->pico_pulse_max_ps, err, err_len);
	} else if (!q_ok) {
		return out_of_range(SMPL_PF_PULSE, ps,
				    "the clinic protocol for Q-switched units",
				    proto->qswitch_pulse_min_ps,
				    proto->qswitch_pulse_max_ps, err, err_len);
	}
	return check_range(SMPL_PF_PULSE, ps, "this unit's limits",
			   unit->min_pulse_ps, unit->max_pulse_ps, err, err_len);
}

int smpl_params_check(const struct smpl_protocol *proto,
		      const struct smpl_info_n *unit,
		      const struct smpl_params_n *p,
		      char *err, size_t err_len)
{
	const char *proto_s = "the clinic protocol", *unit_s = "this unit's limits";
	int r;

	if (!proto || !p) {
		set_msg(err, err_len, "internal error: no protocol or parameters");
		return -EINVAL;
	}
	for (int f = 0; f < SMPL_PF__COUNT; f++) {
		if (get_field(p, (enum smpl_param_field)f) == 0) {
			set_msg(err, err_len, "%s is not set", param_fields[f].name);
			return -EINVAL;
		}
	}
	r = check_wavelength(proto, unit, p->wavelength_nm, err, err_len);
	if (!r)
		r = check_range(SMPL_PF_FLUENCE, p->fluence_mj_cm2, proto_s,
				proto->fluence_min_mj_cm2, proto->fluence_max_mj_cm2,
				err, err_len);
	if (!r && unit)
		r = check_range(SMPL_PF_FLUENCE, p->fluence_mj_cm2, unit_s,
				1, unit->max_fluence_mj_cm2, err, err_len);
	if (!r)
		r = check_range(SMPL_PF_SPOT, p->spot_um, proto_s,
				proto->spot_min_um, proto->spot_max_um, err, err_len);
	if (!r && unit)
		r = check_range(SMPL_PF_SPOT, p->spot_um, unit_s,
				unit->min_spot_um, unit->max_spot_um, err, err_len);
	if (!r)
		r = check_pulse(proto, unit, p->pulse_ps, err, err_len);
	if (!r)
		r = check_range(SMPL_PF_RATE, p->rate_mhz, proto_s,
				1, proto->rate_max_mhz, err, err_len);
	if (!r && unit)
		r = check_range(SMPL_PF_RATE, p->rate_mhz, unit_s,
				1, unit->max_rate_mhz, err, err_len);
	return r;
}
