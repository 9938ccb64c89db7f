// SPDX-License-Identifier: MIT
/*
 * The daemon's figures of issue 12, measured on the real smplaserd --session
 * --sim on a private dbus-daemon, from an sd-bus client (this program, one
 * call at a time, so that the client is not the bottleneck):
 *
 *   bench_daemon [--calls=N] [--starts=N] [--figures] [--rss-limit=KiB]
 *                [--floor=LIB_FLOOR] SMPLASERD STATE_DIR LABEL
 *
 * - start to READY=1: from the fork to the READY=1 datagram on our own
 *   $NOTIFY_SOCKET, --starts times after one start that is not counted (it
 *   creates an empty database; later starts open it with the page cache warm);
 * - the integrity check smplaserd runs after READY, in the background: the
 *   time it took (it logs it), waited for before the figures below;
 * - with --figures, N calls each (at most a minute's worth; interleaved call by call with the floor,
 *   org.freedesktop.DBus.GetId on the same bus, answered by the bus itself,
 *   and Peer.Ping to smplaserd, which sd-bus answers without a handler: the
 *   floor of any call that crosses the bus twice, which the figures are
 *   judged against; see figure()): Get(State) of the unit, CheckPatch
 *   of a patient with 10 treatments (P-xxxx00 of tests/bench/gen_records.c,
 *   a different one each call) and of an unknown patient;
 * - idle RSS: VmRSS a second after the calls (each kind run at least 500
 *   times, so the caches have filled), judged against the target, beside its
 *   floor: the RSS of LIB_FLOOR, a process that maps the same shared libraries
 *   and does nothing (their pages are counted in each process's VmRSS); then
 *   what is above that floor, the part no other process maps, and the
 *   anonymous memory (heap and stacks) that grows with the records.
 * Rows are printed in the format of bench-table.h; LABEL names the database.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <systemd/sd-bus.h>

#include "bench-table.h"

#define BUS_NAME	"org.smplaser.Laser1"
#define ROOT		"/org/smplaser/Laser1"
#define UNIT_PATH	ROOT "/unit/SIM00001"
#define MANAGER		"org.smplaser.Laser1.Manager"

static const char *const patches[] = {
	"frontal-hairline", "mid-scalp", "crown", "left-temporal",
	"right-temporal", "left-parietal", "right-parietal", "occipital",
};

static const char bus_conf[] =
	"<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\"\n"
	" \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n"
	"<busconfig><type>session</type><listen>unix:path=%s/bus</listen>"
	"<auth>EXTERNAL</auth><policy context=\"default\"><allow user=\"*\"/>"
	"<allow send_destination=\"*\" eavesdrop=\"true\"/><allow eavesdrop=\"true\"/>"
	"<allow own=\"*\"/>"
	"</policy></busconfig>\n";

static const char *const tmp_names[] = { "bus", "bus.conf", "notify", "smplaserd.conf" };
#define N_TMP_FILES	(sizeof(tmp_names) / sizeof(tmp_names[0]))

struct bench {
	const char *daemon, *state_dir, *label;
	unsigned int calls, starts;
	bool figures;
	long rss_limit_kib;
	const char *floor_program;	/* --floor: tests/bench/lib_floor */
	char tmp[64];
	char tmp_files[N_TMP_FILES][96];	/* what tmp holds */
	char address[512];
	pid_t bus_pid, daemon_pid;
	char log_path[4200];		/* smplaserd's output */
	long log_start;			/* its size when the last smplaserd started */
	int notify_fd;
	sd_bus *bus;
};

static struct bench *cleanup_bench;

/* Interrupted: our dbus-daemon and smplaserd go with us. */
static void on_signal(int sig)
{
	struct bench *b = cleanup_bench;

	if (b && b->daemon_pid > 0)
		kill(b->daemon_pid, SIGTERM);
	if (b && b->bus_pid > 0)
		kill(b->bus_pid, SIGTERM);
	for (size_t i = 0; b && i < N_TMP_FILES; i++)
		unlink(b->tmp_files[i]);
	if (b && b->tmp[0])
		rmdir(b->tmp);
	signal(sig, SIG_DFL);
	raise(sig);
}

