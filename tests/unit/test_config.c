/* SPDX-License-Identifier: MIT */
/*
 * smplaserd.conf (daemon/config.c): defaults, the shipped file, every
 * refusal with its line number, and the values a clinic may change.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"

static const char *shipped_path(void)
{
	static char path[512];
	const char *src = getenv("SMPL_SRCDIR");

	snprintf(path, sizeof(path), "%s/data/smplaserd.conf", src ? src : ".");
	return path;
}

static char *read_all(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf;
	long n;

	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	assert_true(n > 0);
	rewind(f);
	buf = calloc(1, (size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	return buf;
}

static void assert_defaults(const struct smpl_config *c)
{
	assert_int_equal(c->rules.cooldown_days, 42);
	assert_false(c->rules.test_spot);
	assert_int_equal(c->rules.test_spot_pulses, 20);
	assert_int_equal(c->rules.test_spot_review_days, 14);
	assert_true(c->rules.require_follow_up);
	assert_string_equal(c->clinic.name, "");
	assert_int_equal(c->protocol.n_wavelengths, 1);
	assert_int_equal(c->protocol.wavelengths_nm[0], 1064);
	assert_int_equal(c->protocol.fluence_min_mj_cm2, 1000);
	assert_int_equal(c->protocol.fluence_max_mj_cm2, 10000);
	assert_int_equal(c->protocol.spot_min_um, 2000);
	assert_int_equal(c->protocol.spot_max_um, 6000);
	assert_int_equal(c->protocol.qswitch_pulse_min_ps, 5000);
	assert_int_equal(c->protocol.qswitch_pulse_max_ps, 25000);
	assert_int_equal(c->protocol.pico_pulse_min_ps, 300);
	assert_int_equal(c->protocol.pico_pulse_max_ps, 750);
	assert_int_equal(c->protocol.rate_max_mhz, 10000);
	assert_int_equal(c->protocol.pulses_per_patch, 3000);
	assert_true(c->protocol.max_session_energy_uj == 10000ULL * 1000000);
	assert_int_equal(c->safety.heartbeat_ms, 500);
	assert_int_equal(c->safety.idle_timeout_s, 60);
	assert_int_equal(c->safety.energy_tolerance_pct, 20);
	assert_int_equal(c->safety.rtc_max_skew_s, 300);
	assert_int_equal(c->patches.count, SMPL_PATCHES_BUILTIN);
	assert_true(c->auth.allow_root);
	assert_int_equal(c->auth.session_bus, SMPL_SESSION_BUS_SAME_UID);
	assert_int_equal(c->auth.polkit_timeout_s, 20);
	assert_true(c->backends.kmod);
	assert_true(c->backends.libusb);
	assert_false(c->backends.sim);
	assert_int_equal(c->records.backend, SMPL_RECORDS_SQLITE);
	assert_string_equal(c->records.conninfo, "");
	assert_true(c->records.workstation[0]);		/* the host name */
}

static int load(struct smpl_config *c, const char *text, char *msg, size_t len)
{
	return smpl_config_load_string(c, text, "test.conf", msg, len);
}

/* ---- defaults and the shipped file ------------------------------------------------ */

static void test_defaults(void **state)
{
	struct smpl_config c;
	char msg[SMPL_CONFIG_MSG_MAX];

	(void)state;
	smpl_config_defaults(&c);
	assert_defaults(&c);
	assert_int_equal(load(&c, "", msg, sizeof(msg)), SMPL_CONFIG_LOADED);
	assert_defaults(&c);
	assert_int_equal(load(&c, "# only comments\n\n; and more\n[rules]\n", msg, sizeof(msg)),
			 SMPL_CONFIG_LOADED);
	assert_defaults(&c);
}

static void test_missing_file_means_defaults(void **state)
{
	struct smpl_config c;
	char msg[SMPL_CONFIG_MSG_MAX];

	(void)state;
	memset(&c, 0xa5, sizeof(c));
	assert_int_equal(smpl_config_load(&c, "/nonexistent/smplaserd.conf", msg, sizeof(msg)),
			 SMPL_CONFIG_DEFAULTS);
	assert_defaults(&c);
	assert_non_null(strstr(msg, "/nonexistent/smplaserd.conf"));
	assert_non_null(strstr(msg, "defaults"));
}

