/* SPDX-License-Identifier: MIT */
/*
 * Finding real laser units (libudev) and choosing the backend that drives
 * each (backend-kmod.h, backend-libusb.h).
 *
 * Discovery enables its udev monitor first, then enumerates, so a unit
 * plugged in between the two is not missed.  Each unit is one USB device
 * with our VID:PID; it is driven by
 *   kmod     when the smplaser driver is bound to its interface and
 *            /dev/smplaserN exists (class "smplaser");
 *   libusb   when its interface is bound to no driver (the module is not
 *            loaded, was unloaded, or the interface was unbound), after a
 *            settle delay when the smplaser driver is registered (its probe
 *            may still be running); never while another driver holds it;
 *   nothing  otherwise, or when the config turns that backend off.
 * Add, remove, unbind, bind and rmmod re-evaluate the unit: its backend is
 * replaced or dropped through the callbacks below.
 *
 * The monitor listens to udevd ("udev" netlink source) when udevd runs
 * (/run/udev/control exists), else to the kernel's own uevents ("kernel"
 * source): the VM test guest has no udevd.
 */
#ifndef SMPLASER_DAEMON_DISCOVERY_H
#define SMPLASER_DAEMON_DISCOVERY_H

#include <stdbool.h>
#include <stdint.h>

#include <systemd/sd-event.h>

#include "backend.h"

struct smplaser_info;
struct smplaser_status;
struct smplaser_event;

/* --- discovery ------------------------------------------------------------------ */

enum smpl_disc_kind {
	SMPL_DISC_NONE = 0,
	SMPL_DISC_KMOD,
	SMPL_DISC_LIBUSB,
	SMPL_DISC_WAIT,		/* decide again later */
};

struct smpl_discovery_config {
	bool kmod;		/* use /dev/smplaserN */
	bool libusb;		/* use unbound interfaces through libusb */
	uint32_t settle_ms;	/* how long a registered driver may take to bind (0: 1000) */
	const char *source;	/* "udev", "kernel" or NULL: udev when udevd runs */
};

struct smpl_discovery_callbacks {
	/*
	 * A unit to drive: @b is new and not opened; the callee owns it from
	 * now on (and frees it, also on failure).  @key names the USB device
	 * (its sysfs path).  Returns the daemon's handle for it, or NULL when
	 * it could not adopt it.
	 */
	void *(*add)(void *userdata, const char *key, struct smpl_backend *b);
	/* The unit behind @handle is gone or changes backend: drop it now. */
	void (*remove)(void *userdata, void *handle);
};

struct smpl_discovery;

int smpl_discovery_new(sd_event *event, const struct smpl_discovery_config *cfg,
		       const struct smpl_discovery_callbacks *cb, void *userdata,
		       struct smpl_discovery **ret);
/* Stops watching and frees; no remove callbacks (the daemon frees its units). */
void smpl_discovery_free(struct smpl_discovery *disc);
/* "udev" or "kernel": which uevents the monitor listens to. */
const char *smpl_discovery_source(const struct smpl_discovery *disc);

/*
 * The decision for one USB device, from facts read from sysfs (pure; the
 * unit tests drive it).  On SMPL_DISC_WAIT, *@wait_ms says for how long.
 */
struct smpl_disc_facts {
	bool present;			/* the device still exists */
	bool is_unit;			/* our VID:PID with the vendor interface */
	bool has_node;			/* a class smplaser device under it */
	const char *intf_driver;	/* the interface's driver, NULL: none */
	bool kmod_registered;		/* /sys/bus/usb/drivers/smplaser exists */
	bool ours_libusb;		/* we hold it through libusb right now */
	uint64_t unbound_for_ms;	/* how long it has been seen unbound */
};
enum smpl_disc_kind smpl_discovery_choose(const struct smpl_disc_facts *f,
					  const struct smpl_discovery_config *cfg,
					  uint64_t *wait_ms);
const char *smpl_disc_kind_name(enum smpl_disc_kind k);

/* --- kmod backend internals, for the unit tests ------------------------------------- */

enum smpl_kmod_verdict {
	SMPL_KMOD_IGNORE,
	SMPL_KMOD_STATUS,	/* deliver the updated status */
	SMPL_KMOD_PULSE,	/* deliver the pulse */
	SMPL_KMOD_RESYNC,	/* ask GET_STATUS (lost or unusable events) */
	SMPL_KMOD_DISCONNECT,
	SMPL_KMOD_LOG,		/* the driver disarmed: log it */
};
int smpl_kmod_errno_to_status(int err);
int smpl_kmod_info_to_native(const struct smplaser_info *in, struct smpl_info_n *out);
int smpl_kmod_status_to_native(const struct smplaser_status *in,
			       struct smpl_status_n *out);
enum smpl_kmod_verdict smpl_kmod_apply_event(const struct smplaser_event *ev,
					     struct smpl_status_n *st,
					     struct smpl_pulse_n *pulse);

#endif /* SMPLASER_DAEMON_DISCOVERY_H */
