/* SPDX-License-Identifier: MIT */
/*
 * Treatment rules (daemon/rules.c, daemon/patches.c, daemon/clinical.c):
 * cooldown boundaries, a lengthened cooldown, the test-spot rule, the
 * clinical record's rules (follow-up, clear, hold; issue 16), and every
 * D-Bus argument error.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "clinical.h"
#include "patches.h"
#include "rules.h"
#include "text.h"

#define DAY		SMPL_DAY_MS
#define SEC		1000LL
#define LAST		1767261600000LL		/* 2026-01-01 10:00:00 UTC */

static struct smpl_rules_cfg rules_default(void)
{
	struct smpl_rules_cfg r;

	smpl_rules_default(&r);
	return r;
}

/*
 * Treated at @when, and a follow-up two weeks later found pigment remaining:
 * the cooldown alone decides (the follow-up rule has its own tests).
 */
static struct smpl_patch_facts treated_at(int64_t when)
{
	struct smpl_patch_facts f = {
		.patch_emitted = true,
		.patch_last_emission_ms = when,
		.patient_treatments = 1,
		.patient_first_emission_ms = when,
		.pigment_assessed = true,
		.pigment_pct = 40,
		/* two weeks later, or the end of time (test_far_future_does_not_overflow) */
		.pigment_ms = when > INT64_MAX - 14 * SMPL_DAY_MS ? INT64_MAX :
			      when + 14 * SMPL_DAY_MS,
	};
	return f;
}

static void check(const struct smpl_rules_cfg *r, const struct smpl_patch_facts *f,
		  int64_t now, struct smpl_eligibility *e)
{
	assert_int_equal(smpl_rules_check_patch(r, f, "crown", now, e), 0);
	assert_true(e->reason[0] != '\0');
}

/* ---- cooldown --------------------------------------------------------------------- */

static void test_never_treated_is_eligible(void **state)
{
	struct smpl_rules_cfg r = rules_default();
	struct smpl_patch_facts f = { 0 };
	struct smpl_eligibility e;

	(void)state;
	check(&r, &f, LAST, &e);
	assert_true(e.eligible);
	assert_false(e.test_spot);
	assert_int_equal(e.max_pulses, 0);
	assert_int_equal(e.next_eligible_ms, LAST);
	assert_non_null(strstr(e.reason, "crown"));
}

static void test_cooldown_exactly_42_days(void **state)
{
	struct smpl_rules_cfg r = rules_default();
	struct smpl_patch_facts f = treated_at(LAST);
	struct smpl_eligibility e;

	(void)state;
	check(&r, &f, LAST + 42 * DAY, &e);
	assert_true(e.eligible);
	assert_int_equal(e.next_eligible_ms, LAST + 42 * DAY);
}

static void test_cooldown_one_second_before(void **state)
{
	struct smpl_rules_cfg r = rules_default();
	struct smpl_patch_facts f = treated_at(LAST);
	struct smpl_eligibility e;

	(void)state;
	check(&r, &f, LAST + 42 * DAY - SEC, &e);
	assert_false(e.eligible);
	assert_int_equal(e.next_eligible_ms, LAST + 42 * DAY);
	assert_non_null(strstr(e.reason, "2026-02-12 10:00:00 UTC"));
	assert_non_null(strstr(e.reason, "crown"));
	/* one millisecond before as well */
	check(&r, &f, LAST + 42 * DAY - 1, &e);
	assert_false(e.eligible);
}

static void test_cooldown_same_day_and_clock_before_record(void **state)
{
	struct smpl_rules_cfg r = rules_default();
	struct smpl_patch_facts f = treated_at(LAST);
	struct smpl_eligibility e;

	(void)state;
	check(&r, &f, LAST, &e);
	assert_false(e.eligible);
	/* a clock earlier than the record never makes a patch eligible */
	check(&r, &f, LAST - 365 * DAY, &e);
	assert_false(e.eligible);
}

static void test_lengthened_cooldown(void **state)
{
	struct smpl_rules_cfg r = rules_default();
	struct smpl_patch_facts f = treated_at(LAST);
	struct smpl_eligibility e;

	(void)state;
	r.cooldown_days = 56;
	check(&r, &f, LAST + 42 * DAY, &e);
	assert_false(e.eligible);
	assert_int_equal(e.next_eligible_ms, LAST + 56 * DAY);
	assert_non_null(strstr(e.reason, "56-day"));
	assert_non_null(strstr(e.reason, "2026-02-26 10:00:00 UTC"));
	check(&r, &f, LAST + 56 * DAY - SEC, &e);
	assert_false(e.eligible);
	check(&r, &f, LAST + 56 * DAY, &e);
	assert_true(e.eligible);
}

static void test_shortened_cooldown_refused(void **state)
{
	struct smpl_rules_cfg r = rules_default();
	struct smpl_patch_facts f = treated_at(LAST);
	struct smpl_eligibility e;

	(void)state;
	r.cooldown_days = 41;
	assert_int_equal(smpl_rules_check_patch(&r, &f, "crown", LAST + 41 * DAY, &e), -EINVAL);
	assert_false(e.eligible);
	r.cooldown_days = 0;
	assert_int_equal(smpl_rules_check_patch(&r, &f, "crown", LAST + 100 * DAY, &e), -EINVAL);
	assert_false(e.eligible);
	assert_int_equal(smpl_rules_check_patch(NULL, &f, "crown", LAST, &e), -EINVAL);
	assert_false(e.eligible);
	assert_int_equal(smpl_rules_check_patch(&r, NULL, "crown", LAST, &e), -EINVAL);
	assert_false(e.eligible);
	assert_int_equal(smpl_rules_check_patch(&r, &f, "crown", LAST, NULL), -EINVAL);
}

