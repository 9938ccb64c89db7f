/* SPDX-License-Identifier: MIT */
/*
 * smplaserctl verbs that read or act once: status, units, patches, check,
 * history, export, session, params, arm, disarm, ack.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ctl.h"

static int usage_error(struct ctl *c, const char *fmt, const char *arg)
{
	char msg[256];

	snprintf(msg, sizeof(msg), fmt, arg ? arg : "");
	return ctl_error(c, CTL_EXIT_USAGE, NULL, "%s (see '%s --help')", msg,
			 c->prog);
}

static int want_args(struct ctl *c, int argc, int n, const char *synopsis)
{
	if (argc != n)
		return usage_error(c, "usage: %s", synopsis);
	return CTL_EXIT_DONE;
}

/* ---- loading and printing units and sessions ----------------------------- */

int load_unit(struct ctl *c, const char *unit_path, json_object **out)
{
	int code = ctl_get_all(c, unit_path, SMPL_UNIT_IFACE, out);

	if (code)
		return code;
	json_object_object_add(*out, "path", json_object_new_string(unit_path));
	return CTL_EXIT_DONE;
}

int load_session(struct ctl *c, const char *session_path, json_object **out)
{
	int code = ctl_get_all(c, session_path, SMPL_SESSION_IFACE, out);

	if (code)
		return code;
	json_object_object_add(*out, "path", json_object_new_string(session_path));
	return CTL_EXIT_DONE;
}

/* The unit's open session, or NULL (no session, or it just ended). */
static json_object *load_open_session(struct ctl *c, json_object *unit)
{
	const char *sp = j_str(unit, "Session");
	json_object *s = NULL;
	bool was_json = c->json;

	if (!*sp || strcmp(sp, "/") == 0)
		return NULL;
	/* A session may end between the two reads: not an error to report. */
	c->json = false;
	if (ctl_get_all(c, sp, SMPL_SESSION_IFACE, &s) != CTL_EXIT_DONE)
		s = NULL;
	c->json = was_json;
	if (s)
		json_object_object_add(s, "path", json_object_new_string(sp));
	return s;
}

static void print_interlocks(struct ctl *c, json_object *il)
{
	bool first = true;

	json_object_object_foreach(il, name, val) {
		bool closed = json_object_get_boolean(val);

		printf("%s%s%s%s%s", first ? "" : " ", closed ? col(c, SGR_GREEN) :
		       col(c, SGR_BOLD ";" SGR_RED), name, closed ? "" : ":OPEN",
		       col(c, SGR_RESET));
		first = false;
	}
	if (first)
		printf("(none reported)");
	printf("\n");
}

void print_session_text(struct ctl *c, json_object *s)
{
	const char *patch = j_str(s, "Patch");
	const char *state = j_str(s, "State");

	printf("    Session: patient %s%s%s, patch %s, eyewear %s, %" PRIu64
	       " pulses, %s%s%s\n", col(c, SGR_BOLD), j_str(s, "Patient"),
	       col(c, SGR_RESET), *patch ? patch : "(none selected)",
	       j_bool(s, "EyewearConfirmed") ? "confirmed" : "not confirmed",
	       j_u64(s, "PulseCount"), state_color(c, state), state,
	       col(c, SGR_RESET));
}

void print_unit_text(struct ctl *c, json_object *u, json_object *session)
{
	json_object *il = NULL, *params = NULL;
	const char *state = j_str(u, "State");
	const char *fault = j_str(u, "LatchedFault");
	char pbuf[256];

	printf("%sUnit %s%s  (%s, %s, firmware %s)\n", col(c, SGR_BOLD),
	       j_str(u, "Serial"), col(c, SGR_RESET), j_str(u, "Model"),
	       j_str(u, "Backend"), j_str(u, "Firmware"));
	printf("      State: %s%s%s\n", state_color(c, state), state,
	       col(c, SGR_RESET));
	printf(" Interlocks: ");
	json_object_object_get_ex(u, "Interlocks", &il);
	print_interlocks(c, il);
	json_object_object_get_ex(u, "Parameters", &params);
	fmt_parameters(params, pbuf, sizeof(pbuf));
	printf(" Parameters: %s\n", pbuf);
	printf("      Shots: %" PRIu64 "\n", j_u64(u, "ShotCount"));
	if (*fault)
		printf("      Fault: %s%s%s (acknowledge with 'smplaserctl ack')\n",
		       col(c, SGR_BOLD ";" SGR_RED), fault, col(c, SGR_RESET));
	if (session)
		print_session_text(c, session);
	else
		printf("    Session: none\n");
}

