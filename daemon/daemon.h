/* SPDX-License-Identifier: MIT */
/*
 * smplaserd: the daemon's objects.
 *
 *   struct smpl_daemon    the bus, the event loop, the config, the store
 *   struct smpl_unit      one laser unit: its backend, its safety core
 *                         (safety.h), its open treatment
 *   struct smpl_session   one treatment session of one patient on one unit
 *
 * unit.c and session.c hold the logic; bus-*.c only translate D-Bus calls
 * into it; main.c starts everything.
 */
#ifndef SMPLASER_DAEMON_DAEMON_H
#define SMPLASER_DAEMON_DAEMON_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/types.h>
#include <unistd.h>

#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "backend.h"
#include "config.h"
#include "polkit.h"
#include "safety.h"
#include "store.h"

#define SMPL_VERSION		"0.1"
#define SMPL_BUS_NAME		"org.smplaser.Laser1"
#define SMPL_ROOT_PATH		"/org/smplaser/Laser1"
#define SMPL_UNIT_PREFIX	SMPL_ROOT_PATH "/unit"
#define SMPL_SESSION_PREFIX	SMPL_ROOT_PATH "/session"
#define SMPL_IFACE_MANAGER	"org.smplaser.Laser1.Manager"
#define SMPL_IFACE_UNIT		"org.smplaser.Laser1.Unit"
#define SMPL_IFACE_SESSION	"org.smplaser.Laser1.Session"
#define SMPL_IFACE_SIMULATOR	"org.smplaser.Laser1.Simulator"

#define SMPL_FLUSH_PERIOD_MS	100	/* S3: pulses committed at least this often */
#define SMPL_NOTES_MAX		2048

#define _cleanup_(f) __attribute__((cleanup(f)))

static inline void freep(void *p)
{
	free(*(void **)p);
}

struct smpl_session;
struct smpl_records;
struct smpl_worker;
struct smpl_owner_watch;
struct smpl_creds;
struct barrier;
struct smpl_records_call;

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
	struct {
		int64_t id, session_id;
		uint32_t shot_at_arm;
		bool end_known;		/* false: settled from the next good read */
		uint32_t shot_at_end;
	} closed;
	bool settle_pending;		/* a treatment waits for the unit's counter */
	bool reported_known;		/* max_reported_shot is valid */
	uint32_t max_reported_shot;	/* highest pulse report: a repeat counts once */
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
 * What the units and sessions tell whoever shows them (the D-Bus objects:
 * bus-*.c installs this in smpl_bus_setup()).  unit.c and session.c say what
 * changed; they never emit D-Bus themselves.  Every member may be NULL.
 */
struct smpl_observer {
	void (*unit_published)(struct smpl_unit *u);
	void (*unit_changed)(struct smpl_unit *u);	/* any property may have changed */
	/* @gone: for good; else a simulated unit unplugged (its Simulator stays) */
	void (*unit_unpublished)(struct smpl_unit *u, bool gone);
	void (*unit_pulse)(struct smpl_unit *u, const struct smpl_session *s,
			   const struct smpl_pulse_n *p);
	void (*unit_fault)(struct smpl_unit *u, const char *code, const char *message);
	void (*session_published)(struct smpl_session *s);
	void (*session_changed)(struct smpl_session *s);
	void (*session_unpublished)(struct smpl_session *s);
	void (*manager_changed)(struct smpl_daemon *d, const char *property);
};

struct smpl_daemon {
	const struct smpl_observer *observer;
	sd_event *event;
	sd_bus *bus;
	bool session_bus;
	struct smpl_config cfg;
	char *state_dir;
	struct store *store;		/* the records writer's connection (its thread only) */
	struct store *reader;		/* queries, on the loop */
	struct smpl_records *records;	/* what waits for the writer (records.h) */
	bool inline_io;			/* workers without threads (the in-process fuzzer) */
	struct smpl_polkit *polkit;
	struct smpl_creds *creds;	/* callers' uids, asked asynchronously (creds.h) */
	struct smpl_unit *units;
	struct smpl_unit *dying;	/* dropped, calls still in flight */
	unsigned int closing;		/* treatments whose end counter is being read */
	struct barrier *barriers;	/* reads waiting for them (smpl_daemon_barrier) */
	struct smpl_session *sessions;
	unsigned int probing;		/* units not probed yet */
	const char *state;		/* "probing", "running" */
	sd_event_source *flush_timer;
	bool store_failed;		/* a flush failed: nothing arms */
	uint64_t store_retry_ms;	/* while failing, next retry (monotonic) */
};

