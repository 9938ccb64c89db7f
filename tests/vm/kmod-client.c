// SPDX-License-Identifier: MIT
/*
 * kmod-client: drives /dev/smplaserN for the VM guest tests
 * (tests/vm/guest/2*-kmod*.sh).  Runs a script of steps given on the
 * command line, in order, on one open file; prints what it sees as
 * "key=value" lines and exits 1 at the first step that fails.
 *
 *   kmod-client [-d DEV] [-r] STEP...      (-r: open O_RDONLY)
 *   kmod-client [-d DEV] open-fails ERRNO
 *   kmod-client -n gstatus | ctl "ARGS"   the gadget only, no device
 *
 * Steps:
 *   info | status            print GET_INFO / GET_STATUS
 *   params WL SPOT FLUENCE PULSE RATE
 *                            SET_PARAMS (nm, um, mJ/cm2, ps, mHz); prints
 *                            the unit's echo and the energy it implies
 *   params-reserved          SET_PARAMS with a reserved field set
 *   arm | disarm | heartbeat | ack
 *   expect ERRNO             the next step must fail with ERRNO (EBUSY ...,
 *                            or ANY)
 *   hb MS                    send HEARTBEAT every MS while waiting (0: off)
 *   sleep MS                 wait (heartbeating), queueing events
 *   wait-state STATE MS      poll GET_STATUS until the state is STATE
 *   ctl "ARGS"               one gadget control command; marks the time
 *   gstatus                  the gadget's status as G_name='value' lines
 *   write PATH VALUE         write VALUE to the file PATH; marks the time
 *   mark                     remember now (CLOCK_MONOTONIC)
 *   close                    close the device; marks the time
 *   reopen                   open the device again
 *   open-second              a second open() of the device (fails if it works)
 *   gadget-wait STATE MS LIMIT NAME
 *                            poll the gadget until it reports STATE; print
 *                            "latency NAME=X" (ms from the mark to the
 *                            gadget's state change) and fail above LIMIT ms
 *   disarms-base             remember the gadget's DISARM request count
 *   disarms-wait N MS LIMIT NAME
 *                            poll the gadget until its DISARM request count
 *                            is N above that; print the latency from the mark
 *   events                   print the events queued now (non-blocking)
 *   events-until TYPE MS     print events until one of TYPE arrives
 *   read-block               one blocking read(); prints the event or errno
 *   nonblock                 set O_NONBLOCK on the device
 *   read-once                one read() of one record (see "expect")
 *   read-small               read() into a buffer one byte short of a record
 *   poll-wait MS             poll() for POLLIN up to MS; prints poll=IN,HUP,ERR,
 *                            or poll=timeout
 *   raw-ioctl NUM            ioctl(fd, NUM, NULL)
 *   wait-gone MS             until the device node is gone (unplug)
 *   usbreset                 USBDEVFS_RESET on the unit's usbfs node (the
 *                            driver has no pre/post_reset: it is unbound
 *                            and bound again); marks the time
 *
 * The gadget's control socket is $GADGET_SOCK (smplaser-gadget --ctl).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <linux/usbdevice_fs.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <uapi/smplaser.h>

#include "codec.h"

static const char *dev_path = "/dev/smplaser0";
static int open_flags = O_RDWR;
static int fd = -1;
static int expect_errno;		/* 0: the step must succeed */
#define EXPECT_ANY_ERROR	(-2)	/* "expect ANY" */
static unsigned long disarms_base;
static unsigned int hb_period_ms;
static uint64_t last_hb_ns;
static uint64_t mark_ns;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_ms(unsigned int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static const struct {
	const char *name;
	int value;
} errnos[] = {
	{ "EBUSY", EBUSY }, { "EPERM", EPERM }, { "EINVAL", EINVAL },
	{ "ENOTTY", ENOTTY }, { "ERANGE", ERANGE }, { "ENODEV", ENODEV },
	{ "ETIMEDOUT", ETIMEDOUT }, { "EPROTO", EPROTO }, { "EIO", EIO },
	{ "EAGAIN", EAGAIN }, { "ENODATA", ENODATA }, { "EFAULT", EFAULT },
	{ "ENOTRECOVERABLE", ENOTRECOVERABLE }, { "EOPNOTSUPP", EOPNOTSUPP },
};

static int errno_value(const char *name)
{
	if (strcmp(name, "ANY") == 0)
		return EXPECT_ANY_ERROR;
	for (size_t i = 0; i < sizeof(errnos) / sizeof(errnos[0]); i++)
		if (strcmp(errnos[i].name, name) == 0)
			return errnos[i].value;
	return -1;
}

static const char *errno_name(int e)
{
	for (size_t i = 0; i < sizeof(errnos) / sizeof(errnos[0]); i++)
		if (errnos[i].value == e)
			return errnos[i].name;
	return "?";
}

/*
 * The outcome of a step that may fail: with "expect ERRNO" before it, it
 * must fail with that errno; otherwise it must succeed.
 */
static bool outcome(const char *step, int ret, int err)
{
	int want = expect_errno;

	expect_errno = 0;
	if (want == EXPECT_ANY_ERROR) {
		if (ret >= 0) {
			printf("FAIL %s succeeded, expected it to fail\n", step);
			return false;
		}
		printf("%s refused=%s\n", step, errno_name(err));
		return true;
	}
	if (want) {
		if (ret >= 0) {
			printf("FAIL %s succeeded, expected %s\n", step, errno_name(want));
			return false;
		}
		if (err != want) {
			printf("FAIL %s: %s (%s), expected %s\n", step, strerror(err),
			       errno_name(err), errno_name(want));
			return false;
		}
		printf("%s refused=%s\n", step, errno_name(err));
		return true;
	}
	if (ret < 0) {
		printf("FAIL %s: %s (%s)\n", step, strerror(err), errno_name(err));
		return false;
	}
	return true;
}

static int xioctl(unsigned long cmd, void *arg)
{
	return ioctl(fd, cmd, arg);
}

/* A HEARTBEAT when one is due; failures are printed, not fatal. */
static void heartbeat_tick(void)
{
	if (!hb_period_ms || fd < 0)
		return;
	if (now_ns() - last_hb_ns < (uint64_t)hb_period_ms * 1000000u)
		return;
	last_hb_ns = now_ns();
	if (ioctl(fd, SMPLASER_IOC_HEARTBEAT) < 0)
		printf("heartbeat_error=%s\n", errno_name(errno));
}

/* Wait @ms, heart-beating. */
static void idle(unsigned int ms)
{
	uint64_t end = now_ns() + (uint64_t)ms * 1000000u;

	while (now_ns() < end) {
		heartbeat_tick();
		sleep_ms(2);
	}
}

static const char *event_type_name(unsigned int type)
{
	static const char *const names[] = {
		[SMPLASER_EV_STATUS] = "status", [SMPLASER_EV_INTERLOCK] = "interlock",
		[SMPLASER_EV_PULSE] = "pulse", [SMPLASER_EV_FAULT] = "fault",
		[SMPLASER_EV_OVERFLOW] = "overflow", [SMPLASER_EV_DISCONNECT] = "disconnect",
		[SMPLASER_EV_DISARM] = "disarm", [SMPLASER_EV_DISARM_FAILED] = "disarm-failed",
	};

	return type < sizeof(names) / sizeof(names[0]) && names[type] ? names[type] : "unknown";
}

static void print_event(const struct smplaser_event *ev)
{
	printf("event seq=%" PRIu32 " t_ns=%" PRIu64 " type=%s", ev->seq,
	       (uint64_t)ev->time_ns, event_type_name(ev->type));
	switch (ev->type) {
	case SMPLASER_EV_STATUS:
		printf(" state=%s fault=%u interlocks=0x%02x flags=0x%02x shots=%" PRIu32
		       " energy_uj=%" PRIu32, smpl_state_name(ev->status.state), ev->status.fault,
		       ev->status.interlocks, ev->status.flags, ev->status.shot_count,
		       ev->status.last_energy_uj);
		break;
	case SMPLASER_EV_INTERLOCK:
		printf(" interlocks=0x%02x changed=0x%02x", ev->interlock.interlocks,
		       ev->interlock.changed);
		break;
	case SMPLASER_EV_PULSE:
		printf(" shot=%" PRIu32 " measured_uj=%" PRIu32 " set_uj=%" PRIu32,
		       ev->pulse.shot, ev->pulse.measured_uj, ev->pulse.set_uj);
		break;
	case SMPLASER_EV_FAULT:
		printf(" fault=%u state=%s", ev->fault.fault, smpl_state_name(ev->fault.state));
		break;
	case SMPLASER_EV_OVERFLOW:
		printf(" lost=%" PRIu32, ev->overflow.lost);
		break;
	case SMPLASER_EV_DISARM_FAILED:
		printf(" control_error=%" PRId32 " command_error=%" PRId32 " tries=%u"
		       " interlocks=0x%02x state=%s", ev->disarm_failed.control_error,
		       ev->disarm_failed.command_error, ev->disarm_failed.tries,
		       ev->disarm_failed.interlocks, smpl_state_name(ev->disarm_failed.state));
		break;
	case SMPLASER_EV_DISARM:
		printf(" reason=%" PRIu32 " interlocks=0x%02x state=%s", ev->disarm.reason,
		       ev->disarm.interlocks, smpl_state_name(ev->disarm.state));
		if (mark_ns && ev->time_ns >= mark_ns)
			printf(" since_mark_ms=%.1f", (double)(ev->time_ns - mark_ns) / 1e6);
		break;
	default:
		break;
	}
	printf("\n");
}

/* Read the records there now; returns the last type read, or 0. */
static unsigned int read_available(void)
{
	struct smplaser_event ev[8];
	unsigned int last = 0;

	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (poll(&p, 1, 0) <= 0 || !(p.revents & POLLIN))
			return last;
		n = read(fd, ev, sizeof(ev));
		if (n < 0)
			return last;
		for (size_t i = 0; i < (size_t)n / sizeof(ev[0]); i++) {
			print_event(&ev[i]);
			last = ev[i].type;
		}
	}
}

