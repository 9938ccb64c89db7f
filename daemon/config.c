/* SPDX-License-Identifier: MIT */
/*
 * smplaserd.conf: INI via libinih, every key checked, a bad config refused
 * with file, line and reason.  See config.h for the keys.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <ini.h>

#include "config.h"
#include "text.h"

/* libinih's line buffer (INI_MAX_LINE) holds this many characters. */
#define LINE_MAX_CHARS	(INI_MAX_LINE - 2)

enum key_kind {
	K_U32,		/* decimal in [min, max] into a uint32_t */
	K_U16,		/* decimal in [min, max] into a uint16_t */
	K_BOOL,
	K_NS_TO_PS,	/* nanoseconds in [min, max], stored as picoseconds */
	K_J_TO_UJ,	/* joules in [min, max], stored as microjoules (uint64) */
	K_WAVELENGTHS,	/* comma-separated list of nm */
	K_SESSION_BUS,	/* same-uid | deny */
	K_RECORDS,	/* sqlite | postgresql */
	K_CONNINFO,	/* a libpq connection string, without a password */
	K_WORKSTATION,	/* a name: [A-Za-z0-9._-], 1..SMPL_WORKSTATION_MAX */
	K_TEXT,		/* printable text of 1..max bytes into a char array */
};

struct key {
	const char *section, *name;
	enum key_kind kind;
	size_t offset;		/* into struct smpl_config */
	uint32_t min, max;
	const char *below_min;	/* special message, or NULL */
	const char *above_max;
};

#define OFF(field) offsetof(struct smpl_config, field)

