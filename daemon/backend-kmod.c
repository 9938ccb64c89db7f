/* SPDX-License-Identifier: MIT */
/*
 * The "kmod" backend: one unit through the kernel module's character device
 * /dev/smplaserN (include/uapi/smplaser.h).
 *
 *   commands    one ioctl each; the unit's refusals come back as errnos and
 *               are mapped to the SMPL_ST_* codes the daemon expects
 *   events      the device fd is an sd-event io source; read() gives whole
 *               struct smplaser_event records, translated here into backend
 *               events (status, pulse, disconnect)
 *   heartbeat   a HEARTBEAT ioctl every third of the driver's heartbeat_ms
 *               from this backend's own timer, so the driver's watchdog is
 *               fed whatever the daemon's other timers do
 *
 * No ioctl runs on the event loop: the driver serializes a unit's ioctls
 * (its io_mutex), so one behind a command the unit never answers waits for
 * that command's timeout.  The timer's HEARTBEAT and the GET_STATUS of a
 * resync run on this backend's own worker ("bg"), one of each at a time;
 * the daemon's commands run on the unit's workers (unit.c).
 *
 * S4 here: closing the fd (the daemon exits or crashes) makes the driver
 * disarm at once; a stalled daemon stops heart-beating and the driver
 * disarms after heartbeat_ms.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <uapi/smplaser.h>

#include "backend.h"
#include "backend-kmod.h"
#include "discovery.h"
#include "log.h"
#include "worker.h"

#define EVENTS_PER_READ		32
#define DEFAULT_HEARTBEAT_MS	500

struct kmod {
	char *devnode;
	int fd;
	sd_event_source *io;
	sd_event_source *heartbeat;
	sd_event_source *initial;	/* first status, delivered from the loop */
	uint32_t heartbeat_period_ms;
	_Atomic uint64_t last_heartbeat_ms;	/* written by whichever thread sent it */
	struct smpl_worker *bg;		/* the timer's HEARTBEAT, the resync's GET_STATUS */
	struct kmod_job {
		struct smpl_job job;
		struct smpl_backend *b;
		bool inflight;
		int r;
		struct smplaser_status ks;
	} hb_job, resync_job;
	bool gone;			/* DISCONNECT delivered */
	bool closing;			/* the bg worker's last results are moot */
	bool have_status;
	uint64_t last_ms;		/* when the last news was delivered */
	struct smpl_status_n last;	/* as last delivered */
	uint32_t last_seq;
	bool have_seq;
};

static struct kmod *kmod_of(struct smpl_backend *b)
{
	return b->priv;
}

/* --- errno -> the daemon's codes -------------------------------------------- */

int smpl_kmod_errno_to_status(int err)
{
	switch (err) {
	case 0:
		return 0;
	case EPERM:
		return SMPL_ST_INTERLOCK_OPEN;
	case ENOTRECOVERABLE:
		return SMPL_ST_FAULT_LATCHED;
	case ERANGE:
		return SMPL_ST_OUT_OF_RANGE;
	case EBUSY:
		return SMPL_ST_BAD_STATE;
	case EAGAIN:
		return SMPL_ST_CAUSE_PERSISTS;
	case ENODATA:
		return SMPL_ST_NO_PARAMS;
	case EOPNOTSUPP:
		return SMPL_ST_UNKNOWN_OP;
	default:
		return -err;
	}
}

static int do_ioctl(struct smpl_backend *b, unsigned long req, void *arg)
{
	struct kmod *k = kmod_of(b);
	int r;

	if (k->fd < 0 || k->gone)
		return -ENODEV;
	do {
		r = ioctl(k->fd, req, arg);
	} while (r < 0 && errno == EINTR);
	return r < 0 ? smpl_kmod_errno_to_status(errno) : 0;
}

/* --- conversions ------------------------------------------------------------- */

