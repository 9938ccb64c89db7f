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
struct smpl_spill;

struct smpl_unit {
	struct smpl_unit *next;
	struct smpl_daemon *daemon;
	struct smpl_backend *backend;
	char name[32];			/* for logs until the serial is known */

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
	char *operator_name;
	sd_bus_track *track;		/* the client that opened it */
	sd_event_source *end_later;	/* closing it after its client left */

	/* bus-session.c's: what was last announced */
	struct smpl_session_shown {
		char patch[SMPL_PATCH_ID_MAX + 1];
		bool eyewear_confirmed;
		uint32_t pulse_count;
		const char *state;
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
	struct store *store;
	struct smpl_polkit *polkit;
	struct smpl_unit *units;
	struct smpl_session *sessions;
	unsigned int probing;		/* units not probed yet */
	const char *state;		/* "probing", "running" */
	sd_event_source *flush_timer;
	bool store_failed;		/* a flush failed: nothing arms */
	struct smpl_spill *spill;	/* keeps what the store refuses (spill.h) */
	bool spilled;			/* the spill file holds something */
	uint64_t store_retry_ms;	/* while failing, next retry (monotonic) */
};

/* --- time ------------------------------------------------------------------ */
uint64_t smpl_now_ms(struct smpl_daemon *d);	/* CLOCK_MONOTONIC */
int64_t smpl_wall_ms(void);			/* CLOCK_REALTIME, UTC */

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
/*
 * GET_STATUS now, fed to the core: 0, or the backend's answer (> 0 the unit
 * refused, < 0 not read).  Decisions take this fresh read, never the last
 * report alone (S1, S8: the RTC too).
 */
int smpl_unit_read_status(struct smpl_unit *u, struct smpl_status_n *st);
/* The D-Bus error for a unit's refusal or transport error, audited. */
int smpl_unit_error(struct smpl_unit *u, uid_t uid, sd_bus_error *error, int r,
		    const char *what);
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
/* Flushes pulses; on failure disarms everything (S3). */
void smpl_daemon_flush(struct smpl_daemon *d);
/* The records cannot take what happened: every unit disarmed, nothing arms until they can. */
void smpl_daemon_records_failed(struct smpl_daemon *d);
/* Something was kept for the store to take later: into the spill file too. */
void smpl_daemon_records_pending(struct smpl_daemon *d);
/* At start, after the store: the spill file allocated, what it kept replayed. */
int smpl_daemon_open_spill(struct smpl_daemon *d);
/* Stopping: every unit disarmed, sessions ended, the last records written. */
void smpl_daemon_close_records(struct smpl_daemon *d);
/* Frees the units, polkit, the bus, the event loop and the store. */
void smpl_daemon_free(struct smpl_daemon *d);

/* The D-Bus side of unit actions: 0 or a negative errno with @error set. */
int smpl_unit_start_session(struct smpl_unit *u, sd_bus_message *m,
			    const char *patient, struct smpl_session **ret,
			    sd_bus_error *error);
int smpl_unit_set_parameters(struct smpl_unit *u, const struct smpl_params_n *p,
			     uid_t uid, sd_bus_error *error);
int smpl_unit_arm(struct smpl_unit *u, uid_t uid, sd_bus_error *error);
int smpl_unit_disarm(struct smpl_unit *u, uid_t uid, sd_bus_error *error);
int smpl_unit_acknowledge(struct smpl_unit *u, uid_t uid, sd_bus_error *error);

/* A refusal into the audit trail and @error (names from safety.h). */
int smpl_refuse(struct smpl_daemon *d, struct smpl_unit *u, int64_t session_id,
		uid_t uid, sd_bus_error *error, const char *error_name,
		const char *fmt, ...) __attribute__((format(printf, 7, 8)));
void smpl_audit(struct smpl_daemon *d, enum store_audit_kind kind,
		const uid_t *uid, const struct smpl_unit *u, int64_t session_id,
		const char *reason, const char *detail);
/*
 * Audit records the store could not take yet: retried in order with the
 * pulses, kept in the spill file at exit (spill.h).
 */
int smpl_audit_retry(struct smpl_daemon *d);
void smpl_audit_discard(void);
int smpl_audit_visit_backlog(int (*cb)(const struct store_audit *a, void *ctx), void *ctx);
/* Back into the backlog; @replayed: from the spill, so appended only once. */
void smpl_audit_keep(const struct store_audit *a, bool replayed);
/* The operator as the store wants it (name: the user name or "uid N"). */
void smpl_operator(uid_t uid, char *buf, size_t len, struct store_operator *op);

/* --- sessions (session.c) ------------------------------------------------- */
int smpl_session_new(struct smpl_unit *u, sd_bus_message *m, const char *patient,
		     uid_t uid, struct smpl_session **ret, sd_bus_error *error);
struct smpl_session *smpl_session_by_path(struct smpl_daemon *d, const char *path);
/*
 * S6: a session belongs to the connection that opened it.  0 when @m comes
 * from it; otherwise NotAuthorized naming the rule (audited as a refusal).
 */
int smpl_session_check_owner(struct smpl_session *s, sd_bus_message *m, const char *what,
			     sd_bus_error *error);
const char *smpl_session_state_name(const struct smpl_session *s);
/* Something about @s may have changed: tell the observer. */
void smpl_session_changed(struct smpl_session *s);
int smpl_session_select_patch(struct smpl_session *s, const char *patch, uid_t uid,
			      sd_bus_error *error);
int smpl_session_confirm_eyewear(struct smpl_session *s, uid_t uid,
				 sd_bus_error *error);
/* End: disarm, record, drop the object.  @s is freed.  @uid NULL: the daemon ended it. */
int smpl_session_end(struct smpl_session *s, enum store_session_state state,
		     const char *notes, const uid_t *uid, sd_bus_error *error);
/* Tells the observer that a Manager property changed. */
void smpl_daemon_changed(struct smpl_daemon *d, const char *property);

/* --- bus (bus-*.c) ---------------------------------------------------------- */
/* Publishes the objects, installs d->observer, takes the name. */
int smpl_bus_setup(struct smpl_daemon *d);

#endif /* SMPLASER_DAEMON_DAEMON_H */
