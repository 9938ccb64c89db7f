/* SPDX-License-Identifier: MIT */
/* Who is calling, asked asynchronously: see creds.h. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "creds.h"
#include "log.h"

#define CACHE_SIZE	256	/* callers remembered; the oldest forgotten first */
#define WAITING_MAX	1024	/* calls suspended for a uid, at most */

struct entry {
	char *name;
	int err;		/* 0, or why the bus could not tell */
	uid_t uid;
};

struct waiting {
	struct waiting *next;
	sd_bus_message *call;
};

struct lookup {
	struct lookup *next;
	struct smpl_creds *creds;
	char *name;
	sd_bus_slot *slot;
	struct waiting *calls;
};

struct smpl_creds {
	sd_bus *bus;
	struct entry cache[CACHE_SIZE];
	unsigned int next;		/* the slot to fill next (the oldest) */
	struct lookup *lookups;
	unsigned int n_waiting;
};

int smpl_creds_new(sd_bus *bus, struct smpl_creds **ret)
{
	struct smpl_creds *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	c->bus = sd_bus_ref(bus);
	*ret = c;
	return 0;
}

static void lookup_free(struct lookup *l)
{
	while (l->calls) {
		struct waiting *w = l->calls;

		l->calls = w->next;
		sd_bus_message_unref(w->call);
		free(w);
	}
	sd_bus_slot_unref(l->slot);
	free(l->name);
	free(l);
}

void smpl_creds_free(struct smpl_creds *c)
{
	if (!c)
		return;
	for (unsigned int i = 0; i < CACHE_SIZE; i++)
		free(c->cache[i].name);
	while (c->lookups) {
		struct lookup *l = c->lookups;

		c->lookups = l->next;
		lookup_free(l);
	}
	sd_bus_unref(c->bus);
	free(c);
}

static const struct entry *cached(const struct smpl_creds *c, const char *name)
{
	for (unsigned int i = 0; i < CACHE_SIZE; i++)
		if (c->cache[i].name && strcmp(c->cache[i].name, name) == 0)
			return &c->cache[i];
	return NULL;
}

static void remember(struct smpl_creds *c, const char *name, int err, uid_t uid)
{
	struct entry *e = &c->cache[c->next++ % CACHE_SIZE];
	char *copy = strdup(name);

	if (!copy)
		return;
	free(e->name);
	e->name = copy;
	e->err = err;
	e->uid = uid;
}

static void unlink_lookup(struct smpl_creds *c, struct lookup *l)
{
	for (struct lookup **pp = &c->lookups; *pp; pp = &(*pp)->next)
		if (*pp == l) {
			*pp = l->next;
			return;
		}
}

static int on_uid(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error)
{
	struct lookup *l = userdata;
	struct smpl_creds *c = l->creds;
	const sd_bus_error *e = sd_bus_message_get_error(reply);
	uint32_t uid = 0;
	int err = 0;

	(void)ret_error;
	if (e)
		err = sd_bus_error_get_errno(e) > 0 ? -sd_bus_error_get_errno(e) : -ESRCH;
	else if (sd_bus_message_read(reply, "u", &uid) < 0)
		err = -EBADMSG;
	remember(c, l->name, err, (uid_t)uid);
	unlink_lookup(c, l);
	/* The calls that waited run again from the top and find the answer. */
	for (struct waiting *w = l->calls; w; w = w->next) {
		c->n_waiting--;
		if (sd_bus_enqueue_for_read(c->bus, w->call) < 0)
			smpl_log(LOG_ERR, NULL, NULL, "creds",
				 "a call waiting for its caller's uid is lost");
	}
	lookup_free(l);
	return 0;
}

static int ask(struct smpl_creds *c, const char *name, sd_bus_message *m)
{
	struct lookup *l;
	struct waiting *w;
	int r;

	if (c->n_waiting >= WAITING_MAX)
		return -EBUSY;
	for (l = c->lookups; l && strcmp(l->name, name) != 0; l = l->next)
		;
	if (!l) {
		l = calloc(1, sizeof(*l));
		if (!l || !(l->name = strdup(name))) {
			free(l);
			return -ENOMEM;
		}
		l->creds = c;
		r = sd_bus_call_method_async(c->bus, &l->slot, "org.freedesktop.DBus",
					     "/org/freedesktop/DBus", "org.freedesktop.DBus",
					     "GetConnectionUnixUser", on_uid, l, "s", name);
		if (r < 0) {
			lookup_free(l);
			return r;
		}
		l->next = c->lookups;
		c->lookups = l;
	}
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->call = sd_bus_message_ref(m);
	w->next = l->calls;
	l->calls = w;
	c->n_waiting++;
	return 0;
}

