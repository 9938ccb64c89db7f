// SPDX-License-Identifier: GPL-2.0
/*
 * /dev/smplaserN: open (one opener), release (disarms), read/poll of event
 * records and the ioctls of include/uapi/smplaser.h.
 */
#include <linux/build_bug.h>
#include <linux/compat.h>
#include <linux/fs.h>
#include <linux/poll.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "compat.h"
#include "smplaser.h"

static_assert(sizeof(struct smplaser_info) == SMPLASER_INFO_SIZE);
static_assert(sizeof(struct smplaser_status) == SMPLASER_STATUS_SIZE);
static_assert(sizeof(struct smplaser_params) == SMPLASER_PARAMS_SIZE);
static_assert(sizeof(struct smplaser_event) == SMPLASER_EVENT_SIZE);
static_assert(sizeof(struct smplaser_info) % 8 == 0);
static_assert(sizeof(struct smplaser_status) % 8 == 0);
static_assert(sizeof(struct smplaser_params) % 8 == 0);
static_assert(sizeof(struct smplaser_event) % 8 == 0);
static_assert(sizeof(((struct smplaser_info *)0)->serial) >
	      sizeof(((struct smpl_info *)0)->serial));
static_assert(sizeof(((struct smplaser_info *)0)->model) >
	      sizeof(((struct smpl_info *)0)->model));
static_assert(SMPL_STATE_STANDBY == SMPLASER_STATE_STANDBY);
static_assert(SMPL_STATE_FAULT == SMPLASER_STATE_FAULT);
static_assert(SMPL_IL_SHUTTER == SMPLASER_IL_SHUTTER);
static_assert(sizeof(struct smplaser_ev_status) == SMPLASER_EV_PAYLOAD_SIZE);
static_assert(sizeof(struct smplaser_ev_interlock) == SMPLASER_EV_PAYLOAD_SIZE);
static_assert(sizeof(struct smplaser_ev_pulse) == SMPLASER_EV_PAYLOAD_SIZE);
static_assert(sizeof(struct smplaser_ev_fault) == SMPLASER_EV_PAYLOAD_SIZE);
static_assert(sizeof(struct smplaser_ev_overflow) == SMPLASER_EV_PAYLOAD_SIZE);
static_assert(sizeof(struct smplaser_ev_disarm) == SMPLASER_EV_PAYLOAD_SIZE);
static_assert(sizeof(struct smplaser_ev_disarm_failed) ==
	      SMPLASER_EV_PAYLOAD_SIZE);
static_assert(offsetof(struct smplaser_ev_disarm_failed, control_error) == 0);
static_assert(offsetof(struct smplaser_ev_disarm_failed, command_error) == 4);
static_assert(offsetof(struct smplaser_ev_disarm_failed, interlocks) == 8);
static_assert(offsetof(struct smplaser_ev_disarm_failed, state) == 10);
static_assert(offsetof(struct smplaser_ev_disarm_failed, tries) == 11);
static_assert(offsetof(struct smplaser_event, raw) == 16);
static_assert(SMPLASER_EV_DISARM_FAILED == 8);
/* smplaser_ioctl() copies _IOC_SIZE(cmd) bytes out of its union. */
static_assert(_IOC_SIZE(SMPLASER_IOC_GET_INFO) == sizeof(struct smplaser_info));
static_assert(_IOC_SIZE(SMPLASER_IOC_GET_STATUS) ==
	      sizeof(struct smplaser_status));
static_assert(_IOC_SIZE(SMPLASER_IOC_SET_PARAMS) ==
	      sizeof(struct smplaser_params));
static_assert(!(_IOC_DIR(SMPLASER_IOC_ARM) & _IOC_READ));
static_assert(!(_IOC_DIR(SMPLASER_IOC_DISARM) & _IOC_READ));
static_assert(!(_IOC_DIR(SMPLASER_IOC_HEARTBEAT) & _IOC_READ));
static_assert(!(_IOC_DIR(SMPLASER_IOC_ACK_FAULT) & _IOC_READ));

