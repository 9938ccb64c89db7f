/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * smplaser character device ABI: /dev/smplaserN, one per laser unit.
 *
 * Shared by the kernel module (kmod/) and userspace (the daemon's kmod
 * backend, tests).  Every struct uses fixed-size types only, has explicit
 * padding and a size that is a multiple of 8, so 32-bit and 64-bit
 * userspace see the same layout (the driver uses compat_ptr_ioctl).
 *
 * Opening
 * -------
 * One opener at a time: a second open() fails with EBUSY.  Closing the
 * last reference to the open file (release) disarms the unit at once.
 *
 * ioctls
 * ------
 * Fields named reserved* in structs passed to the kernel must be zero
 * (EINVAL otherwise); the kernel zeroes them in structs it returns.
 * Unknown commands fail with ENOTTY.  The _IO commands ignore their
 * argument.  Errors common to all commands:
 *
 *   ENODEV     the unit was unplugged or the driver unbound
 *   ETIMEDOUT  the unit did not answer in time
 *   EPROTO     the unit's reply was malformed (length, CRC, sequence, op)
 *   EIO        other USB transport errors (stall, ...)
 *   EINTR      interrupted by a signal while waiting for the device lock
 *   EBADF      SET_PARAMS, ARM, HEARTBEAT or ACK_FAULT on a file not
 *              opened for writing (GET_INFO, GET_STATUS and DISARM work on
 *              any opening: disarming is always allowed)
 *
 * A reply to an earlier command that came after that command had timed
 * out is skipped (at most 4 in a row, by sequence number), so one late
 * reply costs one ETIMEDOUT, not every later command.
 *
 * The unit's own refusals map to:
 *
 *   EPERM            an interlock is open (SMPL_ST_INTERLOCK_OPEN)
 *   ENOTRECOVERABLE  a fault is latched (SMPL_ST_FAULT_LATCHED)
 *   ERANGE           a parameter is outside the unit's limits
 *   EBUSY            not allowed in the unit's current state
 *   EAGAIN           ACK_FAULT while the fault's cause persists
 *   ENODATA          ARM before SET_PARAMS
 *   EOPNOTSUPP       the unit does not know the command
 *
 * SMPLASER_IOC_GET_INFO    identity and limits read from the unit at probe
 * SMPLASER_IOC_GET_STATUS  asks the unit for its status now
 * SMPLASER_IOC_SET_PARAMS  sends parameters; the driver first checks them
 *                          against the unit's limits (ERANGE); on success
 *                          the struct holds the parameters the unit took
 * SMPLASER_IOC_ARM         arms the unit (ARMING, then READY after the
 *                          emission delay).  Judged on the unit's status
 *                          stream, never on a bulk GET_STATUS: the driver
 *                          waits up to SMPLASER_STREAM_TIMEOUT_MS for a
 *                          valid status report younger than 50 ms and
 *                          refuses with EIO when none comes or the stream
 *                          is failing (URB errors, malformed reports).  On
 *                          that report it refuses, without sending ARM,
 *                          with EPERM while any interlock is open and with
 *                          ENOTRECOVERABLE while a fault is latched.
 *                          Starts the heartbeat and status-stream
 *                          watchdogs.  When ARM fails with ETIMEDOUT,
 *                          EPROTO or EIO the unit may have obeyed: the
 *                          driver disarms it and queues a disarm record
 *                          (reason UNEXPECTED).  EPERM too when the driver
 *                          disarmed the unit while the ARM was in flight
 *                          (an interlock opened, a DISARM from another
 *                          thread): the driver sends the disarm again, so
 *                          the unit is not left armed whatever order the
 *                          two reached it in.
 * SMPLASER_IOC_DISARM      back to STANDBY.  The driver sends the unit's
 *                          vendor disarm request first, before it waits
 *                          for the device lock (a slow command may hold
 *                          it), then the DISARM command, whose result it
 *                          returns: EINTR from that wait means the disarm
 *                          request was sent, the command was not.
 * SMPLASER_IOC_HEARTBEAT   proves the opener is alive; forwarded to the unit
 *                          (feeds its own watchdog).  While armed, the
 *                          driver disarms when no HEARTBEAT came for
 *                          heartbeat_ms (sysfs; module parameter, default
 *                          500; above 0 and below the unit's watchdog_ms).
 *                          A HEARTBEAT that comes after heartbeat_ms has
 *                          passed does not cancel that disarm: it disarms
 *                          at once (reason HEARTBEAT).
 * SMPLASER_IOC_ACK_FAULT   acknowledges a latched fault
 *
 * The driver also disarms by itself, from the interrupt path, when a status
 * report shows an interlock open (emergency stop included) while the unit
 * is armed, or shows the unit armed (ARMING, READY, EMITTING) when the
 * driver has not armed it and no ARM is in progress (an ARM that failed
 * with ETIMEDOUT or EPROTO may still have reached the unit); while armed,
 * when the status stream fails (URB errors: STATUS_LOST), goes silent (no
 * valid report for SMPLASER_STREAM_TIMEOUT_MS: STATUS_SILENT) or garbled
 * (SMPLASER_BAD_REPORTS_MAX malformed reports in a row: STATUS_GARBLED);
 * and on unplug or unbind.  When the unit leaves the armed states by
 * itself (idle timeout, a fault) the driver no longer counts it armed.
 * Silence is counted in the driver's own running time: a check that runs
 * late because the host stalled starts the count again, so the unit is
 * given SMPLASER_STREAM_TIMEOUT_MS in which it could have been heard.
 *
 * How a disarm is sent: the vendor request SMPL_REQ_DISARM, from a URB
 * submitted without sleeping, bounded to SMPLASER_DISARM_TIMEOUT_MS (a
 * request that hangs is unlinked); a request that fails (stall, error,
 * timeout) is tried again, up to SMPLASER_DISARM_TRIES in all, then the
 * bulk DISARM command is sent.  When none of them took, the reader gets a
 * SMPLASER_EV_DISARM_FAILED record: the unit may still be armed and does
 * not obey the driver; treat it as a fault of the unit.  The driver keeps
 * trying while the unit reports itself armed.
 *
 * Suspend, resume and reset: the driver has no suspend, resume, pre_reset
 * or post_reset callbacks, on purpose.  The USB core unbinds it before a
 * system sleep and before a device reset (usbfs USBDEVFS_RESET, error
 * recovery), which is an unplug for the opener: the unit is disarmed,
 * the reader gets SMPLASER_EV_DISCONNECT then ENODEV, and the unit comes
 * back as a new /dev/smplaserN when the core binds the driver again.  The
 * device is never runtime-suspended while the driver is bound.
 *
 * read()
 * ------
 * Returns whole struct smplaser_event records, as many as fit in the
 * buffer (EINVAL if it cannot hold one).  Blocks until one is available
 * unless O_NONBLOCK (EAGAIN).  poll() reports EPOLLIN when a record is
 * available.  The queue is bounded: when it is full, further events are
 * counted, not queued, and the reader gets one SMPLASER_EV_OVERFLOW record
 * with the number lost after the records queued before the loss; the seq
 * field counts lost events too.  The first record after open() is a
 * SMPLASER_EV_STATUS snapshot of the last status report (if any).  After
 * an unplug the reader gets the remaining records, then one
 * SMPLASER_EV_DISCONNECT record, then ENODEV; poll() then reports
 * EPOLLHUP | EPOLLERR.
 */
#ifndef _UAPI_SMPLASER_H
#define _UAPI_SMPLASER_H

#include <linux/ioctl.h>
#include <linux/types.h>

/* Unit states, same values as enum smpl_state of the wire protocol. */
#define SMPLASER_STATE_OFF		0
#define SMPLASER_STATE_SELF_TEST	1
#define SMPLASER_STATE_STANDBY		2
#define SMPLASER_STATE_ARMING		3
#define SMPLASER_STATE_READY		4
#define SMPLASER_STATE_EMITTING		5
#define SMPLASER_STATE_FAULT		6

/* Interlock bits, same values as SMPL_IL_*: a set bit means OPEN. */
#define SMPLASER_IL_KEY			(1U << 0)
#define SMPLASER_IL_DOOR		(1U << 1)
#define SMPLASER_IL_ESTOP		(1U << 2)
#define SMPLASER_IL_HANDPIECE		(1U << 3)
#define SMPLASER_IL_COOLING		(1U << 4)
#define SMPLASER_IL_TEMPERATURE		(1U << 5)
#define SMPLASER_IL_SHUTTER		(1U << 6)

/* struct smplaser_status.driver_flags */
/* The driver armed the unit and supervises it (heartbeat, interlocks). */
#define SMPLASER_DF_ARMED		(1U << 0)

/* SMPLASER_IOC_GET_INFO, 80 bytes.  Strings are NUL-terminated. */
struct smplaser_info {
	char  serial[20];
	char  model[20];
	__u8  fw_major;
	__u8  fw_minor;
	__u8  fw_patch;
	__u8  flags;			/* SMPL_INFO_* of the wire protocol */
	__u16 wavelength_nm[2];		/* [1] is 0 on single-wavelength units */
	__u32 max_fluence_mj_cm2;
	__u16 min_spot_um;
	__u16 max_spot_um;
	__u32 min_pulse_ps;
	__u32 max_pulse_ps;
	__u32 max_rate_mhz;
	__u16 watchdog_ms;		/* the unit's own host watchdog */
	__u16 emission_delay_ms;
	__u32 heartbeat_ms;		/* the driver's heartbeat watchdog */
	__u32 reserved;
};

/* SMPLASER_IOC_GET_STATUS, 40 bytes */
struct smplaser_status {
	__u8  state;			/* SMPLASER_STATE_* */
	__u8  fault;			/* enum smpl_fault, 0 = none */
	__u16 interlocks;		/* SMPLASER_IL_* open */
	__u8  flags;			/* SMPL_SF_* of the wire protocol */
	__u8  reserved0;
	__u16 reserved1;
	__u32 shot_count;
	__u32 last_energy_uj;
	__s64 rtc_s;			/* the unit's RTC, seconds since the epoch */
	__u32 driver_flags;		/* SMPLASER_DF_* */
	__u32 reserved2;
	__u64 reserved3;
};

/* SMPLASER_IOC_SET_PARAMS (in and out), 24 bytes */
struct smplaser_params {
	__u16 wavelength_nm;
	__u16 spot_um;
	__u32 fluence_mj_cm2;
	__u32 pulse_ps;
	__u32 rate_mhz;
	__u32 reserved[2];		/* must be zero */
};

#define SMPLASER_IOC_MAGIC	0xB8

#define SMPLASER_IOC_GET_INFO	_IOR(SMPLASER_IOC_MAGIC, 0x01, struct smplaser_info)
#define SMPLASER_IOC_GET_STATUS	_IOR(SMPLASER_IOC_MAGIC, 0x02, struct smplaser_status)
#define SMPLASER_IOC_SET_PARAMS	_IOWR(SMPLASER_IOC_MAGIC, 0x03, struct smplaser_params)
#define SMPLASER_IOC_ARM	_IO(SMPLASER_IOC_MAGIC, 0x04)
#define SMPLASER_IOC_DISARM	_IO(SMPLASER_IOC_MAGIC, 0x05)
#define SMPLASER_IOC_HEARTBEAT	_IO(SMPLASER_IOC_MAGIC, 0x06)
#define SMPLASER_IOC_ACK_FAULT	_IO(SMPLASER_IOC_MAGIC, 0x07)

/* Event record types */
#define SMPLASER_EV_STATUS	1	/* state or status flags changed */
#define SMPLASER_EV_INTERLOCK	2	/* interlock bits changed */
#define SMPLASER_EV_PULSE	3	/* one pulse, with its measured energy */
#define SMPLASER_EV_FAULT	4	/* a fault latched */
#define SMPLASER_EV_OVERFLOW	5	/* events were lost: queue full */
#define SMPLASER_EV_DISCONNECT	6	/* unit unplugged or driver unbound */
#define SMPLASER_EV_DISARM	7	/* the driver disarmed the unit */
#define SMPLASER_EV_DISARM_FAILED 8	/* a disarm did not take: unit fault */

/* struct smplaser_ev_disarm.reason */
#define SMPLASER_DISARM_REQUEST		1	/* SMPLASER_IOC_DISARM */
#define SMPLASER_DISARM_RELEASE		2	/* the opener closed the device */
#define SMPLASER_DISARM_HEARTBEAT	3	/* no HEARTBEAT for heartbeat_ms */
#define SMPLASER_DISARM_INTERLOCK	4	/* an interlock opened while armed */
#define SMPLASER_DISARM_STATUS_LOST	5	/* status reports failed while armed */
/* The unit is armed but the driver did not arm it (an ARM that failed). */
#define SMPLASER_DISARM_UNEXPECTED	6
/* No valid status report for SMPLASER_STREAM_TIMEOUT_MS while armed. */
#define SMPLASER_DISARM_STATUS_SILENT	7
/* SMPLASER_BAD_REPORTS_MAX malformed reports in a row while armed. */
#define SMPLASER_DISARM_STATUS_GARBLED	8

/* The status stream's bounds (reports come every 8 ms). */
#define SMPLASER_STREAM_TIMEOUT_MS	100
#define SMPLASER_BAD_REPORTS_MAX	4
/* Each vendor disarm request; tries before the bulk DISARM command. */
#define SMPLASER_DISARM_TIMEOUT_MS	100
#define SMPLASER_DISARM_TRIES		3

struct smplaser_ev_status {
	__u8  state;
	__u8  fault;
	__u16 interlocks;
	__u8  flags;
	__u8  reserved0[3];
	__u32 shot_count;
	__u32 last_energy_uj;
	__u64 reserved1;
};

struct smplaser_ev_interlock {
	__u16 interlocks;		/* now open */
	__u16 changed;			/* bits that changed */
	__u32 reserved[5];
};

struct smplaser_ev_pulse {
	__u32 shot;			/* the unit's shot counter after this pulse */
	__u32 measured_uj;
	__u32 set_uj;
	__u32 reserved[3];
};

struct smplaser_ev_fault {
	__u8  fault;			/* enum smpl_fault */
	__u8  state;
	__u16 reserved0;
	__u32 reserved[5];
};

struct smplaser_ev_overflow {
	__u32 lost;			/* events lost */
	__u32 reserved[5];
};

struct smplaser_ev_disarm {
	__u32 reason;			/* SMPLASER_DISARM_* */
	__u16 interlocks;		/* open at that time */
	__u8  state;			/* last reported state */
	__u8  reserved0;
	__u32 reserved[4];
};

/*
 * SMPLASER_EV_DISARM_FAILED: every vendor disarm request and the bulk
 * DISARM command failed.  Errors are negative errnos of the last attempt
 * of each (e.g. -EPIPE: the unit stalled it, -ECONNRESET: it never
 * completed, -ETIMEDOUT: no reply to the command).
 */
struct smplaser_ev_disarm_failed {
	__s32 control_error;		/* the last vendor request's */
	__s32 command_error;		/* the bulk DISARM command's */
	__u16 interlocks;		/* open at that time */
	__u8  state;			/* last reported state */
	__u8  tries;			/* vendor requests sent */
	__u32 reserved[3];
};

/* One record from read(), 40 bytes */
struct smplaser_event {
	__u64 time_ns;			/* CLOCK_MONOTONIC */
	__u32 seq;			/* +1 per event, lost ones included */
	__u16 type;			/* SMPLASER_EV_* */
	__u16 reserved;
	union {
		struct smplaser_ev_status status;
		struct smplaser_ev_interlock interlock;
		struct smplaser_ev_pulse pulse;
		struct smplaser_ev_fault fault;
		struct smplaser_ev_overflow overflow;
		struct smplaser_ev_disarm disarm;
		struct smplaser_ev_disarm_failed disarm_failed;
		__u8 raw[24];
	};
};

#define SMPLASER_INFO_SIZE	80
#define SMPLASER_STATUS_SIZE	40
#define SMPLASER_PARAMS_SIZE	24
#define SMPLASER_EVENT_SIZE	40
#define SMPLASER_EV_PAYLOAD_SIZE 24	/* each member of the union */

#endif /* _UAPI_SMPLASER_H */
