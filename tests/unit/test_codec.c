// SPDX-License-Identifier: MIT
/*
 * Unit tests of common/codec.c: every message round-trips, every malformed
 * input gets its own error, and no truncation or single-bit flip of a valid
 * frame is ever accepted.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <endian.h>

#include <cmocka.h>

#include "codec.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---- helpers ------------------------------------------------------------- */

/* Bitwise CRC-32 (IEEE 802.3, reflected), independent of zlib. */
static uint32_t reference_crc32(const uint8_t *p, size_t n)
{
	uint32_t crc = 0xffffffffu;

	for (size_t i = 0; i < n; i++) {
		crc ^= p[i];
		for (int b = 0; b < 8; b++)
			crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
	}
	return ~crc;
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)v);
	put16(p + 2, (uint16_t)(v >> 16));
}

/* Recompute the CRC of a frame whose header claims @payload_len bytes. */
static void fix_crc(uint8_t *frame, size_t payload_len)
{
	uint8_t tmp[SMPL_MAX_FRAME + 64];

	memcpy(tmp, frame, 12);
	memcpy(tmp + 12, frame + SMPL_HDR_SIZE, payload_len);
	put32(frame + 12, reference_crc32(tmp, 12 + payload_len));
}

/*
 * A frame with every header field chosen by the caller and a correct CRC,
 * so that only the field under test is wrong.  Returns its length.
 */
static size_t raw_frame(uint8_t *buf, uint16_t magic, uint8_t version,
			uint8_t op, uint16_t len_field, uint16_t status,
			uint16_t reserved, const void *payload, size_t n)
{
	put16(buf + 0, magic);
	buf[2] = version;
	buf[3] = op;
	put16(buf + 4, 0x0102);
	put16(buf + 6, len_field);
	put16(buf + 8, status);
	put16(buf + 10, reserved);
	if (n)
		memcpy(buf + SMPL_HDR_SIZE, payload, n);
	fix_crc(buf, n);
	return SMPL_HDR_SIZE + n;
}

static size_t good_frame(uint8_t *buf, uint8_t op, uint16_t status,
			 const void *payload, size_t n)
{
	return raw_frame(buf, SMPL_MAGIC, SMPL_PROTO_VERSION, op, (uint16_t)n,
			 status, 0, payload, n);
}

static int decode_raw(const uint8_t *buf, size_t n)
{
	struct smpl_frame f;

	return smpl_decode(buf, n, &f);
}

static struct smpl_info_n sample_info(void)
{
	struct smpl_info_n in = {
		.serial = "SMP-000042",
		.model = "SMPL-QS1064",
		.fw_major = 1, .fw_minor = 2, .fw_patch = 3,
		.flags = SMPL_INFO_PICOSECOND,
		.wavelength_nm = { 1064, 532 },
		.max_fluence_mj_cm2 = 10000,
		.min_spot_um = 2000, .max_spot_um = 6000,
		.min_pulse_ps = 5000, .max_pulse_ps = 25000,
		.max_rate_mhz = 10000,
		.watchdog_ms = 1000,
		.emission_delay_ms = 2000,
	};
	return in;
}

static struct smpl_params_n sample_params(void)
{
	struct smpl_params_n p = {
		.wavelength_nm = 1064, .spot_um = 3000, .fluence_mj_cm2 = 4000,
		.pulse_ps = 10000, .rate_mhz = 2000,
	};
	return p;
}

static struct smpl_status_n sample_status(void)
{
	struct smpl_status_n s = {
		.state = SMPL_STATE_READY, .fault = SMPL_FAULT_NONE,
		.interlocks = SMPL_IL_DOOR | SMPL_IL_SHUTTER,
		.flags = SMPL_SF_FOOTSWITCH | SMPL_SF_NEED_RELEASE | SMPL_SF_PARAMS_SET,
		.shot_count = 123456, .last_energy_uj = 282743,
		.rtc_s = 1795000000,
	};
	return s;
}

static struct smpl_pulse_n sample_pulse(void)
{
	struct smpl_pulse_n p = { .shot = 77, .measured_uj = 280001, .set_uj = 282743 };

	return p;
}

/* ---- CRC and layout ------------------------------------------------------ */

static void test_crc_matches_reference(void **state)
{
	const uint8_t check[] = "123456789";
	uint8_t frame[SMPL_MAX_FRAME];
	uint8_t payload[SMPL_PARAMS_SIZE];

	(void)state;
	/* The reference implementation itself: the standard check value. */
	assert_int_equal(reference_crc32(check, 9), 0xcbf43926u);

	for (size_t i = 0; i < sizeof(payload); i++)
		payload[i] = (uint8_t)(i * 37 + 5);
	memcpy(frame, "ABCDEFGHIJKL", 12);
	memcpy(frame + 12, payload, sizeof(payload));
	assert_int_equal(smpl_frame_crc(frame, payload, sizeof(payload)),
			 reference_crc32(frame, 12 + sizeof(payload)));
	assert_int_equal(smpl_frame_crc(frame, NULL, 0), reference_crc32(frame, 12));
}

