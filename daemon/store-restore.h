/* SPDX-License-Identifier: MIT */
/*
 * Records older than the units (issue 15.11, DESIGN S2, S3): a copy restored
 * from an older backup, or a unit that fired on a workstation whose records
 * are not these, shows as a unit whose shot counter is ahead of everything
 * the records hold for it.  Those shots were fired on patches the records do
 * not know, so they count as an emission, at the time they are found, on every
 * patch of the unit's last session in the records (the conservative guess:
 * no cooldown gets shorter), and the unit may not arm until an authorized
 * user acknowledges it (audited; store_records_missing_ack).  A session that
 * began when the counter already showed those shots is not that session
 * (store_session_begin_at): the one before it is.
 *
 * The records remember each unit's counter from the first time it is
 * compared (a baseline), so a unit new to the records is not taken for one
 * with records missing.  A copy older than the unit's first use in these
 * records cannot tell: see README, "Backups and restoring".
 */
#ifndef SMPLASER_STORE_RESTORE_H
#define SMPLASER_STORE_RESTORE_H

#include <stdbool.h>
#include <stdint.h>

#include "store.h"

/*
 * A treatment left unsettled (a crash, the unit gone) may own this many
 * seconds of shots at its rate beyond its last recorded pulse; see
 * store-restore.c.  Compare before settling (its settling takes every shot).
 */
#define STORE_MISSING_WINDOW_S		3

/* Operator of the treatments the missing shots count as (nobody knows who). */
#define STORE_MISSING_OPERATOR_UID	65534
#define STORE_MISSING_OPERATOR_NAME	"unknown (records missing)"

struct store_records_missing {
	uint32_t records_shot;		/* the highest shot the records held */
	uint32_t counter;		/* the unit's counter */
	int64_t session_id;		/* the session they count on (0: none) */
	unsigned int patches;		/* treatments recorded for the missing shots */
	bool found_now;			/* false: found earlier, not acknowledged yet */
};

/*
 * Compare the unit's @counter (read while it was disarmed, before its
 * unsettled treatments are settled from it: store_reconcile_treatment) with
 * the records, in one transaction:
 *   0  the counter is not ahead (a unit new to the records gets its baseline);
 *   1  shots beyond the records, not acknowledged: found now (recorded as
 *      above, with a FAULT audit record "records-missing") or earlier; the
 *      message (store_errmsg) starts with "records-missing:" and says it all;
 *   <0 the store failed.
 * @out may be NULL.
 */
int store_records_missing_check(struct store *st, const char *unit_serial, uint32_t counter,
				int64_t now_ms, struct store_records_missing *out);

/*
 * An authorized user acknowledged it (the caller audits who): the unit may
 * arm again.  Returns how many findings were acknowledged (0: none stood).
 */
int store_records_missing_ack(struct store *st, const char *unit_serial,
			      const struct store_operator *op, int64_t now_ms);

#endif /* SMPLASER_STORE_RESTORE_H */