static void test_unreadable_path_refused(void **state)
{
	struct smpl_config c;
	char msg[SMPL_CONFIG_MSG_MAX];

	(void)state;
	assert_true(smpl_config_load(&c, "/", msg, sizeof(msg)) < 0);
	assert_defaults(&c);
	assert_true(strncmp(msg, "/:", 2) == 0);
}

static void test_shipped_file_is_defaults(void **state)
{
	struct smpl_config c;
	char msg[SMPL_CONFIG_MSG_MAX];

	(void)state;
	assert_int_equal(smpl_config_load(&c, shipped_path(), msg, sizeof(msg)),
			 SMPL_CONFIG_LOADED);
	assert_defaults(&c);
}

/* Uncomment every "#key = value" line: the documented defaults must load as the defaults. */
static void test_shipped_file_documents_every_key(void **state)
{
	static const char *const keys[] = {
		"cooldown_days", "test_spot", "test_spot_pulses", "test_spot_review_days",
		"wavelengths_nm", "fluence_min_mj_cm2", "fluence_max_mj_cm2",
		"spot_min_um", "spot_max_um", "qswitch_pulse_min_ns",
		"qswitch_pulse_max_ns", "pico_pulse_min_ps", "pico_pulse_max_ps",
		"rate_max_mhz", "pulses_per_patch", "max_session_energy_j",
		"heartbeat_ms", "idle_timeout_s", "energy_tolerance_pct",
		"rtc_max_skew_s", "allow_root", "session_bus", "polkit_timeout_s", "kmod", "libusb", "sim",
		"backend", "conninfo", "workstation", "require_follow_up", "name",
	};
	char *text = read_all(shipped_path());
	char needle[64], msg[SMPL_CONFIG_MSG_MAX];
	struct smpl_config c;
	size_t uncommented = 0;

	(void)state;
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		snprintf(needle, sizeof(needle), "\n#%s =", keys[i]);
		if (!strstr(text, needle))
			fail_msg("data/smplaserd.conf does not document %s", keys[i]);
	}
	/* "#key = value" -> " key = value" would continue a line; blank it instead */
	for (char *line = text; line && *line; line = strchr(line, '\n')) {
		if (*line == '\n')
			line++;
		if (line[0] == '#' && line[1] >= 'a' && line[1] <= 'z') {
			memmove(line, line + 1, strlen(line + 1) + 1);
			uncommented++;
		}
	}
	assert_int_equal(uncommented, sizeof(keys) / sizeof(keys[0]));
	if (load(&c, text, msg, sizeof(msg)) != SMPL_CONFIG_LOADED)
		fail_msg("uncommented shipped config refused: %s", msg);
	assert_defaults(&c);
	free(text);
}

/* ---- refusals, each with its line ---------------------------------------------- */

struct bad {
	const char *text;
	unsigned int line;
	const char *says;
};

