// SPDX-License-Identifier: GPL-2.0
/*
 * smplaser disarm paths, and the watchdogs that use them.
 *
 * Disarm without sleeping: SMPL_REQ_DISARM is a vendor control request
 * with no data stage, sent from a URB preallocated at probe and submitted
 * with GFP_ATOMIC, so the interrupt completion, the watchdogs, release()
 * and the DISARM ioctl all use the same path and none waits for a bulk
 * command.  A request made while one is in flight is sent again when that
 * one completes, so none is lost.
 *
 * A disarm must take, so each request is bounded and checked:
 *   - disarm_timeout_work unlinks a request still in flight after
 *     SMPLASER_DISARM_TIMEOUT_MS (a unit that never completes it);
 *   - a request that fails (stall, error, unlinked), or that the unit
 *     acknowledged while its reports still show it armed
 *     SMPLASER_DISARM_CONFIRM_MS later, queues disarm_work, which sends it
 *     again synchronously, up to SMPLASER_DISARM_TRIES in all, then sends
 *     the bulk DISARM command (the one disarm path that waits for
 *     io_mutex, in its own work item); each acknowledged attempt counts
 *     only once a report shows the unit disarmed (or no report comes to
 *     say otherwise);
 *   - when nothing took, the reader gets SMPLASER_EV_DISARM_FAILED, once
 *     until a report shows the unit disarmed (or the driver arms it again),
 *     and the driver keeps trying (at most once a
 *     SMPLASER_DISARM_BACKOFF_MS) while reports show the unit armed.
 *
 * Watchdogs while the driver has the unit armed:
 *   heartbeat_work  no HEARTBEAT ioctl for heartbeat_ms; a HEARTBEAT that
 *                   comes after the deadline does not cancel the disarm
 *   stream_work     no valid status report for SMPLASER_STREAM_TIMEOUT_MS
 *                   (of the driver's own running time, see below)
 */
#include <linux/errno.h>
#include <linux/jiffies.h>
#include <linux/kernel.h>
#include <linux/slab.h>
#include <linux/usb.h>

#include "smplaser.h"

static bool smplaser_gone(struct smplaser_dev *dev)
{
	return test_bit(SMPLASER_FLAG_GONE, &dev->flags);
}

/*
 * The driver's side of a disarm: no longer armed, and a disarm record when
 * @event.  Caller holds dev->lock, then calls smplaser_disarm_submit().
 */
void smplaser_disarm_locked(struct smplaser_dev *dev, u32 reason, bool event)
{
	if (!dev->disarm_want) {
		dev->disarm_want = true;
		dev->disarm_sent = jiffies;
	}
	dev->armed = false;
	/* An ARM in flight now does not count as armed when it returns. */
	if (dev->arm_pending)
		dev->arm_cancelled = true;
	/* Reports may show the unit armed until this disarm lands. */
	dev->unexpected_disarmed = true;
	if (event) {
		struct smplaser_event ev = { .type = SMPLASER_EV_DISARM };

		ev.disarm.reason = reason;
		ev.disarm.interlocks = dev->status.interlocks;
		ev.disarm.state = dev->status.state;
		smplaser_event_locked(dev, &ev);
	}
}

/* Disarm the unit now, from any context; @event queues a disarm record. */
void smplaser_disarm(struct smplaser_dev *dev, u32 reason, bool event)
{
	unsigned long irqflags;

	spin_lock_irqsave(&dev->lock, irqflags);
	smplaser_disarm_locked(dev, reason, event);
	spin_unlock_irqrestore(&dev->lock, irqflags);
	smplaser_disarm_submit(dev);
}

/* --- the vendor request and its bounds ---------------------------------- */

/*
 * A valid status report: did the disarm take?  Caller holds dev->lock.
 * True when the unit still reports itself armed SMPLASER_DISARM_CONFIRM_MS
 * after the driver disarmed it (and no ARM of ours is in flight): the
 * caller then calls smplaser_disarm_escalate().
 */
