// SPDX-License-Identifier: MIT
/*
 * The memory floor of idle RSS (make bench): a process that maps exactly the
 * shared libraries smplaserd links (tests/bench/bench.mk links them all, used
 * or not) and does nothing else.  It prints its pid and waits for SIGTERM;
 * bench_daemon reads its RSS beside the daemon's.  What is above this floor is
 * smplaserd's own: its heap and stacks, its code, and the library code it runs.
 */
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

static void on_term(int sig)
{
	(void)sig;
	_exit(0);	/* quietly: no "Terminated" from the shell that popen() ran */
}

int main(void)
{
	signal(SIGTERM, on_term);
	printf("%d\n", (int)getpid());
	fflush(stdout);
	pause();
	return 0;
}