static const struct bad bad_configs[] = {
	{ "[records]\nbackend = mysql\n", 2, "must be sqlite or postgresql" },
	{ "[records]\n\nbackend = postgresql\n", 3, "needs a conninfo" },
	{ "[records]\nconninfo = host=db password=secret\n", 2, "password" },
	{ "[records]\nconninfo = host=db PASSWORD = secret\n", 2, "password" },
	{ "[records]\nconninfo = postgresql://smpl:secret@db/clinic\n", 2, "password" },
	{ "[records]\nworkstation = room 1\n", 2, "workstation" },
	{ "[records]\nworkstation = a-name-that-is-longer-than-forty-characters-x\n", 2,
	  "workstation" },
	{ "[rules]\ncooldown_days = 41\n", 2, "shorten" },
	{ "[rules]\ncooldown_days = 0\n", 2, "cooldown_days = 0" },
	{ "\n[safety]\nenergy_tolerance_pct = 21\n", 3, "loosen" },
	{ "[safety]\nenergy_tolerance_pct = 0\n", 2, "energy_tolerance_pct" },
	{ "[bogus]\nkey = 1\n", 1, "[bogus]: unknown section" },
	{ "[rules]\ncooldown_days = 42\n\n[Rules]\n", 4, "[Rules]: unknown section" },
	{ "[protocol]\n[patchez]\n[safety]\n", 2, "[patchez]: unknown section" },
	{ "[rules]\n# comment\nbogus = 1\n", 3, "bogus: unknown key" },
	{ "[safety]\ncooldown_days = 42\n", 2, "unknown key" },
	{ "cooldown_days = 42\n", 1, "outside any section" },
	{ "[rules]\ncooldown_days = 4x2\n", 2, "not an unsigned decimal" },
	{ "[rules]\ncooldown_days = -42\n", 2, "not an unsigned decimal" },
	{ "[rules]\ncooldown_days = +42\n", 2, "not an unsigned decimal" },
	{ "[rules]\ncooldown_days =\n", 2, "not an unsigned decimal" },
	{ "[rules]\ncooldown_days = 99999999999\n", 2, "not an unsigned decimal" },
	{ "[rules]\ncooldown_days = 3651\n", 2, "above the maximum" },
	{ "[rules]\ncooldown_days = 42 # six weeks\n", 2, "not an unsigned decimal" },
	{ "[rules]\ntest_spot = maybe\n", 2, "not a boolean" },
	{ "[rules]\ntest_spot_pulses = 0\n", 2, "test_spot_pulses" },
	{ "[rules]\ntest_spot_review_days = 366\n", 2, "test_spot_review_days" },
	{ "[rules]\ncooldown_days = 50\ncooldown_days = 60\n", 3, "first on line 2" },
	{ "[rules]\ncooldown_days = 50\n  60\n", 3, "given again" },
	{ "[rules]\nthis is not ini\n", 2, "syntax error" },
	{ "[rules\ncooldown_days = 42\n", 1, "syntax error" },
	{ "[protocol]\nwavelengths_nm = 1064, abc\n", 2, "\"abc\"" },
	{ "[protocol]\nwavelengths_nm = 1064,532,755,1320,2940\n", 2, "more than 4" },
	{ "[protocol]\nwavelengths_nm = 1064, 1064\n", 2, "twice" },
	{ "[protocol]\nwavelengths_nm = 50\n", 2, "wavelengths_nm" },
	{ "[protocol]\nwavelengths_nm = ,\n", 2, "empty" },
	{ "[protocol]\nfluence_min_mj_cm2 = 5000\n\nfluence_max_mj_cm2 = 4000\n", 4,
	  "fluence_min_mj_cm2 (5000) is above fluence_max_mj_cm2 (4000)" },
	{ "[protocol]\nspot_max_um = 1000\n", 2, "spot_min_um" },
	{ "[protocol]\nspot_min_um = 70000\n", 2, "above the maximum" },
	{ "[protocol]\nqswitch_pulse_min_ns = 30\n", 2, "qswitch_pulse_min_ns" },
	{ "[protocol]\npico_pulse_max_ps = 200\n", 2, "pico_pulse_min_ps" },
	{ "[protocol]\nrate_max_mhz = 0\n", 2, "rate_max_mhz" },
	{ "[protocol]\npulses_per_patch = 0\n", 2, "pulses_per_patch" },
	{ "[protocol]\nmax_session_energy_j = 0\n", 2, "max_session_energy_j" },
	{ "[safety]\nheartbeat_ms = 2000\n", 2, "watchdog" },
	{ "[safety]\nheartbeat_ms = 10\n", 2, "heartbeat_ms" },
	{ "[safety]\nidle_timeout_s = 0\n", 2, "idle_timeout_s" },
	{ "[safety]\nrtc_max_skew_s = 0\n", 2, "rtc_max_skew_s" },
	{ "[patches]\nBad_Id = Label\n", 2, "not valid" },
	{ "[patches]\ncrown = Crown again\n", 2, "already defined" },
	{ "[patches]\nscar = Scar\nscar = Scar\n", 3, "already defined" },
	{ "[auth]\nsession_bus = anyone\n", 2, "same-uid or deny" },
	{ "[auth]\nallow_root = 2\n", 2, "not a boolean" },
	{ "[auth]\npolkit_timeout_s = 0\n", 2, "polkit_timeout_s = 0: below the minimum" },
	{ "[auth]\nallow_root = true\n\npolkit_timeout_s = 101\n", 4,
	  "smplaserctl waits 120 s" },
	{ "[auth]\npolkit_timeout_s = 4294967295\n", 2, "(allowed 1-100)" },
	{ "[auth]\npolkit_timeout_s = 2.5\n", 2, "not an unsigned decimal" },
	{ "[auth]\npolkit_timeout_s = -1\n", 2, "not an unsigned decimal" },
	{ "[auth]\npolkit_timeout_s = 20s\n", 2, "not an unsigned decimal" },
	{ "[auth]\npolkit_timeout_s = 5\npolkit_timeout_s = 6\n", 3, "first on line 2" },
	{ "[safety]\npolkit_timeout_s = 5\n", 2, "unknown key" },
	{ "[backends]\nlibusb = enabled\n", 2, "not a boolean" },
	{ "[backends]\nusb = true\n", 2, "unknown key" },
	{ "[rules]\nrequire_follow_up = sometimes\n", 2, "not a boolean" },
	{ "[clinic]\nname = The \x1b[31mRed\x1b[0m Clinic\n", 2, "printable" },
	{ "[clinic]\nname = An Extremely Long Clinic Name That Goes On And On Past Eighty "
	  "Characters Of Text, And Then Some More\n", 2, "0-80 bytes" },
	{ "[clinic]\nphone = 123\n", 2, "unknown key" },
};

