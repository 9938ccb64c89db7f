// SPDX-License-Identifier: MIT
/*
 * Firmware model of the laser unit: a pure state machine, time injected.
 *
 * States and transitions ("armed" = ARMING, READY or EMITTING)
 *
 *   from        event                                   to
 *   ----------  --------------------------------------  -----------------------
 *   OFF         power on                                SELF_TEST
 *   SELF_TEST   self_test_ms passed, no fault cause     STANDBY
 *   SELF_TEST   self_test_ms passed, a fault cause      FAULT(that cause)
 *   STANDBY     ARM (params set, interlocks closed)     ARMING (emission LED on)
 *   STANDBY     SELF_TEST command                       SELF_TEST
 *   ARMING      emission_delay_ms passed                READY (NEED_RELEASE if
 *                                                       the footswitch is held)
 *   READY       footswitch pressed, no NEED_RELEASE     EMITTING (a pulse at once,
 *                                                       then one per 1/rate)
 *   READY       footswitch released                     READY, NEED_RELEASE cleared
 *   READY       idle_timeout_ms without a pulse         STANDBY (no fault)
 *   EMITTING    footswitch released                     READY (idle timer restarts)
 *   armed       DISARM command or control request       STANDBY
 *   armed       any interlock opens                     FAULT(INTERLOCK)
 *   armed       watchdog_ms without HEARTBEAT           FAULT(WATCHDOG)
 *   any on      inject_fault(f)                         FAULT(f) (SELF_TEST: at its end)
 *   FAULT       ACK_FAULT, cause gone                   STANDBY
 *   FAULT       ACK_FAULT, cause persists               FAULT, SMPL_ST_CAUSE_PERSISTS
 *   any         power off                               OFF
 *
 * Choices where the design leaves room:
 * - An interlock break or a watchdog expiry while armed latches a FAULT;
 *   ACK_FAULT then returns the unit to STANDBY.  This is "STANDBY after any
 *   fault or interlock break" with "faults latch until acknowledged".
 *   Interlocks opening in STANDBY, SELF_TEST or FAULT only change the bits.
 * - The cause of FAULT(INTERLOCK) persists while any interlock is open; an
 *   injected fault's cause persists until smpl_model_clear_fault_cause()
 *   (a broken part stays broken across power cycles: self-test finds it);
 *   the watchdog's cause ends with the fault.
 * - The watchdog starts at ARM and is fed by HEARTBEAT only.  It expires at
 *   exactly watchdog_ms after the last feed; a HEARTBEAT at that instant
 *   is too late.  When two deadlines fall on the same millisecond, the
 *   watchdog goes first (no pulse at the instant the watchdog expires).
 * - DISARM always succeeds; in FAULT it leaves the fault latched.  ACK_FAULT
 *   outside FAULT, and ARM/SET_PARAMS/SELF_TEST outside STANDBY, answer
 *   SMPL_ST_BAD_STATE (ARM and SET_PARAMS in FAULT: SMPL_ST_FAULT_LATCHED).
 *   ARM checks, in order: FAULT, state, interlocks, parameters.
 * - Parameters live in RAM: power off forgets them.  The shot counter and
 *   the RTC offset are non-volatile (struct smpl_model_nv).
 * - The model does not judge measured energy: the host checks each pulse
 *   against +/-20% (the daemon enforces S5), so tests can drift the energy
 *   and watch the host react.
 * - A powered-off unit answers nothing and reports nothing.
 * - A frame that fails to decode is answered SMPL_ST_BAD_FRAME (an intact
 *   frame with an unknown op: SMPL_ST_UNKNOWN_OP), echoing its op and seq
 *   when the header is long enough to hold them; frames that are not
 *   commands (replies, reports) get SMPL_ST_UNKNOWN_OP.  None has an effect.
 * - Every entry point first lets time run up to its "now" (earlier values
 *   of "now" count as the latest time seen), so events happen in time order.
 * - A command's effect happens even when a hostile mode mangles or drops
 *   its reply: the host cannot tell from a lost reply whether it was obeyed.
 *
 * Reports: a status snapshot is queued whenever state, fault, interlocks or
 * status flags change, one pulse report per pulse, in the order they
 * happened (each snapshot as it was at its change); with nothing queued a
 * fresh status report is due every SMPL_STATUS_PERIOD_MS.  The queue holds REPORT_QUEUE_LEN reports; when it
 * is full the oldest status snapshot is dropped first, then the oldest
 * pulse (a host sees the gap in shot numbers).
 */
#include "model.h"

#include <endian.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"

#define NEVER UINT64_MAX
#define REPORT_QUEUE_LEN 64
#define OVERSIZE_EXTRA 16
#define NO_SIGNATURE UINT64_MAX

enum report_kind { REPORT_STATUS, REPORT_PULSE };

