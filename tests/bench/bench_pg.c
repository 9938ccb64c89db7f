// SPDX-License-Identifier: MIT
/*
 * Benchmark of the clinic's records on PostgreSQL (issue 14), on a database
 * that tests/bench/run-bench-pg filled with 10,000,000 treatments:
 *
 *   CheckPatch   store_ops_pg.patch_facts() on a reader handle, for patients
 *                of the generated records (their treatments are on the index)
 *   Arm          store_ops_pg.treatment_begin() on a writer handle: the
 *                journal shipped, the SERIALIZABLE transaction with every rule
 *                (clock, session, unit, counter, settling, cooldown, the facts
 *                for the rules' decision), the insert under the exclusion
 *                constraint, the commit
 *   10 stations  ten workstations (threads, each its own writer, journal and
 *                shipper) arming different patients' patches at once: arms per
 *                second and the latency of each arming
 *
 * Each arming is a session begun, the treatment begun (timed), ended and
 * the session ended, as the daemon does.  Prints medians, p99 and the
 * ratio of the ten stations' p99 to one station's.
 *
 *   bench_pg CONNINFO STATE_DIR GENERATED_PATIENTS
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "store-pg.h"

#define CHECKS		2000
#define ARMS_ONE	400
#define STATIONS	10
#define ARMS_EACH	150
#define DAY_MS		(24LL * 3600 * 1000)

static const char *conninfo, *state_root;
static long generated_patients;

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double pct(double *v, int n, double p)
{
	int i = (int)(p * (n - 1) + 0.5);

	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return v[i < n ? i : n - 1];
}

static void die(const char *what, const char *msg)
{
	fprintf(stderr, "bench_pg: %s: %s\n", what, msg);
	exit(1);
}

/* The rules' decision reads the facts; this one allows (new patients only). */
static int allow(const struct store_patch_facts *facts, int64_t armed_ms, void *ctx, char *why,
		 size_t why_len)
{
	(void)facts, (void)armed_ms, (void)ctx, (void)why, (void)why_len;
	return 0;
}

struct station {
	int index;
	int arms;
	double *lat;
	int done;
	char err[STORE_MSG_MAX];
};

static const struct store_ops *ops = &store_ops_pg;

static void *station_main(void *arg)
{
	struct station *s = arg;
	struct store_pg_config cfg = { .conninfo = conninfo, .clock_skew_ms = 300000 };
	char ws[32], dir[512], serial[32], patient[64], msg[STORE_MSG_MAX];
	const struct store_operator op = { 1000, "bench" };
	struct store_pg *h;
	uint32_t shots = 0;
	int r;

	snprintf(ws, sizeof(ws), "bench%02d", s->index);
	snprintf(dir, sizeof(dir), "%s/%s", state_root, ws);
	snprintf(serial, sizeof(serial), "BENCH%02d-%d", s->index, (int)(wall_ms() % 100000));
	mkdir(dir, 0700);
	cfg.workstation = ws;
	cfg.state_dir = dir;
	if (store_pg_open(&h, &cfg, msg, sizeof(msg)) < 0)
		die("store_pg_open", msg);
	if (ops->unit_seen(h, serial, "bench", "1.0.0", wall_ms()) < 0)
		die("unit_seen", ops->errmsg(h));
	for (int i = 0; i < s->arms; i++) {
		struct store_treatment_start t = {
			.patch = "crown", .unit_firmware = "1.0.0", .op = op,
			.params = { 1064, 3000, 3000, 10000, 5000, 212058 },
			.shot_at_arm = shots, .cooldown_ms = 42 * DAY_MS, .decide = allow,
		};
		struct store_treatment_finish f = { .outcome = STORE_OUTCOME_COMPLETED,
						     .shot_at_end_known = true };
		int64_t session, id;
		double t0;

		snprintf(patient, sizeof(patient), "B%02d-%d-%d", s->index, (int)(wall_ms() % 1000000), i);
		r = ops->session_begin(h, patient, serial, &op, wall_ms(), &session);
		if (r < 0)
			die("session_begin", ops->errmsg(h));
		t.session_id = session;
		t.armed_ms = wall_ms();
		t0 = now_ms();
		r = ops->treatment_begin(h, &t, &id);
		s->lat[i] = now_ms() - t0;
		if (r < 0) {
			snprintf(s->err, sizeof(s->err), "treatment_begin: %s", ops->errmsg(h));
			break;
		}
		shots += 10;
		f.end_ms = wall_ms();
		f.shot_at_end = shots;
		if (ops->treatment_end(h, id, &f) < 0 ||
		    ops->session_end(h, session, STORE_SESSION_ENDED, NULL, wall_ms()) < 0)
			die("treatment_end", ops->errmsg(h));
		s->done++;
	}
	store_pg_close(h);
	return NULL;
}