/* {"unit": U, "session": S|null} for verbs that act on a unit. */
int show_unit(struct ctl *c, const char *unit_path)
{
	json_object *u = NULL, *s;
	int code = load_unit(c, unit_path, &u);

	if (code)
		return code;
	s = load_open_session(c, u);
	if (c->json) {
		json_object *o = json_object_new_object();

		json_object_object_add(o, "unit", u);
		json_object_object_add(o, "session", s);
		out_json(o, false);
		json_object_put(o);
	} else {
		print_unit_text(c, u, s);
		json_object_put(u);
		json_object_put(s);
	}
	return CTL_EXIT_DONE;
}

/* ---- status, units, patches ---------------------------------------------- */

int verb_status(struct ctl *c, int argc, char **argv)
{
	json_object *mgr = NULL, *list = NULL, *units, *sessions;
	int code;

	(void)argv;
	if ((code = want_args(c, argc, 0, "status")))
		return code;
	if ((code = ctl_get_all(c, SMPL_MANAGER_PATH, SMPL_MANAGER_IFACE, &mgr)))
		return code;
	if ((code = ctl_list_units(c, &list))) {
		json_object_put(mgr);
		return code;
	}
	units = json_object_new_array();
	sessions = json_object_new_array();
	for (size_t i = 0; i < json_object_array_length(list); i++) {
		json_object *entry = json_object_array_get_idx(list, i), *u = NULL, *s;
		const char *path = j_str(entry, "path");
		const char *tail = strrchr(path, '/');

		if (c->unit && strcmp(j_str(entry, "serial"), c->unit) != 0 &&
		    strcmp(path, c->unit) != 0 && !(tail && strcmp(tail + 1, c->unit) == 0))
			continue;
		if ((code = load_unit(c, path, &u)))
			break;
		s = load_open_session(c, u);
		json_object_array_add(units, u);
		if (s)
			json_object_array_add(sessions, s);
	}
	if (!code && c->unit && json_object_array_length(units) == 0)
		code = ctl_error(c, CTL_EXIT_NO_UNIT, NULL, "no such unit: %s", c->unit);
	if (!code && c->json) {
		json_object *o = json_object_new_object();

		json_object_object_add(o, "manager", json_object_get(mgr));
		json_object_object_add(o, "units", json_object_get(units));
		json_object_object_add(o, "sessions", json_object_get(sessions));
		out_json(o, false);
		json_object_put(o);
	} else if (!code) {
		size_t n = json_object_array_length(units);

		printf("smplaserd %s (%s), cooldown %" PRIu64 " days, %zu unit%s\n",
		       j_str(mgr, "Version"), j_str(mgr, "State"),
		       j_u64(mgr, "CooldownDays"), n, n == 1 ? "" : "s");
		for (size_t i = 0; i < n; i++) {
			json_object *u = json_object_array_get_idx(units, i), *s = NULL;

			for (size_t k = 0; k < json_object_array_length(sessions); k++) {
				json_object *cand = json_object_array_get_idx(sessions, k);

				if (strcmp(j_str(cand, "path"), j_str(u, "Session")) == 0)
					s = cand;
			}
			printf("\n");
			print_unit_text(c, u, s);
		}
	}
	json_object_put(mgr);
	json_object_put(list);
	json_object_put(units);
	json_object_put(sessions);
	return code;
}

int verb_units(struct ctl *c, int argc, char **argv)
{
	json_object *list = NULL;
	int code;

	(void)argv;
	if ((code = want_args(c, argc, 0, "units")))
		return code;
	if ((code = ctl_list_units(c, &list)))
		return code;
	if (c->json) {
		out_json_field("units", list);
		return CTL_EXIT_DONE;
	}
	printf("%s%-20s %-16s %-12s %s%s\n", col(c, SGR_BOLD), "SERIAL", "MODEL",
	       "STATE", "PATH", col(c, SGR_RESET));
	for (size_t i = 0; i < json_object_array_length(list); i++) {
		json_object *u = json_object_array_get_idx(list, i);
		const char *state = j_str(u, "state");

		printf("%-20s %-16s %s%-12s%s %s\n", j_str(u, "serial"),
		       j_str(u, "model"), state_color(c, state), state,
		       col(c, SGR_RESET), j_str(u, "path"));
	}
	printf("%zu unit%s\n", json_object_array_length(list),
	       json_object_array_length(list) == 1 ? "" : "s");
	json_object_put(list);
	return CTL_EXIT_DONE;
}

