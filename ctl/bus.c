/* SPDX-License-Identifier: MIT */
/*
 * smplaserctl: the bus connection, method calls, errors and exit codes,
 * reading any D-Bus value into JSON, picking a unit, and the polkit agent.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ctl.h"

volatile int ctl_interrupted;

static void on_signal(int sig)
{
	ctl_interrupted = sig;
}

void ctl_catch_signals(void)
{
	struct sigaction sa = { .sa_handler = on_signal };

	/* No SA_RESTART: a blocking poll returns EINTR so we can clean up. */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
}

/* ---- errors -------------------------------------------------------------- */

struct error_exit {
	const char *name;
	int code;
};

static const struct error_exit error_exits[] = {
	{ SMPL_ERR_PREFIX "NotAuthorized", CTL_EXIT_NOT_AUTHORIZED },
	{ "org.freedesktop.DBus.Error.AccessDenied", CTL_EXIT_NOT_AUTHORIZED },
	{ "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired",
	  CTL_EXIT_NOT_AUTHORIZED },
	{ SMPL_ERR_PREFIX "CooldownActive", CTL_EXIT_REFUSED },
	{ SMPL_ERR_PREFIX "InterlockOpen", CTL_EXIT_REFUSED },
	{ SMPL_ERR_PREFIX "NoSession", CTL_EXIT_REFUSED },
	{ SMPL_ERR_PREFIX "NoPatch", CTL_EXIT_REFUSED },
	{ SMPL_ERR_PREFIX "EyewearNotConfirmed", CTL_EXIT_REFUSED },
	{ SMPL_ERR_PREFIX "ParameterOutOfRange", CTL_EXIT_REFUSED },
	{ SMPL_ERR_PREFIX "DeviceFault", CTL_EXIT_REFUSED },
	{ SMPL_ERR_PREFIX "CalibrationExpired", CTL_EXIT_REFUSED },
	{ SMPL_ERR_PREFIX "ClockUnreliable", CTL_EXIT_REFUSED },
	{ SMPL_ERR_PREFIX "RecordsUnavailable", CTL_EXIT_REFUSED },
	{ SMPL_ERR_PREFIX "EndpointMissing", CTL_EXIT_REFUSED },
	{ SMPL_ERR_PREFIX "FollowUpRequired", CTL_EXIT_REFUSED },
	{ SMPL_ERR_PREFIX "PatchClear", CTL_EXIT_REFUSED },
	{ SMPL_ERR_PREFIX "PatchOnHold", CTL_EXIT_REFUSED },
	{ SMPL_ERR_PREFIX "InvalidArgument", CTL_EXIT_USAGE },
	{ "org.freedesktop.DBus.Error.InvalidArgs", CTL_EXIT_USAGE },
	{ SMPL_ERR_PREFIX "Disconnected", CTL_EXIT_NO_UNIT },
	{ "org.freedesktop.DBus.Error.ServiceUnknown", CTL_EXIT_NO_UNIT },
	{ "org.freedesktop.DBus.Error.NameHasNoOwner", CTL_EXIT_NO_UNIT },
	{ "org.freedesktop.DBus.Error.UnknownObject", CTL_EXIT_NO_UNIT },
	{ "org.freedesktop.DBus.Error.NoReply", CTL_EXIT_NO_UNIT },
	{ "org.freedesktop.DBus.Error.Disconnected", CTL_EXIT_NO_UNIT },
};

int ctl_exit_for_error(const char *name)
{
	for (size_t i = 0; i < sizeof(error_exits) / sizeof(error_exits[0]); i++)
		if (name && strcmp(name, error_exits[i].name) == 0)
			return error_exits[i].code;
	return CTL_EXIT_FAILED;
}

