// SPDX-License-Identifier: MIT
/*
 * Benchmark of the records store: pulses committed per second when the daemon
 * flushes after every pulse (one fsync'd transaction per pulse, the baseline)
 * versus batches of 10 and 100, and the latency of a durable
 * store_treatment_begin() (what arming waits for).  Medians of several runs,
 * on the disk under $BENCH_DIR (default: build/), since tmpfs would fake fsync.
 */
#include <errno.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "store.h"

#define RUNS		5
#define PULSES		400
#define BEGINS		20
#define DAY_MS		(24LL * 3600 * 1000)

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

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

/* A fresh store in a new directory with one unit and one open session. */
static struct store *fresh_store(char *dir, size_t len, int64_t *session)
{
	const char *base = getenv("BENCH_DIR") ? getenv("BENCH_DIR") : "build";
	struct store_operator op = { 0, "bench" };
	char msg[STORE_MSG_MAX];
	struct store *st;
	int err;

	snprintf(dir, len, "%s/bench_store.XXXXXX", base);
	if (!mkdtemp(dir))
		die("mkdtemp", NULL, -errno);
	err = store_open(&st, dir, msg, sizeof(msg));
	if (err) {
		fprintf(stderr, "bench_store: %s\n", msg);
		exit(1);
	}
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

/* Pulses per second committing a transaction every `batch` pulses. */
static double pulses_per_second(int batch)
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
	start = now_s();
	for (uint32_t shot = 1; shot <= PULSES; shot++) {
		struct store_pulse p = { id, 2000 + shot, shot, 280000, 282743 };

		err = store_add_pulse(st, &p);
		if (!err && (shot % (uint32_t)batch == 0 || shot == PULSES))
			err = store_flush(st);
		if (err)
			die("pulse", st, err);
	}
	start = now_s() - start;
	destroy_store(st, dir);
	return PULSES / start;
}

/* Median milliseconds of one durable store_treatment_begin (+ its end). */
static double begin_latency_ms(void)
{
	struct store_treatment_finish fin = { .outcome = STORE_OUTCOME_COMPLETED,
					      .shot_at_end_known = true };
	double ms[BEGINS], start;
	int64_t session, id;
	char dir[256], patch[16];
	struct store *st = fresh_store(dir, sizeof(dir), &session);
	int err;

	for (int i = 0; i < BEGINS; i++) {
		struct store_treatment_start t;

		snprintf(patch, sizeof(patch), "patch-%d", i);
		t = treatment(session, patch, 1000 + i * 1000);
		start = now_s();
		err = store_treatment_begin(st, &t, &id);
		ms[i] = (now_s() - start) * 1e3;
		fin.end_ms = t.armed_ms + 500;
		if (!err)
			err = store_treatment_end(st, id, &fin);
		if (err)
			die("begin/end", st, err);
	}
	destroy_store(st, dir);
	return median(ms, BEGINS);
}

int main(void)
{
	static const int batches[] = { 1, 10, 100 };
	double rate[3], runs[RUNS];

	printf("bench_store: %d pulses per run, median of %d runs, synchronous=FULL, WAL\n",
	       PULSES, RUNS);
	printf("%-34s %14s %10s\n", "commit", "pulses/s", "ratio");
	for (int b = 0; b < 3; b++) {
		for (int r = 0; r < RUNS; r++)
			runs[r] = pulses_per_second(batches[b]);
		rate[b] = median(runs, RUNS);
		printf("%-34s %14.0f %9.1fx\n",
		       b == 0 ? "one transaction per pulse" :
		       b == 1 ? "store_flush every 10 pulses" : "store_flush every 100 pulses",
		       rate[b], rate[b] / rate[0]);
	}
	printf("%-34s %11.2f ms\n", "durable store_treatment_begin", begin_latency_ms());
	return 0;
}
