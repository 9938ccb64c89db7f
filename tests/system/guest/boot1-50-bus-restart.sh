#!/bin/sh
# The system bus restarts under smplaserd while READY: the daemon disarms and
# exits non-zero (it cannot serve without its bus), systemd starts it again
# (Restart=on-failure) once the bus is back, and it finds the unit and closes
# the treatment left open.  Last in boot 1: nothing after it relies on the
# services that had a connection to the old bus.
. "$(dirname "$0")/lib.sh"

check "armed (READY) for P-SYS-7" arm_for root P-SYS-7 right-temporal
pid0=$(daemon_prop MainPID)
restarts0=$(daemon_prop NRestarts)
t0=$(now_ms)
systemctl restart dbus.service
check "dbus.service is back" systemctl is-active -q dbus.service
check "the unit is in STANDBY after the bus went away" wait_for 5 gadget_state_is STANDBY
check "smplaserd exited and systemd started it again (MainPID $pid0 -> new)" \
	wait_for 30 sh -c "systemctl is-active -q smplaserd.service &&
		[ \"\$(systemctl show -p MainPID --value smplaserd.service)\" != $pid0 ]"
echo "measured: bus restart -> smplaserd active again in $(( $(now_ms) - t0 )) ms"
check "it exited with a failure, so Restart=on-failure applied (NRestarts $restarts0 -> $(daemon_prop NRestarts))" \
	test "$(daemon_prop NRestarts)" = $((restarts0 + 1))
check "the journal says the daemon lost its bus and disarmed" \
	sh -c "journalctl -u smplaserd.service _PID=$pid0 -o cat --no-pager | grep -qi disarm"
check "the restarted daemon finds the unit on the new bus" wait_unit_on_kmod 20
# closed_with_pulses PATIENT: the patient's treatment is closed, and its pulse
# count is known (the unit's counter was read).
closed_with_pulses() {
	_row=$(sql "SELECT outcome, coalesce(pulse_count, 'unknown') FROM treatments
		WHERE patient = '$1'")
	case $_row in
	open\|*|unknown\|*|*\|unknown|"") echo "$1: ${_row:-no treatment}"; return 1 ;;
	esac
}
check "P-SYS-7's treatment is closed, with its pulse count" closed_with_pulses P-SYS-7
echo "P-SYS-7's treatment (outcome|pulses): $(sql "SELECT outcome, pulse_count FROM treatments WHERE patient = 'P-SYS-7'")"
check "a new session arms (READY) for P-SYS-8 through the new bus and polkit" \
	arm_for root P-SYS-8 right-parietal
as root session end
check "and ends: STANDBY" wait_for 5 gadget_state_is STANDBY
