// SPDX-License-Identifier: MIT
/*
 * usb-smoke: a small libusb-1.0 client of the smplaser unit for the VM tests.
 * It finds the unit (VID 0x1209, PID SMPL_USB_PID), checks its interface
 * and endpoints against proto.h, and runs the given steps in order, printing
 * what it got as key=value lines.  Exit status 0 when every step did what
 * it expects, 1 otherwise (with the reason on stderr), 2 for usage errors.
 *
 *   version              GET_VERSION control request
 *   info                 GET_INFO round trip
 *   status               GET_STATUS round trip
 *   disarm               SMPL_REQ_DISARM control request
 *   unknown-request      a vendor request the unit does not know: must stall
 *   reports N            read N interrupt reports, check each decodes and
 *                        their seq counts up; prints elapsed_ms
 *   expect-decode-error ERR
 *                        GET_STATUS whose reply must fail the codec with ERR:
 *                        truncated, oversize, bad-crc, ...
 *   expect-wrong-seq     GET_STATUS whose reply must carry another seq
 *   expect-stall         GET_STATUS whose reply must be a stall (clears it)
 *   expect-no-answer     GET_STATUS that must get no reply within 300 ms
 *   params RATE_MHZ      GET_INFO, then SET_PARAMS inside its limits
 *   arm STATUS           ARM; its reply status must be STATUS (OK,
 *                        INTERLOCK_OPEN, NO_PARAMS, ... as smpl_status_name)
 *   disarm-cmd STATUS    the DISARM command (bulk), likewise
 *   ack-fault STATUS     ACK_FAULT, likewise
 *   heartbeat MS         for MS ms: HEARTBEAT every 100 ms, read reports;
 *                        prints pulses=N last_shot=N last_state=S
 *                        last_heartbeat_ns=N (CLOCK_MONOTONIC)
 *   heartbeat-until FILE the same until FILE exists (at most 20 s)
 *   watch MS             the same without heartbeats
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libusb.h>

#include "codec.h"

#define TIMEOUT_MS		1000
#define NO_ANSWER_MS		300
#define BULK_BUF		512	/* a whole high-speed packet: no overflow */

