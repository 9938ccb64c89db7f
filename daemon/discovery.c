/* SPDX-License-Identifier: MIT */
/*
 * Discovery of real units with libudev (see discovery.h for the rules).
 *
 * Every USB device with our VID:PID gets an entry, keyed by its sysfs path.
 * Any uevent at or below (or above) a known device, and any new USB device,
 * makes us read the facts again from sysfs and decide: kmod, libusb,
 * nothing, or wait a little.  When the decision differs from what drives
 * the unit now, the old backend is dropped before the new one is made, so
 * one physical unit never has two backends (nor two D-Bus objects).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libudev.h>

#include <smplaser/proto.h>

#include "backend-kmod.h"
#include "backend-libusb.h"
#include "discovery.h"
#include "log.h"

#define DEFAULT_SETTLE_MS	1000
#define RETRY_MAX_MS		30000	/* a unit whose backend keeps failing */
#define UNIT_VID		"1209"
#define UNIT_PID		"534c"
#define KMOD_DRIVER_DIR		"/sys/bus/usb/drivers/smplaser"
#define UDEVD_CONTROL		"/run/udev/control"
#define USBFS_DRIVER		"usbfs"

struct entry {
	struct entry *next;
	struct smpl_discovery *disc;
	char *key;			/* the USB device's syspath */
	enum smpl_disc_kind kind;	/* what drives it now: NONE, KMOD or LIBUSB */
	char *devnode;			/* the node its backend opened */
	void *handle;			/* the daemon's, from the add callback */
	uint64_t unbound_since_ms;	/* 0: not seen unbound */
	unsigned int failures;		/* backends that would not start, in a row */
	sd_event_source *retry;		/* SMPL_DISC_WAIT */
};

struct smpl_discovery {
	sd_event *event;
	struct smpl_discovery_config cfg;
	struct smpl_discovery_callbacks cb;
	void *userdata;
	struct udev *udev;
	struct udev_monitor *monitor;
	sd_event_source *monitor_src;
	const char *source;
	struct entry *entries;
};

const char *smpl_disc_kind_name(enum smpl_disc_kind k)
{
	switch (k) {
	case SMPL_DISC_KMOD:
		return "kmod";
	case SMPL_DISC_LIBUSB:
		return "libusb";
	case SMPL_DISC_WAIT:
		return "wait";
	case SMPL_DISC_NONE:
		break;
	}
	return "none";
}

/* --- the decision ---------------------------------------------------------------- */

enum smpl_disc_kind smpl_discovery_choose(const struct smpl_disc_facts *f,
					  const struct smpl_discovery_config *cfg,
					  uint64_t *wait_ms)
{
	uint64_t settle = cfg->settle_ms ? cfg->settle_ms : DEFAULT_SETTLE_MS;

	*wait_ms = 0;
	if (!f->present || !f->is_unit)
		return SMPL_DISC_NONE;
	if (f->has_node)
		return cfg->kmod ? SMPL_DISC_KMOD : SMPL_DISC_NONE;
	if (f->intf_driver) {
		if (strcmp(f->intf_driver, USBFS_DRIVER) == 0 && f->ours_libusb)
			return cfg->libusb ? SMPL_DISC_LIBUSB : SMPL_DISC_NONE;
		if (strcmp(f->intf_driver, "smplaser") == 0 && cfg->kmod) {
			*wait_ms = settle;	/* bound, its node not there yet */
			return SMPL_DISC_WAIT;
		}
		return SMPL_DISC_NONE;		/* someone else holds it */
	}
	if (!cfg->libusb)
		return SMPL_DISC_NONE;
	/* Unbound: the registered driver may still be probing it. */
	if (f->kmod_registered && cfg->kmod && f->unbound_for_ms < settle) {
		*wait_ms = settle - f->unbound_for_ms;
		return SMPL_DISC_WAIT;
	}
	return SMPL_DISC_LIBUSB;
}

/* --- facts from sysfs ------------------------------------------------------------- */

static uint64_t now_ms(struct smpl_discovery *disc)
{
	uint64_t usec = 0;

	(void)sd_event_now(disc->event, CLOCK_MONOTONIC, &usec);
	return usec / 1000;
}