/*
 * A treatment left OPEN by a crash: the store reports its arming time as the
 * last emission (store_last_emission), so the cooldown runs from arming.
 */
static void test_unknown_outcome_counts_from_arming(void **state)
{
	struct smpl_rules_cfg r = rules_default();
	const int64_t armed = LAST;
	struct smpl_patch_facts f = treated_at(armed);
	struct smpl_eligibility e;

	(void)state;
	check(&r, &f, armed + 42 * DAY - SEC, &e);
	assert_false(e.eligible);
	check(&r, &f, armed + 42 * DAY, &e);
	assert_true(e.eligible);
}

static void test_far_future_does_not_overflow(void **state)
{
	struct smpl_rules_cfg r = rules_default();
	struct smpl_patch_facts f = treated_at(INT64_MAX - DAY);
	struct smpl_eligibility e;

	(void)state;
	r.cooldown_days = 3650;
	check(&r, &f, INT64_MAX - 1, &e);
	assert_false(e.eligible);
	assert_int_equal(e.next_eligible_ms, INT64_MAX);
}

/* ---- test spot ---------------------------------------------------------------------- */

static void test_spot_first_treatment_limited(void **state)
{
	struct smpl_rules_cfg r = rules_default();
	struct smpl_patch_facts f = { 0 };
	struct smpl_eligibility e;

	(void)state;
	r.test_spot = true;
	r.test_spot_pulses = 12;
	check(&r, &f, LAST, &e);
	assert_true(e.eligible);
	assert_true(e.test_spot);
	assert_int_equal(e.max_pulses, 12);
	assert_non_null(strstr(e.reason, "test spot"));
}

static void test_spot_review_delay(void **state)
{
	struct smpl_rules_cfg r = rules_default();
	struct smpl_patch_facts f = { 0 };
	struct smpl_eligibility e;

	(void)state;
	r.test_spot = true;
	r.test_spot_review_days = 14;
	/* the test spot was on another patch */
	f.patient_treatments = 1;
	f.patient_first_emission_ms = LAST;
	check(&r, &f, LAST + 14 * DAY - SEC, &e);
	assert_false(e.eligible);
	assert_int_equal(e.next_eligible_ms, LAST + 14 * DAY);
	assert_non_null(strstr(e.reason, "2026-01-15 10:00:00 UTC"));
	assert_non_null(strstr(e.reason, "review"));
	check(&r, &f, LAST + 14 * DAY, &e);
	assert_true(e.eligible);
	assert_false(e.test_spot);
	assert_int_equal(e.max_pulses, 0);
}

static void test_spot_patch_keeps_its_cooldown(void **state)
{
	struct smpl_rules_cfg r = rules_default();
	struct smpl_patch_facts f = treated_at(LAST);	/* the test spot's own patch */
	struct smpl_eligibility e;

	(void)state;
	r.test_spot = true;
	check(&r, &f, LAST + 14 * DAY, &e);
	assert_false(e.eligible);
	assert_int_equal(e.next_eligible_ms, LAST + 42 * DAY);
	assert_non_null(strstr(e.reason, "cooldown"));
	check(&r, &f, LAST + 42 * DAY, &e);
	assert_true(e.eligible);
}

static void test_spot_review_longer_than_cooldown(void **state)
{
	struct smpl_rules_cfg r = rules_default();
	struct smpl_patch_facts f = treated_at(LAST);
	struct smpl_eligibility e;

	(void)state;
	r.test_spot = true;
	r.test_spot_review_days = 60;
	check(&r, &f, LAST + 50 * DAY, &e);
	assert_false(e.eligible);
	assert_int_equal(e.next_eligible_ms, LAST + 60 * DAY);
	assert_non_null(strstr(e.reason, "review"));
}

static void test_spot_off_ignores_patient_history(void **state)
{
	struct smpl_rules_cfg r = rules_default();
	struct smpl_patch_facts f = { .patient_treatments = 1,
				      .patient_first_emission_ms = LAST };
	struct smpl_eligibility e;

	(void)state;
	check(&r, &f, LAST + SEC, &e);
	assert_true(e.eligible);
	assert_false(e.test_spot);
}

static void test_format_utc(void **state)
{
	char buf[32];

	(void)state;
	smpl_format_utc(0, buf, sizeof(buf));
	assert_string_equal(buf, "1970-01-01 00:00:00 UTC");
	smpl_format_utc(-1, buf, sizeof(buf));
	assert_string_equal(buf, "1969-12-31 23:59:59 UTC");
	smpl_format_utc(LAST + 999, buf, sizeof(buf));
	assert_string_equal(buf, "2026-01-01 10:00:00 UTC");
}

/* ---- patient ids ------------------------------------------------------------------ */

static void test_patient_ids(void **state)
{
	char err[128], id[80];

	(void)state;
	assert_int_equal(smpl_patient_id_check("P-0001", err, sizeof(err)), 0);
	assert_int_equal(smpl_patient_id_check("a.b_c-D9", err, sizeof(err)), 0);
	memset(id, 'x', 64);
	id[64] = '\0';
	assert_int_equal(smpl_patient_id_check(id, err, sizeof(err)), 0);
	id[64] = 'x';
	id[65] = '\0';
	assert_int_equal(smpl_patient_id_check(id, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "patient"));
	assert_non_null(strstr(err, "64"));

	assert_int_equal(smpl_patient_id_check("", err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "patient"));
	assert_int_equal(smpl_patient_id_check(NULL, err, sizeof(err)), -EINVAL);

	static const char *const bad[] = {
		"a b", "a/b", "../x", "x;drop", "\xc3\xa9", "tab\t", "new\nline", "a*",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		assert_int_equal(smpl_patient_id_check(bad[i], err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, "patient"));
	}
	assert_int_equal(smpl_patient_id_check("a b", NULL, 0), -EINVAL);
}