int ctl_error(struct ctl *c, int code, const char *name, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);

	bool err_tty = isatty(STDERR_FILENO) && !getenv("NO_COLOR");
	fprintf(stderr, "%s: %s%s%s\n", c->prog, err_tty ? "\033[31m" : "", msg,
		err_tty ? "\033[0m" : "");
	if (c->json) {
		json_object *o = json_object_new_object();

		json_object_object_add(o, "error",
				       json_object_new_string(name ? name : "error"));
		json_object_object_add(o, "message", json_object_new_string(msg));
		json_object_object_add(o, "exit", json_object_new_int(code));
		out_json(o, false);
		json_object_put(o);
	}
	return code;
}

/* Says what went wrong with a call, in the daemon's words when it gave some. */
static int report_bus_error(struct ctl *c, const sd_bus_error *e, int r)
{
	const char *name = sd_bus_error_is_set(e) ? e->name : NULL;
	int code = name ? ctl_exit_for_error(name) : CTL_EXIT_FAILED;

	if (name && (strcmp(name, "org.freedesktop.DBus.Error.ServiceUnknown") == 0 ||
		     strcmp(name, "org.freedesktop.DBus.Error.NameHasNoOwner") == 0))
		return ctl_error(c, code, name,
				 "smplaserd is not running (%s is not on the %s bus)",
				 SMPL_BUS_NAME, c->user_bus ? "session" : "system");
	if (name && strcmp(name, "org.freedesktop.DBus.Error.UnknownObject") == 0)
		return ctl_error(c, code, name, "no such unit or session: %s",
				 e->message ? e->message : name);
	if (name)
		return ctl_error(c, code, name, "%s",
				 e->message && *e->message ? e->message : name);
	return ctl_error(c, CTL_EXIT_FAILED, NULL, "D-Bus call failed: %s",
			 strerror(-r));
}

/* ---- connection ---------------------------------------------------------- */

int ctl_connect(struct ctl *c)
{
	int r = c->user_bus ? sd_bus_open_user(&c->bus) : sd_bus_open_system(&c->bus);

	if (r < 0)
		return ctl_error(c, CTL_EXIT_NO_UNIT, NULL,
				 "cannot connect to the %s bus: %s",
				 c->user_bus ? "session" : "system", strerror(-r));
	/* polkit may ask the user (through our agent) unless --no-ask-password. */
	sd_bus_set_allow_interactive_authorization(c->bus, c->ask_password);
	return CTL_EXIT_DONE;
}

void ctl_disconnect(struct ctl *c)
{
	c->keeper_bus = sd_bus_flush_close_unref(c->keeper_bus);
	c->bus = sd_bus_flush_close_unref(c->bus);
}

int ctl_call_message(struct ctl *c, sd_bus_message *m, sd_bus_message **reply)
{
	sd_bus_error e = SD_BUS_ERROR_NULL;
	sd_bus_message *rep = NULL;
	int r;

	/* Long enough for polkit to ask for a password. */
	r = sd_bus_call(sd_bus_message_get_bus(m), m, 120 * 1000000ULL, &e, &rep);
	if (r < 0) {
		int code = report_bus_error(c, &e, r);

		sd_bus_error_free(&e);
		return code;
	}
	if (reply)
		*reply = rep;
	else
		sd_bus_message_unref(rep);
	return CTL_EXIT_DONE;
}

int ctl_call_va(struct ctl *c, sd_bus *bus, const char *path, const char *iface,
		const char *member, sd_bus_message **reply, const char *types, va_list ap)
{
	sd_bus_message *m = NULL;
	int r;

	r = sd_bus_message_new_method_call(bus, &m, bus == c->bus ? SMPL_BUS_NAME : NULL,
					   path, iface, member);
	if (r >= 0 && types && *types)
		r = sd_bus_message_appendv(m, types, ap);
	if (r < 0) {
		sd_bus_message_unref(m);
		return ctl_error(c, CTL_EXIT_FAILED, NULL, "cannot build the %s call: %s",
				 member, strerror(-r));
	}
	r = ctl_call_message(c, m, reply);
	sd_bus_message_unref(m);
	return r;
}

/* On the bus itself: what anyone may call (properties, lists). */
static int call_direct(struct ctl *c, const char *path, const char *iface,
		       const char *member, sd_bus_message **reply, const char *types, ...)
{
	va_list ap;
	int r;

	va_start(ap, types);
	r = ctl_call_va(c, c->bus, path, iface, member, reply, types, ap);
	va_end(ap);
	return r;
}

