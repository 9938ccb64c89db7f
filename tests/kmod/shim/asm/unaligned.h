/* SPDX-License-Identifier: GPL-2.0 */
/* Provided by ../kshim.h (force-included). */