static bool attr_is(struct udev_device *dev, const char *attr, const char *want)
{
	const char *v = udev_device_get_sysattr_value(dev, attr);

	return v && strcmp(v, want) == 0;
}

static bool is_unit_interface(struct udev_device *intf)
{
	return attr_is(intf, "bInterfaceClass", "ff") &&
	       attr_is(intf, "bInterfaceSubClass", "01");
}

/* The first child of @parent in @subsystem (and @devtype) that @pick accepts. */
static struct udev_device *find_child(struct smpl_discovery *disc,
				      struct udev_device *parent, const char *subsystem,
				      const char *devtype,
				      bool (*pick)(struct udev_device *))
{
	struct udev_enumerate *en = udev_enumerate_new(disc->udev);
	struct udev_list_entry *le;
	struct udev_device *found = NULL;

	if (!en)
		return NULL;
	if (udev_enumerate_add_match_parent(en, parent) < 0 ||
	    udev_enumerate_add_match_subsystem(en, subsystem) < 0 ||
	    udev_enumerate_scan_devices(en) < 0)
		goto out;
	udev_list_entry_foreach(le, udev_enumerate_get_list_entry(en)) {
		struct udev_device *d =
			udev_device_new_from_syspath(disc->udev, udev_list_entry_get_name(le));
		const char *dt;

		if (!d)
			continue;
		dt = udev_device_get_devtype(d);
		if ((!devtype || (dt && strcmp(dt, devtype) == 0)) && (!pick || pick(d))) {
			found = d;
			break;
		}
		udev_device_unref(d);
	}
out:
	udev_enumerate_unref(en);
	return found;
}

static bool has_devnode(struct udev_device *d)
{
	return udev_device_get_devnode(d) != NULL;
}

/*
 * Reads the facts about @key.  @node gets the node to open for KMOD (the
 * class device's) or LIBUSB (the USB device's), malloc'ed.
 */
static void read_facts(struct smpl_discovery *disc, struct entry *e,
		       struct smpl_disc_facts *f, char **kmod_node, char **usb_node,
		       char **driver)
{
	struct udev_device *usb, *intf = NULL, *node = NULL;
	const char *drv, *dn;

	memset(f, 0, sizeof(*f));
	*kmod_node = *usb_node = *driver = NULL;
	usb = udev_device_new_from_syspath(disc->udev, e->key);
	if (!usb)
		return;
	f->present = true;
	f->kmod_registered = access(KMOD_DRIVER_DIR, F_OK) == 0;
	f->ours_libusb = e->kind == SMPL_DISC_LIBUSB;
	if (!attr_is(usb, "idVendor", UNIT_VID) || !attr_is(usb, "idProduct", UNIT_PID))
		goto out;
	intf = find_child(disc, usb, "usb", "usb_interface", is_unit_interface);
	if (!intf)
		goto out;
	f->is_unit = true;
	dn = udev_device_get_devnode(usb);
	if (dn)
		*usb_node = strdup(dn);
	drv = udev_device_get_driver(intf);
	if (drv) {
		*driver = strdup(drv);
		f->intf_driver = *driver;
	}
	node = find_child(disc, intf, "smplaser", NULL, has_devnode);
	if (node) {
		f->has_node = true;
		*kmod_node = strdup(udev_device_get_devnode(node));
	}
	if (f->intf_driver) {
		e->unbound_since_ms = 0;
	} else {
		if (!e->unbound_since_ms)
			e->unbound_since_ms = now_ms(disc);
		f->unbound_for_ms = now_ms(disc) - e->unbound_since_ms;
	}
out:
	udev_device_unref(node);
	udev_device_unref(intf);
	udev_device_unref(usb);
}

/* --- entries -------------------------------------------------------------------------- */

static struct entry *entry_find(struct smpl_discovery *disc, const char *key)
{
	for (struct entry *e = disc->entries; e; e = e->next)
		if (strcmp(e->key, key) == 0)
			return e;
	return NULL;
}

static struct entry *entry_new(struct smpl_discovery *disc, const char *key)
{
	struct entry *e = calloc(1, sizeof(*e));

	if (!e || !(e->key = strdup(key))) {
		free(e);
		return NULL;
	}
	e->disc = disc;
	e->next = disc->entries;
	disc->entries = e;
	return e;
}