int smpl_kmod_info_to_native(const struct smplaser_info *in, struct smpl_info_n *out)
{
	size_t serial_len = strnlen(in->serial, sizeof(in->serial));
	size_t model_len = strnlen(in->model, sizeof(in->model));

	memset(out, 0, sizeof(*out));
	/* The wire carries at most 16 characters of each; NUL-terminated here. */
	if (serial_len == 0 || serial_len >= sizeof(out->serial) ||
	    model_len >= sizeof(out->model))
		return -EPROTO;
	for (size_t i = 0; i < serial_len; i++)
		if (!isalnum((unsigned char)in->serial[i]) && in->serial[i] != '-')
			return -EPROTO;
	for (size_t i = 0; i < model_len; i++)
		if (!isprint((unsigned char)in->model[i]))
			return -EPROTO;
	memcpy(out->serial, in->serial, serial_len);
	memcpy(out->model, in->model, model_len);
	out->fw_major = in->fw_major;
	out->fw_minor = in->fw_minor;
	out->fw_patch = in->fw_patch;
	out->flags = in->flags;
	out->wavelength_nm[0] = in->wavelength_nm[0];
	out->wavelength_nm[1] = in->wavelength_nm[1];
	out->max_fluence_mj_cm2 = in->max_fluence_mj_cm2;
	out->min_spot_um = in->min_spot_um;
	out->max_spot_um = in->max_spot_um;
	out->min_pulse_ps = in->min_pulse_ps;
	out->max_pulse_ps = in->max_pulse_ps;
	out->max_rate_mhz = in->max_rate_mhz;
	out->watchdog_ms = in->watchdog_ms;
	out->emission_delay_ms = in->emission_delay_ms;
	return 0;
}

int smpl_kmod_status_to_native(const struct smplaser_status *in,
			       struct smpl_status_n *out)
{
	if (in->state > SMPL_STATE__MAX || in->fault > SMPL_FAULT__MAX)
		return -EPROTO;
	memset(out, 0, sizeof(*out));
	out->state = in->state;
	out->fault = in->fault;
	out->interlocks = in->interlocks;
	out->flags = in->flags;
	out->shot_count = in->shot_count;
	out->last_energy_uj = in->last_energy_uj;
	out->rtc_s = in->rtc_s;
	return 0;
}

/*
 * Folds one event record into @st (the unit's status as last known) and
 * says what to tell the daemon.  Pure: the unit tests drive it.
 */
enum smpl_kmod_verdict smpl_kmod_apply_event(const struct smplaser_event *ev,
					     struct smpl_status_n *st,
					     struct smpl_pulse_n *pulse)
{
	switch (ev->type) {
	case SMPLASER_EV_STATUS:
		if (ev->status.state > SMPL_STATE__MAX || ev->status.fault > SMPL_FAULT__MAX)
			return SMPL_KMOD_RESYNC;
		st->state = ev->status.state;
		st->fault = ev->status.fault;
		st->interlocks = ev->status.interlocks;
		st->flags = ev->status.flags;
		st->shot_count = ev->status.shot_count;
		st->last_energy_uj = ev->status.last_energy_uj;
		return SMPL_KMOD_STATUS;
	case SMPLASER_EV_INTERLOCK:
		st->interlocks = ev->interlock.interlocks;
		return SMPL_KMOD_STATUS;
	case SMPLASER_EV_FAULT:
		if (ev->fault.state > SMPL_STATE__MAX || ev->fault.fault > SMPL_FAULT__MAX)
			return SMPL_KMOD_RESYNC;
		st->fault = ev->fault.fault;
		st->state = ev->fault.state;
		return SMPL_KMOD_STATUS;
	case SMPLASER_EV_PULSE:
		pulse->shot = ev->pulse.shot;
		pulse->measured_uj = ev->pulse.measured_uj;
		pulse->set_uj = ev->pulse.set_uj;
		if (ev->pulse.shot > st->shot_count)
			st->shot_count = ev->pulse.shot;
		st->last_energy_uj = ev->pulse.measured_uj;
		return SMPL_KMOD_PULSE;
	case SMPLASER_EV_OVERFLOW:
		return SMPL_KMOD_RESYNC;
	case SMPLASER_EV_DISCONNECT:
		return SMPL_KMOD_DISCONNECT;
	case SMPLASER_EV_DISARM:
		return SMPL_KMOD_LOG;
	case SMPLASER_EV_DISARM_FAILED:
		/* The unit did not obey a disarm: a fault of the unit. */
		st->state = SMPL_STATE_FAULT;
		st->fault = SMPL_FAULT_INTERNAL;
		return SMPL_KMOD_STATUS;
	default:
		return SMPL_KMOD_IGNORE;
	}
}

/* --- events -------------------------------------------------------------------- */

static const char *label(struct smpl_backend *b)
{
	return kmod_of(b)->devnode;
}

static void deliver_status(struct smpl_backend *b, const struct smpl_status_n *st)
{
	struct kmod *k = kmod_of(b);
	struct smpl_backend_event ev = { .type = SMPL_BEV_STATUS, .status = *st };
	bool changed = !k->have_status ||
		       smpl_status_is_news(st, &k->last, smpl_backend_now_ms() - k->last_ms);

	if (changed)
		k->last_ms = smpl_backend_now_ms();
	k->last = *st;
	k->have_status = true;
	if (changed)
		smpl_backend_emit(b, &ev);
}