int list_patches(struct ctl *c, json_object **out)
{
	sd_bus_message *reply = NULL;
	const char *name, *desc;
	int code, r;

	code = ctl_call(c, SMPL_MANAGER_PATH, SMPL_MANAGER_IFACE, "ListPatches",
			&reply, NULL);
	if (code)
		return code;
	*out = json_object_new_array();
	r = sd_bus_message_enter_container(reply, SD_BUS_TYPE_ARRAY, "(ss)");
	while (r > 0 && (r = sd_bus_message_read(reply, "(ss)", &name, &desc)) > 0) {
		json_object *p = json_object_new_object();

		json_object_object_add(p, "name", json_object_new_string(name));
		json_object_object_add(p, "description", json_object_new_string(desc));
		json_object_array_add(*out, p);
	}
	sd_bus_message_unref(reply);
	if (r < 0) {
		json_object_put(*out);
		return ctl_error(c, CTL_EXIT_FAILED, NULL,
				 "cannot read ListPatches' reply: %s", strerror(-r));
	}
	return CTL_EXIT_DONE;
}

int verb_patches(struct ctl *c, int argc, char **argv)
{
	json_object *list = NULL;
	int code;

	(void)argv;
	if ((code = want_args(c, argc, 0, "patches")))
		return code;
	if ((code = list_patches(c, &list)))
		return code;
	if (c->json) {
		out_json_field("patches", list);
		return CTL_EXIT_DONE;
	}
	printf("%s%-20s %s%s\n", col(c, SGR_BOLD), "PATCH", "DESCRIPTION",
	       col(c, SGR_RESET));
	for (size_t i = 0; i < json_object_array_length(list); i++) {
		json_object *p = json_object_array_get_idx(list, i);

		printf("%-20s %s\n", j_str(p, "name"), j_str(p, "description"));
	}
	json_object_put(list);
	return CTL_EXIT_DONE;
}

/* ---- check, history, export ---------------------------------------------- */

int check_patch(struct ctl *c, const char *patient, const char *patch,
		json_object **out)
{
	sd_bus_message *reply = NULL;
	const char *reason;
	uint64_t next;
	int code, r, eligible;

	code = ctl_call(c, SMPL_MANAGER_PATH, SMPL_MANAGER_IFACE, "CheckPatch",
			&reply, "ss", patient, patch);
	if (code)
		return code;
	r = sd_bus_message_read(reply, "bts", &eligible, &next, &reason);
	if (r < 0) {
		sd_bus_message_unref(reply);
		return ctl_error(c, CTL_EXIT_FAILED, NULL,
				 "cannot read CheckPatch's reply: %s", strerror(-r));
	}
	*out = json_object_new_object();
	json_object_object_add(*out, "patient", json_object_new_string(patient));
	json_object_object_add(*out, "patch", json_object_new_string(patch));
	json_object_object_add(*out, "eligible", json_object_new_boolean(eligible));
	json_object_object_add(*out, "next_eligible_usec",
			       json_object_new_uint64(next));
	json_object_object_add(*out, "reason", json_object_new_string(reason));
	sd_bus_message_unref(reply);
	return CTL_EXIT_DONE;
}

int verb_check(struct ctl *c, int argc, char **argv)
{
	json_object *res = NULL;
	int code;

	if ((code = want_args(c, argc, 2, "check PATIENT PATCH")))
		return code;
	if ((code = check_patch(c, argv[0], argv[1], &res)))
		return code;
	bool eligible = j_bool(res, "eligible");

	if (c->json) {
		out_json(res, false);
	} else if (eligible) {
		printf("%s%s%s: patch %s may be treated now%s%s\n", col(c, SGR_GREEN),
		       argv[0], col(c, SGR_RESET), argv[1],
		       *j_str(res, "reason") ? ": " : "", j_str(res, "reason"));
	} else {
		uint64_t next = j_u64(res, "next_eligible_usec");
		char when[64];

		fmt_time(next, when, sizeof(when));
		if (next)
			printf("%s%s%s: patch %s is not eligible before %s (%u days): %s\n",
			       col(c, SGR_RED), argv[0], col(c, SGR_RESET), argv[1],
			       when, days_until(next), j_str(res, "reason"));
		else
			printf("%s%s%s: patch %s may not be treated: %s\n",
			       col(c, SGR_RED), argv[0], col(c, SGR_RESET), argv[1],
			       j_str(res, "reason"));
	}
	json_object_put(res);
	/* Scripts may test eligibility: "not eligible" is a refusal. */
	return eligible ? CTL_EXIT_DONE : CTL_EXIT_REFUSED;
}

