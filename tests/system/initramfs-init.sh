#!/bin/busybox sh
# /init of the full-boot test's initramfs: load the block and file system
# modules, mount the root disk (virtio, ext4) and hand over to systemd.
/bin/busybox mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
while read -r mod; do
	[ -n "$mod" ] && insmod "$mod"
done </modules
mkdir -p /newroot
i=0
while [ ! -b /dev/vda ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
if ! mount -t ext4 -o rw /dev/vda /newroot; then
	echo "initramfs: cannot mount /dev/vda"
	poweroff -f
fi
mount --move /dev /newroot/dev
umount /proc /sys
exec switch_root /newroot /lib/systemd/systemd
