/* SPDX-License-Identifier: MIT */
/*
 * smplaserctl map PATIENT: the scalp seen from above (face at the top, the
 * patient's left on the left), each built-in patch coloured by its status
 * in the patient's course (Manager.Course: untreated, cooling-down,
 * awaiting-follow-up, eligible, clear, on-hold) and labelled with the days
 * until it may be treated again; clinic-defined patches are listed under it.
 * --svg FILE or -o FILE.pdf|.png|.svg draws the same picture with cairo
 * (draw.c, the code that draws the patient's report).
 *
 * The terminal picture and draw.c use one table of patch rectangles in head
 * coordinates (map_regions), clipped to the ellipse of the head.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"

const struct map_region map_regions[] = {
	{ "frontal-hairline", "front", -1.0, 1.0, 0.00, 0.18 },
	{ "left-temporal", "L temp", -1.0, -0.45, 0.18, 0.40 },
	{ "right-temporal", "R temp", 0.45, 1.0, 0.18, 0.40 },
	{ "mid-scalp", "mid", -0.45, 0.45, 0.18, 0.50 },
	{ "left-parietal", "L par", -1.0, -0.45, 0.40, 0.78 },
	{ "right-parietal", "R par", 0.45, 1.0, 0.40, 0.78 },
	{ "crown", "crown", -0.45, 0.45, 0.50, 0.78 },
	{ "occipital", "occip", -1.0, 1.0, 0.78, 1.00 },
};
const size_t n_map_regions = sizeof(map_regions) / sizeof(map_regions[0]);

/* The region at head coordinates (x, y), or -1 outside the head. */
static int region_at(double x, double y)
{
	double ey = (y - 0.5) * 2.0;

	if (x * x + ey * ey > 1.0)
		return -1;
	for (size_t i = 0; i < n_map_regions; i++)
		if (x >= map_regions[i].x0 && x < map_regions[i].x1 && y >= map_regions[i].y0 &&
		    y < map_regions[i].y1)
			return (int)i;
	return -1;
}

/* ---- gathering ------------------------------------------------------------ */

/*
 * Each patch of the course, with the map's keys: name, description, status,
 * eligible, next_eligible_usec, reason, days_until_eligible, last_treated_usec.
 */
static int gather(struct ctl *c, const char *patient, json_object **out, json_object **course)
{
	json_object *patches;
	int code;

	if ((code = load_course(c, patient, course)))
		return code;
	patches = json_object_new_array();
	for (size_t i = 0; i < json_object_array_length(*course); i++) {
		json_object *p = json_object_array_get_idx(*course, i), *m = json_object_new_object();
		bool eligible = j_bool(p, "eligible");
		uint64_t next = j_u64(p, "next_eligible_usec");

		json_object_object_add(m, "name", json_object_new_string(j_str(p, "patch")));
		json_object_object_add(m, "description", json_object_new_string(j_str(p, "label")));
		json_object_object_add(m, "status", json_object_new_string(j_str(p, "status")));
		json_object_object_add(m, "eligible", json_object_new_boolean(eligible));
		json_object_object_add(m, "next_eligible_usec", json_object_new_uint64(next));
		json_object_object_add(m, "reason", json_object_new_string(j_str(p, "reason")));
		json_object_object_add(m, "days_until_eligible",
				       json_object_new_int64(eligible || !next ? 0 : days_until(next)));
		json_object_object_add(m, "last_treated_usec",
				       json_object_new_uint64(j_u64(p, "last_treated_usec")));
		json_object_array_add(patches, m);
	}
	*out = json_object_new_object();
	json_object_object_add(*out, "patient", json_object_new_string(patient));
	json_object_object_add(*out, "patches", patches);
	return CTL_EXIT_DONE;
}

static json_object *find_patch(json_object *map, const char *name)
{
	json_object *list = NULL;

	json_object_object_get_ex(map, "patches", &list);
	for (size_t i = 0; i < json_object_array_length(list); i++)
		if (strcmp(j_str(json_object_array_get_idx(list, i), "name"), name) == 0)
			return json_object_array_get_idx(list, i);
	return NULL;
}