int load_history(struct ctl *c, const char *patient, json_object **out)
{
	sd_bus_message *reply = NULL;
	int code, r;

	code = ctl_call(c, SMPL_MANAGER_PATH, SMPL_MANAGER_IFACE, "History",
			&reply, "s", patient);
	if (code)
		return code;
	r = ctl_read_json(reply, out);
	sd_bus_message_unref(reply);
	if (r < 0)
		return ctl_error(c, CTL_EXIT_FAILED, NULL,
				 "cannot read History's reply: %s", strerror(-r));
	return CTL_EXIT_DONE;
}

static json_object *history_object(const char *patient, json_object *list)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "patient", json_object_new_string(patient));
	json_object_object_add(o, "treatments", list);
	return o;
}

int verb_history(struct ctl *c, int argc, char **argv)
{
	json_object *list = NULL;
	int code;

	if ((code = want_args(c, argc, 1, "history PATIENT")))
		return code;
	if ((code = load_history(c, argv[0], &list)))
		return code;
	if (c->json) {
		json_object *o = history_object(argv[0], list);

		out_json(o, false);
		json_object_put(o);
		return CTL_EXIT_DONE;
	}
	size_t n = json_object_array_length(list);

	printf("Patient %s%s%s: %zu treatment%s\n", col(c, SGR_BOLD), argv[0],
	       col(c, SGR_RESET), n, n == 1 ? "" : "s");
	if (n)
		printf("%s%-20s %-18s %-10s %7s %9s %-19s %-16s %-16s %s%s\n",
		       col(c, SGR_BOLD), "ARMED", "PATCH", "OUTCOME", "PULSES",
		       "J/CM2", "ENERGY MIN-MAX mJ", "UNIT", "WORKSTATION", "OPERATOR",
		       col(c, SGR_RESET));
	for (size_t i = 0; i < n; i++) {
		json_object *t = json_object_array_get_idx(list, i);
		char when[64], range[40];

		fmt_time(j_u64(t, "armed_usec"), when, sizeof(when));
		snprintf(range, sizeof(range), "%.1f-%.1f",
			 (double)j_u64(t, "energy_min_uj") / 1000.0,
			 (double)j_u64(t, "energy_max_uj") / 1000.0);
		printf("%-20s %-18s %-10s %7" PRIu64 " %9.2f %-19s %-16s %-16s %" PRIu64 "\n",
		       when, j_str(t, "patch"), j_str(t, "outcome"),
		       j_u64(t, "pulses"),
		       (double)j_u64(t, "fluence_mj_cm2") / 1000.0, range,
		       j_str(t, "unit"), j_str(t, "workstation"), j_u64(t, "operator_uid"));
	}
	json_object_put(list);
	return CTL_EXIT_DONE;
}

/* The History keys in the order of the API's documentation. */
static const char *const history_keys[] = {
	"id", "session", "patch", "unit", "firmware", "operator_uid", "outcome",
	"armed_usec", "end_usec", "pulses", "pulses_recorded", "wavelength_nm",
	"fluence_mj_cm2", "spot_um", "pulse_ps", "rate_mhz", "set_energy_uj",
	"energy_min_uj", "energy_max_uj", "workstation",
};
#define N_HISTORY_KEYS (sizeof(history_keys) / sizeof(history_keys[0]))

/* One CSV field (RFC 4180: quoted when it holds a comma, quote or newline). */
static void csv_field(const char *s, bool last)
{
	if (strpbrk(s, ",\"\r\n")) {
		putchar('"');
		for (; *s; s++) {
			if (*s == '"')
				putchar('"');
			putchar(*s);
		}
		putchar('"');
	} else {
		fputs(s, stdout);
	}
	putchar(last ? '\n' : ',');
}

static void export_csv(const char *patient, json_object *list)
{
	csv_field("patient", false);
	for (size_t k = 0; k < N_HISTORY_KEYS; k++)
		csv_field(history_keys[k], false);
	csv_field("armed_utc", false);
	csv_field("end_utc", true);
	for (size_t i = 0; i < json_object_array_length(list); i++) {
		json_object *t = json_object_array_get_idx(list, i);
		char when[64];

		csv_field(patient, false);
		for (size_t k = 0; k < N_HISTORY_KEYS; k++)
			csv_field(j_str(t, history_keys[k]), false);
		fmt_time(j_u64(t, "armed_usec"), when, sizeof(when));
		csv_field(when, false);
		fmt_time(j_u64(t, "end_usec"), when, sizeof(when));
		csv_field(when, true);
	}
}