static void test_encode_wire_layout(void **state)
{
	uint8_t buf[SMPL_MAX_FRAME];
	const uint8_t expect_hdr[12] = {
		0x53, 0x4c, 0x01, 0x83, 0x34, 0x12, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00,
	};
	uint32_t crc;
	int n;

	(void)state;
	n = smpl_encode(SMPL_OP_ARM | SMPL_OP_REPLY, 0x1234, SMPL_ST_BAD_STATE,
			NULL, 0, buf, sizeof(buf));
	assert_int_equal(n, SMPL_HDR_SIZE);
	assert_memory_equal(buf, expect_hdr, 12);
	crc = (uint32_t)buf[12] | (uint32_t)buf[13] << 8 |
	      (uint32_t)buf[14] << 16 | (uint32_t)buf[15] << 24;
	assert_int_equal(crc, reference_crc32(buf, 12));
	/* "SL" on the wire */
	assert_int_equal(buf[0], 'S');
	assert_int_equal(buf[1], 'L');
}

static void test_encode_errors(void **state)
{
	uint8_t buf[SMPL_MAX_FRAME];
	uint8_t big[SMPL_MAX_PAYLOAD + 1] = { 0 };

	(void)state;
	assert_int_equal(smpl_encode(SMPL_OP_ARM, 1, 0, NULL, 0, buf, SMPL_HDR_SIZE - 1),
			 SMPL_E_NO_SPACE);
	assert_int_equal(smpl_encode(SMPL_OP_SET_PARAMS, 1, 0, big, SMPL_PARAMS_SIZE,
				     buf, SMPL_HDR_SIZE + SMPL_PARAMS_SIZE - 1),
			 SMPL_E_NO_SPACE);
	assert_int_equal(smpl_encode(SMPL_OP_ARM, 1, 0, big, sizeof(big), buf, sizeof(buf)),
			 SMPL_E_INVALID);
	assert_int_equal(smpl_encode(SMPL_OP_SET_PARAMS, 1, 0, NULL, 4, buf, sizeof(buf)),
			 SMPL_E_INVALID);
	assert_int_equal(smpl_encode(SMPL_OP_ARM, 1, 0, NULL, 0, NULL, 64), SMPL_E_INVALID);
}

/* ---- round trips --------------------------------------------------------- */

/* Encode, decode, and check that every header field and the payload survive. */
static void round_trip(uint8_t op, uint16_t seq, uint16_t status,
		       const void *payload, size_t len)
{
	uint8_t buf[SMPL_MAX_FRAME];
	struct smpl_frame f;
	int n;

	n = smpl_encode(op, seq, status, payload, len, buf, sizeof(buf));
	assert_int_equal(n, SMPL_HDR_SIZE + len);
	assert_int_equal(smpl_decode(buf, (size_t)n, &f), 0);
	assert_int_equal(f.op, op);
	assert_int_equal(f.seq, seq);
	assert_int_equal(f.status, status);
	assert_int_equal(f.len, len);
	if (len)
		assert_memory_equal(f.payload, payload, len);
}

static const uint8_t all_commands[] = {
	SMPL_OP_GET_INFO, SMPL_OP_SET_PARAMS, SMPL_OP_ARM, SMPL_OP_DISARM,
	SMPL_OP_HEARTBEAT, SMPL_OP_SELF_TEST, SMPL_OP_GET_RTC, SMPL_OP_ACK_FAULT,
	SMPL_OP_GET_STATUS, SMPL_OP_GET_PARAMS,
};

/* The wire payload an OK reply to (or the command) @op carries. */
static size_t payload_for(uint8_t op, uint8_t *out)
{
	struct smpl_info_n info = sample_info();
	struct smpl_params_n params = sample_params();
	struct smpl_status_n st = sample_status();
	struct smpl_pulse_n pulse = sample_pulse();
	struct smpl_rtc rtc = { .rtc_s = htole64(1795000123) };

	switch (op) {
	case SMPL_OP_GET_INFO | SMPL_OP_REPLY:
		smpl_info_encode(&info, (struct smpl_info *)out);
		return SMPL_INFO_SIZE;
	case SMPL_OP_SET_PARAMS:
	case SMPL_OP_SET_PARAMS | SMPL_OP_REPLY:
	case SMPL_OP_GET_PARAMS | SMPL_OP_REPLY:
		smpl_params_encode(&params, (struct smpl_params *)out);
		return SMPL_PARAMS_SIZE;
	case SMPL_OP_GET_RTC | SMPL_OP_REPLY:
		memcpy(out, &rtc, sizeof(rtc));
		return SMPL_RTC_SIZE;
	case SMPL_OP_GET_STATUS | SMPL_OP_REPLY:
	case SMPL_OP_STATUS:
		smpl_status_encode(&st, (struct smpl_status_report *)out);
		return SMPL_STATUS_SIZE;
	case SMPL_OP_PULSE:
		smpl_pulse_encode(&pulse, (struct smpl_pulse_report *)out);
		return SMPL_PULSE_SIZE;
	default:
		return 0;
	}
}