static void deliver_disconnect(struct smpl_backend *b)
{
	struct kmod *k = kmod_of(b);
	struct smpl_backend_event ev = { .type = SMPL_BEV_DISCONNECT };

	if (k->gone)
		return;
	k->gone = true;
	k->io = sd_event_source_disable_unref(k->io);
	k->heartbeat = sd_event_source_disable_unref(k->heartbeat);
	k->initial = sd_event_source_disable_unref(k->initial);
	smpl_backend_emit(b, &ev);
}

static void resync_run(struct smpl_job *j)
{
	struct kmod_job *kj = container_of(j, struct kmod_job, job);

	kj->r = do_ioctl(kj->b, SMPLASER_IOC_GET_STATUS, &kj->ks);
}

static void resync_done(struct smpl_job *j)
{
	struct kmod_job *kj = container_of(j, struct kmod_job, job);
	struct smpl_backend *b = kj->b;
	struct smpl_status_n st;

	kj->inflight = false;
	if (kmod_of(b)->closing)
		return;
	if (kj->r == 0 && smpl_kmod_status_to_native(&kj->ks, &st) == 0)
		deliver_status(b, &st);
	else if (kj->r == -ENODEV)
		deliver_disconnect(b);
	else
		smpl_log(LOG_WARNING, label(b), NULL, "kmod-resync",
			 "GET_STATUS failed (%d)", kj->r);
}

/* A fresh GET_STATUS after lost events or a record we could not use (off the loop). */
static void resync(struct smpl_backend *b)
{
	struct kmod *k = kmod_of(b);

	if (k->resync_job.inflight || !k->bg)
		return;		/* the one on its way reads after what came before */
	k->resync_job.inflight = true;
	smpl_worker_submit(k->bg, &k->resync_job.job);
}

static void handle_record(struct smpl_backend *b, const struct smplaser_event *rec)
{
	struct kmod *k = kmod_of(b);
	struct smpl_status_n st = k->last;
	struct smpl_backend_event ev = { .type = SMPL_BEV_PULSE };

	if (k->have_seq && rec->seq != k->last_seq + 1)
		smpl_log(LOG_WARNING, label(b), NULL, "kmod-events-lost",
			 "event records %" PRIu32 "..%" PRIu32 " were lost",
			 k->last_seq + 1, rec->seq - 1);
	k->last_seq = rec->seq;
	k->have_seq = true;
	if (rec->type == SMPLASER_EV_DISARM_FAILED)
		smpl_log(LOG_CRIT, label(b), NULL, "disarm-failed",
			 "the unit did not obey the driver's disarm (request %" PRId32
			 ", DISARM command %" PRId32 "): unit fault",
			 rec->disarm_failed.control_error, rec->disarm_failed.command_error);

	switch (smpl_kmod_apply_event(rec, &st, &ev.pulse)) {
	case SMPL_KMOD_STATUS:
		deliver_status(b, &st);
		break;
	case SMPL_KMOD_PULSE:
		k->last.shot_count = st.shot_count;
		k->last.last_energy_uj = st.last_energy_uj;
		smpl_backend_emit(b, &ev);
		break;
	case SMPL_KMOD_RESYNC:
		if (rec->type == SMPLASER_EV_OVERFLOW)
			smpl_log(LOG_ERR, label(b), NULL, "kmod-overflow",
				 "the driver's event queue overflowed: %" PRIu32
				 " events lost (the shot counter still counts every pulse)",
				 rec->overflow.lost);
		resync(b);
		break;
	case SMPL_KMOD_DISCONNECT:
		deliver_disconnect(b);
		break;
	case SMPL_KMOD_LOG:
		smpl_log(LOG_NOTICE, label(b), NULL, "kmod-disarm",
			 "the driver disarmed the unit (reason %" PRIu32 ", open interlocks 0x%02x)",
			 rec->disarm.reason, rec->disarm.interlocks);
		break;
	case SMPL_KMOD_IGNORE:
		break;
	}
}

static int on_readable(sd_event_source *src, int fd, uint32_t revents, void *userdata)
{
	struct smpl_backend *b = userdata;
	struct smplaser_event recs[EVENTS_PER_READ];
	ssize_t n;

	(void)src;
	(void)revents;
	n = read(fd, recs, sizeof(recs));
	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return 0;
		if (errno != ENODEV)
			smpl_log(LOG_ERR, label(b), NULL, "kmod-read", "read failed: %m");
		deliver_disconnect(b);
		return 0;
	}
	if (n == 0 || n % (ssize_t)sizeof(recs[0]) != 0) {
		smpl_log(LOG_ERR, label(b), NULL, "kmod-read",
			 "read returned %zd bytes, not whole records", n);
		if (n == 0)
			deliver_disconnect(b);
		return 0;
	}
	for (ssize_t i = 0; i < n / (ssize_t)sizeof(recs[0]); i++) {
		handle_record(b, &recs[i]);
		if (kmod_of(b)->gone)
			break;
	}
	return 0;
}

