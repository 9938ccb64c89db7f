/* SPDX-License-Identifier: MIT */
/*
 * The daemon's safety core for one laser unit (DESIGN S1, S4, S5, S8).
 *
 * Pure C: no I/O, no clock, no allocation.  The caller passes time in:
 *   now_ms   CLOCK_MONOTONIC milliseconds (timeouts)
 *   wall_ms  host wall clock, UTC milliseconds since the epoch (S8 checks,
 *            the same convention as daemon/store.h)
 *
 * The daemon owns one struct smpl_safety per unit, feeds it every fact it
 * learns (status and pulse reports, session steps, bus events, clock
 * readings) and obeys what it answers:
 *
 *   - Before arming, smpl_safety_arm_begin() (may_arm + mark armed).  Only
 *     when it returns 0 may the daemon commit the treatment and send ARM.
 *     If the unit or the store refuses, smpl_safety_arm_failed().  After
 *     the ARM reply, if smpl_safety_is_armed() is false (a disarm decision
 *     came in meanwhile), send DISARM at once.
 *   - Event inputs return an action.  SMPL_ACT_DISARM: send DISARM now and
 *     record why.  SMPL_ACT_FAULT: the same, and a fault is latched in the
 *     core: arming stays refused (DeviceFault) until
 *     smpl_safety_acknowledge() succeeds for an authorized user.  The core
 *     counts itself disarmed as soon as it returns DISARM or FAULT.
 *
 * Arming conditions (S1), all checked by smpl_safety_may_arm(), first
 * failing one reported, in this order:
 *   unit connected                         Disconnected
 *   no fault latched, unit not in FAULT    DeviceFault
 *   unit state known and STANDBY, not
 *     already armed                        Busy
 *   every interlock closed (key, door,
 *     e-stop, handpiece, cooling,
 *     temperature, shutter)                InterlockOpen
 *   calibration valid (unit flag)          CalibrationExpired
 *   clock reliable: RTC read, wall clock
 *     not before the newest record, |host
 *     - unit RTC| <= rtc_max_skew_s        ClockUnreliable
 *   session open, its owner on the bus     NoSession
 *   patch selected                         NoPatch
 *   patch eligible (cooldown, test spot)   CooldownActive
 *   eyewear confirmed for this session     EyewearNotConfirmed
 *   parameters inside the protocol and
 *     accepted by the unit; patch pulse
 *     and session energy limits not
 *     reached                              ParameterOutOfRange
 * The footswitch is the operator's act: the unit emits only while it is
 * held in READY (firmware); the core faults on any pulse it did not arm for.
 */
#ifndef SMPLASER_DAEMON_SAFETY_H
#define SMPLASER_DAEMON_SAFETY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"

#define SMPL_SAFETY_MSG_MAX	192
/* A unit still armed this long after a disarm decision failed to disarm. */
#define SMPL_DISARM_CONFIRM_MS	200

