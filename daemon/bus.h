/* SPDX-License-Identifier: MIT */
/* The D-Bus objects of smplaserd (bus-manager.c, bus-unit.c, bus-session.c). */
#ifndef SMPLASER_DAEMON_BUS_H
#define SMPLASER_DAEMON_BUS_H

#include "daemon.h"

/*
 * Authorization for a privileged call: 1 go on (@uid set), 0 the call is
 * suspended until polkit answers (the handler returns 1), negative denied.
 */
int smpl_bus_authorize(struct smpl_daemon *d, sd_bus_message *m, const char *action,
		       uid_t *uid, sd_bus_error *error);

/* What a handler returns for smpl_bus_authorize()'s answer r <= 0. */
static inline int smpl_bus_not_now(int r)
{
	return r == 0 ? 1 : r;
}

int smpl_bus_unit_setup(struct smpl_daemon *d);
int smpl_bus_session_setup(struct smpl_daemon *d);

#endif
