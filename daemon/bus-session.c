/* SPDX-License-Identifier: MIT */
/* /org/smplaser/Laser1/session/<n>: org.smplaser.Laser1.Session. */
#include <errno.h>
#include <string.h>

#include "bus.h"
#include "errors.h"

static int session_find(sd_bus *bus, const char *path, const char *interface,
			void *userdata, void **found, sd_bus_error *error)
{
	struct smpl_session *s = smpl_session_by_path(userdata, path);

	(void)bus, (void)interface, (void)error;
	if (!s)
		return 0;
	*found = s;
	return 1;
}

static int session_enumerate(sd_bus *bus, const char *prefix, void *userdata,
			     char ***nodes, sd_bus_error *error)
{
	struct smpl_daemon *d = userdata;
	char **list = NULL;
	size_t n = 0;
	int r;

	(void)bus, (void)prefix, (void)error;
	for (struct smpl_session *s = d->sessions; s; s = s->next) {
		r = smpl_bus_nodes_add(&list, &n, s->path);
		if (r < 0) {
			smpl_bus_nodes_free(list);
			return r;
		}
	}
	return smpl_bus_nodes_take(&list, nodes);
}


static int property_string(SMPL_PROPERTY_ARGS)
{
	struct smpl_session *s = userdata;
	const char *v = "";

	SMPL_UNUSED_PROPERTY_ARGS;
	if (strcmp(property, "Patient") == 0)
		v = s->patient;
	else if (strcmp(property, "Patch") == 0)
		v = s->patch;
	else if (strcmp(property, "State") == 0)
		v = smpl_session_state_name(s);
	return sd_bus_message_append(reply, "s", v);
}

static int property_unit(SMPL_PROPERTY_ARGS)
{
	struct smpl_session *s = userdata;

	SMPL_UNUSED_PROPERTY_ARGS;
	return sd_bus_message_append(reply, "o", s->unit && s->unit->path ? s->unit->path : "/");
}

static int property_pulse_count(SMPL_PROPERTY_ARGS)
{
	struct smpl_session *s = userdata;

	SMPL_UNUSED_PROPERTY_ARGS;
	return sd_bus_message_append(reply, "u", s->pulse_count);
}

static int property_eyewear(SMPL_PROPERTY_ARGS)
{
	struct smpl_session *s = userdata;

	SMPL_UNUSED_PROPERTY_ARGS;
	return sd_bus_message_append(reply, "b", s->eyewear_confirmed);
}

/* EndpointsMissing: the patches whose treatment emitted without an endpoint since (issue 16). */
static int property_endpoints_missing(SMPL_PROPERTY_ARGS)
{
	struct smpl_session *s = userdata;
	char buf[1024];
	int r;

	SMPL_UNUSED_PROPERTY_ARGS;
	(void)smpl_session_endpoints_missing(s, NULL, buf, sizeof(buf));
	r = sd_bus_message_open_container(reply, 'a', "s");
	for (char *p = buf, *next; r >= 0 && *p; p = next) {
		next = strstr(p, ", ");
		if (next) {
			*next = '\0';
			next += 2;
		} else {
			next = p + strlen(p);
		}
		r = sd_bus_message_append(reply, "s", p);
	}
	if (r < 0)
		return r;
	return sd_bus_message_close_container(reply);
}

static int method_record_endpoint(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
	struct smpl_session *s = userdata;
	const char *patch, *endpoint, *note;
	uid_t uid;
	int r;

	r = sd_bus_message_read(m, "sss", &patch, &endpoint, &note);
	if (r < 0)
		return r;
	r = smpl_session_check_owner(s, m, "RecordEndpoint", error);
	if (r <= 0)
		return smpl_bus_not_now(r);
	r = smpl_bus_authorize(s->daemon, m, SMPL_ACTION_DOCUMENT, &uid, error);
	if (r <= 0)
		return smpl_bus_not_now(r);
	return smpl_session_record_endpoint(s, m, patch, endpoint, note, uid, error);
}

static int method_select_patch(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
	struct smpl_session *s = userdata;
	const char *patch;
	uid_t uid;
	int r;

	r = sd_bus_message_read(m, "s", &patch);
	if (r < 0)
		return r;
	r = smpl_session_check_owner(s, m, "SelectPatch", error);
	if (r <= 0)
		return smpl_bus_not_now(r);
	r = smpl_bus_authorize(s->daemon, m, SMPL_ACTION_TREAT, &uid, error);
	if (r <= 0)
		return smpl_bus_not_now(r);
	return smpl_session_select_patch(s, m, patch, uid, error);	/* answered when read */
}

static int method_confirm_eyewear(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
	struct smpl_session *s = userdata;
	uid_t uid;
	int r;

	r = smpl_session_check_owner(s, m, "ConfirmEyewear", error);
	if (r <= 0)
		return smpl_bus_not_now(r);
	r = smpl_bus_authorize(s->daemon, m, SMPL_ACTION_TREAT, &uid, error);
	if (r <= 0)
		return smpl_bus_not_now(r);
	r = smpl_session_confirm_eyewear(s, uid, error);
	if (r < 0)
		return r;
	return sd_bus_reply_method_return(m, NULL);
}

