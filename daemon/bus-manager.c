/* SPDX-License-Identifier: MIT */
/*
 * /org/smplaser/Laser1: org.smplaser.Laser1.Manager and the ObjectManager;
 * the registration of every object and the bus name.
 */
#include <errno.h>
#include <string.h>

#include "bus.h"
#include "creds.h"
#include "eligibility.h"
#include "errors.h"
#include "log.h"
#include "macro.h"
#include "records.h"

void smpl_bus_manager_changed(struct smpl_daemon *d, const char *property)
{
	(void)sd_bus_emit_properties_changed(d->bus, SMPL_ROOT_PATH, SMPL_IFACE_MANAGER,
					     property, NULL);
}

/* --- methods ------------------------------------------------------------ */

static int method_list_units(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
	struct smpl_daemon *d = userdata;
	_cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
	int r;

	(void)error;
	r = sd_bus_message_new_method_return(m, &reply);
	if (r < 0)
		return r;
	r = sd_bus_message_open_container(reply, 'a', "(osss)");
	for (struct smpl_unit *u = d->units; u && r >= 0; u = u->next)
		if (u->published)
			r = sd_bus_message_append(reply, "(osss)", u->path, u->info.serial,
						  u->info.model, smpl_unit_state_name(u));
	if (r >= 0)
		r = sd_bus_message_close_container(reply);
	if (r < 0)
		return r;
	return sd_bus_send(NULL, reply, NULL);
}

static int method_list_patches(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
	struct smpl_daemon *d = userdata;
	_cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
	int r;

	(void)error;
	r = sd_bus_message_new_method_return(m, &reply);
	if (r < 0)
		return r;
	r = sd_bus_message_open_container(reply, 'a', "(ss)");
	for (size_t i = 0; i < d->cfg.patches.count && r >= 0; i++)
		r = sd_bus_message_append(reply, "(ss)", d->cfg.patches.list[i].id,
					  d->cfg.patches.list[i].label);
	if (r >= 0)
		r = sd_bus_message_close_container(reply);
	if (r < 0)
		return r;
	return sd_bus_send(NULL, reply, NULL);
}

/* Patient and patch arguments, checked before anything is looked up. */
static int check_patient_patch(struct smpl_daemon *d, const char *patient,
			       const char *patch, sd_bus_error *error)
{
	char err[SMPL_REASON_MAX];

	if (smpl_patient_id_check(patient, err, sizeof(err)) < 0)
		return smpl_error_setf(error, SMPL_ERROR_INVALID_ARGUMENT, "%s", err);
	if (patch && smpl_patch_name_check(&d->cfg.patches, patch, err, sizeof(err)) < 0)
		return smpl_error_setf(error, SMPL_ERROR_INVALID_ARGUMENT, "%s", err);
	return 0;
}

/* A query answered once the records hold what happened before it (read your writes). */
static int after_writes(struct smpl_daemon *d, sd_bus_message *m,
			void (*then)(struct smpl_daemon *d, const struct smpl_records_call *c,
				     void *userdata))
{
	smpl_records_barrier(d, then, sd_bus_message_ref(m));
	return 1;
}

static void reply_error(sd_bus_message *m, sd_bus_error *e)
{
	(void)sd_bus_reply_method_error(m, e);
	sd_bus_error_free(e);
}

/*
 * The clinic's records (PostgreSQL) must hold what this workstation did
 * before the call, or the answer could be wrong: -ENOTCONN says they do not.
 */
static bool records_unavailable(const struct smpl_records_call *c, sd_bus_message *m)
{
	sd_bus_error e = SD_BUS_ERROR_NULL;

	if (c->r != -ENOTCONN)
		return false;
	(void)smpl_error_setf(&e, SMPL_ERROR_RECORDS_UNAVAILABLE,
			      "the clinic's records are unavailable: %s", c->msg);
	reply_error(m, &e);
	sd_bus_message_unref(m);
	return true;
}

static void check_patch_answer(struct smpl_daemon *d, int r, const struct smpl_patch_verdict *pv,
			       sd_bus_error *e, void *ud)
{
	sd_bus_message *m = ud;
	const struct smpl_eligibility *el = &pv->e;

	(void)d;
	if (r < 0)
		(void)sd_bus_reply_method_error(m, e);
	else
		(void)sd_bus_reply_method_return(m, "bts", el->eligible,
						 el->next_eligible_ms > 0 ?
						 (uint64_t)el->next_eligible_ms * 1000 : 0,
						 el->reason);
	sd_bus_message_unref(m);
}

static void check_patch_now(struct smpl_daemon *d, const struct smpl_records_call *c, void *ud)
{
	sd_bus_message *m = ud;
	const char *patient, *patch;

	if (records_unavailable(c, m))
		return;
	if (sd_bus_message_rewind(m, true) < 0 ||
	    sd_bus_message_read(m, "ss", &patient, &patch) < 0) {
		(void)sd_bus_reply_method_errorf(m, SD_BUS_ERROR_INVALID_ARGS, "bad arguments");
		sd_bus_message_unref(m);
		return;
	}
	smpl_check_patch(d, NULL, patient, patch, 0, check_patch_answer, m);
}

