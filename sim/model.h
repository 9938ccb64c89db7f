/* SPDX-License-Identifier: MIT */
/*
 * The laser unit's firmware as a pure state machine: no I/O, no clock of its
 * own.  Every entry point takes "now" (monotonic milliseconds) and the caller
 * decides when time passes.  The same model runs in-process in the daemon's
 * simulated backend and behind FunctionFS in smplaser-gadget.
 *
 * Frames in and out are the wire frames of include/smplaser/proto.h.
 */
#ifndef SMPLASER_SIM_MODEL_H
#define SMPLASER_SIM_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <smplaser/proto.h>

struct smpl_model_config {
	char serial[17];
	char model[17];
	uint8_t fw_major, fw_minor, fw_patch;
	bool picosecond;
	uint16_t wavelength_nm[2];
	uint32_t max_fluence_mj_cm2;
	uint16_t min_spot_um, max_spot_um;
	uint32_t min_pulse_ps, max_pulse_ps;
	uint32_t max_rate_mhz;
	uint32_t self_test_ms;		/* SELF_TEST duration, default 200 */
	uint32_t emission_delay_ms;	/* ARMING -> READY, default 2000 */
	uint32_t watchdog_ms;		/* no HEARTBEAT while armed, default 1000 */
	uint32_t idle_timeout_ms;	/* READY without a pulse, default 60000 */
	uint32_t noise_ppm;		/* energy noise amplitude, default 20000 (2%) */
	uint32_t seed;			/* noise PRNG seed */
};

/* Fill @cfg with the defaults of a 1064/532 nm Q-switched Nd:YAG unit. */
void smpl_model_default_config(struct smpl_model_config *cfg);

/* What survives a power cycle (battery-backed / flash). */
struct smpl_model_nv {
	uint32_t shot_count;
	int64_t rtc_offset_s;	/* RTC = wall clock + offset (the skew) */
};

/* Hostile behaviour for the next @count replies (or reports, for FLOOD). */
enum smpl_hostile {
	SMPL_HOSTILE_NONE,
	SMPL_HOSTILE_SHORT,	/* reply truncated */
	SMPL_HOSTILE_OVERSIZE,	/* reply longer than its frame */
	SMPL_HOSTILE_BAD_CRC,
	SMPL_HOSTILE_WRONG_SEQ,
	SMPL_HOSTILE_STALL,	/* the front end stalls the endpoint */
	SMPL_HOSTILE_NO_ANSWER,	/* no reply at all */
	SMPL_HOSTILE_FLOOD,	/* a burst of status reports */
	SMPL_HOSTILE_IGNORE_DISARM,	/* DISARM of an armed unit acknowledged, not obeyed */
	SMPL_HOSTILE_STUCK_COUNTER,	/* a pulse fired without moving the shot counter */
	SMPL_HOSTILE_FAST_RATE,		/* pulses at count times the set rate, until reset */
	SMPL_HOSTILE_LIE_STANDBY,	/* armed, its status says STANDBY, until reset */
};

struct smpl_model;

/*
 * Create a model that is OFF.  @wall_s is the wall clock at @now_ms; the RTC
 * runs from it.  Returns NULL on allocation failure.
 */
struct smpl_model *smpl_model_new(const struct smpl_model_config *cfg,
				  const struct smpl_model_nv *nv,
				  uint64_t now_ms, int64_t wall_s);
void smpl_model_free(struct smpl_model *m);

/* Power: OFF -> SELF_TEST -> STANDBY; power off keeps only the nv state. */
void smpl_model_power_on(struct smpl_model *m, uint64_t now_ms);
void smpl_model_power_off(struct smpl_model *m, uint64_t now_ms);
void smpl_model_get_nv(const struct smpl_model *m, struct smpl_model_nv *nv);

/* Let time pass: delays, watchdog, idle timeout, pulses while held. */
void smpl_model_advance(struct smpl_model *m, uint64_t now_ms);
/* Milliseconds until the model next needs smpl_model_advance(), or UINT64_MAX. */
uint64_t smpl_model_next_deadline(const struct smpl_model *m, uint64_t now_ms);

