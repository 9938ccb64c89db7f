#!/bin/sh
# Removal (apt remove) while the unit is READY: the daemon is stopped (the unit
# disarmed, the treatment recorded as interrupted), its policy and D-Bus
# activation are gone, systemd no longer knows the service; the records stay.
. "$(dirname "$0")/lib.sh"

check "armed (READY) for P-SYS-11" arm_for root P-SYS-11 right-parietal
# dpkg runs the same maintainer scripts as apt remove (apt takes minutes in TCG).
dpkg --remove smplaser >/tmp/apt-remove.log 2>&1
rc=$?
check "dpkg --remove smplaser, as apt remove does (status $rc)" test "$rc" = 0
[ "$rc" = 0 ] || tail -n 20 /tmp/apt-remove.log
check "the unit is in STANDBY" wait_for 3 gadget_state_is STANDBY
check "smplaserd is not running" sh -c '! pgrep -x smplaserd'
check "systemd no longer knows smplaserd.service (daemon-reload after removal)" \
	test "$(systemctl show -p LoadState --value smplaserd.service)" = not-found
check "the polkit actions and rules are gone" \
	test ! -e /usr/share/polkit-1/actions/org.smplaser.policy -a \
	     ! -e /usr/share/polkit-1/rules.d/50-smplaser.rules
busctl --system --timeout=5 call org.smplaser.Laser1 /org/smplaser/Laser1 \
	org.smplaser.Laser1.Manager ListUnits >/tmp/activation.txt 2>&1
check "a D-Bus call no longer starts smplaserd" \
	sh -c '! grep -q "^a" /tmp/activation.txt && ! pgrep -x smplaserd'
check "the records stay, with P-SYS-11's treatment interrupted" \
	test "$(sql "SELECT outcome FROM treatments WHERE patient = 'P-SYS-11'")" = interrupted
