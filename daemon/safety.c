/* SPDX-License-Identifier: MIT */
/*
 * The daemon's safety core for one unit: arming conditions (S1), supervision
 * (S4), energy and limits (S5), clock trust (S8).  Pure code: no I/O, time
 * is passed in.  See safety.h for the contract.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "rules.h"
#include "safety.h"

#define ERR_PREFIX "org.smplaser.Laser1.Error."

/* ---- reasons -------------------------------------------------------------- */

static const struct {
	const char *name;
	const char *dbus_error;		/* NULL: not an arming refusal */
	int err;			/* positive errno, as daemon/errors.c maps it */
} reasons[SMPL_REASON__COUNT] = {
	[SMPL_REASON_NONE]		= { "none", NULL, 0 },
	[SMPL_REASON_DISCONNECTED]	= { "disconnected", ERR_PREFIX "Disconnected", ENODEV },
	[SMPL_REASON_UNIT_FAULT]	= { "unit-fault", ERR_PREFIX "DeviceFault", EIO },
	[SMPL_REASON_FAULT_LATCHED]	= { "fault-latched", ERR_PREFIX "DeviceFault", EIO },
	[SMPL_REASON_ENERGY_TOLERANCE]	= { "energy-out-of-tolerance", ERR_PREFIX "DeviceFault", EIO },
	[SMPL_REASON_ENERGY_MISMATCH]	= { "energy-mismatch", ERR_PREFIX "DeviceFault", EIO },
	[SMPL_REASON_UNEXPECTED_PULSE]	= { "unexpected-pulse", ERR_PREFIX "DeviceFault", EIO },
	[SMPL_REASON_COUNTER_BACK]	= { "counter-went-back", ERR_PREFIX "DeviceFault", EIO },
	[SMPL_REASON_COUNTER_JUMP]	= { "counter-jumped", ERR_PREFIX "DeviceFault", EIO },
	[SMPL_REASON_RECORDS_FAILED]	= { "records-failed", ERR_PREFIX "DeviceFault", EIO },
	[SMPL_REASON_RECORDS_MISSING]	= { "records-missing", ERR_PREFIX "DeviceFault", EIO },
	[SMPL_REASON_BUSY]		= { "busy", ERR_PREFIX "Busy", EBUSY },
	[SMPL_REASON_INTERLOCK_OPEN]	= { "interlock-open", ERR_PREFIX "InterlockOpen", EHOSTDOWN },
	[SMPL_REASON_ESTOP]		= { "emergency-stop", ERR_PREFIX "InterlockOpen", EHOSTDOWN },
	[SMPL_REASON_CALIBRATION]	= { "calibration-expired", ERR_PREFIX "CalibrationExpired", EKEYEXPIRED },
	[SMPL_REASON_CLOCK_NO_RTC]	= { "clock-no-rtc", ERR_PREFIX "ClockUnreliable", ETIMEDOUT },
	[SMPL_REASON_CLOCK_BEHIND]	= { "clock-behind-records", ERR_PREFIX "ClockUnreliable", ETIMEDOUT },
	[SMPL_REASON_CLOCK_SKEW]	= { "clock-rtc-skew", ERR_PREFIX "ClockUnreliable", ETIMEDOUT },
	[SMPL_REASON_NO_SESSION]	= { "no-session", ERR_PREFIX "NoSession", ENOENT },
	[SMPL_REASON_OWNER_GONE]	= { "session-owner-gone", ERR_PREFIX "NoSession", ENOENT },
	[SMPL_REASON_NO_PATCH]		= { "no-patch", ERR_PREFIX "NoPatch", ENOMSG },
	[SMPL_REASON_COOLDOWN]		= { "cooldown-active", ERR_PREFIX "CooldownActive", ETIME },
	[SMPL_REASON_EYEWEAR]		= { "eyewear-not-confirmed", ERR_PREFIX "EyewearNotConfirmed", EPERM },
	[SMPL_REASON_PARAMS]		= { "parameters-not-accepted", ERR_PREFIX "ParameterOutOfRange", ERANGE },
	[SMPL_REASON_PULSE_LIMIT]	= { "patch-pulse-limit", ERR_PREFIX "ParameterOutOfRange", ERANGE },
	[SMPL_REASON_ENERGY_LIMIT]	= { "session-energy-limit", ERR_PREFIX "ParameterOutOfRange", ERANGE },
	[SMPL_REASON_IDLE_TIMEOUT]	= { "idle-timeout", NULL, 0 },
	[SMPL_REASON_UNIT_STANDBY]	= { "unit-left-armed-state", NULL, 0 },
	[SMPL_REASON_SESSION_ENDED]	= { "session-ended", NULL, 0 },
	[SMPL_REASON_REQUESTED]		= { "requested", NULL, 0 },
	[SMPL_REASON_UNEXPECTED_ARM]	= { "unexpected-arm", NULL, 0 },
	[SMPL_REASON_DAEMON_STOPPING]	= { "daemon-stopping", NULL, 0 },
	[SMPL_REASON_DISARM_FAILED]	= { "disarm-failed", ERR_PREFIX "DeviceFault", EIO },
	[SMPL_REASON_RATE_EXCEEDED]	= { "rate-exceeded", ERR_PREFIX "DeviceFault", EIO },
};

