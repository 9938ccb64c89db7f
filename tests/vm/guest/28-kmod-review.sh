#!/bin/sh
# smplaser.ko: what the maintainer's review of the module found (docs/reliability.md,
# "Kernel module: maintainer review").
#  - SIGKILL of the opener while its command waits for a reply the unit
#    never sends: disarmed at once, not after the command's timeout
#  - unbind while such a command holds the device lock: disarmed at once
. /etc/vm/kmod-lib.sh
WATCHDOG_MS=4000

kmod_setup --serial KMOD-REVIEW-01
kc params 1064 3000 4000 10000 10000
# The driver's heartbeat watchdog must not be what disarms here.
echo 1500 >"$KMOD_SYSFS/heartbeat_ms"
kmod-race kill-behind-slow
wait_for 3 gadget_state_is STANDBY
kmod-race unbind-behind-slow
wait_sysfs state standby 10

kmod_teardown
