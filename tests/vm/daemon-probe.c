/* SPDX-License-Identifier: MIT */
/*
 * smplaser-daemon-probe: timing measurements for the daemon guest tests
 * (tests/vm/guest/4*-daemon*.sh).  Everything is timed on the guest's
 * CLOCK_MONOTONIC, the clock the gadget's "status" reports too.
 *
 *   smplaser-daemon-probe latency UNIT_PATH GADGET_SOCK TRIALS
 *       TRIALS times, alternately opens and closes the door interlock at the
 *       gadget (through its control socket) and times until a
 *       PropertiesChanged of org.smplaser.Laser1.Unit naming Interlocks
 *       arrives on the system bus from UNIT_PATH.  Prints every trial, then
 *       "median_ms=M max_ms=X trials=N".  Exit 1 if any trial timed out.
 *
 *   smplaser-daemon-probe wait-unit UNIT_PATH BACKEND|- SECONDS
 *   smplaser-daemon-probe wait-gone UNIT_PATH SECONDS
 *       Until the unit is on the bus, probed and on BACKEND ("-": any); or
 *       until it has no object.  One process polling every 50 ms, where a
 *       shell loop would start busctl each time (slow under TCG).
 *
 *   smplaser-daemon-probe watch-objects SECONDS
 *       Prints the ObjectManager signals of smplaserd ("InterfacesAdded
 *       PATH", "InterfacesRemoved PATH"), one a line, for SECONDS.
 *
 *   smplaser-daemon-probe get-state UNIT_PATH SECONDS
 *       For SECONDS, Get(State) of the unit, each followed by the floor: the
 *       bus daemon's own GetId on the same connection.  Prints
 *       "calls=N get_p50_ms= get_p99_ms= get_max_ms= floor_p50_ms=
 *       floor_p99_ms= floor_max_ms=" and "state_changes=K" (how often the
 *       State read differed from the one before).  Exit 1 if a call failed.
 *
 *   smplaser-daemon-probe kill-standby PID GADGET_SOCK TIMEOUT_MS
 *       SIGKILLs PID and polls the gadget until the unit has left READY /
 *       EMITTING / ARMING; prints "standby_ms=T" from the kill to the unit's
 *       own state change (its state_changed_ns).  Exit 1 on timeout.
 */
#include <errno.h>
#include <stdbool.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-bus.h>

#define SIGNAL_TIMEOUT_US	(5 * 1000 * 1000ULL)
#define MAX_TRIALS		1000

static const char cmds_close[] = "interlock door closed\n";

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* One gadget control command; its reply in @reply.  0 when it said "ok". */
static int gadget_cmd(const char *sock, const char *cmd, char *reply, size_t size)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	size_t got = 0;
	int fd;

	if (strlen(sock) >= sizeof(addr.sun_path))
		return -1;
	strcpy(addr.sun_path, sock);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 ||
	    send(fd, cmd, strlen(cmd), MSG_NOSIGNAL) != (ssize_t)strlen(cmd)) {
		close(fd);
		return -1;
	}
	shutdown(fd, SHUT_WR);
	for (;;) {
		ssize_t n = recv(fd, reply + got, size - 1 - got, 0);

		if (n <= 0)
			break;
		got += (size_t)n;
		if (got == size - 1)
			break;
	}
	close(fd);
	reply[got] = '\0';
	return strncmp(reply, "ok", 2) == 0 ? 0 : -1;
}

static const char *field(const char *status, const char *name, char *buf, size_t size)
{
	size_t n = strlen(name);
	const char *p = status;

	while ((p = strstr(p, name))) {
		if ((p == status || p[-1] == ' ') && p[n] == '=') {
			size_t len = strcspn(p + n + 1, " \n");

			if (len >= size)
				len = size - 1;
			memcpy(buf, p + n + 1, len);
			buf[len] = '\0';
			return buf;
		}
		p += n;
	}
	return NULL;
}

/* Does this PropertiesChanged name Interlocks (changed or invalidated)? */
static int names_interlocks(sd_bus_message *m)
{
	const char *iface, *name;
	int r, found = 0;

	r = sd_bus_message_read(m, "s", &iface);
	if (r < 0 || strcmp(iface, "org.smplaser.Laser1.Unit") != 0)
		return 0;
	r = sd_bus_message_enter_container(m, 'a', "{sv}");
	if (r < 0)
		return 0;
	while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
		if (sd_bus_message_read(m, "s", &name) < 0)
			return 0;
		if (strcmp(name, "Interlocks") == 0)
			found = 1;
		if (sd_bus_message_skip(m, "v") < 0 || sd_bus_message_exit_container(m) < 0)
			return 0;
	}
	if (sd_bus_message_exit_container(m) < 0)
		return found;
	if (sd_bus_message_enter_container(m, 'a', "s") >= 0) {
		while (sd_bus_message_read(m, "s", &name) > 0)
			if (strcmp(name, "Interlocks") == 0)
				found = 1;
	}
	return found;
}

