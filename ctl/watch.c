/* SPDX-License-Identifier: MIT */
/*
 * smplaserctl watch: the daemon's signals as they come.  On a terminal the
 * units' status is redrawn in place; otherwise (or with --json) one line per
 * event.  Also the footswitch hold of "sim footswitch hold", which counts
 * pulses live while the simulated footswitch is held.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl.h"

static uint64_t mono_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000ULL + (uint64_t)ts.tv_nsec / 1000;
}

/* Process messages until @deadline (monotonic usec, 0: none) or a signal. */
static int pump(struct ctl *c, uint64_t deadline, const bool *stop)
{
	int r;

	while (!ctl_interrupted && !(stop && *stop)) {
		uint64_t now = mono_usec();

		if (deadline && now >= deadline)
			return 0;
		r = sd_bus_process(c->bus, NULL);
		if (r < 0)
			return r;
		if (r > 0)
			continue;
		r = sd_bus_wait(c->bus, deadline ? deadline - now : UINT64_MAX);
		if (r < 0 && r != -EINTR)
			return r;
	}
	return 0;
}

/* ---- watch ---------------------------------------------------------------- */

struct watcher {
	struct ctl *c;
	json_object *units;	/* ListUnits: path -> serial */
	int drawn_lines;	/* lines of the last in-place redraw */
	char last_event[256];
	bool gone;		/* the daemon left the bus */
};

static const char *serial_of(struct watcher *w, const char *path)
{
	for (size_t i = 0; w->units && i < json_object_array_length(w->units); i++) {
		json_object *u = json_object_array_get_idx(w->units, i);

		if (strcmp(j_str(u, "path"), path) == 0)
			return j_str(u, "serial");
	}
	const char *tail = strrchr(path, '/');

	return tail ? tail + 1 : path;
}

/* Redraw every unit's status block over the previous one. */
static void redraw(struct watcher *w)
{
	struct ctl *c = w->c;
	bool was_json = c->json;
	int lines = 0;

	c->json = false;
	if (w->drawn_lines)
		printf("\033[%dA", w->drawn_lines);
	for (size_t i = 0; w->units && i < json_object_array_length(w->units); i++) {
		json_object *entry = json_object_array_get_idx(w->units, i), *u = NULL;
		json_object *s = NULL, *il = NULL;
		const char *sp;

		if (load_unit(c, j_str(entry, "path"), &u))
			continue;
		sp = j_str(u, "Session");
		if (*sp && strcmp(sp, "/") != 0 && load_session(c, sp, &s))
			s = NULL;
		const char *state = j_str(u, "State");

		printf("\033[K%s%s%s  %s%-10s%s shots %-8" PRIu64, col(c, SGR_BOLD),
		       j_str(u, "Serial"), col(c, SGR_RESET), state_color(c, state),
		       state, col(c, SGR_RESET), j_u64(u, "ShotCount"));
		if (*j_str(u, "LatchedFault"))
			printf(" %sfault %s%s", col(c, SGR_RED), j_str(u, "LatchedFault"),
			       col(c, SGR_RESET));
		printf("\n\033[K  interlocks:");
		json_object_object_get_ex(u, "Interlocks", &il);
		json_object_object_foreach(il, name, val) {
			bool closed = json_object_get_boolean(val);

			printf(" %s%s%s%s", closed ? "" : col(c, SGR_BOLD ";" SGR_RED),
			       name, closed ? "" : ":OPEN", col(c, SGR_RESET));
		}
		if (s)
			printf("\n\033[K  session: %s, patch %s, eyewear %s, %s%" PRIu64
			       " pulses%s, %s\n", j_str(s, "Patient"),
			       *j_str(s, "Patch") ? j_str(s, "Patch") : "-",
			       j_bool(s, "EyewearConfirmed") ? "yes" : "no",
			       col(c, SGR_BOLD), j_u64(s, "PulseCount"),
			       col(c, SGR_RESET), j_str(s, "State"));
		else
			printf("\n\033[K  session: none\n");
		lines += 3;
		json_object_put(u);
		json_object_put(s);
	}
	printf("\033[K%s%s%s\n", col(c, SGR_GREY), w->last_event, col(c, SGR_RESET));
	lines++;
	w->drawn_lines = lines;
	fflush(stdout);
	c->json = was_json;
}

