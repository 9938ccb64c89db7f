/* SPDX-License-Identifier: MIT */
/*
 * The audit trail (audit.c): who did what, and what was refused, queued
 * for the records writer (records.h).
 */
#ifndef SMPLASER_DAEMON_AUDIT_H
#define SMPLASER_DAEMON_AUDIT_H

#include <stdint.h>
#include <sys/types.h>

#include <systemd/sd-bus.h>

#include "store.h"

struct smpl_daemon;
struct smpl_unit;

/* A refusal into the audit trail and @error (names from safety.h). */
int smpl_refuse(struct smpl_daemon *d, struct smpl_unit *u, int64_t session_id,
		uid_t uid, sd_bus_error *error, const char *error_name,
		const char *fmt, ...) __attribute__((format(printf, 7, 8)));
void smpl_audit(struct smpl_daemon *d, enum store_audit_kind kind,
		const uid_t *uid, const struct smpl_unit *u, int64_t session_id,
		const char *reason, const char *detail);

#endif /* SMPLASER_DAEMON_AUDIT_H */
