// SPDX-License-Identifier: MIT
/*
 * Userspace codec for the unit's wire protocol (include/smplaser/proto.h).
 *
 * Decoding checks a frame in this order, and the first failed check names
 * the error:
 *
 *   1. at least a header                      SMPL_E_TRUNCATED
 *   2. magic, version                         SMPL_E_BAD_MAGIC, SMPL_E_BAD_VERSION
 *   3. hdr.len <= SMPL_MAX_PAYLOAD            SMPL_E_OVERSIZE
 *   4. exactly hdr.len payload bytes          SMPL_E_TRUNCATED / SMPL_E_OVERSIZE
 *   5. CRC-32                                 SMPL_E_BAD_CRC
 *   6. a known op                             SMPL_E_UNKNOWN_OP
 *   7. status: 0 on commands and reports, a   SMPL_E_BAD_STATUS
 *      known status on replies, no payload
 *      on an error reply
 *   8. hdr.len is the op's payload size       SMPL_E_BAD_LENGTH
 *   9. header reserved field is zero          SMPL_E_RESERVED
 *  10. payload fields (reserved bytes,        SMPL_E_RESERVED, SMPL_E_OUT_OF_RANGE
 *      state, fault, interlock bits, flags,
 *      info strings)
 *
 * An error reply (status != 0) may carry any op with SMPL_OP_REPLY set: the
 * unit echoes whatever op it was sent, including ops it does not know
 * (SMPL_ST_UNKNOWN_OP) and ops it could not read (SMPL_ST_BAD_FRAME, op
 * SMPL_OP_REPLY alone).  Every other frame must carry a known op.
 *
 * The CRC covers the whole header except the CRC field, so any single-bit
 * error in a frame is caught by step 5 at the latest.
 */
#include "codec.h"

#include <endian.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <zlib.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Status flags and info flags this protocol version defines. */
#define KNOWN_STATUS_FLAGS (SMPL_SF_FOOTSWITCH | SMPL_SF_EMISSION_LED | \
			    SMPL_SF_PARAMS_SET | SMPL_SF_NEED_RELEASE | \
			    SMPL_SF_CALIBRATED)
#define KNOWN_INFO_FLAGS SMPL_INFO_PICOSECOND

const char *smpl_codec_strerror(int err)
{
	switch (err) {
	case 0:
		return "ok";
	case SMPL_E_TRUNCATED:
		return "truncated frame";
	case SMPL_E_OVERSIZE:
		return "oversize frame";
	case SMPL_E_BAD_MAGIC:
		return "bad magic";
	case SMPL_E_BAD_VERSION:
		return "unsupported protocol version";
	case SMPL_E_BAD_CRC:
		return "CRC mismatch";
	case SMPL_E_UNKNOWN_OP:
		return "unknown op";
	case SMPL_E_BAD_LENGTH:
		return "payload length does not match the op";
	case SMPL_E_BAD_STATUS:
		return "bad status field";
	case SMPL_E_RESERVED:
		return "reserved field not zero";
	case SMPL_E_OUT_OF_RANGE:
		return "payload field out of range";
	case SMPL_E_NO_SPACE:
		return "output buffer too small";
	case SMPL_E_INVALID:
		return "invalid argument";
	default:
		return "unknown codec error";
	}
}

uint32_t smpl_frame_crc(const uint8_t *hdr12, const uint8_t *payload, size_t len)
{
	uLong crc = crc32(0L, Z_NULL, 0);

	crc = crc32(crc, hdr12, 12);
	if (len > 0)
		crc = crc32(crc, payload, (uInt)len);
	return (uint32_t)crc;
}

/* ---- ops and names ----------------------------------------------------- */

struct op_desc {
	uint8_t op;
	const char *name;
	int cmd_size;		/* payload of the command, -1: not a command */
	int reply_size;		/* payload of an OK reply, -1: no reply */
};

