#!/bin/sh
# Plugging the unit: the kernel loads smplaser.ko by its modalias, udev
# gives the node to group smplaser and asks systemd for smplaserd.
. "$(dirname "$0")/lib.sh"

systemctl stop smplaserd.service
check "smplaserd is stopped before the unit is plugged" \
	sh -c '! systemctl is-active -q smplaserd.service'
check "the emulated unit is plugged in (dummy_hcd + FunctionFS)" plug
check "smplaser.ko binds the unit: /dev/smplaser0" wait_for 20 test -c /dev/smplaser0
# devtmpfs makes the node root:root 0600 at once; udev applies our rule
# a moment later, so wait for udev rather than race it.
check "/dev/smplaser0 is root:smplaser 0660" \
	wait_node_mode /dev/smplaser0 root:smplaser:660 10
check "udev tagged /dev/smplaser0 for systemd" \
	wait_for 10 sh -c 'udevadm info /dev/smplaser0 | grep -q "TAGS=.*:systemd:"'
check "udev added smplaserd.service to SYSTEMD_WANTS" \
	wait_for 10 sh -c 'udevadm info /dev/smplaser0 | grep -q "SYSTEMD_WANTS=.*smplaserd.service"'
check "the plug made systemd start smplaserd" \
	wait_for 30 systemctl is-active -q smplaserd.service
check "smplaserd runs as its own user smplaserd" \
	sh -c '[ "$(ps -o user= -C smplaserd)" = smplaserd ]'
check "smplaserd drives the unit through the kmod backend" wait_unit_on_kmod 20
