// SPDX-License-Identifier: MIT
/*
 * smplaser-gadget: the unit's firmware model behind FunctionFS.
 *
 * Five threads share one model under one mutex:
 *   ep0       FunctionFS events: enable/disable, vendor control requests
 *   bulk OUT  command frames -> smpl_model_handle_frame -> reply queue
 *   bulk IN   writes queued replies (or halts the endpoint for a stall)
 *   int IN    smpl_model_next_report -> interrupt endpoint
 *   tick      lets model time pass (smpl_model_advance), saves the nv file
 * and the main thread serves the test-control socket (gadget-ctl.c).
 * Losing the host (unplug, bus reset, deconfiguration) disarms the model at
 * once, as the unit's firmware would on losing VBUS or its configuration.
 * The endpoint files are blocking; a signal (SIGUSR1) interrupts them at exit.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <endian.h>
#include <linux/usb/ch9.h>
#include <linux/usb/functionfs.h>

#include "codec.h"
#include "gadget.h"

#define TICK_MAX_MS	100	/* the tick thread wakes at least this often */
#define IO_RETRY_MS	10	/* pause after an unexpected endpoint error */

static atomic_bool stopping;

uint64_t gadget_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t gadget_now_ms(void)
{
	return gadget_now_ns() / 1000000u;
}

bool gadget_stopping(void)
{
	return atomic_load(&stopping);
}

void gadget_request_stop(void)
{
	atomic_store(&stopping, true);
}