/* ---- D-Bus values as JSON ----------------------------------------------- */

static json_object *basic_to_json(char type, const void *p)
{
	switch (type) {
	case SD_BUS_TYPE_BYTE:	return json_object_new_int(*(const uint8_t *)p);
	case SD_BUS_TYPE_BOOLEAN: return json_object_new_boolean(*(const int *)p);
	case SD_BUS_TYPE_INT16:	return json_object_new_int(*(const int16_t *)p);
	case SD_BUS_TYPE_UINT16: return json_object_new_int(*(const uint16_t *)p);
	case SD_BUS_TYPE_INT32:	return json_object_new_int(*(const int32_t *)p);
	case SD_BUS_TYPE_UINT32: return json_object_new_int64(*(const uint32_t *)p);
	case SD_BUS_TYPE_INT64:	return json_object_new_int64(*(const int64_t *)p);
	case SD_BUS_TYPE_UINT64: return json_object_new_uint64(*(const uint64_t *)p);
	case SD_BUS_TYPE_DOUBLE: return json_object_new_double(*(const double *)p);
	case SD_BUS_TYPE_UNIX_FD: return json_object_new_int(*(const int *)p);
	case SD_BUS_TYPE_STRING:
	case SD_BUS_TYPE_OBJECT_PATH:
	case SD_BUS_TYPE_SIGNATURE:
		return json_object_new_string(*(const char *const *)p);
	default:
		return NULL;
	}
}

static int read_container(sd_bus_message *m, char type, const char *contents,
			  json_object **out);

int ctl_read_json(sd_bus_message *m, json_object **out)
{
	const char *contents = NULL;
	char type = 0;
	int r;

	*out = NULL;
	r = sd_bus_message_peek_type(m, &type, &contents);
	if (r <= 0)
		return r < 0 ? r : -ENODATA;
	if (type == SD_BUS_TYPE_ARRAY || type == SD_BUS_TYPE_STRUCT ||
	    type == SD_BUS_TYPE_VARIANT || type == SD_BUS_TYPE_DICT_ENTRY)
		return read_container(m, type, contents, out);

	union {
		uint8_t y; int b; int16_t n; uint16_t q; int32_t i; uint32_t u;
		int64_t x; uint64_t t; double d; const char *s; int h;
	} v;
	r = sd_bus_message_read_basic(m, type, &v);
	if (r < 0)
		return r;
	*out = basic_to_json(type, &v);
	return *out ? 0 : -EBADMSG;
}

/* a{k v}: the key as a string (numbers printed), the value as JSON. */
static int read_dict(sd_bus_message *m, const char *entry, json_object *obj)
{
	int r;

	while ((r = sd_bus_message_enter_container(m, SD_BUS_TYPE_DICT_ENTRY,
						   entry)) > 0) {
		json_object *key = NULL, *val = NULL;

		r = ctl_read_json(m, &key);
		if (r >= 0)
			r = ctl_read_json(m, &val);
		if (r >= 0)
			r = sd_bus_message_exit_container(m);
		if (r < 0) {
			json_object_put(key);
			json_object_put(val);
			return r;
		}
		json_object_object_add(obj, json_object_get_string(key), val);
		json_object_put(key);
	}
	return r;
}

static int read_container(sd_bus_message *m, char type, const char *contents,
			  json_object **out)
{
	json_object *o;
	int r;

	r = sd_bus_message_enter_container(m, type, contents);
	if (r < 0)
		return r;
	if (type == SD_BUS_TYPE_VARIANT) {
		r = ctl_read_json(m, out);
	} else if (type == SD_BUS_TYPE_ARRAY && contents[0] == '{') {
		/* "{sv}" -> "sv" */
		char entry[256];
		size_t n = strlen(contents);

		if (n < 4 || n - 2 >= sizeof(entry))
			return -EBADMSG;
		memcpy(entry, contents + 1, n - 2);
		entry[n - 2] = '\0';
		o = json_object_new_object();
		r = read_dict(m, entry, o);
		*out = o;
	} else {
		o = json_object_new_array();
		for (;;) {
			json_object *item = NULL;

			r = ctl_read_json(m, &item);
			if (r == -ENODATA) {
				r = 0;
				break;
			}
			if (r < 0)
				break;
			json_object_array_add(o, item);
		}
		*out = o;
	}
	if (r < 0) {
		json_object_put(*out);
		*out = NULL;
		return r;
	}
	return sd_bus_message_exit_container(m);
}

