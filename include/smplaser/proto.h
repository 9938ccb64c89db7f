/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * smplaser unit USB wire protocol, version 1.
 *
 * Shared by the kernel module, the daemon (libusb backend), the firmware
 * model and the FunctionFS gadget.  This header only declares layouts and
 * constants; it compiles in the kernel and in userspace (C11).
 *
 * USB device
 * ----------
 * VID 0x1209 (pid.codes), PID SMPL_USB_PID.  One vendor interface
 * (bInterfaceClass 0xff, subclass SMPL_USB_SUBCLASS, protocol
 * SMPL_PROTO_VERSION) with three endpoints, in this order:
 *
 *   bulk OUT       commands, one frame per transfer
 *   bulk IN        replies, one frame per transfer, same seq as the command
 *   interrupt IN   reports (status and pulse), one frame per transfer, every
 *                  SMPL_STATUS_PERIOD_MS and on every change
 *
 * Every endpoint's wMaxPacketSize must be at least SMPL_MAX_REPORT for the
 * interrupt endpoint and SMPL_MAX_FRAME for the bulk endpoints' transfers.
 *
 * Vendor control requests, addressed to the interface
 * (bmRequestType USB_TYPE_VENDOR | USB_RECIP_INTERFACE, wIndex = interface):
 *
 *   SMPL_REQ_GET_VERSION  IN,  wLength 4: struct smpl_version
 *   SMPL_REQ_DISARM       OUT, wLength 0: go to STANDBY now.  Needs no
 *                         frame and no sequence; the host may send it from
 *                         any context (e.g. an URB submitted atomically).
 *
 * Frames
 * ------
 * All fields little-endian, every frame starts with struct smpl_hdr:
 *
 *   off size field     meaning
 *   0   2    magic     SMPL_MAGIC
 *   2   1    version   SMPL_PROTO_VERSION
 *   3   1    op        enum smpl_op
 *   4   2    seq       commands: chosen by the host, echoed by the reply;
 *                      reports: the unit's own counter, +1 per report
 *   6   2    len       payload length in bytes, <= SMPL_MAX_PAYLOAD and
 *                      exactly the size the op defines
 *   8   2    status    replies: enum smpl_status; commands and reports: 0
 *   10  2    reserved  0
 *   12  4    crc       CRC-32 (IEEE 802.3, as zlib crc32() and the kernel's
 *                      ~crc32_le(~0, ...)) over bytes 0..11 then the payload
 *   16  len  payload
 *
 * A reply's op is the command's op | SMPL_OP_REPLY.  A reply with a non-zero
 * status carries no payload.
 */
#ifndef SMPLASER_PROTO_H
#define SMPLASER_PROTO_H

#include <linux/types.h>

#define SMPL_USB_VID			0x1209
#define SMPL_USB_PID			0x534c
#define SMPL_USB_SUBCLASS		0x01

#define SMPL_MAGIC			0x4c53	/* "SL" on the wire */
#define SMPL_PROTO_VERSION		1
#define SMPL_HDR_SIZE			16
#define SMPL_MAX_PAYLOAD		112
#define SMPL_MAX_FRAME			(SMPL_HDR_SIZE + SMPL_MAX_PAYLOAD)
#define SMPL_MAX_REPORT			64	/* largest interrupt frame */
#define SMPL_STATUS_PERIOD_MS		8

/* Vendor control requests (bRequest) */
#define SMPL_REQ_GET_VERSION		0x01
#define SMPL_REQ_DISARM			0x02