bool smplaser_disarm_report_locked(struct smplaser_dev *dev, bool armed_state)
{
	unsigned long confirm = msecs_to_jiffies(SMPLASER_DISARM_CONFIRM_MS);

	if (!dev->disarm_want)
		return false;
	if (!armed_state) {
		dev->disarm_want = false;
		dev->disarm_failed = false;
		dev->disarm_epoch++;		/* a recovery under way is stale */
		return false;
	}
	if (dev->armed || dev->arm_pending ||
	    time_before(jiffies, dev->disarm_sent + confirm))
		return false;
	dev->disarm_sent = jiffies;	/* once a CONFIRM_MS at most */
	return true;
}

/*
 * Start the recovery of a failed request, at most once a back-off.  Queued
 * under dev->lock, where GONE is tested: see smplaser_set_gone().
 */
static void smplaser_disarm_recover(struct smplaser_dev *dev, int error)
{
	unsigned long delay = 0;
	unsigned long irqflags;

	WRITE_ONCE(dev->disarm_error, error);
	spin_lock_irqsave(&dev->lock, irqflags);
	if (dev->disarm_failed) {
		unsigned long next = dev->disarm_failed_jiffies +
			msecs_to_jiffies(SMPLASER_DISARM_BACKOFF_MS);

		if (time_before(jiffies, next))
			delay = next - jiffies;
	}
	if (!smplaser_gone(dev))
		queue_delayed_work(system_highpri_wq, &dev->disarm_work, delay);
	spin_unlock_irqrestore(&dev->lock, irqflags);
}

/* Acknowledged but still armed: the recovery, as for a failed request. */
void smplaser_disarm_escalate(struct smplaser_dev *dev)
{
	dev_warn_ratelimited(&dev->intf->dev,
			     "still armed %u ms after the disarm: trying again\n",
			     SMPLASER_DISARM_CONFIRM_MS);
	smplaser_disarm_recover(dev, 0);
}

static void smplaser_disarm_complete(struct urb *urb)
{
	struct smplaser_dev *dev = urb->context;
	int status = urb->status;

	clear_bit(SMPLASER_FLAG_DISARM_BUSY, &dev->flags);
	/* Order the clear before the test: pairs with disarm_submit(). */
	smp_mb__after_atomic();

	switch (status) {
	case 0:			/* acknowledged: the reports will tell */
		break;
	case -ENOENT:		/* poisoned: disconnect() */
	case -ESHUTDOWN:	/* device or host controller gone */
	case -ENODEV:
		return;
	default:		/* -EPIPE, -EPROTO, -ECONNRESET (timed out) ... */
		dev_warn_ratelimited(&dev->intf->dev,
				     "disarm request failed: %d\n", status);
		smplaser_disarm_recover(dev, status);
		break;
	}
	if (test_bit(SMPLASER_FLAG_DISARM_AGAIN, &dev->flags))
		smplaser_disarm_submit(dev);
}

/* Send SMPL_REQ_DISARM; any context. */
void smplaser_disarm_submit(struct smplaser_dev *dev)
{
	unsigned long timeout = msecs_to_jiffies(SMPLASER_DISARM_TIMEOUT_MS);
	unsigned long irqflags;
	int ret;

	set_bit(SMPLASER_FLAG_DISARM_AGAIN, &dev->flags);
	if (test_and_set_bit(SMPLASER_FLAG_DISARM_BUSY, &dev->flags))
		return;
	clear_bit(SMPLASER_FLAG_DISARM_AGAIN, &dev->flags);

	WRITE_ONCE(dev->disarm_deadline, jiffies + timeout);
	ret = usb_submit_urb(dev->disarm_urb, GFP_ATOMIC);
	if (ret) {
		clear_bit(SMPLASER_FLAG_DISARM_BUSY, &dev->flags);
		if (ret == -EPERM || ret == -ENODEV)
			return;		/* poisoned or gone: disconnect() */
		dev_err_ratelimited(&dev->intf->dev,
				    "cannot submit disarm: %d\n", ret);
		smplaser_disarm_recover(dev, ret);
		return;
	}
	/* Under dev->lock, where GONE is tested: see smplaser_set_gone(). */
	spin_lock_irqsave(&dev->lock, irqflags);
	if (!smplaser_gone(dev))
		mod_delayed_work(system_highpri_wq, &dev->disarm_timeout_work,
				 timeout);
	spin_unlock_irqrestore(&dev->lock, irqflags);
}