static bool reason_valid(enum smpl_reason r)
{
	return (unsigned int)r < SMPL_REASON__COUNT;
}

const char *smpl_reason_name(enum smpl_reason r)
{
	return reason_valid(r) ? reasons[r].name : "unknown";
}

const char *smpl_reason_dbus_error(enum smpl_reason r)
{
	return reason_valid(r) ? reasons[r].dbus_error : NULL;
}

int smpl_reason_errno(enum smpl_reason r)
{
	if (r == SMPL_REASON_NONE)
		return 0;
	if (!reason_valid(r) || !reasons[r].err)
		return -EPERM;
	return -reasons[r].err;
}

/* ---- small helpers ---------------------------------------------------------- */

static void __attribute__((format(printf, 3, 4)))
fmt(char *buf, size_t len, const char *f, ...)
{
	va_list ap;

	va_start(ap, f);
	vsnprintf(buf, len, f, ap);
	va_end(ap);
}

/* Refuse: fill @v (may be NULL), return the negative errno. */
static int __attribute__((format(printf, 3, 4)))
refuse(struct smpl_verdict *v, enum smpl_reason r, const char *f, ...)
{
	va_list ap;

	if (v) {
		v->reason = r;
		va_start(ap, f);
		vsnprintf(v->message, sizeof(v->message), f, ap);
		va_end(ap);
	}
	return smpl_reason_errno(r);
}

static int allow(struct smpl_verdict *v)
{
	if (v) {
		v->reason = SMPL_REASON_NONE;
		v->message[0] = '\0';
	}
	return 0;
}

static enum smpl_action_kind no_action(struct smpl_action *a)
{
	if (a) {
		a->kind = SMPL_ACT_NONE;
		a->reason = SMPL_REASON_NONE;
		a->fault_code = SMPL_FAULT_NONE;
		a->message[0] = '\0';
	}
	return SMPL_ACT_NONE;
}

/* The core decides to disarm: it no longer counts the unit armed. */
static enum smpl_action_kind __attribute__((format(printf, 5, 6)))
act(struct smpl_safety *s, struct smpl_action *a, enum smpl_action_kind kind,
    enum smpl_reason r, const char *f, ...)
{
	char msg[SMPL_SAFETY_MSG_MAX];
	va_list ap;

	va_start(ap, f);
	vsnprintf(msg, sizeof(msg), f, ap);
	va_end(ap);

	s->armed = false;
	s->disarm_pending = true;
	s->disarm_tried = false;
	s->still_armed_ms = 0;
	if (kind == SMPL_ACT_FAULT && s->fault == SMPL_REASON_NONE) {
		s->fault = r;
		s->fault_code = r == SMPL_REASON_UNIT_FAULT ? s->unit_fault : SMPL_FAULT_NONE;
		fmt(s->fault_message, sizeof(s->fault_message), "%s", msg);
	}
	if (a) {
		a->kind = kind;
		a->reason = r;
		a->fault_code = r == SMPL_REASON_UNIT_FAULT ? s->unit_fault : SMPL_FAULT_NONE;
		fmt(a->message, sizeof(a->message), "%s", msg);
	}
	return kind;
}

/* "key switch, remote interlock" for the open interlock bits. */
static void interlock_names(uint16_t bits, char *buf, size_t len)
{
	size_t used = 0;

	buf[0] = '\0';
	for (unsigned int i = 0; i < SMPL_IL_COUNT && used < len; i++) {
		if (!(bits & (1u << i)))
			continue;
		used += (size_t)snprintf(buf + used, len - used, "%s%s", used ? ", " : "",
					 smpl_interlock_label((uint16_t)(1u << i)));
	}
	if (!buf[0] && bits)
		snprintf(buf, len, "unknown (0x%x)", (unsigned int)bits);
}

static bool unit_armed_state(uint8_t state)
{
	return state == SMPL_STATE_ARMING || state == SMPL_STATE_READY ||
	       state == SMPL_STATE_EMITTING;
}

static bool unit_faulted(uint8_t state, uint8_t fault)
{
	return state == SMPL_STATE_FAULT || fault != SMPL_FAULT_NONE;
}

/* ---- set-up ------------------------------------------------------------------- */

void smpl_safety_default_limits(struct smpl_safety_limits *l)
{
	l->idle_timeout_s = 60;
	l->energy_tolerance_pct = 20;
	l->rtc_max_skew_s = 300;
	l->pulses_per_patch = 3000;
	l->max_session_energy_uj = 10000ULL * 1000 * 1000;
}

static void forget_unit_state(struct smpl_safety *s)
{
	s->status_known = false;
	s->state = SMPL_STATE_OFF;
	s->unit_fault = SMPL_FAULT_NONE;
	s->interlocks = SMPL_IL_ALL;	/* unknown = open */
	s->flags = 0;
	s->rtc_known = false;
	s->params_ok = false;		/* the unit may have lost them */
	s->burst_open = false;
}