static bool step_info(void)
{
	struct smplaser_info in;
	int ret;

	memset(&in, 0xa5, sizeof(in));
	ret = xioctl(SMPLASER_IOC_GET_INFO, &in);
	if (!outcome("info", ret, errno))
		return false;
	if (ret < 0)
		return true;
	printf("serial=%s\nmodel=%s\nfirmware=%u.%u.%u\nwavelength0=%u\nwavelength1=%u\n"
	       "max_fluence=%" PRIu32 "\nspot=%u-%u\npulse=%" PRIu32 "-%" PRIu32 "\n"
	       "max_rate=%" PRIu32 "\nwatchdog_ms=%u\nemission_delay_ms=%u\nheartbeat_ms=%" PRIu32
	       "\ninfo_reserved=%" PRIu32 "\n",
	       in.serial, in.model, in.fw_major, in.fw_minor, in.fw_patch, in.wavelength_nm[0],
	       in.wavelength_nm[1], in.max_fluence_mj_cm2, in.min_spot_um, in.max_spot_um,
	       in.min_pulse_ps, in.max_pulse_ps, in.max_rate_mhz, in.watchdog_ms,
	       in.emission_delay_ms, in.heartbeat_ms, in.reserved);
	return true;
}

static bool step_status(void)
{
	struct smplaser_status st;
	int ret;

	memset(&st, 0xa5, sizeof(st));
	ret = xioctl(SMPLASER_IOC_GET_STATUS, &st);
	if (!outcome("status", ret, errno))
		return false;
	if (ret < 0)
		return true;
	printf("state=%s\nfault=%u\ninterlocks=0x%02x\nflags=0x%02x\nshots=%" PRIu32
	       "\nenergy_uj=%" PRIu32 "\nrtc=%" PRId64 "\narmed=%u\nstatus_reserved=%u\n",
	       smpl_state_name(st.state), st.fault, st.interlocks, st.flags, st.shot_count,
	       st.last_energy_uj, (int64_t)st.rtc_s,
	       (unsigned int)(st.driver_flags & SMPLASER_DF_ARMED),
	       (unsigned int)(st.reserved0 | st.reserved1 | st.reserved2 | st.reserved3));
	return true;
}