/* ---- patches -------------------------------------------------------------------- */

static void test_builtin_patches(void **state)
{
	static const char *const ids[] = {
		"frontal-hairline", "mid-scalp", "crown", "left-temporal",
		"right-temporal", "left-parietal", "right-parietal", "occipital",
	};
	struct smpl_patches p;
	char err[128];

	(void)state;
	smpl_patches_init(&p);
	assert_int_equal(p.count, 8);
	for (size_t i = 0; i < 8; i++) {
		const struct smpl_patch *e = smpl_patches_find(&p, ids[i]);

		assert_non_null(e);
		assert_true(e->builtin);
		assert_true(e->label[0] != '\0');
		assert_string_equal(p.list[i].id, ids[i]);
		assert_int_equal(smpl_patch_name_check(&p, ids[i], err, sizeof(err)), 0);
	}
	assert_null(smpl_patches_find(&p, "Crown"));
	assert_null(smpl_patches_find(&p, NULL));
}

static void test_clinic_patches(void **state)
{
	struct smpl_patches p;
	char err[128], id[40];

	(void)state;
	smpl_patches_init(&p);
	assert_int_equal(smpl_patches_add(&p, "scar-left", "Scar, left side", err, sizeof(err)), 0);
	assert_non_null(smpl_patches_find(&p, "scar-left"));
	assert_false(smpl_patches_find(&p, "scar-left")->builtin);
	assert_int_equal(smpl_patch_name_check(&p, "scar-left", err, sizeof(err)), 0);

	assert_int_equal(smpl_patches_add(&p, "crown", "Again", err, sizeof(err)), -EEXIST);
	assert_non_null(strstr(err, "crown"));
	assert_int_equal(smpl_patches_add(&p, "scar-left", "Again", err, sizeof(err)), -EEXIST);

	static const char *const bad_ids[] = { "", "Crown", "-lead", "a b", "a_b", "é" };
	for (size_t i = 0; i < sizeof(bad_ids) / sizeof(bad_ids[0]); i++)
		assert_int_equal(smpl_patches_add(&p, bad_ids[i], "Label", err, sizeof(err)),
				 -EINVAL);
	assert_int_equal(smpl_patches_add(&p, NULL, "Label", err, sizeof(err)), -EINVAL);
	memset(id, 'a', 33);
	id[33] = '\0';
	assert_int_equal(smpl_patches_add(&p, id, "Label", err, sizeof(err)), -EINVAL);
	id[32] = '\0';
	assert_int_equal(smpl_patches_add(&p, id, "Label", err, sizeof(err)), 0);

	assert_int_equal(smpl_patches_add(&p, "x1", "", err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "label"));
	assert_int_equal(smpl_patches_add(&p, "x1", "bad\x01label", err, sizeof(err)), -EINVAL);
	assert_int_equal(smpl_patches_add(&p, "x1", NULL, err, sizeof(err)), -EINVAL);
}

static void test_patch_list_full(void **state)
{
	struct smpl_patches p;
	char err[128], id[16];
	size_t added = 0;

	(void)state;
	smpl_patches_init(&p);
	while (p.count < SMPL_PATCHES_MAX) {
		snprintf(id, sizeof(id), "extra-%zu", added++);
		assert_int_equal(smpl_patches_add(&p, id, "Extra", err, sizeof(err)), 0);
	}
	assert_int_equal(smpl_patches_add(&p, "one-more", "Extra", err, sizeof(err)), -ENOSPC);
}

static void test_patch_name_errors(void **state)
{
	struct smpl_patches p;
	char err[160];

	(void)state;
	smpl_patches_init(&p);
	assert_int_equal(smpl_patch_name_check(&p, "nape", err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "patch"));
	assert_non_null(strstr(err, "nape"));
	assert_int_equal(smpl_patch_name_check(&p, "Bad Name!", err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "patch"));
	assert_int_equal(smpl_patch_name_check(&p, NULL, err, sizeof(err)), -EINVAL);
}

/* ---- parameters ------------------------------------------------------------------ */

static struct smpl_params_n good_params(void)
{
	struct smpl_params_n p = {
		.wavelength_nm = 1064, .spot_um = 3000, .fluence_mj_cm2 = 4000,
		.pulse_ps = 10000, .rate_mhz = 5000,
	};
	return p;
}

static struct smpl_info_n qswitch_unit(void)
{
	struct smpl_info_n u = {
		.wavelength_nm = { 1064, 532 }, .max_fluence_mj_cm2 = 8000,
		.min_spot_um = 2500, .max_spot_um = 5000,
		.min_pulse_ps = 6000, .max_pulse_ps = 20000, .max_rate_mhz = 8000,
	};
	return u;
}

