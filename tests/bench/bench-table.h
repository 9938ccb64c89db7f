/* SPDX-License-Identifier: MIT */
/*
 * The one table "make bench" prints (tests/bench/run-bench prints its header):
 * each figure's median and p99, the floor measured beside it in the same run,
 * the ratios (median/floor, p99/floor) and the target, with "ok" or "OVER".
 */
#ifndef SMPLASER_BENCH_TABLE_H
#define SMPLASER_BENCH_TABLE_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define BENCH_ROW_FMT	"%-46s %10s %10s %10s %12s %-22s %s\n"

static inline double bench_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static inline int bench_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Sorts @v; the q-quantile (nearest rank). */
static inline double bench_quantile(double *v, size_t n, double q)
{
	size_t i;

	if (n == 0)
		return NAN;
	qsort(v, n, sizeof(*v), bench_cmp_double);
	i = (size_t)ceil(q * (double)n);
	return v[i ? i - 1 : 0];
}

/* "123 us", "4.5 ms", "1.23 s" */
static inline const char *bench_fmt_us(char *buf, size_t len, double us)
{
	if (isnan(us))
		snprintf(buf, len, "-");
	else if (us < 1000)
		snprintf(buf, len, "%.0f us", us);
	else if (us < 1e6)
		snprintf(buf, len, "%.*f ms", us < 1e4 ? 2 : 1, us / 1e3);
	else
		snprintf(buf, len, "%.2f s", us / 1e6);
	return buf;
}

/*
 * A row of times in microseconds.  @floor_us NAN: no floor (ratio "-").
 * @limit: the median must be at most limit (in us, or times the floor when
 * @limit_is_ratio), the p99 at most @p99_limit likewise (NAN: no p99 target).
 */
static inline void bench_row_us(const char *figure, double med, double p99, double floor_us,
				double limit, double p99_limit, int limit_is_ratio,
				const char *target)
{
	char m[24], p[24], f[24], r[32];
	int ok = 1;

	if (!isnan(floor_us) && floor_us > 0)
		snprintf(r, sizeof(r), "%.2fx/%.2fx", med / floor_us, p99 / floor_us);
	else
		snprintf(r, sizeof(r), "-");
	if (!isnan(limit))
		ok = limit_is_ratio ? med <= limit * floor_us : med <= limit;
	if (!isnan(p99_limit))
		ok = ok && (limit_is_ratio ? p99 <= p99_limit * floor_us : p99 <= p99_limit);
	printf(BENCH_ROW_FMT, figure, bench_fmt_us(m, sizeof(m), med),
	       bench_fmt_us(p, sizeof(p), p99), bench_fmt_us(f, sizeof(f), floor_us), r,
	       target, isnan(limit) ? "" : ok ? "ok" : "OVER");
	fflush(stdout);
}

/* A row of any other unit (text already formatted). */
static inline void bench_row_text(const char *figure, const char *med, const char *p99,
				  const char *floor_s, const char *ratio, const char *target,
				  const char *verdict)
{
	printf(BENCH_ROW_FMT, figure, med, p99, floor_s, ratio, target, verdict);
	fflush(stdout);
}

#endif /* SMPLASER_BENCH_TABLE_H */
