// SPDX-License-Identifier: MIT
/*
 * The gadget's test-control socket: a technician's hands and a broken unit,
 * for shell scripts.  One command per line, one reply line per command:
 * "ok [key=value ...]" or "error: reason".  Also the --ctl client and the
 * nv file (what survives a power cycle).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "codec.h"
#include "gadget.h"

#define CTL_LINE_MAX	256
#define CTL_REPLY_MAX	1024
#define CTL_MAX_ARGS	8
#define CTL_TIMEOUT_S	2	/* a client that sends nothing is dropped */

/* --- parsing helpers ----------------------------------------------------- */

static bool parse_i64(const char *s, int64_t *out)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 0);
	if (errno || end == s || *end)
		return false;
	*out = v;
	return true;
}

static bool parse_bool(const char *s, const char *yes, const char *no, bool *out)
{
	if (strcmp(s, yes) == 0) {
		*out = true;
		return true;
	}
	if (strcmp(s, no) == 0) {
		*out = false;
		return true;
	}
	return false;
}


static int fault_code(const char *s)
{
	int64_t v;

	if (parse_i64(s, &v))
		return v >= 1 && v <= SMPL_FAULT__MAX ? (int)v : -1;
	for (int f = 1; f <= SMPL_FAULT__MAX; f++) {
		const char *name = smpl_fault_name((uint8_t)f);
		char alt[32];

		/* "SELF_TEST", "self_test" and "self-test" all name one fault. */
		snprintf(alt, sizeof(alt), "%s", name);
		for (char *p = alt; *p; p++)
			if (*p == '_')
				*p = '-';
		if (strcasecmp(s, name) == 0 || strcasecmp(s, alt) == 0)
			return f;
	}
	return -1;
}

static const struct {
	const char *name;
	enum smpl_hostile mode;
} hostile_modes[] = {
	{ "none", SMPL_HOSTILE_NONE },
	{ "short", SMPL_HOSTILE_SHORT },
	{ "oversize", SMPL_HOSTILE_OVERSIZE },
	{ "bad-crc", SMPL_HOSTILE_BAD_CRC },
	{ "wrong-seq", SMPL_HOSTILE_WRONG_SEQ },
	{ "stall", SMPL_HOSTILE_STALL },
	{ "no-answer", SMPL_HOSTILE_NO_ANSWER },
	{ "flood", SMPL_HOSTILE_FLOOD },
	{ "ignore-disarm", SMPL_HOSTILE_IGNORE_DISARM },
	{ "stuck-counter", SMPL_HOSTILE_STUCK_COUNTER },
	{ "fast-rate", SMPL_HOSTILE_FAST_RATE },
	{ "lie-standby", SMPL_HOSTILE_LIE_STANDBY },
};

/* --- commands ------------------------------------------------------------ */

typedef int (*ctl_fn)(struct gadget *g, char **argv, char *reply, size_t size);

static void interlock_list(uint16_t bits, char *buf, size_t size)
{
	size_t used = 0;

	buf[0] = '\0';
	for (unsigned int i = 0; i < SMPL_IL_COUNT; i++) {
		if (bits & (1u << i))
			used += (size_t)snprintf(buf + used, size - used, "%s%s", used ? "," : "",
						 smpl_interlock_name((uint16_t)(1u << i)));
		if (used >= size)
			break;
	}
	if (!buf[0])
		snprintf(buf, size, "none");
}