static void stop_pid(pid_t pid)
{
	if (pid <= 0)
		return;
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
}

static void cleanup(void)
{
	struct bench *b = cleanup_bench;

	if (!b)
		return;
	stop_pid(b->daemon_pid);
	b->daemon_pid = 0;
	sd_bus_flush_close_unref(b->bus);
	b->bus = NULL;
	stop_pid(b->bus_pid);
	b->bus_pid = 0;
	if (b->tmp[0]) {
		for (size_t i = 0; i < N_TMP_FILES; i++)
			unlink(b->tmp_files[i]);
		rmdir(b->tmp);
		b->tmp[0] = '\0';
	}
}

__attribute__((format(printf, 1, 2), noreturn))
static void die(const char *fmt, ...)
{
	va_list ap;

	fputs("bench_daemon: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	cleanup();
	exit(1);
}

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	if (!f || fputs(text, f) < 0 || fclose(f) != 0)
		die("cannot write %s: %s", path, strerror(errno));
}

/* A private dbus-daemon; its address into b->address. */
static void start_bus(struct bench *b)
{
	char conf[sizeof(bus_conf) + 64], path[128], arg[160];
	int pipefd[2];
	ssize_t n;
	size_t len = 0;

	snprintf(b->tmp, sizeof(b->tmp), "/tmp/smpl-bench-XXXXXX");
	if (!mkdtemp(b->tmp))
		die("mkdtemp: %s", strerror(errno));
	for (size_t i = 0; i < N_TMP_FILES; i++)
		snprintf(b->tmp_files[i], sizeof(b->tmp_files[i]), "%s/%s", b->tmp, tmp_names[i]);
	snprintf(conf, sizeof(conf), bus_conf, b->tmp);
	snprintf(path, sizeof(path), "%s/bus.conf", b->tmp);
	write_text(path, conf);
	if (pipe2(pipefd, O_CLOEXEC) < 0)
		die("pipe: %s", strerror(errno));
	b->bus_pid = fork();
	if (b->bus_pid < 0)
		die("fork: %s", strerror(errno));
	if (b->bus_pid == 0) {
		int null = open("/dev/null", O_RDWR);

		dup2(pipefd[1], 1);
		dup2(null, 2);
		snprintf(arg, sizeof(arg), "--config-file=%s", path);
		execlp("dbus-daemon", "dbus-daemon", arg, "--nofork", "--print-address=1",
		       (char *)NULL);
		_exit(127);
	}
	close(pipefd[1]);
	while (len + 1 < sizeof(b->address) &&
	       (n = read(pipefd[0], b->address + len, sizeof(b->address) - 1 - len)) > 0) {
		len += (size_t)n;
		if (memchr(b->address, '\n', len))
			break;
	}
	close(pipefd[0]);
	b->address[len] = '\0';
	b->address[strcspn(b->address, "\n")] = '\0';
	if (!b->address[0])
		die("dbus-daemon did not start");
}

static void connect_bus(struct bench *b)
{
	int r = sd_bus_new(&b->bus);

	if (r >= 0)
		r = sd_bus_set_address(b->bus, b->address);
	if (r >= 0)
		r = sd_bus_set_bus_client(b->bus, 1);
	if (r >= 0)
		r = sd_bus_start(b->bus);
	if (r < 0)
		die("cannot connect to %s: %s", b->address, strerror(-r));
}

