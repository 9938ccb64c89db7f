// SPDX-License-Identifier: GPL-2.0
/*
 * smplaser.ko: USB driver for the smplaser SMP-removal laser unit.
 *
 * Module glue: the character device region and its cdev, the class
 * "smplaser", minor numbers from an IDA, and the table open() uses to find
 * the unit behind a minor.
 */
#include <linux/cdev.h>
#include <linux/debugfs.h>
#include <linux/device.h>
#include <linux/fault-inject.h>
#include <linux/fs.h>
#include <linux/idr.h>
#include <linux/kstrtox.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/mutex.h>

#include "compat.h"
#include "smplaser.h"

unsigned int smplaser_default_heartbeat_ms = 500;

/* heartbeat_ms must be above 0; each unit also needs it below its watchdog. */
static int smplaser_set_heartbeat(const char *val,
				  const struct kernel_param *kp)
{
	unsigned int ms;
	int ret;

	ret = kstrtouint(val, 10, &ms);
	if (ret)
		return ret;
	if (ms == 0)
		return -EINVAL;
	*(unsigned int *)kp->arg = ms;
	return 0;
}

static const struct kernel_param_ops smplaser_heartbeat_ops = {
	.set = smplaser_set_heartbeat,
	.get = param_get_uint,
};
module_param_cb(heartbeat_ms, &smplaser_heartbeat_ops,
		&smplaser_default_heartbeat_ms, 0444);
MODULE_PARM_DESC(heartbeat_ms,
		 "disarm when armed and no HEARTBEAT ioctl came for this long (ms, default 500; above 0, below the unit's watchdog)");

static dev_t smplaser_devt;
static struct cdev smplaser_cdev;
static struct class *smplaser_class;
static DEFINE_IDA(smplaser_minors);

/* Units by minor; guarded by smplaser_table_lock. */
static DEFINE_MUTEX(smplaser_table_lock);
static struct smplaser_dev *smplaser_table[SMPLASER_MAX_UNITS];

/* The unit behind @minor with a reference taken, or NULL. */
struct smplaser_dev *smplaser_get_by_minor(unsigned int minor)
{
	struct smplaser_dev *dev = NULL;

	if (minor >= SMPLASER_MAX_UNITS)
		return NULL;
	mutex_lock(&smplaser_table_lock);
	dev = smplaser_table[minor];
	if (dev)
		kref_get(&dev->kref);
	mutex_unlock(&smplaser_table_lock);
	return dev;
}

/* Create /dev/smplaserN with its sysfs attributes; the unit is ready. */
int smplaser_register_node(struct smplaser_dev *dev)
{
	struct device *node;
	int minor;

	minor = ida_alloc_max(&smplaser_minors, SMPLASER_MAX_UNITS - 1,
			      GFP_KERNEL);
	if (minor < 0)
		return minor;
	dev->minor = minor;

	mutex_lock(&smplaser_table_lock);
	smplaser_table[minor] = dev;
	mutex_unlock(&smplaser_table_lock);

	node = device_create_with_groups(smplaser_class, &dev->intf->dev,
					 MKDEV(MAJOR(smplaser_devt), minor),
					 dev, smplaser_groups, "smplaser%d",
					 minor);
	if (IS_ERR(node)) {
		mutex_lock(&smplaser_table_lock);
		smplaser_table[minor] = NULL;
		mutex_unlock(&smplaser_table_lock);
		ida_free(&smplaser_minors, minor);
		dev->minor = -1;
		return PTR_ERR(node);
	}
	dev->node = node;
	return 0;
}

/* No new opens, no more sysfs reads; open files keep their reference. */
void smplaser_unregister_node(struct smplaser_dev *dev)
{
	if (dev->minor < 0)
		return;
	mutex_lock(&smplaser_table_lock);
	smplaser_table[dev->minor] = NULL;
	mutex_unlock(&smplaser_table_lock);
	device_destroy(smplaser_class, MKDEV(MAJOR(smplaser_devt), dev->minor));
	ida_free(&smplaser_minors, dev->minor);
	dev->node = NULL;
}

/*
 * Fault injection, on kernels built with CONFIG_FAULT_INJECTION_DEBUG_FS
 * (the VM suites' debug kernel): /sys/kernel/debug/smplaser/fail_int_submit
 * (Documentation/fault-injection/fault-injection.rst) fails submissions of
 * the interrupt URB, so a test can show that the status stream recovers.
 */
#ifdef CONFIG_FAULT_INJECTION_DEBUG_FS
static DECLARE_FAULT_ATTR(smplaser_fail_int_submit);
static struct dentry *smplaser_debugfs;

bool smplaser_should_fail_int_submit(void)
{
	return should_fail(&smplaser_fail_int_submit, 1);
}

static void smplaser_debugfs_init(void)
{
	smplaser_debugfs = debugfs_create_dir("smplaser", NULL);
	fault_create_debugfs_attr("fail_int_submit", smplaser_debugfs,
				  &smplaser_fail_int_submit);
}

static void smplaser_debugfs_exit(void)
{
	debugfs_remove_recursive(smplaser_debugfs);
}
#else
bool smplaser_should_fail_int_submit(void)
{
	return false;
}

static void smplaser_debugfs_init(void)
{
}

static void smplaser_debugfs_exit(void)
{
}
#endif

static int __init smplaser_init(void)
{
	int ret;

	ret = alloc_chrdev_region(&smplaser_devt, 0, SMPLASER_MAX_UNITS,
				  "smplaser");
	if (ret)
		return ret;
	cdev_init(&smplaser_cdev, &smplaser_fops);
	smplaser_cdev.owner = THIS_MODULE;
	ret = cdev_add(&smplaser_cdev, smplaser_devt, SMPLASER_MAX_UNITS);
	if (ret)
		goto err_region;
	smplaser_class = smplaser_class_create("smplaser");
	if (IS_ERR(smplaser_class)) {
		ret = PTR_ERR(smplaser_class);
		goto err_cdev;
	}
	smplaser_debugfs_init();
	ret = usb_register(&smplaser_driver);
	if (ret)
		goto err_class;
	return 0;

err_class:
	smplaser_debugfs_exit();
	class_destroy(smplaser_class);
err_cdev:
	cdev_del(&smplaser_cdev);
err_region:
	unregister_chrdev_region(smplaser_devt, SMPLASER_MAX_UNITS);
	return ret;
}

static void __exit smplaser_exit(void)
{
	usb_deregister(&smplaser_driver);
	smplaser_debugfs_exit();
	class_destroy(smplaser_class);
	cdev_del(&smplaser_cdev);
	unregister_chrdev_region(smplaser_devt, SMPLASER_MAX_UNITS);
	ida_destroy(&smplaser_minors);
}

module_init(smplaser_init);
module_exit(smplaser_exit);

MODULE_DESCRIPTION("USB driver for the smplaser SMP-removal laser unit");
MODULE_LICENSE("GPL");