struct unit {
	libusb_context *ctx;
	libusb_device_handle *h;
	uint8_t ep_out, ep_in, ep_int;
	uint16_t seq;
};

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...)
{
	va_list ap;

	fputs("usb-smoke: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return -1;
}

/* The interface must be the one proto.h describes, endpoints in order. */
static int find_endpoints(struct unit *u)
{
	struct libusb_config_descriptor *cfg;
	const struct libusb_interface_descriptor *alt;
	const struct libusb_endpoint_descriptor *ep;
	int ret = libusb_get_active_config_descriptor(libusb_get_device(u->h), &cfg);

	if (ret)
		return fail("no active configuration: %s", libusb_strerror(ret));
	ret = -1;
	if (cfg->bNumInterfaces != 1 || cfg->interface[0].num_altsetting != 1) {
		fail("expected one interface with one altsetting");
		goto out;
	}
	alt = &cfg->interface[0].altsetting[0];
	printf("class=0x%02x subclass=0x%02x protocol=%u endpoints=%u\n",
	       alt->bInterfaceClass, alt->bInterfaceSubClass, alt->bInterfaceProtocol,
	       alt->bNumEndpoints);
	if (alt->bInterfaceClass != LIBUSB_CLASS_VENDOR_SPEC ||
	    alt->bInterfaceSubClass != SMPL_USB_SUBCLASS ||
	    alt->bInterfaceProtocol != SMPL_PROTO_VERSION || alt->bNumEndpoints != 3) {
		fail("interface is not class 0xff/%u/%u with 3 endpoints",
		     SMPL_USB_SUBCLASS, SMPL_PROTO_VERSION);
		goto out;
	}
	ep = alt->endpoint;
	if ((ep[0].bmAttributes & 3) != LIBUSB_TRANSFER_TYPE_BULK ||
	    (ep[0].bEndpointAddress & LIBUSB_ENDPOINT_IN) ||
	    (ep[1].bmAttributes & 3) != LIBUSB_TRANSFER_TYPE_BULK ||
	    !(ep[1].bEndpointAddress & LIBUSB_ENDPOINT_IN) ||
	    (ep[2].bmAttributes & 3) != LIBUSB_TRANSFER_TYPE_INTERRUPT ||
	    !(ep[2].bEndpointAddress & LIBUSB_ENDPOINT_IN) ||
	    ep[2].wMaxPacketSize < SMPL_MAX_REPORT) {
		fail("endpoints are not bulk OUT, bulk IN, interrupt IN (>= %d bytes)",
		     SMPL_MAX_REPORT);
		goto out;
	}
	u->ep_out = ep[0].bEndpointAddress;
	u->ep_in = ep[1].bEndpointAddress;
	u->ep_int = ep[2].bEndpointAddress;
	printf("ep_out=0x%02x ep_in=0x%02x ep_int=0x%02x int_interval=%u\n",
	       u->ep_out, u->ep_in, u->ep_int, ep[2].bInterval);
	ret = 0;
out:
	libusb_free_config_descriptor(cfg);
	return ret;
}

static int open_unit(struct unit *u)
{
	int ret = libusb_init(&u->ctx);

	if (ret)
		return fail("libusb_init: %s", libusb_strerror(ret));
	u->h = libusb_open_device_with_vid_pid(u->ctx, SMPL_USB_VID, SMPL_USB_PID);
	if (!u->h)
		return fail("no device %04x:%04x", SMPL_USB_VID, SMPL_USB_PID);
	libusb_set_auto_detach_kernel_driver(u->h, 1);
	if (find_endpoints(u))
		return -1;
	ret = libusb_claim_interface(u->h, 0);
	if (ret)
		return fail("claiming interface 0: %s", libusb_strerror(ret));
	u->seq = (uint16_t)(time(NULL) & 0xffff);
	return 0;
}

/* Send command @op with @payload; returns the seq used, or -1. */
static int send_frame(struct unit *u, uint8_t op, const void *payload, size_t plen)
{
	uint8_t frame[SMPL_MAX_FRAME];
	uint16_t seq = ++u->seq;
	int len = smpl_encode(op, seq, 0, payload, plen, frame, sizeof(frame));
	int sent = 0, ret;

	if (len < 0)
		return fail("encoding %s: %s", smpl_op_name(op), smpl_codec_strerror(len));
	ret = libusb_bulk_transfer(u->h, u->ep_out, frame, len, &sent, TIMEOUT_MS);
	if (ret || sent != len)
		return fail("sending %s: %s (%d of %d bytes)", smpl_op_name(op),
			    libusb_strerror(ret), sent, len);
	return seq;
}

static int send_command(struct unit *u, uint8_t op)
{
	return send_frame(u, op, NULL, 0);
}

/* Read one bulk IN transfer; returns its length or a libusb error (< 0). */
static int read_reply(struct unit *u, uint8_t *buf, unsigned int timeout_ms)
{
	int got = 0;
	int ret = libusb_bulk_transfer(u->h, u->ep_in, buf, BULK_BUF, &got, timeout_ms);

	return ret ? ret : got;
}

/*
 * A command round trip whose reply must decode with the matching op and seq;
 * the caller looks at f->status.
 */
static int transact(struct unit *u, uint8_t op, const void *payload, size_t plen,
		    struct smpl_frame *f)
{
	uint8_t buf[BULK_BUF];
	int seq = send_frame(u, op, payload, plen);
	int n, err;

	if (seq < 0)
		return -1;
	n = read_reply(u, buf, TIMEOUT_MS);
	if (n < 0)
		return fail("%s reply: %s", smpl_op_name(op), libusb_strerror(n));
	err = smpl_decode(buf, (size_t)n, f);
	if (err)
		return fail("%s reply (%d bytes) does not decode: %s", smpl_op_name(op), n,
			    smpl_codec_strerror(err));
	if (f->op != (op | SMPL_OP_REPLY) || f->seq != seq)
		return fail("%s reply has op 0x%02x seq %u, expected 0x%02x seq %d",
			    smpl_op_name(op), f->op, f->seq, op | SMPL_OP_REPLY, seq);
	return 0;
}

/* A command round trip that must succeed with status OK. */
static int round_trip(struct unit *u, uint8_t op, struct smpl_frame *f)
{
	if (transact(u, op, NULL, 0, f))
		return -1;
	if (f->status != SMPL_ST_OK)
		return fail("%s reply status %s", smpl_op_name(op), smpl_status_name(f->status));
	return 0;
}

static int step_version(struct unit *u)
{
	struct smpl_version v;
	int n = libusb_control_transfer(u->h, LIBUSB_ENDPOINT_IN | LIBUSB_REQUEST_TYPE_VENDOR |
					LIBUSB_RECIPIENT_INTERFACE, SMPL_REQ_GET_VERSION,
					0, 0, (unsigned char *)&v, sizeof(v), TIMEOUT_MS);

	if (n != (int)sizeof(v))
		return fail("GET_VERSION: %s", n < 0 ? libusb_strerror(n) : "short reply");
	printf("proto_version=%u fw=%u.%u.%u\n", v.proto_version, v.fw_major, v.fw_minor,
	       v.fw_patch);
	if (v.proto_version != SMPL_PROTO_VERSION)
		return fail("GET_VERSION: protocol %u, expected %u", v.proto_version,
			    SMPL_PROTO_VERSION);
	return 0;
}

static int step_disarm(struct unit *u)
{
	int n = libusb_control_transfer(u->h, LIBUSB_ENDPOINT_OUT | LIBUSB_REQUEST_TYPE_VENDOR |
					LIBUSB_RECIPIENT_INTERFACE, SMPL_REQ_DISARM,
					0, 0, NULL, 0, TIMEOUT_MS);

	return n == 0 ? 0 : fail("DISARM request: %s", libusb_strerror(n));
}

static int step_unknown_request(struct unit *u)
{
	uint8_t buf[8];
	int n = libusb_control_transfer(u->h, LIBUSB_ENDPOINT_IN | LIBUSB_REQUEST_TYPE_VENDOR |
					LIBUSB_RECIPIENT_INTERFACE, 0x7f, 0, 0, buf,
					sizeof(buf), TIMEOUT_MS);

	printf("unknown_request=%s\n", n < 0 ? libusb_error_name(n) : "answered");
	return n == LIBUSB_ERROR_PIPE ? 0 : fail("unknown vendor request was not stalled");
}

static int step_info(struct unit *u)
{
	struct smpl_frame f;
	struct smpl_info_n info;
	int err;

	if (round_trip(u, SMPL_OP_GET_INFO, &f))
		return -1;
	err = smpl_info_decode((const struct smpl_info *)f.payload, &info);
	if (err)
		return fail("GET_INFO payload: %s", smpl_codec_strerror(err));
	printf("serial=%s model=%s fw=%u.%u.%u wavelength_nm=%u,%u watchdog_ms=%u"
	       " emission_delay_ms=%u\n", info.serial, info.model, info.fw_major,
	       info.fw_minor, info.fw_patch, info.wavelength_nm[0], info.wavelength_nm[1],
	       info.watchdog_ms, info.emission_delay_ms);
	return 0;
}

static int step_status(struct unit *u)
{
	struct smpl_frame f;
	struct smpl_status_n st;
	int err;

	if (round_trip(u, SMPL_OP_GET_STATUS, &f))
		return -1;
	err = smpl_status_decode((const struct smpl_status_report *)f.payload, &st);
	if (err)
		return fail("GET_STATUS payload: %s", smpl_codec_strerror(err));
	printf("state=%s fault=%s interlocks=0x%04x shots=%" PRIu32 " rtc=%" PRId64 "\n",
	       smpl_state_name(st.state), smpl_fault_name(st.fault), st.interlocks,
	       st.shot_count, st.rtc_s);
	return 0;
}

static uint64_t monotonic_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static int step_reports(struct unit *u, int count)
{
	uint8_t buf[SMPL_MAX_REPORT];
	struct smpl_frame f;
	int statuses = 0, pulses = 0;
	long first_seq = -1, last_seq = -1;
	uint64_t t0 = monotonic_ns();

	for (int i = 0; i < count; i++) {
		int got = 0;
		int ret = libusb_interrupt_transfer(u->h, u->ep_int, buf, sizeof(buf), &got,
						    TIMEOUT_MS);
		int err;

		if (ret)
			return fail("report %d: %s", i, libusb_strerror(ret));
		err = smpl_decode(buf, (size_t)got, &f);
		if (err)
			return fail("report %d (%d bytes): %s", i, got, smpl_codec_strerror(err));
		if (f.op == SMPL_OP_STATUS)
			statuses++;
		else if (f.op == SMPL_OP_PULSE)
			pulses++;
		else
			return fail("report %d has op 0x%02x", i, f.op);
		if (last_seq >= 0 && f.seq != (uint16_t)(last_seq + 1))
			return fail("report seq %u follows %ld", f.seq, last_seq);
		if (first_seq < 0)
			first_seq = f.seq;
		last_seq = f.seq;
	}
	printf("reports=%d status_reports=%d pulse_reports=%d first_seq=%ld last_seq=%ld"
	       " elapsed_ms=%" PRIu64 "\n", count, statuses, pulses, first_seq, last_seq,
	       (monotonic_ns() - t0) / 1000000u);
	return 0;
}

/* SET_PARAMS inside the unit's limits (from GET_INFO), at @rate_mhz. */
static int step_params(struct unit *u, uint32_t rate_mhz)
{
	struct smpl_frame f;
	struct smpl_info_n info;
	struct smpl_params_n p;
	struct smpl_params w;

	if (round_trip(u, SMPL_OP_GET_INFO, &f) ||
	    smpl_info_decode((const struct smpl_info *)f.payload, &info))
		return fail("GET_INFO before SET_PARAMS failed");
	p = (struct smpl_params_n){
		.wavelength_nm = info.wavelength_nm[0],
		.spot_um = info.min_spot_um,
		.fluence_mj_cm2 = info.max_fluence_mj_cm2 < 2000 ? info.max_fluence_mj_cm2 : 2000,
		.pulse_ps = info.min_pulse_ps,
		.rate_mhz = rate_mhz < info.max_rate_mhz ? rate_mhz : info.max_rate_mhz,
	};
	smpl_params_encode(&p, &w);
	if (transact(u, SMPL_OP_SET_PARAMS, &w, sizeof(w), &f))
		return -1;
	printf("set_params=%s energy_uj=%" PRIu32 "\n", smpl_status_name(f.status),
	       smpl_params_energy_uj(&p));
	return f.status == SMPL_ST_OK ? 0 : fail("SET_PARAMS refused");
}

static uint16_t status_code(const char *name)
{
	for (uint16_t st = 0; st <= SMPL_ST__MAX; st++)
		if (strcmp(name, smpl_status_name(st)) == 0)
			return st;
	return UINT16_MAX;
}

/* A command with no payload whose reply status must be @want (a name). */
static int step_command(struct unit *u, uint8_t op, const char *want)
{
	struct smpl_frame f;
	uint16_t code = status_code(want);

	if (code == UINT16_MAX)
		return fail("unknown status name %s", want);
	if (transact(u, op, NULL, 0, &f))
		return -1;
	printf("%s=%s\n", smpl_op_name(op), smpl_status_name(f.status));
	if (f.status != code)
		return fail("%s: status %s, expected %s", smpl_op_name(op),
			    smpl_status_name(f.status), want);
	return 0;
}

/*
 * For @ms milliseconds (or, with @until_file, until that file exists, at
 * most WATCH_MAX_MS) read the interrupt reports, and when @heartbeat send
 * HEARTBEAT every 100 ms (the unit's watchdog is longer).  Prints the
 * pulses seen, the last state reported, and when the last heartbeat went
 * out (CLOCK_MONOTONIC, comparable with the gadget's status times).
 */
#define WATCH_MAX_MS 20000
static int step_watch(struct unit *u, int ms, const char *until_file, bool heartbeat)
{
	uint64_t last_beat_ns = 0;
	uint8_t buf[SMPL_MAX_REPORT];
	struct timespec t0, t;
	long elapsed = 0, next_beat = 0;
	unsigned int pulses = 0, beats = 0, refused = 0;
	uint32_t last_shot = 0;
	int last_state = -1;

	if (until_file)
		ms = WATCH_MAX_MS;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (elapsed < ms && !(until_file && access(until_file, F_OK) == 0)) {
		struct smpl_frame f;
		int got = 0;

		if (heartbeat && elapsed >= next_beat) {
			if (transact(u, SMPL_OP_HEARTBEAT, NULL, 0, &f))
				return -1;
			beats++;
			last_beat_ns = monotonic_ns();
			refused += f.status != SMPL_ST_OK;
			next_beat = elapsed + 100;
		}
		if (libusb_interrupt_transfer(u->h, u->ep_int, buf, sizeof(buf), &got, 20) == 0 &&
		    smpl_decode(buf, (size_t)got, &f) == 0) {
			if (f.op == SMPL_OP_PULSE) {
				struct smpl_pulse_n p;

				if (smpl_pulse_decode((const struct smpl_pulse_report *)f.payload, &p) == 0) {
					pulses++;
					last_shot = p.shot;
				}
			} else if (f.op == SMPL_OP_STATUS) {
				struct smpl_status_n st;

				if (smpl_status_decode((const struct smpl_status_report *)f.payload,
						       &st) == 0)
					last_state = st.state;
			}
		}
		clock_gettime(CLOCK_MONOTONIC, &t);
		elapsed = (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
	}
	printf("pulses=%u last_shot=%" PRIu32 " last_state=%s heartbeats=%u heartbeats_refused=%u"
	       " last_heartbeat_ns=%" PRIu64 "\n",
	       pulses, last_shot, last_state < 0 ? "none" : smpl_state_name((uint8_t)last_state),
	       beats, refused, last_beat_ns);
	return 0;
}

static int codec_error(const char *name)
{
	static const struct { const char *name; int err; } errors[] = {
		{ "truncated", SMPL_E_TRUNCATED }, { "oversize", SMPL_E_OVERSIZE },
		{ "bad-magic", SMPL_E_BAD_MAGIC }, { "bad-version", SMPL_E_BAD_VERSION },
		{ "bad-crc", SMPL_E_BAD_CRC }, { "unknown-op", SMPL_E_UNKNOWN_OP },
		{ "bad-length", SMPL_E_BAD_LENGTH }, { "bad-status", SMPL_E_BAD_STATUS },
		{ "reserved", SMPL_E_RESERVED }, { "out-of-range", SMPL_E_OUT_OF_RANGE },
	};

	for (size_t i = 0; i < sizeof(errors) / sizeof(errors[0]); i++)
		if (strcmp(name, errors[i].name) == 0)
			return errors[i].err;
	return 0;
}

static int step_expect_decode_error(struct unit *u, const char *name)
{
	uint8_t buf[BULK_BUF];
	int want = codec_error(name);
	int n, err;

	if (!want)
		return fail("unknown codec error name %s", name);
	if (send_command(u, SMPL_OP_GET_STATUS) < 0)
		return -1;
	n = read_reply(u, buf, TIMEOUT_MS);
	if (n < 0)
		return fail("hostile reply: %s", libusb_strerror(n));
	err = smpl_decode(buf, (size_t)n, NULL);
	printf("hostile_reply_bytes=%d decode=%s\n", n, smpl_codec_strerror(err));
	if (err != want)
		return fail("the codec said \"%s\", expected \"%s\"", smpl_codec_strerror(err),
			    smpl_codec_strerror(want));
	return 0;
}

static int step_expect_wrong_seq(struct unit *u)
{
	uint8_t buf[BULK_BUF];
	struct smpl_frame f;
	int seq = send_command(u, SMPL_OP_GET_STATUS);
	int n, err;

	if (seq < 0)
		return -1;
	n = read_reply(u, buf, TIMEOUT_MS);
	if (n < 0)
		return fail("reply: %s", libusb_strerror(n));
	err = smpl_decode(buf, (size_t)n, &f);
	if (err)
		return fail("reply does not decode: %s", smpl_codec_strerror(err));
	printf("sent_seq=%d reply_seq=%u\n", seq, f.seq);
	return f.seq != seq ? 0 : fail("the reply carries the command's seq");
}

static int step_expect_stall(struct unit *u)
{
	uint8_t buf[BULK_BUF];
	int n;

	if (send_command(u, SMPL_OP_GET_STATUS) < 0)
		return -1;
	n = read_reply(u, buf, TIMEOUT_MS);
	printf("stalled=%s\n", n == LIBUSB_ERROR_PIPE ? "yes" : "no");
	if (n != LIBUSB_ERROR_PIPE)
		return fail("expected a stall, got %s", n < 0 ? libusb_strerror(n) : "a reply");
	n = libusb_clear_halt(u->h, u->ep_in);
	return n ? fail("clear halt: %s", libusb_strerror(n)) : 0;
}

static int step_expect_no_answer(struct unit *u)
{
	uint8_t buf[BULK_BUF];
	int n;

	if (send_command(u, SMPL_OP_GET_STATUS) < 0)
		return -1;
	n = read_reply(u, buf, NO_ANSWER_MS);
	printf("answered=%s\n", n == LIBUSB_ERROR_TIMEOUT ? "no" : "yes");
	return n == LIBUSB_ERROR_TIMEOUT ? 0 : fail("expected no answer");
}

/* Run argv's steps; returns how many arguments the step used, or -1. */
static int run_step(struct unit *u, int argc, char **argv)
{
	const char *s = argv[0];

	if (strcmp(s, "version") == 0)
		return step_version(u) ? -1 : 1;
	if (strcmp(s, "info") == 0)
		return step_info(u) ? -1 : 1;
	if (strcmp(s, "status") == 0)
		return step_status(u) ? -1 : 1;
	if (strcmp(s, "disarm") == 0)
		return step_disarm(u) ? -1 : 1;
	if (strcmp(s, "unknown-request") == 0)
		return step_unknown_request(u) ? -1 : 1;
	if (strcmp(s, "expect-wrong-seq") == 0)
		return step_expect_wrong_seq(u) ? -1 : 1;
	if (strcmp(s, "expect-stall") == 0)
		return step_expect_stall(u) ? -1 : 1;
	if (strcmp(s, "expect-no-answer") == 0)
		return step_expect_no_answer(u) ? -1 : 1;
	if (strcmp(s, "params") == 0 && argc >= 2 && atoi(argv[1]) > 0)
		return step_params(u, (uint32_t)atoi(argv[1])) ? -1 : 2;
	if (strcmp(s, "arm") == 0 && argc >= 2)
		return step_command(u, SMPL_OP_ARM, argv[1]) ? -1 : 2;
	if (strcmp(s, "disarm-cmd") == 0 && argc >= 2)
		return step_command(u, SMPL_OP_DISARM, argv[1]) ? -1 : 2;
	if (strcmp(s, "ack-fault") == 0 && argc >= 2)
		return step_command(u, SMPL_OP_ACK_FAULT, argv[1]) ? -1 : 2;
	if (strcmp(s, "heartbeat") == 0 && argc >= 2 && atoi(argv[1]) > 0)
		return step_watch(u, atoi(argv[1]), NULL, true) ? -1 : 2;
	if (strcmp(s, "heartbeat-until") == 0 && argc >= 2)
		return step_watch(u, 0, argv[1], true) ? -1 : 2;
	if (strcmp(s, "watch") == 0 && argc >= 2 && atoi(argv[1]) > 0)
		return step_watch(u, atoi(argv[1]), NULL, false) ? -1 : 2;
	if (strcmp(s, "reports") == 0 && argc >= 2 && atoi(argv[1]) > 0)
		return step_reports(u, atoi(argv[1])) ? -1 : 2;
	if (strcmp(s, "expect-decode-error") == 0 && argc >= 2)
		return step_expect_decode_error(u, argv[1]) ? -1 : 2;
	fail("unknown step or missing argument: %s", s);
	return -2;
}

int main(int argc, char **argv)
{
	struct unit u = { 0 };
	int ret = 0;

	if (argc < 2) {
		fprintf(stderr, "Usage: usb-smoke STEP...  (see tests/vm/usb-smoke.c)\n");
		return 2;
	}
	if (open_unit(&u))
		ret = 1;
	for (int i = 1; !ret && i < argc;) {
		int used = run_step(&u, argc - i, argv + i);

		if (used < 0)
			ret = used == -2 ? 2 : 1;
		else
			i += used;
	}
	if (u.h) {
		libusb_release_interface(u.h, 0);
		libusb_close(u.h);
	}
	if (u.ctx)
		libusb_exit(u.ctx);
	return ret;
}
