/* SPDX-License-Identifier: MIT */
/*
 * A fuzz input read as a program: bytes taken one by one, zeros once it
 * runs out, so every input is a valid program.
 */
#ifndef SMPL_FUZZ_INPUT_H
#define SMPL_FUZZ_INPUT_H

#include <stddef.h>
#include <stdint.h>

struct input {
	const uint8_t *p;
	size_t n;
};

static inline uint8_t take_u8(struct input *in)
{
	uint8_t v = 0;

	if (in->n) {
		v = *in->p++;
		in->n--;
	}
	return v;
}

/* @bytes (at most 8) little-endian bytes as an unsigned integer. */
static inline uint64_t take_uint(struct input *in, unsigned int bytes)
{
	uint64_t v = 0;

	for (unsigned int i = 0; i < bytes; i++)
		v |= (uint64_t)take_u8(in) << (8 * i);
	return v;
}

#endif
