/* SPDX-License-Identifier: MIT */
/*
 * /org/smplaser/Laser1/unit/<serial>: org.smplaser.Laser1.Unit, and
 * org.smplaser.Laser1.Simulator on simulated units.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "audit.h"
#include "bus.h"
#include "creds.h"
#include "errors.h"
#include "log.h"
#include "text.h"
#include "unit-ops.h"

#define RTC_SKEW_MAX_S	(100LL * 366 * 86400)

/* What the caller gave, safe to echo: cut on a character, controls escaped. */
static const char *echo_arg(char echo[SMPL_ECHO_MAX], const char *arg)
{
	smpl_text_echo(echo, SMPL_ECHO_MAX, arg, SMPL_ECHO_CHARS);
	return echo;
}

/* --- lookup ------------------------------------------------------------------ */

static int unit_find(sd_bus *bus, const char *path, const char *interface,
		     void *userdata, void **found, sd_bus_error *error)
{
	struct smpl_unit *u = smpl_unit_by_path(userdata, path);

	(void)bus, (void)interface, (void)error;
	if (!u)
		return 0;
	*found = u;
	return 1;
}

/* A simulated unit keeps its Simulator while unplugged: the hands that plug it in. */
static struct smpl_unit *simulated_unit(struct smpl_daemon *d, const char *path)
{
	for (struct smpl_unit *u = d->units; u; u = u->next)
		if (u->backend->sim && u->path && strcmp(u->path, path) == 0)
			return u;
	return NULL;
}

static int simulator_find(sd_bus *bus, const char *path, const char *interface,
			  void *userdata, void **found, sd_bus_error *error)
{
	struct smpl_unit *u = simulated_unit(userdata, path);

	(void)bus, (void)interface, (void)error;
	if (!u)
		return 0;
	*found = u;
	return 1;
}

static int unit_enumerate(sd_bus *bus, const char *prefix, void *userdata,
			  char ***nodes, sd_bus_error *error)
{
	struct smpl_daemon *d = userdata;
	char **list = NULL;
	size_t n = 0;
	int r;

	(void)bus, (void)prefix, (void)error;
	for (struct smpl_unit *u = d->units; u; u = u->next) {
		if (!u->path || (!u->published && !u->backend->sim))
			continue;
		r = smpl_bus_nodes_add(&list, &n, u->path);
		if (r < 0) {
			smpl_bus_nodes_free(list);
			return r;
		}
	}
	return smpl_bus_nodes_take(&list, nodes);
}

/* --- properties ------------------------------------------------------------------ */


static int property_string(SMPL_PROPERTY_ARGS)
{
	struct smpl_unit *u = userdata;
	const char *v = "";

	SMPL_UNUSED_PROPERTY_ARGS;
	if (strcmp(property, "Serial") == 0)
		v = u->info.serial;
	else if (strcmp(property, "Model") == 0)
		v = u->info.model;
	else if (strcmp(property, "Firmware") == 0)
		v = u->firmware;
	else if (strcmp(property, "Backend") == 0)
		v = smpl_backend_name(u->backend);
	else if (strcmp(property, "State") == 0)
		v = smpl_unit_state_name(u);
	else if (strcmp(property, "LatchedFault") == 0)
		v = smpl_unit_fault_name(u);
	return sd_bus_message_append(reply, "s", v);
}

/* true = closed (safe); false also when the unit's state is unknown. */
static int property_interlocks(SMPL_PROPERTY_ARGS)
{
	struct smpl_unit *u = userdata;
	uint16_t closed = smpl_unit_interlocks_closed(u);
	int r;

	SMPL_UNUSED_PROPERTY_ARGS;
	r = sd_bus_message_open_container(reply, 'a', "{sb}");
	for (unsigned int i = 0; i < SMPL_IL_COUNT && r >= 0; i++)
		r = sd_bus_message_append(reply, "{sb}", smpl_interlock_name((uint16_t)(1u << i)),
					  (closed & (1u << i)) != 0);
	if (r < 0)
		return r;
	return sd_bus_message_close_container(reply);
}