enum smpl_op {
	/* host -> unit, bulk OUT */
	SMPL_OP_GET_INFO	= 0x01,	/* -> struct smpl_info */
	SMPL_OP_SET_PARAMS	= 0x02,	/* struct smpl_params -> struct smpl_params */
	SMPL_OP_ARM		= 0x03,	/* -> empty */
	SMPL_OP_DISARM		= 0x04,	/* -> empty */
	SMPL_OP_HEARTBEAT	= 0x05,	/* -> empty */
	SMPL_OP_SELF_TEST	= 0x06,	/* -> empty */
	SMPL_OP_GET_RTC		= 0x07,	/* -> struct smpl_rtc */
	SMPL_OP_ACK_FAULT	= 0x08,	/* -> empty */
	SMPL_OP_GET_STATUS	= 0x09,	/* -> struct smpl_status_report */
	SMPL_OP_GET_PARAMS	= 0x0a,	/* -> struct smpl_params */

	/* unit -> host, interrupt IN */
	SMPL_OP_STATUS		= 0x40,	/* struct smpl_status_report */
	SMPL_OP_PULSE		= 0x41,	/* struct smpl_pulse_report */

	SMPL_OP_REPLY		= 0x80,	/* or'ed into a command's op */
};

enum smpl_status {
	SMPL_ST_OK		= 0,
	SMPL_ST_BAD_FRAME	= 1,	/* frame failed validation */
	SMPL_ST_UNKNOWN_OP	= 2,
	SMPL_ST_BAD_STATE	= 3,	/* not allowed in the current state */
	SMPL_ST_INTERLOCK_OPEN	= 4,	/* ARM with an interlock open */
	SMPL_ST_FAULT_LATCHED	= 5,	/* ARM/SET_PARAMS while in FAULT */
	SMPL_ST_OUT_OF_RANGE	= 6,	/* parameter outside the unit's limits */
	SMPL_ST_CAUSE_PERSISTS	= 7,	/* ACK_FAULT while the cause remains */
	SMPL_ST_NO_PARAMS	= 8,	/* ARM before SET_PARAMS */
	SMPL_ST__MAX		= SMPL_ST_NO_PARAMS,
};

/*
 * The unit's states and its interlocks, one row each: the only tables of
 * their names.  The daemon (D-Bus), smplaserctl, the firmware model and the
 * kernel module (sysfs) all take them from here; a new interlock is a row
 * here and its cause in the firmware model.
 *
 *	X(id, value, name)		name: D-Bus, sysfs, smplaserctl
 */
#define SMPL_STATES(X)							\
	X(OFF,		0, "off")					\
	X(SELF_TEST,	1, "self-test")					\
	X(STANDBY,	2, "standby")					\
	X(ARMING,	3, "arming")	/* emission delay, indicator on */ \
	X(READY,	4, "ready")					\
	X(EMITTING,	5, "emitting")					\
	X(FAULT,	6, "fault")	/* latched until ACK_FAULT */

#define SMPL_STATE_ENUM_(id, value, name) SMPL_STATE_##id = (value),
enum smpl_state {
	SMPL_STATES(SMPL_STATE_ENUM_)
	SMPL_STATE__MAX = SMPL_STATE_FAULT,
};

/*
 * Interlock bits: a set bit means that interlock is OPEN (not safe).
 *
 *	X(id, bit, name, label)		label: the technician's word for it
 */
#define SMPL_INTERLOCKS(X)						\
	X(KEY,		0, "key",	  "key switch")	/* key switch off */	\
	X(DOOR,		1, "door",	  "remote interlock")	/* open */	\
	X(ESTOP,	2, "estop",	  "emergency stop")	/* pressed */	\
	X(HANDPIECE,	3, "handpiece",	  "handpiece")	/* disconnected */	\
	X(COOLING,	4, "cooling",	  "cooling")	/* coolant flow failed */ \
	X(TEMPERATURE,	5, "temperature", "temperature")	/* out of range */ \
	X(SHUTTER,	6, "shutter",	  "shutter")	/* not healthy */

#define SMPL_IL_ENUM_(id, bit, name, label) SMPL_IL_##id = 1u << (bit),
#define SMPL_IL_COUNT_(id, bit, name, label) + 1
enum smpl_interlock {
	SMPL_INTERLOCKS(SMPL_IL_ENUM_)
	SMPL_IL_COUNT = 0 SMPL_INTERLOCKS(SMPL_IL_COUNT_),
	SMPL_IL_ALL = (1u << SMPL_IL_COUNT) - 1,
};