static bool step_params(char **arg, bool reserved)
{
	struct smplaser_params p = { 0 };
	struct smpl_params_n n;
	int ret;

	p.wavelength_nm = (uint16_t)strtoul(arg[0], NULL, 0);
	p.spot_um = (uint16_t)strtoul(arg[1], NULL, 0);
	p.fluence_mj_cm2 = (uint32_t)strtoul(arg[2], NULL, 0);
	p.pulse_ps = (uint32_t)strtoul(arg[3], NULL, 0);
	p.rate_mhz = (uint32_t)strtoul(arg[4], NULL, 0);
	if (reserved)
		p.reserved[1] = 1;
	ret = xioctl(SMPLASER_IOC_SET_PARAMS, &p);
	if (!outcome("params", ret, errno))
		return false;
	if (ret < 0)
		return true;
	n.wavelength_nm = p.wavelength_nm;
	n.spot_um = p.spot_um;
	n.fluence_mj_cm2 = p.fluence_mj_cm2;
	n.pulse_ps = p.pulse_ps;
	n.rate_mhz = p.rate_mhz;
	printf("params=%u,%u,%" PRIu32 ",%" PRIu32 ",%" PRIu32 "\nset_energy_uj=%" PRIu32 "\n",
	       p.wavelength_nm, p.spot_um, p.fluence_mj_cm2, p.pulse_ps, p.rate_mhz,
	       smpl_params_energy_uj(&n));
	return true;
}