static const struct op_desc op_table[] = {
	{ SMPL_OP_GET_INFO, "GET_INFO", 0, SMPL_INFO_SIZE },
	{ SMPL_OP_SET_PARAMS, "SET_PARAMS", SMPL_PARAMS_SIZE, SMPL_PARAMS_SIZE },
	{ SMPL_OP_ARM, "ARM", 0, 0 },
	{ SMPL_OP_DISARM, "DISARM", 0, 0 },
	{ SMPL_OP_HEARTBEAT, "HEARTBEAT", 0, 0 },
	{ SMPL_OP_SELF_TEST, "SELF_TEST", 0, 0 },
	{ SMPL_OP_GET_RTC, "GET_RTC", 0, SMPL_RTC_SIZE },
	{ SMPL_OP_ACK_FAULT, "ACK_FAULT", 0, 0 },
	{ SMPL_OP_GET_STATUS, "GET_STATUS", 0, SMPL_STATUS_SIZE },
	{ SMPL_OP_GET_PARAMS, "GET_PARAMS", 0, SMPL_PARAMS_SIZE },
	{ SMPL_OP_STATUS, "STATUS", SMPL_STATUS_SIZE, -1 },
	{ SMPL_OP_PULSE, "PULSE", SMPL_PULSE_SIZE, -1 },
};

static const struct op_desc *find_op(uint8_t base_op)
{
	for (size_t i = 0; i < ARRAY_LEN(op_table); i++)
		if (op_table[i].op == base_op)
			return &op_table[i];
	return NULL;
}

bool smpl_op_is_command(uint8_t op)
{
	return !(op & SMPL_OP_REPLY) && op < SMPL_OP_STATUS && find_op(op);
}

bool smpl_op_is_report(uint8_t op)
{
	return op == SMPL_OP_STATUS || op == SMPL_OP_PULSE;
}

bool smpl_op_is_reply(uint8_t op)
{
	return (op & SMPL_OP_REPLY) &&
	       smpl_op_is_command((uint8_t)(op & ~SMPL_OP_REPLY));
}

int smpl_payload_size(uint8_t op)
{
	if (smpl_op_is_reply(op))
		return find_op((uint8_t)(op & ~SMPL_OP_REPLY))->reply_size;
	if (smpl_op_is_command(op) || smpl_op_is_report(op))
		return find_op(op)->cmd_size;
	return -1;
}

const char *smpl_op_name(uint8_t op)
{
	static const char *const reply_names[] = {
		[SMPL_OP_GET_INFO] = "GET_INFO_REPLY",
		[SMPL_OP_SET_PARAMS] = "SET_PARAMS_REPLY",
		[SMPL_OP_ARM] = "ARM_REPLY",
		[SMPL_OP_DISARM] = "DISARM_REPLY",
		[SMPL_OP_HEARTBEAT] = "HEARTBEAT_REPLY",
		[SMPL_OP_SELF_TEST] = "SELF_TEST_REPLY",
		[SMPL_OP_GET_RTC] = "GET_RTC_REPLY",
		[SMPL_OP_ACK_FAULT] = "ACK_FAULT_REPLY",
		[SMPL_OP_GET_STATUS] = "GET_STATUS_REPLY",
		[SMPL_OP_GET_PARAMS] = "GET_PARAMS_REPLY",
	};

	if (smpl_op_is_reply(op))
		return reply_names[op & ~SMPL_OP_REPLY];
	if (smpl_op_is_command(op) || smpl_op_is_report(op))
		return find_op(op)->name;
	return "UNKNOWN";
}

#define STATE_ID_(id, value, name) [value] = #id,
#define STATE_SLUG_(id, value, name) [value] = name,
#define FAULT_ID_(id, code, name) [code] = #id,
#define FAULT_SLUG_(id, code, name) [code] = name,
#define INTERLOCK_NAME_(id, bit, name, label) [bit] = name,
#define INTERLOCK_LABEL_(id, bit, name, label) [bit] = label,

