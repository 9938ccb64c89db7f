/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Just enough of the kernel's API to build kmod/frame.c and kmod/events.c
 * in userspace for tests/kmod/test_kmod_core.c.  Force-included
 * (-include); the headers next to it stand in for the kernel's.
 */
#ifndef SMPLASER_KSHIM_H
#define SMPLASER_KSHIM_H

#include <ctype.h>
#include <endian.h>
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;
typedef int64_t s64;

#define cpu_to_le16(x) htole16(x)
#define cpu_to_le32(x) htole32(x)
#define le16_to_cpu(x) le16toh(x)
#define le32_to_cpu(x) le32toh(x)

static inline u16 get_unaligned_le16(const void *p)
{
	u16 v;

	memcpy(&v, p, sizeof(v));
	return le16toh(v);
}

static inline u32 get_unaligned_le32(const void *p)
{
	u32 v;

	memcpy(&v, p, sizeof(v));
	return le32toh(v);
}

static inline u64 get_unaligned_le64(const void *p)
{
	u64 v;

	memcpy(&v, p, sizeof(v));
	return le64toh(v);
}

static inline void put_unaligned_le32(u32 v, void *p)
{
	v = htole32(v);
	memcpy(p, &v, sizeof(v));
}

/* The kernel's crc32_le() has no pre/post inversion; zlib's crc32() has. */
u32 crc32_le(u32 crc, const void *p, size_t len);

/* A clock the test sets. */
extern u64 kshim_now_ns;
static inline u64 ktime_get_ns(void)
{
	return kshim_now_ns;
}

#endif /* SMPLASER_KSHIM_H */
