// SPDX-License-Identifier: GPL-2.0
/*
 * smplaser USB side: probe and disconnect, bulk commands and the interrupt
 * status stream (reports, their checks, the disarms they call for).  The
 * disarm paths and the watchdogs are in disarm.c.
 */
#include <linux/completion.h>
#include <linux/errno.h>
#include <linux/jiffies.h>
#include <linux/kernel.h>
#include <linux/log2.h>
#include <linux/math.h>
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/usb.h>

#include "smplaser.h"

#define SMPLASER_INT_RETRY_MIN_MS	10
#define SMPLASER_INT_RETRY_MAX_MS	1000

static const struct usb_device_id smplaser_ids[] = {
	{ USB_DEVICE_AND_INTERFACE_INFO(SMPL_USB_VID, SMPL_USB_PID,
					USB_CLASS_VENDOR_SPEC,
					SMPL_USB_SUBCLASS,
					SMPL_PROTO_VERSION) },
	{ }
};
MODULE_DEVICE_TABLE(usb, smplaser_ids);

bool smplaser_state_is_armed(u8 state)
{
	return state == SMPL_STATE_ARMING || state == SMPL_STATE_READY ||
	       state == SMPL_STATE_EMITTING;
}

void smplaser_delete(struct kref *kref)
{
	struct smplaser_dev *dev = container_of(kref, struct smplaser_dev,
						kref);

	usb_free_urb(dev->int_urb);
	usb_free_urb(dev->disarm_urb);
	kfree(dev->int_buf);
	kfree(dev->disarm_setup);
	kfree(dev->cmd_buf);
	kfree(dev->reply_buf);
	usb_put_intf(dev->intf);
	usb_put_dev(dev->udev);
	kfree(dev);
}

/* Queue an event and wake the reader.  Caller holds dev->lock. */
void smplaser_event_locked(struct smplaser_dev *dev, struct smplaser_event *ev)
{
	smplaser_queue_push(&dev->events, ev);
	wake_up_interruptible(&dev->read_wait);
}

/* --- bulk commands ----------------------------------------------------- */

static int smplaser_transport_error(struct smplaser_dev *dev,
				    unsigned int pipe, int ret)
{
	switch (ret) {
	case -ETIMEDOUT:
		return -ETIMEDOUT;
	case -ENODEV:
	case -ESHUTDOWN:
		return -ENODEV;
	case -EPIPE:
		usb_clear_halt(dev->udev, pipe);
		return -EIO;
	case -EOVERFLOW:
		return -EPROTO;		/* more than the reply buffer */
	case -EINTR:
		return -EINTR;		/* a fatal signal: the caller is dying */
	default:
		return -EIO;
	}
}

static void smplaser_bulk_complete(struct urb *urb)
{
	complete(urb->context);
}

/*
 * One bulk stage of a command: usb_bulk_msg(), except that a fatal signal
 * ends the wait at once (-EINTR).  An opener killed while the unit does not
 * answer must not keep its file, whose release disarms, for the stage's
 * whole timeout.  Other signals do not interrupt a command.
 */
static int smplaser_bulk_msg(struct smplaser_dev *dev, unsigned int pipe,
			     void *buf, int len, int *actual)
{
	DECLARE_COMPLETION_ONSTACK(done);
	struct urb *urb;
	unsigned long timeout = msecs_to_jiffies(SMPLASER_CMD_TIMEOUT_MS);
	long left;
	int ret;

	*actual = 0;
	urb = usb_alloc_urb(0, GFP_KERNEL);
	if (!urb)
		return -ENOMEM;
	usb_fill_bulk_urb(urb, dev->udev, pipe, buf, len,
			  smplaser_bulk_complete, &done);
	ret = usb_submit_urb(urb, GFP_KERNEL);
	if (ret)
		goto out;
	left = wait_for_completion_killable_timeout(&done, timeout);
	if (left <= 0)
		usb_kill_urb(urb);	/* its completion has run after this */
	ret = urb->status;
	if (left <= 0 && ret == -ENOENT)	/* killed here, not completed */
		ret = left ? -EINTR : -ETIMEDOUT;
	*actual = urb->actual_length;
out:
	usb_free_urb(urb);
	return ret;
}

