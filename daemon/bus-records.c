// SPDX-License-Identifier: MIT
/*
 * org.smplaser.Laser1.Records on /org/smplaser/Laser1 (issue 15.11, 15.13):
 * Backup and Export into a descriptor the caller passes, authorized as
 * org.smplaser.records and audited.  Each copy is made in steps on a worker
 * thread of its own (worker.h), from one snapshot on its own read-only
 * connection: the event loop only hands the next step on, and the records
 * writer goes on meanwhile.
 *
 * Also here: the head of the records' hash chain into the journal when the
 * daemon starts and once a UTC day (issue 15.12).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audit.h"
#include "bus.h"
#include "errors.h"
#include "log.h"
#include "polkit.h"
#include "records.h"
#include "store-chain.h"
#include "store-copy.h"
#include "worker.h"

#define SMPL_IFACE_RECORDS	"org.smplaser.Laser1.Records"
#define COPIES_MAX		4	/* backups and exports at once */
#define BACKUP_STEP_PAGES	256	/* 1 MiB of 4 KiB pages a step */
#define EXPORT_STEP_ROWS	256
#define DAY_MS			(24LL * 3600 * 1000)
#define HEAD_RECHECK_MS		(3600LL * 1000)	/* the wall clock may be set meanwhile */

struct copy_call {
	struct smpl_job job;
	struct smpl_daemon *d;
	struct smpl_copies *owner;	/* NULL once answered at the daemon's stop */
	struct copy_call *next;
	bool started;			/* on the worker (after the records were written) */
	sd_bus_message *m;		/* the call, answered when done */
	uid_t uid;
	bool is_export;
	int fd;				/* the message's: valid while @m is held */
	int64_t since_ms;
	enum store_export_format format;
	struct store_copy *copy;	/* the worker's */
	int r;				/* of the last step */
	char msg[STORE_MSG_MAX];
};

struct smpl_copies {
	struct smpl_daemon *d;
	struct smpl_worker *worker;
	struct copy_call *calls;
	unsigned int n;
	bool stopping;
	sd_event_source *head_timer;
	int64_t head_day;		/* the UTC day the head was last logged */
};

/* ---- the chain head in the journal ----------------------------------------------- */

static int64_t utc_day(int64_t ms)
{
	return ms >= 0 ? ms / DAY_MS : (ms - DAY_MS + 1) / DAY_MS;
}

static void log_head(struct smpl_daemon *d, const char *when)
{
	struct store_chain_head head;
	char hex[STORE_CHAIN_HEX_LEN + 1];

	if (store_chain_head(d->reader, &head) < 0) {
		smpl_log(LOG_WARNING, NULL, NULL, "chain-head", "cannot read the records' hash "
			 "chain head: %s", store_errmsg(d->reader));
		return;
	}
	store_chain_hex(head.hash, hex);
	smpl_log(LOG_NOTICE, NULL, NULL, "chain-head", "records chain head %" PRId64 ":%s (%s)",
		 head.seq, hex, when);
}

/* Fires at the next UTC midnight (and at least hourly, for a clock set meanwhile). */
static int arm_head_timer(struct smpl_copies *cs)
{
	int64_t now = smpl_wall_ms(), next = (utc_day(now) + 1) * DAY_MS - now;

	if (next > HEAD_RECHECK_MS)
		next = HEAD_RECHECK_MS;
	if (next < 1000)
		next = 1000;
	return sd_event_source_set_time_relative(cs->head_timer, (uint64_t)next * 1000);
}

static int on_head_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct smpl_copies *cs = userdata;
	int64_t day = utc_day(smpl_wall_ms());

	(void)s, (void)usec;
	if (day != cs->head_day) {
		cs->head_day = day;
		log_head(cs->d, "daily");
	}
	(void)arm_head_timer(cs);
	return sd_event_source_set_enabled(cs->head_timer, SD_EVENT_ONESHOT);
}

/* ---- copies in steps on the worker ------------------------------------------------- */

static void copy_run(struct smpl_job *j)
{
	struct copy_call *c = container_of(j, struct copy_call, job);
	const char *dir = c->d->state_dir;

	if (!c->copy) {
		c->r = c->is_export ? store_export_begin(dir, c->fd, c->since_ms, c->format,
							 &c->copy, c->msg, sizeof(c->msg))
				    : store_backup_begin(dir, c->fd, &c->copy, c->msg,
							 sizeof(c->msg));
		if (c->r < 0)
			return;
	}
	c->r = store_copy_step(c->copy, c->is_export ? EXPORT_STEP_ROWS : BACKUP_STEP_PAGES);
	if (c->r < 0)
		snprintf(c->msg, sizeof(c->msg), "%s", store_copy_errmsg(c->copy));
}

