/* SPDX-License-Identifier: MIT */
/*
 * The scalp map and the patient's report, drawn with cairo (issue 16): one
 * drawing code for PDF, PNG and SVG, chosen by the file's extension.
 *
 * Units are PostScript points on an A4-wide page (595 pt).  The report is
 * laid out top to bottom; in a PDF it breaks into A4 pages, a PNG or an SVG
 * is one page as tall as the report (measured first on a recording
 * surface).  A PNG is drawn at 2 pixels a point.  Text is cairo's toy text
 * API on DejaVu Sans (fonts-dejavu-core): a PDF keeps it as text, so
 * pdftotext reads it back.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cairo.h>
#include <cairo-pdf.h>
#include <cairo-svg.h>
#include <fontconfig/fontconfig.h>

#include "ctl.h"

#define PAGE_W		595.0
#define PAGE_H		842.0		/* A4 */
#define MARGIN		40.0
#define PNG_SCALE	2.0
#define FONT		"DejaVu Sans"

/* The head on the page: centre x, top, half-width, length (head coordinates scaled). */
struct head {
	double cx, top, rx, len;
};

static double hx(const struct head *h, double x) { return h->cx + x * h->rx; }
static double hy(const struct head *h, double y) { return h->top + y * h->len; }

/* What is being drawn, and where the pen is. */
struct page {
	cairo_t *cr;
	double y;
	double page_h;			/* 0: one page as tall as it takes */
	int pages;
	json_object *course;
	json_object *samples;		/* [{patch, status, colour, sample}] */
	double unit_scale;		/* file units per point */
};

int draw_format_of(const char *file, enum draw_format *out)
{
	const char *dot = file ? strrchr(file, '.') : NULL;

	if (!dot)
		return -EINVAL;
	if (strcasecmp(dot, ".pdf") == 0)
		*out = DRAW_PDF;
	else if (strcasecmp(dot, ".png") == 0)
		*out = DRAW_PNG;
	else if (strcasecmp(dot, ".svg") == 0)
		*out = DRAW_SVG;
	else
		return -EINVAL;
	return 0;
}

static void rgb(cairo_t *cr, unsigned int c)
{
	cairo_set_source_rgb(cr, ((c >> 16) & 0xff) / 255.0, ((c >> 8) & 0xff) / 255.0,
			     (c & 0xff) / 255.0);
}