static int cmd_status(struct gadget *g, char **argv, char *reply, size_t size)
{
	struct smpl_model_view v;
	char open[128];
	const char *usb;

	(void)argv;
	pthread_mutex_lock(&g->lock);
	smpl_model_advance(g->model, gadget_now_ms());
	gadget_note_state(g);
	smpl_model_view(g->model, gadget_now_ms(), &v);
	interlock_list(v.interlocks, open, sizeof(open));
	usb = g->enabled ? "configured" : g->plugged ? "bound" : "unplugged";
	snprintf(reply, size,
		 "serial=%s state=%s fault=%s interlocks=0x%04x open=%s footswitch=%d need_release=%d"
		 " shots=%" PRIu32 " last_energy_uj=%" PRIu32 " rtc=%" PRId64
		 " powered=%d usb=%s state_changed_ns=%" PRIu64 " now_ns=%" PRIu64
		 " commands=%lu replies=%lu stalls=%lu reports=%lu reports_dropped=%" PRIu32
		 " setups=%lu disarms=%lu disconnects=%lu commands_dropped=%lu"
		 " disarm_requests=%lu",
		 g->cfg.serial, smpl_state_name(v.state), smpl_fault_name(v.fault),
		 v.interlocks, open,
		 v.footswitch, v.need_release, v.shot_count, v.last_energy_uj, v.rtc_s,
		 g->powered, usb, g->state_changed_ns, gadget_now_ns(),
		 g->commands, g->replies, g->stalls, g->reports,
		 smpl_model_reports_dropped(g->model), g->setups, g->disarms, g->disconnects,
		 g->commands_dropped, g->disarm_requests);
	pthread_mutex_unlock(&g->lock);
	return 0;
}

static int cmd_footswitch(struct gadget *g, char **argv, char *reply, size_t size)
{
	bool held;

	if (!parse_bool(argv[1], "1", "0", &held)) {
		snprintf(reply, size, "footswitch 1|0");
		return -1;
	}
	pthread_mutex_lock(&g->lock);
	smpl_model_set_footswitch(g->model, gadget_now_ms(), held);
	gadget_note_state(g);
	pthread_mutex_unlock(&g->lock);
	return 0;
}

static int cmd_interlock(struct gadget *g, char **argv, char *reply, size_t size)
{
	uint16_t bit = smpl_interlock_by_name(argv[1]);
	bool open;

	if (!bit || !parse_bool(argv[2], "open", "closed", &open)) {
		snprintf(reply, size,
			 "interlock key|door|estop|handpiece|cooling|temperature|shutter open|closed");
		return -1;
	}
	pthread_mutex_lock(&g->lock);
	smpl_model_set_interlock(g->model, gadget_now_ms(), bit, open);
	gadget_note_state(g);
	pthread_mutex_unlock(&g->lock);
	return 0;
}

static int cmd_drift(struct gadget *g, char **argv, char *reply, size_t size)
{
	int64_t ppm;

	if (!parse_i64(argv[1], &ppm) || ppm < INT32_MIN || ppm > INT32_MAX) {
		snprintf(reply, size, "drift PPM (a signed 32-bit number)");
		return -1;
	}
	pthread_mutex_lock(&g->lock);
	smpl_model_set_drift(g->model, (int32_t)ppm);
	pthread_mutex_unlock(&g->lock);
	return 0;
}

static int cmd_fault(struct gadget *g, char **argv, char *reply, size_t size)
{
	int code = fault_code(argv[1]);

	if (code < 0) {
		snprintf(reply, size, "fault CODE: 1..%d or a name (watchdog, energy, ...)",
			 SMPL_FAULT__MAX);
		return -1;
	}
	pthread_mutex_lock(&g->lock);
	smpl_model_inject_fault(g->model, gadget_now_ms(), (uint8_t)code);
	gadget_note_state(g);
	pthread_mutex_unlock(&g->lock);
	return 0;
}

static int cmd_clear_fault(struct gadget *g, char **argv, char *reply, size_t size)
{
	(void)argv, (void)reply, (void)size;
	pthread_mutex_lock(&g->lock);
	smpl_model_clear_fault_cause(g->model, gadget_now_ms());
	gadget_note_state(g);
	pthread_mutex_unlock(&g->lock);
	return 0;
}

static int cmd_calibration(struct gadget *g, char **argv, char *reply, size_t size)
{
	bool valid;

	if (!parse_bool(argv[1], "valid", "expired", &valid)) {
		snprintf(reply, size, "calibration valid|expired");
		return -1;
	}
	pthread_mutex_lock(&g->lock);
	smpl_model_set_calibrated(g->model, gadget_now_ms(), valid);
	gadget_note_state(g);
	pthread_mutex_unlock(&g->lock);
	return 0;
}