static int on_initial(sd_event_source *src, void *userdata)
{
	struct smpl_backend *b = userdata;
	struct kmod *k = kmod_of(b);

	(void)src;
	k->initial = sd_event_source_disable_unref(k->initial);
	resync(b);
	return 0;
}

/* --- commands ---------------------------------------------------------------------- */

static int kmod_get_info(struct smpl_backend *b, struct smpl_info_n *info)
{
	struct smplaser_info ki;
	int r = do_ioctl(b, SMPLASER_IOC_GET_INFO, &ki);

	if (r != 0)
		return r;
	return smpl_kmod_info_to_native(&ki, info);
}

static int kmod_get_status(struct smpl_backend *b, struct smpl_status_n *st)
{
	struct smplaser_status ks;
	int r = do_ioctl(b, SMPLASER_IOC_GET_STATUS, &ks);

	if (r != 0)
		return r;
	return smpl_kmod_status_to_native(&ks, st);
}

static int kmod_set_params(struct smpl_backend *b, const struct smpl_params_n *p)
{
	struct smplaser_params kp = {
		.wavelength_nm = p->wavelength_nm,
		.spot_um = p->spot_um,
		.fluence_mj_cm2 = p->fluence_mj_cm2,
		.pulse_ps = p->pulse_ps,
		.rate_mhz = p->rate_mhz,
	};
	int r = do_ioctl(b, SMPLASER_IOC_SET_PARAMS, &kp);

	if (r != 0)
		return r;
	/* The unit must have taken exactly what we asked for. */
	if (kp.wavelength_nm != p->wavelength_nm || kp.spot_um != p->spot_um ||
	    kp.fluence_mj_cm2 != p->fluence_mj_cm2 || kp.pulse_ps != p->pulse_ps ||
	    kp.rate_mhz != p->rate_mhz)
		return -EPROTO;
	return 0;
}

static int kmod_arm(struct smpl_backend *b)
{
	return do_ioctl(b, SMPLASER_IOC_ARM, NULL);
}

static int kmod_disarm(struct smpl_backend *b)
{
	return do_ioctl(b, SMPLASER_IOC_DISARM, NULL);
}

static int send_heartbeat(struct smpl_backend *b)
{
	struct kmod *k = kmod_of(b);
	int r = do_ioctl(b, SMPLASER_IOC_HEARTBEAT, NULL);

	if (r == 0)
		atomic_store(&k->last_heartbeat_ms, smpl_backend_now_ms());
	return r;
}

/* The daemon's own heartbeat call: extra HEARTBEATs, unless ours just went out. */
static int kmod_heartbeat(struct smpl_backend *b)
{
	struct kmod *k = kmod_of(b);

	uint64_t last = atomic_load(&k->last_heartbeat_ms);

	if (b->hold_heartbeats ||
	    (last && smpl_backend_now_ms() - last < k->heartbeat_period_ms / 2))
		return 0;
	return send_heartbeat(b);
}

static int kmod_ack_fault(struct smpl_backend *b)
{
	return do_ioctl(b, SMPLASER_IOC_ACK_FAULT, NULL);
}

static int kmod_get_rtc(struct smpl_backend *b, int64_t *rtc_s)
{
	struct smplaser_status ks;
	int r = do_ioctl(b, SMPLASER_IOC_GET_STATUS, &ks);

	if (r != 0)
		return r;
	*rtc_s = ks.rtc_s;
	return 0;
}

static void heartbeat_run(struct smpl_job *j)
{
	struct kmod_job *kj = container_of(j, struct kmod_job, job);

	kj->r = send_heartbeat(kj->b);
}

static void heartbeat_done(struct smpl_job *j)
{
	struct kmod_job *kj = container_of(j, struct kmod_job, job);
	struct smpl_backend *b = kj->b;

	kj->inflight = false;
	if (kmod_of(b)->closing)
		return;
	if (kj->r == -ENODEV)
		deliver_disconnect(b);
	else if (kj->r != 0)
		smpl_log(LOG_WARNING, label(b), NULL, "kmod-heartbeat",
			 "HEARTBEAT failed (%d)", kj->r);
}

