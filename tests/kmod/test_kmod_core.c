// SPDX-License-Identifier: GPL-2.0
/*
 * Unit tests of smplaser.ko's frame checks (kmod/frame.c) and event queue
 * (kmod/events.c), built in userspace over tests/kmod/shim/kshim.h.  Frames
 * come from the userspace codec (common/codec.c), an independent
 * implementation of the same protocol, and are then broken one way at a
 * time: every one must be refused.
 */
#include <stdarg.h>
#include <setjmp.h>
#include <cmocka.h>
#include <zlib.h>

#include "codec.h"
#include "../../kmod/smplaser-core.h"

u64 kshim_now_ns;

u32 crc32_le(u32 crc, const void *p, size_t len)
{
	return ~(u32)crc32(~crc & 0xffffffffu, p, (uInt)len);
}

/* --- frames ----------------------------------------------------------------- */

static struct smpl_status_n good_status(void)
{
	struct smpl_status_n s = {
		.state = SMPL_STATE_READY, .fault = 0, .interlocks = 0,
		.flags = SMPL_SF_PARAMS_SET, .shot_count = 1234,
		.last_energy_uj = 282743, .rtc_s = 1795644885,
	};
	return s;
}

/* A valid status report frame from the codec; returns its length. */
static size_t status_frame(uint8_t *buf, size_t size, const struct smpl_status_n *n)
{
	struct smpl_status_report w;
	int len;

	smpl_status_encode(n, &w);
	len = smpl_encode(SMPL_OP_STATUS, 7, 0, &w, sizeof(w), buf, size);
	assert_true(len > 0);
	return (size_t)len;
}

/* Re-encode @buf's CRC after a deliberate change, so only that change counts. */
static void fix_crc(uint8_t *buf, size_t payload_len)
{
	uint32_t crc = smpl_frame_crc(buf, buf + SMPL_HDR_SIZE, payload_len);

	buf[12] = (uint8_t)crc;
	buf[13] = (uint8_t)(crc >> 8);
	buf[14] = (uint8_t)(crc >> 16);
	buf[15] = (uint8_t)(crc >> 24);
}

static void test_valid_status_report(void **state)
{
	struct smpl_status_n n = good_status();
	struct smplaser_unit_status st;
	struct smplaser_frame f;
	uint8_t buf[128];
	size_t len = status_frame(buf, sizeof(buf), &n);

	(void)state;
	assert_int_equal(smplaser_frame_parse(buf, len, &f), 0);
	assert_int_equal(f.op, SMPL_OP_STATUS);
	assert_int_equal(f.seq, 7);
	assert_int_equal(f.len, SMPL_STATUS_SIZE);
	assert_int_equal(smplaser_status_decode(f.payload, &st), 0);
	assert_true(st.valid);
	assert_int_equal(st.state, SMPL_STATE_READY);
	assert_int_equal(st.shot_count, 1234);
	assert_int_equal(st.last_energy_uj, 282743);
	assert_int_equal(st.rtc_s, 1795644885);
	assert_int_equal(st.flags, SMPL_SF_PARAMS_SET);
}

static void test_every_truncation_refused(void **state)
{
	struct smpl_status_n n = good_status();
	struct smplaser_frame f;
	uint8_t buf[128];
	size_t len = status_frame(buf, sizeof(buf), &n);

	(void)state;
	for (size_t cut = 0; cut < len; cut++)
		assert_int_equal(smplaser_frame_parse(buf, cut, &f), -EPROTO);
}

static void test_trailing_bytes_refused(void **state)
{
	struct smpl_status_n n = good_status();
	struct smplaser_frame f;
	uint8_t buf[128] = { 0 };
	size_t len = status_frame(buf, sizeof(buf), &n);

	(void)state;
	assert_int_equal(smplaser_frame_parse(buf, len + 1, &f), -EPROTO);
	assert_int_equal(smplaser_frame_parse(buf, sizeof(buf), &f), -EPROTO);
}

static void test_every_bit_flip_refused(void **state)
{
	struct smpl_status_n n = good_status();
	struct smplaser_frame f;
	uint8_t buf[128];
	size_t len = status_frame(buf, sizeof(buf), &n);

	(void)state;
	for (size_t bit = 0; bit < len * 8; bit++) {
		buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		assert_int_equal(smplaser_frame_parse(buf, len, &f), -EPROTO);
		buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
	}
	assert_int_equal(smplaser_frame_parse(buf, len, &f), 0);
}