static const struct key keys[] = {
	{ "rules", "cooldown_days", K_U32, OFF(rules.cooldown_days),
	  SMPL_COOLDOWN_DAYS_MIN, 3650,
	  "would shorten the cooldown below 42 days; a clinic may only lengthen it", NULL },
	{ "rules", "test_spot", K_BOOL, OFF(rules.test_spot), 0, 0, NULL, NULL },
	{ "rules", "test_spot_pulses", K_U32, OFF(rules.test_spot_pulses), 1, 1000, NULL, NULL },
	{ "rules", "test_spot_review_days", K_U32, OFF(rules.test_spot_review_days),
	  1, 365, NULL, NULL },
	{ "rules", "require_follow_up", K_BOOL, OFF(rules.require_follow_up), 0, 0, NULL, NULL },

	{ "protocol", "wavelengths_nm", K_WAVELENGTHS, OFF(protocol), 100, 20000, NULL, NULL },
	{ "protocol", "fluence_min_mj_cm2", K_U32, OFF(protocol.fluence_min_mj_cm2),
	  1, 100000, NULL, NULL },
	{ "protocol", "fluence_max_mj_cm2", K_U32, OFF(protocol.fluence_max_mj_cm2),
	  1, 100000, NULL, NULL },
	{ "protocol", "spot_min_um", K_U16, OFF(protocol.spot_min_um), 1, 65535, NULL, NULL },
	{ "protocol", "spot_max_um", K_U16, OFF(protocol.spot_max_um), 1, 65535, NULL, NULL },
	{ "protocol", "qswitch_pulse_min_ns", K_NS_TO_PS, OFF(protocol.qswitch_pulse_min_ps),
	  1, 1000, NULL, NULL },
	{ "protocol", "qswitch_pulse_max_ns", K_NS_TO_PS, OFF(protocol.qswitch_pulse_max_ps),
	  1, 1000, NULL, NULL },
	{ "protocol", "pico_pulse_min_ps", K_U32, OFF(protocol.pico_pulse_min_ps),
	  1, 1000000, NULL, NULL },
	{ "protocol", "pico_pulse_max_ps", K_U32, OFF(protocol.pico_pulse_max_ps),
	  1, 1000000, NULL, NULL },
	{ "protocol", "rate_max_mhz", K_U32, OFF(protocol.rate_max_mhz), 1, 1000000, NULL, NULL },
	{ "protocol", "pulses_per_patch", K_U32, OFF(protocol.pulses_per_patch),
	  1, 1000000, NULL, NULL },
	{ "protocol", "max_session_energy_j", K_J_TO_UJ, OFF(protocol.max_session_energy_uj),
	  1, 1000000, NULL, NULL },

	{ "safety", "heartbeat_ms", K_U32, OFF(safety.heartbeat_ms), 100, 1000, NULL,
	  "the unit's own watchdog (1000 ms) would fire first" },
	{ "safety", "idle_timeout_s", K_U32, OFF(safety.idle_timeout_s), 1, 3600, NULL, NULL },
	{ "safety", "energy_tolerance_pct", K_U32, OFF(safety.energy_tolerance_pct), 1, 20,
	  NULL, "would loosen the +/-20% energy tolerance (IEC 60601-2-22); "
	  "it may only be tightened" },
	{ "safety", "rtc_max_skew_s", K_U32, OFF(safety.rtc_max_skew_s), 1, 3600, NULL, NULL },

	{ "auth", "allow_root", K_BOOL, OFF(auth.allow_root), 0, 0, NULL, NULL },
	{ "auth", "session_bus", K_SESSION_BUS, OFF(auth.session_bus), 0, 0, NULL, NULL },
	{ "auth", "polkit_timeout_s", K_U32, OFF(auth.polkit_timeout_s), 1, 100, NULL,
	  "smplaserctl waits 120 s for a reply: the daemon must answer it first" },

	{ "backends", "kmod", K_BOOL, OFF(backends.kmod), 0, 0, NULL, NULL },
	{ "backends", "libusb", K_BOOL, OFF(backends.libusb), 0, 0, NULL, NULL },
	{ "backends", "sim", K_BOOL, OFF(backends.sim), 0, 0, NULL, NULL },

	{ "records", "backend", K_RECORDS, OFF(records.backend), 0, 0, NULL, NULL },
	{ "records", "conninfo", K_CONNINFO, OFF(records.conninfo), 0, 0, NULL, NULL },
	{ "records", "workstation", K_WORKSTATION, OFF(records.workstation), 0, 0, NULL, NULL },

	{ "clinic", "name", K_TEXT, OFF(clinic.name), 0, SMPL_CLINIC_NAME_MAX, NULL, NULL },
};
#define N_KEYS (sizeof(keys) / sizeof(keys[0]))

static const char *const sections[] = {
	"rules", "protocol", "safety", "patches", "auth", "backends", "records", "clinic",
};

struct parser {
	struct smpl_config *c;
	const char *name;		/* path or name for messages */
	unsigned int line;		/* current line, counted by the reader */
	bool at_line_start;
	unsigned int key_line[N_KEYS];	/* where each key was set; 0 = default */
	unsigned int err_line;		/* first error found by us; 0 = none */
	char err[SMPL_CONFIG_MSG_MAX];

	/* input */
	FILE *file;
	const char *text;
};

static void __attribute__((format(printf, 3, 4)))
set_msg(char *buf, size_t len, const char *f, ...)
{
	va_list ap;

	if (!buf || !len)
		return;
	va_start(ap, f);
	vsnprintf(buf, len, f, ap);
	va_end(ap);
}

/* Record the first error (at the current line). */
static int __attribute__((format(printf, 2, 3)))
parse_error(struct parser *p, const char *f, ...)
{
	va_list ap;

	if (!p->err_line) {
		p->err_line = p->line ? p->line : 1;
		va_start(ap, f);
		vsnprintf(p->err, sizeof(p->err), f, ap);
		va_end(ap);
	}
	return 0;	/* inih: this line failed */
}

/* ---- values ----------------------------------------------------------------- */

