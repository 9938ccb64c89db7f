/* SPDX-License-Identifier: MIT */
/*
 * The daemon as a whole: its clocks, what systemd is told, the Manager's
 * changes, and the orderly stop (every unit disarmed, sessions ended, the
 * last records written, then everything freed).
 */
#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include <systemd/sd-daemon.h>

#include "creds.h"
#include "daemon.h"
#include "records.h"
#include "session.h"
#include "unit.h"

uint64_t smpl_now_ms(struct smpl_daemon *d)
{
	uint64_t usec = 0;

	(void)sd_event_now(d->event, CLOCK_MONOTONIC, &usec);
	return usec / 1000;
}

int64_t smpl_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* systemctl status shows it: what the daemon is doing, how many units are armed. */
void smpl_daemon_notify_status(struct smpl_daemon *d)
{
	unsigned int units = 0, armed = 0;

	for (const struct smpl_unit *u = d->units; u; u = u->next) {
		units += u->published;
		armed += u->published && u->treatment_id != 0;
	}
	(void)sd_notifyf(false, "STATUS=%s: %u unit(s), %u armed",
			 d->probing ? "Probing units" : "Running", units, armed);
}

void smpl_daemon_changed(struct smpl_daemon *d, const char *property)
{
	if (d->observer && d->observer->manager_changed)
		d->observer->manager_changed(d, property);
}

/* ---- reading one's own writes --------------------------------------------------- */

struct barrier {
	struct barrier *next;
	smpl_records_then then;
	void *userdata;
};

static void barrier_go(struct smpl_daemon *d, struct barrier *b)
{
	smpl_records_sync(d, b->then, b->userdata);
	free(b);
}

void smpl_daemon_barrier(struct smpl_daemon *d, smpl_records_then then, void *userdata)
{
	struct barrier *b = calloc(1, sizeof(*b));

	if (!b) {
		smpl_records_sync(d, then, userdata);
		return;
	}
	b->then = then;
	b->userdata = userdata;
	if (d->closing == 0 && d->records && !smpl_records_busy(d)) {
		const struct smpl_records_call now = { .r = d->store_failed ? -EIO : 0 };

		free(b);
		then(d, &now, userdata);	/* nothing in flight: read now */
		return;
	}
	if (d->closing == 0) {
		barrier_go(d, b);
		return;
	}
	b->next = d->barriers;		/* after the treatments being closed */
	d->barriers = b;
}

void smpl_daemon_closing(struct smpl_daemon *d, int delta)
{
	d->closing += delta;
	while (d->closing == 0 && d->barriers) {
		struct barrier *b = d->barriers;

		d->barriers = b->next;
		barrier_go(d, b);
	}
}

void smpl_daemon_close_records(struct smpl_daemon *d)
{
	if (!d->records)
		return;
	smpl_units_disarm_all(d, SMPL_REASON_DAEMON_STOPPING, "the daemon is stopping");
	while (d->sessions)
		(void)smpl_session_end(d->sessions, STORE_SESSION_INTERRUPTED,
				       "the daemon stopped", NULL, NULL);
	/* The loop no longer runs: the units' last reads finish here ... */
	for (struct smpl_unit *u = d->units; u; u = u->next)
		smpl_unit_io_drain(u);
	for (struct smpl_unit *u = d->dying; u; u = u->next)
		smpl_unit_io_drain(u);
	/* ... and what they asked of the records is written, or spilled. */
	smpl_records_close(d);
}

void smpl_daemon_free(struct smpl_daemon *d)
{
	struct smpl_unit **lists[] = { &d->units, &d->dying };

	for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++)
		while (*lists[i]) {
			struct smpl_unit *u = *lists[i];

			*lists[i] = u->next;
			smpl_unit_free(u);
		}
	smpl_records_close(d);
	smpl_polkit_free(d->polkit);
	smpl_creds_free(d->creds);
	sd_bus_flush_close_unref(d->bus);
	sd_event_source_disable_unref(d->flush_timer);
	sd_event_unref(d->event);
	free(d->state_dir);
}
