// SPDX-License-Identifier: MIT
/*
 * LD_PRELOAD shim of tests/attack/test_attack3.py: a host whose daemon threads
 * other than the event loop's are starved (a loaded machine, a unit's safe path
 * that takes its time: the kernel's disarm request retried for 300 ms): while
 * the file named by SMPL_SLOW_THREADS_FLAG exists, every pthread_mutex_lock()
 * of a thread other than the main one first sleeps SMPL_SLOW_THREADS_MS
 * (default 300).  The event loop (the main thread) runs at full speed.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int pthread_mutex_lock(pthread_mutex_t *mutex);

static void starve(void)
{
	const char *flag = getenv("SMPL_SLOW_THREADS_FLAG");
	const char *ms_text = getenv("SMPL_SLOW_THREADS_MS");
	long ms = ms_text ? strtol(ms_text, NULL, 10) : 300;
	struct timespec ts;

	if (!flag || gettid() == getpid() || ms <= 0 || access(flag, F_OK) != 0)
		return;
	ts.tv_sec = ms / 1000;
	ts.tv_nsec = (ms % 1000) * 1000000L;
	while (nanosleep(&ts, &ts) != 0)
		;
}

int pthread_mutex_lock(pthread_mutex_t *mutex)
{
	static int (*real)(pthread_mutex_t *);

	if (!real)
		real = (int (*)(pthread_mutex_t *))dlsym(RTLD_NEXT, "pthread_mutex_lock");
	starve();
	return real(mutex);
}