static void test_bad_configs_refused_with_line(void **state)
{
	char msg[SMPL_CONFIG_MSG_MAX], prefix[32];
	struct smpl_config c;

	(void)state;
	for (size_t i = 0; i < sizeof(bad_configs) / sizeof(bad_configs[0]); i++) {
		const struct bad *b = &bad_configs[i];
		int r;

		memset(&c, 0x5a, sizeof(c));
		msg[0] = '\0';
		r = load(&c, b->text, msg, sizeof(msg));
		snprintf(prefix, sizeof(prefix), "test.conf:%u: ", b->line);
		if (r != -EINVAL || strncmp(msg, prefix, strlen(prefix)) || !strstr(msg, b->says))
			fail_msg("case %zu: got %d \"%s\", wanted -EINVAL \"%s...%s\"",
				 i, r, msg, prefix, b->says);
		assert_defaults(&c);	/* nothing half-applied */
	}
}

static void test_error_after_good_keys_applies_nothing(void **state)
{
	struct smpl_config c;
	char msg[SMPL_CONFIG_MSG_MAX];

	(void)state;
	assert_int_equal(load(&c, "[rules]\ncooldown_days = 90\ntest_spot = true\n"
			      "[safety]\nenergy_tolerance_pct = 30\n", msg, sizeof(msg)), -EINVAL);
	assert_non_null(strstr(msg, "test.conf:5: "));
	assert_defaults(&c);
}

static void test_long_line_refused(void **state)
{
	char text[512], msg[SMPL_CONFIG_MSG_MAX];
	struct smpl_config c;

	(void)state;
	snprintf(text, sizeof(text), "[rules]\n\n# %0300d\ncooldown_days = 30\n", 0);
	assert_int_equal(load(&c, text, msg, sizeof(msg)), -EINVAL);
	assert_non_null(strstr(msg, "test.conf:3: line longer than"));
}

static void test_file_error_names_path_and_line(void **state)
{
	char path[] = "/tmp/smplaserd-test-XXXXXX", msg[SMPL_CONFIG_MSG_MAX], want[64];
	struct smpl_config c;
	int fd = mkstemp(path);
	FILE *f;

	(void)state;
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	assert_non_null(f);
	fputs("# clinic config\n[rules]\ncooldown_days = 56\n\n[safety]\n"
	      "energy_tolerance_pct = 25\n", f);
	fclose(f);
	assert_int_equal(smpl_config_load(&c, path, msg, sizeof(msg)), -EINVAL);
	snprintf(want, sizeof(want), "%s:6: ", path);
	assert_true(strncmp(msg, want, strlen(want)) == 0);
	assert_non_null(strstr(msg, "energy_tolerance_pct = 25"));
	unlink(path);
}

