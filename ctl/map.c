/* SPDX-License-Identifier: MIT */
/*
 * smplaserctl map PATIENT: the scalp seen from above (face at the top, the
 * patient's left on the left), each built-in patch coloured by the days until
 * it may be treated again; clinic-defined patches are listed under it.
 * --svg FILE writes the same picture with dates as an SVG file.
 *
 * Both pictures come from one table of patch rectangles in head coordinates
 * (x from -1 left to 1 right, y from 0 at the forehead to 1 at the nape),
 * clipped to the ellipse of the head.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"

struct region {
	const char *patch;	/* the API's patch name */
	const char *label;	/* short label for the picture */
	double x0, x1, y0, y1;	/* rectangle in head coordinates */
};

static const struct region regions[] = {
	{ "frontal-hairline", "front", -1.0, 1.0, 0.00, 0.18 },
	{ "left-temporal", "L temp", -1.0, -0.45, 0.18, 0.40 },
	{ "right-temporal", "R temp", 0.45, 1.0, 0.18, 0.40 },
	{ "mid-scalp", "mid", -0.45, 0.45, 0.18, 0.50 },
	{ "left-parietal", "L par", -1.0, -0.45, 0.40, 0.78 },
	{ "right-parietal", "R par", 0.45, 1.0, 0.40, 0.78 },
	{ "crown", "crown", -0.45, 0.45, 0.50, 0.78 },
	{ "occipital", "occip", -1.0, 1.0, 0.78, 1.00 },
};
#define N_REGIONS (sizeof(regions) / sizeof(regions[0]))

/* The region at head coordinates (x, y), or -1 outside the head. */
static int region_at(double x, double y)
{
	double ey = (y - 0.5) * 2.0;

	if (x * x + ey * ey > 1.0)
		return -1;
	for (size_t i = 0; i < N_REGIONS; i++)
		if (x >= regions[i].x0 && x < regions[i].x1 && y >= regions[i].y0 &&
		    y < regions[i].y1)
			return (int)i;
	return -1;
}

/* Colour classes by days until eligible. */
enum shade { SHADE_READY, SHADE_SOON, SHADE_WAIT, SHADE_NEVER, SHADE_UNKNOWN };
#define SOON_DAYS 7

static enum shade shade_of(json_object *p)
{
	if (!p)
		return SHADE_UNKNOWN;
	if (j_bool(p, "eligible"))
		return SHADE_READY;
	if (j_u64(p, "next_eligible_usec") == 0)
		return SHADE_NEVER;
	return days_until(j_u64(p, "next_eligible_usec")) <= SOON_DAYS ? SHADE_SOON
									: SHADE_WAIT;
}

static const char *shade_sgr[] = { "30;42", "30;43", "97;41", "97;45", "30;47" };
static const char *shade_fill[] = { "#4caf50", "#ffc107", "#e53935", "#8e24aa",
				    "#bdbdbd" };
static const char *shade_text[] = { "eligible now", "eligible within 7 days",
				    "cooling down", "not eligible", "unknown" };

/* ---- gathering ------------------------------------------------------------ */

