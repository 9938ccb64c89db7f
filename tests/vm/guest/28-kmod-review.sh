#!/bin/sh
# smplaser.ko: what the maintainer's review of the module found (docs/reliability.md,
# "Kernel module: maintainer review").
#  - SIGKILL of the opener while its command waits for a reply the unit
#    never sends: disarmed at once, not after the command's timeout
#  - unbind while such a command holds the device lock: disarmed at once
#  - unbind while READY when the unit stalls or ignores the disarm request:
#    the driver still disarms it (not the unit's own watchdog)
#  - unbind while an ioctl waits on a page fault in its argument
#    (userfaultfd): the unbind does not wait for the fault
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

# --- unbind while READY, the unit failing the disarm request -----------------------
intf=$(basename "$(readlink -f $KMOD_SYSFS/device)")
drv=/sys/bus/usb/drivers/smplaser
for mode in stall ignore; do
	kc hb 100 arm wait-state READY 3000 ctl "disarm-request $mode" write "$drv/unbind" "$intf" \
		gadget-wait STANDBY 2000 "$(lat_ms 300)" unbind-$mode
	rc=$?
	lat=$(sed -n "s/^latency unbind-$mode=\([0-9.]*\) ms/\1/p" /tmp/kc.out)
	check "unbind while READY, the disarm request answered '$mode': STANDBY ${lat:-never} ms later, by the driver (unit watchdog ${WATCHDOG_MS} ms)" test $rc = 0
	kmod-client -n ctl "disarm-request normal" >/dev/null
	wait_for 5 gadget_state_is STANDBY
	echo "$intf" >"$drv/bind"
	wait_for 5 test -e "$KMOD_SYSFS/state" || { not_ok "rebind after unbind-$mode"; break; }
	[ "$(sysfs state)" = standby ] || break	# the unit's watchdog faulted it
done

kmod-race fault-unbind
wait_sysfs state standby 10

kmod_teardown
