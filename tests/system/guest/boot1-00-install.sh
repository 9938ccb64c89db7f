#!/bin/sh
# The package installed what a clinic needs, and systemd accepts it.
. "$(dirname "$0")/lib.sh"

check "sysusers made the groups smplaser and smplaser-operators" \
	sh -c 'getent group smplaser && getent group smplaser-operators'
check "sysusers made the daemon user smplaserd in group smplaser" \
	sh -c 'id -nG smplaserd | grep -qw smplaser'
check "systemd-analyze verify smplaserd.service is clean" \
	sh -c '! systemd-analyze verify smplaserd.service 2>&1 | grep -v "Command .man " | grep .'
check "the D-Bus policy and polkit actions are installed" \
	test -f /usr/share/dbus-1/system.d/org.smplaser.Laser1.conf -a \
	     -f /usr/share/polkit-1/actions/org.smplaser.policy
check "dbus is running" systemctl is-active dbus.service
