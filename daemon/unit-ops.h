/* SPDX-License-Identifier: MIT */
/*
 * The steps of a unit's D-Bus methods (unit-ops.c): SetParameters, Arm,
 * AcknowledgeFault, Disarm, each asking the unit and the records off the
 * loop and deciding on the loop.
 */
#ifndef SMPLASER_DAEMON_UNIT_OPS_H
#define SMPLASER_DAEMON_UNIT_OPS_H

#include <sys/types.h>

#include <systemd/sd-bus.h>

#include "codec.h"

struct smpl_unit;

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
/*
 * Disarm: at once, never refused.  @uid NULL: the bus has not said yet who
 * sent @m; the unit is made safe now, and the audit row waits for the call
 * to come again with its caller's uid.
 */
int smpl_unit_disarm(struct smpl_unit *u, sd_bus_message *m, const uid_t *uid);
/* The D-Bus error for a unit's refusal or transport error, audited. */
int smpl_unit_error(struct smpl_unit *u, uid_t uid, sd_bus_error *error, int r,
		    const char *what);


#endif /* SMPLASER_DAEMON_UNIT_OPS_H */