int ctl_get_all(struct ctl *c, const char *path, const char *iface,
		json_object **out)
{
	sd_bus_message *reply = NULL;
	int code, r;

	code = call_direct(c, path, "org.freedesktop.DBus.Properties", "GetAll",
			&reply, "s", iface);
	if (code)
		return code;
	r = ctl_read_json(reply, out);
	sd_bus_message_unref(reply);
	if (r < 0)
		return ctl_error(c, CTL_EXIT_FAILED, NULL,
				 "cannot read the properties of %s: %s", path,
				 strerror(-r));
	return CTL_EXIT_DONE;
}

int ctl_get_property(struct ctl *c, const char *path, const char *iface,
		     const char *name, json_object **out)
{
	sd_bus_message *reply = NULL;
	int code, r;

	code = call_direct(c, path, "org.freedesktop.DBus.Properties", "Get",
			&reply, "ss", iface, name);
	if (code)
		return code;
	r = ctl_read_json(reply, out);
	sd_bus_message_unref(reply);
	if (r < 0)
		return ctl_error(c, CTL_EXIT_FAILED, NULL, "cannot read %s of %s: %s",
				 name, path, strerror(-r));
	return CTL_EXIT_DONE;
}

/* ---- units and sessions -------------------------------------------------- */

int ctl_list_units(struct ctl *c, json_object **out)
{
	sd_bus_message *reply = NULL;
	const char *path, *serial, *model, *state;
	int code, r;

	code = call_direct(c, SMPL_MANAGER_PATH, SMPL_MANAGER_IFACE, "ListUnits",
			&reply, NULL);
	if (code)
		return code;
	*out = json_object_new_array();
	r = sd_bus_message_enter_container(reply, SD_BUS_TYPE_ARRAY, "(osss)");
	while (r > 0 && (r = sd_bus_message_read(reply, "(osss)", &path, &serial,
						 &model, &state)) > 0) {
		json_object *u = json_object_new_object();

		json_object_object_add(u, "path", json_object_new_string(path));
		json_object_object_add(u, "serial", json_object_new_string(serial));
		json_object_object_add(u, "model", json_object_new_string(model));
		json_object_object_add(u, "state", json_object_new_string(state));
		json_object_array_add(*out, u);
	}
	sd_bus_message_unref(reply);
	if (r < 0) {
		json_object_put(*out);
		*out = NULL;
		return ctl_error(c, CTL_EXIT_FAILED, NULL,
				 "cannot read ListUnits' reply: %s", strerror(-r));
	}
	return CTL_EXIT_DONE;
}

/* Does --unit @want name this unit (serial, path, or the path's last element)? */
static bool unit_matches(json_object *u, const char *want)
{
	const char *path = j_str(u, "path");
	const char *tail = strrchr(path, '/');

	return strcmp(j_str(u, "serial"), want) == 0 || strcmp(path, want) == 0 ||
	       (tail && strcmp(tail + 1, want) == 0);
}

/* Is the daemon still probing for units (Manager.State "probing")? */
static bool daemon_probing(struct ctl *c)
{
	json_object *state = NULL;
	bool probing;

	if (ctl_get_property(c, SMPL_MANAGER_PATH, SMPL_MANAGER_IFACE, "State", &state))
		return false;
	probing = strcmp(json_object_get_string(state), "probing") == 0;
	json_object_put(state);
	return probing;
}