/* Why the core refused, disarmed or faulted. */
enum smpl_reason {
	SMPL_REASON_NONE = 0,
	SMPL_REASON_DISCONNECTED,	/* Disconnected */
	SMPL_REASON_UNIT_FAULT,		/* DeviceFault: the unit reports a fault */
	SMPL_REASON_FAULT_LATCHED,	/* DeviceFault: not acknowledged yet */
	SMPL_REASON_ENERGY_TOLERANCE,	/* DeviceFault: measured energy outside +/-tol (S5) */
	SMPL_REASON_ENERGY_MISMATCH,	/* DeviceFault: unit's set energy is not ours */
	SMPL_REASON_UNEXPECTED_PULSE,	/* DeviceFault: a pulse while not armed */
	SMPL_REASON_COUNTER_BACK,	/* DeviceFault: the unit's shot counter is below the records */
	SMPL_REASON_COUNTER_JUMP,	/* DeviceFault: the counter leapt past the pulses reported */
	SMPL_REASON_RECORDS_FAILED,	/* DeviceFault: the records cannot take what the unit did */
	SMPL_REASON_RECORDS_MISSING,	/* DeviceFault: the unit's counter is ahead of the records */
	SMPL_REASON_BUSY,		/* Busy: armed already, or unit not in STANDBY */
	SMPL_REASON_INTERLOCK_OPEN,	/* InterlockOpen */
	SMPL_REASON_ESTOP,		/* InterlockOpen: emergency stop pressed */
	SMPL_REASON_CALIBRATION,	/* CalibrationExpired */
	SMPL_REASON_CLOCK_NO_RTC,	/* ClockUnreliable: unit RTC not read yet */
	SMPL_REASON_CLOCK_BEHIND,	/* ClockUnreliable: wall clock before newest record */
	SMPL_REASON_CLOCK_SKEW,		/* ClockUnreliable: host vs unit RTC > bound */
	SMPL_REASON_NO_SESSION,		/* NoSession */
	SMPL_REASON_OWNER_GONE,		/* NoSession: the session's client left the bus */
	SMPL_REASON_NO_PATCH,		/* NoPatch */
	SMPL_REASON_COOLDOWN,		/* CooldownActive */
	SMPL_REASON_EYEWEAR,		/* EyewearNotConfirmed */
	SMPL_REASON_PARAMS,		/* ParameterOutOfRange: not checked/accepted */
	SMPL_REASON_PULSE_LIMIT,	/* ParameterOutOfRange: patch pulse limit reached */
	SMPL_REASON_ENERGY_LIMIT,	/* ParameterOutOfRange: session energy limit reached */
	/* disarm causes that are not arming refusals */
	SMPL_REASON_IDLE_TIMEOUT,	/* READY too long without a pulse (S4) */
	SMPL_REASON_UNIT_STANDBY,	/* the unit left its armed state by itself */
	SMPL_REASON_SESSION_ENDED,
	SMPL_REASON_REQUESTED,		/* Disarm() by the operator */
	SMPL_REASON_UNEXPECTED_ARM,	/* the unit became armed without us */
	SMPL_REASON_DAEMON_STOPPING,	/* smplaserd stops (signal, its bus gone) */
	SMPL_REASON_DISARM_FAILED,	/* DeviceFault: the unit stays armed after a disarm */
	SMPL_REASON_RATE_EXCEEDED,	/* DeviceFault: pulses faster than the set repetition rate */
	SMPL_REASON__COUNT,
};

/* Short stable slug for records and the journal, e.g. "interlock-open". */
const char *smpl_reason_name(enum smpl_reason r);
/*
 * The D-Bus error for a refusal, e.g. "org.smplaser.Laser1.Error.InterlockOpen";
 * NULL for NONE and the disarm-only causes.
 */
const char *smpl_reason_dbus_error(enum smpl_reason r);
/* Negative errno for a refusal (e.g. -EPERM, -EBUSY, -ENODEV); 0 for NONE. */
int smpl_reason_errno(enum smpl_reason r);

struct smpl_verdict {
	enum smpl_reason reason;		/* NONE when allowed */
	char message[SMPL_SAFETY_MSG_MAX];	/* human text ("" when allowed) */
};

enum smpl_action_kind {
	SMPL_ACT_NONE = 0,
	SMPL_ACT_DISARM,	/* send DISARM now, record the reason */
	SMPL_ACT_FAULT,		/* DISARM + fault latched until acknowledged */
};

struct smpl_action {
	enum smpl_action_kind kind;
	enum smpl_reason reason;
	/*
	 * UNIT_FAULT: the unit's fault this action is about (enum smpl_fault),
	 * also when an earlier fault is still latched (its code stays in the
	 * latch); SMPL_FAULT_NONE otherwise.
	 */
	uint8_t fault_code;
	char message[SMPL_SAFETY_MSG_MAX];
};

struct smpl_safety_limits {
	uint32_t idle_timeout_s;	/* READY without a pulse -> disarm; default 60 */
	uint32_t energy_tolerance_pct;	/* 1..20, default 20 (IEC 60601-2-22) */
	uint32_t rtc_max_skew_s;	/* default 300 */
	uint32_t pulses_per_patch;	/* per patch per session; 0 = no limit */
	uint64_t max_session_energy_uj;	/* 0 = no limit */
};
void smpl_safety_default_limits(struct smpl_safety_limits *l);

/*
 * One unit's facts.  Fields are the core's: read them through the
 * functions below, never write them.
 */