/* Strict unsigned decimal: digits only, no sign, no spaces, no overflow. */
static bool parse_u32(const char *s, uint32_t *out)
{
	uint64_t v = 0;

	if (!s || !*s)
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return false;
		v = v * 10 + (uint64_t)(*s - '0');
		if (v > UINT32_MAX)
			return false;
	}
	*out = (uint32_t)v;
	return true;
}

static bool parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = { "true", "yes", "on", "1" };
	static const char *const no[] = { "false", "no", "off", "0" };

	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = true;
			return true;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = false;
			return true;
		}
	}
	return false;
}

static int set_number(struct parser *p, const struct key *k, const char *value)
{
	char *base = (char *)p->c;
	uint32_t v;

	if (!parse_u32(value, &v))
		return parse_error(p, "[%s] %s = \"%s\": not an unsigned decimal integer",
				   k->section, k->name, value);
	if (v < k->min || v > k->max)
		return parse_error(p, "[%s] %s = %" PRIu32 ": %s (allowed %" PRIu32
				   "-%" PRIu32 ")", k->section, k->name, v,
				   v < k->min ?
				   (k->below_min ? k->below_min : "below the minimum") :
				   (k->above_max ? k->above_max : "above the maximum"),
				   k->min, k->max);
	switch (k->kind) {
	case K_U16:
		*(uint16_t *)(base + k->offset) = (uint16_t)v;
		break;
	case K_NS_TO_PS:
		*(uint32_t *)(base + k->offset) = v * 1000;
		break;
	case K_J_TO_UJ:
		*(uint64_t *)(base + k->offset) = (uint64_t)v * 1000000;
		break;
	default:
		*(uint32_t *)(base + k->offset) = v;
		break;
	}
	return 1;
}

static int set_wavelengths(struct parser *p, const struct key *k, const char *value)
{
	struct smpl_protocol *proto = &p->c->protocol;
	char buf[INI_MAX_LINE], *save = NULL, *tok;
	unsigned int n = 0;
	uint32_t v;

	snprintf(buf, sizeof(buf), "%s", value);
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		while (isspace((unsigned char)*tok))
			tok++;
		for (char *e = tok + strlen(tok); e > tok && isspace((unsigned char)e[-1]); )
			*--e = '\0';
		if (n == SMPL_PROTOCOL_WAVELENGTHS_MAX)
			return parse_error(p, "[%s] %s: more than %d wavelengths",
					   k->section, k->name, SMPL_PROTOCOL_WAVELENGTHS_MAX);
		if (!parse_u32(tok, &v) || v < k->min || v > k->max)
			return parse_error(p, "[%s] %s: \"%s\" is not a wavelength in nm "
					   "(%" PRIu32 "-%" PRIu32 ")", k->section, k->name,
					   tok, k->min, k->max);
		for (unsigned int i = 0; i < n; i++)
			if (proto->wavelengths_nm[i] == v)
				return parse_error(p, "[%s] %s: %" PRIu32 " is listed twice",
						   k->section, k->name, v);
		proto->wavelengths_nm[n++] = (uint16_t)v;
	}
	if (!n)
		return parse_error(p, "[%s] %s: empty list", k->section, k->name);
	for (unsigned int i = n; i < SMPL_PROTOCOL_WAVELENGTHS_MAX; i++)
		proto->wavelengths_nm[i] = 0;
	proto->n_wavelengths = n;
	return 1;
}

/*
 * A password in the configuration (a readable file) is refused: libpq reads
 * it from its password file or service file.  Key/value form and URIs.
 */
static bool conninfo_has_password(const char *v)
{
	const char *at, *scheme = strstr(v, "://");

	for (const char *c = v; (c = strcasestr(c, "password")); c += 8) {
		const char *e = c + 8;

		while (*e == ' ' || *e == '\t')
			e++;
		if (*e == '=')
			return true;
	}
	if (scheme && (at = strchr(scheme + 3, '@'))) {
		const char *colon = memchr(scheme + 3, ':', (size_t)(at - scheme - 3));

		return colon != NULL;	/* user:password@host */
	}
	return false;
}

