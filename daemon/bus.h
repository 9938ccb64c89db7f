/* SPDX-License-Identifier: MIT */
/* The D-Bus objects of smplaserd (bus-manager.c, bus-unit.c, bus-session.c). */
#ifndef SMPLASER_DAEMON_BUS_H
#define SMPLASER_DAEMON_BUS_H

#include "daemon.h"
#include "session.h"
#include "unit.h"

/* Publishes the objects, installs d->observer, takes the name (bus-manager.c). */
int smpl_bus_setup(struct smpl_daemon *d);

/*
 * Authorization for a privileged call: 1 go on (@uid set), 0 the call is
 * suspended until polkit answers (the handler returns 1), negative denied.
 */
int smpl_bus_authorize(struct smpl_daemon *d, sd_bus_message *m, const char *action,
		       uid_t *uid, sd_bus_error *error);

/* What a handler returns for smpl_bus_authorize()'s answer r <= 0. */
static inline int smpl_bus_not_now(int r)
{
	return r == 0 ? 1 : r;
}

/* The arguments of an sd-bus property getter, for every object's getters. */
#define SMPL_PROPERTY_ARGS sd_bus *bus, const char *path, const char *interface, \
	const char *property, sd_bus_message *reply, void *userdata, sd_bus_error *error
#define SMPL_UNUSED_PROPERTY_ARGS (void)bus, (void)path, (void)interface, \
	(void)property, (void)error

/*
 * Node enumerators build their NULL-terminated list with these:
 * smpl_bus_nodes_add() appends a copy of @path (-ENOMEM), smpl_bus_nodes_take()
 * hands the list (an empty one if nothing was added) to sd-bus, and
 * smpl_bus_nodes_free() drops it on failure.
 */
int smpl_bus_nodes_add(char ***list, size_t *n, const char *path);
int smpl_bus_nodes_take(char ***list, char ***nodes);
void smpl_bus_nodes_free(char **list);

int smpl_bus_unit_setup(struct smpl_daemon *d);

/* The clinical record's Manager members (bus-clinical.c, issue 16). */
int smpl_bus_record_follow_up(sd_bus_message *m, void *userdata, sd_bus_error *error);
int smpl_bus_clear_patch_hold(sd_bus_message *m, void *userdata, sd_bus_error *error);
int smpl_bus_course(sd_bus_message *m, void *userdata, sd_bus_error *error);
int smpl_bus_property_clinic_name(SMPL_PROPERTY_ARGS);
int smpl_bus_session_setup(struct smpl_daemon *d);
int smpl_bus_records_setup(struct smpl_daemon *d);
/*
 * Backups and exports of the records, and the chain head in the journal at
 * start and daily (bus-records.c): started once the records are open; stopped
 * before they close (a copy still running is answered, its audit record
 * goes with the last flush).
 */
int smpl_copies_start(struct smpl_daemon *d);
void smpl_copies_stop(struct smpl_daemon *d);

/* The observer (daemon.h) as the D-Bus objects implement it: each sends what changed. */
void smpl_bus_unit_published(struct smpl_unit *u);
void smpl_bus_unit_changed(struct smpl_unit *u);
void smpl_bus_unit_unpublished(struct smpl_unit *u, bool gone);
void smpl_bus_unit_pulse(struct smpl_unit *u, const struct smpl_session *s,
			 const struct smpl_pulse_n *p);
void smpl_bus_unit_fault(struct smpl_unit *u, const char *code, const char *message);
void smpl_bus_session_published(struct smpl_session *s);
void smpl_bus_session_changed(struct smpl_session *s);
void smpl_bus_session_unpublished(struct smpl_session *s);
void smpl_bus_manager_changed(struct smpl_daemon *d, const char *property);

#endif
