/* SPDX-License-Identifier: MIT */
/*
 * smplaserctl and the clinical record (issue 16): course, followup,
 * clear-hold, the endpoint of a session's treated patches (session endpoint,
 * session end --endpoint), report and export --fhir.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl.h"

static int usage(struct ctl *c, const char *synopsis)
{
	return ctl_error(c, CTL_EXIT_USAGE, NULL, "usage: %s (see '%s --help')", synopsis,
			 c->prog);
}

int load_course(struct ctl *c, const char *patient, json_object **out)
{
	sd_bus_message *reply = NULL;
	int code, r;

	code = ctl_call(c, SMPL_MANAGER_PATH, SMPL_MANAGER_IFACE, "Course", &reply, "s",
			patient);
	if (code)
		return code;
	r = ctl_read_json(reply, out);
	sd_bus_message_unref(reply);
	if (r < 0)
		return ctl_error(c, CTL_EXIT_FAILED, NULL, "cannot read Course's reply: %s",
				 strerror(-r));
	return CTL_EXIT_DONE;
}

char *load_clinic_name(struct ctl *c)
{
	json_object *v = NULL;
	char *name;

	if (ctl_get_property(c, SMPL_MANAGER_PATH, SMPL_MANAGER_IFACE, "ClinicName", &v))
		return strdup("");
	name = strdup(json_object_get_string(v) ? json_object_get_string(v) : "");
	json_object_put(v);
	return name;
}

/* ---- course ------------------------------------------------------------------ */

static json_object *list_of(json_object *o, const char *key)
{
	json_object *v = NULL;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_array))
		return NULL;
	return v;
}

/* "follicle-damage, other" from an array of strings. */
static void join(json_object *arr, char *buf, size_t len)
{
	size_t at = 0;

	buf[0] = '\0';
	for (size_t i = 0; arr && i < json_object_array_length(arr) && at < len; i++)
		at += (size_t)snprintf(buf + at, len - at, "%s%s", i ? ", " : "",
				       json_object_get_string(json_object_array_get_idx(arr, i)));
}

static void print_treatment(json_object *t)
{
	char when[32], params[160];

	fmt_time(j_u64(t, "armed_usec"), when, sizeof(when));
	snprintf(params, sizeof(params), "%" PRIu64 " nm, %.1f J/cm2, %.1f mm, %.1f ns, %.1f Hz",
		 j_u64(t, "wavelength_nm"), j_u64(t, "fluence_mj_cm2") / 1000.0,
		 j_u64(t, "spot_um") / 1000.0, j_u64(t, "pulse_ps") / 1000.0,
		 j_u64(t, "rate_mhz") / 1000.0);
	printf("    treated %s: %s; %" PRIu64 " pulses, %.2f J delivered (%s)", when, params,
	       j_u64(t, "pulses"), j_u64(t, "energy_uj") / 1e6, j_str(t, "outcome"));
	if (!j_bool(t, "emitted"))
		printf(", nothing fired\n");
	else if (j_str(t, "endpoint")[0])
		printf("\n      endpoint: %s%s%s%s\n", j_str(t, "endpoint"),
		       j_str(t, "endpoint_note")[0] ? " (" : "", j_str(t, "endpoint_note"),
		       j_str(t, "endpoint_note")[0] ? ")" : "");
	else
		printf("\n      endpoint: not recorded\n");
}

static void print_follow_up(json_object *f)
{
	json_object *v = NULL;
	char when[32], adverse[256], holding[256];

	fmt_date(j_u64(f, "time_usec"), when, sizeof(when));
	printf("    follow-up %s:", when);
	if (json_object_object_get_ex(f, "pigment_remaining_pct", &v))
		printf(" %" PRIu64 "%% pigment remaining;", j_u64(f, "pigment_remaining_pct"));
	if (json_object_object_get_ex(f, "redness_resolved", &v))
		printf(" redness %s;", j_bool(f, "redness_resolved") ? "resolved" : "not resolved");
	join(list_of(f, "adverse"), adverse, sizeof(adverse));
	join(list_of(f, "holding"), holding, sizeof(holding));
	if (adverse[0])
		printf(" adverse: %s%s%s%s;", adverse, holding[0] ? " (holding: " : "", holding,
		       holding[0] ? ")" : "");
	if (j_str(f, "note")[0])
		printf(" \"%s\"", j_str(f, "note"));
	printf("\n");
}

