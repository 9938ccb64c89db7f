/* SPDX-License-Identifier: MIT */
/* smplaserctl: output helpers (JSON, colour, times, parameters). */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "ctl.h"

void out_json(json_object *obj, bool compact)
{
	int flags = compact ? JSON_C_TO_STRING_PLAIN
			    : JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED;

	flags |= JSON_C_TO_STRING_NOSLASHESCAPE;
	puts(json_object_to_json_string_ext(obj, flags));
	fflush(stdout);
}

void out_json_field(const char *key, json_object *value)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, key, value);
	out_json(o, false);
	json_object_put(o);
}

const char *col(const struct ctl *c, const char *sgr)
{
	static char buf[8][16];
	static unsigned int next;
	char *b;

	if (!c->color)
		return "";
	b = buf[next++ % 8];
	snprintf(b, sizeof(buf[0]), "\033[%sm", sgr);
	return b;
}

const char *j_str(json_object *o, const char *key)
{
	json_object *v;

	if (!o || !json_object_object_get_ex(o, key, &v) || !v)
		return "";
	return json_object_get_string(v);
}

uint64_t j_u64(json_object *o, const char *key)
{
	json_object *v;

	if (!o || !json_object_object_get_ex(o, key, &v) || !v)
		return 0;
	return json_object_get_uint64(v);
}

int64_t j_i64(json_object *o, const char *key)
{
	json_object *v;

	if (!o || !json_object_object_get_ex(o, key, &v) || !v)
		return 0;
	return json_object_get_int64(v);
}

bool j_bool(json_object *o, const char *key)
{
	json_object *v;

	if (!o || !json_object_object_get_ex(o, key, &v) || !v)
		return false;
	return json_object_get_boolean(v);
}

uint64_t now_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000ULL + (uint64_t)ts.tv_nsec / 1000;
}

static void fmt_utc(uint64_t usec, const char *format, char *buf, size_t len)
{
	time_t t = (time_t)(usec / 1000000ULL);
	struct tm tm;

	if (usec == 0 || !gmtime_r(&t, &tm)) {
		snprintf(buf, len, "never");
		return;
	}
	strftime(buf, len, format, &tm);
}

void fmt_time(uint64_t usec, char *buf, size_t len)
{
	fmt_utc(usec, "%Y-%m-%d %H:%M UTC", buf, len);
}

void fmt_date(uint64_t usec, char *buf, size_t len)
{
	fmt_utc(usec, "%Y-%m-%d", buf, len);
}

unsigned int days_until(uint64_t usec)
{
	uint64_t now = now_usec();
	const uint64_t day = 86400ULL * 1000000ULL;

	if (usec <= now)
		return 0;
	return (unsigned int)((usec - now + day - 1) / day);
}

const char *state_color(const struct ctl *c, const char *state)
{
	if (strcmp(state, "standby") == 0 || strcmp(state, "open") == 0)
		return col(c, SGR_GREEN);
	if (strcmp(state, "arming") == 0 || strcmp(state, "self-test") == 0 ||
	    strcmp(state, "armed") == 0)
		return col(c, SGR_YELLOW);
	if (strcmp(state, "ready") == 0 || strcmp(state, "emitting") == 0 ||
	    strcmp(state, "fault") == 0 || strcmp(state, "disconnected") == 0)
		return col(c, SGR_BOLD ";" SGR_RED);
	return "";
}

void fmt_parameters(json_object *p, char *buf, size_t len)
{
	uint64_t pulse_ps = j_u64(p, "pulse_ps");
	char pulse[32];

	if (j_u64(p, "wavelength_nm") == 0 && j_u64(p, "fluence_mj_cm2") == 0) {
		snprintf(buf, len, "not set (smplaserctl params set KEY=VALUE...)");
		return;
	}
	if (pulse_ps >= 1000)
		snprintf(pulse, sizeof(pulse), "%.1f ns", (double)pulse_ps / 1000.0);
	else
		snprintf(pulse, sizeof(pulse), "%llu ps", (unsigned long long)pulse_ps);
	snprintf(buf, len, "%llu nm, %.2f J/cm2, spot %.1f mm, %s, %.1f Hz "
		 "(energy %.1f mJ)",
		 (unsigned long long)j_u64(p, "wavelength_nm"),
		 (double)j_u64(p, "fluence_mj_cm2") / 1000.0,
		 (double)j_u64(p, "spot_um") / 1000.0, pulse,
		 (double)j_u64(p, "rate_mhz") / 1000.0,
		 (double)j_u64(p, "energy_uj") / 1000.0);
}
