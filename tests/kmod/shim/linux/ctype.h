/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The kernel's ctype (lib/ctype.c) is Latin-1: 0xc0-0xff, but for 0xd7 and
 * 0xf7, are letters, so its isalnum() takes them.  glibc's, in the C locale,
 * is ASCII only and would hide that: this stands in for the kernel's.
 */
#ifndef SMPLASER_KSHIM_LINUX_CTYPE_H
#define SMPLASER_KSHIM_LINUX_CTYPE_H

#undef isalnum
static inline int kshim_isalnum(int c)
{
	unsigned char u = (unsigned char)c;

	return (u >= '0' && u <= '9') || (u >= 'a' && u <= 'z') ||
	       (u >= 'A' && u <= 'Z') || (u >= 0xc0 && u != 0xd7 && u != 0xf7);
}
#define isalnum(c) kshim_isalnum(c)

#endif