static void copy_unlist(struct copy_call *c)
{
	struct smpl_copies *cs = c->owner;

	for (struct copy_call **p = cs ? &cs->calls : NULL; p && *p; p = &(*p)->next)
		if (*p == c) {
			*p = c->next;
			cs->n--;
			break;
		}
	c->owner = NULL;
}

static void copy_free(struct copy_call *c)
{
	copy_unlist(c);
	store_copy_free(c->copy);
	sd_bus_message_unref(c->m);
	free(c);
}

static const char *error_for(int r)
{
	switch (r) {
	case -EINVAL:
	case -EEXIST:
	case -EBADF:
		return SMPL_ERROR_INVALID_ARGUMENT;
	default:
		return NULL;
	}
}

static void copy_failed(struct copy_call *c, int r, const char *msg)
{
	struct smpl_daemon *d = c->d;
	const char *name = error_for(r);
	const char *what = c->is_export ? "export" : "backup";
	char detail[STORE_MSG_MAX + 32];

	snprintf(detail, sizeof(detail), "failed: %s", msg);
	smpl_audit(d, STORE_AUDIT_RECORDS, &c->uid, NULL, 0, what, detail);
	smpl_log_uid(LOG_WARNING, NULL, NULL, "records-copy", &c->uid,
		     "records %s by uid %u failed: %s", what, (unsigned int)c->uid, msg);
	if (name)
		(void)sd_bus_reply_method_errorf(c->m, name, "%s: %s", what, msg);
	else
		(void)sd_bus_reply_method_errnof(c->m, -r, "%s: %s", what, msg);
}

static void copy_finished(struct copy_call *c)
{
	struct smpl_daemon *d = c->d;
	_cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
	struct store_copy_info info;
	char hex[STORE_CHAIN_HEX_LEN + 1], head[STORE_CHAIN_HEX_LEN + 24], detail[256];
	int r;

	store_copy_info(c->copy, &info);
	store_chain_hex(info.head.hash, hex);
	snprintf(head, sizeof(head), "%" PRId64 ":%s", info.head.seq, hex);
	if (c->is_export)
		snprintf(detail, sizeof(detail), "%" PRId64 " treatments and %" PRId64 " audit "
			 "records since %" PRId64 " ms as %s, %" PRId64 " bytes; chain head %s",
			 info.treatments, info.audit, c->since_ms,
			 c->format == STORE_EXPORT_CSV ? "CSV" : "JSON", info.bytes, head);
	else
		snprintf(detail, sizeof(detail), "%" PRId64 " bytes; chain head %s", info.bytes,
			 head);
	smpl_audit(d, STORE_AUDIT_RECORDS, &c->uid, NULL, 0, c->is_export ? "export" : "backup",
		   detail);
	smpl_log_uid(LOG_NOTICE, NULL, NULL, "records-copy", &c->uid, "records %s by uid %u: %s",
		     c->is_export ? "exported" : "backed up", (unsigned int)c->uid, detail);
	r = sd_bus_message_new_method_return(c->m, &reply);
	if (r >= 0)
		r = sd_bus_message_append(reply, "a{sv}", 6,
					  "bytes", "t", (uint64_t)info.bytes,
					  "pages", "t", (uint64_t)info.pages,
					  "treatments", "t", (uint64_t)info.treatments,
					  "audit", "t", (uint64_t)info.audit,
					  "chain_seq", "t", (uint64_t)info.head.seq,
					  "chain_head", "s", hex);
	if (r >= 0)
		r = sd_bus_send(NULL, reply, NULL);
	if (r < 0)
		(void)sd_bus_reply_method_errnof(c->m, -r, "cannot answer: %s", strerror(-r));
}

/* On the loop: the next step, or the answer. */
static void copy_done(struct smpl_job *j)
{
	struct copy_call *c = container_of(j, struct copy_call, job);

	if (c->owner->stopping)
		copy_failed(c, -ESHUTDOWN, "smplaserd is stopping");
	else if (c->r < 0)
		copy_failed(c, c->r, c->msg);
	else if (c->r == 1)
		copy_finished(c);
	else {
		smpl_worker_submit(c->owner->worker, &c->job);
		return;
	}
	copy_free(c);
}

/* What happened before the call is in the copy: it starts once that is written. */
static void copy_after_writes(struct smpl_daemon *d, const struct smpl_records_call *rc,
			      void *userdata)
{
	struct copy_call *c = userdata;

	(void)d, (void)rc;
	if (!c->owner) {		/* answered already: the daemon stops */
		copy_free(c);
		return;
	}
	c->started = true;
	smpl_worker_submit(c->owner->worker, &c->job);
}