/* smplaser_reply_check(): a late reply to an earlier command of ours. */
#define SMPLASER_REPLY_STALE	1

/*
 * Check a reply to (@op, @seq) and copy exactly @reply_len payload bytes.
 * SMPLASER_REPLY_STALE for a well-formed reply to one of our last 64
 * commands (one that timed out and whose reply came late): the caller
 * reads again.
 */
static int smplaser_reply_check(struct smplaser_dev *dev, u8 op, u16 seq,
				size_t actual, void *reply, u16 reply_len)
{
	struct smplaser_frame f;
	u16 age;
	int ret;

	ret = smplaser_frame_parse(dev->reply_buf, actual, &f);
	if (ret)
		return ret;
	if (f.op != (op | SMPL_OP_REPLY) || f.seq != seq) {
		age = seq - f.seq;
		if ((f.op & SMPL_OP_REPLY) && age > 0 && age <= 64)
			return SMPLASER_REPLY_STALE;
		return -EPROTO;
	}
	if (f.status != SMPL_ST_OK)
		return f.len ? -EPROTO : smplaser_unit_errno(f.status);
	if (f.len != reply_len)
		return -EPROTO;
	if (reply_len)
		memcpy(reply, f.payload, reply_len);
	return 0;
}

/*
 * Send one command and wait for its reply, each stage with a timeout.
 * Late replies to earlier commands are skipped, at most
 * SMPLASER_STALE_REPLIES_MAX of them.  Caller holds io_mutex.  Returns 0
 * or a negative errno (include/uapi/smplaser.h lists them).
 */
int smplaser_command(struct smplaser_dev *dev, u8 op, const void *arg,
		     u16 arg_len, void *reply, u16 reply_len)
{
	unsigned int stale;
	size_t len;
	u16 seq;
	int actual = 0;
	int ret;

	lockdep_assert_held(&dev->io_mutex);
	if (dev->disconnected)
		return -ENODEV;
	if (arg_len > SMPL_MAX_PAYLOAD || reply_len > SMPL_MAX_PAYLOAD)
		return -EINVAL;

	seq = ++dev->seq;
	len = smplaser_frame_encode(dev->cmd_buf, op, seq, arg, arg_len);
	ret = smplaser_bulk_msg(dev, dev->bulk_out_pipe, dev->cmd_buf, len,
				&actual);
	if (ret)
		return smplaser_transport_error(dev, dev->bulk_out_pipe, ret);
	if (actual != len)
		return -EIO;

	for (stale = 0; ; stale++) {
		ret = smplaser_bulk_msg(dev, dev->bulk_in_pipe, dev->reply_buf,
					dev->reply_size, &actual);
		if (ret)
			return smplaser_transport_error(dev, dev->bulk_in_pipe,
							ret);
		if (actual < 0)
			return -EIO;
		ret = smplaser_reply_check(dev, op, seq, actual, reply,
					   reply_len);
		if (ret != SMPLASER_REPLY_STALE)
			return ret;
		if (stale == SMPLASER_STALE_REPLIES_MAX)
			return -EPROTO;
		dev_notice_ratelimited(&dev->intf->dev,
				       "skipped a late reply to an earlier command\n");
	}
}

/* GET_STATUS round trip.  Caller holds io_mutex. */
int smplaser_query_status(struct smplaser_dev *dev,
			  struct smplaser_unit_status *st)
{
	u8 payload[SMPL_STATUS_SIZE];
	int ret;

	ret = smplaser_command(dev, SMPL_OP_GET_STATUS, NULL, 0, payload,
			       sizeof(payload));
	if (ret)
		return ret;
	return smplaser_status_decode(payload, st);
}

/* --- interrupt reports ------------------------------------------------- */