/* ---- what a clinic may change ------------------------------------------------ */

static void test_accepted_values(void **state)
{
	struct smpl_config c;
	char msg[SMPL_CONFIG_MSG_MAX];
	const char *text =
		"[rules]\n"
		"cooldown_days = 56\n"
		"test_spot = YES\n"
		"test_spot_pulses = 10\n"
		"test_spot_review_days = 21\n"
		"require_follow_up = false\n"
		"[protocol]\n"
		"wavelengths_nm = 1064 , 532\n"
		"fluence_min_mj_cm2 = 2000\n"
		"fluence_max_mj_cm2 = 8000\n"
		"spot_min_um = 2500\n"
		"spot_max_um = 4000\n"
		"qswitch_pulse_min_ns = 6\n"
		"qswitch_pulse_max_ns = 20\n"
		"pico_pulse_min_ps = 350\n"
		"pico_pulse_max_ps = 700\n"
		"rate_max_mhz = 5000\n"
		"pulses_per_patch = 1500\n"
		"max_session_energy_j = 2500\n"
		"[safety]\n"
		"heartbeat_ms = 250\n"
		"idle_timeout_s = 30 ; half a minute\n"
		"energy_tolerance_pct = 15\n"
		"rtc_max_skew_s = 120\n"
		"[patches]\n"
		"scar-left = Scar, left side\n"
		"donor-area = Donor area\n"
		"[auth]\n"
		"allow_root = off\n"
		"session_bus = deny\n"
		"polkit_timeout_s = 45\n"
		"[backends]\n"
		"kmod = 1\n"
		"libusb = no\n"
		"sim = on\n"
		"[clinic]\n"
		"name = Clinique \xc3\x89toile, Lyon\n";
	struct smpl_safety_limits l;

	(void)state;
	if (load(&c, text, msg, sizeof(msg)) != SMPL_CONFIG_LOADED)
		fail_msg("refused: %s", msg);
	assert_int_equal(c.rules.cooldown_days, 56);
	assert_true(c.rules.test_spot);
	assert_int_equal(c.rules.test_spot_pulses, 10);
	assert_int_equal(c.rules.test_spot_review_days, 21);
	assert_false(c.rules.require_follow_up);
	assert_string_equal(c.clinic.name, "Clinique \xc3\x89toile, Lyon");
	assert_int_equal(c.protocol.n_wavelengths, 2);
	assert_int_equal(c.protocol.wavelengths_nm[0], 1064);
	assert_int_equal(c.protocol.wavelengths_nm[1], 532);
	assert_int_equal(c.protocol.fluence_min_mj_cm2, 2000);
	assert_int_equal(c.protocol.fluence_max_mj_cm2, 8000);
	assert_int_equal(c.protocol.spot_min_um, 2500);
	assert_int_equal(c.protocol.spot_max_um, 4000);
	assert_int_equal(c.protocol.qswitch_pulse_min_ps, 6000);
	assert_int_equal(c.protocol.qswitch_pulse_max_ps, 20000);
	assert_int_equal(c.protocol.pico_pulse_min_ps, 350);
	assert_int_equal(c.protocol.pico_pulse_max_ps, 700);
	assert_int_equal(c.protocol.rate_max_mhz, 5000);
	assert_int_equal(c.protocol.pulses_per_patch, 1500);
	assert_true(c.protocol.max_session_energy_uj == 2500ULL * 1000000);
	assert_int_equal(c.safety.heartbeat_ms, 250);
	assert_int_equal(c.safety.idle_timeout_s, 30);
	assert_int_equal(c.safety.energy_tolerance_pct, 15);
	assert_int_equal(c.safety.rtc_max_skew_s, 120);
	assert_int_equal(c.patches.count, SMPL_PATCHES_BUILTIN + 2);
	assert_string_equal(smpl_patches_find(&c.patches, "scar-left")->label, "Scar, left side");
	assert_non_null(smpl_patches_find(&c.patches, "donor-area"));
	assert_non_null(smpl_patches_find(&c.patches, "crown"));
	assert_false(c.auth.allow_root);
	assert_int_equal(c.auth.session_bus, SMPL_SESSION_BUS_DENY);
	assert_int_equal(c.auth.polkit_timeout_s, 45);
	assert_true(c.backends.kmod);
	assert_false(c.backends.libusb);
	assert_true(c.backends.sim);

	smpl_config_safety_limits(&c, &l);
	assert_int_equal(l.idle_timeout_s, 30);
	assert_int_equal(l.energy_tolerance_pct, 15);
	assert_int_equal(l.rtc_max_skew_s, 120);
	assert_int_equal(l.pulses_per_patch, 1500);
	assert_true(l.max_session_energy_uj == 2500ULL * 1000000);
}