/* A request still in flight after its time: unlink it (-ECONNRESET). */
static void smplaser_disarm_timeout(struct work_struct *work)
{
	struct smplaser_dev *dev = container_of(to_delayed_work(work),
						struct smplaser_dev,
						disarm_timeout_work);
	unsigned long deadline = READ_ONCE(dev->disarm_deadline);

	if (!test_bit(SMPLASER_FLAG_DISARM_BUSY, &dev->flags))
		return;
	if (time_before(jiffies, deadline)) {
		/* A newer request: wait for its own deadline. */
		mod_delayed_work(system_highpri_wq, &dev->disarm_timeout_work,
				 deadline - jiffies);
		return;
	}
	dev_warn_ratelimited(&dev->intf->dev,
			     "disarm request did not complete in %u ms\n",
			     SMPLASER_DISARM_TIMEOUT_MS);
	usb_unlink_urb(dev->disarm_urb);
}

/*
 * Tell the reader that nothing took: the unit does not obey the driver.
 * Not when the episode the recovery began in has ended meanwhile (a report
 * showed the unit disarmed, or the driver armed it again): @epoch.
 */
static void smplaser_disarm_failed(struct smplaser_dev *dev, int ctrl,
				   int cmd, unsigned int tries,
				   unsigned int epoch)
{
	struct smplaser_event ev = { .type = SMPLASER_EV_DISARM_FAILED };
	unsigned long irqflags;
	bool tell;

	spin_lock_irqsave(&dev->lock, irqflags);
	if (dev->disarm_epoch != epoch) {
		spin_unlock_irqrestore(&dev->lock, irqflags);
		return;
	}
	tell = !dev->disarm_failed;
	dev->disarm_failed = true;
	dev->disarm_failed_jiffies = jiffies;
	if (tell) {
		ev.disarm_failed.control_error = ctrl;
		ev.disarm_failed.command_error = cmd;
		ev.disarm_failed.interlocks = dev->status.interlocks;
		ev.disarm_failed.state = dev->status.state;
		ev.disarm_failed.tries = tries;
		smplaser_event_locked(dev, &ev);
	}
	spin_unlock_irqrestore(&dev->lock, irqflags);
	if (tell)
		dev_err(&dev->intf->dev,
			"disarm did not take: request %d after %u tries, DISARM command %d\n",
			ctrl, tries, cmd);
}

/*
 * The recovery is still wanted: the unit was not seen disarmed since, and
 * no ARM of ours has succeeded since (a new ARM ends the old episode).
 */
static bool smplaser_disarm_wanted(struct smplaser_dev *dev)
{
	bool want;

	spin_lock_irq(&dev->lock);
	want = dev->disarm_want && !dev->armed;
	spin_unlock_irq(&dev->lock);
	return want && !smplaser_gone(dev);
}

/*
 * After an acknowledged disarm attempt: true when a report shows the unit
 * disarmed within SMPLASER_DISARM_CONFIRM_MS, or when no report comes at
 * all (nothing says otherwise); false when the reports that came still
 * show it armed.
 */