static const char *const state_ids[] = { SMPL_STATES(STATE_ID_) };
static const char *const state_slugs[] = { SMPL_STATES(STATE_SLUG_) };
static const char *const fault_ids[] = { SMPL_FAULTS(FAULT_ID_) };
static const char *const fault_slugs[] = { SMPL_FAULTS(FAULT_SLUG_) };
static const char *const interlock_names[] = { SMPL_INTERLOCKS(INTERLOCK_NAME_) };
static const char *const interlock_labels[] = { SMPL_INTERLOCKS(INTERLOCK_LABEL_) };

const char *smpl_state_name(uint8_t state)
{
	return state < ARRAY_LEN(state_ids) && state_ids[state] ? state_ids[state] : "UNKNOWN";
}

const char *smpl_state_slug(uint8_t state)
{
	return state < ARRAY_LEN(state_slugs) && state_slugs[state] ? state_slugs[state]
								     : "unknown";
}

const char *smpl_status_name(uint16_t status)
{
	static const char *const names[] = {
		[SMPL_ST_OK] = "OK",
		[SMPL_ST_BAD_FRAME] = "BAD_FRAME",
		[SMPL_ST_UNKNOWN_OP] = "UNKNOWN_OP",
		[SMPL_ST_BAD_STATE] = "BAD_STATE",
		[SMPL_ST_INTERLOCK_OPEN] = "INTERLOCK_OPEN",
		[SMPL_ST_FAULT_LATCHED] = "FAULT_LATCHED",
		[SMPL_ST_OUT_OF_RANGE] = "OUT_OF_RANGE",
		[SMPL_ST_CAUSE_PERSISTS] = "CAUSE_PERSISTS",
		[SMPL_ST_NO_PARAMS] = "NO_PARAMS",
	};

	return status < ARRAY_LEN(names) ? names[status] : "UNKNOWN";
}

const char *smpl_fault_name(uint8_t fault)
{
	return fault < ARRAY_LEN(fault_ids) && fault_ids[fault] ? fault_ids[fault] : "UNKNOWN";
}

const char *smpl_fault_slug(uint8_t fault)
{
	return fault < ARRAY_LEN(fault_slugs) && fault_slugs[fault] ? fault_slugs[fault]
								     : "unknown";
}

/* The index of a single interlock bit, or -1. */
static int interlock_index(uint16_t bit)
{
	for (int i = 0; i < SMPL_IL_COUNT; i++)
		if (bit == (1u << i))
			return i;
	return -1;
}

const char *smpl_interlock_name(uint16_t bit)
{
	int i = interlock_index(bit);

	return i < 0 ? "unknown" : interlock_names[i];
}

const char *smpl_interlock_label(uint16_t bit)
{
	int i = interlock_index(bit);

	return i < 0 ? "unknown interlock" : interlock_labels[i];
}

const char *smpl_interlock_list(char *buf, size_t len)
{
	size_t used = 0;

	if (len)
		buf[0] = '\0';
	for (int i = 0; i < SMPL_IL_COUNT && used < len; i++)
		used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? ", " : "",
					 interlock_names[i]);
	return buf;
}

uint16_t smpl_interlock_by_name(const char *name)
{
	for (int i = 0; name && i < SMPL_IL_COUNT; i++)
		if (strcmp(interlock_names[i], name) == 0)
			return (uint16_t)(1u << i);
	return 0;
}

/* ---- frames -------------------------------------------------------------- */

int smpl_encode(uint8_t op, uint16_t seq, uint16_t status,
		const void *payload, size_t len, uint8_t *buf, size_t size)
{
	struct smpl_hdr h;

	if (!buf || len > SMPL_MAX_PAYLOAD || (len > 0 && !payload))
		return SMPL_E_INVALID;
	if (size < SMPL_HDR_SIZE + len)
		return SMPL_E_NO_SPACE;

	memset(&h, 0, sizeof(h));
	h.magic = htole16(SMPL_MAGIC);
	h.version = SMPL_PROTO_VERSION;
	h.op = op;
	h.seq = htole16(seq);
	h.len = htole16((uint16_t)len);
	h.status = htole16(status);
	memcpy(buf, &h, SMPL_HDR_SIZE);
	if (len > 0)
		memcpy(buf + SMPL_HDR_SIZE, payload, len);
	h.crc = htole32(smpl_frame_crc(buf, buf + SMPL_HDR_SIZE, len));
	memcpy(buf, &h, SMPL_HDR_SIZE);
	return (int)(SMPL_HDR_SIZE + len);
}

