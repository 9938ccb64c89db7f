/* SPDX-License-Identifier: MIT */
/*
 * Text a caller gave, made safe to echo in a D-Bus error message or the
 * journal: D-Bus refuses a message that is not valid UTF-8 (the call would
 * then get no reply at all), and a control character or a terminal escape
 * must never reach a technician's terminal.  Pure code.
 */
#ifndef SMPLASER_DAEMON_TEXT_H
#define SMPLASER_DAEMON_TEXT_H

#include <stdbool.h>
#include <stddef.h>

/* What of a caller's text an error message echoes, and a buffer for it. */
#define SMPL_ECHO_CHARS	24
#define SMPL_ECHO_MAX	(SMPL_ECHO_CHARS * 6 + 4)

/*
 * @in into @buf (@len >= 1; always terminated): valid UTF-8 characters are
 * kept, an invalid byte, a control character (C0, DEL, C1) or a bidirectional
 * override is written escaped ("\x1b", "\u202e").  At most @max_chars
 * characters of @in are kept ("..." marks the cut), and the cut always falls
 * between characters, also when @buf is too small.  @in NULL is "".
 */
void smpl_text_echo(char *buf, size_t len, const char *in, size_t max_chars);

/* Would smpl_text_echo() keep @s as it is (no escape, no cut)? */
bool smpl_text_is_safe(const char *s);

#endif /* SMPLASER_DAEMON_TEXT_H */