struct queued_report {
	enum report_kind kind;
	union {
		struct smpl_status_n status;
		struct smpl_pulse_n pulse;
	};
};

struct smpl_model {
	struct smpl_model_config cfg;
	struct smpl_model_nv nv;

	/* Time: the latest "now" seen; the wall clock was wall_base_s at
	 * monotonic wall_base_ms. */
	uint64_t now_ms;
	uint64_t wall_base_ms;
	int64_t wall_base_s;

	/* The physical world: survives power off. */
	uint16_t interlocks;
	bool footswitch;
	bool calibrated;
	int32_t drift_ppm;
	uint8_t fault_cause;		/* injected, until cleared */
	unsigned short prng[3];		/* nrand48() state for energy noise */

	/* Firmware RAM: reset at power on. */
	uint8_t state;
	uint8_t fault;
	bool params_set;
	struct smpl_params_n params;
	uint32_t set_energy_uj;
	uint32_t last_energy_uj;
	bool need_release;
	uint64_t state_deadline_ms;	/* end of SELF_TEST or ARMING */
	uint64_t last_heartbeat_ms;
	uint64_t ready_since_ms;
	uint64_t burst_start_ms;
	uint64_t burst_pulses;

	/* Interrupt reports. */
	struct queued_report queue[REPORT_QUEUE_LEN];
	size_t queue_len;
	uint32_t reports_dropped;
	uint64_t last_signature;
	uint64_t last_periodic_ms;
	bool periodic_started;
	uint16_t report_seq;

	/* Hostile replies. */
	enum smpl_hostile hostile;
	unsigned int hostile_count;

	/* Told of every pulse fired (tests' truth). */
	smpl_model_fire_fn on_fire;
	void *on_fire_ctx;
};

void smpl_model_default_config(struct smpl_model_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	strcpy(cfg->serial, "SMP-000001");
	strcpy(cfg->model, "SMPL-QS1064");
	cfg->fw_major = 1;
	cfg->fw_minor = 0;
	cfg->fw_patch = 0;
	cfg->picosecond = false;
	cfg->wavelength_nm[0] = 1064;
	cfg->wavelength_nm[1] = 532;
	cfg->max_fluence_mj_cm2 = 10000;
	cfg->min_spot_um = 2000;
	cfg->max_spot_um = 6000;
	cfg->min_pulse_ps = 5000;
	cfg->max_pulse_ps = 25000;
	cfg->max_rate_mhz = 10000;
	cfg->self_test_ms = 200;
	cfg->emission_delay_ms = 2000;
	cfg->watchdog_ms = 1000;
	cfg->idle_timeout_ms = 60000;
	cfg->noise_ppm = 20000;
	cfg->seed = 1;
}

/* ---- small helpers ------------------------------------------------------- */

static bool is_armed(uint8_t state)
{
	return state == SMPL_STATE_ARMING || state == SMPL_STATE_READY ||
	       state == SMPL_STATE_EMITTING;
}

static int64_t rtc_at(const struct smpl_model *m, uint64_t t)
{
	uint64_t elapsed = t >= m->wall_base_ms ? t - m->wall_base_ms : 0;

	return m->wall_base_s + (int64_t)(elapsed / 1000) + m->nv.rtc_offset_s;
}

static uint8_t status_flags(const struct smpl_model *m)
{
	uint8_t flags = 0;

	if (m->footswitch)
		flags |= SMPL_SF_FOOTSWITCH;
	if (is_armed(m->state))
		flags |= SMPL_SF_EMISSION_LED;
	if (m->params_set)
		flags |= SMPL_SF_PARAMS_SET;
	if (m->state == SMPL_STATE_READY && m->need_release)
		flags |= SMPL_SF_NEED_RELEASE;
	if (m->calibrated)
		flags |= SMPL_SF_CALIBRATED;
	return flags;
}

static void snapshot(const struct smpl_model *m, struct smpl_status_n *s)
{
	memset(s, 0, sizeof(*s));
	s->state = m->state;
	/* Hostile LIE_STANDBY: a status encoding bug, the unit armed all the same. */
	if (m->hostile == SMPL_HOSTILE_LIE_STANDBY && m->hostile_count > 0 && is_armed(m->state))
		s->state = SMPL_STATE_STANDBY;
	s->fault = m->fault;
	s->interlocks = m->interlocks;
	s->flags = status_flags(m);
	s->shot_count = m->nv.shot_count;
	s->last_energy_uj = m->last_energy_uj;
	s->rtc_s = rtc_at(m, m->now_ms);
}

/* What a status report is "due on every change" of. */
static uint64_t signature(const struct smpl_model *m)
{
	return (uint64_t)m->state | (uint64_t)m->fault << 8 |
	       (uint64_t)m->interlocks << 16 | (uint64_t)status_flags(m) << 32;
}

