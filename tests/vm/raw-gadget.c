// SPDX-License-Identifier: MIT
/*
 * smplaser-rawgadget: the unit's firmware model (sim/model.c) behind the
 * kernel's raw-gadget interface (/dev/raw-gadget, CONFIG_USB_RAW_GADGET),
 * for the hostile-device tests of the VM suites' debug kernel
 * (tests/vm/guest/5*-raw-*.sh).
 *
 * FunctionFS builds the descriptors the host sees from the endpoints it
 * really has, so it cannot lie about them.  Here this program answers the
 * host's enumeration itself: it advertises whatever --desc asks for (a
 * missing or extra endpoint, a wrong type or direction, a wMaxPacketSize of
 * 0, 7 or 1023, a second configuration, interface or alternate setting, a
 * bad protocol version) while its real endpoints on dummy_udc stay sane, so
 * the host's driver meets a device that is broken in exactly one way.
 *
 * Behind the descriptors it is the same unit as smplaser-gadget, with the
 * same control socket and commands (sim/gadget-ctl.c): footswitch,
 * interlocks, faults, hostile replies, late/slow/deaf commands, reports
 * normal|silent|garbage|stall, disarm-request normal|stall|hang|ignore,
 * unplug and replug (closing and opening raw-gadget again), status.
 *
 *   smplaser-rawgadget [--socket PATH] [--udc NAME] [--serial S]
 *                      [--desc VARIANT] [--self-test-ms N]
 *                      [--emission-delay-ms N] [--watchdog-ms N] [-v]
 *   smplaser-rawgadget --list      the descriptor variants
 *
 * Threads as in smplaser-gadget: ep0 (enumeration and vendor requests),
 * bulk OUT, bulk IN, interrupt IN, tick; the main thread serves the control
 * socket.  Endpoint ioctls block; SIGUSR1 interrupts them at exit.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <linux/usb/ch9.h>
#include <linux/usb/raw_gadget.h>

#include "codec.h"
#include "gadget.h"

#define TICK_MAX_MS	100
#define IO_RETRY_MS	10
#define EP0_MAX		4096
#define BULK_PACKET	512	/* high speed: dummy_hcd's default */

/* The endpoints dummy_udc really has, and we enable (sane, always). */
#define EP_BULK_IN	0x81	/* "ep1in-bulk" */
#define EP_BULK_OUT	0x02	/* "ep2out-bulk" */
#define EP_INT_IN	0x85	/* "ep5in-int" */

static atomic_bool stopping;
static int raw_fd = -1;
static struct gadget g;
static char udc_name[128] = "dummy_udc.0", udc_driver[128] = "dummy_udc";

/*
 * Unplug: the threads that use raw_fd park (a signal gets them out of
 * their ioctls), then raw_fd is closed, which unbinds the gadget driver
 * from the UDC: the host sees the device go.  Replug opens raw-gadget
 * again.  (The UDC's soft_connect does not do: on 6.1, dummy_udc does not
 * deliver setups after it reconnects.)  Under g.lock.
 */
#define IO_THREADS	4	/* ep0, bulk OUT, bulk IN, interrupt IN */
static bool park_request;
static unsigned int parked;
static bool eps_enabled;
static pthread_t io_threads[IO_THREADS];

/* --- what gadget-ctl.c needs (gadget.h) ----------------------------------- */


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