static bool is_drawn(const char *name)
{
	for (size_t i = 0; i < n_map_regions; i++)
		if (strcmp(map_regions[i].patch, name) == 0)
			return true;
	return false;
}

static const struct status_style *style_of(json_object *p)
{
	return status_style(p ? j_str(p, "status") : "untreated");
}

/* The label under a patch's name: "ok", "42d", "f-up", "clear", "HOLD", "new". */
static void short_label(json_object *p, char *buf, size_t len)
{
	const struct status_style *st = style_of(p);

	if (!p)
		snprintf(buf, len, "?");
	else if (!st->label)
		snprintf(buf, len, "%" PRIu64 "d", j_u64(p, "days_until_eligible"));
	else
		snprintf(buf, len, "%s", st->label);
}

static void state_words(json_object *p, char *buf, size_t len)
{
	char date[32];
	const char *status = p ? j_str(p, "status") : "";

	if (!p) {
		snprintf(buf, len, "unknown");
	} else if (j_bool(p, "eligible")) {
		snprintf(buf, len, "%s", strcmp(status, "untreated") == 0 ? "never treated: eligible"
									: "eligible now");
	} else if (strcmp(status, "cooling-down") == 0) {
		fmt_date(j_u64(p, "next_eligible_usec"), date, sizeof(date));
		snprintf(buf, len, "in %" PRIu64 " days (%s)", j_u64(p, "days_until_eligible"), date);
	} else {
		snprintf(buf, len, "%s: %s", style_of(p)->words, j_str(p, "reason"));
	}
}

/* ---- terminal ------------------------------------------------------------- */

#define MAP_ROWS 20
#define MAP_HALF 18	/* columns each side of the middle */
#define MAP_COLS (2 * MAP_HALF)

static int cell_region(int row, int col)
{
	if (row < 0 || row >= MAP_ROWS || col < 0 || col >= MAP_COLS)
		return -1;
	return region_at((col + 0.5 - MAP_HALF) / MAP_HALF, (row + 0.5) / MAP_ROWS);
}

/*
 * Where a label of @len characters goes on @row: as near @want as it fits
 * inside region @reg, clear of the head's outline; -1 if it does not fit.
 */
static int label_start(int row, int want, int len, int reg)
{
	for (int d = 0; d < MAP_COLS; d++) {
		for (int sign = -1; sign <= 1; sign += 2) {
			int start = want + sign * d;
			bool fits = cell_region(row, start - 1) >= 0 &&
				    cell_region(row, start + len) >= 0;

			for (int k = 0; fits && k < len; k++)
				fits = cell_region(row, start + k) == reg;
			if (fits)
				return start;
		}
	}
	return -1;
}

/* Where each region's label goes: the middle of its cells. */
static void label_cells(char text[MAP_ROWS][MAP_COLS + 1], json_object *map)
{
	for (int r = 0; r < MAP_ROWS; r++)
		memset(text[r], 0, MAP_COLS + 1);
	for (size_t i = 0; i < n_map_regions; i++) {
		double sr = 0, sc = 0;
		int n = 0;
		char days[16];

		for (int r = 0; r < MAP_ROWS; r++)
			for (int k = 0; k < MAP_COLS; k++)
				if (cell_region(r, k) == (int)i) {
					sr += r;
					sc += k;
					n++;
				}
		if (!n)
			continue;
		short_label(find_patch(map, map_regions[i].patch), days, sizeof(days));
		const char *lines[2] = { map_regions[i].label, days };
		int row = (int)(sr / n + 0.5) - 1;

		for (int l = 0; l < 2; l++) {
			int len = (int)strlen(lines[l]);
			int start = label_start(row + l, (int)(sc / n + 0.5) - len / 2, len,
						(int)i);

			for (int k = 0; start >= 0 && k < len; k++)
				text[row + l][start + k] = lines[l][k];
		}
	}
}