static int method_check_patch(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
	struct smpl_daemon *d = userdata;
	const char *patient, *patch;
	uid_t uid;
	int r;

	r = sd_bus_message_read(m, "ss", &patient, &patch);
	if (r < 0)
		return r;
	r = smpl_bus_authorize(d, m, SMPL_ACTION_RECORDS, &uid, error);
	if (r <= 0)
		return smpl_bus_not_now(r);
	r = check_patient_patch(d, patient, patch, error);
	if (r < 0)
		return r;
	return after_writes(d, m, check_patch_now);
}

static uint64_t usec(int64_t ms)
{
	return ms > 0 ? (uint64_t)ms * 1000 : 0;
}

static int append_treatment(const struct store_treatment *t, const char *workstation,
			    sd_bus_message *reply)
{
	return sd_bus_message_append(reply, "a{sv}", 21,
		"id", "x", t->id,
		"session", "x", t->session_id,
		"patch", "s", t->patch,
		"unit", "s", t->unit_serial,
		"firmware", "s", t->unit_firmware ? t->unit_firmware : "",
		"operator_uid", "u", t->op.uid,
		"outcome", "s", store_outcome_name(t->outcome),
		"armed_usec", "t", usec(t->armed_ms),
		"end_usec", "t", usec(t->end_ms),
		"pulses", "u", t->pulse_count_known ? t->pulse_count : t->pulses_recorded,
		"pulses_recorded", "u", t->pulses_recorded,
		"wavelength_nm", "u", (uint32_t)t->params.wavelength_nm,
		"fluence_mj_cm2", "u", t->params.fluence_mj_cm2,
		"spot_um", "u", (uint32_t)t->params.spot_um,
		"pulse_ps", "u", t->params.pulse_ps,
		"rate_mhz", "u", t->params.rate_mhz,
		"set_energy_uj", "u", t->params.set_energy_uj,
		"energy_min_uj", "u", t->energy_min_uj,
		"energy_max_uj", "u", t->energy_max_uj,
		"emission_usec", "t", usec(t->emission_ms),
		"workstation", "s", t->workstation ? t->workstation : workstation);
}

static void history_answer(struct smpl_daemon *d, const struct smpl_records_history *h, void *ud)
{
	sd_bus_message *m = ud, *reply = NULL;
	sd_bus_error e = SD_BUS_ERROR_NULL;
	int r;

	if (h->r < 0) {
		(void)smpl_error_setf(&e, h->r == -ENOTCONN ? SMPL_ERROR_RECORDS_UNAVAILABLE
							     : SMPL_ERROR_DEVICE_FAULT,
				      "cannot read the records: %s", h->msg);
		reply_error(m, &e);
		goto out;
	}
	r = sd_bus_message_new_method_return(m, &reply);
	if (r >= 0)
		r = sd_bus_message_open_container(reply, 'a', "a{sv}");
	for (size_t i = 0; i < h->n && r >= 0; i++)
		r = append_treatment(&h->v[i], d->cfg.records.workstation, reply);
	if (r >= 0)
		r = sd_bus_message_close_container(reply);
	if (r >= 0)
		r = sd_bus_send(NULL, reply, NULL);
	if (r < 0)
		(void)sd_bus_reply_method_errnof(m, -r, "cannot answer: %s", strerror(-r));
out:
	sd_bus_message_unref(reply);
	sd_bus_message_unref(m);
}

static void history_now(struct smpl_daemon *d, const struct smpl_records_call *c, void *ud)
{
	sd_bus_message *m = ud;
	const char *patient;

	if (records_unavailable(c, m))
		return;
	if (sd_bus_message_rewind(m, true) < 0 || sd_bus_message_read(m, "s", &patient) < 0) {
		(void)sd_bus_reply_method_errorf(m, SD_BUS_ERROR_INVALID_ARGS, "bad arguments");
		sd_bus_message_unref(m);
		return;
	}
	smpl_records_read_history(d, patient, history_answer, m);
}

static int method_history(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
	struct smpl_daemon *d = userdata;
	const char *patient;
	uid_t uid;
	int r;

	r = sd_bus_message_read(m, "s", &patient);
	if (r < 0)
		return r;
	r = smpl_bus_authorize(d, m, SMPL_ACTION_RECORDS, &uid, error);
	if (r <= 0)
		return smpl_bus_not_now(r);
	r = check_patient_patch(d, patient, NULL, error);
	if (r < 0)
		return r;
	return after_writes(d, m, history_now);
}

/* --- properties ------------------------------------------------------------ */

static int property_units(sd_bus *bus, const char *path, const char *interface,
			  const char *property, sd_bus_message *reply, void *userdata,
			  sd_bus_error *error)
{
	struct smpl_daemon *d = userdata;
	int r;

	(void)bus, (void)path, (void)interface, (void)property, (void)error;
	r = sd_bus_message_open_container(reply, 'a', "o");
	for (struct smpl_unit *u = d->units; u && r >= 0; u = u->next)
		if (u->published)
			r = sd_bus_message_append(reply, "o", u->path);
	if (r < 0)
		return r;
	return sd_bus_message_close_container(reply);
}

