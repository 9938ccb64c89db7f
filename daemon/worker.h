/* SPDX-License-Identifier: MIT */
/*
 * A worker: one thread that runs jobs in the order they came, so that
 * nothing on the event loop waits for a unit or the disk (issue 12).  A job's
 * run() is called in the worker's thread and may block; its done() is called
 * afterwards on the event loop, where every decision is taken.
 *
 * A worker made with inline=true has no thread: run() is called at once on
 * the loop and done() from the loop's next iteration.  The in-process dispatch
 * fuzzer uses it to stay deterministic.
 *
 * The job's memory is the submitter's until done() returns (embed struct
 * smpl_job in a larger one and find it back with container_of()).
 */
#ifndef SMPLASER_DAEMON_WORKER_H
#define SMPLASER_DAEMON_WORKER_H

#include <stdbool.h>
#include <stddef.h>

#include <systemd/sd-event.h>

#define container_of(ptr, type, member) \
	((type *)((char *)(ptr) - offsetof(type, member)))

struct smpl_job {
	struct smpl_job *next;
	void (*run)(struct smpl_job *j);	/* in the worker (may block) */
	void (*done)(struct smpl_job *j);	/* on the loop, after run */
};

struct smpl_worker;

int smpl_worker_new(sd_event *event, const char *name, bool inline_jobs,
		    struct smpl_worker **ret);
/* Queues @j: run() in the worker, then done() on the loop. */
void smpl_worker_submit(struct smpl_worker *w, struct smpl_job *j);
/* Jobs submitted whose done() has not been called yet. */
unsigned int smpl_worker_pending(const struct smpl_worker *w);
/*
 * Waits, on the calling (loop) thread, until every job submitted so far has
 * run, calling their done() here.  For the daemon's last records at stop.
 */
void smpl_worker_drain(struct smpl_worker *w);
/* Drains, stops the thread, frees.  NULL is fine. */
void smpl_worker_free(struct smpl_worker *w);

#endif /* SMPLASER_DAEMON_WORKER_H */