static void entry_drop_backend(struct smpl_discovery *disc, struct entry *e)
{
	if (e->kind == SMPL_DISC_NONE)
		return;
	smpl_log(LOG_INFO, NULL, NULL, "discovery-remove", "%s: %s backend on %s dropped",
		 e->key, smpl_disc_kind_name(e->kind), e->devnode ? e->devnode : "?");
	e->kind = SMPL_DISC_NONE;
	free(e->devnode);
	e->devnode = NULL;
	if (e->handle) {
		void *h = e->handle;

		e->handle = NULL;
		disc->cb.remove(disc->userdata, h);
	}
}

static void entry_free(struct smpl_discovery *disc, struct entry *e)
{
	entry_drop_backend(disc, e);
	for (struct entry **pp = &disc->entries; *pp; pp = &(*pp)->next)
		if (*pp == e) {
			*pp = e->next;
			break;
		}
	sd_event_source_disable_unref(e->retry);
	free(e->key);
	free(e);
}

static int entry_make_backend(struct smpl_discovery *disc, struct entry *e,
			      enum smpl_disc_kind kind, const char *devnode)
{
	struct smpl_backend *b = NULL;
	int r;

	if (kind == SMPL_DISC_KMOD)
		r = smpl_backend_kmod_new(disc->event, devnode, &b);
	else
		r = smpl_backend_libusb_new(disc->event, devnode, &b);
	if (r < 0)
		return r;
	e->kind = kind;
	e->devnode = strdup(devnode);
	smpl_log(LOG_INFO, NULL, NULL, "discovery-add", "%s: unit on %s, %s backend",
		 e->key, devnode, smpl_disc_kind_name(kind));
	e->handle = disc->cb.add(disc->userdata, e->key, b);
	if (!e->handle) {
		smpl_log(LOG_WARNING, NULL, NULL, "discovery-add",
			 "%s: the %s backend on %s could not start", e->key,
			 smpl_disc_kind_name(kind), devnode);
		e->kind = SMPL_DISC_NONE;
		free(e->devnode);
		e->devnode = NULL;
		return -EIO;
	}
	return 0;
}

static void evaluate(struct smpl_discovery *disc, struct entry *e, bool removed);

static int on_retry(sd_event_source *src, uint64_t usec, void *userdata)
{
	struct entry *e = userdata;

	(void)src;
	(void)usec;
	e->retry = sd_event_source_disable_unref(e->retry);
	evaluate(e->disc, e, false);
	return 0;
}

/* After a backend would not start: the settle time, doubling up to a limit. */
static uint64_t retry_delay_ms(struct smpl_discovery *disc, struct entry *e)
{
	uint64_t ms = disc->cfg.settle_ms ? disc->cfg.settle_ms : DEFAULT_SETTLE_MS;

	for (unsigned int i = 0; i < e->failures && ms < RETRY_MAX_MS; i++)
		ms *= 2;
	e->failures++;
	return ms < RETRY_MAX_MS ? ms : RETRY_MAX_MS;
}

static void schedule_retry(struct smpl_discovery *disc, struct entry *e, uint64_t wait_ms)
{
	uint64_t usec = (wait_ms ? wait_ms : 1) * 1000ULL;
	int r;

	if (e->retry) {
		r = sd_event_source_set_time_relative(e->retry, usec);
		if (r >= 0)
			r = sd_event_source_set_enabled(e->retry, SD_EVENT_ONESHOT);
	} else {
		r = sd_event_add_time_relative(disc->event, &e->retry, CLOCK_MONOTONIC,
					       usec, 10 * 1000, on_retry, e);
	}
	if (r < 0)
		smpl_log(LOG_ERR, NULL, NULL, "discovery", "%s: cannot schedule a retry: %s",
			 e->key, strerror(-r));
}

/*
 * Reads the facts about @e and makes its backend match the decision.  May
 * free @e (the device is gone).
 */