void smpl_safety_init(struct smpl_safety *s, const struct smpl_safety_limits *l)
{
	memset(s, 0, sizeof(*s));
	if (l)
		s->limits = *l;
	else
		smpl_safety_default_limits(&s->limits);
	s->connected = false;
	forget_unit_state(s);
	s->fault = SMPL_REASON_NONE;
}

/* ---- clock (S8) ---------------------------------------------------------------- */

/* The year 9999 in seconds since the epoch: beyond it an RTC is nonsense. */
#define SMPL_RTC_MAX_S	253402300799LL

void smpl_safety_rtc(struct smpl_safety *s, uint64_t now_ms, int64_t rtc_s)
{
	s->rtc_known = true;
	s->rtc_s = rtc_s;
	s->rtc_at_ms = now_ms;
}

void smpl_safety_newest_record(struct smpl_safety *s, int64_t wall_ms)
{
	if (!s->newest_record_known || wall_ms > s->newest_record_ms) {
		s->newest_record_known = true;
		s->newest_record_ms = wall_ms;
	}
}

int smpl_safety_clock_ok(const struct smpl_safety *s, uint64_t now_ms,
			 int64_t wall_ms, struct smpl_verdict *v)
{
	char host[32], other[32];
	int64_t rtc_now_ms, diff_ms, bound_ms;

	if (!s->rtc_known)
		return refuse(v, SMPL_REASON_CLOCK_NO_RTC,
			      "the unit's clock (RTC) has not been read yet");
	if (s->newest_record_known && wall_ms < s->newest_record_ms) {
		smpl_format_utc(wall_ms, host, sizeof(host));
		smpl_format_utc(s->newest_record_ms, other, sizeof(other));
		return refuse(v, SMPL_REASON_CLOCK_BEHIND,
			      "host clock (%s) is earlier than the newest record (%s)",
			      host, other);
	}
	if (s->rtc_s < 0 || s->rtc_s > SMPL_RTC_MAX_S)
		return refuse(v, SMPL_REASON_CLOCK_SKEW,
			      "the unit's RTC reads %" PRId64 " s, not a time this side of year 10000",
			      s->rtc_s);
	rtc_now_ms = s->rtc_s * 1000;
	if (now_ms > s->rtc_at_ms)
		rtc_now_ms += (int64_t)((now_ms - s->rtc_at_ms) > INT32_MAX ? INT32_MAX
					: now_ms - s->rtc_at_ms);
	diff_ms = wall_ms - rtc_now_ms;
	bound_ms = (int64_t)s->limits.rtc_max_skew_s * 1000;
	if (diff_ms > bound_ms || diff_ms < -bound_ms) {
		smpl_format_utc(wall_ms, host, sizeof(host));
		smpl_format_utc(rtc_now_ms, other, sizeof(other));
		return refuse(v, SMPL_REASON_CLOCK_SKEW,
			      "host clock (%s) is %" PRId64 " s off the unit's RTC (%s); "
			      "at most %" PRIu32 " s allowed", host, diff_ms / 1000,
			      other, s->limits.rtc_max_skew_s);
	}
	return allow(v);
}

enum smpl_action_kind smpl_safety_clock_check(struct smpl_safety *s,
					      uint64_t now_ms, int64_t wall_ms,
					      struct smpl_action *a)
{
	struct smpl_verdict v;

	if (s->armed && smpl_safety_clock_ok(s, now_ms, wall_ms, &v) < 0)
		return act(s, a, SMPL_ACT_DISARM, v.reason, "%s", v.message);
	return no_action(a);
}

/* ---- arming (S1) ------------------------------------------------------------- */

static uint32_t patch_limit(const struct smpl_safety *s)
{
	return s->patch_max_pulses;
}

static int check_unit(const struct smpl_safety *s, struct smpl_verdict *v)
{
	char names[128];

	if (!s->connected)
		return refuse(v, SMPL_REASON_DISCONNECTED, "the unit is disconnected");
	if (s->fault != SMPL_REASON_NONE)
		return refuse(v, SMPL_REASON_FAULT_LATCHED,
			      "fault not acknowledged: %s", s->fault_message);
	if (s->status_known && unit_faulted(s->state, s->unit_fault))
		return refuse(v, SMPL_REASON_UNIT_FAULT,
			      "the unit reports a %s fault",
			      s->unit_fault ? smpl_fault_slug(s->unit_fault) : "latched");
	if (s->armed)
		return refuse(v, SMPL_REASON_BUSY, "the unit is already armed");
	if (!s->status_known)
		return refuse(v, SMPL_REASON_BUSY, "the unit's state is not known yet");
	if (s->state != SMPL_STATE_STANDBY)
		return refuse(v, SMPL_REASON_BUSY, "the unit is in %s, not STANDBY",
			      smpl_state_name(s->state));
	if (s->interlocks & SMPL_IL_ALL) {
		interlock_names(s->interlocks, names, sizeof(names));
		return refuse(v, (s->interlocks & SMPL_IL_ESTOP) ?
			      SMPL_REASON_ESTOP : SMPL_REASON_INTERLOCK_OPEN,
			      "interlock open: %s", names);
	}
	if (s->interlocks & ~SMPL_IL_ALL)
		return refuse(v, SMPL_REASON_INTERLOCK_OPEN,
			      "unknown interlock bits open (0x%x)",
			      (unsigned int)s->interlocks);
	if (!(s->flags & SMPL_SF_CALIBRATED))
		return refuse(v, SMPL_REASON_CALIBRATION,
			      "the unit's calibration is not valid");
	return 0;
}

