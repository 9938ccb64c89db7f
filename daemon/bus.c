/* SPDX-License-Identifier: MIT */
/*
 * What every D-Bus object of smplaserd shares (bus.h): a privileged call's
 * authorization (the caller's uid, then polkit) and the node lists.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "creds.h"
#include "errors.h"

int smpl_bus_authorize(struct smpl_daemon *d, sd_bus_message *m, const char *action,
		       uid_t *uid, sd_bus_error *error)
{
	int r = smpl_creds_uid(d->creds, m, uid);

	if (r == 0)
		return 0;	/* asked: the call comes again */
	if (r < 0)
		return smpl_error_setf(error, SMPL_ERROR_NOT_AUTHORIZED,
				       "Not authorized: cannot tell who is calling (%s)",
				       strerror(-r));
	return smpl_polkit_check(d->polkit, m, action, *uid, error);
}

/* --- node enumeration ------------------------------------------------------- */

int smpl_bus_nodes_add(char ***list, size_t *n, const char *path)
{
	char **l = realloc(*list, (*n + 2) * sizeof(char *));

	if (!l)
		return -ENOMEM;
	*list = l;
	l[*n] = strdup(path);
	if (!l[*n])
		return -ENOMEM;
	l[++*n] = NULL;
	return 0;
}

int smpl_bus_nodes_take(char ***list, char ***nodes)
{
	if (!*list) {
		*list = calloc(1, sizeof(char *));
		if (!*list)
			return -ENOMEM;
	}
	*nodes = *list;
	*list = NULL;
	return 0;
}

void smpl_bus_nodes_free(char **list)
{
	for (char **p = list; p && *p; p++)
		free(*p);
	free(list);
}