/* ---- report queue -------------------------------------------------------- */

static void queue_remove(struct smpl_model *m, size_t i)
{
	memmove(&m->queue[i], &m->queue[i + 1],
		(m->queue_len - i - 1) * sizeof(m->queue[0]));
	m->queue_len--;
}

static void queue_push(struct smpl_model *m, const struct queued_report *r)
{
	if (m->queue_len == REPORT_QUEUE_LEN) {
		size_t victim = 0;

		for (size_t i = 0; i < m->queue_len; i++) {
			if (m->queue[i].kind == REPORT_STATUS) {
				victim = i;
				break;
			}
		}
		queue_remove(m, victim);
		m->reports_dropped++;
	}
	m->queue[m->queue_len++] = *r;
}

/* Queue a status snapshot if anything a host watches has changed. */
static void note_change(struct smpl_model *m)
{
	struct queued_report r = { .kind = REPORT_STATUS };
	uint64_t sig;

	if (m->state == SMPL_STATE_OFF)
		return;
	sig = signature(m);
	if (sig == m->last_signature)
		return;
	m->last_signature = sig;
	snapshot(m, &r.status);
	queue_push(m, &r);
}

/* ---- transitions --------------------------------------------------------- */

static void go_standby(struct smpl_model *m)
{
	m->state = SMPL_STATE_STANDBY;
	m->need_release = false;
}

static void go_fault(struct smpl_model *m, uint8_t fault)
{
	if (m->state != SMPL_STATE_FAULT)
		m->fault = fault;	/* the first fault stays latched */
	m->state = SMPL_STATE_FAULT;
	m->need_release = false;
}

static void go_self_test(struct smpl_model *m)
{
	m->state = SMPL_STATE_SELF_TEST;
	m->need_release = false;
	m->state_deadline_ms = m->now_ms + m->cfg.self_test_ms;
}

static void go_ready(struct smpl_model *m)
{
	m->state = SMPL_STATE_READY;
	m->ready_since_ms = m->now_ms;
	m->need_release = m->footswitch;
}

static void go_emitting(struct smpl_model *m)
{
	m->state = SMPL_STATE_EMITTING;
	m->burst_start_ms = m->now_ms;
	m->burst_pulses = 0;
}

static uint32_t measured_energy(struct smpl_model *m)
{
	int64_t noise = 0, factor;
	uint64_t uj;

	if (m->cfg.noise_ppm > 0) {
		uint64_t span = 2 * (uint64_t)m->cfg.noise_ppm + 1;

		noise = (int64_t)((uint64_t)nrand48(m->prng) % span) -
			(int64_t)m->cfg.noise_ppm;
	}
	factor = 1000000 + (int64_t)m->drift_ppm + noise;
	if (factor <= 0)
		return 0;
	uj = ((uint64_t)m->set_energy_uj * (uint64_t)factor + 500000) / 1000000;
	return uj > UINT32_MAX ? UINT32_MAX : (uint32_t)uj;
}

static void emit_pulse(struct smpl_model *m)
{
	struct queued_report r = { .kind = REPORT_PULSE };

	m->burst_pulses++;
	/* Hostile STUCK_COUNTER: the next hostile_count pulses fire, the counter stays. */
	if (m->hostile == SMPL_HOSTILE_STUCK_COUNTER && m->hostile_count > 0 &&
	    m->nv.shot_count > 0) {
		if (--m->hostile_count == 0)
			m->hostile = SMPL_HOSTILE_NONE;
	} else {
		m->nv.shot_count++;
	}
	m->last_energy_uj = measured_energy(m);
	r.pulse.shot = m->nv.shot_count;
	r.pulse.measured_uj = m->last_energy_uj;
	r.pulse.set_uj = m->set_energy_uj;
	if (m->on_fire)
		m->on_fire(m->on_fire_ctx, r.pulse.shot, r.pulse.measured_uj, r.pulse.set_uj);
	queue_push(m, &r);
}

/* ---- time ---------------------------------------------------------------- */

/* Timed events, in the order they win a tie. */
enum timed_event {
	EV_SELF_TEST_DONE,
	EV_WATCHDOG,
	EV_ARMING_DONE,
	EV_IDLE,
	EV_PULSE,
	EV_COUNT,
	EV_NONE = EV_COUNT,
};

static uint64_t next_pulse_ms(const struct smpl_model *m)
{
	uint64_t rate = m->params.rate_mhz;

	/* Hostile FAST_RATE: a firmware that reads the rate in other units. */
	if (m->hostile == SMPL_HOSTILE_FAST_RATE && m->hostile_count > 1)
		rate *= m->hostile_count;
	return m->burst_start_ms + m->burst_pulses * 1000000u / rate;
}

