/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness: the config parser (daemon/config.c, libinih) on any
 * text.  Oracles besides the sanitizers: a config that loads never
 * shortens the 42-day cooldown or loosens the energy tolerance, keeps its
 * ranges ordered, and a refused one leaves the defaults and a message.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void must(bool ok)
{
	if (!ok)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smpl_config c, defaults;
	char msg[SMPL_CONFIG_MSG_MAX];
	char *text;
	int r;

	text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	msg[0] = '\0';
	r = smpl_config_load_string(&c, text, "fuzz.conf", msg, sizeof(msg));
	free(text);

	must(memchr(msg, 0, sizeof(msg)) != NULL);
	if (r < 0) {
		smpl_config_defaults(&defaults);
		must(msg[0] != '\0');
		must(c.rules.cooldown_days == defaults.rules.cooldown_days);
		must(c.safety.energy_tolerance_pct == defaults.safety.energy_tolerance_pct);
		must(c.patches.count == defaults.patches.count);
		return 0;
	}
	must(r == SMPL_CONFIG_LOADED);
	must(c.rules.cooldown_days >= SMPL_COOLDOWN_DAYS_MIN);
	must(c.safety.energy_tolerance_pct <= 20);
	must(c.protocol.n_wavelengths >= 1 &&
	     c.protocol.n_wavelengths <= SMPL_PROTOCOL_WAVELENGTHS_MAX);
	must(c.protocol.fluence_min_mj_cm2 <= c.protocol.fluence_max_mj_cm2);
	must(c.protocol.spot_min_um <= c.protocol.spot_max_um);
	must(c.protocol.qswitch_pulse_min_ps <= c.protocol.qswitch_pulse_max_ps);
	must(c.protocol.pico_pulse_min_ps <= c.protocol.pico_pulse_max_ps);
	must(c.patches.count >= SMPL_PATCHES_BUILTIN &&
	     c.patches.count <= SMPL_PATCHES_MAX);
	for (size_t i = 0; i < c.patches.count; i++)
		must(smpl_patch_id_valid(c.patches.list[i].id));
	{
		struct smpl_safety_limits l;

		smpl_config_safety_limits(&c, &l);
	}
	return 0;
}
