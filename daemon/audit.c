/* SPDX-License-Identifier: MIT */
/*
 * The audit trail (S6): every arm, disarm, fault, interlock change, session
 * and refusal, with who and when, into the store and the journal.  A record
 * the store cannot take now (database busy, I/O error) is kept in memory and
 * retried with the pulses (smpl_daemon_flush), in order.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "daemon.h"
#include "log.h"

#define AUDIT_BACKLOG_MAX	1024

struct pending_audit {
	struct pending_audit *next;
	bool replayed;			/* from the spill: it may be in the store already */
	struct store_audit a;
	char *op_name, *serial, *reason, *detail;
};

static struct pending_audit *backlog, **backlog_tail = &backlog;
static size_t backlog_len;

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

static void pending_free(struct pending_audit *p)
{
	free(p->op_name);
	free(p->serial);
	free(p->reason);
	free(p->detail);
	free(p);
}

static struct pending_audit *keep_for_later(const struct store_audit *a)
{
	struct pending_audit *p;

	if (backlog_len >= AUDIT_BACKLOG_MAX) {
		smpl_log(LOG_CRIT, a->unit_serial, NULL, "audit-lost",
			 "audit backlog full: a %s record is only in the journal",
			 store_audit_kind_name(a->kind));
		return NULL;
	}
	p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->a = *a;
	p->op_name = dup_or_null(a->op.name);
	p->serial = dup_or_null(a->unit_serial);
	p->reason = dup_or_null(a->reason);
	p->detail = dup_or_null(a->detail);
	p->a.op.name = p->op_name;
	p->a.unit_serial = p->serial;
	p->a.reason = p->reason;
	p->a.detail = p->detail;
	*backlog_tail = p;
	backlog_tail = &p->next;
	backlog_len++;
	return p;
}

int smpl_audit_visit_backlog(int (*cb)(const struct store_audit *a, void *ctx), void *ctx)
{
	for (struct pending_audit *p = backlog; p; p = p->next) {
		int r = cb(&p->a, ctx);

		if (r)
			return r;
	}
	return 0;
}

void smpl_audit_keep(const struct store_audit *a, bool replayed)
{
	struct pending_audit *p = keep_for_later(a);

	if (p)
		p->replayed = replayed;
}

int smpl_audit_retry(struct smpl_daemon *d)
{
	while (backlog) {
		struct pending_audit *p = backlog;

		if ((p->replayed ? store_audit_once(d->store, &p->a)
				 : store_audit(d->store, &p->a)) < 0)
			return -EIO;
		backlog = p->next;
		if (!backlog)
			backlog_tail = &backlog;
		backlog_len--;
		pending_free(p);
	}
	return 0;
}

void smpl_audit_discard(void)
{
	while (backlog) {
		struct pending_audit *p = backlog;

		backlog = p->next;
		pending_free(p);
	}
	backlog_tail = &backlog;
	backlog_len = 0;
}

void smpl_audit(struct smpl_daemon *d, enum store_audit_kind kind,
		const uid_t *uid, const struct smpl_unit *u, int64_t session_id,
		const char *reason, const char *detail)
{
	char name[64];
	struct store_audit a = {
		.time_ms = smpl_wall_ms(),
		.kind = kind,
		.has_operator = uid != NULL,
		.unit_serial = u && u->info.serial[0] ? u->info.serial : NULL,
		.session_id = session_id,
		.reason = reason,
		.detail = detail,
	};

	if (uid)
		smpl_operator(*uid, name, sizeof(name), &a.op);
	/* Behind a backlog it waits its turn: the order is kept. */
	if (!backlog && store_audit(d->store, &a) == 0)
		return;
	smpl_log(LOG_ERR, a.unit_serial, NULL, "audit-delayed",
		 "audit record (%s) kept for later: %s", store_audit_kind_name(kind),
		 store_errmsg(d->store));
	(void)keep_for_later(&a);
	smpl_daemon_records_pending(d);
}
