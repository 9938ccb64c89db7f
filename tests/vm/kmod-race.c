// SPDX-License-Identifier: MIT
/*
 * kmod-race: the timing- and thread-sensitive tests of smplaser.ko for the
 * VM guest (tests/vm/guest/2*-kmod-*.sh).  Each scenario drives
 * /dev/smplaser0 from several threads and the gadget through its control
 * socket ($GADGET_SOCK), and prints TAP lines ("ok - ..." / "not ok - ...",
 * "# ..." diagnostics); the exit status is 1 when any failed.
 *
 *   kmod-race disarm-behind-slow   DISARM while another thread's command
 *                                  holds the device lock (the unit does not
 *                                  answer it): the disarm request reaches
 *                                  the unit at once; a signal while DISARM
 *                                  waits for the lock still leaves it
 *                                  disarmed
 *   kmod-race arm-cancel           a DISARM that reaches the unit before the
 *                                  ARM in flight: the ARM fails and the
 *                                  driver disarms again after it
 *   kmod-race late-heartbeat N     N trials: a HEARTBEAT just after
 *                                  heartbeat_ms does not keep the unit armed
 *   kmod-race readonly             an O_RDONLY opener cannot change the
 *                                  unit's state but can disarm it
 *   kmod-race self-standby         the unit leaves READY by itself (idle
 *                                  timeout): the driver no longer counts it
 *                                  armed
 *   kmod-race storm SECONDS        ARM, DISARM, HEARTBEAT, GET_STATUS, read
 *                                  and poll from six threads, then close()
 *                                  while they run; repeated with a dup()
 *   kmod-race close-unplug N       N times: close() racing the unplug
 *   kmod-race unplug-ioctl         unplug in the middle of each ioctl
 *   kmod-race unplug-states        unplug in STANDBY, ARMING, READY,
 *                                  EMITTING and FAULT
 *   kmod-race kill-behind-slow     SIGKILL of the opener while its command
 *                                  waits for a reply that never comes: the
 *                                  unit is disarmed at once, not once the
 *                                  command timed out
 *   kmod-race unbind-behind-slow   unbind while a command the unit does
 *                                  not answer holds the device lock: the
 *                                  unit is disarmed at once (then rebind)
 *   kmod-race fault-unbind         unbind while SET_PARAMS waits on a page
 *                                  fault in its argument (userfaultfd,
 *                                  held 3 s): the unbind does not wait for
 *                                  it (then rebind)
 *
 * The scenarios expect the gadget started with a long watchdog and the
 * driver's heartbeat_ms set to fit (tests/vm/guest/28-kmod-races.sh).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <uapi/smplaser.h>

#ifndef sigev_notify_thread_id
#define sigev_notify_thread_id _sigev_un._tid
#endif

static const char *dev_path = "/dev/smplaser0";
static int failures;
static unsigned int lat_scale = 1;	/* VM_LAT_SCALE: rig latency limits */