static void logmsg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logmsg(const char *fmt, ...)
{
	va_list ap;

	if (!g.verbose)
		return;
	fprintf(stderr, "smplaser-rawgadget: [%llu ms] ", (unsigned long long)gadget_now_ms());
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void lock(void)
{
	pthread_mutex_lock(&g.lock);
}

static void unlock(void)
{
	pthread_mutex_unlock(&g.lock);
}

static void wait_changed(uint64_t ms)
{
	struct timespec ts;

	gadget_deadline(&ts, ms);
	pthread_cond_timedwait(&g.changed, &g.lock, &ts);
}

void gadget_note_state(struct gadget *gg)
{
	struct smpl_model_view v;

	smpl_model_view(gg->model, gadget_now_ms(), &v);
	if (v.state != gg->last_state) {
		logmsg("state %s -> %s", smpl_state_name(gg->last_state), smpl_state_name(v.state));
		gg->last_state = v.state;
		gg->state_changed_ns = gadget_now_ns();
	}
	pthread_cond_broadcast(&gg->changed);
}

void gadget_flush_replies(struct gadget *gg)
{
	gg->queue_head = 0;
	gg->queue_count = 0;
	gg->queue_gen++;
	pthread_cond_broadcast(&gg->changed);
}

/* The host is gone: the unit disarms at once (as smplaser-gadget).  Locked. */
static void lose_host(void)
{
	g.enabled = false;
	gadget_flush_replies(&g);
	smpl_model_disarm(g.model, gadget_now_ms());
	g.disconnects++;
	gadget_note_state(&g);
}

static int raw_open_run(void);

/* In a thread's loop, lock held: stay parked while an unplug asks for it. */
static bool park_locked(void)
{
	if (!park_request)
		return false;
	parked++;
	pthread_cond_broadcast(&g.changed);
	while (park_request && !gadget_stopping())
		wait_changed(TICK_MAX_MS);
	parked--;
	return true;
}

/* Unplug and replug, as a cable would (see park_request). */
int gadget_set_plugged(struct gadget *gg, bool plugged)
{
	int ret = 0;

	lock();
	if (plugged == gg->plugged) {
		unlock();
		return 0;
	}
	if (!plugged) {
		lose_host();
		park_request = true;
		while (parked < IO_THREADS && !gadget_stopping()) {
			unlock();
			for (size_t i = 0; i < IO_THREADS; i++)
				pthread_kill(io_threads[i], SIGUSR1);
			usleep(5000);
			lock();
		}
		close(raw_fd);
		raw_fd = -1;
		eps_enabled = false;
		gg->plugged = false;
		unlock();
		logmsg("unplugged");
		return 0;
	}
	ret = raw_open_run();
	if (!ret) {
		gg->plugged = true;
		park_request = false;
		pthread_cond_broadcast(&g.changed);
	}
	unlock();
	logmsg("plugged in: %s", ret ? strerror(-ret) : "ok");
	return ret;
}

int gadget_set_power(struct gadget *gg, bool on)
{
	if (!on) {
		gadget_set_plugged(gg, false);
		lock();
		smpl_model_power_off(gg->model, gadget_now_ms());
		gg->powered = false;
		gadget_note_state(gg);
		unlock();
		return 0;
	}
	lock();
	if (!gg->powered) {
		smpl_model_power_on(gg->model, gadget_now_ms());
		gg->powered = true;
		gadget_note_state(gg);
	}
	unlock();
	return gadget_set_plugged(gg, true);
}

/* --- descriptors ------------------------------------------------------------ */

enum desc_variant {
	DESC_GOOD, DESC_NO_INT, DESC_EXTRA_EP, DESC_INT_OUT, DESC_INT_AS_BULK,
	DESC_BULK_OUT_AS_IN, DESC_INT_MAXP0, DESC_INT_MAXP7, DESC_INT_MAXP1023,
	DESC_BULK_MAXP96, DESC_TWO_CONFIGS, DESC_TWO_INTERFACES, DESC_ALT_SETTING,
	DESC_BAD_VERSION, DESC_SHORT_VERSION,
};

static const struct {
	const char *name;
	const char *what;
} variants[] = {
	[DESC_GOOD] = { "good", "as include/smplaser/proto.h says" },
	[DESC_NO_INT] = { "no-int", "no interrupt endpoint (2 endpoints)" },
	[DESC_EXTRA_EP] = { "extra-ep", "a fourth endpoint (bulk IN)" },
	[DESC_INT_OUT] = { "int-out", "the interrupt endpoint is OUT" },
	[DESC_INT_AS_BULK] = { "int-as-bulk", "the interrupt endpoint is declared bulk" },
	[DESC_BULK_OUT_AS_IN] = { "bulk-out-as-in", "the bulk OUT endpoint is declared IN" },
	[DESC_INT_MAXP0] = { "int-maxp0", "interrupt wMaxPacketSize 0" },
	[DESC_INT_MAXP7] = { "int-maxp7", "interrupt wMaxPacketSize 7" },
	[DESC_INT_MAXP1023] = { "int-maxp1023", "interrupt wMaxPacketSize 1023 (valid)" },
	[DESC_BULK_MAXP96] = { "bulk-maxp96", "bulk wMaxPacketSize 96 (not a power of two)" },
	[DESC_TWO_CONFIGS] = { "two-configs", "a second configuration (no endpoints)" },
	[DESC_TWO_INTERFACES] = { "two-interfaces", "a second interface of the same class" },
	[DESC_ALT_SETTING] = { "alt-setting", "an alternate setting 1 with no endpoints" },
	[DESC_BAD_VERSION] = { "bad-version", "GET_VERSION says protocol 2" },
	[DESC_SHORT_VERSION] = { "short-version", "GET_VERSION answers 2 bytes of 4" },
};

static enum desc_variant variant = DESC_GOOD;
static uint16_t int_maxp = SMPL_MAX_REPORT;	/* what we enable */

static struct usb_device_descriptor device_desc(void)
{
	struct usb_device_descriptor d = {
		.bLength = USB_DT_DEVICE_SIZE,
		.bDescriptorType = USB_DT_DEVICE,
		.bcdUSB = htole16(0x0200),
		.bDeviceClass = 0,
		.bMaxPacketSize0 = 64,
		.idVendor = htole16(SMPL_USB_VID),
		.idProduct = htole16(SMPL_USB_PID),
		.bcdDevice = htole16(0x0100),
		.iManufacturer = 1,
		.iProduct = 2,
		.iSerialNumber = 3,
		.bNumConfigurations = variant == DESC_TWO_CONFIGS ? 2 : 1,
	};
	return d;
}

static size_t put(uint8_t *buf, size_t at, const void *d, size_t len)
{
	memcpy(buf + at, d, len);
	return at + len;
}

static size_t put_intf(uint8_t *buf, size_t at, uint8_t num, uint8_t alt, uint8_t eps)
{
	struct usb_interface_descriptor i = {
		.bLength = USB_DT_INTERFACE_SIZE,
		.bDescriptorType = USB_DT_INTERFACE,
		.bInterfaceNumber = num,
		.bAlternateSetting = alt,
		.bNumEndpoints = eps,
		.bInterfaceClass = USB_CLASS_VENDOR_SPEC,
		.bInterfaceSubClass = SMPL_USB_SUBCLASS,
		.bInterfaceProtocol = SMPL_PROTO_VERSION,
	};
	return put(buf, at, &i, sizeof(i));
}

/* An endpoint descriptor as it goes on the wire (7 bytes). */
struct ep_desc {
	uint8_t bLength;
	uint8_t bDescriptorType;
	uint8_t bEndpointAddress;
	uint8_t bmAttributes;
	uint16_t wMaxPacketSize;
	uint8_t bInterval;
} __attribute__((packed));

static size_t put_ep(uint8_t *buf, size_t at, uint8_t addr, uint8_t type, uint16_t maxp,
		     uint8_t interval)
{
	struct ep_desc e = {
		.bLength = USB_DT_ENDPOINT_SIZE,
		.bDescriptorType = USB_DT_ENDPOINT,
		.bEndpointAddress = addr,
		.bmAttributes = type,
		.wMaxPacketSize = htole16(maxp),
		.bInterval = interval,
	};
	return put(buf, at, &e, sizeof(e));
}

/* Configuration @index as --desc advertises it; its length. */
static size_t config_desc(uint8_t index, uint8_t *buf)
{
	struct usb_config_descriptor c = {
		.bLength = USB_DT_CONFIG_SIZE,
		.bDescriptorType = USB_DT_CONFIG,
		.bNumInterfaces = variant == DESC_TWO_INTERFACES ? 2 : 1,
		.bConfigurationValue = (uint8_t)(index + 1),
		.bmAttributes = USB_CONFIG_ATT_ONE,
		.bMaxPower = 50,
	};
	uint16_t bulk_in = variant == DESC_BULK_MAXP96 ? 96 : BULK_PACKET;
	uint16_t imaxp = SMPL_MAX_REPORT;
	uint8_t int_addr = EP_INT_IN, int_type = USB_ENDPOINT_XFER_INT;
	uint8_t out_addr = EP_BULK_OUT;
	uint8_t eps = 3;
	size_t n = sizeof(c);

	if (index == 1) {		/* DESC_TWO_CONFIGS: an empty one */
		c.bNumInterfaces = 1;
		n = put_intf(buf, n, 0, 0, 0);
		goto done;
	}
	switch (variant) {
	case DESC_NO_INT: eps = 2; break;
	case DESC_EXTRA_EP: eps = 4; break;
	case DESC_INT_OUT: int_addr = EP_INT_IN & 0x0f; break;
	case DESC_INT_AS_BULK: int_type = USB_ENDPOINT_XFER_BULK; imaxp = BULK_PACKET; break;
	case DESC_BULK_OUT_AS_IN: out_addr = EP_BULK_OUT | USB_DIR_IN; break;
	case DESC_INT_MAXP0: imaxp = 0; break;
	case DESC_INT_MAXP7: imaxp = 7; break;
	case DESC_INT_MAXP1023: imaxp = 1023; break;
	default: break;
	}
	n = put_intf(buf, n, 0, 0, eps);
	n = put_ep(buf, n, out_addr, USB_ENDPOINT_XFER_BULK, BULK_PACKET, 0);
	n = put_ep(buf, n, EP_BULK_IN, USB_ENDPOINT_XFER_BULK, bulk_in, 0);
	if (eps >= 3)
		n = put_ep(buf, n, int_addr, int_type, imaxp, 4);
	if (eps >= 4)
		n = put_ep(buf, n, 0x86, USB_ENDPOINT_XFER_BULK, BULK_PACKET, 0);
	if (variant == DESC_ALT_SETTING)
		n = put_intf(buf, n, 0, 1, 0);
	if (variant == DESC_TWO_INTERFACES) {
		n = put_intf(buf, n, 1, 0, 3);
		n = put_ep(buf, n, 0x07, USB_ENDPOINT_XFER_BULK, BULK_PACKET, 0);
		n = put_ep(buf, n, 0x86, USB_ENDPOINT_XFER_BULK, BULK_PACKET, 0);
		n = put_ep(buf, n, 0x8a, USB_ENDPOINT_XFER_INT, SMPL_MAX_REPORT, 4);
	}
done:
	c.wTotalLength = htole16((uint16_t)n);
	memcpy(buf, &c, sizeof(c));
	return n;
}

/* String @index as a descriptor (UTF-16LE from ASCII). */
static size_t string_desc(uint8_t index, uint8_t *buf)
{
	const char *s;
	size_t n;

	if (index == 0) {
		buf[0] = 4;
		buf[1] = USB_DT_STRING;
		buf[2] = 0x09;
		buf[3] = 0x04;
		return 4;
	}
	s = index == 1 ? "smplaser project" : index == 2 ? "smplaser (raw gadget)" :
	    index == 3 ? g.cfg.serial : NULL;
	if (!s)
		return 0;
	n = 0;
	for (; *s && n < 60; s++, n++) {
		buf[2 + 2 * n] = (uint8_t)(*s & 0x7f);
		buf[3 + 2 * n] = 0;
	}
	buf[0] = (uint8_t)(2 + 2 * n);
	buf[1] = USB_DT_STRING;
	return 2 + 2 * n;
}

/* --- raw-gadget I/O ------------------------------------------------------------ */

struct io_buf {
	struct usb_raw_ep_io io;
	uint8_t data[EP0_MAX];
};

static void ep0_stall(void)
{
	if (ioctl(raw_fd, USB_RAW_IOCTL_EP0_STALL, 0) < 0)
		logmsg("ep0 stall: %s", strerror(errno));
}

/*
 * raw-gadget refuses every later setup while one is pending; a data or
 * status stage that could not be queued (the host went away meanwhile)
 * leaves it pending: stalling it clears that.
 */
static int ep0_io(unsigned long req, struct io_buf *b)
{
	int ret = ioctl(raw_fd, req, b);

	if (ret < 0 && errno != EINTR) {
		logmsg("ep0 %s: %s", req == USB_RAW_IOCTL_EP0_WRITE ? "write" : "read",
		       strerror(errno));
		ep0_stall();
	}
	return ret;
}

static int ep0_write(const void *data, size_t len)
{
	struct io_buf b = { .io = { .ep = 0, .length = (uint32_t)len } };

	memcpy(b.data, data, len);
	return ep0_io(USB_RAW_IOCTL_EP0_WRITE, &b);
}

/* The status stage of an OUT request with no data: a read of 0 bytes. */
static int ep0_ack(void)
{
	struct io_buf b = { .io = { .ep = 0, .length = 0 } };

	return ep0_io(USB_RAW_IOCTL_EP0_READ, &b);
}

static int ep_handle_out = -1, ep_handle_in = -1, ep_handle_int = -1;

static int enable_ep(uint8_t addr, uint8_t type, uint16_t maxp)
{
	struct usb_endpoint_descriptor e = {
		.bLength = USB_DT_ENDPOINT_SIZE,
		.bDescriptorType = USB_DT_ENDPOINT,
		.bEndpointAddress = addr,
		.bmAttributes = type,
		.wMaxPacketSize = htole16(maxp),
		.bInterval = 4,
	};
	int h = ioctl(raw_fd, USB_RAW_IOCTL_EP_ENABLE, &e);

	if (h < 0)
		fprintf(stderr, "smplaser-rawgadget: enable endpoint 0x%02x: %s\n", addr,
			strerror(errno));
	return h;
}

/* SET_CONFIGURATION: our real endpoints, once; then configured. */
static void set_configuration(uint16_t value)
{
	uint32_t power = 100;

	if (value && !eps_enabled) {
		ep_handle_out = enable_ep(EP_BULK_OUT, USB_ENDPOINT_XFER_BULK, BULK_PACKET);
		ep_handle_in = enable_ep(EP_BULK_IN, USB_ENDPOINT_XFER_BULK, BULK_PACKET);
		ep_handle_int = enable_ep(EP_INT_IN, USB_ENDPOINT_XFER_INT, int_maxp);
		eps_enabled = true;
	}
	if (value) {
		ioctl(raw_fd, USB_RAW_IOCTL_VBUS_DRAW, power);
		ioctl(raw_fd, USB_RAW_IOCTL_CONFIGURE, 0);
	}
	lock();
	if (value)
		g.enabled = true;
	else
		lose_host();
	unlock();
	ep0_ack();
}

static void get_descriptor(const struct usb_ctrlrequest *s)
{
	uint8_t type = (uint8_t)(le16toh(s->wValue) >> 8);
	uint8_t index = (uint8_t)(le16toh(s->wValue) & 0xff);
	uint16_t length = le16toh(s->wLength);
	uint8_t buf[EP0_MAX];
	size_t n = 0;

	switch (type) {
	case USB_DT_DEVICE: {
		struct usb_device_descriptor d = device_desc();

		n = sizeof(d);
		memcpy(buf, &d, n);
		break;
	}
	case USB_DT_DEVICE_QUALIFIER: {
		struct usb_qualifier_descriptor q = {
			.bLength = sizeof(q),
			.bDescriptorType = USB_DT_DEVICE_QUALIFIER,
			.bcdUSB = htole16(0x0200),
			.bMaxPacketSize0 = 64,
			.bNumConfigurations = 1,
		};

		n = sizeof(q);
		memcpy(buf, &q, n);
		break;
	}
	case USB_DT_CONFIG:
		if (index < (variant == DESC_TWO_CONFIGS ? 2 : 1))
			n = config_desc(index, buf);
		break;
	case USB_DT_STRING:
		n = string_desc(index, buf);
		break;
	default:
		break;
	}
	if (!n) {
		ep0_stall();
		return;
	}
	if (n > length)
		n = length;
	if (ep0_write(buf, n) < 0)
		logmsg("descriptor 0x%02x: %s", type, strerror(errno));
}

static void vendor_request(const struct usb_ctrlrequest *s)
{
	bool dir_in = s->bRequestType & USB_DIR_IN;
	uint16_t index = le16toh(s->wIndex);
	uint16_t length = le16toh(s->wLength);

	lock();
	g.setups++;
	unlock();
	if (index != 0) {		/* only interface 0 is a unit */
		ep0_stall();
		return;
	}
	if (dir_in && s->bRequest == SMPL_REQ_GET_VERSION && length > 0) {
		struct smpl_version v = {
			.proto_version = variant == DESC_BAD_VERSION ? 2 : SMPL_PROTO_VERSION,
			.fw_major = g.cfg.fw_major, .fw_minor = g.cfg.fw_minor,
			.fw_patch = g.cfg.fw_patch,
		};
		size_t n = variant == DESC_SHORT_VERSION ? 2 : sizeof(v);

		if (n > length)
			n = length;
		if (ep0_write(&v, n) < 0)
			logmsg("GET_VERSION: %s", strerror(errno));
		return;
	}
	if (!dir_in && s->bRequest == SMPL_REQ_DISARM && length == 0) {
		enum gadget_disarm_request mode;

		lock();
		g.disarm_requests++;
		mode = g.disarm_mode;
		if (mode == GADGET_DISARM_NORMAL) {
			smpl_model_disarm(g.model, gadget_now_ms());
			g.disarms++;
			gadget_note_state(&g);
		}
		unlock();
		if (mode == GADGET_DISARM_HANG) {
			/*
			 * No status stage.  raw-gadget refuses every later
			 * setup while this one is pending (the host sees them
			 * stall), as a unit with a wedged ep0 would; once
			 * told otherwise, stall it to free ep0.
			 */
			lock();
			while (g.disarm_mode == GADGET_DISARM_HANG && !park_request &&
			       !gadget_stopping())
				wait_changed(TICK_MAX_MS);
			unlock();
		}
		if (mode == GADGET_DISARM_NORMAL || mode == GADGET_DISARM_IGNORE)
			ep0_ack();
		else
			ep0_stall();
		return;
	}
	ep0_stall();
}

static void control(const struct usb_ctrlrequest *s)
{
	logmsg("setup type 0x%02x req 0x%02x value 0x%04x index %u length %u",
	       s->bRequestType, s->bRequest, le16toh(s->wValue), le16toh(s->wIndex),
	       le16toh(s->wLength));
	if ((s->bRequestType & USB_TYPE_MASK) == USB_TYPE_VENDOR) {
		vendor_request(s);
		return;
	}
	if ((s->bRequestType & USB_TYPE_MASK) != USB_TYPE_STANDARD) {
		ep0_stall();
		return;
	}
	switch (s->bRequest) {
	case USB_REQ_GET_DESCRIPTOR:
		get_descriptor(s);
		break;
	case USB_REQ_SET_CONFIGURATION:
		set_configuration(le16toh(s->wValue));
		break;
	case USB_REQ_SET_INTERFACE:
		ep0_ack();
		break;
	case USB_REQ_GET_CONFIGURATION: {
		uint8_t one = 1;

		ep0_write(&one, 1);
		break;
	}
	case USB_REQ_GET_INTERFACE: {
		uint8_t zero = 0;

		ep0_write(&zero, 1);
		break;
	}
	default:
		ep0_stall();
		break;
	}
}

static void *ep0_thread(void *arg)
{
	struct {
		struct usb_raw_event ev;
		uint8_t data[sizeof(struct usb_ctrlrequest)];
	} e;

	(void)arg;
	while (!gadget_stopping()) {
		lock();
		park_locked();
		unlock();
		e.ev.type = 0;
		e.ev.length = sizeof(e.data);
		if (ioctl(raw_fd, USB_RAW_IOCTL_EVENT_FETCH, &e) < 0) {
			if (errno != EINTR)
				usleep(IO_RETRY_MS * 1000);
			continue;
		}
		if (e.ev.type == USB_RAW_EVENT_CONNECT) {
			logmsg("connect");
			continue;
		}
		if (e.ev.type == USB_RAW_EVENT_CONTROL && e.ev.length >= sizeof(e.data))
			control((const struct usb_ctrlrequest *)e.data);
	}
	return NULL;
}

/* --- endpoints: the same unit as smplaser-gadget ------------------------------ */

static int ep_io(unsigned long req, int handle, void *data, size_t len)
{
	struct io_buf b = { .io = { .ep = (uint16_t)handle, .length = (uint32_t)len } };
	int ret;

	if (req == USB_RAW_IOCTL_EP_WRITE)
		memcpy(b.data, data, len);
	ret = ioctl(raw_fd, req, &b);
	if (ret > 0 && req == USB_RAW_IOCTL_EP_READ)
		memcpy(data, b.data, (size_t)ret);
	return ret;
}

static bool ready_for_io(void)
{
	bool ok;

	lock();
	if (park_locked()) {
		unlock();
		return false;
	}
	ok = g.enabled && eps_enabled;
	if (!ok)
		wait_changed(TICK_MAX_MS);
	unlock();
	return ok;
}

static void *bulk_out_thread(void *arg)
{
	uint8_t cmd[BULK_PACKET];

	(void)arg;
	while (!gadget_stopping()) {
		struct gadget_reply *r;
		uint64_t came_ms;
		int n, len;

		if (!ready_for_io())
			continue;
		n = ep_io(USB_RAW_IOCTL_EP_READ, ep_handle_out, cmd, sizeof(cmd));
		came_ms = gadget_now_ms();
		if (n < 0) {
			if (errno != EINTR)
				usleep(IO_RETRY_MS * 1000);
			continue;
		}
		lock();
		if (g.deaf_count) {
			g.deaf_count--;
			g.commands_dropped++;
			unlock();
			continue;
		}
		if (g.slow_count) {
			uint64_t until = came_ms + g.slow_ms;

			g.slow_count--;
			while (gadget_now_ms() < until && !gadget_stopping())
				wait_changed(until - gadget_now_ms());
		}
		while (g.queue_count == GADGET_QUEUE_LEN && !gadget_stopping())
			wait_changed(TICK_MAX_MS);
		r = &g.queue[(g.queue_head + g.queue_count) % GADGET_QUEUE_LEN];
		len = smpl_model_handle_frame(g.model, gadget_now_ms(), cmd, (size_t)n, r->buf,
					      sizeof(r->buf));
		g.commands++;
		if (len != 0) {
			r->len = len;
			r->send_at_ms = 0;
			if (g.late_count) {
				g.late_count--;
				r->send_at_ms = came_ms + g.late_ms;
			}
			g.queue_count++;
		}
		gadget_note_state(&g);
		unlock();
	}
	return NULL;
}

static void *bulk_in_thread(void *arg)
{
	struct gadget_reply r;
	unsigned int gen;

	(void)arg;
	lock();
	while (!gadget_stopping()) {
		uint64_t now = gadget_now_ms();
		int ret;

		if (park_locked())
			continue;
		if (g.queue_count == 0 || !g.enabled) {
			wait_changed(TICK_MAX_MS);
			continue;
		}
		if (g.queue[g.queue_head].send_at_ms > now) {
			wait_changed(g.queue[g.queue_head].send_at_ms - now);
			continue;
		}
		r = g.queue[g.queue_head];
		gen = g.queue_gen;
		unlock();
		if (r.len < 0) {
			uint32_t h = (uint32_t)ep_handle_in;

			ret = ioctl(raw_fd, USB_RAW_IOCTL_EP_SET_HALT, h);
		} else {
			ret = ep_io(USB_RAW_IOCTL_EP_WRITE, ep_handle_in, r.buf, (size_t)r.len);
		}
		lock();
		if (ret < 0 && errno == EINTR)
			continue;
		if (ret >= 0) {
			if (r.len < 0)
				g.stalls++;
			else
				g.replies++;
		}
		if (g.queue_gen == gen && g.queue_count > 0) {
			g.queue_head = (g.queue_head + 1) % GADGET_QUEUE_LEN;
			g.queue_count--;
			pthread_cond_broadcast(&g.changed);
		}
	}
	unlock();
	return NULL;
}

static void *int_in_thread(void *arg)
{
	uint8_t buf[SMPL_MAX_REPORT];

	(void)arg;
	lock();
	while (!gadget_stopping()) {
		uint64_t now = gadget_now_ms();
		enum gadget_reports mode = g.reports_mode;
		uint64_t wait;
		int n = 0;

		if (park_locked())
			continue;
		if (g.enabled && eps_enabled && mode == GADGET_REPORTS_STALL) {
			uint32_t h = (uint32_t)ep_handle_int;

			g.reports_mode = GADGET_REPORTS_NORMAL;
			unlock();
			ioctl(raw_fd, USB_RAW_IOCTL_EP_SET_HALT, h);
			lock();
			continue;
		}
		if (g.enabled && eps_enabled && g.powered) {
			smpl_model_advance(g.model, now);
			n = smpl_model_next_report(g.model, now, buf, sizeof(buf));
			/* Silent: the reports are lost, not kept for later. */
			while (n > 0 && mode == GADGET_REPORTS_SILENT)
				n = smpl_model_next_report(g.model, now, buf, sizeof(buf));
		}
		if (n > 0) {
			if (mode == GADGET_REPORTS_GARBAGE)
				buf[12] ^= 0xff;
			gadget_note_state(&g);
			g.report_in_flight = true;
			unlock();
			if (ep_io(USB_RAW_IOCTL_EP_WRITE, ep_handle_int, buf, (size_t)n) < 0 &&
			    errno != EINTR)
				usleep(IO_RETRY_MS * 1000);
			lock();
			g.report_in_flight = false;
			g.reports++;
			pthread_cond_broadcast(&g.changed);
			continue;
		}
		wait = smpl_model_next_deadline(g.model, now);
		if (wait > SMPL_STATUS_PERIOD_MS)
			wait = SMPL_STATUS_PERIOD_MS;
		wait_changed(wait ? wait : 1);
	}
	unlock();
	return NULL;
}

static void *tick_thread(void *arg)
{
	(void)arg;
	lock();
	while (!gadget_stopping()) {
		uint64_t wait;

		smpl_model_advance(g.model, gadget_now_ms());
		gadget_note_state(&g);
		wait = smpl_model_next_deadline(g.model, gadget_now_ms());
		if (wait > TICK_MAX_MS)
			wait = TICK_MAX_MS;
		wait_changed(wait ? wait : 1);
	}
	unlock();
	return NULL;
}

/* --- main ---------------------------------------------------------------------- */

/* Open raw-gadget and bind to the UDC; 0 or -errno.  Under g.lock or alone. */
static int raw_open_run(void)
{
	struct usb_raw_init init = { .speed = USB_SPEED_HIGH };
	int fd = open("/dev/raw-gadget", O_RDWR | O_CLOEXEC), ret;

	if (fd < 0) {
		ret = -errno;
		fprintf(stderr, "smplaser-rawgadget: /dev/raw-gadget: %s\n", strerror(errno));
		return ret;
	}
	snprintf((char *)init.driver_name, sizeof(init.driver_name), "%s", udc_driver);
	snprintf((char *)init.device_name, sizeof(init.device_name), "%s", udc_name);
	if (ioctl(fd, USB_RAW_IOCTL_INIT, &init) < 0 || ioctl(fd, USB_RAW_IOCTL_RUN, 0) < 0) {
		ret = -errno;
		fprintf(stderr, "smplaser-rawgadget: init/run on %s: %s\n", udc_name,
			strerror(errno));
		close(fd);
		return ret;
	}
	raw_fd = fd;
	return 0;
}

static void on_signal(int sig)
{
	if (sig != SIGUSR1)
		gadget_request_stop();
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: smplaser-rawgadget [--socket PATH] [--udc NAME] [--driver NAME]\n"
		"                          [--serial S] [--desc VARIANT] [--self-test-ms N]\n"
		"                          [--emission-delay-ms N] [--watchdog-ms N] [-v]\n"
		"       smplaser-rawgadget --list\n"
		"Control commands: as smplaser-gadget (smplaser-gadget --ctl SOCKET ...).\n");
}