static int set_records_value(struct parser *p, const struct key *k, const char *value)
{
	switch (k->kind) {
	case K_RECORDS:
		if (strcmp(value, "sqlite") == 0)
			p->c->records.backend = SMPL_RECORDS_SQLITE;
		else if (strcmp(value, "postgresql") == 0)
			p->c->records.backend = SMPL_RECORDS_POSTGRESQL;
		else
			return parse_error(p, "[%s] %s = \"%s\": must be sqlite or postgresql",
					   k->section, k->name, value);
		return 1;
	case K_CONNINFO:
		if (strlen(value) > SMPL_CONNINFO_MAX)
			return parse_error(p, "[%s] %s: longer than %d characters", k->section,
					   k->name, SMPL_CONNINFO_MAX);
		if (conninfo_has_password(value))
			return parse_error(p, "[%s] %s: a password does not belong in this file; "
					   "use libpq's password file (~/.pgpass, PGPASSFILE) or "
					   "a service file", k->section, k->name);
		snprintf(p->c->records.conninfo, sizeof(p->c->records.conninfo), "%s", value);
		return 1;
	default:
		if (!*value)
			return 1;	/* empty: the default, the host name */
		if (strlen(value) > SMPL_WORKSTATION_MAX ||
		    strspn(value, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
			   "0123456789._-") != strlen(value))
			return parse_error(p, "[%s] %s = \"%s\": 1-%d characters of "
					   "[A-Za-z0-9._-]", k->section, k->name, value,
					   SMPL_WORKSTATION_MAX);
		snprintf(p->c->records.workstation, sizeof(p->c->records.workstation), "%s",
			 value);
		return 1;
	}
}

static int set_value(struct parser *p, const struct key *k, const char *value)
{
	char *base = (char *)p->c;
	bool b;

	switch (k->kind) {
	case K_BOOL:
		if (!parse_bool(value, &b))
			return parse_error(p, "[%s] %s = \"%s\": not a boolean "
					   "(true/false, yes/no, on/off, 1/0)",
					   k->section, k->name, value);
		*(bool *)(base + k->offset) = b;
		return 1;
	case K_SESSION_BUS:
		if (strcmp(value, "same-uid") == 0)
			p->c->auth.session_bus = SMPL_SESSION_BUS_SAME_UID;
		else if (strcmp(value, "deny") == 0)
			p->c->auth.session_bus = SMPL_SESSION_BUS_DENY;
		else
			return parse_error(p, "[%s] %s = \"%s\": must be same-uid or deny",
					   k->section, k->name, value);
		return 1;
	case K_WAVELENGTHS:
		return set_wavelengths(p, k, value);
	case K_RECORDS:
	case K_CONNINFO:
	case K_WORKSTATION:
		return set_records_value(p, k, value);
	case K_TEXT:
		if (strlen(value) < k->min || strlen(value) > k->max || !smpl_text_is_safe(value))
			return parse_error(p, "[%s] %s: %u-%u bytes of printable UTF-8 text",
					   k->section, k->name, k->min, k->max);
		snprintf(base + k->offset, k->max + 1, "%s", value);
		return 1;
	default:
		return set_number(p, k, value);
	}
}

/* ---- inih callbacks ---------------------------------------------------------- */

static bool known_section(const char *section)
{
	for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++)
		if (strcmp(section, sections[i]) == 0)
			return true;
	return false;
}

static int on_key(void *user, const char *section, const char *name,
		  const char *value)
{
	struct parser *p = user;
	char err[SMPL_CONFIG_MSG_MAX];

	if (!section[0])
		return parse_error(p, "%s: key outside any section", name);
	if (!known_section(section))
		return parse_error(p, "[%s]: unknown section", section);
	if (strcmp(section, "patches") == 0) {
		if (smpl_patches_add(&p->c->patches, name, value, err, sizeof(err)) < 0)
			return parse_error(p, "[patches] %s", err);
		return 1;
	}
	for (size_t i = 0; i < N_KEYS; i++) {
		if (strcmp(keys[i].section, section) || strcmp(keys[i].name, name))
			continue;
		if (p->key_line[i])
			return parse_error(p, "[%s] %s: given again (first on line %u; "
					   "an indented line continues the previous one)",
					   section, name, p->key_line[i]);
		p->key_line[i] = p->line;
		return set_value(p, &keys[i], value);
	}
	return parse_error(p, "[%s] %s: unknown key", section, name);
}