bool smplaser_disarm_confirmed(struct smplaser_dev *dev)
{
	unsigned long end = jiffies +
		msecs_to_jiffies(SMPLASER_DISARM_CONFIRM_MS);
	unsigned int start, n;
	bool armed;

	spin_lock_irq(&dev->lock);
	start = dev->reports;
	spin_unlock_irq(&dev->lock);
	for (;;) {
		long left = time_before(jiffies, end) ? end - jiffies : 0;

		spin_lock_irq(&dev->lock);
		n = dev->reports;
		armed = smplaser_state_is_armed(dev->status.state);
		spin_unlock_irq(&dev->lock);
		if (n != start && !armed)
			return true;
		if (!left || smplaser_gone(dev))
			return n == start;
		wait_event_timeout(dev->report_wait,
				   READ_ONCE(dev->reports) != n ||
				   smplaser_gone(dev), left);
	}
}

/* A control transfer that failed on the wire (as when the cable goes). */
static bool smplaser_link_error(int error)
{
	return error == -EPROTO || error == -EILSEQ || error == -ETIME;
}

/*
 * The vendor request failed, or the unit acknowledged it and stayed armed
 * (disarm_error 0): send it again, synchronously and bounded, then the
 * bulk DISARM command.
 */
static void smplaser_disarm_retry(struct work_struct *work)
{
	struct smplaser_dev *dev = container_of(to_delayed_work(work),
						struct smplaser_dev,
						disarm_work);
	int ctrl = READ_ONCE(dev->disarm_error);
	unsigned int tries = 1, epoch;
	int cmd = -ENODEV;

	spin_lock_irq(&dev->lock);
	epoch = dev->disarm_epoch;
	spin_unlock_irq(&dev->lock);
	while (tries < SMPLASER_DISARM_TRIES) {
		if (!smplaser_disarm_wanted(dev))
			return;
		tries++;
		ctrl = usb_control_msg(dev->udev,
				       usb_sndctrlpipe(dev->udev, 0),
				       SMPL_REQ_DISARM,
				       USB_DIR_OUT | USB_TYPE_VENDOR |
				       USB_RECIP_INTERFACE, 0, dev->ifnum,
				       NULL, 0, SMPLASER_DISARM_TIMEOUT_MS);
		if (ctrl == -ENODEV || ctrl == -ESHUTDOWN)
			return;
		if (ctrl >= 0 && smplaser_disarm_confirmed(dev))
			return;
	}
	if (!smplaser_disarm_wanted(dev))
		return;

	/* The last resort, behind whatever command holds the lock. */
	mutex_lock(&dev->io_mutex);
	if (!dev->disconnected)
		cmd = smplaser_command(dev, SMPL_OP_DISARM, NULL, 0, NULL, 0);
	mutex_unlock(&dev->io_mutex);
	if (cmd == -ENODEV)
		return;
	if (!cmd && smplaser_disarm_confirmed(dev)) {
		dev_warn(&dev->intf->dev,
			 "disarm request failed (%d); the DISARM command took\n",
			 ctrl);
		return;
	}
	/*
	 * Errors of the link itself are what a pulled cable gives until the hub
	 * sees the unit leave: give the disconnect its moment; the reader then
	 * gets the disconnect record, not a disarm that did not take.
	 */
	if (smplaser_link_error(ctrl) &&
	    (wait_event_timeout(dev->report_wait,
				READ_ONCE(dev->disconnected) || smplaser_gone(dev),
				msecs_to_jiffies(SMPLASER_DISARM_GONE_MS)) ||
	     !smplaser_disarm_wanted(dev)))
		return;
	smplaser_disarm_failed(dev, ctrl, cmd, tries, epoch);
}

/* --- heartbeat watchdog ------------------------------------------------ */