/* The patient's clinical record as an HL7 FHIR R4 Bundle (fhir.c), on stdout or -o FILE. */
static int export_fhir(struct ctl *c, const char *patient)
{
	json_object *course = NULL, *bundle;
	char *clinic;
	FILE *f = stdout;
	int code;

	if (c->format)
		return usage_error(c, "--fhir and --format contradict each other%s", NULL);
	if ((code = load_course(c, patient, &course)))
		return code;
	clinic = load_clinic_name(c);
	bundle = fhir_bundle(patient, clinic, course, now_usec());
	if (c->output && strcmp(c->output, "-") != 0 && !(f = fopen(c->output, "w")))
		code = ctl_error(c, CTL_EXIT_FAILED, NULL, "cannot write %s: %s", c->output,
				 strerror(errno));
	if (!code) {
		fputs(json_object_to_json_string_ext(bundle, JSON_C_TO_STRING_PRETTY |
						     JSON_C_TO_STRING_SPACED |
						     JSON_C_TO_STRING_NOSLASHESCAPE), f);
		fputc('\n', f);
		if (f != stdout && fclose(f) != 0)
			code = ctl_error(c, CTL_EXIT_FAILED, NULL, "cannot write %s: %s", c->output,
					 strerror(errno));
		else if (f != stdout && !c->json)
			printf("Wrote %s: an HL7 FHIR R4 Bundle of patient %s.\n", c->output,
			       patient);
	}
	json_object_put(bundle);
	json_object_put(course);
	free(clinic);
	return code;
}

int verb_export(struct ctl *c, int argc, char **argv)
{
	json_object *list = NULL;
	const char *format = c->format ? c->format : (c->json ? "json" : NULL);
	int code;

	if ((code = want_args(c, argc, 1, "export PATIENT --format csv|json | --fhir")))
		return code;
	if (c->fhir)
		return export_fhir(c, argv[0]);
	if (!format)
		return usage_error(c, "export needs --format csv or --format json%s", NULL);
	if (strcmp(format, "csv") != 0 && strcmp(format, "json") != 0)
		return usage_error(c, "unknown export format '%s': use csv or json",
				   format);
	if (c->json && strcmp(format, "csv") == 0)
		return usage_error(c, "--json and --format csv contradict each other%s",
				   NULL);
	if ((code = load_history(c, argv[0], &list)))
		return code;
	if (strcmp(format, "json") == 0) {
		json_object *o = history_object(argv[0], list);

		out_json(o, false);
		json_object_put(o);
	} else {
		export_csv(argv[0], list);
		json_object_put(list);
	}
	return CTL_EXIT_DONE;
}

/* ---- session ------------------------------------------------------------- */

static int show_session(struct ctl *c, const char *unit_path, const char *sp)
{
	json_object *u = NULL, *s = NULL;
	int code = load_unit(c, unit_path, &u);

	if (!code && sp)
		code = load_session(c, sp, &s);
	if (code) {
		json_object_put(u);
		return code;
	}
	if (c->json) {
		json_object *o = json_object_new_object();

		json_object_object_add(o, "unit", u);
		json_object_object_add(o, "session", s);
		out_json(o, false);
		json_object_put(o);
		return CTL_EXIT_DONE;
	}
	if (s)
		print_session_text(c, s);
	json_object_put(u);
	json_object_put(s);
	return CTL_EXIT_DONE;
}

static int session_start(struct ctl *c, const char *patient)
{
	char *unit = NULL, *sp = NULL;
	int code;

	if ((code = ctl_pick_unit(c, &unit)))
		return code;
	/* The keeper opens it and owns it (see keeper.c). */
	code = session_keeper_start(c, unit, patient, &sp);
	if (!code) {
		if (!c->json)
			printf("Session %s opened for patient %s.\n", sp, patient);
		code = show_session(c, unit, sp);
	}
	free(sp);
	free(unit);
	return code;
}