static void print_terminal(struct ctl *c, json_object *map)
{
	char text[MAP_ROWS][MAP_COLS + 1];
	json_object *list = NULL;
	char words[320];

	label_cells(text, map);
	printf("Patient %s%s%s: each patch's status and the days until it may be treated again\n\n",
	       col(c, SGR_BOLD), j_str(map, "patient"), col(c, SGR_RESET));
	printf("%*s\n", MAP_HALF + 8, "front (face)");
	for (int r = 0; r < MAP_ROWS; r++) {
		printf(r == MAP_ROWS / 2 ? "  L " : "    ");
		for (int k = 0; k < MAP_COLS; k++) {
			int reg = cell_region(r, k);
			char ch = ' ';

			if (reg < 0) {
				putchar(' ');
				continue;
			}
			if (text[r][k])
				ch = text[r][k];
			else if (cell_region(r, k - 1) < 0)
				ch = '(';
			else if (cell_region(r, k + 1) < 0)
				ch = ')';
			else if (cell_region(r - 1, k) < 0 || cell_region(r + 1, k) < 0)
				ch = '-';
			else if (cell_region(r, k + 1) != reg)
				ch = '|';
			else if (cell_region(r + 1, k) != reg)
				ch = '_';
			if (c->color)
				printf("\033[%sm%c\033[0m",
				       style_of(find_patch(map, map_regions[reg].patch))->sgr, ch);
			else
				putchar(ch);
		}
		printf(r == MAP_ROWS / 2 ? " R\n" : "\n");
	}
	printf("%*s\n\n", MAP_HALF + 6, "back (nape)");
	json_object_object_get_ex(map, "patches", &list);
	for (size_t i = 0; i < json_object_array_length(list); i++) {
		json_object *p = json_object_array_get_idx(list, i);
		char last[32];

		state_words(p, words, sizeof(words));
		fmt_date(j_u64(p, "last_treated_usec"), last, sizeof(last));
		if (c->color)
			printf("\033[%sm  \033[0m ", style_of(p)->sgr);
		printf("%-18s %-18s %s; last treated %s%s\n", j_str(p, "name"), j_str(p, "status"),
		       words, last, is_drawn(j_str(p, "name")) ? "" : " (clinic patch, not drawn)");
	}
	if (!c->color)
		printf("\n(ok: may be treated; Nd: days until it may; f-up: waits for a follow-up;"
		       " clear; HOLD: on hold until a review; new: never treated)\n");
}

int verb_map(struct ctl *c, int argc, char **argv)
{
	json_object *map = NULL, *course = NULL, *info = NULL;
	const char *file = c->output ? c->output : c->svg;
	enum draw_format f;
	int code;

	if (argc != 1)
		return ctl_error(c, CTL_EXIT_USAGE, NULL,
				 "usage: map PATIENT [--svg FILE | -o FILE.pdf|.png|.svg] "
				 "(see '%s --help')", c->prog);
	if (c->svg && c->output)
		return ctl_error(c, CTL_EXIT_USAGE, NULL, "map: --svg and -o contradict each other");
	if (c->svg && strcmp(c->svg, "-") != 0 && (draw_format_of(c->svg, &f) < 0 || f != DRAW_SVG))
		return ctl_error(c, CTL_EXIT_USAGE, NULL, "map --svg FILE: FILE must end in .svg");
	if ((code = gather(c, argv[0], &map, &course)))
		return code;
	if (file)
		code = draw_file(c, argv[0], NULL, 0, course, false, file, &info);
	if (!code && c->json) {
		if (info)
			json_object_object_add(map, "drawing", json_object_get(info));
		out_json(map, false);
	} else if (!code && !file) {
		print_terminal(c, map);
	} else if (!code && strcmp(file, "-") != 0) {
		printf("Wrote %s.\n", file);
	}
	json_object_put(info);
	json_object_put(map);
	json_object_put(course);
	return code;
}
