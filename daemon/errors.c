/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "text.h"

static const sd_bus_error_map smpl_error_map[] = {
	SD_BUS_ERROR_MAP(SMPL_ERROR_COOLDOWN_ACTIVE,	ETIME),
	SD_BUS_ERROR_MAP(SMPL_ERROR_INTERLOCK_OPEN,	EHOSTDOWN),
	SD_BUS_ERROR_MAP(SMPL_ERROR_NOT_AUTHORIZED,	EACCES),
	SD_BUS_ERROR_MAP(SMPL_ERROR_INVALID_ARGUMENT,	EINVAL),
	SD_BUS_ERROR_MAP(SMPL_ERROR_NO_SESSION,		ENOENT),
	SD_BUS_ERROR_MAP(SMPL_ERROR_NO_PATCH,		ENOMSG),
	SD_BUS_ERROR_MAP(SMPL_ERROR_EYEWEAR,		EPERM),
	SD_BUS_ERROR_MAP(SMPL_ERROR_OUT_OF_RANGE,	ERANGE),
	SD_BUS_ERROR_MAP(SMPL_ERROR_DEVICE_FAULT,	EIO),
	SD_BUS_ERROR_MAP(SMPL_ERROR_DISCONNECTED,	ENODEV),
	SD_BUS_ERROR_MAP(SMPL_ERROR_BUSY,		EBUSY),
	SD_BUS_ERROR_MAP(SMPL_ERROR_CALIBRATION,	EKEYEXPIRED),
	SD_BUS_ERROR_MAP(SMPL_ERROR_CLOCK,		ETIMEDOUT),
	SD_BUS_ERROR_MAP(SMPL_ERROR_RECORDS_UNAVAILABLE, ENOTCONN),
	/* errnos no library call returns, so none is taken for these by mistake */
	SD_BUS_ERROR_MAP(SMPL_ERROR_ENDPOINT_MISSING,	ENOANO),
	SD_BUS_ERROR_MAP(SMPL_ERROR_FOLLOW_UP_REQUIRED,	EBADRQC),
	SD_BUS_ERROR_MAP(SMPL_ERROR_PATCH_CLEAR,	EBADSLT),
	SD_BUS_ERROR_MAP(SMPL_ERROR_PATCH_ON_HOLD,	EBFONT),
	SD_BUS_ERROR_MAP_END
};

int smpl_errors_register(void)
{
	return sd_bus_error_add_map(smpl_error_map);
}

static int errno_of(const char *name)
{
	for (const sd_bus_error_map *m = smpl_error_map; m->name; m++)
		if (strcmp(m->name, name) == 0)
			return m->code;
	return EIO;
}

int smpl_error_setf(sd_bus_error *error, const char *name, const char *fmt, ...)
{
	char *msg = NULL;
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vasprintf(&msg, fmt, ap);
	va_end(ap);
	if (r < 0)
		msg = NULL;
	/* Every call gets a reply: sd-bus refuses a message that is not UTF-8. */
	if (msg && !smpl_text_is_safe(msg)) {
		size_t len = strlen(msg) * 6 + 4;
		char *safe = malloc(len);

		if (safe)
			smpl_text_echo(safe, len, msg, SIZE_MAX);
		free(msg);
		msg = safe;
	}
	sd_bus_error_set(error, name, msg ? msg : "(out of memory)");
	free(msg);
	return -errno_of(name);
}