/*
 * A command frame from bulk OUT.  Writes the reply frame to @reply (at least
 * SMPL_MAX_FRAME + 16 bytes, room for an oversize hostile reply) and
 * returns its length, 0 for no reply (hostile NO_ANSWER), or -1 for a stall
 * (hostile STALL).  Malformed frames get a SMPL_ST_BAD_FRAME reply.
 */
int smpl_model_handle_frame(struct smpl_model *m, uint64_t now_ms,
			    const uint8_t *frame, size_t len,
			    uint8_t *reply, size_t reply_size);
/* Vendor control request SMPL_REQ_DISARM. */
void smpl_model_disarm(struct smpl_model *m, uint64_t now_ms);
/*
 * Whether the host sees the status stage of a control request the unit took
 * (the in-process backend's DISARM): false under hostile NO_ANSWER, which it
 * counts like a reply (the request was carried out, its answer lost).
 */
bool smpl_model_answers_control(struct smpl_model *m);

/*
 * The next interrupt report frame (status or pulse) into @buf (at least
 * SMPL_MAX_REPORT bytes).  Returns its length, or 0 when none is due.
 * Status reports are due on every change and every SMPL_STATUS_PERIOD_MS.
 */
int smpl_model_next_report(struct smpl_model *m, uint64_t now_ms,
			   uint8_t *buf, size_t size);

/* Test-control surface: a technician's hands and a broken unit. */
void smpl_model_set_footswitch(struct smpl_model *m, uint64_t now_ms, bool held);
void smpl_model_set_interlock(struct smpl_model *m, uint64_t now_ms,
			      uint16_t bit, bool open);	/* SMPL_IL_* */
void smpl_model_set_drift(struct smpl_model *m, int32_t drift_ppm);
void smpl_model_inject_fault(struct smpl_model *m, uint64_t now_ms,
			     uint8_t fault);		/* enum smpl_fault */
void smpl_model_clear_fault_cause(struct smpl_model *m, uint64_t now_ms);
void smpl_model_set_rtc_skew(struct smpl_model *m, int64_t skew_s);
void smpl_model_set_hostile(struct smpl_model *m, enum smpl_hostile mode,
			    unsigned int count);

/*
 * The non-volatile shot counter set to @count, as a reflash, a lost NV memory
 * or a faulty unit would: it may go back.  Reported from the next status.
 */
void smpl_model_set_shot_count(struct smpl_model *m, uint32_t count);

/*
 * @fn is called at every pulse the unit fires, as it fires (before its
 * report is queued, so also when the report is lost): the truth that tests
 * judge the records by.  NULL clears it.
 */
typedef void (*smpl_model_fire_fn)(void *ctx, uint32_t shot, uint32_t measured_uj,
				   uint32_t set_uj);
void smpl_model_on_fire(struct smpl_model *m, smpl_model_fire_fn fn, void *ctx);

/* Calibration validity, reported as SMPL_SF_CALIBRATED (valid at start). */
void smpl_model_set_calibrated(struct smpl_model *m, uint64_t now_ms, bool valid);

/* Interrupt reports waiting, and reports dropped because the queue was full. */
size_t smpl_model_reports_queued(const struct smpl_model *m);
uint32_t smpl_model_reports_dropped(const struct smpl_model *m);

/*
 * Read-only view for tests and the daemon's simulated backend.  It shows the
 * model as of its latest call: call smpl_model_advance(@now_ms) first to let
 * timed events (delays, watchdog, pulses) happen.
 */
struct smpl_model_view {
	uint8_t state;		/* enum smpl_state */
	uint8_t fault;		/* enum smpl_fault */
	uint16_t interlocks;	/* SMPL_IL_* open */
	bool footswitch;
	bool need_release;
	uint32_t shot_count;
	uint32_t last_energy_uj;
	int64_t rtc_s;
};
void smpl_model_view(const struct smpl_model *m, uint64_t now_ms,
		     struct smpl_model_view *v);

#endif /* SMPLASER_SIM_MODEL_H */