/* --- time ------------------------------------------------------------------ */
uint64_t smpl_now_ms(struct smpl_daemon *d);	/* CLOCK_MONOTONIC */
int64_t smpl_wall_ms(void);			/* CLOCK_REALTIME, UTC */

/* --- a unit's I/O (unit-io.c) ----------------------------------------------- */
enum smpl_unit_op {
	SMPL_UNIT_GET_STATUS,
	SMPL_UNIT_SET_PARAMS,		/* then GET_STATUS (status_r, status) */
	SMPL_UNIT_ARM,
	SMPL_UNIT_HEARTBEAT,
	SMPL_UNIT_ACK_FAULT,		/* then GET_STATUS (status_r, status) */
	SMPL_UNIT_PROBE,		/* GET_INFO (r, info), then GET_RTC (rtc_r, rtc_s) */
	SMPL_UNIT_DISARM,		/* on the safe worker */
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
int smpl_unit_io_start(struct smpl_unit *u);
void smpl_unit_io_stop(struct smpl_unit *u);
/* Waits for the unit's calls in flight (at stop: the loop no longer runs). */
void smpl_unit_io_drain(struct smpl_unit *u);
/* A reference dropped; a dropped unit is freed once its calls are done. */
void smpl_unit_unref(struct smpl_unit *u);
/* Frees a dropped unit (from the loop, its references gone). */
void smpl_unit_forget(struct smpl_unit *u);

/* --- units (unit.c) ------------------------------------------------------- */
/*
 * Adopts @b (not opened yet; freed on failure too), opens it and probes the
 * unit in the background.  For discovery's add callback.
 */
int smpl_unit_adopt(struct smpl_daemon *d, const char *name, struct smpl_backend *b,
		    struct smpl_unit **ret);
int smpl_unit_add_sim(struct smpl_daemon *d, unsigned int index);
/* The unit is gone for good: disarm, close what it had open, drop its object. */
void smpl_unit_drop(struct smpl_unit *u);
void smpl_unit_free(struct smpl_unit *u);
struct smpl_unit *smpl_unit_by_path(struct smpl_daemon *d, const char *path);
const char *smpl_unit_state_name(const struct smpl_unit *u);
const char *smpl_unit_fault_name(const struct smpl_unit *u);
const char *smpl_unit_label(const struct smpl_unit *u);
/* Something about @u (or its session) may have changed: tell the observer. */
void smpl_unit_changed(struct smpl_unit *u);
/* The bits of the interlocks that are closed as far as the daemon knows (unknown: open). */
uint16_t smpl_unit_interlocks_closed(const struct smpl_unit *u);
/*
 * Closes the open treatment with the unit's end counter, read once the
 * unit is disarmed; unread, it is settled from the next good read.
 */
void smpl_unit_close_treatment(struct smpl_unit *u, enum store_outcome outcome);
/* A fault the daemon found (counter back, records failing): latched, disarmed. */
void smpl_unit_fault(struct smpl_unit *u, enum smpl_reason reason, const char *why);
/* Obeys the safety core: DISARM the unit, close the treatment, record why. */
void smpl_unit_apply(struct smpl_unit *u, const struct smpl_action *a);
/* The same when a person asked for it (@uid goes into the audit record). */
void smpl_unit_apply_by(struct smpl_unit *u, const struct smpl_action *a, const uid_t *uid);
/* Every unit disarmed, treatments closed (shutdown, store failure). */
void smpl_units_disarm_all(struct smpl_daemon *d, enum smpl_reason reason,
			   const char *why);
/* STATUS= for systemd: units and how many are armed. */
void smpl_daemon_notify_status(struct smpl_daemon *d);
/* The records cannot take what happened: every unit disarmed, nothing arms until they can. */
void smpl_daemon_records_failed(struct smpl_daemon *d);
/* Stopping: every unit disarmed, sessions ended, the last records written. */
void smpl_daemon_close_records(struct smpl_daemon *d);
/* Frees the units, polkit, the bus, the event loop and the store. */
void smpl_daemon_free(struct smpl_daemon *d);

/*
 * The D-Bus methods of a unit (unit-ops.c), after authorization.  They
 * return 1 when the call was answered or will be (the flow holds @m), or a
 * negative errno with @error set.
 */
int smpl_unit_set_parameters(struct smpl_unit *u, sd_bus_message *m,
			     const struct smpl_params_n *p, uid_t uid, sd_bus_error *error);
int smpl_unit_arm(struct smpl_unit *u, sd_bus_message *m, uid_t uid, sd_bus_error *error);
int smpl_unit_acknowledge(struct smpl_unit *u, sd_bus_message *m, uid_t uid,
			  sd_bus_error *error);
/* Disarm: at once, never refused (the caller's uid into the audit trail). */
int smpl_unit_disarm(struct smpl_unit *u, uid_t uid);
/* A fresh read of the unit, for the core (decisions never rest on the last report). */
void smpl_unit_take_status(struct smpl_unit *u, const struct smpl_status_n *st);
/* The D-Bus error for a unit's refusal or transport error, audited. */
int smpl_unit_error(struct smpl_unit *u, uid_t uid, sd_bus_error *error, int r,
		    const char *what);

/* A refusal into the audit trail and @error (names from safety.h). */
int smpl_refuse(struct smpl_daemon *d, struct smpl_unit *u, int64_t session_id,
		uid_t uid, sd_bus_error *error, const char *error_name,
		const char *fmt, ...) __attribute__((format(printf, 7, 8)));
void smpl_audit(struct smpl_daemon *d, enum store_audit_kind kind,
		const uid_t *uid, const struct smpl_unit *u, int64_t session_id,
		const char *reason, const char *detail);

/* --- sessions (session.c) ------------------------------------------------- */
/* StartSession: 1 (answered when the record is written) or a negative errno with @error. */
int smpl_session_new(struct smpl_unit *u, sd_bus_message *m, const char *patient,
		     uid_t uid, sd_bus_error *error);
struct smpl_session *smpl_session_by_path(struct smpl_daemon *d, const char *path);
/*
 * S6: a session belongs to the connection that opened it.  1 when @m comes
 * from it; 0 while its caller's uid is being asked (the call comes again);
 * otherwise NotAuthorized naming the rule (audited as a refusal).
 */
int smpl_session_check_owner(struct smpl_session *s, sd_bus_message *m, const char *what,
			     sd_bus_error *error);
const char *smpl_session_state_name(const struct smpl_session *s);
/* Something about @s may have changed: tell the observer. */
void smpl_session_changed(struct smpl_session *s);
/* SelectPatch: 1 (answered once the unit was read) or a negative errno with @error. */
int smpl_session_select_patch(struct smpl_session *s, sd_bus_message *m, const char *patch,
			      uid_t uid, sd_bus_error *error);
int smpl_session_confirm_eyewear(struct smpl_session *s, uid_t uid,
				 sd_bus_error *error);
/* End: disarm, record, drop the object.  @s is freed.  @uid NULL: the daemon ended it. */
int smpl_session_end(struct smpl_session *s, enum store_session_state state,
		     const char *notes, const uid_t *uid, sd_bus_error *error);
/*
 * @then(d, call, @userdata) once every record of what happened so far is
 * written (treatments being closed included): a query then reads its own
 * writes.  call->r is -EIO if the store refuses writes.
 */
void smpl_daemon_barrier(struct smpl_daemon *d,
			 void (*then)(struct smpl_daemon *d, const struct smpl_records_call *c,
				      void *userdata),
			 void *userdata);
/* --- the endpoint of each treated patch (session-endpoint.c, issue 16) ---- */
/* Treatment @id was committed for @patch in @s (before the unit arms). */
void smpl_session_treatment_armed(struct smpl_session *s, int64_t id, const char *patch);
/* Treatment @id of @s emitted (a pulse, EMITTING, its counter at the end). */
void smpl_session_emitted(struct smpl_session *s, int64_t id);
/*
 * The patches of @s, but @except, whose treatment emitted without an
 * endpoint since: how many, and their names ("crown, occipital") in @buf.
 */
unsigned int smpl_session_endpoints_missing(const struct smpl_session *s, const char *except,
					    char *buf, size_t len);
/*
 * EndpointMissing (audited) when smpl_session_endpoints_missing() finds
 * one; @what the refused call ("End", "SelectPatch crown").  0 or -errno.
 */
int smpl_session_refuse_missing_endpoint(struct smpl_session *s, const char *except,
					 uid_t uid, const char *what, sd_bus_error *error);
/* RecordEndpoint: 1 (answered once recorded) or a negative errno with @error. */
int smpl_session_record_endpoint(struct smpl_session *s, sd_bus_message *m, const char *patch,
				 const char *endpoint, const char *note, uid_t uid,
				 sd_bus_error *error);

/* A treatment's closing began (+1) or its record was queued (-1). */
void smpl_daemon_closing(struct smpl_daemon *d, int delta);

/* Tells the observer that a Manager property changed. */
void smpl_daemon_changed(struct smpl_daemon *d, const char *property);

/* --- bus (bus-*.c) ---------------------------------------------------------- */
/* Publishes the objects, installs d->observer, takes the name. */
int smpl_bus_setup(struct smpl_daemon *d);

#endif /* SMPLASER_DAEMON_DAEMON_H */
