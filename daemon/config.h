/* SPDX-License-Identifier: MIT */
/*
 * smplaserd's configuration: /etc/smplaser/smplaserd.conf, INI (libinih).
 * data/smplaserd.conf documents every key with its default.
 *
 * Sections and keys (defaults in brackets):
 *   [rules]     cooldown_days [42] (may only lengthen: < 42 is refused),
 *               test_spot [false], test_spot_pulses [20],
 *               test_spot_review_days [14], require_follow_up [true]
 *   [protocol]  wavelengths_nm [1064] (comma-separated, up to 4),
 *               fluence_min_mj_cm2 [1000], fluence_max_mj_cm2 [10000],
 *               spot_min_um [2000], spot_max_um [6000],
 *               qswitch_pulse_min_ns [5], qswitch_pulse_max_ns [25],
 *               pico_pulse_min_ps [300], pico_pulse_max_ps [750],
 *               rate_max_mhz [10000] (millihertz),
 *               pulses_per_patch [3000], max_session_energy_j [10000]
 *   [safety]    heartbeat_ms [500], idle_timeout_s [60],
 *               energy_tolerance_pct [20] (may only tighten: > 20 refused),
 *               rtc_max_skew_s [300]
 *   [patches]   <id> = <label>: clinic-defined patches (see patches.h)
 *   [auth]      allow_root [true]: uid 0 may act when polkit is absent;
 *               session_bus [same-uid]: on a session bus, "same-uid" (the
 *               daemon's own uid may act) or "deny" (nobody may);
 *               polkit_timeout_s [20] (1-100): how long a call waits for
 *               polkit's answer before it is denied
 *   [backends]  kmod [true], libusb [true], sim [false]
 *   [records]   backend [sqlite]: sqlite (the embedded database in the state
 *               directory) or postgresql (the clinic's database, store-pg.h);
 *               conninfo: a libpq connection string (postgresql; no password:
 *               libpq's password or service file); workstation [the host
 *               name]: this workstation's name in the clinic's records,
 *               1-40 characters of [A-Za-z0-9._-]
 *   [clinic]    name [""]: the clinic's name on the patient's report
 *
 * Booleans: true/false, yes/no, on/off, 1/0.  Integers: decimal, no sign,
 * no trailing garbage.  A key given twice, an unknown section or key, a bad
 * value, a shortened cooldown or a loosened tolerance is refused.
 */
#ifndef SMPLASER_DAEMON_CONFIG_H
#define SMPLASER_DAEMON_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "patches.h"
#include "rules.h"
#include "safety.h"

#define SMPL_CONFIG_PATH	"/etc/smplaser/smplaserd.conf"
#define SMPL_CONFIG_MSG_MAX	320	/* a good size for message buffers */
#define SMPL_CLINIC_NAME_MAX	80	/* bytes of [clinic] name */

enum smpl_session_bus_auth {
	SMPL_SESSION_BUS_SAME_UID = 0,
	SMPL_SESSION_BUS_DENY,
};

enum smpl_records_backend {
	SMPL_RECORDS_SQLITE = 0,
	SMPL_RECORDS_POSTGRESQL,
};

#define SMPL_CONNINFO_MAX	1024
#define SMPL_WORKSTATION_MAX	40

struct smpl_config {
	struct smpl_rules_cfg rules;
	struct smpl_protocol protocol;
	struct {
		uint32_t heartbeat_ms;
		uint32_t idle_timeout_s;
		uint32_t energy_tolerance_pct;
		uint32_t rtc_max_skew_s;
	} safety;
	struct smpl_patches patches;	/* built-in + [patches] */
	struct {
		bool allow_root;
		enum smpl_session_bus_auth session_bus;
		uint32_t polkit_timeout_s;
	} auth;
	struct {
		bool kmod;
		bool libusb;
		bool sim;
		unsigned int sim_line;	/* the line that set sim; 0: the default */
	} backends;
	struct {
		enum smpl_records_backend backend;
		char conninfo[SMPL_CONNINFO_MAX + 1];
		char workstation[SMPL_WORKSTATION_MAX + 1];
	} records;
	struct {
		char name[SMPL_CLINIC_NAME_MAX + 1];	/* "" if not set */
	} clinic;
};

/* Every default (built-in patches included). */
void smpl_config_defaults(struct smpl_config *c);

enum smpl_config_result {
	SMPL_CONFIG_LOADED = 0,		/* the file was read */
	SMPL_CONFIG_DEFAULTS = 1,	/* no such file: defaults, @msg says so */
};

/*
 * Load @path (NULL: SMPL_CONFIG_PATH) into @c.  Returns SMPL_CONFIG_LOADED
 * or SMPL_CONFIG_DEFAULTS (with a message), or a negative errno when the
 * config is refused: -EINVAL with "<path>:<line>: <reason>" in @msg, or the
 * open error (-EACCES, ...) with "<path>: <reason>".  On refusal @c holds
 * defaults; the daemon must not start.
 */
int smpl_config_load(struct smpl_config *c, const char *path,
		     char *msg, size_t msg_len);

/* The same from a string; @name is used in messages in place of a path. */
int smpl_config_load_string(struct smpl_config *c, const char *text,
			    const char *name, char *msg, size_t msg_len);

/*
 * Simulated units on the system bus would put simulated treatments into the
 * clinic's records and start real cooldowns for real patient ids: with
 * [backends] sim = true, returns -EINVAL and "<path>:<line>: <reason>" in
 * @msg (@path as given to smpl_config_load).  0 otherwise.
 */
int smpl_config_check_system_bus(const struct smpl_config *c, const char *path,
				 char *msg, size_t msg_len);

/*
 * The safety-relevant settings in force, one line of "key=value" words (for
 * the journal and the audit trail at start).  Returns snprintf's count.
 */
int smpl_config_describe(const struct smpl_config *c, char *buf, size_t len);

/* The safety core's limits from a loaded config. */
void smpl_config_safety_limits(const struct smpl_config *c,
			       struct smpl_safety_limits *l);

#endif /* SMPLASER_DAEMON_CONFIG_H */
