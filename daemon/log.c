/* SPDX-License-Identifier: MIT */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <systemd/sd-journal.h>

#include "log.h"
#include "text.h"

static bool log_to_stderr = true;
static smpl_log_sink_fn log_sink;
static void *log_sink_data;

/* Under systemd (INVOCATION_ID set) the journal has it all already. */
void smpl_log_init(void)
{
	log_to_stderr = getenv("INVOCATION_ID") == NULL;
}

void smpl_log_set_sink(smpl_log_sink_fn sink, void *userdata)
{
	log_sink = sink;
	log_sink_data = userdata;
}

static const struct {
	const char *event;
	const char *id;
} message_ids[] = {
	{ "arm", SMPL_MID_ARM },
	{ "disarm", SMPL_MID_DISARM },
	{ "fault", SMPL_MID_FAULT },
	{ "acknowledge", SMPL_MID_ACKNOWLEDGE },
	{ "refused", SMPL_MID_REFUSED },
	{ "not-authorized", SMPL_MID_NOT_AUTHORIZED },
	{ "disarm-failed", SMPL_MID_DISARM_FAILED },
	{ "config", SMPL_MID_CONFIG },
	{ "config-refused", SMPL_MID_CONFIG_REFUSED },
	{ "chain-head", SMPL_MID_CHAIN_HEAD },
	{ "records-copy", SMPL_MID_RECORDS_COPY },
};

const char *const smpl_log_message_ids[] = {
	SMPL_MID_ARM, SMPL_MID_DISARM, SMPL_MID_FAULT, SMPL_MID_ACKNOWLEDGE,
	SMPL_MID_REFUSED, SMPL_MID_NOT_AUTHORIZED, SMPL_MID_CLOCK_BAD,
	SMPL_MID_CLOCK_OK, SMPL_MID_DISARM_FAILED, SMPL_MID_CONFIG,
	SMPL_MID_CONFIG_REFUSED, SMPL_MID_CHAIN_HEAD, SMPL_MID_RECORDS_COPY, NULL
};

const char *smpl_log_message_id(const char *event, int priority)
{
	if (!event)
		return NULL;
	/* "clock": a warning says the clock went wrong, a notice that it is right again. */
	if (strcmp(event, "clock") == 0)
		return priority <= LOG_WARNING ? SMPL_MID_CLOCK_BAD : SMPL_MID_CLOCK_OK;
	for (size_t i = 0; i < sizeof(message_ids) / sizeof(message_ids[0]); i++)
		if (strcmp(event, message_ids[i].event) == 0)
			return message_ids[i].id;
	return NULL;
}

bool smpl_log_operator_of(const char *msg, uid_t *ret)
{
	static const char *const marks[] = { "by uid ", "for uid " };
	const char *best = NULL, *p;
	unsigned long v;
	char *end;

	for (size_t i = 0; i < 2; i++) {
		p = strstr(msg, marks[i]);
		if (p && (!best || p < best))
			best = p;
	}
	if (!best)
		return false;
	p = best + (best[0] == 'b' ? strlen(marks[0]) : strlen(marks[1]));
	if (!isdigit((unsigned char)*p))
		return false;
	errno = 0;
	v = strtoul(p, &end, 10);
	if (errno || v > (uid_t)-2 || isalnum((unsigned char)*end))
		return false;
	*ret = (uid_t)v;
	return true;
}

/* "NAME=value" into @buf, or nothing for a NULL or empty value. */
static void add_field(struct iovec *iov, size_t *n, char *buf, size_t len,
		      const char *name, const char *value)
{
	int k;

	if (!value || !*value)
		return;
	k = snprintf(buf, len, "%s=%s", name, value);
	if (k < 0)
		return;
	iov[*n].iov_base = buf;
	iov[*n].iov_len = (size_t)k < len ? (size_t)k : len - 1;
	(*n)++;
}

static void log_send(int priority, const char *unit, const char *session,
			 const char *event, const uid_t *uid, const char *msg)
{
	char f_unit[96], f_session[128], f_event[64], f_uid[40], f_prio[16], f_mid[48];
	char uid_s[16] = "", prio_s[4];
	struct iovec iov[9];
	size_t n = 0;
	char *f_msg;
	uid_t derived;

	if (!uid && smpl_log_operator_of(msg, &derived))
		uid = &derived;
	if (uid)
		snprintf(uid_s, sizeof(uid_s), "%u", (unsigned int)*uid);
	snprintf(prio_s, sizeof(prio_s), "%d", priority & LOG_PRIMASK);
	if (asprintf(&f_msg, "MESSAGE=%s", msg) < 0)
		return;
	iov[n].iov_base = f_msg;
	iov[n++].iov_len = strlen(f_msg);
	add_field(iov, &n, f_prio, sizeof(f_prio), "PRIORITY", prio_s);
	iov[n].iov_base = (char *)"SYSLOG_IDENTIFIER=smplaserd";
	iov[n++].iov_len = strlen("SYSLOG_IDENTIFIER=smplaserd");
	add_field(iov, &n, f_mid, sizeof(f_mid), "MESSAGE_ID",
		  smpl_log_message_id(event, priority));
	add_field(iov, &n, f_unit, sizeof(f_unit), "SMPL_UNIT", unit);
	add_field(iov, &n, f_session, sizeof(f_session), "SMPL_SESSION", session);
	add_field(iov, &n, f_event, sizeof(f_event), "SMPL_EVENT", event);
	add_field(iov, &n, f_uid, sizeof(f_uid), "SMPL_OPERATOR_UID", uid_s);

	if (log_sink)
		log_sink(iov, n, log_sink_data);
	else
		(void)sd_journal_sendv(iov, (int)n);
	if (log_to_stderr && !log_sink) {
		fprintf(stderr, "smplaserd: %s%s%s%s%s\n",
			unit ? unit : "", unit ? ": " : "",
			session ? session : "", session ? ": " : "", msg);
		fflush(stderr);
	}
	free(f_msg);
}

/* No control character reaches a terminal or the journal: escaped first. */
static void log_msg(int priority, const char *unit, const char *session,
		    const char *event, const uid_t *uid, const char *msg)
{
	size_t len;
	char *safe;

	if (smpl_text_is_safe(msg)) {
		log_send(priority, unit, session, event, uid, msg);
		return;
	}
	len = strlen(msg) * 6 + 4;
	safe = malloc(len);
	if (!safe)
		return;
	smpl_text_echo(safe, len, msg, SIZE_MAX);
	log_send(priority, unit, session, event, uid, safe);
	free(safe);
}

void smpl_log(int priority, const char *unit, const char *session,
	      const char *event, const char *fmt, ...)
{
	char *msg = NULL;
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0)
		msg = NULL;
	va_end(ap);
	if (!msg)
		return;
	log_msg(priority, unit, session, event, NULL, msg);
	free(msg);
}

void smpl_log_uid(int priority, const char *unit, const char *session,
		  const char *event, const uid_t *uid, const char *fmt, ...)
{
	char *msg = NULL;
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0)
		msg = NULL;
	va_end(ap);
	if (!msg)
		return;
	log_msg(priority, unit, session, event, uid, msg);
	free(msg);
}
