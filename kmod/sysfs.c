// SPDX-License-Identifier: GPL-2.0
/*
 * sysfs attributes of /sys/class/smplaser/smplaserN, one value per file;
 * documented in kmod/ABI/sysfs-class-smplaser.
 */
#include <linux/device.h>
#include <linux/kernel.h>
#include <linux/kstrtox.h>
#include <linux/sysfs.h>

#include "smplaser.h"

/* The names of include/smplaser/proto.h's table (in value order), as D-Bus shows them. */
#define SMPLASER_STATE_NAME(id, value, name) name,
static const char * const smplaser_state_names[] = {
	SMPL_STATES(SMPLASER_STATE_NAME)
};

static_assert(ARRAY_SIZE(smplaser_state_names) == SMPL_STATE__MAX + 1);

static struct smplaser_unit_status smplaser_status_of(struct device *d)
{
	struct smplaser_dev *dev = dev_get_drvdata(d);
	struct smplaser_unit_status st;

	spin_lock_irq(&dev->lock);
	st = dev->status;
	spin_unlock_irq(&dev->lock);
	return st;
}

static ssize_t serial_show(struct device *d, struct device_attribute *attr,
			   char *buf)
{
	struct smplaser_dev *dev = dev_get_drvdata(d);

	return sysfs_emit(buf, "%s\n", dev->info.serial);
}
static DEVICE_ATTR_RO(serial);

static ssize_t firmware_show(struct device *d, struct device_attribute *attr,
			     char *buf)
{
	struct smplaser_dev *dev = dev_get_drvdata(d);

	return sysfs_emit(buf, "%u.%u.%u\n", dev->info.fw_major,
			  dev->info.fw_minor, dev->info.fw_patch);
}
static DEVICE_ATTR_RO(firmware);

static ssize_t state_show(struct device *d, struct device_attribute *attr,
			  char *buf)
{
	struct smplaser_unit_status st = smplaser_status_of(d);

	if (!st.valid || st.state >= ARRAY_SIZE(smplaser_state_names))
		return sysfs_emit(buf, "unknown\n");
	return sysfs_emit(buf, "%s\n", smplaser_state_names[st.state]);
}
static DEVICE_ATTR_RO(state);

static ssize_t interlocks_show(struct device *d,
			       struct device_attribute *attr, char *buf)
{
	struct smplaser_unit_status st = smplaser_status_of(d);

	return sysfs_emit(buf, "0x%02x\n", st.interlocks);
}
static DEVICE_ATTR_RO(interlocks);

static ssize_t shot_count_show(struct device *d,
			       struct device_attribute *attr, char *buf)
{
	struct smplaser_unit_status st = smplaser_status_of(d);

	return sysfs_emit(buf, "%u\n", st.shot_count);
}
static DEVICE_ATTR_RO(shot_count);

static ssize_t heartbeat_ms_show(struct device *d,
				 struct device_attribute *attr, char *buf)
{
	struct smplaser_dev *dev = dev_get_drvdata(d);

	return sysfs_emit(buf, "%u\n", READ_ONCE(dev->heartbeat_ms));
}

/*
 * Above 0 and below the unit's own watchdog, or -EINVAL.  -EBUSY while the
 * node is open: its opener paces its heartbeats from what GET_INFO said.
 * Checked and written under the lock GET_INFO reads it under, so an opener
 * racing this write reads the new value.
 */
static ssize_t heartbeat_ms_store(struct device *d,
				  struct device_attribute *attr,
				  const char *buf, size_t count)
{
	struct smplaser_dev *dev = dev_get_drvdata(d);
	unsigned int ms;
	int ret;

	ret = kstrtouint(buf, 10, &ms);
	if (ret)
		return ret;
	if (ms == 0 || ms >= dev->info.watchdog_ms)
		return -EINVAL;
	spin_lock_irq(&dev->lock);
	if (test_bit(SMPLASER_FLAG_OPEN, &dev->flags))
		ret = -EBUSY;
	else
		WRITE_ONCE(dev->heartbeat_ms, ms);
	spin_unlock_irq(&dev->lock);
	return ret ? ret : count;
}
static DEVICE_ATTR_RW(heartbeat_ms);

static struct attribute *smplaser_attrs[] = {
	&dev_attr_serial.attr,
	&dev_attr_firmware.attr,
	&dev_attr_state.attr,
	&dev_attr_interlocks.attr,
	&dev_attr_shot_count.attr,
	&dev_attr_heartbeat_ms.attr,
	NULL,
};

static const struct attribute_group smplaser_group = {
	.attrs = smplaser_attrs,
};

const struct attribute_group *smplaser_groups[] = {
	&smplaser_group,
	NULL,
};
