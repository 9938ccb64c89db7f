/* SPDX-License-Identifier: MIT */
/*
 * Whether a patient's patch may be treated (DESIGN S2, S8): the rules
 * (rules.h) on the records (store_patch_facts), with the clock checked first.
 * CheckPatch and SelectPatch ask it; the arming transaction asks it again
 * at the arming time on the records as they are then (smpl_arm_decide), so
 * what was true at SelectPatch is never trusted at Arm.
 */
#ifndef SMPLASER_DAEMON_ELIGIBILITY_H
#define SMPLASER_DAEMON_ELIGIBILITY_H

#include "daemon.h"

/* What the rules said, and what the session used of the patch's pulses. */
struct smpl_patch_verdict {
	struct smpl_eligibility e;	/* eligible, when, test spot, max_pulses, reason */
	uint32_t pulses_used;		/* on this patch in this session already */
	uint32_t pulse_limit;		/* the tighter of the protocol's and the rules'; 0 none */
};

/*
 * The verdict for @patch of @patient at @now_ms from the records' @facts.
 * 0 treat; -EAGAIN not eligible (cooldown, test-spot review: e.reason);
 * -EDQUOT the patch's pulses for this session are used up.
 */
int smpl_patch_decide(const struct smpl_config *cfg, const struct store_patch_facts *facts,
		      const char *patch, int64_t now_ms, struct smpl_patch_verdict *out);

/*
 * The newest arming in the records (S8: the clock may not be earlier) given
 * to every unit's core: another unit or daemon may have armed since.
 * Returns it, 0 if none.
 */
int64_t smpl_refresh_newest_arming(struct smpl_daemon *d);

/*
 * The host clock checked against every unit's RTC and the newest arming
 * (S8).  @u: that unit's RTC must have been read; NULL: every unit whose
 * RTC is known.  0, or -ETIMEDOUT with @v (ClockUnreliable).
 */
int smpl_clock_check(struct smpl_daemon *d, struct smpl_unit *u, struct smpl_verdict *v);

/*
 * CheckPatch, SelectPatch: the records read (off the loop with PostgreSQL),
 * then the clock, then the verdict now.  @session_id 0: no session (every
 * treatment is history).  @then gets 0 with the verdict filled (eligible or
 * not), or a negative errno with @error set (ClockUnreliable,
 * RecordsUnavailable when the clinic's records cannot be reached, DeviceFault
 * when they cannot be read, InvalidArgument); @error is freed after @then.
 * @then may run before smpl_check_patch() returns (SQLite).  @u (may be
 * NULL) must live until @then.
 */
typedef void (*smpl_patch_then)(struct smpl_daemon *d, int r, const struct smpl_patch_verdict *v,
				sd_bus_error *error, void *userdata);
void smpl_check_patch(struct smpl_daemon *d, struct smpl_unit *u, const char *patient,
		      const char *patch, int64_t session_id, smpl_patch_then then,
		      void *userdata);

/*
 * The D-Bus error of a verdict that is not eligible: the rule that decided
 * (CooldownActive, FollowUpRequired, PatchClear, PatchOnHold), or
 * ParameterOutOfRange when the session used the patch's pulses.
 */
const char *smpl_refusal_error(const struct smpl_patch_verdict *pv);

/* The arming transaction's decision (store_decide_fn); @ctx a struct smpl_arm_decision. */
struct smpl_arm_decision {
	const struct smpl_config *cfg;
	const char *patch;
	struct smpl_patch_verdict verdict;	/* out */
};
int smpl_arm_decide(const struct store_patch_facts *facts, int64_t armed_ms, void *ctx,
		    char *why, size_t why_len);

#endif /* SMPLASER_DAEMON_ELIGIBILITY_H */