static int parse(int argc, char **argv, char *udc, size_t udc_size, char *driver,
		 size_t driver_size)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "udc", required_argument, NULL, 'u' },
		{ "driver", required_argument, NULL, 'd' },
		{ "serial", required_argument, NULL, 'S' },
		{ "desc", required_argument, NULL, 'D' },
		{ "self-test-ms", required_argument, NULL, 'T' },
		{ "emission-delay-ms", required_argument, NULL, 'E' },
		{ "watchdog-ms", required_argument, NULL, 'W' },
		{ "list", no_argument, NULL, 'l' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "v", opts, NULL)) != -1) {
		switch (c) {
		case 's': g.socket_path = optarg; break;
		case 'u': snprintf(udc, udc_size, "%s", optarg); break;
		case 'd': snprintf(driver, driver_size, "%s", optarg); break;
		case 'S': snprintf(g.cfg.serial, sizeof(g.cfg.serial), "%s", optarg); break;
		case 'T': g.cfg.self_test_ms = (uint32_t)strtoul(optarg, NULL, 0); break;
		case 'E': g.cfg.emission_delay_ms = (uint32_t)strtoul(optarg, NULL, 0); break;
		case 'W': g.cfg.watchdog_ms = (uint32_t)strtoul(optarg, NULL, 0); break;
		case 'v': g.verbose = true; break;
		case 'l':
			for (size_t i = 0; i < sizeof(variants) / sizeof(variants[0]); i++)
				printf("%-16s %s\n", variants[i].name, variants[i].what);
			exit(0);
		case 'D': {
			size_t i;

			for (i = 0; i < sizeof(variants) / sizeof(variants[0]); i++)
				if (!strcmp(optarg, variants[i].name))
					break;
			if (i == sizeof(variants) / sizeof(variants[0])) {
				fprintf(stderr, "smplaser-rawgadget: unknown --desc %s (--list)\n",
					optarg);
				return -1;
			}
			variant = (enum desc_variant)i;
			break;
		}
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); return -1;
		}
	}
	return optind == argc ? 0 : -1;
}