/* Steps 1-5: the frame is complete and intact. */
static int check_envelope(const uint8_t *buf, size_t n, struct smpl_hdr *h)
{
	size_t len;

	if (!buf || n < SMPL_HDR_SIZE)
		return SMPL_E_TRUNCATED;
	memcpy(h, buf, SMPL_HDR_SIZE);
	if (le16toh(h->magic) != SMPL_MAGIC)
		return SMPL_E_BAD_MAGIC;
	if (h->version != SMPL_PROTO_VERSION)
		return SMPL_E_BAD_VERSION;
	len = le16toh(h->len);
	if (len > SMPL_MAX_PAYLOAD)
		return SMPL_E_OVERSIZE;
	if (n < SMPL_HDR_SIZE + len)
		return SMPL_E_TRUNCATED;
	if (n > SMPL_HDR_SIZE + len)
		return SMPL_E_OVERSIZE;
	if (le32toh(h->crc) != smpl_frame_crc(buf, buf + SMPL_HDR_SIZE, len))
		return SMPL_E_BAD_CRC;
	return 0;
}

/* Steps 6-9: op, status and length agree. */
static int check_header(const struct smpl_hdr *h)
{
	uint16_t status = le16toh(h->status);
	uint16_t len = le16toh(h->len);
	bool error_reply = (h->op & SMPL_OP_REPLY) && status != SMPL_ST_OK;

	if (!error_reply && smpl_payload_size(h->op) < 0)
		return SMPL_E_UNKNOWN_OP;
	if (!(h->op & SMPL_OP_REPLY) && status != SMPL_ST_OK)
		return SMPL_E_BAD_STATUS;
	if (status > SMPL_ST__MAX)
		return SMPL_E_BAD_STATUS;
	if (error_reply && len != 0)
		return SMPL_E_BAD_STATUS;
	if (!error_reply && len != smpl_payload_size(h->op))
		return SMPL_E_BAD_LENGTH;
	if (h->reserved != 0)
		return SMPL_E_RESERVED;
	return 0;
}

/* Step 10: payload fields of the ops that have checkable fields. */
static int check_payload(uint8_t op, uint16_t status, const uint8_t *payload)
{
	union {
		struct smpl_info info;
		struct smpl_status_report st;
		struct smpl_pulse_report pulse;
	} w;
	union {
		struct smpl_info_n info;
		struct smpl_status_n st;
		struct smpl_pulse_n pulse;
	} n;

	if (status != SMPL_ST_OK)
		return 0;
	switch (op) {
	case SMPL_OP_GET_INFO | SMPL_OP_REPLY:
		memcpy(&w.info, payload, sizeof(w.info));
		return smpl_info_decode(&w.info, &n.info);
	case SMPL_OP_GET_STATUS | SMPL_OP_REPLY:
	case SMPL_OP_STATUS:
		memcpy(&w.st, payload, sizeof(w.st));
		return smpl_status_decode(&w.st, &n.st);
	case SMPL_OP_PULSE:
		memcpy(&w.pulse, payload, sizeof(w.pulse));
		return smpl_pulse_decode(&w.pulse, &n.pulse);
	default:
		return 0;
	}
}