static int smplaser_open(struct inode *inode, struct file *file)
{
	struct smplaser_dev *dev;
	struct smplaser_event ev;

	dev = smplaser_get_by_minor(iminor(inode));
	if (!dev)
		return -ENODEV;
	if (test_and_set_bit(SMPLASER_FLAG_OPEN, &dev->flags)) {
		kref_put(&dev->kref, smplaser_delete);
		return -EBUSY;
	}

	/* A new opener starts with a fresh queue and the current status. */
	spin_lock_irq(&dev->lock);
	smplaser_queue_reset(&dev->events);
	dev->interlock_disarmed = false;
	if (dev->status.valid) {
		smplaser_event_status(&ev, &dev->status);
		smplaser_queue_push(&dev->events, &ev);
	}
	spin_unlock_irq(&dev->lock);

	file->private_data = dev;
	return stream_open(inode, file);
}

/* The opener is gone (last close, exit or crash): disarm at once. */
static int smplaser_release(struct inode *inode, struct file *file)
{
	struct smplaser_dev *dev = file->private_data;

	smplaser_disarm(dev, SMPLASER_DISARM_RELEASE, false);
	cancel_delayed_work_sync(&dev->heartbeat_work);
	clear_bit(SMPLASER_FLAG_OPEN, &dev->flags);
	kref_put(&dev->kref, smplaser_delete);
	return 0;
}

static bool smplaser_readable(struct smplaser_dev *dev)
{
	struct smplaser_event ev;
	bool ready;

	spin_lock_irq(&dev->lock);
	ready = smplaser_queue_peek(&dev->events, &ev) ||
		smplaser_queue_finished(&dev->events);
	spin_unlock_irq(&dev->lock);
	return ready;
}

/* Wait for a record; 0 when one is there, else a negative errno. */
static int smplaser_wait_record(struct smplaser_dev *dev, struct file *file,
				struct smplaser_event *ev)
{
	for (;;) {
		bool got, finished;
		int ret;

		spin_lock_irq(&dev->lock);
		got = smplaser_queue_peek(&dev->events, ev);
		finished = smplaser_queue_finished(&dev->events);
		spin_unlock_irq(&dev->lock);
		if (got)
			return 0;
		if (finished)
			return -ENODEV;
		if (file->f_flags & O_NONBLOCK)
			return -EAGAIN;
		ret = wait_event_interruptible(dev->read_wait,
					       smplaser_readable(dev));
		if (ret)
			return ret;
	}
}

static ssize_t smplaser_read(struct file *file, char __user *buf,
			     size_t count, loff_t *ppos)
{
	struct smplaser_dev *dev = file->private_data;
	struct smplaser_event ev;
	size_t done = 0;
	int ret;

	if (count < sizeof(ev))
		return -EINVAL;
	if (file->f_flags & O_NONBLOCK) {
		if (!mutex_trylock(&dev->read_mutex))
			return -EAGAIN;	/* another thread is reading */
	} else {
		ret = mutex_lock_interruptible(&dev->read_mutex);
		if (ret)
			return ret;
	}

	while (count - done >= sizeof(ev)) {
		if (done) {
			/* More records only if they are already there. */
			if (!smplaser_readable(dev))
				break;
		}
		ret = smplaser_wait_record(dev, file, &ev);
		if (ret)
			break;
		if (copy_to_user(buf + done, &ev, sizeof(ev))) {
			ret = -EFAULT;
			break;
		}
		/* Taken only once it reached the reader. */
		spin_lock_irq(&dev->lock);
		smplaser_queue_consume(&dev->events, &ev);
		spin_unlock_irq(&dev->lock);
		done += sizeof(ev);
	}
	mutex_unlock(&dev->read_mutex);
	return done ? done : ret;
}

static __poll_t smplaser_poll(struct file *file, poll_table *wait)
{
	struct smplaser_dev *dev = file->private_data;
	struct smplaser_event ev;
	__poll_t mask = 0;

	poll_wait(file, &dev->read_wait, wait);
	spin_lock_irq(&dev->lock);
	if (smplaser_queue_peek(&dev->events, &ev))
		mask |= EPOLLIN | EPOLLRDNORM;
	else if (smplaser_queue_finished(&dev->events))
		mask |= EPOLLHUP | EPOLLERR;
	spin_unlock_irq(&dev->lock);
	return mask;
}

