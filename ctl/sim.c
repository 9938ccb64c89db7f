/* SPDX-License-Identifier: MIT */
/*
 * smplaserctl sim: a technician's hands on a simulated unit (the daemon's
 * org.smplaser.Laser1.Simulator interface).
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl.h"

#define SIM_USAGE \
	"usage: sim footswitch press|release|hold SECONDS | sim door open|close | " \
	"sim estop press|release | sim key on|off | sim interlock NAME open|close | " \
	"sim drift PPM | sim fault NAME | sim clear-fault | sim rtc-skew SECONDS | " \
	"sim calibration valid|expired | sim unplug | sim replug"

static int sim_usage(struct ctl *c, const char *why)
{
	return ctl_error(c, CTL_EXIT_USAGE, NULL, "%s%s%s (see '%s --help')",
			 why ? why : "", why ? "; " : "", SIM_USAGE, c->prog);
}

/* The two words a sub-verb takes, e.g. open|close: 1 for @yes, 0 for @no. */
static int pick(const char *arg, const char *yes, const char *no)
{
	if (strcmp(arg, yes) == 0)
		return 1;
	if (strcmp(arg, no) == 0)
		return 0;
	return -1;
}

static bool parse_long(const char *s, long long min, long long max, long long *out)
{
	char *end;

	errno = 0;
	*out = strtoll(s, &end, 10);
	return *s && !*end && !errno && *out >= min && *out <= max;
}

/*
 * The unit reports the change a few milliseconds later: wait (up to 1 s) until
 * the daemon shows it, so what we print next is the new state.
 */
static void wait_interlock(struct ctl *c, const char *unit, const char *name, bool open)
{
	struct timespec tick = { 0, 20 * 1000000L };

	for (int i = 0; i < 50; i++) {
		json_object *il = NULL, *v = NULL;
		bool shown = false;

		if (ctl_get_property(c, unit, SMPL_UNIT_IFACE, "Interlocks", &il))
			return;
		if (json_object_object_get_ex(il, name, &v))
			shown = json_object_get_boolean(v) == !open;
		json_object_put(il);
		if (shown)
			return;
		nanosleep(&tick, NULL);
	}
}

static int interlock(struct ctl *c, const char *unit, const char *name, bool open,
		     const char *done)
{
	int code = ctl_call(c, unit, SMPL_SIM_IFACE, "SetInterlock", NULL, "sb",
			    name, open);

	if (!code)
		wait_interlock(c, unit, name, open);
	if (!code && !c->json)
		printf("%s\n", done);
	return code;
}

/* Runs one sim sub-verb; @shown is set when it printed its own result. */
static int sim_run(struct ctl *c, const char *unit, int argc, char **argv,
		   bool *shown)
{
	const char *what = argv[0], *arg = argc > 1 ? argv[1] : "";
	long long n;
	int v;

	if (strcmp(what, "footswitch") == 0) {
		if (argc == 3 && strcmp(arg, "hold") == 0) {
			char *end;
			double s = strtod(argv[2], &end);

			if (*end || !(s > 0 && s <= 600))
				return sim_usage(c, "hold takes 0-600 seconds");
			*shown = true;
			return footswitch_hold(c, unit, s);
		}
		if (argc != 2 || (v = pick(arg, "press", "release")) < 0)
			return sim_usage(c, NULL);
		int code = ctl_call(c, unit, SMPL_SIM_IFACE, "SetFootswitch", NULL,
				    "b", v);
		if (!code && !c->json)
			printf("Footswitch %s.\n", v ? "pressed" : "released");
		return code;
	}
	if (strcmp(what, "door") == 0) {
		if (argc != 2 || (v = pick(arg, "open", "close")) < 0)
			return sim_usage(c, NULL);
		return interlock(c, unit, "door", v, v ? "Door opened." : "Door closed.");
	}
	if (strcmp(what, "estop") == 0) {
		if (argc != 2 || (v = pick(arg, "press", "release")) < 0)
			return sim_usage(c, NULL);
		return interlock(c, unit, "estop", v,
				 v ? "Emergency stop pressed." : "Emergency stop released.");
	}
	if (strcmp(what, "key") == 0) {
		if (argc != 2 || (v = pick(arg, "off", "on")) < 0)
			return sim_usage(c, NULL);
		return interlock(c, unit, "key", v,
				 v ? "Key switch off." : "Key switch on.");
	}
	if (strcmp(what, "interlock") == 0) {
		if (argc != 3 || (v = pick(argv[2], "open", "close")) < 0)
			return sim_usage(c, NULL);
		return interlock(c, unit, arg, v, v ? "Interlock opened." :
						      "Interlock closed.");
	}
	if (strcmp(what, "drift") == 0) {
		if (argc != 2 || !parse_long(arg, -1000000, 1000000, &n))
			return sim_usage(c, "drift takes parts per million, -1000000 to "
					 "1000000");
		int code = ctl_call(c, unit, SMPL_SIM_IFACE, "SetEnergyDrift", NULL,
				    "i", (int32_t)n);
		if (!code && !c->json)
			printf("Energy drift set to %+lld ppm (%+.1f%%).\n", n, n / 1e4);
		return code;
	}
	if (strcmp(what, "fault") == 0) {
		if (argc != 2)
			return sim_usage(c, NULL);
		int code = ctl_call(c, unit, SMPL_SIM_IFACE, "InjectFault", NULL, "s", arg);

		if (!code && !c->json)
			printf("Fault %s injected.\n", arg);
		return code;
	}
	if (strcmp(what, "clear-fault") == 0) {
		if (argc != 1)
			return sim_usage(c, NULL);
		int code = ctl_call(c, unit, SMPL_SIM_IFACE, "ClearFaultCause", NULL, NULL);

		if (!code && !c->json)
			printf("Fault cause cleared (the fault stays latched until 'ack').\n");
		return code;
	}
	if (strcmp(what, "rtc-skew") == 0) {
		if (argc != 2 || !parse_long(arg, -(1LL << 40), 1LL << 40, &n))
			return sim_usage(c, "rtc-skew takes seconds");
		int code = ctl_call(c, unit, SMPL_SIM_IFACE, "SetRtcSkew", NULL, "x",
				    (int64_t)n);
		if (!code && !c->json)
			printf("Unit clock skewed by %+lld s.\n", n);
		return code;
	}
	if (strcmp(what, "calibration") == 0) {
		if (argc != 2 || (v = pick(arg, "valid", "expired")) < 0)
			return sim_usage(c, "calibration takes valid or expired");
		int code = ctl_call(c, unit, SMPL_SIM_IFACE, "SetCalibration", NULL, "b", v);

		if (!code && !c->json)
			printf("Calibration %s.\n", v ? "valid" : "expired");
		return code;
	}
	if (strcmp(what, "unplug") == 0 || strcmp(what, "replug") == 0) {
		if (argc != 1)
			return sim_usage(c, NULL);
		bool unplug = what[0] == 'u';
		int code = ctl_call(c, unit, SMPL_SIM_IFACE, unplug ? "Unplug" : "Replug",
				    NULL, NULL);

		if (!code && !c->json)
			printf("Unit %s.\n", unplug ? "unplugged" : "plugged in again");
		if (!code && c->json) {
			/* The unit's object comes and goes as a real unit's does. */
			json_object *o = json_object_new_object();

			json_object_object_add(o, "unit", json_object_new_string(unit));
			json_object_object_add(o, "plugged", json_object_new_boolean(!unplug));
			out_json(o, false);
			json_object_put(o);
		}
		*shown = true;
		return code;
	}
	return sim_usage(c, "unknown sim verb");
}

