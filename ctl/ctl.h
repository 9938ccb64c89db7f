/* SPDX-License-Identifier: MIT */
/*
 * smplaserctl: the technician's command-line tool for smplaserd.
 *
 * Every verb reads the daemon's D-Bus API (data/org.smplaser.Laser1.xml)
 * into json-c objects that keep the API's field names, then prints them
 * either as JSON (--json) or as text for people.  Verbs return one of the
 * documented exit codes below.
 */
#ifndef SMPLASER_CTL_H
#define SMPLASER_CTL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

#include <json-c/json.h>
#include <systemd/sd-bus.h>

#define SMPL_BUS_NAME		"org.smplaser.Laser1"
#define SMPL_MANAGER_PATH	"/org/smplaser/Laser1"
#define SMPL_MANAGER_IFACE	"org.smplaser.Laser1.Manager"
#define SMPL_UNIT_IFACE		"org.smplaser.Laser1.Unit"
#define SMPL_SESSION_IFACE	"org.smplaser.Laser1.Session"
#define SMPL_SIM_IFACE		"org.smplaser.Laser1.Simulator"
#define SMPL_ERR_PREFIX		"org.smplaser.Laser1.Error."

/* Documented exit codes (smplaserctl(1), EXIT STATUS). */
enum ctl_exit {
	CTL_EXIT_DONE = 0,		/* done */
	CTL_EXIT_FAILED = 1,		/* failed */
	CTL_EXIT_USAGE = 2,		/* bad command line or argument */
	CTL_EXIT_NOT_AUTHORIZED = 3,	/* polkit or the bus said no */
	CTL_EXIT_REFUSED = 4,		/* a safety rule refused it */
	CTL_EXIT_NO_UNIT = 5,		/* no such unit, or no daemon */
};

/* What the command line chose, and the connection. */
struct ctl {
	sd_bus *bus;
	sd_bus *keeper_bus;	/* to the session keeper, once a call went there */
	bool json;		/* --json */
	bool user_bus;		/* --session (--user) */
	bool ask_password;	/* not --no-ask-password */
	bool color;		/* stdout is a terminal and NO_COLOR is unset */
	bool tty;		/* stdout is a terminal */
	const char *unit;	/* --unit, or NULL */
	const char *svg;	/* map --svg FILE */
	const char *format;	/* export --format */
	const char *notes;	/* session end --notes */
	const char *head;	/* records verify --head SEQ:HASH */
	const char *since;	/* records export --since DATE */
	bool csv;		/* records export --csv */
	double timeout_s;	/* watch --timeout, 0: until interrupted */
#define WATCH_TIMEOUT_MAX_S	(365 * 24 * 3600)
	bool no_wait;		/* arm --no-wait */
	const char *prog;	/* argv[0] basename, for messages */
	/* the clinical record (issue 16) */
	const char *endpoint;	/* session end/endpoint --endpoint */
	const char *patch;	/* session endpoint --patch */
	int pigment;		/* followup --pigment PCT, -1 unset */
	const char *redness;	/* followup --redness resolved|unresolved */
	const char *adverse;	/* followup --adverse LIST */
	const char *output;	/* report/map/export -o FILE */
	bool fhir;		/* export --fhir */
};

/* ---- bus.c: connection, calls, errors ---- */

/* Connect to the bus the options chose; on failure prints why, returns exit code. */
int ctl_connect(struct ctl *c);
void ctl_disconnect(struct ctl *c);

/*
 * Calls a method on the daemon over @bus.  Returns CTL_EXIT_DONE with *reply
 * set (may be NULL if not wanted), or prints the daemon's message and
 * returns the exit code that fits the error.
 */
int ctl_call_va(struct ctl *c, sd_bus *bus, const char *path, const char *iface,
		const char *member, sd_bus_message **reply, const char *types, va_list ap);
/* The same with a message the caller filled in (for a{sv} arguments). */
int ctl_call_message(struct ctl *c, sd_bus_message *m, sd_bus_message **reply);

