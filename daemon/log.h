/* SPDX-License-Identifier: MIT */
/*
 * Structured logging: the journal (sd_journal_sendv) and, when not running
 * under systemd, stderr too.
 *
 * Fields of each entry, each only when it has a value (no empty fields):
 *   MESSAGE, PRIORITY, SYSLOG_IDENTIFIER=smplaserd,
 *   SMPL_UNIT=       the unit (serial or name)
 *   SMPL_SESSION=    the session's object path
 *   SMPL_EVENT=      what happened, a short name ("arm", "fault", ...)
 *   SMPL_OPERATOR_UID=  who did or asked for it
 *   MESSAGE_ID=      for the events an operator or IT acts on (below); each
 *                    is explained in data/smplaser.catalog (journalctl -x)
 *
 * The MESSAGE_ID is derived from the event name (and, for "clock", from the
 * priority: a warning is an anomaly, a notice the clock being right again),
 * so callers need not know it.  The operator's uid is the @uid argument of
 * smpl_log_uid(); for smpl_log() it is taken from the message when it says
 * "by uid N" or "for uid N" (the first such words: the daemon's messages put
 * them before any text that came from a caller).
 */
#ifndef SMPLASER_DAEMON_LOG_H
#define SMPLASER_DAEMON_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <syslog.h>

/* The MESSAGE_IDs (128-bit, as journalctl prints them). */
#define SMPL_MID_ARM		"800e4c5b76c7484198b9ea8b791f469c"
#define SMPL_MID_DISARM		"155e4bb44c934aa8ad0cd384b9973589"
#define SMPL_MID_FAULT		"92c76d3f18974b41a0aa04a70536fb93"
#define SMPL_MID_ACKNOWLEDGE	"31955c558d0d4209a81ea8dceb44c461"
#define SMPL_MID_REFUSED	"516f5a91ce6448d7a13b244c01f23567"
#define SMPL_MID_NOT_AUTHORIZED	"18554853f7fc4cbe88365d23268b8c4e"
#define SMPL_MID_CLOCK_BAD	"549eebefb7684ef896e9c0d6d7566e7b"
#define SMPL_MID_CLOCK_OK	"3f04b148fc2e4825866650d010ec08a9"
#define SMPL_MID_DISARM_FAILED	"3c1653745a6348e29eba982e40b2fd2d"
#define SMPL_MID_CONFIG		"c8710e9c678f4305ad612aad24d447ae"
#define SMPL_MID_CONFIG_REFUSED	"f67950ef25624cae830d7050655df320"
#define SMPL_MID_CHAIN_HEAD	"a3dd722f38cf4e8290e104cb9417a953"
#define SMPL_MID_RECORDS_COPY	"23db44e316f94f969951a795c4b94ed9"

void smpl_log_init(void);

/* @unit, @session, @event may be NULL. */
void smpl_log(int priority, const char *unit, const char *session,
	      const char *event, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

/* The same with the operator's uid given (NULL: none). */
void smpl_log_uid(int priority, const char *unit, const char *session,
		  const char *event, const uid_t *uid, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));

/* The MESSAGE_ID of an event at a priority, or NULL when it has none. */
const char *smpl_log_message_id(const char *event, int priority);

/* Every MESSAGE_ID smpl_log_message_id() can return, NULL-terminated. */
extern const char *const smpl_log_message_ids[];

/* The uid after the first "by uid " or "for uid " in @msg; false if none. */
bool smpl_log_operator_of(const char *msg, uid_t *ret);

/*
 * Tests: send each entry's fields to @sink instead of the journal (NULL:
 * the journal again).  The iovecs are "NAME=value" strings.
 */
typedef void (*smpl_log_sink_fn)(const struct iovec *iov, size_t n, void *userdata);
void smpl_log_set_sink(smpl_log_sink_fn sink, void *userdata);

#define log_info(...)  smpl_log(LOG_INFO, NULL, NULL, NULL, __VA_ARGS__)
#define log_warn(...)  smpl_log(LOG_WARNING, NULL, NULL, NULL, __VA_ARGS__)
#define log_err(...)   smpl_log(LOG_ERR, NULL, NULL, NULL, __VA_ARGS__)

#endif
