/* SPDX-License-Identifier: MIT */
/*
 * A laser unit as an object (unit.h): its names, its lifetime, and its device
 * I/O off the event loop (issue 12).
 *
 * Each unit has two workers (worker.h).  Its commands (GET_STATUS,
 * SET_PARAMS, ARM, HEARTBEAT, ACK_FAULT, the probe's GET_INFO and GET_RTC)
 * run on "io", one at a time, in order: the unit answers one command at a
 * time.  Its disarm runs on "safe": never behind a command of its own that a
 * stuck unit makes wait, and never behind another unit.  The results come
 * back as callbacks on the loop, where the safety core decides
 * (supervisor.c).  A unit stays allocated while a call of its own is in
 * flight (u->refs).
 *
 * Nothing here decides or records: that is the supervisor's.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <systemd/sd-daemon.h>

#include "daemon.h"
#include "errors.h"
#include "log.h"
#include "unit.h"
#include "worker.h"

const char *smpl_unit_label(const struct smpl_unit *u)
{
	return u->info.serial[0] ? u->info.serial : u->name;
}


/* --- names ------------------------------------------------------------------- */

const char *smpl_unit_state_name(const struct smpl_unit *u)
{
	if (!u->connected)
		return "disconnected";
	if (!u->status_known || u->status.state > SMPL_STATE__MAX)
		return "probing";
	return smpl_state_slug(u->status.state);
}

/*
 * The daemon's latch first (it outlives the unit's), then the unit's own.  A
 * unit fault is named by the unit's code (watchdog, energy, interlock, ...).
 */
const char *smpl_unit_fault_name(const struct smpl_unit *u)
{
	if (smpl_safety_fault_latched(&u->safety))
		return u->safety.fault == SMPL_REASON_UNIT_FAULT && u->safety.fault_code ?
		       smpl_fault_slug(u->safety.fault_code) : smpl_reason_name(u->safety.fault);
	if (u->status_known && u->status.fault <= SMPL_FAULT__MAX)
		return smpl_fault_slug(u->status.fault);
	return "";
}

uint16_t smpl_unit_interlocks_closed(const struct smpl_unit *u)
{
	if (!u->connected || !u->status_known)
		return 0;
	return (uint16_t)(~u->status.interlocks & SMPL_IL_ALL);
}


/* --- properties ------------------------------------------------------------ */

void smpl_unit_changed(struct smpl_unit *u)
{
	const struct smpl_observer *o = u->daemon->observer;
	bool armed = u->published && u->treatment_id != 0;

	if (u->published && o && o->unit_changed)
		o->unit_changed(u);
	if (u->status_armed != armed) {
		u->status_armed = armed;
		smpl_units_notify_status(u->daemon);
	}
	if (u->session && o && o->session_changed)
		o->session_changed(u->session);
}


/* systemctl status shows it: what the daemon is doing, how many units are armed. */
void smpl_units_notify_status(struct smpl_daemon *d)
{
	unsigned int units = 0, armed = 0;

	for (const struct smpl_unit *u = d->units; u; u = u->next) {
		units += u->published;
		armed += u->published && u->treatment_id != 0;
	}
	(void)sd_notifyf(false, "STATUS=%s: %u unit(s), %u armed",
			 d->probing ? "Probing units" : "Running", units, armed);
}

/* --- I/O -------------------------------------------------------------------------- */

struct unit_call {
	struct smpl_job job;
	struct smpl_unit *u;
	enum smpl_unit_op op;
	struct smpl_params_n params;
	struct smpl_unit_reply reply;
	smpl_unit_then then;
	void *userdata;
};

static void call_run(struct smpl_job *j)
{
	struct unit_call *c = container_of(j, struct unit_call, job);
	struct smpl_backend *b = c->u->backend;
	struct smpl_unit_reply *rep = &c->reply;

	switch (c->op) {
	case SMPL_UNIT_GET_STATUS:
	case SMPL_UNIT_END_STATUS:
		rep->r = b->ops->get_status(b, &rep->status);
		break;
	case SMPL_UNIT_SET_PARAMS:
		rep->r = b->ops->set_params(b, &c->params);
		rep->status_r = rep->r == 0 ? b->ops->get_status(b, &rep->status) : -EIO;
		break;
	case SMPL_UNIT_ARM:
		rep->r = b->ops->arm(b);
		break;
	case SMPL_UNIT_HEARTBEAT:
		rep->r = b->ops->heartbeat(b);
		break;
	case SMPL_UNIT_ACK_FAULT:
		rep->r = b->ops->ack_fault(b);
		rep->status_r = b->ops->get_status(b, &rep->status);
		break;
	case SMPL_UNIT_PROBE:
		rep->r = b->ops->get_info(b, &rep->info);
		if (rep->r == 0)
			rep->rtc_r = b->ops->get_rtc(b, &rep->rtc_s);
		break;
	case SMPL_UNIT_DISARM:
		rep->r = b->ops->disarm(b);
		break;
	}
}

