/* SPDX-License-Identifier: MIT */
/*
 * The "libusb" backend: one unit through usbfs, without the kernel module.
 *
 *   device      the node /dev/bus/usb/BBB/DDD that discovery found, opened
 *               here and handed to libusb_wrap_sys_device(): no libusb
 *               device enumeration or hotplug thread (none works without
 *               udevd; discovery already does that job)
 *   interface   the vendor interface is claimed; its three endpoints are
 *               taken from the descriptors and checked
 *   reports     one interrupt IN transfer, always resubmitted; each report
 *               is decoded and validated with the codec, then queued and
 *               delivered from the loop through an eventfd (never from
 *               inside a command; the report may arrive in any thread that
 *               runs libusb's event handling)
 *   commands    asynchronous bulk OUT + bulk IN transfers; the call waits
 *               for both by running libusb's event handling, bounded by the
 *               transfers' timeouts, as the backend interface is synchronous
 *   event loop  libusb's fds (usbfs, its timerfd) are sd-event io sources,
 *               kept in step with libusb_set_pollfd_notifiers()
 *   heartbeat   a HEARTBEAT frame every quarter of the unit's watchdog_ms
 *               from this backend's own timer (and when the daemon asks)
 *   threads     the daemon calls commands from the unit's workers (unit.c);
 *               one command at a time is on the wire (io_lock: a reply is
 *               only ever its own command's); the timer's HEARTBEAT runs on
 *               this backend's worker ("bg"), never on the loop
 *
 * S4 with this backend: nothing in the kernel disarms the unit when the
 * daemon dies (there is no smplaser driver to see the fd close).  A clean
 * close sends DISARM; after a crash it falls to the unit's own watchdog,
 * which disarms after watchdog_ms without a HEARTBEAT.  The Backend
 * property says "libusb" so clients can tell.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <libusb.h>

#include "backend.h"
#include "backend-libusb.h"
#include "discovery.h"
#include "log.h"
#include "worker.h"

#define CMD_TIMEOUT_MS		500	/* each bulk stage, as the kernel module */
#define CTRL_TIMEOUT_MS		200
#define REPLY_BUF		(SMPL_MAX_FRAME + 64)	/* room to see an oversize reply */
#define QUEUE_MAX		512
#define STALE_REPLIES_MAX	4
#define INT_ERRORS_MAX		8
#define DEFAULT_WATCHDOG_MS	1500

struct watched_fd {
	struct watched_fd *next;
	int fd;
	sd_event_source *src;
};

struct libusb_unit {
	char *devnode;
	int fd;
	libusb_context *ctx;
	libusb_device_handle *h;
	int ifnum;
	uint8_t ep_out, ep_in, ep_int;
	bool claimed;
	struct watched_fd *fds;

	struct libusb_transfer *int_xfer;
	uint8_t int_buf[SMPL_MAX_REPORT];
	bool int_busy;
	int int_errors;

	pthread_mutex_t lock;		/* the queue and the flags below: any thread */
	struct smpl_backend_event queue[QUEUE_MAX];
	unsigned int q_head, q_len;
	int deliver_fd;			/* an eventfd: the loop delivers the queue */
	sd_event_source *deliver;

	sd_event_source *heartbeat;
	uint32_t heartbeat_period_ms;
	_Atomic uint64_t last_heartbeat_ms;
	struct smpl_worker *bg;		/* the timer's HEARTBEAT */
	struct smpl_job hb_job;
	struct smpl_backend *self;
	bool hb_inflight;

	pthread_mutex_t io_lock;	/* one command on the wire at a time */
	uint16_t seq;
	bool gone;
	bool disconnect_queued;
	bool have_status;
	struct smpl_status_n last_status;	/* the last one delivered ... */
	uint64_t last_status_ms;		/* ... and when */
};

static struct libusb_unit *lu_of(struct smpl_backend *b)
{
	return b->priv;
}

static const char *label(struct smpl_backend *b)
{
	return lu_of(b)->devnode;
}

/* --- events to the daemon: queued, delivered from the loop ------------------------ */