static void test_cooldown_boundaries(void **state)
{
	struct smpl_config c;
	char msg[SMPL_CONFIG_MSG_MAX];

	(void)state;
	assert_int_equal(load(&c, "[rules]\ncooldown_days = 42\n", msg, sizeof(msg)),
			 SMPL_CONFIG_LOADED);
	assert_int_equal(c.rules.cooldown_days, 42);
	assert_int_equal(load(&c, "[rules]\ncooldown_days = 43\n", msg, sizeof(msg)),
			 SMPL_CONFIG_LOADED);
	assert_int_equal(c.rules.cooldown_days, 43);
	assert_int_equal(load(&c, "[rules]\ncooldown_days = 3650\n", msg, sizeof(msg)),
			 SMPL_CONFIG_LOADED);
	assert_int_equal(load(&c, "[safety]\nenergy_tolerance_pct = 20\n", msg, sizeof(msg)),
			 SMPL_CONFIG_LOADED);
	assert_int_equal(load(&c, "[safety]\nenergy_tolerance_pct = 1\n", msg, sizeof(msg)),
			 SMPL_CONFIG_LOADED);
	assert_int_equal(c.safety.energy_tolerance_pct, 1);
}

/* The polkit wait: 1-100 s, both ends accepted, 0 and 101 refused. */
static void test_polkit_timeout_boundaries(void **state)
{
	struct smpl_config c;
	char msg[SMPL_CONFIG_MSG_MAX];

	(void)state;
	assert_int_equal(load(&c, "[auth]\npolkit_timeout_s = 1\n", msg, sizeof(msg)),
			 SMPL_CONFIG_LOADED);
	assert_int_equal(c.auth.polkit_timeout_s, 1);
	assert_int_equal(load(&c, "[auth]\npolkit_timeout_s = 100\n", msg, sizeof(msg)),
			 SMPL_CONFIG_LOADED);
	assert_int_equal(c.auth.polkit_timeout_s, 100);
	assert_int_equal(load(&c, "[auth]\npolkit_timeout_s = 020\n", msg, sizeof(msg)),
			 SMPL_CONFIG_LOADED);
	assert_int_equal(c.auth.polkit_timeout_s, 20);
	assert_int_equal(load(&c, "[auth]\npolkit_timeout_s = 0\n", msg, sizeof(msg)), -EINVAL);
	assert_int_equal(c.auth.polkit_timeout_s, 20);		/* the default, untouched */
	assert_int_equal(load(&c, "[auth]\npolkit_timeout_s = 101\n", msg, sizeof(msg)),
			 -EINVAL);
	assert_non_null(strstr(msg, "test.conf:2: [auth] polkit_timeout_s = 101"));
}

/* S7: whatever the file holds, a clear answer and never a crash. */
static uint64_t rng = 0x2545f4914f6cdd1dULL;

static uint32_t rnd(uint32_t n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng % n);
}

