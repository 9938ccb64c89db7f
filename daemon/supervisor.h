/* SPDX-License-Identifier: MIT */
/*
 * The supervision of each laser unit (supervisor.c): its probe, its events,
 * its heartbeat, its treatments and faults; the safety core obeyed.
 */
#ifndef SMPLASER_DAEMON_SUPERVISOR_H
#define SMPLASER_DAEMON_SUPERVISOR_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "backend.h"
#include "safety.h"
#include "store.h"

struct smpl_daemon;
struct smpl_unit;

/*
 * Adopts @b (not opened yet; freed on failure too), opens it and probes the
 * unit in the background.  For discovery's add callback.
 */
int smpl_unit_adopt(struct smpl_daemon *d, const char *name, struct smpl_backend *b,
		    struct smpl_unit **ret);
int smpl_unit_add_sim(struct smpl_daemon *d, unsigned int index);
/* The unit is gone for good: disarm, close what it had open, drop its object. */
void smpl_unit_drop(struct smpl_unit *u);
/*
 * Closes the open treatment with the unit's end counter, read once the
 * unit is disarmed; unread, it is settled from the next good read.
 */
void smpl_unit_close_treatment(struct smpl_unit *u, enum store_outcome outcome);
/* A fault the daemon found (counter back, records failing): latched, disarmed. */
void smpl_unit_fault(struct smpl_unit *u, enum smpl_reason reason, const char *why);
/*
 * The unit's counter went back under the daemon's eyes (@counter, seen
 * @where): faulted COUNTER_BACK until an acknowledge accepts the counter.
 */
void smpl_unit_counter_back(struct smpl_unit *u, uint32_t counter, const char *where);
/* Obeys the safety core: DISARM the unit, close the treatment, record why. */
void smpl_unit_apply(struct smpl_unit *u, const struct smpl_action *a);
/*
 * As smpl_unit_apply_by(), for @call whose caller the bus has not named yet:
 * the unit is made safe now; the audit row and the log line wait for
 * smpl_unit_attribute() with the same call (or the unit's end).
 */
void smpl_unit_apply_unattributed(struct smpl_unit *u, const struct smpl_action *a,
				  sd_bus_message *call);
/*
 * @call's caller is @uid (NULL: unknown): what it did before it was known is
 * audited now.  True when something waited for @call (NULL: for any call).
 */
bool smpl_unit_attribute(struct smpl_unit *u, sd_bus_message *call, const uid_t *uid);
/* The same when a person asked for it (@uid goes into the audit record). */
void smpl_unit_apply_by(struct smpl_unit *u, const struct smpl_action *a, const uid_t *uid);
/* Every unit disarmed, treatments closed (shutdown, store failure). */
void smpl_units_disarm_all(struct smpl_daemon *d, enum smpl_reason reason,
			   const char *why);
/* A fresh read of the unit, for the core (decisions never rest on the last report). */
void smpl_unit_take_status(struct smpl_unit *u, const struct smpl_status_n *st);

#endif /* SMPLASER_DAEMON_SUPERVISOR_H */