static int check_session(const struct smpl_safety *s, struct smpl_verdict *v)
{
	char when[32];

	if (!s->session_open)
		return refuse(v, SMPL_REASON_NO_SESSION, "no open session on this unit");
	if (!s->owner_present)
		return refuse(v, SMPL_REASON_OWNER_GONE,
			      "the client that opened the session has left the bus");
	if (!s->patch_selected)
		return refuse(v, SMPL_REASON_NO_PATCH, "no patch selected");
	if (!s->patch_eligible) {
		smpl_format_utc(s->patch_next_eligible_ms, when, sizeof(when));
		return refuse(v, SMPL_REASON_COOLDOWN,
			      "the patch is in its cooldown: eligible from %s", when);
	}
	if (!s->eyewear_confirmed)
		return refuse(v, SMPL_REASON_EYEWEAR,
			      "protective eyewear not confirmed for this session");
	if (!s->params_ok || !(s->flags & SMPL_SF_PARAMS_SET))
		return refuse(v, SMPL_REASON_PARAMS,
			      "parameters not set inside the clinic protocol");
	if (patch_limit(s) && s->patch_pulses >= patch_limit(s))
		return refuse(v, SMPL_REASON_PULSE_LIMIT,
			      "this patch has had its %" PRIu32 " pulses this session",
			      patch_limit(s));
	if (s->limits.max_session_energy_uj &&
	    s->session_energy_uj >= s->limits.max_session_energy_uj)
		return refuse(v, SMPL_REASON_ENERGY_LIMIT,
			      "the session's energy limit (%" PRIu64 " J) is reached",
			      s->limits.max_session_energy_uj / 1000000);
	return 0;
}

int smpl_safety_may_arm(const struct smpl_safety *s, uint64_t now_ms,
			int64_t wall_ms, struct smpl_verdict *v)
{
	int r;

	r = check_unit(s, v);
	if (!r)
		r = smpl_safety_clock_ok(s, now_ms, wall_ms, v);
	if (!r)
		r = check_session(s, v);
	if (!r)
		allow(v);
	return r;
}

int smpl_safety_arm_begin(struct smpl_safety *s, uint64_t now_ms,
			  int64_t wall_ms, struct smpl_verdict *v)
{
	int r = smpl_safety_may_arm(s, now_ms, wall_ms, v);

	if (r < 0)
		return r;
	s->armed = true;
	s->disarm_pending = false;
	s->activity_ms = now_ms;
	s->burst_open = false;		/* READY first: no pulse before this arming counts */
	return 0;
}

void smpl_safety_arm_failed(struct smpl_safety *s)
{
	/*
	 * Not a disarm decision: if the unit armed despite the error, its next
	 * status report in an armed state is unexpected and answered with
	 * DISARM (UNEXPECTED_ARM), and its pulses fault.
	 */
	s->armed = false;
}

bool smpl_safety_is_armed(const struct smpl_safety *s)
{
	return s->armed;
}

bool smpl_safety_armed_against_us(const struct smpl_safety *s)
{
	return s->status_known && !s->armed && unit_armed_state(s->state);
}

void smpl_safety_disarm_tried(struct smpl_safety *s)
{
	s->disarm_tried = true;
}

enum smpl_action_kind smpl_safety_disarm_request(struct smpl_safety *s,
						 struct smpl_action *a)
{
	if (!s->armed)
		return no_action(a);
	return act(s, a, SMPL_ACT_DISARM, SMPL_REASON_REQUESTED,
		   "disarm requested by the operator");
}

/* ---- shot counting and limits (S5) --------------------------------------------- */

/* Count @n pulses of @energy_uj each against the patch and session. */
static void count_pulses(struct smpl_safety *s, uint32_t n, uint64_t energy_uj)
{
	uint64_t e = (uint64_t)n * energy_uj;

	s->patch_pulses = (UINT32_MAX - s->patch_pulses < n) ? UINT32_MAX :
			  s->patch_pulses + n;
	s->session_energy_uj = (UINT64_MAX - s->session_energy_uj < e) ? UINT64_MAX :
			       s->session_energy_uj + e;
}

static bool counting(const struct smpl_safety *s)
{
	return s->armed || s->disarm_pending;
}