/* SelectPatch, ConfirmEyewear or End on the unit's open session. */
static int session_act(struct ctl *c, const char *member, const char *types,
		       const char *arg, const char *done_fmt)
{
	char *unit = NULL, *sp = NULL;
	int code = ctl_pick_session(c, &unit, &sp);

	if (!code)
		code = types ? ctl_call(c, sp, SMPL_SESSION_IFACE, member, NULL,
					types, arg)
			     : ctl_call(c, sp, SMPL_SESSION_IFACE, member, NULL, NULL);
	if (!code) {
		if (!c->json)
			printf(done_fmt, arg ? arg : "");
		/* After End the session object is gone: show the unit alone. */
		code = strcmp(member, "End") == 0 ? (c->json ? show_unit(c, unit) : 0)
						  : show_session(c, unit, sp);
	}
	free(unit);
	free(sp);
	return code;
}

static int disarm_for_end(struct ctl *c, const char *unit);

/* The endpoint of --patch, else of the patches that need one, else of the selected patch. */
static int session_endpoint(struct ctl *c, const char *sp, const char *endpoint)
{
	json_object *missing = NULL, *patch = NULL;
	int code;

	if (c->patch)
		return session_record_endpoints(c, sp, endpoint, c->patch, c->notes);
	if ((code = ctl_get_property(c, sp, SMPL_SESSION_IFACE, "EndpointsMissing", &missing)))
		return code;
	if (json_object_array_length(missing) > 0) {
		json_object_put(missing);
		return session_record_endpoints(c, sp, endpoint, NULL, c->notes);
	}
	json_object_put(missing);
	if ((code = ctl_get_property(c, sp, SMPL_SESSION_IFACE, "Patch", &patch)))
		return code;
	if (!json_object_get_string(patch)[0])
		code = usage_error(c, "session endpoint: no patch selected: use --patch PATCH%s",
				   NULL);
	else
		code = session_record_endpoints(c, sp, endpoint, json_object_get_string(patch),
						c->notes);
	json_object_put(patch);
	return code;
}

int verb_session(struct ctl *c, int argc, char **argv)
{
	const char *sub = argc > 0 ? argv[0] : "show";
	char *unit = NULL, *sp = NULL;
	int code;

	if (strcmp(sub, "start") == 0) {
		if ((code = want_args(c, argc, 2, "session start PATIENT")))
			return code;
		return session_start(c, argv[1]);
	}
	if (strcmp(sub, "patch") == 0) {
		if ((code = want_args(c, argc, 2, "session patch PATCH")))
			return code;
		return session_act(c, "SelectPatch", "s", argv[1],
				   "Patch %s selected.\n");
	}
	if (strcmp(sub, "eyewear") == 0) {
		if ((code = want_args(c, argc, 1, "session eyewear")))
			return code;
		return session_act(c, "ConfirmEyewear", NULL, NULL,
				   "Protective eyewear confirmed for this session.%s\n");
	}
	if (strcmp(sub, "end") == 0) {
		if ((code = want_args(c, argc, 1, "session end [--endpoint ENDPOINT] [--notes TEXT]")))
			return code;
		code = ctl_pick_session(c, &unit, &sp);
		if (!code)
			code = disarm_for_end(c, unit);
		if (!code)
			code = session_end_documented(c, unit, sp);	/* the endpoints first */
		if (!code && !c->json)
			printf("Session ended.\n");
		else if (!code)
			code = show_unit(c, unit);
		free(unit);
		free(sp);
		return code;
	}
	if (strcmp(sub, "endpoint") == 0) {
		if ((code = want_args(c, argc, 2, "session endpoint ENDPOINT [--patch PATCH] "
				      "[--notes TEXT]")))
			return code;
		code = ctl_pick_session(c, &unit, &sp);
		if (!code)
			code = session_endpoint(c, sp, argv[1]);
		if (!code && c->json)
			code = show_session(c, unit, sp);
		free(unit);
		free(sp);
		return code;
	}
	if (strcmp(sub, "show") == 0) {
		if ((code = want_args(c, argc, argc ? 1 : 0, "session show")))
			return code;
		code = ctl_pick_session(c, &unit, &sp);
		if (!code)
			code = show_session(c, unit, sp);
		free(unit);
		free(sp);
		return code;
	}
	return usage_error(c, "unknown session verb '%s': use start, patch, "
			   "eyewear, endpoint, end or show", sub);
}

/* ---- params -------------------------------------------------------------- */

