/* SPDX-License-Identifier: MIT */
/*
 * Treatment rules (DESIGN S2, section 6): cooldown per (patient, patch),
 * the optional test-spot rule, and the argument checks of the D-Bus API.
 * Pure functions: no I/O, no clock; times are passed in.
 *
 * Times: host wall clock in UTC milliseconds since the epoch ("_ms"), the
 * same convention as daemon/store.h.
 *
 * Error convention: functions return 0 or a negative errno and, when given
 * a buffer, write a one-line human message that names the offending field.
 *   -EINVAL  malformed argument (unknown key, wrong type, bad syntax):
 *            org.smplaser.Laser1.Error.InvalidArgument
 *   -ERANGE  a value outside the clinic protocol or the unit's limits:
 *            org.smplaser.Laser1.Error.ParameterOutOfRange
 */
#ifndef SMPLASER_DAEMON_RULES_H
#define SMPLASER_DAEMON_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"

#define SMPL_COOLDOWN_DAYS_MIN		42	/* S2: never shorter */
#define SMPL_DAY_MS			(86400LL * 1000)
#define SMPL_PATIENT_ID_MAX		64
#define SMPL_REASON_MAX			240	/* size of reason buffers */
#define SMPL_PROTOCOL_WAVELENGTHS_MAX	4
#define SMPL_HOLD_EVENTS_MAX		96	/* the adverse events holding a patch, as text */

/* [rules] of the config. */
struct smpl_rules_cfg {
	uint32_t cooldown_days;		/* >= SMPL_COOLDOWN_DAYS_MIN, default 42 */
	bool test_spot;			/* default false */
	uint32_t test_spot_pulses;	/* pulse limit of a first treatment, default 20 */
	uint32_t test_spot_review_days;	/* wait after the test spot, default 14 */
	/*
	 * Issue 16: after a treatment, a patch is treated again only once a
	 * follow-up recorded after it found pigment remaining.  Default true.
	 */
	bool require_follow_up;
};
void smpl_rules_default(struct smpl_rules_cfg *r);

/*
 * What the store knows about one patient and one patch.
 *
 * patch_last_emission_ms is store_last_emission(patient, patch): the last
 * recorded emission of this patch for this patient.  The store counts a
 * treatment whose outcome is unknown after a crash (OPEN or UNKNOWN, not yet
 * reconciled with the unit's shot counter) as emitted at its arming time,
 * or at its last recorded pulse if that is later; so an interrupted
 * treatment can never shorten a cooldown.
 *
 * patient_first_emission_ms / patient_treatments come from
 * store_patient_summary() (same counting) and are only used by the
 * test-spot rule.
 *
 * The clinical record (issue 16, store-clinical.h): the patch's hold (an
 * adverse event that holds it, not cleared by a review since) and its last
 * follow-up that assessed the pigment remaining.
 */
struct smpl_patch_facts {
	bool patch_emitted;		/* false: this patch was never treated */
	int64_t patch_last_emission_ms;
	uint32_t patient_treatments;	/* treatments of this patient that emitted (any patch) */
	int64_t patient_first_emission_ms; /* the test spot, if test_spot; valid if treatments > 0 */
	bool on_hold;			/* an adverse event holds the patch */
	int64_t hold_since_ms;		/* the first follow-up holding it since the last review */
	char hold_events[SMPL_HOLD_EVENTS_MAX];	/* "follicle-damage, blistering" */
	bool pigment_assessed;		/* a follow-up assessed the pigment remaining */
	uint32_t pigment_pct;		/* its finding, the last one */
	int64_t pigment_ms;		/* when it was recorded */
};

/* Which rule refused (smpl_eligibility.refusal); each has its D-Bus error. */
enum smpl_refusal {
	SMPL_REFUSAL_NONE = 0,
	SMPL_REFUSAL_COOLDOWN,		/* CooldownActive */
	SMPL_REFUSAL_TEST_SPOT_REVIEW,	/* CooldownActive (the review date) */
	SMPL_REFUSAL_FOLLOW_UP,		/* FollowUpRequired */
	SMPL_REFUSAL_CLEAR,		/* PatchClear */
	SMPL_REFUSAL_HOLD,		/* PatchOnHold */
};

/* The answer of CheckPatch / SelectPatch. */
struct smpl_eligibility {
	bool eligible;
	int64_t next_eligible_ms;	/* when it becomes (or became) eligible; now if never treated */
	bool test_spot;			/* eligible only as a test spot */
	uint32_t max_pulses;		/* test spot: its pulse limit; 0 = the protocol's limit */
	enum smpl_refusal refusal;	/* not eligible: the rule that decides */
	char reason[SMPL_REASON_MAX];	/* names the UTC date, e.g. "... eligible from 2026-03-01 12:00:00 UTC" */
};