static void test_set_field_each_key_and_type(void **state)
{
	static const char types[] = "ynqiuxt";
	struct smpl_params_n p = { 0 };
	char err[160];

	(void)state;
	for (size_t t = 0; t < strlen(types); t++) {
		memset(&p, 0, sizeof(p));
		assert_int_equal(smpl_params_set_field(&p, "wavelength_nm", types[t], 1064, err, sizeof(err)), 0);
		assert_int_equal(smpl_params_set_field(&p, "fluence_mj_cm2", types[t], 100, err, sizeof(err)), 0);
		assert_int_equal(smpl_params_set_field(&p, "spot_um", types[t], 30, err, sizeof(err)), 0);
		assert_int_equal(smpl_params_set_field(&p, "pulse_ps", types[t], 40, err, sizeof(err)), 0);
		assert_int_equal(smpl_params_set_field(&p, "rate_mhz", types[t], 50, err, sizeof(err)), 0);
		assert_int_equal(p.wavelength_nm, 1064);
		assert_int_equal(p.fluence_mj_cm2, 100);
		assert_int_equal(p.spot_um, 30);
		assert_int_equal(p.pulse_ps, 40);
		assert_int_equal(p.rate_mhz, 50);
	}
	for (int f = 0; f < SMPL_PF__COUNT; f++)
		assert_int_equal(smpl_params_set_field(&p, smpl_param_field_name((enum smpl_param_field)f),
						       'u', 7, err, sizeof(err)), 0);
	assert_string_equal(smpl_param_field_name(SMPL_PF__COUNT), "?");
}

static void test_set_field_errors(void **state)
{
	struct smpl_params_n p = good_params(), before = p;
	char err[160];

	(void)state;
	assert_int_equal(smpl_params_set_field(&p, "energy_uj", 'u', 1, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "energy_uj"));
	assert_int_equal(smpl_params_set_field(&p, NULL, 'u', 1, err, sizeof(err)), -EINVAL);

	assert_int_equal(smpl_params_set_field(&p, "spot_um", 's', 1, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "spot_um"));
	assert_int_equal(smpl_params_set_field(&p, "spot_um", 'd', 1, err, sizeof(err)), -EINVAL);
	assert_int_equal(smpl_params_set_field(&p, "spot_um", 'b', 1, err, sizeof(err)), -EINVAL);
	assert_int_equal(smpl_params_set_field(&p, "spot_um", '\0', 1, err, sizeof(err)), -EINVAL);

	assert_int_equal(smpl_params_set_field(&p, "fluence_mj_cm2", 'i', -1, err, sizeof(err)), -ERANGE);
	assert_non_null(strstr(err, "fluence_mj_cm2"));
	assert_int_equal(smpl_params_set_field(&p, "wavelength_nm", 'u', 65536, err, sizeof(err)), -ERANGE);
	assert_non_null(strstr(err, "wavelength_nm"));
	assert_int_equal(smpl_params_set_field(&p, "spot_um", 'u', 65536, err, sizeof(err)), -ERANGE);
	assert_int_equal(smpl_params_set_field(&p, "pulse_ps", 'x', 4294967296LL, err, sizeof(err)), -ERANGE);
	assert_int_equal(smpl_params_set_field(&p, "rate_mhz", 't', INT64_MAX, err, sizeof(err)), -ERANGE);
	/* a refused value changes nothing */
	assert_memory_equal(&p, &before, sizeof(p));
	/* the widest values that fit */
	assert_int_equal(smpl_params_set_field(&p, "spot_um", 'u', 65535, err, sizeof(err)), 0);
	assert_int_equal(smpl_params_set_field(&p, "rate_mhz", 'u', UINT32_MAX, err, sizeof(err)), 0);
}

static void params_expect(const struct smpl_protocol *pr, const struct smpl_info_n *u,
			 struct smpl_params_n p, int want, const char *field)
{
	char err[200] = "";
	int r = smpl_params_check(pr, u, &p, err, sizeof(err));

	if (r != want)
		fail_msg("wanted %d, got %d: %s", want, r, err);
	if (field)
		assert_non_null(strstr(err, field));
}

static void test_params_inside_protocol(void **state)
{
	struct smpl_protocol pr;
	struct smpl_info_n u = qswitch_unit();
	struct smpl_params_n p = good_params();

	(void)state;
	smpl_protocol_default(&pr);
	params_expect(&pr, NULL, p, 0, NULL);
	params_expect(&pr, &u, p, 0, NULL);
	/* protocol boundaries are inclusive */
	p.fluence_mj_cm2 = 1000; p.spot_um = 2000; p.pulse_ps = 5000; p.rate_mhz = 1;
	params_expect(&pr, NULL, p, 0, NULL);
	p.fluence_mj_cm2 = 10000; p.spot_um = 6000; p.pulse_ps = 25000; p.rate_mhz = 10000;
	params_expect(&pr, NULL, p, 0, NULL);
	p.pulse_ps = 300;
	params_expect(&pr, NULL, p, 0, NULL);
	p.pulse_ps = 750;
	params_expect(&pr, NULL, p, 0, NULL);
}

static void test_params_unset_fields(void **state)
{
	struct smpl_protocol pr;
	struct smpl_params_n p;

	(void)state;
	smpl_protocol_default(&pr);
	p = good_params(); p.wavelength_nm = 0;
	params_expect(&pr, NULL, p, -EINVAL, "wavelength_nm is not set");
	p = good_params(); p.fluence_mj_cm2 = 0;
	params_expect(&pr, NULL, p, -EINVAL, "fluence_mj_cm2 is not set");
	p = good_params(); p.spot_um = 0;
	params_expect(&pr, NULL, p, -EINVAL, "spot_um is not set");
	p = good_params(); p.pulse_ps = 0;
	params_expect(&pr, NULL, p, -EINVAL, "pulse_ps is not set");
	p = good_params(); p.rate_mhz = 0;
	params_expect(&pr, NULL, p, -EINVAL, "rate_mhz is not set");
	assert_int_equal(smpl_params_check(NULL, NULL, &p, NULL, 0), -EINVAL);
	assert_int_equal(smpl_params_check(&pr, NULL, NULL, NULL, 0), -EINVAL);
}

