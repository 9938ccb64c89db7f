/* SPDX-License-Identifier: MIT */
/*
 * The audit trail (S6): every arm, disarm, fault, interlock change, session
 * step and refusal, with who and when, into the records (queued for the
 * writer: records.h, in order) and the journal (by the callers' smpl_log).
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "audit.h"
#include "daemon.h"
#include "errors.h"
#include "log.h"
#include "records.h"
#include "unit.h"

void smpl_audit(struct smpl_daemon *d, enum store_audit_kind kind,
		const uid_t *uid, const struct smpl_unit *u, int64_t session_id,
		const char *reason, const char *detail)
{
	struct store_audit a = {
		.time_ms = smpl_wall_ms(),
		.kind = kind,
		.unit_serial = u && u->info.serial[0] ? u->info.serial : NULL,
		.session_id = session_id,
		.reason = reason,
		.detail = detail,
	};

	smpl_records_audit(d, &a, uid);
}

int smpl_refuse(struct smpl_daemon *d, struct smpl_unit *u, int64_t session_id,
		uid_t uid, sd_bus_error *error, const char *error_name,
		const char *fmt, ...)
{
	const char *short_name = error_name;
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (strncmp(short_name, SMPL_ERROR_PREFIX, strlen(SMPL_ERROR_PREFIX)) == 0)
		short_name += strlen(SMPL_ERROR_PREFIX);
	smpl_audit(d, STORE_AUDIT_REFUSED, &uid, u, session_id, short_name, msg);
	smpl_log(LOG_NOTICE, u ? smpl_unit_label(u) : NULL, NULL, "refused",
		 "refused for uid %u: %s", (unsigned int)uid, msg);
	return smpl_error_setf(error, error_name, "%s", msg);
}