/* Our own $NOTIFY_SOCKET, as systemd's. */
static void open_notify_socket(struct bench *b)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/notify", b->tmp);
	b->notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (b->notify_fd < 0 || bind(b->notify_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("notify socket: %s", strerror(errno));
}

static bool name_has_owner(struct bench *b)
{
	sd_bus_message *reply = NULL;
	int has = 0, r;

	r = sd_bus_call_method(b->bus, "org.freedesktop.DBus", "/org/freedesktop/DBus",
			       "org.freedesktop.DBus", "NameHasOwner", NULL, &reply, "s", BUS_NAME);
	if (r >= 0)
		r = sd_bus_message_read(reply, "b", &has);
	sd_bus_message_unref(reply);
	if (r < 0)
		die("NameHasOwner: %s", strerror(-r));
	return has;
}

/* Forks smplaserd; returns the microseconds until READY=1. */
static double start_daemon(struct bench *b)
{
	char *log = b->log_path, conf[128], notify[128], state[4200], dbus[600];
	struct stat sb;
	double t0;
	int status;

	snprintf(conf, sizeof(conf), "%s/smplaserd.conf", b->tmp);
	write_text(conf, "");
	snprintf(b->log_path, sizeof(b->log_path), "%s.log", b->state_dir);
	b->log_start = stat(log, &sb) == 0 ? sb.st_size : 0;
	snprintf(notify, sizeof(notify), "NOTIFY_SOCKET=%s/notify", b->tmp);
	snprintf(dbus, sizeof(dbus), "DBUS_SESSION_BUS_ADDRESS=%s", b->address);
	snprintf(state, sizeof(state), "--state-dir=%s", b->state_dir);
	while (name_has_owner(b))	/* the last one's name released */
		usleep(1000);
	t0 = bench_now_us();
	b->daemon_pid = fork();
	if (b->daemon_pid < 0)
		die("fork: %s", strerror(errno));
	if (b->daemon_pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);

		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		unsetenv("INVOCATION_ID");
		unsetenv("WATCHDOG_USEC");
		putenv(notify);
		putenv(dbus);
		execl(b->daemon, b->daemon, "--session", "--sim", "--config", conf, state,
		      (char *)NULL);
		_exit(127);
	}
	for (;;) {
		struct pollfd p = { .fd = b->notify_fd, .events = POLLIN };
		char msg[4096];
		ssize_t n;

		if (waitpid(b->daemon_pid, &status, WNOHANG) == b->daemon_pid) {
			b->daemon_pid = 0;
			die("smplaserd exited (status %#x) before READY=1; see %s", status, log);
		}
		if (bench_now_us() - t0 > 120e6)
			die("no READY=1 from smplaserd in 120 s; see %s", log);
		if (poll(&p, 1, 100) <= 0)
			continue;
		n = recv(b->notify_fd, msg, sizeof(msg) - 1, 0);
		if (n <= 0)
			continue;
		msg[n] = '\0';
		if (strstr(msg, "READY=1"))
			return bench_now_us() - t0;
	}
}

static void stop_daemon(struct bench *b)
{
	stop_pid(b->daemon_pid);
	b->daemon_pid = 0;
}

static int get_string(struct bench *b, const char *path, const char *iface, const char *prop,
		      char *buf, size_t len)
{
	sd_bus_error err = SD_BUS_ERROR_NULL;
	char *s = NULL;
	int r = sd_bus_get_property_string(b->bus, BUS_NAME, path, iface, prop, &err, &s);

	sd_bus_error_free(&err);
	if (r >= 0)
		snprintf(buf, len, "%s", s);
	free(s);
	return r;
}

/* Until the Manager says "running" (the simulated unit probed). */
static void wait_running(struct bench *b)
{
	double t0 = bench_now_us();
	char state[32];

	while (get_string(b, ROOT, MANAGER, "State", state, sizeof(state)) < 0 ||
	       strcmp(state, "running") != 0) {
		if (bench_now_us() - t0 > 60e6)
			die("smplaserd not running after 60 s");
		usleep(10000);
	}
}

/* A process's memory, from /proc/PID/smaps_rollup, in KiB (-1: unread). */
struct mem {
	long rss;		/* VmRSS: every page mapped, shared libraries' too */
	long private_kib;	/* Private_Clean + Private_Dirty: no other process maps them */
	long anon;		/* Anonymous: heap, stacks, the libraries' written data */
};

static struct mem mem_of(pid_t pid)
{
	struct mem m = { -1, 0, -1 };
	char path[64], line[256];
	long v;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return m;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "Rss: %ld kB", &v) == 1)
			m.rss = v;
		else if (sscanf(line, "Anonymous: %ld kB", &v) == 1)
			m.anon = v;
		else if (sscanf(line, "Private_Clean: %ld kB", &v) == 1 ||
			 sscanf(line, "Private_Dirty: %ld kB", &v) == 1)
			m.private_kib += v;
	}
	fclose(f);
	return m;
}

/*
 * The floor of idle RSS: tests/bench/lib_floor, the daemon's shared libraries
 * mapped and nothing done, measured in this run.  -1 if it cannot be run.
 */
