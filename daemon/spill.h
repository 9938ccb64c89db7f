/* SPDX-License-Identifier: MIT */
/*
 * The spill file (DESIGN S3: nothing accepted is dropped).  While the records
 * store cannot take what the daemon accepted (a full disk, an I/O error),
 * the pulses waiting for it, the treatments waiting to be closed and the
 * audit backlog are kept in <state_dir>/spill, so that they survive the
 * daemon stopping or being killed before the store can take them again.
 *
 * The file is allocated (fallocate) when the daemon starts, before any disk
 * can fill, so writing into it later needs no new block.  It holds two slots;
 * each snapshot goes into the slot that does not hold the newest good one,
 * with a header (generation, length, CRC-32) and fdatasync(), so a crash in
 * the middle of a write leaves the previous snapshot readable.  A snapshot is
 * JSON (json-c).  At start the newest good snapshot is given back: its
 * pulses and audit records are queued for the store again (replayed only
 * once: a pulse is unique per unit and shot, an audit record is looked for
 * before it is appended), and its treatments closed.
 */
#ifndef SMPLASER_DAEMON_SPILL_H
#define SMPLASER_DAEMON_SPILL_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

#define SMPL_SPILL_NAME		"spill"
#define SMPL_SPILL_SLOT_SIZE	(2u << 20)	/* 2 MiB a slot, two slots */

struct smpl_spill;

/* What a snapshot holds; the callbacks of the writer visit each list. */
struct smpl_spill_end {
	int64_t treatment_id;
	struct store_treatment_finish finish;
};

struct smpl_spill_source {
	void *ctx;
	int (*visit_pulses)(void *ctx, int (*cb)(const struct store_pulse *p, void *c), void *c);
	int (*visit_ends)(void *ctx, int (*cb)(const struct smpl_spill_end *e, void *c), void *c);
	int (*visit_audit)(void *ctx, int (*cb)(const struct store_audit *a, void *c), void *c);
};

/* Opens (creating and allocating) <state_dir>/spill.  -errno, and @why set, on failure. */
int smpl_spill_open(const char *state_dir, struct smpl_spill **ret, char *why, size_t why_len);
void smpl_spill_close(struct smpl_spill *sp);

/*
 * A snapshot of what @src holds now (the loop's lists), as the text that
 * smpl_spill_write_body() makes durable (in the writer thread): 0 or -errno.
 * NULL @src: an empty one.  The caller frees the text.
 */
char *smpl_spill_snapshot(const struct smpl_spill_source *src);
int smpl_spill_write_body(struct smpl_spill *sp, const char *body);
/* Nothing pending any more: an empty snapshot. */
int smpl_spill_clear(struct smpl_spill *sp);

/* The newest good snapshot, visited (pulses, ends, audit in that order). */
struct smpl_spill_sink {
	void *ctx;
	void (*pulse)(void *ctx, const struct store_pulse *p);
	void (*end)(void *ctx, const struct smpl_spill_end *e);
	void (*audit)(void *ctx, const struct store_audit *a);
};
/* Returns how many records it held (0: none), or -errno (a damaged file: -EBADMSG). */
int smpl_spill_read(struct smpl_spill *sp, const struct smpl_spill_sink *sink);

#endif /* SMPLASER_DAEMON_SPILL_H */
