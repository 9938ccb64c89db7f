/* SPDX-License-Identifier: MIT */
/*
 * The daemon's own small jobs: its clocks and the Manager's changes told to
 * the observer.  Its start and orderly stop are lifecycle.c's.
 */
#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "daemon.h"

uint64_t smpl_now_ms(struct smpl_daemon *d)
{
	uint64_t usec = 0;

	(void)sd_event_now(d->event, CLOCK_MONOTONIC, &usec);
	return usec / 1000;
}

int64_t smpl_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void smpl_daemon_changed(struct smpl_daemon *d, const char *property)
{
	if (d->observer && d->observer->manager_changed)
		d->observer->manager_changed(d, property);
}