static int property_parameters(SMPL_PROPERTY_ARGS)
{
	struct smpl_unit *u = userdata;
	const struct smpl_params_n *p = &u->params;

	SMPL_UNUSED_PROPERTY_ARGS;
	if (!u->params_set)
		return sd_bus_message_append(reply, "a{sv}", 0);
	return sd_bus_message_append(reply, "a{sv}", 6,
				     "wavelength_nm", "u", (uint32_t)p->wavelength_nm,
				     "fluence_mj_cm2", "u", p->fluence_mj_cm2,
				     "spot_um", "u", (uint32_t)p->spot_um,
				     "pulse_ps", "u", p->pulse_ps,
				     "rate_mhz", "u", p->rate_mhz,
				     "energy_uj", "u", smpl_params_energy_uj(p));
}

static int property_shot_count(SMPL_PROPERTY_ARGS)
{
	struct smpl_unit *u = userdata;

	SMPL_UNUSED_PROPERTY_ARGS;
	return sd_bus_message_append(reply, "u", u->status.shot_count);
}

static int property_session(SMPL_PROPERTY_ARGS)
{
	struct smpl_unit *u = userdata;

	SMPL_UNUSED_PROPERTY_ARGS;
	return sd_bus_message_append(reply, "o", u->session ? u->session->path : "/");
}

/* --- methods ------------------------------------------------------------------ */

static int method_start_session(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
	struct smpl_unit *u = userdata;
	const char *patient;
	uid_t uid;
	int r;

	r = sd_bus_message_read(m, "s", &patient);
	if (r < 0)
		return r;
	r = smpl_bus_authorize(u->daemon, m, SMPL_ACTION_TREAT, &uid, error);
	if (r <= 0)
		return smpl_bus_not_now(r);
	return smpl_session_new(u, m, patient, uid, error);	/* answered when recorded */
}

/* One integer variant widened to int64; *type is its D-Bus type or 'v'. */
static int read_integer_variant(sd_bus_message *m, char *type, int64_t *value)
{
	const char *contents;
	union {
		uint8_t y; int16_t n; uint16_t q; int32_t i; uint32_t u; int64_t x; uint64_t t;
	} v;
	int r;

	r = sd_bus_message_peek_type(m, NULL, &contents);
	if (r < 0)
		return r;
	*value = 0;
	if (strlen(contents) != 1 || !strchr("ynqiuxt", contents[0])) {
		*type = contents[0] ? contents[0] : 'v';
		return sd_bus_message_skip(m, "v");
	}
	*type = contents[0];
	r = sd_bus_message_read(m, "v", contents, &v);
	if (r < 0)
		return r;
	switch (*type) {
	case 'y': *value = v.y; break;
	case 'n': *value = v.n; break;
	case 'q': *value = v.q; break;
	case 'i': *value = v.i; break;
	case 'u': *value = v.u; break;
	case 'x': *value = v.x; break;
	case 't': *value = v.t > INT64_MAX ? INT64_MAX : (int64_t)v.t; break;
	}
	return 0;
}

/*
 * SetParameters' a{sv} merged into @p.  0, a bus error (< 0, @err empty),
 * or -EINVAL / -ERANGE with @err naming the field.
 */
static int read_parameters(sd_bus_message *m, struct smpl_params_n *p,
			   char *err, size_t err_len)
{
	const char *key;
	int64_t value;
	char type;
	int r;

	err[0] = '\0';
	r = sd_bus_message_enter_container(m, 'a', "{sv}");
	if (r < 0)
		return r;
	while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
		r = sd_bus_message_read(m, "s", &key);
		if (r < 0)
			return r;
		r = read_integer_variant(m, &type, &value);
		if (r < 0)
			return r;
		r = smpl_params_set_field(p, key, type, value, err, err_len);
		if (r < 0)
			return r;
		r = sd_bus_message_exit_container(m);
		if (r < 0)
			return r;
	}
	if (r < 0)
		return r;
	return sd_bus_message_exit_container(m);
}

