#!/bin/sh
# smplaser.ko: replies that come late, and the driver's own races.
#  - a reply that comes after its command timed out: that command fails
#    (ETIMEDOUT), the next ones work (the late reply is skipped; it used to
#    break the bulk channel until re-plug); a late ARM reply too
#  - DISARM while a command the unit does not answer holds the device
#    lock: the disarm request reaches the unit at once; a signal while it
#    waits for the lock gives EINTR with the unit disarmed all the same
#  - an ARM that a DISARM overtook at the unit: the driver disarms again
#  - a HEARTBEAT that comes after heartbeat_ms does not keep it armed
#  - an O_RDONLY opener cannot arm, set parameters, heart-beat or
#    acknowledge, and can disarm
#  - the unit leaves READY by itself: the driver no longer counts it armed
#  - a serial with a Latin-1 letter is refused (the kernel's isalnum()
#    takes it)
. /etc/vm/kmod-lib.sh
WATCHDOG_MS=4000

kmod_setup --serial KMOD-RACE-01
kc params 1064 3000 4000 10000 10000
ARM="hb 100 arm wait-state READY 3000"

# --- late replies -------------------------------------------------------------------
late0=$(dmesg | grep -c "skipped a late reply")
kc ctl "late 700 1" expect ETIMEDOUT status sleep 300 status status params 1064 3000 4000 10000 10000
rc=$?
check "a reply 700 ms late: that GET_STATUS fails with ETIMEDOUT" grep -q '^status refused=ETIMEDOUT' /tmp/kc.out
check "and the next commands work (GET_STATUS twice, SET_PARAMS)" test $rc = 0
check "the late reply was skipped (kernel log)" \
	test "$(dmesg | grep -c "skipped a late reply")" -gt "$late0"
kc ctl "late 700 2" expect ETIMEDOUT status sleep 1000 expect ETIMEDOUT status status status
check "two late replies in a row: two ETIMEDOUT, then the commands work again" test $? = 0
kc ctl "late 700 1" expect ETIMEDOUT arm sleep 300 status events
rc=$?
check "a late ARM reply: ETIMEDOUT, the unit armed anyway is disarmed (reason 6), commands work" \
	sh -c "[ $rc = 0 ] && grep -q 'type=disarm reason=6' /tmp/kc.out && grep -q '^state=STANDBY' /tmp/kc.out"

# --- the driver's races (kmod-race prints its own TAP lines) --------------------------
echo 1500 >"$KMOD_SYSFS/heartbeat_ms"
kmod-race disarm-behind-slow
kmod-race arm-cancel
echo 500 >"$KMOD_SYSFS/heartbeat_ms"
kmod-race late-heartbeat 6
kmod-race readonly
kmod-race self-standby
wait_for 3 gadget_state_is STANDBY

# --- a serial with a Latin-1 letter -----------------------------------------------------
gadget_stop >/dev/null 2>&1
gadget_start --self-test-ms 50 --watchdog-ms "$WATCHDOG_MS" --serial "$(printf 'KMOD-\351-01')" ||
	{ not_ok "the gadget starts with a Latin-1 serial"; exit 1; }
usleep 1500000
check "a unit whose serial has a Latin-1 letter (0xe9) is refused: no node" test ! -e /dev/smplaser0
check "the driver says why (GET_INFO failed: -71, EPROTO)" sh -c 'dmesg | tail -n 20 | grep -q "GET_INFO failed: -71"'

kmod_teardown
