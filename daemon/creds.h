/* SPDX-License-Identifier: MIT */
/*
 * Who is calling, without a synchronous round trip to the bus (issue 12).
 *
 * The uid of a caller is asked once, asynchronously (GetConnectionUnixUser),
 * and kept for its unique name (a unique name never changes hands).  A
 * handler asking for a uid not known yet gets 0: its call is suspended and
 * dispatched again when the answer is there (as polkit.c does), so it must
 * ask before it acts.  On a direct connection (no bus) the peer's
 * credentials come from the socket.
 *
 * And the owner of a session leaving the bus, watched with an asynchronous
 * match (sd_bus_track asks GetNameOwner synchronously when it starts).
 */
#ifndef SMPLASER_DAEMON_CREDS_H
#define SMPLASER_DAEMON_CREDS_H

#include <sys/types.h>

#include <systemd/sd-bus.h>

struct smpl_creds;

int smpl_creds_new(sd_bus *bus, struct smpl_creds **ret);
void smpl_creds_free(struct smpl_creds *c);

/*
 * 1 and *@uid: known.  0: being asked; the call is dispatched again later
 * (the handler returns 1).  Negative: the bus cannot tell (the caller left).
 */
int smpl_creds_uid(struct smpl_creds *c, sd_bus_message *m, uid_t *uid);

struct smpl_owner_watch;
/*
 * @gone(@userdata) once, on the loop, when @name leaves the bus (or if it had
 * already left when the watch started).  NULL @name (a direct connection):
 * never.
 */
int smpl_owner_watch_new(sd_bus *bus, const char *name, void (*gone)(void *userdata),
			 void *userdata, struct smpl_owner_watch **ret);
void smpl_owner_watch_free(struct smpl_owner_watch *w);

#endif /* SMPLASER_DAEMON_CREDS_H */
