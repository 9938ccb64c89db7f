/* SPDX-License-Identifier: MIT */
/* The spill file: see spill.h. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>
#include <zlib.h>

#include "spill.h"

#define HEADER_SIZE	64
#define SLOT_BODY_MAX	(SMPL_SPILL_SLOT_SIZE - HEADER_SIZE)
#define MAGIC		"SMPLSPILL1"

struct smpl_spill {
	int fd;
	uint64_t generation;		/* of the newest good snapshot */
	unsigned int slot;		/* where it is */
};

/* ---- opening --------------------------------------------------------------- */

static int read_header(int fd, unsigned int slot, uint64_t *gen, uint32_t *len, uint32_t *crc)
{
	char h[HEADER_SIZE + 1];
	unsigned long long g;
	unsigned int l, c;

	if (pread(fd, h, HEADER_SIZE, (off_t)slot * SMPL_SPILL_SLOT_SIZE) != HEADER_SIZE)
		return -ENODATA;
	h[HEADER_SIZE] = '\0';
	if (sscanf(h, MAGIC " gen=%llu len=%u crc=%u", &g, &l, &c) != 3 || l > SLOT_BODY_MAX)
		return -ENODATA;
	*gen = g;
	*len = l;
	*crc = c;
	return 0;
}

/* The body of @slot if its header and CRC are good (caller frees), else NULL. */
static char *read_slot(int fd, unsigned int slot, uint64_t *gen)
{
	uint32_t len, crc;
	char *body;

	if (read_header(fd, slot, gen, &len, &crc) < 0)
		return NULL;
	body = malloc(len + 1);
	if (!body)
		return NULL;
	if (pread(fd, body, len, (off_t)slot * SMPL_SPILL_SLOT_SIZE + HEADER_SIZE) != (ssize_t)len ||
	    crc32(0, (const Bytef *)body, len) != crc) {
		free(body);
		return NULL;
	}
	body[len] = '\0';
	return body;
}

int smpl_spill_open(const char *state_dir, struct smpl_spill **ret, char *why, size_t why_len)
{
	struct smpl_spill *sp;
	char path[4096];
	uint64_t g0 = 0, g1 = 0;
	char *b0, *b1;
	int r;

	snprintf(path, sizeof(path), "%s/" SMPL_SPILL_NAME, state_dir);
	sp = calloc(1, sizeof(*sp));
	if (!sp)
		return -ENOMEM;
	sp->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (sp->fd < 0) {
		r = -errno;
		snprintf(why, why_len, "cannot open %s: %s", path, strerror(-r));
		free(sp);
		return r;
	}
	/* Allocated now, while there is room: a later full disk cannot refuse it. */
	r = posix_fallocate(sp->fd, 0, 2 * (off_t)SMPL_SPILL_SLOT_SIZE);
	if (r == 0)
		r = fsync(sp->fd) < 0 ? errno : 0;
	if (r != 0) {
		snprintf(why, why_len, "cannot allocate %s: %s", path, strerror(r));
		close(sp->fd);
		free(sp);
		return -r;
	}
	b0 = read_slot(sp->fd, 0, &g0);
	b1 = read_slot(sp->fd, 1, &g1);
	sp->generation = b0 || b1 ? (g0 > g1 || !b1 ? g0 : g1) : 0;
	sp->slot = b1 && (!b0 || g1 > g0) ? 1 : 0;
	free(b0);
	free(b1);
	*ret = sp;
	return 0;
}

void smpl_spill_close(struct smpl_spill *sp)
{
	if (!sp)
		return;
	close(sp->fd);
	free(sp);
}

/* ---- writing --------------------------------------------------------------- */

static json_object *text_or_null(const char *s)
{
	return s ? json_object_new_string(s) : NULL;
}

