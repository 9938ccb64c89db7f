/* SPDX-License-Identifier: MIT */
/*
 * How a patch's course is shown (issue 16), the same on the terminal
 * (clinical.c), the map (map.c) and the patient's report (draw.c): a style
 * per status, and what comes next in words.
 */
#include <stdio.h>
#include <string.h>

#include "ctl.h"

/* One style per status; the colours are documented in smplaserctl(1) and docs/clinical.md. */
const struct status_style status_styles[] = {
	{ "untreated", 0xbdbdbd, "30;47", "new", "untreated" },
	{ "cooling-down", 0xe53935, "97;41", NULL, "cooling down (six weeks between treatments)" },
	{ "awaiting-follow-up", 0xffb300, "30;43", "f-up", "waiting for a follow-up visit" },
	{ "eligible", 0x43a047, "30;42", "ok", "may be treated" },
	{ "clear", 0x1e88e5, "97;44", "clear", "clear: no pigment remaining" },
	{ "on-hold", 0x8e24aa, "97;45", "HOLD", "on hold until a review" },
};
const size_t n_status_styles = sizeof(status_styles) / sizeof(status_styles[0]);

const struct status_style *status_style(const char *status)
{
	for (size_t i = 0; i < n_status_styles; i++)
		if (strcmp(status_styles[i].status, status) == 0)
			return &status_styles[i];
	return &status_styles[0];
}

void course_next(json_object *p, char *buf, size_t len)
{
	const char *status = j_str(p, "status");
	char date[32];

	if (strcmp(status, "on-hold") == 0) {
		fmt_date(j_u64(p, "hold_since_usec"), date, sizeof(date));
		snprintf(buf, len, "on hold since %s: not treated until a review clears it", date);
	} else if (strcmp(status, "clear") == 0) {
		snprintf(buf, len, "clear: no further treatment unless a follow-up finds pigment");
	} else if (strcmp(status, "awaiting-follow-up") == 0) {
		snprintf(buf, len, "next treatment only after a follow-up finds pigment remaining");
	} else if (strcmp(status, "cooling-down") == 0) {
		fmt_date(j_u64(p, "next_eligible_usec"), date, sizeof(date));
		snprintf(buf, len, "may be treated again from %s%s", date,
			 strstr(j_str(p, "reason"), "follow-up must find pigment") ?
			 ", once a follow-up finds pigment remaining" : "");
	} else if (strcmp(status, "eligible") == 0) {
		snprintf(buf, len, "may be treated now");
	} else {
		snprintf(buf, len, "not treated");
	}
}