static int property_version(sd_bus *bus, const char *path, const char *interface,
			    const char *property, sd_bus_message *reply, void *userdata,
			    sd_bus_error *error)
{
	(void)bus, (void)path, (void)interface, (void)property, (void)userdata, (void)error;
	return sd_bus_message_append(reply, "s", SMPL_VERSION);
}

static int property_cooldown(sd_bus *bus, const char *path, const char *interface,
			     const char *property, sd_bus_message *reply, void *userdata,
			     sd_bus_error *error)
{
	struct smpl_daemon *d = userdata;

	(void)bus, (void)path, (void)interface, (void)property, (void)error;
	return sd_bus_message_append(reply, "u", d->cfg.rules.cooldown_days);
}

static int property_state(sd_bus *bus, const char *path, const char *interface,
			  const char *property, sd_bus_message *reply, void *userdata,
			  sd_bus_error *error)
{
	struct smpl_daemon *d = userdata;

	(void)bus, (void)path, (void)interface, (void)property, (void)error;
	return sd_bus_message_append(reply, "s", d->state);
}

static const sd_bus_vtable manager_vtable[] = {
	SD_BUS_VTABLE_START(0),
	SD_BUS_PROPERTY("Version", "s", property_version, 0, SD_BUS_VTABLE_PROPERTY_CONST),
	SD_BUS_PROPERTY("Units", "ao", property_units, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
	SD_BUS_PROPERTY("CooldownDays", "u", property_cooldown, 0, SD_BUS_VTABLE_PROPERTY_CONST),
	SD_BUS_PROPERTY("State", "s", property_state, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
	SD_BUS_METHOD_WITH_ARGS("ListUnits", SD_BUS_NO_ARGS, SD_BUS_RESULT("a(osss)", units),
				method_list_units, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_ARGS("ListPatches", SD_BUS_NO_ARGS, SD_BUS_RESULT("a(ss)", patches),
				method_list_patches, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_ARGS("CheckPatch",
				SD_BUS_ARGS("s", patient, "s", patch),
				SD_BUS_RESULT("b", eligible, "t", next_eligible_usec, "s", reason),
				method_check_patch, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_ARGS("History", SD_BUS_ARGS("s", patient),
				SD_BUS_RESULT("aa{sv}", treatments),
				method_history, SD_BUS_VTABLE_UNPRIVILEGED),
	/* The clinical record (issue 16, bus-clinical.c) */
	SD_BUS_PROPERTY("ClinicName", "s", smpl_bus_property_clinic_name, 0,
			SD_BUS_VTABLE_PROPERTY_CONST),
	SD_BUS_METHOD_WITH_ARGS("RecordFollowUp",
				SD_BUS_ARGS("s", patient, "s", patch, "a{sv}", findings),
				SD_BUS_NO_RESULT, smpl_bus_record_follow_up,
				SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_ARGS("ClearPatchHold",
				SD_BUS_ARGS("s", patient, "s", patch, "s", note),
				SD_BUS_NO_RESULT, smpl_bus_clear_patch_hold,
				SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_ARGS("Course", SD_BUS_ARGS("s", patient),
				SD_BUS_RESULT("aa{sv}", patches),
				smpl_bus_course, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_VTABLE_END
};

/* --- registration ------------------------------------------------------------ */

static const struct smpl_observer bus_observer = {
	.unit_published = smpl_bus_unit_published,
	.unit_changed = smpl_bus_unit_changed,
	.unit_unpublished = smpl_bus_unit_unpublished,
	.unit_pulse = smpl_bus_unit_pulse,
	.unit_fault = smpl_bus_unit_fault,
	.session_published = smpl_bus_session_published,
	.session_changed = smpl_bus_session_changed,
	.session_unpublished = smpl_bus_session_unpublished,
	.manager_changed = smpl_bus_manager_changed,
};

int smpl_bus_setup(struct smpl_daemon *d)
{
	int r;

	d->observer = &bus_observer;
	r = sd_bus_add_object_manager(d->bus, NULL, SMPL_ROOT_PATH);
	if (r < 0)
		return r;
	r = sd_bus_add_object_vtable(d->bus, NULL, SMPL_ROOT_PATH, SMPL_IFACE_MANAGER,
				     manager_vtable, d);
	if (r < 0)
		return r;
	r = smpl_bus_unit_setup(d);
	if (r < 0)
		return r;
	r = smpl_bus_session_setup(d);
	if (r < 0)
		return r;
	r = smpl_bus_records_setup(d);
	if (r < 0)
		return r;
	r = sd_bus_attach_event(d->bus, d->event, SD_EVENT_PRIORITY_NORMAL);
	if (r < 0)
		return r;
	return sd_bus_request_name(d->bus, SMPL_BUS_NAME, 0);
}