static int cmd_rtc_skew(struct gadget *g, char **argv, char *reply, size_t size)
{
	int64_t s;

	if (!parse_i64(argv[1], &s)) {
		snprintf(reply, size, "rtc-skew SECONDS");
		return -1;
	}
	pthread_mutex_lock(&g->lock);
	smpl_model_set_rtc_skew(g->model, s);
	pthread_mutex_unlock(&g->lock);
	return 0;
}

static int cmd_hostile(struct gadget *g, char **argv, char *reply, size_t size)
{
	int64_t count;

	if (!parse_i64(argv[2], &count) || count < 0 || count > 1000000)
		goto bad;
	for (size_t i = 0; i < sizeof(hostile_modes) / sizeof(hostile_modes[0]); i++) {
		if (strcmp(argv[1], hostile_modes[i].name))
			continue;
		pthread_mutex_lock(&g->lock);
		smpl_model_set_hostile(g->model, hostile_modes[i].mode, (unsigned int)count);
		pthread_cond_broadcast(&g->changed);	/* a flood starts now */
		pthread_mutex_unlock(&g->lock);
		return 0;
	}
bad:
	snprintf(reply, size, "hostile none|short|oversize|bad-crc|wrong-seq|stall|"
		 "no-answer|flood COUNT");
	return -1;
}

/* "late MS COUNT", "slow MS COUNT": MS and COUNT, or false. */
static bool parse_ms_count(char **argv, uint32_t *ms, unsigned int *count)
{
	int64_t m, c;

	if (!parse_i64(argv[1], &m) || m < 0 || m > 600000 ||
	    !parse_i64(argv[2], &c) || c < 0 || c > 1000000)
		return false;
	*ms = (uint32_t)m;
	*count = (unsigned int)c;
	return true;
}

/* The next COUNT replies go out MS ms after their command came. */
static int cmd_late(struct gadget *g, char **argv, char *reply, size_t size)
{
	uint32_t ms;
	unsigned int count;

	if (!parse_ms_count(argv, &ms, &count)) {
		snprintf(reply, size, "late MS COUNT");
		return -1;
	}
	pthread_mutex_lock(&g->lock);
	g->late_ms = ms;
	g->late_count = count;
	pthread_mutex_unlock(&g->lock);
	return 0;
}

/* The next COUNT commands reach the unit MS ms after they came. */
static int cmd_slow(struct gadget *g, char **argv, char *reply, size_t size)
{
	uint32_t ms;
	unsigned int count;

	if (!parse_ms_count(argv, &ms, &count)) {
		snprintf(reply, size, "slow MS COUNT");
		return -1;
	}
	pthread_mutex_lock(&g->lock);
	g->slow_ms = ms;
	g->slow_count = count;
	pthread_mutex_unlock(&g->lock);
	return 0;
}

/* The next COUNT commands never reach the unit: no effect, no reply. */
static int cmd_deaf(struct gadget *g, char **argv, char *reply, size_t size)
{
	int64_t count;

	if (!parse_i64(argv[1], &count) || count < 0 || count > 1000000) {
		snprintf(reply, size, "deaf COUNT");
		return -1;
	}
	pthread_mutex_lock(&g->lock);
	g->deaf_count = (unsigned int)count;
	pthread_mutex_unlock(&g->lock);
	return 0;
}

