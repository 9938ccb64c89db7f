/* SPDX-License-Identifier: MIT */
/*
 * Userspace codec for the unit's wire protocol (include/smplaser/proto.h):
 * encode, decode and validate frames, and convert payloads between their
 * little-endian wire layout and native structs.  Used by the firmware model,
 * the gadget, the daemon's libusb backend and the tests.  The kernel module
 * has its own small decoder built on the same header.
 */
#ifndef SMPLASER_CODEC_H
#define SMPLASER_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <smplaser/proto.h>

/* Decode errors: each malformed input has its own code (all negative). */
enum smpl_codec_error {
	SMPL_E_TRUNCATED	= -1,	/* fewer bytes than a header, or than hdr.len */
	SMPL_E_OVERSIZE		= -2,	/* hdr.len > SMPL_MAX_PAYLOAD, or bytes past the frame */
	SMPL_E_BAD_MAGIC	= -3,
	SMPL_E_BAD_VERSION	= -4,
	SMPL_E_BAD_CRC		= -5,
	SMPL_E_UNKNOWN_OP	= -6,
	SMPL_E_BAD_LENGTH	= -7,	/* hdr.len is not the size the op defines */
	SMPL_E_BAD_STATUS	= -8,	/* status on a command/report, unknown status, payload on an error reply */
	SMPL_E_RESERVED		= -9,	/* a reserved field is not zero */
	SMPL_E_OUT_OF_RANGE	= -10,	/* a payload field outside its range */
	SMPL_E_NO_SPACE		= -11,	/* encode: output buffer too small */
	SMPL_E_INVALID		= -12,	/* encode: bad arguments */
};
const char *smpl_codec_strerror(int err);

/* A decoded, validated frame.  Payload still in wire layout. */
struct smpl_frame {
	uint8_t op;
	uint16_t seq;
	uint16_t status;
	uint16_t len;
	uint8_t payload[SMPL_MAX_PAYLOAD];
};

/* Native views of the payloads. */
struct smpl_info_n {
	char serial[17];
	char model[17];
	uint8_t fw_major, fw_minor, fw_patch, flags;
	uint16_t wavelength_nm[2];
	uint32_t max_fluence_mj_cm2;
	uint16_t min_spot_um, max_spot_um;
	uint32_t min_pulse_ps, max_pulse_ps;
	uint32_t max_rate_mhz;
	uint16_t watchdog_ms;
	uint16_t emission_delay_ms;
};

struct smpl_params_n {
	uint16_t wavelength_nm;
	uint16_t spot_um;
	uint32_t fluence_mj_cm2;
	uint32_t pulse_ps;
	uint32_t rate_mhz;
};

struct smpl_status_n {
	uint8_t state;
	uint8_t fault;
	uint16_t interlocks;
	uint8_t flags;
	uint32_t shot_count;
	uint32_t last_energy_uj;
	int64_t rtc_s;
};

struct smpl_pulse_n {
	uint32_t shot;
	uint32_t measured_uj;
	uint32_t set_uj;
};

/* CRC-32 of a frame (header bytes 0..11, then the payload). */
uint32_t smpl_frame_crc(const uint8_t *hdr12, const uint8_t *payload, size_t len);

/* Which kind of frame @op names (a known command, its reply, a report). */
bool smpl_op_is_command(uint8_t op);
bool smpl_op_is_reply(uint8_t op);
bool smpl_op_is_report(uint8_t op);

/* The payload size @op defines (replies: for status OK), or -1 if unknown. */
int smpl_payload_size(uint8_t op);
const char *smpl_op_name(uint8_t op);
/* Names from the tables of include/smplaser/proto.h. */
const char *smpl_state_name(uint8_t state);	/* "SELF_TEST": the protocol's name */
const char *smpl_state_slug(uint8_t state);	/* "self-test": D-Bus, smplaserctl */
const char *smpl_status_name(uint16_t status);
const char *smpl_fault_name(uint8_t fault);
/* "watchdog", "self-test", ... ("" for NONE): the D-Bus and journal name. */
const char *smpl_fault_slug(uint8_t fault);
const char *smpl_interlock_name(uint16_t bit);	/* "door" for SMPL_IL_DOOR */
const char *smpl_interlock_label(uint16_t bit);	/* "remote interlock" */
uint16_t smpl_interlock_by_name(const char *name);	/* its bit, or 0 */
const char *smpl_interlock_list(char *buf, size_t len);	/* "key, door, ...": @buf */

/*
 * Encode a frame into @buf.  Returns the frame length or a negative
 * enum smpl_codec_error.
 */
int smpl_encode(uint8_t op, uint16_t seq, uint16_t status,
		const void *payload, size_t len, uint8_t *buf, size_t size);

/*
 * Decode and validate @n bytes that must hold exactly one frame.  Returns 0
 * and fills @f, or a negative enum smpl_codec_error.  Payload fields are
 * validated for range (states, fault codes, reserved bytes).
 */
int smpl_decode(const uint8_t *buf, size_t n, struct smpl_frame *f);

/* Payload conversions.  decode_* return 0 or a negative smpl_codec_error. */
void smpl_info_encode(const struct smpl_info_n *n, struct smpl_info *w);
int smpl_info_decode(const struct smpl_info *w, struct smpl_info_n *n);
void smpl_params_encode(const struct smpl_params_n *n, struct smpl_params *w);
void smpl_params_decode(const struct smpl_params *w, struct smpl_params_n *n);
void smpl_status_encode(const struct smpl_status_n *n, struct smpl_status_report *w);
int smpl_status_decode(const struct smpl_status_report *w, struct smpl_status_n *n);
void smpl_pulse_encode(const struct smpl_pulse_n *n, struct smpl_pulse_report *w);
int smpl_pulse_decode(const struct smpl_pulse_report *w, struct smpl_pulse_n *n);

/* Pulse energy in microjoules for @p: fluence * pi * (spot / 2)^2. */
uint32_t smpl_params_energy_uj(const struct smpl_params_n *p);

#endif /* SMPLASER_CODEC_H */