static void test_random_input_never_crashes(void **state)
{
	static const char *const pieces[] = {
		"[rules]", "[protocol]", "[safety]", "[patches]", "[auth]", "[backends]",
		"[", "]", "[]", "=", " = ", "cooldown_days", "energy_tolerance_pct",
		"wavelengths_nm", "test_spot", "session_bus", "crown", "42", "20", "-1",
		"99999999999999999999", "true", "no", ",", ";", "#", " ", "\t", "\n",
		"\n", "\n", "\r\n", "\xef\xbb\xbf", "\xff", "same-uid", "1064, 532",
	};
	char text[1024], msg[SMPL_CONFIG_MSG_MAX];
	struct smpl_config c;
	unsigned int loaded = 0, refused = 0;

	(void)state;
	for (int i = 0; i < 20000; i++) {
		size_t len = 0, lines = 1;
		unsigned int line;
		int r, n = (int)rnd(40);

		for (int j = 0; j < n; j++) {
			const char *piece = pieces[rnd(sizeof(pieces) / sizeof(pieces[0]))];
			char byte[2] = { (char)(1 + rnd(255)), 0 };

			if (rnd(8) == 0)
				piece = byte;
			if (len + strlen(piece) >= sizeof(text))
				break;
			memcpy(text + len, piece, strlen(piece));
			len += strlen(piece);
		}
		text[len] = '\0';
		for (size_t k = 0; k < len; k++)
			lines += text[k] == '\n';
		msg[0] = '\0';
		r = smpl_config_load_string(&c, text, "fuzz.conf", msg, sizeof(msg));
		if (r == SMPL_CONFIG_LOADED) {
			loaded++;
			assert_true(c.rules.cooldown_days >= 42);
			assert_true(c.safety.energy_tolerance_pct <= 20);
			continue;
		}
		refused++;
		if (r != -EINVAL || sscanf(msg, "fuzz.conf:%u: ", &line) != 1 ||
		    line < 1 || line > lines)
			fail_msg("input %d: %d \"%s\"", i, r, msg);
		assert_int_equal(c.rules.cooldown_days, 42);
	}
	assert_true(loaded > 100);
	assert_true(refused > 100);
}

/* ---- issue 15: simulated units on the system bus, the settings in force ---------- */

/* [backends] sim = true is refused on the system bus, with the file and its line. */
/* [records]: the clinic's PostgreSQL, named by a conninfo without a password. */
static void test_records_section(void **state)
{
	char msg[SMPL_CONFIG_MSG_MAX];
	struct smpl_config c;

	(void)state;
	assert_int_equal(load(&c, "[records]\nbackend = postgresql\n"
			      "conninfo = service=smplaser sslmode=verify-full\n"
			      "workstation = room-1.a_b\n", msg, sizeof(msg)), SMPL_CONFIG_LOADED);
	assert_int_equal(c.records.backend, SMPL_RECORDS_POSTGRESQL);
	assert_string_equal(c.records.conninfo, "service=smplaser sslmode=verify-full");
	assert_string_equal(c.records.workstation, "room-1.a_b");
	/* The clinical record is kept there too (schema step 3): the follow-up rule holds. */
	assert_true(c.rules.require_follow_up);
	assert_int_equal(load(&c, "[rules]\nrequire_follow_up = true\n[records]\n"
			      "backend = postgresql\nconninfo = x\n", msg, sizeof(msg)),
			 SMPL_CONFIG_LOADED);
	assert_true(c.rules.require_follow_up);
	assert_int_equal(load(&c, "[rules]\nrequire_follow_up = false\n[records]\n"
			      "backend = postgresql\nconninfo = x\n", msg, sizeof(msg)),
			 SMPL_CONFIG_LOADED);
	assert_false(c.rules.require_follow_up);
	assert_int_equal(load(&c, "[records]\nbackend = postgresql\n"
			      "conninfo = postgresql://smpl@db.clinic.lan/clinic?sslmode=verify-full\n",
			      msg, sizeof(msg)), SMPL_CONFIG_LOADED);
	assert_int_equal(load(&c, "[records]\nbackend = sqlite\nworkstation =\n", msg,
			      sizeof(msg)), SMPL_CONFIG_LOADED);
	assert_true(c.records.workstation[0]);	/* empty: the host name */
}