static void unit_unref_later(struct smpl_unit *u);

static void call_done(struct smpl_job *j)
{
	struct unit_call *c = container_of(j, struct unit_call, job);
	struct smpl_unit *u = c->u;

	if (u->gone && c->reply.r == 0)
		c->reply.r = -ENODEV;	/* removed meanwhile: what it said is moot */
	if (c->then)
		c->then(u, &c->reply, c->userdata);
	free(c);
	unit_unref_later(u);
}

void smpl_unit_io(struct smpl_unit *u, enum smpl_unit_op op, const struct smpl_params_n *params,
		  smpl_unit_then then, void *userdata)
{
	struct unit_call *c = u->gone || !u->io ? NULL : calloc(1, sizeof(*c));

	if (!c) {
		struct smpl_unit_reply oom = { .r = u->gone ? -ENODEV : -ENOMEM,
					       .status_r = -ENODEV };

		if (then)
			then(u, &oom, userdata);
		return;
	}
	c->u = u;
	c->op = op;
	if (params)
		c->params = *params;
	c->then = then;
	c->userdata = userdata;
	c->job.run = call_run;
	c->job.done = call_done;
	u->refs++;
	smpl_worker_submit(op == SMPL_UNIT_DISARM || op == SMPL_UNIT_END_STATUS ? u->safe : u->io,
			   &c->job);
}

/* The unit did not confirm its DISARM (one gone is safe: nothing to confirm). */
static bool disarm_unconfirmed(const struct smpl_unit *u, const struct smpl_unit_reply *rep)
{
	return rep->r != 0 && !u->gone && u->connected;
}

static void disarm_done(struct smpl_unit *u, const struct smpl_unit_reply *rep, void *userdata)
{
	(void)userdata;
	smpl_safety_disarm_tried(&u->safety);
	if (disarm_unconfirmed(u, rep))
		smpl_log(LOG_CRIT, smpl_unit_label(u), NULL, "disarm-failed",
			 "DISARM failed (%d); the kernel and the unit's watchdog remain", rep->r);
}

void smpl_unit_disarm_now(struct smpl_unit *u)
{
	if (u->connected && !u->gone)
		smpl_unit_io(u, SMPL_UNIT_DISARM, NULL, disarm_done, NULL);
}

/*
 * A DISARM that failed (the unit did not answer it, or answered it with an
 * error, which the protocol never does) is not "disarmed": the caller is
 * told, as the log says.
 */
static void disarm_answer(struct smpl_unit *u, const struct smpl_unit_reply *rep, void *userdata)
{
	sd_bus_message *m = userdata;

	disarm_done(u, rep, NULL);
	if (disarm_unconfirmed(u, rep))
		(void)sd_bus_reply_method_errorf(m, SMPL_ERROR_DEVICE_FAULT,
						 "Disarm: unit %s did not confirm the DISARM (%s): "
						 "without heartbeats its watchdog disarms it; "
						 "check that it shows STANDBY", smpl_unit_label(u),
						 rep->r < 0 ? strerror(-rep->r) : "refused");
	else
		(void)sd_bus_reply_method_return(m, NULL);
	sd_bus_message_unref(m);
}

void smpl_unit_disarm_answer(struct smpl_unit *u, sd_bus_message *m)
{
	if (!u->connected || u->gone) {
		(void)sd_bus_reply_method_return(m, NULL);
		return;
	}
	/* Behind every DISARM asked before it on the safe worker: answered once they ran. */
	smpl_unit_io(u, SMPL_UNIT_DISARM, NULL, disarm_answer, sd_bus_message_ref(m));
}

/* --- lifetime ---------------------------------------------------------------------- */

/*
 * The source is floating: the loop holds its only reference.  Take one of
 * our own before the loop gives its up, then drop it: the loop frees the
 * source once this callback returns.  (Without our reference the source is
 * disconnected under us, and disabling it then aborts inside sd-event.)
 */