static void test_params_outside_protocol(void **state)
{
	struct smpl_protocol pr;
	struct smpl_params_n p;

	(void)state;
	smpl_protocol_default(&pr);
	p = good_params(); p.wavelength_nm = 532;
	params_expect(&pr, NULL, p, -ERANGE, "wavelength_nm");
	p = good_params(); p.fluence_mj_cm2 = 999;
	params_expect(&pr, NULL, p, -ERANGE, "fluence_mj_cm2 = 999");
	p = good_params(); p.fluence_mj_cm2 = 10001;
	params_expect(&pr, NULL, p, -ERANGE, "fluence_mj_cm2 = 10001");
	p = good_params(); p.spot_um = 1999;
	params_expect(&pr, NULL, p, -ERANGE, "spot_um = 1999");
	p = good_params(); p.spot_um = 6001;
	params_expect(&pr, NULL, p, -ERANGE, "spot_um = 6001");
	p = good_params(); p.pulse_ps = 4999;
	params_expect(&pr, NULL, p, -ERANGE, "pulse_ps = 4999");
	p = good_params(); p.pulse_ps = 25001;
	params_expect(&pr, NULL, p, -ERANGE, "pulse_ps = 25001");
	p = good_params(); p.pulse_ps = 299;
	params_expect(&pr, NULL, p, -ERANGE, "pulse_ps = 299");
	p = good_params(); p.pulse_ps = 751;
	params_expect(&pr, NULL, p, -ERANGE, "pulse_ps = 751");
	p = good_params(); p.rate_mhz = 10001;
	params_expect(&pr, NULL, p, -ERANGE, "rate_mhz = 10001");
	/* a clinic that adds 532 nm */
	pr.wavelengths_nm[1] = 532;
	pr.n_wavelengths = 2;
	p = good_params(); p.wavelength_nm = 532;
	params_expect(&pr, NULL, p, 0, NULL);
}

static void test_params_outside_unit(void **state)
{
	struct smpl_protocol pr;
	struct smpl_info_n u = qswitch_unit();
	struct smpl_params_n p;

	(void)state;
	smpl_protocol_default(&pr);
	pr.wavelengths_nm[1] = 755;	/* in the protocol, not on this unit */
	pr.n_wavelengths = 2;
	p = good_params(); p.wavelength_nm = 755;
	params_expect(&pr, &u, p, -ERANGE, "wavelength_nm = 755 is not a wavelength of this unit");
	p = good_params(); p.fluence_mj_cm2 = 8001;
	params_expect(&pr, &u, p, -ERANGE, "fluence_mj_cm2 = 8001 is outside this unit");
	p = good_params(); p.spot_um = 2499;
	params_expect(&pr, &u, p, -ERANGE, "spot_um = 2499 is outside this unit");
	p = good_params(); p.spot_um = 5001;
	params_expect(&pr, &u, p, -ERANGE, "spot_um");
	p = good_params(); p.pulse_ps = 5999;
	params_expect(&pr, &u, p, -ERANGE, "pulse_ps = 5999 is outside this unit");
	p = good_params(); p.rate_mhz = 8001;
	params_expect(&pr, &u, p, -ERANGE, "rate_mhz = 8001 is outside this unit");
	/* picosecond widths on a Q-switched unit */
	p = good_params(); p.pulse_ps = 500;
	params_expect(&pr, &u, p, -ERANGE, "Q-switched");
}

static void test_params_picosecond_unit(void **state)
{
	struct smpl_protocol pr;
	struct smpl_info_n u = qswitch_unit();
	struct smpl_params_n p = good_params();

	(void)state;
	smpl_protocol_default(&pr);
	u.flags = SMPL_INFO_PICOSECOND;
	u.min_pulse_ps = 300;
	u.max_pulse_ps = 750;
	p.pulse_ps = 450;
	params_expect(&pr, &u, p, 0, NULL);
	p.pulse_ps = 10000;		/* nanosecond width on a picosecond unit */
	params_expect(&pr, &u, p, -ERANGE, "picosecond");
}

/* ---- echoing a caller's text (text.h) ----------------------------------- */

static void test_echo_cuts_between_characters(void **state)
{
	char buf[SMPL_ECHO_MAX], small[8];

	(void)state;
	/* 'é' straddling the cut: kept whole or not at all, never half */
	smpl_text_echo(buf, sizeof(buf), "aaaa\xc3\xa9tude", 5);
	assert_string_equal(buf, "aaaa\xc3\xa9...");
	smpl_text_echo(small, sizeof(small), "aaaaa\xe2\x82\xac" "bb", 100);
	assert_string_equal(small, "aaaaa");		/* the euro sign did not fit */
	assert_true(smpl_text_is_safe(small));
	smpl_text_echo(buf, sizeof(buf), NULL, 5);
	assert_string_equal(buf, "");
}

static void test_echo_escapes_controls_and_invalid_bytes(void **state)
{
	static const struct { const char *in, *out; } cases[] = {
		{ "x\x1b[31m", "x\\x1b[31m" },
		{ "a\nb\tc", "a\\x0ab\\x09c" },
		{ "\x7f\xc2\x9b", "\\x7f\\x9b" },		/* DEL, C1 CSI */
		{ "\xe2\x80\xae", "\\u202e" },		/* right-to-left override */
		{ "\xff\xc3", "\\xff\\xc3" },		/* invalid, truncated */
		{ "\xc0\xaf", "\\xc0\\xaf" },		/* overlong '/' */
		{ "\xed\xa0\x80", "\\xed\\xa0\\x80" },	/* a surrogate */
		{ "ok \xf0\x9f\x98\x80", "ok \xf0\x9f\x98\x80" },
	};
	char buf[SMPL_ECHO_MAX];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		smpl_text_echo(buf, sizeof(buf), cases[i].in, SMPL_ECHO_CHARS);
		assert_string_equal(buf, cases[i].out);
		assert_true(smpl_text_is_safe(buf));
		assert_int_equal(smpl_text_is_safe(cases[i].in), i == 7);
	}
}