static int copy_start(struct smpl_daemon *d, sd_bus_message *m, uid_t uid, int fd,
		      bool is_export, int64_t since_ms, enum store_export_format format,
		      sd_bus_error *error)
{
	struct smpl_copies *cs = d->copies;
	struct copy_call *c;

	if (!cs || cs->stopping)
		return smpl_error_setf(error, SMPL_ERROR_BUSY, "smplaserd is stopping");
	if (cs->n >= COPIES_MAX)
		return smpl_error_setf(error, SMPL_ERROR_BUSY, "%u backups or exports are running: "
				       "try again when one is done", cs->n);
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->d = d;
	c->owner = cs;
	c->m = sd_bus_message_ref(m);
	c->uid = uid;
	c->fd = fd;
	c->is_export = is_export;
	c->since_ms = since_ms;
	c->format = format;
	c->job.run = copy_run;
	c->job.done = copy_done;
	c->next = cs->calls;
	cs->calls = c;
	cs->n++;
	smpl_records_barrier(d, copy_after_writes, c);
	return 1;
}

/* ---- the methods ------------------------------------------------------------------------ */

static int method_backup(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
	struct smpl_daemon *d = userdata;
	uid_t uid;
	int fd, r;

	r = sd_bus_message_read(m, "h", &fd);
	if (r < 0)
		return r;
	r = smpl_bus_authorize(d, m, SMPL_ACTION_RECORDS, &uid, error);
	if (r <= 0)
		return smpl_bus_not_now(r);
	return copy_start(d, m, uid, fd, false, 0, STORE_EXPORT_CSV, error);
}

static int method_export(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
	struct smpl_daemon *d = userdata;
	enum store_export_format format;
	const char *fmt;
	uint64_t since_usec;
	uid_t uid;
	int fd, r;

	r = sd_bus_message_read(m, "hts", &fd, &since_usec, &fmt);
	if (r < 0)
		return r;
	r = smpl_bus_authorize(d, m, SMPL_ACTION_RECORDS, &uid, error);
	if (r <= 0)
		return smpl_bus_not_now(r);
	if (strcmp(fmt, "csv") == 0)
		format = STORE_EXPORT_CSV;
	else if (strcmp(fmt, "json") == 0)
		format = STORE_EXPORT_JSON;
	else
		return smpl_error_setf(error, SMPL_ERROR_INVALID_ARGUMENT,
				       "format: \"csv\" or \"json\", not \"%.32s\"", fmt);
	if (since_usec > (uint64_t)INT64_MAX / 2)
		return smpl_error_setf(error, SMPL_ERROR_INVALID_ARGUMENT,
				       "since_usec: a time in microseconds since 1970");
	return copy_start(d, m, uid, fd, true, (int64_t)(since_usec / 1000), format, error);
}

static const sd_bus_vtable records_vtable[] = {
	SD_BUS_VTABLE_START(0),
	SD_BUS_METHOD_WITH_ARGS("Backup", SD_BUS_ARGS("h", file), SD_BUS_RESULT("a{sv}", info),
				method_backup, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD_WITH_ARGS("Export", SD_BUS_ARGS("h", out, "t", since_usec, "s", format),
				SD_BUS_RESULT("a{sv}", info), method_export,
				SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_VTABLE_END
};

int smpl_bus_records_setup(struct smpl_daemon *d)
{
	return sd_bus_add_object_vtable(d->bus, NULL, SMPL_ROOT_PATH, SMPL_IFACE_RECORDS,
					records_vtable, d);
}

/* ---- start and stop ----------------------------------------------------------------------- */

int smpl_copies_start(struct smpl_daemon *d)
{
	struct smpl_copies *cs = calloc(1, sizeof(*cs));
	int r;

	if (!cs)
		return -ENOMEM;
	cs->d = d;
	d->copies = cs;
	r = smpl_worker_new(d->event, "smpl-copy", d->inline_io, &cs->worker);
	if (r < 0)
		return r;
	cs->head_day = utc_day(smpl_wall_ms());
	log_head(d, "start");
	r = sd_event_add_time_relative(d->event, &cs->head_timer, CLOCK_MONOTONIC, 1000 * 1000,
				       1000 * 1000, on_head_timer, cs);
	if (r >= 0)
		r = arm_head_timer(cs);
	return r;
}

void smpl_copies_stop(struct smpl_daemon *d)
{
	struct smpl_copies *cs = d->copies;

	if (!cs)
		return;
	cs->stopping = true;		/* each copy's next done() answers and frees it */
	for (struct copy_call *c = cs->calls, *next; c; c = next) {
		next = c->next;
		if (c->started)
			continue;
		/* Still waiting for the records: answered now, freed by its barrier. */
		copy_failed(c, -ESHUTDOWN, "smplaserd is stopping");
		copy_unlist(c);
	}
	smpl_worker_free(cs->worker);	/* waits for the step running, if any */
	sd_event_source_disable_unref(cs->head_timer);
	free(cs);
	d->copies = NULL;
}
