/* SPDX-License-Identifier: GPL-2.0 */
/*
 * smplaser.ko internals: one struct smplaser_dev per bound unit.
 *
 * Lifetime follows drivers/usb/usb-skeleton.c: the struct is reference
 * counted (kref); probe holds one reference until disconnect, every open
 * file holds one until release.  io_mutex serialises bulk commands and
 * guards "disconnected" against disconnect(); lock (a spinlock, taken from
 * URB completions) guards the status cache, the armed flag and the event
 * queue.
 */
#ifndef SMPLASER_KMOD_H
#define SMPLASER_KMOD_H

#include <linux/kref.h>
#include <linux/mutex.h>
#include <linux/spinlock.h>
#include <linux/types.h>
#include <linux/usb.h>
#include <linux/wait.h>
#include <linux/workqueue.h>

#include "smplaser-core.h"

#define SMPLASER_MAX_UNITS	16
#define SMPLASER_CMD_TIMEOUT_MS	500	/* each bulk stage of a command */
#define SMPLASER_CTRL_TIMEOUT_MS	200
#define SMPLASER_STATUS_FRESH_MS	50	/* a report younger is "the last status" */

/* Bits in smplaser_dev.flags */
enum {
	SMPLASER_FLAG_OPEN,		/* an opener holds the device */
	SMPLASER_FLAG_DISARM_BUSY,	/* the disarm control URB is in flight */
	SMPLASER_FLAG_DISARM_AGAIN,	/* another disarm was asked meanwhile */
	SMPLASER_FLAG_INT_HALTED,	/* the interrupt endpoint stalled */
};

struct smplaser_dev {
	struct kref kref;
	struct usb_device *udev;
	struct usb_interface *intf;
	u8 ifnum;
	int minor;
	struct device *node;		/* the class device behind /dev/smplaserN */
	unsigned long flags;		/* SMPLASER_FLAG_* */

	/* Bulk commands: one at a time, under io_mutex. */
	struct mutex io_mutex;
	bool disconnected;
	unsigned int bulk_in_pipe;
	unsigned int bulk_out_pipe;
	u8 *cmd_buf;
	u8 *reply_buf;
	size_t reply_size;
	u16 seq;

	/* Interrupt IN: status and pulse reports, always running while bound. */
	struct urb *int_urb;
	u8 *int_buf;
	unsigned int int_errors;	/* consecutive failed completions */
	struct delayed_work int_retry_work;

	/* Vendor request SMPL_REQ_DISARM, preallocated for atomic context. */
	struct urb *disarm_urb;
	struct usb_ctrlrequest *disarm_setup;

	/* The unit, as GET_INFO described it at probe. */
	struct smplaser_info info;
	unsigned int heartbeat_ms;
	struct delayed_work heartbeat_work;

	spinlock_t lock;		/* status, armed, events: see above */
	struct smplaser_unit_status status;
	unsigned long status_jiffies;	/* when that report came */
	bool armed;			/* ARM succeeded, no disarm since */
	bool arm_pending;		/* an ARM command is in flight */
	bool arm_cancelled;		/* ... and the driver disarmed meanwhile */
	bool interlock_disarmed;	/* disarm event sent for this opening */
	bool unexpected_disarmed;	/* ditto, for an armed state not ours */
	struct smplaser_queue events;
	wait_queue_head_t read_wait;
	struct mutex read_mutex;	/* one reader at a time */
};

/* main.c */
extern unsigned int smplaser_default_heartbeat_ms;
struct smplaser_dev *smplaser_get_by_minor(unsigned int minor);
int smplaser_register_node(struct smplaser_dev *dev);
void smplaser_unregister_node(struct smplaser_dev *dev);

/* usb.c */
extern struct usb_driver smplaser_driver;
void smplaser_delete(struct kref *kref);
int smplaser_command(struct smplaser_dev *dev, u8 op, const void *arg,
		     u16 arg_len, void *reply, u16 reply_len);
int smplaser_query_status(struct smplaser_dev *dev,
			  struct smplaser_unit_status *st);
void smplaser_disarm(struct smplaser_dev *dev, u32 reason, bool event);
void smplaser_disarm_locked(struct smplaser_dev *dev, u32 reason, bool event);
void smplaser_disarm_submit(struct smplaser_dev *dev);
void smplaser_heartbeat_restart(struct smplaser_dev *dev);
bool smplaser_state_is_armed(u8 state);

/* chardev.c */
extern const struct file_operations smplaser_fops;

/* sysfs.c */
extern const struct attribute_group *smplaser_groups[];

#endif /* SMPLASER_KMOD_H */
