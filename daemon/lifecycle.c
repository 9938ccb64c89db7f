/* SPDX-License-Identifier: MIT */
/*
 * The daemon's start and orderly stop, above every layer: the upcalls each
 * layer needs of the one above it (daemon.h), then at the end every unit
 * disarmed, sessions ended, the last records written, everything freed.
 */
#include <stdlib.h>

#include "bus.h"
#include "creds.h"
#include "daemon.h"
#include "lifecycle.h"
#include "records.h"
#include "session.h"
#include "supervisor.h"
#include "unit.h"

static void records_failed(struct smpl_daemon *d, const char *why)
{
	smpl_units_disarm_all(d, SMPL_REASON_FAULT_LATCHED, why);
}

static void unit_leaving(struct smpl_unit *u, const char *why)
{
	if (u->session)
		(void)smpl_session_end(u->session, STORE_SESSION_INTERRUPTED, why, NULL, NULL);
}

static void records_corrupt(struct smpl_daemon *d, const char *why)
{
	for (struct smpl_unit *u = d->units; u; u = u->next)
		smpl_unit_fault(u, SMPL_REASON_RECORDS_FAILED, why);
}

static const struct smpl_upcalls upcalls = {
	.records_failed = records_failed,
	.unit_leaving = unit_leaving,
	.records_corrupt = records_corrupt,
};

void smpl_daemon_setup(struct smpl_daemon *d)
{
	d->upcalls = &upcalls;
}

void smpl_daemon_stop(struct smpl_daemon *d)
{
	if (!d->records)
		return;
	smpl_units_disarm_all(d, SMPL_REASON_DAEMON_STOPPING, "the daemon is stopping");
	for (struct smpl_unit *u = d->units; u; u = u->next)
		(void)smpl_unit_attribute(u, NULL, NULL);	/* its caller never named */
	while (d->sessions)
		(void)smpl_session_end(d->sessions, STORE_SESSION_INTERRUPTED,
				       "the daemon stopped", NULL, NULL);
	/* The loop no longer runs: the units' last reads finish here ... */
	for (struct smpl_unit *u = d->units; u; u = u->next)
		smpl_unit_io_drain(u);
	for (struct smpl_unit *u = d->dying; u; u = u->next)
		smpl_unit_io_drain(u);
	/* ... and what they asked of the records is written, or spilled. */
	smpl_copies_stop(d);
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
	smpl_copies_stop(d);
	smpl_records_close(d);
	smpl_polkit_free(d->polkit);
	smpl_creds_free(d->creds);
	sd_bus_flush_close_unref(d->bus);
	sd_event_source_disable_unref(d->flush_timer);
	sd_event_unref(d->event);
	free(d->state_dir);
}