static void logmsg(const struct gadget *g, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void logmsg(const struct gadget *g, const char *fmt, ...)
{
	va_list ap;

	if (!g->verbose)
		return;
	fprintf(stderr, "smplaser-gadget: [%llu ms] ", (unsigned long long)gadget_now_ms());
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void lock(struct gadget *g)
{
	pthread_mutex_lock(&g->lock);
}

static void unlock(struct gadget *g)
{
	pthread_mutex_unlock(&g->lock);
}

/* Wait on g->changed for at most @ms milliseconds.  Lock held. */
static void wait_changed(struct gadget *g, uint64_t ms)
{
	struct timespec ts;

	gadget_deadline(&ts, ms);
	pthread_cond_timedwait(&g->changed, &g->lock, &ts);
}

void gadget_note_state(struct gadget *g)
{
	struct smpl_model_view v;

	smpl_model_view(g->model, gadget_now_ms(), &v);
	if (v.state != g->last_state) {
		logmsg(g, "state %s -> %s", smpl_state_name(g->last_state),
		       smpl_state_name(v.state));
		g->last_state = v.state;
		g->state_changed_ns = gadget_now_ns();
	}
	pthread_cond_broadcast(&g->changed);
}

void gadget_flush_replies(struct gadget *g)
{
	g->queue_head = 0;
	g->queue_count = 0;
	g->queue_gen++;
	pthread_cond_broadcast(&g->changed);
}

/* --- ep0: events and vendor control requests ----------------------------- */

static void ep0_stall(struct gadget *g, bool dir_in)
{
	uint8_t dummy = 0;

	/* FunctionFS stalls a setup answered in the wrong direction. */
	if (dir_in)
		(void)!read(g->usb.ep0, &dummy, 0);
	else
		(void)!write(g->usb.ep0, &dummy, 0);
}

static void handle_setup(struct gadget *g, const struct usb_ctrlrequest *s)
{
	uint16_t length = le16toh(s->wLength);
	uint16_t index = le16toh(s->wIndex);
	bool dir_in = s->bRequestType & USB_DIR_IN;
	bool vendor_intf = (s->bRequestType & (USB_TYPE_MASK | USB_RECIP_MASK)) ==
			   (USB_TYPE_VENDOR | USB_RECIP_INTERFACE) && index == 0;
	uint8_t dummy = 0;

	lock(g);
	g->setups++;
	unlock(g);
	logmsg(g, "setup type 0x%02x req 0x%02x index %u length %u",
	       s->bRequestType, s->bRequest, index, length);

	if (vendor_intf && dir_in && s->bRequest == SMPL_REQ_GET_VERSION && length > 0) {
		struct smpl_version v = {
			.proto_version = SMPL_PROTO_VERSION,
			.fw_major = g->cfg.fw_major,
			.fw_minor = g->cfg.fw_minor,
			.fw_patch = g->cfg.fw_patch,
		};
		size_t n = length < sizeof(v) ? length : sizeof(v);

		if (write(g->usb.ep0, &v, n) < 0)
			logmsg(g, "GET_VERSION reply: %s", strerror(errno));
		return;
	}
	if (vendor_intf && !dir_in && s->bRequest == SMPL_REQ_DISARM && length == 0) {
		enum gadget_disarm_request mode;

		lock(g);
		g->disarm_requests++;
		mode = g->disarm_mode;
		if (mode == GADGET_DISARM_NORMAL) {
			smpl_model_disarm(g->model, gadget_now_ms());
			g->disarms++;
			gadget_note_state(g);
		}
		if (mode == GADGET_DISARM_HANG) {
			/*
			 * No status stage.  Reading ep0 would complete it
			 * (FunctionFS), so ep0 is left alone until told
			 * otherwise: a unit with a wedged ep0, whose later
			 * requests wait too.
			 */
			logmsg(g, "DISARM request: left unanswered");
			while (g->disarm_mode == GADGET_DISARM_HANG && !gadget_stopping())
				wait_changed(g, TICK_MAX_MS);
			mode = GADGET_DISARM_STALL;
		}
		unlock(g);
		if (mode == GADGET_DISARM_STALL) {
			logmsg(g, "DISARM request: stalled");
			ep0_stall(g, dir_in);
			return;
		}
		/* The status stage: a zero-length read acknowledges it. */
		if (read(g->usb.ep0, &dummy, 0) < 0)
			logmsg(g, "DISARM status stage: %s", strerror(errno));
		return;
	}
	ep0_stall(g, dir_in);
}

/*
 * The host is gone: cable pulled (VBUS lost), bus reset or deconfigured.
 * The unit disarms at once (design S4: unplug disarms) and drops what was
 * waiting in its FIFOs.  Lock held.
 */
static void lose_host(struct gadget *g)
{
	g->enabled = false;
	gadget_flush_replies(g);
	smpl_model_disarm(g->model, gadget_now_ms());
	g->disconnects++;
	gadget_note_state(g);
}

static void set_enabled(struct gadget *g, bool enabled)
{
	lock(g);
	if (enabled)
		g->enabled = true;
	else
		lose_host(g);
	pthread_cond_broadcast(&g->changed);
	unlock(g);
}

static void *ep0_thread(void *arg)
{
	struct gadget *g = arg;
	struct usb_functionfs_event ev[4];

	while (!gadget_stopping()) {
		ssize_t n = read(g->usb.ep0, ev, sizeof(ev));

		if (n < 0) {
			if (errno != EINTR && errno != EIDRM) {
				logmsg(g, "ep0 read: %s", strerror(errno));
				usleep(IO_RETRY_MS * 1000);
			}
			continue;
		}
		for (size_t i = 0; i < (size_t)n / sizeof(ev[0]); i++) {
			switch (ev[i].type) {
			case FUNCTIONFS_ENABLE:
				logmsg(g, "enabled by the host");
				set_enabled(g, true);
				break;
			case FUNCTIONFS_DISABLE:
			case FUNCTIONFS_UNBIND:
				logmsg(g, "%s", ev[i].type == FUNCTIONFS_DISABLE ? "disabled" : "unbound");
				set_enabled(g, false);
				break;
			case FUNCTIONFS_SETUP:
				handle_setup(g, &ev[i].u.setup);
				break;
			default:	/* BIND, SUSPEND, RESUME */
				logmsg(g, "ep0 event %u", ev[i].type);
				break;
			}
		}
	}
	return NULL;
}

/* --- bulk OUT: commands -------------------------------------------------- */

/* "deaf" and "slow": the command is dropped (true) or held back a while. */
static bool hold_command(struct gadget *g)
{
	uint32_t slow_ms = 0;

	if (g->deaf_count) {
		g->deaf_count--;
		g->commands_dropped++;
		logmsg(g, "command dropped (deaf)");
		return true;
	}
	if (g->slow_count) {
		g->slow_count--;
		slow_ms = g->slow_ms;
	}
	if (slow_ms) {
		uint64_t until = gadget_now_ms() + slow_ms;

		logmsg(g, "command held back %u ms (slow)", slow_ms);
		while (gadget_now_ms() < until && !gadget_stopping())
			wait_changed(g, until - gadget_now_ms());
	}
	return false;
}

static void *bulk_out_thread(void *arg)
{
	struct gadget *g = arg;
	uint8_t cmd[512];	/* a multiple of the high-speed bulk packet */

	while (!gadget_stopping()) {
		ssize_t n = read(g->usb.ep_out, cmd, sizeof(cmd));
		struct gadget_reply *r;
		uint64_t came_ms = gadget_now_ms();
		int len;

		if (n < 0) {
			if (errno != EINTR && errno != ESHUTDOWN) {
				logmsg(g, "bulk OUT read: %s", strerror(errno));
				usleep(IO_RETRY_MS * 1000);
			}
			continue;
		}
		lock(g);
		if (hold_command(g)) {
			unlock(g);
			continue;
		}
		while (g->queue_count == GADGET_QUEUE_LEN && !gadget_stopping())
			wait_changed(g, TICK_MAX_MS);	/* the host reads no replies */
		r = &g->queue[(g->queue_head + g->queue_count) % GADGET_QUEUE_LEN];
		len = smpl_model_handle_frame(g->model, gadget_now_ms(), cmd, (size_t)n,
					      r->buf, sizeof(r->buf));
		g->commands++;
		logmsg(g, "command op 0x%02x (%zd bytes) -> %s %d", n > 3 ? cmd[3] : 0, n,
		       len > 0 ? "reply" : len < 0 ? "stall" : "no answer", len);
		if (len != 0) {
			r->len = len;
			r->send_at_ms = 0;
			if (g->late_count) {
				g->late_count--;
				r->send_at_ms = came_ms + g->late_ms;
			}
			g->queue_count++;
		}
		gadget_note_state(g);
		unlock(g);
	}
	return NULL;
}

/* --- bulk IN: replies ---------------------------------------------------- */

static void send_reply(struct gadget *g, const struct gadget_reply *r)
{
	uint8_t dummy;

	if (r->len < 0) {
		/* Reading an IN endpoint file halts it (FunctionFS). */
		if (read(g->usb.ep_in, &dummy, 1) < 0 && errno != EBADMSG)
			logmsg(g, "halting bulk IN: %s", strerror(errno));
		lock(g);
		g->stalls++;
		unlock(g);
		return;
	}
	if (write(g->usb.ep_in, r->buf, (size_t)r->len) < 0) {
		logmsg(g, "bulk IN write: %s", strerror(errno));
		return;
	}
	lock(g);
	g->replies++;
	unlock(g);
}

static void *bulk_in_thread(void *arg)
{
	struct gadget *g = arg;
	struct gadget_reply r;
	unsigned int gen;

	lock(g);
	while (!gadget_stopping()) {
		uint64_t now = gadget_now_ms();

		if (g->queue_count == 0) {
			wait_changed(g, TICK_MAX_MS);
			continue;
		}
		if (g->queue[g->queue_head].send_at_ms > now) {
			/* A late reply ("late"): it goes out when its time comes. */
			wait_changed(g, g->queue[g->queue_head].send_at_ms - now);
			continue;
		}
		r = g->queue[g->queue_head];
		gen = g->queue_gen;
		unlock(g);
		send_reply(g, &r);
		lock(g);
		if (g->queue_gen == gen && g->queue_count > 0) {
			g->queue_head = (g->queue_head + 1) % GADGET_QUEUE_LEN;
			g->queue_count--;
			pthread_cond_broadcast(&g->changed);
		}
	}
	unlock(g);
	return NULL;
}

/* --- interrupt IN: status and pulse reports ------------------------------ */

/* Halt the interrupt endpoint ("reports stall"): reading an IN file halts it. */
static void halt_int_in(struct gadget *g)
{
	uint8_t dummy;

	if (read(g->usb.ep_int, &dummy, 1) < 0 && errno != EBADMSG)
		logmsg(g, "halting interrupt IN: %s", strerror(errno));
}

static void *int_in_thread(void *arg)
{
	struct gadget *g = arg;
	uint8_t buf[SMPL_MAX_REPORT];

	lock(g);
	while (!gadget_stopping()) {
		uint64_t now = gadget_now_ms();
		enum gadget_reports mode = g->reports_mode;
		uint64_t wait;
		int n = 0;

		if (mode == GADGET_REPORTS_STALL && g->enabled) {
			g->reports_mode = GADGET_REPORTS_NORMAL;
			unlock(g);
			halt_int_in(g);
			lock(g);
			continue;
		}
		if (g->enabled && g->powered) {
			smpl_model_advance(g->model, now);
			n = smpl_model_next_report(g->model, now, buf, sizeof(buf));
			/* Silent: the reports are lost, not kept for later. */
			while (n > 0 && mode == GADGET_REPORTS_SILENT)
				n = smpl_model_next_report(g->model, now, buf, sizeof(buf));
		}
		if (n > 0) {
			if (mode == GADGET_REPORTS_GARBAGE)
				buf[12] ^= 0xff;	/* the CRC */
			gadget_note_state(g);
			g->report_in_flight = true;
			unlock(g);
			if (write(g->usb.ep_int, buf, (size_t)n) < 0 && errno != EINTR &&
			    errno != ESHUTDOWN)
				logmsg(g, "interrupt IN write: %s", strerror(errno));
			lock(g);
			g->report_in_flight = false;
			g->reports++;
			pthread_cond_broadcast(&g->changed);
			continue;
		}
		wait = smpl_model_next_deadline(g->model, now);
		if (wait > SMPL_STATUS_PERIOD_MS)
			wait = SMPL_STATUS_PERIOD_MS;
		wait_changed(g, wait ? wait : 1);
	}
	unlock(g);
	return NULL;
}

/* --- time ---------------------------------------------------------------- */

static void save_nv_if_changed(struct gadget *g)
{
	struct smpl_model_nv nv;

	smpl_model_get_nv(g->model, &nv);
	if (!g->nv_path || nv.shot_count == g->saved_shots)
		return;
	g->saved_shots = nv.shot_count;
	unlock(g);
	gadget_nv_save(g->nv_path, &nv);
	lock(g);
}

static void *tick_thread(void *arg)
{
	struct gadget *g = arg;

	lock(g);
	while (!gadget_stopping()) {
		uint64_t now = gadget_now_ms();
		uint64_t wait;

		smpl_model_advance(g->model, now);
		gadget_note_state(g);
		save_nv_if_changed(g);
		wait = smpl_model_next_deadline(g->model, gadget_now_ms());
		if (wait > TICK_MAX_MS)
			wait = TICK_MAX_MS;
		wait_changed(g, wait ? wait : 1);
	}
	unlock(g);
	return NULL;
}

/* --- plugging and power (control socket) --------------------------------- */

int gadget_set_plugged(struct gadget *g, bool plugged)
{
	int ret;

	if (!plugged) {
		/* The unit sees VBUS go before the host sees it leave. */
		lock(g);
		lose_host(g);
		unlock(g);
	}
	ret = plugged ? gadget_usb_bind(&g->usb) : gadget_usb_unbind(&g->usb);
	lock(g);
	if (!ret)
		g->plugged = plugged;
	if (!plugged)
		lose_host(g);	/* and anything the host did meanwhile */
	unlock(g);
	logmsg(g, "%s: %s", plugged ? "plugged in" : "unplugged", ret ? strerror(-ret) : "ok");
	return ret;
}

int gadget_set_power(struct gadget *g, bool on)
{
	struct smpl_model_nv nv;

	if (!on) {
		/* A unit that loses power drops off the bus. */
		gadget_set_plugged(g, false);
		lock(g);
		smpl_model_power_off(g->model, gadget_now_ms());
		g->powered = false;
		smpl_model_get_nv(g->model, &nv);
		g->saved_shots = nv.shot_count;
		gadget_note_state(g);
		unlock(g);
		return g->nv_path ? gadget_nv_save(g->nv_path, &nv) : 0;
	}
	lock(g);
	if (!g->powered) {
		smpl_model_power_on(g->model, gadget_now_ms());
		g->powered = true;
		gadget_note_state(g);
	}
	unlock(g);
	return gadget_set_plugged(g, true);
}

/* --- main ---------------------------------------------------------------- */

static void on_signal(int sig)
{
	if (sig != SIGUSR1)
		gadget_request_stop();
}

static void install_signals(void)
{
	struct sigaction sa = { .sa_handler = on_signal };

	/* No SA_RESTART: blocking endpoint I/O and accept() return EINTR. */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

/* Stop a thread blocked in endpoint I/O: signal it until it has returned. */
static void stop_thread(pthread_t t)
{
	while (pthread_tryjoin_np(t, NULL) == EBUSY) {
		pthread_kill(t, SIGUSR1);
		usleep(5000);
	}
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: smplaser-gadget [OPTIONS]        run the unit behind FunctionFS\n"
		"       smplaser-gadget --ctl SOCKET CMD...   send one control command\n"
		"\n"
		"Options:\n"
		"  --socket PATH          control socket (default /run/smplaser-gadget.sock)\n"
		"  --nv PATH              file that keeps the shot count and RTC offset\n"
		"  --serial SERIAL        the unit's serial number (default: the model's)\n"
		"  --name NAME            configfs gadget and FunctionFS instance (smplaser)\n"
		"  --configfs DIR         configfs mount point (/sys/kernel/config)\n"
		"  --ffs-dir DIR          where to mount FunctionFS (/dev/ffs-NAME)\n"
		"  --udc NAME             UDC to bind to (default: the first one)\n"
		"  --self-test-ms N, --emission-delay-ms N, --watchdog-ms N,\n"
		"  --idle-timeout-ms N, --noise-ppm N, --seed N   model configuration\n"
		"  --picosecond           a picosecond unit\n"
		"  -v, --verbose          log every event on stderr\n"
		"\n"
		"Control commands (one line each, reply \"ok ...\" or \"error: ...\"):\n"
		"  status | footswitch 1|0 | interlock NAME open|closed | drift PPM\n"
		"  fault CODE | clear-fault | calibration valid|expired | rtc-skew S\n"
		"  hostile MODE COUNT | late MS COUNT | slow MS COUNT | deaf COUNT\n"
		"  reports normal|silent|garbage|stall | drain MS | disarm-request normal|stall|hang\n"
		"  power off|on | unplug | replug | quit\n");
}

static bool parse_u32(const char *s, uint32_t *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 0);
	if (errno || end == s || *end || v > UINT32_MAX || s[0] == '-')
		return false;
	*out = (uint32_t)v;
	return true;
}

enum {
	OPT_SOCKET = 256, OPT_NV, OPT_SERIAL, OPT_NAME, OPT_CONFIGFS, OPT_FFS_DIR,
	OPT_UDC, OPT_SELF_TEST, OPT_DELAY, OPT_WATCHDOG, OPT_IDLE, OPT_NOISE,
	OPT_SEED, OPT_PICO, OPT_CTL, OPT_HELP,
};

static int parse_options(struct gadget *g, int argc, char **argv, char *ffs_dir,
			 size_t ffs_size)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, OPT_SOCKET },
		{ "nv", required_argument, NULL, OPT_NV },
		{ "serial", required_argument, NULL, OPT_SERIAL },
		{ "name", required_argument, NULL, OPT_NAME },
		{ "configfs", required_argument, NULL, OPT_CONFIGFS },
		{ "ffs-dir", required_argument, NULL, OPT_FFS_DIR },
		{ "udc", required_argument, NULL, OPT_UDC },
		{ "self-test-ms", required_argument, NULL, OPT_SELF_TEST },
		{ "emission-delay-ms", required_argument, NULL, OPT_DELAY },
		{ "watchdog-ms", required_argument, NULL, OPT_WATCHDOG },
		{ "idle-timeout-ms", required_argument, NULL, OPT_IDLE },
		{ "noise-ppm", required_argument, NULL, OPT_NOISE },
		{ "seed", required_argument, NULL, OPT_SEED },
		{ "picosecond", no_argument, NULL, OPT_PICO },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, OPT_HELP },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "v", opts, NULL)) != -1) {
		uint32_t *num = NULL;
		uint32_t v;

		switch (c) {
		case OPT_SOCKET: g->socket_path = optarg; break;
		case OPT_NV: g->nv_path = optarg; break;
		case OPT_SERIAL:
			if (strlen(optarg) > 16 || !optarg[0]) {
				fprintf(stderr, "smplaser-gadget: --serial: 1 to 16 characters\n");
				return -1;
			}
			snprintf(g->cfg.serial, sizeof(g->cfg.serial), "%s", optarg);
			break;
		case OPT_NAME: g->usb.name = optarg; break;
		case OPT_CONFIGFS: g->usb.configfs = optarg; break;
		case OPT_FFS_DIR: snprintf(ffs_dir, ffs_size, "%s", optarg); break;
		case OPT_UDC: snprintf(g->usb.udc, sizeof(g->usb.udc), "%s", optarg); break;
		case OPT_SELF_TEST: num = &g->cfg.self_test_ms; break;
		case OPT_DELAY: num = &g->cfg.emission_delay_ms; break;
		case OPT_WATCHDOG: num = &g->cfg.watchdog_ms; break;
		case OPT_IDLE: num = &g->cfg.idle_timeout_ms; break;
		case OPT_NOISE: num = &g->cfg.noise_ppm; break;
		case OPT_SEED: num = &g->cfg.seed; break;
		case OPT_PICO: g->cfg.picosecond = true; break;
		case 'v': g->verbose = true; break;
		case OPT_HELP: usage(stdout); exit(0);
		default: usage(stderr); return -1;
		}
		if (num) {
			if (!parse_u32(optarg, &v)) {
				fprintf(stderr, "smplaser-gadget: not a number: %s\n", optarg);
				return -1;
			}
			*num = v;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return -1;
	}
	if (!ffs_dir[0])
		snprintf(ffs_dir, ffs_size, "/dev/ffs-%s", g->usb.name);
	return 0;
}