static int method_set_parameters(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
	struct smpl_unit *u = userdata;
	struct smpl_daemon *d = u->daemon;
	struct smpl_params_n p = u->params;	/* keys not given keep their value */
	char err[SMPL_REASON_MAX];
	uid_t uid;
	int r;

	if (u->session) {
		r = smpl_session_check_owner(u->session, m, "SetParameters", error);
		if (r <= 0)
			return smpl_bus_not_now(r);
	}
	r = smpl_bus_authorize(d, m, SMPL_ACTION_CONFIGURE, &uid, error);
	if (r <= 0)
		return smpl_bus_not_now(r);
	r = read_parameters(m, &p, err, sizeof(err));
	if (r < 0 && err[0])
		return smpl_refuse(d, u, u->session ? u->session->id : 0, uid, error,
				   r == -ERANGE ? SMPL_ERROR_OUT_OF_RANGE
						: SMPL_ERROR_INVALID_ARGUMENT, "%s", err);
	if (r < 0)
		return r;
	return smpl_unit_set_parameters(u, m, &p, uid, error);	/* answered when set */
}

static int method_arm(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
	struct smpl_unit *u = userdata;
	uid_t uid;
	int r;

	if (u->session) {
		r = smpl_session_check_owner(u->session, m, "Arm", error);
		if (r <= 0)
			return smpl_bus_not_now(r);
	}
	r = smpl_bus_authorize(u->daemon, m, SMPL_ACTION_TREAT, &uid, error);
	if (r <= 0)
		return smpl_bus_not_now(r);
	return smpl_unit_arm(u, m, uid, error);	/* answered when armed or refused */
}

/*
 * Making the unit safe is never refused nor delayed: Disarm asks no polkit,
 * since a polkit that hangs or says no must not keep a laser armed, and the
 * unit's DISARM goes first, before anything is asked of the bus.  Any peer
 * the D-Bus policy lets in may disarm; its uid goes into the audit trail
 * (-1 if the bus cannot tell it, and the unit is disarmed anyway).  The call
 * is answered only once the unit was told to disarm (its safe worker may run
 * late): a client told "disarmed" sees no pulse after that.
 */
static int method_disarm(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
	struct smpl_unit *u = userdata;
	uid_t uid = (uid_t)-1;
	int r;

	(void)error;
	smpl_unit_disarm_now(u);
	r = smpl_creds_uid(u->daemon->creds, m, &uid);
	if (r == 0) {
		/* Safe now; asked who: the call comes again and is audited as theirs. */
		(void)smpl_unit_disarm(u, m, NULL);
		return 1;
	}
	if (r < 0)
		uid = (uid_t)-1;
	/* Answered once the unit was told, ahead of the end counter's read. */
	smpl_unit_disarm_answer(u, m);
	(void)smpl_unit_disarm(u, m, &uid);
	return 1;
}

static int method_acknowledge(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
	struct smpl_unit *u = userdata;
	uid_t uid;
	int r;

	r = smpl_bus_authorize(u->daemon, m, SMPL_ACTION_ACKNOWLEDGE, &uid, error);
	if (r <= 0)
		return smpl_bus_not_now(r);
	return smpl_unit_acknowledge(u, m, uid, error);	/* answered when done */
}

