/* SPDX-License-Identifier: MIT */
/* smplaserctl: command line, verb table and help. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl.h"

#ifndef SMPL_VERSION
#define SMPL_VERSION "0.1"
#endif

struct verb {
	const char *name;
	int (*run)(struct ctl *c, int argc, char **argv);
	bool may_ask;		/* may need polkit authorization */
};

static const struct verb verbs[] = {
	{ "status", verb_status, false },
	{ "units", verb_units, false },
	{ "watch", verb_watch, false },
	{ "patches", verb_patches, false },
	{ "check", verb_check, true },
	{ "history", verb_history, true },
	{ "session", verb_session, true },
	{ "params", verb_params, true },
	{ "arm", verb_arm, true },
	{ "disarm", verb_disarm, true },
	{ "ack", verb_ack, true },
	{ "map", verb_map, true },
	{ "export", verb_export, true },
	{ "course", verb_course, true },
	{ "followup", verb_followup, true },
	{ "clear-hold", verb_clear_hold, true },
	{ "report", verb_report, true },
	{ "sim", verb_sim, true },
	{ "records", verb_records, true },
};

static void help(const char *prog)
{
	printf("%s [OPTIONS...] [VERB] [ARGS...]\n\n"
	       "Operate the smplaser laser units through smplaserd.\n\n"
	       "Verbs:\n"
	       "  status                      Units, state, interlocks, session (default)\n"
	       "  units                       List the connected units\n"
	       "  watch                       Follow the units live (Ctrl-C stops)\n"
	       "  patches                     List the scalp patches\n"
	       "  check PATIENT PATCH         May PATCH of PATIENT be treated now?\n"
	       "  history PATIENT             PATIENT's treatments, oldest first\n"
	       "  session start PATIENT       Open a treatment session on the unit\n"
	       "  session patch PATCH         Select the patch of the open session\n"
	       "  session eyewear             Confirm everyone wears protective eyewear\n"
	       "  session endpoint ENDPOINT [--patch PATCH] [--notes TEXT]\n"
	       "                              Record the tissue response seen when the\n"
	       "                              patch's treatment ended: whitening,\n"
	       "                              partial-whitening, no-whitening\n"
	       "  session end [--endpoint ENDPOINT] [--notes TEXT]\n"
	       "                              End the open session; the endpoint of each\n"
	       "                              treated patch first (asked on a terminal)\n"
	       "  session show                Show the open session\n"
	       "  params show                 Show the treatment parameters\n"
	       "  params set KEY=VALUE...     Set parameters (wavelength_nm, fluence_mj_cm2,\n"
	       "                              spot_um, pulse_ps, rate_mhz)\n"
	       "  arm                         Arm the unit (waits out the emission delay)\n"
	       "  disarm                      Disarm the unit\n"
	       "  ack                         Acknowledge a latched fault\n"
	       "  map PATIENT                 Draw the scalp coloured by each patch's status\n"
	       "                              (--svg FILE, -o FILE.pdf|.png|.svg: a picture)\n"
	       "  course PATIENT              Each patch's course: treatments, endpoints,\n"
	       "                              follow-ups, adverse events, next date\n"
	       "  followup PATIENT PATCH [--pigment PCT] [--redness resolved|unresolved]\n"
	       "           [--adverse LIST] [--notes TEXT]\n"
	       "                              Record a follow-up visit's findings\n"
	       "  clear-hold PATIENT PATCH [--notes TEXT]\n"
	       "                              Review: clear the hold an adverse event put\n"
	       "  report PATIENT -o FILE      The report the patient keeps (.pdf .png .svg)\n"
	       "  export PATIENT --format csv|json | --fhir [-o FILE]\n"
	       "                              PATIENT's records for the clinic (FHIR R4)\n"
	       "  sim footswitch press|release|hold SECONDS\n"
	       "  sim door open|close         Simulated units: a technician's hands\n"
	       "  sim estop press|release\n"
	       "  sim key on|off\n"
	       "  sim interlock NAME open|close\n"
	       "  sim drift PPM               Measured energy off by PPM parts per million\n"
	       "  sim fault NAME | sim clear-fault | sim rtc-skew SECONDS\n"
	       "  sim calibration valid|expired\n"
	       "  sim unplug | sim replug\n"
	       "  records backup FILE         A consistent copy of the records, made while\n"
	       "                              in use, then verified\n"
	       "  records verify [FILE]       Check a copy (or the records in use) against\n"
	       "                              their hash chain (--head SEQ:HASH: against a\n"
	       "                              chain head from the journal)\n"
	       "  records export --since DATE [--json|--csv]\n"
	       "                              Treatments, pulse summaries and audit records\n"
	       "                              since DATE (UTC) for an audit, on stdout\n\n"
	       "Options:\n"
	       "  -h --help                   Show this help\n"
	       "     --version                Show the version\n"
	       "     --json                   Print JSON with the D-Bus API's field names\n"
	       "     --system                 Talk to the daemon on the system bus (default)\n"
	       "     --session, --user        Talk to the daemon on the session bus\n"
	       "  -u --unit SERIAL            The unit to act on when there are several\n"
	       "     --no-ask-password        Do not ask for a password (polkit)\n"
	       "     --svg FILE               map: write an SVG picture to FILE\n"
	       "     --format csv|json        export: the output format\n"
	       "     --notes TEXT             session end, session endpoint, followup,\n"
	       "                              clear-hold: notes for the record\n"
	       "     --endpoint ENDPOINT      session end: the endpoint of the treated patch\n"
	       "     --patch PATCH            session endpoint: the patch (default: the\n"
	       "                              session's)\n"
	       "     --pigment PCT            followup: pigment remaining, 0-100%%\n"
	       "     --redness resolved|unresolved\n"
	       "                              followup: whether the redness resolved\n"
	       "     --adverse LIST           followup: adverse events, comma-separated\n"
	       "  -o --output FILE            report, map, export: write FILE\n"
	       "     --fhir                   export: an HL7 FHIR R4 Bundle (JSON)\n"
	       "     --timeout SECONDS        watch: stop after SECONDS\n"
	       "     --no-wait                arm: return without waiting for READY\n"
	       "     --head SEQ:HASH          records verify: the chain head logged earlier\n"
	       "     --since DATE             records export: from this UTC date or time\n"
	       "     --csv                    records export: CSV (the default; --json: JSON)\n\n"
	       "Exit status: 0 done, 1 failed, 2 usage, 3 not authorized,\n"
	       "4 refused by a safety rule, 5 no such unit or no daemon.\n"
	       "See smplaserctl(1).\n", prog);
}

