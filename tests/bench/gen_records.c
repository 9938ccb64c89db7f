// SPDX-License-Identifier: MIT
/*
 * A clinic's ten years of records, for the benchmarks (issue 12):
 *
 *   gen_records STATE_DIR
 *   gen_records --cache-name     the name to cache it under (schema, generator)
 *
 * creates STATE_DIR/records.db (STATE_DIR must not exist) with 1,000,000
 * treatments and about 5,000,000 pulses: about 100,000 patients of 5 to 15
 * treatments each, in visits 43 to 98 days apart (never inside the 42-day
 * cooldown) treating 1 to 3 of the 8 standard patches; four units, their shot
 * counters rising in time order; 0 to 10 pulses a treatment; an audit row at
 * each session's start and end and at each arm and disarm.  Every patient
 * P-xxxxxx whose number is a multiple of 100 has exactly 10 treatments (the
 * benchmark's "patient with 10 treatments").  Deterministic (fixed seed).
 *
 * The schema is the store's own (store_open creates it); the rows are written
 * with SQL matching it, in one transaction without a journal, then the file
 * is put back in WAL mode.  It is built under STATE_DIR.tmp and renamed, so a
 * half-built database is never taken for a finished one.
 */
#include <errno.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <sqlite3.h>

#include "store.h"
#include "store-chain.h"

#define GEN_VERSION	1	/* bump when the records generated change */
#define TREATMENTS	1000000
#define UNITS		4
#define DAY_MS		(24LL * 3600 * 1000)
#define YEARS_MS	(3653LL * DAY_MS)
#define SET_UJ		282743

static const char *const patches[] = {
	"frontal-hairline", "mid-scalp", "crown", "left-temporal",
	"right-temporal", "left-parietal", "right-parietal", "occipital",
};

struct visit {
	int64_t start_ms;
	uint32_t patient;
	uint8_t unit, n, patch[3];
};

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint32_t rnd(uint32_t n)		/* 0 .. n-1 (xorshift64*) */
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (uint32_t)((rng_state * 0x2545f4914f6cdd1dULL) >> 32) % n;
}

static void die_sql(sqlite3 *db, const char *what)
{
	fprintf(stderr, "gen_records: %s: %s\n", what, sqlite3_errmsg(db));
	exit(1);
}

static void exec(sqlite3 *db, const char *sql)
{
	if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
		die_sql(db, sql);
}

static sqlite3_stmt *prep(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *s;

	if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
		die_sql(db, sql);
	return s;
}

static void run(sqlite3 *db, sqlite3_stmt *s)
{
	if (sqlite3_step(s) != SQLITE_DONE)
		die_sql(db, sqlite3_sql(s));
	sqlite3_reset(s);
}

static int by_start(const void *a, const void *b)
{
	const struct visit *x = a, *y = b;

	if (x->start_ms != y->start_ms)
		return x->start_ms < y->start_ms ? -1 : 1;
	return (x->patient > y->patient) - (x->patient < y->patient);
}

/* Every patient's visits over ten years ending a day before @now_ms. */
static struct visit *plan_visits(int64_t now_ms, size_t *n_visits, uint32_t *n_patients)
{
	size_t cap = TREATMENTS, n = 0;
	struct visit *v = malloc(cap * sizeof(*v));
	int64_t first = now_ms - YEARS_MS, last = now_ms - DAY_MS;
	uint32_t p = 0;
	long left = TREATMENTS;

	if (!v)
		exit(1);
	for (; left > 0; p++) {
		long want = p % 100 == 0 ? 10 : 5 + (long)rnd(11);
		size_t from = n;
		int64_t t = 0, shift;

		if (want > left)
			want = left;
		left -= want;
		while (want > 0) {
			struct visit *x = &v[n++];
			uint8_t k = (uint8_t)(1 + rnd(3));

			if (k > want)
				k = (uint8_t)want;
			want -= k;
			x->start_ms = t + 8 * 3600 * 1000LL + rnd(9 * 3600) * 1000LL;
			x->patient = p;
			x->unit = (uint8_t)rnd(UNITS);
			x->n = k;
			x->patch[0] = (uint8_t)rnd(8);
			for (int i = 1; i < k; i++)	/* distinct patches in one visit */
				x->patch[i] = (uint8_t)((x->patch[i - 1] + 1 + rnd(3)) % 8);
			t += (43 + (int64_t)rnd(56)) * DAY_MS;	/* the time of day varies by 9 h */
		}
		/* The patient's first visit anywhere in the ten years, the last before @last. */
		shift = first + (int64_t)rnd((uint32_t)((last - first - v[n - 1].start_ms -
							 DAY_MS) / 60000)) * 60000;
		for (size_t i = from; i < n; i++)
			v[i].start_ms += shift;
	}
	*n_visits = n;
	*n_patients = p;
	qsort(v, n, sizeof(*v), by_start);
	return v;
}

struct stmts {
	sqlite3_stmt *session, *treatment, *pulse, *audit;
};