/* Every byte string of up to 3 bytes: the echo is always safe UTF-8. */
static void test_echo_is_always_safe(void **state)
{
	char in[4] = { 0 }, buf[SMPL_ECHO_MAX];

	(void)state;
	for (unsigned int v = 1; v < 1u << 24; v += 7) {
		in[0] = (char)(v & 0xff);
		in[1] = (char)((v >> 8) & 0xff);
		in[2] = (char)(v >> 16);
		smpl_text_echo(buf, sizeof(buf), in, SMPL_ECHO_CHARS);
		if (!smpl_text_is_safe(buf))
			fail_msg("unsafe echo of %02x %02x %02x", (unsigned char)in[0],
				 (unsigned char)in[1], (unsigned char)in[2]);
	}
}

/* ---- the clinical record (issue 16) ------------------------------------------ */

static void test_follow_up_required_after_cooldown(void **state)
{
	struct smpl_rules_cfg r = rules_default();
	struct smpl_patch_facts f = treated_at(LAST);
	struct smpl_eligibility e;

	(void)state;
	assert_true(r.require_follow_up);
	f.pigment_assessed = false;		/* no follow-up at all */
	check(&r, &f, LAST + 50 * DAY, &e);
	assert_false(e.eligible);
	assert_int_equal(e.refusal, SMPL_REFUSAL_FOLLOW_UP);
	assert_int_equal(e.next_eligible_ms, 0);	/* a visit, not a date */
	assert_non_null(strstr(e.reason, "follow-up"));
	assert_non_null(strstr(e.reason, "crown"));

	/* A follow-up that found pigment, but before the last treatment: not enough. */
	f.pigment_assessed = true;
	f.pigment_pct = 30;
	f.pigment_ms = LAST - DAY;
	check(&r, &f, LAST + 50 * DAY, &e);
	assert_false(e.eligible);
	assert_int_equal(e.refusal, SMPL_REFUSAL_FOLLOW_UP);

	/* At the same millisecond as the emission: not after it. */
	f.pigment_ms = LAST;
	check(&r, &f, LAST + 50 * DAY, &e);
	assert_false(e.eligible);

	/* After it: eligible, and the reason says what the follow-up found. */
	f.pigment_ms = LAST + 1;
	check(&r, &f, LAST + 50 * DAY, &e);
	assert_true(e.eligible);
	assert_int_equal(e.refusal, SMPL_REFUSAL_NONE);
	assert_non_null(strstr(e.reason, "30% pigment remaining"));

	/* The clinic may turn the rule off: the cooldown alone then. */
	r.require_follow_up = false;
	f.pigment_assessed = false;
	check(&r, &f, LAST + 42 * DAY, &e);
	assert_true(e.eligible);
}

static void test_follow_up_never_shortens_the_cooldown(void **state)
{
	struct smpl_rules_cfg r = rules_default();
	struct smpl_patch_facts f = treated_at(LAST);
	struct smpl_eligibility e;

	(void)state;
	/* A follow-up found pigment after a week: the cooldown still runs. */
	f.pigment_ms = LAST + 7 * DAY;
	check(&r, &f, LAST + 42 * DAY - SEC, &e);
	assert_false(e.eligible);
	assert_int_equal(e.refusal, SMPL_REFUSAL_COOLDOWN);
	assert_int_equal(e.next_eligible_ms, LAST + 42 * DAY);

	/* No follow-up and still cooling down: the cooldown's date, the follow-up named. */
	f.pigment_assessed = false;
	check(&r, &f, LAST + DAY, &e);
	assert_false(e.eligible);
	assert_int_equal(e.refusal, SMPL_REFUSAL_COOLDOWN);
	assert_int_equal(e.next_eligible_ms, LAST + 42 * DAY);
	assert_non_null(strstr(e.reason, "eligible from"));
	assert_non_null(strstr(e.reason, "follow-up must find pigment"));
}

static void test_clear_patch_not_treated_again(void **state)
{
	struct smpl_rules_cfg r = rules_default();
	struct smpl_patch_facts f = treated_at(LAST);
	struct smpl_eligibility e;

	(void)state;
	f.pigment_pct = 0;			/* the follow-up found none left */
	check(&r, &f, LAST + 100 * DAY, &e);
	assert_false(e.eligible);
	assert_int_equal(e.refusal, SMPL_REFUSAL_CLEAR);
	assert_int_equal(e.next_eligible_ms, 0);
	assert_non_null(strstr(e.reason, "clear"));

	/* Without the follow-up rule, a clear patch is still clear. */
	r.require_follow_up = false;
	check(&r, &f, LAST + 100 * DAY, &e);
	assert_false(e.eligible);
	assert_int_equal(e.refusal, SMPL_REFUSAL_CLEAR);

	/* A newer follow-up found pigment (the store keeps the last finding). */
	r.require_follow_up = true;
	f.pigment_pct = 5;
	f.pigment_ms = LAST + 60 * DAY;
	check(&r, &f, LAST + 100 * DAY, &e);
	assert_true(e.eligible);

	/* A patch never treated but found clear is clear too. */
	f = (struct smpl_patch_facts){ .pigment_assessed = true, .pigment_pct = 0,
				       .pigment_ms = LAST };
	check(&r, &f, LAST + DAY, &e);
	assert_false(e.eligible);
	assert_int_equal(e.refusal, SMPL_REFUSAL_CLEAR);
}

