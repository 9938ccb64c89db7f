// SPDX-License-Identifier: MIT
/*
 * kmod-fuzz: random ioctls and reads on /dev/smplaserN, for the VM guest
 * tests.  Commands are random 32-bit numbers, our magic with random
 * number/direction/size, and our real commands; arguments are NULL,
 * unmapped, kernel-space, misaligned, read-only or valid buffers with
 * random bytes.  The driver must answer each with an errno or success and
 * never oops (the guest test checks the kernel log).  ARM is never sent
 * with interlocks closed: the test keeps the door open, so the driver must
 * refuse it (an ARM that succeeds is reported and fails the run).
 *
 *   kmod-fuzz DEV SECONDS SEED
 *
 * Prints per-errno counts; exits 1 if an ARM succeeded or the device
 * stopped answering GET_INFO afterwards.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <uapi/smplaser.h>

static uint64_t rng_state;

static uint64_t rng(void)
{
	/* xorshift64* */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 2685821657736338717ull;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const unsigned long real_cmds[] = {
	SMPLASER_IOC_GET_INFO, SMPLASER_IOC_GET_STATUS, SMPLASER_IOC_SET_PARAMS,
	SMPLASER_IOC_ARM, SMPLASER_IOC_DISARM, SMPLASER_IOC_HEARTBEAT,
	SMPLASER_IOC_ACK_FAULT,
};

static unsigned long random_cmd(void)
{
	switch (rng() % 4) {
	case 0:
		return (unsigned long)(uint32_t)rng();
	case 1:		/* our magic, random number, direction and size */
		return _IOC(rng() % 4, SMPLASER_IOC_MAGIC, rng() % 16, rng() % 256);
	default:
		return real_cmds[rng() % (sizeof(real_cmds) / sizeof(real_cmds[0]))];
	}
}

struct buffers {
	uint8_t *rw;		/* one page, random bytes */
	uint8_t *ro;		/* one read-only page */
	uint8_t *end;		/* last bytes before an unmapped page */
};

static void *random_arg(const struct buffers *b)
{
	switch (rng() % 8) {
	case 0:
		return NULL;
	case 1:
		return (void *)(uintptr_t)0xffffffff81000000ull;	/* kernel text */
	case 2:
		return (void *)(uintptr_t)(rng() & ~0xfffull);		/* likely unmapped */
	case 3:
		return b->ro;
	case 4:
		return b->end + 4096 - 8;	/* crosses into the unmapped page */
	case 5:
		return b->rw + 1 + rng() % 7;	/* misaligned */
	default:
		for (size_t i = 0; i < 128; i++)
			b->rw[i] = (uint8_t)rng();
		return b->rw;
	}
}

static void count_errno(unsigned long *counts, int err)
{
	counts[err >= 0 && err < 256 ? err : 255]++;
}

int main(int argc, char **argv)
{
	unsigned long counts[256] = { 0 };
	unsigned long calls = 0, reads = 0, arms_ok = 0;
	struct smplaser_info info;
	struct buffers b;
	uint8_t *pages;
	double end;
	int fd;

	if (argc != 4) {
		fprintf(stderr, "usage: kmod-fuzz DEV SECONDS SEED\n");
		return 2;
	}
	rng_state = strtoull(argv[3], NULL, 0) | 1;
	end = now_s() + strtod(argv[2], NULL);

	pages = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (pages == MAP_FAILED)
		return 2;
	b.rw = pages;
	b.ro = pages + 4096;
	b.end = pages + 4096;
	mprotect(b.ro, 4096, PROT_READ);
	munmap(pages + 2 * 4096, 4096);

	fd = open(argv[1], O_RDWR | O_NONBLOCK);
	if (fd < 0) {
		perror(argv[1]);
		return 2;
	}
	while (now_s() < end) {
		unsigned long cmd = random_cmd();
		void *arg = random_arg(&b);

		if (rng() % 8 == 0) {	/* read with a random size */
			ssize_t n = read(fd, arg, rng() % 200);

			count_errno(counts, n < 0 ? errno : 0);
			reads++;
			continue;
		}
		if (ioctl(fd, cmd, arg) == 0) {
			count_errno(counts, 0);
			if (cmd == SMPLASER_IOC_ARM)
				arms_ok++;
		} else {
			count_errno(counts, errno);
		}
		calls++;
	}
	printf("seed=%s ioctls=%lu reads=%lu\n", argv[3], calls, reads);
	for (int e = 0; e < 256; e++)
		if (counts[e])
			printf("  %-16s %lu\n", e ? strerror(e) : "success", counts[e]);

	if (ioctl(fd, SMPLASER_IOC_GET_INFO, &info) != 0) {
		printf("GET_INFO after fuzzing failed: %s\n", strerror(errno));
		return 1;
	}
	if (arms_ok) {
		printf("ARM succeeded %lu times with the door open\n", arms_ok);
		return 1;
	}
	printf("GET_INFO after fuzzing: serial %s\n", info.serial);
	close(fd);
	return 0;
}
