/* SPDX-License-Identifier: MIT */
/*
 * The session keeper.  smplaserd ties a session to the bus connection that
 * opened it: when that client leaves the bus, the unit is disarmed and the
 * session closed (DESIGN S4).  A one-shot "session start" would therefore
 * lose its session the moment it exits.  So, once StartSession succeeded,
 * smplaserctl forks: the child keeps the very connection that opened the
 * session (its socket), watches the session over a second connection, and
 * exits when the session ends, the unit drops it, the daemon goes away or it
 * is killed.  Killing it is the same as the client leaving: the daemon
 * disarms and closes the session.  It never calls a method that arms, fires
 * or changes anything.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl.h"

/* Is @session still the open session of @unit? (false on any error) */
static bool session_still_open(sd_bus *watch, const char *unit, const char *session)
{
	sd_bus_error e = SD_BUS_ERROR_NULL;
	sd_bus_message *reply = NULL;
	const char *current = NULL;
	bool open;
	int r;

	/* Session is an object path ("o"), not a string. */
	r = sd_bus_get_property(watch, SMPL_BUS_NAME, unit, SMPL_UNIT_IFACE,
				"Session", &e, &reply, "o");
	if (r >= 0)
		r = sd_bus_message_read(reply, "o", &current);
	open = r >= 0 && current && strcmp(current, session) == 0;
	sd_bus_message_unref(reply);
	sd_bus_error_free(&e);
	return open;
}

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

static void keep(bool user_bus, int owner_fd, const char *unit, const char *session)
{
	sd_bus *watch = NULL;
	char buf[4096];

	detach_stdio();
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	if ((user_bus ? sd_bus_open_user(&watch) : sd_bus_open_system(&watch)) < 0)
		_exit(1);
	for (;;) {
		struct pollfd p = { .fd = owner_fd, .events = POLLIN };
		int r = poll(&p, 1, 500);

		if (r < 0 && errno != EINTR)
			break;
		if (r > 0 && (p.revents & (POLLHUP | POLLERR | POLLNVAL)))
			break;		/* the bus closed our connection */
		if (r > 0 && (p.revents & POLLIN)) {
			/* Nothing is addressed to us that needs an answer: drop it. */
			if (read(owner_fd, buf, sizeof(buf)) <= 0)
				break;
			continue;
		}
		if (!session_still_open(watch, unit, session))
			break;
	}
	sd_bus_flush_close_unref(watch);
	_exit(0);
}

int session_keeper_spawn(struct ctl *c, const char *unit, const char *session)
{
	int owner_fd = sd_bus_get_fd(c->bus);
	pid_t pid;

	if (owner_fd < 0)
		return ctl_error(c, CTL_EXIT_FAILED, NULL,
				 "cannot keep the session's bus connection: %s",
				 strerror(-owner_fd));
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0)
		return ctl_error(c, CTL_EXIT_FAILED, NULL,
				 "cannot start the session keeper: %s", strerror(errno));
	if (pid == 0)
		keep(c->user_bus, owner_fd, unit, session);
	return CTL_EXIT_DONE;
}
