/* SPDX-License-Identifier: MIT */
/*
 * The daemon's way to its records (DESIGN S3): pulses committed every
 * SMPL_FLUSH_PERIOD_MS and at every disarm; while the store cannot take
 * them, every unit disarmed, nothing armed, and what was accepted kept in
 * memory and in the spill file (spill.h) until it can; the last records at
 * stop.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

#include "daemon.h"
#include "log.h"
#include "spill.h"

/* Treatments whose closing the store refused (busy, I/O): try again. */
static int close_unclosed(struct smpl_daemon *d)
{
	int failed = 0;

	for (struct smpl_unit *u = d->units; u; u = u->next) {
		int r;

		if (!u->unclosed_id)
			continue;
		r = store_treatment_end(d->store, u->unclosed_id, &u->unclosed);
		if (r == 0 || r == -EALREADY || r == -ENOENT) {
			smpl_log(LOG_NOTICE, smpl_unit_label(u), NULL, "store",
				 "treatment %" PRId64 " closed", u->unclosed_id);
			u->unclosed_id = 0;
		} else {
			failed = r;
		}
	}
	return failed;
}

/* Pulses first, then treatments left unclosed, then the audit backlog. */
static int flush_all(struct smpl_daemon *d)
{
	int r = 0;

	if (store_pending_pulses(d->store) > 0)
		r = store_flush(d->store);
	if (r == 0)
		r = close_unclosed(d);
	if (r == 0)
		r = smpl_audit_retry(d);
	return r;
}

/* ---- the spill file ----------------------------------------------------------- */

static int visit_pulses(void *ctx, int (*cb)(const struct store_pulse *p, void *c), void *c)
{
	struct smpl_daemon *d = ctx;

	return store_visit_pending(d->store, cb, c);
}

static int visit_ends(void *ctx, int (*cb)(const struct smpl_spill_end *e, void *c), void *c)
{
	struct smpl_daemon *d = ctx;

	for (struct smpl_unit *u = d->units; u; u = u->next) {
		struct smpl_spill_end e = { .treatment_id = u->unclosed_id, .finish = u->unclosed };
		int r = u->unclosed_id ? cb(&e, c) : 0;

		if (r)
			return r;
	}
	return 0;
}

static int visit_audit(void *ctx, int (*cb)(const struct store_audit *a, void *c), void *c)
{
	(void)ctx;
	return smpl_audit_visit_backlog(cb, c);
}

/* What the store has not taken, durable in the spill file now. */
static void spill(struct smpl_daemon *d)
{
	const struct smpl_spill_source src = {
		.ctx = d, .visit_pulses = visit_pulses, .visit_ends = visit_ends,
		.visit_audit = visit_audit,
	};
	int r;

	if (!d->spill)
		return;
	r = smpl_spill_write(d->spill, &src);
	if (r < 0)
		smpl_log(LOG_CRIT, NULL, NULL, "spill-failed",
			 "cannot keep the records the store refuses in the spill file: %s",
			 strerror(-r));
	else
		d->spilled = true;
}

void smpl_daemon_records_pending(struct smpl_daemon *d)
{
	spill(d);
}

static void spill_done(struct smpl_daemon *d)
{
	if (!d->spilled)
		return;
	if (smpl_spill_clear(d->spill) == 0)
		d->spilled = false;
}

static void replay_pulse(void *ctx, const struct store_pulse *p)
{
	struct smpl_daemon *d = ctx;

	if (store_add_pulse(d->store, p) < 0)
		smpl_log(LOG_ERR, NULL, NULL, "spill", "a spilled pulse (shot %" PRIu32 ") "
			 "cannot be queued: %s", p->shot, store_errmsg(d->store));
}