/*
 * inih calls us only for keys: an unknown section with no keys in it would
 * pass unseen.  Check every section header as its line goes by.
 */
static void check_section_header(struct parser *p, const char *line)
{
	char name[INI_MAX_LINE];
	const char *end;
	size_t len;

	while (isspace((unsigned char)*line))
		line++;
	if (*line != '[')
		return;
	end = strchr(line, ']');
	if (!end)
		return;		/* inih reports the syntax error */
	len = (size_t)(end - line - 1);
	memcpy(name, line + 1, len);
	name[len] = '\0';
	if (!known_section(name))
		parse_error(p, "[%s]: unknown section", name);
}

/* Hand inih one line; count lines; refuse lines inih would split. */
static char *next_line(char *buf, int size, void *user)
{
	struct parser *p = user;
	size_t n = 0;

	if (size < 2)
		return NULL;
	if (p->file) {
		if (!fgets(buf, size, p->file))
			return NULL;
		n = strlen(buf);
	} else {
		if (!*p->text)
			return NULL;
		while (p->text[n] && n < (size_t)size - 1) {
			buf[n] = p->text[n];
			if (p->text[n++] == '\n')
				break;
		}
		buf[n] = '\0';
		p->text += n;
	}
	p->line++;
	if (n == (size_t)size - 1 && buf[n - 1] != '\n') {
		parse_error(p, "line longer than %d characters", LINE_MAX_CHARS);
		return NULL;	/* stop here: the rest would be misread */
	}
	check_section_header(p, buf);
	return buf;
}

/* ---- whole-file checks ------------------------------------------------------------ */

static unsigned int line_of(const struct parser *p, const char *name)
{
	for (size_t i = 0; i < N_KEYS; i++)
		if (strcmp(keys[i].name, name) == 0)
			return p->key_line[i];
	return 0;
}

/* min <= max for a pair of keys; the error goes on the later line. */
static bool check_order(struct parser *p, uint64_t lo, uint64_t hi,
			const char *lo_key, const char *hi_key)
{
	unsigned int l1 = line_of(p, lo_key), l2 = line_of(p, hi_key);

	if (lo <= hi)
		return true;
	p->line = l1 > l2 ? l1 : l2;
	parse_error(p, "[protocol] %s (%" PRIu64 ") is above %s (%" PRIu64 ")",
		    lo_key, lo, hi_key, hi);
	return false;
}

static bool check_records(struct parser *p)
{
	if (p->c->records.backend != SMPL_RECORDS_POSTGRESQL)
		return true;
	if (!p->c->records.conninfo[0]) {
		p->line = line_of(p, "backend");
		parse_error(p, "[records] backend = postgresql needs a conninfo");
		return false;
	}
	return true;
}

static bool check_whole(struct parser *p)
{
	const struct smpl_protocol *pr = &p->c->protocol;

	return check_records(p) && check_order(p, pr->fluence_min_mj_cm2, pr->fluence_max_mj_cm2,
			   "fluence_min_mj_cm2", "fluence_max_mj_cm2") &&
	       check_order(p, pr->spot_min_um, pr->spot_max_um,
			   "spot_min_um", "spot_max_um") &&
	       check_order(p, pr->qswitch_pulse_min_ps, pr->qswitch_pulse_max_ps,
			   "qswitch_pulse_min_ns", "qswitch_pulse_max_ns") &&
	       check_order(p, pr->pico_pulse_min_ps, pr->pico_pulse_max_ps,
			   "pico_pulse_min_ps", "pico_pulse_max_ps");
}