/* The last valid report is fresh and the stream healthy.  Lock held. */
bool smplaser_stream_fresh_locked(struct smplaser_dev *dev)
{
	unsigned long fresh = msecs_to_jiffies(SMPLASER_STATUS_FRESH_MS);

	return dev->status.valid && !dev->int_errors && !dev->bad_reports &&
	       time_before(jiffies, dev->report_jiffies + fresh);
}

/* A valid report came: the stream is alive.  Lock held. */
static void smplaser_report_valid_locked(struct smplaser_dev *dev)
{
	dev->report_jiffies = jiffies;
	dev->bad_reports = 0;
	WRITE_ONCE(dev->reports, dev->reports + 1);
	wake_up_all(&dev->report_wait);
}

/* A valid status report: update the cache, queue events, enforce S1/S4. */
static void smplaser_status_report(struct smplaser_dev *dev,
				   const struct smplaser_unit_status *st)
{
	struct smplaser_unit_status old;
	struct smplaser_event ev;
	bool armed_state = smplaser_state_is_armed(st->state);
	bool disarm = false, escalate;
	unsigned long irqflags;

	spin_lock_irqsave(&dev->lock, irqflags);
	old = dev->status;
	dev->status = *st;
	smplaser_report_valid_locked(dev);

	if (!old.valid || old.state != st->state || old.flags != st->flags ||
	    old.fault != st->fault) {
		smplaser_event_status(&ev, st);
		smplaser_event_locked(dev, &ev);
	}
	if (old.interlocks != st->interlocks) {
		memset(&ev, 0, sizeof(ev));
		ev.type = SMPLASER_EV_INTERLOCK;
		ev.interlock.interlocks = st->interlocks;
		ev.interlock.changed = old.interlocks ^ st->interlocks;
		smplaser_event_locked(dev, &ev);
	}
	if (st->fault && st->fault != old.fault) {
		memset(&ev, 0, sizeof(ev));
		ev.type = SMPLASER_EV_FAULT;
		ev.fault.fault = st->fault;
		ev.fault.state = st->state;
		smplaser_event_locked(dev, &ev);
	}

	if (armed_state && (dev->armed || dev->arm_pending))
		dev->armed_seen = true;

	/* An interlock open while armed: disarm now, atomically. */
	if (st->interlocks && (dev->armed || armed_state)) {
		smplaser_disarm_locked(dev, SMPLASER_DISARM_INTERLOCK,
				       !dev->interlock_disarmed);
		dev->interlock_disarmed = true;
		disarm = true;
	} else if (!st->interlocks) {
		dev->interlock_disarmed = false;
	}

	/* Armed, but not by us (S1): e.g. an ARM whose reply was lost. */
	if (armed_state && !dev->armed && !dev->arm_pending) {
		smplaser_disarm_locked(dev, SMPLASER_DISARM_UNEXPECTED,
				       !dev->unexpected_disarmed);
		dev->unexpected_disarmed = true;
		disarm = true;
	} else if (!armed_state) {
		dev->unexpected_disarmed = false;
	}

	/*
	 * The unit left the armed states by itself (idle timeout, a fault):
	 * no longer ours.  Only once a report has shown it armed since the
	 * ARM, so a report older than the ARM does not count.
	 */
	if (!armed_state && dev->armed && dev->armed_seen)
		dev->armed = false;
	escalate = smplaser_disarm_report_locked(dev, armed_state);
	spin_unlock_irqrestore(&dev->lock, irqflags);

	if (disarm)
		smplaser_disarm_submit(dev);
	if (escalate)
		smplaser_disarm_escalate(dev);
}

static void smplaser_pulse_report(struct smplaser_dev *dev,
				  const struct smplaser_ev_pulse *p)
{
	struct smplaser_event ev = { .type = SMPLASER_EV_PULSE };
	unsigned long irqflags;

	ev.pulse = *p;
	spin_lock_irqsave(&dev->lock, irqflags);
	smplaser_report_valid_locked(dev);
	smplaser_event_locked(dev, &ev);
	spin_unlock_irqrestore(&dev->lock, irqflags);
}