static void evaluate(struct smpl_discovery *disc, struct entry *e, bool removed)
{
	struct smpl_disc_facts f;
	char *kmod_node, *usb_node, *driver;
	enum smpl_disc_kind want;
	const char *node = NULL;
	uint64_t wait_ms;

	read_facts(disc, e, &f, &kmod_node, &usb_node, &driver);
	if (removed)		/* sysfs may lag behind the remove uevent */
		f.present = false;
	want = smpl_discovery_choose(&f, &disc->cfg, &wait_ms);
	if (want == SMPL_DISC_KMOD)
		node = kmod_node;
	else if (want == SMPL_DISC_LIBUSB)
		node = usb_node;
	if ((want == SMPL_DISC_KMOD || want == SMPL_DISC_LIBUSB) && !node)
		want = SMPL_DISC_NONE;		/* no node to open */

	if (want == SMPL_DISC_WAIT) {
		/* Nothing valid to drive right now (kmod without its node,
		 * libusb without its claim): drop it, look again later. */
		entry_drop_backend(disc, e);
		schedule_retry(disc, e, wait_ms);
	} else if (e->kind != want ||
		   (node && (!e->devnode || strcmp(e->devnode, node) != 0))) {
		e->retry = sd_event_source_disable_unref(e->retry);
		entry_drop_backend(disc, e);
		if (want != SMPL_DISC_NONE && entry_make_backend(disc, e, want, node) < 0)
			schedule_retry(disc, e, retry_delay_ms(disc, e));
		else
			e->failures = 0;
	}
	free(kmod_node);
	free(usb_node);
	free(driver);
	if (!f.present)
		entry_free(disc, e);
}

/* --- uevents ----------------------------------------------------------------------------- */

/* @a is @b or one of its ancestors in sysfs. */
static bool path_is_within(const char *b, const char *a)
{
	size_t n = strlen(a);

	return strncmp(a, b, n) == 0 && (b[n] == '\0' || b[n] == '/');
}

static bool is_unit_usb_device(struct udev_device *d)
{
	const char *dt = udev_device_get_devtype(d);

	return dt && strcmp(dt, "usb_device") == 0 &&
	       attr_is(d, "idVendor", UNIT_VID) && attr_is(d, "idProduct", UNIT_PID);
}

/* A USB device we have not seen yet: track it. */
static void consider_new(struct smpl_discovery *disc, struct udev_device *d)
{
	struct udev_device *usb = d;
	struct entry *e;

	if (!is_unit_usb_device(usb)) {
		usb = udev_device_get_parent_with_subsystem_devtype(d, "usb", "usb_device");
		if (!usb || !is_unit_usb_device(usb))
			return;
	}
	if (entry_find(disc, udev_device_get_syspath(usb)))
		return;
	e = entry_new(disc, udev_device_get_syspath(usb));
	if (!e) {
		smpl_log(LOG_ERR, NULL, NULL, "discovery", "out of memory");
		return;
	}
	evaluate(disc, e, false);
}

static void handle_uevent(struct smpl_discovery *disc, struct udev_device *d)
{
	const char *syspath = udev_device_get_syspath(d);
	const char *action = udev_device_get_action(d);
	bool removal = action && strcmp(action, "remove") == 0;
	struct entry *e, *next;

	if (!syspath)
		return;
	for (e = disc->entries; e; e = next) {
		next = e->next;
		if (path_is_within(e->key, syspath))	/* the device or an ancestor */
			evaluate(disc, e, removal);
		else if (path_is_within(syspath, e->key))	/* below the device */
			evaluate(disc, e, false);
	}
	if (!removal)
		consider_new(disc, d);
}

static int enumerate(struct smpl_discovery *disc);

/* Every known unit evaluated again, then every unit in sysfs. */
static void rescan(struct smpl_discovery *disc)
{
	struct entry *e, *next;

	for (e = disc->entries; e; e = next) {
		next = e->next;
		evaluate(disc, e, false);
	}
	(void)enumerate(disc);
}

static int on_monitor(sd_event_source *src, int fd, uint32_t revents, void *userdata)
{
	struct smpl_discovery *disc = userdata;
	struct udev_device *d;

	(void)src;
	(void)fd;
	(void)revents;
	for (;;) {
		errno = 0;
		d = udev_monitor_receive_device(disc->monitor);
		if (!d)
			break;
		handle_uevent(disc, d);
		udev_device_unref(d);
	}
	if (errno == ENOBUFS) {
		/* The socket overflowed: uevents were lost.  Look again at everything. */
		smpl_log(LOG_WARNING, NULL, NULL, "discovery",
			 "uevents were lost (receive buffer full): rescanning");
		rescan(disc);
	}
	return 0;
}

