/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness: the protocol codec (common/codec.c) on hostile bytes
 * from the wire.  Oracles besides the sanitizers: a frame smpl_decode()
 * accepts re-encodes to exactly the same bytes, and its payload converts
 * to native and back without change.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_payload(const struct smpl_frame *f)
{
	if (f->status != SMPL_ST_OK)
		return;
	if (f->op == SMPL_OP_STATUS || f->op == (SMPL_OP_GET_STATUS | SMPL_OP_REPLY)) {
		struct smpl_status_report w, back;
		struct smpl_status_n n;

		memcpy(&w, f->payload, sizeof(w));
		if (smpl_status_decode(&w, &n) == 0) {
			smpl_status_encode(&n, &back);
			if (memcmp(&w, &back, sizeof(w)) != 0)
				abort();
		}
	} else if (f->op == SMPL_OP_PULSE) {
		struct smpl_pulse_report w, back;
		struct smpl_pulse_n n;

		memcpy(&w, f->payload, sizeof(w));
		if (smpl_pulse_decode(&w, &n) == 0) {
			smpl_pulse_encode(&n, &back);
			if (memcmp(&w, &back, sizeof(w)) != 0)
				abort();
		}
	} else if (f->op == (SMPL_OP_GET_INFO | SMPL_OP_REPLY)) {
		struct smpl_info w;
		struct smpl_info_n n;

		memcpy(&w, f->payload, sizeof(w));
		if (smpl_info_decode(&w, &n) == 0) {
			/* The strings are NUL-terminated whatever the wire held. */
			if (memchr(n.serial, 0, sizeof(n.serial)) == NULL ||
			    memchr(n.model, 0, sizeof(n.model)) == NULL)
				abort();
		}
	} else if (f->op == SMPL_OP_SET_PARAMS || f->op == (SMPL_OP_SET_PARAMS | SMPL_OP_REPLY) ||
		   f->op == (SMPL_OP_GET_PARAMS | SMPL_OP_REPLY)) {
		struct smpl_params w, back;
		struct smpl_params_n n;

		memcpy(&w, f->payload, sizeof(w));
		smpl_params_decode(&w, &n);
		smpl_params_encode(&n, &back);
		if (memcmp(&w, &back, sizeof(w)) != 0)
			abort();
		(void)smpl_params_energy_uj(&n);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smpl_frame f;
	uint8_t out[SMPL_HDR_SIZE + SMPL_MAX_PAYLOAD + 16];
	int n;

	if (smpl_decode(data, size, &f) != 0)
		return 0;
	if (f.len > SMPL_MAX_PAYLOAD)
		abort();
	/* Every name lookup copes with whatever was accepted. */
	(void)smpl_op_name(f.op);
	(void)smpl_status_name(f.status);

	n = smpl_encode(f.op, f.seq, f.status, f.payload, f.len, out, sizeof(out));
	if (n < 0 || (size_t)n != size || memcmp(out, data, size) != 0)
		abort();
	check_payload(&f);
	return 0;
}