/* ---- entry points ---------------------------------------------------------------- */

void smpl_config_defaults(struct smpl_config *c)
{
	memset(c, 0, sizeof(*c));
	smpl_rules_default(&c->rules);
	smpl_protocol_default(&c->protocol);
	c->safety.heartbeat_ms = 500;
	c->safety.idle_timeout_s = 60;
	c->safety.energy_tolerance_pct = 20;
	c->safety.rtc_max_skew_s = 300;
	smpl_patches_init(&c->patches);
	c->auth.allow_root = true;
	c->auth.session_bus = SMPL_SESSION_BUS_SAME_UID;
	c->auth.polkit_timeout_s = 20;	/* below the 25 s most D-Bus clients wait */
	c->backends.kmod = true;
	c->backends.libusb = true;
	c->backends.sim = false;
	c->records.backend = SMPL_RECORDS_SQLITE;
	/* The host name, as far as it is a name (its first label otherwise cut). */
	if (gethostname(c->records.workstation, sizeof(c->records.workstation) - 1) < 0 ||
	    !c->records.workstation[0])
		snprintf(c->records.workstation, sizeof(c->records.workstation), "localhost");
	c->records.workstation[strspn(c->records.workstation,
				      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
				      "0123456789._-")] = '\0';
	if (!c->records.workstation[0])
		snprintf(c->records.workstation, sizeof(c->records.workstation), "localhost");
}

static int parse(struct smpl_config *c, struct parser *p, char *msg, size_t msg_len)
{
	struct smpl_config tmp;
	int r;

	smpl_config_defaults(&tmp);
	p->c = &tmp;
	r = ini_parse_stream(next_line, p, on_key, p);
	if (r > 0 && (!p->err_line || (unsigned int)r < p->err_line)) {
		p->err_line = (unsigned int)r;
		set_msg(p->err, sizeof(p->err),
			"syntax error: expected \"[section]\" or \"key = value\"");
	} else if (r < 0 && !p->err_line) {
		set_msg(msg, msg_len, "%s: cannot parse (%s)", p->name,
			r == -2 ? "out of memory" : "read error");
		smpl_config_defaults(c);
		return r == -2 ? -ENOMEM : -EIO;
	}
	if (!p->err_line)
		check_whole(p);
	if (p->err_line) {
		set_msg(msg, msg_len, "%s:%u: %s", p->name, p->err_line, p->err);
		smpl_config_defaults(c);
		return -EINVAL;
	}
	tmp.backends.sim_line = line_of(p, "sim");
	*c = tmp;
	set_msg(msg, msg_len, "%s: loaded", p->name);
	return SMPL_CONFIG_LOADED;
}

int smpl_config_load_string(struct smpl_config *c, const char *text,
			    const char *name, char *msg, size_t msg_len)
{
	struct parser p = { .name = name ? name : "(config)", .text = text ? text : "" };

	return parse(c, &p, msg, msg_len);
}

int smpl_config_load(struct smpl_config *c, const char *path,
		     char *msg, size_t msg_len)
{
	struct parser p = { 0 };
	int r;

	p.name = path ? path : SMPL_CONFIG_PATH;
	p.file = fopen(p.name, "re");
	if (!p.file) {
		r = -errno;
		smpl_config_defaults(c);
		if (r == -ENOENT) {
			set_msg(msg, msg_len, "%s: not found; using the built-in defaults",
				p.name);
			return SMPL_CONFIG_DEFAULTS;
		}
		set_msg(msg, msg_len, "%s: cannot open: %s", p.name, strerror(-r));
		return r;
	}
	r = parse(c, &p, msg, msg_len);
	if (r >= 0 && ferror(p.file)) {
		set_msg(msg, msg_len, "%s: read error", p.name);
		smpl_config_defaults(c);
		r = -EIO;
	}
	fclose(p.file);
	return r;
}

