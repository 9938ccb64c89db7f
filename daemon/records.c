/* SPDX-License-Identifier: MIT */
/* The daemon's way to its records: see records.h. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "daemon.h"
#include "log.h"
#include "records.h"
#include "spill.h"
#include "store-ops.h"
#include "store-pg.h"
#include "worker.h"

#define RETRY_MS		1000	/* while the store refuses: one try a second */
#define PULSES_MAX		65536	/* beyond, the store has been failing too long */
#define AUDIT_MAX		4096

struct pending_audit {
	struct pending_audit *next;
	struct store_audit a;
	bool has_uid;
	uid_t uid;
	bool replayed;			/* from the spill: it may be in the store already */
	char *op_name, *serial, *reason, *detail;
};

struct pending_end {
	struct pending_end *next;
	int64_t id;
	struct store_treatment_finish f;
};

/* What waits for the writer, on the loop. */
struct smpl_records {
	struct smpl_worker *writer;
	struct store_pulse *pulses;
	size_t n_pulses, cap_pulses;
	struct pending_end *ends;
	struct pending_audit *audits;
	size_t n_audits;
	unsigned int flushing;		/* flush jobs in the writer (in order) */
	struct smpl_spill *spill;
	bool spilled;			/* the spill file holds something */
	bool requeued;			/* a failed flush's records wait for the next one */
	/*
	 * The writer's own (its thread only): a flush failed and its records
	 * have not been written since.  Nothing is settled from a counter
	 * meanwhile: the pulses it would count are not in the store yet.
	 */
	bool writer_behind;
};

/* ---- the pending lists --------------------------------------------------------- */

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

static void audit_free(struct pending_audit *p)
{
	free(p->op_name);
	free(p->serial);
	free(p->reason);
	free(p->detail);
	free(p);
}

static struct pending_audit *audit_copy(const struct store_audit *a, const uid_t *uid)
{
	struct pending_audit *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	p->a = *a;
	p->has_uid = uid != NULL;
	p->uid = uid ? *uid : 0;
	p->op_name = dup_or_null(a->has_operator ? a->op.name : NULL);
	p->serial = dup_or_null(a->unit_serial);
	p->reason = dup_or_null(a->reason);
	p->detail = dup_or_null(a->detail);
	p->a.op.name = p->op_name;
	p->a.unit_serial = p->serial;
	p->a.reason = p->reason;
	p->a.detail = p->detail;
	return p;
}

/* @list appended to the end of *@head. */
#define APPEND(head, list) do {					\
	__typeof__(head) *_pp = &(head);			\
	while (*_pp)						\
		_pp = &(*_pp)->next;				\
	*_pp = (list);						\
} while (0)