struct smpl_safety {
	struct smpl_safety_limits limits;

	/* unit, from status reports */
	bool connected;
	bool status_known;
	uint8_t state;			/* enum smpl_state */
	uint8_t unit_fault;		/* enum smpl_fault */
	uint16_t interlocks;		/* SMPL_IL_* open */
	uint8_t flags;			/* SMPL_SF_* */
	bool shot_known;
	uint32_t last_shot;

	/* clocks */
	bool rtc_known;
	int64_t rtc_s;			/* unit RTC read at rtc_at_ms */
	uint64_t rtc_at_ms;		/* monotonic */
	bool newest_record_known;
	int64_t newest_record_ms;	/* wall clock of the newest record */

	/* session */
	bool session_open;
	bool owner_present;
	bool patch_selected;
	bool patch_eligible;
	int64_t patch_next_eligible_ms;
	uint32_t patch_max_pulses;	/* effective limit for this patch; 0 = none */
	bool eyewear_confirmed;
	bool params_ok;
	uint32_t expected_energy_uj;	/* what our parameters ask for; 0 = unknown */
	uint32_t patch_pulses;		/* this session, this patch */
	uint64_t session_energy_uj;
	uint32_t rate_mhz;		/* the repetition rate set; 0 = unknown, not supervised */

	/* the burst being fired (footswitch held): see smpl_safety_set_rate() */
	bool burst_open;
	uint64_t burst_start_ms;	/* EMITTING reported, or its first pulse */
	uint32_t burst_base_shot;	/* the counter before its first pulse */

	/* arming and faults */
	bool armed;			/* decided by us, until a disarm decision */
	bool disarm_pending;		/* we decided to disarm; the unit may still be armed */
	bool disarm_tried;		/* the unit was sent a DISARM since the decision */
	uint64_t still_armed_ms;	/* since then, first report still armed; 0 none */
	uint64_t activity_ms;		/* arming, READY entered, last pulse: idle timer start */
	enum smpl_reason fault;		/* latched; NONE if none */
	uint8_t fault_code;		/* the unit's enum smpl_fault, for UNIT_FAULT */
	char fault_message[SMPL_SAFETY_MSG_MAX];
};

/* A disconnected unit with no session, no fault. */
void smpl_safety_init(struct smpl_safety *s, const struct smpl_safety_limits *l);

/* ---- arming ------------------------------------------------------------ */

/* 0 if every S1 condition holds, else a negative errno and @v says why. */
int smpl_safety_may_arm(const struct smpl_safety *s, uint64_t now_ms,
			int64_t wall_ms, struct smpl_verdict *v);
/* may_arm, and on success the core counts the unit armed. */
int smpl_safety_arm_begin(struct smpl_safety *s, uint64_t now_ms,
			  int64_t wall_ms, struct smpl_verdict *v);
/*
 * The store or the unit refused after arm_begin: not armed.  Should the
 * unit report an armed state all the same (an ARM that timed out but was
 * carried out), the next status report answers DISARM (UNEXPECTED_ARM).
 */
void smpl_safety_arm_failed(struct smpl_safety *s);
bool smpl_safety_is_armed(const struct smpl_safety *s);
/*
 * The unit reports an armed state the core does not hold armed (it armed by
 * itself, or it has not obeyed a disarm yet): never feed its watchdog.
 */
bool smpl_safety_armed_against_us(const struct smpl_safety *s);
/*
 * The backend carried out a DISARM (whatever it answered): a unit that still
 * reports an armed state SMPL_DISARM_CONFIRM_MS later faults DISARM_FAILED.
 */
void smpl_safety_disarm_tried(struct smpl_safety *s);
/* Disarm() by the operator: DISARM (REQUESTED) if armed, else NONE. */
enum smpl_action_kind smpl_safety_disarm_request(struct smpl_safety *s,
						 struct smpl_action *a);

/* ---- unit events --------------------------------------------------------- */

/*
 * The unit is (again) there.  Its state is unknown until a status report;
 * the core no longer counts it armed (a unit comes up in STANDBY; the
 * daemon closes any treatment on the disconnect before).
 */
