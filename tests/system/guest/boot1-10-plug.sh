#!/bin/sh
# Plugging the unit: the kernel loads smplaser.ko by its modalias, udev
# gives the node to group smplaser and pulls in smplaser.target, which wants
# smplaserd while it is enabled.  "systemctl disable" stops udev and D-Bus
# activation too.  The daemon runs hardened (Group=, PrivateUsers=).
. "$(dirname "$0")/lib.sh"

systemctl stop smplaserd.service
check "smplaserd is stopped before the unit is plugged" \
	sh -c '! systemctl is-active -q smplaserd.service'
check "the emulated unit is plugged in again (dummy_hcd + FunctionFS)" plug
check "smplaser.ko binds the unit: /dev/smplaser0" wait_for 20 test -c /dev/smplaser0
# devtmpfs makes the node root:root 0600 at once; udev applies our rule
# a moment later, so wait for udev rather than race it.
check "/dev/smplaser0 is root:smplaser 0660" \
	wait_node_mode /dev/smplaser0 root:smplaser:660 10
check "udev tagged /dev/smplaser0 for systemd" \
	wait_for 10 sh -c 'udevadm info /dev/smplaser0 | grep -q "TAGS=.*:systemd:"'
check "udev added smplaser.target to SYSTEMD_WANTS" \
	wait_for 10 sh -c 'udevadm info /dev/smplaser0 | grep -q "SYSTEMD_WANTS=.*smplaser.target"'
check "the plug made systemd start smplaserd" \
	wait_for 30 systemctl is-active -q smplaserd.service
check "smplaserd runs as its own user smplaserd" \
	sh -c '[ "$(ps -o user= -C smplaserd)" = smplaserd ]'
check "smplaserd drives the unit through the kmod backend" wait_unit_on_kmod 20

# Hardening, measured on the running service.
pid=$(daemon_prop MainPID)
check "smplaserd's group is smplaser, no other (Group=, no SupplementaryGroups=)" \
	only_group "$pid" "$(getent group smplaser | cut -d: -f3)"
check "smplaserd runs in a user namespace of its own (PrivateUsers=yes)" \
	sh -c "[ \"\$(readlink /proc/$pid/ns/user)\" != \"\$(readlink /proc/1/ns/user)\" ]"
systemd-analyze security smplaserd.service >/tmp/security.txt 2>&1
score=$(sed -n 's/.*Overall exposure level for smplaserd.service: \([0-9.]*\).*/\1/p' /tmp/security.txt)
echo "measured: systemd-analyze security smplaserd.service: exposure ${score:-?}"
check "systemd-analyze security: exposure $score <= 0.8" \
	awk -v s="${score:-9}" 'BEGIN { exit !(s <= 0.8) }'

# systemctl disable: neither a plug nor a D-Bus call starts the daemon.
systemctl disable --now smplaserd.service >/dev/null 2>&1
check "disabled and stopped" sh -c '! systemctl is-enabled -q smplaserd.service &&
	! systemctl is-active -q smplaserd.service'
check "... the unit is plugged in again" plug
check "... its node is back" wait_for 20 test -c /dev/smplaser0
sleep 3
check "... udev no longer starts the disabled smplaserd" \
	sh -c '! systemctl is-active -q smplaserd.service'
busctl --system --timeout=5 call org.smplaser.Laser1 /org/smplaser/Laser1 \
	org.smplaser.Laser1.Manager ListUnits >/tmp/activation.txt 2>&1
check "... nor does D-Bus activation (a call to org.smplaser.Laser1 fails)" \
	sh -c '! systemctl is-active -q smplaserd.service && ! grep -q "^a" /tmp/activation.txt'
systemctl enable smplaserd.service >/dev/null 2>&1
check "enabled again: a plug starts it" sh -c 'systemctl is-enabled -q smplaserd.service'
check "... the unit is plugged in again" plug
check "... and udev starts smplaserd" wait_for 30 systemctl is-active -q smplaserd.service
check "... which drives the unit" wait_unit_on_kmod 20
