// SPDX-License-Identifier: GPL-2.0
/*
 * The bounded event queue behind read().  The caller holds
 * smplaser_dev.lock for every function here.
 *
 * When the queue is full, new events are counted in "lost" instead of
 * queued, and keep being counted until the reader has taken every queued
 * record; then the reader gets one SMPLASER_EV_OVERFLOW record carrying the
 * count, so a loss is never silent and records never reorder.  The
 * disconnect record is synthesised the same way, last, so it cannot be
 * lost either.
 */
#include <linux/string.h>
#include <linux/ktime.h>

#include "smplaser-core.h"

void smplaser_queue_reset(struct smplaser_queue *q)
{
	bool disconnected = q->disconnected;

	memset(q, 0, sizeof(*q));
	q->disconnected = disconnected;
}

/* Queue @ev, stamping its time and sequence number. */
void smplaser_queue_push(struct smplaser_queue *q, struct smplaser_event *ev)
{
	ev->time_ns = ktime_get_ns();
	ev->seq = q->next_seq++;
	ev->reserved = 0;

	if (q->lost || q->count == SMPLASER_QUEUE_LEN) {
		if (!q->lost) {
			q->lost_first_seq = ev->seq;
			q->lost_time_ns = ev->time_ns;
		}
		q->lost++;
		return;
	}
	q->rec[(q->head + q->count) % SMPLASER_QUEUE_LEN] = *ev;
	q->count++;
}

/* The next record the reader gets, without taking it. */
bool smplaser_queue_peek(const struct smplaser_queue *q,
			 struct smplaser_event *ev)
{
	if (q->count) {
		*ev = q->rec[q->head];
		return true;
	}

	memset(ev, 0, sizeof(*ev));
	if (q->lost) {
		ev->type = SMPLASER_EV_OVERFLOW;
		ev->time_ns = q->lost_time_ns;
		ev->seq = q->lost_first_seq;
		ev->overflow.lost = q->lost;
		return true;
	}
	if (q->disconnected && !q->disconnect_delivered) {
		ev->type = SMPLASER_EV_DISCONNECT;
		ev->time_ns = ktime_get_ns();
		ev->seq = q->next_seq;
		return true;
	}
	return false;
}

/*
 * Take the record smplaser_queue_peek() returned.  Overflow and disconnect
 * records are never in the ring, so their type says where @ev came from.
 */
void smplaser_queue_consume(struct smplaser_queue *q,
			    const struct smplaser_event *ev)
{
	switch (ev->type) {
	case SMPLASER_EV_OVERFLOW:
		/* Events lost since the peek stay counted for the next one. */
		q->lost -= ev->overflow.lost;
		q->lost_first_seq += ev->overflow.lost;
		break;
	case SMPLASER_EV_DISCONNECT:
		q->disconnect_delivered = true;
		q->next_seq++;
		break;
	default:
		if (q->count) {
			q->head = (q->head + 1) % SMPLASER_QUEUE_LEN;
			q->count--;
		}
		break;
	}
}

/* Disconnected and every record, the disconnect record too, was read. */
bool smplaser_queue_finished(const struct smplaser_queue *q)
{
	return q->disconnect_delivered && !q->count && !q->lost;
}

void smplaser_event_status(struct smplaser_event *ev,
			   const struct smplaser_unit_status *st)
{
	memset(ev, 0, sizeof(*ev));
	ev->type = SMPLASER_EV_STATUS;
	ev->status.state = st->state;
	ev->status.fault = st->fault;
	ev->status.flags = st->flags;
	ev->status.interlocks = st->interlocks;
	ev->status.shot_count = st->shot_count;
	ev->status.last_energy_uj = st->last_energy_uj;
}
