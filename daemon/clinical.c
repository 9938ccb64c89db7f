/* SPDX-License-Identifier: MIT */
/* The clinical record's words and checks: see clinical.h.  Pure code. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clinical.h"
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

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

static const char *const endpoint_names[SMPL_ENDPOINT__COUNT] = {
	[SMPL_ENDPOINT_WHITENING] = "whitening",
	[SMPL_ENDPOINT_PARTIAL] = "partial-whitening",
	[SMPL_ENDPOINT_NONE] = "no-whitening",
};

static const char *const adverse_names[SMPL_ADVERSE__COUNT] = {
	[SMPL_ADVERSE_FOLLICLE_DAMAGE] = "follicle-damage",
	[SMPL_ADVERSE_HAIR_LOSS] = "hair-loss",
	[SMPL_ADVERSE_BLISTERING] = "blistering",
	[SMPL_ADVERSE_SCARRING] = "scarring",
	[SMPL_ADVERSE_INFECTION] = "infection",
	[SMPL_ADVERSE_HYPOPIGMENTATION] = "hypopigmentation",
	[SMPL_ADVERSE_HYPERPIGMENTATION] = "hyperpigmentation",
	[SMPL_ADVERSE_OTHER] = "other",
};

static const char *const status_names[SMPL_COURSE__COUNT] = {
	[SMPL_COURSE_UNTREATED] = "untreated",
	[SMPL_COURSE_COOLING_DOWN] = "cooling-down",
	[SMPL_COURSE_AWAITING_FOLLOW_UP] = "awaiting-follow-up",
	[SMPL_COURSE_ELIGIBLE] = "eligible",
	[SMPL_COURSE_CLEAR] = "clear",
	[SMPL_COURSE_ON_HOLD] = "on-hold",
};

const char *smpl_endpoint_name(enum smpl_endpoint e)
{
	return (unsigned int)e < N_ELEMS(endpoint_names) ? endpoint_names[e] : "?";
}

const char *smpl_adverse_name(enum smpl_adverse a)
{
	return (unsigned int)a < N_ELEMS(adverse_names) ? adverse_names[a] : "?";
}

const char *smpl_course_status_name(enum smpl_course_status s)
{
	return (unsigned int)s < N_ELEMS(status_names) ? status_names[s] : "?";
}

bool smpl_adverse_holds(enum smpl_adverse a)
{
	return a <= SMPL_ADVERSE_INFECTION;
}

/* @name among @names: its index, or -1. */
static int lookup(const char *const *names, size_t n, const char *name)
{
	for (size_t i = 0; name && i < n; i++)
		if (strcmp(names[i], name) == 0)
			return (int)i;
	return -1;
}

/* "a, b, c" of @names into @buf. */
static void list_names(const char *const *names, size_t n, char *buf, size_t len)
{
	size_t at = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < n && at < len; i++)
		at += (size_t)snprintf(buf + at, len - at, "%s%s", i ? ", " : "", names[i]);
}

/* The value as it was given, made safe to put in a message. */
static void echo(char *buf, size_t len, const char *value)
{
	smpl_text_echo(buf, len, value ? value : "", SMPL_ECHO_CHARS);
}

int smpl_endpoint_parse(const char *name, enum smpl_endpoint *out, char *err, size_t err_len)
{
	int i = lookup(endpoint_names, N_ELEMS(endpoint_names), name);
	char known[96], e[SMPL_ECHO_MAX];

	if (i >= 0) {
		*out = (enum smpl_endpoint)i;
		return 0;
	}
	list_names(endpoint_names, N_ELEMS(endpoint_names), known, sizeof(known));
	echo(e, sizeof(e), name);
	set_msg(err, err_len, "endpoint \"%s\" is not one of %s", e, known);
	return -EINVAL;
}

int smpl_adverse_parse(const char *name, enum smpl_adverse *out, char *err, size_t err_len)
{
	int i = lookup(adverse_names, N_ELEMS(adverse_names), name);
	char known[192], e[SMPL_ECHO_MAX];

	if (i >= 0) {
		*out = (enum smpl_adverse)i;
		return 0;
	}
	list_names(adverse_names, N_ELEMS(adverse_names), known, sizeof(known));
	echo(e, sizeof(e), name);
	set_msg(err, err_len, "adverse: \"%s\" is not one of %s", e, known);
	return -EINVAL;
}

bool smpl_note_valid(const char *note, size_t max)
{
	char *copy;
	bool ok;

	if (!note || strlen(note) > max || !(copy = strdup(note)))
		return false;
	/* A newline or a tab is fine; otherwise valid UTF-8 without controls. */
	for (char *p = copy; *p; p++)
		if (*p == '\n' || *p == '\t')
			*p = ' ';
	ok = smpl_text_is_safe(copy);
	free(copy);
	return ok;
}