/* One event: a line (text or JSON) or, on a terminal, a redraw. */
static void emit(struct watcher *w, json_object *ev, const char *text)
{
	struct ctl *c = w->c;
	char stamp[32];
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%H:%M:%S", &tm);
	if (c->json) {
		json_object_object_add(ev, "time_usec", json_object_new_uint64(now_usec()));
		out_json(ev, true);
	} else if (c->tty) {
		snprintf(w->last_event, sizeof(w->last_event), "%s %s", stamp, text);
		redraw(w);
	} else {
		printf("%s.%03ld %s\n", stamp, ts.tv_nsec / 1000000L, text);
		fflush(stdout);
	}
	json_object_put(ev);
}

static json_object *event_new(const char *signal, const char *path)
{
	json_object *ev = json_object_new_object();

	json_object_object_add(ev, "signal", json_object_new_string(signal));
	json_object_object_add(ev, "path", json_object_new_string(path));
	return ev;
}

static int on_properties(sd_bus_message *m, void *userdata, sd_bus_error *e)
{
	struct watcher *w = userdata;
	const char *path = sd_bus_message_get_path(m), *iface;
	json_object *changed = NULL;
	char text[512];
	size_t len = 0;

	(void)e;
	if (sd_bus_message_read(m, "s", &iface) < 0 || ctl_read_json(m, &changed) < 0)
		return 0;
	/* Per-pulse counters arrive with the Pulse signal: not news of their own. */
	bool only_counters = true;

	json_object_object_foreach(changed, k0, v0) {
		(void)v0;
		if (strcmp(k0, "ShotCount") != 0 && strcmp(k0, "PulseCount") != 0)
			only_counters = false;
	}
	if (only_counters && !w->c->json) {
		json_object_put(changed);
		if (w->c->tty)
			redraw(w);
		return 0;
	}
	len += (size_t)snprintf(text, sizeof(text), "%s %s:",
				strstr(iface, "Session") ? "session" : "unit",
				strstr(iface, "Session") ? path : serial_of(w, path));
	json_object_object_foreach(changed, key, val) {
		if (len < sizeof(text))
			len += (size_t)snprintf(text + len, sizeof(text) - len, " %s=%s",
						key, json_object_to_json_string_ext(
						val, JSON_C_TO_STRING_PLAIN |
						JSON_C_TO_STRING_NOSLASHESCAPE));
	}
	json_object *ev = event_new("PropertiesChanged", path);

	json_object_object_add(ev, "interface", json_object_new_string(iface));
	json_object_object_add(ev, "changed", changed);
	emit(w, ev, text);
	return 0;
}

static int on_pulse(sd_bus_message *m, void *userdata, sd_bus_error *e)
{
	struct watcher *w = userdata;
	const char *path = sd_bus_message_get_path(m), *session;
	uint32_t shot, measured, set;
	char text[256];

	(void)e;
	if (sd_bus_message_read(m, "ouuu", &session, &shot, &measured, &set) < 0)
		return 0;
	json_object *ev = event_new("Pulse", path);

	json_object_object_add(ev, "session", json_object_new_string(session));
	json_object_object_add(ev, "shot", json_object_new_int64(shot));
	json_object_object_add(ev, "measured_uj", json_object_new_int64(measured));
	json_object_object_add(ev, "set_uj", json_object_new_int64(set));
	snprintf(text, sizeof(text), "unit %s: pulse #%u %.1f mJ (set %.1f mJ, %+.1f%%)",
		 serial_of(w, path), shot, measured / 1000.0, set / 1000.0,
		 set ? 100.0 * ((double)measured - set) / set : 0.0);
	emit(w, ev, text);
	return 0;
}

