/* SPDX-License-Identifier: MIT */
/* A unit through libusb, without the kernel module (backend-libusb.c). */
#ifndef SMPLASER_DAEMON_BACKEND_LIBUSB_H
#define SMPLASER_DAEMON_BACKEND_LIBUSB_H

#include <systemd/sd-event.h>

#include "backend.h"

/*
 * /dev/bus/usb/BBB/DDD through libusb (usbfs), claiming the unit's vendor
 * interface.  Not opened yet.  Without the kernel module nothing disarms
 * the unit when the daemon dies but the unit's own watchdog.
 */
int smpl_backend_libusb_new(sd_event *event, const char *devnode,
			    struct smpl_backend **ret);

#endif /* SMPLASER_DAEMON_BACKEND_LIBUSB_H */