static void font(cairo_t *cr, double size, bool bold)
{
	cairo_select_font_face(cr, FONT, CAIRO_FONT_SLANT_NORMAL,
			       bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
	cairo_set_font_size(cr, size);
}

static double text_width(cairo_t *cr, const char *s)
{
	cairo_text_extents_t e;

	cairo_text_extents(cr, s, &e);
	return e.x_advance;
}

static void text_at(cairo_t *cr, double x, double y, const char *s)
{
	cairo_move_to(cr, x, y);
	cairo_show_text(cr, s);
}

static void text_centred(cairo_t *cr, double x, double y, const char *s)
{
	text_at(cr, x - text_width(cr, s) / 2.0, y, s);
}

static json_object *patch_of(json_object *course, const char *name)
{
	for (size_t i = 0; course && i < json_object_array_length(course); i++)
		if (strcmp(j_str(json_object_array_get_idx(course, i), "patch"), name) == 0)
			return json_object_array_get_idx(course, i);
	return NULL;
}

static const struct status_style *style_of(json_object *p)
{
	return status_style(p ? j_str(p, "status") : "untreated");
}

/* ---- page breaks ---------------------------------------------------------- */

/* Room for @h more points, or a new page (PDF). */
static void need(struct page *pg, double h)
{
	if (pg->page_h <= 0 || pg->y + h <= pg->page_h - MARGIN)
		return;
	cairo_show_page(pg->cr);
	pg->pages++;
	pg->y = MARGIN;
}

/* @s word-wrapped into @width from @x, one line every @lh points. */
static void paragraph(struct page *pg, double x, double width, double lh, const char *s)
{
	cairo_t *cr = pg->cr;
	char line[768] = "", word[256];
	const char *p = s;

	while (*p) {
		size_t n = strcspn(p, " \n");
		bool newline = p[n] == '\n';
		char trial[768];

		snprintf(word, sizeof(word), "%.*s", (int)(n < sizeof(word) ? n : sizeof(word) - 1), p);
		snprintf(trial, sizeof(trial), "%s%s%s", line, line[0] ? " " : "", word);
		if (line[0] && text_width(cr, trial) > width) {
			need(pg, lh);
			text_at(cr, x, pg->y, line);
			pg->y += lh;
			snprintf(line, sizeof(line), "%s", word);
		} else {
			snprintf(line, sizeof(line), "%s", trial);
		}
		p += n;
		if (*p)
			p++;
		if (newline && line[0]) {
			need(pg, lh);
			text_at(cr, x, pg->y, line);
			pg->y += lh;
			line[0] = '\0';
		}
	}
	if (line[0]) {
		need(pg, lh);
		text_at(cr, x, pg->y, line);
		pg->y += lh;
	}
}

/* ---- the map -------------------------------------------------------------- */

static bool in_head(const struct head *h, double px, double py, double margin)
{
	double dx = (px - h->cx) / (h->rx - margin);
	double dy = (py - hy(h, 0.5)) / (h->len / 2.0 - margin);

	return dx * dx + dy * dy <= 1.0;
}

/* The patch's label lines: its short name, then a date or its status. */
static void label_lines(json_object *p, const struct map_region *g, char l2[32])
{
	const char *status = p ? j_str(p, "status") : "";

	(void)g;
	if (!p)
		snprintf(l2, 32, "unknown");
	else if (strcmp(status, "cooling-down") == 0)
		fmt_date(j_u64(p, "next_eligible_usec"), l2, 32);
	else if (strcmp(status, "eligible") == 0)
		snprintf(l2, 32, "eligible");
	else if (strcmp(status, "awaiting-follow-up") == 0)
		snprintf(l2, 32, "follow-up");
	else if (strcmp(status, "on-hold") == 0)
		snprintf(l2, 32, "ON HOLD");
	else
		snprintf(l2, 32, "%s", status);
}

/* Where a label goes in region @g: the middle of the part inside the head. */
static void label_centre(const struct head *h, const struct map_region *g, double *x, double *y)
{
	double lx = (fmax(g->x0, -0.8) + fmin(g->x1, 0.8)) / 2.0;
	double ly = (g->y0 + g->y1) / 2.0;

	if (g->y1 <= 0.2)
		ly = g->y0 + 0.6 * (g->y1 - g->y0);	/* the forehead: below the narrow top */
	if (g->y0 >= 0.75)
		ly = g->y0 + 0.45 * (g->y1 - g->y0);
	*x = hx(h, lx);
	*y = hy(h, ly);
}

/*
 * A point inside region @g, inside the head, clear of its borders and its
 * label (box @lb: x0 y0 x1 y1): where its colour is sure to show.
 */
static void sample_point(const struct head *h, const struct map_region *g, const double lb[4],
			 double *sx, double *sy)
{
	double best = -1, x0 = hx(h, g->x0), x1 = hx(h, g->x1), y0 = hy(h, g->y0), y1 = hy(h, g->y1);

	*sx = (x0 + x1) / 2;
	*sy = (y0 + y1) / 2;
	for (double py = y0 + 1; py < y1; py += 1.0) {
		for (double px = x0 + 1; px < x1; px += 1.0) {
			double clear = fmin(fmin(px - x0, x1 - px), fmin(py - y0, y1 - py));

			if (clear < 7 || !in_head(h, px, py, 7))
				continue;
			if (px > lb[0] - 5 && px < lb[2] + 5 && py > lb[1] - 5 && py < lb[3] + 5)
				continue;
			if (clear > best) {
				best = clear;
				*sx = px;
				*sy = py;
			}
		}
	}
}

static void head_outline(cairo_t *cr, const struct head *h)
{
	cairo_save(cr);
	cairo_translate(cr, h->cx, hy(h, 0.5));
	cairo_scale(cr, h->rx, h->len / 2.0);
	cairo_arc(cr, 0, 0, 1, 0, 2 * M_PI);
	cairo_restore(cr);
}

static void add_sample(struct page *pg, const char *patch, const struct status_style *st,
		       double x, double y)
{
	json_object *o = json_object_new_object(), *xy = json_object_new_array();
	char colour[8];

	snprintf(colour, sizeof(colour), "#%06x", st->rgb);
	json_object_array_add(xy, json_object_new_double(round(x * pg->unit_scale)));
	json_object_array_add(xy, json_object_new_double(round(y * pg->unit_scale)));
	json_object_object_add(o, "patch", json_object_new_string(patch));
	json_object_object_add(o, "status", json_object_new_string(st->status));
	json_object_object_add(o, "colour", json_object_new_string(colour));
	json_object_object_add(o, "sample", xy);
	json_object_array_add(pg->samples, o);
}

/* The head at @h, each patch coloured by its status, labelled. */
static void draw_head(struct page *pg, const struct head *h)
{
	cairo_t *cr = pg->cr;

	/* Nose and ears, so the orientation is plain. */
	rgb(cr, 0xd7ccc8);
	cairo_move_to(cr, h->cx - 14, hy(h, 0.0) + 6);
	cairo_line_to(cr, h->cx, hy(h, 0.0) - 18);
	cairo_line_to(cr, h->cx + 14, hy(h, 0.0) + 6);
	cairo_close_path(cr);
	cairo_fill(cr);
	for (int side = -1; side <= 1; side += 2) {
		cairo_save(cr);
		cairo_translate(cr, hx(h, side * 1.0) + side * 3, hy(h, 0.42));
		cairo_scale(cr, 9, 26);
		cairo_arc(cr, 0, 0, 1, 0, 2 * M_PI);
		cairo_restore(cr);
		cairo_fill(cr);
	}
	rgb(cr, 0xeeeeee);
	head_outline(cr, h);
	cairo_fill(cr);

	cairo_save(cr);
	head_outline(cr, h);
	cairo_clip(cr);
	for (size_t i = 0; i < n_map_regions; i++) {
		const struct map_region *g = &map_regions[i];

		rgb(cr, style_of(patch_of(pg->course, g->patch))->rgb);
		cairo_rectangle(cr, hx(h, g->x0), hy(h, g->y0), hx(h, g->x1) - hx(h, g->x0),
				hy(h, g->y1) - hy(h, g->y0));
		cairo_fill_preserve(cr);
		rgb(cr, 0xffffff);
		cairo_set_line_width(cr, 3);
		cairo_stroke(cr);
	}
	cairo_restore(cr);
	rgb(cr, 0x555555);
	cairo_set_line_width(cr, 2);
	head_outline(cr, h);
	cairo_stroke(cr);

	for (size_t i = 0; i < n_map_regions; i++) {
		const struct map_region *g = &map_regions[i];
		json_object *p = patch_of(pg->course, g->patch);
		const struct status_style *st = style_of(p);
		double lx, ly, w1, w2, lb[4], sx, sy;
		char l2[32];

		label_lines(p, g, l2);
		label_centre(h, g, &lx, &ly);
		font(cr, 9, true);
		w1 = text_width(cr, g->label);
		font(cr, 8, false);
		w2 = text_width(cr, l2);
		lb[0] = lx - fmax(w1, w2) / 2;
		lb[2] = lx + fmax(w1, w2) / 2;
		lb[1] = ly - 12;
		lb[3] = ly + 10;
		rgb(cr, (st->rgb == 0xbdbdbd || st->rgb == 0xffb300) ? 0x212121 : 0xffffff);
		font(cr, 9, true);
		text_centred(cr, lx, ly - 3, g->label);
		font(cr, 8, false);
		text_centred(cr, lx, ly + 8, l2);
		sample_point(h, g, lb, &sx, &sy);
		if (pg->samples)
			add_sample(pg, g->patch, st, sx, sy);
	}
	rgb(cr, 0x212121);
	font(cr, 9, false);
	text_at(cr, hx(h, -1.0) - 26, hy(h, 0.5) + 3, "L");
	text_at(cr, hx(h, 1.0) + 18, hy(h, 0.5) + 3, "R");
	text_centred(cr, h->cx, hy(h, 1.0) + 14, "back of the head");
	text_at(cr, h->cx + 20, hy(h, 0.0) - 8, "forehead");
}

/* The colours of the statuses, and the patches the picture does not show. */
static void draw_legend(struct page *pg, double x, double y)
{
	cairo_t *cr = pg->cr;

	font(cr, 10, true);
	rgb(cr, 0x212121);
	text_at(cr, x, y, "Colours");
	y += 16;
	font(cr, 9, false);
	for (size_t i = 0; i < n_status_styles; i++, y += 16) {
		rgb(cr, status_styles[i].rgb);
		cairo_rectangle(cr, x, y - 9, 11, 11);
		cairo_fill(cr);
		rgb(cr, 0x212121);
		text_at(cr, x + 17, y, status_styles[i].words);
	}
	for (size_t i = 0; pg->course && i < json_object_array_length(pg->course); i++) {
		json_object *p = json_object_array_get_idx(pg->course, i);
		bool drawn = false;
		char line[160];

		for (size_t k = 0; k < n_map_regions; k++)
			drawn |= strcmp(map_regions[k].patch, j_str(p, "patch")) == 0;
		if (drawn)
			continue;
		y += 6;
		rgb(cr, style_of(p)->rgb);
		cairo_rectangle(cr, x, y - 9, 11, 11);
		cairo_fill(cr);
		rgb(cr, 0x212121);
		snprintf(line, sizeof(line), "%s (not drawn): %s", j_str(p, "label"),
			 j_str(p, "status"));
		text_at(cr, x + 17, y, line);
		y += 10;
	}
}

/* The map block: the head on the left, the legend on the right. */
static void draw_map_block(struct page *pg)
{
	struct head h = { .cx = MARGIN + 150, .top = pg->y + 26, .rx = 120, .len = 300 };

	need(pg, h.len + 60);
	h.top = pg->y + 26;
	draw_head(pg, &h);
	draw_legend(pg, MARGIN + 320, pg->y + 30);
	pg->y = h.top + h.len + 30;
}

/* ---- the report ------------------------------------------------------------ */

static json_object *list_of(json_object *o, const char *key)
{
	json_object *v = NULL;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_array))
		return NULL;
	return v;
}

