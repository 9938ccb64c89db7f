// SPDX-License-Identifier: MIT
/* Importing a workstation's SQLite records into the clinic's: see store-pg.h. */
#include <errno.h>
#include <stdio.h>

#include "store-pg.h"

int store_pg_import(const struct store_pg_config *cfg, const char *sqlite_state_dir,
		    FILE *report, struct store_pg_import_result *res, char *msg, size_t msg_len)
{
	(void)cfg, (void)sqlite_state_dir, (void)report, (void)res;
	snprintf(msg, msg_len, "not implemented yet");
	return -ENOSYS;
}