static bool step_simple(const char *name, unsigned long cmd)
{
	uint64_t before = now_ns();
	int ret = ioctl(fd, cmd);

	/* A heartbeat marks the time it was sent: the driver's clock starts then. */
	if (ret == 0 && cmd == SMPLASER_IOC_HEARTBEAT)
		mark_ns = last_hb_ns = before;
	return outcome(name, ret, errno);
}

static bool state_is(const char *want)
{
	struct smplaser_status st;

	if (xioctl(SMPLASER_IOC_GET_STATUS, &st) < 0)
		return false;
	return strcasecmp(smpl_state_name(st.state), want) == 0;
}

static bool step_wait_state(const char *want, unsigned int ms)
{
	uint64_t end = now_ns() + (uint64_t)ms * 1000000u;

	while (now_ns() < end) {
		if (state_is(want)) {
			printf("reached=%s\n", want);
			return true;
		}
		idle(10);
	}
	printf("FAIL state %s not reached in %u ms\n", want, ms);
	return false;
}

/*
 * One gadget control command over its socket ($GADGET_SOCK), one line each
 * way; the reply line into @reply.  True when the reply is "ok ...".
 */
static bool gadget_ctl(const char *args, char *reply, size_t size)
{
	const char *sock = getenv("GADGET_SOCK");
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	char line[300];
	size_t got = 0;
	int n, s;

	reply[0] = '\0';
	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s",
		 sock ? sock : "/run/smplaser-gadget.sock");
	n = snprintf(line, sizeof(line), "%s\n", args);
	s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return false;
	if (connect(s, (struct sockaddr *)&addr, sizeof(addr)) ||
	    send(s, line, (size_t)n, MSG_NOSIGNAL) != n) {
		snprintf(reply, size, "%s: %s", addr.sun_path, strerror(errno));
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

/* The gadget's status as shell assignments: G_state=STANDBY ... */
static bool step_gstatus(void)
{
	char reply[1024], *save = NULL;

	if (!gadget_ctl("status", reply, sizeof(reply))) {
		printf("FAIL gadget status: %s\n", reply);
		return false;
	}
	for (char *kv = strtok_r(reply + 2, " ", &save); kv; kv = strtok_r(NULL, " ", &save)) {
		char *eq = strchr(kv, '=');

		if (eq)
			printf("G_%.*s='%s'\n", (int)(eq - kv), kv, eq + 1);
	}
	return true;
}

/* The value of " NAME=" in a gadget status line, or "". */
static void status_field(const char *line, const char *name, char *out, size_t size)
{
	char key[64];
	const char *p;

	snprintf(key, sizeof(key), " %s=", name);
	p = strstr(line, key);
	out[0] = '\0';
	if (p)
		snprintf(out, size, "%.*s", (int)strcspn(p + strlen(key), " "), p + strlen(key));
}

static bool step_ctl(const char *args)
{
	char reply[1024];

	mark_ns = now_ns();
	if (!gadget_ctl(args, reply, sizeof(reply))) {
		printf("FAIL ctl %s: %s\n", args, reply);
		return false;
	}
	return true;
}

static bool step_gadget_wait(const char *want, unsigned int ms, double limit, const char *name)
{
	uint64_t end = now_ns() + (uint64_t)ms * 1000000u;
	char reply[1024], state[64], changed[64];

	while (now_ns() < end) {
		if (gadget_ctl("status", reply, sizeof(reply))) {
			status_field(reply, "state", state, sizeof(state));
			if (strcasecmp(state, want) == 0) {
				double lat;

				status_field(reply, "state_changed_ns", changed, sizeof(changed));
				lat = ((double)strtoull(changed, NULL, 10) - (double)mark_ns) / 1e6;
				printf("latency %s=%.1f ms\n", name, lat);
				if (lat > limit) {
					printf("FAIL %s latency %.1f ms > %.0f ms\n", name, lat, limit);
					return false;
				}
				return true;
			}
		}
		idle(2);
	}
	printf("FAIL gadget state %s not reached in %u ms (%s)\n", want, ms, reply);
	return false;
}

static bool step_disarms_wait(unsigned long n, unsigned int ms, double limit, const char *name)
{
	uint64_t end = now_ns() + (uint64_t)ms * 1000000u;
	char reply[1024], count[32];

	while (now_ns() < end) {
		if (gadget_ctl("status", reply, sizeof(reply))) {
			status_field(reply, "disarms", count, sizeof(count));
			if (strtoul(count, NULL, 10) >= disarms_base + n) {
				double lat = (double)(now_ns() - mark_ns) / 1e6;

				printf("latency %s=%.1f ms (upper bound)\n", name, lat);
				if (lat > limit) {
					printf("FAIL %s latency %.1f ms > %.0f ms\n", name, lat, limit);
					return false;
				}
				return true;
			}
		}
		idle(1);
	}
	printf("FAIL gadget disarms did not reach %lu + %lu in %u ms\n", disarms_base, n, ms);
	return false;
}

/* Write @value to the file @path (sysfs); marks the time. */
static bool step_write(const char *path, const char *value)
{
	int f = open(path, O_WRONLY | O_CLOEXEC);
	ssize_t n;

	mark_ns = now_ns();
	if (f < 0) {
		printf("FAIL open %s: %s\n", path, strerror(errno));
		return false;
	}
	n = write(f, value, strlen(value));
	close(f);
	if (n != (ssize_t)strlen(value)) {
		printf("FAIL write %s to %s: %s\n", value, path, strerror(errno));
		return false;
	}
	return true;
}

static bool step_events_until(const char *type, unsigned int ms)
{
	uint64_t end = now_ns() + (uint64_t)ms * 1000000u;

	while (now_ns() < end) {
		struct smplaser_event ev;
		struct pollfd p = { .fd = fd, .events = POLLIN };

		heartbeat_tick();
		if (poll(&p, 1, 5) <= 0 || !(p.revents & POLLIN))
			continue;
		if (read(fd, &ev, sizeof(ev)) != (ssize_t)sizeof(ev))
			break;
		print_event(&ev);
		if (strcmp(event_type_name(ev.type), type) == 0)
			return true;
	}
	printf("FAIL no %s event in %u ms\n", type, ms);
	return false;
}

/* poll() for up to @ms; prints what it reported and when. */
static void step_poll_wait(int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	uint64_t start = now_ns();
	int n = poll(&p, 1, ms);

	if (n <= 0) {
		printf("poll=timeout\n");
		return;
	}
	printf("poll=%s%s%s after_ms=%.1f\n", p.revents & POLLIN ? "IN," : "",
	       p.revents & POLLHUP ? "HUP," : "", p.revents & POLLERR ? "ERR," : "",
	       (double)(now_ns() - start) / 1e6);
}

static bool step_read_block(void)
{
	struct smplaser_event ev;
	ssize_t n = read(fd, &ev, sizeof(ev));

	if (n == (ssize_t)sizeof(ev)) {
		print_event(&ev);
		expect_errno = 0;
		return true;
	}
	return outcome("read", n < 0 ? -1 : 0, errno);
}

/*
 * USBDEVFS_RESET on the unit's usbfs node, found from the char device's
 * sysfs parent (the interface, then its device: busnum and devnum).
 */
static bool step_usbreset(void)
{
	char path[512], node[64];
	unsigned int bus = 0, devnum = 0;
	const char *name = strrchr(dev_path, '/');
	FILE *f;
	int u, ret;

	snprintf(path, sizeof(path), "/sys/class/smplaser/%s/device/../busnum",
		 name ? name + 1 : dev_path);
	f = fopen(path, "re");
	if (!f || fscanf(f, "%u", &bus) != 1) {
		printf("FAIL usbreset: %s\n", path);
		if (f)
			fclose(f);
		return false;
	}
	fclose(f);
	snprintf(path + strlen(path) - strlen("busnum"), 16, "devnum");
	f = fopen(path, "re");
	if (!f || fscanf(f, "%u", &devnum) != 1) {
		printf("FAIL usbreset: %s\n", path);
		if (f)
			fclose(f);
		return false;
	}
	fclose(f);
	snprintf(node, sizeof(node), "/dev/bus/usb/%03u/%03u", bus, devnum);
	u = open(node, O_WRONLY | O_CLOEXEC);
	if (u < 0) {
		printf("FAIL usbreset: open %s: %s\n", node, strerror(errno));
		return false;
	}
	mark_ns = now_ns();
	ret = ioctl(u, USBDEVFS_RESET, 0);
	printf("usbreset %s: %s\n", node, ret < 0 ? strerror(errno) : "ok");
	close(u);
	return true;
}

static bool open_device(void)
{
	fd = open(dev_path, open_flags | O_CLOEXEC);
	return outcome("open", fd, errno);
}

static bool step_open_second(void)
{
	int fd2 = open(dev_path, O_RDWR | O_CLOEXEC);
	int err = errno;

	if (fd2 >= 0)
		close(fd2);
	return outcome("open-second", fd2, err);
}

/* Run one step at @argv; returns the number of arguments it used, or -1. */
static int run_step(char **argv, int argc)
{
	const char *s = argv[0];

#define NEED(n) do { if (argc < (n) + 1) { printf("FAIL %s needs %d arguments\n", s, n); \
	return -1; } } while (0)
	if (!strcmp(s, "info"))
		return step_info() ? 1 : -1;
	if (!strcmp(s, "status"))
		return step_status() ? 1 : -1;
	if (!strcmp(s, "params")) {
		NEED(5);
		return step_params(argv + 1, false) ? 6 : -1;
	}
	if (!strcmp(s, "params-reserved")) {
		char *def[] = { "1064", "3000", "4000", "10000", "1000" };

		return step_params(def, true) ? 1 : -1;
	}
	if (!strcmp(s, "arm"))
		return step_simple(s, SMPLASER_IOC_ARM) ? 1 : -1;
	if (!strcmp(s, "disarm"))
		return step_simple(s, SMPLASER_IOC_DISARM) ? 1 : -1;
	if (!strcmp(s, "heartbeat"))
		return step_simple(s, SMPLASER_IOC_HEARTBEAT) ? 1 : -1;
	if (!strcmp(s, "ack"))
		return step_simple(s, SMPLASER_IOC_ACK_FAULT) ? 1 : -1;
	if (!strcmp(s, "expect")) {
		NEED(1);
		expect_errno = errno_value(argv[1]);
		if (expect_errno == -1) {
			printf("FAIL unknown errno %s\n", argv[1]);
			return -1;
		}
		return 2;
	}
	if (!strcmp(s, "hb")) {
		NEED(1);
		hb_period_ms = (unsigned int)strtoul(argv[1], NULL, 0);
		last_hb_ns = 0;
		heartbeat_tick();
		return 2;
	}
	if (!strcmp(s, "sleep")) {
		NEED(1);
		idle((unsigned int)strtoul(argv[1], NULL, 0));
		return 2;
	}
	if (!strcmp(s, "wait-state")) {
		NEED(2);
		return step_wait_state(argv[1], (unsigned int)strtoul(argv[2], NULL, 0)) ? 3 : -1;
	}
	if (!strcmp(s, "ctl")) {
		NEED(1);
		return step_ctl(argv[1]) ? 2 : -1;
	}
	if (!strcmp(s, "disarms-base")) {
		char reply[1024], count[32];

		if (!gadget_ctl("status", reply, sizeof(reply)))
			return -1;
		status_field(reply, "disarms", count, sizeof(count));
		disarms_base = strtoul(count, NULL, 10);
		return 1;
	}
	if (!strcmp(s, "gstatus"))
		return step_gstatus() ? 1 : -1;
	if (!strcmp(s, "write")) {
		NEED(2);
		return step_write(argv[1], argv[2]) ? 3 : -1;
	}
	if (!strcmp(s, "mark")) {
		mark_ns = now_ns();
		return 1;
	}
	if (!strcmp(s, "close")) {
		hb_period_ms = 0;
		mark_ns = now_ns();
		close(fd);
		fd = -1;
		return 1;
	}
	if (!strcmp(s, "reopen"))
		return open_device() ? 1 : -1;
	if (!strcmp(s, "open-second"))
		return step_open_second() ? 1 : -1;
	if (!strcmp(s, "gadget-wait")) {
		NEED(4);
		return step_gadget_wait(argv[1], (unsigned int)strtoul(argv[2], NULL, 0),
					strtod(argv[3], NULL), argv[4]) ? 5 : -1;
	}
	if (!strcmp(s, "disarms-wait")) {
		NEED(4);
		return step_disarms_wait(strtoul(argv[1], NULL, 0),
					 (unsigned int)strtoul(argv[2], NULL, 0),
					 strtod(argv[3], NULL), argv[4]) ? 5 : -1;
	}
	if (!strcmp(s, "events")) {
		read_available();
		return 1;
	}
	if (!strcmp(s, "events-until")) {
		NEED(2);
		return step_events_until(argv[1], (unsigned int)strtoul(argv[2], NULL, 0)) ? 3 : -1;
	}
	if (!strcmp(s, "raw-ioctl")) {
		NEED(1);
		int ret = ioctl(fd, strtoul(argv[1], NULL, 0), NULL);

		return outcome(s, ret, errno) ? 2 : -1;
	}
	if (!strcmp(s, "wait-gone")) {
		uint64_t end;

		NEED(1);
		end = now_ns() + strtoull(argv[1], NULL, 0) * 1000000u;
		while (access(dev_path, F_OK) == 0 && now_ns() < end)
			sleep_ms(5);
		if (access(dev_path, F_OK) == 0) {
			printf("FAIL %s still there\n", dev_path);
			return -1;
		}
		return 2;
	}
	if (!strcmp(s, "nonblock")) {
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
		return 1;
	}
	if (!strcmp(s, "read-once")) {
		struct smplaser_event ev;
		ssize_t n = read(fd, &ev, sizeof(ev));
		int err = errno;

		if (n == (ssize_t)sizeof(ev))
			print_event(&ev);
		return outcome(s, n < 0 ? -1 : 0, err) ? 1 : -1;
	}
	if (!strcmp(s, "read-small")) {
		char small[SMPLASER_EVENT_SIZE - 1];
		ssize_t n = read(fd, small, sizeof(small));

		return outcome(s, n < 0 ? -1 : 0, errno) ? 1 : -1;
	}
	if (!strcmp(s, "poll-wait")) {
		NEED(1);
		step_poll_wait((int)strtol(argv[1], NULL, 0));
		return 2;
	}
	if (!strcmp(s, "read-block"))
		return step_read_block() ? 1 : -1;
	if (!strcmp(s, "usbreset"))
		return step_usbreset() ? 1 : -1;