/*
 * Fault codes (status report .fault; 0 = none).
 *
 *	X(id, code, name)		name: D-Bus (LatchedFault), journal, sysfs
 */
#define SMPL_FAULTS(X)							\
	X(NONE,		0, "")						\
	X(WATCHDOG,	1, "watchdog")	/* no HEARTBEAT for watchdog_ms */ \
	X(INTERLOCK,	2, "interlock")	/* interlock opened while armed */ \
	X(SELF_TEST,	3, "self-test")	/* power-on self-test failed */	\
	X(ENERGY,	4, "energy")	/* measured energy out of tolerance */ \
	X(OVERTEMP,	5, "overtemp")					\
	X(COOLING,	6, "cooling")					\
	X(SHUTTER,	7, "shutter")					\
	X(INTERNAL,	8, "internal")

#define SMPL_FAULT_ENUM_(id, code, name) SMPL_FAULT_##id = (code),
enum smpl_fault {
	SMPL_FAULTS(SMPL_FAULT_ENUM_)
	SMPL_FAULT__MAX = SMPL_FAULT_INTERNAL,
};

/* Status report flags */
#define SMPL_SF_FOOTSWITCH	(1u << 0)	/* footswitch held */
#define SMPL_SF_EMISSION_LED	(1u << 1)	/* emission indicator on */
#define SMPL_SF_PARAMS_SET	(1u << 2)	/* SET_PARAMS accepted */
#define SMPL_SF_NEED_RELEASE	(1u << 3)	/* footswitch must be released */
#define SMPL_SF_CALIBRATED	(1u << 4)	/* calibration valid */

/* Info flags */
#define SMPL_INFO_PICOSECOND	(1u << 0)

struct smpl_hdr {
	__le16 magic;
	__u8   version;
	__u8   op;
	__le16 seq;
	__le16 len;
	__le16 status;
	__le16 reserved;
	__le32 crc;
};

/*
 * GET_INFO reply, 64 bytes
 *   off size field
 *   0   16   serial          NUL-padded ASCII, [A-Za-z0-9-], not terminated
 *                            when all 16 bytes are used
 *   16  16   model           NUL-padded ASCII, printable
 *   32  1    fw_major
 *   33  1    fw_minor
 *   34  1    fw_patch
 *   35  1    flags           SMPL_INFO_*
 *   36  2    wavelength_nm[0]  primary wavelength
 *   38  2    wavelength_nm[1]  second wavelength or 0
 *   40  4    max_fluence_mj_cm2
 *   44  2    min_spot_um
 *   46  2    max_spot_um
 *   48  4    min_pulse_ps
 *   52  4    max_pulse_ps
 *   56  4    max_rate_mhz
 *   60  2    watchdog_ms     the unit's own host watchdog
 *   62  2    emission_delay_ms
 */
struct smpl_info {
	char   serial[16];
	char   model[16];
	__u8   fw_major;
	__u8   fw_minor;
	__u8   fw_patch;
	__u8   flags;
	__le16 wavelength_nm[2];
	__le32 max_fluence_mj_cm2;
	__le16 min_spot_um;
	__le16 max_spot_um;
	__le32 min_pulse_ps;
	__le32 max_pulse_ps;
	__le32 max_rate_mhz;
	__le16 watchdog_ms;
	__le16 emission_delay_ms;
};

/*
 * SET_PARAMS command and reply, GET_PARAMS reply, 16 bytes
 *   off size field
 *   0   2    wavelength_nm    one of the info's wavelengths
 *   2   2    spot_um          min_spot_um..max_spot_um
 *   4   4    fluence_mj_cm2   1..max_fluence_mj_cm2
 *   8   4    pulse_ps         min_pulse_ps..max_pulse_ps
 *   12  4    rate_mhz         1..max_rate_mhz
 * The unit derives the pulse energy: E = fluence * pi * (spot / 2)^2.
 */