/* --- ioctls ------------------------------------------------------------ */

/*
 * The ioctls below fill or read a struct in kernel memory; smplaser_ioctl()
 * copies it from and to userspace outside io_mutex.
 */
static void smplaser_get_info(struct smplaser_dev *dev,
			      struct smplaser_info *info)
{
	*info = dev->info;
	spin_lock_irq(&dev->lock);	/* see heartbeat_ms_store() */
	info->heartbeat_ms = dev->heartbeat_ms;
	spin_unlock_irq(&dev->lock);
	info->reserved = 0;
}

static long smplaser_get_status(struct smplaser_dev *dev,
				struct smplaser_status *out)
{
	struct smplaser_unit_status st;
	int ret;

	ret = smplaser_query_status(dev, &st);
	if (ret)
		return ret;

	memset(out, 0, sizeof(*out));
	out->state = st.state;
	out->fault = st.fault;
	out->interlocks = st.interlocks;
	out->flags = st.flags;
	out->shot_count = st.shot_count;
	out->last_energy_uj = st.last_energy_uj;
	out->rtc_s = st.rtc_s;
	spin_lock_irq(&dev->lock);
	if (dev->armed)
		out->driver_flags |= SMPLASER_DF_ARMED;
	spin_unlock_irq(&dev->lock);
	return 0;
}

/* The driver's own check of parameters against the unit's limits. */
static bool smplaser_params_in_limits(const struct smplaser_info *info,
				      const struct smplaser_params *p)
{
	bool wavelength_ok = p->wavelength_nm &&
		(p->wavelength_nm == info->wavelength_nm[0] ||
		 p->wavelength_nm == info->wavelength_nm[1]);

	return wavelength_ok &&
	       p->spot_um >= info->min_spot_um &&
	       p->spot_um <= info->max_spot_um &&
	       p->fluence_mj_cm2 >= 1 &&
	       p->fluence_mj_cm2 <= info->max_fluence_mj_cm2 &&
	       p->pulse_ps >= info->min_pulse_ps &&
	       p->pulse_ps <= info->max_pulse_ps &&
	       p->rate_mhz >= 1 && p->rate_mhz <= info->max_rate_mhz;
}

/* @p: the caller's parameters in, the unit's echo out. */
static long smplaser_set_params(struct smplaser_dev *dev,
				struct smplaser_params *p)
{
	struct smpl_params w;
	int ret;

	if (p->reserved[0] || p->reserved[1])
		return -EINVAL;
	if (!smplaser_params_in_limits(&dev->info, p))
		return -ERANGE;

	w.wavelength_nm = cpu_to_le16(p->wavelength_nm);
	w.spot_um = cpu_to_le16(p->spot_um);
	w.fluence_mj_cm2 = cpu_to_le32(p->fluence_mj_cm2);
	w.pulse_ps = cpu_to_le32(p->pulse_ps);
	w.rate_mhz = cpu_to_le32(p->rate_mhz);
	ret = smplaser_command(dev, SMPL_OP_SET_PARAMS, &w, sizeof(w), &w,
			       sizeof(w));
	if (ret)
		return ret;

	memset(p, 0, sizeof(*p));
	p->wavelength_nm = le16_to_cpu(w.wavelength_nm);
	p->spot_um = le16_to_cpu(w.spot_um);
	p->fluence_mj_cm2 = le32_to_cpu(w.fluence_mj_cm2);
	p->pulse_ps = le32_to_cpu(w.pulse_ps);
	p->rate_mhz = le32_to_cpu(w.rate_mhz);
	return 0;
}