/*
 * Decide whether @patch (its id, used in the message) may be treated at
 * @now_ms.  Cooldown: eligible iff now_ms >= last emission + cooldown_days.
 * Test-spot rule (cfg->test_spot): a patient's first treatment is a test
 * spot limited to test_spot_pulses; further treatments only when
 * now_ms >= first emission + test_spot_review_days.  Both rules apply; the
 * later date wins.
 *
 * The clinical record (issue 16), decided first:
 *   - a patch on hold is refused until a review clears it (HOLD; no date);
 *   - a patch whose last pigment finding is 0% is clear (CLEAR; no date)
 *     until a newer follow-up finds pigment;
 *   - cfg->require_follow_up: a patch that emitted is treated again only
 *     when its last pigment finding came after its last emission and found
 *     pigment (FOLLOW_UP).  With the cooldown still running the refusal is
 *     the cooldown's (its date), its message naming the follow-up too; past
 *     it, next_eligible_ms is 0 (it waits for a visit, not a date).
 * Always fills @out; returns 0, or -EINVAL on bad arguments (out->eligible
 * false).
 */
int smpl_rules_check_patch(const struct smpl_rules_cfg *cfg,
			   const struct smpl_patch_facts *facts,
			   const char *patch, int64_t now_ms,
			   struct smpl_eligibility *out);

/* "2026-03-01 12:00:00 UTC" into @buf (at least 24 bytes). */
void smpl_format_utc(int64_t wall_ms, char *buf, size_t len);

/* ---- D-Bus argument checks ------------------------------------------ */

/* Patient id: 1..64 characters of [A-Za-z0-9._-].  0 or -EINVAL. */
int smpl_patient_id_check(const char *id, char *err, size_t err_len);

/* [protocol] of the config: the clinic's treatment protocol. */
struct smpl_protocol {
	uint16_t wavelengths_nm[SMPL_PROTOCOL_WAVELENGTHS_MAX];
	unsigned int n_wavelengths;		/* default 1: 1064 */
	uint32_t fluence_min_mj_cm2;		/* default 1000 (1 J/cm2) */
	uint32_t fluence_max_mj_cm2;		/* default 10000 */
	uint16_t spot_min_um;			/* default 2000 */
	uint16_t spot_max_um;			/* default 6000 */
	uint32_t qswitch_pulse_min_ps;		/* default 5000 (5 ns), nanosecond units */
	uint32_t qswitch_pulse_max_ps;		/* default 25000 (25 ns) */
	uint32_t pico_pulse_min_ps;		/* default 300, picosecond units */
	uint32_t pico_pulse_max_ps;		/* default 750 */
	uint32_t rate_max_mhz;			/* millihertz, default 10000 (10 Hz) */
	uint32_t pulses_per_patch;		/* per patch per session, default 3000 */
	uint64_t max_session_energy_uj;		/* default 10 kJ */
};
void smpl_protocol_default(struct smpl_protocol *p);

/* The keys of SetParameters(a{sv}), all unsigned integers in proto.h units. */
enum smpl_param_field {
	SMPL_PF_WAVELENGTH = 0,	/* "wavelength_nm" */
	SMPL_PF_FLUENCE,	/* "fluence_mj_cm2" */
	SMPL_PF_SPOT,		/* "spot_um" */
	SMPL_PF_PULSE,		/* "pulse_ps" */
	SMPL_PF_RATE,		/* "rate_mhz" (millihertz) */
	SMPL_PF__COUNT,
};
const char *smpl_param_field_name(enum smpl_param_field f);

/*
 * Set one field of @p from a D-Bus variant.  @dbus_type is the variant's
 * type character; integer types y n q i u x t are accepted (a client's
 * language may not choose the width), anything else is -EINVAL.  Negative
 * values or values beyond the field's width are -ERANGE.  An unknown key is
 * -EINVAL.  @value holds the variant's value widened to int64 (for 't'
 * values above INT64_MAX pass INT64_MAX: out of range anyway).
 */
int smpl_params_set_field(struct smpl_params_n *p, const char *key,
			  char dbus_type, int64_t value,
			  char *err, size_t err_len);

/*
 * Check complete parameters against the clinic protocol and, if @unit is
 * not NULL, the unit's own limits (wavelengths, max fluence, spot range,
 * pulse range, max rate).  The pulse width must lie in the protocol's
 * picosecond range on a picosecond unit (SMPL_INFO_PICOSECOND), in its
 * Q-switched range otherwise; with @unit NULL either range is accepted.
 * A field still 0 is -EINVAL ("not set"); otherwise 0 or -ERANGE, the
 * message naming the first offending field, its value and the range.
 */
int smpl_params_check(const struct smpl_protocol *proto,
		      const struct smpl_info_n *unit,
		      const struct smpl_params_n *p,
		      char *err, size_t err_len);

#endif /* SMPLASER_DAEMON_RULES_H */
