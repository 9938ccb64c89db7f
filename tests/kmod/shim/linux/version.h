/* SPDX-License-Identifier: GPL-2.0 */
/* The kernel the userspace build of frame.c/events.c pretends to be. */
#ifndef SMPLASER_KSHIM_LINUX_VERSION_H
#define SMPLASER_KSHIM_LINUX_VERSION_H
#define KERNEL_VERSION(a, b, c) (((a) << 16) + ((b) << 8) + (c))
#define LINUX_VERSION_CODE KERNEL_VERSION(6, 1, 0)
#endif
