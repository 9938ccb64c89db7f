// SPDX-License-Identifier: MIT
/*
 * Benchmarks of the records store, as rows of the table of bench-table.h:
 *
 *   bench_store                  on fresh stores under $BENCH_DIR (default build/)
 *   bench_store --big STATE_DIR  store_treatment_begin on a clinic's records
 *                                (tests/bench/gen_records.c: 1,000,000 treatments)
 *   bench_store --check-patch STATE_DIR   CheckPatch's store work on them
 *
 * Fresh stores: the time per pulse committed when the daemon flushes every
 * 10 or 100 pulses, against one fsync'd transaction per pulse (the floor);
 * a durable store_treatment_begin() on an empty store.
 *
 * --big: store_treatment_begin() (what Arm waits for), each on a unit with a
 * quarter million treatments, for a patient with ten, with a rules callback so
 * that the eligibility is decided inside the transaction as the daemon does;
 * its time beyond its fsyncs (issue 12: at most 5 ms), and the fsyncs apart.
 * The fsyncs are timed where SQLite makes them: this program defines fsync()
 * and fdatasync(), which SQLite's calls reach before the C library's.
 *
 * On the disk (tmpfs would fake the fsyncs).
 */
#include <dlfcn.h>
#include <errno.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "bench-table.h"
#include "store.h"

#define RUNS		5
#define PULSES		400
#define BEGINS		20
#define BIG_BEGINS	300
#define BIG_WARMUP	3
#define DAY_MS		(24LL * 3600 * 1000)
#define BIG_UNIT	"SMPL-A0001"
#define BIG_PATIENT	"P-000100"

/* ---- fsync, timed ------------------------------------------------------ */

static double fsync_us;		/* time spent in fsync() and fdatasync() */
static unsigned int fsyncs;

static int timed_sync(const char *name, int fd)
{
	int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, name);
	double t0 = bench_now_us();
	int r;

	if (!real) {
		errno = ENOSYS;
		return -1;
	}
	r = real(fd);
	fsync_us += bench_now_us() - t0;
	fsyncs++;
	return r;
}

int fsync(int fd)
{
	return timed_sync("fsync", fd);
}

int fdatasync(int fd)
{
	return timed_sync("fdatasync", fd);
}

/* ---- helpers ----------------------------------------------------------- */

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void die(const char *what, struct store *st, int err)
{
	fprintf(stderr, "bench_store: %s: %s (%s)\n", what, strerror(-err),
		st ? store_errmsg(st) : "");
	exit(1);
}

static struct store *open_store(const char *dir)
{
	char msg[STORE_MSG_MAX];
	struct store *st;

	if (store_open(&st, dir, msg, sizeof(msg))) {
		fprintf(stderr, "bench_store: %s\n", msg);
		exit(1);
	}
	return st;
}

/* A fresh store in a new directory with one unit and one open session. */
static struct store *fresh_store(char *dir, size_t len, int64_t *session)
{
	const char *base = getenv("BENCH_DIR") ? getenv("BENCH_DIR") : "build";
	struct store_operator op = { 0, "bench" };
	struct store *st;
	int err;

	snprintf(dir, len, "%s/bench_store.XXXXXX", base);
	if (!mkdtemp(dir))
		die("mkdtemp", NULL, -errno);
	st = open_store(dir);
	err = store_unit_seen(st, "BENCH1", "SMPL-1064", "1.0.0", 1);
	if (!err)
		err = store_session_begin(st, "P-bench", "BENCH1", &op, 1, session);
	if (err)
		die("setup", st, err);
	return st;
}

