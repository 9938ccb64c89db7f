/* SPDX-License-Identifier: MIT */
/*
 * The session keeper.  smplaserd binds a session to the bus connection that
 * opened it (DESIGN S4, S6): only that connection changes the session or arms
 * for it, and when it leaves the bus the unit is disarmed and the session
 * closed.  A one-shot "session start" would lose its session the moment it
 * exits, and a later "session patch" would be a stranger to it.
 *
 * So "session start" forks a keeper first.  The keeper opens its own bus
 * connection, calls StartSession on it (owning the session), reports to the
 * command, and then serves a private socket, <runtime dir>/smplaserctl/
 * <bus id>-<session id>, mode 0600, for the same user only.  Later commands
 * that the owner must make (SelectPatch, ConfirmEyewear, RecordEndpoint, End,
 * SetParameters, Arm) connect there (peer-to-peer D-Bus) and the keeper forwards each call
 * on the owning connection, with its reply.  Nothing else is forwarded, and
 * only for its own session and unit.  The keeper exits when the session ends,
 * the unit drops it, the daemon goes away or it is killed; killing it is the
 * client leaving the bus: the daemon disarms and closes the session.
 *
 * A forwarded call's polkit subject is the keeper: polkit may ask the
 * password only through an agent registered for the keeper's session.  So
 * the keeper forwards a command only from where polkit would let it act
 * itself: its own login session, or another that is local and active (a
 * second terminal at the console), or root.  The same user logged in over
 * ssh, from a VT in the background or from no session at all (cron) would
 * otherwise act with the rights polkit gave the keeper.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <systemd/sd-event.h>
#include <systemd/sd-id128.h>
#include <systemd/sd-login.h>

#include "ctl.h"

#define FORWARD_TIMEOUT_USEC	(120 * 1000000ULL)	/* polkit may ask a password */
#define CHECK_PERIOD_USEC	(500 * 1000ULL)
#define MAX_PEERS		16	/* commands connected at once */

struct keeper {
	sd_event *event;
	sd_bus *owner;			/* the connection that owns the session */
	sd_bus *peers[MAX_PEERS];	/* the commands connected to the socket */
	unsigned in_flight;		/* forwarded calls not answered yet */
	const char *unit;
	char session[128];
	char socket_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int listen_fd;
	bool done;
};

/* A call forwarded to the daemon, until its slot goes away. */
struct forwarded {
	struct keeper *keeper;
	sd_bus_message *call;		/* the command's call, answered with the daemon's reply */
};

/* ---- where the socket lives ---------------------------------------------- */