int smpl_config_check_system_bus(const struct smpl_config *c, const char *path,
				 char *msg, size_t msg_len)
{
	if (!c->backends.sim)
		return 0;
	set_msg(msg, msg_len, "%s:%u: [backends] sim = true is refused on the system bus: "
		"simulated treatments would go into the clinical records and start real "
		"cooldowns (simulated units are for a session bus: smplaserd --session --sim)",
		path ? path : SMPL_CONFIG_PATH, c->backends.sim_line);
	return -EINVAL;
}

static const char *yes_no(bool b)
{
	return b ? "true" : "false";
}

int smpl_config_describe(const struct smpl_config *c, char *buf, size_t len)
{
	const struct smpl_protocol *pr = &c->protocol;
	char wl[8 * SMPL_PROTOCOL_WAVELENGTHS_MAX] = "";
	size_t custom = 0;

	for (unsigned int i = 0; i < pr->n_wavelengths && i < SMPL_PROTOCOL_WAVELENGTHS_MAX; i++)
		snprintf(wl + strlen(wl), sizeof(wl) - strlen(wl), "%s%u", i ? "," : "",
			 (unsigned int)pr->wavelengths_nm[i]);
	for (size_t i = 0; i < c->patches.count; i++)
		custom += !c->patches.list[i].builtin;
	return snprintf(buf, len,
			"cooldown_days=%" PRIu32 " test_spot=%s test_spot_pulses=%" PRIu32
			" test_spot_review_days=%" PRIu32 " wavelengths_nm=%s"
			" fluence_mj_cm2=%" PRIu32 "-%" PRIu32 " spot_um=%u-%u"
			" qswitch_pulse_ns=%" PRIu32 "-%" PRIu32 " pico_pulse_ps=%" PRIu32 "-%" PRIu32
			" rate_max_mhz=%" PRIu32 " pulses_per_patch=%" PRIu32
			" max_session_energy_j=%" PRIu64 " heartbeat_ms=%" PRIu32
			" idle_timeout_s=%" PRIu32 " energy_tolerance_pct=%" PRIu32
			" rtc_max_skew_s=%" PRIu32 " allow_root=%s session_bus=%s"
			" polkit_timeout_s=%" PRIu32 " kmod=%s libusb=%s sim=%s clinic_patches=%zu",
			c->rules.cooldown_days, yes_no(c->rules.test_spot),
			c->rules.test_spot_pulses, c->rules.test_spot_review_days, wl,
			pr->fluence_min_mj_cm2, pr->fluence_max_mj_cm2,
			(unsigned int)pr->spot_min_um, (unsigned int)pr->spot_max_um,
			pr->qswitch_pulse_min_ps / 1000, pr->qswitch_pulse_max_ps / 1000,
			pr->pico_pulse_min_ps, pr->pico_pulse_max_ps, pr->rate_max_mhz,
			pr->pulses_per_patch, pr->max_session_energy_uj / 1000000,
			c->safety.heartbeat_ms, c->safety.idle_timeout_s,
			c->safety.energy_tolerance_pct, c->safety.rtc_max_skew_s,
			yes_no(c->auth.allow_root),
			c->auth.session_bus == SMPL_SESSION_BUS_DENY ? "deny" : "same-uid",
			c->auth.polkit_timeout_s, yes_no(c->backends.kmod),
			yes_no(c->backends.libusb), yes_no(c->backends.sim), custom);
}

void smpl_config_safety_limits(const struct smpl_config *c,
			       struct smpl_safety_limits *l)
{
	l->idle_timeout_s = c->safety.idle_timeout_s;
	l->energy_tolerance_pct = c->safety.energy_tolerance_pct;
	l->rtc_max_skew_s = c->safety.rtc_max_skew_s;
	l->pulses_per_patch = c->protocol.pulses_per_patch;
	l->max_session_energy_uj = c->protocol.max_session_energy_uj;
}