static void destroy_store(struct store *st, const char *dir)
{
	store_close(st);
	nftw(dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static struct store_treatment_start treatment(int64_t session, const char *patch,
					      int64_t armed_ms)
{
	return (struct store_treatment_start){
		.session_id = session, .patch = patch, .unit_firmware = "1.0.0",
		.op = { 0, "bench" }, .armed_ms = armed_ms, .armed_rtc_s = armed_ms / 1000,
		.params = { 1064, 4000, 3000, 10000, 5000, 282743 },
		.cooldown_ms = 42 * DAY_MS,
	};
}

/* ---- fresh stores ------------------------------------------------------ */

/* Microseconds per pulse committing a transaction every `batch` pulses. */
static double us_per_pulse(int batch)
{
	struct store_treatment_start t;
	int64_t session, id;
	char dir[256];
	struct store *st = fresh_store(dir, sizeof(dir), &session);
	double start;
	int err;

	t = treatment(session, "crown", 1000);
	err = store_treatment_begin(st, &t, &id);
	if (err)
		die("begin", st, err);
	start = bench_now_us();
	for (uint32_t shot = 1; shot <= PULSES; shot++) {
		struct store_pulse p = { id, 2000 + shot, shot, 280000, 282743 };

		err = store_add_pulse(st, &p);
		if (!err && (shot % (uint32_t)batch == 0 || shot == PULSES))
			err = store_flush(st);
		if (err)
			die("pulse", st, err);
	}
	start = bench_now_us() - start;
	destroy_store(st, dir);
	return start / PULSES;
}

/* A durable store_treatment_begin() (+ its end, not timed) on an empty store. */
static void begin_latency(double *total, double *sync)
{
	struct store_treatment_finish fin = { .outcome = STORE_OUTCOME_COMPLETED,
					      .shot_at_end_known = true };
	int64_t session, id;
	char dir[256], patch[16];
	struct store *st = fresh_store(dir, sizeof(dir), &session);
	double start;
	int err;

	for (int i = 0; i < BEGINS; i++) {
		struct store_treatment_start t;

		snprintf(patch, sizeof(patch), "patch-%d", i);
		t = treatment(session, patch, 1000 + i * 1000);
		fsync_us = 0;
		start = bench_now_us();
		err = store_treatment_begin(st, &t, &id);
		total[i] = bench_now_us() - start;
		sync[i] = fsync_us;
		fin.end_ms = t.armed_ms + 500;
		if (!err)
			err = store_treatment_end(st, id, &fin);
		if (err)
			die("begin/end", st, err);
	}
	destroy_store(st, dir);
}

static int fresh(void)
{
	static const int batches[] = { 1, 10, 100 };
	double per[3][RUNS], med[3], p99[3], total[BEGINS], sync[BEGINS];
	char label[64];

	for (int b = 0; b < 3; b++) {
		for (int r = 0; r < RUNS; r++)
			per[b][r] = us_per_pulse(batches[b]);
		med[b] = bench_quantile(per[b], RUNS, 0.5);
		p99[b] = bench_quantile(per[b], RUNS, 0.99);
	}
	for (int b = 1; b < 3; b++) {
		snprintf(label, sizeof(label), "a pulse, store_flush every %d", batches[b]);
		bench_row_us(label, med[b], p99[b], med[0], NAN, NAN, 0, "- (floor: 1 per txn)");
	}
	begin_latency(total, sync);
	bench_row_us("store_treatment_begin (empty)", bench_quantile(total, BEGINS, 0.5),
		     bench_quantile(total, BEGINS, 0.99), bench_quantile(sync, BEGINS, 0.5),
		     NAN, NAN, 0, "- (floor: its fsyncs)");
	return 0;
}

/* ---- a clinic's records ------------------------------------------------ */

static const char *const patches[] = {
	"frontal-hairline", "mid-scalp", "crown", "left-temporal",
	"right-temporal", "left-parietal", "right-parietal", "occipital",
};

static int allow(const struct store_patch_facts *facts, int64_t armed_ms, void *ctx,
		 char *why, size_t why_len)
{
	(void)facts, (void)armed_ms, (void)ctx, (void)why, (void)why_len;
	return 0;
}

/* The highest shot the records hold for @unit (a raw, read-only look). */
static uint32_t high_water(const char *dir, const char *unit)
{
	char path[4200];
	sqlite3_stmt *s;
	sqlite3 *db;
	uint32_t high = 0;

	snprintf(path, sizeof(path), "%s/%s", dir, STORE_DB_NAME);
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "SELECT max(coalesce((SELECT max(shot) FROM pulses"
			       " WHERE unit_serial = ?1), 0), coalesce((SELECT"
			       " max(shot_at_arm, coalesce(shot_at_end, 0)) FROM treatments"
			       " WHERE unit_serial = ?1 ORDER BY id DESC LIMIT 1), 0))",
			       -1, &s, NULL) != SQLITE_OK) {
		fprintf(stderr, "bench_store: %s: %s\n", path, sqlite3_errmsg(db));
		exit(1);
	}
	sqlite3_bind_text(s, 1, unit, -1, SQLITE_STATIC);
	if (sqlite3_step(s) == SQLITE_ROW)
		high = (uint32_t)sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	sqlite3_close(db);
	return high;
}

#define FACTS_CALLS	5000

/*
 * What CheckPatch asks of the store (store_newest_record_ms for the clock,
 * then store_patch_facts), on a reader as the daemon's loop will: a patient
 * with 10 treatments (a different one each call, as gen_records made them)
 * and an unknown one.
 */