static int runtime_dir(char *buf, size_t len)
{
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	int n;

	if (geteuid() == 0)
		n = snprintf(buf, len, "/run/smplaserctl");
	else if (xdg && *xdg == '/')
		n = snprintf(buf, len, "%s/smplaserctl", xdg);
	else
		n = snprintf(buf, len, "/run/user/%u/smplaserctl", (unsigned int)geteuid());
	if (n < 0 || (size_t)n >= len)
		return -ENAMETOOLONG;
	if (mkdir(buf, 0700) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/* <runtime dir>/smplaserctl/<bus id>-<session id>: one bus, one session. */
static int socket_path_of(sd_bus *bus, const char *session, char *buf, size_t len)
{
	char dir[96];
	sd_id128_t id;
	const char *tail = strrchr(session, '/');
	int r;

	r = sd_bus_get_bus_id(bus, &id);
	if (r < 0)
		return r;
	if (!tail || !tail[1] || strspn(tail + 1, "0123456789") != strlen(tail + 1))
		return -EINVAL;
	r = runtime_dir(dir, sizeof(dir));
	if (r < 0)
		return r;
	r = snprintf(buf, len, "%s/" SD_ID128_FORMAT_STR "-%s", dir, SD_ID128_FORMAT_VAL(id),
		     tail + 1);
	return r < 0 || (size_t)r >= len ? -ENAMETOOLONG : 0;
}

/* ---- the command's side: is there a keeper for this session? ------------- */

/* The session whose owner must make @member on @path, or NULL. */
static char *owned_session(struct ctl *c, const char *path, const char *iface,
			   const char *member)
{
	json_object *s = NULL;
	char *session = NULL;

	if (strcmp(iface, SMPL_SESSION_IFACE) == 0 &&
	    (strcmp(member, "SelectPatch") == 0 || strcmp(member, "ConfirmEyewear") == 0 ||
	     strcmp(member, "End") == 0 || strcmp(member, "RecordEndpoint") == 0))
		return strdup(path);
	if (strcmp(iface, SMPL_UNIT_IFACE) != 0 ||
	    (strcmp(member, "Arm") != 0 && strcmp(member, "SetParameters") != 0))
		return NULL;
	if (ctl_get_property(c, path, SMPL_UNIT_IFACE, "Session", &s) == CTL_EXIT_DONE &&
	    strcmp(json_object_get_string(s), "/") != 0)
		session = strdup(json_object_get_string(s));
	json_object_put(s);
	return session;
}

static int connect_keeper(const char *path, sd_bus **ret)
{
	sd_bus *bus = NULL;
	char *address = NULL;
	int r;

	if (access(path, F_OK) < 0)
		return -ENOENT;
	r = sd_bus_new(&bus);
	if (r >= 0 && asprintf(&address, "unix:path=%s", path) < 0)
		r = -ENOMEM;
	if (r >= 0)
		r = sd_bus_set_address(bus, address);
	if (r >= 0)
		r = sd_bus_start(bus);
	free(address);
	if (r < 0) {
		sd_bus_unref(bus);
		if (r == -ECONNREFUSED)
			unlink(path);	/* its keeper was killed */
		return r;
	}
	*ret = bus;
	return 0;
}

sd_bus *ctl_bus_for(struct ctl *c, const char *path, const char *iface, const char *member)
{
	char sock[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char *session = owned_session(c, path, iface, member);

	if (!session)
		return c->bus;
	if (!c->keeper_bus && socket_path_of(c->bus, session, sock, sizeof(sock)) == 0 &&
	    connect_keeper(sock, &c->keeper_bus) == 0)
		sd_bus_set_allow_interactive_authorization(c->keeper_bus, c->ask_password);
	free(session);
	return c->keeper_bus ? c->keeper_bus : c->bus;
}

int ctl_call(struct ctl *c, const char *path, const char *iface,
	     const char *member, sd_bus_message **reply, const char *types, ...)
{
	va_list ap;
	int r;

	va_start(ap, types);
	r = ctl_call_va(c, ctl_bus_for(c, path, iface, member), path, iface, member, reply,
			types, ap);
	va_end(ap);
	return r;
}

/* ---- the keeper's side: forwarding ---------------------------------------- */

static bool forwardable(const struct keeper *k, sd_bus_message *m)
{
	const char *path = sd_bus_message_get_path(m);

	if (!path)
		return false;
	if (sd_bus_message_is_method_call(m, SMPL_SESSION_IFACE, "SelectPatch") ||
	    sd_bus_message_is_method_call(m, SMPL_SESSION_IFACE, "ConfirmEyewear") ||
	    sd_bus_message_is_method_call(m, SMPL_SESSION_IFACE, "End") ||
	    sd_bus_message_is_method_call(m, SMPL_SESSION_IFACE, "RecordEndpoint"))
		return strcmp(path, k->session) == 0;
	if (sd_bus_message_is_method_call(m, SMPL_UNIT_IFACE, "Arm") ||
	    sd_bus_message_is_method_call(m, SMPL_UNIT_IFACE, "SetParameters"))
		return strcmp(path, k->unit) == 0;
	return false;
}

/* A forwarded call's slot went away, answered or not: let go of the caller's message. */
static void forwarded_call_done(void *userdata)
{
	struct forwarded *f = userdata;

	f->keeper->in_flight--;
	sd_bus_message_unref(f->call);
	free(f);
}

/* The daemon answered a forwarded call: hand the answer back. */
static int on_forwarded_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error)
{
	struct forwarded *f = userdata;
	sd_bus_message *call = f->call, *back = NULL;
	int r;

	(void)ret_error;
	if (sd_bus_message_is_method_error(reply, NULL)) {
		r = sd_bus_reply_method_error(call, sd_bus_message_get_error(reply));
	} else {
		r = sd_bus_message_new_method_return(call, &back);
		if (r >= 0)
			r = sd_bus_message_copy(back, reply, true);
		if (r >= 0)
			r = sd_bus_send(NULL, back, NULL);
	}
	if (r < 0)
		(void)sd_bus_reply_method_errorf(call, SD_BUS_ERROR_FAILED,
						 "the session keeper cannot pass the answer on: %s",
						 strerror(-r));
	sd_bus_message_unref(back);
	return 1;
}

/*
 * May the command at the other end of @m's socket act through the keeper?
 * If not, @why says what its login session is.
 */
static bool caller_may_act(const struct keeper *k, sd_bus_message *m, char *why, size_t len)
{
	struct ucred cred;
	socklen_t clen = sizeof(cred);
	int fd = sd_bus_get_fd(sd_bus_message_get_bus(m));
	char *ours = NULL, *theirs = NULL;
	const char *scope = NULL;
	bool ok;

	/* On a session bus the daemon lets its own user act, polkit is not asked. */
	if (sd_bus_get_scope(k->owner, &scope) >= 0 && strcmp(scope, "system") != 0)
		return true;
	if (fd < 0 || getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0) {
		snprintf(why, len, "unknown");
		return false;
	}
	if (cred.uid == 0)
		return true;
	if (sd_pid_get_session(cred.pid, &theirs) < 0 || !theirs) {
		snprintf(why, len, "none");
		return false;
	}
	(void)sd_pid_get_session(0, &ours);
	ok = (ours && strcmp(ours, theirs) == 0) ||
	     (sd_session_is_remote(theirs) == 0 && sd_session_is_active(theirs) > 0);
	snprintf(why, len, "%s, %s", theirs,
		 sd_session_is_remote(theirs) > 0 ? "remote" :
		 sd_session_is_active(theirs) > 0 ? "local and active" : "not active");
	free(ours);
	free(theirs);
	return ok;
}

static int forward(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
	struct keeper *k = userdata;
	sd_bus_message *call = NULL;
	sd_bus_slot *slot = NULL;
	struct forwarded *f;
	char why[96];
	int r;

	if (!forwardable(k, m))
		return sd_bus_error_setf(ret_error, SD_BUS_ERROR_ACCESS_DENIED,
					 "the session keeper passes on only SelectPatch, "
					 "ConfirmEyewear, End, SetParameters and Arm of its session");
	if (!caller_may_act(k, m, why, sizeof(why)))
		return sd_bus_error_setf(ret_error, SMPL_ERR_PREFIX "NotAuthorized",
					 "the session keeper acts only for a local, active login "
					 "session (this command's: %s)", why);
	r = sd_bus_message_new_method_call(k->owner, &call, SMPL_BUS_NAME,
					   sd_bus_message_get_path(m),
					   sd_bus_message_get_interface(m),
					   sd_bus_message_get_member(m));
	if (r >= 0)
		r = sd_bus_message_copy(call, m, true);
	if (r >= 0)
		r = sd_bus_message_set_allow_interactive_authorization(
			call, sd_bus_message_get_allow_interactive_authorization(m));
	f = r >= 0 ? calloc(1, sizeof(*f)) : NULL;
	if (r >= 0 && !f)
		r = -ENOMEM;
	if (r >= 0) {
		*f = (struct forwarded) { .keeper = k, .call = sd_bus_message_ref(m) };
		k->in_flight++;
		r = sd_bus_call_async(k->owner, &slot, call, on_forwarded_reply, f,
				      FORWARD_TIMEOUT_USEC);
		if (r < 0)
			forwarded_call_done(f);
	}
	sd_bus_message_unref(call);
	if (r < 0)
		return sd_bus_error_setf(ret_error, SD_BUS_ERROR_FAILED,
					 "the session keeper cannot pass the call on: %s",
					 strerror(-r));
	/* The slot is the owner's now; whatever ends it (reply, timeout, exit) frees f. */
	(void)sd_bus_slot_set_destroy_callback(slot, forwarded_call_done);
	(void)sd_bus_slot_set_floating(slot, 1);
	sd_bus_slot_unref(slot);
	return 1;
}

/* Only our own user, checked on the socket itself (SO_PEERCRED). */
static bool same_user(int fd)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	return getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 &&
	       (cred.uid == geteuid() || cred.uid == 0);
}

static sd_bus **peer_slot(struct keeper *k, sd_bus *peer)
{
	for (size_t i = 0; i < MAX_PEERS; i++)
		if (k->peers[i] == peer)
			return &k->peers[i];
	return NULL;
}

static int on_disconnect(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
	struct keeper *k = userdata;
	sd_bus *peer = sd_bus_message_get_bus(m);
	sd_bus **slot = peer_slot(k, peer);

	(void)ret_error;
	if (slot)			/* the command went away */
		*slot = sd_bus_close_unref(peer);
	return 0;
}

/* The keeper ends: answers already queued go out, then every command's connection closes. */
static void close_peers(struct keeper *k)
{
	for (size_t i = 0; i < MAX_PEERS; i++)
		k->peers[i] = sd_bus_flush_close_unref(k->peers[i]);
}

static int on_accept(sd_event_source *src, int fd, uint32_t revents, void *userdata)
{
	struct keeper *k = userdata;
	sd_bus *peer = NULL, **slot = peer_slot(k, NULL);
	sd_id128_t id;
	int cfd, r;

	(void)src, (void)revents;
	cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (cfd < 0)
		return 0;
	if (!slot || !same_user(cfd)) {
		close(cfd);
		return 0;
	}
	r = sd_id128_randomize(&id);
	if (r >= 0)
		r = sd_bus_new(&peer);
	if (r >= 0)
		r = sd_bus_set_fd(peer, cfd, cfd);
	if (r >= 0)
		r = sd_bus_set_server(peer, 1, id);
	if (r >= 0)
		r = sd_bus_add_fallback(peer, NULL, "/", forward, k);
	if (r >= 0)
		r = sd_bus_match_signal(peer, NULL, "org.freedesktop.DBus.Local", NULL,
					"org.freedesktop.DBus.Local", "Disconnected",
					on_disconnect, k);
	if (r >= 0)
		r = sd_bus_start(peer);
	if (r >= 0)
		r = sd_bus_attach_event(peer, k->event, SD_EVENT_PRIORITY_NORMAL);
	if (r >= 0)
		*slot = peer;
	else if (peer)
		sd_bus_close_unref(peer);
	else
		close(cfd);
	return 0;
}

/* Is our session still the open session of our unit? (false on any error) */
static bool session_still_open(struct keeper *k)
{
	sd_bus_error e = SD_BUS_ERROR_NULL;
	sd_bus_message *reply = NULL;
	const char *current = NULL;
	bool open;
	int r;

	r = sd_bus_get_property(k->owner, SMPL_BUS_NAME, k->unit, SMPL_UNIT_IFACE,
				"Session", &e, &reply, "o");
	if (r >= 0)
		r = sd_bus_message_read(reply, "o", &current);
	open = r >= 0 && current && strcmp(current, k->session) == 0;
	sd_bus_message_unref(reply);
	sd_bus_error_free(&e);
	return open;
}

static int on_check(sd_event_source *src, uint64_t usec, void *userdata)
{
	struct keeper *k = userdata;

	(void)usec;
	/* A forwarded End is answered before the keeper goes: the command waits for it. */
	if ((k->in_flight == 0 || sd_bus_is_open(k->owner) <= 0) && !session_still_open(k))
		return sd_event_exit(k->event, 0);
	if (sd_event_source_set_time_relative(src, CHECK_PERIOD_USEC) < 0)
		return sd_event_exit(k->event, 0);
	return sd_event_source_set_enabled(src, SD_EVENT_ONESHOT);
}

static int listen_on(struct keeper *k)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, r;

	r = socket_path_of(k->owner, k->session, k->socket_path, sizeof(k->socket_path));
	if (r < 0)
		return r;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", k->socket_path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	(void)unlink(k->socket_path);
	mode_t old = umask(0077);

	r = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 8) < 0 ? -errno : 0;
	umask(old);
	if (r < 0) {
		close(fd);
		return r;
	}
	k->listen_fd = fd;
	return 0;
}