static bool is_integer_type(const char *t)
{
	return t && t[0] && !t[1] && strchr("ynqiuxt", t[0]);
}

static int wrong_type(const char *key, const char *want, const char *got, char *err,
		      size_t err_len)
{
	char e[SMPL_ECHO_MAX];

	echo(e, sizeof(e), got);
	set_msg(err, err_len, "%s: must be %s, not D-Bus type '%s'", key, want, e);
	return -EINVAL;
}

int smpl_follow_up_set(struct smpl_follow_up *f, const char *key, const char *dbus_type,
		       int64_t i, const char *s, char *err, size_t err_len)
{
	char e[SMPL_ECHO_MAX];

	if (!key || !dbus_type)
		return wrong_type("finding", "a key and a value", "", err, err_len);
	if (strcmp(key, "redness_resolved") == 0) {
		if (f->has_redness)
			goto again;
		if (strcmp(dbus_type, "b") != 0)
			return wrong_type(key, "a boolean (b)", dbus_type, err, err_len);
		f->has_redness = true;
		f->redness_resolved = i != 0;
		return 0;
	}
	if (strcmp(key, "pigment_remaining_pct") == 0) {
		if (f->has_pigment)
			goto again;
		if (!is_integer_type(dbus_type))
			return wrong_type(key, "an integer percentage (u)", dbus_type, err, err_len);
		if (i < 0 || i > 100) {
			set_msg(err, err_len, "pigment_remaining_pct = %" PRId64 " is outside 0..100",
				i);
			return -ERANGE;
		}
		f->has_pigment = true;
		f->pigment_pct = (uint32_t)i;
		return 0;
	}
	if (strcmp(key, "adverse") == 0) {
		if (f->adverse)
			goto again;
		if (strcmp(dbus_type, "as") != 0)
			return wrong_type(key, "a list of adverse events (as)", dbus_type, err,
					  err_len);
		return 0;	/* the elements: smpl_follow_up_add_adverse() */
	}
	if (strcmp(key, "note") == 0) {
		if (f->has_note)
			goto again;
		if (strcmp(dbus_type, "s") != 0)
			return wrong_type(key, "a string (s)", dbus_type, err, err_len);
		if (!smpl_note_valid(s, SMPL_CLINICAL_NOTE_MAX)) {
			set_msg(err, err_len, "note: at most %d characters, no control characters",
				SMPL_CLINICAL_NOTE_MAX);
			return -EINVAL;
		}
		f->has_note = true;
		snprintf(f->note, sizeof(f->note), "%s", s);
		return 0;
	}
	echo(e, sizeof(e), key);
	set_msg(err, err_len, "finding \"%s\" is unknown (known: " SMPL_FOLLOW_UP_KEYS ")", e);
	return -EINVAL;
again:
	set_msg(err, err_len, "finding %s is given twice", key);
	return -EINVAL;
}

int smpl_follow_up_add_adverse(struct smpl_follow_up *f, const char *name, char *err,
			       size_t err_len)
{
	enum smpl_adverse a;
	int r = smpl_adverse_parse(name, &a, err, err_len);

	if (r < 0)
		return r;
	f->adverse |= 1u << a;		/* a repeat is the same finding */
	return 0;
}

int smpl_follow_up_check(const struct smpl_follow_up *f, char *err, size_t err_len)
{
	if (f->has_redness || f->has_pigment || f->adverse)
		return 0;
	set_msg(err, err_len, "a follow-up needs at least one finding: redness_resolved, "
		"pigment_remaining_pct or adverse");
	return -EINVAL;
}

void smpl_follow_up_holds(const struct smpl_follow_up *f, char *buf, size_t len)
{
	size_t at = 0;

	buf[0] = '\0';
	for (int a = 0; a < SMPL_ADVERSE__COUNT && at < len; a++)
		if ((f->adverse & (1u << a)) && smpl_adverse_holds((enum smpl_adverse)a))
			at += (size_t)snprintf(buf + at, len - at, "%s%s", at ? ", " : "",
					       adverse_names[a]);
}

enum smpl_course_status smpl_course_status_of(const struct smpl_eligibility *e, bool emitted)
{
	switch (e->refusal) {
	case SMPL_REFUSAL_HOLD:
		return SMPL_COURSE_ON_HOLD;
	case SMPL_REFUSAL_CLEAR:
		return SMPL_COURSE_CLEAR;
	case SMPL_REFUSAL_COOLDOWN:
	case SMPL_REFUSAL_TEST_SPOT_REVIEW:
		return SMPL_COURSE_COOLING_DOWN;
	case SMPL_REFUSAL_FOLLOW_UP:
		return SMPL_COURSE_AWAITING_FOLLOW_UP;
	case SMPL_REFUSAL_NONE:
		break;
	}
	return emitted ? SMPL_COURSE_ELIGIBLE : SMPL_COURSE_UNTREATED;
}