static int method_end(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
	struct smpl_session *s = userdata;
	const char *notes;
	uid_t uid;
	int r;

	r = sd_bus_message_read(m, "s", &notes);
	if (r < 0)
		return r;
	r = smpl_session_check_owner(s, m, "End", error);
	if (r <= 0)
		return smpl_bus_not_now(r);
	r = smpl_bus_authorize(s->daemon, m, SMPL_ACTION_TREAT, &uid, error);
	if (r <= 0)
		return smpl_bus_not_now(r);
	r = smpl_session_refuse_missing_endpoint(s, NULL, uid, "End", error);	/* issue 16 */
	if (r < 0)
		return r;
	r = smpl_session_end(s, STORE_SESSION_ENDED, notes, &uid, error);
	if (r < 0)
		return r;
	return sd_bus_reply_method_return(m, NULL);
}

static const sd_bus_vtable session_vtable[] = {
	SD_BUS_VTABLE_START(0),
	SD_BUS_PROPERTY("Patient", "s", property_string, 0, SD_BUS_VTABLE_PROPERTY_CONST),
	SD_BUS_PROPERTY("Unit", "o", property_unit, 0, SD_BUS_VTABLE_PROPERTY_CONST),
	SD_BUS_PROPERTY("Patch", "s", property_string, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
	SD_BUS_PROPERTY("PulseCount", "u", property_pulse_count, 0,
			SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
	SD_BUS_PROPERTY("EyewearConfirmed", "b", property_eyewear, 0,
			SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
	SD_BUS_PROPERTY("State", "s", property_string, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
	SD_BUS_PROPERTY("EndpointsMissing", "as", property_endpoints_missing, 0,
			SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
	SD_BUS_METHOD_WITH_ARGS("SelectPatch", SD_BUS_ARGS("s", patch), SD_BUS_NO_RESULT,
				method_select_patch, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_ARGS("ConfirmEyewear", SD_BUS_NO_ARGS, SD_BUS_NO_RESULT,
				method_confirm_eyewear, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_ARGS("End", SD_BUS_ARGS("s", notes), SD_BUS_NO_RESULT,
				method_end, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_ARGS("RecordEndpoint",
				SD_BUS_ARGS("s", patch, "s", endpoint, "s", note), SD_BUS_NO_RESULT,
				method_record_endpoint, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_VTABLE_END
};

/* --- what changed, announced (the observer's session part) --------------------- */

static bool patch_differs(const struct smpl_session_shown *a, const struct smpl_session_shown *b)
{
	return strcmp(a->patch, b->patch) != 0;
}

static bool eyewear_differs(const struct smpl_session_shown *a, const struct smpl_session_shown *b)
{
	return a->eyewear_confirmed != b->eyewear_confirmed;
}

static bool pulse_count_differs(const struct smpl_session_shown *a,
				const struct smpl_session_shown *b)
{
	return a->pulse_count != b->pulse_count;
}

static bool state_differs(const struct smpl_session_shown *a, const struct smpl_session_shown *b)
{
	return !a->state || strcmp(a->state, b->state) != 0;
}

static bool endpoints_missing_differs(const struct smpl_session_shown *a,
				      const struct smpl_session_shown *b)
{
	return a->missing != b->missing;
}

/* Every property that can change, and how to tell: PropertiesChanged is built from it. */
static const struct {
	const char *name;
	bool (*differs)(const struct smpl_session_shown *a, const struct smpl_session_shown *b);
} session_changes[] = {
	{ "Patch", patch_differs },
	{ "EyewearConfirmed", eyewear_differs },
	{ "PulseCount", pulse_count_differs },
	{ "State", state_differs },
	{ "EndpointsMissing", endpoints_missing_differs },
};

#define N_SESSION_CHANGES (sizeof(session_changes) / sizeof(session_changes[0]))

void smpl_bus_session_changed(struct smpl_session *s)
{
	struct smpl_session_shown now = {
		.eyewear_confirmed = s->eyewear_confirmed,
		.pulse_count = s->pulse_count,
		.state = smpl_session_state_name(s),
	};
	const char *changed[N_SESSION_CHANGES + 1];
	size_t n = 0;

	memcpy(now.patch, s->patch, sizeof(now.patch));
	/* A digest of EndpointsMissing: which treatments are due (issue 16). */
	for (size_t i = 0; i < s->n_treatments; i++)
		if (s->treatments[i].emitted && !s->treatments[i].documented)
			now.missing = now.missing * 31u + (unsigned int)s->treatments[i].id + 1u;
	for (size_t i = 0; i < N_SESSION_CHANGES; i++)
		if (session_changes[i].differs(&s->shown, &now))
			changed[n++] = session_changes[i].name;
	changed[n] = NULL;
	s->shown = now;
	if (n > 0)
		(void)sd_bus_emit_properties_changed_strv(s->daemon->bus, s->path,
							  SMPL_IFACE_SESSION, (char **)changed);
}

void smpl_bus_session_published(struct smpl_session *s)
{
	(void)sd_bus_emit_object_added(s->daemon->bus, s->path);
}

void smpl_bus_session_unpublished(struct smpl_session *s)
{
	(void)sd_bus_emit_object_removed(s->daemon->bus, s->path);
}

int smpl_bus_session_setup(struct smpl_daemon *d)
{
	int r;

	r = sd_bus_add_fallback_vtable(d->bus, NULL, SMPL_SESSION_PREFIX, SMPL_IFACE_SESSION,
				       session_vtable, session_find, d);
	if (r < 0)
		return r;
	return sd_bus_add_node_enumerator(d->bus, NULL, SMPL_SESSION_PREFIX,
					  session_enumerate, d);
}