void gadget_deadline(struct timespec *ts, uint64_t ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += (time_t)(ms / 1000);
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

static bool reports_read(struct gadget *g)
{
	smpl_model_advance(g->model, gadget_now_ms());
	return !g->report_in_flight && smpl_model_reports_queued(g->model) == 0;
}

/* Wait until the host has read every queued report, at most @timeout_ms.
 * Lock held; g->changed waits on CLOCK_MONOTONIC.  0 or -ETIMEDOUT. */
static int wait_reports_read(struct gadget *g, uint64_t timeout_ms)
{
	struct timespec until;

	gadget_deadline(&until, timeout_ms);
	while (!reports_read(g))
		if (pthread_cond_timedwait(&g->changed, &g->lock, &until) == ETIMEDOUT)
			return reports_read(g) ? 0 : -ETIMEDOUT;
	return 0;
}

/* "drain MS": wait until the host has read every queued report. */
static int cmd_drain(struct gadget *g, char **argv, char *reply, size_t size)
{
	int64_t ms;
	int r;

	if (!parse_i64(argv[1], &ms) || ms < 0 || ms > 60000) {
		snprintf(reply, size, "drain MS");
		return -1;
	}
	pthread_mutex_lock(&g->lock);
	r = wait_reports_read(g, (uint64_t)ms);
	pthread_mutex_unlock(&g->lock);
	if (r < 0)
		snprintf(reply, size, "reports still queued after %" PRId64 " ms", ms);
	return r < 0 ? -1 : 0;
}

static int cmd_reports(struct gadget *g, char **argv, char *reply, size_t size)
{
	static const char *const names[] = {
		[GADGET_REPORTS_NORMAL] = "normal", [GADGET_REPORTS_SILENT] = "silent",
		[GADGET_REPORTS_GARBAGE] = "garbage", [GADGET_REPORTS_STALL] = "stall",
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(argv[1], names[i]))
			continue;
		pthread_mutex_lock(&g->lock);
		g->reports_mode = (enum gadget_reports)i;
		pthread_cond_broadcast(&g->changed);
		pthread_mutex_unlock(&g->lock);
		return 0;
	}
	snprintf(reply, size, "reports normal|silent|garbage|stall");
	return -1;
}

static int cmd_disarm_request(struct gadget *g, char **argv, char *reply, size_t size)
{
	static const char *const names[] = {
		[GADGET_DISARM_NORMAL] = "normal", [GADGET_DISARM_STALL] = "stall",
		[GADGET_DISARM_HANG] = "hang", [GADGET_DISARM_IGNORE] = "ignore",
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(argv[1], names[i]))
			continue;
		pthread_mutex_lock(&g->lock);
		g->disarm_mode = (enum gadget_disarm_request)i;
		pthread_cond_broadcast(&g->changed);
		pthread_mutex_unlock(&g->lock);
		return 0;
	}
	snprintf(reply, size, "disarm-request normal|stall|hang|ignore");
	return -1;
}

static int usb_result(int ret, char *reply, size_t size)
{
	if (ret)
		snprintf(reply, size, "%s", strerror(-ret));
	return ret ? -1 : 0;
}

static int cmd_power(struct gadget *g, char **argv, char *reply, size_t size)
{
	bool on;

	if (!parse_bool(argv[1], "on", "off", &on)) {
		snprintf(reply, size, "power on|off");
		return -1;
	}
	return usb_result(gadget_set_power(g, on), reply, size);
}

static int cmd_unplug(struct gadget *g, char **argv, char *reply, size_t size)
{
	(void)argv;
	return usb_result(gadget_set_plugged(g, false), reply, size);
}

static int cmd_replug(struct gadget *g, char **argv, char *reply, size_t size)
{
	(void)argv;
	pthread_mutex_lock(&g->lock);
	if (!g->powered) {
		pthread_mutex_unlock(&g->lock);
		snprintf(reply, size, "the unit is powered off (power on)");
		return -1;
	}
	pthread_mutex_unlock(&g->lock);
	return usb_result(gadget_set_plugged(g, true), reply, size);
}

static int cmd_quit(struct gadget *g, char **argv, char *reply, size_t size)
{
	(void)g, (void)argv, (void)reply, (void)size;
	gadget_request_stop();
	return 0;
}