static void join(json_object *arr, char *buf, size_t len)
{
	size_t at = 0;

	buf[0] = '\0';
	for (size_t i = 0; arr && i < json_object_array_length(arr) && at < len; i++)
		at += (size_t)snprintf(buf + at, len - at, "%s%s", i ? ", " : "",
				       json_object_get_string(json_object_array_get_idx(arr, i)));
}

static void heading(struct page *pg, const char *s)
{
	need(pg, 40);
	pg->y += 10;
	font(pg->cr, 13, true);
	rgb(pg->cr, 0x0d47a1);
	text_at(pg->cr, MARGIN, pg->y, s);
	pg->y += 18;
	rgb(pg->cr, 0x212121);
}

static void patch_course(struct page *pg, json_object *p)
{
	cairo_t *cr = pg->cr;
	const struct status_style *st = style_of(p);
	json_object *l;
	char line[640], next[200], when[32], a[256], hold[256];
	const double x = MARGIN + 12, w = PAGE_W - 2 * MARGIN - 12;

	need(pg, 52);
	rgb(cr, st->rgb);
	cairo_rectangle(cr, MARGIN, pg->y - 10, 12, 12);
	cairo_fill(cr);
	rgb(cr, 0x212121);
	font(cr, 11, true);
	snprintf(line, sizeof(line), "%s", j_str(p, "label"));
	text_at(cr, x + 6, pg->y, line);
	font(cr, 10, false);
	course_next(p, next, sizeof(next));
	snprintf(line, sizeof(line), "%c%s.", next[0] >= 'a' && next[0] <= 'z' ? next[0] - 32 :
		 next[0], next + (next[0] != '\0'));
	pg->y += 14;
	paragraph(pg, x + 6, w, 13, line);
	font(cr, 9, false);
	l = list_of(p, "treatments");
	for (size_t i = 0; l && i < json_object_array_length(l); i++) {
		json_object *t = json_object_array_get_idx(l, i);

		fmt_date(j_u64(t, "armed_usec"), when, sizeof(when));
		if (!j_bool(t, "emitted"))
			continue;
		snprintf(line, sizeof(line), "Treatment %s: %" PRIu64 " nm, %.1f J/cm2, spot %.1f mm, "
			 "pulse %.1f ns, %.1f Hz; %" PRIu64 " pulses, %.2f J delivered. "
			 "Endpoint: %s%s%s%s.", when, j_u64(t, "wavelength_nm"),
			 j_u64(t, "fluence_mj_cm2") / 1000.0, j_u64(t, "spot_um") / 1000.0,
			 j_u64(t, "pulse_ps") / 1000.0, j_u64(t, "rate_mhz") / 1000.0,
			 j_u64(t, "pulses"), j_u64(t, "energy_uj") / 1e6,
			 j_str(t, "endpoint")[0] ? j_str(t, "endpoint") : "not recorded",
			 j_str(t, "endpoint_note")[0] ? " (" : "", j_str(t, "endpoint_note"),
			 j_str(t, "endpoint_note")[0] ? ")" : "");
		paragraph(pg, x + 6, w, 12, line);
	}
	l = list_of(p, "follow_ups");
	for (size_t i = 0; l && i < json_object_array_length(l); i++) {
		json_object *f = json_object_array_get_idx(l, i), *v = NULL;
		size_t at;

		fmt_date(j_u64(f, "time_usec"), when, sizeof(when));
		at = (size_t)snprintf(line, sizeof(line), "Follow-up %s:", when);
		if (json_object_object_get_ex(f, "pigment_remaining_pct", &v))
			at += (size_t)snprintf(line + at, sizeof(line) - at,
					       " %" PRIu64 "%% of the pigment remaining;",
					       j_u64(f, "pigment_remaining_pct"));
		if (json_object_object_get_ex(f, "redness_resolved", &v))
			at += (size_t)snprintf(line + at, sizeof(line) - at, " redness %s;",
					       j_bool(f, "redness_resolved") ? "resolved" :
					       "not resolved");
		join(list_of(f, "adverse"), a, sizeof(a));
		join(list_of(f, "holding"), hold, sizeof(hold));
		if (a[0] && at < sizeof(line))
			at += (size_t)snprintf(line + at, sizeof(line) - at, " adverse events: %s%s;",
					       a, hold[0] ? " (the patch is held for a review)" : "");
		if (j_str(f, "note")[0] && at < sizeof(line))
			snprintf(line + at, sizeof(line) - at, " note: %s", j_str(f, "note"));
		at = strlen(line);
		if (at && line[at - 1] == ';')
			line[at - 1] = '.';
		paragraph(pg, x + 6, w, 12, line);
	}
	l = list_of(p, "reviews");
	for (size_t i = 0; l && i < json_object_array_length(l); i++) {
		json_object *v = json_object_array_get_idx(l, i);

		fmt_date(j_u64(v, "time_usec"), when, sizeof(when));
		snprintf(line, sizeof(line), "Review %s: the hold was cleared%s%s.", when,
			 j_str(v, "note")[0] ? ": " : "", j_str(v, "note"));
		paragraph(pg, x + 6, w, 12, line);
	}
	pg->y += 8;
}