static uint64_t event_time(const struct smpl_model *m, enum timed_event ev)
{
	switch (ev) {
	case EV_SELF_TEST_DONE:
		return m->state == SMPL_STATE_SELF_TEST ? m->state_deadline_ms : NEVER;
	case EV_WATCHDOG:
		return is_armed(m->state) ? m->last_heartbeat_ms + m->cfg.watchdog_ms : NEVER;
	case EV_ARMING_DONE:
		return m->state == SMPL_STATE_ARMING ? m->state_deadline_ms : NEVER;
	case EV_IDLE:
		return m->state == SMPL_STATE_READY ?
		       m->ready_since_ms + m->cfg.idle_timeout_ms : NEVER;
	case EV_PULSE:
		return m->state == SMPL_STATE_EMITTING ? next_pulse_ms(m) : NEVER;
	default:
		return NEVER;
	}
}

static enum timed_event next_event(const struct smpl_model *m, uint64_t *when)
{
	enum timed_event best = EV_NONE;

	*when = NEVER;
	for (int ev = 0; ev < EV_COUNT; ev++) {
		uint64_t t = event_time(m, (enum timed_event)ev);

		if (t < *when) {
			*when = t;
			best = (enum timed_event)ev;
		}
	}
	return best;
}

static void fire(struct smpl_model *m, enum timed_event ev)
{
	switch (ev) {
	case EV_SELF_TEST_DONE:
		if (m->fault_cause)
			go_fault(m, m->fault_cause);
		else
			go_standby(m);
		break;
	case EV_WATCHDOG:
		go_fault(m, SMPL_FAULT_WATCHDOG);
		break;
	case EV_ARMING_DONE:
		go_ready(m);
		break;
	case EV_IDLE:
		go_standby(m);
		break;
	case EV_PULSE:
		emit_pulse(m);
		break;
	default:
		break;
	}
}

/* Let every timed event up to @now happen, in time order. */
static void run_until(struct smpl_model *m, uint64_t now)
{
	uint64_t when;
	enum timed_event ev;

	if (now < m->now_ms)
		now = m->now_ms;
	while ((ev = next_event(m, &when)) != EV_NONE && when <= now) {
		m->now_ms = when;
		fire(m, ev);
		note_change(m);
	}
	m->now_ms = now;
}

/* After an input changed the model at m->now_ms: report, then run what is due. */
static void settle(struct smpl_model *m)
{
	note_change(m);
	run_until(m, m->now_ms);
}

void smpl_model_advance(struct smpl_model *m, uint64_t now_ms)
{
	run_until(m, now_ms);
}

uint64_t smpl_model_next_deadline(const struct smpl_model *m, uint64_t now_ms)
{
	uint64_t when;

	if (next_event(m, &when) == EV_NONE)
		return UINT64_MAX;
	return when <= now_ms ? 0 : when - now_ms;
}

/* ---- life cycle ---------------------------------------------------------- */

static bool config_ok(const struct smpl_model_config *c)
{
	return c->watchdog_ms > 0 && c->idle_timeout_ms > 0 && c->max_rate_mhz > 0 &&
	       c->wavelength_nm[0] > 0 && c->min_spot_um <= c->max_spot_um &&
	       c->min_pulse_ps <= c->max_pulse_ps && c->max_fluence_mj_cm2 > 0;
}

struct smpl_model *smpl_model_new(const struct smpl_model_config *cfg,
				  const struct smpl_model_nv *nv,
				  uint64_t now_ms, int64_t wall_s)
{
	struct smpl_model *m;

	m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	if (cfg)
		m->cfg = *cfg;
	else
		smpl_model_default_config(&m->cfg);
	if (!config_ok(&m->cfg)) {
		free(m);
		return NULL;
	}
	m->cfg.serial[sizeof(m->cfg.serial) - 1] = '\0';
	m->cfg.model[sizeof(m->cfg.model) - 1] = '\0';
	if (nv)
		m->nv = *nv;
	m->now_ms = now_ms;
	m->wall_base_ms = now_ms;
	m->wall_base_s = wall_s;
	m->calibrated = true;
	m->prng[0] = 0x330e;
	m->prng[1] = (unsigned short)(m->cfg.seed & 0xffff);
	m->prng[2] = (unsigned short)(m->cfg.seed >> 16);
	m->state = SMPL_STATE_OFF;
	m->last_signature = NO_SIGNATURE;
	return m;
}

void smpl_model_free(struct smpl_model *m)
{
	free(m);
}

/* Forget everything the firmware keeps in RAM. */
static void reset_ram(struct smpl_model *m)
{
	m->fault = SMPL_FAULT_NONE;
	m->params_set = false;
	memset(&m->params, 0, sizeof(m->params));
	m->set_energy_uj = 0;
	m->last_energy_uj = 0;
	m->need_release = false;
	m->queue_len = 0;
	m->last_signature = NO_SIGNATURE;
	m->periodic_started = false;
	m->hostile = SMPL_HOSTILE_NONE;
	m->hostile_count = 0;
}