/* --- small helpers ---------------------------------------------------------- */

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(unsigned int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static void check(bool good, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void check(bool good, const char *fmt, ...)
{
	va_list ap;

	printf("%s - ", good ? "ok" : "not ok");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	if (!good)
		failures++;
}

static void diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void diag(const char *fmt, ...)
{
	va_list ap;

	printf("# ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
}

/* One gadget control command; its reply line in @reply; true on "ok". */
static bool ctl(const char *cmd, char *reply, size_t size)
{
	const char *sock = getenv("GADGET_SOCK");
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	char line[300], dummy[64];
	size_t got = 0;
	int n, s;

	if (!reply) {
		reply = dummy;
		size = sizeof(dummy);
	}
	reply[0] = '\0';
	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s",
		 sock ? sock : "/run/smplaser-gadget.sock");
	n = snprintf(line, sizeof(line), "%s\n", cmd);
	s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return false;
	if (connect(s, (struct sockaddr *)&addr, sizeof(addr)) ||
	    send(s, line, (size_t)n, MSG_NOSIGNAL) != n) {
		close(s);
		return false;
	}
	while (got + 1 < size) {
		ssize_t r = read(s, reply + got, size - 1 - got);

		if (r <= 0)
			break;
		got += (size_t)r;
		if (memchr(reply, '\n', got))
			break;
	}
	close(s);
	reply[got] = '\0';
	reply[strcspn(reply, "\n")] = '\0';
	return strncmp(reply, "ok", 2) == 0;
}

/* A field of the gadget's status line ("" if none). */
static void gfield(const char *name, char *out, size_t size)
{
	char reply[1024], key[64];
	const char *p;

	out[0] = '\0';
	if (!ctl("status", reply, sizeof(reply)))
		return;
	snprintf(key, sizeof(key), " %s=", name);
	p = strstr(reply, key);
	if (p)
		snprintf(out, size, "%.*s", (int)strcspn(p + strlen(key), " "), p + strlen(key));
}

static unsigned long gnum(const char *name)
{
	char v[64];

	gfield(name, v, sizeof(v));
	return strtoul(v, NULL, 10);
}

static bool gadget_armed(void)
{
	char st[32];

	gfield("state", st, sizeof(st));
	return !strcmp(st, "ARMING") || !strcmp(st, "READY") || !strcmp(st, "EMITTING");
}

static bool gadget_state_is(const char *want)
{
	char st[32];

	gfield("state", st, sizeof(st));
	return !strcmp(st, want);
}

/* Poll @fn up to @ms; true as soon as it holds. */
static bool wait_until(bool (*fn)(void), unsigned int ms)
{
	uint64_t end = now_ms() + ms;

	do {
		if (fn())
			return true;
		sleep_ms(5);
	} while (now_ms() < end);
	return fn();
}

static bool gadget_not_armed(void)
{
	return !gadget_armed();
}

static bool gadget_ready(void)
{
	return gadget_state_is("READY");
}

static bool node_there(void)
{
	return access(dev_path, F_OK) == 0;
}

static bool node_gone(void)
{
	return !node_there();
}

static int open_dev(int flags)
{
	int fd = open(dev_path, flags | O_CLOEXEC);

	if (fd < 0)
		diag("open %s: %s", dev_path, strerror(errno));
	return fd;
}

static int set_params(int fd)
{
	struct smplaser_params p = {
		.wavelength_nm = 1064, .spot_um = 3000, .fluence_mj_cm2 = 4000,
		.pulse_ps = 10000, .rate_mhz = 10000,
	};

	return ioctl(fd, SMPLASER_IOC_SET_PARAMS, &p);
}

/* ARM and wait for READY at the gadget, heart-beating. */
static bool arm_ready(int fd)
{
	uint64_t end;

	if (ioctl(fd, SMPLASER_IOC_ARM) < 0) {
		diag("ARM: %s", strerror(errno));
		return false;
	}
	end = now_ms() + 3000;
	while (now_ms() < end) {
		ioctl(fd, SMPLASER_IOC_HEARTBEAT);
		if (gadget_ready())
			return true;
		sleep_ms(20);
	}
	diag("the unit did not reach READY");
	return false;
}

/* Read the events there now; true when one of @type (and @reason) came. */
static bool saw_event(int fd, unsigned int type, int reason)
{
	struct smplaser_event ev[16];
	bool seen = false;

	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (poll(&p, 1, 0) <= 0 || !(p.revents & POLLIN))
			return seen;
		n = read(fd, ev, sizeof(ev));
		if (n <= 0)
			return seen;
		for (size_t i = 0; i < (size_t)n / sizeof(ev[0]); i++)
			if (ev[i].type == type &&
			    (reason < 0 || ev[i].disarm.reason == (uint32_t)reason))
				seen = true;
	}
}

static void on_alarm(int sig)
{
	(void)sig;
}

/* SIGALRM in @ms, interrupting a blocking call (no SA_RESTART). */
static void alarm_in(unsigned int ms)
{
	struct sigaction sa = { .sa_handler = on_alarm };
	timer_t t;
	struct sigevent se = { .sigev_notify = SIGEV_THREAD_ID };
	struct itimerspec its = { .it_value = { ms / 1000, (long)(ms % 1000) * 1000000L } };

	sigemptyset(&sa.sa_mask);
	sigaction(SIGALRM, &sa, NULL);
	se.sigev_signo = SIGALRM;
	se.sigev_notify_thread_id = gettid();
	if (timer_create(CLOCK_MONOTONIC, &se, &t) == 0)
		timer_settime(t, 0, &its, NULL);
}

/* --- a command of another thread, holding the device lock ------------------ */

struct bg_ioctl {
	int fd;
	unsigned long req;
	void *arg;
	int ret, err;
	uint64_t done_ms;
	pthread_t thread;
};

static void *bg_body(void *arg)
{
	struct bg_ioctl *b = arg;

	b->ret = ioctl(b->fd, b->req, b->arg);
	b->err = errno;
	b->done_ms = now_ms();
	return NULL;
}

static void bg_start(struct bg_ioctl *b, int fd, unsigned long req, void *arg)
{
	memset(b, 0, sizeof(*b));
	b->fd = fd;
	b->req = req;
	b->arg = arg;
	pthread_create(&b->thread, NULL, bg_body, b);
}

static void bg_join(struct bg_ioctl *b)
{
	pthread_join(b->thread, NULL);
}

/* --- disarm-behind-slow --------------------------------------------------- */

static atomic_ulong disarm_seen_ms;
static unsigned long disarm_base;

static void *watch_disarms(void *arg)
{
	uint64_t end = now_ms() + 2000;

	(void)arg;
	while (now_ms() < end) {
		if (gnum("disarms") > disarm_base) {
			atomic_store(&disarm_seen_ms, now_ms());
			return NULL;
		}
		sleep_ms(2);
	}
	return NULL;
}

/* The unit's disarms counted from now, by @watcher; returns now (ms). */
static uint64_t watch_disarms_from_now(pthread_t *watcher)
{
	disarm_base = gnum("disarms");
	atomic_store(&disarm_seen_ms, 0);
	pthread_create(watcher, NULL, watch_disarms, NULL);
	return now_ms();
}

/* A command the unit will not answer, on @fd in @slow: it holds the lock ~500 ms. */
static void start_unanswered_command(int fd, struct bg_ioctl *slow, struct smplaser_status *st)
{
	ctl("hostile no-answer 1", NULL, 0);
	bg_start(slow, fd, SMPLASER_IOC_GET_STATUS, st);
	sleep_ms(100);
}

static int scenario_disarm_behind_slow(void)
{
	struct smplaser_status st;
	struct bg_ioctl slow;
	pthread_t watcher;
	uint64_t t0, t1;
	int fd = open_dev(O_RDWR), ret, err;

	if (fd < 0 || set_params(fd) < 0 || !arm_ready(fd))
		return 1;

	start_unanswered_command(fd, &slow, &st);
	t0 = watch_disarms_from_now(&watcher);
	ret = ioctl(fd, SMPLASER_IOC_DISARM);
	err = errno;
	t1 = now_ms();
	pthread_join(watcher, NULL);
	bg_join(&slow);
	diag("DISARM returned %d (%s) after %" PRIu64 " ms; the slow GET_STATUS returned %s "
	     "%" PRIu64 " ms after the DISARM started",
	     ret, ret ? strerror(err) : "ok", t1 - t0, slow.ret ? strerror(slow.err) : "ok",
	     slow.done_ms - t0);
	check(atomic_load(&disarm_seen_ms) &&
	      atomic_load(&disarm_seen_ms) - t0 <= 100 * lat_scale,
	      "DISARM behind a command the unit does not answer: the disarm request reached "
	      "the unit %ld ms after the ioctl (limit %u ms, the command held the lock ~400 ms more)",
	      atomic_load(&disarm_seen_ms) ? (long)(atomic_load(&disarm_seen_ms) - t0) : -1L,
	      100 * lat_scale);
	check(wait_until(gadget_not_armed, 200), "and the unit is in STANDBY");

	/* A signal while DISARM waits for the lock: EINTR, but disarmed. */
	if (!arm_ready(fd))
		return 1;
	start_unanswered_command(fd, &slow, &st);
	alarm_in(100);
	ret = ioctl(fd, SMPLASER_IOC_DISARM);
	err = errno;
	check(ret < 0 && err == EINTR, "a signal while DISARM waits for the lock: EINTR (%s)",
	      ret < 0 ? strerror(err) : "it succeeded");
	check(wait_until(gadget_not_armed, 50 * lat_scale),
	      "and the unit is disarmed all the same (within %u ms of the EINTR)", 50 * lat_scale);
	bg_join(&slow);
	close(fd);
	return 0;
}

/* --- arm-cancel ------------------------------------------------------------ */

static int scenario_arm_cancel(void)
{
	struct bg_ioctl arm;
	uint64_t stop;
	bool armed_after = false;
	int fd = open_dev(O_RDWR), ret, err;

	if (fd < 0 || set_params(fd) < 0)
		return 1;
	sleep_ms(50);
	/* The unit takes the ARM 300 ms after it came. */
	ctl("slow 300 1", NULL, 0);
	bg_start(&arm, fd, SMPLASER_IOC_ARM, NULL);
	sleep_ms(100);
	/* No report may tell the driver the unit armed: only the ARM path can. */
	ctl("reports silent", NULL, 0);
	alarm_in(50);
	ret = ioctl(fd, SMPLASER_IOC_DISARM);	/* the disarm request goes first */
	err = errno;
	diag("DISARM while the ARM is in flight: %s", ret < 0 ? strerror(err) : "ok");
	bg_join(&arm);
	check(arm.ret < 0 && arm.err == EPERM,
	      "an ARM the driver disarmed while it was in flight fails with EPERM (%s)",
	      arm.ret < 0 ? strerror(arm.err) : "it succeeded");
	/* The unit took the ARM after the disarm request: disarm again. */
	stop = arm.done_ms + 100;
	while (now_ms() < stop)
		sleep_ms(10);
	armed_after = gadget_armed();
	check(!armed_after,
	      "the unit took the ARM after the disarm: the driver disarmed it again (%s 100 ms "
	      "after the ARM returned)", armed_after ? "still armed" : "STANDBY");
	ctl("reports normal", NULL, 0);
	ioctl(fd, SMPLASER_IOC_DISARM);
	close(fd);
	return 0;
}

/* --- late-heartbeat --------------------------------------------------------- */

static int scenario_late_heartbeat(unsigned int trials)
{
	struct smplaser_info info;
	unsigned int kept = 0, told = 0;
	int fd = open_dev(O_RDWR);

	if (fd < 0 || set_params(fd) < 0 || ioctl(fd, SMPLASER_IOC_GET_INFO, &info) < 0)
		return 1;
	for (unsigned int i = 0; i < trials; i++) {
		unsigned int late = 5 + 3 * (i % 4);	/* ms after heartbeat_ms */
		uint64_t sent, t;

		if (!arm_ready(fd))
			return 1;
		saw_event(fd, 0, -1);			/* drain */
		ioctl(fd, SMPLASER_IOC_HEARTBEAT);
		sent = now_ms();
		t = sent + info.heartbeat_ms + late;
		while (now_ms() < t)
			;				/* a precise wait */
		ioctl(fd, SMPLASER_IOC_HEARTBEAT);	/* too late */
		sleep_ms(40);
		if (gadget_armed()) {
			kept++;
			diag("trial %u: HEARTBEAT %u ms after heartbeat_ms kept the unit armed", i,
			     late);
		}
		if (saw_event(fd, SMPLASER_EV_DISARM, SMPLASER_DISARM_HEARTBEAT))
			told++;
		ioctl(fd, SMPLASER_IOC_DISARM);
		wait_until(gadget_not_armed, 500);
	}
	check(kept == 0, "a HEARTBEAT 5-14 ms after heartbeat_ms (%u ms) never kept the unit "
	      "armed (%u of %u trials did)", info.heartbeat_ms, kept, trials);
	check(told == trials, "each time the reader got a disarm record, reason heartbeat "
	      "(%u of %u)", told, trials);
	close(fd);
	return 0;
}

/* --- readonly --------------------------------------------------------------- */

static int scenario_readonly(void)
{
	struct smplaser_status st;
	struct smplaser_info info;
	struct smplaser_params p = {
		.wavelength_nm = 1064, .spot_um = 3000, .fluence_mj_cm2 = 4000,
		.pulse_ps = 10000, .rate_mhz = 10000,
	};
	unsigned long cmds;
	int fd = open_dev(O_RDONLY);

	if (fd < 0)
		return 1;
	cmds = gnum("commands");
	check(ioctl(fd, SMPLASER_IOC_SET_PARAMS, &p) < 0 && errno == EBADF,
	      "O_RDONLY: SET_PARAMS fails with EBADF");
	check(ioctl(fd, SMPLASER_IOC_ARM) < 0 && errno == EBADF, "O_RDONLY: ARM fails with EBADF");
	check(ioctl(fd, SMPLASER_IOC_HEARTBEAT) < 0 && errno == EBADF,
	      "O_RDONLY: HEARTBEAT fails with EBADF");
	check(ioctl(fd, SMPLASER_IOC_ACK_FAULT) < 0 && errno == EBADF,
	      "O_RDONLY: ACK_FAULT fails with EBADF");
	check(gnum("commands") == cmds && gadget_state_is("STANDBY"),
	      "none of them reached the unit, which stays in STANDBY");
	check(ioctl(fd, SMPLASER_IOC_GET_STATUS, &st) == 0 &&
	      ioctl(fd, SMPLASER_IOC_GET_INFO, &info) == 0,
	      "O_RDONLY: GET_STATUS and GET_INFO work");
	check(ioctl(fd, SMPLASER_IOC_DISARM) == 0, "O_RDONLY: DISARM works (disarming is always allowed)");
	close(fd);
	return 0;
}

/* --- self-standby ----------------------------------------------------------- */

static int scenario_self_standby(void)
{
	struct smplaser_status st;
	int fd = open_dev(O_RDWR);

	if (fd < 0 || set_params(fd) < 0 || !arm_ready(fd))
		return 1;
	ioctl(fd, SMPLASER_IOC_GET_STATUS, &st);
	check(st.driver_flags & SMPLASER_DF_ARMED, "READY: the driver counts the unit armed");
	/* The unit faults by itself (an energy fault): it leaves READY. */
	ctl("fault energy", NULL, 0);
	wait_until(gadget_not_armed, 500);
	sleep_ms(50);
	ioctl(fd, SMPLASER_IOC_GET_STATUS, &st);
	check(!(st.driver_flags & SMPLASER_DF_ARMED),
	      "the unit left READY by itself (FAULT): the driver no longer counts it armed");
	saw_event(fd, 0, -1);
	/* No heartbeat now: a driver that still counts it armed would "disarm". */
	sleep_ms(800);
	check(!saw_event(fd, SMPLASER_EV_DISARM, SMPLASER_DISARM_HEARTBEAT),
	      "and no heartbeat disarm record comes for a unit it no longer has armed");
	ctl("clear-fault", NULL, 0);
	ioctl(fd, SMPLASER_IOC_ACK_FAULT);
	close(fd);
	return 0;
}

/* --- storm ------------------------------------------------------------------- */

static atomic_bool storm_stop;
static atomic_int storm_fd;
static atomic_ulong storm_calls;

static void *storm_arm(void *arg)
{
	(void)arg;
	while (!atomic_load(&storm_stop)) {
		ioctl(atomic_load(&storm_fd), SMPLASER_IOC_ARM);
		atomic_fetch_add(&storm_calls, 1);
		sleep_ms((unsigned int)(rand() % 20));
		ioctl(atomic_load(&storm_fd), SMPLASER_IOC_DISARM);
	}
	return NULL;
}

static void *storm_ioctl(void *arg)
{
	unsigned long req = (unsigned long)arg;
	struct smplaser_status st;

	while (!atomic_load(&storm_stop)) {
		ioctl(atomic_load(&storm_fd), req, req == SMPLASER_IOC_GET_STATUS ? &st : NULL);
		atomic_fetch_add(&storm_calls, 1);
		sleep_ms(req == SMPLASER_IOC_HEARTBEAT ? 30 : 15);
	}
	return NULL;
}

static void *storm_reader(void *arg)
{
	struct smplaser_event ev[4];

	(void)arg;
	while (!atomic_load(&storm_stop)) {
		struct pollfd p = { .fd = atomic_load(&storm_fd), .events = POLLIN };

		if (poll(&p, 1, 20) > 0 && (p.revents & POLLIN))
			(void)!read(p.fd, ev, sizeof(ev));
		atomic_fetch_add(&storm_calls, 1);
	}
	return NULL;
}

static int storm_round(unsigned int seconds, bool dup_first)
{
	void *(*const bodies[])(void *) = {
		storm_arm, storm_ioctl, storm_ioctl, storm_ioctl, storm_reader, storm_reader,
	};
	void *const args[] = {
		NULL, (void *)SMPLASER_IOC_HEARTBEAT, (void *)SMPLASER_IOC_DISARM,
		(void *)SMPLASER_IOC_GET_STATUS, NULL, NULL,
	};
	pthread_t t[sizeof(bodies) / sizeof(bodies[0])];
	int fd = open_dev(O_RDWR | O_NONBLOCK), fd2 = -1;
	uint64_t end;

	if (fd < 0 || set_params(fd) < 0)
		return 1;
	atomic_store(&storm_fd, fd);
	atomic_store(&storm_stop, false);
	atomic_store(&storm_calls, 0);
	if (dup_first)
		fd2 = dup(fd);
	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++)
		pthread_create(&t[i], NULL, bodies[i], args[i]);
	end = now_ms() + seconds * 1000u;
	while (now_ms() < end)
		sleep_ms(50);
	/* Close while the threads are in their calls: release waits for them. */
	close(fd);
	if (fd2 >= 0) {
		sleep_ms(100);
		close(fd2);
	}
	sleep_ms(50);
	atomic_store(&storm_stop, true);
	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++)
		pthread_join(t[i], NULL);
	diag("storm%s: %lu calls in %u s", dup_first ? " (with a dup)" : "",
	     atomic_load(&storm_calls), seconds);
	return 0;
}