static int free_later(sd_event_source *s, void *userdata)
{
	sd_event_source_ref(s);
	(void)sd_event_source_set_floating(s, false);
	sd_event_source_unref(s);
	smpl_unit_forget(userdata);
	return 0;
}

/*
 * The last reference gone (the unit was dropped, its calls are done): freed
 * from the loop's next iteration, never from inside one of its own workers'
 * callbacks.
 */
static void unit_unref_later(struct smpl_unit *u)
{
	if (--u->refs > 0 || u->freeing)
		return;
	u->freeing = true;
	if (sd_event_add_defer(u->daemon->event, NULL, free_later, u) < 0)
		smpl_log(LOG_ERR, smpl_unit_label(u), NULL, "remove",
			 "cannot free the unit's memory now: at exit");
}

void smpl_unit_unref(struct smpl_unit *u)
{
	unit_unref_later(u);
}

int smpl_unit_io_start(struct smpl_unit *u)
{
	struct smpl_daemon *d = u->daemon;
	int r;

	r = smpl_worker_new(d->event, "smpl-unit-io", d->inline_io, &u->io);
	if (r >= 0)
		r = smpl_worker_new(d->event, "smpl-unit-safe", d->inline_io, &u->safe);
	return r;
}

void smpl_unit_io_stop(struct smpl_unit *u)
{
	/* Their callbacks see the unit as gone: they still run, they act on nothing. */
	smpl_worker_free(u->safe);
	smpl_worker_free(u->io);
	u->safe = u->io = NULL;
}

void smpl_unit_io_drain(struct smpl_unit *u)
{
	smpl_worker_drain(u->safe);
	smpl_worker_drain(u->io);
}

static void unit_unlink(struct smpl_unit **list, struct smpl_unit *u)
{
	for (struct smpl_unit **pp = list; *pp; pp = &(*pp)->next)
		if (*pp == u) {
			*pp = u->next;
			return;
		}
}


/* Into the dying list until its calls in flight are done (supervisor.c's drop). */
void smpl_unit_bury(struct smpl_unit *u)
{
	struct smpl_daemon *d = u->daemon;

	unit_unlink(&d->units, u);
	u->published = false;
	u->gone = true;
	u->heartbeat = sd_event_source_disable_unref(u->heartbeat);
	u->next = d->dying;
	d->dying = u;
	smpl_unit_unref(u);
}

void smpl_unit_forget(struct smpl_unit *u)
{
	unit_unlink(&u->daemon->dying, u);
	smpl_unit_free(u);
}

void smpl_unit_free(struct smpl_unit *u)
{
	if (!u)
		return;
	u->gone = true;
	u->freeing = true;
	sd_event_source_disable_unref(u->heartbeat);
	smpl_unit_io_stop(u);
	sd_bus_message_unref(u->unattributed.call);
	smpl_backend_free(u->backend);
	free(u->path);
	free(u);
}

struct smpl_unit *smpl_unit_by_path(struct smpl_daemon *d, const char *path)
{
	for (struct smpl_unit *u = d->units; u; u = u->next)
		if (u->published && strcmp(u->path, path) == 0)
			return u;
	return NULL;
}

/* ---- a session's treatments (issue 16) ---------------------------------- */

void smpl_session_treatment_armed(struct smpl_session *s, int64_t id, const char *patch)
{
	struct smpl_session_treatment *t;

	t = realloc(s->treatments, (s->n_treatments + 1) * sizeof(*t));
	if (!t) {
		/* Not kept: its endpoint cannot be asked for; the record still counts it. */
		smpl_log(LOG_ERR, NULL, s->path, "endpoint",
			 "out of memory: treatment %" PRId64 " will not ask for its endpoint", id);
		return;
	}
	s->treatments = t;
	t = &s->treatments[s->n_treatments++];
	*t = (struct smpl_session_treatment){ .id = id };
	snprintf(t->patch, sizeof(t->patch), "%s", patch);
}

void smpl_session_emitted(struct smpl_session *s, int64_t id)
{
	const struct smpl_observer *o = s->daemon->observer;

	for (size_t i = 0; i < s->n_treatments; i++)
		if (s->treatments[i].id == id && !s->treatments[i].emitted) {
			s->treatments[i].emitted = true;
			if (o && o->session_changed)
				o->session_changed(s);	/* EndpointsMissing */
		}
}
