/* SPDX-License-Identifier: MIT */
/*
 * What a treatment session does (session.c): it starts on a unit, selects a
 * patch, confirms eyewear, ends; it belongs to the connection that opened it
 * (S6).  Its data (struct smpl_session) lives with its unit in unit.h.
 */
#ifndef SMPLASER_DAEMON_SESSION_H
#define SMPLASER_DAEMON_SESSION_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "store.h"
#include "unit.h"

struct smpl_daemon;
struct smpl_unit;
struct smpl_owner_watch;


/* --- sessions (session.c) ------------------------------------------------- */
/* StartSession: 1 (answered when the record is written) or a negative errno with @error. */
int smpl_session_new(struct smpl_unit *u, sd_bus_message *m, const char *patient,
		     uid_t uid, sd_bus_error *error);
struct smpl_session *smpl_session_by_path(struct smpl_daemon *d, const char *path);
/*
 * S6: a session belongs to the connection that opened it.  1 when @m comes
 * from it; 0 while its caller's uid is being asked (the call comes again);
 * otherwise NotAuthorized naming the rule (audited as a refusal).
 */
int smpl_session_check_owner(struct smpl_session *s, sd_bus_message *m, const char *what,
			     sd_bus_error *error);
const char *smpl_session_state_name(const struct smpl_session *s);
/* Something about @s may have changed: tell the observer. */
void smpl_session_changed(struct smpl_session *s);
/* SelectPatch: 1 (answered once the unit was read) or a negative errno with @error. */
int smpl_session_select_patch(struct smpl_session *s, sd_bus_message *m, const char *patch,
			      uid_t uid, sd_bus_error *error);
int smpl_session_confirm_eyewear(struct smpl_session *s, uid_t uid,
				 sd_bus_error *error);
/* End: disarm, record, drop the object.  @s is freed.  @uid NULL: the daemon ended it. */
int smpl_session_end(struct smpl_session *s, enum store_session_state state,
		     const char *notes, const uid_t *uid, sd_bus_error *error);


/* --- the endpoint of each treated patch (issue 16; session.c) ------------- */
/*
 * The patches of @s, but @except, whose treatment emitted without an
 * endpoint since: how many, and their names ("crown, occipital") in @buf.
 */
unsigned int smpl_session_endpoints_missing(const struct smpl_session *s, const char *except,
					    char *buf, size_t len);
/*
 * EndpointMissing (audited) when smpl_session_endpoints_missing() finds
 * one; @what the refused call ("End", "SelectPatch crown").  0 or -errno.
 */
int smpl_session_refuse_missing_endpoint(struct smpl_session *s, const char *except,
					 uid_t uid, const char *what, sd_bus_error *error);
/*
 * RecordEndpoint (session-endpoint.c): 1 (answered once recorded) or a
 * negative errno with @error.
 */
int smpl_session_record_endpoint(struct smpl_session *s, sd_bus_message *m, const char *patch,
				 const char *endpoint, const char *note, uid_t uid,
				 sd_bus_error *error);

#endif /* SMPLASER_DAEMON_SESSION_H */
