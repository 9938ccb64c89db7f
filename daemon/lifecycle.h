/* SPDX-License-Identifier: MIT */
/* The daemon's start and orderly stop (lifecycle.c). */
#ifndef SMPLASER_DAEMON_LIFECYCLE_H
#define SMPLASER_DAEMON_LIFECYCLE_H

struct smpl_daemon;

/* Installs what each layer asks of the one above (d->upcalls): before anything opens. */
void smpl_daemon_setup(struct smpl_daemon *d);
/* Stopping: every unit disarmed, sessions ended, the last records written. */
void smpl_daemon_stop(struct smpl_daemon *d);
/* Frees the units, polkit, the bus, the event loop and the store. */
void smpl_daemon_free(struct smpl_daemon *d);

#endif /* SMPLASER_DAEMON_LIFECYCLE_H */