static void test_round_trip_commands(void **state)
{
	_Alignas(8) uint8_t payload[SMPL_MAX_PAYLOAD];

	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(all_commands); i++) {
		size_t len = payload_for(all_commands[i], payload);

		assert_true(smpl_op_is_command(all_commands[i]));
		assert_int_equal(smpl_payload_size(all_commands[i]), len);
		round_trip(all_commands[i], (uint16_t)(0xfff0 + i), 0, payload, len);
	}
}

static void test_round_trip_ok_replies(void **state)
{
	_Alignas(8) uint8_t payload[SMPL_MAX_PAYLOAD];

	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(all_commands); i++) {
		uint8_t op = all_commands[i] | SMPL_OP_REPLY;
		size_t len = payload_for(op, payload);

		assert_true(smpl_op_is_reply(op));
		assert_int_equal(smpl_payload_size(op), len);
		round_trip(op, (uint16_t)i, SMPL_ST_OK, payload, len);
	}
}

static void test_round_trip_error_replies(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(all_commands); i++)
		for (uint16_t st = 1; st <= SMPL_ST__MAX; st++)
			round_trip(all_commands[i] | SMPL_OP_REPLY, st, st, NULL, 0);
	/* The unit echoes ops it does not know, and op 0 when unreadable. */
	round_trip(0x7f | SMPL_OP_REPLY, 9, SMPL_ST_UNKNOWN_OP, NULL, 0);
	round_trip(SMPL_OP_REPLY, 0, SMPL_ST_BAD_FRAME, NULL, 0);
}

static void test_round_trip_reports(void **state)
{
	_Alignas(8) uint8_t payload[SMPL_MAX_PAYLOAD];

	(void)state;
	round_trip(SMPL_OP_STATUS, 65535, 0, payload, payload_for(SMPL_OP_STATUS, payload));
	round_trip(SMPL_OP_PULSE, 0, 0, payload, payload_for(SMPL_OP_PULSE, payload));
	assert_true(smpl_op_is_report(SMPL_OP_STATUS));
	assert_true(smpl_op_is_report(SMPL_OP_PULSE));
	assert_false(smpl_op_is_command(SMPL_OP_STATUS));
	assert_false(smpl_op_is_reply(SMPL_OP_STATUS | SMPL_OP_REPLY));
}

static void assert_info_equal(const struct smpl_info_n *a, const struct smpl_info_n *b)
{
	assert_string_equal(a->serial, b->serial);
	assert_string_equal(a->model, b->model);
	assert_int_equal(a->fw_major, b->fw_major);
	assert_int_equal(a->fw_minor, b->fw_minor);
	assert_int_equal(a->fw_patch, b->fw_patch);
	assert_int_equal(a->flags, b->flags);
	assert_int_equal(a->wavelength_nm[0], b->wavelength_nm[0]);
	assert_int_equal(a->wavelength_nm[1], b->wavelength_nm[1]);
	assert_int_equal(a->max_fluence_mj_cm2, b->max_fluence_mj_cm2);
	assert_int_equal(a->min_spot_um, b->min_spot_um);
	assert_int_equal(a->max_spot_um, b->max_spot_um);
	assert_int_equal(a->min_pulse_ps, b->min_pulse_ps);
	assert_int_equal(a->max_pulse_ps, b->max_pulse_ps);
	assert_int_equal(a->max_rate_mhz, b->max_rate_mhz);
	assert_int_equal(a->watchdog_ms, b->watchdog_ms);
	assert_int_equal(a->emission_delay_ms, b->emission_delay_ms);
}

static void test_payload_conversions(void **state)
{
	struct smpl_info_n info = sample_info(), info2;
	struct smpl_params_n params = sample_params(), params2;
	struct smpl_status_n st = sample_status(), st2;
	struct smpl_pulse_n pulse = sample_pulse(), pulse2;
	struct smpl_info wi;
	struct smpl_params wp;
	struct smpl_status_report ws;
	struct smpl_pulse_report wpu;
	const uint8_t *raw;

	(void)state;
	smpl_info_encode(&info, &wi);
	assert_int_equal(smpl_info_decode(&wi, &info2), 0);
	assert_info_equal(&info, &info2);

	/* a 16-character serial fills the field, unterminated */
	strcpy(info.serial, "SMP-0000000000AB");
	smpl_info_encode(&info, &wi);
	assert_int_equal(smpl_info_decode(&wi, &info2), 0);
	assert_string_equal(info2.serial, "SMP-0000000000AB");

	smpl_params_encode(&params, &wp);
	smpl_params_decode(&wp, &params2);
	assert_memory_equal(&params, &params2, sizeof(params));
	raw = (const uint8_t *)&wp;	/* little-endian on the wire */
	assert_int_equal(raw[0], 1064 & 0xff);
	assert_int_equal(raw[1], 1064 >> 8);

	smpl_status_encode(&st, &ws);
	assert_int_equal(smpl_status_decode(&ws, &st2), 0);
	assert_int_equal(st2.state, st.state);
	assert_int_equal(st2.fault, st.fault);
	assert_int_equal(st2.interlocks, st.interlocks);
	assert_int_equal(st2.flags, st.flags);
	assert_int_equal(st2.shot_count, st.shot_count);
	assert_int_equal(st2.last_energy_uj, st.last_energy_uj);
	assert_int_equal(st2.rtc_s, st.rtc_s);

	smpl_pulse_encode(&pulse, &wpu);
	assert_int_equal(smpl_pulse_decode(&wpu, &pulse2), 0);
	assert_memory_equal(&pulse, &pulse2, sizeof(pulse));
}

