/* SPDX-License-Identifier: MIT */
/* Named scalp regions: built-in list and clinic-defined additions. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "patches.h"
#include "text.h"

static const struct {
	const char *id;
	const char *label;
} builtin_patches[SMPL_PATCHES_BUILTIN] = {
	{ "frontal-hairline",	"Frontal hairline" },
	{ "mid-scalp",		"Mid-scalp" },
	{ "crown",		"Crown (vertex)" },
	{ "left-temporal",	"Left temporal" },
	{ "right-temporal",	"Right temporal" },
	{ "left-parietal",	"Left parietal" },
	{ "right-parietal",	"Right parietal" },
	{ "occipital",		"Occipital (back of the head)" },
};

static void __attribute__((format(printf, 3, 4)))
set_err(char *err, size_t len, const char *fmt, ...)
{
	va_list ap;

	if (!err || !len)
		return;
	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
}

static void copy_str(char *dst, size_t size, const char *src)
{
	snprintf(dst, size, "%s", src);
}

static bool is_id_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

bool smpl_patch_id_valid(const char *id)
{
	size_t n;

	if (!id || !id[0] || id[0] == '-')
		return false;
	for (n = 0; id[n]; n++)
		if (n >= SMPL_PATCH_ID_MAX || !is_id_char(id[n]))
			return false;
	return true;
}

static bool label_valid(const char *label)
{
	size_t n;

	if (!label || !label[0])
		return false;
	for (n = 0; label[n]; n++) {
		unsigned char c = (unsigned char)label[n];

		if (n >= SMPL_PATCH_LABEL_MAX || c < 0x20 || c == 0x7f)
			return false;
	}
	return true;
}

static void add_unchecked(struct smpl_patches *p, const char *id,
			  const char *label, bool builtin)
{
	struct smpl_patch *e = &p->list[p->count++];

	copy_str(e->id, sizeof(e->id), id);
	copy_str(e->label, sizeof(e->label), label);
	e->builtin = builtin;
}

void smpl_patches_init(struct smpl_patches *p)
{
	memset(p, 0, sizeof(*p));
	for (size_t i = 0; i < SMPL_PATCHES_BUILTIN; i++)
		add_unchecked(p, builtin_patches[i].id, builtin_patches[i].label, true);
}

const struct smpl_patch *smpl_patches_find(const struct smpl_patches *p,
					   const char *id)
{
	if (!p || !id)
		return NULL;
	for (size_t i = 0; i < p->count; i++)
		if (strcmp(p->list[i].id, id) == 0)
			return &p->list[i];
	return NULL;
}

int smpl_patches_add(struct smpl_patches *p, const char *id, const char *label,
		     char *err, size_t err_len)
{
	if (!smpl_patch_id_valid(id)) {
		set_err(err, err_len,
			"patch id \"%s\" is not valid: 1-32 characters of a-z, 0-9 and '-', "
			"not starting with '-'", id ? id : "");
		return -EINVAL;
	}
	if (!label_valid(label)) {
		set_err(err, err_len,
			"patch \"%s\": label must be 1-64 printable characters", id);
		return -EINVAL;
	}
	if (smpl_patches_find(p, id)) {
		set_err(err, err_len, "patch \"%s\" is already defined", id);
		return -EEXIST;
	}
	if (p->count >= SMPL_PATCHES_MAX) {
		set_err(err, err_len, "patch \"%s\": too many patches (at most %d)",
			id, SMPL_PATCHES_MAX);
		return -ENOSPC;
	}
	add_unchecked(p, id, label, false);
	return 0;
}

int smpl_patch_name_check(const struct smpl_patches *p, const char *name,
			  char *err, size_t err_len)
{
	if (smpl_patches_find(p, name))
		return 0;
	if (!smpl_patch_id_valid(name)) {
		char echo[SMPL_ECHO_MAX];

		smpl_text_echo(echo, sizeof(echo), name, SMPL_ECHO_CHARS);
		set_err(err, err_len, "patch: \"%s\" is not a valid patch id", echo);
	}
	else
		set_err(err, err_len,
			"patch: \"%s\" is not a known patch (see ListPatches)", name);
	return -EINVAL;
}