static int add_pulses(struct smpl_records *rs, const struct store_pulse *p, size_t n)
{
	if (rs->n_pulses + n > rs->cap_pulses) {
		size_t cap = rs->cap_pulses ? rs->cap_pulses : 64;
		struct store_pulse *v;

		while (cap < rs->n_pulses + n)
			cap *= 2;
		if (cap > PULSES_MAX)
			return -ENOBUFS;
		v = realloc(rs->pulses, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		rs->pulses = v;
		rs->cap_pulses = cap;
	}
	memcpy(rs->pulses + rs->n_pulses, p, n * sizeof(*p));
	rs->n_pulses += n;
	return 0;
}

bool smpl_records_pending(const struct smpl_daemon *d)
{
	const struct smpl_records *rs = d->records;

	return rs && (rs->n_pulses || rs->ends || rs->audits || rs->flushing);
}

/* ---- the spill file ------------------------------------------------------------ */

struct spill_job {
	struct smpl_job job;
	struct smpl_daemon *d;
	char *body;			/* NULL: clear */
	int r;
};

static int visit_pulses(void *ctx, int (*cb)(const struct store_pulse *p, void *c), void *c)
{
	struct smpl_records *rs = ctx;

	for (size_t i = 0; i < rs->n_pulses; i++) {
		int r = cb(&rs->pulses[i], c);

		if (r)
			return r;
	}
	return 0;
}

static int visit_ends(void *ctx, int (*cb)(const struct smpl_spill_end *e, void *c), void *c)
{
	struct smpl_records *rs = ctx;

	for (struct pending_end *e = rs->ends; e; e = e->next) {
		struct smpl_spill_end se = { .treatment_id = e->id, .finish = e->f };
		int r = cb(&se, c);

		if (r)
			return r;
	}
	return 0;
}

static int visit_audit(void *ctx, int (*cb)(const struct store_audit *a, void *c), void *c)
{
	struct smpl_records *rs = ctx;

	for (struct pending_audit *p = rs->audits; p; p = p->next) {
		int r = cb(&p->a, c);

		if (r)
			return r;
	}
	return 0;
}

static void spill_run(struct smpl_job *j)
{
	struct spill_job *s = container_of(j, struct spill_job, job);
	struct smpl_records *rs = s->d->records;

	s->r = s->body ? smpl_spill_write_body(rs->spill, s->body) : smpl_spill_clear(rs->spill);
}

static void spill_done(struct smpl_job *j)
{
	struct spill_job *s = container_of(j, struct spill_job, job);

	if (s->r < 0)
		smpl_log(LOG_CRIT, NULL, NULL, "spill-failed",
			 "cannot keep the records the store refuses in the spill file: %s",
			 strerror(-s->r));
	free(s->body);
	free(s);
}

/* What the store has not taken yet, made durable in the spill file (by the writer). */
static void spill(struct smpl_daemon *d)
{
	struct smpl_records *rs = d->records;
	const struct smpl_spill_source src = {
		.ctx = rs, .visit_pulses = visit_pulses, .visit_ends = visit_ends,
		.visit_audit = visit_audit,
	};
	struct spill_job *s;

	if (!rs->spill)
		return;
	s = calloc(1, sizeof(*s));
	if (!s || !(s->body = smpl_spill_snapshot(&src))) {
		free(s);
		smpl_log(LOG_CRIT, NULL, NULL, "spill-failed", "out of memory for the spill file");
		return;
	}
	s->d = d;
	s->job.run = spill_run;
	s->job.done = spill_done;
	rs->spilled = true;
	smpl_worker_submit(rs->writer, &s->job);
}

static void spill_clear(struct smpl_daemon *d)
{
	struct smpl_records *rs = d->records;
	struct spill_job *s;

	if (!rs->spilled || !(s = calloc(1, sizeof(*s))))
		return;
	s->d = d;
	s->job.run = spill_run;
	s->job.done = spill_done;
	rs->spilled = false;
	smpl_worker_submit(rs->writer, &s->job);
}

/* ---- failing and working again --------------------------------------------- */

static void records_failed(struct smpl_daemon *d, const char *why)
{
	d->store_retry_ms = smpl_now_ms(d) + RETRY_MS;
	if (!d->store_failed) {
		smpl_log(LOG_CRIT, NULL, NULL, "store-failed",
			 "the records store fails: %s; disarming every unit", why);
		d->store_failed = true;
		d->upcalls->records_failed(d, "the records store fails");
	}
	spill(d);
}

void smpl_daemon_records_failed(struct smpl_daemon *d)
{
	records_failed(d, "a write was refused");
}

/* The integrity check found the records corrupt (see the end): nothing arms. */
static bool records_corrupt;

static void records_work(struct smpl_daemon *d)
{
	if (d->store_failed && !records_corrupt)
		smpl_log(LOG_NOTICE, NULL, NULL, "store", "the records store works again");
	d->store_failed = records_corrupt;	/* a corrupt store takes writes, arms nothing */
	spill_clear(d);
}

/* ---- the flush ------------------------------------------------------------------ */

struct flush_job {
	struct smpl_job job;
	struct smpl_daemon *d;
	struct store_pulse *pulses;
	size_t n_pulses;
	bool pulses_done;
	struct pending_end *ends;	/* those not done yet, after run */
	struct pending_audit *audits;	/* the same */
	bool carries_requeued;		/* a failed flush's records, again */
	int r;
	char msg[STORE_MSG_MAX];
};

static void operator_of(uid_t uid, char *buf, size_t len, struct store_operator *op)
{
	struct passwd pw, *res = NULL;
	char pwbuf[1024];

	/* In the writer: a directory service that is slow stalls no loop. */
	if (getpwuid_r(uid, &pw, pwbuf, sizeof(pwbuf), &res) == 0 && res)
		snprintf(buf, len, "%s", res->pw_name);
	else
		snprintf(buf, len, "uid %u", (unsigned int)uid);
	op->uid = uid;
	op->name = buf;
}

static int flush_pulses(const struct store_ops *o, void *st, struct flush_job *f)
{
	int r = 0;

	for (size_t i = 0; i < f->n_pulses && r == 0; i++) {
		r = o->add_pulse(st, &f->pulses[i]);
		if (r == -ENOENT) {	/* no such treatment: nothing else can take it */
			smpl_log(LOG_CRIT, NULL, NULL, "store-failed",
				 "pulse %" PRIu32 " names no treatment (%" PRId64 "): only here",
				 f->pulses[i].shot, f->pulses[i].treatment_id);
			r = 0;
		}
	}
	if (r == 0)
		r = o->flush(st);
	o->drop_pending(st);		/* on failure they go back to the loop */
	return r;
}

static int flush_ends(const struct store_ops *o, void *st, struct flush_job *f)
{
	while (f->ends) {
		struct pending_end *e = f->ends;
		int r = o->treatment_end(st, e->id, &e->f);

		if (r == -ERANGE) {
			/*
			 * Its end counter is below its arming: the unit's counter went
			 * back, never believed (S3).  It ends unknown (counted emitted,
			 * with its recorded pulses); the store keeps working.
			 */
			smpl_log(LOG_ERR, NULL, NULL, "counter-went-back", "%s: ended unknown",
				 o->errmsg(st));
			e->f.outcome = STORE_OUTCOME_UNKNOWN;
			e->f.shot_at_end_known = false;
			r = o->treatment_end(st, e->id, &e->f);
		}
		if (r < 0 && r != -EALREADY && r != -ENOENT)
			return r;
		f->ends = e->next;
		free(e);
	}
	return 0;
}

static int flush_audits(const struct store_ops *o, void *st, struct flush_job *f)
{
	char name[64];

	while (f->audits) {
		struct pending_audit *p = f->audits;
		struct store_audit a = p->a;
		int r;

		if (p->has_uid) {
			a.has_operator = true;
			operator_of(p->uid, name, sizeof(name), &a.op);
		}
		r = p->replayed ? o->audit_once(st, &a) : o->audit(st, &a);
		if (r < 0)
			return r;
		f->audits = p->next;
		audit_free(p);
	}
	return 0;
}

/* Pulses first, then the treatments to close, then the audit records. */
static void flush_run(struct smpl_job *j)
{
	struct flush_job *f = container_of(j, struct flush_job, job);
	const struct store_ops *o = f->d->rec_ops;
	void *st = f->d->rec_w;

	f->r = f->n_pulses ? flush_pulses(o, st, f) : 0;
	f->pulses_done = f->r == 0;
	if (f->r == 0)
		f->r = flush_ends(o, st, f);
	if (f->r == 0)
		f->r = flush_audits(o, st, f);
	if (f->r < 0) {
		snprintf(f->msg, sizeof(f->msg), "%s", o->errmsg(st));
		f->d->records->writer_behind = true;
	} else if (f->carries_requeued) {
		f->d->records->writer_behind = false;
	}
}

static void flush_done(struct smpl_job *j)
{
	struct flush_job *f = container_of(j, struct flush_job, job);
	struct smpl_daemon *d = f->d;
	struct smpl_records *rs = d->records;

	rs->flushing--;
	if (f->r == 0) {
		free(f->pulses);
		free(f);
		records_work(d);
		return;
	}
	/* Back in front of what came meanwhile: the order is kept. */
	if (!f->pulses_done && f->n_pulses) {
		struct store_pulse *later = rs->pulses;
		size_t n_later = rs->n_pulses;

		rs->pulses = f->pulses;
		rs->n_pulses = rs->cap_pulses = f->n_pulses;
		f->pulses = NULL;
		if (n_later && add_pulses(rs, later, n_later) < 0)
			smpl_log(LOG_CRIT, NULL, NULL, "store-failed",
				 "%zu pulses wait for the store: the oldest are only in the journal",
				 n_later);
		free(later);
	}
	APPEND(f->ends, rs->ends);
	rs->ends = f->ends;
	APPEND(f->audits, rs->audits);
	rs->audits = f->audits;
	rs->requeued = true;
	records_failed(d, f->msg);
	free(f->pulses);
	free(f);
}

void smpl_records_flush(struct smpl_daemon *d)
{
	struct smpl_records *rs = d->records;
	struct flush_job *f;

	if (!rs || (!rs->n_pulses && !rs->ends && !rs->audits))
		return;
	if (d->store_failed && smpl_now_ms(d) < d->store_retry_ms)
		return;
	f = calloc(1, sizeof(*f));
	if (!f)
		return;
	f->d = d;
	f->job.run = flush_run;
	f->job.done = flush_done;
	f->pulses = rs->pulses;
	f->n_pulses = rs->n_pulses;
	f->ends = rs->ends;
	f->audits = rs->audits;
	rs->pulses = NULL;
	rs->n_pulses = rs->cap_pulses = 0;
	rs->ends = NULL;
	rs->audits = NULL;
	rs->n_audits = 0;
	f->carries_requeued = rs->requeued;
	rs->requeued = false;
	rs->flushing++;
	smpl_worker_submit(rs->writer, &f->job);
}

/* Kept for the store: while it refuses, into the spill file at once too. */
static void kept(struct smpl_daemon *d)
{
	if (d->records && d->store_failed)
		spill(d);
}

void smpl_records_pulse(struct smpl_daemon *d, const struct store_pulse *p)
{
	if (!d->records || add_pulses(d->records, p, 1) < 0)
		smpl_log(LOG_CRIT, NULL, NULL, "store-failed",
			 "pulse %" PRIu32 " cannot wait for the store: only in the journal", p->shot);
	kept(d);
}

void smpl_records_audit(struct smpl_daemon *d, const struct store_audit *a, const uid_t *uid)
{
	struct smpl_records *rs = d->records;
	struct pending_audit *p;

	if (!rs || rs->n_audits >= AUDIT_MAX || !(p = audit_copy(a, uid))) {
		smpl_log(LOG_CRIT, a->unit_serial, NULL, "audit-lost",
			 "audit backlog full: a %s record is only in the journal",
			 store_audit_kind_name(a->kind));
		return;
	}
	APPEND(rs->audits, p);
	rs->n_audits++;
	kept(d);
}

void smpl_records_end_treatment(struct smpl_daemon *d, int64_t id,
				const struct store_treatment_finish *f)
{
	struct pending_end *e = d->records ? calloc(1, sizeof(*e)) : NULL;

	if (!e) {
		smpl_log(LOG_CRIT, NULL, NULL, "store-failed",
			 "treatment %" PRId64 ": out of memory to close it; its counter will", id);
		return;
	}
	e->id = id;
	e->f = *f;
	APPEND(d->records->ends, e);
	kept(d);
	smpl_records_flush(d);
}

/* ---- writes the caller waits for -------------------------------------------- */

enum write_op {
	W_BEGIN_TREATMENT, W_BEGIN_SESSION, W_END_SESSION, W_UNIT_SEEN, W_SETTLE,
	W_MARK_EMITTING, W_COUNTER_RESET, W_SYNC, W_MISSING_ACK,
	W_ENDPOINT, W_FOLLOW_UP, W_CLEAR_HOLD,	/* the clinical record (issue 16) */
};

struct write_job {
	struct smpl_job job;
	struct smpl_daemon *d;
	enum write_op op;
	smpl_records_then then;
	void *userdata;
	struct smpl_records_call result;
	/* arguments, owned */
	struct store_treatment_start t;
	uid_t uid;
	char *s1, *s2, *s3;		/* strings of the arguments */
	int64_t id, when_ms;
	uint32_t counter;
	bool counter_known;		/* W_BEGIN_SESSION: counter is the unit's at the start */
	enum store_session_state state;
	bool waiting;			/* settle: the unit's records still wait on the loop */
	bool pulses_waiting;		/* ... and among them pulses: no counter is judged */
	struct store_endpoint_in endpoint;	/* W_ENDPOINT: strings in s1.. */
	struct store_follow_up_in follow_up;	/* W_FOLLOW_UP: its strings owned */
};

struct unsettled {
	int64_t id;
	enum store_outcome outcome;
};

struct unsettled_list {
	struct unsettled *v;
	size_t n, cap;
};

static int collect_unsettled(const struct store_treatment *t, void *ctx)
{
	struct unsettled_list *l = ctx;

	if (l->n == l->cap)
		return 1;
	l->v[l->n].id = t->id;
	l->v[l->n++].outcome = t->outcome;
	return 0;
}

static int settle_unit(const struct store_ops *o, void *st, struct write_job *w)
{
	struct unsettled list[64];
	struct unsettled_list l = { list, 0, 64 };
	int r;

	/* A counter is judged against every pulse reported, not those stored so far (S3). */
	if (w->d->records->writer_behind || w->pulses_waiting) {
		snprintf(w->result.msg, sizeof(w->result.msg),
			 "pulses wait for the store: nothing is settled before they are in it");
		return -EAGAIN;
	}
	r = o->counter_check(st, w->s1, w->counter);
	if (r == -ERANGE) {
		w->result.counter_back = true;
		snprintf(w->result.counter_msg, sizeof(w->result.counter_msg), "%s",
			 o->errmsg(st));
	} else if (r < 0) {
		return r;
	}
	r = o->unsettled_treatments(st, w->s1, collect_unsettled, &l);
	if (r < 0)
		return r;
	for (size_t i = 0; i < l.n; i++) {
		if (list[i].id == w->id)
			continue;	/* the unit's own open treatment */
		r = o->reconcile_treatment(st, list[i].id, w->counter, w->when_ms);
		if (r == 0 || r == -EALREADY || (r == -ESTALE && list[i].outcome != STORE_OUTCOME_OPEN)) {
			w->result.settled++;
			continue;
		}
		if (r == -ESTALE) {
			/* armed on an earlier counter: never settled from this one */
		} else if (r == -ERANGE) {
			w->result.counter_back = true;
			snprintf(w->result.counter_msg, sizeof(w->result.counter_msg), "%s",
				 o->errmsg(st));
		} else if (list[i].outcome != STORE_OUTCOME_OPEN) {
			return r;	/* again at the next read */
		}
		if (list[i].outcome == STORE_OUTCOME_OPEN) {
			/* It cannot be settled: ended unknown, counted emitted, the unit free. */
			struct store_treatment_finish f = {
				.outcome = STORE_OUTCOME_UNKNOWN, .end_ms = w->when_ms,
			};

			r = o->treatment_end(st, list[i].id, &f);
			if (r < 0 && r != -EALREADY)
				return r;
		}
	}
	return l.n == sizeof(list) / sizeof(list[0]) ? -EAGAIN : 0;
}

/*
 * Before settling, the counter against everything the records hold (issue
 * 15.11): only when nothing the unit did still waits to be written, nor its
 * own treatment is open; else again at a later read.  Settling first would
 * give an open treatment of a restored older copy every shot since.
 */
static int check_missing(const struct store_ops *o, void *st, struct write_job *w)
{
	int r;

	if (!o->records_missing_check)
		return 0;	/* not on this backend (store-ops.h) */
	if (w->id || w->waiting || w->d->records->writer_behind) {
		w->result.missing_unchecked = true;
		return 0;
	}
	r = o->records_missing_check(st, w->s1, w->counter, w->when_ms);
	if (r == 1) {
		w->result.records_missing = true;
		snprintf(w->result.missing_msg, sizeof(w->result.missing_msg), "%s",
			 o->errmsg(st));
	}
	return r < 0 ? r : 0;
}

/* The clinical record (issue 16): -EOPNOTSUPP on a backend that does not keep it. */
static int clinical_write(const struct store_ops *o, void *st, struct write_job *w)
{
	struct store_operator op;
	char name[64];

	if (!o->endpoint_add || !o->follow_up_add || !o->hold_clear) {
		snprintf(w->result.msg, sizeof(w->result.msg), "the clinical record is not "
			 "kept on the %s records yet", o->name);
		return -EOPNOTSUPP;
	}
	operator_of(w->uid, name, sizeof(name), &op);
	switch (w->op) {
	case W_ENDPOINT:
		return o->endpoint_add(st, &w->endpoint, &op, &w->result.id);
	case W_FOLLOW_UP:
		return o->follow_up_add(st, &w->follow_up, &op, &w->result.id);
	case W_CLEAR_HOLD:
		return o->hold_clear(st, w->s1, w->s2, w->s3, &op, w->when_ms, &w->result.id);
	default:
		return -EINVAL;
	}
}

static void write_run(struct smpl_job *j)
{
	struct write_job *w = container_of(j, struct write_job, job);
	const struct store_ops *o = w->d->rec_ops;
	void *st = w->d->rec_w;
	struct store_operator op;
	unsigned int waiting;
	char name[64];
	int r = -EINVAL;

	switch (w->op) {
	case W_BEGIN_TREATMENT:
		operator_of(w->uid, name, sizeof(name), &w->t.op);
		r = o->treatment_begin(st, &w->t, &w->result.id);
		break;
	case W_BEGIN_SESSION:
		operator_of(w->uid, name, sizeof(name), &op);
		r = o->session_begin(st, w->s1, w->s2, &op, w->when_ms,
				     w->counter_known ? &w->counter : NULL, &w->result.id);
		break;
	case W_END_SESSION:
		r = o->session_end(st, w->id, w->state, w->s1, w->when_ms);
		if (r == -EALREADY)
			r = 0;
		break;
	case W_UNIT_SEEN:
		r = o->unit_seen(st, w->s1, w->s2, w->s3, w->when_ms);
		break;
	case W_SETTLE:
		r = check_missing(o, st, w);
		if (r == 0)
			r = settle_unit(o, st, w);
		break;
	case W_MISSING_ACK:
		if (!o->records_missing_ack) {
			snprintf(w->result.msg, sizeof(w->result.msg), "records-missing "
				 "is not checked on the %s records", o->name);
			r = -EOPNOTSUPP;
			break;
		}
		operator_of(w->uid, name, sizeof(name), &op);
		r = o->records_missing_ack(st, w->s1, w->counter, &op, w->when_ms);
		if (r > 0)
			r = 0;
		break;
	case W_MARK_EMITTING:
		r = o->mark_emitting(st, w->id, w->when_ms);
		break;
	case W_SYNC:
		/* everything asked before it is done; and in the clinic's records? */
		r = o->sync(st, &waiting);
		break;
	case W_COUNTER_RESET:
		operator_of(w->uid, name, sizeof(name), &op);
		r = o->counter_reset(st, w->s1, w->counter, &op, w->when_ms);
		if (r == -EALREADY)
			r = 0;
		break;
	case W_ENDPOINT:
	case W_FOLLOW_UP:
	case W_CLEAR_HOLD:
		r = clinical_write(o, st, w);
		break;
	}
	w->result.r = r;
	if (r < 0 && !w->result.msg[0])
		snprintf(w->result.msg, sizeof(w->result.msg), "%s", o->errmsg(st));
}

static void write_done(struct smpl_job *j)
{
	struct write_job *w = container_of(j, struct write_job, job);

	if (w->op == W_SYNC && w->d->store_failed) {
		w->result.r = -EIO;
		snprintf(w->result.msg, sizeof(w->result.msg), "the records store fails");
	}
	if (smpl_records_remote(w->d) && w->op != W_END_SESSION && w->op != W_UNIT_SEEN &&
	    w->op != W_MARK_EMITTING)
		smpl_records_reachable(w->d, w->result.r, w->result.msg);
	if (w->then)
		w->then(w->d, &w->result, w->userdata);
	else if (w->result.r < 0)
		smpl_log(LOG_ERR, NULL, NULL, "store-failed", "a record was not written: %s",
			 w->result.msg);
	free((char *)w->t.patch);
	free((char *)w->t.unit_firmware);
	free((char *)w->follow_up.patient);
	free((char *)w->follow_up.patch);
	free((char *)w->follow_up.note);
	free(w->s1);
	free(w->s2);
	free(w->s3);
	free(w);
}

static struct write_job *write_new(struct smpl_daemon *d, enum write_op op,
				   smpl_records_then then, void *userdata)
{
	struct write_job *w = calloc(1, sizeof(*w));

	if (!w)
		return NULL;
	w->d = d;
	w->op = op;
	w->then = then;
	w->userdata = userdata;
	w->job.run = write_run;
	w->job.done = write_done;
	return w;
}

/* Submits @w, or calls back at once with -ENOMEM if it could not be made. */
static void write_submit(struct smpl_daemon *d, struct write_job *w, bool ok,
			 smpl_records_then then, void *userdata)
{
	struct smpl_records_call oom = { .r = -ENOMEM, .msg = "out of memory" };

	if (w && ok && d->records) {
		smpl_worker_submit(d->records->writer, &w->job);
		return;
	}
	if (w) {
		w->then = NULL;
		write_done(&w->job);
	}
	if (then)
		then(d, &oom, userdata);
}

void smpl_records_begin_treatment(struct smpl_daemon *d, const struct store_treatment_start *t,
				  uid_t uid, smpl_records_then then, void *userdata)
{
	struct write_job *w = write_new(d, W_BEGIN_TREATMENT, then, userdata);
	bool ok = w != NULL;

	if (ok) {
		w->t = *t;
		w->uid = uid;
		w->t.patch = dup_or_null(t->patch);
		w->t.unit_firmware = dup_or_null(t->unit_firmware);
		ok = w->t.patch && w->t.unit_firmware;
	}
	/* Pulses and audit records asked for before it go first. */
	smpl_records_flush(d);
	write_submit(d, w, ok, then, userdata);
}

void smpl_records_begin_session(struct smpl_daemon *d, const char *patient, const char *serial,
				uid_t uid, int64_t now_ms, const uint32_t *start_counter,
				smpl_records_then then, void *userdata)
{
	struct write_job *w = write_new(d, W_BEGIN_SESSION, then, userdata);
	bool ok = w && (w->s1 = strdup(patient)) && (w->s2 = strdup(serial));

	if (w) {
		w->uid = uid;
		w->when_ms = now_ms;
		w->counter_known = start_counter != NULL;
		w->counter = start_counter ? *start_counter : 0;
	}
	write_submit(d, w, ok, then, userdata);
}

void smpl_records_end_session(struct smpl_daemon *d, int64_t id, enum store_session_state state,
			      const char *notes, int64_t now_ms)
{
	struct write_job *w = write_new(d, W_END_SESSION, NULL, NULL);
	bool ok = w && (!notes || (w->s1 = strdup(notes)));

	if (w) {
		w->id = id;
		w->state = state;
		w->when_ms = now_ms;
	}
	write_submit(d, w, ok, NULL, NULL);
}

void smpl_records_unit_seen(struct smpl_daemon *d, const char *serial, const char *model,
			    const char *firmware, int64_t now_ms)
{
	struct write_job *w = write_new(d, W_UNIT_SEEN, NULL, NULL);
	bool ok = w && (w->s1 = strdup(serial)) && (w->s2 = strdup(model)) &&
		  (w->s3 = strdup(firmware));

	if (w)
		w->when_ms = now_ms;
	write_submit(d, w, ok, NULL, NULL);
}

void smpl_records_settle(struct smpl_daemon *d, const char *serial, uint32_t counter,
			 int64_t open_id, smpl_records_then then, void *userdata)
{
	struct write_job *w = write_new(d, W_SETTLE, then, userdata);
	bool ok = w && (w->s1 = strdup(serial));

	if (w) {
		w->counter = counter;
		w->id = open_id;
		w->when_ms = smpl_wall_ms();
	}
	smpl_records_flush(d);		/* its late pulses first */
	if (w && d->records) {		/* throttled while the store fails: they wait */
		w->pulses_waiting = d->records->n_pulses;
		w->waiting = d->records->n_pulses || d->records->ends;
	}
	write_submit(d, w, ok, then, userdata);
}

void smpl_records_mark_emitting(struct smpl_daemon *d, int64_t treatment_id, int64_t when_ms,
				smpl_records_then then, void *userdata)
{
	struct write_job *w = write_new(d, W_MARK_EMITTING, then, userdata);

	if (w) {
		w->id = treatment_id;
		w->when_ms = when_ms;
	}
	smpl_records_flush(d);		/* its first pulse with it */
	write_submit(d, w, w != NULL, then, userdata);
}

void smpl_records_counter_reset(struct smpl_daemon *d, const char *serial, uint32_t counter,
				uid_t uid, smpl_records_then then, void *userdata)
{
	struct write_job *w = write_new(d, W_COUNTER_RESET, then, userdata);
	bool ok = w && (w->s1 = strdup(serial));

	if (w) {
		w->counter = counter;
		w->uid = uid;
		w->when_ms = smpl_wall_ms();
	}
	smpl_records_flush(d);		/* the pulses reported before: the epoch they end */
	write_submit(d, w, ok, then, userdata);
}

void smpl_records_missing_ack(struct smpl_daemon *d, const char *serial, uint32_t counter,
			      uid_t uid, smpl_records_then then, void *userdata)
{
	struct write_job *w = write_new(d, W_MISSING_ACK, then, userdata);
	bool ok = w && (w->s1 = strdup(serial));

	if (w) {
		w->counter = counter;
		w->uid = uid;
		w->when_ms = smpl_wall_ms();
	}
	write_submit(d, w, ok, then, userdata);
}

/* ---- the clinical record (issue 16) ------------------------------------------ */

void smpl_records_endpoint(struct smpl_daemon *d, const struct store_endpoint_in *e, uid_t uid,
			   smpl_records_then then, void *userdata)
{
	struct write_job *w = write_new(d, W_ENDPOINT, then, userdata);
	bool ok = w && (w->s1 = strdup(e->patch)) && (w->s2 = strdup(e->endpoint)) &&
		  (w->s3 = strdup(e->note ? e->note : ""));

	if (ok) {
		w->uid = uid;
		w->endpoint = *e;
		w->endpoint.patch = w->s1;
		w->endpoint.endpoint = w->s2;
		w->endpoint.note = w->s3;
	}
	smpl_records_flush(d);		/* the pulses that say its treatment emitted first */
	write_submit(d, w, ok, then, userdata);
}

void smpl_records_follow_up(struct smpl_daemon *d, const struct store_follow_up_in *f,
			    uid_t uid, smpl_records_then then, void *userdata)
{
	struct write_job *w = write_new(d, W_FOLLOW_UP, then, userdata);
	bool ok = w != NULL;

	if (ok) {
		w->uid = uid;
		w->follow_up = *f;
		/* The adverse names are the core's constants (clinical.c): not copied. */
		w->follow_up.patient = strdup(f->patient);
		w->follow_up.patch = strdup(f->patch);
		w->follow_up.note = strdup(f->note ? f->note : "");
		ok = w->follow_up.patient && w->follow_up.patch && w->follow_up.note;
	}
	write_submit(d, w, ok, then, userdata);
}

void smpl_records_clear_hold(struct smpl_daemon *d, const char *patient, const char *patch,
			     const char *note, uid_t uid, smpl_records_then then,
			     void *userdata)
{
	struct write_job *w = write_new(d, W_CLEAR_HOLD, then, userdata);
	bool ok = w && (w->s1 = strdup(patient)) && (w->s2 = strdup(patch)) &&
		  (w->s3 = strdup(note ? note : ""));

	if (w) {
		w->uid = uid;
		w->when_ms = smpl_wall_ms();
	}
	write_submit(d, w, ok, then, userdata);
}

bool smpl_records_busy(const struct smpl_daemon *d)
{
	return smpl_records_pending(d) || smpl_worker_pending(d->records->writer) > 0;
}

void smpl_records_sync(struct smpl_daemon *d, smpl_records_then then, void *userdata)
{
	struct write_job *w = write_new(d, W_SYNC, then, userdata);

	if (d->store_failed)
		d->store_retry_ms = 0;	/* a try now, whatever the throttle */
	smpl_records_flush(d);
	write_submit(d, w, w != NULL, then, userdata);
}

/* ---- opening, the spill replayed, closing ---------------------------------------- */

static void replay_pulse(void *ctx, const struct store_pulse *p)
{
	(void)add_pulses(ctx, p, 1);
}

static void replay_end(void *ctx, const struct smpl_spill_end *e)
{
	struct smpl_records *rs = ctx;
	struct pending_end *pe = calloc(1, sizeof(*pe));

	if (!pe)
		return;
	pe->id = e->treatment_id;
	pe->f = e->finish;
	APPEND(rs->ends, pe);
}

static void replay_audit(void *ctx, const struct store_audit *a)
{
	struct smpl_records *rs = ctx;
	struct pending_audit *p = audit_copy(a, NULL);

	if (!p)
		return;
	p->replayed = true;
	APPEND(rs->audits, p);
	rs->n_audits++;
}

static void open_spill(struct smpl_daemon *d)
{
	struct smpl_records *rs = d->records;
	const struct smpl_spill_sink sink = {
		.ctx = rs, .pulse = replay_pulse, .end = replay_end, .audit = replay_audit,
	};
	char why[256] = "";
	int n;

	if (smpl_spill_open(d->state_dir, &rs->spill, why, sizeof(why)) < 0) {
		smpl_log(LOG_WARNING, NULL, NULL, "spill-failed",
			 "no spill file: %s; records the store refuses live in memory only", why);
		return;
	}
	n = smpl_spill_read(rs->spill, &sink);
	if (n < 0)
		smpl_log(LOG_CRIT, NULL, NULL, "spill-failed", "the spill file is damaged (%s)",
			 strerror(-n));
	if (n <= 0)
		return;
	smpl_log(LOG_NOTICE, NULL, NULL, "spill",
		 "%d record(s) kept in the spill file when the store refused them: replayed", n);
	rs->spilled = true;
	smpl_records_flush(d);
}

bool smpl_records_remote(const struct smpl_daemon *d)
{
	return d->rec_ops == &store_ops_pg;
}

bool smpl_records_clinical(const struct smpl_daemon *d)
{
	return d->rec_ops && d->rec_ops->endpoint_add;
}

static int open_sqlite(struct smpl_daemon *d, char *msg, size_t msg_len)
{
	int r;

	r = store_open(&d->store, d->state_dir, msg, msg_len);
	if (r < 0)
		return r;
	d->rec_ops = &store_ops_sqlite;
	d->rec_w = d->store;
	/* Before the writer runs: this thread may still use its connection. */
	r = store_sessions_interrupt_open(d->store, smpl_wall_ms());
	if (r > 0)
		smpl_log(LOG_NOTICE, NULL, NULL, "reconcile",
			 "%d session(s) left open by a crash marked interrupted", r);
	r = store_open_reader(&d->reader, d->state_dir, msg, msg_len);
	d->rec_r = d->reader;
	return r < 0 ? r : 0;
}

/*
 * The clinic's records (store-pg.h): the writer (with the workstation's
 * journal and its shipper) and a reader for the reader worker.  A server
 * that does not answer now is no reason not to start: arming waits for it.
 */
static int open_postgresql(struct smpl_daemon *d, char *msg, size_t msg_len)
{
	const struct store_pg_config c = {
		.conninfo = d->cfg.records.conninfo,
		.workstation = d->cfg.records.workstation,
		.state_dir = d->state_dir,
		.clock_skew_ms = (int64_t)d->cfg.safety.rtc_max_skew_s * 1000,
	};
	struct store_pg *w = NULL, *rd = NULL;
	int64_t newest = 0;
	int r;

	r = store_pg_open(&w, &c, msg, msg_len);
	if (r < 0)
		return r;
	d->rec_ops = &store_ops_pg;
	d->rec_w = w;
	if (msg[0]) {
		smpl_log(LOG_WARNING, NULL, NULL, "records",
			 "%s; nothing arms until the server answers", msg);
		d->records_unreachable = true;
		msg[0] = '\0';
	} else if (store_ops_pg.newest_record_ms(w, &newest) > 0) {
		d->newest_arming_ms = newest;	/* S8, before any unit starts */
	}
	/* Sessions this workstation left open (a crash): in order, through the journal. */
	r = store_ops_pg.sessions_interrupt_open(w, smpl_wall_ms());
	if (r < 0) {
		snprintf(msg, msg_len, "%s", store_ops_pg.errmsg(w));
		return r;
	}
	smpl_log(LOG_NOTICE, NULL, NULL, "records", "the clinic's records on PostgreSQL check a "
		 "unit's counter ahead of them (records-missing) at arming only, and do not count "
		 "those shots on any patch (docs/records-postgresql.md)");
	r = store_pg_open_reader(&rd, &c, msg, msg_len);
	if (r < 0)
		return r;
	d->rec_r = rd;
	r = smpl_records_reader_start(d);
	if (r < 0)
		snprintf(msg, msg_len, "cannot start the records reader: %s", strerror(-r));
	return r;
}

int smpl_records_open(struct smpl_daemon *d, char *msg, size_t msg_len)
{
	struct smpl_records *rs;
	int r;

	if (!d->upcalls || !d->upcalls->records_failed ||
	    !d->upcalls->records_corrupt) {	/* nobody to disarm the units */
		snprintf(msg, msg_len, "the records have no one to tell of a failure");
		return -EINVAL;
	}
	rs = calloc(1, sizeof(*rs));
	if (!rs)
		return -ENOMEM;
	d->records = rs;
	if (d->cfg.records.backend == SMPL_RECORDS_POSTGRESQL)
		r = open_postgresql(d, msg, msg_len);
	else
		r = open_sqlite(d, msg, msg_len);
	if (r < 0)
		return r;
	r = smpl_worker_new(d->event, "smpl-records", d->inline_io, &rs->writer);
	if (r < 0) {
		snprintf(msg, msg_len, "cannot start the records writer: %s", strerror(-r));
		return r;
	}
	open_spill(d);
	return 0;
}

static void unwatch_records(void);

void smpl_records_close(struct smpl_daemon *d)
{
	struct smpl_records *rs = d->records;

	unwatch_records();
	if (!rs)
		return;
	if (rs->writer) {
		d->store_retry_ms = 0;			/* a last try, whatever the throttle */
		smpl_records_flush(d);
		smpl_worker_drain(rs->writer);
		if (smpl_records_pending(d))
			spill(d);			/* survives the stop */
		smpl_worker_free(rs->writer);
	}
	smpl_spill_close(rs->spill);
	free(rs->pulses);
	while (rs->ends) {
		struct pending_end *e = rs->ends;

		rs->ends = e->next;
		free(e);
	}
	while (rs->audits) {
		struct pending_audit *p = rs->audits;

		rs->audits = p->next;
		audit_free(p);
	}
	free(rs);
	d->records = NULL;
	smpl_records_reader_stop(d);
	if (d->rec_ops) {
		d->rec_ops->close(d->rec_r);
		d->rec_ops->close(d->rec_w);
	} else {
		store_close(d->reader);
		store_close(d->store);
	}
	d->rec_r = d->rec_w = NULL;
	d->reader = d->store = NULL;
}

/* ---- reading one's own writes --------------------------------------------------- */

struct smpl_barrier {
	struct smpl_barrier *next;
	smpl_records_then then;
	void *userdata;
};

static void barrier_go(struct smpl_daemon *d, struct smpl_barrier *b)
{
	smpl_records_sync(d, b->then, b->userdata);
	free(b);
}

void smpl_records_barrier(struct smpl_daemon *d, smpl_records_then then, void *userdata)
{
	struct smpl_barrier *b = calloc(1, sizeof(*b));

	if (!b) {
		smpl_records_sync(d, then, userdata);
		return;
	}
	b->then = then;
	b->userdata = userdata;
	/* The clinic's records (PostgreSQL) may lack what waits in the journal: always sync. */
	if (d->closing == 0 && d->records && !smpl_records_busy(d) && !smpl_records_remote(d)) {
		const struct smpl_records_call now = { .r = d->store_failed ? -EIO : 0 };

		free(b);
		then(d, &now, userdata);	/* nothing in flight: read now */
		return;
	}
	if (d->closing == 0) {
		barrier_go(d, b);
		return;
	}
	b->next = d->barriers;		/* after the treatments being closed */
	d->barriers = b;
}

void smpl_records_closing(struct smpl_daemon *d, int delta)
{
	d->closing += delta;
	while (d->closing == 0 && d->barriers) {
		struct smpl_barrier *b = d->barriers;

		d->barriers = b->next;
		barrier_go(d, b);
	}
}

/* ---- the integrity check after READY (main.c runs it in a thread) ---------------- */

/* The check's verdict, written by its thread, read on the loop. */
static int corrupt_pipe[2] = { -1, -1 };
static sd_event_source *corrupt_source;

static int on_records_corrupt(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
	struct smpl_daemon *d = userdata;
	char why[STORE_MSG_MAX + 1];
	ssize_t n = read(fd, why, sizeof(why) - 1);

	(void)s, (void)revents;
	if (n <= 0)
		return 0;
	why[n] = '\0';
	smpl_log(LOG_CRIT, NULL, NULL, "store-corrupt", "the records database fails its "
		 "integrity check: %s; every unit faulted, nothing arms until smplaserd "
		 "starts on sound records", why);
	records_corrupt = true;
	d->store_failed = true;
	d->upcalls->records_corrupt(d, why);
	return 0;
}

int smpl_records_watch_check(struct smpl_daemon *d)
{
	if (pipe2(corrupt_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
		return -errno;
	return sd_event_add_io(d->event, &corrupt_source, corrupt_pipe[0], EPOLLIN,
			       on_records_corrupt, d);
}

void smpl_records_corrupt(struct smpl_daemon *d, const char *why)
{
	size_t len = why ? strnlen(why, STORE_MSG_MAX) : 0;

	(void)d;
	if (!len) {
		why = "the integrity check failed";
		len = strlen(why);
	}
	/* One write of less than PIPE_BUF: whole, whatever the loop is doing. */
	if (write(corrupt_pipe[1], why, len) < 0)
		smpl_log(LOG_CRIT, NULL, NULL, "store-corrupt", "the records database fails "
			 "its integrity check (%s), and the daemon cannot be told: %s", why,
			 strerror(errno));
}

static void unwatch_records(void)
{
	corrupt_source = sd_event_source_disable_unref(corrupt_source);
	for (int i = 0; i < 2; i++) {
		if (corrupt_pipe[i] >= 0)
			close(corrupt_pipe[i]);
		corrupt_pipe[i] = -1;
	}
}
