/* SPDX-License-Identifier: MIT */
/*
 * Authorization of privileged D-Bus calls (DESIGN section 5, S6).
 *
 * System bus: polkit is asked asynchronously
 * (org.freedesktop.PolicyKit1.Authority.CheckAuthorization, subject
 * ("system-bus-name", {"name": sender})).  The method call is suspended and
 * re-dispatched when polkit answers; the handler then runs again from the top
 * and smpl_polkit_check() gives the answer.  So a handler must call it before
 * doing anything.  No polkit on the bus means deny, except for uid 0.
 *
 * Session bus (demo, tests): only the daemon's own uid may act.
 */
#ifndef SMPLASER_DAEMON_POLKIT_H
#define SMPLASER_DAEMON_POLKIT_H

#include <stdbool.h>
#include <sys/types.h>

#include <systemd/sd-bus.h>

#define SMPL_ACTION_TREAT	"org.smplaser.treat"
#define SMPL_ACTION_CONFIGURE	"org.smplaser.configure"
#define SMPL_ACTION_ACKNOWLEDGE	"org.smplaser.acknowledge"
#define SMPL_ACTION_RECORDS	"org.smplaser.records"
#define SMPL_ACTION_DOCUMENT	"org.smplaser.document"	/* the clinical record (issue 16) */

struct smpl_polkit;

/*
 * @use_polkit: system bus.  @allow_root: uid 0 may act when polkit is not
 * on the bus.  @same_uid: on a session bus, the daemon's own uid may act
 * (else nobody may).
 */
int smpl_polkit_new(sd_bus *bus, bool use_polkit, bool allow_root, bool same_uid,
		    struct smpl_polkit **ret);
void smpl_polkit_free(struct smpl_polkit *p);

/*
 * How long a call waits for polkit's answer (default
 * SMPL_POLKIT_TIMEOUT_S_DEFAULT).  When it passes, the call is denied, for
 * uid 0 too (a hung polkit is not an absent one), the denial goes through
 * the denied hook like any other, and polkit's late answer finds nobody
 * waiting for it (the pending call is gone).
 */
#define SMPL_POLKIT_TIMEOUT_S_DEFAULT	20
void smpl_polkit_set_timeout(struct smpl_polkit *p, unsigned int seconds);

/*
 * @uid is the caller's (creds.h).  Returns 1: authorized, go on.  0: the
 * call is suspended until polkit answers; the handler returns 1 (a reply
 * will follow).  Negative: denied (@error says which action for which uid)
 * or failed.
 */
int smpl_polkit_check(struct smpl_polkit *p, sd_bus_message *call,
		      const char *action, uid_t uid, sd_bus_error *error);

/*
 * Called for every denial that is not a repeat: the same uid denied the same
 * action again within SMPL_POLKIT_DENIAL_REPEAT_S seconds is neither
 * journaled nor recorded, so a caller cannot flood the records or the journal
 * with refused calls.
 */
#define SMPL_POLKIT_DENIAL_REPEAT_S	10
typedef void (*smpl_polkit_denied_fn)(uid_t uid, const char *action,
				      const char *message, void *userdata);
void smpl_polkit_on_denied(struct smpl_polkit *p, smpl_polkit_denied_fn fn,
			   void *userdata);


#endif
