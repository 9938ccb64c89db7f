/* SPDX-License-Identifier: MIT */
/*
 * The clinical record's words (issue 16): the endpoint of a treatment, the
 * findings of a follow-up visit, the adverse events that hold a patch, and
 * a patch's status in its course.  Pure code: no I/O, no clock.
 *
 * The names here are the D-Bus API's and the records' (docs/clinical.md).
 */
#ifndef SMPLASER_DAEMON_CLINICAL_H
#define SMPLASER_DAEMON_CLINICAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rules.h"

#define SMPL_CLINICAL_NOTE_MAX	2048	/* characters of a note, as session notes */

/* The tissue response seen when a patch's treatment ends. */
enum smpl_endpoint {
	SMPL_ENDPOINT_WHITENING = 0,		/* "whitening" */
	SMPL_ENDPOINT_PARTIAL,			/* "partial-whitening" */
	SMPL_ENDPOINT_NONE,			/* "no-whitening" */
	SMPL_ENDPOINT__COUNT,
};
const char *smpl_endpoint_name(enum smpl_endpoint e);
/* 0 and *out, or -EINVAL with a message listing the known ones. */
int smpl_endpoint_parse(const char *name, enum smpl_endpoint *out, char *err, size_t err_len);

/* Adverse events a follow-up may find; the first five hold the patch. */
enum smpl_adverse {
	SMPL_ADVERSE_FOLLICLE_DAMAGE = 0,	/* "follicle-damage" (holds) */
	SMPL_ADVERSE_HAIR_LOSS,			/* "hair-loss" (holds) */
	SMPL_ADVERSE_BLISTERING,		/* "blistering" (holds) */
	SMPL_ADVERSE_SCARRING,			/* "scarring" (holds) */
	SMPL_ADVERSE_INFECTION,			/* "infection" (holds) */
	SMPL_ADVERSE_HYPOPIGMENTATION,		/* "hypopigmentation" */
	SMPL_ADVERSE_HYPERPIGMENTATION,		/* "hyperpigmentation" */
	SMPL_ADVERSE_OTHER,			/* "other" */
	SMPL_ADVERSE__COUNT,
};
const char *smpl_adverse_name(enum smpl_adverse a);
/* The patch is held until an authorized review (ClearPatchHold). */
bool smpl_adverse_holds(enum smpl_adverse a);
int smpl_adverse_parse(const char *name, enum smpl_adverse *out, char *err, size_t err_len);

/*
 * The findings of a follow-up visit (Manager.RecordFollowUp's a{sv}):
 *   redness_resolved (b), pigment_remaining_pct (u, 0-100; any unsigned
 *   integer type is taken), adverse (as), note (s).
 * Each key at most once; at least one finding (a note alone is not one).
 */
struct smpl_follow_up {
	bool has_redness;
	bool redness_resolved;
	bool has_pigment;
	uint32_t pigment_pct;
	uint32_t adverse;		/* bit (1 << enum smpl_adverse) */
	char note[SMPL_CLINICAL_NOTE_MAX + 1];
	bool has_note;
};

/* The keys, for messages and for the fuzzer. */
#define SMPL_FOLLOW_UP_KEYS "redness_resolved, pigment_remaining_pct, adverse, note"

/*
 * One key of the a{sv}: @dbus_type the variant's type ("b", "u", "as", "s",
 * ...); @i the integer value (b, integers), @s the string (s), or for "as"
 * call smpl_follow_up_add_adverse() for each element after this returned 0.
 * 0, or -EINVAL (unknown or repeated key, wrong type), -ERANGE (a
 * percentage above 100) with a message naming the key.
 */
int smpl_follow_up_set(struct smpl_follow_up *f, const char *key, const char *dbus_type,
		       int64_t i, const char *s, char *err, size_t err_len);
int smpl_follow_up_add_adverse(struct smpl_follow_up *f, const char *name,
			       char *err, size_t err_len);
/* The whole: at least one finding.  0 or -EINVAL. */
int smpl_follow_up_check(const struct smpl_follow_up *f, char *err, size_t err_len);
/* The adverse events that hold the patch ("follicle-damage, blistering"), "" if none. */
void smpl_follow_up_holds(const struct smpl_follow_up *f, char *buf, size_t len);

/* Free text of a note: at most @max characters, no control characters but \n \t. */
bool smpl_note_valid(const char *note, size_t max);

/* A patch's status in its course (Manager.Course). */
enum smpl_course_status {
	SMPL_COURSE_UNTREATED = 0,	/* "untreated" */
	SMPL_COURSE_COOLING_DOWN,	/* "cooling-down" (or a test-spot review) */
	SMPL_COURSE_AWAITING_FOLLOW_UP,	/* "awaiting-follow-up" */
	SMPL_COURSE_ELIGIBLE,		/* "eligible" */
	SMPL_COURSE_CLEAR,		/* "clear" */
	SMPL_COURSE_ON_HOLD,		/* "on-hold" */
	SMPL_COURSE__COUNT,
};
const char *smpl_course_status_name(enum smpl_course_status s);
/* The status the rules' answer @e gives a patch that was (@emitted) or was never treated. */
enum smpl_course_status smpl_course_status_of(const struct smpl_eligibility *e, bool emitted);

#endif /* SMPLASER_DAEMON_CLINICAL_H */