/* DISARM if armed and a limit is reached. */
static enum smpl_action_kind check_limits(struct smpl_safety *s,
					  struct smpl_action *a)
{
	if (!s->armed)
		return no_action(a);
	if (patch_limit(s) && s->patch_pulses >= patch_limit(s))
		return act(s, a, SMPL_ACT_DISARM, SMPL_REASON_PULSE_LIMIT,
			   "pulse limit reached: %" PRIu32 " of %" PRIu32 " for this patch",
			   s->patch_pulses, patch_limit(s));
	if (s->limits.max_session_energy_uj &&
	    s->session_energy_uj >= s->limits.max_session_energy_uj)
		return act(s, a, SMPL_ACT_DISARM, SMPL_REASON_ENERGY_LIMIT,
			   "session energy limit reached: %" PRIu64 " of %" PRIu64 " uJ",
			   s->session_energy_uj, s->limits.max_session_energy_uj);
	return no_action(a);
}

void smpl_safety_counter_reset(struct smpl_safety *s, uint32_t counter)
{
	s->shot_known = true;
	s->last_shot = counter;
	s->burst_open = false;		/* a count from the old counter means nothing */
}

/* ---- unit events (S4, S5) ------------------------------------------------------ */

void smpl_safety_connected(struct smpl_safety *s, uint64_t now_ms)
{
	(void)now_ms;
	s->connected = true;
	/* a unit that (re)appears starts disarmed (STANDBY after self-test) */
	s->armed = false;
	s->disarm_pending = false;
	forget_unit_state(s);
}

enum smpl_action_kind smpl_safety_disconnected(struct smpl_safety *s,
					       uint64_t now_ms,
					       struct smpl_action *a)
{
	bool was_armed = s->armed;

	(void)now_ms;
	s->connected = false;
	forget_unit_state(s);
	if (was_armed) {
		act(s, a, SMPL_ACT_DISARM, SMPL_REASON_DISCONNECTED,
		    "the unit was disconnected while armed");
		s->disarm_pending = false;	/* nothing left to disarm */
		return SMPL_ACT_DISARM;
	}
	s->disarm_pending = false;
	return no_action(a);
}

/*
 * A status report's shot counter: pulses whose reports we have not seen.  A
 * lower counter is an older report (the interrupt stream and a GET_STATUS
 * reply cross): it never moves the counter back.  (A counter that really
 * went back is found against the records: store_counter_check.)
 */
static void status_shots(struct smpl_safety *s, uint32_t shot_count)
{
	if (s->shot_known && shot_count > s->last_shot && counting(s))
		count_pulses(s, shot_count - s->last_shot, s->expected_energy_uj);
	if (!s->shot_known || shot_count > s->last_shot) {
		s->shot_known = true;
		s->last_shot = shot_count;
	}
}

/* ---- repetition rate (S1/S5) ------------------------------------------------------ */

static void burst_begin(struct smpl_safety *s, uint64_t now_ms, uint32_t base_shot)
{
	s->burst_open = true;
	s->burst_start_ms = now_ms;
	s->burst_base_shot = base_shot;
}

/*
 * A status report: EMITTING after another state (or with no burst open)
 * begins a burst, its counter (or the last one seen if higher) the base; any
 * other state ends it.  A burst a pulse opened while the unit said READY
 * begins again at EMITTING: it never carries its time over to a later press.
 */
static void burst_status(struct smpl_safety *s, uint64_t now_ms, bool was_emitting,
			 uint8_t state, uint32_t shot_count)
{
	if (state != SMPL_STATE_EMITTING)
		s->burst_open = false;
	else if (!s->burst_open || !was_emitting)
		burst_begin(s, now_ms, s->shot_known && s->last_shot > shot_count ?
			    s->last_shot : shot_count);
}

/*
 * Pulses the rate allows in a burst @dt_ms old:
 * 1 + slack + rate * (dt + grace) * (1 + margin), saturating.
 */
static uint64_t burst_allowance(uint32_t rate_mhz, uint64_t dt_ms)
{
	const uint64_t per = 1000ULL * 1000 * 100;	/* mHz * ms -> pulses, x100 */
	const uint64_t margin = 100 + SMPL_RATE_MARGIN_PCT;
	uint64_t span, q;

	if (dt_ms > UINT64_MAX - SMPL_RATE_GRACE_MS)
		return UINT64_MAX;
	span = dt_ms + SMPL_RATE_GRACE_MS;
	if (rate_mhz && span > UINT64_MAX / margin / rate_mhz)
		return UINT64_MAX;
	q = span * rate_mhz * margin / per;
	return 1 + SMPL_RATE_SLACK_PULSES + q;
}

/*
 * A new pulse (@n with lost reports; the counter already moved): FAULT
 * RATE_EXCEEDED when armed and the burst holds more pulses than the set rate
 * allows in its time.  See smpl_safety_set_rate().
 */