void smpl_model_power_on(struct smpl_model *m, uint64_t now_ms)
{
	run_until(m, now_ms);
	if (m->state != SMPL_STATE_OFF)
		return;
	reset_ram(m);
	go_self_test(m);
	settle(m);
}

void smpl_model_power_off(struct smpl_model *m, uint64_t now_ms)
{
	run_until(m, now_ms);
	m->state = SMPL_STATE_OFF;
	reset_ram(m);
}

void smpl_model_get_nv(const struct smpl_model *m, struct smpl_model_nv *nv)
{
	*nv = m->nv;
}

/* ---- commands ------------------------------------------------------------ */

/* A reply under construction. */
struct reply {
	uint16_t status;
	_Alignas(8) uint8_t payload[SMPL_MAX_PAYLOAD];	/* cast to wire structs */
	size_t len;
};

static bool params_within_limits(const struct smpl_model_config *c,
				 const struct smpl_params_n *p)
{
	bool wavelength_ok = p->wavelength_nm != 0 &&
		(p->wavelength_nm == c->wavelength_nm[0] ||
		 p->wavelength_nm == c->wavelength_nm[1]);

	return wavelength_ok &&
	       p->spot_um >= c->min_spot_um && p->spot_um <= c->max_spot_um &&
	       p->fluence_mj_cm2 >= 1 && p->fluence_mj_cm2 <= c->max_fluence_mj_cm2 &&
	       p->pulse_ps >= c->min_pulse_ps && p->pulse_ps <= c->max_pulse_ps &&
	       p->rate_mhz >= 1 && p->rate_mhz <= c->max_rate_mhz;
}

static uint16_t clamp16(uint32_t v)
{
	return v > UINT16_MAX ? UINT16_MAX : (uint16_t)v;
}

static void cmd_get_info(struct smpl_model *m, const struct smpl_frame *f, struct reply *r)
{
	struct smpl_info_n n;
	const struct smpl_model_config *c = &m->cfg;

	(void)f;
	memset(&n, 0, sizeof(n));
	memcpy(n.serial, c->serial, sizeof(n.serial));
	memcpy(n.model, c->model, sizeof(n.model));
	n.fw_major = c->fw_major;
	n.fw_minor = c->fw_minor;
	n.fw_patch = c->fw_patch;
	n.flags = c->picosecond ? SMPL_INFO_PICOSECOND : 0;
	n.wavelength_nm[0] = c->wavelength_nm[0];
	n.wavelength_nm[1] = c->wavelength_nm[1];
	n.max_fluence_mj_cm2 = c->max_fluence_mj_cm2;
	n.min_spot_um = c->min_spot_um;
	n.max_spot_um = c->max_spot_um;
	n.min_pulse_ps = c->min_pulse_ps;
	n.max_pulse_ps = c->max_pulse_ps;
	n.max_rate_mhz = c->max_rate_mhz;
	n.watchdog_ms = clamp16(c->watchdog_ms);
	n.emission_delay_ms = clamp16(c->emission_delay_ms);
	smpl_info_encode(&n, (struct smpl_info *)r->payload);
	r->len = SMPL_INFO_SIZE;
}

static void cmd_set_params(struct smpl_model *m, const struct smpl_frame *f, struct reply *r)
{
	struct smpl_params wire;
	struct smpl_params_n p;

	if (m->state == SMPL_STATE_FAULT) {
		r->status = SMPL_ST_FAULT_LATCHED;
		return;
	}
	if (m->state != SMPL_STATE_STANDBY) {
		r->status = SMPL_ST_BAD_STATE;
		return;
	}
	memcpy(&wire, f->payload, sizeof(wire));
	smpl_params_decode(&wire, &p);
	if (!params_within_limits(&m->cfg, &p)) {
		r->status = SMPL_ST_OUT_OF_RANGE;
		return;
	}
	m->params = p;
	m->params_set = true;
	m->set_energy_uj = smpl_params_energy_uj(&p);
	smpl_params_encode(&p, (struct smpl_params *)r->payload);
	r->len = SMPL_PARAMS_SIZE;
}

static void cmd_get_params(struct smpl_model *m, const struct smpl_frame *f, struct reply *r)
{
	(void)f;
	if (!m->params_set) {
		r->status = SMPL_ST_NO_PARAMS;
		return;
	}
	smpl_params_encode(&m->params, (struct smpl_params *)r->payload);
	r->len = SMPL_PARAMS_SIZE;
}