static int params_show(struct ctl *c)
{
	json_object *p = NULL;
	char *unit = NULL;
	char buf[256];
	int code = ctl_pick_unit(c, &unit);

	if (!code)
		code = ctl_get_property(c, unit, SMPL_UNIT_IFACE, "Parameters", &p);
	if (!code && c->json) {
		json_object *o = json_object_new_object();

		json_object_object_add(o, "unit", json_object_new_string(unit));
		json_object_object_add(o, "Parameters", json_object_get(p));
		out_json(o, false);
		json_object_put(o);
	} else if (!code) {
		fmt_parameters(p, buf, sizeof(buf));
		printf("%s\n", buf);
		json_object_object_foreach(p, key, val)
			printf("  %-16s %s\n", key, json_object_get_string(val));
	}
	json_object_put(p);
	free(unit);
	return code;
}

/* "key=123" -> key, value; refuses anything but a decimal uint32. */
static bool parse_assignment(const char *arg, char *key, size_t key_len,
			     uint32_t *value)
{
	const char *eq = strchr(arg, '=');
	char *end;
	unsigned long long v;

	if (!eq || eq == arg || (size_t)(eq - arg) >= key_len || eq[1] < '0' ||
	    eq[1] > '9')
		return false;
	memcpy(key, arg, (size_t)(eq - arg));
	key[eq - arg] = '\0';
	errno = 0;
	v = strtoull(eq + 1, &end, 10);
	if (errno || *end || v > UINT32_MAX)
		return false;
	*value = (uint32_t)v;
	return true;
}

static int params_set(struct ctl *c, int argc, char **argv)
{
	sd_bus_message *m = NULL;
	sd_bus *bus;
	char *unit = NULL;
	int code, r;

	if (argc == 0)
		return usage_error(c, "usage: params set KEY=VALUE...%s", NULL);
	/* Check the whole command line before touching the unit. */
	for (int i = 0; i < argc; i++) {
		char key[64];
		uint32_t v;

		if (!parse_assignment(argv[i], key, sizeof(key), &v))
			return usage_error(c, "'%s' is not KEY=VALUE with VALUE a whole "
					   "number (see 'params show' for the keys "
					   "and units)", argv[i]);
	}
	if ((code = ctl_pick_unit(c, &unit)))
		return code;
	bus = ctl_bus_for(c, unit, SMPL_UNIT_IFACE, "SetParameters");
	r = sd_bus_message_new_method_call(bus, &m, bus == c->bus ? SMPL_BUS_NAME : NULL, unit,
					   SMPL_UNIT_IFACE, "SetParameters");
	if (r >= 0)
		r = sd_bus_message_open_container(m, SD_BUS_TYPE_ARRAY, "{sv}");
	for (int i = 0; r >= 0 && i < argc; i++) {
		char key[64];
		uint32_t v;

		parse_assignment(argv[i], key, sizeof(key), &v);
		r = sd_bus_message_append(m, "{sv}", key, "u", v);
	}
	if (r >= 0)
		r = sd_bus_message_close_container(m);
	if (r < 0)
		code = ctl_error(c, CTL_EXIT_FAILED, NULL,
				 "cannot build SetParameters: %s", strerror(-r));
	else
		code = ctl_call_message(c, m, NULL);
	sd_bus_message_unref(m);
	free(unit);
	if (code)
		return code;
	return params_show(c);
}

int verb_params(struct ctl *c, int argc, char **argv)
{
	if (argc == 0 || strcmp(argv[0], "show") == 0) {
		if (argc > 1)
			return usage_error(c, "usage: params show%s", NULL);
		return params_show(c);
	}
	if (strcmp(argv[0], "set") == 0)
		return params_set(c, argc - 1, argv + 1);
	return usage_error(c, "unknown params verb '%s': use show or set", argv[0]);
}

/* ---- arm, disarm, ack ---------------------------------------------------- */

/*
 * Wait out the emission delay: until the unit is ready (or emitting), or it
 * is plain that arming stopped (a fault, or the session is no longer armed).
 * The unit may still say "standby" for a moment after Arm returns.
 */
static int wait_armed(struct ctl *c, const char *unit, char *state, size_t len)
{
	struct timespec tick = { 0, 50 * 1000000L };

	for (int i = 0; i < 300 && !ctl_interrupted; i++) {
		json_object *u = NULL, *s = NULL;
		int code = load_unit(c, unit, &u);
		bool armed_session;

		if (code)
			return code;
		snprintf(state, len, "%s", j_str(u, "State"));
		s = load_open_session(c, u);
		armed_session = s && strcmp(j_str(s, "State"), "armed") == 0;
		bool fault = *j_str(u, "LatchedFault") != '\0';

		json_object_put(u);
		json_object_put(s);
		if (strcmp(state, "ready") == 0 || strcmp(state, "emitting") == 0 ||
		    fault || !armed_session)
			return CTL_EXIT_DONE;
		nanosleep(&tick, NULL);
	}
	return CTL_EXIT_DONE;
}