static void smplaser_heartbeat_expired(struct work_struct *work)
{
	struct smplaser_dev *dev = container_of(to_delayed_work(work),
						struct smplaser_dev,
						heartbeat_work);
	unsigned long irqflags;
	bool disarm = false;

	spin_lock_irqsave(&dev->lock, irqflags);
	if (dev->armed) {
		if (time_before(jiffies, dev->hb_deadline)) {
			/* A HEARTBEAT moved the deadline meanwhile. */
			mod_delayed_work(system_highpri_wq, &dev->heartbeat_work,
					 dev->hb_deadline - jiffies);
		} else {
			smplaser_disarm_locked(dev, SMPLASER_DISARM_HEARTBEAT,
					       true);
			disarm = true;
		}
	}
	spin_unlock_irqrestore(&dev->lock, irqflags);

	if (disarm) {
		smplaser_disarm_submit(dev);
		dev_warn(&dev->intf->dev, "no heartbeat for %u ms: disarmed\n",
			 READ_ONCE(dev->heartbeat_ms));
	}
}

static void smplaser_heartbeat_arm_locked(struct smplaser_dev *dev)
{
	unsigned long delay = msecs_to_jiffies(READ_ONCE(dev->heartbeat_ms));

	dev->hb_deadline = jiffies + delay;
	mod_delayed_work(system_highpri_wq, &dev->heartbeat_work, delay);
}

/*
 * A HEARTBEAT ioctl.  Caller holds dev->lock.  While armed it moves the
 * deadline, unless the deadline has passed: then the watchdog's disarm is
 * due and a late HEARTBEAT must not cancel it.  True when it disarmed
 * (the caller then calls smplaser_disarm_submit()).
 */
bool smplaser_heartbeat_locked(struct smplaser_dev *dev)
{
	if (!dev->armed)
		return false;
	if (time_after_eq(jiffies, dev->hb_deadline)) {
		smplaser_disarm_locked(dev, SMPLASER_DISARM_HEARTBEAT, true);
		return true;
	}
	smplaser_heartbeat_arm_locked(dev);
	return false;
}

/* --- status stream watchdog -------------------------------------------- */

/*
 * While armed, stream_work runs every SMPLASER_STREAM_CHECK_MS and counts
 * the checks in a row that ran on time and saw no new valid report.  It
 * disarms when the silence has lasted SMPLASER_STREAM_TIMEOUT_MS and the
 * driver itself was running all that while: a check that runs late (the
 * host stalled, e.g. a virtual machine descheduled) starts the count
 * again, since the unit had no chance to be heard either.
 */
static void smplaser_stream_check(struct work_struct *work)
{
	struct smplaser_dev *dev = container_of(to_delayed_work(work),
						struct smplaser_dev,
						stream_work);
	unsigned long period = msecs_to_jiffies(SMPLASER_STREAM_CHECK_MS);
	unsigned long timeout = msecs_to_jiffies(SMPLASER_STREAM_TIMEOUT_MS);
	unsigned int need = SMPLASER_STREAM_TIMEOUT_MS / SMPLASER_STREAM_CHECK_MS;
	unsigned long irqflags, now = jiffies;
	bool disarm = false;

	spin_lock_irqsave(&dev->lock, irqflags);
	if (!dev->armed) {
		spin_unlock_irqrestore(&dev->lock, irqflags);
		return;
	}
	if (dev->reports != dev->stream_seen) {
		dev->stream_seen = dev->reports;
		dev->stream_quiet = 0;
	} else if (time_after(now, dev->stream_checked + 2 * period)) {
		dev->stream_quiet = 0;		/* we ran late: start again */
	} else if (dev->stream_quiet < UINT_MAX) {
		dev->stream_quiet++;
	}
	dev->stream_checked = now;
	if (dev->stream_quiet >= need &&
	    !time_before(now, dev->report_jiffies + timeout)) {
		smplaser_disarm_locked(dev, SMPLASER_DISARM_STATUS_SILENT, true);
		disarm = true;
	} else {
		mod_delayed_work(system_highpri_wq, &dev->stream_work, period);
	}
	spin_unlock_irqrestore(&dev->lock, irqflags);

	if (disarm) {
		smplaser_disarm_submit(dev);
		dev_warn(&dev->intf->dev,
			 "no valid status report for %u ms: disarmed\n",
			 jiffies_to_msecs(now - dev->report_jiffies));
	}
}