/* From any thread, @u->lock held. */
static void enqueue_locked(struct smpl_backend *b, const struct smpl_backend_event *ev)
{
	struct libusb_unit *u = lu_of(b);
	uint64_t one = 1;

	if (u->q_len == QUEUE_MAX) {
		/* Cannot happen at report rates; the shot counter keeps the truth. */
		smpl_log(LOG_ERR, label(b), NULL, "libusb-queue", "event queue full, event dropped");
		return;
	}
	u->queue[(u->q_head + u->q_len) % QUEUE_MAX] = *ev;
	u->q_len++;
	if (u->deliver_fd >= 0 && write(u->deliver_fd, &one, sizeof(one)) < 0)
		smpl_log(LOG_ERR, label(b), NULL, "libusb-queue", "cannot wake the loop: %m");
}

static void enqueue(struct smpl_backend *b, const struct smpl_backend_event *ev)
{
	struct libusb_unit *u = lu_of(b);

	pthread_mutex_lock(&u->lock);
	enqueue_locked(b, ev);
	pthread_mutex_unlock(&u->lock);
}

static void queue_disconnect(struct smpl_backend *b)
{
	struct libusb_unit *u = lu_of(b);
	struct smpl_backend_event ev = { .type = SMPL_BEV_DISCONNECT };

	pthread_mutex_lock(&u->lock);
	u->gone = true;
	if (!u->disconnect_queued) {
		u->disconnect_queued = true;
		enqueue_locked(b, &ev);
	}
	pthread_mutex_unlock(&u->lock);
}

static bool dequeue(struct libusb_unit *u, struct smpl_backend_event *ev)
{
	bool got;

	pthread_mutex_lock(&u->lock);
	got = u->q_len > 0;
	if (got) {
		*ev = u->queue[u->q_head];
		u->q_head = (u->q_head + 1) % QUEUE_MAX;
		u->q_len--;
	}
	pthread_mutex_unlock(&u->lock);
	return got;
}

