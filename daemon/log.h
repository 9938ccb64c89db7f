/* SPDX-License-Identifier: MIT */
/*
 * Structured logging: the journal (sd_journal_send with SMPL_UNIT=,
 * SMPL_SESSION=, SMPL_EVENT= fields) and, when not running under systemd,
 * stderr too.
 */
#ifndef SMPLASER_DAEMON_LOG_H
#define SMPLASER_DAEMON_LOG_H

#include <syslog.h>

void smpl_log_init(void);
/* @unit, @session, @event may be NULL. */
void smpl_log(int priority, const char *unit, const char *session,
	      const char *event, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

#define log_info(...)  smpl_log(LOG_INFO, NULL, NULL, NULL, __VA_ARGS__)
#define log_warn(...)  smpl_log(LOG_WARNING, NULL, NULL, NULL, __VA_ARGS__)
#define log_err(...)   smpl_log(LOG_ERR, NULL, NULL, NULL, __VA_ARGS__)

#endif