/* --- start ---------------------------------------------------------------------------------- */

static int start_monitor(struct smpl_discovery *disc)
{
	int r;

	disc->source = disc->cfg.source ? disc->cfg.source :
		access(UDEVD_CONTROL, F_OK) == 0 ? "udev" : "kernel";
	disc->monitor = udev_monitor_new_from_netlink(disc->udev, disc->source);
	if (!disc->monitor)
		return -errno ? -errno : -ENOMEM;
	r = udev_monitor_filter_add_match_subsystem_devtype(disc->monitor, "usb", NULL);
	if (r >= 0)
		r = udev_monitor_filter_add_match_subsystem_devtype(disc->monitor, "smplaser", NULL);
	if (r >= 0)
		r = udev_monitor_enable_receiving(disc->monitor);
	if (r < 0)
		return r;
	(void)udev_monitor_set_receive_buffer_size(disc->monitor, 4 * 1024 * 1024);
	return sd_event_add_io(disc->event, &disc->monitor_src,
			       udev_monitor_get_fd(disc->monitor), EPOLLIN, on_monitor, disc);
}

static int enumerate(struct smpl_discovery *disc)
{
	struct udev_enumerate *en = udev_enumerate_new(disc->udev);
	struct udev_list_entry *le;
	int r;

	if (!en)
		return -ENOMEM;
	r = udev_enumerate_add_match_subsystem(en, "usb");
	if (r >= 0)
		r = udev_enumerate_add_match_sysattr(en, "idVendor", UNIT_VID);
	if (r >= 0)
		r = udev_enumerate_add_match_sysattr(en, "idProduct", UNIT_PID);
	if (r >= 0)
		r = udev_enumerate_scan_devices(en);
	if (r < 0)
		goto out;
	udev_list_entry_foreach(le, udev_enumerate_get_list_entry(en)) {
		struct udev_device *d =
			udev_device_new_from_syspath(disc->udev, udev_list_entry_get_name(le));

		if (d) {
			consider_new(disc, d);
			udev_device_unref(d);
		}
	}
out:
	udev_enumerate_unref(en);
	return r < 0 ? r : 0;
}

int smpl_discovery_new(sd_event *event, const struct smpl_discovery_config *cfg,
		       const struct smpl_discovery_callbacks *cb, void *userdata,
		       struct smpl_discovery **ret)
{
	struct smpl_discovery *disc = calloc(1, sizeof(*disc));
	int r;

	if (!disc)
		return -ENOMEM;
	disc->event = sd_event_ref(event);
	disc->cfg = *cfg;
	disc->cb = *cb;
	disc->userdata = userdata;
	disc->udev = udev_new();
	if (!disc->udev) {
		r = -ENOMEM;
		goto fail;
	}
	/* Monitor first, then enumerate: nothing plugged in between is missed. */
	r = start_monitor(disc);
	if (r < 0)
		goto fail;
	r = enumerate(disc);
	if (r < 0)
		goto fail;
	smpl_log(LOG_INFO, NULL, NULL, "discovery",
		 "watching for units (%s uevents; kmod %s, libusb %s)", disc->source,
		 cfg->kmod ? "on" : "off", cfg->libusb ? "on" : "off");
	*ret = disc;
	return 0;
fail:
	smpl_discovery_free(disc);
	return r;
}

void smpl_discovery_free(struct smpl_discovery *disc)
{
	if (!disc)
		return;
	for (struct entry *e = disc->entries; e; e = e->next)
		e->handle = NULL;	/* the daemon frees its units itself */
	while (disc->entries)
		entry_free(disc, disc->entries);
	sd_event_source_disable_unref(disc->monitor_src);
	udev_monitor_unref(disc->monitor);
	udev_unref(disc->udev);
	sd_event_unref(disc->event);
	free(disc);
}

const char *smpl_discovery_source(const struct smpl_discovery *disc)
{
	return disc->source;
}
