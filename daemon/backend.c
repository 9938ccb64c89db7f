/* SPDX-License-Identifier: MIT */
#include <stdlib.h>

#include "backend.h"

void smpl_backend_free(struct smpl_backend *b)
{
	if (!b)
		return;
	if (b->ops->close)
		b->ops->close(b);
	if (b->ops->free)
		b->ops->free(b);
	free(b);
}
