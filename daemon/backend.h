/* SPDX-License-Identifier: MIT */
/*
 * How smplaserd talks to one laser unit.  One interface, several
 * implementations: "sim" (the firmware model in-process, backend-sim.c),
 * later "kmod" (/dev/smplaserN) and "libusb".
 *
 * Calls are synchronous and short (a frame and its reply).  They return
 *   0            the unit accepted the command
 *   > 0          the unit refused it: an enum smpl_status (SMPL_ST_*)
 *   < 0          a transport error, negative errno: -ENODEV unplugged,
 *                -EPROTO a malformed reply, -ETIMEDOUT no reply, -EIO ...
 *
 * What the unit reports on its own (status changes, pulses, faults, the
 * unit going away) arrives through the event callback, from the sd-event
 * loop, never from inside one of the calls above.
 */
#ifndef SMPLASER_DAEMON_BACKEND_H
#define SMPLASER_DAEMON_BACKEND_H

#include <stdbool.h>
#include <stdint.h>

#include <systemd/sd-event.h>

#include "codec.h"

struct smpl_backend;

enum smpl_backend_event_type {
	SMPL_BEV_STATUS,	/* status changed (state, interlocks, fault, flags);
				 * a unit fault arrives as a status with state FAULT
				 * and its fault code */
	SMPL_BEV_PULSE,		/* one pulse with its measured energy */
	SMPL_BEV_DISCONNECT,	/* the unit is gone; every call now fails -ENODEV */
	SMPL_BEV_CONNECT,	/* the unit is back (simulated replug) */
};

struct smpl_backend_event {
	enum smpl_backend_event_type type;
	struct smpl_status_n status;	/* STATUS: the new status */
	struct smpl_pulse_n pulse;	/* PULSE */
};

typedef void (*smpl_backend_event_fn)(struct smpl_backend *b,
				      const struct smpl_backend_event *ev,
				      void *userdata);

struct smpl_backend_ops {
	const char *name;	/* "sim", "kmod", "libusb": the Backend property */
	int (*open)(struct smpl_backend *b);
	void (*close)(struct smpl_backend *b);
	int (*get_info)(struct smpl_backend *b, struct smpl_info_n *info);
	int (*get_status)(struct smpl_backend *b, struct smpl_status_n *st);
	int (*set_params)(struct smpl_backend *b, const struct smpl_params_n *p);
	int (*arm)(struct smpl_backend *b);
	int (*disarm)(struct smpl_backend *b);
	int (*heartbeat)(struct smpl_backend *b);
	int (*ack_fault)(struct smpl_backend *b);
	int (*get_rtc)(struct smpl_backend *b, int64_t *rtc_s);
	void (*free)(struct smpl_backend *b);
};

/*
 * The test-control surface of a simulated unit (the Simulator D-Bus
 * interface): a technician's hands and a broken unit.  NULL on real units.
 */
struct smpl_sim_control {	/* set_hostile: enum smpl_hostile (sim/model.h) */
	int (*set_footswitch)(struct smpl_backend *b, bool held);
	int (*set_interlock)(struct smpl_backend *b, uint16_t bit, bool open);
	int (*set_drift)(struct smpl_backend *b, int32_t drift_ppm);
	int (*inject_fault)(struct smpl_backend *b, uint8_t fault);
	int (*clear_fault_cause)(struct smpl_backend *b);
	int (*set_rtc_skew)(struct smpl_backend *b, int64_t skew_s);
	/* The unit reports its calibration valid (SMPL_SF_CALIBRATED) or not. */
	int (*set_calibration)(struct smpl_backend *b, bool valid);
	/* The unit's NV shot counter set (a reflash, NV loss, faulty unit). */
	int (*set_shot_count)(struct smpl_backend *b, uint32_t count);
	/* Reports wait in the unit (the interrupt endpoint not read) until released. */
	int (*hold_reports)(struct smpl_backend *b, bool hold);
	int (*set_hostile)(struct smpl_backend *b, int mode, unsigned int count);
	/* The unit carries out the next @op command but its reply is lost. */
	int (*drop_next_reply)(struct smpl_backend *b, uint8_t op);
	int (*unplug)(struct smpl_backend *b);
	int (*replug)(struct smpl_backend *b);
	/* What the unit itself is now, not what it last reported (tests judge by it). */
	int (*true_state)(struct smpl_backend *b, uint8_t *state, uint32_t *shot_count);
};

struct smpl_backend {
	const struct smpl_backend_ops *ops;
	const struct smpl_sim_control *sim;	/* NULL unless simulated */
	sd_event *event;
	smpl_backend_event_fn on_event;
	void *userdata;
	void *priv;				/* the implementation's state */
	/*
	 * Set by the daemon while the unit reports an armed state it does not
	 * hold armed (it armed by itself, or has not obeyed a disarm): the
	 * backend sends no HEARTBEAT, so that the unit's own watchdog disarms
	 * a unit that does not obey.
	 */
	_Atomic bool hold_heartbeats;
};

static inline const char *smpl_backend_name(const struct smpl_backend *b)
{
	return b->ops->name;
}

/* Delivers @ev to the daemon (for implementations). */
static inline void smpl_backend_emit(struct smpl_backend *b,
				     const struct smpl_backend_event *ev)
{
	if (b->on_event)
		b->on_event(b, ev, b->userdata);
}

/*
 * For the backends that speak the wire protocol themselves (sim, libusb).
 * Their transact() sends one command frame and receives its reply, with the
 * return convention above; on 0 the reply carried exactly @out_len payload
 * bytes, now in @out.  The helpers below turn it into the typed calls.
 */
typedef int (*smpl_transact_fn)(struct smpl_backend *b, uint8_t op,
				const void *payload, size_t len,
				void *out, size_t out_len);
/* A decoded reply's outcome: the unit's refusal (> 0), -EPROTO, or its payload. */
int smpl_reply_payload(const struct smpl_frame *f, void *out, size_t out_len);
int smpl_frames_get_info(struct smpl_backend *b, smpl_transact_fn transact,
			 struct smpl_info_n *info);
int smpl_frames_get_status(struct smpl_backend *b, smpl_transact_fn transact,
			   struct smpl_status_n *st);
/* SET_PARAMS; the unit must echo exactly what it was sent (-EPROTO otherwise). */
int smpl_frames_set_params(struct smpl_backend *b, smpl_transact_fn transact,
			   const struct smpl_params_n *p);
int smpl_frames_get_rtc(struct smpl_backend *b, smpl_transact_fn transact,
			int64_t *rtc_s);

/*
 * A status report is news for the daemon when its state, fault, interlocks,
 * flags or shot counter changed, or when the unit's RTC is more than 2 s off
 * where it would be @elapsed_ms after @last (it was set, or it jumped: S8
 * must hear of it).  The backends deliver only news (a unit reports every
 * few milliseconds).
 */
bool smpl_status_is_news(const struct smpl_status_n *now, const struct smpl_status_n *last,
			 uint64_t elapsed_ms);
/* CLOCK_MONOTONIC in milliseconds, for that @elapsed_ms. */
uint64_t smpl_backend_now_ms(void);

/* Closes and frees @b (NULL is fine). */
void smpl_backend_free(struct smpl_backend *b);

#endif /* SMPLASER_DAEMON_BACKEND_H */
