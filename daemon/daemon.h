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

#define _cleanup_(f) __attribute__((cleanup(f)))

static inline void freep(void *p)
{
	free(*(void **)p);
}

struct smpl_daemon;
struct smpl_unit;
struct smpl_session;
struct smpl_records;
struct smpl_worker;
struct smpl_owner_watch;
struct smpl_creds;
struct barrier;
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
	struct smpl_copies *copies;	/* backups and exports (bus-records.c) */
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

/* --- the daemon (daemon.c) ------------------------------------------------- */
/* STATUS= for systemd: units and how many are armed. */
void smpl_daemon_notify_status(struct smpl_daemon *d);
/* Stopping: every unit disarmed, sessions ended, the last records written. */
void smpl_daemon_close_records(struct smpl_daemon *d);
/* Frees the units, polkit, the bus, the event loop and the store. */
void smpl_daemon_free(struct smpl_daemon *d);
/*
 * Backups and exports of the records, and the chain head in the journal at
 * start and daily (bus-records.c): with the records, after their reader.
 */
int smpl_copies_start(struct smpl_daemon *d);
void smpl_copies_stop(struct smpl_daemon *d);

/*
 * @then(d, call, @userdata) once every record of what happened so far is
 * written (treatments being closed included): a query then reads its own
 * writes.  call->r is -EIO if the store refuses writes.
 */
void smpl_daemon_barrier(struct smpl_daemon *d,
			 void (*then)(struct smpl_daemon *d, const struct smpl_records_call *c,
				      void *userdata),
			 void *userdata);
/* A treatment's closing began (+1) or its record was queued (-1). */
void smpl_daemon_closing(struct smpl_daemon *d, int delta);

/* Tells the observer that a Manager property changed. */
void smpl_daemon_changed(struct smpl_daemon *d, const char *property);

#endif /* SMPLASER_DAEMON_DAEMON_H */
