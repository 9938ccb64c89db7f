/* SPDX-License-Identifier: MIT */
/* The cleanup helpers of systemd's style (_cleanup_(freep) char *s = NULL;). */
#ifndef SMPLASER_DAEMON_MACRO_H
#define SMPLASER_DAEMON_MACRO_H

#include <stdlib.h>

#define _cleanup_(f) __attribute__((cleanup(f)))

static inline void freep(void *p)
{
	free(*(void **)p);
}

#endif /* SMPLASER_DAEMON_MACRO_H */
