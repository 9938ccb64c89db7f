/* SPDX-License-Identifier: MIT */
/*
 * Queries of the records (records.h): on the loop from the SQLite reader,
 * or, with the clinic's PostgreSQL, from a reader worker with its own
 * connection, so that nothing on the loop waits on the network (issue 12).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "log.h"
#include "records.h"
#include "store-ops.h"
#include "worker.h"

enum read_kind { READ_FACTS, READ_HISTORY, READ_CALL };

struct read_job {
	struct smpl_job job;
	struct smpl_daemon *d;
	enum read_kind kind;
	char *patient, *patch;
	int64_t session_id;
	smpl_facts_then facts_then;
	smpl_history_then history_then;
	smpl_read_run call_run;
	smpl_read_done call_done;
	void *userdata;
	struct smpl_records_facts facts;
	struct smpl_records_history history;
	struct smpl_treatments copy;
};

static void read_facts_now(struct smpl_daemon *d, void *h, const char *patient,
			   const char *patch, int64_t session_id, struct smpl_records_facts *f)
{
	const struct store_ops *o = d->rec_ops;
	int r;

	f->r = o->patch_facts(h, patient, patch, session_id, &f->facts);
	if (f->r < 0) {
		snprintf(f->msg, sizeof(f->msg), "%s", o->errmsg(h));
		return;
	}
	r = o->newest_record_ms(h, &f->newest_ms);
	f->newest_known = r >= 0;
	if (r == 0)
		f->newest_ms = 0;
}

/* ---- the history: copied out of the worker ------------------------------------- */

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

int smpl_treatments_add(const struct store_treatment *t, void *ctx)
{
	struct smpl_treatments *c = ctx;
	struct store_treatment *n;

	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 16;
		struct store_treatment *v = realloc(c->v, cap * sizeof(*v));

		if (!v) {
			c->oom = true;
			return 1;
		}
		c->v = v;
		c->cap = cap;
	}
	n = &c->v[c->n++];
	*n = *t;
	n->patient = dup_or_null(t->patient);
	n->patch = dup_or_null(t->patch);
	n->unit_serial = dup_or_null(t->unit_serial);
	n->unit_firmware = dup_or_null(t->unit_firmware);
	n->op.name = dup_or_null(t->op.name);
	n->workstation = dup_or_null(t->workstation);
	if ((t->patient && !n->patient) || (t->patch && !n->patch) ||
	    (t->unit_serial && !n->unit_serial) || (t->unit_firmware && !n->unit_firmware) ||
	    (t->op.name && !n->op.name) || (t->workstation && !n->workstation))
		c->oom = true;
	return c->oom;
}

void smpl_treatments_free(struct smpl_treatments *c)
{
	for (size_t i = 0; i < c->n; i++) {
		struct store_treatment *t = &c->v[i];

		free((char *)t->patient);
		free((char *)t->patch);
		free((char *)t->unit_serial);
		free((char *)t->unit_firmware);
		free((char *)t->op.name);
		free((char *)t->workstation);
	}
	free(c->v);
}

/* ---- the reader worker (PostgreSQL) ------------------------------------------------ */

static void read_run(struct smpl_job *j)
{
	struct read_job *rj = container_of(j, struct read_job, job);
	struct smpl_daemon *d = rj->d;
	int r;

	if (rj->kind == READ_FACTS) {
		read_facts_now(d, d->rec_r, rj->patient, rj->patch, rj->session_id, &rj->facts);
		return;
	}
	if (rj->kind == READ_CALL) {
		rj->call_run(d->rec_ops, d->rec_r, rj->userdata);
		return;
	}
	r = d->rec_ops->patient_history(d->rec_r, rj->patient, smpl_treatments_add, &rj->copy);
	if (r >= 0 && rj->copy.oom)
		r = -ENOMEM;
	rj->history.r = r < 0 ? r : 0;
	if (r < 0)
		snprintf(rj->history.msg, sizeof(rj->history.msg), "%s",
			 r == -ENOMEM ? "out of memory" : d->rec_ops->errmsg(d->rec_r));
	rj->history.n = rj->copy.n;
	rj->history.v = rj->copy.v;
}

/* On the loop: what the server said of itself is news for everyone. */
void smpl_records_reachable(struct smpl_daemon *d, int r, const char *msg)
{
	bool down = r == -ENOTCONN;

	if (down != d->records_unreachable)
		smpl_log(down ? LOG_WARNING : LOG_NOTICE, NULL, NULL, "records",
			 down ? "the clinic's records cannot be read: %s"
			      : "the clinic's records can be read again%s", down ? msg : "");
	d->records_unreachable = down;
}