/* ---- malformed input: one error code per defect --------------------------- */

static void test_truncated(void **state)
{
	_Alignas(8) uint8_t payload[SMPL_MAX_PAYLOAD];
	uint8_t buf[SMPL_MAX_FRAME];
	size_t len = payload_for(SMPL_OP_STATUS, payload);
	size_t n = good_frame(buf, SMPL_OP_STATUS, 0, payload, len);

	(void)state;
	assert_int_equal(decode_raw(buf, n), 0);
	assert_int_equal(decode_raw(buf, 0), SMPL_E_TRUNCATED);
	assert_int_equal(decode_raw(NULL, 0), SMPL_E_TRUNCATED);
	assert_int_equal(decode_raw(buf, 7), SMPL_E_TRUNCATED);		/* partial header */
	assert_int_equal(decode_raw(buf, SMPL_HDR_SIZE - 1), SMPL_E_TRUNCATED);
	assert_int_equal(decode_raw(buf, SMPL_HDR_SIZE), SMPL_E_TRUNCATED);	/* no payload */
	assert_int_equal(decode_raw(buf, n - 1), SMPL_E_TRUNCATED);	/* partial payload */
}

static void test_oversize(void **state)
{
	uint8_t buf[SMPL_MAX_FRAME + 64] = { 0 };
	const uint8_t zeros[SMPL_MAX_PAYLOAD + 1] = { 0 };
	size_t n;

	(void)state;
	/* len field beyond the protocol's maximum, with that many bytes present */
	n = raw_frame(buf, SMPL_MAGIC, 1, SMPL_OP_STATUS, SMPL_MAX_PAYLOAD + 1, 0, 0,
		      zeros, sizeof(zeros));
	assert_int_equal(decode_raw(buf, n), SMPL_E_OVERSIZE);
	n = raw_frame(buf, SMPL_MAGIC, 1, SMPL_OP_STATUS, 0xffff, 0, 0, NULL, 0);
	assert_int_equal(decode_raw(buf, n), SMPL_E_OVERSIZE);

	/* a valid frame followed by trailing bytes */
	n = good_frame(buf, SMPL_OP_HEARTBEAT, 0, NULL, 0);
	assert_int_equal(decode_raw(buf, n), 0);
	assert_int_equal(decode_raw(buf, n + 1), SMPL_E_OVERSIZE);
	assert_int_equal(decode_raw(buf, n + 40), SMPL_E_OVERSIZE);
}

static void test_bad_magic_and_version(void **state)
{
	uint8_t buf[SMPL_MAX_FRAME];
	size_t n;

	(void)state;
	n = raw_frame(buf, 0x4c54, 1, SMPL_OP_ARM, 0, 0, 0, NULL, 0);
	assert_int_equal(decode_raw(buf, n), SMPL_E_BAD_MAGIC);
	n = raw_frame(buf, 0x534c, 1, SMPL_OP_ARM, 0, 0, 0, NULL, 0);	/* byte-swapped */
	assert_int_equal(decode_raw(buf, n), SMPL_E_BAD_MAGIC);
	n = raw_frame(buf, SMPL_MAGIC, 0, SMPL_OP_ARM, 0, 0, 0, NULL, 0);
	assert_int_equal(decode_raw(buf, n), SMPL_E_BAD_VERSION);
	n = raw_frame(buf, SMPL_MAGIC, 2, SMPL_OP_ARM, 0, 0, 0, NULL, 0);
	assert_int_equal(decode_raw(buf, n), SMPL_E_BAD_VERSION);
}

static void test_bad_crc(void **state)
{
	uint8_t buf[SMPL_MAX_FRAME];
	_Alignas(8) uint8_t payload[SMPL_MAX_PAYLOAD];
	size_t n;

	(void)state;
	n = good_frame(buf, SMPL_OP_SET_PARAMS, 0, payload, payload_for(SMPL_OP_SET_PARAMS, payload));
	buf[12] ^= 0x01;				/* in the CRC field */
	assert_int_equal(decode_raw(buf, n), SMPL_E_BAD_CRC);
	buf[12] ^= 0x01;
	buf[SMPL_HDR_SIZE + 3] ^= 0x80;			/* in the payload */
	assert_int_equal(decode_raw(buf, n), SMPL_E_BAD_CRC);
	buf[SMPL_HDR_SIZE + 3] ^= 0x80;
	buf[4] ^= 0x10;					/* in the seq field */
	assert_int_equal(decode_raw(buf, n), SMPL_E_BAD_CRC);
}