/*
 * One HEARTBEAT at a time: while one waits behind a command the unit does
 * not answer, the driver's watchdog is not fed, and it disarms that unit,
 * which is what should happen to a unit that no longer answers.
 */
static int on_heartbeat_timer(sd_event_source *src, uint64_t usec, void *userdata)
{
	struct smpl_backend *b = userdata;
	struct kmod *k = kmod_of(b);

	if (!k->hb_job.inflight && !b->hold_heartbeats) {
		k->hb_job.inflight = true;
		smpl_worker_submit(k->bg, &k->hb_job.job);
	}
	return sd_event_source_set_time(src, usec + k->heartbeat_period_ms * 1000ULL);
}

/* --- lifetime ---------------------------------------------------------------------- */

static int kmod_open(struct smpl_backend *b)
{
	struct kmod *k = kmod_of(b);
	struct smplaser_info ki;
	uint32_t hb_ms;
	int r;

	k->fd = open(k->devnode, O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (k->fd < 0)
		return -errno;
	k->gone = false;
	k->closing = false;
	r = do_ioctl(b, SMPLASER_IOC_GET_INFO, &ki);
	if (r != 0)
		goto fail;
	hb_ms = ki.heartbeat_ms ? ki.heartbeat_ms : DEFAULT_HEARTBEAT_MS;
	k->heartbeat_period_ms = hb_ms / 3 ? hb_ms / 3 : 1;
	r = smpl_worker_new(b->event, "smpl-kmod-bg", false, &k->bg);
	if (r < 0)
		goto fail;

	r = sd_event_add_io(b->event, &k->io, k->fd, EPOLLIN, on_readable, b);
	if (r < 0)
		goto fail;
	r = sd_event_add_time_relative(b->event, &k->heartbeat, CLOCK_MONOTONIC,
				       k->heartbeat_period_ms * 1000ULL, 1000,
				       on_heartbeat_timer, b);
	if (r < 0)
		goto fail;
	r = sd_event_add_defer(b->event, &k->initial, on_initial, b);
	if (r < 0)
		goto fail;
	(void)sd_event_source_set_enabled(k->heartbeat, SD_EVENT_ON);
	return 0;
fail:
	k->io = sd_event_source_disable_unref(k->io);
	k->heartbeat = sd_event_source_disable_unref(k->heartbeat);
	smpl_worker_free(k->bg);
	k->bg = NULL;
	close(k->fd);
	k->fd = -1;
	return r > 0 ? -EIO : r;
}

/* Closing the device makes the driver disarm the unit (S4). */
static void kmod_close(struct smpl_backend *b)
{
	struct kmod *k = kmod_of(b);

	k->io = sd_event_source_disable_unref(k->io);
	k->heartbeat = sd_event_source_disable_unref(k->heartbeat);
	k->initial = sd_event_source_disable_unref(k->initial);
	k->closing = true;
	/* Its ioctls end before the fd does (a stalled unit's: at their timeout). */
	smpl_worker_free(k->bg);
	k->bg = NULL;
	if (k->fd >= 0)
		close(k->fd);
	k->fd = -1;
}

static void kmod_free(struct smpl_backend *b)
{
	struct kmod *k = kmod_of(b);

	if (!k)
		return;
	free(k->devnode);
	free(k);
	b->priv = NULL;
}

static const struct smpl_backend_ops kmod_ops = {
	.name = "kmod",
	.open = kmod_open,
	.close = kmod_close,
	.get_info = kmod_get_info,
	.get_status = kmod_get_status,
	.set_params = kmod_set_params,
	.arm = kmod_arm,
	.disarm = kmod_disarm,
	.heartbeat = kmod_heartbeat,
	.ack_fault = kmod_ack_fault,
	.get_rtc = kmod_get_rtc,
	.free = kmod_free,
};

int smpl_backend_kmod_new(sd_event *event, const char *devnode,
			  struct smpl_backend **ret)
{
	struct smpl_backend *b = calloc(1, sizeof(*b));
	struct kmod *k = calloc(1, sizeof(*k));

	if (!b || !k || !(k->devnode = strdup(devnode))) {
		free(k);
		free(b);
		return -ENOMEM;
	}
	k->fd = -1;
	b->ops = &kmod_ops;
	b->event = event;
	b->priv = k;
	k->hb_job = (struct kmod_job){ .job = { .run = heartbeat_run, .done = heartbeat_done },
				       .b = b };
	k->resync_job = (struct kmod_job){ .job = { .run = resync_run, .done = resync_done },
					   .b = b };
	*ret = b;
	return 0;
}
