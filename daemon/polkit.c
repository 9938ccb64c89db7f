/* SPDX-License-Identifier: MIT */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "errors.h"
#include "log.h"
#include "macro.h"
#include "polkit.h"

#define _cleanup_(f) __attribute__((cleanup(f)))

/*
 * Calls suspended at once, at most (each holds its message): in all, per
 * client connection and per user, so that one local user holding
 * interactive checks open cannot lock every operator out.
 */
#define POLKIT_QUERIES_MAX		256
#define POLKIT_QUERIES_PER_SENDER	16
#define POLKIT_QUERIES_PER_UID		64

struct query {
	struct query *next;
	sd_bus_message *request;	/* the suspended method call */
	sd_bus_slot *slot;		/* the pending CheckAuthorization */
	sd_event_source *defer;		/* frees it after the re-dispatch, whatever happens */
	struct smpl_polkit *polkit;
	char *action;
	char *sender;
	uid_t uid;
	uint64_t deadline_usec;		/* CLOCK_MONOTONIC: polkit must answer by then */
	unsigned int timeout_s;		/* for the message */
	bool done;
	bool authorized;
	char *why;			/* why not, for the error message */
	bool allow_root;		/* uid 0 may act without polkit */
};

/* Recent denials, to tell a repeat from news (a small ring, oldest replaced). */
#define RECENT_DENIALS	16

struct denial {
	uid_t uid;
	char action[40];	/* "" when the slot is unused */
	time_t when;
};

struct smpl_polkit {
	sd_bus *bus;
	bool use_polkit;
	bool allow_root;
	bool same_uid;
	unsigned int timeout_s;		/* how long a call waits for polkit */
	struct query *queries;
	unsigned int n_queries;
	smpl_polkit_denied_fn on_denied;
	void *on_denied_data;
	struct denial recent[RECENT_DENIALS];
	unsigned int recent_next;
};

static void query_free(struct query *q)
{
	if (!q)
		return;
	sd_bus_slot_unref(q->slot);
	sd_event_source_disable_unref(q->defer);
	sd_bus_message_unref(q->request);
	free(q->action);
	free(q->sender);
	free(q->why);
	free(q);
}

static void unlink_query(struct smpl_polkit *p, struct query *q)
{
	for (struct query **pp = &p->queries; *pp; pp = &(*pp)->next)
		if (*pp == q) {
			*pp = q->next;
			p->n_queries--;
			return;
		}
}

int smpl_polkit_new(sd_bus *bus, bool use_polkit, bool allow_root, bool same_uid,
		    struct smpl_polkit **ret)
{
	struct smpl_polkit *p = calloc(1, sizeof(*p));

	if (!p)
		return -ENOMEM;
	p->bus = sd_bus_ref(bus);
	p->use_polkit = use_polkit;
	p->allow_root = allow_root;
	p->same_uid = same_uid;
	p->timeout_s = SMPL_POLKIT_TIMEOUT_S_DEFAULT;
	*ret = p;
	return 0;
}

void smpl_polkit_set_timeout(struct smpl_polkit *p, unsigned int seconds)
{
	p->timeout_s = seconds ? seconds : SMPL_POLKIT_TIMEOUT_S_DEFAULT;
}

void smpl_polkit_free(struct smpl_polkit *p)
{
	if (!p)
		return;
	while (p->queries) {
		struct query *q = p->queries;

		p->queries = q->next;
		query_free(q);
	}
	sd_bus_unref(p->bus);
	free(p);
}

static uint64_t monotonic_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/*
 * sd-bus ends a call that outlives its timeout with a NoReply error of its
 * own making; the bus sends NoReply too when polkit leaves mid-call.  Ours
 * comes at the deadline (sd-bus counts on the same clock from a later start).
 */
static bool polkit_timed_out(const struct query *q, const sd_bus_error *e)
{
	return sd_bus_error_has_name(e, SD_BUS_ERROR_NO_REPLY) &&
	       monotonic_usec() >= q->deadline_usec;
}

static bool polkit_is_absent(const sd_bus_error *e)
{
	return sd_bus_error_has_names(e, SD_BUS_ERROR_SERVICE_UNKNOWN,
				      SD_BUS_ERROR_NAME_HAS_NO_OWNER,
				      SD_BUS_ERROR_NO_REPLY,
				      SD_BUS_ERROR_DISCONNECTED);
}

