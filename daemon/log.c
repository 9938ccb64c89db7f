/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include <systemd/sd-journal.h>

#include "log.h"
#include "text.h"

static bool log_to_stderr = true;

/* Under systemd (INVOCATION_ID set) the journal has it all already. */
void smpl_log_init(void)
{
	log_to_stderr = getenv("INVOCATION_ID") == NULL;
}

void smpl_log(int priority, const char *unit, const char *session,
	      const char *event, const char *fmt, ...)
{
	char *msg = NULL;
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0)
		msg = NULL;
	va_end(ap);
	if (!msg)
		return;
	if (!smpl_text_is_safe(msg)) {	/* no control character reaches a terminal */
		size_t len = strlen(msg) * 6 + 4;
		char *safe = malloc(len);

		if (safe)
			smpl_text_echo(safe, len, msg, SIZE_MAX);
		free(msg);
		if (!safe)
			return;
		msg = safe;
	}

	sd_journal_send("MESSAGE=%s", msg,
			"PRIORITY=%d", priority,
			"SYSLOG_IDENTIFIER=smplaserd",
			"SMPL_UNIT=%s", unit ? unit : "",
			"SMPL_SESSION=%s", session ? session : "",
			"SMPL_EVENT=%s", event ? event : "",
			NULL);
	if (log_to_stderr) {
		fprintf(stderr, "smplaserd: %s%s%s%s%s\n",
			unit ? unit : "", unit ? ": " : "",
			session ? session : "", session ? ": " : "", msg);
		fflush(stderr);
	}
	free(msg);
}
