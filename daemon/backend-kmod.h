/* SPDX-License-Identifier: MIT */
/* A unit through the kernel module: /dev/smplaserN (backend-kmod.c). */
#ifndef SMPLASER_DAEMON_BACKEND_KMOD_H
#define SMPLASER_DAEMON_BACKEND_KMOD_H

#include <systemd/sd-event.h>

#include "backend.h"

/* /dev/smplaserN through the kernel module.  Not opened yet. */
int smpl_backend_kmod_new(sd_event *event, const char *devnode,
			  struct smpl_backend **ret);

#endif /* SMPLASER_DAEMON_BACKEND_KMOD_H */