/* S1 at the driver: no ARM with an interlock open or a fault latched. */
static int smplaser_arm_refusal(struct smplaser_dev *dev,
				const struct smplaser_unit_status *st)
{
	if (st->interlocks) {
		dev_notice_ratelimited(&dev->intf->dev,
				       "ARM refused: interlocks open 0x%02x\n",
				       st->interlocks);
		return -EPERM;
	}
	if (st->fault || st->state == SMPL_STATE_FAULT) {
		dev_notice_ratelimited(&dev->intf->dev,
				       "ARM refused: fault %u latched\n",
				       st->fault);
		return -ENOTRECOVERABLE;
	}
	return 0;
}

/*
 * The status ARM is judged on: a valid status report younger than
 * SMPLASER_STATUS_FRESH_MS from a healthy stream, waited for up to
 * SMPLASER_STREAM_TIMEOUT_MS; never a bulk GET_STATUS, which would let a
 * unit whose status stream is dead be armed.  -EIO when none comes.
 */
static int smplaser_arm_status(struct smplaser_dev *dev,
			       struct smplaser_unit_status *st)
{
	unsigned long step = msecs_to_jiffies(SMPLASER_ARM_WAIT_STEP_MS);
	unsigned int waited;
	unsigned int seen;
	bool fresh;
	long ret;

	/*
	 * Each step ends at the next valid report or after a step's time;
	 * steps count, not wall time, so a host that stalls (a virtual
	 * machine descheduled) does not cost the unit its chance.
	 */
	for (waited = 0; ; waited += SMPLASER_ARM_WAIT_STEP_MS) {
		spin_lock_irq(&dev->lock);
		fresh = smplaser_stream_fresh_locked(dev);
		*st = dev->status;
		seen = dev->reports;
		spin_unlock_irq(&dev->lock);
		if (fresh)
			return 0;
		if (waited >= SMPLASER_STREAM_TIMEOUT_MS)
			break;
		ret = wait_event_interruptible_timeout(dev->report_wait,
						       READ_ONCE(dev->reports) != seen,
						       step);
		if (ret < 0)
			return ret;
	}
	dev_notice_ratelimited(&dev->intf->dev,
			       "ARM refused: no valid status report for %u ms\n",
			       SMPLASER_STREAM_TIMEOUT_MS);
	return -EIO;
}

/*
 * A reply that went wrong, or a wait a fatal signal ended: the unit may have
 * obeyed the command anyway.
 */
static bool smplaser_outcome_unknown(int ret)
{
	return ret == -ETIMEDOUT || ret == -EPROTO || ret == -EIO ||
	       ret == -EINTR;
}

static long smplaser_arm(struct smplaser_dev *dev)
{
	struct smplaser_unit_status st;
	bool disarm = false;
	int ret;

	ret = smplaser_arm_status(dev, &st);
	if (!ret)
		ret = smplaser_arm_refusal(dev, &st);
	if (ret)
		return ret;

	/*
	 * While the command is in flight, a report may show ARMING before the
	 * reply comes: arm_pending keeps that from counting as unexpected.
	 */
	spin_lock_irq(&dev->lock);
	dev->arm_pending = true;
	dev->arm_cancelled = false;
	dev->armed_seen = false;
	spin_unlock_irq(&dev->lock);
	ret = smplaser_command(dev, SMPL_OP_ARM, NULL, 0, NULL, 0);
	spin_lock_irq(&dev->lock);
	dev->arm_pending = false;
	if (!ret && dev->arm_cancelled) {
		/*
		 * Disarmed while arming: the disarm may have reached the unit
		 * before the ARM did.  Send it again, after the ARM.
		 */
		ret = -EPERM;
		disarm = true;
	} else if (!ret) {
		smplaser_armed_locked(dev);
	} else if (smplaser_outcome_unknown(ret)) {
		smplaser_disarm_locked(dev, SMPLASER_DISARM_UNEXPECTED, true);
		dev->unexpected_disarmed = true;
		disarm = true;
	}
	spin_unlock_irq(&dev->lock);
	if (disarm)
		smplaser_disarm_submit(dev);
	return ret;
}

/*
 * The vendor disarm request: at once, with no lock a command holds.  The
 * heartbeat watchdog is left queued: it does nothing once the unit is not
 * armed, and cancelling it here, outside io_mutex, could cancel the
 * watchdog of an ARM of another thread that succeeded in between.
 */