static long floor_rss_kib(const char *program)
{
	struct mem m = { -1, 0, -1 };
	char line[32];
	FILE *p;
	int pid;

	if (!program)
		return -1;
	p = popen(program, "r");
	if (!p)
		return -1;
	if (fgets(line, sizeof(line), p) && sscanf(line, "%d", &pid) == 1 && pid > 0) {
		usleep(200 * 1000);
		m = mem_of(pid);
		kill(pid, SIGTERM);
	}
	pclose(p);
	return m.rss;
}

static void print_mib(char *buf, size_t len, long kib)
{
	if (kib < 0)
		snprintf(buf, len, "-");
	else
		snprintf(buf, len, "%.2f MiB", kib / 1024.0);
}

/*
 * Idle memory: VmRSS judged against the target, beside the floor of
 * the libraries alone; then the parts of it that are smplaserd's own.
 */
static void memory_rows(struct bench *b, bool checked)
{
	struct mem m = mem_of(b->daemon_pid);
	long floor_kib = floor_rss_kib(b->floor_program);
	char label[96], value[32], fl[32], ratio[32], target[32];

	snprintf(label, sizeof(label), "idle RSS (%s%s)", b->label,
		 checked ? "" : ", check not finished");
	print_mib(value, sizeof(value), m.rss);
	print_mib(fl, sizeof(fl), floor_kib);
	if (floor_kib > 0 && m.rss >= 0)
		snprintf(ratio, sizeof(ratio), "%.2fx", (double)m.rss / (double)floor_kib);
	else
		snprintf(ratio, sizeof(ratio), "-");
	snprintf(target, sizeof(target), "<= %.0f MiB", b->rss_limit_kib / 1024.0);
	bench_row_text(label, value, "-", fl, ratio, b->rss_limit_kib ? target : "-",
		       !b->rss_limit_kib ? "" : m.rss >= 0 && m.rss <= b->rss_limit_kib ?
		       "ok" : "OVER");
	snprintf(label, sizeof(label), "  above the libraries' floor (%s)", b->label);
	print_mib(value, sizeof(value), floor_kib > 0 && m.rss >= 0 ? m.rss - floor_kib : -1);
	bench_row_text(label, value, "-", "-", "-", "-", "");
	snprintf(label, sizeof(label), "  not shared with other processes (%s)", b->label);
	print_mib(value, sizeof(value), m.rss >= 0 ? m.private_kib : -1);
	bench_row_text(label, value, "-", "-", "-", "-", "");
	snprintf(label, sizeof(label), "  anonymous: heap, stacks (%s)", b->label);
	print_mib(value, sizeof(value), m.anon);
	bench_row_text(label, value, "-", "-", "-", "-", "");
}

/*
 * Until smplaserd has logged the end of its integrity check (it runs after
 * READY, in the background), at most @seconds; false if it has not.  The
 * time it took (from "passed its integrity check (N s)") into *took_s.
 */
static bool wait_checked(struct bench *b, double seconds, double *took_s)
{
	double t0 = bench_now_us();

	*took_s = NAN;
	do {
		FILE *f = fopen(b->log_path, "r");
		char line[1024], *p = NULL;

		if (f && fseek(f, b->log_start, SEEK_SET) == 0)
			while (!p && fgets(line, sizeof(line), f))
				p = strstr(line, "integrity check");
		if (f)
			fclose(f);
		if (p) {
			if (sscanf(p, "integrity check (%lf s)", took_s) != 1)
				*took_s = NAN;
			return true;
		}
		usleep(100000);
	} while (bench_now_us() - t0 < seconds * 1e6);
	return false;
}

/* ---- the calls ---------------------------------------------------------- */

typedef int (*call_fn)(struct bench *b, unsigned int i);

static int call(struct bench *b, const char *dest, const char *path, const char *iface,
		const char *method, const char *sig, const char *a1, const char *a2)
{
	sd_bus_error err = SD_BUS_ERROR_NULL;
	sd_bus_message *reply = NULL;
	int r;

	if (!sig)
		r = sd_bus_call_method(b->bus, dest, path, iface, method, &err, &reply, NULL);
	else
		r = sd_bus_call_method(b->bus, dest, path, iface, method, &err, &reply, sig, a1,
				       a2);
	if (r < 0)
		fprintf(stderr, "bench_daemon: %s.%s: %s: %s\n", iface, method,
			err.name ? err.name : strerror(-r), err.message ? err.message : "");
	sd_bus_error_free(&err);
	sd_bus_message_unref(reply);
	return r;
}