static void check_patch_rows(const char *dir)
{
	static double known[FACTS_CALLS], unknown[FACTS_CALLS];
	struct store_patch_facts facts;
	char msg[STORE_MSG_MAX], patient[16];
	struct store *st;
	int64_t when;
	double t0;
	int err = store_open_reader(&st, dir, msg, sizeof(msg));

	if (err) {
		fprintf(stderr, "bench_store: %s\n", msg);
		exit(1);
	}
	for (int i = 0; i < FACTS_CALLS; i++) {
		snprintf(patient, sizeof(patient), "P-%06u", (unsigned)(i * 7919 % 990) * 100);
		t0 = bench_now_us();
		err = store_newest_record_ms(st, &when) < 0;
		err = err || store_patch_facts(st, patient, patches[i % 8], 0, &facts) < 0;
		known[i] = bench_now_us() - t0;
		if (!err && (facts.patient_treatments == 0 || facts.patient_treatments > 10)) {
			fprintf(stderr, "bench_store: %s has %u treatments that emitted, not 1-10\n",
				patient, facts.patient_treatments);
			exit(1);
		}
		snprintf(patient, sizeof(patient), "U-%06d", i);
		t0 = bench_now_us();
		err = err || store_newest_record_ms(st, &when) < 0;
		err = err || store_patch_facts(st, patient, patches[i % 8], 0, &facts) < 0;
		unknown[i] = bench_now_us() - t0;
		if (err)
			die("store_patch_facts", st, -EIO);
	}
	snprintf(msg, sizeof(msg), "%.0f KiB", sqlite3_memory_used() / 1024.0);
	bench_row_text("  SQLite's heap after them (1M)", msg, "-", "-", "-",
		       "- (page cache 512 KiB)", "");
	store_close(st);
	bench_row_us("  its store work: a patient with 10 (1M)", bench_quantile(known, FACTS_CALLS, 0.5),
		     bench_quantile(known, FACTS_CALLS, 0.99), NAN, NAN, NAN, 0, "-");
	bench_row_us("  its store work: an unknown patient (1M)",
		     bench_quantile(unknown, FACTS_CALLS, 0.5),
		     bench_quantile(unknown, FACTS_CALLS, 0.99), NAN, NAN, NAN, 0, "-");
}

static int big(const char *dir)
{
	struct store_treatment_finish fin = { .outcome = STORE_OUTCOME_COMPLETED,
					      .shot_at_end_known = true };
	struct store_operator op = { 1000, "bench" };
	double total[BIG_BEGINS], sync[BIG_BEGINS], beyond[BIG_BEGINS], t0;
	uint32_t shot = high_water(dir, BIG_UNIT);	/* the unit's counter where the records end */
	struct timespec now;
	struct store *st = open_store(dir);
	int64_t session, id, armed;
	int n = 0, err;

	clock_gettime(CLOCK_REALTIME, &now);
	armed = (int64_t)now.tv_sec * 1000 + 100 * DAY_MS;	/* every patch eligible */
	err = store_session_begin(st, BIG_PATIENT, BIG_UNIT, &op, armed, &session);
	if (err)
		die("session", st, err);
	for (int i = 0; i < BIG_WARMUP + BIG_BEGINS; i++) {
		struct store_treatment_start t = treatment(session, patches[i % 8], armed + i);

		t.shot_at_arm = shot;
		t.decide = allow;
		fsync_us = 0;
		t0 = bench_now_us();
		err = store_treatment_begin(st, &t, &id);
		if (err)
			die("store_treatment_begin", st, err);
		if (i >= BIG_WARMUP) {
			total[n] = bench_now_us() - t0;
			sync[n] = fsync_us;
			beyond[n] = total[n] - sync[n];
			n++;
		}
		shot += 3;
		fin.end_ms = t.armed_ms + 500;
		fin.shot_at_end = shot;
		err = store_treatment_end(st, id, &fin);
		if (err)
			die("store_treatment_end", st, err);
	}
	err = store_session_end(st, session, STORE_SESSION_ENDED, NULL, armed + n);
	if (err)
		die("session end", st, err);
	store_close(st);
	if (fsyncs == 0) {
		fprintf(stderr, "bench_store: no fsync was seen: the timing of fsyncs is broken\n");
		return 1;
	}
	bench_row_us("store_treatment_begin at 1M, beyond fsync", bench_quantile(beyond, n, 0.5),
		     bench_quantile(beyond, n, 0.99), NAN, 5000, 5000, 0, "<= 5 ms");
	bench_row_us("  its fsyncs (measured apart)", bench_quantile(sync, n, 0.5),
		     bench_quantile(sync, n, 0.99), NAN, NAN, NAN, 0, "-");
	bench_row_us("  in all", bench_quantile(total, n, 0.5), bench_quantile(total, n, 0.99),
		     NAN, NAN, NAN, 0, "-");
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "--big") == 0)
		return big(argv[2]);
	if (argc == 3 && strcmp(argv[1], "--check-patch") == 0) {
		check_patch_rows(argv[2]);
		return 0;
	}
	if (argc != 1) {
		fprintf(stderr, "usage: bench_store [--big STATE_DIR]\n");
		return 2;
	}
	return fresh();
}