/*
 * A malformed report: dropped.  SMPLASER_BAD_REPORTS_MAX in a row while
 * armed: the driver cannot see the unit, disarm.
 */
static void smplaser_bad_report(struct smplaser_dev *dev, size_t actual)
{
	unsigned long irqflags;
	bool disarm = false;

	dev_warn_ratelimited(&dev->intf->dev,
			     "dropped a malformed report (%zu bytes)\n", actual);
	spin_lock_irqsave(&dev->lock, irqflags);
	if (dev->bad_reports < UINT_MAX)
		dev->bad_reports++;
	if (dev->bad_reports >= SMPLASER_BAD_REPORTS_MAX && dev->armed) {
		smplaser_disarm_locked(dev, SMPLASER_DISARM_STATUS_GARBLED,
				       true);
		disarm = true;
	}
	spin_unlock_irqrestore(&dev->lock, irqflags);
	if (disarm) {
		smplaser_disarm_submit(dev);
		dev_warn(&dev->intf->dev,
			 "%u malformed reports in a row: disarmed\n",
			 SMPLASER_BAD_REPORTS_MAX);
	}
}

/* One interrupt frame; anything malformed is dropped and counted. */
static void smplaser_handle_report(struct smplaser_dev *dev, const u8 *buf,
				   size_t actual)
{
	struct smplaser_unit_status st;
	struct smplaser_ev_pulse pulse;
	struct smplaser_frame f;
	int ret = -EPROTO;

	if (actual > SMPL_MAX_REPORT || smplaser_frame_parse(buf, actual, &f) ||
	    f.status != 0)
		goto bad;

	if (f.op == SMPL_OP_STATUS && f.len == SMPL_STATUS_SIZE) {
		ret = smplaser_status_decode(f.payload, &st);
		if (!ret)
			smplaser_status_report(dev, &st);
	} else if (f.op == SMPL_OP_PULSE && f.len == SMPL_PULSE_SIZE) {
		ret = smplaser_pulse_decode(f.payload, &pulse);
		if (!ret)
			smplaser_pulse_report(dev, &pulse);
	}
	if (!ret)
		return;
bad:
	smplaser_bad_report(dev, actual);
}

/* Status reports failed: never resubmit at once, retry with a back-off. */
static void smplaser_int_failed(struct smplaser_dev *dev, int status)
{
	unsigned int delay_ms, errors;
	unsigned long irqflags;
	bool armed;

	if (status == -EPIPE)
		set_bit(SMPLASER_FLAG_INT_HALTED, &dev->flags);

	/* No status means no supervision of the interlocks: disarm. */
	spin_lock_irqsave(&dev->lock, irqflags);
	if (dev->int_errors < 16)
		dev->int_errors++;
	errors = dev->int_errors;
	armed = dev->armed;
	if (armed)
		smplaser_disarm_locked(dev, SMPLASER_DISARM_STATUS_LOST, true);
	spin_unlock_irqrestore(&dev->lock, irqflags);
	if (armed)
		smplaser_disarm_submit(dev);

	delay_ms = min(SMPLASER_INT_RETRY_MIN_MS << (errors - 1),
		       SMPLASER_INT_RETRY_MAX_MS);
	dev_warn_ratelimited(&dev->intf->dev,
			     "status reports failed (%d), retry in %u ms\n",
			     status, delay_ms);
	if (!test_bit(SMPLASER_FLAG_GONE, &dev->flags))
		queue_delayed_work(system_highpri_wq, &dev->int_retry_work,
				   msecs_to_jiffies(delay_ms));
}

/* Submit the interrupt URB; fault injection may fail it (debug kernels). */
static int smplaser_int_submit(struct smplaser_dev *dev, gfp_t gfp)
{
	if (smplaser_should_fail_int_submit())
		return -ENOMEM;
	return usb_submit_urb(dev->int_urb, gfp);
}