static void audit(sqlite3 *db, sqlite3_stmt *s, int64_t t, const char *kind, const char *unit,
		  int64_t session, const char *reason, const char *detail)
{
	sqlite3_bind_int64(s, 1, t);
	sqlite3_bind_text(s, 2, kind, -1, SQLITE_STATIC);
	sqlite3_bind_int(s, 3, 1000);
	sqlite3_bind_text(s, 4, "tech", -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 5, unit, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 6, session);
	sqlite3_bind_text(s, 7, reason, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 8, detail, -1, SQLITE_TRANSIENT);
	run(db, s);
}

/* One visit: its session, treatments, pulses and audit rows. */
static long write_visit(sqlite3 *db, const struct stmts *q, const struct visit *v,
			int64_t session, int64_t *treatment, uint32_t *counter)
{
	static const char *const outcomes[] = { "completed", "interrupted", "fault" };
	char unit[16], patient[16], detail[64];
	int64_t t = v->start_ms + 5 * 60000;
	long pulses = 0;

	snprintf(unit, sizeof(unit), "SMPL-A%04u", v->unit + 1);
	snprintf(patient, sizeof(patient), "P-%06u", v->patient);
	audit(db, q->audit, v->start_ms, "session", unit, session, "start", patient);
	for (int i = 0; i < v->n; i++) {
		uint32_t np = rnd(11), at_arm = *counter, o = rnd(100);
		int64_t sum = 0, mn = 0, mx = 0, last = 0, id = ++*treatment;
		sqlite3_stmt *s = q->treatment;

		for (uint32_t k = 0; k < np; k++) {
			int64_t uj = SET_UJ - 14000 + rnd(28000);
			sqlite3_stmt *ps = q->pulse;

			last = t + 3000 + k * 200;
			sum += uj;
			mn = k == 0 || uj < mn ? uj : mn;
			mx = k == 0 || uj > mx ? uj : mx;
			sqlite3_bind_int64(ps, 1, id);
			sqlite3_bind_text(ps, 2, unit, -1, SQLITE_STATIC);
			sqlite3_bind_int64(ps, 3, last);
			sqlite3_bind_int64(ps, 4, ++*counter);
			sqlite3_bind_int64(ps, 5, uj);
			sqlite3_bind_int64(ps, 6, SET_UJ);
			run(db, ps);
		}
		pulses += np;
		audit(db, q->audit, t, "arm", unit, session, NULL, patches[v->patch[i]]);
		sqlite3_bind_int64(s, 1, id);
		sqlite3_bind_int64(s, 2, session);
		sqlite3_bind_text(s, 3, patient, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 4, patches[v->patch[i]], -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 5, unit, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 6, t);			/* armed_ms */
		sqlite3_bind_int64(s, 7, t / 1000);
		sqlite3_bind_int64(s, 8, (last ? last : t) + 1000);	/* end_ms */
		sqlite3_bind_int64(s, 9, at_arm);
		sqlite3_bind_int64(s, 10, *counter);
		sqlite3_bind_int64(s, 11, np);
		if (np) {
			sqlite3_bind_int64(s, 12, mn);
			sqlite3_bind_int64(s, 13, mx);
			sqlite3_bind_int64(s, 14, last);
			sqlite3_bind_int64(s, 15, t + 3000);
		} else {
			for (int c = 12; c <= 15; c++)
				sqlite3_bind_null(s, c);
		}
		sqlite3_bind_int64(s, 16, sum);
		sqlite3_bind_text(s, 17, outcomes[o < 96 ? 0 : o < 99 ? 1 : 2], -1, SQLITE_STATIC);
		run(db, s);
		snprintf(detail, sizeof(detail), "treatment %lld: %u pulses", (long long)id, np);
		audit(db, q->audit, (last ? last : t) + 1000, "disarm", unit, session,
		      o < 96 ? "footswitch-released" : "interlock-open", detail);
		t = (last ? last : t) + 10 * 60000;
	}
	sqlite3_bind_int64(q->session, 1, session);
	sqlite3_bind_text(q->session, 2, patient, -1, SQLITE_STATIC);
	sqlite3_bind_text(q->session, 3, unit, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q->session, 4, v->start_ms);
	sqlite3_bind_int64(q->session, 5, t);
	run(db, q->session);
	audit(db, q->audit, t, "session", unit, session, "end", NULL);
	return pulses;
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb, (void)flag, (void)ftw;
	return remove(path);
}

/* The schema, the units, and nothing else, by the store itself. */
static void create_schema(const char *dir, int64_t now_ms)
{
	char msg[STORE_MSG_MAX], serial[16];
	struct store *st;
	int err = store_open(&st, dir, msg, sizeof(msg));

	if (err) {
		fprintf(stderr, "gen_records: %s\n", msg);
		exit(1);
	}
	for (int u = 0; u < UNITS && !err; u++) {
		snprintf(serial, sizeof(serial), "SMPL-A%04u", u + 1);
		err = store_unit_seen(st, serial, "SMPL-1064", "1.4.2", now_ms - YEARS_MS);
	}
	if (!err)
		err = store_unit_seen(st, "SMPL-A0001", "SMPL-1064", "1.4.2", now_ms - DAY_MS);
	if (err) {
		fprintf(stderr, "gen_records: %s\n", store_errmsg(st));
		exit(1);
	}
	store_close(st);
}