static int on_fault(sd_bus_message *m, void *userdata, sd_bus_error *e)
{
	struct watcher *w = userdata;
	const char *path = sd_bus_message_get_path(m), *code, *msg;
	char text[512];

	(void)e;
	if (sd_bus_message_read(m, "ss", &code, &msg) < 0)
		return 0;
	json_object *ev = event_new("Fault", path);

	json_object_object_add(ev, "code", json_object_new_string(code));
	json_object_object_add(ev, "message", json_object_new_string(msg));
	snprintf(text, sizeof(text), "unit %s: FAULT %s: %s", serial_of(w, path),
		 code, msg);
	emit(w, ev, text);
	return 0;
}

/* Units or sessions appear and go (ObjectManager). */
static int on_objects(sd_bus_message *m, void *userdata, sd_bus_error *e)
{
	struct watcher *w = userdata;
	const char *obj;
	const char *member = sd_bus_message_get_member(m);
	char text[512];

	(void)e;
	if (sd_bus_message_read(m, "o", &obj) < 0)
		return 0;
	/* Refresh the unit list so new units show. */
	json_object_put(w->units);
	w->units = NULL;
	bool was_json = w->c->json;

	w->c->json = false;
	ctl_list_units(w->c, &w->units);
	w->c->json = was_json;
	json_object *ev = event_new(member, sd_bus_message_get_path(m));

	json_object_object_add(ev, "object", json_object_new_string(obj));
	snprintf(text, sizeof(text), "%s %s",
		 strcmp(member, "InterfacesAdded") == 0 ? "added" : "removed", obj);
	emit(w, ev, text);
	return 0;
}

static int on_owner(sd_bus_message *m, void *userdata, sd_bus_error *e)
{
	struct watcher *w = userdata;
	const char *name, *old_owner, *new_owner;

	(void)e;
	if (sd_bus_message_read(m, "sss", &name, &old_owner, &new_owner) < 0 ||
	    strcmp(name, SMPL_BUS_NAME) != 0)
		return 0;
	json_object *ev = event_new("NameOwnerChanged", "/org/freedesktop/DBus");

	json_object_object_add(ev, "name", json_object_new_string(name));
	json_object_object_add(ev, "new_owner", json_object_new_string(new_owner));
	w->gone = !*new_owner;
	emit(w, ev, *new_owner ? "smplaserd is on the bus" : "smplaserd left the bus");
	return 0;
}

static int add_matches(struct ctl *c, void *userdata, bool props, bool pulses)
{
	int r = 0;

	if (props)
		r = sd_bus_match_signal(c->bus, NULL, SMPL_BUS_NAME, NULL,
					"org.freedesktop.DBus.Properties",
					"PropertiesChanged", on_properties, userdata);
	if (r >= 0 && pulses)
		r = sd_bus_match_signal(c->bus, NULL, SMPL_BUS_NAME, NULL,
					SMPL_UNIT_IFACE, "Pulse", on_pulse, userdata);
	if (r >= 0)
		r = sd_bus_match_signal(c->bus, NULL, SMPL_BUS_NAME, NULL,
					SMPL_UNIT_IFACE, "Fault", on_fault, userdata);
	return r;
}

