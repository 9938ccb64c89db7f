#!/bin/sh
# After a reboot: the history is intact and the cooldown still enforced.
. "$(dirname "$0")/lib.sh"

check "smplaserd started at boot" wait_for 30 systemctl is-active -q smplaserd.service
check "the unit is plugged in again" plug
check "smplaserd finds it (kmod)" wait_unit_on_kmod 30
as root history P-SYS-1
check "P-SYS-1's treatment survived the reboot" grep -q crown /tmp/ctl.out
as root session start P-SYS-1
as root session patch crown
rc=$?
check "re-treating P-SYS-1's crown is refused by a safety rule: exit 4 (got $rc)" test "$rc" = 4
check "the refusal says when the crown becomes eligible" grep -Eq '20[0-9]{2}-[0-9]{2}-[0-9]{2}' /tmp/ctl.out
as root session end
check "the unit stayed in STANDBY" gadget_state_is STANDBY
