/* SPDX-License-Identifier: GPL-2.0 */
/*
 * smplaser.ko: the parts with no USB or locking of their own (frame.c,
 * events.c): wire frame checks and the bounded event queue.  Kept apart so
 * a userspace unit test (tests/kmod/test_kmod_core.c) can build them too.
 */
#ifndef SMPLASER_KMOD_CORE_H
#define SMPLASER_KMOD_CORE_H

#include <linux/types.h>

#include <smplaser/proto.h>
#include <uapi/smplaser.h>

#define SMPLASER_QUEUE_LEN	64	/* event records per reader */

/* The unit's status as the last valid report showed it. */
struct smplaser_unit_status {
	bool valid;
	u8 state;
	u8 fault;
	u8 flags;
	u16 interlocks;
	u32 shot_count;
	u32 last_energy_uj;
	s64 rtc_s;
};

/* Bounded event queue; the caller holds smplaser_dev.lock. */
struct smplaser_queue {
	struct smplaser_event rec[SMPLASER_QUEUE_LEN];
	unsigned int head;
	unsigned int count;
	u32 next_seq;
	u32 lost;		/* events dropped since the queue filled */
	u32 lost_first_seq;
	u64 lost_time_ns;
	bool disconnected;
	bool disconnect_delivered;
};

/* A frame that passed the header checks; payload points into the buffer. */
struct smplaser_frame {
	u8 op;
	u16 seq;
	u16 status;
	u16 len;
	const u8 *payload;
};

/* events.c */
void smplaser_queue_reset(struct smplaser_queue *q);
void smplaser_queue_push(struct smplaser_queue *q, struct smplaser_event *ev);
bool smplaser_queue_peek(const struct smplaser_queue *q,
			 struct smplaser_event *ev);
void smplaser_queue_consume(struct smplaser_queue *q,
			    const struct smplaser_event *ev);
bool smplaser_queue_finished(const struct smplaser_queue *q);
void smplaser_event_status(struct smplaser_event *ev,
			   const struct smplaser_unit_status *st);

/* frame.c */
size_t smplaser_frame_encode(u8 *buf, u8 op, u16 seq, const void *payload,
			     u16 len);
int smplaser_frame_parse(const u8 *buf, size_t actual,
			 struct smplaser_frame *f);
int smplaser_status_decode(const u8 *payload, struct smplaser_unit_status *st);
int smplaser_pulse_decode(const u8 *payload, struct smplaser_ev_pulse *p);
int smplaser_info_decode(const u8 *payload, struct smplaser_info *info);
int smplaser_unit_errno(u16 status);

#endif /* SMPLASER_KMOD_CORE_H */