/* ---- start ----------------------------------------------------------------- */

static void detach_stdio(void)
{
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);

	/* Never hold the caller's pipes or terminal output open. */
	if (null >= 0) {
		dup2(null, STDIN_FILENO);
		dup2(null, STDOUT_FILENO);
		dup2(null, STDERR_FILENO);
		if (null > STDERR_FILENO)
			close(null);
	}
}

/* Tell the command how StartSession went: "o PATH" or "e NAME\nMESSAGE". */
static void report(int fd, const char *kind, const char *a, const char *b)
{
	dprintf(fd, "%s %s\n%s", kind, a ? a : "", b ? b : "");
	close(fd);
}

static int start_session(struct keeper *k, struct ctl *c, const char *patient, int report_fd)
{
	sd_bus_error e = SD_BUS_ERROR_NULL;
	sd_bus_message *reply = NULL;
	const char *sp = NULL;
	int r;

	r = c->user_bus ? sd_bus_open_user(&k->owner) : sd_bus_open_system(&k->owner);
	if (r < 0) {
		report(report_fd, "e", "", strerror(-r));
		return r;
	}
	sd_bus_set_allow_interactive_authorization(k->owner, c->ask_password);
	ctl_polkit_agent_forget();	/* the command's agent answers for the command */
	ctl_polkit_agent_open(c);	/* for this process: it is polkit's subject now */
	r = sd_bus_call_method(k->owner, SMPL_BUS_NAME, k->unit, SMPL_UNIT_IFACE, "StartSession",
			       &e, &reply, "s", patient);
	ctl_polkit_agent_close();
	if (r >= 0)
		r = sd_bus_message_read(reply, "o", &sp);
	if (r >= 0 && snprintf(k->session, sizeof(k->session), "%s", sp) >= (int)sizeof(k->session))
		r = -ENAMETOOLONG;
	if (r >= 0)
		r = listen_on(k);
	if (r < 0 && sd_bus_error_is_set(&e))
		report(report_fd, "e", e.name, e.message);
	else if (r < 0)
		report(report_fd, "e", "", strerror(-r));
	else
		report(report_fd, "o", k->session, NULL);
	sd_bus_message_unref(reply);
	sd_bus_error_free(&e);
	return r;
}

