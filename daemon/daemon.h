/* SPDX-License-Identifier: MIT */
/*
 * smplaserd: the daemon itself (daemon.c): the bus, the event loop, the
 * config, the records, its units and sessions, and who shows them.
 *
 *   unit.h      one laser unit: its backend, its safety core, its treatment
 *   session.h   one treatment session of one patient on one unit
 *   records.h   the records writer; audit.h the audit trail
 *   bus.h       the D-Bus objects (the observer of units and sessions)
 *
 * unit*.c and session.c hold the logic; bus-*.c only translate D-Bus calls
 * into it and show what changed; main.c starts everything.
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
#include "macro.h"
#include "config.h"
#include "polkit.h"
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

struct smpl_daemon;
struct smpl_unit;
struct smpl_session;
struct smpl_records;
struct smpl_worker;
struct smpl_owner_watch;
struct smpl_creds;
struct smpl_barrier;
struct smpl_records_call;

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

/*
 * What a lower layer asks of an upper one, which it cannot call: the records
 * (records.c) and the supervisor (supervisor.c) sit below the sessions.
 * smpl_daemon_setup() (lifecycle.c) installs them; smpl_records_open() and
 * smpl_unit_adopt() refuse to run without (fail closed).
 */
struct smpl_upcalls {
	/* The records refuse writes: every unit disarmed, its treatment closed. */
	void (*records_failed)(struct smpl_daemon *d, const char *why);
	/* A unit goes away: its session ends, interrupted, because of @why. */
	void (*unit_leaving)(struct smpl_unit *u, const char *why);
	/* The records failed their integrity check: every unit faulted. */
	void (*records_corrupt)(struct smpl_daemon *d, const char *why);
};

struct smpl_daemon {
	const struct smpl_observer *observer;
	const struct smpl_upcalls *upcalls;
	sd_event *event;
	sd_bus *bus;
	bool session_bus;
	struct smpl_config cfg;
	char *state_dir;
	struct store *store;		/* the records writer's connection (its thread only) */
	struct store *reader;		/* queries, on the loop */
	struct smpl_records *records;	/* what waits for the writer (records.h) */
	struct smpl_copies *copies;	/* backups and exports (bus-records.c) */
	bool inline_io;			/* workers without threads (the in-process fuzzer) */
	struct smpl_polkit *polkit;
	struct smpl_creds *creds;	/* callers' uids, asked asynchronously (creds.h) */
	struct smpl_unit *units;
	struct smpl_unit *dying;	/* dropped, calls still in flight */
	unsigned int closing;		/* treatments whose end counter is being read */
	struct smpl_barrier *barriers;	/* reads waiting for them (smpl_records_barrier) */
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

/* --- the daemon (daemon.c) ------------------------------------------------- */
/* Tells the observer that a Manager property changed. */
void smpl_daemon_changed(struct smpl_daemon *d, const char *property);

#endif /* SMPLASER_DAEMON_DAEMON_H */