static void smplaser_disarm_request(struct smplaser_dev *dev)
{
	smplaser_disarm(dev, SMPLASER_DISARM_REQUEST, true);
}

static long smplaser_heartbeat(struct smplaser_dev *dev)
{
	bool late;

	spin_lock_irq(&dev->lock);
	late = smplaser_heartbeat_locked(dev);
	spin_unlock_irq(&dev->lock);
	if (late) {
		smplaser_disarm_submit(dev);
		dev_warn(&dev->intf->dev,
			 "HEARTBEAT after heartbeat_ms (%u): disarmed\n",
			 READ_ONCE(dev->heartbeat_ms));
	}
	return smplaser_command(dev, SMPL_OP_HEARTBEAT, NULL, 0, NULL, 0);
}

static long smplaser_ioctl(struct file *file, unsigned int cmd,
			   unsigned long arg)
{
	struct smplaser_dev *dev = file->private_data;
	void __user *uarg = (void __user *)arg;
	union {
		struct smplaser_info info;
		struct smplaser_status status;
		struct smplaser_params params;
	} u;
	long ret;

	switch (cmd) {
	case SMPLASER_IOC_GET_INFO:
	case SMPLASER_IOC_GET_STATUS:
		break;
	case SMPLASER_IOC_DISARM:
		/* Before the lock: a slow command must not delay it. */
		smplaser_disarm_request(dev);
		break;
	case SMPLASER_IOC_SET_PARAMS:
	case SMPLASER_IOC_ARM:
	case SMPLASER_IOC_HEARTBEAT:
	case SMPLASER_IOC_ACK_FAULT:
		/* Changing the unit's state takes an opening for writing. */
		if (!(file->f_mode & FMODE_WRITE))
			return -EBADF;
		break;
	default:
		return -ENOTTY;
	}

	/*
	 * User memory is read before io_mutex and written after it: a fault
	 * there may take any time (userfaultfd, FUSE), and disconnect() waits
	 * for io_mutex.
	 */
	if (cmd == SMPLASER_IOC_SET_PARAMS &&
	    copy_from_user(&u.params, uarg, sizeof(u.params)))
		return -EFAULT;

	ret = mutex_lock_interruptible(&dev->io_mutex);
	if (ret)
		return ret;
	if (dev->disconnected) {
		ret = -ENODEV;
		goto out;
	}

	switch (cmd) {
	case SMPLASER_IOC_GET_INFO:
		smplaser_get_info(dev, &u.info);
		ret = 0;
		break;
	case SMPLASER_IOC_GET_STATUS:
		ret = smplaser_get_status(dev, &u.status);
		break;
	case SMPLASER_IOC_SET_PARAMS:
		ret = smplaser_set_params(dev, &u.params);
		break;
	case SMPLASER_IOC_ARM:
		ret = smplaser_arm(dev);
		break;
	case SMPLASER_IOC_DISARM:
		ret = smplaser_command(dev, SMPL_OP_DISARM, NULL, 0, NULL, 0);
		break;
	case SMPLASER_IOC_HEARTBEAT:
		ret = smplaser_heartbeat(dev);
		break;
	case SMPLASER_IOC_ACK_FAULT:
		ret = smplaser_command(dev, SMPL_OP_ACK_FAULT, NULL, 0, NULL,
				       0);
		break;
	}
out:
	mutex_unlock(&dev->io_mutex);
	/* GET_INFO, GET_STATUS, SET_PARAMS: each filled its whole struct. */
	if (!ret && (_IOC_DIR(cmd) & _IOC_READ) &&
	    copy_to_user(uarg, &u, _IOC_SIZE(cmd)))
		ret = -EFAULT;
	return ret;
}

const struct file_operations smplaser_fops = {
	.owner = THIS_MODULE,
	.open = smplaser_open,
	.release = smplaser_release,
	.read = smplaser_read,
	.poll = smplaser_poll,
	.unlocked_ioctl = smplaser_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.llseek = smplaser_no_llseek,
};