static void serve(struct keeper *k)
{
	sigset_t mask;

	/* SIGTERM and friends end the loop, so that the socket is removed. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	if (sd_event_new(&k->event) < 0 ||
	    sigprocmask(SIG_BLOCK, &mask, NULL) < 0 ||
	    sd_event_add_signal(k->event, NULL, SIGTERM, NULL, NULL) < 0 ||
	    sd_event_add_signal(k->event, NULL, SIGINT, NULL, NULL) < 0 ||
	    sd_event_add_signal(k->event, NULL, SIGHUP, NULL, NULL) < 0 ||
	    sd_bus_attach_event(k->owner, k->event, SD_EVENT_PRIORITY_NORMAL) < 0 ||
	    sd_event_add_io(k->event, NULL, k->listen_fd, EPOLLIN, on_accept, k) < 0 ||
	    sd_event_add_time_relative(k->event, NULL, CLOCK_MONOTONIC, CHECK_PERIOD_USEC, 0,
				       on_check, k) < 0)
		return;
	(void)sd_event_loop(k->event);
}

static void keep(struct ctl *c, const char *unit, const char *patient, int report_fd)
{
	struct keeper k = { .unit = unit, .listen_fd = -1 };

	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	signal(SIGPIPE, SIG_IGN);
	/* The command's connection is not ours to use: only its memory is freed. */
	c->bus = sd_bus_unref(c->bus);
	if (start_session(&k, c, patient, report_fd) == 0) {
		detach_stdio();
		serve(&k);
	}
	if (k.listen_fd >= 0)
		unlink(k.socket_path);
	sd_bus_flush_close_unref(k.owner);	/* frees the calls still in flight */
	close_peers(&k);
	sd_event_unref(k.event);
	_exit(0);
}

