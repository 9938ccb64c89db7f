// SPDX-License-Identifier: MIT
/*
 * The USB side of smplaser-gadget: a configfs gadget with one FunctionFS
 * function, its descriptors and strings, and binding to a UDC
 * (Documentation/usb/gadget_configfs.rst, Documentation/usb/functionfs.rst).
 */
#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <linux/usb/ch9.h>
#include <linux/usb/functionfs.h>

#include "gadget.h"

#define FUNCTIONFS_MAGIC	0xa647361
#define FS_BULK_PACKET		64
#define HS_BULK_PACKET		512
#define INT_PACKET		SMPL_MAX_REPORT
#define FS_INT_INTERVAL		1	/* frames of 1 ms */
#define HS_INT_INTERVAL		4	/* 2^(4-1) microframes = 1 ms */

struct smpl_intf_descs {
	struct usb_interface_descriptor intf;
	struct usb_endpoint_descriptor_no_audio bulk_out;
	struct usb_endpoint_descriptor_no_audio bulk_in;
	struct usb_endpoint_descriptor_no_audio int_in;
} __attribute__((packed));

struct smpl_ffs_descs {
	struct usb_functionfs_descs_head_v2 head;
	__le32 fs_count;
	__le32 hs_count;
	struct smpl_intf_descs fs;
	struct smpl_intf_descs hs;
} __attribute__((packed));

#define INTERFACE_NAME "smplaser laser unit"

struct smpl_ffs_strings {
	struct usb_functionfs_strings_head head;
	__le16 lang;
	char interface_name[sizeof(INTERFACE_NAME)];
} __attribute__((packed));

static struct usb_endpoint_descriptor_no_audio endpoint(uint8_t addr, uint8_t type,
							uint16_t packet, uint8_t interval)
{
	struct usb_endpoint_descriptor_no_audio ep = {
		.bLength = sizeof(ep),
		.bDescriptorType = USB_DT_ENDPOINT,
		.bEndpointAddress = addr,
		.bmAttributes = type,
		.wMaxPacketSize = htole16(packet),
		.bInterval = interval,
	};
	return ep;
}

/* The interface at one speed: bulk OUT, bulk IN, interrupt IN (proto.h). */
static struct smpl_intf_descs interface_descs(bool high_speed)
{
	uint16_t bulk = high_speed ? HS_BULK_PACKET : FS_BULK_PACKET;
	struct smpl_intf_descs d = {
		.intf = {
			.bLength = USB_DT_INTERFACE_SIZE,
			.bDescriptorType = USB_DT_INTERFACE,
			.bInterfaceNumber = 0,
			.bNumEndpoints = 3,
			.bInterfaceClass = USB_CLASS_VENDOR_SPEC,
			.bInterfaceSubClass = SMPL_USB_SUBCLASS,
			.bInterfaceProtocol = SMPL_PROTO_VERSION,
			.iInterface = 1,
		},
		.bulk_out = endpoint(1 | USB_DIR_OUT, USB_ENDPOINT_XFER_BULK, bulk, 0),
		.bulk_in = endpoint(2 | USB_DIR_IN, USB_ENDPOINT_XFER_BULK, bulk, 0),
		.int_in = endpoint(3 | USB_DIR_IN, USB_ENDPOINT_XFER_INT, INT_PACKET,
				   high_speed ? HS_INT_INTERVAL : FS_INT_INTERVAL),
	};
	return d;
}

static int write_all(int fd, const void *buf, size_t len)
{
	ssize_t n = write(fd, buf, len);

	if (n < 0)
		return -errno;
	return (size_t)n == len ? 0 : -EIO;
}

static int write_descriptors(int ep0)
{
	struct smpl_ffs_descs d = {
		.head = {
			.magic = htole32(FUNCTIONFS_DESCRIPTORS_MAGIC_V2),
			.length = htole32(sizeof(d)),
			.flags = htole32(FUNCTIONFS_HAS_FS_DESC | FUNCTIONFS_HAS_HS_DESC),
		},
		.fs_count = htole32(4),
		.hs_count = htole32(4),
		.fs = interface_descs(false),
		.hs = interface_descs(true),
	};
	struct smpl_ffs_strings s = {
		.head = {
			.magic = htole32(FUNCTIONFS_STRINGS_MAGIC),
			.length = htole32(sizeof(s)),
			.str_count = htole32(1),
			.lang_count = htole32(1),
		},
		.lang = htole16(0x0409),
		.interface_name = INTERFACE_NAME,
	};
	int ret = write_all(ep0, &d, sizeof(d));

	if (ret) {
		fprintf(stderr, "smplaser-gadget: writing descriptors to ep0: %s\n", strerror(-ret));
		return ret;
	}
	ret = write_all(ep0, &s, sizeof(s));
	if (ret)
		fprintf(stderr, "smplaser-gadget: writing strings to ep0: %s\n", strerror(-ret));
	return ret;
}