void smpl_safety_connected(struct smpl_safety *s, uint64_t now_ms);
/* Unplugged / fd lost: DISARM (DISCONNECTED) if armed. */
enum smpl_action_kind smpl_safety_disconnected(struct smpl_safety *s,
					       uint64_t now_ms,
					       struct smpl_action *a);
/*
 * A status report received at @now_ms / @wall_ms.  Updates state,
 * interlocks, fault, flags, RTC.  FAULT on a unit fault (state FAULT or a
 * fault code) not latched yet; DISARM if armed and an interlock is open
 * (ESTOP when the emergency stop is among them), if armed and the unit left
 * ARMING/READY/EMITTING by itself, if the unit is in one of those states
 * while we neither armed it nor decided to disarm it (UNEXPECTED_ARM), if
 * armed and the unit's calibration or parameters flag dropped, or if armed
 * and the clock became unreliable.
 */
enum smpl_action_kind smpl_safety_status(struct smpl_safety *s, uint64_t now_ms,
					 int64_t wall_ms,
					 const struct smpl_status_n *st,
					 struct smpl_action *a);
/*
 * A pulse report.  Counts it (and any gap in shot numbers; status reports'
 * shot_count counts too) against the patch and session limits; a report at
 * or below a counter already seen (a late report) counts nothing and never
 * moves the counter back.  FAULT if not armed (UNEXPECTED_PULSE; a pulse
 * after our disarm decision while the unit still reports READY/EMITTING,
 * or a late report, is not unexpected), if the parameters ask for no
 * energy while armed, if
 * pulse set energy differs from ours by more than 1 uJ (ENERGY_MISMATCH), or
 * if |measured - set| > set * energy_tolerance_pct / 100 (exactly 20% is
 * inside).  DISARM when the patch's pulse limit or the session energy limit
 * is reached.
 */
enum smpl_action_kind smpl_safety_pulse(struct smpl_safety *s, uint64_t now_ms,
					const struct smpl_pulse_n *p,
					struct smpl_action *a);
/*
 * Periodic: DISARM (IDLE_TIMEOUT) when armed and idle_timeout_s passed since
 * arming, READY or the last pulse, unless the unit is EMITTING.
 */
enum smpl_action_kind smpl_safety_tick(struct smpl_safety *s, uint64_t now_ms,
				       struct smpl_action *a);
/* Monotonic time of the next timeout tick() must see, or UINT64_MAX. */
uint64_t smpl_safety_next_deadline(const struct smpl_safety *s);

/*
 * An authorized user accepted the unit's counter below what was seen before
 * (a counter reset): counting goes on from @counter, so the pulses of the
 * new counter count toward the limits again.
 */
void smpl_safety_counter_reset(struct smpl_safety *s, uint32_t counter);

/* ---- clocks (S8) -------------------------------------------------------- */

/* The unit's RTC read (GET_RTC, or a status report) at @now_ms. */
void smpl_safety_rtc(struct smpl_safety *s, uint64_t now_ms, int64_t rtc_s);
/* The newest host time in any record (store_newest_record_ms). */
void smpl_safety_newest_record(struct smpl_safety *s, int64_t wall_ms);
/*
 * Is the clock trustworthy now?  0, or a negative errno with @v
 * (CLOCK_NO_RTC, CLOCK_BEHIND, CLOCK_SKEW).
 */
int smpl_safety_clock_ok(const struct smpl_safety *s, uint64_t now_ms,
			 int64_t wall_ms, struct smpl_verdict *v);
/* Periodic clock check: DISARM with the clock reason if armed and unreliable. */
enum smpl_action_kind smpl_safety_clock_check(struct smpl_safety *s,
					      uint64_t now_ms, int64_t wall_ms,
					      struct smpl_action *a);

/* ---- session ------------------------------------------------------------ */

/*
 * A session opened by a client now on the bus; resets patch, eyewear and
 * the session's counters.  -EBUSY (Busy) if one is open or the unit armed.
 */
int smpl_safety_session_open(struct smpl_safety *s, struct smpl_verdict *v);
/* End(): DISARM (SESSION_ENDED) if armed. */
enum smpl_action_kind smpl_safety_session_close(struct smpl_safety *s,
						struct smpl_action *a);