static int on_deliver(sd_event_source *src, int fd, uint32_t revents, void *userdata)
{
	struct smpl_backend *b = userdata;
	struct smpl_backend_event ev;
	uint64_t n;

	(void)src, (void)revents;
	if (read(fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		return 0;
	while (dequeue(lu_of(b), &ev))
		smpl_backend_emit(b, &ev);	/* outside the lock: it may call us */
	return 0;
}

/* One interrupt report: validated by the codec, then queued. */
static void handle_report(struct smpl_backend *b, const uint8_t *buf, size_t n)
{
	struct libusb_unit *u = lu_of(b);
	struct smpl_backend_event ev = { 0 };
	struct smpl_frame f;

	if (smpl_decode(buf, n, &f) < 0)
		return;		/* hostile or broken: dropped, as the kernel does */
	if (f.op == SMPL_OP_STATUS) {
		ev.type = SMPL_BEV_STATUS;
		if (smpl_status_decode((const struct smpl_status_report *)f.payload,
				       &ev.status) < 0)
			return;
		if (u->have_status &&
		    !smpl_status_is_news(&ev.status, &u->last_status,
					 smpl_backend_now_ms() - u->last_status_ms))
			return;
		u->last_status = ev.status;
		u->last_status_ms = smpl_backend_now_ms();
		u->have_status = true;
		enqueue(b, &ev);
	} else if (f.op == SMPL_OP_PULSE) {
		ev.type = SMPL_BEV_PULSE;
		if (smpl_pulse_decode((const struct smpl_pulse_report *)f.payload,
				      &ev.pulse) < 0)
			return;
		enqueue(b, &ev);
	}
}

static void LIBUSB_CALL on_interrupt(struct libusb_transfer *xfer)
{
	struct smpl_backend *b = xfer->user_data;
	struct libusb_unit *u = lu_of(b);

	u->int_busy = false;
	switch (xfer->status) {
	case LIBUSB_TRANSFER_COMPLETED:
		u->int_errors = 0;
		handle_report(b, xfer->buffer, (size_t)xfer->actual_length);
		break;
	case LIBUSB_TRANSFER_CANCELLED:
		return;
	case LIBUSB_TRANSFER_NO_DEVICE:
		queue_disconnect(b);
		return;
	case LIBUSB_TRANSFER_STALL:
		(void)libusb_clear_halt(u->h, u->ep_int);
		/* fall through */
	default:
		if (++u->int_errors > INT_ERRORS_MAX) {
			smpl_log(LOG_ERR, label(b), NULL, "libusb-interrupt",
				 "status reports keep failing (%d): treating the unit as gone",
				 xfer->status);
			queue_disconnect(b);
			return;
		}
		break;
	}
	if (u->gone)
		return;
	if (libusb_submit_transfer(xfer) == 0)
		u->int_busy = true;
	else
		queue_disconnect(b);
}

/* --- libusb's fds in sd-event ------------------------------------------------------- */

static void run_libusb_events(struct libusb_unit *u)
{
	struct timeval zero = { 0, 0 };

	(void)libusb_handle_events_timeout_completed(u->ctx, &zero, NULL);
}

static int on_usb_fd(sd_event_source *src, int fd, uint32_t revents, void *userdata)
{
	struct smpl_backend *b = userdata;

	(void)src;
	(void)fd;
	(void)revents;
	run_libusb_events(lu_of(b));
	return 0;
}

static uint32_t epoll_events_of(short events)
{
	uint32_t e = 0;

	if (events & POLLIN)
		e |= EPOLLIN;
	if (events & POLLOUT)
		e |= EPOLLOUT;
	return e;
}

static void LIBUSB_CALL fd_added(int fd, short events, void *userdata)
{
	struct smpl_backend *b = userdata;
	struct libusb_unit *u = lu_of(b);
	struct watched_fd *w = calloc(1, sizeof(*w));

	if (!w || sd_event_add_io(b->event, &w->src, fd, epoll_events_of(events),
				  on_usb_fd, b) < 0) {
		smpl_log(LOG_ERR, label(b), NULL, "libusb-poll", "cannot watch libusb fd %d", fd);
		free(w);
		return;
	}
	w->fd = fd;
	w->next = u->fds;
	u->fds = w;
}

static void LIBUSB_CALL fd_removed(int fd, void *userdata)
{
	struct smpl_backend *b = userdata;
	struct libusb_unit *u = lu_of(b);

	for (struct watched_fd **pp = &u->fds; *pp; pp = &(*pp)->next) {
		struct watched_fd *w = *pp;

		if (w->fd == fd) {
			*pp = w->next;
			sd_event_source_disable_unref(w->src);
			free(w);
			return;
		}
	}
}

static int watch_libusb_fds(struct smpl_backend *b)
{
	struct libusb_unit *u = lu_of(b);
	const struct libusb_pollfd **fds;

	libusb_set_pollfd_notifiers(u->ctx, fd_added, fd_removed, b);
	fds = libusb_get_pollfds(u->ctx);
	if (!fds)
		return -ENOMEM;
	for (size_t i = 0; fds[i]; i++)
		fd_added(fds[i]->fd, fds[i]->events, b);
	libusb_free_pollfds(fds);
	return 0;
}

static void unwatch_libusb_fds(struct smpl_backend *b)
{
	struct libusb_unit *u = lu_of(b);

	if (u->ctx)
		libusb_set_pollfd_notifiers(u->ctx, NULL, NULL, NULL);
	while (u->fds)
		fd_removed(u->fds->fd, b);
}

/* --- commands: asynchronous bulk transfers, waited for ------------------------------- */

struct wait {
	int done;
	enum libusb_transfer_status status;
	int actual;
};

static void LIBUSB_CALL on_bulk_done(struct libusb_transfer *xfer)
{
	struct wait *w = xfer->user_data;

	w->status = xfer->status;
	w->actual = xfer->actual_length;
	w->done = 1;
}

static int errno_of(enum libusb_transfer_status st)
{
	switch (st) {
	case LIBUSB_TRANSFER_COMPLETED:
		return 0;
	case LIBUSB_TRANSFER_TIMED_OUT:
		return -ETIMEDOUT;
	case LIBUSB_TRANSFER_NO_DEVICE:
		return -ENODEV;
	case LIBUSB_TRANSFER_STALL:
		return -EPIPE;
	case LIBUSB_TRANSFER_OVERFLOW:
		return -EPROTO;
	default:
		return -EIO;
	}
}

/* Runs libusb until @w is done (the transfer's own timeout bounds it). */
static void wait_done(struct libusb_unit *u, struct wait *w)
{
	struct timeval tv = { 0, 100 * 1000 };

	while (!w->done)
		(void)libusb_handle_events_timeout_completed(u->ctx, &tv, &w->done);
}

/* One bulk transfer on @ep, waited for.  Returns bytes moved or -errno. */
static int bulk(struct smpl_backend *b, uint8_t ep, uint8_t *buf, int len)
{
	struct libusb_unit *u = lu_of(b);
	struct libusb_transfer *xfer = libusb_alloc_transfer(0);
	struct wait w = { 0 };
	int r;

	if (!xfer)
		return -ENOMEM;
	libusb_fill_bulk_transfer(xfer, u->h, ep, buf, len, on_bulk_done, &w, CMD_TIMEOUT_MS);
	r = libusb_submit_transfer(xfer);
	if (r < 0) {
		libusb_free_transfer(xfer);
		if (r == LIBUSB_ERROR_NO_DEVICE) {
			queue_disconnect(b);
			return -ENODEV;
		}
		return -EIO;
	}
	wait_done(u, &w);
	libusb_free_transfer(xfer);
	r = errno_of(w.status);
	if (r == -ENODEV)
		queue_disconnect(b);
	if (r == -EPIPE)
		(void)libusb_clear_halt(u->h, ep);
	return r < 0 ? r : w.actual;
}

/*
 * Sends one command frame and validates the reply (as backend-sim.c does).
 * Replies to an earlier, timed-out command are skipped.
 */
static int transact_locked(struct smpl_backend *b, uint8_t op, const void *payload,
			   size_t len, void *out, size_t out_len)
{
	struct libusb_unit *u = lu_of(b);
	uint8_t cmd[SMPL_MAX_FRAME], reply[REPLY_BUF];
	struct smpl_frame f;
	uint16_t seq;
	int n, r;

	if (u->gone || !u->h)
		return -ENODEV;
	seq = ++u->seq;
	n = smpl_encode(op, seq, 0, payload, len, cmd, sizeof(cmd));
	if (n < 0)
		return -EINVAL;
	r = bulk(b, u->ep_out, cmd, n);
	if (r < 0)
		return r;
	for (int tries = 0; tries <= STALE_REPLIES_MAX; tries++) {
		r = bulk(b, u->ep_in, reply, sizeof(reply));
		if (r < 0)
			return r;
		if (smpl_decode(reply, (size_t)r, &f) < 0)
			return -EPROTO;
		if (f.op == (op | SMPL_OP_REPLY) && f.seq == seq)
			break;
		if ((uint16_t)(seq - f.seq) == 0 || (uint16_t)(seq - f.seq) > 64)
			return -EPROTO;		/* not an older reply of ours */
		if (tries == STALE_REPLIES_MAX)
			return -EPROTO;
	}
	return smpl_reply_payload(&f, out, out_len);
}

/* A command from any thread: the one on the wire, its reply its own. */
static int transact(struct smpl_backend *b, uint8_t op, const void *payload,
		    size_t len, void *out, size_t out_len)
{
	struct libusb_unit *u = lu_of(b);
	int r;

	pthread_mutex_lock(&u->io_lock);
	r = transact_locked(b, op, payload, len, out, out_len);
	pthread_mutex_unlock(&u->io_lock);
	return r;
}

static int lu_get_info(struct smpl_backend *b, struct smpl_info_n *info)
{
	return smpl_frames_get_info(b, transact, info);
}

static int lu_get_status(struct smpl_backend *b, struct smpl_status_n *st)
{
	return smpl_frames_get_status(b, transact, st);
}

static int lu_set_params(struct smpl_backend *b, const struct smpl_params_n *p)
{
	return smpl_frames_set_params(b, transact, p);
}

static int lu_arm(struct smpl_backend *b)
{
	return transact(b, SMPL_OP_ARM, NULL, 0, NULL, 0);
}

/* The vendor control request: no frame, no sequence, works when bulk is stuck. */
static int control_disarm(struct smpl_backend *b)
{
	struct libusb_unit *u = lu_of(b);
	int r = libusb_control_transfer(u->h,
					LIBUSB_ENDPOINT_OUT | LIBUSB_REQUEST_TYPE_VENDOR |
						LIBUSB_RECIPIENT_INTERFACE,
					SMPL_REQ_DISARM, 0, (uint16_t)u->ifnum, NULL, 0,
					CTRL_TIMEOUT_MS);

	if (r == LIBUSB_ERROR_NO_DEVICE) {
		queue_disconnect(b);
		return -ENODEV;
	}
	return r < 0 ? -EIO : 0;
}

/*
 * The vendor control request: no frame, no sequence, so it neither waits
 * behind a command on the bulk endpoints nor mixes into its reply (the
 * daemon calls it from the unit's safe worker while a command may be in
 * flight on the other).
 */
static int lu_disarm(struct smpl_backend *b)
{
	struct libusb_unit *u = lu_of(b);

	if (!u->h || u->gone)
		return -ENODEV;
	return control_disarm(b);
}

static int send_heartbeat(struct smpl_backend *b)
{
	struct libusb_unit *u = lu_of(b);
	int r = transact(b, SMPL_OP_HEARTBEAT, NULL, 0, NULL, 0);

	if (r == 0)
		atomic_store(&u->last_heartbeat_ms, smpl_backend_now_ms());
	return r;
}

static int lu_heartbeat(struct smpl_backend *b)
{
	struct libusb_unit *u = lu_of(b);

	uint64_t last = atomic_load(&u->last_heartbeat_ms);

	if (b->hold_heartbeats ||
	    (last && smpl_backend_now_ms() - last < u->heartbeat_period_ms / 2))
		return 0;
	return send_heartbeat(b);
}

static int lu_ack_fault(struct smpl_backend *b)
{
	return transact(b, SMPL_OP_ACK_FAULT, NULL, 0, NULL, 0);
}

static int lu_get_rtc(struct smpl_backend *b, int64_t *rtc_s)
{
	return smpl_frames_get_rtc(b, transact, rtc_s);
}

static void heartbeat_run(struct smpl_job *j)
{
	struct libusb_unit *u = container_of(j, struct libusb_unit, hb_job);
	int r = send_heartbeat(u->self);

	if (r != 0 && r != -ENODEV)
		smpl_log(LOG_WARNING, label(u->self), NULL, "libusb-heartbeat",
			 "HEARTBEAT failed (%d)", r);
}

static void heartbeat_done(struct smpl_job *j)
{
	container_of(j, struct libusb_unit, hb_job)->hb_inflight = false;
}

/* One HEARTBEAT at a time, off the loop: it may wait behind a command. */
static int on_heartbeat_timer(sd_event_source *src, uint64_t usec, void *userdata)
{
	struct smpl_backend *b = userdata;
	struct libusb_unit *u = lu_of(b);

	if (u->gone)
		return 0;
	if (!u->hb_inflight && !b->hold_heartbeats) {
		u->hb_inflight = true;
		smpl_worker_submit(u->bg, &u->hb_job);
	}
	return sd_event_source_set_time(src, usec + u->heartbeat_period_ms * 1000ULL);
}

/* --- descriptors ---------------------------------------------------------------------- */

/* The vendor interface and its three endpoints, checked against proto.h. */
static int find_endpoints(struct libusb_unit *u)
{
	struct libusb_config_descriptor *cfg = NULL;
	int r = libusb_get_active_config_descriptor(libusb_get_device(u->h), &cfg);

	if (r < 0)
		return -EIO;
	r = -ENODEV;
	for (int i = 0; i < cfg->bNumInterfaces && r < 0; i++) {
		const struct libusb_interface *itf = &cfg->interface[i];

		if (itf->num_altsetting < 1)
			continue;
		const struct libusb_interface_descriptor *id = &itf->altsetting[0];

		if (id->bInterfaceClass != LIBUSB_CLASS_VENDOR_SPEC ||
		    id->bInterfaceSubClass != SMPL_USB_SUBCLASS)
			continue;
		u->ep_out = u->ep_in = u->ep_int = 0;
		for (int e = 0; e < id->bNumEndpoints; e++) {
			const struct libusb_endpoint_descriptor *ep = &id->endpoint[e];
			uint8_t type = ep->bmAttributes & LIBUSB_TRANSFER_TYPE_MASK;
			bool in = ep->bEndpointAddress & LIBUSB_ENDPOINT_IN;

			if (type == LIBUSB_TRANSFER_TYPE_BULK && !in && !u->ep_out)
				u->ep_out = ep->bEndpointAddress;
			else if (type == LIBUSB_TRANSFER_TYPE_BULK && in && !u->ep_in)
				u->ep_in = ep->bEndpointAddress;
			else if (type == LIBUSB_TRANSFER_TYPE_INTERRUPT && in && !u->ep_int &&
				 ep->wMaxPacketSize >= SMPL_MAX_REPORT)
				u->ep_int = ep->bEndpointAddress;
		}
		if (u->ep_out && u->ep_in && u->ep_int) {
			u->ifnum = id->bInterfaceNumber;
			r = 0;
		}
	}
	libusb_free_config_descriptor(cfg);
	return r;
}

/* --- lifetime ---------------------------------------------------------------------------- */

static void release_all(struct smpl_backend *b)
{
	struct libusb_unit *u = lu_of(b);

	u->heartbeat = sd_event_source_disable_unref(u->heartbeat);
	smpl_worker_free(u->bg);	/* its HEARTBEAT ends first */
	u->bg = NULL;
	if (u->int_xfer) {
		if (u->int_busy && libusb_cancel_transfer(u->int_xfer) == 0) {
			struct timeval tv = { 0, 100 * 1000 };

			for (int i = 0; i < 20 && u->int_busy; i++)
				(void)libusb_handle_events_timeout(u->ctx, &tv);
		}
		if (!u->int_busy)
			libusb_free_transfer(u->int_xfer);
		u->int_xfer = NULL;	/* if still busy: leaked rather than freed in flight */
	}
	if (u->claimed)
		(void)libusb_release_interface(u->h, u->ifnum);
	u->claimed = false;
	if (u->h)
		libusb_close(u->h);
	u->h = NULL;
	unwatch_libusb_fds(b);
	if (u->ctx)
		libusb_exit(u->ctx);
	u->ctx = NULL;
	if (u->fd >= 0)
		close(u->fd);
	u->fd = -1;
	u->deliver = sd_event_source_disable_unref(u->deliver);
	if (u->deliver_fd >= 0)
		close(u->deliver_fd);
	u->deliver_fd = -1;
}

static int libusb_err(int r)
{
	switch (r) {
	case LIBUSB_ERROR_BUSY:
		return -EBUSY;
	case LIBUSB_ERROR_NO_DEVICE:
		return -ENODEV;
	case LIBUSB_ERROR_ACCESS:
		return -EACCES;
	case LIBUSB_ERROR_NO_MEM:
		return -ENOMEM;
	default:
		return -EIO;
	}
}

static int lu_open(struct smpl_backend *b)
{
	struct libusb_unit *u = lu_of(b);
	struct smpl_info_n info;
	uint32_t wd;
	int r;

	u->fd = open(u->devnode, O_RDWR | O_CLOEXEC);
	if (u->fd < 0)
		return -errno;
	/* No enumeration, no hotplug thread: discovery has found the device. */
	(void)libusb_set_option(NULL, LIBUSB_OPTION_NO_DEVICE_DISCOVERY);
	r = libusb_init(&u->ctx);
	if (r < 0) {
		u->ctx = NULL;
		r = libusb_err(r);
		goto fail;
	}
	r = libusb_wrap_sys_device(u->ctx, (intptr_t)u->fd, &u->h);
	if (r < 0) {
		u->h = NULL;
		r = libusb_err(r);
		goto fail;
	}
	r = find_endpoints(u);
	if (r < 0) {
		smpl_log(LOG_WARNING, label(b), NULL, "libusb-open",
			 "no vendor interface with bulk OUT, bulk IN and interrupt IN");
		goto fail;
	}
	r = libusb_claim_interface(u->h, u->ifnum);
	if (r < 0) {
		r = libusb_err(r);
		goto fail;
	}
	u->claimed = true;
	u->deliver_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (u->deliver_fd < 0) {
		r = -errno;
		goto fail;
	}
	r = sd_event_add_io(b->event, &u->deliver, u->deliver_fd, EPOLLIN, on_deliver, b);
	if (r < 0)
		goto fail;
	r = smpl_worker_new(b->event, "smpl-usb-bg", false, &u->bg);
	if (r < 0)
		goto fail;
	r = watch_libusb_fds(b);
	if (r < 0)
		goto fail;

	r = lu_get_info(b, &info);
	if (r != 0) {
		r = r > 0 ? -EIO : r;
		goto fail;
	}
	wd = info.watchdog_ms ? info.watchdog_ms : DEFAULT_WATCHDOG_MS;
	/* A quarter: a late loop or a command waiting out its timeout must not
	 * let the unit's watchdog fire during a treatment. */
	u->heartbeat_period_ms = wd / 4 ? wd / 4 : 1;
	smpl_log(LOG_NOTICE, label(b), NULL, "libusb-supervision",
		 "unit %s through libusb: should smplaserd die, nothing disarms it at "
		 "once; the unit's own watchdog does after %u ms (load smplaser.ko "
		 "for the immediate disarm)", info.serial, (unsigned int)wd);

	u->int_xfer = libusb_alloc_transfer(0);
	if (!u->int_xfer) {
		r = -ENOMEM;
		goto fail;
	}
	libusb_fill_interrupt_transfer(u->int_xfer, u->h, u->ep_int, u->int_buf,
				       sizeof(u->int_buf), on_interrupt, b, 0);
	r = libusb_submit_transfer(u->int_xfer);
	if (r < 0) {
		r = libusb_err(r);
		goto fail;
	}
	u->int_busy = true;
	r = sd_event_add_time_relative(b->event, &u->heartbeat, CLOCK_MONOTONIC, 1000, 1000,
				       on_heartbeat_timer, b);
	if (r < 0)
		goto fail;
	(void)sd_event_source_set_enabled(u->heartbeat, SD_EVENT_ON);
	return 0;
fail:
	release_all(b);
	return r;
}

/* A clean close disarms the unit; the kernel would not (see the top). */
static void lu_close(struct smpl_backend *b)
{
	struct libusb_unit *u = lu_of(b);

	if (u->h && !u->gone)
		(void)control_disarm(b);
	release_all(b);
}

static void lu_free(struct smpl_backend *b)
{
	struct libusb_unit *u = lu_of(b);

	if (!u)
		return;
	pthread_mutex_destroy(&u->lock);
	pthread_mutex_destroy(&u->io_lock);
	free(u->devnode);
	free(u);
	b->priv = NULL;
}

static const struct smpl_backend_ops libusb_ops = {
	.name = "libusb",
	.open = lu_open,
	.close = lu_close,
	.get_info = lu_get_info,
	.get_status = lu_get_status,
	.set_params = lu_set_params,
	.arm = lu_arm,
	.disarm = lu_disarm,
	.heartbeat = lu_heartbeat,
	.ack_fault = lu_ack_fault,
	.get_rtc = lu_get_rtc,
	.free = lu_free,
};

int smpl_backend_libusb_new(sd_event *event, const char *devnode,
			    struct smpl_backend **ret)
{
	struct smpl_backend *b = calloc(1, sizeof(*b));
	struct libusb_unit *u = calloc(1, sizeof(*u));

	if (!b || !u || !(u->devnode = strdup(devnode))) {
		free(u);
		free(b);
		return -ENOMEM;
	}
	u->fd = -1;
	u->deliver_fd = -1;
	u->self = b;
	u->hb_job = (struct smpl_job){ .run = heartbeat_run, .done = heartbeat_done };
	pthread_mutex_init(&u->lock, NULL);
	pthread_mutex_init(&u->io_lock, NULL);
	b->ops = &libusb_ops;
	b->event = event;
	b->priv = u;
	*ret = b;
	return 0;
}
