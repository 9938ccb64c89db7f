/* SPDX-License-Identifier: MIT */
/* A simulated unit: the firmware model in-process (backend-sim.c). */
#ifndef SMPLASER_DAEMON_BACKEND_SIM_H
#define SMPLASER_DAEMON_BACKEND_SIM_H

#include <stdint.h>

#include <systemd/sd-event.h>

#include "backend.h"

/*
 * A simulated unit numbered @index (serial "SIM" + 5 digits, so the same
 * index comes back with the same serial).  When @nv_dir is set, the unit's
 * battery-backed state (shot counter, RTC skew) lives in
 * @nv_dir/sim-<serial>.nv and survives the daemon, and every pulse it fires
 * is appended to @nv_dir/sim-<serial>.fired as it fires.  @emission_delay_ms,
 * @idle_timeout_ms: 0 keeps the model's defaults.
 */
struct smpl_sim_options {
	unsigned int index;
	const char *nv_dir;
	uint32_t emission_delay_ms;
	uint32_t idle_timeout_ms;
	/*
	 * A reply that never comes (a hostile unit, DropNextReply) is waited
	 * for this long, in the caller's thread, as a bulk transfer would be;
	 * 0: at once.
	 */
	uint32_t reply_timeout_ms;
};
#define SMPL_SIM_REPLY_TIMEOUT_MS	500	/* as the kmod and libusb backends */
int smpl_backend_sim_new(sd_event *event, const struct smpl_sim_options *opt,
			 smpl_backend_event_fn on_event, void *userdata,
			 struct smpl_backend **ret);

#endif /* SMPLASER_DAEMON_BACKEND_SIM_H */
