/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness: the argument checks behind every D-Bus method
 * (daemon/rules.h, daemon/patches.h): patient ids (StartSession,
 * CheckPatch, History), patch names (SelectPatch, CheckPatch), the
 * SetParameters a{sv} keys and variants, the parameter check before ARM,
 * and the cooldown / test-spot decision (CheckPatch, SelectPatch).
 *
 * The input is a small program: each step is one opcode byte and its
 * operands.  Every decision is checked against an independent model of the
 * rule written here, so the fuzzer finds wrong answers, not only crashes.
 *
 * The handlers that read these arguments from sd-bus messages
 * (daemon/bus-*.c) and their dispatch are fuzzed in-process, on a whole
 * daemon, by tests/fuzz/fuzz_dbus_dispatch.c.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz-input.h"
#include "patches.h"
#include "rules.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A string of up to 255 bytes (length byte first), NUL-terminated. */
static void take_string(struct input *in, char *buf, size_t size)
{
	size_t len = take_u8(in), i;

	for (i = 0; i < len && i + 1 < size; i++)
		buf[i] = (char)take_u8(in);
	buf[i] = '\0';
}

static void must(bool ok)
{
	if (!ok)
		abort();
}

/* A rejection always explains itself in a terminated, non-empty message. */
static void check_message(int r, const char *err, size_t size)
{
	if (r < 0)
		must(memchr(err, 0, size) != NULL && err[0] != '\0');
}