struct smpl_params {
	__le16 wavelength_nm;
	__le16 spot_um;
	__le32 fluence_mj_cm2;
	__le32 pulse_ps;
	__le32 rate_mhz;
};

/*
 * GET_RTC reply, 8 bytes: the battery-backed clock, seconds since the epoch (UTC)
 */
struct smpl_rtc {
	__le64 rtc_s;
};

/*
 * Status report (interrupt IN, op SMPL_OP_STATUS) and GET_STATUS reply, 24 bytes
 *   off size field
 *   0   1    state            enum smpl_state
 *   1   1    fault            enum smpl_fault, latched fault or 0
 *   2   2    interlocks       SMPL_IL_* bits, set = open
 *   4   1    flags            SMPL_SF_*
 *   5   1    reserved         0
 *   6   2    reserved         0
 *   8   4    shot_count       pulses emitted over the unit's life
 *   12  4    last_energy_uj   measured energy of the last pulse
 *   16  8    rtc_s            battery-backed clock, seconds since the epoch
 */
struct smpl_status_report {
	__u8   state;
	__u8   fault;
	__le16 interlocks;
	__u8   flags;
	__u8   reserved0;
	__le16 reserved1;
	__le32 shot_count;
	__le32 last_energy_uj;
	__le64 rtc_s;
};

/*
 * Pulse report (interrupt IN, op SMPL_OP_PULSE), 16 bytes, one per pulse
 *   off size field
 *   0   4    shot             shot_count after this pulse
 *   4   4    measured_uj      measured energy
 *   8   4    set_uj           energy the parameters asked for
 *   12  4    reserved         0
 */
struct smpl_pulse_report {
	__le32 shot;
	__le32 measured_uj;
	__le32 set_uj;
	__le32 reserved;
};

/*
 * GET_VERSION control reply, 4 bytes
 */
struct smpl_version {
	__u8 proto_version;
	__u8 fw_major;
	__u8 fw_minor;
	__u8 fw_patch;
};

#define SMPL_INFO_SIZE		64
#define SMPL_PARAMS_SIZE	16
#define SMPL_RTC_SIZE		8
#define SMPL_STATUS_SIZE	24
#define SMPL_PULSE_SIZE		16
#define SMPL_VERSION_SIZE	4

#ifdef __KERNEL__
#include <linux/build_bug.h>
#define SMPL_STATIC_ASSERT(e, m) static_assert(e, m)
#else
#define SMPL_STATIC_ASSERT(e, m) _Static_assert(e, m)
#endif

SMPL_STATIC_ASSERT(sizeof(struct smpl_hdr) == SMPL_HDR_SIZE, "hdr size");
SMPL_STATIC_ASSERT(sizeof(struct smpl_info) == SMPL_INFO_SIZE, "info size");
SMPL_STATIC_ASSERT(sizeof(struct smpl_params) == SMPL_PARAMS_SIZE, "params size");
SMPL_STATIC_ASSERT(sizeof(struct smpl_rtc) == SMPL_RTC_SIZE, "rtc size");
SMPL_STATIC_ASSERT(sizeof(struct smpl_status_report) == SMPL_STATUS_SIZE,
		   "status size");
SMPL_STATIC_ASSERT(sizeof(struct smpl_pulse_report) == SMPL_PULSE_SIZE,
		   "pulse size");
SMPL_STATIC_ASSERT(sizeof(struct smpl_version) == SMPL_VERSION_SIZE,
		   "version size");
SMPL_STATIC_ASSERT(SMPL_HDR_SIZE + SMPL_STATUS_SIZE <= SMPL_MAX_REPORT,
		   "status report fits the interrupt endpoint");
SMPL_STATIC_ASSERT(SMPL_INFO_SIZE <= SMPL_MAX_PAYLOAD, "info fits a frame");

#endif /* SMPLASER_PROTO_H */