/* Each patch: ListPatches + CheckPatch + its last treatment from History. */
static int gather(struct ctl *c, const char *patient, json_object **out)
{
	json_object *patches = NULL, *history = NULL;
	int code;

	if ((code = list_patches(c, &patches)))
		return code;
	if ((code = load_history(c, patient, &history))) {
		json_object_put(patches);
		return code;
	}
	for (size_t i = 0; i < json_object_array_length(patches); i++) {
		json_object *p = json_object_array_get_idx(patches, i), *chk = NULL;
		const char *name = j_str(p, "name");
		uint64_t last = 0;

		if ((code = check_patch(c, patient, name, &chk)))
			break;
		json_object_object_add(p, "eligible",
				       json_object_new_boolean(j_bool(chk, "eligible")));
		json_object_object_add(p, "next_eligible_usec",
				       json_object_new_uint64(j_u64(chk, "next_eligible_usec")));
		json_object_object_add(p, "reason",
				       json_object_new_string(j_str(chk, "reason")));
		json_object_object_add(p, "days_until_eligible",
				       json_object_new_int64(j_bool(chk, "eligible") ? 0 :
				       days_until(j_u64(chk, "next_eligible_usec"))));
		for (size_t k = 0; k < json_object_array_length(history); k++) {
			json_object *t = json_object_array_get_idx(history, k);

			if (strcmp(j_str(t, "patch"), name) == 0 &&
			    j_u64(t, "armed_usec") > last)
				last = j_u64(t, "armed_usec");
		}
		json_object_object_add(p, "last_treated_usec", json_object_new_uint64(last));
		json_object_put(chk);
	}
	json_object_put(history);
	if (code) {
		json_object_put(patches);
		return code;
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
	for (size_t i = 0; i < N_REGIONS; i++)
		if (strcmp(regions[i].patch, name) == 0)
			return true;
	return false;
}

static void state_words(json_object *p, char *buf, size_t len)
{
	char date[32];

	if (!p) {
		snprintf(buf, len, "unknown");
	} else if (j_bool(p, "eligible")) {
		snprintf(buf, len, "eligible now");
	} else if (j_u64(p, "next_eligible_usec") == 0) {
		snprintf(buf, len, "not eligible: %s", j_str(p, "reason"));
	} else {
		fmt_date(j_u64(p, "next_eligible_usec"), date, sizeof(date));
		snprintf(buf, len, "in %" PRIu64 " days (%s)",
			 j_u64(p, "days_until_eligible"), date);
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
	for (int r = 0; r < MAP_ROWS; r++) {
		memset(text[r], 0, MAP_COLS + 1);
	}
	for (size_t i = 0; i < N_REGIONS; i++) {
		double sr = 0, sc = 0;
		int n = 0;

		for (int r = 0; r < MAP_ROWS; r++)
			for (int k = 0; k < MAP_COLS; k++)
				if (cell_region(r, k) == (int)i) {
					sr += r;
					sc += k;
					n++;
				}
		if (!n)
			continue;
		json_object *p = find_patch(map, regions[i].patch);
		char days[16];

		if (!p)
			snprintf(days, sizeof(days), "?");
		else if (j_bool(p, "eligible"))
			snprintf(days, sizeof(days), "ok");
		else if (j_u64(p, "next_eligible_usec") == 0)
			snprintf(days, sizeof(days), "never");
		else
			snprintf(days, sizeof(days), "%" PRIu64 "d",
				 j_u64(p, "days_until_eligible"));
		const char *lines[2] = { regions[i].label, days };
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
	char words[160];

	label_cells(text, map);
	printf("Patient %s%s%s: days until each patch may be treated again\n\n",
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
				       shade_sgr[shade_of(find_patch(map, regions[reg].patch))],
				       ch);
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
			printf("\033[%sm  \033[0m ", shade_sgr[shade_of(p)]);
		printf("%-18s %-34s last treated %s%s\n", j_str(p, "name"), words, last,
		       is_drawn(j_str(p, "name")) ? "" : " (clinic patch, not drawn)");
	}
	if (!c->color)
		printf("\n(ok: eligible now; Nd: days until eligible)\n");
}

/* ---- SVG ------------------------------------------------------------------ */

#define SVG_CX 210.0
#define SVG_TOP 70.0
#define SVG_RX 160.0
#define SVG_LEN 400.0

static double svg_x(double x) { return SVG_CX + x * SVG_RX; }
static double svg_y(double y) { return SVG_TOP + y * SVG_LEN; }

/* Text for XML character data and attributes. */
static void xml_text(FILE *f, const char *s)
{
	for (; *s; s++) {
		switch (*s) {
		case '<': fputs("&lt;", f); break;
		case '>': fputs("&gt;", f); break;
		case '&': fputs("&amp;", f); break;
		case '"': fputs("&quot;", f); break;
		default:
			if ((unsigned char)*s >= 0x20 || *s == '\t')
				fputc(*s, f);
		}
	}
}

static void svg_region(FILE *f, size_t i, json_object *p)
{
	const struct region *g = &regions[i];
	char date[32];

	fprintf(f, "  <g id=\"patch-%s\">\n", g->patch);
	fprintf(f, "    <rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
		"fill=\"%s\" stroke=\"#ffffff\" stroke-width=\"3\" "
		"clip-path=\"url(#head)\"><title>", svg_x(g->x0), svg_y(g->y0),
		svg_x(g->x1) - svg_x(g->x0), svg_y(g->y1) - svg_y(g->y0),
		shade_fill[shade_of(p)]);
	xml_text(f, g->patch);
	fprintf(f, "</title></rect>\n");

	/* Label at the middle of the visible part of the rectangle. */
	double lx = (fmax(g->x0, -0.8) + fmin(g->x1, 0.8)) / 2.0;
	double ly = (g->y0 + g->y1) / 2.0;

	if (p && j_bool(p, "eligible"))
		snprintf(date, sizeof(date), "eligible");
	else if (p && j_u64(p, "next_eligible_usec"))
		fmt_date(j_u64(p, "next_eligible_usec"), date, sizeof(date));
	else
		snprintf(date, sizeof(date), p ? "not eligible" : "unknown");
	fprintf(f, "    <text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" "
		"font-size=\"13\" font-weight=\"bold\">%s</text>\n",
		svg_x(lx), svg_y(ly) - 4, g->label);
	fprintf(f, "    <text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" "
		"font-size=\"11\">%s</text>\n  </g>\n", svg_x(lx), svg_y(ly) + 10, date);
}

static int write_svg(struct ctl *c, json_object *map, const char *file)
{
	FILE *f = strcmp(file, "-") == 0 ? stdout : fopen(file, "w");
	json_object *list = NULL;
	char today[32], words[160], last[32];
	double y;

	if (!f)
		return ctl_error(c, CTL_EXIT_FAILED, NULL, "cannot write %s: %s", file,
				 strerror(errno));
	fmt_date(now_usec(), today, sizeof(today));
	fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"820\" height=\"560\" "
		"viewBox=\"0 0 820 560\" font-family=\"sans-serif\">\n"
		"  <defs><clipPath id=\"head\"><ellipse cx=\"%.1f\" cy=\"%.1f\" "
		"rx=\"%.1f\" ry=\"%.1f\"/></clipPath></defs>\n"
		"  <rect width=\"820\" height=\"560\" fill=\"#ffffff\"/>\n",
		SVG_CX, svg_y(0.5), SVG_RX, SVG_LEN / 2);
	fprintf(f, "  <text x=\"20\" y=\"30\" font-size=\"18\" font-weight=\"bold\">"
		"Patient ");
	xml_text(f, j_str(map, "patient"));
	fprintf(f, ": scalp patches on %s</text>\n", today);
	/* Nose and ears, so the orientation is plain. */
	fprintf(f, "  <path d=\"M %.1f %.1f L %.1f %.1f L %.1f %.1f Z\" fill=\"#d7ccc8\"/>\n",
		SVG_CX - 18, svg_y(0.0) + 6, SVG_CX, svg_y(0.0) - 22, SVG_CX + 18,
		svg_y(0.0) + 6);
	fprintf(f, "  <ellipse cx=\"%.1f\" cy=\"%.1f\" rx=\"12\" ry=\"34\" fill=\"#d7ccc8\"/>\n"
		"  <ellipse cx=\"%.1f\" cy=\"%.1f\" rx=\"12\" ry=\"34\" fill=\"#d7ccc8\"/>\n",
		svg_x(-1.0) - 4, svg_y(0.42), svg_x(1.0) + 4, svg_y(0.42));
	fprintf(f, "  <ellipse cx=\"%.1f\" cy=\"%.1f\" rx=\"%.1f\" ry=\"%.1f\" "
		"fill=\"#eeeeee\"/>\n", SVG_CX, svg_y(0.5), SVG_RX, SVG_LEN / 2);
	for (size_t i = 0; i < N_REGIONS; i++)
		svg_region(f, i, find_patch(map, regions[i].patch));
	fprintf(f, "  <ellipse cx=\"%.1f\" cy=\"%.1f\" rx=\"%.1f\" ry=\"%.1f\" "
		"fill=\"none\" stroke=\"#555555\" stroke-width=\"2\"/>\n",
		SVG_CX, svg_y(0.5), SVG_RX, SVG_LEN / 2);
	fprintf(f, "  <text x=\"%.1f\" y=\"%.1f\" font-size=\"12\">L</text>\n"
		"  <text x=\"%.1f\" y=\"%.1f\" font-size=\"12\">R</text>\n"
		"  <text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"12\">"
		"back (nape)</text>\n", svg_x(-1.0) - 30, svg_y(0.5), svg_x(1.0) + 22,
		svg_y(0.5), SVG_CX, svg_y(1.0) + 22);
	fprintf(f, "  <text x=\"%.1f\" y=\"%.1f\" font-size=\"12\">front (face)</text>\n",
		SVG_CX + 26, svg_y(0.0) - 8);

	/* Legend: every patch, clinic ones too. */
	y = 70;
	fprintf(f, "  <g id=\"legend\" font-size=\"12\">\n");
	for (int s = SHADE_READY; s <= SHADE_UNKNOWN; s++, y += 18)
		fprintf(f, "    <rect x=\"430\" y=\"%.0f\" width=\"14\" height=\"14\" "
			"fill=\"%s\"/><text x=\"450\" y=\"%.0f\">%s</text>\n",
			y - 11, shade_fill[s], y, shade_text[s]);
	y += 16;
	json_object_object_get_ex(map, "patches", &list);
	for (size_t i = 0; i < json_object_array_length(list); i++, y += 30) {
		json_object *p = json_object_array_get_idx(list, i);

		state_words(p, words, sizeof(words));
		fmt_date(j_u64(p, "last_treated_usec"), last, sizeof(last));
		fprintf(f, "    <rect x=\"430\" y=\"%.0f\" width=\"14\" height=\"14\" "
			"fill=\"%s\"/><text x=\"450\" y=\"%.0f\" font-weight=\"bold\">",
			y - 11, shade_fill[shade_of(p)], y);
		xml_text(f, j_str(p, "name"));
		fprintf(f, "</text><text x=\"600\" y=\"%.0f\">", y);
		xml_text(f, words);
		fprintf(f, "</text><text x=\"450\" y=\"%.0f\" fill=\"#666666\">last "
			"treated %s", y + 14, last);
		fprintf(f, "%s</text>\n", is_drawn(j_str(p, "name")) ? "" :
			   " (clinic patch)");
	}
	fprintf(f, "  </g>\n</svg>\n");
	if (f != stdout && fclose(f) != 0)
		return ctl_error(c, CTL_EXIT_FAILED, NULL, "cannot write %s: %s", file,
				 strerror(errno));
	return CTL_EXIT_DONE;
}

int verb_map(struct ctl *c, int argc, char **argv)
{
	json_object *map = NULL;
	int code;

	if (argc != 1)
		return ctl_error(c, CTL_EXIT_USAGE, NULL,
				 "usage: map PATIENT [--svg FILE] (see '%s --help')",
				 c->prog);
	if ((code = gather(c, argv[0], &map)))
		return code;
	if (c->svg)
		code = write_svg(c, map, c->svg);
	if (!code && c->json)
		out_json(map, false);
	else if (!code && !c->svg)
		print_terminal(c, map);
	else if (!code && strcmp(c->svg, "-") != 0)
		printf("Wrote %s.\n", c->svg);
	json_object_put(map);
	return code;
}