int smpl_decode(const uint8_t *buf, size_t n, struct smpl_frame *f)
{
	struct smpl_hdr h;
	int err;

	err = check_envelope(buf, n, &h);
	if (!err)
		err = check_header(&h);
	if (!err)
		err = check_payload(h.op, le16toh(h.status), buf + SMPL_HDR_SIZE);
	if (err)
		return err;

	if (f) {
		memset(f, 0, sizeof(*f));
		f->op = h.op;
		f->seq = le16toh(h.seq);
		f->status = le16toh(h.status);
		f->len = le16toh(h.len);
		memcpy(f->payload, buf + SMPL_HDR_SIZE, f->len);
	}
	return 0;
}

/* ---- payloads ------------------------------------------------------------ */

/* Copy a NUL-padded fixed-width wire string into a terminated one. */
static void copy_fixed_string(char *dst, const char *src, size_t width)
{
	memcpy(dst, src, width);
	dst[width] = '\0';
}

/* Copy a terminated string into a NUL-padded fixed-width wire field. */
static void put_fixed_string(char *dst, const char *src, size_t width)
{
	size_t n = strnlen(src, width);

	memset(dst, 0, width);
	memcpy(dst, src, n);
}

static bool serial_char_ok(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	       (c >= '0' && c <= '9') || c == '-';
}

static bool model_char_ok(char c)
{
	return c >= 0x20 && c < 0x7f;
}

/*
 * A NUL-padded field: characters that pass @ok, then only NULs.  The first
 * character must be present (an empty serial or model is not valid).
 */
static bool fixed_string_ok(const char *s, size_t width, bool (*ok)(char))
{
	size_t i = 0;

	while (i < width && s[i] != '\0') {
		if (!ok(s[i]))
			return false;
		i++;
	}
	if (i == 0)
		return false;
	for (; i < width; i++)
		if (s[i] != '\0')
			return false;
	return true;
}

void smpl_info_encode(const struct smpl_info_n *n, struct smpl_info *w)
{
	memset(w, 0, sizeof(*w));
	put_fixed_string(w->serial, n->serial, sizeof(w->serial));
	put_fixed_string(w->model, n->model, sizeof(w->model));
	w->fw_major = n->fw_major;
	w->fw_minor = n->fw_minor;
	w->fw_patch = n->fw_patch;
	w->flags = n->flags;
	w->wavelength_nm[0] = htole16(n->wavelength_nm[0]);
	w->wavelength_nm[1] = htole16(n->wavelength_nm[1]);
	w->max_fluence_mj_cm2 = htole32(n->max_fluence_mj_cm2);
	w->min_spot_um = htole16(n->min_spot_um);
	w->max_spot_um = htole16(n->max_spot_um);
	w->min_pulse_ps = htole32(n->min_pulse_ps);
	w->max_pulse_ps = htole32(n->max_pulse_ps);
	w->max_rate_mhz = htole32(n->max_rate_mhz);
	w->watchdog_ms = htole16(n->watchdog_ms);
	w->emission_delay_ms = htole16(n->emission_delay_ms);
}

int smpl_info_decode(const struct smpl_info *w, struct smpl_info_n *n)
{
	if (!fixed_string_ok(w->serial, sizeof(w->serial), serial_char_ok) ||
	    !fixed_string_ok(w->model, sizeof(w->model), model_char_ok))
		return SMPL_E_OUT_OF_RANGE;
	if (w->flags & ~KNOWN_INFO_FLAGS)
		return SMPL_E_RESERVED;

	memset(n, 0, sizeof(*n));
	copy_fixed_string(n->serial, w->serial, sizeof(w->serial));
	copy_fixed_string(n->model, w->model, sizeof(w->model));
	n->fw_major = w->fw_major;
	n->fw_minor = w->fw_minor;
	n->fw_patch = w->fw_patch;
	n->flags = w->flags;
	n->wavelength_nm[0] = le16toh(w->wavelength_nm[0]);
	n->wavelength_nm[1] = le16toh(w->wavelength_nm[1]);
	n->max_fluence_mj_cm2 = le32toh(w->max_fluence_mj_cm2);
	n->min_spot_um = le16toh(w->min_spot_um);
	n->max_spot_um = le16toh(w->max_spot_um);
	n->min_pulse_ps = le32toh(w->min_pulse_ps);
	n->max_pulse_ps = le32toh(w->max_pulse_ps);
	n->max_rate_mhz = le32toh(w->max_rate_mhz);
	n->watchdog_ms = le16toh(w->watchdog_ms);
	n->emission_delay_ms = le16toh(w->emission_delay_ms);
	return 0;
}