static int call_floor(struct bench *b, unsigned int i)
{
	(void)i;
	return call(b, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
		    "GetId", NULL, NULL, NULL);
}

static int call_ping(struct bench *b, unsigned int i)
{
	(void)i;
	return call(b, BUS_NAME, ROOT, "org.freedesktop.DBus.Peer", "Ping", NULL, NULL, NULL);
}

static int call_get_state(struct bench *b, unsigned int i)
{
	(void)i;
	return call(b, BUS_NAME, UNIT_PATH, "org.freedesktop.DBus.Properties", "Get", "ss",
		    "org.smplaser.Laser1.Unit", "State");
}

/* P-000000, P-000100, ...: 10 treatments each; ~1000 of them. */
static int call_check_known(struct bench *b, unsigned int i)
{
	char patient[16];

	snprintf(patient, sizeof(patient), "P-%06u", (i * 7919 % 990) * 100);
	return call(b, BUS_NAME, ROOT, MANAGER, "CheckPatch", "ss", patient, patches[i % 8]);
}

static int call_check_unknown(struct bench *b, unsigned int i)
{
	char patient[16];

	snprintf(patient, sizeof(patient), "U-%06u", i);
	return call(b, BUS_NAME, ROOT, MANAGER, "CheckPatch", "ss", patient, patches[i % 8]);
}

#define FIGURE_BUDGET_US	60e6	/* a figure stops after a minute (the code before issue 12) */

/*
 * @n calls of @fn, each beside one call of each floor (the order turns), or
 * as many as a minute allows; returns how many.  @hop1: GetId, answered by
 * the bus; @hop2: Peer.Ping to smplaserd, which crosses the bus twice as any
 * method or property of the daemon does, answered by sd-bus with no handler.
 */
static unsigned int measure(struct bench *b, call_fn fn, unsigned int n, double *fig,
			    double *hop1, double *hop2)
{
	call_fn order[3][3] = {
		{ fn, call_floor, call_ping },
		{ call_floor, call_ping, fn },
		{ call_ping, fn, call_floor },
	};
	double start = bench_now_us();
	unsigned int i;

	for (i = 0; i < n && bench_now_us() - start < FIGURE_BUDGET_US; i++) {
		for (int k = 0; k < 3; k++) {
			call_fn f = order[i % 3][k];
			double t0 = bench_now_us();

			if (f(b, i) < 0)
				die("a call failed (see above)");
			*(f == fn ? &fig[i] : f == call_floor ? &hop1[i] : &hop2[i]) =
				bench_now_us() - t0;
		}
	}
	return i;
}

/*
 * One figure, judged against the 2-hop floor: a call to smplaserd cannot be
 * cheaper than a Ping to it (issue 12 asked for ratios to GetId, which the
 * bus answers itself; that ratio is printed under it, and timedated's
 * Get(Timezone) measured 2.0x of it when the issue was written).
 */
static void figure(struct bench *b, const char *name, call_fn fn, double limit,
		   double p99_limit, const char *target)
{
	unsigned int n = b->calls;
	double *fig = calloc(n, sizeof(double)), *h1 = calloc(n, sizeof(double));
	double *h2 = calloc(n, sizeof(double));
	double med, p99, hop1_med, hop2_med;
	char label[96], calls[24] = "";

	if (!fig || !h1 || !h2)
		die("out of memory");
	n = measure(b, fn, n, fig, h1, h2);
	med = bench_quantile(fig, n, 0.5);
	p99 = bench_quantile(fig, n, 0.99);
	hop1_med = bench_quantile(h1, n, 0.5);
	hop2_med = bench_quantile(h2, n, 0.5);
	if (n < b->calls)
		snprintf(calls, sizeof(calls), ", %u calls", n);
	snprintf(label, sizeof(label), "%s (%s%s)", name, b->label, calls);
	if (b->figures && fn == call_ping) {
		bench_row_us(label, med, p99, hop1_med, NAN, NAN, 1, "- (the 2-hop floor)");
	} else if (b->figures) {
		bench_row_us(label, med, p99, hop2_med, limit, p99_limit, 1, target);
		bench_row_us("  the same against GetId (1 hop)", med, p99, hop1_med, NAN, NAN, 1,
			     "- (issue 12's floor)");
	}
	free(fig);
	free(h1);
	free(h2);
}