/*
 * ARM succeeded: the driver has the unit armed from now on, supervised by
 * both watchdogs.  Caller holds dev->lock.
 */
void smplaser_armed_locked(struct smplaser_dev *dev)
{
	unsigned long period = msecs_to_jiffies(SMPLASER_STREAM_CHECK_MS);

	dev->armed = true;
	dev->disarm_want = false;
	dev->disarm_failed = false;	/* a new episode */
	dev->disarm_epoch++;
	dev->interlock_disarmed = false;
	smplaser_heartbeat_arm_locked(dev);
	dev->stream_seen = dev->reports;
	dev->stream_quiet = 0;
	dev->stream_checked = jiffies;
	mod_delayed_work(system_highpri_wq, &dev->stream_work, period);
}

/* --- set-up and teardown ------------------------------------------------ */

int smplaser_disarm_init(struct smplaser_dev *dev)
{
	struct usb_ctrlrequest *req;

	req = kzalloc(sizeof(*req), GFP_KERNEL);
	dev->disarm_setup = req;
	dev->disarm_urb = usb_alloc_urb(0, GFP_KERNEL);
	if (!req || !dev->disarm_urb)
		return -ENOMEM;
	req->bRequestType = USB_DIR_OUT | USB_TYPE_VENDOR | USB_RECIP_INTERFACE;
	req->bRequest = SMPL_REQ_DISARM;
	req->wValue = 0;
	req->wIndex = cpu_to_le16(dev->ifnum);
	req->wLength = 0;
	usb_fill_control_urb(dev->disarm_urb, dev->udev,
			     usb_sndctrlpipe(dev->udev, 0), (u8 *)req, NULL, 0,
			     smplaser_disarm_complete, dev);
	return 0;
}

/* Works are set up before anything can queue them (probe's first step). */
void smplaser_disarm_init_work(struct smplaser_dev *dev)
{
	INIT_DELAYED_WORK(&dev->heartbeat_work, smplaser_heartbeat_expired);
	INIT_DELAYED_WORK(&dev->stream_work, smplaser_stream_check);
	INIT_DELAYED_WORK(&dev->disarm_timeout_work, smplaser_disarm_timeout);
	INIT_DELAYED_WORK(&dev->disarm_work, smplaser_disarm_retry);
}

/*
 * Queue no more work.  Set under dev->lock, and every queueing of a disarm
 * work from process context (release() and the DISARM ioctl, which may run
 * while disconnect() stops the works) tests it under that lock: one that
 * saw the flag clear has queued its work before the flag was set, so the
 * cancel_delayed_work_sync() after this finds it.  Tested without the lock
 * it left a window in which a work was queued after its cancel, to run
 * after the last kref_put() had freed the device.
 */
void smplaser_set_gone(struct smplaser_dev *dev)
{
	unsigned long irqflags;

	spin_lock_irqsave(&dev->lock, irqflags);
	set_bit(SMPLASER_FLAG_GONE, &dev->flags);
	spin_unlock_irqrestore(&dev->lock, irqflags);
}

/*
 * No more disarm requests or watchdogs (disconnect, probe failure).  The
 * URB is poisoned first, so nothing cancelled here can start a request
 * again; each work is cancelled after the ones that could queue it.
 */
void smplaser_disarm_stop(struct smplaser_dev *dev)
{
	smplaser_set_gone(dev);
	usb_poison_urb(dev->disarm_urb);
	cancel_delayed_work_sync(&dev->heartbeat_work);
	cancel_delayed_work_sync(&dev->stream_work);
	cancel_delayed_work_sync(&dev->disarm_timeout_work);
	cancel_delayed_work_sync(&dev->disarm_work);
}