static int create_model(struct gadget *g)
{
	struct smpl_model_nv nv = { 0 };
	struct smpl_model_view v;
	uint64_t now = gadget_now_ms();

	if (g->nv_path && gadget_nv_load(g->nv_path, &nv))
		return -1;
	g->model = smpl_model_new(&g->cfg, &nv, now, (int64_t)time(NULL));
	if (!g->model) {
		fprintf(stderr, "smplaser-gadget: cannot create the model\n");
		return -1;
	}
	g->saved_shots = nv.shot_count;
	smpl_model_power_on(g->model, now);
	g->powered = true;
	smpl_model_view(g->model, now, &v);
	g->last_state = v.state;
	g->state_changed_ns = gadget_now_ns();
	return 0;
}

static int run(struct gadget *g)
{
	void *(*const bodies[])(void *) = {
		ep0_thread, bulk_out_thread, bulk_in_thread, int_in_thread, tick_thread,
	};
	pthread_t threads[sizeof(bodies) / sizeof(bodies[0])];
	size_t started = 0;
	sigset_t block, old;
	int listen_fd = -1;
	int ret = 1;

	if (gadget_usb_setup(&g->usb) || gadget_usb_open_endpoints(&g->usb))
		goto out;

	/* Workers take SIGUSR1 only; SIGTERM and SIGINT go to the main thread. */
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	for (; started < sizeof(bodies) / sizeof(bodies[0]); started++) {
		if (pthread_create(&threads[started], NULL, bodies[started], g)) {
			fprintf(stderr, "smplaser-gadget: cannot start a thread\n");
			break;
		}
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (started < sizeof(bodies) / sizeof(bodies[0]))
		goto stop;

	if (gadget_set_plugged(g, true))
		goto stop;
	listen_fd = gadget_ctl_listen(g->socket_path);
	if (listen_fd < 0)
		goto stop;
	fprintf(stderr, "smplaser-gadget: unit %s on %s, control socket %s\n",
		g->cfg.serial, g->usb.udc, g->socket_path);
	gadget_ctl_serve(g, listen_fd);
	ret = 0;
stop:
	gadget_request_stop();
	gadget_usb_unbind(&g->usb);
	lock(g);
	pthread_cond_broadcast(&g->changed);
	unlock(g);
	while (started > 0)
		stop_thread(threads[--started]);
	if (listen_fd >= 0) {
		close(listen_fd);
		unlink(g->socket_path);
	}
	if (g->nv_path) {
		struct smpl_model_nv nv;

		smpl_model_get_nv(g->model, &nv);
		if (gadget_nv_save(g->nv_path, &nv))
			ret = 1;
	}
out:
	gadget_usb_teardown(&g->usb);
	return ret;
}

int main(int argc, char **argv)
{
	static struct gadget g = {
		.socket_path = "/run/smplaser-gadget.sock",
		.usb = { .name = "smplaser", .configfs = "/sys/kernel/config" },
	};
	static char ffs_dir[256];
	static char usb_serial[sizeof(g.cfg.serial)];
	pthread_condattr_t ca;
	int ret;

	if (argc >= 2 && strcmp(argv[1], "--ctl") == 0) {
		if (argc < 4) {
			usage(stderr);
			return 2;
		}
		return gadget_ctl_client(argv[2], argc - 3, argv + 3);
	}

	smpl_model_default_config(&g.cfg);
	if (parse_options(&g, argc, argv, ffs_dir, sizeof(ffs_dir)))
		return 2;
	g.usb.ffs_dir = ffs_dir;
	/* The USB string descriptor is UTF-8 in configfs: ASCII only there. */
	for (size_t i = 0; i < sizeof(usb_serial) - 1 && g.cfg.serial[i]; i++)
		usb_serial[i] = (unsigned char)g.cfg.serial[i] < 0x80 ? g.cfg.serial[i] : '_';
	g.usb.serial = usb_serial;

	pthread_mutex_init(&g.lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&g.changed, &ca);
	install_signals();

	if (create_model(&g))
		return 1;
	ret = run(&g);
	smpl_model_free(g.model);
	return ret;
}