static void print_course(struct ctl *c, const char *patient, json_object *course)
{
	char today[32], next[160];

	fmt_date(now_usec(), today, sizeof(today));
	printf("Patient %s%s%s: the course of each patch on %s\n", col(c, SGR_BOLD), patient,
	       col(c, SGR_RESET), today);
	for (size_t i = 0; i < json_object_array_length(course); i++) {
		json_object *p = json_object_array_get_idx(course, i);
		const struct status_style *st = status_style(j_str(p, "status"));
		json_object *l;

		course_next(p, next, sizeof(next));
		printf("\n%s%-20s%s %s%-18s%s %s\n", col(c, SGR_BOLD), j_str(p, "patch"),
		       col(c, SGR_RESET), col(c, st->sgr), st->status, col(c, SGR_RESET), next);
		if (j_u64(p, "treatment_count"))
			printf("    %" PRIu64 " treatment(s), %" PRIu64 " pulses, %.2f J delivered\n",
			       j_u64(p, "treatment_count"), j_u64(p, "pulses"),
			       j_u64(p, "energy_uj") / 1e6);
		l = list_of(p, "treatments");
		for (size_t k = 0; l && k < json_object_array_length(l); k++)
			print_treatment(json_object_array_get_idx(l, k));
		l = list_of(p, "follow_ups");
		for (size_t k = 0; l && k < json_object_array_length(l); k++)
			print_follow_up(json_object_array_get_idx(l, k));
		l = list_of(p, "reviews");
		for (size_t k = 0; l && k < json_object_array_length(l); k++) {
			json_object *v = json_object_array_get_idx(l, k);

			fmt_date(j_u64(v, "time_usec"), today, sizeof(today));
			printf("    review %s: hold cleared%s%s%s\n", today,
			       j_str(v, "note")[0] ? " (" : "", j_str(v, "note"),
			       j_str(v, "note")[0] ? ")" : "");
		}
	}
}

int verb_course(struct ctl *c, int argc, char **argv)
{
	json_object *course = NULL;
	int code;

	if (argc != 1)
		return usage(c, "course PATIENT");
	if ((code = load_course(c, argv[0], &course)))
		return code;
	if (c->json) {
		json_object *o = json_object_new_object();

		json_object_object_add(o, "patient", json_object_new_string(argv[0]));
		json_object_object_add(o, "patches", course);
		out_json(o, false);
		json_object_put(o);
		return CTL_EXIT_DONE;
	}
	print_course(c, argv[0], course);
	json_object_put(course);
	return CTL_EXIT_DONE;
}

/* ---- followup, clear-hold ------------------------------------------------------- */

static int append_findings(struct ctl *c, sd_bus_message *m)
{
	int r = sd_bus_message_open_container(m, 'a', "{sv}");

	if (r >= 0 && c->pigment >= 0)
		r = sd_bus_message_append(m, "{sv}", "pigment_remaining_pct", "u",
					  (uint32_t)c->pigment);
	if (r >= 0 && c->redness)
		r = sd_bus_message_append(m, "{sv}", "redness_resolved", "b",
					  strcmp(c->redness, "resolved") == 0);
	if (r >= 0 && c->adverse) {
		char *list = strdup(c->adverse), *save = NULL;

		r = list ? sd_bus_message_open_container(m, 'e', "sv") : -ENOMEM;
		if (r >= 0)
			r = sd_bus_message_append(m, "s", "adverse");
		if (r >= 0)
			r = sd_bus_message_open_container(m, 'v', "as");
		if (r >= 0)
			r = sd_bus_message_open_container(m, 'a', "s");
		for (char *w = list ? strtok_r(list, ", ", &save) : NULL; r >= 0 && w;
		     w = strtok_r(NULL, ", ", &save))
			r = sd_bus_message_append(m, "s", w);
		for (int i = 0; r >= 0 && i < 3; i++)
			r = sd_bus_message_close_container(m);
		free(list);
	}
	if (r >= 0 && c->notes)
		r = sd_bus_message_append(m, "{sv}", "note", "s", c->notes);
	if (r >= 0)
		r = sd_bus_message_close_container(m);
	return r;
}

int verb_followup(struct ctl *c, int argc, char **argv)
{
	sd_bus_message *m = NULL;
	int code, r;

	if (argc != 2)
		return usage(c, "followup PATIENT PATCH [--pigment PCT] "
			     "[--redness resolved|unresolved] [--adverse LIST] [--notes TEXT]");
	if (c->redness && strcmp(c->redness, "resolved") && strcmp(c->redness, "unresolved"))
		return usage(c, "followup ... --redness resolved|unresolved");
	if (c->pigment < 0 && !c->redness && !c->adverse)
		return usage(c, "followup PATIENT PATCH needs a finding: --pigment PCT, "
			     "--redness or --adverse");
	r = sd_bus_message_new_method_call(c->bus, &m, SMPL_BUS_NAME, SMPL_MANAGER_PATH,
					   SMPL_MANAGER_IFACE, "RecordFollowUp");
	if (r >= 0)
		r = sd_bus_message_append(m, "ss", argv[0], argv[1]);
	if (r >= 0)
		r = append_findings(c, m);
	if (r < 0) {
		sd_bus_message_unref(m);
		return ctl_error(c, CTL_EXIT_FAILED, NULL, "cannot build the call: %s",
				 strerror(-r));
	}
	code = ctl_call_message(c, m, NULL);
	sd_bus_message_unref(m);
	if (code)
		return code;
	if (c->json) {
		json_object *course = NULL;

		if ((code = load_course(c, argv[0], &course)))
			return code;
		for (size_t i = 0; i < json_object_array_length(course); i++)
			if (strcmp(j_str(json_object_array_get_idx(course, i), "patch"), argv[1]) == 0)
				out_json(json_object_array_get_idx(course, i), false);
		json_object_put(course);
	} else {
		printf("Follow-up of %s recorded for patient %s.\n", argv[1], argv[0]);
	}
	return CTL_EXIT_DONE;
}

