/* SPDX-License-Identifier: MIT */
/*
 * LD_PRELOAD'ed ahead of libfaketime by tests/integration/test_clock.py.
 *
 * libfaketime (0.9.10, Debian 12) shifts the expiry of every absolute timer
 * by its time offset as if the timer ran on CLOCK_REALTIME ("only
 * CLOCK_REALTIME is handled" in its timer_settime_common()), even with
 * FAKETIME_DONT_FAKE_MONOTONIC=1.  sd-event arms its timerfds on
 * CLOCK_MONOTONIC with absolute times, so after a jump of the faked wall
 * clock the daemon's timers would fire hours early or late and its loop
 * would stall.  These two calls go to the kernel unchanged: the wall clock
 * stays faked (clock_gettime, time, gettimeofday), the daemon's timers stay
 * real.
 */
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <unistd.h>

int timerfd_settime(int fd, int flags, const struct itimerspec *new_value,
		    struct itimerspec *old_value)
{
	return (int)syscall(SYS_timerfd_settime, fd, flags, new_value, old_value);
}

int timerfd_gettime(int fd, struct itimerspec *curr_value)
{
	return (int)syscall(SYS_timerfd_gettime, fd, curr_value);
}
