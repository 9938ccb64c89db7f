/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness: opening a damaged records database (daemon/store.c).
 * The input is written as <dir>/records.db, checked with store_quick_check()
 * (the daemon's check after READY: a verdict with a message, the file left
 * as it was) and opened with store_open().  A refused database must come with
 * a message and must be left untouched (DESIGN: never recreated or
 * modified); an accepted one must answer the queries the daemon makes before
 * it lets anybody treat (last emission, patient summary, newest record, open
 * treatments) without crashing, on its connection and on a reader's.
 *
 * Two kinds of input:
 *  - one that starts with SQLite's magic is the file itself;
 *  - any other is a list of damages to a real database (the seed "valid",
 *    $FUZZ_STORE_BASE or tests/fuzz/corpus/fuzz_store_open/valid from the
 *    top of the tree), 4 bytes each: a 24-bit offset (modulo the size) and
 *    a byte XOR-ed in there, or 0 to cut the file at that offset.  This
 *    reaches the checks behind a valid header far more often than random
 *    bytes do.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[256];
static uint8_t *base;
static size_t base_size;
static char db_path[300], wal_path[310], shm_path[310];

static void must(bool ok)
{
	if (!ok)
		abort();
}

static void load_base(void)
{
	const char *path = getenv("FUZZ_STORE_BASE");
	FILE *f;
	long n;

	if (!path)
		path = "tests/fuzz/corpus/fuzz_store_open/valid";
	f = fopen(path, "rb");
	if (!f)
		return;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) > 0 && fseek(f, 0, SEEK_SET) == 0) {
		base = malloc((size_t)n);
		if (base && fread(base, 1, (size_t)n, f) == (size_t)n)
			base_size = (size_t)n;
	}
	fclose(f);
}

/* The base database with the damages of @data applied, into @out (base_size). */
static size_t damage(const uint8_t *data, size_t size, uint8_t *out)
{
	size_t len = base_size;

	memcpy(out, base, base_size);
	for (size_t i = 0; i + 4 <= size; i += 4) {
		size_t off = ((size_t)data[i] | (size_t)data[i + 1] << 8 |
			      (size_t)data[i + 2] << 16) % base_size;

		if (data[i + 3] == 0) {
			if (off < len)
				len = off;
		} else {
			out[off] ^= data[i + 3];
		}
	}
	return len;
}

static void remove_dir(void)
{
	unlink(db_path);
	unlink(wal_path);
	unlink(shm_path);
	rmdir(dir);
}

static void make_dir(void)
{
	const char *base = getenv("FUZZ_TMPDIR");

	if (dir[0])
		return;
	if (!base)
		base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	snprintf(dir, sizeof(dir), "%s/smpl-fuzz-store-XXXXXX", base);
	must(mkdtemp(dir) != NULL);
	atexit(remove_dir);
	snprintf(db_path, sizeof(db_path), "%s/%s", dir, STORE_DB_NAME);
	snprintf(wal_path, sizeof(wal_path), "%s-wal", db_path);
	snprintf(shm_path, sizeof(shm_path), "%s-shm", db_path);
}

static void clean_dir(void)
{
	unlink(db_path);
	unlink(wal_path);
	unlink(shm_path);
}

static void write_file(const uint8_t *data, size_t size)
{
	FILE *f = fopen(db_path, "wb");

	must(f != NULL);
	must(size == 0 || fwrite(data, 1, size, f) == size);
	must(fclose(f) == 0);
}

/* The file after a refused open has the bytes it had before. */
static bool file_is(const uint8_t *data, size_t size)
{
	FILE *f = fopen(db_path, "rb");
	uint8_t buf[4096];
	size_t off = 0, n;
	bool same = true;

	if (!f)
		return false;
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
		if (off + n > size || memcmp(buf, data + off, n) != 0)
			same = false;
		off += n;
	}
	fclose(f);
	return same && off == size;
}

static int count_cb(const struct store_treatment *t, void *ctx)
{
	(void)t;
	++*(int *)ctx;
	return 0;
}

static void query(struct store *st)
{
	struct store_patient_summary sum;
	struct store_patch_facts facts;
	int64_t when = 0;
	int n = 0;

	(void)store_last_emission(st, "P-0001", "crown", &when);
	(void)store_patient_summary(st, "P-0001", &sum);
	(void)store_patch_facts(st, "P-0001", "crown", 0, &facts);
	(void)store_newest_record_ms(st, &when);
	(void)store_unsettled_treatments(st, "SIM-0001", count_cb, &n);
	(void)store_sessions_interrupt_open(st, 1700000000000);
}

/* The daemon's check after READY: a verdict with a message, nothing written. */
static void check(const uint8_t *data, size_t size)
{
	char msg[STORE_MSG_MAX];
	int r;

	msg[0] = '\0';
	r = store_quick_check(dir, msg, sizeof(msg));
	must(r == 0 || (r < 0 && msg[0] != '\0' && memchr(msg, 0, sizeof(msg)) != NULL));
	must(file_is(data, size));
}

static const char sqlite_magic[] = "SQLite format 3";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct store *st = NULL;
	char msg[STORE_MSG_MAX];
	uint8_t *damaged = NULL;
	int r;

	if (!dir[0])
		load_base();
	make_dir();
	if (base_size && !(size >= sizeof(sqlite_magic) &&
			   memcmp(data, sqlite_magic, sizeof(sqlite_magic)) == 0)) {
		damaged = malloc(base_size);
		must(damaged != NULL);
		size = damage(data, size, damaged);
		data = damaged;
	}
	clean_dir();
	write_file(data, size);
	check(data, size);
	clean_dir();
	write_file(data, size);
	msg[0] = '\0';
	r = store_open(&st, dir, msg, sizeof(msg));
	if (r < 0) {
		must(st == NULL);
		must(memchr(msg, 0, sizeof(msg)) != NULL && msg[0] != '\0');
		/* An empty file is a new database; anything else refused stays as it was. */
		if (size > 0 && r != -EBUSY)
			must(file_is(data, size));
	} else {
		struct store *reader = NULL;

		must(st != NULL);
		if (store_open_reader(&reader, dir, msg, sizeof(msg)) == 0) {
			query(reader);
			store_close(reader);
		}
		query(st);
		store_close(st);
	}
	clean_dir();
	free(damaged);
	return 0;
}