static void read_done(struct smpl_job *j)
{
	struct read_job *rj = container_of(j, struct read_job, job);
	struct smpl_daemon *d = rj->d;

	if (rj->kind == READ_CALL) {
		rj->call_done(d, rj->userdata);
	} else if (rj->kind == READ_FACTS) {
		smpl_records_reachable(d, rj->facts.r, rj->facts.msg);
		if (rj->facts.newest_known && rj->facts.newest_ms > d->newest_arming_ms)
			d->newest_arming_ms = rj->facts.newest_ms;
		rj->facts_then(d, &rj->facts, rj->userdata);
	} else {
		smpl_records_reachable(d, rj->history.r, rj->history.msg);
		rj->history_then(d, &rj->history, rj->userdata);
		smpl_treatments_free(&rj->copy);
	}
	free(rj->patient);
	free(rj->patch);
	free(rj);
}

static struct read_job *job_new(struct smpl_daemon *d, enum read_kind kind, const char *patient,
				const char *patch)
{
	struct read_job *rj = calloc(1, sizeof(*rj));

	if (!rj)
		return NULL;
	rj->d = d;
	rj->kind = kind;
	rj->patient = strdup(patient);
	rj->patch = patch ? strdup(patch) : NULL;
	if (!rj->patient || (patch && !rj->patch)) {
		free(rj->patient);
		free(rj->patch);
		free(rj);
		return NULL;
	}
	rj->job.run = read_run;
	rj->job.done = read_done;
	return rj;
}

/* ---- the entry points --------------------------------------------------------------- */

void smpl_records_read_facts(struct smpl_daemon *d, const char *patient, const char *patch,
			     int64_t session_id, smpl_facts_then then, void *userdata)
{
	struct smpl_records_facts f = { 0 };
	struct read_job *rj;

	if (!d->rec_reader) {
		read_facts_now(d, d->rec_r, patient, patch, session_id, &f);
		then(d, &f, userdata);
		return;
	}
	rj = job_new(d, READ_FACTS, patient, patch);
	if (!rj) {
		f.r = -ENOMEM;
		snprintf(f.msg, sizeof(f.msg), "out of memory");
		then(d, &f, userdata);
		return;
	}
	rj->session_id = session_id;
	rj->facts_then = then;
	rj->userdata = userdata;
	smpl_worker_submit(d->rec_reader, &rj->job);
}

void smpl_records_read_history(struct smpl_daemon *d, const char *patient,
			       smpl_history_then then, void *userdata)
{
	struct smpl_records_history hist = { 0 };
	struct smpl_treatments c = { 0 };
	struct read_job *rj;
	int r;

	if (!d->rec_reader) {
		r = d->rec_ops->patient_history(d->rec_r, patient, smpl_treatments_add, &c);
		if (r >= 0 && c.oom)
			r = -ENOMEM;
		hist.r = r < 0 ? r : 0;
		if (r < 0)
			snprintf(hist.msg, sizeof(hist.msg), "%s",
				 r == -ENOMEM ? "out of memory" : d->rec_ops->errmsg(d->rec_r));
		hist.n = c.n;
		hist.v = c.v;
		then(d, &hist, userdata);
		smpl_treatments_free(&c);
		return;
	}
	rj = job_new(d, READ_HISTORY, patient, NULL);
	if (!rj) {
		hist.r = -ENOMEM;
		snprintf(hist.msg, sizeof(hist.msg), "out of memory");
		then(d, &hist, userdata);
		return;
	}
	rj->history_then = then;
	rj->userdata = userdata;
	smpl_worker_submit(d->rec_reader, &rj->job);
}

int smpl_records_read_call(struct smpl_daemon *d, smpl_read_run run, smpl_read_done done,
			   void *ctx)
{
	struct read_job *rj;

	if (!d->rec_reader) {
		/* SQLite: at once on its reader */
		run(d->rec_ops, d->rec_r, ctx);
		done(d, ctx);
		return 0;
	}
	rj = job_new(d, READ_CALL, "", NULL);
	if (!rj)
		return -ENOMEM;
	rj->call_run = run;
	rj->call_done = done;
	rj->userdata = ctx;
	smpl_worker_submit(d->rec_reader, &rj->job);
	return 0;
}

int smpl_records_reader_start(struct smpl_daemon *d)
{
	return smpl_worker_new(d->event, "smpl-reader", d->inline_io, &d->rec_reader);
}

void smpl_records_reader_stop(struct smpl_daemon *d)
{
	smpl_worker_free(d->rec_reader);	/* its jobs answered first */
	d->rec_reader = NULL;
}
