/* SPDX-License-Identifier: MIT */
/*
 * The "sim" backend: the unit's firmware model (sim/model.h) runs in this
 * process, driven by an sd-event timer.  Every command goes through real
 * wire frames: encoded with the codec, handled by smpl_model_handle_frame(),
 * the reply decoded and validated with the codec; reports are pulled with
 * smpl_model_next_report() every SMPL_STATUS_PERIOD_MS as an interrupt
 * endpoint would be, and decoded the same way.  So the daemon exercises the
 * protocol exactly as it will over USB.
 *
 * Its commands run in the unit's worker threads (daemon/unit-io.c), its
 * reports and the Simulator's hands on the event loop: the model is used
 * under s->lock, and nothing is handed to the daemon with the lock held.
 * A reply that never comes is waited for (reply_timeout_ms), as a transfer
 * would be.  The disarm is the vendor control request, which needs no bulk
 * frame: it may come from the safe worker while a command is in flight.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"
#include "backend-sim.h"
#include "model.h"

#define REPORT_PERIOD_USEC	(SMPL_STATUS_PERIOD_MS * 1000ULL)
#define REPORTS_PER_TICK_MAX	256	/* a hostile flood cannot stall the loop */

struct sim {
	pthread_mutex_t lock;		/* the model, and what commands share with the loop */
	uint32_t reply_timeout_ms;
	struct smpl_model *model;
	struct smpl_model_config cfg;
	char *nv_path;			/* NULL: nothing persists */
	int fired_fd;			/* the fired log, -1 if none */
	struct smpl_model_nv nv_saved;
	sd_event_source *timer;
	uint16_t seq;
	bool plugged;
	bool pending_connect;		/* deliver CONNECT on the next tick */
	bool pending_disconnect;	/* deliver DISCONNECT on the next tick */
	bool have_status;
	struct smpl_status_n last_status;	/* the last one delivered ... */
	uint64_t last_status_ms;		/* ... and when */
	uint8_t drop_reply_op;		/* lose the next reply to this command (or pulse report) */
	bool hold_reports;		/* the interrupt endpoint is not read: reports come late */
};

static struct sim *sim_of(struct smpl_backend *b)
{
	return b->priv;
}

/* The real monotonic clock (the worker threads must not read the loop's). */
static uint64_t now_ms(struct smpl_backend *b)
{
	(void)b;
	return smpl_backend_now_ms();
}

/* --- battery-backed state ------------------------------------------------ */

static void nv_load(const char *path, struct smpl_model_nv *nv)
{
	FILE *f = fopen(path, "re");
	unsigned int shots;
	long long offset;

	memset(nv, 0, sizeof(*nv));
	if (!f)
		return;
	if (fscanf(f, "shot_count=%u rtc_offset_s=%lld", &shots, &offset) == 2) {
		nv->shot_count = shots;
		nv->rtc_offset_s = offset;
	}
	fclose(f);
}

/* Written with write() + rename(): survives a kill -9 of the daemon. */
static void nv_save_if_changed(struct sim *s)
{
	struct smpl_model_nv nv;
	char tmp[4096];
	FILE *f;

	if (!s->nv_path || !s->model)
		return;
	smpl_model_get_nv(s->model, &nv);
	if (nv.shot_count == s->nv_saved.shot_count &&
	    nv.rtc_offset_s == s->nv_saved.rtc_offset_s)
		return;
	snprintf(tmp, sizeof(tmp), "%s.tmp", s->nv_path);
	f = fopen(tmp, "we");
	if (!f)
		return;
	fprintf(f, "shot_count=%" PRIu32 " rtc_offset_s=%" PRId64 "\n",
		nv.shot_count, nv.rtc_offset_s);
	if (fclose(f) == 0 && rename(tmp, s->nv_path) == 0)
		s->nv_saved = nv;
}

/*
 * The fired log, <nv_dir>/sim-<serial>.fired: one line per pulse the unit
 * fired, written as it fires, with write(2) so it survives a SIGKILL of the
 * daemon.  It is what the unit did, whatever the daemon recorded: the truth
 * the tests judge the records by.
 */