static int add_pulse(const struct store_pulse *p, void *ctx)
{
	json_object *a = json_object_new_array();

	json_object_array_add(a, json_object_new_int64(p->treatment_id));
	json_object_array_add(a, json_object_new_int64(p->host_ms));
	json_object_array_add(a, json_object_new_int64(p->shot));
	json_object_array_add(a, json_object_new_int64(p->measured_uj));
	json_object_array_add(a, json_object_new_int64(p->set_uj));
	return json_object_array_add(ctx, a) < 0 ? -ENOMEM : 0;
}

static int add_end(const struct smpl_spill_end *e, void *ctx)
{
	json_object *a = json_object_new_array();

	json_object_array_add(a, json_object_new_int64(e->treatment_id));
	json_object_array_add(a, json_object_new_int(e->finish.outcome));
	json_object_array_add(a, json_object_new_int64(e->finish.end_ms));
	json_object_array_add(a, json_object_new_int64(e->finish.end_rtc_s));
	json_object_array_add(a, json_object_new_boolean(e->finish.shot_at_end_known));
	json_object_array_add(a, json_object_new_int64(e->finish.shot_at_end));
	json_object_array_add(a, json_object_new_boolean(e->finish.count_reported));
	return json_object_array_add(ctx, a) < 0 ? -ENOMEM : 0;
}

static int add_audit(const struct store_audit *a, void *ctx)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "time_ms", json_object_new_int64(a->time_ms));
	json_object_object_add(o, "kind", json_object_new_int(a->kind));
	if (a->has_operator) {
		json_object_object_add(o, "uid", json_object_new_int64(a->op.uid));
		json_object_object_add(o, "operator", text_or_null(a->op.name));
	}
	json_object_object_add(o, "unit", text_or_null(a->unit_serial));
	json_object_object_add(o, "session", json_object_new_int64(a->session_id));
	json_object_object_add(o, "reason", text_or_null(a->reason));
	json_object_object_add(o, "detail", text_or_null(a->detail));
	return json_object_array_add(ctx, o) < 0 ? -ENOMEM : 0;
}

static json_object *snapshot(const struct smpl_spill_source *src)
{
	json_object *o = json_object_new_object();
	json_object *pulses = json_object_new_array(), *ends = json_object_new_array();
	json_object *audit = json_object_new_array();
	int r = 0;

	json_object_object_add(o, "pulses", pulses);
	json_object_object_add(o, "ends", ends);
	json_object_object_add(o, "audit", audit);
	if (src && src->visit_pulses)
		r = src->visit_pulses(src->ctx, add_pulse, pulses);
	if (!r && src && src->visit_ends)
		r = src->visit_ends(src->ctx, add_end, ends);
	if (!r && src && src->visit_audit)
		r = src->visit_audit(src->ctx, add_audit, audit);
	if (r) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

static int write_body(struct smpl_spill *sp, const char *body, size_t len)
{
	unsigned int slot = sp->generation ? 1 - sp->slot : 0;
	uint64_t gen = sp->generation + 1;
	char header[HEADER_SIZE];
	off_t base = (off_t)slot * SMPL_SPILL_SLOT_SIZE;

	if (len > SLOT_BODY_MAX)
		return -EFBIG;
	memset(header, ' ', sizeof(header));
	header[HEADER_SIZE - 1] = '\n';
	snprintf(header, sizeof(header) - 1, MAGIC " gen=%" PRIu64 " len=%zu crc=%lu", gen, len,
		 crc32(0, (const Bytef *)body, (uInt)len));
	header[strlen(header)] = ' ';
	/* The body first, then the header that makes it count. */
	if (pwrite(sp->fd, body, len, base + HEADER_SIZE) != (ssize_t)len ||
	    fdatasync(sp->fd) < 0 ||
	    pwrite(sp->fd, header, HEADER_SIZE, base) != HEADER_SIZE ||
	    fdatasync(sp->fd) < 0)
		return errno ? -errno : -EIO;
	sp->generation = gen;
	sp->slot = slot;
	return 0;
}

char *smpl_spill_snapshot(const struct smpl_spill_source *src)
{
	json_object *o = snapshot(src);
	const char *body;
	char *copy = NULL;

	if (!o)
		return NULL;
	body = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	if (body)
		copy = strdup(body);
	json_object_put(o);
	return copy;
}

int smpl_spill_write_body(struct smpl_spill *sp, const char *body)
{
	if (!sp)
		return -EBADF;
	return write_body(sp, body, strlen(body));
}

int smpl_spill_clear(struct smpl_spill *sp)
{
	char *body = smpl_spill_snapshot(NULL);
	int r = body ? smpl_spill_write_body(sp, body) : -ENOMEM;

	free(body);
	return r;
}

/* ---- reading --------------------------------------------------------------- */

static int64_t at(json_object *a, size_t i)
{
	return json_object_get_int64(json_object_array_get_idx(a, i));
}

static const char *str_of(json_object *o, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null))
		return NULL;
	return json_object_get_string(v);
}