int verb_watch(struct ctl *c, int argc, char **argv)
{
	struct watcher w = { .c = c };
	int code, r;

	(void)argv;
	if (argc != 0)
		return ctl_error(c, CTL_EXIT_USAGE, NULL,
				 "usage: watch [--timeout SECONDS]");
	if ((code = ctl_list_units(c, &w.units)))
		return code;
	r = add_matches(c, &w, true, true);
	if (r >= 0)
		r = sd_bus_match_signal(c->bus, NULL, SMPL_BUS_NAME, NULL,
					"org.freedesktop.DBus.ObjectManager",
					"InterfacesAdded", on_objects, &w);
	if (r >= 0)
		r = sd_bus_match_signal(c->bus, NULL, SMPL_BUS_NAME, NULL,
					"org.freedesktop.DBus.ObjectManager",
					"InterfacesRemoved", on_objects, &w);
	if (r >= 0)
		r = sd_bus_match_signal(c->bus, NULL, "org.freedesktop.DBus",
					"/org/freedesktop/DBus", "org.freedesktop.DBus",
					"NameOwnerChanged", on_owner, &w);
	if (r < 0) {
		json_object_put(w.units);
		return ctl_error(c, CTL_EXIT_FAILED, NULL,
				 "cannot subscribe to the daemon's signals: %s",
				 strerror(-r));
	}
	if (c->json) {
		json_object *ev = event_new("Watching", SMPL_MANAGER_PATH);

		json_object_object_add(ev, "units", json_object_get(w.units));
		emit(&w, ev, "");
	} else if (c->tty) {
		snprintf(w.last_event, sizeof(w.last_event),
			 "watching (Ctrl-C to stop)");
		redraw(&w);
	} else {
		printf("watching %zu unit%s\n", json_object_array_length(w.units),
		       json_object_array_length(w.units) == 1 ? "" : "s");
		fflush(stdout);
	}
	r = pump(c, c->timeout_s > 0 ? mono_usec() + (uint64_t)(c->timeout_s * 1e6) : 0,
		 NULL);
	json_object_put(w.units);
	if (r < 0)
		return ctl_error(c, CTL_EXIT_NO_UNIT, NULL, "lost the bus: %s",
				 strerror(-r));
	return CTL_EXIT_DONE;
}

/* ---- sim footswitch hold -------------------------------------------------- */

struct hold {
	struct ctl *c;
	const char *unit;
	unsigned int pulses;
	uint32_t first_shot, last_shot, last_uj;
	char state[32];
	bool stopped;		/* emission stopped while held */
	double held_s;
};

static void hold_line(struct hold *h, bool final)
{
	struct ctl *c = h->c;

	if (c->json)
		return;
	if (c->tty && !final) {
		printf("\r\033[K  footswitch held %.1f s: %s%u pulses%s, last %.1f mJ, %s%s%s",
		       h->held_s, col(c, SGR_BOLD), h->pulses, col(c, SGR_RESET),
		       h->last_uj / 1000.0, state_color(c, h->state), h->state,
		       col(c, SGR_RESET));
		fflush(stdout);
	}
}

static int hold_on_pulse(sd_bus_message *m, void *userdata, sd_bus_error *e)
{
	struct hold *h = userdata;
	const char *session;
	uint32_t shot, measured, set;

	(void)e;
	if (strcmp(sd_bus_message_get_path(m), h->unit) != 0 ||
	    sd_bus_message_read(m, "ouuu", &session, &shot, &measured, &set) < 0)
		return 0;
	if (!h->pulses)
		h->first_shot = shot;
	h->pulses++;
	h->last_shot = shot;
	h->last_uj = measured;
	if (!h->c->tty && !h->c->json) {
		printf("  pulse %u: shot #%u, %.1f mJ\n", h->pulses, shot, measured / 1000.0);
		fflush(stdout);
	}
	hold_line(h, false);
	return 0;
}

static int hold_on_properties(sd_bus_message *m, void *userdata, sd_bus_error *e)
{
	struct hold *h = userdata;
	json_object *changed = NULL, *st;
	const char *iface;

	(void)e;
	if (strcmp(sd_bus_message_get_path(m), h->unit) != 0 ||
	    sd_bus_message_read(m, "s", &iface) < 0 || ctl_read_json(m, &changed) < 0)
		return 0;
	if (json_object_object_get_ex(changed, "State", &st)) {
		const char *s = json_object_get_string(st);

		if ((strcmp(h->state, "ready") == 0 || strcmp(h->state, "emitting") == 0) &&
		    strcmp(s, "ready") != 0 && strcmp(s, "emitting") != 0)
			h->stopped = true;
		snprintf(h->state, sizeof(h->state), "%s", s);
		hold_line(h, false);
	}
	json_object_put(changed);
	return 0;
}