/* Reads the keeper's report: the session's path, or the daemon's error. */
static int read_report(struct ctl *c, int fd, char **session)
{
	char buf[4096], *nl;
	size_t got = 0;
	ssize_t n;

	while (got < sizeof(buf) - 1 && (n = read(fd, buf + got, sizeof(buf) - 1 - got)) > 0)
		got += (size_t)n;
	buf[got] = '\0';
	nl = strchr(buf, '\n');
	if (got < 2 || !nl)
		return ctl_error(c, CTL_EXIT_FAILED, NULL, "the session keeper did not start");
	*nl = '\0';
	if (buf[0] == 'o') {
		*session = strdup(buf + 2);
		return *session ? CTL_EXIT_DONE : CTL_EXIT_FAILED;
	}
	if (buf[2])
		return ctl_error(c, ctl_exit_for_error(buf + 2), buf + 2, "%s", nl + 1);
	return ctl_error(c, CTL_EXIT_FAILED, NULL, "cannot start the session: %s", nl + 1);
}

int session_keeper_start(struct ctl *c, const char *unit, const char *patient,
			 char **session)
{
	int fds[2];
	pid_t pid;
	int code;

	if (pipe2(fds, O_CLOEXEC) < 0)
		return ctl_error(c, CTL_EXIT_FAILED, NULL, "cannot start the session keeper: %s",
				 strerror(errno));
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0) {
		close(fds[0]);
		close(fds[1]);
		return ctl_error(c, CTL_EXIT_FAILED, NULL, "cannot start the session keeper: %s",
				 strerror(errno));
	}
	if (pid == 0) {
		close(fds[0]);
		keep(c, unit, patient, fds[1]);
	}
	close(fds[1]);
	code = read_report(c, fds[0], session);
	close(fds[0]);
	return code;
}