/* Waits for the next PropertiesChanged naming Interlocks; its arrival time. */
static int wait_interlocks_changed(sd_bus *bus, uint64_t *at_ns)
{
	uint64_t deadline = now_ns() + SIGNAL_TIMEOUT_US * 1000ULL;

	for (;;) {
		sd_bus_message *m = NULL;
		int r = sd_bus_process(bus, &m);

		if (r < 0)
			return r;
		if (m) {
			int hit = sd_bus_message_is_signal(m, "org.freedesktop.DBus.Properties",
							   "PropertiesChanged") &&
				  names_interlocks(m);

			sd_bus_message_unref(m);
			if (hit) {
				*at_ns = now_ns();
				return 0;
			}
			continue;
		}
		if (r > 0)
			continue;
		if (now_ns() >= deadline)
			return -ETIMEDOUT;
		r = sd_bus_wait(bus, (deadline - now_ns()) / 1000);
		if (r < 0)
			return r;
	}
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Drains whatever is queued so a trial starts clean. */
static void drain(sd_bus *bus)
{
	for (;;) {
		sd_bus_message *m = NULL;
		int r = sd_bus_process(bus, &m);

		sd_bus_message_unref(m);
		if (r <= 0)
			break;
	}
}

static int cmd_latency(const char *path, const char *sock, int trials)
{
	static uint64_t lat[MAX_TRIALS];
	sd_bus *bus = NULL;
	char match[512], reply[1024];
	int n = 0, failed = 0, r;

	if (trials < 1 || trials > MAX_TRIALS)
		return 2;
	r = sd_bus_open_system(&bus);
	if (r < 0) {
		fprintf(stderr, "system bus: %s\n", strerror(-r));
		return 1;
	}
	snprintf(match, sizeof(match),
		 "type='signal',interface='org.freedesktop.DBus.Properties',"
		 "member='PropertiesChanged',path='%s',arg0='org.smplaser.Laser1.Unit'", path);
	r = sd_bus_add_match(bus, NULL, match, NULL, NULL);
	if (r < 0) {
		fprintf(stderr, "add match: %s\n", strerror(-r));
		return 1;
	}
	for (int t = 0; t < trials; t++) {
		static const char *const cmds[2] = { "interlock door open\n",
						     "interlock door closed\n" };
		const char *what = t % 2 ? "close" : "open";
		uint64_t t0, t1;

		usleep(20 * 1000);
		drain(bus);
		t0 = now_ns();
		if (gadget_cmd(sock, cmds[t % 2], reply, sizeof(reply)) < 0) {
			fprintf(stderr, "gadget: %s", reply);
			return 1;
		}
		r = wait_interlocks_changed(bus, &t1);
		if (r < 0) {
			printf("trial %d %s: no PropertiesChanged (%s)\n", t, what, strerror(-r));
			failed++;
			continue;
		}
		lat[n++] = t1 - t0;
		printf("trial %d %s: %.2f ms\n", t, what, (double)(t1 - t0) / 1e6);
	}
	/* Leave the door as found: closed. */
	if (trials % 2)
		(void)gadget_cmd(sock, cmds_close, reply, sizeof(reply));
	sd_bus_flush_close_unref(bus);
	if (n == 0)
		return 1;
	qsort(lat, (size_t)n, sizeof(lat[0]), cmp_u64);
	printf("median_ms=%.2f max_ms=%.2f min_ms=%.2f trials=%d failed=%d\n",
	       (double)(n % 2 ? lat[n / 2] : (lat[n / 2 - 1] + lat[n / 2]) / 2) / 1e6,
	       (double)lat[n - 1] / 1e6, (double)lat[0] / 1e6, n, failed);
	return failed ? 1 : 0;
}

static int armed_state(const char *s)
{
	return strcmp(s, "READY") == 0 || strcmp(s, "EMITTING") == 0 ||
	       strcmp(s, "ARMING") == 0;
}

/* When @pid stopped running (a zombie or gone), polled every millisecond. */
static uint64_t process_gone_at(pid_t pid, uint64_t deadline)
{
	char path[64], buf[256];

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	while (now_ns() < deadline) {
		FILE *f = fopen(path, "re");
		const char *p;

		if (!f)
			return now_ns();
		p = fgets(buf, sizeof(buf), f) ? strrchr(buf, ')') : NULL;
		fclose(f);
		if (!p || p[1] == '\0' || p[2] == 'Z' || p[2] == 'X')
			return now_ns();
		usleep(1000);
	}
	return 0;
}

static int cmd_kill_standby(pid_t pid, const char *sock, unsigned int timeout_ms)
{
	char reply[1024], state[32], changed[32];
	uint64_t t0, deadline, t_exit;

	if (gadget_cmd(sock, "status\n", reply, sizeof(reply)) < 0 ||
	    !field(reply, "state", state, sizeof(state))) {
		fprintf(stderr, "gadget status failed\n");
		return 1;
	}
	if (!armed_state(state)) {
		fprintf(stderr, "the unit is %s, not armed, before the kill\n", state);
		return 1;
	}
	t0 = now_ns();
	if (kill(pid, SIGKILL) < 0) {
		perror("kill");
		return 1;
	}
	deadline = t0 + (uint64_t)timeout_ms * 1000000ULL;
	t_exit = process_gone_at(pid, deadline);
	while (now_ns() < deadline) {
		if (gadget_cmd(sock, "status\n", reply, sizeof(reply)) == 0 &&
		    field(reply, "state", state, sizeof(state)) && !armed_state(state) &&
		    field(reply, "state_changed_ns", changed, sizeof(changed))) {
			uint64_t at = strtoull(changed, NULL, 10);

			printf("state=%s standby_ms=%.2f exit_ms=%.2f\n", state,
			       at > t0 ? (double)(at - t0) / 1e6 : 0.0,
			       t_exit > t0 ? (double)(t_exit - t0) / 1e6 : -1.0);
			return 0;
		}
		usleep(10 * 1000);	/* state_changed_ns is exact: no need to hurry */
	}
	printf("state=%s standby_ms=timeout\n", state);
	return 1;
}

/* Prints "InterfacesAdded PATH" / "InterfacesRemoved PATH" lines as they come. */
static int cmd_watch_objects(unsigned int seconds)
{
	uint64_t deadline = now_ns() + seconds * 1000000000ULL;
	sd_bus *bus = NULL;
	int r;

	r = sd_bus_open_system(&bus);
	if (r >= 0)
		r = sd_bus_add_match(bus, NULL,
				     "type='signal',sender='org.smplaser.Laser1',"
				     "interface='org.freedesktop.DBus.ObjectManager'", NULL, NULL);
	if (r < 0) {
		fprintf(stderr, "system bus: %s\n", strerror(-r));
		return 1;
	}
	printf("watching\n");
	fflush(stdout);
	while (now_ns() < deadline) {
		sd_bus_message *m = NULL;
		const char *path;

		r = sd_bus_process(bus, &m);
		if (r < 0)
			break;
		if (m && sd_bus_message_get_member(m) &&
		    sd_bus_message_read(m, "o", &path) >= 0) {
			printf("%s %s\n", sd_bus_message_get_member(m), path);
			fflush(stdout);
		}
		sd_bus_message_unref(m);
		if (r == 0)
			(void)sd_bus_wait(bus, (deadline - now_ns()) / 1000);
	}
	sd_bus_flush_close_unref(bus);
	return 0;
}

/* The unit's State and Backend, or -errno (no such object, no daemon). */
static int unit_state(sd_bus *bus, const char *path, char *state, size_t slen,
		      char *backend, size_t blen)
{
	sd_bus_error e = SD_BUS_ERROR_NULL;
	char *v = NULL;
	int r;

	r = sd_bus_get_property_string(bus, "org.smplaser.Laser1", path,
				       "org.smplaser.Laser1.Unit", "State", &e, &v);
	if (r >= 0) {
		snprintf(state, slen, "%s", v);
		free(v);
		v = NULL;
		r = sd_bus_get_property_string(bus, "org.smplaser.Laser1", path,
					       "org.smplaser.Laser1.Unit", "Backend", &e, &v);
	}
	if (r >= 0) {
		snprintf(backend, blen, "%s", v);
		free(v);
	}
	sd_bus_error_free(&e);
	return r;
}

/*
 * wait-unit PATH BACKEND|- SECONDS: until the unit is on the bus, probed (a
 * unit state, not "probing" or "disconnected") and on BACKEND ("-": any).
 * wait-gone PATH SECONDS: until it has no object.  Polls every 50 ms.
 */
static int cmd_wait_unit(const char *path, const char *want, unsigned int seconds, bool gone)
{
	uint64_t deadline = now_ns() + seconds * 1000000000ULL;
	char state[64] = "", backend[64] = "";
	sd_bus *bus = NULL;
	int r = sd_bus_open_system(&bus);

	if (r < 0) {
		fprintf(stderr, "system bus: %s\n", strerror(-r));
		return 1;
	}
	for (;;) {
		r = unit_state(bus, path, state, sizeof(state), backend, sizeof(backend));
		if (gone ? r < 0 :
		    r >= 0 && strcmp(state, "probing") != 0 &&
		    strcmp(state, "disconnected") != 0 &&
		    (strcmp(want, "-") == 0 || strcmp(backend, want) == 0))
			break;
		if (now_ns() >= deadline) {
			printf("timeout: state=%s backend=%s (%s)\n", r < 0 ? "none" : state,
			       r < 0 ? "none" : backend, r < 0 ? strerror(-r) : "present");
			sd_bus_flush_close_unref(bus);
			return 1;
		}
		usleep(50 * 1000);
	}
	if (!gone)
		printf("state=%s backend=%s\n", state, backend);
	sd_bus_flush_close_unref(bus);
	return 0;
}

/* "name_p50_ms=.. name_p99_ms=.. name_max_ms=.." of @n samples (sorted here). */
static void print_quantiles(const char *name, uint64_t *ns, size_t n)
{
	qsort(ns, n, sizeof(*ns), cmp_u64);
	printf(" %s_p50_ms=%.2f %s_p99_ms=%.2f %s_max_ms=%.2f", name, ns[n / 2] / 1e6, name,
	       ns[n - 1 - n / 100] / 1e6, name, ns[n - 1] / 1e6);
}

static int cmd_get_state(const char *path, unsigned int seconds)
{
	enum { MAX_CALLS = 200000 };
	uint64_t *get = calloc(MAX_CALLS, sizeof(*get)), *floor = calloc(MAX_CALLS, sizeof(*floor));
	uint64_t deadline = now_ns() + seconds * 1000000000ULL;
	char state[64] = "", last[64] = "";
	unsigned int changes = 0;
	sd_bus *bus = NULL;
	size_t n = 0;
	int r = get && floor ? sd_bus_open_system(&bus) : -ENOMEM;

	while (r >= 0 && n < MAX_CALLS && now_ns() < deadline) {
		sd_bus_message *reply = NULL;
		char *v = NULL;
		uint64_t t0 = now_ns();

		r = sd_bus_get_property_string(bus, "org.smplaser.Laser1", path,
					       "org.smplaser.Laser1.Unit", "State", NULL, &v);
		get[n] = now_ns() - t0;
		if (r < 0)
			break;
		snprintf(state, sizeof(state), "%s", v);
		free(v);
		if (last[0] && strcmp(last, state) != 0)
			changes++;
		snprintf(last, sizeof(last), "%s", state);
		t0 = now_ns();
		r = sd_bus_call_method(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus",
				       "org.freedesktop.DBus", "GetId", NULL, &reply, "");
		floor[n++] = now_ns() - t0;
		sd_bus_message_unref(reply);
	}
	if (r < 0 || n == 0) {
		fprintf(stderr, "get-state: %s after %zu calls\n", strerror(r < 0 ? -r : EIO), n);
	} else {
		printf("calls=%zu", n);
		print_quantiles("get", get, n);
		print_quantiles("floor", floor, n);
		printf("\nstate_changes=%u last_state=%s\n", changes, last);
	}
	free(get);
	free(floor);
	sd_bus_flush_close_unref(bus);
	return r < 0 || n == 0;
}

int main(int argc, char **argv)
{
	if (argc == 5 && strcmp(argv[1], "latency") == 0)
		return cmd_latency(argv[2], argv[3], atoi(argv[4]));
	if (argc == 5 && strcmp(argv[1], "kill-standby") == 0)
		return cmd_kill_standby((pid_t)atoi(argv[2]), argv[3],
					(unsigned int)atoi(argv[4]));
	if (argc == 5 && strcmp(argv[1], "wait-unit") == 0)
		return cmd_wait_unit(argv[2], argv[3], (unsigned int)atoi(argv[4]), false);
	if (argc == 4 && strcmp(argv[1], "wait-gone") == 0)
		return cmd_wait_unit(argv[2], "-", (unsigned int)atoi(argv[3]), true);
	if (argc == 4 && strcmp(argv[1], "get-state") == 0)
		return cmd_get_state(argv[2], (unsigned int)atoi(argv[3]));
	if (argc == 3 && strcmp(argv[1], "watch-objects") == 0)
		return cmd_watch_objects((unsigned int)atoi(argv[2]));
	fprintf(stderr, "usage: smplaser-daemon-probe latency UNIT_PATH GADGET_SOCK TRIALS\n"
			"       smplaser-daemon-probe get-state UNIT_PATH SECONDS\n"
			"       smplaser-daemon-probe watch-objects SECONDS\n"
			"       smplaser-daemon-probe wait-unit UNIT_PATH BACKEND|- SECONDS\n"
			"       smplaser-daemon-probe wait-gone UNIT_PATH SECONDS\n"
			"       smplaser-daemon-probe kill-standby PID GADGET_SOCK TIMEOUT_MS\n");
	return 2;
}