static void expectations(struct page *pg, unsigned int cooldown_days)
{
	char text[1024];

	heading(pg, "What to expect");
	font(pg->cr, 10, false);
	snprintf(text, sizeof(text),
		 "Right after a treatment the treated skin turns white (frosting): the sign that "
		 "the laser reached the pigment. The whitening and any redness fade in about two "
		 "weeks.\n"
		 "A patch is treated again no sooner than %u days (%s) after its last treatment, "
		 "and only if a follow-up visit finds pigment remaining.\n"
		 "Tell the clinic at once about blistering, hair loss, scarring or signs of "
		 "infection: the patch then rests until it has been reviewed.",
		 cooldown_days, cooldown_days == 42 ? "six weeks" : "the clinic's interval");
	paragraph(pg, MARGIN, PAGE_W - 2 * MARGIN, 14, text);
}

static void draw_report(struct page *pg, const char *patient, const char *clinic,
			unsigned int cooldown_days)
{
	cairo_t *cr = pg->cr;
	char line[256], today[32], untreated[512] = "";
	size_t at = 0;

	fmt_date(now_usec(), today, sizeof(today));
	pg->y = MARGIN + 10;
	rgb(cr, 0x212121);
	if (clinic && clinic[0]) {
		font(cr, 18, true);
		text_at(cr, MARGIN, pg->y, clinic);
		pg->y += 24;
	}
	font(cr, 14, true);
	text_at(cr, MARGIN, pg->y, "Laser removal of scalp micropigmentation: your treatment record");
	pg->y += 18;
	font(cr, 10, false);
	snprintf(line, sizeof(line), "Patient %s, printed %s", patient, today);
	text_at(cr, MARGIN, pg->y, line);
	pg->y += 8;
	draw_map_block(pg);

	heading(pg, "The course of each patch");
	for (size_t i = 0; i < json_object_array_length(pg->course); i++) {
		json_object *p = json_object_array_get_idx(pg->course, i);

		if (strcmp(j_str(p, "status"), "untreated") == 0 &&
		    !json_object_array_length(list_of(p, "follow_ups"))) {
			if (at < sizeof(untreated))
				at += (size_t)snprintf(untreated + at, sizeof(untreated) - at, "%s%s",
						       at ? ", " : "", j_str(p, "label"));
			continue;
		}
		patch_course(pg, p);
	}
	if (untreated[0]) {
		font(cr, 10, false);
		snprintf(line, sizeof(line), "Not treated: %s.", untreated);
		paragraph(pg, MARGIN, PAGE_W - 2 * MARGIN, 13, line);
	}
	expectations(pg, cooldown_days ? cooldown_days : 42);
	pg->y += MARGIN;
}