/* Header fields that are wrong even with a correct CRC. */
static void test_bad_header_with_good_crc(void **state)
{
	struct smpl_status_n n = good_status();
	struct smplaser_frame f;
	uint8_t buf[256] = { 0 };
	size_t len = status_frame(buf, sizeof(buf), &n);

	(void)state;
	buf[0] ^= 0xff;				/* magic */
	fix_crc(buf, SMPL_STATUS_SIZE);
	assert_int_equal(smplaser_frame_parse(buf, len, &f), -EPROTO);
	status_frame(buf, sizeof(buf), &n);
	buf[2] = 2;				/* version */
	fix_crc(buf, SMPL_STATUS_SIZE);
	assert_int_equal(smplaser_frame_parse(buf, len, &f), -EPROTO);
	status_frame(buf, sizeof(buf), &n);
	buf[10] = 1;				/* reserved */
	fix_crc(buf, SMPL_STATUS_SIZE);
	assert_int_equal(smplaser_frame_parse(buf, len, &f), -EPROTO);

	/* hdr.len above SMPL_MAX_PAYLOAD, with that many bytes present */
	status_frame(buf, sizeof(buf), &n);
	buf[6] = SMPL_MAX_PAYLOAD + 1;
	buf[7] = 0;
	fix_crc(buf, SMPL_MAX_PAYLOAD + 1);
	assert_int_equal(smplaser_frame_parse(buf, SMPL_HDR_SIZE + SMPL_MAX_PAYLOAD + 1, &f),
			 -EPROTO);
	/* hdr.len 0xffff: never trusted to size a read */
	buf[6] = 0xff;
	buf[7] = 0xff;
	assert_int_equal(smplaser_frame_parse(buf, sizeof(buf), &f), -EPROTO);
}

static void test_status_payload_ranges(void **state)
{
	struct smplaser_unit_status st;
	struct smpl_status_report w;
	struct smpl_status_n n = good_status();

	(void)state;
	smpl_status_encode(&n, &w);
	assert_int_equal(smplaser_status_decode((u8 *)&w, &st), 0);

	w.state = SMPL_STATE__MAX + 1;
	assert_int_equal(smplaser_status_decode((u8 *)&w, &st), -EPROTO);
	smpl_status_encode(&n, &w);
	w.fault = SMPL_FAULT__MAX + 1;
	assert_int_equal(smplaser_status_decode((u8 *)&w, &st), -EPROTO);
	smpl_status_encode(&n, &w);
	w.interlocks = htole16(SMPL_IL_ALL + 1);
	assert_int_equal(smplaser_status_decode((u8 *)&w, &st), -EPROTO);
	smpl_status_encode(&n, &w);
	w.reserved0 = 1;
	assert_int_equal(smplaser_status_decode((u8 *)&w, &st), -EPROTO);
	smpl_status_encode(&n, &w);
	w.reserved1 = htole16(1);
	assert_int_equal(smplaser_status_decode((u8 *)&w, &st), -EPROTO);
}

static void test_pulse_payload(void **state)
{
	struct smpl_pulse_n n = { .shot = 9, .measured_uj = 280000, .set_uj = 282743 };
	struct smpl_pulse_report w;
	struct smplaser_ev_pulse p;

	(void)state;
	smpl_pulse_encode(&n, &w);
	assert_int_equal(smplaser_pulse_decode((u8 *)&w, &p), 0);
	assert_int_equal(p.shot, 9);
	assert_int_equal(p.measured_uj, 280000);
	assert_int_equal(p.set_uj, 282743);
	w.reserved = htole32(1);
	assert_int_equal(smplaser_pulse_decode((u8 *)&w, &p), -EPROTO);
}

static struct smpl_info_n good_info(void)
{
	struct smpl_info_n n = {
		.serial = "SMP-000001", .model = "SMPL-QS1064",
		.fw_major = 1, .fw_minor = 2, .fw_patch = 3,
		.wavelength_nm = { 1064, 532 }, .max_fluence_mj_cm2 = 10000,
		.min_spot_um = 2000, .max_spot_um = 6000,
		.min_pulse_ps = 5000, .max_pulse_ps = 25000,
		.max_rate_mhz = 10000, .watchdog_ms = 1000, .emission_delay_ms = 2000,
	};
	return n;
}

static int decode_info(const struct smpl_info_n *n, struct smplaser_info *out)
{
	struct smpl_info w;

	smpl_info_encode(n, &w);
	return smplaser_info_decode((u8 *)&w, out);
}