int main(int argc, char **argv)
{
	char tmp[4096], path[4200];
	struct timespec ts;
	struct stmts q;
	struct visit *v;
	size_t n_visits;
	uint32_t n_patients, counter[UNITS] = { 0 };
	int64_t now_ms, treatment = 0;
	long pulses = 0;
	double t0;
	sqlite3 *db;

	if (argc == 2 && strcmp(argv[1], "--cache-name") == 0) {
		/* Keyed by schema and generator: a new schema gets a new database. */
		printf("clinic-s%d-g%d\n", STORE_SCHEMA_VERSION, GEN_VERSION);
		return 0;
	}
	if (argc != 2 || argv[1][0] == '-') {
		fprintf(stderr, "usage: gen_records STATE_DIR | --cache-name\n");
		return 2;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	now_ms = (int64_t)ts.tv_sec * 1000;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	t0 = (double)ts.tv_sec + ts.tv_nsec / 1e9;
	snprintf(tmp, sizeof(tmp), "%s.tmp", argv[1]);
	nftw(tmp, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
	create_schema(tmp, now_ms);
	v = plan_visits(now_ms, &n_visits, &n_patients);

	snprintf(path, sizeof(path), "%s/%s", tmp, STORE_DB_NAME);
	if (sqlite3_open(path, &db) != SQLITE_OK)
		die_sql(db, "open");
	/* The hash chain's triggers (issue 15.12) call the store's functions. */
	if (store_chain_register(db) != SQLITE_OK)
		die_sql(db, "register the chain's functions");
	exec(db, "PRAGMA journal_mode = DELETE; PRAGMA journal_mode = OFF;"
	     "PRAGMA synchronous = OFF; PRAGMA locking_mode = EXCLUSIVE;"
	     "PRAGMA cache_size = -524288; PRAGMA foreign_keys = OFF; BEGIN");
	q.session = prep(db, "INSERT INTO sessions (id, patient, unit_serial, operator_uid,"
			 " operator_name, start_ms, end_ms, state) VALUES (?1, ?2, ?3, 1000,"
			 " 'tech', ?4, ?5, 'ended')");
	q.treatment = prep(db, "INSERT INTO treatments (id, session_id, patient, patch,"
			   " unit_serial, unit_firmware, operator_uid, operator_name,"
			   " wavelength_nm, fluence_mj_cm2, spot_um, pulse_ps, rate_mhz,"
			   " set_energy_uj, armed_ms, armed_rtc_s, end_ms, end_rtc_s,"
			   " shot_at_arm, shot_at_end, pulse_count, pulses_recorded,"
			   " energy_min_uj, energy_max_uj, energy_sum_uj, last_pulse_ms,"
			   " emitting_ms, outcome)"
			   " VALUES (?1, ?2, ?3, ?4, ?5, '1.4.2', 1000, 'tech', 1064, 4000, 3000,"
			   " 10000, 5000, 282743, ?6, ?7, ?8, ?8 / 1000, ?9, ?10, ?10 - ?9,"
			   " ?11, ?12, ?13, ?16, ?14, ?15, ?17)");
	q.pulse = prep(db, "INSERT INTO pulses (treatment_id, unit_serial, host_ms, shot,"
		       " measured_uj, set_uj) VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
	q.audit = prep(db, "INSERT INTO audit (time_ms, kind, operator_uid, operator_name,"
		       " unit_serial, session_id, reason, detail)"
		       " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
	for (size_t i = 0; i < n_visits; i++)
		pulses += write_visit(db, &q, &v[i], (int64_t)i + 1, &treatment,
				      &counter[v[i].unit]);
	sqlite3_finalize(q.session);
	sqlite3_finalize(q.treatment);
	sqlite3_finalize(q.pulse);
	sqlite3_finalize(q.audit);
	exec(db, "COMMIT; PRAGMA locking_mode = NORMAL; PRAGMA journal_mode = WAL");
	if (sqlite3_close(db) != SQLITE_OK)
		die_sql(db, "close");
	free(v);
	if (rename(tmp, argv[1]) < 0) {
		fprintf(stderr, "gen_records: rename %s: %s\n", tmp, strerror(errno));
		return 1;
	}
	clock_gettime(CLOCK_MONOTONIC, &ts);
	fprintf(stderr, "gen_records: %s: %lld treatments, %ld pulses, %zu sessions, %u patients "
		"in %.0f s\n", argv[1], (long long)treatment, pulses, n_visits, n_patients,
		(double)ts.tv_sec + ts.tv_nsec / 1e9 - t0);
	return 0;
}