/* ---- files ------------------------------------------------------------------ */

static void draw(struct page *pg, bool report, const char *patient, const char *clinic,
		 unsigned int cooldown_days)
{
	cairo_t *cr = pg->cr;

	rgb(cr, 0xffffff);
	cairo_paint(cr);
	if (report) {
		draw_report(pg, patient, clinic, cooldown_days);
		return;
	}
	rgb(cr, 0x212121);
	font(cr, 14, true);
	{
		char title[160], today[32];

		fmt_date(now_usec(), today, sizeof(today));
		snprintf(title, sizeof(title), "Patient %s: scalp patches on %s", patient, today);
		text_at(cr, MARGIN, MARGIN, title);
	}
	pg->y = MARGIN + 4;
	draw_map_block(pg);
}

/* The height the drawing takes as one page (the report grows with its course). */
static double measure(bool report, const char *patient, const char *clinic,
		      unsigned int cooldown_days, json_object *course)
{
	cairo_surface_t *s = cairo_recording_surface_create(CAIRO_CONTENT_COLOR_ALPHA, NULL);
	struct page pg = { .cr = cairo_create(s), .course = course, .unit_scale = 1 };

	draw(&pg, report, patient, clinic, cooldown_days);
	cairo_destroy(pg.cr);
	cairo_surface_destroy(s);
	return ceil(pg.y);
}

