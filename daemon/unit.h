/* SPDX-License-Identifier: MIT */
/*
 * One laser unit and its session as objects (unit.c): the unit's backend,
 * its safety core (safety.h), its open treatment, its I/O off the loop.
 * What happens to it is the supervisor's (supervisor.h), what a session
 * does is session.c's, the D-Bus methods' steps are unit-ops.c's.  They say
 * what changed to the daemon's observer (daemon.h); none emits D-Bus.
 */
#ifndef SMPLASER_DAEMON_UNIT_H
#define SMPLASER_DAEMON_UNIT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "backend.h"
#include "patches.h"
#include "safety.h"
#include "store.h"

struct smpl_daemon;
struct smpl_session;
struct smpl_owner_watch;
struct smpl_worker;

#define SMPL_HELD_PULSES_MAX	64	/* Pulse signals waiting for the first to be durable */

struct smpl_unit {
	struct smpl_unit *next;
	struct smpl_daemon *daemon;
	struct smpl_backend *backend;
	char name[32];			/* for logs until the serial is known */

	/* device I/O off the loop (unit-io.c) */
	struct smpl_worker *io;		/* commands, one at a time */
	struct smpl_worker *safe;	/* the disarm: never behind a command */
	unsigned int refs;		/* the daemon's list + calls in flight */
	bool gone;			/* dropped: its calls' results are moot */
	bool freeing;
	bool probing_now, heartbeat_inflight, settle_reading, settling, marking;
	bool arming, params_changing;	/* a method's steps in flight */
	bool session_starting;		/* StartSession's record being written */
	uint32_t settle_counter;
	struct {
		int64_t session_id;
		struct smpl_pulse_n pulse;
	} held[SMPL_HELD_PULSES_MAX];
	unsigned int n_held;

	bool published;			/* probed, object on the bus */
	bool ignored;			/* its serial is another unit's */
	bool reprobe;			/* reconnected: probe and reconcile again */
	bool clock_bad;			/* S8 says the host clock is wrong (audited once) */
	char *path;
	struct smpl_info_n info;
	char firmware[16];
	bool connected;
	bool status_known;
	struct smpl_status_n status;

	struct smpl_safety safety;
	bool params_set;		/* accepted by the protocol and the unit */
	struct smpl_params_n params;

	struct smpl_session *session;
	/*
	 * The open treatment (0 if none) and the last one closed.  A pulse
	 * report belongs to the treatment it was fired in, by its shot
	 * number: above the open one's counter at arming, or in the closed
	 * one's range (a report that came late).  S3.
	 */
	int64_t treatment_id;
	uint32_t treatment_shot_at_arm;
	bool treatment_emitting;	/* its emission is in the records */
	bool treatment_pulse_durable;	/* and its first pulse */
	/*
	 * A Disarm done before the bus said who called (supervisor.c,
	 * smpl_unit_apply_unattributed): its audit row waits for @call's uid.
	 */
	struct {
		struct smpl_action action;
		int64_t session_id;
		sd_bus_message *call;
	} unattributed;
	uint32_t treatment_reported;	/* pulse reports it had (fresh ones) */
	/*
	 * Its counter leapt past the pulses reported (more than a few lost
	 * reports explain): faulted COUNTER_JUMP; it counts what was reported.
	 */
	bool treatment_jumped;
	struct {
		int64_t id, session_id;
		uint32_t shot_at_arm;
		bool end_known;		/* false: settled from the next good read */
		uint32_t shot_at_end;
	} closed;
	bool settle_pending;		/* a treatment waits for the unit's counter */
	bool reported_known;		/* max_reported_shot is valid */
	uint32_t max_reported_shot;	/* highest pulse report: a repeat counts once */
	/*
	 * The unit's counter went back under the daemon's eyes (a report below
	 * one it sent before): faulted COUNTER_BACK; until an authorized
	 * acknowledge accepts the counter, pulses belong to the treatment armed
	 * when it went back, and that one's end counter is not believed.
	 */
	bool counter_back;
	int64_t unclosed_id;		/* closed here, not in the store yet */
	struct store_treatment_finish unclosed;

	sd_event_source *heartbeat;

	bool status_armed;		/* counted armed in STATUS= last time */
	/* bus-unit.c's: what was last announced (PropertiesChanged) */
	struct smpl_unit_shown {
		bool valid;
		bool object_announced;		/* InterfacesAdded of the whole object sent */
		const char *state;
		uint16_t closed;		/* Interlocks: bits shown closed */
		uint32_t shot_count;
		const char *fault;
		const struct smpl_session *session;
		bool params_set;
		struct smpl_params_n params;
	} shown;
};

/*
 * One treatment session of one patient on one unit, for the unit's life at
 * most: its data, beside its unit's; what it does is session.c's.
 */