/* Prints an error (and {"error":...} on stdout with --json); returns @code. */
int ctl_error(struct ctl *c, int code, const char *name, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* The exit code for a D-Bus error name. */
int ctl_exit_for_error(const char *name);

/* All properties of @iface on @path as a JSON object (D-Bus names). */
int ctl_get_all(struct ctl *c, const char *path, const char *iface,
		json_object **out);
/* One property. */
int ctl_get_property(struct ctl *c, const char *path, const char *iface,
		     const char *name, json_object **out);

/* The next complete value of @m as JSON (variants unwrapped, a{..} -> object). */
int ctl_read_json(sd_bus_message *m, json_object **out);

/* ListUnits as a JSON array of {path, serial, model, state}. */
int ctl_list_units(struct ctl *c, json_object **out);
/*
 * The unit the verb acts on: --unit (serial, object-path tail or path), or
 * the only unit.  Writes its object path (caller frees).
 */
int ctl_pick_unit(struct ctl *c, char **path);
/* The open session of the picked unit (its Session property), or NoSession. */
int ctl_pick_session(struct ctl *c, char **unit_path, char **session_path);

/* Start / stop a polkit text agent when that makes sense (like systemctl). */
void ctl_polkit_agent_open(struct ctl *c);
void ctl_polkit_agent_close(void);
/* In a forked child: the parent's agent is the parent's to stop. */
void ctl_polkit_agent_forget(void);

/* ---- out.c: output helpers ---- */

/* Prints @obj as pretty JSON on stdout (one line per object with @compact). */
void out_json(json_object *obj, bool compact);
/* Prints {"@key": @value} and drops @value (its reference is taken). */
void out_json_field(const char *key, json_object *value);
/* SGR colour if c->color, else "". */
const char *col(const struct ctl *c, const char *sgr);
#define SGR_RESET	"0"
#define SGR_BOLD	"1"
#define SGR_RED		"31"
#define SGR_GREEN	"32"
#define SGR_YELLOW	"33"
#define SGR_BLUE	"34"
#define SGR_GREY	"90"

/* Accessors that tolerate a missing key (return "" / 0 / false). */
const char *j_str(json_object *o, const char *key);
uint64_t j_u64(json_object *o, const char *key);
int64_t j_i64(json_object *o, const char *key);
bool j_bool(json_object *o, const char *key);

/* "2026-11-25 22:04 UTC" from UTC microseconds (0 -> "never"). */
void fmt_time(uint64_t usec, char *buf, size_t len);
/* "2026-11-25" from UTC microseconds. */
void fmt_date(uint64_t usec, char *buf, size_t len);
/* Days (rounded up) from now until @usec; 0 when past. */
unsigned int days_until(uint64_t usec);
/* Wall clock now in UTC microseconds. */
uint64_t now_usec(void);

/* Colour for a unit state (green: safe, yellow: arming, red: ready/emitting/fault). */
const char *state_color(const struct ctl *c, const char *state);
/* One text line for a unit's Parameters. */
void fmt_parameters(json_object *params, char *buf, size_t len);

/* ---- verbs (one function per verb; argc/argv after the verb) ---- */
int verb_status(struct ctl *c, int argc, char **argv);
int verb_units(struct ctl *c, int argc, char **argv);
int verb_patches(struct ctl *c, int argc, char **argv);
int verb_check(struct ctl *c, int argc, char **argv);
int verb_history(struct ctl *c, int argc, char **argv);
int verb_export(struct ctl *c, int argc, char **argv);
int verb_session(struct ctl *c, int argc, char **argv);
int verb_params(struct ctl *c, int argc, char **argv);
int verb_arm(struct ctl *c, int argc, char **argv);
int verb_disarm(struct ctl *c, int argc, char **argv);
int verb_ack(struct ctl *c, int argc, char **argv);
int verb_watch(struct ctl *c, int argc, char **argv);
int verb_map(struct ctl *c, int argc, char **argv);
int verb_sim(struct ctl *c, int argc, char **argv);
int verb_records(struct ctl *c, int argc, char **argv);
/* records verify FILE needs no daemon, nor a bus. */
bool records_offline(int argc, char **argv);
int verb_course(struct ctl *c, int argc, char **argv);
int verb_followup(struct ctl *c, int argc, char **argv);
int verb_clear_hold(struct ctl *c, int argc, char **argv);
int verb_report(struct ctl *c, int argc, char **argv);

/* ---- the clinical record (clinical.c, draw.c, fhir.c; issue 16) ---- */

/* Course(@patient) as a JSON array of patches (the API's keys). */
int load_course(struct ctl *c, const char *patient, json_object **out);
/* The Manager's ClinicName ("" if none); the caller frees. */
char *load_clinic_name(struct ctl *c);

/* How a patch status is shown: the same on the terminal, the map and the report. */
struct status_style {
	const char *status;	/* the API's name */
	unsigned int rgb;	/* 0xrrggbb of the map and report */
	const char *sgr;	/* the terminal's colours */
	const char *label;	/* a short label on the terminal map */
	const char *words;	/* the legend */
};
const struct status_style *status_style(const char *status);
extern const struct status_style status_styles[];
extern const size_t n_status_styles;

/* What comes next for a Course patch, in words ("may be treated again from ..."). */
void course_next(json_object *patch, char *buf, size_t len);

/*
 * The endpoint @endpoint (with @note) for every patch of the session whose
 * treatment emitted without one (@only: that patch only, whatever
 * EndpointsMissing says).  Prints what it recorded unless --json.
 */
int session_record_endpoints(struct ctl *c, const char *session_path, const char *endpoint,
			     const char *only, const char *note);
/* session end: the endpoints first (--endpoint, or asked on a terminal), then End. */
int session_end_documented(struct ctl *c, const char *unit_path, const char *session_path);

/*
 * The scalp seen from above (map.c): face at the top, the patient's left on
 * the left; each built-in patch a rectangle in head coordinates (x from -1
 * left to 1 right, y from 0 at the forehead to 1 at the nape), clipped to
 * the ellipse of the head.
 */
struct map_region {
	const char *patch;	/* the API's patch name */
	const char *label;	/* short label for the picture */
	double x0, x1, y0, y1;	/* rectangle in head coordinates */
};
extern const struct map_region map_regions[];
extern const size_t n_map_regions;

/* draw.c: the scalp map and the patient's report with cairo, in PDF, PNG or SVG. */
enum draw_format { DRAW_PDF, DRAW_PNG, DRAW_SVG };
/* The format for @file's extension (.pdf .png .svg); -EINVAL otherwise. */
int draw_format_of(const char *file, enum draw_format *out);
/*
 * Writes the map alone (@report false) or the whole report of @course to
 * @file ("-" stdout: SVG or PDF only); @clinic and @cooldown_days (0: 42)
 * for the report.  @info gets {file, format, pages,
 * width, height, patches: [{patch, status, colour, sample: [x, y]}]}, the
 * sample a point inside each drawn patch, in the file's pixels (PNG) or
 * points.  0 or an exit code (message printed).
 */
int draw_file(struct ctl *c, const char *patient, const char *clinic, unsigned int cooldown_days,
	      json_object *course, bool report, const char *file, json_object **info);

/* fhir.c: the patient's clinical record as an HL7 FHIR R4 Bundle (docs/clinical.md). */
json_object *fhir_bundle(const char *patient, const char *clinic, json_object *course,
			 uint64_t now);

/* Shared by verbs: print a unit (and its open session) as text or JSON. */
int show_unit(struct ctl *c, const char *unit_path);
/* A unit's (or session's) properties, plus its object path as "path". */
int load_unit(struct ctl *c, const char *unit_path, json_object **out);
int load_session(struct ctl *c, const char *session_path, json_object **out);
void print_unit_text(struct ctl *c, json_object *unit, json_object *session);
void print_session_text(struct ctl *c, json_object *session);

/* CheckPatch as {patient, patch, eligible, next_eligible_usec, reason}. */
int check_patch(struct ctl *c, const char *patient, const char *patch,
		json_object **out);
/* ListPatches as [{name, description}]. */
int list_patches(struct ctl *c, json_object **out);
/* History as a JSON array of treatments (the API's keys). */
int load_history(struct ctl *c, const char *patient, json_object **out);
/* sim footswitch hold: hold it @seconds, counting pulses live. */
int footswitch_hold(struct ctl *c, const char *unit_path, double seconds);

/*
 * StartSession(@patient) on @unit_path through a forked session keeper that
 * owns the session from then on (keeper.c): the session's path, or the
 * daemon's error printed and its exit code returned.
 */
int session_keeper_start(struct ctl *c, const char *unit_path, const char *patient,
			 char **session_path);
/*
 * The connection a call must go out on: the session keeper's for what only a
 * session's owner may call (SelectPatch, ConfirmEyewear, End; Arm and
 * SetParameters on a unit with a session), when this user's keeper holds
 * that session; else the bus.
 */
sd_bus *ctl_bus_for(struct ctl *c, const char *path, const char *iface, const char *member);
/* ctl_call_va() over ctl_bus_for()'s connection: what the verbs call (keeper.c). */
int ctl_call(struct ctl *c, const char *path, const char *iface,
	     const char *member, sd_bus_message **reply, const char *types, ...);

/* A signal (SIGINT/SIGTERM) asked us to stop; set by ctl_catch_signals(). */
extern volatile int ctl_interrupted;
void ctl_catch_signals(void);

#endif /* SMPLASER_CTL_H */
