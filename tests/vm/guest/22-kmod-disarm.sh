#!/bin/sh
# smplaser.ko disarms by itself (S4), measured at the gadget:
#   closing the fd while READY          STANDBY within 50 ms
#   heartbeats stop while READY         STANDBY within heartbeat_ms + 100 ms
#   the door opens while EMITTING       the driver's DISARM request, no
#                                       further pulse, a disarm event
. /etc/vm/kmod-lib.sh

kmod_setup --serial KMOD-DISARM-01
HB_MS=$(sysfs heartbeat_ms)
ARM="hb 100 arm wait-state READY 3000"

# --- release -------------------------------------------------------------------
kc params 1064 3000 4000 10000 10000 disarms-base $ARM close \
	gadget-wait STANDBY 2000 "$(lat_ms 50)" release disarms-wait 1 1000 1000 release-request
rc=$?
lat=$(sed -n 's/^latency release=\([0-9.]*\) ms/\1/p' /tmp/kc.out)
check "close while READY: STANDBY ${lat:-?} ms after close() (limit $(lat_ms 50) ms)" test $rc = 0
diag "measured: release -> STANDBY ${lat:-?} ms"
check "close sent the DISARM control request" grep -q '^latency release-request=' /tmp/kc.out

# --- heartbeat ---------------------------------------------------------------
kc $ARM hb 0 heartbeat gadget-wait STANDBY 3000 $((HB_MS + $(lat_ms 100))) heartbeat \
	events-until disarm 1000 status
rc=$?
lat=$(sed -n 's/^latency heartbeat=\([0-9.]*\) ms/\1/p' /tmp/kc.out)
check "heartbeats stop: STANDBY ${lat:-?} ms after the last one (limit $((HB_MS + $(lat_ms 100))) ms)" test $rc = 0
diag "measured: last heartbeat -> STANDBY ${lat:-?} ms (heartbeat_ms $HB_MS)"
check "not before heartbeat_ms: the driver waited ($lat >= $HB_MS ms)" \
	awk -v l="${lat:-0}" -v h="$HB_MS" 'BEGIN { exit !(l >= h) }'
check "the unit is in STANDBY, not FAULT: the driver, not the unit's watchdog" \
	test "$(kc_field state)" = STANDBY
check "a disarm event with reason heartbeat (3)" grep -q 'type=disarm reason=3' /tmp/kc.out
check "GET_STATUS no longer shows the driver armed" test "$(kc_field armed)" = 0

# A shorter heartbeat_ms from sysfs applies too.
check "sysfs heartbeat_ms takes 200 (the device is closed)" sh -c "echo 200 >$KMOD_SYSFS/heartbeat_ms"
kc info $ARM hb 0 heartbeat events-until disarm 1000 gadget-wait STANDBY 3000 $((200 + $(lat_ms 100))) heartbeat-200
rc=$?
lat=$(sed -n 's/^latency heartbeat-200=\([0-9.]*\) ms/\1/p' /tmp/kc.out)
check "heartbeat_ms 200 from sysfs: STANDBY ${lat:-?} ms after the last heartbeat (limit $((200 + $(lat_ms 100))))" test $rc = 0
echo "$HB_MS" >"$KMOD_SYSFS/heartbeat_ms"

# Heartbeats keep it armed past heartbeat_ms.
kc $ARM sleep $((HB_MS * 2)) status disarm
check "steady heartbeats keep the unit READY for 2 x heartbeat_ms" test "$(kc_field state)" = READY

# --- the door opens while EMITTING ------------------------------------------------
kc $ARM ctl "footswitch 1" wait-state EMITTING 2000 sleep 250 events disarms-base \
	ctl "interlock door open" disarms-wait 1 1000 "$(lat_ms 100)" interlock sleep 400 events \
	ctl "footswitch 0" ctl "interlock door closed" status
rc=$?
gstat
lat=$(sed -n 's/^latency interlock=\([0-9.]*\) ms.*/\1/p' /tmp/kc.out)
check "door open while EMITTING: the driver's DISARM request came ${lat:-?} ms later" test $rc = 0
diag "measured: door open -> DISARM request at the gadget ${lat:-?} ms (upper bound, polled)"
check "a disarm event with reason interlock (4) and the door bit" \
	grep -q 'type=disarm reason=4 interlocks=0x02' /tmp/kc.out
# From the unit's state change (the gadget's clock) to the driver's disarm
# event (the kernel's): both CLOCK_MONOTONIC in this guest.
ev_ns=$(sed -n 's/.* t_ns=\([0-9]*\) type=disarm reason=4 .*/\1/p' /tmp/kc.out)
klat=$(awk -v a="${ev_ns:-0}" -v b="$G_state_changed_ns" 'BEGIN { printf "%.1f", (a - b) / 1e6 }')
diag "measured: door open (unit FAULT) -> the driver's disarm ${klat} ms"
check "the driver disarmed within $(lat_ms 100) ms of the unit reporting the door (${klat} ms)" \
	awk -v l="$klat" -v e="${ev_ns:-0}" -v m="$(lat_ms 100)" 'BEGIN { exit !(e > 0 && l >= 0 && l <= m) }'
check "an interlock event for the door" grep -q 'type=interlock interlocks=0x02' /tmp/kc.out
check "no pulse event after the door opened" \
	awk '/type=interlock interlocks=0x02/ { open = 1 } open && /type=pulse/ { exit 1 }' /tmp/kc.out
check "pulses did come before the door opened" grep -q 'type=pulse' /tmp/kc.out
last=$(grep 'type=pulse' /tmp/kc.out | tail -n1 | sed 's/.*shot=\([0-9]*\).*/\1/')
check "the unit's shot counter stopped at the last pulse event ($last = $G_shots)" test "$last" = "$G_shots"
check "the unit is not armed: FAULT (interlock) latched ($G_state)" test "$G_state" = FAULT
kc ack

kmod_teardown