static void replay_end(void *ctx, const struct smpl_spill_end *e)
{
	struct smpl_daemon *d = ctx;
	int r = store_treatment_end(d->store, e->treatment_id, &e->finish);

	/* Not now: its unit's counter settles it when the unit is probed. */
	if (r < 0 && r != -EALREADY && r != -ENOENT)
		smpl_log(LOG_ERR, NULL, NULL, "spill", "treatment %" PRId64 " not closed from "
			 "the spill file: %s", e->treatment_id, store_errmsg(d->store));
}

static void replay_audit(void *ctx, const struct store_audit *a)
{
	(void)ctx;
	smpl_audit_keep(a, true);
}

int smpl_daemon_open_spill(struct smpl_daemon *d)
{
	const struct smpl_spill_sink sink = {
		.ctx = d, .pulse = replay_pulse, .end = replay_end, .audit = replay_audit,
	};
	char why[256] = "";
	int n, r;

	r = smpl_spill_open(d->state_dir, &d->spill, why, sizeof(why));
	if (r < 0) {
		smpl_log(LOG_WARNING, NULL, NULL, "spill-failed",
			 "no spill file: %s; records the store refuses live in memory only", why);
		return 0;
	}
	n = smpl_spill_read(d->spill, &sink);
	if (n < 0)
		smpl_log(LOG_CRIT, NULL, NULL, "spill-failed", "the spill file is damaged (%s)",
			 strerror(-n));
	if (n <= 0)
		return 0;
	smpl_log(LOG_NOTICE, NULL, NULL, "spill",
		 "%d record(s) kept in the spill file when the store refused them: replayed", n);
	d->spilled = true;
	d->store_retry_ms = 0;
	smpl_daemon_flush(d);
	return 0;
}

/* ---- flushing ------------------------------------------------------------------- */

/*
 * S3: pulses are committed every SMPL_FLUSH_PERIOD_MS and at every disarm.
 * While the store cannot take them every unit is disarmed and nothing arms;
 * what it could not take is kept (in memory and the spill file) and retried
 * once a second (each try may wait for the database's busy timeout).
 */
void smpl_daemon_flush(struct smpl_daemon *d)
{
	uint64_t now = smpl_now_ms(d);

	if (d->store_failed && now < d->store_retry_ms)
		return;
	if (flush_all(d) == 0) {
		if (d->store_failed)
			smpl_log(LOG_NOTICE, NULL, NULL, "store", "the records store works again");
		d->store_failed = false;
		spill_done(d);
		return;
	}
	smpl_daemon_records_failed(d);
}

void smpl_daemon_records_failed(struct smpl_daemon *d)
{
	d->store_retry_ms = smpl_now_ms(d) + 1000;
	spill(d);
	if (d->store_failed)
		return;
	smpl_log(LOG_CRIT, NULL, NULL, "store-failed",
		 "the records store fails: %s; disarming every unit", store_errmsg(d->store));
	d->store_failed = true;
	smpl_units_disarm_all(d, SMPL_REASON_FAULT_LATCHED, "the records store fails");
	spill(d);	/* with the disarms' own records */
}

void smpl_daemon_close_records(struct smpl_daemon *d)
{
	if (!d->store)
		return;
	smpl_units_disarm_all(d, SMPL_REASON_DAEMON_STOPPING, "the daemon is stopping");
	while (d->sessions)
		(void)smpl_session_end(d->sessions, STORE_SESSION_INTERRUPTED,
				       "the daemon stopped", NULL, NULL);
	d->store_retry_ms = 0;		/* a last try, whatever the throttle */
	smpl_daemon_flush(d);
	if (d->store_failed)
		spill(d);		/* what the store could not take survives the stop */
	smpl_audit_discard();
}

void smpl_daemon_free(struct smpl_daemon *d)
{
	while (d->units) {
		struct smpl_unit *u = d->units;

		d->units = u->next;
		smpl_unit_free(u);
	}
	smpl_polkit_free(d->polkit);
	sd_bus_flush_close_unref(d->bus);
	sd_event_source_disable_unref(d->flush_timer);
	sd_event_unref(d->event);
	store_close(d->store);
	smpl_spill_close(d->spill);
	free(d->state_dir);
}