static void cmd_arm(struct smpl_model *m, const struct smpl_frame *f, struct reply *r)
{
	(void)f;
	if (m->state == SMPL_STATE_FAULT)
		r->status = SMPL_ST_FAULT_LATCHED;
	else if (m->state != SMPL_STATE_STANDBY)
		r->status = SMPL_ST_BAD_STATE;
	else if (m->interlocks != 0)
		r->status = SMPL_ST_INTERLOCK_OPEN;
	else if (!m->params_set)
		r->status = SMPL_ST_NO_PARAMS;
	if (r->status != SMPL_ST_OK)
		return;
	m->state = SMPL_STATE_ARMING;
	m->state_deadline_ms = m->now_ms + m->cfg.emission_delay_ms;
	m->last_heartbeat_ms = m->now_ms;
}

static void disarm(struct smpl_model *m)
{
	if (is_armed(m->state))
		go_standby(m);
}

/*
 * Hostile IGNORE_DISARM: the next hostile_count disarms (the DISARM command
 * or the vendor request) of an armed unit are acknowledged and not obeyed.
 * Its own faults, interlocks and watchdog still disarm it.
 */
static bool disarm_ignored(struct smpl_model *m)
{
	if (m->hostile != SMPL_HOSTILE_IGNORE_DISARM || m->hostile_count == 0 ||
	    !is_armed(m->state))
		return false;
	if (--m->hostile_count == 0)
		m->hostile = SMPL_HOSTILE_NONE;
	return true;
}

static void cmd_disarm(struct smpl_model *m, const struct smpl_frame *f, struct reply *r)
{
	(void)f;
	(void)r;
	if (!disarm_ignored(m))
		disarm(m);
}

static void cmd_heartbeat(struct smpl_model *m, const struct smpl_frame *f, struct reply *r)
{
	(void)f;
	(void)r;
	m->last_heartbeat_ms = m->now_ms;
}

static void cmd_self_test(struct smpl_model *m, const struct smpl_frame *f, struct reply *r)
{
	(void)f;
	if (m->state != SMPL_STATE_STANDBY) {
		r->status = SMPL_ST_BAD_STATE;
		return;
	}
	go_self_test(m);
}

static void cmd_get_rtc(struct smpl_model *m, const struct smpl_frame *f, struct reply *r)
{
	struct smpl_rtc rtc = { .rtc_s = htole64((uint64_t)rtc_at(m, m->now_ms)) };

	(void)f;
	memcpy(r->payload, &rtc, sizeof(rtc));
	r->len = SMPL_RTC_SIZE;
}

static bool fault_cause_persists(const struct smpl_model *m)
{
	if (m->fault_cause != SMPL_FAULT_NONE)
		return true;
	return m->fault == SMPL_FAULT_INTERLOCK && m->interlocks != 0;
}

static void cmd_ack_fault(struct smpl_model *m, const struct smpl_frame *f, struct reply *r)
{
	(void)f;
	if (m->state != SMPL_STATE_FAULT) {
		r->status = SMPL_ST_BAD_STATE;
		return;
	}
	if (fault_cause_persists(m)) {
		r->status = SMPL_ST_CAUSE_PERSISTS;
		return;
	}
	m->fault = SMPL_FAULT_NONE;
	go_standby(m);
}

static void cmd_get_status(struct smpl_model *m, const struct smpl_frame *f, struct reply *r)
{
	struct smpl_status_n s;

	(void)f;
	snapshot(m, &s);
	smpl_status_encode(&s, (struct smpl_status_report *)r->payload);
	r->len = SMPL_STATUS_SIZE;
}

typedef void (*command_fn)(struct smpl_model *m, const struct smpl_frame *f, struct reply *r);

static command_fn command_handler(uint8_t op)
{
	switch (op) {
	case SMPL_OP_GET_INFO:
		return cmd_get_info;
	case SMPL_OP_SET_PARAMS:
		return cmd_set_params;
	case SMPL_OP_ARM:
		return cmd_arm;
	case SMPL_OP_DISARM:
		return cmd_disarm;
	case SMPL_OP_HEARTBEAT:
		return cmd_heartbeat;
	case SMPL_OP_SELF_TEST:
		return cmd_self_test;
	case SMPL_OP_GET_RTC:
		return cmd_get_rtc;
	case SMPL_OP_ACK_FAULT:
		return cmd_ack_fault;
	case SMPL_OP_GET_STATUS:
		return cmd_get_status;
	case SMPL_OP_GET_PARAMS:
		return cmd_get_params;
	default:
		return NULL;
	}
}

