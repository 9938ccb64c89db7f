#!/bin/sh
# A fresh install in the running system, with a unit already plugged in: the
# package makes its groups, udev gives the node to group smplaser at once (no
# reboot), the daemon starts (not --no-start) and finds the unit.
. "$(dirname "$0")/lib.sh"

DEBS=/var/cache/smplaser-systest
check "the emulated unit is plugged in before the package is installed" plug
check "smplaser.ko binds it: /dev/smplaser0" wait_for 20 test -c /dev/smplaser0
check "without the package /dev/smplaser0 is not for group smplaser" \
	sh -c '! getent group smplaser && [ "$(stat -c %G /dev/smplaser0)" = root ]'

dpkg -i "$DEBS/smplaser_N.deb" >/tmp/dpkg-install.log 2>&1
rc=$?
check "dpkg -i smplaser $(cat $DEBS/version-N) in the running system (status $rc)" test "$rc" = 0
[ "$rc" = 0 ] || tail -n 20 /tmp/dpkg-install.log
# At once, when dpkg returns: the postinst made the group before udev applied the rules.
check "right after the install /dev/smplaser0 is root:smplaser 0660 (no reboot)" \
	wait_node_mode /dev/smplaser0 root:smplaser:660 0
check "sysusers made the groups smplaser and smplaser-operators" \
	sh -c 'getent group smplaser && getent group smplaser-operators'
check "sysusers made the daemon user smplaserd in group smplaser" \
	sh -c 'id -nG smplaserd | grep -qw smplaser'
check "the install started smplaserd" wait_for 20 systemctl is-active -q smplaserd.service
check "and it drives the plugged unit on the kmod backend" wait_unit_on_kmod 30
check "smplaserd.service is enabled, with its D-Bus alias" \
	sh -c 'systemctl is-enabled -q smplaserd.service &&
		[ "$(readlink -f /etc/systemd/system/dbus-org.smplaser.Laser1.service)" = \
		  "$(readlink -f /lib/systemd/system/smplaserd.service)" ]'
check "systemd-analyze verify smplaserd.service smplaser.target is clean" \
	sh -c '! systemd-analyze verify smplaserd.service smplaser.target 2>&1 | grep -v "Command .man " | grep .'
check "smplaserd.service is ordered after modprobe@smplaser.service, and wants it" \
	sh -c 'systemctl show -p After --value smplaserd.service | grep -qw modprobe@smplaser.service &&
		systemctl show -p Wants --value smplaserd.service | grep -qw modprobe@smplaser.service'
check "the D-Bus policy and polkit actions and rules are installed" \
	test -f /usr/share/dbus-1/system.d/org.smplaser.Laser1.conf -a \
	     -f /usr/share/polkit-1/actions/org.smplaser.policy -a \
	     -f /usr/share/polkit-1/rules.d/50-smplaser.rules
check "the journal catalog is installed and compiled (journalctl --dump-catalog)" \
	sh -c 'journalctl --dump-catalog 800e4c5b76c7484198b9ea8b791f469c | grep -q "Subject: Laser unit"'
check "dbus is running" systemctl is-active dbus.service
usermod -aG smplaser-operators tech
check "tech is an operator (smplaser-operators)" sh -c 'id -nG tech | grep -qw smplaser-operators'