static int scenario_storm(unsigned int seconds)
{
	int fd;

	if (storm_round(seconds, false) || storm_round(seconds, true))
		return 1;
	check(wait_until(gadget_not_armed, 200),
	      "after ARM, DISARM, HEARTBEAT, GET_STATUS, read and poll from six threads and "
	      "close() under them: the unit is not armed");
	fd = open_dev(O_RDWR);
	check(fd >= 0, "and the device opens again (the last release ran)");
	if (fd >= 0)
		close(fd);
	return 0;
}

/* --- unplug races -------------------------------------------------------------- */

static bool replug(void)
{
	ctl("replug", NULL, 0);
	return wait_until(node_there, 10000);
}

static void *close_body(void *arg)
{
	close((int)(intptr_t)arg);
	return NULL;
}

static int scenario_close_unplug(unsigned int rounds)
{
	unsigned int good = 0;

	for (unsigned int i = 0; i < rounds; i++) {
		pthread_t t;
		int fd = open_dev(O_RDWR);

		if (fd < 0 || set_params(fd) < 0 || ioctl(fd, SMPLASER_IOC_ARM) < 0) {
			diag("round %u: could not arm", i);
			if (fd >= 0)
				close(fd);
			break;
		}
		sleep_ms((unsigned int)(rand() % 30));
		pthread_create(&t, NULL, close_body, (void *)(intptr_t)fd);
		ctl("unplug", NULL, 0);
		pthread_join(t, NULL);
		if (wait_until(node_gone, 3000) && !gadget_armed() && replug())
			good++;
		sleep_ms(200);
	}
	check(good == rounds, "close() racing the unplug, %u rounds: each ended with the unit "
	      "not armed and the node back (%u good)", rounds, good);
	return 0;
}