/* Bend a correct reply of @n bytes the way the hostile mode asks. */
static int apply_hostile(struct smpl_model *m, uint8_t op, uint16_t seq,
			 const struct reply *r, uint8_t *buf, size_t size, int n)
{
	enum smpl_hostile mode = m->hostile;

	if (m->hostile_count == 0 || mode == SMPL_HOSTILE_NONE ||
	    mode == SMPL_HOSTILE_FLOOD || mode == SMPL_HOSTILE_IGNORE_DISARM ||
	    mode == SMPL_HOSTILE_STUCK_COUNTER || mode == SMPL_HOSTILE_FAST_RATE ||
	    mode == SMPL_HOSTILE_LIE_STANDBY)
		return n;
	if (--m->hostile_count == 0)
		m->hostile = SMPL_HOSTILE_NONE;

	switch (mode) {
	case SMPL_HOSTILE_SHORT:
		return n - 1;
	case SMPL_HOSTILE_OVERSIZE: {
		size_t extra = size - (size_t)n;

		if (extra > OVERSIZE_EXTRA)
			extra = OVERSIZE_EXTRA;
		memset(buf + n, 0xa5, extra);
		return n + (int)extra;
	}
	case SMPL_HOSTILE_BAD_CRC:
		buf[12] ^= 0xff;
		return n;
	case SMPL_HOSTILE_WRONG_SEQ:
		return smpl_encode(op, (uint16_t)(seq + 1), r->status, r->payload,
				   r->len, buf, size);
	case SMPL_HOSTILE_STALL:
		return -1;
	case SMPL_HOSTILE_NO_ANSWER:
		return 0;
	default:
		return n;
	}
}

/* The op and seq to echo for a frame that did not decode. */
static void salvage_header(const uint8_t *frame, size_t len, uint8_t *op, uint16_t *seq)
{
	*op = SMPL_OP_REPLY;
	*seq = 0;
	if (frame && len >= 4)
		*op = frame[3] | SMPL_OP_REPLY;
	if (frame && len >= 6)
		*seq = (uint16_t)(frame[4] | frame[5] << 8);
}

int smpl_model_handle_frame(struct smpl_model *m, uint64_t now_ms,
			    const uint8_t *frame, size_t len,
			    uint8_t *reply, size_t reply_size)
{
	struct smpl_frame f;
	struct reply r = { .status = SMPL_ST_OK };
	uint8_t op;
	uint16_t seq;
	command_fn handler;
	int n, err;

	if (!reply || reply_size < SMPL_MAX_FRAME)
		return -1;
	run_until(m, now_ms);
	if (m->state == SMPL_STATE_OFF)
		return 0;

	err = smpl_decode(frame, len, &f);
	if (err != 0) {
		salvage_header(frame, len, &op, &seq);
		r.status = err == SMPL_E_UNKNOWN_OP ? SMPL_ST_UNKNOWN_OP : SMPL_ST_BAD_FRAME;
	} else {
		op = f.op | SMPL_OP_REPLY;
		seq = f.seq;
		handler = smpl_op_is_command(f.op) ? command_handler(f.op) : NULL;
		if (handler)
			handler(m, &f, &r);
		else
			r.status = SMPL_ST_UNKNOWN_OP;
		settle(m);
	}
	if (r.status != SMPL_ST_OK)
		r.len = 0;

	n = smpl_encode(op, seq, r.status, r.payload, r.len, reply, reply_size);
	if (n < 0)
		return -1;
	return apply_hostile(m, op, seq, &r, reply, reply_size, n);
}

void smpl_model_disarm(struct smpl_model *m, uint64_t now_ms)
{
	run_until(m, now_ms);
	if (!disarm_ignored(m))
		disarm(m);
	settle(m);
}

bool smpl_model_answers_control(struct smpl_model *m)
{
	if (m->hostile != SMPL_HOSTILE_NO_ANSWER || m->hostile_count == 0)
		return true;
	if (--m->hostile_count == 0)
		m->hostile = SMPL_HOSTILE_NONE;
	return false;
}

/* ---- reports ------------------------------------------------------------- */

static int encode_status(struct smpl_model *m, const struct smpl_status_n *s,
			 uint8_t *buf, size_t size)
{
	struct smpl_status_report w;

	smpl_status_encode(s, &w);
	return smpl_encode(SMPL_OP_STATUS, m->report_seq++, 0, &w, sizeof(w), buf, size);
}

static int encode_pulse(struct smpl_model *m, const struct smpl_pulse_n *p,
			uint8_t *buf, size_t size)
{
	struct smpl_pulse_report w;

	smpl_pulse_encode(p, &w);
	return smpl_encode(SMPL_OP_PULSE, m->report_seq++, 0, &w, sizeof(w), buf, size);
}

static bool periodic_status_due(const struct smpl_model *m)
{
	return !m->periodic_started ||
	       m->now_ms - m->last_periodic_ms >= SMPL_STATUS_PERIOD_MS;
}

static void mark_status_sent(struct smpl_model *m)
{
	m->periodic_started = true;
	m->last_periodic_ms = m->now_ms;
}

