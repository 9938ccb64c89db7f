#!/bin/sh
# Hostile devices (S7) with raw-gadget (the debug kernel has it; skipped
# elsewhere): smplaser-rawgadget answers the host's enumeration itself, so
# it can show descriptors FunctionFS never would.  Each device: no splat,
# never armed, the driver refuses it or works with it, nothing in between.
#  - refused: no interrupt endpoint, an extra endpoint, the interrupt
#    endpoint OUT or declared bulk, the bulk OUT declared IN, interrupt
#    wMaxPacketSize 0 or 7, a bulk wMaxPacketSize that is not a power of
#    two, protocol version 2, a short GET_VERSION answer
#  - works: interrupt wMaxPacketSize 1023, a second configuration (and the
#    switch to it while READY disarms), a second interface (only the first
#    binds), an alternate setting
#  - behind good descriptors: a silent interrupt endpoint and garbage
#    reports while armed, a disarm request that stalls or never completes
#    and a bulk DISARM not obeyed, a late reply, unplug in every state and in
#    the middle of each ioctl (close() racing the unplug: 29-kmod-threads)
. /etc/vm/kmod-lib.sh
KMOD_DMESG_MARK=$(dmesg | wc -l)
if [ ! -c /dev/raw-gadget ]; then
	ok "raw-gadget: not in this kernel (the debug kernel has it) # SKIP"
	exit 0
fi
GADGET_SOCK=/run/smplaser-raw.sock
export GADGET_SOCK
RAW_LOG=/tmp/smplaser-rawgadget.log
RAW_PID=
WATCHDOG_MS=4000

raw_start() {
	rm -f "$GADGET_SOCK"
	smplaser-rawgadget --socket "$GADGET_SOCK" --desc "$1" --serial "RAW-$1" \
		--self-test-ms 50 --emission-delay-ms 300 --watchdog-ms "$WATCHDOG_MS" \
		>>"$RAW_LOG" 2>&1 &
	RAW_PID=$!
	wait_for 5 gadget_ctl status && wait_for 10 unit_sysfs
}

raw_stop() {
	[ -n "$RAW_PID" ] || return 0
	gadget_ctl quit >/dev/null 2>&1 || kill "$RAW_PID" 2>/dev/null
	wait "$RAW_PID"
	RAW_PID=
	wait_for 5 unit_gone
}

kmod_load
ARM="hb 100 arm wait-state READY 3000"

# --- descriptors the driver must refuse --------------------------------------------
# (the variable is not "v": kmod-lib's sysfs helpers use that one)
for desc in no-int extra-ep int-out int-as-bulk bulk-out-as-in int-maxp0 int-maxp7 \
	bulk-maxp96 bad-version short-version; do
	if ! raw_start "$desc"; then
		not_ok "raw-gadget $desc: the device enumerates"
		sed 's/^/#   /' "$RAW_LOG" | tail -n 5
		raw_stop
		continue
	fi
	usleep 1500000
	gstat
	check "$desc: refused, no /dev/smplaser0; the unit never armed ($G_state)" \
		sh -c "[ ! -e /dev/smplaser0 ] && [ $G_state != ARMING ] && [ $G_state != READY ]"
	dmesg | tail -n 6 | grep -E 'smplaser|probe' | sed 's/^/#   /'
	raw_stop
done

# --- descriptors the driver must work with ------------------------------------------
for desc in good int-maxp1023 two-configs two-interfaces alt-setting; do
	if ! raw_start "$desc" || ! wait_sysfs state standby 10; then
		not_ok "$desc: /dev/smplaser0 comes, state standby"
		dmesg | tail -n 10 | sed 's/^/#   /'
		raw_stop
		continue
	fi
	ok "$desc: /dev/smplaser0 comes, state standby"
	check "$desc: SET_PARAMS, ARM (READY), DISARM" \
		kc params 1064 3000 4000 10000 10000 $ARM disarm
	if [ "$desc" = two-interfaces ]; then
		check "two-interfaces: only interface 0 binds (one node)" test ! -e /dev/smplaser1
	fi
	if [ "$desc" = two-configs ]; then
		usb=$(unit_sysfs)
		kmod-client params 1064 3000 4000 10000 10000 $ARM sleep 5000 >/tmp/holder.out 2>&1 &
		holder=$!
		wait_for 5 gadget_state_is READY
		echo 2 >"$usb/bConfigurationValue"
		check "two-configs: switching to configuration 2 while READY disarms the unit" \
			wait_for 3 gadget_not_armed
		check "configuration 2 has no usable interface: no node" wait_for 3 test ! -e /dev/smplaser0
		kill "$holder" 2>/dev/null
		wait "$holder" 2>/dev/null
		echo 1 >"$usb/bConfigurationValue"
		check "back to configuration 1: the node comes back" wait_sysfs state standby 10
	fi
	raw_stop
done

# --- behaviour behind good descriptors ----------------------------------------------
raw_start good && wait_sysfs state standby 10 || { not_ok "the good raw-gadget unit binds"; exit 1; }
kc params 1064 3000 4000 10000 10000
kc $ARM ctl "reports silent" gadget-wait STANDBY 3000 "$(lat_ms 400)" silent events-until disarm 1000
rc=$?
kmod-client -n ctl "reports normal"
check "raw-gadget: silent interrupt endpoint while READY: disarmed (reason 7)" \
	sh -c "[ $rc = 0 ] && grep -q 'type=disarm reason=7' /tmp/kc.out"
kc $ARM ctl "footswitch 1" wait-state EMITTING 2000 ctl "reports garbage" \
	gadget-wait STANDBY 3000 "$(lat_ms 400)" garbage events
rc=$?
kmod-client -n ctl "footswitch 0"
kmod-client -n ctl "reports normal"
check "raw-gadget: garbage reports while EMITTING: disarmed (reason 8)" \
	sh -c "[ $rc = 0 ] && grep -q 'type=disarm reason=8' /tmp/kc.out"
kc sleep 100 ctl "reports silent" sleep 150 expect EIO arm ctl "reports normal"
check "raw-gadget: ARM on a silent stream: EIO" test $? = 0
for mode in stall hang; do
	kc sleep 100 $ARM ctl "disarm-request $mode" hb 0 heartbeat gadget-wait STANDBY 3000 "$((500 + $(lat_ms 1000)))" $mode
	rc=$?
	kmod-client -n ctl "disarm-request normal"
	check "raw-gadget: the disarm request ${mode}s: the bulk DISARM disarms the unit" test $rc = 0
done
kc sleep 200 $ARM ctl "disarm-request stall" ctl "deaf 1000" hb 0 sleep 2200 events
rc=$?
kmod-client -n ctl "disarm-request normal"
kmod-client -n ctl "deaf 0"
check "raw-gadget: nothing takes: the reader gets DISARM_FAILED" grep -q 'type=disarm-failed' /tmp/kc.out
check "raw-gadget: and once the unit obeys, the driver disarms it" wait_for 3 gadget_state_is STANDBY FAULT
kc sleep 200 ctl "late 700 1" expect ETIMEDOUT status sleep 300 status status
check "raw-gadget: a late reply costs one ETIMEDOUT, then commands work" test $? = 0
kmod-race unplug-states
kmod-race unplug-ioctl
raw_stop

kmod_unload
kmod_dmesg_clean