static const sd_bus_vtable unit_vtable[] = {
	SD_BUS_VTABLE_START(0),
	SD_BUS_PROPERTY("Serial", "s", property_string, 0, SD_BUS_VTABLE_PROPERTY_CONST),
	SD_BUS_PROPERTY("Model", "s", property_string, 0, SD_BUS_VTABLE_PROPERTY_CONST),
	SD_BUS_PROPERTY("Firmware", "s", property_string, 0, SD_BUS_VTABLE_PROPERTY_CONST),
	SD_BUS_PROPERTY("Backend", "s", property_string, 0, SD_BUS_VTABLE_PROPERTY_CONST),
	SD_BUS_PROPERTY("State", "s", property_string, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
	SD_BUS_PROPERTY("Interlocks", "a{sb}", property_interlocks, 0,
			SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
	SD_BUS_PROPERTY("Parameters", "a{sv}", property_parameters, 0,
			SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
	SD_BUS_PROPERTY("ShotCount", "u", property_shot_count, 0,
			SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
	SD_BUS_PROPERTY("Session", "o", property_session, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
	SD_BUS_PROPERTY("LatchedFault", "s", property_string, 0,
			SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
	SD_BUS_METHOD_WITH_ARGS("StartSession", SD_BUS_ARGS("s", patient),
				SD_BUS_RESULT("o", session), method_start_session,
				SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_ARGS("SetParameters", SD_BUS_ARGS("a{sv}", parameters),
				SD_BUS_NO_RESULT, method_set_parameters,
				SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_ARGS("Arm", SD_BUS_NO_ARGS, SD_BUS_NO_RESULT, method_arm,
				SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_ARGS("Disarm", SD_BUS_NO_ARGS, SD_BUS_NO_RESULT, method_disarm,
				SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_ARGS("AcknowledgeFault", SD_BUS_NO_ARGS, SD_BUS_NO_RESULT,
				method_acknowledge, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_SIGNAL_WITH_ARGS("Pulse",
				SD_BUS_ARGS("o", session, "u", shot, "u", measured_uj,
					    "u", set_uj), 0),
	SD_BUS_SIGNAL_WITH_ARGS("Fault", SD_BUS_ARGS("s", code, "s", message), 0),
	SD_BUS_VTABLE_END
};

/* --- Simulator ------------------------------------------------------------------ */

static int sim_result(sd_bus_message *m, struct smpl_unit *u, int r, sd_bus_error *error)
{
	if (r == -ENODEV)
		return smpl_error_setf(error, SMPL_ERROR_DISCONNECTED,
				       "unit %s is unplugged", smpl_unit_label(u));
	if (r == -EALREADY)
		return smpl_error_setf(error, SMPL_ERROR_BUSY,
				       "unit %s is plugged in already", smpl_unit_label(u));
	if (r < 0)
		return r;
	return sd_bus_reply_method_return(m, NULL);
}

/* Reads the arguments after authorization, so a suspended call is re-read. */
static int sim_authorize(sd_bus_message *m, struct smpl_unit *u, sd_bus_error *error)
{
	uid_t uid;
	int r = smpl_bus_authorize(u->daemon, m, SMPL_ACTION_CONFIGURE, &uid, error);

	if (r > 0)
		smpl_log(LOG_INFO, smpl_unit_label(u), NULL, "simulator", "%s by uid %u",
			 sd_bus_message_get_member(m), (unsigned int)uid);
	return r;
}

static int method_sim_footswitch(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
	struct smpl_unit *u = userdata;
	int held, r;

	r = sim_authorize(m, u, error);
	if (r <= 0)
		return smpl_bus_not_now(r);
	r = sd_bus_message_read(m, "b", &held);
	if (r < 0)
		return r;
	return sim_result(m, u, u->backend->sim->set_footswitch(u->backend, held), error);
}

static int method_sim_interlock(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
	char echo[SMPL_ECHO_MAX], known[128];
	struct smpl_unit *u = userdata;
	const char *name;
	uint16_t bit;
	int open, r;

	r = sim_authorize(m, u, error);
	if (r <= 0)
		return smpl_bus_not_now(r);
	r = sd_bus_message_read(m, "sb", &name, &open);
	if (r < 0)
		return r;
	bit = smpl_interlock_by_name(name);
	if (bit)
		return sim_result(m, u, u->backend->sim->set_interlock(u->backend, bit, open),
				  error);
	return smpl_error_setf(error, SMPL_ERROR_INVALID_ARGUMENT,
			       "name: unknown interlock \"%s\" (%s)", echo_arg(echo, name),
			       smpl_interlock_list(known, sizeof(known)));
}

static int method_sim_drift(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
	struct smpl_unit *u = userdata;
	int32_t ppm;
	int r;

	r = sim_authorize(m, u, error);
	if (r <= 0)
		return smpl_bus_not_now(r);
	r = sd_bus_message_read(m, "i", &ppm);
	if (r < 0)
		return r;
	if (ppm < -1000000 || ppm > 1000000)
		return smpl_error_setf(error, SMPL_ERROR_OUT_OF_RANGE,
				       "ppm: %d is outside -1000000..1000000", ppm);
	return sim_result(m, u, u->backend->sim->set_drift(u->backend, ppm), error);
}

static int method_sim_fault(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
	char echo[SMPL_ECHO_MAX];
	struct smpl_unit *u = userdata;
	const char *name;
	int r;

	r = sim_authorize(m, u, error);
	if (r <= 0)
		return smpl_bus_not_now(r);
	r = sd_bus_message_read(m, "s", &name);
	if (r < 0)
		return r;
	for (uint8_t f = 1; f <= SMPL_FAULT__MAX; f++)
		if (strcmp(smpl_fault_slug(f), name) == 0)
			return sim_result(m, u, u->backend->sim->inject_fault(u->backend, f),
					  error);
	return smpl_error_setf(error, SMPL_ERROR_INVALID_ARGUMENT,
			       "fault: unknown fault \"%s\" (watchdog, interlock, self-test, "
			       "energy, overtemp, cooling, shutter, internal)",
			       echo_arg(echo, name));
}

static int method_sim_clear_fault(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
	struct smpl_unit *u = userdata;
	int r = sim_authorize(m, u, error);

	if (r <= 0)
		return smpl_bus_not_now(r);
	return sim_result(m, u, u->backend->sim->clear_fault_cause(u->backend), error);
}

static int method_sim_rtc_skew(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
	struct smpl_unit *u = userdata;
	int64_t skew;
	int r;

	r = sim_authorize(m, u, error);
	if (r <= 0)
		return smpl_bus_not_now(r);
	r = sd_bus_message_read(m, "x", &skew);
	if (r < 0)
		return r;
	if (skew < -RTC_SKEW_MAX_S || skew > RTC_SKEW_MAX_S)
		return smpl_error_setf(error, SMPL_ERROR_OUT_OF_RANGE,
				       "seconds: %" PRId64 " is outside -%lld..%lld (100 years)",
				       skew, RTC_SKEW_MAX_S, RTC_SKEW_MAX_S);
	return sim_result(m, u, u->backend->sim->set_rtc_skew(u->backend, skew), error);
}

static int method_sim_calibration(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
	struct smpl_unit *u = userdata;
	int valid, r;

	r = sim_authorize(m, u, error);
	if (r <= 0)
		return smpl_bus_not_now(r);
	r = sd_bus_message_read(m, "b", &valid);
	if (r < 0)
		return r;
	return sim_result(m, u, u->backend->sim->set_calibration(u->backend, valid), error);
}

static int method_sim_shot_counter(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
	struct smpl_unit *u = userdata;
	uint32_t count;
	int r;

	r = sim_authorize(m, u, error);
	if (r <= 0)
		return smpl_bus_not_now(r);
	r = sd_bus_message_read(m, "u", &count);
	if (r < 0)
		return r;
	return sim_result(m, u, u->backend->sim->set_shot_count(u->backend, count), error);
}

static int method_sim_hold_reports(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
	struct smpl_unit *u = userdata;
	int hold, r;

	r = sim_authorize(m, u, error);
	if (r <= 0)
		return smpl_bus_not_now(r);
	r = sd_bus_message_read(m, "b", &hold);
	if (r < 0)
		return r;
	return sim_result(m, u, u->backend->sim->hold_reports(u->backend, hold), error);
}

static const char *const hostile_names[] = {
	"none", "short", "oversize", "bad-crc", "wrong-seq", "stall", "no-answer", "flood",
	"ignore-disarm", "stuck-counter", "fast-rate", "lie-standby",
};

static int method_sim_hostile(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
	char echo[SMPL_ECHO_MAX];
	struct smpl_unit *u = userdata;
	const char *mode;
	uint32_t count;
	int r;

	r = sim_authorize(m, u, error);
	if (r <= 0)
		return smpl_bus_not_now(r);
	r = sd_bus_message_read(m, "su", &mode, &count);
	if (r < 0)
		return r;
	for (int i = 0; i < (int)(sizeof(hostile_names) / sizeof(hostile_names[0])); i++)
		if (strcmp(hostile_names[i], mode) == 0)
			return sim_result(m, u, u->backend->sim->set_hostile(u->backend, i, count),
					  error);
	return smpl_error_setf(error, SMPL_ERROR_INVALID_ARGUMENT,
			       "mode: unknown hostile mode \"%s\" (none, short, oversize, "
			       "bad-crc, wrong-seq, stall, no-answer, flood, ignore-disarm, "
			       "stuck-counter, fast-rate, lie-standby)",
			       echo_arg(echo, mode));
}

static const struct {
	const char *name;
	uint8_t op;
} command_names[] = {
	{ "get-info", SMPL_OP_GET_INFO }, { "set-params", SMPL_OP_SET_PARAMS },
	{ "arm", SMPL_OP_ARM }, { "disarm", SMPL_OP_DISARM },
	{ "heartbeat", SMPL_OP_HEARTBEAT }, { "get-rtc", SMPL_OP_GET_RTC },
	{ "ack-fault", SMPL_OP_ACK_FAULT }, { "get-status", SMPL_OP_GET_STATUS },
	{ "pulse-report", SMPL_OP_PULSE },	/* the next pulse's report is lost */
};

static int method_sim_drop_reply(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
	char echo[SMPL_ECHO_MAX];
	struct smpl_unit *u = userdata;
	const char *command;
	int r;

	r = sim_authorize(m, u, error);
	if (r <= 0)
		return smpl_bus_not_now(r);
	r = sd_bus_message_read(m, "s", &command);
	if (r < 0)
		return r;
	for (size_t i = 0; i < sizeof(command_names) / sizeof(command_names[0]); i++)
		if (strcmp(command_names[i].name, command) == 0)
			return sim_result(m, u, u->backend->sim->drop_next_reply(
						  u->backend, command_names[i].op), error);
	return smpl_error_setf(error, SMPL_ERROR_INVALID_ARGUMENT,
			       "command: unknown command \"%s\" (get-info, set-params, arm, "
			       "disarm, heartbeat, get-rtc, ack-fault, get-status, pulse-report)",
			       echo_arg(echo, command));
}

static int method_sim_unplug(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
	struct smpl_unit *u = userdata;
	int r = sim_authorize(m, u, error);

	if (r <= 0)
		return smpl_bus_not_now(r);
	return sim_result(m, u, u->backend->sim->unplug(u->backend), error);
}

static int method_sim_replug(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
	struct smpl_unit *u = userdata;
	int r = sim_authorize(m, u, error);

	if (r <= 0)
		return smpl_bus_not_now(r);
	return sim_result(m, u, u->backend->sim->replug(u->backend), error);
}

static const sd_bus_vtable simulator_vtable[] = {
	SD_BUS_VTABLE_START(0),
	SD_BUS_METHOD_WITH_ARGS("SetFootswitch", SD_BUS_ARGS("b", held), SD_BUS_NO_RESULT,
				method_sim_footswitch, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_ARGS("SetInterlock", SD_BUS_ARGS("s", name, "b", open),
				SD_BUS_NO_RESULT, method_sim_interlock,
				SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_ARGS("SetEnergyDrift", SD_BUS_ARGS("i", ppm), SD_BUS_NO_RESULT,
				method_sim_drift, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_ARGS("InjectFault", SD_BUS_ARGS("s", fault), SD_BUS_NO_RESULT,
				method_sim_fault, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_ARGS("ClearFaultCause", SD_BUS_NO_ARGS, SD_BUS_NO_RESULT,
				method_sim_clear_fault, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_ARGS("SetRtcSkew", SD_BUS_ARGS("x", seconds), SD_BUS_NO_RESULT,
				method_sim_rtc_skew, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_ARGS("SetCalibration", SD_BUS_ARGS("b", valid), SD_BUS_NO_RESULT,
				method_sim_calibration, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_ARGS("SetHostile", SD_BUS_ARGS("s", mode, "u", count),
				SD_BUS_NO_RESULT, method_sim_hostile, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_ARGS("DropNextReply", SD_BUS_ARGS("s", command), SD_BUS_NO_RESULT,
				method_sim_drop_reply, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_ARGS("SetShotCounter", SD_BUS_ARGS("u", count), SD_BUS_NO_RESULT,
				method_sim_shot_counter, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_ARGS("HoldReports", SD_BUS_ARGS("b", hold), SD_BUS_NO_RESULT,
				method_sim_hold_reports, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_ARGS("Unplug", SD_BUS_NO_ARGS, SD_BUS_NO_RESULT,
				method_sim_unplug, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_ARGS("Replug", SD_BUS_NO_ARGS, SD_BUS_NO_RESULT,
				method_sim_replug, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_VTABLE_END
};

/* --- what changed, announced (the observer's unit part) ------------------------ */

/* Each property as its getter shows it, compared with what was announced. */
static bool state_differs(const struct smpl_unit_shown *a, const struct smpl_unit_shown *b)
{
	return strcmp(a->state, b->state) != 0;
}

static bool interlocks_differ(const struct smpl_unit_shown *a, const struct smpl_unit_shown *b)
{
	return a->closed != b->closed;
}

static bool shot_count_differs(const struct smpl_unit_shown *a, const struct smpl_unit_shown *b)
{
	return a->shot_count != b->shot_count;
}

static bool fault_differs(const struct smpl_unit_shown *a, const struct smpl_unit_shown *b)
{
	return strcmp(a->fault, b->fault) != 0;
}

static bool session_differs(const struct smpl_unit_shown *a, const struct smpl_unit_shown *b)
{
	return a->session != b->session;
}

static bool parameters_differ(const struct smpl_unit_shown *a, const struct smpl_unit_shown *b)
{
	return a->params_set != b->params_set ||
	       memcmp(&a->params, &b->params, sizeof(a->params)) != 0;
}

/* Every property that can change, and how to tell: PropertiesChanged is built from it. */
static const struct {
	const char *name;
	bool (*differs)(const struct smpl_unit_shown *a, const struct smpl_unit_shown *b);
} unit_changes[] = {
	{ "State", state_differs },
	{ "Interlocks", interlocks_differ },
	{ "ShotCount", shot_count_differs },
	{ "LatchedFault", fault_differs },
	{ "Session", session_differs },
	{ "Parameters", parameters_differ },
};

#define N_UNIT_CHANGES (sizeof(unit_changes) / sizeof(unit_changes[0]))

void smpl_bus_unit_changed(struct smpl_unit *u)
{
	struct smpl_unit_shown now = {
		.valid = true,
		.object_announced = u->shown.object_announced,
		.state = smpl_unit_state_name(u),
		.closed = smpl_unit_interlocks_closed(u),
		.shot_count = u->status.shot_count,
		.fault = smpl_unit_fault_name(u),
		.session = u->session,
		.params_set = u->params_set,
		.params = u->params,
	};
	const char *changed[N_UNIT_CHANGES + 1];
	size_t n = 0;

	for (size_t i = 0; i < N_UNIT_CHANGES; i++)
		if (!u->shown.valid || unit_changes[i].differs(&u->shown, &now))
			changed[n++] = unit_changes[i].name;
	changed[n] = NULL;
	u->shown = now;
	if (n > 0)
		(void)sd_bus_emit_properties_changed_strv(u->daemon->bus, u->path,
							  SMPL_IFACE_UNIT, (char **)changed);
}

void smpl_bus_unit_published(struct smpl_unit *u)
{
	/* A simulated unit plugged in again: its Simulator never left. */
	if (u->shown.object_announced)
		(void)sd_bus_emit_interfaces_added(u->daemon->bus, u->path, SMPL_IFACE_UNIT, NULL);
	else
		(void)sd_bus_emit_object_added(u->daemon->bus, u->path);
	u->shown = (struct smpl_unit_shown){ .object_announced = true };
}

void smpl_bus_unit_unpublished(struct smpl_unit *u, bool gone)
{
	if (gone)
		(void)sd_bus_emit_object_removed(u->daemon->bus, u->path);
	else
		(void)sd_bus_emit_interfaces_removed(u->daemon->bus, u->path, SMPL_IFACE_UNIT, NULL);
}

void smpl_bus_unit_pulse(struct smpl_unit *u, const struct smpl_session *s,
			 const struct smpl_pulse_n *p)
{
	(void)sd_bus_emit_signal(u->daemon->bus, u->path, SMPL_IFACE_UNIT, "Pulse", "ouuu",
				 s ? s->path : "/", p->shot, p->measured_uj, p->set_uj);
}

void smpl_bus_unit_fault(struct smpl_unit *u, const char *code, const char *message)
{
	(void)sd_bus_emit_signal(u->daemon->bus, u->path, SMPL_IFACE_UNIT, "Fault", "ss",
				 code, message);
}

int smpl_bus_unit_setup(struct smpl_daemon *d)
{
	int r;

	r = sd_bus_add_fallback_vtable(d->bus, NULL, SMPL_UNIT_PREFIX, SMPL_IFACE_UNIT,
				       unit_vtable, unit_find, d);
	if (r < 0)
		return r;
	r = sd_bus_add_fallback_vtable(d->bus, NULL, SMPL_UNIT_PREFIX, SMPL_IFACE_SIMULATOR,
				       simulator_vtable, simulator_find, d);
	if (r < 0)
		return r;
	return sd_bus_add_node_enumerator(d->bus, NULL, SMPL_UNIT_PREFIX, unit_enumerate, d);
}