static void smplaser_int_complete(struct urb *urb)
{
	struct smplaser_dev *dev = urb->context;
	unsigned long irqflags;
	int ret;

	switch (urb->status) {
	case 0:
		break;
	case -ENOENT:		/* killed or poisoned */
	case -ECONNRESET:	/* unlinked */
	case -ESHUTDOWN:	/* device or host controller gone */
	case -ENODEV:
		return;
	default:		/* -EPROTO, -EILSEQ, -ETIME, -EPIPE, ... */
		smplaser_int_failed(dev, urb->status);
		return;
	}

	spin_lock_irqsave(&dev->lock, irqflags);
	dev->int_errors = 0;
	spin_unlock_irqrestore(&dev->lock, irqflags);
	smplaser_handle_report(dev, urb->transfer_buffer, urb->actual_length);

	ret = smplaser_int_submit(dev, GFP_ATOMIC);
	if (ret && ret != -EPERM && ret != -ENODEV)
		smplaser_int_failed(dev, ret);
}

/* Restart the status reports; a failure is retried, never given up. */
static void smplaser_int_retry(struct work_struct *work)
{
	struct smplaser_dev *dev = container_of(to_delayed_work(work),
						struct smplaser_dev,
						int_retry_work);
	int ret;

	if (test_and_clear_bit(SMPLASER_FLAG_INT_HALTED, &dev->flags))
		usb_clear_halt(dev->udev, dev->int_urb->pipe);
	ret = smplaser_int_submit(dev, GFP_KERNEL);
	if (ret && ret != -EPERM && ret != -ENODEV) {
		dev_err_ratelimited(&dev->intf->dev,
				    "cannot restart status reports: %d\n", ret);
		smplaser_int_failed(dev, ret);
	}
}

/* --- probe and disconnect ---------------------------------------------- */

/* Endpoints as include/smplaser/proto.h defines them, or -ENODEV. */
static int smplaser_check_endpoints(struct smplaser_dev *dev,
				    struct usb_host_interface *alt)
{
	struct usb_endpoint_descriptor *bulk_in, *bulk_out, *int_in;
	struct device *d = &dev->intf->dev;

	if (alt->desc.bNumEndpoints != 3 ||
	    usb_find_common_endpoints(alt, &bulk_in, &bulk_out, &int_in,
				      NULL)) {
		dev_err(d, "need one bulk IN, bulk OUT and interrupt IN\n");
		return -ENODEV;
	}
	if (usb_endpoint_maxp(int_in) < SMPL_MAX_REPORT ||
	    usb_endpoint_maxp(bulk_in) < SMPL_MAX_REPORT ||
	    usb_endpoint_maxp(bulk_out) < SMPL_MAX_REPORT) {
		dev_err(d, "endpoint max packet sizes too small\n");
		return -ENODEV;
	}
	/* USB 2.0/3.x bulk packets are 8, 16, 32, 64, 512 or 1024 bytes. */
	if (!is_power_of_2(usb_endpoint_maxp(bulk_in)) ||
	    !is_power_of_2(usb_endpoint_maxp(bulk_out))) {
		dev_err(d, "bulk max packet sizes %u/%u are not powers of two\n",
			usb_endpoint_maxp(bulk_in), usb_endpoint_maxp(bulk_out));
		return -ENODEV;
	}

	dev->bulk_in_pipe = usb_rcvbulkpipe(dev->udev,
					    usb_endpoint_num(bulk_in));
	dev->bulk_out_pipe = usb_sndbulkpipe(dev->udev,
					     usb_endpoint_num(bulk_out));
	/* Room for an oversize reply, so it is seen and refused whole. */
	dev->reply_size = roundup(2 * SMPL_MAX_FRAME,
				  usb_endpoint_maxp(bulk_in));

	dev->int_buf = kmalloc(usb_endpoint_maxp(int_in), GFP_KERNEL);
	dev->cmd_buf = kmalloc(SMPL_MAX_FRAME, GFP_KERNEL);
	dev->reply_buf = kmalloc(dev->reply_size, GFP_KERNEL);
	dev->int_urb = usb_alloc_urb(0, GFP_KERNEL);
	if (!dev->int_buf || !dev->cmd_buf || !dev->reply_buf || !dev->int_urb)
		return -ENOMEM;
	usb_fill_int_urb(dev->int_urb, dev->udev,
			 usb_rcvintpipe(dev->udev, usb_endpoint_num(int_in)),
			 dev->int_buf, usb_endpoint_maxp(int_in),
			 smplaser_int_complete, dev, int_in->bInterval);
	return 0;
}