struct smpl_session {
	struct smpl_session *next;
	struct smpl_daemon *daemon;
	struct smpl_unit *unit;
	int64_t id;			/* the store's session id */
	char *path;
	char *patient;
	char patch[SMPL_PATCH_ID_MAX + 1];
	bool eyewear_confirmed;
	uint32_t pulse_count;
	uid_t uid;			/* who opened it */
	char *owner;			/* its connection's unique bus name (S6) */
	struct smpl_owner_watch *watch;	/* that connection leaving the bus (creds.h) */
	sd_bus_message *starting;	/* StartSession, until its record is written */
	sd_event_source *end_later;	/* closing it after its client left */
	/*
	 * Its treatments (issue 16): each that emitted needs its patch's
	 * endpoint (RecordEndpoint) before the session selects another patch
	 * or ends (session-endpoint.c).
	 */
	struct smpl_session_treatment {
		int64_t id;
		char patch[SMPL_PATCH_ID_MAX + 1];
		bool emitted;		/* a pulse, the unit EMITTING, or its counter moved */
		bool documented;	/* its patch's endpoint recorded after it */
	} *treatments;
	size_t n_treatments;

	/* bus-session.c's: what was last announced */
	struct smpl_session_shown {
		char patch[SMPL_PATCH_ID_MAX + 1];
		bool eyewear_confirmed;
		uint32_t pulse_count;
		const char *state;
		unsigned int missing;		/* EndpointsMissing: a digest */
	} shown;
};

/*
 * A session's treatments and which emitted (issue 16; the endpoint each
 * needs is session-endpoint.c's).  Treatment @id was committed for @patch
 * in @s (before the unit arms); then it emitted (a pulse, EMITTING, its
 * counter at the end): the observer hears of it.
 */
void smpl_session_treatment_armed(struct smpl_session *s, int64_t id, const char *patch);
void smpl_session_emitted(struct smpl_session *s, int64_t id);

/* --- a unit's I/O (unit.c) ------------------------------------------------ */
enum smpl_unit_op {
	SMPL_UNIT_GET_STATUS,
	SMPL_UNIT_SET_PARAMS,		/* then GET_STATUS (status_r, status) */
	SMPL_UNIT_ARM,
	SMPL_UNIT_HEARTBEAT,
	SMPL_UNIT_ACK_FAULT,		/* then GET_STATUS (status_r, status) */
	SMPL_UNIT_PROBE,		/* GET_INFO (r, info), then GET_RTC (rtc_r, rtc_s) */
	SMPL_UNIT_DISARM,		/* on the safe worker */
	SMPL_UNIT_END_STATUS,		/* GET_STATUS on the safe worker: after the DISARM before it */
};

struct smpl_unit_reply {
	int r;				/* the backend's answer (0, > 0 refused, < 0 transport) */
	struct smpl_status_n status;
	int status_r;
	struct smpl_info_n info;
	int64_t rtc_s;
	int rtc_r;
};

typedef void (*smpl_unit_then)(struct smpl_unit *u, const struct smpl_unit_reply *rep,
			       void *userdata);
/*
 * @op on the unit's worker; @then(u, reply, @userdata) on the loop when it is
 * done (also when the unit went away meanwhile: u->gone, r -ENODEV).
 */
void smpl_unit_io(struct smpl_unit *u, enum smpl_unit_op op, const struct smpl_params_n *params,
		  smpl_unit_then then, void *userdata);
/* DISARM on the unit's safe path, now; a failure is logged. */
void smpl_unit_disarm_now(struct smpl_unit *u);
/*
 * Answers the Disarm call @m once the unit was told to disarm: a DISARM on the
 * safe path after those asked before, @m answered when it ran (at once when the
 * unit is not connected).  A client told "disarmed" sees no pulse after it.
 */
void smpl_unit_disarm_answer(struct smpl_unit *u, sd_bus_message *m);
int smpl_unit_io_start(struct smpl_unit *u);
void smpl_unit_io_stop(struct smpl_unit *u);
/* Waits for the unit's calls in flight (at stop: the loop no longer runs). */
void smpl_unit_io_drain(struct smpl_unit *u);
/* A reference dropped; a dropped unit is freed once its calls are done. */
void smpl_unit_unref(struct smpl_unit *u);
/* Frees a dropped unit (from the loop, its references gone). */
void smpl_unit_forget(struct smpl_unit *u);

/* --- the unit as an object (unit.c) --------------------------------------- */
/* A reference dropped; a dropped unit is freed once its calls are done. */
void smpl_unit_unref(struct smpl_unit *u);
/* Frees a dropped unit (from the loop, its references gone). */
void smpl_unit_forget(struct smpl_unit *u);
/* Off the daemon's list, into its dying one until its calls are done (the last reference). */
void smpl_unit_bury(struct smpl_unit *u);
void smpl_unit_free(struct smpl_unit *u);
struct smpl_unit *smpl_unit_by_path(struct smpl_daemon *d, const char *path);
const char *smpl_unit_state_name(const struct smpl_unit *u);
const char *smpl_unit_fault_name(const struct smpl_unit *u);
const char *smpl_unit_label(const struct smpl_unit *u);
/* Something about @u (or its session) may have changed: tell the observer. */
void smpl_unit_changed(struct smpl_unit *u);
/* The bits of the interlocks that are closed as far as the daemon knows (unknown: open). */
uint16_t smpl_unit_interlocks_closed(const struct smpl_unit *u);
/* STATUS= for systemd: units and how many are armed. */
void smpl_units_notify_status(struct smpl_daemon *d);

#endif /* SMPLASER_DAEMON_UNIT_H */