static bool model_patient_id_ok(const char *id)
{
	size_t n = strlen(id);

	if (n < 1 || n > SMPL_PATIENT_ID_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = id[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

static bool model_patch_id_ok(const char *id)
{
	size_t n = strlen(id);

	if (n < 1 || n > SMPL_PATCH_ID_MAX)
		return false;
	if (!((id[0] >= 'a' && id[0] <= 'z') || (id[0] >= '0' && id[0] <= '9')))
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = id[i];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
			return false;
	}
	return true;
}

static void step_patient_id(struct input *in)
{
	char id[256], err[SMPL_REASON_MAX];
	int r;

	take_string(in, id, sizeof(id));
	r = smpl_patient_id_check(id, err, sizeof(err));
	must((r == 0) == model_patient_id_ok(id));
	must(r == 0 || r == -EINVAL);
	check_message(r, err, sizeof(err));
}

static void step_patch_add(struct input *in, struct smpl_patches *patches)
{
	char id[256], label[256], err[SMPL_REASON_MAX];
	size_t before = patches->count;
	int r;

	take_string(in, id, sizeof(id));
	take_string(in, label, sizeof(label));
	r = smpl_patches_add(patches, id, label, err, sizeof(err));
	check_message(r, err, sizeof(err));
	if (r == 0) {
		must(model_patch_id_ok(id));
		must(patches->count == before + 1);
		must(smpl_patches_find(patches, id) != NULL);
	} else {
		must(patches->count == before);
	}
	must(smpl_patch_id_valid(id) == model_patch_id_ok(id));
}

static void step_patch_name(struct input *in, const struct smpl_patches *patches)
{
	char name[256], err[SMPL_REASON_MAX];
	bool listed = false;
	int r;

	take_string(in, name, sizeof(name));
	for (size_t i = 0; i < patches->count; i++)
		if (strcmp(patches->list[i].id, name) == 0)
			listed = true;
	r = smpl_patch_name_check(patches, name, err, sizeof(err));
	must((r == 0) == listed);
	check_message(r, err, sizeof(err));
}

static uint32_t field_value(const struct smpl_params_n *p, enum smpl_param_field f)
{
	switch (f) {
	case SMPL_PF_WAVELENGTH: return p->wavelength_nm;
	case SMPL_PF_FLUENCE: return p->fluence_mj_cm2;
	case SMPL_PF_SPOT: return p->spot_um;
	case SMPL_PF_PULSE: return p->pulse_ps;
	case SMPL_PF_RATE: return p->rate_mhz;
	default: abort();
	}
}

static void step_set_field(struct input *in, struct smpl_params_n *p)
{
	static const char types[] = "ynqiuxtsbdvo";
	char key[256], err[SMPL_REASON_MAX];
	uint8_t which = take_u8(in);
	char type = types[take_u8(in) % (sizeof(types) - 1)];
	int64_t value = (int64_t)take_uint(in, 8);
	struct smpl_params_n before = *p;
	int field = -1, r;

	if (which < SMPL_PF__COUNT * 8) {
		field = which % SMPL_PF__COUNT;
		strcpy(key, smpl_param_field_name((enum smpl_param_field)field));
	} else {
		take_string(in, key, sizeof(key));
		for (int f = 0; f < SMPL_PF__COUNT; f++)
			if (strcmp(key, smpl_param_field_name((enum smpl_param_field)f)) == 0)
				field = f;
	}
	if (which & 1)		/* small values are the interesting ones */
		value = (int64_t)(int32_t)value;
	r = smpl_params_set_field(p, key, type, value, err, sizeof(err));
	check_message(r, err, sizeof(err));
	if (field < 0 || !strchr("ynqiuxt", type)) {
		must(r == -EINVAL);
	} else if (value < 0) {
		must(r == -ERANGE);
	}
	if (r == 0)
		must(field_value(p, (enum smpl_param_field)field) == (uint64_t)value);
	else
		must(memcmp(&before, p, sizeof(before)) == 0);
}

static bool in(uint64_t v, uint64_t lo, uint64_t hi)
{
	return v >= lo && v <= hi;
}

/* The parameters may be sent to the unit only if every range holds. */
static bool model_params_ok(const struct smpl_protocol *pr, const struct smpl_info_n *u,
			    const struct smpl_params_n *p)
{
	bool wl = false, pulse;

	for (unsigned int i = 0; i < pr->n_wavelengths; i++)
		wl |= pr->wavelengths_nm[i] == p->wavelength_nm;
	if (u)
		wl &= u->wavelength_nm[0] == p->wavelength_nm ||
		      u->wavelength_nm[1] == p->wavelength_nm;
	if (!u)
		pulse = in(p->pulse_ps, pr->qswitch_pulse_min_ps, pr->qswitch_pulse_max_ps) ||
			in(p->pulse_ps, pr->pico_pulse_min_ps, pr->pico_pulse_max_ps);
	else if (u->flags & SMPL_INFO_PICOSECOND)
		pulse = in(p->pulse_ps, pr->pico_pulse_min_ps, pr->pico_pulse_max_ps);
	else
		pulse = in(p->pulse_ps, pr->qswitch_pulse_min_ps, pr->qswitch_pulse_max_ps);
	if (u)
		pulse &= in(p->pulse_ps, u->min_pulse_ps, u->max_pulse_ps);
	return p->wavelength_nm && p->fluence_mj_cm2 && p->spot_um && p->pulse_ps &&
	       p->rate_mhz && wl && pulse &&
	       in(p->fluence_mj_cm2, pr->fluence_min_mj_cm2, pr->fluence_max_mj_cm2) &&
	       (!u || in(p->fluence_mj_cm2, 1, u->max_fluence_mj_cm2)) &&
	       in(p->spot_um, pr->spot_min_um, pr->spot_max_um) &&
	       (!u || in(p->spot_um, u->min_spot_um, u->max_spot_um)) &&
	       in(p->rate_mhz, 1, pr->rate_max_mhz) &&
	       (!u || in(p->rate_mhz, 1, u->max_rate_mhz));
}

static void step_params_check(struct input *in, const struct smpl_params_n *p)
{
	struct smpl_protocol proto;
	struct smpl_info_n unit;
	char err[SMPL_REASON_MAX];
	uint8_t mode = take_u8(in);
	int r;

	smpl_protocol_default(&proto);
	memset(&unit, 0, sizeof(unit));
	if (mode & 2) {		/* a unit reporting arbitrary limits */
		unit.flags = take_u8(in);
		unit.wavelength_nm[0] = (uint16_t)take_uint(in, 2);
		unit.wavelength_nm[1] = (uint16_t)take_uint(in, 2);
		unit.max_fluence_mj_cm2 = (uint32_t)take_uint(in, 4);
		unit.min_spot_um = (uint16_t)take_uint(in, 2);
		unit.max_spot_um = (uint16_t)take_uint(in, 2);
		unit.min_pulse_ps = (uint32_t)take_uint(in, 4);
		unit.max_pulse_ps = (uint32_t)take_uint(in, 4);
		unit.max_rate_mhz = (uint32_t)take_uint(in, 4);
	}
	r = smpl_params_check(&proto, (mode & 2) ? &unit : NULL, p, err, sizeof(err));
	check_message(r, err, sizeof(err));
	must((r == 0) == model_params_ok(&proto, (mode & 2) ? &unit : NULL, p));
}

static void step_check_patch(struct input *in)
{
	struct smpl_rules_cfg cfg;
	struct smpl_patch_facts facts;
	struct smpl_eligibility out;
	int64_t now;
	__int128 cooldown_until, review_until;
	bool cooldown_ok, review_ok, follow_up_ok, held_or_clear;
	uint8_t clinical;
	int r;

	smpl_rules_default(&cfg);
	memset(&facts, 0, sizeof(facts));
	cfg.cooldown_days = (uint32_t)take_uint(in, 4);
	cfg.test_spot = take_u8(in) & 1;
	cfg.test_spot_pulses = (uint32_t)take_uint(in, 2);
	cfg.test_spot_review_days = (uint32_t)take_uint(in, 4);
	facts.patch_emitted = take_u8(in) & 1;
	facts.patch_last_emission_ms = (int64_t)take_uint(in, 8);
	facts.patient_treatments = (uint32_t)take_uint(in, 4);
	facts.patient_first_emission_ms = (int64_t)take_uint(in, 8);
	now = (int64_t)take_uint(in, 8);
	/* The clinical record's facts (issue 16): a hold, the last pigment finding. */
	clinical = take_u8(in);
	cfg.require_follow_up = clinical & 1;
	facts.on_hold = clinical & 2;
	facts.pigment_assessed = clinical & 4;
	facts.pigment_pct = take_u8(in) % 101;
	facts.pigment_ms = (int64_t)take_uint(in, 8);

	r = smpl_rules_check_patch(&cfg, &facts, "crown", now, &out);
	must(memchr(out.reason, 0, sizeof(out.reason)) != NULL);
	if (cfg.cooldown_days < SMPL_COOLDOWN_DAYS_MIN) {
		must(r == -EINVAL && !out.eligible);
		return;
	}
	must(r == 0);
	/*
	 * Exact arithmetic: no overflow may make a date come early.  Dates past
	 * INT64_MAX ms (year 292 million) are INT64_MAX: the last instant.
	 */
	cooldown_until = (__int128)facts.patch_last_emission_ms +
			 (__int128)cfg.cooldown_days * SMPL_DAY_MS;
	review_until = (__int128)facts.patient_first_emission_ms +
		       (__int128)cfg.test_spot_review_days * SMPL_DAY_MS;
	if (cooldown_until > INT64_MAX)
		cooldown_until = INT64_MAX;
	if (review_until > INT64_MAX)
		review_until = INT64_MAX;
	cooldown_ok = !facts.patch_emitted || now >= cooldown_until;
	review_ok = !(cfg.test_spot && facts.patient_treatments > 0) || now >= review_until;
	/* A hold, or a last finding of 0%, refuses; a treated patch waits for pigment found after it. */
	held_or_clear = facts.on_hold || (facts.pigment_assessed && facts.pigment_pct == 0);
	follow_up_ok = !facts.patch_emitted || !cfg.require_follow_up ||
		       (facts.pigment_assessed && facts.pigment_pct > 0 &&
			facts.pigment_ms > facts.patch_last_emission_ms);
	must(out.eligible == (!held_or_clear && cooldown_ok && review_ok && follow_up_ok));
	if (held_or_clear)
		must(out.refusal == (facts.on_hold ? SMPL_REFUSAL_HOLD : SMPL_REFUSAL_CLEAR));
	/* Waiting for a visit or a review has no date (0); the cooldown and the review have one. */
	if (!out.eligible && (held_or_clear || (cooldown_ok && review_ok)))
		must(out.next_eligible_ms == 0);
	else if (!out.eligible)
		must(out.next_eligible_ms > now);
	must(out.test_spot == (cfg.test_spot && facts.patient_treatments == 0));
	if (out.test_spot)
		must(out.max_pulses == cfg.test_spot_pulses);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct input in = { data, size };
	struct smpl_patches patches;
	struct smpl_params_n params;

	smpl_patches_init(&patches);
	must(patches.count == SMPL_PATCHES_BUILTIN);
	memset(&params, 0, sizeof(params));
	for (int steps = 0; in.n > 0 && steps < 64; steps++) {
		switch (take_u8(&in) % 6) {
		case 0: step_patient_id(&in); break;
		case 1: step_patch_add(&in, &patches); break;
		case 2: step_patch_name(&in, &patches); break;
		case 3: step_set_field(&in, &params); break;
		case 4: step_params_check(&in, &params); break;
		case 5: step_check_patch(&in); break;
		}
	}
	return 0;
}