int verb_clear_hold(struct ctl *c, int argc, char **argv)
{
	int code;

	if (argc != 2)
		return usage(c, "clear-hold PATIENT PATCH [--notes TEXT]");
	code = ctl_call(c, SMPL_MANAGER_PATH, SMPL_MANAGER_IFACE, "ClearPatchHold", NULL, "sss",
			argv[0], argv[1], c->notes ? c->notes : "");
	if (code)
		return code;
	if (c->json)
		out_json_field("cleared", json_object_new_string(argv[1]));
	else
		printf("The hold on %s of patient %s is cleared by your review.\n", argv[1],
		       argv[0]);
	return CTL_EXIT_DONE;
}

/* ---- the endpoint of a session's treated patches ---------------------------------- */

static const char *const endpoints[] = { "whitening", "partial-whitening", "no-whitening" };

static int record_one(struct ctl *c, const char *sp, const char *patch, const char *endpoint,
		      const char *note)
{
	int code = ctl_call(c, sp, SMPL_SESSION_IFACE, "RecordEndpoint", NULL, "sss", patch,
			    endpoint, note ? note : "");

	if (!code && !c->json)
		printf("Endpoint of %s recorded: %s.\n", patch, endpoint);
	return code;
}

int session_record_endpoints(struct ctl *c, const char *sp, const char *endpoint,
			     const char *only, const char *note)
{
	json_object *missing = NULL;
	int code;

	if (only)
		return record_one(c, sp, only, endpoint, note);
	if ((code = ctl_get_property(c, sp, SMPL_SESSION_IFACE, "EndpointsMissing", &missing)))
		return code;
	for (size_t i = 0; !code && i < json_object_array_length(missing); i++)
		code = record_one(c, sp, json_object_get_string(json_object_array_get_idx(missing, i)),
				  endpoint, note);
	json_object_put(missing);
	return code;
}

/* On a terminal, the endpoint of each patch that needs one is asked for. */
static int ask_endpoints(struct ctl *c, const char *sp)
{
	json_object *missing = NULL;
	char line[64];
	int code;

	if ((code = ctl_get_property(c, sp, SMPL_SESSION_IFACE, "EndpointsMissing", &missing)))
		return code;
	for (size_t i = 0; !code && i < json_object_array_length(missing); i++) {
		const char *patch = json_object_get_string(json_object_array_get_idx(missing, i));
		bool known = false;

		printf("Endpoint of %s (the tissue response seen at the end: whitening, "
		       "partial-whitening, no-whitening)? ", patch);
		fflush(stdout);
		if (!fgets(line, sizeof(line), stdin)) {
			code = CTL_EXIT_USAGE;
			break;
		}
		line[strcspn(line, "\r\n")] = '\0';
		for (size_t k = 0; k < sizeof(endpoints) / sizeof(endpoints[0]); k++)
			known |= strcmp(line, endpoints[k]) == 0;
		if (!known) {
			printf("'%s' is not one of them.\n", line);
			i--;
			continue;
		}
		code = record_one(c, sp, patch, line, "");
	}
	json_object_put(missing);
	return code;
}

int session_end_documented(struct ctl *c, const char *unit_path, const char *sp)
{
	int code;

	(void)unit_path;
	if (c->endpoint && (code = session_record_endpoints(c, sp, c->endpoint, NULL, "")))
		return code;
	if (!c->endpoint && !c->json && isatty(STDIN_FILENO)) {
		json_object *missing = NULL;

		if (ctl_get_property(c, sp, SMPL_SESSION_IFACE, "EndpointsMissing", &missing) == 0 &&
		    json_object_array_length(missing) > 0 && (code = ask_endpoints(c, sp))) {
			json_object_put(missing);
			return code;
		}
		json_object_put(missing);
	}
	return ctl_call(c, sp, SMPL_SESSION_IFACE, "End", NULL, "s", c->notes ? c->notes : "");
}

/* ---- report --------------------------------------------------------------------- */

int verb_report(struct ctl *c, int argc, char **argv)
{
	json_object *course = NULL, *info = NULL, *days = NULL;
	unsigned int cooldown = 0;
	char *clinic;
	int code;

	if (argc != 1 || !c->output)
		return usage(c, "report PATIENT -o FILE.pdf|FILE.png|FILE.svg");
	if ((code = load_course(c, argv[0], &course)))
		return code;
	clinic = load_clinic_name(c);
	if (ctl_get_property(c, SMPL_MANAGER_PATH, SMPL_MANAGER_IFACE, "CooldownDays", &days) == 0)
		cooldown = (unsigned int)json_object_get_int64(days);
	json_object_put(days);
	code = draw_file(c, argv[0], clinic, cooldown, course, true, c->output, &info);
	if (!code && c->json)
		out_json(info, false);
	else if (!code && strcmp(c->output, "-") != 0)
		printf("Wrote %s: the report of patient %s.\n", c->output, argv[0]);
	json_object_put(info);
	json_object_put(course);
	free(clinic);
	return code;
}