static bool expect_gone(int ret, int err)
{
	return ret < 0 && (err == ENODEV || err == ETIMEDOUT || err == EIO || err == EPROTO);
}

static int scenario_unplug_ioctl(void)
{
	static const struct {
		const char *name;
		unsigned long req;
		bool armed;	/* the call needs the unit armed */
	} calls[] = {
		{ "GET_STATUS", SMPLASER_IOC_GET_STATUS, false },
		{ "SET_PARAMS", SMPLASER_IOC_SET_PARAMS, false },
		{ "ARM", SMPLASER_IOC_ARM, false },
		{ "HEARTBEAT", SMPLASER_IOC_HEARTBEAT, true },
		{ "DISARM", SMPLASER_IOC_DISARM, true },
		{ "ACK_FAULT", SMPLASER_IOC_ACK_FAULT, false },
	};

	for (size_t i = 0; i < sizeof(calls) / sizeof(calls[0]); i++) {
		struct smplaser_params p = {
			.wavelength_nm = 1064, .spot_um = 3000, .fluence_mj_cm2 = 4000,
			.pulse_ps = 10000, .rate_mhz = 10000,
		};
		struct smplaser_status st;
		struct smplaser_event ev;
		struct bg_ioctl b;
		void *arg = calls[i].req == SMPLASER_IOC_GET_STATUS ? (void *)&st :
			    calls[i].req == SMPLASER_IOC_SET_PARAMS ? (void *)&p : NULL;
		bool disconnect = false, disarm_failed = false;
		int fd = open_dev(O_RDWR), ret;

		if (fd < 0 || set_params(fd) < 0)
			return 1;
		if (calls[i].armed && !arm_ready(fd))
			return 1;
		/* The unit will not answer: the call is in the middle of it. */
		ctl("hostile no-answer 1", NULL, 0);
		bg_start(&b, fd, calls[i].req, arg);
		sleep_ms(150);
		ctl("unplug", NULL, 0);
		bg_join(&b);
		ret = ioctl(fd, SMPLASER_IOC_GET_STATUS, &st);
		for (int n = 0; n < 200; n++) {
			ssize_t r = read(fd, &ev, sizeof(ev));

			if (r == (ssize_t)sizeof(ev) && ev.type == SMPLASER_EV_DISCONNECT)
				disconnect = true;
			if (r == (ssize_t)sizeof(ev) && ev.type == SMPLASER_EV_DISARM_FAILED)
				disarm_failed = true;
			if (r <= 0)
				break;
		}
		check((b.ret == 0 || expect_gone(b.ret, b.err)) && ret < 0 && errno == ENODEV &&
		      disconnect && !disarm_failed && !gadget_armed(),
		      "unplug in the middle of %s: it returns (%s), then ENODEV, the reader gets "
		      "the disconnect record and no DISARM_FAILED%s, the unit is not armed",
		      calls[i].name, b.ret ? strerror(b.err) : "ok",
		      disarm_failed ? " (it got one)" : "");
		close(fd);
		if (!replug())
			return 1;
		sleep_ms(100);
	}
	return 0;
}