static void run_figures(struct bench *b)
{
	unsigned int calls = b->calls;

	if (!b->figures)
		b->calls = calls < 500 ? calls : 500;	/* enough to fill the caches */
	figure(b, "Peer.Ping to smplaserd (no handler)", call_ping, NAN, NAN, "");
	figure(b, "Get(State) of a unit", call_get_state, 1.3, NAN, "<= 1.3x");
	figure(b, "CheckPatch, a patient with 10 treatments", call_check_known, 1.5, 3.0,
	       "<= 1.5x, p99 <= 3x");
	figure(b, "CheckPatch, unknown patient", call_check_unknown, 1.5, 3.0,
	       "<= 1.5x, p99 <= 3x");
	b->calls = calls;
}

static void parse(int argc, char **argv, struct bench *b)
{
	static const struct option opts[] = {
		{ "calls", required_argument, NULL, 'c' },
		{ "starts", required_argument, NULL, 's' },
		{ "figures", no_argument, NULL, 'f' },
		{ "rss-limit", required_argument, NULL, 'r' },
		{ "floor", required_argument, NULL, 'l' },
		{ NULL, 0, NULL, 0 }
	};
	int c;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			b->calls = (unsigned int)strtoul(optarg, NULL, 10);
			break;
		case 's':
			b->starts = (unsigned int)strtoul(optarg, NULL, 10);
			break;
		case 'f':
			b->figures = true;
			break;
		case 'r':
			b->rss_limit_kib = strtol(optarg, NULL, 10);
			break;
		case 'l':
			b->floor_program = optarg;
			break;
		default:
			exit(2);
		}
	}
	if (argc - optind != 3 || b->calls == 0 || b->starts == 0) {
		fprintf(stderr, "usage: bench_daemon [--calls=N] [--starts=N] [--figures] "
			"[--rss-limit=KiB] [--floor=LIB_FLOOR] SMPLASERD STATE_DIR LABEL\n");
		exit(2);
	}
	b->daemon = argv[optind];
	b->state_dir = argv[optind + 1];
	b->label = argv[optind + 2];
}

int main(int argc, char **argv)
{
	struct bench b = { .calls = 5000, .starts = 10, .notify_fd = -1 };
	double *ready;
	char label[96];
	double check_s;
	bool checked;

	parse(argc, argv, &b);
	cleanup_bench = &b;
	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	signal(SIGHUP, on_signal);
	start_bus(&b);
	connect_bus(&b);
	open_notify_socket(&b);

	ready = calloc(b.starts, sizeof(double));
	if (!ready)
		die("out of memory");
	start_daemon(&b);		/* creates or migrates the database; not counted */
	wait_running(&b);
	stop_daemon(&b);
	for (unsigned int i = 0; i < b.starts; i++) {
		ready[i] = start_daemon(&b);
		stop_daemon(&b);
	}
	snprintf(label, sizeof(label), "start to READY=1 (%s)", b.label);
	bench_row_us(label, bench_quantile(ready, b.starts, 0.5),
		     bench_quantile(ready, b.starts, 0.99), NAN, 50e3, NAN, 0, "<= 50 ms");
	free(ready);

	start_daemon(&b);
	wait_running(&b);
	/* The figures in the steady state, after the check that follows READY. */
	checked = wait_checked(&b, 120, &check_s);
	snprintf(label, sizeof(label), "  then its integrity check (%s)", b.label);
	bench_row_us(label, check_s * 1e6, NAN, NAN, NAN, NAN, 0,
		     checked ? "- (background, nice 19)" : "- (not finished in 120 s)");
	run_figures(&b);
	sleep(1);
	memory_rows(&b, checked);
	cleanup();
	return 0;
}
