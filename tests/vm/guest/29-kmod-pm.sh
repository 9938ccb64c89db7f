#!/bin/sh
# smplaser.ko has no suspend, resume, pre_reset or post_reset callbacks, on
# purpose (include/uapi/smplaser.h): the USB core unbinds it instead.
#  - a USB reset (usbfs USBDEVFS_RESET) while READY: the core unbinds the
#    driver (disarm, disconnect record) and binds it again
#  - runtime PM: the device is never autosuspended while the driver is bound
#  - system sleep (pm_test=devices) while READY: the core unbinds the
#    driver first (disarm), binds it again after
. /etc/vm/kmod-lib.sh
WATCHDOG_MS=4000

kmod_setup --serial KMOD-PM-01
ARM="hb 100 arm wait-state READY 3000"

# --- USB reset while READY ------------------------------------------------------------
kc params 1064 3000 4000 10000 10000 $ARM usbreset gadget-wait STANDBY 2000 300 reset \
	events-until disconnect 3000
rc=$?
check "a USB reset while READY: the unit is disarmed, the reader gets the disconnect record" test $rc = 0
check "the driver is bound again after the reset: /dev/smplaser0, standby" wait_sysfs state standby 10

# --- runtime PM ---------------------------------------------------------------------------
usb=$(unit_sysfs)
if [ -f "$usb/power/control" ]; then
	echo 0 >"$usb/power/autosuspend_delay_ms" 2>/dev/null
	echo auto >"$usb/power/control"
	usleep 1000000
	read -r rs <"$usb/power/runtime_status"
	check "autosuspend allowed, delay 0: the device stays active while bound ($rs)" test "$rs" = active
	echo on >"$usb/power/control"
else
	ok "runtime PM: not in this kernel # SKIP"
fi

# --- system sleep (suspend test mode: devices suspend and resume) ---------------------------
if [ -f /sys/power/pm_test ] && grep -qw freeze /sys/power/state; then
	echo devices >/sys/power/pm_test
	[ -f /sys/module/suspend/parameters/pm_test_delay ] &&
		echo 1 >/sys/module/suspend/parameters/pm_test_delay
	# An opener holds the unit READY, heart-beating, across the sleep.
	kmod-client params 1064 3000 4000 10000 10000 $ARM sleep 6000 >/tmp/sleep-holder.out 2>&1 &
	holder=$!
	wait_for 5 gadget_state_is READY
	echo freeze >/sys/power/state 2>/tmp/pm.err
	rc=$?
	echo none >/sys/power/pm_test
	check "system sleep (pm_test devices) went through (status $rc $(cat /tmp/pm.err))" test $rc = 0
	check "after it the unit is not armed ($(gadget_field state))" wait_for 5 gadget_not_armed
	check "and the driver is bound again: /dev/smplaser0, standby" wait_sysfs state standby 10
	check "system sleep unbinds the driver (kernel log: disconnected)" \
		sh -c 'dmesg | tail -n 60 | grep -q "smplaser0 disconnected"'
	kill "$holder" 2>/dev/null
	wait "$holder" 2>/dev/null
else
	ok "system sleep: pm_test is not in this kernel # SKIP"
fi

kmod_teardown