static void log_fired(void *ctx, uint32_t shot, uint32_t measured_uj, uint32_t set_uj)
{
	struct sim *s = ctx;
	struct timespec ts;
	char line[128];
	int n;

	clock_gettime(CLOCK_REALTIME, &ts);
	n = snprintf(line, sizeof(line),
		     "shot=%" PRIu32 " measured_uj=%" PRIu32 " set_uj=%" PRIu32 " wall_ms=%lld\n",
		     shot, measured_uj, set_uj,
		     (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
	if (s->fired_fd >= 0 && n > 0 && write(s->fired_fd, line, (size_t)n) != n)
		fprintf(stderr, "sim: cannot write the fired log: %m\n");
}

static int open_fired_log(struct sim *s, const char *nv_dir)
{
	char path[4096];

	snprintf(path, sizeof(path), "%s/sim-%s.fired", nv_dir, s->cfg.serial);
	s->fired_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (s->fired_fd < 0)
		return -errno;
	smpl_model_on_fire(s->model, log_fired, s);
	return 0;
}

/* --- reports (the interrupt endpoint) ------------------------------------ */

static void handle_status_report(struct smpl_backend *b, const struct smpl_frame *f)
{
	struct sim *s = sim_of(b);
	struct smpl_backend_event ev = { .type = SMPL_BEV_STATUS };

	if (smpl_status_decode((const struct smpl_status_report *)f->payload,
			       &ev.status) < 0)
		return;
	if (s->have_status && !smpl_status_is_news(&ev.status, &s->last_status,
						   now_ms(b) - s->last_status_ms))
		return;
	s->last_status = ev.status;
	s->last_status_ms = now_ms(b);
	s->have_status = true;
	smpl_backend_emit(b, &ev);
}

static void handle_pulse_report(struct smpl_backend *b, const struct smpl_frame *f)
{
	struct smpl_backend_event ev = { .type = SMPL_BEV_PULSE };

	if (smpl_pulse_decode((const struct smpl_pulse_report *)f->payload,
			      &ev.pulse) < 0)
		return;
	smpl_backend_emit(b, &ev);
}

struct report {
	uint8_t buf[SMPL_MAX_REPORT + 16];
	int len;
};

/* Under the lock: the reports due now, out of the model; a lost pulse report dropped. */
static int collect_reports(struct sim *s, uint64_t now, struct report *out, int max)
{
	struct smpl_frame f;
	int n = 0;

	smpl_model_advance(s->model, now);
	while (n < max && s->plugged && !s->hold_reports) {
		out[n].len = smpl_model_next_report(s->model, now, out[n].buf, sizeof(out[n].buf));
		if (out[n].len <= 0)
			break;
		if (s->drop_reply_op == SMPL_OP_PULSE &&
		    smpl_decode(out[n].buf, (size_t)out[n].len, &f) == 0 && f.op == SMPL_OP_PULSE) {
			s->drop_reply_op = 0;	/* lost on the way */
			continue;
		}
		n++;
	}
	nv_save_if_changed(s);
	return n;
}

static void drain_reports(struct smpl_backend *b)
{
	struct sim *s = sim_of(b);
	static struct report reports[REPORTS_PER_TICK_MAX];	/* the loop's thread only */
	struct smpl_frame f;
	int n;

	pthread_mutex_lock(&s->lock);
	n = collect_reports(s, now_ms(b), reports, REPORTS_PER_TICK_MAX);
	pthread_mutex_unlock(&s->lock);
	for (int i = 0; i < n; i++) {
		if (smpl_decode(reports[i].buf, (size_t)reports[i].len, &f) < 0)
			continue;	/* a hostile report: dropped, as a driver would */
		if (f.op == SMPL_OP_STATUS)
			handle_status_report(b, &f);
		else if (f.op == SMPL_OP_PULSE)
			handle_pulse_report(b, &f);
	}
}

static void deliver_plug_events(struct smpl_backend *b)
{
	struct sim *s = sim_of(b);
	struct smpl_backend_event ev = { 0 };

	if (s->pending_disconnect) {
		s->pending_disconnect = false;
		ev.type = SMPL_BEV_DISCONNECT;
		smpl_backend_emit(b, &ev);
	}
	if (s->pending_connect) {
		s->pending_connect = false;
		ev.type = SMPL_BEV_CONNECT;
		smpl_backend_emit(b, &ev);
	}
}

static int on_tick(sd_event_source *src, uint64_t usec, void *userdata)
{
	struct smpl_backend *b = userdata;
	struct sim *s = sim_of(b);

	(void)usec;		/* when it was due; kick() makes that long ago */
	deliver_plug_events(b);
	if (s->plugged)
		drain_reports(b);
	return sd_event_source_set_time_relative(src, REPORT_PERIOD_USEC);
}

/* Run the timer now: what a command changed is reported from the loop. */
static void kick(struct smpl_backend *b)
{
	struct sim *s = sim_of(b);

	if (s->timer)
		(void)sd_event_source_set_time(s->timer, 1);
}

/* --- commands (bulk OUT, bulk IN) ----------------------------------------- */

/* The host waits its transfer's time out for an answer that never comes. */
static int sim_no_answer(const struct sim *s)
{
	struct timespec t = { s->reply_timeout_ms / 1000,
			      (long)(s->reply_timeout_ms % 1000) * 1000000L };

	if (s->reply_timeout_ms)
		nanosleep(&t, NULL);
	return -ETIMEDOUT;
}

/*
 * Sends one command frame and validates the reply.  Copies a reply
 * payload of exactly @out_len bytes into @out.
 */
static int transact(struct smpl_backend *b, uint8_t op, const void *payload,
		    size_t len, void *out, size_t out_len)
{
	struct sim *s = sim_of(b);
	uint8_t cmd[SMPL_MAX_FRAME], reply[SMPL_MAX_FRAME + 16];
	struct smpl_frame f;
	uint16_t seq;
	bool lost;
	int n;

	pthread_mutex_lock(&s->lock);
	if (!s->plugged) {
		pthread_mutex_unlock(&s->lock);
		return -ENODEV;
	}
	seq = ++s->seq;
	n = smpl_encode(op, seq, 0, payload, len, cmd, sizeof(cmd));
	if (n >= 0)
		n = smpl_model_handle_frame(s->model, now_ms(b), cmd, (size_t)n,
					    reply, sizeof(reply));
	lost = s->drop_reply_op == op;	/* carried out, the reply lost on the way */
	if (lost)
		s->drop_reply_op = 0;
	pthread_mutex_unlock(&s->lock);
	if (lost || n == 0)
		return sim_no_answer(s);
	if (n < 0)
		return n == -1 ? -EPIPE : -EINVAL;	/* the endpoint stalled */
	if (smpl_decode(reply, (size_t)n, &f) < 0)
		return -EPROTO;
	if (f.op != (op | SMPL_OP_REPLY) || f.seq != seq)
		return -EPROTO;
	return smpl_reply_payload(&f, out, out_len);
}

static int sim_get_info(struct smpl_backend *b, struct smpl_info_n *info)
{
	return smpl_frames_get_info(b, transact, info);
}

static int sim_get_status(struct smpl_backend *b, struct smpl_status_n *st)
{
	return smpl_frames_get_status(b, transact, st);
}

static int sim_set_params(struct smpl_backend *b, const struct smpl_params_n *p)
{
	return smpl_frames_set_params(b, transact, p);
}

static int sim_simple(struct smpl_backend *b, uint8_t op)
{
	return transact(b, op, NULL, 0, NULL, 0);
}

static int sim_arm(struct smpl_backend *b)
{
	return sim_simple(b, SMPL_OP_ARM);
}

static int sim_heartbeat(struct smpl_backend *b)
{
	return sim_simple(b, SMPL_OP_HEARTBEAT);
}

static int sim_ack_fault(struct smpl_backend *b)
{
	return sim_simple(b, SMPL_OP_ACK_FAULT);
}

/*
 * The vendor control request: no frame, so never behind a command in flight.
 * Hostile NO_ANSWER: carried out, its answer lost.
 */
static int sim_disarm(struct smpl_backend *b)
{
	struct sim *s = sim_of(b);
	bool answered = false;
	int r = 0;

	pthread_mutex_lock(&s->lock);
	if (s->plugged) {
		smpl_model_disarm(s->model, now_ms(b));
		answered = smpl_model_answers_control(s->model);
	} else {
		r = -ENODEV;
	}
	pthread_mutex_unlock(&s->lock);
	return r == 0 && !answered ? sim_no_answer(s) : r;
}

static int sim_get_rtc(struct smpl_backend *b, int64_t *rtc_s)
{
	return smpl_frames_get_rtc(b, transact, rtc_s);
}

/* --- lifetime ------------------------------------------------------------- */

static int sim_open(struct smpl_backend *b)
{
	struct sim *s = sim_of(b);
	uint64_t usec;
	int r;

	r = sd_event_now(b->event, CLOCK_MONOTONIC, &usec);
	if (r < 0)
		return r;
	r = sd_event_add_time(b->event, &s->timer, CLOCK_MONOTONIC, usec,
			      1000, on_tick, b);
	if (r < 0)
		return r;
	(void)sd_event_source_set_enabled(s->timer, SD_EVENT_ON);
	pthread_mutex_lock(&s->lock);
	smpl_model_power_on(s->model, now_ms(b));
	s->plugged = true;
	pthread_mutex_unlock(&s->lock);
	return 0;
}

static void sim_close(struct smpl_backend *b)
{
	struct sim *s = sim_of(b);

	if (s->model && s->plugged) {
		smpl_model_power_off(s->model, now_ms(b));
		nv_save_if_changed(s);
	}
	s->plugged = false;
	s->timer = sd_event_source_disable_unref(s->timer);
}

static void sim_free(struct smpl_backend *b)
{
	struct sim *s = sim_of(b);

	if (!s)
		return;
	smpl_model_free(s->model);
	if (s->fired_fd >= 0)
		close(s->fired_fd);
	pthread_mutex_destroy(&s->lock);
	free(s->nv_path);
	free(s);
	b->priv = NULL;
}

static const struct smpl_backend_ops sim_ops = {
	.name = "sim",
	.open = sim_open,
	.close = sim_close,
	.get_info = sim_get_info,
	.get_status = sim_get_status,
	.set_params = sim_set_params,
	.arm = sim_arm,
	.disarm = sim_disarm,
	.heartbeat = sim_heartbeat,
	.ack_fault = sim_ack_fault,
	.get_rtc = sim_get_rtc,
	.free = sim_free,
};

/* --- test control ---------------------------------------------------------- */

static int ctl_footswitch_unlocked(struct smpl_backend *b, bool held)
{
	struct sim *s = sim_of(b);

	if (!s->plugged)
		return -ENODEV;
	smpl_model_set_footswitch(s->model, now_ms(b), held);
	kick(b);
	return 0;
}

static int ctl_interlock_unlocked(struct smpl_backend *b, uint16_t bit, bool open)
{
	struct sim *s = sim_of(b);

	if (!s->plugged)
		return -ENODEV;
	smpl_model_set_interlock(s->model, now_ms(b), bit, open);
	kick(b);
	return 0;
}

static int ctl_drift_unlocked(struct smpl_backend *b, int32_t drift_ppm)
{
	smpl_model_set_drift(sim_of(b)->model, drift_ppm);
	return 0;
}

static int ctl_fault_unlocked(struct smpl_backend *b, uint8_t fault)
{
	struct sim *s = sim_of(b);

	if (!s->plugged)
		return -ENODEV;
	smpl_model_inject_fault(s->model, now_ms(b), fault);
	kick(b);
	return 0;
}

static int ctl_clear_fault_cause_unlocked(struct smpl_backend *b)
{
	struct sim *s = sim_of(b);

	smpl_model_clear_fault_cause(s->model, now_ms(b));
	kick(b);
	return 0;
}

static int ctl_rtc_skew_unlocked(struct smpl_backend *b, int64_t skew_s)
{
	smpl_model_set_rtc_skew(sim_of(b)->model, skew_s);
	kick(b);
	return 0;
}

static int ctl_calibration_unlocked(struct smpl_backend *b, bool valid)
{
	struct sim *s = sim_of(b);

	if (!s->plugged)
		return -ENODEV;
	smpl_model_set_calibrated(s->model, now_ms(b), valid);
	kick(b);
	return 0;
}

static int ctl_hold_reports_unlocked(struct smpl_backend *b, bool hold)
{
	sim_of(b)->hold_reports = hold;
	kick(b);
	return 0;
}

static int ctl_shot_count_unlocked(struct smpl_backend *b, uint32_t count)
{
	struct sim *s = sim_of(b);

	if (!s->plugged)
		return -ENODEV;
	smpl_model_set_shot_count(s->model, count);
	nv_save_if_changed(s);
	kick(b);
	return 0;
}

static int ctl_hostile_unlocked(struct smpl_backend *b, int mode, unsigned int count)
{
	if (mode < SMPL_HOSTILE_NONE || mode > SMPL_HOSTILE_LIE_STANDBY)
		return -EINVAL;
	smpl_model_set_hostile(sim_of(b)->model, (enum smpl_hostile)mode, count);
	return 0;
}

static int ctl_drop_next_reply_unlocked(struct smpl_backend *b, uint8_t op)
{
	if (op != SMPL_OP_PULSE &&
	    (smpl_payload_size(op) < 0 || (op & SMPL_OP_REPLY) || op >= SMPL_OP_STATUS))
		return -EINVAL;
	sim_of(b)->drop_reply_op = op;
	return 0;
}

static int ctl_unplug_unlocked(struct smpl_backend *b)
{
	struct sim *s = sim_of(b);

	if (!s->plugged)
		return -ENODEV;
	smpl_model_power_off(s->model, now_ms(b));
	nv_save_if_changed(s);
	s->plugged = false;
	s->have_status = false;
	s->pending_connect = false;
	s->pending_disconnect = true;
	kick(b);
	return 0;
}

static int ctl_replug_unlocked(struct smpl_backend *b)
{
	struct sim *s = sim_of(b);

	if (s->plugged)
		return -EALREADY;
	smpl_model_power_on(s->model, now_ms(b));
	s->plugged = true;
	s->pending_connect = true;
	kick(b);
	return 0;
}

/* The Simulator's hands, on the loop, each under the lock the commands take. */
static int ctl_footswitch(struct smpl_backend *b, bool held)
{
	struct sim *s = sim_of(b);
	int r;

	pthread_mutex_lock(&s->lock);
	r = ctl_footswitch_unlocked(b, held);
	pthread_mutex_unlock(&s->lock);
	return r;
}

static int ctl_interlock(struct smpl_backend *b, uint16_t bit, bool open)
{
	struct sim *s = sim_of(b);
	int r;

	pthread_mutex_lock(&s->lock);
	r = ctl_interlock_unlocked(b, bit, open);
	pthread_mutex_unlock(&s->lock);
	return r;
}

static int ctl_drift(struct smpl_backend *b, int32_t drift_ppm)
{
	struct sim *s = sim_of(b);
	int r;

	pthread_mutex_lock(&s->lock);
	r = ctl_drift_unlocked(b, drift_ppm);
	pthread_mutex_unlock(&s->lock);
	return r;
}

static int ctl_fault(struct smpl_backend *b, uint8_t fault)
{
	struct sim *s = sim_of(b);
	int r;

	pthread_mutex_lock(&s->lock);
	r = ctl_fault_unlocked(b, fault);
	pthread_mutex_unlock(&s->lock);
	return r;
}

static int ctl_clear_fault_cause(struct smpl_backend *b)
{
	struct sim *s = sim_of(b);
	int r;

	pthread_mutex_lock(&s->lock);
	r = ctl_clear_fault_cause_unlocked(b);
	pthread_mutex_unlock(&s->lock);
	return r;
}

static int ctl_rtc_skew(struct smpl_backend *b, int64_t skew_s)
{
	struct sim *s = sim_of(b);
	int r;

	pthread_mutex_lock(&s->lock);
	r = ctl_rtc_skew_unlocked(b, skew_s);
	pthread_mutex_unlock(&s->lock);
	return r;
}

static int ctl_calibration(struct smpl_backend *b, bool valid)
{
	struct sim *s = sim_of(b);
	int r;

	pthread_mutex_lock(&s->lock);
	r = ctl_calibration_unlocked(b, valid);
	pthread_mutex_unlock(&s->lock);
	return r;
}

static int ctl_hold_reports(struct smpl_backend *b, bool hold)
{
	struct sim *s = sim_of(b);
	int r;

	pthread_mutex_lock(&s->lock);
	r = ctl_hold_reports_unlocked(b, hold);
	pthread_mutex_unlock(&s->lock);
	return r;
}

static int ctl_shot_count(struct smpl_backend *b, uint32_t count)
{
	struct sim *s = sim_of(b);
	int r;

	pthread_mutex_lock(&s->lock);
	r = ctl_shot_count_unlocked(b, count);
	pthread_mutex_unlock(&s->lock);
	return r;
}

static int ctl_hostile(struct smpl_backend *b, int mode, unsigned int count)
{
	struct sim *s = sim_of(b);
	int r;

	pthread_mutex_lock(&s->lock);
	r = ctl_hostile_unlocked(b, mode, count);
	pthread_mutex_unlock(&s->lock);
	return r;
}

static int ctl_drop_next_reply(struct smpl_backend *b, uint8_t op)
{
	struct sim *s = sim_of(b);
	int r;

	pthread_mutex_lock(&s->lock);
	r = ctl_drop_next_reply_unlocked(b, op);
	pthread_mutex_unlock(&s->lock);
	return r;
}

static int ctl_unplug(struct smpl_backend *b)
{
	struct sim *s = sim_of(b);
	int r;

	pthread_mutex_lock(&s->lock);
	r = ctl_unplug_unlocked(b);
	pthread_mutex_unlock(&s->lock);
	return r;
}

static int ctl_replug(struct smpl_backend *b)
{
	struct sim *s = sim_of(b);
	int r;

	pthread_mutex_lock(&s->lock);
	r = ctl_replug_unlocked(b);
	pthread_mutex_unlock(&s->lock);
	return r;
}

static int ctl_true_state(struct smpl_backend *b, uint8_t *state, uint32_t *shot_count)
{
	struct sim *s = sim_of(b);
	struct smpl_model_view v;

	pthread_mutex_lock(&s->lock);
	smpl_model_view(s->model, now_ms(b), &v);
	pthread_mutex_unlock(&s->lock);
	*state = v.state;
	*shot_count = v.shot_count;
	return 0;
}

static const struct smpl_sim_control sim_control = {
	.set_footswitch = ctl_footswitch,
	.set_interlock = ctl_interlock,
	.set_drift = ctl_drift,
	.inject_fault = ctl_fault,
	.clear_fault_cause = ctl_clear_fault_cause,
	.set_rtc_skew = ctl_rtc_skew,
	.set_calibration = ctl_calibration,
	.set_shot_count = ctl_shot_count,
	.hold_reports = ctl_hold_reports,
	.set_hostile = ctl_hostile,
	.drop_next_reply = ctl_drop_next_reply,
	.unplug = ctl_unplug,
	.replug = ctl_replug,
	.true_state = ctl_true_state,
};

int smpl_backend_sim_new(sd_event *event, const struct smpl_sim_options *opt,
			 smpl_backend_event_fn on_event, void *userdata,
			 struct smpl_backend **ret)
{
	struct smpl_backend *b = calloc(1, sizeof(*b));
	struct sim *s = calloc(1, sizeof(*s));
	struct smpl_model_nv nv = { 0 };

	if (!b || !s)
		goto oom;
	pthread_mutex_init(&s->lock, NULL);
	s->reply_timeout_ms = opt->reply_timeout_ms;
	s->fired_fd = -1;
	b->ops = &sim_ops;
	b->sim = &sim_control;
	b->event = event;
	b->on_event = on_event;
	b->userdata = userdata;
	b->priv = s;

	smpl_model_default_config(&s->cfg);
	if (opt->workstation)
		snprintf(s->cfg.serial, sizeof(s->cfg.serial), "SIM%02u-%s", opt->index % 100,
			 opt->workstation);
	else
		snprintf(s->cfg.serial, sizeof(s->cfg.serial), "SIM%05u", opt->index % 100000);
	s->cfg.seed = opt->index + 1;
	if (opt->emission_delay_ms)
		s->cfg.emission_delay_ms = opt->emission_delay_ms;
	if (opt->idle_timeout_ms)
		s->cfg.idle_timeout_ms = opt->idle_timeout_ms;
	if (opt->nv_dir) {
		if (asprintf(&s->nv_path, "%s/sim-%s.nv", opt->nv_dir, s->cfg.serial) < 0) {
			s->nv_path = NULL;
			goto oom;
		}
		nv_load(s->nv_path, &nv);
		s->nv_saved = nv;
	}
	s->model = smpl_model_new(&s->cfg, &nv, now_ms(b), (int64_t)time(NULL));
	if (!s->model)
		goto oom;
	if (opt->nv_dir && open_fired_log(s, opt->nv_dir) < 0)
		fprintf(stderr, "sim: no fired log for %s: %m\n", s->cfg.serial);
	*ret = b;
	return 0;
oom:
	if (s)
		free(s->nv_path);
	free(s);
	free(b);
	return -ENOMEM;
}