static int smplaser_check_version(struct smplaser_dev *dev)
{
	struct smpl_version v;
	int ret;

	ret = usb_control_msg_recv(dev->udev, 0, SMPL_REQ_GET_VERSION,
				   USB_DIR_IN | USB_TYPE_VENDOR |
				   USB_RECIP_INTERFACE, 0, dev->ifnum, &v,
				   sizeof(v), SMPLASER_CTRL_TIMEOUT_MS,
				   GFP_KERNEL);
	if (ret)
		return ret;
	if (v.proto_version != SMPL_PROTO_VERSION) {
		dev_err(&dev->intf->dev, "protocol version %u, need %u\n",
			v.proto_version, SMPL_PROTO_VERSION);
		return -ENODEV;
	}
	return 0;
}

static int smplaser_read_info(struct smplaser_dev *dev)
{
	u8 payload[SMPL_INFO_SIZE];
	int ret, tries;

	mutex_lock(&dev->io_mutex);
	for (tries = 0; tries < 2; tries++) {
		ret = smplaser_command(dev, SMPL_OP_GET_INFO, NULL, 0, payload,
				       sizeof(payload));
		if (!ret)
			ret = smplaser_info_decode(payload, &dev->info);
		if (!ret || ret == -ENODEV || ret == -EINTR)
			break;
	}
	mutex_unlock(&dev->io_mutex);
	return ret;
}

/* The module parameter, unless it does not fit this unit's watchdog. */
static void smplaser_init_heartbeat(struct smplaser_dev *dev)
{
	unsigned int ms = smplaser_default_heartbeat_ms;

	if (ms == 0 || ms >= dev->info.watchdog_ms) {
		ms = dev->info.watchdog_ms / 2;
		dev_warn(&dev->intf->dev,
			 "heartbeat_ms=%u does not fit the unit's watchdog of %u ms, using %u\n",
			 smplaser_default_heartbeat_ms, dev->info.watchdog_ms,
			 ms);
	}
	dev->heartbeat_ms = ms;
}

/* Stop every URB and work; none can be started again. */
static void smplaser_stop_io(struct smplaser_dev *dev)
{
	smplaser_set_gone(dev);
	usb_poison_urb(dev->int_urb);
	cancel_delayed_work_sync(&dev->int_retry_work);
	smplaser_disarm_stop(dev);
}

static int smplaser_probe(struct usb_interface *intf,
			  const struct usb_device_id *id)
{
	struct smplaser_dev *dev;
	int ret;

	dev = kzalloc(sizeof(*dev), GFP_KERNEL);
	if (!dev)
		return -ENOMEM;
	kref_init(&dev->kref);
	mutex_init(&dev->io_mutex);
	mutex_init(&dev->read_mutex);
	spin_lock_init(&dev->lock);
	init_waitqueue_head(&dev->read_wait);
	init_waitqueue_head(&dev->report_wait);
	INIT_DELAYED_WORK(&dev->int_retry_work, smplaser_int_retry);
	smplaser_disarm_init_work(dev);
	dev->udev = usb_get_dev(interface_to_usbdev(intf));
	dev->intf = usb_get_intf(intf);
	dev->ifnum = intf->cur_altsetting->desc.bInterfaceNumber;
	dev->minor = -1;

	ret = smplaser_check_endpoints(dev, intf->cur_altsetting);
	if (!ret)
		ret = smplaser_disarm_init(dev);
	if (!ret)
		ret = smplaser_check_version(dev);
	if (ret)
		goto error;

	usb_set_intfdata(intf, dev);
	ret = smplaser_int_submit(dev, GFP_KERNEL);
	if (ret)
		goto error;
	/* A new driver instance starts from STANDBY, whatever came before. */
	smplaser_disarm_submit(dev);

	ret = smplaser_read_info(dev);
	if (ret) {
		dev_err(&intf->dev, "GET_INFO failed: %d\n", ret);
		goto error;
	}
	smplaser_init_heartbeat(dev);

	ret = smplaser_register_node(dev);
	if (ret)
		goto error;
	dev_info(&intf->dev, "smplaser%d: %s serial %s firmware %u.%u.%u\n",
		 dev->minor, dev->info.model, dev->info.serial,
		 dev->info.fw_major, dev->info.fw_minor, dev->info.fw_patch);
	return 0;

error:
	smplaser_stop_io(dev);		/* NULL URBs are fine */
	usb_set_intfdata(intf, NULL);
	kref_put(&dev->kref, smplaser_delete);
	return ret;
}