static void test_unknown_op(void **state)
{
	const uint8_t unknown[] = { 0x00, 0x0b, 0x3f, 0x42, 0x7f,
				    SMPL_OP_STATUS | SMPL_OP_REPLY, 0x8b, 0xff };
	uint8_t buf[SMPL_MAX_FRAME];

	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(unknown); i++) {
		size_t n = good_frame(buf, unknown[i], 0, NULL, 0);

		assert_int_equal(decode_raw(buf, n), SMPL_E_UNKNOWN_OP);
		assert_int_equal(smpl_payload_size(unknown[i]), -1);
	}
}

static void test_bad_length(void **state)
{
	uint8_t buf[SMPL_MAX_FRAME];
	uint8_t zeros[SMPL_MAX_PAYLOAD] = { 0 };
	size_t n;

	(void)state;
	n = good_frame(buf, SMPL_OP_ARM, 0, zeros, 4);		/* ARM has no payload */
	assert_int_equal(decode_raw(buf, n), SMPL_E_BAD_LENGTH);
	n = good_frame(buf, SMPL_OP_SET_PARAMS, 0, zeros, SMPL_PARAMS_SIZE - 1);
	assert_int_equal(decode_raw(buf, n), SMPL_E_BAD_LENGTH);
	n = good_frame(buf, SMPL_OP_SET_PARAMS, 0, zeros, 0);
	assert_int_equal(decode_raw(buf, n), SMPL_E_BAD_LENGTH);
	n = good_frame(buf, SMPL_OP_GET_INFO | SMPL_OP_REPLY, 0, zeros, 0);
	assert_int_equal(decode_raw(buf, n), SMPL_E_BAD_LENGTH);
	n = good_frame(buf, SMPL_OP_PULSE, 0, zeros, SMPL_STATUS_SIZE);
	assert_int_equal(decode_raw(buf, n), SMPL_E_BAD_LENGTH);
}

static void test_bad_status(void **state)
{
	uint8_t buf[SMPL_MAX_FRAME];
	uint8_t zeros[SMPL_MAX_PAYLOAD] = { 0 };
	size_t n;

	(void)state;
	n = good_frame(buf, SMPL_OP_ARM, SMPL_ST_BAD_STATE, NULL, 0);	/* on a command */
	assert_int_equal(decode_raw(buf, n), SMPL_E_BAD_STATUS);
	n = good_frame(buf, SMPL_OP_PULSE, 1, zeros, SMPL_PULSE_SIZE);	/* on a report */
	assert_int_equal(decode_raw(buf, n), SMPL_E_BAD_STATUS);
	n = good_frame(buf, SMPL_OP_ARM | SMPL_OP_REPLY, SMPL_ST__MAX + 1, NULL, 0);
	assert_int_equal(decode_raw(buf, n), SMPL_E_BAD_STATUS);	/* unknown status */
	n = good_frame(buf, SMPL_OP_ARM | SMPL_OP_REPLY, 0xffff, NULL, 0);
	assert_int_equal(decode_raw(buf, n), SMPL_E_BAD_STATUS);
	/* an error reply with a payload */
	n = good_frame(buf, SMPL_OP_GET_RTC | SMPL_OP_REPLY, SMPL_ST_BAD_STATE, zeros, SMPL_RTC_SIZE);
	assert_int_equal(decode_raw(buf, n), SMPL_E_BAD_STATUS);
}

static void test_reserved_nonzero(void **state)
{
	_Alignas(8) uint8_t payload[SMPL_MAX_PAYLOAD];
	uint8_t buf[SMPL_MAX_FRAME];
	size_t n, len;

	(void)state;
	/* header reserved field */
	n = raw_frame(buf, SMPL_MAGIC, 1, SMPL_OP_ARM, 0, 0, 0x0001, NULL, 0);
	assert_int_equal(decode_raw(buf, n), SMPL_E_RESERVED);
	n = raw_frame(buf, SMPL_MAGIC, 1, SMPL_OP_ARM, 0, 0, 0x8000, NULL, 0);
	assert_int_equal(decode_raw(buf, n), SMPL_E_RESERVED);

	/* status report: reserved0, reserved1, unknown flag bits */
	const size_t status_reserved[] = { 5, 6, 7 };
	for (size_t i = 0; i < ARRAY_LEN(status_reserved); i++) {
		len = payload_for(SMPL_OP_STATUS, payload);
		payload[status_reserved[i]] = 0x01;
		n = good_frame(buf, SMPL_OP_STATUS, 0, payload, len);
		assert_int_equal(decode_raw(buf, n), SMPL_E_RESERVED);
	}
	len = payload_for(SMPL_OP_STATUS, payload);
	payload[4] |= 0x80;
	n = good_frame(buf, SMPL_OP_STATUS, 0, payload, len);
	assert_int_equal(decode_raw(buf, n), SMPL_E_RESERVED);

	/* the same checks apply to a GET_STATUS reply */
	len = payload_for(SMPL_OP_GET_STATUS | SMPL_OP_REPLY, payload);
	payload[7] = 0x40;
	n = good_frame(buf, SMPL_OP_GET_STATUS | SMPL_OP_REPLY, 0, payload, len);
	assert_int_equal(decode_raw(buf, n), SMPL_E_RESERVED);

	/* pulse report: each byte of the reserved word */
	for (size_t off = 12; off < 16; off++) {
		len = payload_for(SMPL_OP_PULSE, payload);
		payload[off] = 0x10;
		n = good_frame(buf, SMPL_OP_PULSE, 0, payload, len);
		assert_int_equal(decode_raw(buf, n), SMPL_E_RESERVED);
	}

	/* info: unknown flag bits */
	len = payload_for(SMPL_OP_GET_INFO | SMPL_OP_REPLY, payload);
	payload[35] |= 0x02;
	n = good_frame(buf, SMPL_OP_GET_INFO | SMPL_OP_REPLY, 0, payload, len);
	assert_int_equal(decode_raw(buf, n), SMPL_E_RESERVED);
}