static void run_stations(int n, int arms, double *wall, double *lat_all, int *n_lat)
{
	pthread_t th[STATIONS];
	struct station st[STATIONS];
	double t0 = now_ms();

	for (int i = 0; i < n; i++) {
		st[i] = (struct station){ .index = i, .arms = arms };
		st[i].lat = calloc((size_t)arms, sizeof(double));
		pthread_create(&th[i], NULL, station_main, &st[i]);
	}
	*n_lat = 0;
	for (int i = 0; i < n; i++) {
		pthread_join(th[i], NULL);
		if (st[i].err[0])
			die("a station", st[i].err);
		memcpy(lat_all + *n_lat, st[i].lat, (size_t)st[i].done * sizeof(double));
		*n_lat += st[i].done;
		free(st[i].lat);
	}
	*wall = now_ms() - t0;
}

static void check_patch(void)
{
	static const char *const patches[] = { "frontal-hairline", "mid-scalp", "crown",
		"left-temporal", "right-temporal", "left-parietal", "right-parietal", "occipital" };
	struct store_pg_config cfg = { .conninfo = conninfo, .workstation = "benchreader" };
	char msg[STORE_MSG_MAX], patient[32];
	double lat[CHECKS];
	struct store_patch_facts f;
	struct store_pg *h;
	int emitted = 0;

	if (store_pg_open_reader(&h, &cfg, msg, sizeof(msg)) < 0)
		die("store_pg_open_reader", msg);
	srand(14);
	for (int i = 0; i < CHECKS; i++) {
		double t0;

		snprintf(patient, sizeof(patient), "P%ld", rand() % generated_patients);
		t0 = now_ms();
		if (ops->patch_facts(h, patient, patches[rand() % 8], 0, &f) < 0)
			die("patch_facts", ops->errmsg(h));
		lat[i] = now_ms() - t0;
		emitted += f.patch_emitted;
	}
	if (emitted < CHECKS / 2)
		die("patch_facts", "the generated patients have no treatments: wrong data?");
	printf("%-34s %10.3f %10.3f %10s\n", "CheckPatch (facts of a patch)", pct(lat, CHECKS, 0.5),
	       pct(lat, CHECKS, 0.99), "-");
	store_pg_close(h);
}

int main(int argc, char **argv)
{
	static double lat[STATIONS * ARMS_EACH + ARMS_ONE];
	double wall, one_p99;
	int n;

	if (argc != 4) {
		fprintf(stderr, "usage: bench_pg CONNINFO STATE_DIR GENERATED_PATIENTS\n");
		return 2;
	}
	conninfo = argv[1];
	state_root = argv[2];
	generated_patients = atol(argv[3]);
	printf("%-34s %10s %10s %10s\n", "clinic's records, PostgreSQL", "median ms", "p99 ms",
	       "arms/s");
	check_patch();
	run_stations(1, ARMS_ONE, &wall, lat, &n);
	one_p99 = pct(lat, n, 0.99);
	printf("%-34s %10.3f %10.3f %10.1f\n", "Arm, one workstation", pct(lat, n, 0.5), one_p99,
	       n / (wall / 1e3));
	run_stations(STATIONS, ARMS_EACH, &wall, lat, &n);
	printf("%-34s %10.3f %10.3f %10.1f\n", "Arm, ten workstations at once", pct(lat, n, 0.5),
	       pct(lat, n, 0.99), n / (wall / 1e3));
	printf("ratio of p99, ten workstations to one: %.2f\n", pct(lat, n, 0.99) / one_p99);
	return 0;
}