enum {
	OPT_VERSION = 0x100, OPT_JSON, OPT_SYSTEM, OPT_SESSION, OPT_NO_ASK,
	OPT_SVG, OPT_FORMAT, OPT_NOTES, OPT_TIMEOUT, OPT_NO_WAIT, OPT_HEAD, OPT_SINCE, OPT_CSV,
	OPT_ENDPOINT, OPT_PATCH, OPT_PIGMENT, OPT_REDNESS, OPT_ADVERSE, OPT_FHIR,
};

static const struct option options[] = {
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, OPT_VERSION },
	{ "json", no_argument, NULL, OPT_JSON },
	{ "system", no_argument, NULL, OPT_SYSTEM },
	{ "session", no_argument, NULL, OPT_SESSION },
	{ "user", no_argument, NULL, OPT_SESSION },
	{ "unit", required_argument, NULL, 'u' },
	{ "no-ask-password", no_argument, NULL, OPT_NO_ASK },
	{ "svg", required_argument, NULL, OPT_SVG },
	{ "format", required_argument, NULL, OPT_FORMAT },
	{ "notes", required_argument, NULL, OPT_NOTES },
	{ "timeout", required_argument, NULL, OPT_TIMEOUT },
	{ "no-wait", no_argument, NULL, OPT_NO_WAIT },
	{ "head", required_argument, NULL, OPT_HEAD },
	{ "since", required_argument, NULL, OPT_SINCE },
	{ "csv", no_argument, NULL, OPT_CSV },
	{ "endpoint", required_argument, NULL, OPT_ENDPOINT },
	{ "patch", required_argument, NULL, OPT_PATCH },
	{ "pigment", required_argument, NULL, OPT_PIGMENT },
	{ "redness", required_argument, NULL, OPT_REDNESS },
	{ "adverse", required_argument, NULL, OPT_ADVERSE },
	{ "output", required_argument, NULL, 'o' },
	{ "fhir", no_argument, NULL, OPT_FHIR },
	{ NULL, 0, NULL, 0 },
};

