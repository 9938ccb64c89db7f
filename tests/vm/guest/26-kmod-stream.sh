#!/bin/sh
# smplaser.ko watches the unit's status stream (S4: a silent or garbled
# stream while armed disarms) and arms only on a fresh, healthy one:
#  - the interrupt endpoint goes silent while READY: the driver disarms
#    (reason STATUS_SILENT, 7) after 100 ms of silence, not before; no pulse
#    after; the reader is told
#  - malformed reports while EMITTING: disarm (STATUS_GARBLED, 8) after 4
#  - ARM while the stream is silent or garbled: EIO, and the ARM never
#    reaches the unit (it used to fall back to a bulk GET_STATUS and arm)
#  - the interrupt endpoint stalls while READY: disarm (STATUS_LOST, 5) and
#    the stream restarts; on the debug kernel (fault injection) also when
#    the restart's URB submissions fail: retried, never given up
. /etc/vm/kmod-lib.sh

kmod_setup --serial KMOD-STREAM-01
kc params 1064 3000 4000 10000 10000
ARM="hb 100 arm wait-state READY 3000"

# --- silence while READY --------------------------------------------------------
kc $ARM events ctl "reports silent" gadget-wait STANDBY 3000 "$(lat_ms 300)" silent \
	events-until disarm 1000
rc=$?
lat=$(sed -n 's/^latency silent=\([0-9.]*\) ms/\1/p' /tmp/kc.out)
kmod-client -n ctl "reports normal"
check "the interrupt endpoint goes silent while READY: STANDBY ${lat:-?} ms later (limit $(lat_ms 300))" test $rc = 0
diag "measured: reports stop -> STANDBY ${lat:-?} ms (the bound: 100 ms of silence)"
check "not before 100 ms of silence ($lat ms)" awk -v l="${lat:-0}" 'BEGIN { exit !(l >= 95) }'
check "the reader gets a disarm record, reason STATUS_SILENT (7)" grep -q 'type=disarm reason=7' /tmp/kc.out
gstat
check "the unit is in STANDBY, not FAULT: the driver disarmed it ($G_state)" test "$G_state" = STANDBY

# --- garbage while EMITTING -----------------------------------------------------------
gstat
kc $ARM ctl "footswitch 1" wait-state EMITTING 2000 sleep 200 events ctl "reports garbage" \
	gadget-wait STANDBY 3000 "$(lat_ms 300)" garbage sleep 200 ctl "reports normal" sleep 100 events
rc=$?
lat=$(sed -n 's/^latency garbage=\([0-9.]*\) ms/\1/p' /tmp/kc.out)
kmod-client -n ctl "footswitch 0"
kmod-client -n ctl "reports normal"
check "malformed reports while EMITTING: STANDBY ${lat:-?} ms later (4 in a row; limit $(lat_ms 300))" test $rc = 0
check "the reader gets a disarm record, reason STATUS_GARBLED (8)" grep -q 'type=disarm reason=8' /tmp/kc.out
shots=$(grep 'type=pulse' /tmp/kc.out | tail -n1 | sed 's/.*shot=\([0-9]*\).*/\1/')
gstat
check "no pulse after the disarm: the unit's counter stopped at $G_shots (last pulse event ${shots:-none})" \
	test -n "$shots" -a "$G_shots" -le "$((shots + 1))"

# --- ARM on a dead or garbled stream ----------------------------------------------------
for mode in silent garbage; do
	gstat
	cmds=$G_commands
	kc ctl "reports $mode" sleep 150 expect EIO arm ctl "reports normal"
	gstat
	check "ARM while the stream is $mode: EIO" grep -q '^arm refused=EIO' /tmp/kc.out
	check "and the ARM never reached the unit ($cmds -> $G_commands commands, $G_state)" \
		test "$G_commands" = "$cmds" -a "$G_state" = STANDBY
done
check "with reports back, ARM works again" kc sleep 50 $ARM disarm

# --- the interrupt endpoint stalls while READY ---------------------------------------------
# FunctionFS may fail to halt the endpoint (dummy_udc refuses while a report
# is queued); the driver logs every -EPIPE it sees: try the stall again until
# one reached it.
for try in 1 2 3; do
	epipe0=$(dmesg | grep -c "status reports failed (-32)")
	kc $ARM events ctl "reports stall" events-until disarm 1500
	rc=$?
	[ "$(dmesg | grep -c "status reports failed (-32)")" -gt "$epipe0" ] && break
	diag "the endpoint did not halt (try $try)"
	kc disarm >/dev/null
done
check "the interrupt endpoint stalls while READY: the driver disarms (reason STATUS_LOST, 5)" \
	sh -c "[ $rc = 0 ] && grep -q 'type=disarm reason=5' /tmp/kc.out"
kmod-client -n ctl "interlock door open"
check "the stream restarts: sysfs follows the door" wait_sysfs interlocks 0x02 3
kmod-client -n ctl "interlock door closed"
wait_sysfs interlocks 0x00 3

# --- the restart's URB submission fails (fault injection: debug kernel) ---------------------
dbg=/sys/kernel/debug
grep -q " $dbg " /proc/mounts || mount -t debugfs none "$dbg" 2>/dev/null
fi_dir=$dbg/smplaser/fail_int_submit
if [ "$VM_KERNEL" = debug ] || [ -d "$fi_dir" ]; then
	check "the fault injection point is there ($fi_dir)" test -d "$fi_dir"
	echo 0 >"$fi_dir/verbose" 2>/dev/null
	echo 1 >"$fi_dir/interval" 2>/dev/null
	echo 3 >"$fi_dir/times" 2>/dev/null
	echo 100 >"$fi_dir/probability" 2>/dev/null
	kmod-client -n ctl "reports stall"
	usleep 500000
	echo 0 >"$fi_dir/probability" 2>/dev/null
	kmod-client -n ctl "interlock key open"
	check "3 failed resubmissions in a row: the stream still restarts (sysfs follows the key)" \
		wait_sysfs interlocks 0x01 5
	kmod-client -n ctl "interlock key closed"
	wait_sysfs interlocks 0x00 3
	check "and ARM works on it" kc sleep 50 $ARM disarm
else
	ok "fault injection: not in this kernel (the debug kernel has it) # SKIP"
fi

kmod_teardown
