/* SPDX-License-Identifier: GPL-2.0 */
/*
 * smplaser.ko internals: one struct smplaser_dev per bound unit.
 *
 * Lifetime follows drivers/usb/usb-skeleton.c: the struct is reference
 * counted (kref); probe holds one reference until disconnect, every open
 * file holds one until release.  io_mutex serialises bulk commands and
 * guards "disconnected" against disconnect(); lock (a spinlock, taken from
 * URB completions) guards the status cache, the armed flag, the stream's
 * health, the heartbeat deadline and the event queue.  Nothing that
 * disarms waits for io_mutex except the last resort of a failed disarm
 * (the bulk DISARM, from its own work item or from disconnect(), each
 * after the vendor request went out without waiting).
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
#define SMPLASER_STATUS_FRESH_MS	50	/* ARM needs a report younger than this */
#define SMPLASER_STALE_REPLIES_MAX	4	/* late replies skipped per command */
#define SMPLASER_DISARM_BACKOFF_MS	1000	/* between two failed recoveries */
#define SMPLASER_STREAM_CHECK_MS	20	/* the silence watchdog's period */
#define SMPLASER_ARM_WAIT_STEP_MS	10	/* ARM waits for a report in steps */
#define SMPLASER_DISARM_CONFIRM_MS	200	/* a report must show it disarmed */
#define SMPLASER_DISARM_GONE_MS	500	/* link errors: the unplug shows by then */

/* Bits in smplaser_dev.flags */
enum {
	SMPLASER_FLAG_OPEN,		/* an opener holds the device */
	SMPLASER_FLAG_DISARM_BUSY,	/* the disarm control URB is in flight */
	SMPLASER_FLAG_DISARM_AGAIN,	/* another disarm was asked meanwhile */
	SMPLASER_FLAG_INT_HALTED,	/* the interrupt endpoint stalled */
	SMPLASER_FLAG_GONE,		/* disconnect() started: queue no work */
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
	unsigned int int_errors;	/* consecutive failed completions (lock) */
	unsigned int bad_reports;	/* consecutive malformed reports (lock) */
	unsigned long report_jiffies;	/* the last valid report (lock) */
	unsigned int reports;		/* valid reports so far (lock) */
	wait_queue_head_t report_wait;	/* ARM waits here for a fresh report */
	struct delayed_work int_retry_work;
	struct delayed_work stream_work; /* silence watchdog while armed */
	unsigned int stream_seen;	/* "reports" at the last check (lock) */
	unsigned int stream_quiet;	/* on-time checks in a row with none */
	unsigned long stream_checked;	/* jiffies of the last check */

	/*
	 * Vendor request SMPL_REQ_DISARM, preallocated for atomic context,
	 * bounded by disarm_timeout_work; disarm_work retries it and falls
	 * back to the bulk DISARM (disarm.c).
	 */
	struct urb *disarm_urb;
	struct usb_ctrlrequest *disarm_setup;
	unsigned long disarm_deadline;	/* jiffies: unlink the URB after */
	int disarm_error;		/* the failed URB's status */
	unsigned long disarm_failed_jiffies; /* the last failed recovery */
	bool disarm_failed;		/* ... and it is not yet undone (lock) */
	bool disarm_want;		/* disarmed; no report has shown it yet */
	unsigned int disarm_epoch;	/* +1 when an episode ends (lock) */
	unsigned long disarm_sent;	/* jiffies: when, or the last escalation */
	struct delayed_work disarm_timeout_work;
	struct delayed_work disarm_work;

	/* The unit, as GET_INFO described it at probe. */
	struct smplaser_info info;
	unsigned int heartbeat_ms;
	unsigned long hb_deadline;	/* jiffies: disarm when no HEARTBEAT (lock) */
	struct delayed_work heartbeat_work;

	spinlock_t lock;		/* status, armed, events: see above */
	struct smplaser_unit_status status;
	unsigned long status_jiffies;	/* when that report came */
	bool armed;			/* ARM succeeded, no disarm since */
	bool armed_seen;		/* ... and a report showed it armed */
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

/* main.c: fault injection (debug kernels with CONFIG_FAULT_INJECTION_DEBUG_FS) */
bool smplaser_should_fail_int_submit(void);

/* usb.c */
extern struct usb_driver smplaser_driver;
void smplaser_delete(struct kref *kref);
int smplaser_command(struct smplaser_dev *dev, u8 op, const void *arg,
		     u16 arg_len, void *reply, u16 reply_len);
int smplaser_query_status(struct smplaser_dev *dev,
			  struct smplaser_unit_status *st);
bool smplaser_state_is_armed(u8 state);
void smplaser_event_locked(struct smplaser_dev *dev, struct smplaser_event *ev);
bool smplaser_stream_fresh_locked(struct smplaser_dev *dev);

/* disarm.c: the disarm paths and the watchdogs that use them */
void smplaser_disarm(struct smplaser_dev *dev, u32 reason, bool event);
void smplaser_disarm_locked(struct smplaser_dev *dev, u32 reason, bool event);
void smplaser_disarm_submit(struct smplaser_dev *dev);
int smplaser_disarm_init(struct smplaser_dev *dev);
void smplaser_disarm_init_work(struct smplaser_dev *dev);
void smplaser_set_gone(struct smplaser_dev *dev);
void smplaser_disarm_stop(struct smplaser_dev *dev);
void smplaser_armed_locked(struct smplaser_dev *dev);
bool smplaser_disarm_report_locked(struct smplaser_dev *dev, bool armed_state);
void smplaser_disarm_escalate(struct smplaser_dev *dev);
bool smplaser_disarm_confirmed(struct smplaser_dev *dev);
bool smplaser_heartbeat_locked(struct smplaser_dev *dev);

/* chardev.c */
extern const struct file_operations smplaser_fops;

/* sysfs.c */
extern const struct attribute_group *smplaser_groups[];

#endif /* SMPLASER_KMOD_H */