static int scenario_unplug_states(void)
{
	static const char *const states[] = { "STANDBY", "ARMING", "READY", "EMITTING", "FAULT" };

	for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++) {
		struct smplaser_event ev;
		bool disconnect = false, disarm_failed = false, in_state;
		unsigned long shots;
		int fd = open_dev(O_RDWR);

		if (fd < 0 || set_params(fd) < 0)
			return 1;
		if (i == 1) {
			ioctl(fd, SMPLASER_IOC_ARM);
		} else if (i == 2 || i == 3) {
			if (!arm_ready(fd))
				return 1;
			if (i == 3) {
				ctl("footswitch 1", NULL, 0);
				sleep_ms(150);
			}
		} else if (i == 4) {
			ctl("fault energy", NULL, 0);
			sleep_ms(50);
		}
		in_state = gadget_state_is(states[i]);
		ctl("unplug", NULL, 0);
		shots = gnum("shots");
		sleep_ms(300);
		for (int n = 0; n < 200; n++) {
			ssize_t r = read(fd, &ev, sizeof(ev));

			if (r == (ssize_t)sizeof(ev) && ev.type == SMPLASER_EV_DISCONNECT)
				disconnect = true;
			if (r == (ssize_t)sizeof(ev) && ev.type == SMPLASER_EV_DISARM_FAILED)
				disarm_failed = true;
			if (r <= 0)
				break;
		}
		check(in_state && disconnect && !gadget_armed() && gnum("shots") == shots,
		      "unplug in %s: the reader gets the disconnect record, no pulse after it, "
		      "the unit is not armed", states[i]);
		/* The cable gone is no disarm that did not take (smplaserd would latch a fault). */
		check(!disarm_failed, "unplug in %s: no DISARM_FAILED record before the disconnect",
		      states[i]);
		ctl("footswitch 0", NULL, 0);
		close(fd);
		if (!replug())
			return 1;
		if (i == 4) {
			ctl("clear-fault", NULL, 0);
			fd = open_dev(O_RDWR);
			if (fd >= 0) {
				ioctl(fd, SMPLASER_IOC_ACK_FAULT);
				close(fd);
			}
		}
		sleep_ms(100);
	}
	return 0;
}