static const struct {
	const char *name;
	int args;
	ctl_fn fn;
} commands[] = {
	{ "status", 0, cmd_status },
	{ "footswitch", 1, cmd_footswitch },
	{ "interlock", 2, cmd_interlock },
	{ "drift", 1, cmd_drift },
	{ "fault", 1, cmd_fault },
	{ "clear-fault", 0, cmd_clear_fault },
	{ "calibration", 1, cmd_calibration },
	{ "rtc-skew", 1, cmd_rtc_skew },
	{ "hostile", 2, cmd_hostile },
	{ "late", 2, cmd_late },
	{ "slow", 2, cmd_slow },
	{ "deaf", 1, cmd_deaf },
	{ "reports", 1, cmd_reports },
	{ "drain", 1, cmd_drain },
	{ "disarm-request", 1, cmd_disarm_request },
	{ "power", 1, cmd_power },
	{ "unplug", 0, cmd_unplug },
	{ "replug", 0, cmd_replug },
	{ "quit", 0, cmd_quit },
};

void gadget_ctl_run_line(struct gadget *g, char *line, char *out, size_t size)
{
	char *argv[CTL_MAX_ARGS + 1];
	char reply[CTL_REPLY_MAX] = "";
	char *save = NULL;
	int argc = 0;

	for (char *w = strtok_r(line, " \t\r", &save); w; w = strtok_r(NULL, " \t\r", &save)) {
		if (argc == CTL_MAX_ARGS) {
			snprintf(out, size, "error: too many words");
			return;
		}
		argv[argc++] = w;
	}
	argv[argc] = NULL;
	if (argc == 0) {
		snprintf(out, size, "error: empty command");
		return;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(argv[0], commands[i].name))
			continue;
		if (argc - 1 != commands[i].args) {
			snprintf(out, size, "error: %s takes %d argument(s)", argv[0],
				 commands[i].args);
			return;
		}
		if (commands[i].fn(g, argv, reply, sizeof(reply)))
			snprintf(out, size, "error: %s", reply[0] ? reply : "failed");
		else
			snprintf(out, size, "ok%s%s", reply[0] ? " " : "", reply);
		if (g->verbose)
			fprintf(stderr, "smplaser-gadget: control: %s -> %s\n", argv[0], out);
		return;
	}
	snprintf(out, size, "error: unknown command \"%s\" (status, footswitch, interlock, "
		 "drift, fault, clear-fault, calibration, rtc-skew, hostile, late, slow, deaf, reports, "
		 "drain, disarm-request, power, unplug, replug, quit)",
		 argv[0]);
}

/* --- server -------------------------------------------------------------- */

int gadget_ctl_listen(const char *path)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(addr.sun_path)) {
		fprintf(stderr, "smplaser-gadget: socket path too long: %s\n", path);
		return -1;
	}
	strcpy(addr.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	unlink(path);
	if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) || listen(fd, 8)) {
		fprintf(stderr, "smplaser-gadget: control socket %s: %s\n", path, strerror(errno));
		close(fd);
		return -1;
	}
	chmod(path, 0600);
	return fd;
}

static void write_reply(int fd, const char *reply)
{
	char line[CTL_REPLY_MAX + 32];
	int n = snprintf(line, sizeof(line), "%s\n", reply);

	if (n > 0)
		(void)!send(fd, line, (size_t)n, MSG_NOSIGNAL);
}

/* Serve one client: every complete line gets a reply; EOF ends it. */
static void serve_client(struct gadget *g, int fd)
{
	struct timeval tv = { .tv_sec = CTL_TIMEOUT_S };
	char buf[CTL_LINE_MAX + 1];
	char reply[CTL_REPLY_MAX + 16];
	size_t used = 0;

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	while (!gadget_stopping()) {
		ssize_t n = recv(fd, buf + used, sizeof(buf) - 1 - used, 0);
		char *nl;

		if (n <= 0) {
			if (used > 0 && n == 0) {	/* a last line without newline */
				buf[used] = '\0';
				gadget_ctl_run_line(g, buf, reply, sizeof(reply));
				write_reply(fd, reply);
			}
			return;
		}
		used += (size_t)n;
		buf[used] = '\0';
		while ((nl = strchr(buf, '\n'))) {
			*nl = '\0';
			gadget_ctl_run_line(g, buf, reply, sizeof(reply));
			write_reply(fd, reply);
			used -= (size_t)(nl + 1 - buf);
			memmove(buf, nl + 1, used + 1);
		}
		if (used == sizeof(buf) - 1) {
			write_reply(fd, "error: line too long");
			return;
		}
	}
}