#undef NEED
	printf("FAIL unknown step %s\n", s);
	return -1;
}

int main(int argc, char **argv)
{
	int i = 1;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc > 2 && strcmp(argv[1], "-d") == 0) {
		dev_path = argv[2];
		i = 3;
	}
	if (i < argc && strcmp(argv[i], "-r") == 0) {
		open_flags = O_RDONLY;
		i++;
	}
	/* "-n": gadget steps only, no device. */
	if (i < argc && strcmp(argv[i], "-n") == 0) {
		for (i++; i < argc; i++) {
			bool good = !strcmp(argv[i], "gstatus") ? step_gstatus() :
				    i + 1 < argc && !strcmp(argv[i], "ctl") ? step_ctl(argv[++i]) :
				    false;

			if (!good)
				return 1;
		}
		return 0;
	}
	/* "open-fails ERRNO": only an open that must fail. */
	if (i + 1 < argc && strcmp(argv[i], "open-fails") == 0) {
		expect_errno = errno_value(argv[i + 1]);
		if (expect_errno <= 0 || !open_device())
			return 1;
		return 0;
	}
	if (!open_device())
		return 1;
	while (i < argc) {
		int used = run_step(argv + i, argc - i);

		if (used < 0)
			return 1;
		i += used;
	}
	if (fd >= 0)
		close(fd);
	return 0;
}
