// SPDX-License-Identifier: GPL-2.0
/*
 * smplaser wire frames (include/smplaser/proto.h): encode commands, check
 * every header field, length and CRC of what the unit sends, and decode
 * payloads with range checks.  Pure functions, callable from any context.
 */
#include <linux/crc32.h>
#include <linux/errno.h>
#include <linux/kernel.h>
#include <linux/string.h>

#include "compat.h"
#include "smplaser-core.h"

/* CRC-32 (IEEE 802.3) over header bytes 0..11, then the payload. */
static u32 smplaser_frame_crc(const u8 *hdr, const u8 *payload, size_t len)
{
	u32 crc = crc32_le(~0U, hdr, offsetof(struct smpl_hdr, crc));

	return ~crc32_le(crc, payload, len);
}

size_t smplaser_frame_encode(u8 *buf, u8 op, u16 seq, const void *payload,
			     u16 len)
{
	struct smpl_hdr *h = (struct smpl_hdr *)buf;
	u32 crc;

	memset(h, 0, sizeof(*h));
	h->magic = cpu_to_le16(SMPL_MAGIC);
	h->version = SMPL_PROTO_VERSION;
	h->op = op;
	h->seq = cpu_to_le16(seq);
	h->len = cpu_to_le16(len);
	if (len)
		memcpy(buf + SMPL_HDR_SIZE, payload, len);
	crc = smplaser_frame_crc(buf, buf + SMPL_HDR_SIZE, len);
	put_unaligned_le32(crc, &h->crc);
	return SMPL_HDR_SIZE + len;
}

/*
 * Check one received frame of @actual bytes: magic, version, length
 * (exactly header + hdr.len, hdr.len at most SMPL_MAX_PAYLOAD), reserved
 * field and CRC.  The op-specific length is the caller's to check.
 */
int smplaser_frame_parse(const u8 *buf, size_t actual,
			 struct smplaser_frame *f)
{
	const struct smpl_hdr *h = (const struct smpl_hdr *)buf;
	u16 len;

	if (actual < SMPL_HDR_SIZE)
		return -EPROTO;
	if (get_unaligned_le16(&h->magic) != SMPL_MAGIC ||
	    h->version != SMPL_PROTO_VERSION ||
	    get_unaligned_le16(&h->reserved) != 0)
		return -EPROTO;
	len = get_unaligned_le16(&h->len);
	if (len > SMPL_MAX_PAYLOAD || actual != SMPL_HDR_SIZE + (size_t)len)
		return -EPROTO;
	if (get_unaligned_le32(&h->crc) !=
	    smplaser_frame_crc(buf, buf + SMPL_HDR_SIZE, len))
		return -EPROTO;

	f->op = h->op;
	f->seq = get_unaligned_le16(&h->seq);
	f->status = get_unaligned_le16(&h->status);
	f->len = len;
	f->payload = buf + SMPL_HDR_SIZE;
	return 0;
}

int smplaser_status_decode(const u8 *payload, struct smplaser_unit_status *st)
{
	const struct smpl_status_report *w = (const void *)payload;
	u16 interlocks = get_unaligned_le16(&w->interlocks);

	if (w->state > SMPL_STATE__MAX || w->fault > SMPL_FAULT__MAX ||
	    (interlocks & ~SMPL_IL_ALL) || w->reserved0 ||
	    get_unaligned_le16(&w->reserved1))
		return -EPROTO;

	st->valid = true;
	st->state = w->state;
	st->fault = w->fault;
	st->flags = w->flags;
	st->interlocks = interlocks;
	st->shot_count = get_unaligned_le32(&w->shot_count);
	st->last_energy_uj = get_unaligned_le32(&w->last_energy_uj);
	st->rtc_s = (s64)get_unaligned_le64(&w->rtc_s);
	return 0;
}

int smplaser_pulse_decode(const u8 *payload, struct smplaser_ev_pulse *p)
{
	const struct smpl_pulse_report *w = (const void *)payload;

	if (get_unaligned_le32(&w->reserved))
		return -EPROTO;
	memset(p, 0, sizeof(*p));
	p->shot = get_unaligned_le32(&w->shot);
	p->measured_uj = get_unaligned_le32(&w->measured_uj);
	p->set_uj = get_unaligned_le32(&w->set_uj);
	return 0;
}

