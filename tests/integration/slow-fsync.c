// SPDX-License-Identifier: MIT
/*
 * LD_PRELOAD shim of the stall test (tests/integration/test_stall.py): a disk
 * that takes SMPL_SLOW_FSYNC_MS (default 2000) per fsync()/fdatasync() while
 * the file named by SMPL_SLOW_FSYNC_FLAG exists, so a test can turn the slow
 * disk on and off under a running daemon.  The sync itself still happens.
 */
#include <dlfcn.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int fsync(int fd);
int fdatasync(int fd);

static void slow_disk(void)
{
	const char *flag = getenv("SMPL_SLOW_FSYNC_FLAG");
	const char *ms_text = getenv("SMPL_SLOW_FSYNC_MS");
	long ms = ms_text ? strtol(ms_text, NULL, 10) : 2000;
	struct timespec ts;

	if (!flag || access(flag, F_OK) != 0 || ms <= 0)
		return;
	ts.tv_sec = ms / 1000;
	ts.tv_nsec = (ms % 1000) * 1000000L;
	while (nanosleep(&ts, &ts) != 0)
		;
}

int fsync(int fd)
{
	int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fsync");

	slow_disk();
	return real(fd);
}

int fdatasync(int fd)
{
	int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");

	slow_disk();
	return real(fd);
}