/*
 * The simulated unit the verb acts on: like ctl_pick_unit(), among the
 * objects with a Simulator (an unplugged simulated unit keeps it, while its
 * Unit interface is gone as a real unit's would be).
 */
static int pick_simulator(struct ctl *c, char **path)
{
	sd_bus_error e = SD_BUS_ERROR_NULL;
	sd_bus_message *reply = NULL;
	const char *p, *iface;
	char *found = NULL;
	unsigned int n = 0;
	int r;

	r = sd_bus_call_method(c->bus, SMPL_BUS_NAME, SMPL_MANAGER_PATH,
			       "org.freedesktop.DBus.ObjectManager", "GetManagedObjects",
			       &e, &reply, NULL);
	if (r < 0) {
		sd_bus_error_free(&e);
		return ctl_pick_unit(c, path);	/* says what is wrong */
	}
	r = sd_bus_message_enter_container(reply, 'a', "{oa{sa{sv}}}");
	while (r > 0 && (r = sd_bus_message_enter_container(reply, 'e', "oa{sa{sv}}")) > 0) {
		const char *tail;
		bool sim = false;

		r = sd_bus_message_read(reply, "o", &p);
		if (r >= 0)
			r = sd_bus_message_enter_container(reply, 'a', "{sa{sv}}");
		while (r > 0 && (r = sd_bus_message_enter_container(reply, 'e', "sa{sv}")) > 0) {
			r = sd_bus_message_read(reply, "s", &iface);
			sim |= r >= 0 && strcmp(iface, SMPL_SIM_IFACE) == 0;
			if (r >= 0)
				r = sd_bus_message_skip(reply, "a{sv}");
			if (r >= 0)
				r = sd_bus_message_exit_container(reply);
		}
		tail = strrchr(p, '/');
		if (r >= 0 && sim && (!c->unit || strcmp(p, c->unit) == 0 ||
				      (tail && strcmp(tail + 1, c->unit) == 0))) {
			n++;
			free(found);
			found = strdup(p);
		}
		if (r >= 0)
			r = sd_bus_message_exit_container(reply);	/* a{sa{sv}} */
		if (r >= 0)
			r = sd_bus_message_exit_container(reply);	/* e */
	}
	sd_bus_message_unref(reply);
	if (n != 1 || !found) {
		free(found);
		return ctl_pick_unit(c, path);	/* says what is wrong, or picks it */
	}
	*path = found;
	return CTL_EXIT_DONE;
}

int verb_sim(struct ctl *c, int argc, char **argv)
{
	char *unit = NULL;
	bool shown = false;
	int code;

	if (argc < 1)
		return sim_usage(c, NULL);
	if ((code = pick_simulator(c, &unit)))
		return code;
	code = sim_run(c, unit, argc, argv, &shown);
	if (!code && !shown && c->json)
		code = show_unit(c, unit);
	else if (!code && !shown)
		fflush(stdout);
	free(unit);
	return code;
}
