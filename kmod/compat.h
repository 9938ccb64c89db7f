/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The kernel API changes between the kernels Debian 12 ships (6.1 and
 * 6.12, generic and rt), in one place.  The only file with version checks
 * (tests/kmod/style-check lets checkpatch pass them here, nowhere else).
 */
#ifndef SMPLASER_KMOD_COMPAT_H
#define SMPLASER_KMOD_COMPAT_H

#include <linux/version.h>

/* 6.4: class_create() lost its owner argument. */
#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 4, 0)
#define smplaser_class_create(name) class_create(THIS_MODULE, name)
#else
#define smplaser_class_create(name) class_create(name)
#endif

/* 6.12: no_llseek is gone (a NULL .llseek now means the same). */
#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 12, 0)
#define smplaser_no_llseek no_llseek
#else
#define smplaser_no_llseek NULL
#endif

/* 6.12: asm/unaligned.h moved to linux/unaligned.h. */
#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 12, 0)
#include <asm/unaligned.h>
#else
#include <linux/unaligned.h>
#endif

#endif /* SMPLASER_KMOD_COMPAT_H */
