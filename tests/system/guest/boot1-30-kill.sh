#!/bin/sh
# systemctl kill -s KILL while READY: the kernel disarms the unit, systemd
# restarts the daemon, the records are intact.
. "$(dirname "$0")/lib.sh"

check "armed (READY) for P-SYS-3" arm_for root P-SYS-3 occipital
pid0=$(systemctl show -p MainPID --value smplaserd.service)
systemctl kill -s KILL smplaserd.service
check "the unit is in STANDBY within 1 s of the kill" wait_for 1 gadget_state_is STANDBY
check "systemd restarts smplaserd (Restart=on-failure)" \
	wait_for 20 sh -c "systemctl is-active -q smplaserd.service &&
		[ \"\$(systemctl show -p MainPID --value smplaserd.service)\" != $pid0 ]"
check "NRestarts is 1" sh -c '[ "$(systemctl show -p NRestarts --value smplaserd.service)" = 1 ]'
check "the restarted daemon finds the unit" wait_unit_on_kmod 20
as root --json history P-SYS-1 >/dev/null
check "P-SYS-1's records are intact after the kill" cmp -s /tmp/ctl.out /tmp/history1.json
as root history P-SYS-3 >/dev/null
check "the treatment open at the kill is closed by reconciliation" \
	grep -Eq 'reconciled|interrupted' /tmp/ctl.out
as root session end