static enum smpl_action_kind check_rate(struct smpl_safety *s, uint64_t now_ms,
					uint32_t n, struct smpl_action *a)
{
	uint64_t dt, allowed;
	uint32_t count;

	if (!n)
		return no_action(a);
	if (!s->burst_open)
		burst_begin(s, now_ms, s->last_shot - n);
	if (!s->armed || !s->rate_mhz)
		return no_action(a);
	count = s->last_shot >= s->burst_base_shot ? s->last_shot - s->burst_base_shot : 0;
	dt = now_ms > s->burst_start_ms ? now_ms - s->burst_start_ms : 0;
	allowed = burst_allowance(s->rate_mhz, dt);
	if (count <= allowed)
		return no_action(a);
	return act(s, a, SMPL_ACT_FAULT, SMPL_REASON_RATE_EXCEEDED,
		   "pulse %" PRIu32 " of a burst %" PRIu64 " ms long: the set rate "
		   "%" PRIu32 ".%03" PRIu32 " Hz allows %" PRIu64 " (a quarter more, "
		   "%d pulses and %d ms of slack)", count, dt, s->rate_mhz / 1000,
		   s->rate_mhz % 1000, allowed, SMPL_RATE_SLACK_PULSES, SMPL_RATE_GRACE_MS);
}

enum smpl_action_kind smpl_safety_status(struct smpl_safety *s, uint64_t now_ms,
					 int64_t wall_ms,
					 const struct smpl_status_n *st,
					 struct smpl_action *a)
{
	bool was_known = s->status_known;
	bool was_faulted = was_known && unit_faulted(s->state, s->unit_fault);
	bool was_armed_state = was_known && unit_armed_state(s->state);
	bool was_ready = was_known && s->state == SMPL_STATE_READY;
	bool was_emitting = was_known && s->state == SMPL_STATE_EMITTING;
	struct smpl_verdict v;
	char names[128];

	s->status_known = true;
	s->state = st->state;
	s->unit_fault = st->fault;
	s->interlocks = st->interlocks;
	s->flags = st->flags;
	if (st->rtc_s > 0)
		smpl_safety_rtc(s, now_ms, st->rtc_s);
	burst_status(s, now_ms, was_emitting, st->state, st->shot_count);
	status_shots(s, st->shot_count);

	if (!unit_armed_state(st->state))
		s->disarm_pending = false;
	if (st->state == SMPL_STATE_EMITTING ||
	    (st->state == SMPL_STATE_READY && !was_ready))
		s->activity_ms = now_ms;

	if (unit_faulted(st->state, st->fault) && !was_faulted)
		return act(s, a, SMPL_ACT_FAULT, SMPL_REASON_UNIT_FAULT,
			   "the unit reports a %s fault in state %s",
			   st->fault ? smpl_fault_slug(st->fault) : "latched",
			   smpl_state_name(st->state));
	if (s->armed && st->interlocks) {
		interlock_names(st->interlocks, names, sizeof(names));
		return act(s, a, SMPL_ACT_DISARM,
			   (st->interlocks & SMPL_IL_ESTOP) ? SMPL_REASON_ESTOP :
			   SMPL_REASON_INTERLOCK_OPEN,
			   "interlock opened while armed: %s", names);
	}
	if (s->armed && was_armed_state && !unit_armed_state(st->state))
		return act(s, a, SMPL_ACT_DISARM, SMPL_REASON_UNIT_STANDBY,
			   "the unit went from armed to %s by itself",
			   smpl_state_name(st->state));
	if (!s->armed && s->disarm_pending && s->disarm_tried && unit_armed_state(st->state)) {
		/* A unit that acknowledged the disarm but did not obey (S4). */
		if (!s->still_armed_ms)
			s->still_armed_ms = now_ms ? now_ms : 1;
		else if (now_ms - s->still_armed_ms >= SMPL_DISARM_CONFIRM_MS &&
			 s->fault != SMPL_REASON_DISARM_FAILED)
			return act(s, a, SMPL_ACT_FAULT, SMPL_REASON_DISARM_FAILED,
				   "the unit is still %s %" PRIu64 " ms after it was told "
				   "to disarm", smpl_state_name(st->state),
				   now_ms - s->still_armed_ms);
	} else {
		s->still_armed_ms = 0;
	}
	if (!s->armed && !s->disarm_pending && unit_armed_state(st->state))
		return act(s, a, SMPL_ACT_DISARM, SMPL_REASON_UNEXPECTED_ARM,
			   "the unit is %s but smplaserd did not arm it",
			   smpl_state_name(st->state));
	if (s->armed && !(st->flags & SMPL_SF_CALIBRATED))
		return act(s, a, SMPL_ACT_DISARM, SMPL_REASON_CALIBRATION,
			   "the unit's calibration became invalid while armed");
	if (s->armed && !(st->flags & SMPL_SF_PARAMS_SET))
		return act(s, a, SMPL_ACT_DISARM, SMPL_REASON_PARAMS,
			   "the unit lost its parameters while armed");
	if (s->armed && smpl_safety_clock_ok(s, now_ms, wall_ms, &v) < 0)
		return act(s, a, SMPL_ACT_DISARM, v.reason, "%s", v.message);
	return check_limits(s, a);
}

/*
 * Pulses this report stands for: 1, more after lost reports, 0 for a repeat
 * or a late report (a counter at or above it was seen: counted already).
 */