/* --- a command that never gets its reply, under a kill or an unbind ---------- */

/* The USB interface behind dev_path (e.g. "1-1:1.0"); false if none. */
static bool dev_intf(char *out, size_t size)
{
	const char *name = strrchr(dev_path, '/');
	char path[256], link[256];
	const char *base;
	ssize_t n;

	snprintf(path, sizeof(path), "/sys/class/smplaser/%s/device",
		 name ? name + 1 : dev_path);
	n = readlink(path, link, sizeof(link) - 1);
	if (n <= 0)
		return false;
	link[n] = '\0';
	base = strrchr(link, '/');
	if (strlen(base ? base + 1 : link) >= size)
		return false;
	strcpy(out, base ? base + 1 : link);
	return true;
}

static bool write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	bool good;

	if (fd < 0)
		return false;
	good = write(fd, text, strlen(text)) == (ssize_t)strlen(text);
	close(fd);
	return good;
}

/* When the gadget saw its next disarm after @t0 (ms from @t0), or -1. */
static long disarm_after(pthread_t watcher, uint64_t t0)
{
	unsigned long seen;

	pthread_join(watcher, NULL);
	seen = atomic_load(&disarm_seen_ms);
	return seen ? (long)(seen - t0) : -1L;
}

/*
 * The opener is SIGKILLed while one of its threads waits for a reply the
 * unit never sends (~500 ms).  Its file is released only when that ioctl
 * returns: the disarm must not wait for the command's timeout.
 */