/* Returns -1 to go on, or an exit code. */
static int parse_options(struct ctl *c, int argc, char **argv)
{
	int opt;
	char *end;

	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":hu:o:", options, NULL)) >= 0) {
		switch (opt) {
		case 'h':
			help(c->prog);
			return CTL_EXIT_DONE;
		case OPT_VERSION:
			printf("smplaserctl %s\n", SMPL_VERSION);
			return CTL_EXIT_DONE;
		case OPT_JSON: c->json = true; break;
		case OPT_SYSTEM: c->user_bus = false; break;
		case OPT_SESSION: c->user_bus = true; break;
		case 'u': c->unit = optarg; break;
		case OPT_NO_ASK: c->ask_password = false; break;
		case OPT_SVG: c->svg = optarg; break;
		case OPT_FORMAT: c->format = optarg; break;
		case OPT_NOTES: c->notes = optarg; break;
		case OPT_NO_WAIT: c->no_wait = true; break;
		case OPT_HEAD: c->head = optarg; break;
		case OPT_SINCE: c->since = optarg; break;
		case OPT_CSV: c->csv = true; break;
		case OPT_ENDPOINT: c->endpoint = optarg; break;
		case OPT_PATCH: c->patch = optarg; break;
		case OPT_REDNESS: c->redness = optarg; break;
		case OPT_ADVERSE: c->adverse = optarg; break;
		case 'o': c->output = optarg; break;
		case OPT_FHIR: c->fhir = true; break;
		case OPT_PIGMENT: {
			long v = strtol(optarg, &end, 10);

			if (*end || end == optarg || v < 0 || v > 100)
				return ctl_error(c, CTL_EXIT_USAGE, NULL,
						 "--pigment takes a percentage, 0-100");
			c->pigment = (int)v;
			break;
		}
		case OPT_TIMEOUT:
			c->timeout_s = strtod(optarg, &end);
			/* inf, nan and 1e300 are numbers to strtod(), not a deadline */
			if (*end || end == optarg || !(c->timeout_s > 0) ||
			    !(c->timeout_s <= WATCH_TIMEOUT_MAX_S))
				return ctl_error(c, CTL_EXIT_USAGE, NULL,
						 "--timeout takes a number of seconds, > 0 and "
						 "at most %d (a year)", WATCH_TIMEOUT_MAX_S);
			break;
		case ':':
			return ctl_error(c, CTL_EXIT_USAGE, NULL,
					 "option %s needs a value (see '%s --help')",
					 argv[optind - 1], c->prog);
		default:
			return ctl_error(c, CTL_EXIT_USAGE, NULL,
					 "unknown option %s (see '%s --help')",
					 argv[optind - 1], c->prog);
		}
	}
	return -1;
}

int main(int argc, char **argv)
{
	struct ctl c = { .ask_password = true, .prog = "smplaserctl", .pigment = -1 };
	const struct verb *verb = NULL;
	const char *name;
	int code;

	c.tty = isatty(STDOUT_FILENO);
	c.color = c.tty && !getenv("NO_COLOR") &&
		  !(getenv("TERM") && strcmp(getenv("TERM"), "dumb") == 0);
	code = parse_options(&c, argc, argv);
	if (code >= 0)
		return code;
	if (c.json)
		c.color = false;
	name = optind < argc ? argv[optind++] : "status";
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
		if (strcmp(verbs[i].name, name) == 0)
			verb = &verbs[i];
	if (!verb)
		return ctl_error(&c, CTL_EXIT_USAGE, NULL,
				 "unknown verb '%s' (see '%s --help')", name, c.prog);
	if (verb->run == verb_records && records_offline(argc - optind, argv + optind))
		return verb->run(&c, argc - optind, argv + optind);
	if ((code = ctl_connect(&c)))
		return code;
	ctl_catch_signals();
	if (verb->may_ask)
		ctl_polkit_agent_open(&c);
	code = verb->run(&c, argc - optind, argv + optind);
	ctl_polkit_agent_close();
	ctl_disconnect(&c);
	return code;
}