/* Reads polkit's (bba{ss}) answer, or its error, into @q. */
static void query_settle(struct query *q, sd_bus_message *reply)
{
	const sd_bus_error *e = sd_bus_message_get_error(reply);
	int authorized = 0, challenge = 0;

	q->done = true;
	if (e && polkit_timed_out(q, e)) {
		q->authorized = false;
		smpl_log(LOG_WARNING, NULL, NULL, "polkit",
			 "polkit did not answer %s within %u s: denied",
			 q->action, q->timeout_s);
		if (asprintf(&q->why, "polkit did not answer within %u s (timed out)",
			     q->timeout_s) < 0)
			q->why = NULL;
		return;
	}
	if (e) {
		if (polkit_is_absent(e) && q->uid == 0 && q->allow_root) {
			q->authorized = true;
			return;
		}
		q->authorized = false;
		if (asprintf(&q->why, "polkit is not available (%s): only root may act",
			     e->name) < 0)
			q->why = NULL;
		return;
	}
	if (sd_bus_message_enter_container(reply, 'r', "bba{ss}") < 0 ||
	    sd_bus_message_read(reply, "bb", &authorized, &challenge) < 0) {
		q->authorized = false;
		q->why = strdup("polkit gave a malformed answer");
		return;
	}
	q->authorized = authorized;
	if (!authorized)
		q->why = strdup(challenge ? "polkit requires authentication (no agent answered)"
					  : "polkit denied it");
}

/*
 * After the re-dispatch: the handler took the answer (and freed the query),
 * or never ran (its object went away meanwhile, the call was refused before
 * reaching it): either way the query goes now, never leaks.
 */
static int on_redispatched(sd_event_source *src, void *userdata)
{
	struct query *q = userdata;

	(void)src;
	unlink_query(q->polkit, q);
	query_free(q);
	return 0;
}

static int on_polkit_reply(sd_bus_message *reply, void *userdata,
			   sd_bus_error *ret_error)
{
	struct query *q = userdata;
	sd_bus *bus = sd_bus_message_get_bus(q->request);
	int r;

	(void)ret_error;
	q->slot = sd_bus_slot_unref(q->slot);
	query_settle(q, reply);
	/* Run the suspended call again: the handler now finds the answer. */
	r = sd_bus_enqueue_for_read(bus, q->request);
	if (r < 0)
		log_err("cannot re-dispatch a call after polkit answered: %s", strerror(-r));
	/* An idle source runs after the bus has dispatched the call. */
	r = sd_event_add_defer(sd_bus_get_event(bus), &q->defer, on_redispatched, q);
	if (r >= 0)
		r = sd_event_source_set_priority(q->defer, SD_EVENT_PRIORITY_IDLE);
	if (r < 0) {
		log_err("cannot schedule the end of a polkit query: %s", strerror(-r));
		q->defer = sd_event_source_disable_unref(q->defer);
	}
	return 0;
}

static int ask_polkit(struct smpl_polkit *p, struct query *q)
{
	_cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
	const char *sender = sd_bus_message_get_sender(q->request);
	uint32_t flags = sd_bus_message_get_allow_interactive_authorization(q->request) ? 1 : 0;
	int r;

	if (!sender)
		return -EBADMSG;
	r = sd_bus_message_new_method_call(p->bus, &m, "org.freedesktop.PolicyKit1",
					   "/org/freedesktop/PolicyKit1/Authority",
					   "org.freedesktop.PolicyKit1.Authority",
					   "CheckAuthorization");
	if (r < 0)
		return r;
	r = sd_bus_message_append(m, "(sa{sv})sa{ss}us", "system-bus-name", 1,
				  "name", "s", sender, q->action, 0, flags, "");
	if (r < 0)
		return r;
	q->timeout_s = p->timeout_s;
	q->deadline_usec = monotonic_usec() + p->timeout_s * 1000000ULL;
	/* At the time-out sd-bus calls on_polkit_reply with NoReply and drops the
	 * slot: a later answer has no callback left to reach. */
	return sd_bus_call_async(p->bus, &q->slot, m, on_polkit_reply, q,
				 p->timeout_s * 1000000ULL);
}

void smpl_polkit_on_denied(struct smpl_polkit *p, smpl_polkit_denied_fn fn,
			   void *userdata)
{
	p->on_denied = fn;
	p->on_denied_data = userdata;
}

