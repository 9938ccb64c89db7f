/* SPDX-License-Identifier: MIT */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"

void smpl_backend_free(struct smpl_backend *b)
{
	if (!b)
		return;
	if (b->ops->close)
		b->ops->close(b);
	if (b->ops->free)
		b->ops->free(b);
	free(b);
}

int smpl_reply_payload(const struct smpl_frame *f, void *out, size_t out_len)
{
	if (f->status != SMPL_ST_OK)
		return f->status;
	if (f->len != out_len)
		return -EPROTO;
	if (out_len)
		memcpy(out, f->payload, out_len);
	return 0;
}

int smpl_frames_get_info(struct smpl_backend *b, smpl_transact_fn transact,
			 struct smpl_info_n *info)
{
	struct smpl_info w;
	int r = transact(b, SMPL_OP_GET_INFO, NULL, 0, &w, sizeof(w));

	if (r != 0)
		return r;
	return smpl_info_decode(&w, info) < 0 ? -EPROTO : 0;
}

int smpl_frames_get_status(struct smpl_backend *b, smpl_transact_fn transact,
			   struct smpl_status_n *st)
{
	struct smpl_status_report w;
	int r = transact(b, SMPL_OP_GET_STATUS, NULL, 0, &w, sizeof(w));

	if (r != 0)
		return r;
	return smpl_status_decode(&w, st) < 0 ? -EPROTO : 0;
}

int smpl_frames_set_params(struct smpl_backend *b, smpl_transact_fn transact,
			   const struct smpl_params_n *p)
{
	struct smpl_params w, echo;
	struct smpl_params_n back;
	int r;

	smpl_params_encode(p, &w);
	r = transact(b, SMPL_OP_SET_PARAMS, &w, sizeof(w), &echo, sizeof(echo));
	if (r != 0)
		return r;
	smpl_params_decode(&echo, &back);
	return memcmp(&back, p, sizeof(back)) == 0 ? 0 : -EPROTO;
}

int smpl_frames_get_rtc(struct smpl_backend *b, smpl_transact_fn transact,
			int64_t *rtc_s)
{
	struct smpl_rtc w;
	int r = transact(b, SMPL_OP_GET_RTC, NULL, 0, &w, sizeof(w));

	if (r != 0)
		return r;
	*rtc_s = (int64_t)le64toh(w.rtc_s);
	return 0;
}