static void test_sim_refused_on_system_bus(void **state)
{
	struct smpl_config c;
	char msg[SMPL_CONFIG_MSG_MAX] = "";

	(void)state;
	assert_int_equal(load(&c, "[backends]\nkmod = true\n\nsim = yes\n", msg, sizeof(msg)),
			 SMPL_CONFIG_LOADED);
	assert_true(c.backends.sim);
	assert_int_equal(c.backends.sim_line, 4);
	assert_int_equal(smpl_config_check_system_bus(&c, "/etc/x.conf", msg, sizeof(msg)),
			 -EINVAL);
	assert_non_null(strstr(msg, "/etc/x.conf:4: [backends] sim = true"));
	assert_non_null(strstr(msg, "system bus"));

	assert_int_equal(load(&c, "[backends]\nsim = false\n", msg, sizeof(msg)),
			 SMPL_CONFIG_LOADED);
	assert_int_equal(smpl_config_check_system_bus(&c, "/etc/x.conf", msg, sizeof(msg)), 0);
	smpl_config_defaults(&c);
	assert_int_equal(smpl_config_check_system_bus(&c, NULL, msg, sizeof(msg)), 0);
}

/* Every safety-relevant setting is in the description, with its value. */
static void test_describe_settings(void **state)
{
	static const char *const want[] = {
		"cooldown_days=56 ", "test_spot=true ", "test_spot_pulses=20 ",
		"test_spot_review_days=14 ", "wavelengths_nm=1064,532 ",
		"fluence_mj_cm2=1000-8000 ", "spot_um=2000-6000 ", "qswitch_pulse_ns=5-25 ",
		"pico_pulse_ps=300-750 ", "rate_max_mhz=10000 ", "pulses_per_patch=3000 ",
		"max_session_energy_j=10000 ", "heartbeat_ms=300 ", "idle_timeout_s=60 ",
		"energy_tolerance_pct=15 ", "rtc_max_skew_s=300 ", "allow_root=false ",
		"session_bus=deny ", "polkit_timeout_s=20 ", "kmod=true ", "libusb=false ",
		"sim=false ", "clinic_patches=1",
	};
	struct smpl_config c;
	char msg[SMPL_CONFIG_MSG_MAX] = "", buf[1024];
	int n;

	(void)state;
	assert_int_equal(load(&c, "[rules]\ncooldown_days = 56\ntest_spot = true\n"
			      "[protocol]\nwavelengths_nm = 1064,532\nfluence_max_mj_cm2 = 8000\n"
			      "[safety]\nheartbeat_ms = 300\nenergy_tolerance_pct = 15\n"
			      "[patches]\nscar-left = Scar, left side\n"
			      "[auth]\nallow_root = false\nsession_bus = deny\n"
			      "[backends]\nlibusb = false\n", msg, sizeof(msg)),
			 SMPL_CONFIG_LOADED);
	n = smpl_config_describe(&c, buf, sizeof(buf));
	assert_true(n > 0 && (size_t)n < sizeof(buf));
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		if (!strstr(buf, want[i]))
			fail_msg("no \"%s\" in \"%s\"", want[i], buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_missing_file_means_defaults),
		cmocka_unit_test(test_unreadable_path_refused),
		cmocka_unit_test(test_shipped_file_is_defaults),
		cmocka_unit_test(test_shipped_file_documents_every_key),
		cmocka_unit_test(test_bad_configs_refused_with_line),
		cmocka_unit_test(test_error_after_good_keys_applies_nothing),
		cmocka_unit_test(test_long_line_refused),
		cmocka_unit_test(test_file_error_names_path_and_line),
		cmocka_unit_test(test_accepted_values),
		cmocka_unit_test(test_cooldown_boundaries),
		cmocka_unit_test(test_polkit_timeout_boundaries),
		cmocka_unit_test(test_random_input_never_crashes),
		cmocka_unit_test(test_sim_refused_on_system_bus),
		cmocka_unit_test(test_records_section),
		cmocka_unit_test(test_describe_settings),
	};

	return cmocka_run_group_tests_name("test_config", tests, NULL, NULL);
}