static void test_out_of_range(void **state)
{
	_Alignas(8) uint8_t payload[SMPL_MAX_PAYLOAD];
	uint8_t buf[SMPL_MAX_FRAME];
	size_t n, len;

	(void)state;
	/* state: the largest valid one passes, one past it fails */
	len = payload_for(SMPL_OP_STATUS, payload);
	payload[0] = SMPL_STATE__MAX;
	n = good_frame(buf, SMPL_OP_STATUS, 0, payload, len);
	assert_int_equal(decode_raw(buf, n), 0);
	payload[0] = SMPL_STATE__MAX + 1;
	n = good_frame(buf, SMPL_OP_STATUS, 0, payload, len);
	assert_int_equal(decode_raw(buf, n), SMPL_E_OUT_OF_RANGE);

	/* fault code */
	len = payload_for(SMPL_OP_STATUS, payload);
	payload[1] = SMPL_FAULT__MAX;
	n = good_frame(buf, SMPL_OP_STATUS, 0, payload, len);
	assert_int_equal(decode_raw(buf, n), 0);
	payload[1] = SMPL_FAULT__MAX + 1;
	n = good_frame(buf, SMPL_OP_STATUS, 0, payload, len);
	assert_int_equal(decode_raw(buf, n), SMPL_E_OUT_OF_RANGE);
	payload[1] = 0xff;
	n = good_frame(buf, SMPL_OP_GET_STATUS | SMPL_OP_REPLY, 0, payload, len);
	assert_int_equal(decode_raw(buf, n), SMPL_E_OUT_OF_RANGE);

	/* interlock bits beyond the seven defined */
	len = payload_for(SMPL_OP_STATUS, payload);
	payload[2] = 0x80;
	n = good_frame(buf, SMPL_OP_STATUS, 0, payload, len);
	assert_int_equal(decode_raw(buf, n), SMPL_E_OUT_OF_RANGE);

	/* info strings: bad serial character, empty serial, garbage after NUL,
	 * unprintable model */
	len = payload_for(SMPL_OP_GET_INFO | SMPL_OP_REPLY, payload);
	payload[3] = ' ';
	n = good_frame(buf, SMPL_OP_GET_INFO | SMPL_OP_REPLY, 0, payload, len);
	assert_int_equal(decode_raw(buf, n), SMPL_E_OUT_OF_RANGE);
	len = payload_for(SMPL_OP_GET_INFO | SMPL_OP_REPLY, payload);
	memset(payload, 0, 16);
	n = good_frame(buf, SMPL_OP_GET_INFO | SMPL_OP_REPLY, 0, payload, len);
	assert_int_equal(decode_raw(buf, n), SMPL_E_OUT_OF_RANGE);
	len = payload_for(SMPL_OP_GET_INFO | SMPL_OP_REPLY, payload);
	payload[15] = 'X';	/* "SMP-000042\0...X" */
	n = good_frame(buf, SMPL_OP_GET_INFO | SMPL_OP_REPLY, 0, payload, len);
	assert_int_equal(decode_raw(buf, n), SMPL_E_OUT_OF_RANGE);
	len = payload_for(SMPL_OP_GET_INFO | SMPL_OP_REPLY, payload);
	payload[16 + 2] = 0x07;
	n = good_frame(buf, SMPL_OP_GET_INFO | SMPL_OP_REPLY, 0, payload, len);
	assert_int_equal(decode_raw(buf, n), SMPL_E_OUT_OF_RANGE);
}

/* ---- no truncation and no single-bit flip is accepted --------------------- */

struct sample_frame {
	uint8_t bytes[SMPL_MAX_FRAME];
	size_t len;
};

