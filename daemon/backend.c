/* SPDX-License-Identifier: MIT */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"

bool smpl_status_is_news(const struct smpl_status_n *now, const struct smpl_status_n *last,
			 uint64_t elapsed_ms)
{
	int64_t expected = last->rtc_s + (int64_t)(elapsed_ms / 1000);

	return now->state != last->state || now->fault != last->fault ||
	       now->interlocks != last->interlocks || now->flags != last->flags ||
	       now->shot_count != last->shot_count ||
	       now->rtc_s > expected + 2 || now->rtc_s < last->rtc_s - 2;
}

uint64_t smpl_backend_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

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