int smpl_model_next_report(struct smpl_model *m, uint64_t now_ms,
			   uint8_t *buf, size_t size)
{
	struct smpl_status_n s;
	int n;

	run_until(m, now_ms);
	if (m->state == SMPL_STATE_OFF || !buf || size < SMPL_MAX_REPORT)
		return 0;

	if (m->hostile == SMPL_HOSTILE_FLOOD && m->hostile_count > 0) {
		if (--m->hostile_count == 0)
			m->hostile = SMPL_HOSTILE_NONE;
		snapshot(m, &s);
		return encode_status(m, &s, buf, size);
	}
	if (m->queue_len > 0) {
		struct queued_report r = m->queue[0];

		queue_remove(m, 0);
		if (r.kind == REPORT_PULSE)
			return encode_pulse(m, &r.pulse, buf, size);
		return encode_status(m, &r.status, buf, size);
	}
	if (!periodic_status_due(m))
		return 0;
	snapshot(m, &s);
	n = encode_status(m, &s, buf, size);
	mark_status_sent(m);
	return n;
}

/* ---- test-control surface ------------------------------------------------ */

void smpl_model_set_footswitch(struct smpl_model *m, uint64_t now_ms, bool held)
{
	bool pressed = held && !m->footswitch;
	bool released = !held && m->footswitch;

	run_until(m, now_ms);
	m->footswitch = held;
	if (released) {
		m->need_release = false;
		if (m->state == SMPL_STATE_EMITTING)
			go_ready(m);	/* footswitch up: no NEED_RELEASE */
	}
	if (pressed && m->state == SMPL_STATE_READY && !m->need_release)
		go_emitting(m);
	settle(m);
}

void smpl_model_set_interlock(struct smpl_model *m, uint64_t now_ms,
			      uint16_t bit, bool open)
{
	uint16_t bits = bit & SMPL_IL_ALL;
	bool newly_open = open && (bits & ~m->interlocks);

	run_until(m, now_ms);
	if (open)
		m->interlocks |= bits;
	else
		m->interlocks &= (uint16_t)~bits;
	if (newly_open && is_armed(m->state))
		go_fault(m, SMPL_FAULT_INTERLOCK);
	settle(m);
}

void smpl_model_set_drift(struct smpl_model *m, int32_t drift_ppm)
{
	m->drift_ppm = drift_ppm;
}

void smpl_model_inject_fault(struct smpl_model *m, uint64_t now_ms, uint8_t fault)
{
	if (fault == SMPL_FAULT_NONE || fault > SMPL_FAULT__MAX)
		return;
	run_until(m, now_ms);
	m->fault_cause = fault;
	if (m->state != SMPL_STATE_OFF && m->state != SMPL_STATE_SELF_TEST)
		go_fault(m, fault);
	settle(m);
}

void smpl_model_clear_fault_cause(struct smpl_model *m, uint64_t now_ms)
{
	run_until(m, now_ms);
	m->fault_cause = SMPL_FAULT_NONE;
}

void smpl_model_set_rtc_skew(struct smpl_model *m, int64_t skew_s)
{
	m->nv.rtc_offset_s = skew_s;
}

void smpl_model_set_shot_count(struct smpl_model *m, uint32_t count)
{
	m->nv.shot_count = count;
}

void smpl_model_on_fire(struct smpl_model *m, smpl_model_fire_fn fn, void *ctx)
{
	m->on_fire = fn;
	m->on_fire_ctx = ctx;
}

void smpl_model_set_hostile(struct smpl_model *m, enum smpl_hostile mode,
			    unsigned int count)
{
	m->hostile = count ? mode : SMPL_HOSTILE_NONE;
	m->hostile_count = mode == SMPL_HOSTILE_NONE ? 0 : count;
}

void smpl_model_set_calibrated(struct smpl_model *m, uint64_t now_ms, bool valid)
{
	run_until(m, now_ms);
	m->calibrated = valid;
	settle(m);
}

uint32_t smpl_model_reports_dropped(const struct smpl_model *m)
{
	return m->reports_dropped;
}

size_t smpl_model_reports_queued(const struct smpl_model *m)
{
	return m->queue_len;
}

void smpl_model_view(const struct smpl_model *m, uint64_t now_ms,
		     struct smpl_model_view *v)
{
	memset(v, 0, sizeof(*v));
	v->state = m->state;
	v->fault = m->fault;
	v->interlocks = m->interlocks;
	v->footswitch = m->footswitch;
	v->need_release = m->state == SMPL_STATE_READY && m->need_release;
	v->shot_count = m->nv.shot_count;
	v->last_energy_uj = m->last_energy_uj;
	v->rtc_s = rtc_at(m, now_ms > m->now_ms ? now_ms : m->now_ms);
}