/* Every valid frame kind: commands, OK replies, error replies, reports. */
static size_t all_valid_frames(struct sample_frame *out, size_t max)
{
	_Alignas(8) uint8_t payload[SMPL_MAX_PAYLOAD];
	size_t count = 0;

	for (size_t i = 0; i < ARRAY_LEN(all_commands); i++) {
		uint8_t op = all_commands[i];
		uint8_t ops[2] = { op, op | SMPL_OP_REPLY };

		for (size_t k = 0; k < 2 && count < max; k++) {
			size_t len = payload_for(ops[k], payload);
			int n = smpl_encode(ops[k], (uint16_t)(i * 7), 0, payload, len,
					    out[count].bytes, sizeof(out[count].bytes));
			assert_true(n > 0);
			out[count++].len = (size_t)n;
		}
		if (count < max) {
			int n = smpl_encode(op | SMPL_OP_REPLY, 3, SMPL_ST_BAD_STATE, NULL, 0,
					    out[count].bytes, sizeof(out[count].bytes));
			out[count++].len = (size_t)n;
		}
	}
	const uint8_t reports[] = { SMPL_OP_STATUS, SMPL_OP_PULSE };
	for (size_t i = 0; i < ARRAY_LEN(reports) && count < max; i++) {
		size_t len = payload_for(reports[i], payload);
		int n = smpl_encode(reports[i], 500, 0, payload, len,
				    out[count].bytes, sizeof(out[count].bytes));
		out[count++].len = (size_t)n;
	}
	return count;
}

static void test_every_truncation_rejected(void **state)
{
	struct sample_frame frames[40];
	size_t count = all_valid_frames(frames, ARRAY_LEN(frames));
	size_t checked = 0;

	(void)state;
	assert_int_equal(count, 32);
	for (size_t i = 0; i < count; i++) {
		assert_int_equal(decode_raw(frames[i].bytes, frames[i].len), 0);
		for (size_t n = 0; n < frames[i].len; n++) {
			/* an exact-size copy, so ASan sees any read past it */
			uint8_t *copy = malloc(n ? n : 1);

			assert_non_null(copy);
			memcpy(copy, frames[i].bytes, n);
			assert_int_equal(decode_raw(copy, n), SMPL_E_TRUNCATED);
			free(copy);
			checked++;
		}
	}
	assert_true(checked > 500);
}

static void test_every_bit_flip_rejected(void **state)
{
	struct sample_frame frames[40];
	size_t count = all_valid_frames(frames, ARRAY_LEN(frames));
	size_t checked = 0;

	(void)state;
	for (size_t i = 0; i < count; i++) {
		size_t len = frames[i].len;
		uint8_t *copy = malloc(len);

		assert_non_null(copy);
		for (size_t bit = 0; bit < len * 8; bit++) {
			memcpy(copy, frames[i].bytes, len);
			copy[bit / 8] ^= (uint8_t)(1u << (bit % 8));
			int err = decode_raw(copy, len);

			if (err == 0)
				fail_msg("frame %zu bit %zu flipped was accepted", i, bit);
			assert_true(err < 0 && err >= SMPL_E_OUT_OF_RANGE);
			checked++;
		}
		free(copy);
	}
	assert_true(checked > 5000);
}

/* ---- random frames: whatever decodes re-encodes to the same bytes ---------- */

/*
 * A random frame with a correct CRC, its header fields mostly near valid
 * values so that decoding reaches the later checks.
 */
static size_t random_frame(unsigned short rng[3], uint8_t *buf, size_t size)
{
	static const uint8_t ops[] = {
		0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b,
		0x40, 0x41, 0x42, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8a, 0x8b, 0xc0, 0xff,
	};
	static const uint16_t lens[] = { 0, 8, 16, 24, 64, 1, 15, 112, 113 };
	uint16_t len = lens[nrand48(rng) % ARRAY_LEN(lens)];
	uint16_t status = nrand48(rng) % 2 ? 0 : (uint16_t)(nrand48(rng) % 12);
	size_t n;

	if (len > size - SMPL_HDR_SIZE)
		len = (uint16_t)(size - SMPL_HDR_SIZE);
	n = raw_frame(buf, nrand48(rng) % 50 ? SMPL_MAGIC : (uint16_t)nrand48(rng),
		      nrand48(rng) % 50 ? SMPL_PROTO_VERSION : (uint8_t)nrand48(rng),
		      ops[nrand48(rng) % ARRAY_LEN(ops)], len, status,
		      nrand48(rng) % 30 ? 0 : (uint16_t)nrand48(rng), NULL, 0);
	for (size_t i = 0; i < len; i++) {
		/* mostly small bytes, so states, faults and reserved fields
		 * are often valid */
		long r = nrand48(rng);

		buf[SMPL_HDR_SIZE + i] = (uint8_t)(r % 4 ? r % 8 : r >> 8);
	}
	fix_crc(buf, len);
	return n + len;
}