int main(int argc, char **argv)
{
	void *(*const bodies[])(void *) = {
		ep0_thread, bulk_out_thread, bulk_in_thread, int_in_thread, tick_thread,
	};
	pthread_t threads[sizeof(bodies) / sizeof(bodies[0])];
	struct sigaction sa = { .sa_handler = on_signal };
	pthread_condattr_t ca;
	sigset_t block, old;
	struct smpl_model_nv nv = { 0 };
	int listen_fd;

	if (argc >= 2 && strcmp(argv[1], "--ctl") == 0)
		return argc < 4 ? 2 : gadget_ctl_client(argv[2], argc - 3, argv + 3);
	g.socket_path = "/run/smplaser-gadget.sock";
	smpl_model_default_config(&g.cfg);
	if (parse(argc, argv, udc_name, sizeof(udc_name), udc_driver, sizeof(udc_driver)))
		return 2;
	if (variant == DESC_INT_MAXP1023)
		int_maxp = 1023;

	pthread_mutex_init(&g.lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&g.changed, &ca);
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	g.model = smpl_model_new(&g.cfg, &nv, gadget_now_ms(), (int64_t)time(NULL));
	if (!g.model)
		return 1;
	smpl_model_power_on(g.model, gadget_now_ms());
	g.powered = true;
	g.plugged = true;

	if (raw_open_run())
		return 1;

	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++)
		pthread_create(&threads[i], NULL, bodies[i], NULL);
	for (size_t i = 0; i < IO_THREADS; i++)
		io_threads[i] = threads[i];
	pthread_sigmask(SIG_SETMASK, &old, NULL);

	listen_fd = gadget_ctl_listen(g.socket_path);
	if (listen_fd >= 0) {
		fprintf(stderr, "smplaser-rawgadget: unit %s (%s) on %s, control socket %s\n",
			g.cfg.serial, variants[variant].name, udc_name, g.socket_path);
		gadget_ctl_serve(&g, listen_fd);
		close(listen_fd);
		unlink(g.socket_path);
	}
	gadget_request_stop();
	lock();
	pthread_cond_broadcast(&g.changed);
	unlock();
	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		while (pthread_tryjoin_np(threads[i], NULL) == EBUSY) {
			pthread_kill(threads[i], SIGUSR1);
			usleep(5000);
		}
	}
	if (raw_fd >= 0)
		close(raw_fd);
	smpl_model_free(g.model);
	return listen_fd >= 0 ? 0 : 1;
}