void gadget_ctl_serve(struct gadget *g, int listen_fd)
{
	while (!gadget_stopping()) {
		int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno != EINTR)
				fprintf(stderr, "smplaser-gadget: accept: %s\n", strerror(errno));
			continue;
		}
		serve_client(g, fd);
		close(fd);
	}
}

/* --- client -------------------------------------------------------------- */

int gadget_ctl_client(const char *path, int argc, char **argv)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	char line[CTL_LINE_MAX + 2];
	char reply[CTL_REPLY_MAX + 32];
	size_t len = 0, got = 0;
	int fd;

	for (int i = 0; i < argc; i++) {
		int n = snprintf(line + len, sizeof(line) - len, "%s%s", i ? " " : "", argv[i]);

		if (n < 0 || (size_t)n >= sizeof(line) - len - 1) {
			fprintf(stderr, "smplaser-gadget: command too long\n");
			return 2;
		}
		len += (size_t)n;
	}
	line[len++] = '\n';

	if (strlen(path) >= sizeof(addr.sun_path)) {
		fprintf(stderr, "smplaser-gadget: socket path too long\n");
		return 2;
	}
	strcpy(addr.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr))) {
		fprintf(stderr, "smplaser-gadget: %s: %s\n", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return 2;
	}
	if (send(fd, line, len, MSG_NOSIGNAL) != (ssize_t)len) {
		fprintf(stderr, "smplaser-gadget: send: %s\n", strerror(errno));
		close(fd);
		return 2;
	}
	shutdown(fd, SHUT_WR);
	for (;;) {
		ssize_t n = recv(fd, reply + got, sizeof(reply) - 1 - got, 0);

		if (n <= 0)
			break;
		got += (size_t)n;
		if (got == sizeof(reply) - 1)
			break;
	}
	close(fd);
	reply[got] = '\0';
	fputs(reply, stdout);
	return strncmp(reply, "ok", 2) == 0 && (reply[2] == ' ' || reply[2] == '\n') ? 0 : 1;
}

/* --- nv file ------------------------------------------------------------- */

int gadget_nv_load(const char *path, struct smpl_model_nv *nv)
{
	FILE *f = fopen(path, "re");
	char line[128];
	int lineno = 0;

	memset(nv, 0, sizeof(*nv));
	if (!f)
		return errno == ENOENT ? 0 : (perror(path), -1);	/* a new unit */
	while (fgets(line, sizeof(line), f)) {
		unsigned long long shots;
		long long offset;

		lineno++;
		if (sscanf(line, "shot_count=%llu", &shots) == 1 && shots <= UINT32_MAX) {
			nv->shot_count = (uint32_t)shots;
		} else if (sscanf(line, "rtc_offset_s=%lld", &offset) == 1) {
			nv->rtc_offset_s = offset;
		} else {
			fprintf(stderr, "smplaser-gadget: %s:%d: not shot_count=N or rtc_offset_s=N\n",
				path, lineno);
			fclose(f);
			return -1;
		}
	}
	fclose(f);
	return 0;
}

int gadget_nv_save(const char *path, const struct smpl_model_nv *nv)
{
	char tmp[512];
	FILE *f;
	int ok;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "we");
	if (!f) {
		fprintf(stderr, "smplaser-gadget: %s: %s\n", tmp, strerror(errno));
		return -1;
	}
	fprintf(f, "shot_count=%" PRIu32 "\nrtc_offset_s=%" PRId64 "\n",
		nv->shot_count, nv->rtc_offset_s);
	ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
	ok = (fclose(f) == 0) && ok;
	if (!ok || rename(tmp, path)) {
		fprintf(stderr, "smplaser-gadget: saving %s: %s\n", path, strerror(errno));
		unlink(tmp);
		return -1;
	}
	return 0;
}
