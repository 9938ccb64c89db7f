/* SPDX-License-Identifier: MIT */
/*
 * The audit trail (S6): every arm, disarm, fault, interlock change, session
 * step and refusal, with who and when, into the records (queued for the
 * writer: records.h, in order) and the journal (by the callers' smpl_log).
 */
#include "audit.h"
#include "daemon.h"
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
