#!/bin/sh
# An upgrade (version N to N+1, built from the same tree) while the unit is
# READY with pulses fired: the new version's postinst restarts the daemon
# (--restart-after-upgrade, after a daemon-reload), which disarms the unit and
# records the treatment as interrupted; the new daemon comes back by itself
# and treats.
. "$(dirname "$0")/lib.sh"

DEBS=/var/cache/smplaser-systest
new=$(cat "$DEBS/version-N+1")
# A fresh plug: the emulated unit's RTC drifts from the guest's clock in TCG
# (ClockUnreliable after some minutes); a real unit's does not.
check "the unit is plugged in afresh" plug
check "smplaserd finds it" wait_unit_on_kmod 30
shots0=$(gadget_field shots)
check "armed (READY) for P-SYS-9" arm_for root P-SYS-9 frontal-hairline
gadget_ctl footswitch 1 >/dev/null
sleep 1
gadget_ctl footswitch 0 >/dev/null
ready_again() { wait_for 3 gadget_state_is READY || { echo "unit state: $(gadget_field state)"; return 1; }; }
check "... READY again after some pulses" ready_again
fired=$(($(gadget_field shots) - shots0))
sleep 0.3	# the daemon commits pulses every 100 ms
pid0=$(daemon_prop MainPID)

dpkg -i "$DEBS/smplaser_N+1.deb" >/tmp/dpkg-upgrade.log 2>&1
rc=$?
check "dpkg -i smplaser $new over $(cat "$DEBS/version-N") while READY (status $rc)" test "$rc" = 0
[ "$rc" = 0 ] || tail -n 20 /tmp/dpkg-upgrade.log
check "smplaser $new is installed" \
	test "$(dpkg-query -W -f='${Version}' smplaser)" = "$new"
# Disarmed: by the restart (STANDBY), or, when the guest is starved while
# dpkg works (TCG on a loaded host), by the emulated unit's own 1 s watchdog
# first (FAULT, watchdog): either way nothing can fire.
check "the unit is disarmed after the upgrade (STANDBY, or FAULT by its watchdog)" \
	wait_for 3 sh -c '[ "$(smplaser-gadget --ctl '"$GADGET_SOCK"' status | tr " " "\n" |
		sed -n "s/^state=//p")" != READY ]'
state_after=$(gadget_field state)
echo "measured: unit state after the upgrade: $state_after"
check "smplaserd runs again, a new process (MainPID $pid0 -> new)" \
	wait_for 20 sh -c "systemctl is-active -q smplaserd.service &&
		[ \"\$(systemctl show -p MainPID --value smplaserd.service)\" != $pid0 ]"
pid=$(daemon_prop MainPID)
check "... the new version's binary (/proc/$pid/exe is not a deleted file)" \
	sh -c "[ \"\$(readlink /proc/$pid/exe)\" = /usr/sbin/smplaserd ]"
check "systemd was reloaded (NeedDaemonReload=no)" \
	test "$(daemon_prop NeedDaemonReload)" = no
outcome=$(sql "SELECT outcome FROM treatments WHERE patient = 'P-SYS-9'")
if [ "$state_after" = FAULT ]; then
	check "P-SYS-9's treatment is closed by the unit's fault (outcome $outcome)" test "$outcome" = fault
	echo "the emulated unit's watchdog fired during the upgrade: root acknowledges"
	smplaserctl --system --no-ask-password ack
else
	check "P-SYS-9's treatment is recorded as interrupted (outcome $outcome)" \
		test "$outcome" = interrupted
fi
check "... with the $fired pulses fired" \
	test "$(sql "SELECT pulses_recorded FROM treatments WHERE patient = 'P-SYS-9'")" = "$fired"
check "... and its session as interrupted" \
	test "$(sql "SELECT state FROM sessions WHERE patient = 'P-SYS-9'")" = interrupted
check "the new daemon finds the unit" wait_unit_on_kmod 20
check "and a new session arms (READY) for P-SYS-10" arm_for root P-SYS-10 left-parietal
as root session end
check "... and ends: STANDBY" wait_for 5 gadget_state_is STANDBY