/*
 * Unbind with the unit still there (sysfs unbind, rmmod, a USB reset or a
 * system sleep): make sure it is in STANDBY before the driver lets go, as
 * the recovery of a failed disarm would (disarm.c): the vendor request,
 * then, when it failed or the reports still show the unit armed, the bulk
 * DISARM.  The endpoints and the status stream still work here
 * (soft_unbind).  Nothing to do on an unplug: the unit is gone.  Caller
 * holds io_mutex.
 */
static void smplaser_disconnect_disarm(struct smplaser_dev *dev)
{
	int ret;

	ret = usb_control_msg(dev->udev, usb_sndctrlpipe(dev->udev, 0),
			      SMPL_REQ_DISARM,
			      USB_DIR_OUT | USB_TYPE_VENDOR | USB_RECIP_INTERFACE,
			      0, dev->ifnum, NULL, 0, SMPLASER_CTRL_TIMEOUT_MS);
	if (ret == -ENODEV || ret == -ESHUTDOWN)
		return;
	if (ret >= 0 && smplaser_disarm_confirmed(dev))
		return;
	ret = smplaser_command(dev, SMPL_OP_DISARM, NULL, 0, NULL, 0);
	if (ret && ret != -ENODEV)
		dev_err(&dev->intf->dev,
			"unbound; the DISARM command failed (%d): the unit may still be armed\n",
			ret);
}

/* Unplug or unbind: no new opens, disarm, stop all I/O, wake the reader. */
static void smplaser_disconnect(struct usb_interface *intf)
{
	struct smplaser_dev *dev = usb_get_intfdata(intf);
	unsigned long irqflags;
	int minor = dev->minor;

	usb_set_intfdata(intf, NULL);
	smplaser_unregister_node(dev);

	/*
	 * At once, before waiting for a command in progress: with soft_unbind
	 * the core no longer ends that command for us.
	 */
	smplaser_disarm(dev, SMPLASER_DISARM_RELEASE, false);

	/* Waits for a command in progress; none starts after this. */
	mutex_lock(&dev->io_mutex);
	smplaser_disconnect_disarm(dev);
	dev->disconnected = true;
	mutex_unlock(&dev->io_mutex);
	wake_up_all(&dev->report_wait);	/* a recovery waiting to know */

	smplaser_stop_io(dev);

	spin_lock_irqsave(&dev->lock, irqflags);
	dev->armed = false;
	dev->events.disconnected = true;
	spin_unlock_irqrestore(&dev->lock, irqflags);
	wake_up_interruptible(&dev->read_wait);
	wake_up_all(&dev->report_wait);

	dev_info(&intf->dev, "smplaser%d disconnected\n", minor);
	kref_put(&dev->kref, smplaser_delete);
}

struct usb_driver smplaser_driver = {
	.name = "smplaser",
	.id_table = smplaser_ids,
	.probe = smplaser_probe,
	.disconnect = smplaser_disconnect,
	/*
	 * The core leaves the endpoints to us until disconnect() returns, so
	 * an unbind can still disarm a unit that fails the vendor request
	 * (bulk DISARM) and see it obey (status reports); disconnect() stops
	 * every URB itself.
	 */
	.soft_unbind = 1,
};