static void test_info_payload(void **state)
{
	struct smpl_info_n n = good_info();
	struct smplaser_info info;
	struct smpl_info w;

	(void)state;
	assert_int_equal(decode_info(&n, &info), 0);
	assert_string_equal(info.serial, "SMP-000001");
	assert_string_equal(info.model, "SMPL-QS1064");
	assert_int_equal(info.watchdog_ms, 1000);
	assert_int_equal(info.max_spot_um, 6000);

	/* A 16-character serial fills the field with no NUL: still terminated. */
	strcpy(n.serial, "ABCDEFGHIJKLMNOP");
	assert_int_equal(decode_info(&n, &info), 0);
	assert_string_equal(info.serial, "ABCDEFGHIJKLMNOP");

	n = good_info();
	strcpy(n.serial, "SMP 01");		/* a space */
	assert_int_equal(decode_info(&n, &info), -EPROTO);
	n = good_info();
	n.serial[3] = (char)0xe9;		/* Latin-1: the kernel's isalnum() takes it */
	assert_int_equal(decode_info(&n, &info), -EPROTO);
	n = good_info();
	n.serial[0] = '\0';			/* empty */
	assert_int_equal(decode_info(&n, &info), -EPROTO);
	n = good_info();
	n.model[2] = '\n';			/* not printable */
	assert_int_equal(decode_info(&n, &info), -EPROTO);
	n = good_info();
	smpl_info_encode(&n, &w);
	w.serial[14] = 'X';			/* junk after the NUL padding */
	assert_int_equal(smplaser_info_decode((u8 *)&w, &info), -EPROTO);

	n = good_info();
	n.min_spot_um = 7000;			/* min above max */
	assert_int_equal(decode_info(&n, &info), -EPROTO);
	n = good_info();
	n.watchdog_ms = 1;			/* no room for a heartbeat below it */
	assert_int_equal(decode_info(&n, &info), -EPROTO);
	n = good_info();
	n.max_rate_mhz = 0;
	assert_int_equal(decode_info(&n, &info), -EPROTO);
	n = good_info();
	n.wavelength_nm[0] = 0;
	assert_int_equal(decode_info(&n, &info), -EPROTO);
}

/* What the driver sends, the independent codec accepts. */
static void test_encode_matches_codec(void **state)
{
	struct smpl_params_n pn = { 1064, 3000, 4000, 10000, 5000 };
	struct smpl_params w;
	struct smpl_frame f;
	uint8_t buf[SMPL_MAX_FRAME];
	size_t len;

	(void)state;
	len = smplaser_frame_encode(buf, SMPL_OP_GET_INFO, 0xbeef, NULL, 0);
	assert_int_equal(len, SMPL_HDR_SIZE);
	assert_int_equal(smpl_decode(buf, len, &f), 0);
	assert_int_equal(f.op, SMPL_OP_GET_INFO);
	assert_int_equal(f.seq, 0xbeef);

	smpl_params_encode(&pn, &w);
	len = smplaser_frame_encode(buf, SMPL_OP_SET_PARAMS, 1, &w, sizeof(w));
	assert_int_equal(len, SMPL_HDR_SIZE + SMPL_PARAMS_SIZE);
	assert_int_equal(smpl_decode(buf, len, &f), 0);
	assert_memory_equal(f.payload, &w, sizeof(w));
}

static void test_unit_errnos(void **state)
{
	(void)state;
	assert_int_equal(smplaser_unit_errno(SMPL_ST_OK), 0);
	assert_int_equal(smplaser_unit_errno(SMPL_ST_INTERLOCK_OPEN), -EPERM);
	assert_int_equal(smplaser_unit_errno(SMPL_ST_FAULT_LATCHED), -ENOTRECOVERABLE);
	assert_int_equal(smplaser_unit_errno(SMPL_ST_OUT_OF_RANGE), -ERANGE);
	assert_int_equal(smplaser_unit_errno(SMPL_ST_BAD_STATE), -EBUSY);
	assert_int_equal(smplaser_unit_errno(SMPL_ST_CAUSE_PERSISTS), -EAGAIN);
	assert_int_equal(smplaser_unit_errno(SMPL_ST_NO_PARAMS), -ENODATA);
	assert_int_equal(smplaser_unit_errno(SMPL_ST_UNKNOWN_OP), -EOPNOTSUPP);
	assert_int_equal(smplaser_unit_errno(SMPL_ST_BAD_FRAME), -EPROTO);
	assert_int_equal(smplaser_unit_errno(0x7777), -EPROTO);
}

/* --- the event queue --------------------------------------------------------------- */

static void push_pulse(struct smplaser_queue *q, u32 shot)
{
	struct smplaser_event ev = { .type = SMPLASER_EV_PULSE };

	ev.pulse.shot = shot;
	kshim_now_ns += 1000;
	smplaser_queue_push(q, &ev);
}

static struct smplaser_event take(struct smplaser_queue *q)
{
	struct smplaser_event ev;

	assert_true(smplaser_queue_peek(q, &ev));
	smplaser_queue_consume(q, &ev);
	return ev;
}

