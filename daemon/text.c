/* SPDX-License-Identifier: MIT */
/* Echoing what a caller gave, safely: see text.h. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "text.h"

/*
 * The code point of the UTF-8 sequence at @s and its length in bytes, or 0
 * for an invalid byte (truncated, overlong, a surrogate, beyond U+10FFFF).
 */
static size_t utf8_char(const unsigned char *s, uint32_t *cp)
{
	size_t n;
	uint32_t c;

	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	}
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		n = 2;
		c = s[0] & 0x1f;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		n = 3;
		c = s[0] & 0x0f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		n = 4;
		c = s[0] & 0x07;
	} else {
		return 0;
	}
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (s[i] & 0x3f);
	}
	if ((n == 3 && c < 0x800) || (n == 4 && (c < 0x10000 || c > 0x10ffff)) ||
	    (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return n;
}

/* A character that must not be shown as itself: controls and bidi overrides. */
static bool needs_escape(uint32_t cp)
{
	return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) ||
	       (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069);
}

/* Appends @piece (@n bytes) if it fits with the terminator; false if not. */
static bool put(char *buf, size_t len, size_t *used, const char *piece, size_t n)
{
	if (*used + n + 1 > len)
		return false;
	memcpy(buf + *used, piece, n);
	*used += n;
	buf[*used] = '\0';
	return true;
}

void smpl_text_echo(char *buf, size_t len, const char *in, size_t max_chars)
{
	const unsigned char *s = (const unsigned char *)(in ? in : "");
	size_t used = 0, chars = 0;
	char esc[16];

	buf[0] = '\0';
	while (*s) {
		uint32_t cp = 0;
		size_t n = utf8_char(s, &cp);
		int e;

		if (chars == max_chars) {
			put(buf, len, &used, "...", 3);
			return;
		}
		if (n == 0)
			e = snprintf(esc, sizeof(esc), "\\x%02x", *s);
		else if (needs_escape(cp))
			e = cp < 0x100 ? snprintf(esc, sizeof(esc), "\\x%02x", (unsigned int)cp)
				       : snprintf(esc, sizeof(esc), "\\u%04x", (unsigned int)cp);
		else
			e = 0;
		if (!(e > 0 ? put(buf, len, &used, esc, (size_t)e)
			    : put(buf, len, &used, (const char *)s, n)))
			return;		/* @buf is full: cut between characters */
		s += n ? n : 1;
		chars++;
	}
}

bool smpl_text_is_safe(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	while (p && *p) {
		uint32_t cp;
		size_t n = utf8_char(p, &cp);

		if (n == 0 || needs_escape(cp))
			return false;
		p += n;
	}
	return true;
}