static uint32_t pulse_shots(struct smpl_safety *s, uint32_t shot)
{
	uint32_t n = 1;

	if (s->shot_known) {
		if (shot <= s->last_shot)
			return 0;
		n = shot - s->last_shot;	/* includes lost reports */
	}
	s->shot_known = true;
	s->last_shot = shot;
	return n;
}

static bool energy_outside(uint32_t measured, uint32_t set, uint32_t tol_pct)
{
	uint64_t diff = measured > set ? measured - set : set - measured;

	return set == 0 || diff * 100 > (uint64_t)set * tol_pct;
}

enum smpl_action_kind smpl_safety_pulse(struct smpl_safety *s, uint64_t now_ms,
					const struct smpl_pulse_n *p,
					struct smpl_action *a)
{
	bool late = s->shot_known && p->shot <= s->last_shot;
	bool expected = s->armed || (s->disarm_pending && unit_armed_state(s->state)) || late;
	uint32_t ref = s->expected_energy_uj ? s->expected_energy_uj : p->set_uj;
	uint32_t n = pulse_shots(s, p->shot);
	uint64_t delivered = p->measured_uj > ref ? p->measured_uj : ref;

	/* Every pulse counts, whatever happens next. */
	if (n)
		count_pulses(s, 1, delivered);
	if (n > 1)
		count_pulses(s, n - 1, ref);
	s->activity_ms = now_ms;

	if (!expected)
		return act(s, a, SMPL_ACT_FAULT, SMPL_REASON_UNEXPECTED_PULSE,
			   "pulse %" PRIu32 " (%" PRIu32 " uJ) while not armed",
			   p->shot, p->measured_uj);
	/*
	 * The reports come in order, and the unit reports every change of its
	 * state: a new pulse after a status saying it is not armed means that
	 * its status is not to be trusted (a broken unit showing "standby" while
	 * it fires).
	 */
	if (n && s->status_known && !unit_armed_state(s->state))
		return act(s, a, SMPL_ACT_FAULT, SMPL_REASON_UNEXPECTED_PULSE,
			   "pulse %" PRIu32 " (%" PRIu32 " uJ) while the unit reports itself %s: "
			   "its status is not to be trusted", p->shot, p->measured_uj,
			   smpl_state_name(s->state));
	if (s->armed && !s->expected_energy_uj)
		return act(s, a, SMPL_ACT_FAULT, SMPL_REASON_ENERGY_MISMATCH,
			   "pulse %" PRIu32 ": our parameters ask for no energy", p->shot);
	if (s->expected_energy_uj &&
	    (p->set_uj > s->expected_energy_uj + 1 ||
	     p->set_uj + 1 < s->expected_energy_uj))
		return act(s, a, SMPL_ACT_FAULT, SMPL_REASON_ENERGY_MISMATCH,
			   "pulse %" PRIu32 ": the unit's set energy %" PRIu32
			   " uJ is not the %" PRIu32 " uJ our parameters ask for",
			   p->shot, p->set_uj, s->expected_energy_uj);
	if (energy_outside(p->measured_uj, ref, s->limits.energy_tolerance_pct))
		return act(s, a, SMPL_ACT_FAULT, SMPL_REASON_ENERGY_TOLERANCE,
			   "pulse %" PRIu32 ": measured %" PRIu32 " uJ, set %" PRIu32
			   " uJ: outside +/-%" PRIu32 "%%", p->shot, p->measured_uj,
			   ref, s->limits.energy_tolerance_pct);
	if (check_rate(s, now_ms, n, a) != SMPL_ACT_NONE)
		return SMPL_ACT_FAULT;
	return check_limits(s, a);
}

uint64_t smpl_safety_next_deadline(const struct smpl_safety *s)
{
	uint64_t span = (uint64_t)s->limits.idle_timeout_s * 1000;

	if (!s->armed || !s->limits.idle_timeout_s || s->state == SMPL_STATE_EMITTING)
		return UINT64_MAX;
	if (s->activity_ms > UINT64_MAX - span)
		return UINT64_MAX;
	return s->activity_ms + span;
}

enum smpl_action_kind smpl_safety_tick(struct smpl_safety *s, uint64_t now_ms,
				       struct smpl_action *a)
{
	if (now_ms >= smpl_safety_next_deadline(s))
		return act(s, a, SMPL_ACT_DISARM, SMPL_REASON_IDLE_TIMEOUT,
			   "armed for %" PRIu32 " s without a pulse",
			   s->limits.idle_timeout_s);
	return no_action(a);
}

/* ---- session ---------------------------------------------------------------------- */

static void reset_session(struct smpl_safety *s)
{
	s->session_open = false;
	s->owner_present = false;
	s->patch_selected = false;
	s->patch_eligible = false;
	s->patch_next_eligible_ms = 0;
	s->patch_max_pulses = 0;
	s->eyewear_confirmed = false;
	s->patch_pulses = 0;
	s->session_energy_uj = 0;
}

int smpl_safety_session_open(struct smpl_safety *s, struct smpl_verdict *v)
{
	if (s->session_open)
		return refuse(v, SMPL_REASON_BUSY, "a session is already open on this unit");
	if (s->armed)
		return refuse(v, SMPL_REASON_BUSY, "the unit is armed");
	reset_session(s);
	s->session_open = true;
	s->owner_present = true;
	return allow(v);
}