/*
 * [A-Za-z0-9-], ASCII only: the kernel's isalnum() also takes the Latin-1
 * letters (0xc0-0xff), which a serial must not have.
 */
static bool smplaser_serial_char_ok(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	       (c >= '0' && c <= '9') || c == '-';
}

/*
 * A NUL-padded field of @size bytes, not empty: [A-Za-z0-9-] for a serial,
 * printable ASCII otherwise, and only NULs after the text.
 */
static bool smplaser_field_ok(const char *s, size_t size, bool serial)
{
	size_t i, n = strnlen(s, size);

	if (n == 0)
		return false;
	for (i = 0; i < size; i++) {
		char c = s[i];

		if (i >= n) {
			if (c != '\0')
				return false;	/* junk after the padding */
		} else if (serial ? !smplaser_serial_char_ok(c) :
			   !(c >= 0x20 && c < 0x7f)) {
			return false;
		}
	}
	return true;
}

int smplaser_info_decode(const u8 *payload, struct smplaser_info *info)
{
	const struct smpl_info *w = (const void *)payload;

	if (!smplaser_field_ok(w->serial, sizeof(w->serial), true) ||
	    !smplaser_field_ok(w->model, sizeof(w->model), false))
		return -EPROTO;

	memset(info, 0, sizeof(*info));
	memcpy(info->serial, w->serial, sizeof(w->serial));
	memcpy(info->model, w->model, sizeof(w->model));
	info->fw_major = w->fw_major;
	info->fw_minor = w->fw_minor;
	info->fw_patch = w->fw_patch;
	info->flags = w->flags;
	info->wavelength_nm[0] = get_unaligned_le16(&w->wavelength_nm[0]);
	info->wavelength_nm[1] = get_unaligned_le16(&w->wavelength_nm[1]);
	info->max_fluence_mj_cm2 = get_unaligned_le32(&w->max_fluence_mj_cm2);
	info->min_spot_um = get_unaligned_le16(&w->min_spot_um);
	info->max_spot_um = get_unaligned_le16(&w->max_spot_um);
	info->min_pulse_ps = get_unaligned_le32(&w->min_pulse_ps);
	info->max_pulse_ps = get_unaligned_le32(&w->max_pulse_ps);
	info->max_rate_mhz = get_unaligned_le32(&w->max_rate_mhz);
	info->watchdog_ms = get_unaligned_le16(&w->watchdog_ms);
	info->emission_delay_ms = get_unaligned_le16(&w->emission_delay_ms);

	/* Limits the driver relies on when it checks parameters. */
	if (!info->wavelength_nm[0] || !info->max_fluence_mj_cm2 ||
	    !info->min_spot_um || info->min_spot_um > info->max_spot_um ||
	    !info->min_pulse_ps || info->min_pulse_ps > info->max_pulse_ps ||
	    !info->max_rate_mhz || info->watchdog_ms < 2)
		return -EPROTO;
	return 0;
}

/* The errno for a reply's enum smpl_status (see include/uapi/smplaser.h). */
int smplaser_unit_errno(u16 status)
{
	switch (status) {
	case SMPL_ST_OK:
		return 0;
	case SMPL_ST_INTERLOCK_OPEN:
		return -EPERM;
	case SMPL_ST_FAULT_LATCHED:
		return -ENOTRECOVERABLE;
	case SMPL_ST_OUT_OF_RANGE:
		return -ERANGE;
	case SMPL_ST_BAD_STATE:
		return -EBUSY;
	case SMPL_ST_CAUSE_PERSISTS:
		return -EAGAIN;
	case SMPL_ST_NO_PARAMS:
		return -ENODATA;
	case SMPL_ST_UNKNOWN_OP:
		return -EOPNOTSUPP;
	default:		/* SMPL_ST_BAD_FRAME or a status we do not know */
		return -EPROTO;
	}
}