/* The session's client left the bus (S4): DISARM (OWNER_GONE) if armed. */
enum smpl_action_kind smpl_safety_owner_vanished(struct smpl_safety *s,
						 struct smpl_action *a);
/*
 * SelectPatch with the rules' answer: eligible, when, the patch's pulse
 * limit (test spot; 0 = the protocol's pulses_per_patch) and the pulses the
 * records hold for it in this session already.  -EBUSY while armed,
 * -ENOENT without a session.
 */
int smpl_safety_select_patch(struct smpl_safety *s, bool eligible,
			     int64_t next_eligible_ms, uint32_t max_pulses,
			     uint32_t pulses_used, struct smpl_verdict *v);
/*
 * The rules decided again inside the arming transaction: the patch's pulse
 * limit and what this session used of it, as the records say at the arming.
 */
void smpl_safety_patch_budget(struct smpl_safety *s, uint32_t max_pulses,
			      uint32_t pulses_used);
/* ConfirmEyewear.  -ENOENT without a session. */
int smpl_safety_confirm_eyewear(struct smpl_safety *s, struct smpl_verdict *v);
/*
 * The result of SetParameters: @in_protocol after smpl_params_check() and
 * the unit accepting them, with the pulse energy they ask for (0 if
 * unknown).  -EBUSY while armed (parameters are not changed under an armed
 * unit).
 */
int smpl_safety_set_params(struct smpl_safety *s, bool in_protocol,
			   uint32_t expected_energy_uj, struct smpl_verdict *v);

/*
 * The repetition rate the unit was set to (milli-Hz; SetParameters), fed
 * before each pulse report.  0: unknown, the rate is not supervised.
 *
 * The rule (docs/reliability.md, "repetition rate"): a burst begins with
 * the status report that says EMITTING (or its first pulse, when no burst
 * is open) and ends with a status in any other state.  While armed, the
 * n-th pulse of a burst (by the unit's counter, so lost reports count)
 * received dt ms after its beginning faults RATE_EXCEEDED when
 *     n > 1 + SLACK_PULSES + rate * (dt + GRACE_MS) * (100 + MARGIN_PCT) / 100
 * A unit at the set rate r is never faulted while its burst's beginning
 * reaches the daemon at most GRACE_MS + (SLACK_PULSES + 0.2) / r later than
 * its later reports (1.14 s at 5 Hz, 0.82 s at 10 Hz, 3.7 s at 1 Hz); a
 * stall in the middle of a burst only raises the allowance.  Footswitch
 * taps are bursts of their own, never counted together.  A unit at 10x
 * the rate faults at its 9th pulse (5 Hz set), 2x at its 18th.
 */
#define SMPL_RATE_SLACK_PULSES	3
#define SMPL_RATE_GRACE_MS	500
#define SMPL_RATE_MARGIN_PCT	25
void smpl_safety_set_rate(struct smpl_safety *s, uint32_t rate_mhz);

/* ---- faults ------------------------------------------------------------- */

bool smpl_safety_fault_latched(const struct smpl_safety *s);
/*
 * A fault the daemon found (COUNTER_BACK, COUNTER_JUMP, RECORDS_FAILED,
 * RECORDS_MISSING): FAULT, latched until acknowledged.
 */
enum smpl_action_kind smpl_safety_fault(struct smpl_safety *s, enum smpl_reason r,
					const char *message, struct smpl_action *a);
/*
 * May a fault be acknowledged now?  Refused (negative errno, @v) while its
 * cause persists as far as the core can see: unit disconnected, an
 * interlock open, calibration invalid after an energy fault, still armed.
 * (The unit itself refuses ACK_FAULT while its own cause persists.)
 */
int smpl_safety_may_acknowledge(const struct smpl_safety *s, struct smpl_verdict *v);
/*
 * AcknowledgeFault by an authorized user, after the unit accepted ACK_FAULT
 * (or was not in FAULT): may_acknowledge, then clear the latch.  0 also when
 * nothing was latched.
 */
int smpl_safety_acknowledge(struct smpl_safety *s, struct smpl_verdict *v);

#endif /* SMPLASER_DAEMON_SAFETY_H */