static void test_queue_in_order_with_times(void **state)
{
	static struct smplaser_queue q;
	struct smplaser_event ev;

	(void)state;
	smplaser_queue_reset(&q);
	assert_false(smplaser_queue_peek(&q, &ev));
	kshim_now_ns = 5000;
	push_pulse(&q, 1);
	push_pulse(&q, 2);
	ev = take(&q);
	assert_int_equal(ev.seq, 0);
	assert_int_equal(ev.pulse.shot, 1);
	assert_int_equal(ev.time_ns, 6000);
	ev = take(&q);
	assert_int_equal(ev.seq, 1);
	assert_int_equal(ev.time_ns, 7000);
	assert_false(smplaser_queue_peek(&q, &ev));
	assert_false(smplaser_queue_finished(&q));
}

static void test_queue_overflow_is_never_silent(void **state)
{
	static struct smplaser_queue q;
	struct smplaser_event ev;
	u32 i;

	(void)state;
	smplaser_queue_reset(&q);
	for (i = 0; i < SMPLASER_QUEUE_LEN + 10; i++)
		push_pulse(&q, i);
	for (i = 0; i < SMPLASER_QUEUE_LEN; i++) {
		ev = take(&q);
		assert_int_equal(ev.type, SMPLASER_EV_PULSE);
		assert_int_equal(ev.seq, i);
	}
	/* Lost while the reader looks at the overflow record: counted next. */
	assert_true(smplaser_queue_peek(&q, &ev));
	assert_int_equal(ev.type, SMPLASER_EV_OVERFLOW);
	assert_int_equal(ev.overflow.lost, 10);
	assert_int_equal(ev.seq, SMPLASER_QUEUE_LEN);
	push_pulse(&q, 999);
	smplaser_queue_consume(&q, &ev);
	ev = take(&q);
	assert_int_equal(ev.type, SMPLASER_EV_OVERFLOW);
	assert_int_equal(ev.overflow.lost, 1);
	assert_int_equal(ev.seq, SMPLASER_QUEUE_LEN + 10);
	/* Then events queue again, their seq past every lost one. */
	push_pulse(&q, 1000);
	ev = take(&q);
	assert_int_equal(ev.type, SMPLASER_EV_PULSE);
	assert_int_equal(ev.pulse.shot, 1000);
	assert_int_equal(ev.seq, SMPLASER_QUEUE_LEN + 11);
}

static void test_queue_disconnect_last(void **state)
{
	static struct smplaser_queue q;
	struct smplaser_event ev;

	(void)state;
	smplaser_queue_reset(&q);
	push_pulse(&q, 1);
	q.disconnected = true;
	ev = take(&q);
	assert_int_equal(ev.type, SMPLASER_EV_PULSE);
	assert_false(smplaser_queue_finished(&q));
	ev = take(&q);
	assert_int_equal(ev.type, SMPLASER_EV_DISCONNECT);
	assert_int_equal(ev.seq, 1);
	assert_true(smplaser_queue_finished(&q));
	assert_false(smplaser_queue_peek(&q, &ev));

	/* A reset (a new opener) keeps the disconnected state. */
	smplaser_queue_reset(&q);
	assert_true(q.disconnected);
}

static void test_status_event_fields(void **state)
{
	struct smplaser_unit_status st = {
		.valid = true, .state = SMPL_STATE_FAULT, .fault = SMPL_FAULT_INTERLOCK,
		.interlocks = SMPL_IL_DOOR, .flags = 5, .shot_count = 42, .last_energy_uj = 7,
	};
	struct smplaser_event ev;

	(void)state;
	memset(&ev, 0xa5, sizeof(ev));
	smplaser_event_status(&ev, &st);
	assert_int_equal(ev.type, SMPLASER_EV_STATUS);
	assert_int_equal(ev.status.state, SMPL_STATE_FAULT);
	assert_int_equal(ev.status.fault, SMPL_FAULT_INTERLOCK);
	assert_int_equal(ev.status.interlocks, SMPL_IL_DOOR);
	assert_int_equal(ev.status.shot_count, 42);
	assert_int_equal(ev.status.reserved1, 0);	/* no stale bytes reach userspace */
	assert_int_equal(ev.reserved, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid_status_report),
		cmocka_unit_test(test_every_truncation_refused),
		cmocka_unit_test(test_trailing_bytes_refused),
		cmocka_unit_test(test_every_bit_flip_refused),
		cmocka_unit_test(test_bad_header_with_good_crc),
		cmocka_unit_test(test_status_payload_ranges),
		cmocka_unit_test(test_pulse_payload),
		cmocka_unit_test(test_info_payload),
		cmocka_unit_test(test_encode_matches_codec),
		cmocka_unit_test(test_unit_errnos),
		cmocka_unit_test(test_queue_in_order_with_times),
		cmocka_unit_test(test_queue_overflow_is_never_silent),
		cmocka_unit_test(test_queue_disconnect_last),
		cmocka_unit_test(test_status_event_fields),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