/* Why emission stopped: the unit's state, open interlocks and fault. */
static void print_stop_reason(struct ctl *c, const char *unit, const char *state)
{
	json_object *u = NULL, *il = NULL;
	char why[256] = "";
	size_t len = 0;

	if (load_unit(c, unit, &u) == CTL_EXIT_DONE) {
		json_object_object_get_ex(u, "Interlocks", &il);
		json_object_object_foreach(il, name, val) {
			if (!json_object_get_boolean(val) && len < sizeof(why))
				len += (size_t)snprintf(why + len, sizeof(why) - len,
							"%s%s open", len ? ", " : "", name);
		}
		if (*j_str(u, "LatchedFault") && len < sizeof(why))
			snprintf(why + len, sizeof(why) - len, "%sfault %s",
				 len ? ", " : "", j_str(u, "LatchedFault"));
		json_object_put(u);
	}
	printf("%sEmission stopped while the footswitch was held: the unit is %s%s%s%s.%s\n",
	       col(c, SGR_BOLD ";" SGR_RED), state, *why ? " (" : "", why,
	       *why ? ")" : "", col(c, SGR_RESET));
}

static int set_footswitch(struct ctl *c, const char *unit, bool held)
{
	return ctl_call(c, unit, SMPL_SIM_IFACE, "SetFootswitch", NULL, "b", held);
}

int footswitch_hold(struct ctl *c, const char *unit, double seconds)
{
	struct hold h = { .c = c, .unit = unit };
	json_object *st = NULL;
	uint64_t start;
	int code, r;

	if ((code = ctl_get_property(c, unit, SMPL_UNIT_IFACE, "State", &st)))
		return code;
	snprintf(h.state, sizeof(h.state), "%s", json_object_get_string(st));
	json_object_put(st);
	r = sd_bus_match_signal(c->bus, NULL, SMPL_BUS_NAME, unit, SMPL_UNIT_IFACE,
				"Pulse", hold_on_pulse, &h);
	if (r >= 0)
		r = sd_bus_match_signal(c->bus, NULL, SMPL_BUS_NAME, unit,
					"org.freedesktop.DBus.Properties",
					"PropertiesChanged", hold_on_properties, &h);
	if (r < 0)
		return ctl_error(c, CTL_EXIT_FAILED, NULL,
				 "cannot subscribe to the unit's pulses: %s", strerror(-r));
	if ((code = set_footswitch(c, unit, true)))
		return code;
	start = mono_usec();
	if (!c->json && !c->tty)
		printf("Footswitch pressed (unit %s).\n", h.state);
	/* Count pulses live; every 100 ms refresh the elapsed time. */
	while (!ctl_interrupted) {
		uint64_t now = mono_usec(), end = start + (uint64_t)(seconds * 1e6);

		if (now >= end)
			break;
		r = pump(c, now + 100000 < end ? now + 100000 : end, NULL);
		h.held_s = (double)(mono_usec() - start) / 1e6;
		hold_line(&h, false);
		if (r < 0)
			break;
	}
	/* Always release, also after Ctrl-C: nothing may stay pressed. */
	code = set_footswitch(c, unit, false);
	h.held_s = (double)(mono_usec() - start) / 1e6;
	/* Pulses already on their way. */
	pump(c, mono_usec() + 150000, NULL);
	if (c->tty && !c->json)
		printf("\n");
	if (c->json) {
		json_object *o = json_object_new_object();

		json_object_object_add(o, "held_s", json_object_new_double(h.held_s));
		json_object_object_add(o, "pulses", json_object_new_int64(h.pulses));
		json_object_object_add(o, "first_shot", json_object_new_int64(h.first_shot));
		json_object_object_add(o, "last_shot", json_object_new_int64(h.last_shot));
		json_object_object_add(o, "emission_stopped",
				       json_object_new_boolean(h.stopped));
		json_object_object_add(o, "State", json_object_new_string(h.state));
		out_json(o, false);
		json_object_put(o);
	} else {
		printf("Footswitch released after %.1f s: %u pulses", h.held_s, h.pulses);
		if (h.pulses)
			printf(" (shots #%u-#%u)", h.first_shot, h.last_shot);
		printf(".\n");
		if (h.stopped)
			print_stop_reason(c, unit, h.state);
	}
	if (ctl_interrupted && !code)
		code = CTL_EXIT_FAILED;
	return code;
}