static int64_t int_of(json_object *o, const char *key)
{
	json_object *v;

	return json_object_object_get_ex(o, key, &v) ? json_object_get_int64(v) : 0;
}

static json_object *list_of(json_object *o, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_array))
		return NULL;
	return v;
}

static void give_back(json_object *o, const struct smpl_spill_sink *sink, int *n)
{
	json_object *l;

	for (size_t i = 0; (l = list_of(o, "pulses")) && i < json_object_array_length(l); i++) {
		json_object *a = json_object_array_get_idx(l, i);
		struct store_pulse p = {
			.treatment_id = at(a, 0), .host_ms = at(a, 1), .shot = (uint32_t)at(a, 2),
			.measured_uj = (uint32_t)at(a, 3), .set_uj = (uint32_t)at(a, 4),
		};

		sink->pulse(sink->ctx, &p);
		(*n)++;
	}
	for (size_t i = 0; (l = list_of(o, "ends")) && i < json_object_array_length(l); i++) {
		json_object *a = json_object_array_get_idx(l, i);
		struct smpl_spill_end e = {
			.treatment_id = at(a, 0),
			.finish = { .outcome = (enum store_outcome)at(a, 1), .end_ms = at(a, 2),
				    .end_rtc_s = at(a, 3), .shot_at_end_known = at(a, 4) != 0,
				    .shot_at_end = (uint32_t)at(a, 5),
				    .count_reported = at(a, 6) != 0 },
		};

		sink->end(sink->ctx, &e);
		(*n)++;
	}
	for (size_t i = 0; (l = list_of(o, "audit")) && i < json_object_array_length(l); i++) {
		json_object *a = json_object_array_get_idx(l, i);
		int64_t kind = int_of(a, "kind");
		struct store_audit r = {
			.time_ms = int_of(a, "time_ms"),
			.kind = kind >= 0 && kind < STORE_AUDIT__COUNT ? (enum store_audit_kind)kind
								      : STORE_AUDIT_FAULT,
			.has_operator = json_object_object_get_ex(a, "uid", NULL),
			.op = { (uint32_t)int_of(a, "uid"), str_of(a, "operator") },
			.unit_serial = str_of(a, "unit"),
			.session_id = int_of(a, "session"),
			.reason = str_of(a, "reason"),
			.detail = str_of(a, "detail"),
		};

		sink->audit(sink->ctx, &r);
		(*n)++;
	}
}

int smpl_spill_read(struct smpl_spill *sp, const struct smpl_spill_sink *sink)
{
	uint64_t gen;
	char *body;
	json_object *o;
	int n = 0;

	if (!sp || !sp->generation)
		return 0;
	body = read_slot(sp->fd, sp->slot, &gen);
	if (!body)
		return -EBADMSG;
	o = json_tokener_parse(body);
	free(body);
	if (!o || !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		return -EBADMSG;
	}
	give_back(o, sink, &n);
	json_object_put(o);
	return n;
}