int ctl_pick_unit(struct ctl *c, char **path)
{
	json_object *units = NULL, *found = NULL;
	struct timespec tick = { 0, 100 * 1000000L };
	int code;
	size_t n;

	/* Just started (or bus-activated): give the probe up to 10 s. */
	for (int i = 0;; i++) {
		if ((code = ctl_list_units(c, &units)))
			return code;
		n = json_object_array_length(units);
		if (n > 0 || i >= 100 || ctl_interrupted || !daemon_probing(c))
			break;
		json_object_put(units);
		nanosleep(&tick, NULL);
	}
	if (n == 0) {
		json_object_put(units);
		return ctl_error(c, CTL_EXIT_NO_UNIT, NULL,
				 "no laser unit is connected");
	}
	if (c->unit) {
		for (size_t i = 0; i < n; i++)
			if (unit_matches(json_object_array_get_idx(units, i), c->unit))
				found = json_object_array_get_idx(units, i);
		if (!found) {
			json_object_put(units);
			return ctl_error(c, CTL_EXIT_NO_UNIT, NULL,
					 "no such unit: %s (see '%s units')",
					 c->unit, c->prog);
		}
	} else if (n > 1) {
		json_object_put(units);
		return ctl_error(c, CTL_EXIT_USAGE, NULL,
				 "%zu units are connected: pick one with --unit SERIAL "
				 "(see '%s units')", n, c->prog);
	} else {
		found = json_object_array_get_idx(units, 0);
	}
	*path = strdup(j_str(found, "path"));
	json_object_put(units);
	return CTL_EXIT_DONE;
}

int ctl_pick_session(struct ctl *c, char **unit_path, char **session_path)
{
	json_object *session = NULL;
	int code;

	*session_path = NULL;
	code = ctl_pick_unit(c, unit_path);
	if (code)
		return code;
	code = ctl_get_property(c, *unit_path, SMPL_UNIT_IFACE, "Session", &session);
	if (code)
		return code;
	const char *p = json_object_get_string(session);

	if (!p || strcmp(p, "/") == 0 || *p == '\0') {
		json_object_put(session);
		return ctl_error(c, CTL_EXIT_REFUSED, SMPL_ERR_PREFIX "NoSession",
				 "no session is open on this unit (start one with "
				 "'%s session start PATIENT')", c->prog);
	}
	*session_path = strdup(p);
	json_object_put(session);
	return CTL_EXIT_DONE;
}

/* ---- polkit text agent --------------------------------------------------- */

static pid_t agent_pid;

/*
 * As systemctl does: when polkit may need to ask and we have a terminal on
 * stdin, run pkttyagent for our process and wait until it has registered.
 */
void ctl_polkit_agent_open(struct ctl *c)
{
	int pipefd[2];
	char fdarg[16], pidarg[32];

	if (agent_pid > 0 || !c->ask_password || c->user_bus ||
	    !isatty(STDIN_FILENO) || access("/usr/bin/pkttyagent", X_OK) != 0)
		return;
	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return;
	snprintf(pidarg, sizeof(pidarg), "%d", (int)getpid());
	agent_pid = fork();
	if (agent_pid == 0) {
		/* The notify fd must survive exec. */
		int fd = dup(pipefd[1]);

		if (fd < 0)
			_exit(127);
		snprintf(fdarg, sizeof(fdarg), "%d", fd);
		execl("/usr/bin/pkttyagent", "pkttyagent", "--notify-fd", fdarg,
		      "--fallback", "--process", pidarg, (char *)NULL);
		_exit(127);
	}
	close(pipefd[1]);
	if (agent_pid > 0) {
		/* pkttyagent closes the fd once registered; give it 5 s. */
		struct pollfd p = { .fd = pipefd[0], .events = POLLIN };

		poll(&p, 1, 5000);
	}
	close(pipefd[0]);
}

void ctl_polkit_agent_forget(void)
{
	agent_pid = 0;
}

void ctl_polkit_agent_close(void)
{
	if (agent_pid <= 0)
		return;
	kill(agent_pid, SIGTERM);
	waitpid(agent_pid, NULL, 0);
	agent_pid = 0;
}