void smpl_params_encode(const struct smpl_params_n *n, struct smpl_params *w)
{
	memset(w, 0, sizeof(*w));
	w->wavelength_nm = htole16(n->wavelength_nm);
	w->spot_um = htole16(n->spot_um);
	w->fluence_mj_cm2 = htole32(n->fluence_mj_cm2);
	w->pulse_ps = htole32(n->pulse_ps);
	w->rate_mhz = htole32(n->rate_mhz);
}

void smpl_params_decode(const struct smpl_params *w, struct smpl_params_n *n)
{
	memset(n, 0, sizeof(*n));
	n->wavelength_nm = le16toh(w->wavelength_nm);
	n->spot_um = le16toh(w->spot_um);
	n->fluence_mj_cm2 = le32toh(w->fluence_mj_cm2);
	n->pulse_ps = le32toh(w->pulse_ps);
	n->rate_mhz = le32toh(w->rate_mhz);
}

void smpl_status_encode(const struct smpl_status_n *n, struct smpl_status_report *w)
{
	memset(w, 0, sizeof(*w));
	w->state = n->state;
	w->fault = n->fault;
	w->interlocks = htole16(n->interlocks);
	w->flags = n->flags;
	w->shot_count = htole32(n->shot_count);
	w->last_energy_uj = htole32(n->last_energy_uj);
	w->rtc_s = htole64((uint64_t)n->rtc_s);
}

int smpl_status_decode(const struct smpl_status_report *w, struct smpl_status_n *n)
{
	uint16_t interlocks = le16toh(w->interlocks);

	if (w->reserved0 != 0 || w->reserved1 != 0)
		return SMPL_E_RESERVED;
	if (w->flags & ~KNOWN_STATUS_FLAGS)
		return SMPL_E_RESERVED;
	if (w->state > SMPL_STATE__MAX || w->fault > SMPL_FAULT__MAX ||
	    (interlocks & ~SMPL_IL_ALL))
		return SMPL_E_OUT_OF_RANGE;

	memset(n, 0, sizeof(*n));
	n->state = w->state;
	n->fault = w->fault;
	n->interlocks = interlocks;
	n->flags = w->flags;
	n->shot_count = le32toh(w->shot_count);
	n->last_energy_uj = le32toh(w->last_energy_uj);
	n->rtc_s = (int64_t)le64toh(w->rtc_s);
	return 0;
}

void smpl_pulse_encode(const struct smpl_pulse_n *n, struct smpl_pulse_report *w)
{
	memset(w, 0, sizeof(*w));
	w->shot = htole32(n->shot);
	w->measured_uj = htole32(n->measured_uj);
	w->set_uj = htole32(n->set_uj);
}

int smpl_pulse_decode(const struct smpl_pulse_report *w, struct smpl_pulse_n *n)
{
	if (w->reserved != 0)
		return SMPL_E_RESERVED;
	memset(n, 0, sizeof(*n));
	n->shot = le32toh(w->shot);
	n->measured_uj = le32toh(w->measured_uj);
	n->set_uj = le32toh(w->set_uj);
	return 0;
}

uint32_t smpl_params_energy_uj(const struct smpl_params_n *p)
{
	/* mJ/cm2 * um2: 1 cm2 = 1e8 um2, 1 mJ = 1e3 uJ, so divide by 1e5. */
	double radius_um = p->spot_um / 2.0;
	double uj = (double)p->fluence_mj_cm2 * M_PI * radius_um * radius_um / 1e5;

	if (uj >= (double)UINT32_MAX)
		return UINT32_MAX;
	return (uint32_t)lround(uj);
}