enum smpl_action_kind smpl_safety_session_close(struct smpl_safety *s,
						struct smpl_action *a)
{
	enum smpl_action_kind k = SMPL_ACT_NONE;

	if (s->armed)
		k = act(s, a, SMPL_ACT_DISARM, SMPL_REASON_SESSION_ENDED,
			"the session ended");
	else
		no_action(a);
	reset_session(s);
	return k;
}

enum smpl_action_kind smpl_safety_owner_vanished(struct smpl_safety *s,
						 struct smpl_action *a)
{
	if (!s->session_open)
		return no_action(a);
	s->owner_present = false;
	if (s->armed)
		return act(s, a, SMPL_ACT_DISARM, SMPL_REASON_OWNER_GONE,
			   "the client that opened the session left the bus");
	return no_action(a);
}

/* The tighter of the protocol's limit and the rules' (0: none). */
static uint32_t tighter_limit(const struct smpl_safety *s, uint32_t max_pulses)
{
	uint32_t limit = s->limits.pulses_per_patch;

	if (max_pulses && (!limit || max_pulses < limit))
		limit = max_pulses;
	return limit;
}

int smpl_safety_select_patch(struct smpl_safety *s, bool eligible,
			     int64_t next_eligible_ms, uint32_t max_pulses,
			     uint32_t pulses_used, struct smpl_verdict *v)
{
	if (!s->session_open)
		return refuse(v, SMPL_REASON_NO_SESSION, "no open session on this unit");
	if (s->armed)
		return refuse(v, SMPL_REASON_BUSY, "disarm before selecting another patch");
	s->patch_selected = true;
	s->patch_eligible = eligible;
	s->patch_next_eligible_ms = next_eligible_ms;
	s->patch_max_pulses = tighter_limit(s, max_pulses);
	s->patch_pulses = pulses_used;
	return allow(v);
}

void smpl_safety_patch_budget(struct smpl_safety *s, uint32_t max_pulses,
			      uint32_t pulses_used)
{
	s->patch_max_pulses = tighter_limit(s, max_pulses);
	if (pulses_used > s->patch_pulses)
		s->patch_pulses = pulses_used;
}

int smpl_safety_confirm_eyewear(struct smpl_safety *s, struct smpl_verdict *v)
{
	if (!s->session_open)
		return refuse(v, SMPL_REASON_NO_SESSION, "no open session on this unit");
	s->eyewear_confirmed = true;
	return allow(v);
}

int smpl_safety_set_params(struct smpl_safety *s, bool in_protocol,
			   uint32_t expected_energy_uj, struct smpl_verdict *v)
{
	if (s->armed)
		return refuse(v, SMPL_REASON_BUSY,
			      "parameters cannot change while the unit is armed");
	s->params_ok = in_protocol && expected_energy_uj > 0;
	s->expected_energy_uj = s->params_ok ? expected_energy_uj : 0;
	return allow(v);
}

void smpl_safety_set_rate(struct smpl_safety *s, uint32_t rate_mhz)
{
	s->rate_mhz = rate_mhz;
}

/* ---- faults -------------------------------------------------------------------- */

bool smpl_safety_fault_latched(const struct smpl_safety *s)
{
	return s->fault != SMPL_REASON_NONE;
}

enum smpl_action_kind smpl_safety_fault(struct smpl_safety *s, enum smpl_reason r,
					const char *message, struct smpl_action *a)
{
	return act(s, a, SMPL_ACT_FAULT, r, "%s", message);
}

int smpl_safety_may_acknowledge(const struct smpl_safety *s, struct smpl_verdict *v)
{
	char names[128];

	if (!s->connected)
		return refuse(v, SMPL_REASON_DISCONNECTED, "the unit is disconnected");
	if (s->armed)
		return refuse(v, SMPL_REASON_BUSY, "the unit is armed");
	if (!s->status_known)
		return refuse(v, SMPL_REASON_BUSY, "the unit's state is not known yet");
	if (s->interlocks) {
		interlock_names(s->interlocks, names, sizeof(names));
		return refuse(v, (s->interlocks & SMPL_IL_ESTOP) ?
			      SMPL_REASON_ESTOP : SMPL_REASON_INTERLOCK_OPEN,
			      "the cause persists: interlock open: %s", names);
	}
	if (s->fault == SMPL_REASON_ENERGY_TOLERANCE && !(s->flags & SMPL_SF_CALIBRATED))
		return refuse(v, SMPL_REASON_CALIBRATION,
			      "the cause persists: the unit's calibration is not valid");
	return allow(v);
}

int smpl_safety_acknowledge(struct smpl_safety *s, struct smpl_verdict *v)
{
	int r = smpl_safety_may_acknowledge(s, v);

	if (r < 0)
		return r;
	s->fault = SMPL_REASON_NONE;
	s->fault_code = SMPL_FAULT_NONE;
	s->fault_message[0] = '\0';
	return 0;
}
