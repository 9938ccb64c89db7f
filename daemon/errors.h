/* SPDX-License-Identifier: MIT */
/*
 * The daemon's named D-Bus errors (DESIGN section 5), each with an errno so
 * that internal code can return negative errno and the bus layer can turn it
 * into the right name (sd_bus_error_add_map()).
 */
#ifndef SMPLASER_DAEMON_ERRORS_H
#define SMPLASER_DAEMON_ERRORS_H

#include <errno.h>

#include <systemd/sd-bus.h>

#define SMPL_ERROR_PREFIX		"org.smplaser.Laser1.Error."
#define SMPL_ERROR_COOLDOWN_ACTIVE	SMPL_ERROR_PREFIX "CooldownActive"
#define SMPL_ERROR_INTERLOCK_OPEN	SMPL_ERROR_PREFIX "InterlockOpen"
#define SMPL_ERROR_NOT_AUTHORIZED	SMPL_ERROR_PREFIX "NotAuthorized"
#define SMPL_ERROR_INVALID_ARGUMENT	SMPL_ERROR_PREFIX "InvalidArgument"
#define SMPL_ERROR_NO_SESSION		SMPL_ERROR_PREFIX "NoSession"
#define SMPL_ERROR_NO_PATCH		SMPL_ERROR_PREFIX "NoPatch"
#define SMPL_ERROR_EYEWEAR		SMPL_ERROR_PREFIX "EyewearNotConfirmed"
#define SMPL_ERROR_OUT_OF_RANGE		SMPL_ERROR_PREFIX "ParameterOutOfRange"
#define SMPL_ERROR_DEVICE_FAULT		SMPL_ERROR_PREFIX "DeviceFault"
#define SMPL_ERROR_DISCONNECTED		SMPL_ERROR_PREFIX "Disconnected"
#define SMPL_ERROR_BUSY			SMPL_ERROR_PREFIX "Busy"
#define SMPL_ERROR_CALIBRATION		SMPL_ERROR_PREFIX "CalibrationExpired"
#define SMPL_ERROR_CLOCK		SMPL_ERROR_PREFIX "ClockUnreliable"
#define SMPL_ERROR_RECORDS_UNAVAILABLE	SMPL_ERROR_PREFIX "RecordsUnavailable"
/* The clinical record (issue 16) */
#define SMPL_ERROR_ENDPOINT_MISSING	SMPL_ERROR_PREFIX "EndpointMissing"
#define SMPL_ERROR_FOLLOW_UP_REQUIRED	SMPL_ERROR_PREFIX "FollowUpRequired"
#define SMPL_ERROR_PATCH_CLEAR		SMPL_ERROR_PREFIX "PatchClear"
#define SMPL_ERROR_PATCH_ON_HOLD	SMPL_ERROR_PREFIX "PatchOnHold"

/* Registers the map with sd-bus (once, before the bus is used). */
int smpl_errors_register(void);

/*
 * Sets @error to @name with a printf-style message and returns the negative
 * errno the map gives that name (what a method handler returns).
 */
int smpl_error_setf(sd_bus_error *error, const char *name, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