int smpl_creds_uid(struct smpl_creds *c, sd_bus_message *m, uid_t *uid)
{
	const char *sender = sd_bus_message_get_sender(m);
	const struct entry *e;
	sd_bus_creds *creds = NULL;
	int r;

	if (!sender || !sd_bus_is_bus_client(c->bus)) {
		/* A direct connection: the peer's credentials from the socket, no round trip. */
		r = sd_bus_query_sender_creds(m, SD_BUS_CREDS_EUID, &creds);
		if (r >= 0)
			r = sd_bus_creds_get_euid(creds, uid);
		sd_bus_creds_unref(creds);
		return r < 0 ? r : 1;
	}
	e = cached(c, sender);
	if (e) {
		*uid = e->uid;
		return e->err < 0 ? e->err : 1;
	}
	r = ask(c, sender, m);
	return r < 0 ? r : 0;
}

/* ---- the owner leaving ----------------------------------------------------------- */

struct smpl_owner_watch {
	sd_bus_slot *match, *check;
	void (*gone)(void *userdata);
	void *userdata;
	bool fired;
};

static void fire(struct smpl_owner_watch *w)
{
	if (w->fired)
		return;
	w->fired = true;
	w->gone(w->userdata);	/* may free @w */
}

static int on_name_owner_changed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
	const char *name, *old, *new;

	(void)ret_error;
	if (sd_bus_message_read(m, "sss", &name, &old, &new) >= 0 && !*new)
		fire(userdata);
	return 0;
}

static int on_name_checked(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error)
{
	struct smpl_owner_watch *w = userdata;

	(void)ret_error;
	w->check = sd_bus_slot_unref(w->check);
	if (sd_bus_error_has_name(sd_bus_message_get_error(reply),
				  SD_BUS_ERROR_NAME_HAS_NO_OWNER))
		fire(w);	/* it left before the match was in place */
	return 0;
}

/* The match is in place: did the name leave before? */
static int on_match_installed(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error)
{
	struct smpl_owner_watch *w = userdata;
	const char *name = NULL;

	(void)ret_error;
	if (sd_bus_message_is_method_error(reply, NULL))
		return 0;
	if (sd_bus_slot_get_description(w->match, &name) >= 0 && name)
		(void)sd_bus_call_method_async(sd_bus_slot_get_bus(w->match), &w->check,
					       "org.freedesktop.DBus", "/org/freedesktop/DBus",
					       "org.freedesktop.DBus", "GetNameOwner",
					       on_name_checked, w, "s", name);
	return 0;
}

int smpl_owner_watch_new(sd_bus *bus, const char *name, void (*gone)(void *userdata),
			 void *userdata, struct smpl_owner_watch **ret)
{
	struct smpl_owner_watch *w = calloc(1, sizeof(*w));
	char match[256];
	int r;

	if (!w)
		return -ENOMEM;
	w->gone = gone;
	w->userdata = userdata;
	if (!name || !sd_bus_is_bus_client(bus)) {
		*ret = w;	/* a direct connection: its peer leaving ends it all */
		return 0;
	}
	snprintf(match, sizeof(match),
		 "type='signal',sender='org.freedesktop.DBus',path='/org/freedesktop/DBus',"
		 "interface='org.freedesktop.DBus',member='NameOwnerChanged',arg0='%s'", name);
	r = sd_bus_add_match_async(bus, &w->match, match, on_name_owner_changed,
				   on_match_installed, w);
	if (r >= 0)
		r = sd_bus_slot_set_description(w->match, name);
	if (r < 0) {
		smpl_owner_watch_free(w);
		return r;
	}
	*ret = w;
	return 0;
}

void smpl_owner_watch_free(struct smpl_owner_watch *w)
{
	if (!w)
		return;
	sd_bus_slot_unref(w->match);
	sd_bus_slot_unref(w->check);
	free(w);
}
