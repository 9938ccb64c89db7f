#!/bin/sh
# smplaser.ko when its disarm does not take (S4): the vendor disarm request
# stalls, never completes, or is acknowledged and not obeyed, and the bulk
# DISARM is not obeyed either.
#  - a stalled request is sent again, then the bulk DISARM: the unit is in
#    STANDBY, by the driver, not by its own watchdog
#  - a request that never completes is bounded (100 ms), retried, then the
#    bulk DISARM; and later disarms work again (one hung request used to
#    turn every later self-disarm into a silent no-op)
#  - a request acknowledged while the reports still show the unit armed
#    200 ms later: retried, then the bulk DISARM
#  - nothing takes: the reader gets a DISARM_FAILED record (the errors, the
#    tries); the driver keeps trying, and disarms the unit once it obeys
. /etc/vm/kmod-lib.sh
# The unit's own watchdog far away, so only the driver can disarm in time
# (the failure path takes about 2 s from the last heartbeat, more on a slow
# kernel or with guests side by side).  It scales with the rig's latency
# limits: "nothing takes" below waits HB_MS + lat_ms 2000 with no heartbeat,
# and on the debug kernel (scale 3) a fixed 8 s watchdog faulted the unit
# before the driver's retry once the unit obeyed; the next arming then
# failed ENOTRECOVERABLE (clean-clone runs ci-k and ci-b).
WATCHDOG_MS=$((5000 + $(lat_ms 3000)))

kmod_setup --serial KMOD-DFAIL-01
kc params 1064 3000 4000 10000 10000
ARM="hb 100 arm wait-state READY 3000"
HB_MS=$(sysfs heartbeat_ms)

for mode in stall hang ignore; do
	gstat
	req0=$G_disarm_requests
	took0=$(dmesg | grep -c "the DISARM command took")
	kc $ARM ctl "disarm-request $mode" hb 0 heartbeat gadget-wait STANDBY 3000 $((HB_MS + $(lat_ms 1000))) $mode \
		events-until disarm 1000
	rc=$?
	lat=$(sed -n "s/^latency $mode=\\([0-9.]*\\) ms/\\1/p" /tmp/kc.out)
	kmod-client -n ctl "disarm-request normal"
	gstat
	check "heartbeats stop, the disarm request: $mode: STANDBY ${lat:-?} ms after the last heartbeat (limit $((HB_MS + $(lat_ms 1000))))" \
		test $rc = 0
	check "by the driver, not the unit's watchdog ($G_state, fault $G_fault)" test "$G_state" = STANDBY
	if [ "$mode" = hang ]; then
		# The unit reads no request while its ep0 is wedged: the kernel
		# log tells how the driver bounded it.
		check "the hung request was unlinked after 100 ms (kernel log)" \
			sh -c 'dmesg | tail -n 30 | grep -q "disarm request did not complete in 100 ms"'
	else
		check "the request was tried 3 times ($((G_disarm_requests - req0)) seen by the unit)" \
			test "$((G_disarm_requests - req0))" -ge 3
	fi
	check "then the bulk DISARM took (kernel log)" \
		test "$(dmesg | grep -c "the DISARM command took")" -gt "$took0"
done

# After the hung one: the next self-disarm (close) works at once.
kc $ARM close gadget-wait STANDBY 2000 100 release
check "after a hung request, close() while READY disarms again at once" test $? = 0

# --- nothing takes ------------------------------------------------------------------
# The request stalled, or acknowledged and not obeyed; the DISARM command
# never answered (and not obeyed).
for m in stall:-32 ignore:0; do
	mode=${m%%:*}
	kc $ARM events ctl "disarm-request $mode" ctl "deaf 1000" hb 0 sleep $((HB_MS + $(lat_ms 2000))) \
		events
	gstat
	armed_state=$G_state
	grep 'type=disarm-failed' /tmp/kc.out | head -n1 | sed 's/^#*/#/'
	check "request $mode, DISARM command unanswered: the reader gets a DISARM_FAILED record" \
		grep -q 'type=disarm-failed' /tmp/kc.out
	check "with the request's error (${m#*:}) and the command's (ETIMEDOUT, -110), 3 tries" \
		grep -q "type=disarm-failed control_error=${m#*:} command_error=-110 tries=3" /tmp/kc.out
	check "exactly once" test "$(grep -c 'type=disarm-failed' /tmp/kc.out)" = 1
	check "the unit did not obey: it is still armed ($armed_state)" \
		sh -c "[ $armed_state = READY ] || [ $armed_state = ARMING ] || [ $armed_state = EMITTING ]"
	kmod-client -n ctl "disarm-request normal"
	kmod-client -n ctl "deaf 0"
	check "the driver keeps trying: once the unit obeys, it is disarmed" \
		wait_for 3 gadget_state_is STANDBY FAULT
	wait_for 3 gadget_state_is STANDBY
done

kmod_teardown