static int unit_act(struct ctl *c, const char *member, const char *done)
{
	char *unit = NULL;
	int code = ctl_pick_unit(c, &unit);

	if (!code)
		code = ctl_call(c, unit, SMPL_UNIT_IFACE, member, NULL, NULL);
	if (!code && !c->json && done)
		printf("%s\n", done);
	if (!code)
		code = show_unit(c, unit);
	free(unit);
	return code;
}

int verb_arm(struct ctl *c, int argc, char **argv)
{
	char *unit = NULL;
	char state[32] = "";
	int code;

	(void)argv;
	if ((code = want_args(c, argc, 0, "arm [--no-wait]")))
		return code;
	if ((code = ctl_pick_unit(c, &unit)))
		return code;
	code = ctl_call(c, unit, SMPL_UNIT_IFACE, "Arm", NULL, NULL);
	if (!code && !c->no_wait) {
		if (!c->json)
			printf("Arming: emission delay...\n");
		fflush(stdout);
		code = wait_armed(c, unit, state, sizeof(state));
		if (!code && strcmp(state, "ready") != 0 &&
		    strcmp(state, "emitting") != 0) {
			json_object *f = NULL;

			ctl_get_property(c, unit, SMPL_UNIT_IFACE, "LatchedFault", &f);
			code = ctl_error(c, CTL_EXIT_FAILED, NULL,
					 "arming stopped: the unit is %s%s%s", state,
					 f && *json_object_get_string(f) ? ", fault " : "",
					 f ? json_object_get_string(f) : "");
			json_object_put(f);
		} else if (!code && !c->json) {
			printf("%sREADY%s: the laser fires while the footswitch is held.\n",
			       col(c, SGR_BOLD ";" SGR_RED), col(c, SGR_RESET));
		}
	}
	if (!code)
		code = show_unit(c, unit);
	free(unit);
	return code;
}

/* Wait (up to 1 s) until the unit no longer says it is armed. */
static void wait_disarmed(struct ctl *c, const char *unit)
{
	struct timespec tick = { 0, 20 * 1000000L };

	for (int i = 0; i < 50; i++) {
		json_object *st = NULL;
		bool armed;

		if (ctl_get_property(c, unit, SMPL_UNIT_IFACE, "State", &st))
			return;
		armed = strcmp(json_object_get_string(st), "arming") == 0 ||
			strcmp(json_object_get_string(st), "ready") == 0 ||
			strcmp(json_object_get_string(st), "emitting") == 0;
		json_object_put(st);
		if (!armed)
			return;
		nanosleep(&tick, NULL);
	}
}

/*
 * End disarms the unit anyway; the endpoint is the tissue response seen once
 * the treatment has ended (the daemon refuses it while armed): so a unit
 * still armed is disarmed first.  Disarm is open to every caller.
 */
static int disarm_for_end(struct ctl *c, const char *unit)
{
	json_object *st = NULL;
	bool armed;
	int code;

	if (ctl_get_property(c, unit, SMPL_UNIT_IFACE, "State", &st))
		return 0;		/* End says what is wrong */
	armed = strcmp(json_object_get_string(st), "arming") == 0 ||
		strcmp(json_object_get_string(st), "ready") == 0 ||
		strcmp(json_object_get_string(st), "emitting") == 0;
	json_object_put(st);
	if (!armed)
		return 0;
	code = ctl_call(c, unit, SMPL_UNIT_IFACE, "Disarm", NULL, NULL);
	if (!code)
		wait_disarmed(c, unit);
	return code;
}

int verb_disarm(struct ctl *c, int argc, char **argv)
{
	char *unit = NULL;
	int code;

	(void)argv;
	if ((code = want_args(c, argc, 0, "disarm")))
		return code;
	if ((code = ctl_pick_unit(c, &unit)))
		return code;
	code = ctl_call(c, unit, SMPL_UNIT_IFACE, "Disarm", NULL, NULL);
	if (!code) {
		wait_disarmed(c, unit);
		if (!c->json)
			printf("Disarmed.\n");
		code = show_unit(c, unit);
	}
	free(unit);
	return code;
}

int verb_ack(struct ctl *c, int argc, char **argv)
{
	int code;

	(void)argv;
	if ((code = want_args(c, argc, 0, "ack")))
		return code;
	return unit_act(c, "AcknowledgeFault", "Fault acknowledged.");
}