static void test_hold_refuses_whatever_else(void **state)
{
	struct smpl_rules_cfg r = rules_default();
	struct smpl_patch_facts f = treated_at(LAST);
	struct smpl_eligibility e;

	(void)state;
	f.on_hold = true;
	f.hold_since_ms = LAST + 14 * DAY;
	snprintf(f.hold_events, sizeof(f.hold_events), "follicle-damage, blistering");
	check(&r, &f, LAST + 100 * DAY, &e);		/* long past the cooldown */
	assert_false(e.eligible);
	assert_int_equal(e.refusal, SMPL_REFUSAL_HOLD);
	assert_int_equal(e.next_eligible_ms, 0);
	assert_non_null(strstr(e.reason, "on hold since 2026-01-15 10:00:00 UTC"));
	assert_non_null(strstr(e.reason, "follicle-damage, blistering"));
	assert_non_null(strstr(e.reason, "review"));

	/* The hold before clear, and on a patch never treated too. */
	f.pigment_pct = 0;
	check(&r, &f, LAST + 100 * DAY, &e);
	assert_int_equal(e.refusal, SMPL_REFUSAL_HOLD);
	f = (struct smpl_patch_facts){ .on_hold = true, .hold_since_ms = LAST };
	check(&r, &f, LAST, &e);
	assert_false(e.eligible);
	assert_int_equal(e.refusal, SMPL_REFUSAL_HOLD);
}

static void test_course_status_of_each_answer(void **state)
{
	struct smpl_rules_cfg r = rules_default();
	struct smpl_patch_facts f = { 0 };
	struct smpl_eligibility e;

	(void)state;
	check(&r, &f, LAST, &e);
	assert_string_equal(smpl_course_status_name(smpl_course_status_of(&e, false)),
			    "untreated");
	f = treated_at(LAST);
	check(&r, &f, LAST + DAY, &e);
	assert_string_equal(smpl_course_status_name(smpl_course_status_of(&e, true)),
			    "cooling-down");
	check(&r, &f, LAST + 50 * DAY, &e);
	assert_string_equal(smpl_course_status_name(smpl_course_status_of(&e, true)),
			    "eligible");
	f.pigment_assessed = false;
	check(&r, &f, LAST + 50 * DAY, &e);
	assert_string_equal(smpl_course_status_name(smpl_course_status_of(&e, true)),
			    "awaiting-follow-up");
	f.pigment_assessed = true;
	f.pigment_pct = 0;
	check(&r, &f, LAST + 50 * DAY, &e);
	assert_string_equal(smpl_course_status_name(smpl_course_status_of(&e, true)), "clear");
	f.on_hold = true;
	check(&r, &f, LAST + 50 * DAY, &e);
	assert_string_equal(smpl_course_status_name(smpl_course_status_of(&e, true)), "on-hold");
}

static void test_endpoint_and_adverse_names(void **state)
{
	enum smpl_endpoint ep;
	enum smpl_adverse a;
	char err[SMPL_REASON_MAX];
	int holding = 0;

	(void)state;
	assert_int_equal(smpl_endpoint_parse("partial-whitening", &ep, err, sizeof(err)), 0);
	assert_int_equal(ep, SMPL_ENDPOINT_PARTIAL);
	assert_int_equal(smpl_endpoint_parse("Whitening", &ep, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "no-whitening"));
	assert_int_equal(smpl_endpoint_parse("", &ep, err, sizeof(err)), -EINVAL);
	assert_int_equal(smpl_endpoint_parse("\x1b[31m", &ep, err, sizeof(err)), -EINVAL);
	assert_true(smpl_text_is_safe(err));
	for (int i = 0; i < SMPL_ADVERSE__COUNT; i++) {
		assert_int_equal(smpl_adverse_parse(smpl_adverse_name((enum smpl_adverse)i), &a,
						    err, sizeof(err)), 0);
		assert_int_equal(a, i);
		holding += smpl_adverse_holds(a);
	}
	/* The list: these five hold, the other three do not. */
	assert_int_equal(holding, 5);
	assert_true(smpl_adverse_holds(SMPL_ADVERSE_FOLLICLE_DAMAGE));
	assert_true(smpl_adverse_holds(SMPL_ADVERSE_HAIR_LOSS));
	assert_true(smpl_adverse_holds(SMPL_ADVERSE_SCARRING));
	assert_true(smpl_adverse_holds(SMPL_ADVERSE_BLISTERING));
	assert_true(smpl_adverse_holds(SMPL_ADVERSE_INFECTION));
	assert_false(smpl_adverse_holds(SMPL_ADVERSE_HYPOPIGMENTATION));
	assert_false(smpl_adverse_holds(SMPL_ADVERSE_HYPERPIGMENTATION));
	assert_false(smpl_adverse_holds(SMPL_ADVERSE_OTHER));
	assert_int_equal(smpl_adverse_parse("burn", &a, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "burn"));
}