static void test_random_frames_round_trip(void **state)
{
	unsigned short rng[3] = { 1, 2, 3 };
	unsigned long accepted = 0, rejected[13] = { 0 };

	(void)state;
	for (int i = 0; i < 300000; i++) {
		uint8_t buf[SMPL_MAX_FRAME + 8], again[SMPL_MAX_FRAME];
		struct smpl_frame f;
		size_t n = random_frame(rng, buf, sizeof(buf));
		long damage = nrand48(rng) % 40;
		int err;

		if (damage == 0)
			n -= 1 + (size_t)nrand48(rng) % n;	/* cut short */
		else if (damage == 1)
			buf[12 + nrand48(rng) % 4] ^= (uint8_t)(1 + nrand48(rng) % 255);
		err = smpl_decode(buf, n, &f);

		if (err) {
			assert_true(err <= -1 && err >= -10);
			rejected[-err]++;
			continue;
		}
		accepted++;
		/* accepted: the frame is exactly what the encoder makes of it */
		int m = smpl_encode(f.op, f.seq, f.status, f.payload, f.len, again, sizeof(again));
		assert_int_equal(m, n);
		assert_memory_equal(again, buf, n);
		assert_int_equal(f.len, f.status ? 0 : smpl_payload_size(f.op));
		if (f.op == SMPL_OP_STATUS || f.op == (SMPL_OP_GET_STATUS | SMPL_OP_REPLY)) {
			assert_true(f.payload[0] <= SMPL_STATE__MAX);
			assert_true(f.payload[1] <= SMPL_FAULT__MAX);
		}
	}
	print_message("# random frames: %lu accepted", accepted);
	for (int e = 1; e <= 10; e++)
		print_message(", %s %lu", smpl_codec_strerror(-e), rejected[e]);
	print_message("\n");
	/* every outcome happened: the generator reaches every check */
	assert_true(accepted > 1000);
	for (int e = 1; e <= 10; e++)
		assert_true(rejected[e] > 0);
}

/* ---- names and energy ---------------------------------------------------- */

static void test_names(void **state)
{
	(void)state;
	assert_string_equal(smpl_op_name(SMPL_OP_ARM), "ARM");
	assert_string_equal(smpl_op_name(SMPL_OP_ARM | SMPL_OP_REPLY), "ARM_REPLY");
	assert_string_equal(smpl_op_name(SMPL_OP_PULSE), "PULSE");
	assert_string_equal(smpl_op_name(0x7e), "UNKNOWN");
	assert_string_equal(smpl_state_name(SMPL_STATE_EMITTING), "EMITTING");
	assert_string_equal(smpl_state_name(200), "UNKNOWN");
	assert_string_equal(smpl_status_name(SMPL_ST_CAUSE_PERSISTS), "CAUSE_PERSISTS");
	assert_string_equal(smpl_status_name(999), "UNKNOWN");
	assert_string_equal(smpl_fault_name(SMPL_FAULT_WATCHDOG), "WATCHDOG");
	assert_string_equal(smpl_fault_name(99), "UNKNOWN");
	assert_string_equal(smpl_interlock_name(SMPL_IL_ESTOP), "estop");
	assert_string_equal(smpl_interlock_name(SMPL_IL_KEY | SMPL_IL_DOOR), "unknown");
	for (int e = SMPL_E_INVALID; e < 0; e++)
		assert_string_not_equal(smpl_codec_strerror(e), "unknown codec error");
	assert_string_equal(smpl_codec_strerror(-100), "unknown codec error");
	for (size_t i = 0; i < ARRAY_LEN(all_commands); i++)
		assert_string_not_equal(smpl_op_name(all_commands[i] | SMPL_OP_REPLY), "UNKNOWN");
}

static void test_energy(void **state)
{
	struct smpl_params_n p = sample_params();

	(void)state;
	/* 4 J/cm2 on a 3 mm spot: 4000 mJ/cm2 * pi * (0.15 cm)^2 = 282.743 mJ */
	p.fluence_mj_cm2 = 4000;
	p.spot_um = 3000;
	assert_int_equal(smpl_params_energy_uj(&p), 282743);
	/* 10 J/cm2 on a 6 mm spot: 2827.433 mJ */
	p.fluence_mj_cm2 = 10000;
	p.spot_um = 6000;
	assert_int_equal(smpl_params_energy_uj(&p), 2827433);
	p.fluence_mj_cm2 = 0;
	assert_int_equal(smpl_params_energy_uj(&p), 0);
	/* saturates rather than wrapping */
	p.fluence_mj_cm2 = UINT32_MAX;
	p.spot_um = UINT16_MAX;
	assert_int_equal(smpl_params_energy_uj(&p), UINT32_MAX);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crc_matches_reference),
		cmocka_unit_test(test_encode_wire_layout),
		cmocka_unit_test(test_encode_errors),
		cmocka_unit_test(test_round_trip_commands),
		cmocka_unit_test(test_round_trip_ok_replies),
		cmocka_unit_test(test_round_trip_error_replies),
		cmocka_unit_test(test_round_trip_reports),
		cmocka_unit_test(test_payload_conversions),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_oversize),
		cmocka_unit_test(test_bad_magic_and_version),
		cmocka_unit_test(test_bad_crc),
		cmocka_unit_test(test_unknown_op),
		cmocka_unit_test(test_bad_length),
		cmocka_unit_test(test_bad_status),
		cmocka_unit_test(test_reserved_nonzero),
		cmocka_unit_test(test_out_of_range),
		cmocka_unit_test(test_every_truncation_rejected),
		cmocka_unit_test(test_every_bit_flip_rejected),
		cmocka_unit_test(test_random_frames_round_trip),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_energy),
	};

	return cmocka_run_group_tests_name("codec", tests, NULL, NULL);
}