/* Write @value to <gadget_dir>/<rel>. */
static int put(const struct gadget_usb *u, const char *rel, const char *value)
{
	char path[512];
	int fd, ret;

	snprintf(path, sizeof(path), "%s/%s", u->gadget_dir, rel);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
	} else {
		/* An empty value still needs a write: "" unbinds the UDC. */
		ret = write_all(fd, value[0] ? value : "\n", value[0] ? strlen(value) : 1);
		close(fd);
	}
	if (ret)
		fprintf(stderr, "smplaser-gadget: writing \"%s\" to %s: %s\n",
			value, path, strerror(-ret));
	return ret;
}

static int make_dir(const struct gadget_usb *u, const char *rel)
{
	char path[512];

	if (rel)
		snprintf(path, sizeof(path), "%s/%s", u->gadget_dir, rel);
	else
		snprintf(path, sizeof(path), "%s", u->gadget_dir);
	if (mkdir(path, 0755) && errno != EEXIST) {
		int ret = -errno;

		fprintf(stderr, "smplaser-gadget: mkdir %s: %s\n", path, strerror(errno));
		return ret;
	}
	return 0;
}

static void remove_dir(const struct gadget_usb *u, const char *rel)
{
	char path[512];

	if (rel)
		snprintf(path, sizeof(path), "%s/%s", u->gadget_dir, rel);
	else
		snprintf(path, sizeof(path), "%s", u->gadget_dir);
	if (rmdir(path) && errno != ENOENT)
		fprintf(stderr, "smplaser-gadget: rmdir %s: %s\n", path, strerror(errno));
}

static int configure_gadget(struct gadget_usb *u)
{
	char vid[16], pid[16], function[160], target[512], link[512];
	/* In order: a NULL value makes the directory, others write the file. */
	const struct { const char *rel; const char *value; } steps[] = {
		{ "idVendor", vid },
		{ "idProduct", pid },
		{ "bcdUSB", "0x0200" },
		{ "bcdDevice", "0x0100" },
		{ "strings/0x409", NULL },
		{ "strings/0x409/manufacturer", "smplaser project" },
		{ "strings/0x409/product", "smplaser SMP removal laser" },
		{ "strings/0x409/serialnumber", u->serial },
		{ "configs/c.1", NULL },
		{ "configs/c.1/strings/0x409", NULL },
		{ "configs/c.1/strings/0x409/configuration", "laser" },
		{ "configs/c.1/MaxPower", "100" },
		{ function, NULL },
	};
	int ret;

	snprintf(u->gadget_dir, sizeof(u->gadget_dir), "%s/usb_gadget/%s",
		 u->configfs, u->name);
	snprintf(vid, sizeof(vid), "0x%04x", SMPL_USB_VID);
	snprintf(pid, sizeof(pid), "0x%04x", SMPL_USB_PID);
	snprintf(function, sizeof(function), "functions/ffs.%s", u->name);

	ret = make_dir(u, NULL);
	for (size_t i = 0; !ret && i < sizeof(steps) / sizeof(steps[0]); i++)
		ret = steps[i].value ? put(u, steps[i].rel, steps[i].value)
				     : make_dir(u, steps[i].rel);
	if (ret)
		return ret;

	snprintf(target, sizeof(target), "%s/%s", u->gadget_dir, function);
	snprintf(link, sizeof(link), "%s/configs/c.1/ffs.%s", u->gadget_dir, u->name);
	if (symlink(target, link) && errno != EEXIST) {
		ret = -errno;
		fprintf(stderr, "smplaser-gadget: symlink %s: %s\n", link, strerror(errno));
	}
	return ret;
}

static bool is_functionfs(const char *dir)
{
	struct statfs st;

	return statfs(dir, &st) == 0 && st.f_type == FUNCTIONFS_MAGIC;
}

