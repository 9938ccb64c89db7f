/* SPDX-License-Identifier: MIT */
/*
 * Named scalp regions ("patches") a treatment is recorded against (DESIGN
 * section 5): the built-in list plus clinic-defined ones from the config's
 * [patches] section.  Pure code, no I/O.
 *
 * A patch id is 1..SMPL_PATCH_ID_MAX characters of [a-z0-9-], starting with
 * a letter or digit (e.g. "frontal-hairline").  Its label is free printable
 * text for people (e.g. "Frontal hairline").  Ids are what the D-Bus API,
 * the store and the cooldown rule use.
 */
#ifndef SMPLASER_DAEMON_PATCHES_H
#define SMPLASER_DAEMON_PATCHES_H

#include <stdbool.h>
#include <stddef.h>

#define SMPL_PATCH_ID_MAX	32	/* characters, without the NUL */
#define SMPL_PATCH_LABEL_MAX	64	/* characters, without the NUL */
#define SMPL_PATCHES_MAX	64	/* built-in + clinic-defined */
#define SMPL_PATCHES_BUILTIN	8

struct smpl_patch {
	char id[SMPL_PATCH_ID_MAX + 1];
	char label[SMPL_PATCH_LABEL_MAX + 1];
	bool builtin;
};

struct smpl_patches {
	size_t count;
	struct smpl_patch list[SMPL_PATCHES_MAX];
};

/*
 * Fill @p with the built-in list, in this order: frontal-hairline,
 * mid-scalp, crown, left-temporal, right-temporal, left-parietal,
 * right-parietal, occipital.
 */
void smpl_patches_init(struct smpl_patches *p);

/*
 * Add a clinic-defined patch.  Returns 0, or
 *   -EINVAL  bad id or label (message says which and why)
 *   -EEXIST  the id exists already (built-in or added)
 *   -ENOSPC  SMPL_PATCHES_MAX reached
 * and writes a one-line reason into @err (may be NULL).
 */
int smpl_patches_add(struct smpl_patches *p, const char *id, const char *label,
		     char *err, size_t err_len);

/* The patch with this id, or NULL. */
const struct smpl_patch *smpl_patches_find(const struct smpl_patches *p,
					   const char *id);

/* Is @id well-formed (syntax only, not whether it is in a list)? */
bool smpl_patch_id_valid(const char *id);

/*
 * D-Bus argument check: 0 if @name is a patch of @p; -EINVAL otherwise with
 * a message naming the field ("patch") and the offending value.
 */
int smpl_patch_name_check(const struct smpl_patches *p, const char *name,
			  char *err, size_t err_len);

#endif /* SMPLASER_DAEMON_PATCHES_H */