static void test_follow_up_findings(void **state)
{
	struct smpl_follow_up f = { 0 };
	char err[SMPL_REASON_MAX], holds[96];

	(void)state;
	assert_int_equal(smpl_follow_up_check(&f, err, sizeof(err)), -EINVAL);
	assert_int_equal(smpl_follow_up_set(&f, "note", "s", 0, "fine", err, sizeof(err)), 0);
	assert_int_equal(smpl_follow_up_check(&f, err, sizeof(err)), -EINVAL); /* a note alone */
	assert_int_equal(smpl_follow_up_set(&f, "pigment_remaining_pct", "q", 100, NULL, err,
					    sizeof(err)), 0);
	assert_int_equal(smpl_follow_up_check(&f, err, sizeof(err)), 0);
	assert_int_equal(f.pigment_pct, 100);
	/* given twice, out of range, wrong type, unknown */
	assert_int_equal(smpl_follow_up_set(&f, "pigment_remaining_pct", "u", 5, NULL, err,
					    sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "twice"));
	f.has_pigment = false;
	assert_int_equal(smpl_follow_up_set(&f, "pigment_remaining_pct", "u", 101, NULL, err,
					    sizeof(err)), -ERANGE);
	assert_int_equal(smpl_follow_up_set(&f, "pigment_remaining_pct", "i", -1, NULL, err,
					    sizeof(err)), -ERANGE);
	assert_int_equal(smpl_follow_up_set(&f, "pigment_remaining_pct", "s", 0, "5", err,
					    sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "pigment_remaining_pct"));
	assert_int_equal(smpl_follow_up_set(&f, "redness_resolved", "u", 1, NULL, err,
					    sizeof(err)), -EINVAL);
	assert_int_equal(smpl_follow_up_set(&f, "redness_resolved", "b", 1, NULL, err,
					    sizeof(err)), 0);
	assert_int_equal(smpl_follow_up_set(&f, "pigment", "u", 1, NULL, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "unknown"));
	assert_int_equal(smpl_follow_up_set(&f, "adverse", "s", 0, "hair-loss", err,
					    sizeof(err)), -EINVAL);
	assert_int_equal(smpl_follow_up_set(&f, "adverse", "as", 0, NULL, err, sizeof(err)), 0);
	assert_int_equal(smpl_follow_up_add_adverse(&f, "other", err, sizeof(err)), 0);
	smpl_follow_up_holds(&f, holds, sizeof(holds));
	assert_string_equal(holds, "");
	assert_int_equal(smpl_follow_up_add_adverse(&f, "scarring", err, sizeof(err)), 0);
	assert_int_equal(smpl_follow_up_add_adverse(&f, "hair-loss", err, sizeof(err)), 0);
	assert_int_equal(smpl_follow_up_add_adverse(&f, "scarring", err, sizeof(err)), 0);
	smpl_follow_up_holds(&f, holds, sizeof(holds));
	assert_string_equal(holds, "hair-loss, scarring");
	assert_int_equal(smpl_follow_up_add_adverse(&f, "bad\nname", err, sizeof(err)), -EINVAL);
	assert_true(smpl_text_is_safe(err));
}

static void test_note_text(void **state)
{
	char big[SMPL_CLINICAL_NOTE_MAX + 2];

	(void)state;
	assert_true(smpl_note_valid("", 10));
	assert_true(smpl_note_valid("line one\n\tline two, \xc3\xa9t\xc3\xa9", 100));
	assert_false(smpl_note_valid("bell\a", 100));
	assert_false(smpl_note_valid("\xff\xfe", 100));
	assert_false(smpl_note_valid("bidi \xe2\x80\xae", 100));
	assert_false(smpl_note_valid(NULL, 100));
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_false(smpl_note_valid(big, SMPL_CLINICAL_NOTE_MAX));
	big[SMPL_CLINICAL_NOTE_MAX] = '\0';
	assert_true(smpl_note_valid(big, SMPL_CLINICAL_NOTE_MAX));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_echo_cuts_between_characters),
		cmocka_unit_test(test_echo_escapes_controls_and_invalid_bytes),
		cmocka_unit_test(test_echo_is_always_safe),
		cmocka_unit_test(test_never_treated_is_eligible),
		cmocka_unit_test(test_cooldown_exactly_42_days),
		cmocka_unit_test(test_cooldown_one_second_before),
		cmocka_unit_test(test_cooldown_same_day_and_clock_before_record),
		cmocka_unit_test(test_lengthened_cooldown),
		cmocka_unit_test(test_shortened_cooldown_refused),
		cmocka_unit_test(test_unknown_outcome_counts_from_arming),
		cmocka_unit_test(test_far_future_does_not_overflow),
		cmocka_unit_test(test_spot_first_treatment_limited),
		cmocka_unit_test(test_spot_review_delay),
		cmocka_unit_test(test_spot_patch_keeps_its_cooldown),
		cmocka_unit_test(test_spot_review_longer_than_cooldown),
		cmocka_unit_test(test_spot_off_ignores_patient_history),
		cmocka_unit_test(test_format_utc),
		cmocka_unit_test(test_patient_ids),
		cmocka_unit_test(test_builtin_patches),
		cmocka_unit_test(test_clinic_patches),
		cmocka_unit_test(test_patch_list_full),
		cmocka_unit_test(test_patch_name_errors),
		cmocka_unit_test(test_set_field_each_key_and_type),
		cmocka_unit_test(test_set_field_errors),
		cmocka_unit_test(test_params_inside_protocol),
		cmocka_unit_test(test_params_unset_fields),
		cmocka_unit_test(test_params_outside_protocol),
		cmocka_unit_test(test_params_outside_unit),
		cmocka_unit_test(test_params_picosecond_unit),
		cmocka_unit_test(test_follow_up_required_after_cooldown),
		cmocka_unit_test(test_follow_up_never_shortens_the_cooldown),
		cmocka_unit_test(test_clear_patch_not_treated_again),
		cmocka_unit_test(test_hold_refuses_whatever_else),
		cmocka_unit_test(test_course_status_of_each_answer),
		cmocka_unit_test(test_endpoint_and_adverse_names),
		cmocka_unit_test(test_follow_up_findings),
		cmocka_unit_test(test_note_text),
	};

	return cmocka_run_group_tests_name("test_rules", tests, NULL, NULL);
}