static int scenario_kill_behind_slow(void)
{
	int ready[2];
	pthread_t watcher;
	uint64_t t0;
	long lat;
	pid_t pid;
	char c;

	if (pipe(ready))
		return 1;
	pid = fork();
	if (pid == 0) {
		struct smplaser_status st;
		struct bg_ioctl slow;
		int fd = open_dev(O_RDWR);

		if (fd < 0 || set_params(fd) < 0 || !arm_ready(fd))
			_exit(1);
		ctl("hostile no-answer 1", NULL, 0);
		bg_start(&slow, fd, SMPLASER_IOC_GET_STATUS, &st);
		sleep_ms(50);
		if (write(ready[1], "r", 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	close(ready[1]);
	if (pid < 0 || read(ready[0], &c, 1) != 1) {
		if (pid > 0)
			waitpid(pid, NULL, 0);
		close(ready[0]);
		return 1;
	}
	close(ready[0]);
	sleep_ms(50);
	t0 = watch_disarms_from_now(&watcher);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	diag("the killed opener was reaped %" PRIu64 " ms after SIGKILL", now_ms() - t0);
	lat = disarm_after(watcher, t0);
	check(lat >= 0 && lat <= 100 * (long)lat_scale,
	      "SIGKILL of the opener while its command waits for a reply that never comes: "
	      "the disarm reached the unit %ld ms later (limit %u ms; the command waits ~400 ms more)",
	      lat, 100 * lat_scale);
	check(wait_until(gadget_not_armed, 200), "and the unit is in STANDBY");
	return 0;
}

/* Unbind (the unit stays attached) while a command holds the device lock. */
static int scenario_unbind_behind_slow(void)
{
	const char *drv = "/sys/bus/usb/drivers/smplaser";
	char intf[64], path[128];
	struct smplaser_status st;
	struct bg_ioctl slow;
	pthread_t watcher;
	uint64_t t0;
	long lat;
	int fd;

	if (!dev_intf(intf, sizeof(intf))) {
		diag("no interface behind %s", dev_path);
		return 1;
	}
	fd = open_dev(O_RDWR);
	if (fd < 0 || set_params(fd) < 0 || !arm_ready(fd))
		return 1;
	start_unanswered_command(fd, &slow, &st);
	t0 = watch_disarms_from_now(&watcher);
	snprintf(path, sizeof(path), "%s/unbind", drv);
	if (!write_file(path, intf))
		diag("unbind %s: %s", intf, strerror(errno));
	diag("the unbind returned after %" PRIu64 " ms", now_ms() - t0);
	lat = disarm_after(watcher, t0);
	bg_join(&slow);
	check(lat >= 0 && lat <= 100 * (long)lat_scale,
	      "unbind while a command the unit does not answer holds the device lock: "
	      "the disarm reached the unit %ld ms later (limit %u ms)", lat, 100 * lat_scale);
	check(wait_until(gadget_not_armed, 200), "and the unit is in STANDBY");
	close(fd);
	snprintf(path, sizeof(path), "%s/bind", drv);
	write_file(path, intf);
	check(wait_until(node_there, 5000), "rebind: the node is back");
	return 0;
}

/* --- fault-unbind ----------------------------------------------------------- */

struct uffd_job {
	int uffd;
	unsigned long start, len;
	unsigned int ms;
};

/* After @ms, map a zero page where the ioctl's argument faults. */
static void *uffd_resolve_later(void *arg)
{
	struct uffd_job *j = arg;
	struct uffdio_zeropage zp = { .range = { .start = j->start, .len = j->len } };

	sleep_ms(j->ms);
	if (ioctl(j->uffd, UFFDIO_ZEROPAGE, &zp))
		diag("UFFDIO_ZEROPAGE: %s", strerror(errno));
	return NULL;
}

/*
 * A page fault in an ioctl's argument (userfaultfd here; a FUSE-backed
 * mapping alike) may take any time: it must not hold a lock that unbind
 * (disconnect) waits for.
 */
static int scenario_fault_unbind(void)
{
	const char *drv = "/sys/bus/usb/drivers/smplaser";
	const char *what = "unbind while SET_PARAMS waits on a page fault in its argument";
	struct uffdio_api api = { .api = UFFD_API };
	struct uffdio_register reg = { .mode = UFFDIO_REGISTER_MODE_MISSING };
	long page = sysconf(_SC_PAGESIZE);
	struct uffd_job job = { .ms = 3000 };
	char intf[64], path[128];
	struct bg_ioctl held;
	pthread_t resolver;
	uint64_t t0, took;
	void *mem;
	int fd;

	job.uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC);
	if (job.uffd < 0 || ioctl(job.uffd, UFFDIO_API, &api)) {
		printf("ok - %s # SKIP no userfaultfd (%s)\n", what, strerror(errno));
		return 0;
	}
	mem = mmap(NULL, (size_t)page, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		return 1;
	job.start = reg.range.start = (unsigned long)mem;
	job.len = reg.range.len = (unsigned long)page;
	if (ioctl(job.uffd, UFFDIO_REGISTER, &reg)) {
		diag("UFFDIO_REGISTER: %s", strerror(errno));
		return 1;
	}
	if (!dev_intf(intf, sizeof(intf)))
		return 1;
	fd = open_dev(O_RDWR);
	if (fd < 0)
		return 1;
	pthread_create(&resolver, NULL, uffd_resolve_later, &job);
	bg_start(&held, fd, SMPLASER_IOC_SET_PARAMS, mem);
	sleep_ms(200);
	t0 = now_ms();
	snprintf(path, sizeof(path), "%s/unbind", drv);
	if (!write_file(path, intf))
		diag("unbind %s: %s", intf, strerror(errno));
	took = now_ms() - t0;
	pthread_join(resolver, NULL);
	bg_join(&held);
	diag("SET_PARAMS returned %s once the page came", held.ret ? strerror(held.err) : "ok");
	check(took <= 1000, "%s: the unbind took %" PRIu64 " ms (limit 1000 ms; the fault "
	      "was held %u ms)", what, took, job.ms);
	close(fd);
	close(job.uffd);
	munmap(mem, (size_t)page);
	snprintf(path, sizeof(path), "%s/bind", drv);
	write_file(path, intf);
	check(wait_until(node_there, 5000), "rebind: the node is back");
	return 0;
}

int main(int argc, char **argv)
{
	const char *s = argc > 1 ? argv[1] : "";
	unsigned int n = argc > 2 ? (unsigned int)strtoul(argv[2], NULL, 0) : 0;
	int ret;

	setvbuf(stdout, NULL, _IOLBF, 0);
	srand((unsigned int)now_ms());
	if (getenv("KMOD_DEV"))
		dev_path = getenv("KMOD_DEV");
	if (getenv("VM_LAT_SCALE") && atoi(getenv("VM_LAT_SCALE")) > 0)
		lat_scale = (unsigned int)atoi(getenv("VM_LAT_SCALE"));
	if (!strcmp(s, "disarm-behind-slow"))
		ret = scenario_disarm_behind_slow();
	else if (!strcmp(s, "arm-cancel"))
		ret = scenario_arm_cancel();
	else if (!strcmp(s, "late-heartbeat"))
		ret = scenario_late_heartbeat(n ? n : 6);
	else if (!strcmp(s, "readonly"))
		ret = scenario_readonly();
	else if (!strcmp(s, "self-standby"))
		ret = scenario_self_standby();
	else if (!strcmp(s, "storm"))
		ret = scenario_storm(n ? n : 3);
	else if (!strcmp(s, "close-unplug"))
		ret = scenario_close_unplug(n ? n : 5);
	else if (!strcmp(s, "unplug-ioctl"))
		ret = scenario_unplug_ioctl();
	else if (!strcmp(s, "unplug-states"))
		ret = scenario_unplug_states();
	else if (!strcmp(s, "kill-behind-slow"))
		ret = scenario_kill_behind_slow();
	else if (!strcmp(s, "unbind-behind-slow"))
		ret = scenario_unbind_behind_slow();
	else if (!strcmp(s, "fault-unbind"))
		ret = scenario_fault_unbind();
	else {
		fprintf(stderr, "usage: kmod-race disarm-behind-slow|arm-cancel|late-heartbeat N|"
			"readonly|self-standby|storm S|close-unplug N|unplug-ioctl|unplug-states|\n"
			"       kill-behind-slow|unbind-behind-slow|fault-unbind\n");
		return 2;
	}
	if (ret)
		check(false, "%s: the scenario could not run", s);
	return failures ? 1 : 0;
}