static cairo_status_t write_stdout(void *closure, const unsigned char *data, unsigned int len)
{
	(void)closure;
	return fwrite(data, 1, len, stdout) == len ? CAIRO_STATUS_SUCCESS
						   : CAIRO_STATUS_WRITE_ERROR;
}

int draw_file(struct ctl *c, const char *patient, const char *clinic, unsigned int cooldown_days,
	      json_object *course, bool report, const char *file, json_object **info)
{
	bool to_stdout = strcmp(file, "-") == 0;
	enum draw_format f = DRAW_SVG;
	double height = measure(report, patient, clinic, cooldown_days, course);
	cairo_surface_t *s = NULL;
	cairo_status_t st;
	struct page pg = { .course = course, .unit_scale = 1, .samples = json_object_new_array() };

	if (to_stdout && !c->output && c->svg)
		f = DRAW_SVG;
	else if (to_stdout)
		f = DRAW_PDF;
	else if (draw_format_of(file, &f) < 0) {
		json_object_put(pg.samples);
		return ctl_error(c, CTL_EXIT_USAGE, NULL, "%s: the file must end in .pdf, .png or "
				 ".svg (the format follows its extension)", file);
	}
	if (!report)
		height = fmax(height, 380);
	switch (f) {
	case DRAW_PDF:
		pg.page_h = report ? PAGE_H : 0;
		s = to_stdout ? cairo_pdf_surface_create_for_stream(write_stdout, NULL, PAGE_W,
								    report ? PAGE_H : height)
			      : cairo_pdf_surface_create(file, PAGE_W, report ? PAGE_H : height);
		break;
	case DRAW_SVG:
		s = to_stdout ? cairo_svg_surface_create_for_stream(write_stdout, NULL, PAGE_W, height)
			      : cairo_svg_surface_create(file, PAGE_W, height);
		break;
	case DRAW_PNG:
		if (to_stdout) {
			json_object_put(pg.samples);
			return ctl_error(c, CTL_EXIT_USAGE, NULL, "a PNG needs a file: -o FILE.png");
		}
		pg.unit_scale = PNG_SCALE;
		s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, (int)(PAGE_W * PNG_SCALE),
					       (int)(height * PNG_SCALE));
		break;
	}
	st = cairo_surface_status(s);
	if (st == CAIRO_STATUS_SUCCESS) {
		pg.cr = cairo_create(s);
		if (f == DRAW_PNG)
			cairo_scale(pg.cr, PNG_SCALE, PNG_SCALE);
		pg.pages = 1;
		draw(&pg, report, patient, clinic, cooldown_days);
		st = cairo_status(pg.cr);
		cairo_destroy(pg.cr);
		if (st == CAIRO_STATUS_SUCCESS && f == DRAW_PNG)
			st = cairo_surface_write_to_png(s, file);
		cairo_surface_finish(s);
		if (st == CAIRO_STATUS_SUCCESS)
			st = cairo_surface_status(s);
	}
	cairo_surface_destroy(s);
	/* Nothing of cairo's is alive now: its and fontconfig's caches go too (valgrind). */
	cairo_debug_reset_static_data();
	FcFini();
	if (st != CAIRO_STATUS_SUCCESS) {
		json_object_put(pg.samples);
		return ctl_error(c, CTL_EXIT_FAILED, NULL, "cannot write %s: %s", file,
				 cairo_status_to_string(st));
	}
	*info = json_object_new_object();
	json_object_object_add(*info, "file", json_object_new_string(file));
	json_object_object_add(*info, "format", json_object_new_string(
		f == DRAW_PDF ? "pdf" : f == DRAW_PNG ? "png" : "svg"));
	json_object_object_add(*info, "pages", json_object_new_int(pg.pages));
	json_object_object_add(*info, "width", json_object_new_double(PAGE_W * pg.unit_scale));
	json_object_object_add(*info, "height", json_object_new_double(
		(f == DRAW_PDF && report ? PAGE_H : height) * pg.unit_scale));
	json_object_object_add(*info, "patches", pg.samples);
	return CTL_EXIT_DONE;
}