static int mount_functionfs(struct gadget_usb *u)
{
	if (mkdir(u->ffs_dir, 0755) && errno != EEXIST) {
		fprintf(stderr, "smplaser-gadget: mkdir %s: %s\n", u->ffs_dir, strerror(errno));
		return -errno;
	}
	if (is_functionfs(u->ffs_dir)) {
		/* Left over by an instance that died: reuse it. */
		u->mounted = true;
		return 0;
	}
	if (mount(u->name, u->ffs_dir, "functionfs", 0, NULL)) {
		int ret = -errno;

		fprintf(stderr, "smplaser-gadget: mount functionfs %s on %s: %s\n",
			u->name, u->ffs_dir, strerror(errno));
		return ret;
	}
	u->mounted = true;
	return 0;
}

static int open_ep(const struct gadget_usb *u, const char *name)
{
	char path[512];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", u->ffs_dir, name);
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		fprintf(stderr, "smplaser-gadget: open %s: %s\n", path, strerror(errno));
	return fd;
}

int gadget_usb_setup(struct gadget_usb *u)
{
	int ret;

	u->ep0 = u->ep_out = u->ep_in = u->ep_int = -1;
	ret = configure_gadget(u);
	if (!ret)
		ret = mount_functionfs(u);
	if (ret)
		return ret;
	u->ep0 = open_ep(u, "ep0");
	if (u->ep0 < 0)
		return -EIO;
	return write_descriptors(u->ep0);
}

int gadget_usb_open_endpoints(struct gadget_usb *u)
{
	/* FunctionFS names the endpoint files in declaration order. */
	u->ep_out = open_ep(u, "ep1");
	u->ep_in = open_ep(u, "ep2");
	u->ep_int = open_ep(u, "ep3");
	return (u->ep_out < 0 || u->ep_in < 0 || u->ep_int < 0) ? -EIO : 0;
}

static int first_udc(char *buf, size_t size)
{
	DIR *d = opendir("/sys/class/udc");
	struct dirent *e;
	int ret = -ENODEV;

	if (!d)
		return -errno;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(buf, size, "%s", e->d_name);
		ret = 0;
		break;
	}
	closedir(d);
	return ret;
}

int gadget_usb_bind(struct gadget_usb *u)
{
	if (!u->udc[0] && first_udc(u->udc, sizeof(u->udc))) {
		fprintf(stderr, "smplaser-gadget: no UDC in /sys/class/udc (is dummy_hcd loaded?)\n");
		return -ENODEV;
	}
	return put(u, "UDC", u->udc);
}

int gadget_usb_unbind(struct gadget_usb *u)
{
	char cur[128] = "";
	char path[512];
	FILE *f;

	/* Writing "" to an unbound gadget fails with ENODEV: check first. */
	snprintf(path, sizeof(path), "%s/UDC", u->gadget_dir);
	f = fopen(path, "re");
	if (f) {
		if (!fgets(cur, sizeof(cur), f))
			cur[0] = '\0';
		fclose(f);
	}
	if (cur[0] == '\0' || cur[0] == '\n')
		return 0;
	return put(u, "UDC", "");
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

void gadget_usb_teardown(struct gadget_usb *u)
{
	char rel[1024];

	if (u->gadget_dir[0])
		gadget_usb_unbind(u);
	close_fd(&u->ep_int);
	close_fd(&u->ep_in);
	close_fd(&u->ep_out);
	close_fd(&u->ep0);
	if (u->mounted && umount(u->ffs_dir))
		fprintf(stderr, "smplaser-gadget: umount %s: %s\n", u->ffs_dir, strerror(errno));
	u->mounted = false;
	if (!u->gadget_dir[0])
		return;
	snprintf(rel, sizeof(rel), "%s/configs/c.1/ffs.%s", u->gadget_dir, u->name);
	if (unlink(rel) && errno != ENOENT)
		fprintf(stderr, "smplaser-gadget: unlink %s: %s\n", rel, strerror(errno));
	remove_dir(u, "configs/c.1/strings/0x409");
	remove_dir(u, "configs/c.1");
	snprintf(rel, sizeof(rel), "functions/ffs.%s", u->name);
	remove_dir(u, rel);
	remove_dir(u, "strings/0x409");
	remove_dir(u, NULL);
}