/* True when @uid was denied @action within the last few seconds; remembers it. */
static bool denial_is_repeat(struct smpl_polkit *p, uid_t uid, const char *action)
{
	time_t now = time(NULL);
	struct denial *slot;

	for (unsigned int i = 0; i < RECENT_DENIALS; i++) {
		struct denial *r = &p->recent[i];

		if (r->uid == uid && strcmp(r->action, action) == 0 &&
		    now - r->when < SMPL_POLKIT_DENIAL_REPEAT_S && now >= r->when)
			return true;
	}
	slot = &p->recent[p->recent_next++ % RECENT_DENIALS];
	slot->uid = uid;
	snprintf(slot->action, sizeof(slot->action), "%s", action);
	slot->when = now;
	return false;
}

/*
 * A denial goes to the journal and the audit trail (through the hook) unless
 * it repeats one just recorded: any local peer may call, and a flood of
 * journaled denials would push smplaserd into journald's rate limit, which
 * would then drop the arm, fault and acknowledge lines too.
 */
static int deny(struct smpl_polkit *p, sd_bus_error *error, const char *action,
		uid_t uid, const char *why)
{
	char msg[256];

	snprintf(msg, sizeof(msg), "Not authorized: action %s for uid %u: %s",
		 action, (unsigned int)uid, why ? why : "denied");
	if (!denial_is_repeat(p, uid, action)) {
		smpl_log_uid(LOG_NOTICE, NULL, NULL, "not-authorized", &uid, "%s", msg);
		if (p->on_denied)
			p->on_denied(uid, action, msg, p->on_denied_data);
	}
	return smpl_error_setf(error, SMPL_ERROR_NOT_AUTHORIZED, "%s", msg);
}

/* -ENFILE all waiting, -EMFILE this client's, -EUSERS this user's; 0 room. */
static int check_caps(const struct smpl_polkit *p, sd_bus_message *call, uid_t uid)
{
	const char *sender = sd_bus_message_get_sender(call);
	unsigned int of_sender = 0, of_uid = 0;

	if (p->n_queries >= POLKIT_QUERIES_MAX)
		return -ENFILE;
	for (const struct query *q = p->queries; q; q = q->next) {
		of_sender += sender && strcmp(q->sender, sender) == 0;
		of_uid += q->uid == uid;
	}
	if (of_sender >= POLKIT_QUERIES_PER_SENDER)
		return -EMFILE;
	return of_uid >= POLKIT_QUERIES_PER_UID ? -EUSERS : 0;
}

static struct query *find_query(struct smpl_polkit *p, sd_bus_message *call)
{
	for (struct query *q = p->queries; q; q = q->next)
		if (q->request == call)
			return q;
	return NULL;
}

/* Second dispatch: hand out polkit's answer and forget the query. */
static int answer(struct smpl_polkit *p, struct query *q, const char *action,
		  sd_bus_error *error)
{
	int r;

	if (!q->done)
		return 0;
	unlink_query(p, q);
	if (q->authorized && strcmp(q->action, action) == 0)
		r = 1;
	else
		r = deny(p, error, action, q->uid, q->why);
	query_free(q);
	return r;
}

int smpl_polkit_check(struct smpl_polkit *p, sd_bus_message *call,
		      const char *action, uid_t uid, sd_bus_error *error)
{
	struct query *q = find_query(p, call);
	int r;

	if (q)
		return answer(p, q, action, error);

	if (!p->use_polkit)
		return p->same_uid && uid == getuid() ? 1 :
			deny(p, error, action, uid, p->same_uid ?
			     "on a session bus only the daemon's own user may act" :
			     "the configuration lets nobody act on a session bus");

	r = check_caps(p, call, uid);
	if (r < 0)
		return deny(p, error, action, uid, r == -EMFILE ?
			    "too many of this client's calls are waiting for polkit" : r == -EUSERS ?
			    "too many of this user's calls are waiting for polkit" :
			    "too many calls are waiting for polkit");
	q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	q->polkit = p;
	q->request = sd_bus_message_ref(call);
	q->uid = uid;
	q->allow_root = p->allow_root;
	q->action = strdup(action);
	q->sender = strdup(sd_bus_message_get_sender(call) ? sd_bus_message_get_sender(call) : "");
	if (!q->action || !q->sender) {
		query_free(q);
		return -ENOMEM;
	}
	r = ask_polkit(p, q);
	if (r < 0) {
		query_free(q);
		return deny(p, error, action, uid, "cannot ask polkit");
	}
	q->next = p->queries;
	p->queries = q;
	p->n_queries++;
	return 0;
}
