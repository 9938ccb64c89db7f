#!/bin/sh
# The unit behind the gadget, driven over USB as a host would (usb-smoke) and
# through the control socket as a technician's hands would: nothing fires
# without ARM + READY + footswitch, interlocks and the unit's own watchdog
# disarm, the DISARM request works, and the shot count survives power cycles
# and restarts of the gadget (nv file).
. /etc/vm/lib.sh

DELAY_MS=300
WATCHDOG_MS=600
rm -f "$GADGET_NV"
start_unit() {
	gadget_start --serial VMUNIT-0001 --self-test-ms 50 \
		--emission-delay-ms $DELAY_MS --watchdog-ms $WATCHDOG_MS
}
state_is() { gadget_state_is "$1"; }
shots() { gadget_field shots; }
out_field() { tr ' ' '\n' <"$1" | sed -n "s/^$2=//p" | tail -n1; }
not_armed() { gadget_not_armed; }
fired_since() { [ "$(shots)" != "$1" ]; }
fault_is() { gadget_status; [ "$(status_field state)/$(status_field fault)" = "$1" ]; }

# host_start OUT STEP...: a usb-smoke host session in the background that
# runs STEP... then heart-beats (reading reports) until host_end; then the
# steps in $HOST_AFTER.  host_end: its exit status; its output as diagnostics.
host_start() {
	host_out=$1
	shift
	rm -f /tmp/host.stop
	usb-smoke "$@" heartbeat-until /tmp/host.stop $HOST_AFTER >"$host_out" 2>&1 &
	host=$!
}
host_end() {
	touch /tmp/host.stop
	wait "$host"
	host_rc=$?
	sed 's/^/# host: /' "$host_out"
	return $host_rc
}

if start_unit && wait_for 5 state_is STANDBY; then
	ok "the unit enumerates and reaches STANDBY"
else
	not_ok "the unit enumerates and reaches STANDBY"
	exit 1
fi

# --- nothing fires without ARM ---
gadget_ctl footswitch 1 >/dev/null
usleep 500000
check "the footswitch in STANDBY fires nothing" test "$(shots)" = 0
gadget_ctl footswitch 0 >/dev/null
check "ARM before SET_PARAMS is refused (NO_PARAMS)" usb-smoke arm NO_PARAMS
gadget_ctl interlock door open >/dev/null
check "ARM with the door open is refused (INTERLOCK_OPEN)" usb-smoke params 10000 arm INTERLOCK_OPEN
check "... and the unit stays in STANDBY" state_is STANDBY
gadget_ctl interlock door closed >/dev/null

# --- arm and fire: footswitch in READY, at 10 Hz ---
host_start /tmp/fire.out params 10000 arm OK
check "ARM goes through the emission delay to READY" wait_for 5 state_is READY
gadget_ctl footswitch 1 >/dev/null
usleep 700000
gadget_ctl footswitch 0 >/dev/null
usleep 200000		# the last reports reach the host
check "the host session ran to its end" host_end
check "the unit stayed armed while the host heart-beat (last report: $(out_field /tmp/fire.out last_state), refused: $(out_field /tmp/fire.out heartbeats_refused))" \
	test "$(out_field /tmp/fire.out last_state)/$(out_field /tmp/fire.out heartbeats_refused)" = READY/0
fired=$(shots)
pulses=$(out_field /tmp/fire.out pulses)
check "holding the footswitch in READY fires (shots=$fired)" test "$fired" -gt 0
check "every pulse is reported on interrupt IN ($pulses reports, $fired shots)" \
	test "$pulses" = "$fired"
check "the last pulse report carries the shot count ($(out_field /tmp/fire.out last_shot))" \
	test "$(out_field /tmp/fire.out last_shot)" = "$fired"

# --- the unit's own watchdog: the host stopped heart-beating above ---
check "no heartbeat: the unit's watchdog leaves READY" wait_for 5 not_armed
late_ms=$(( ($(gadget_field state_changed_ns) - $(out_field /tmp/fire.out last_heartbeat_ns)) / 1000000 ))
check "the watchdog disarmed ${late_ms} ms after the last heartbeat (watchdog ${WATCHDOG_MS} ms, -100/+300 ms)" \
	test "$late_ms" -ge $((WATCHDOG_MS - 100)) -a "$late_ms" -le $((WATCHDOG_MS + 300))
check "the watchdog fault is latched (FAULT/WATCHDOG)" fault_is FAULT/WATCHDOG
check "ARM while the fault is latched is refused (FAULT_LATCHED)" usb-smoke arm FAULT_LATCHED
check "ACK_FAULT clears it" usb-smoke ack-fault OK
check "... back to STANDBY" wait_for 2 state_is STANDBY

# --- an interlock opening in READY disarms; the footswitch then fires nothing ---
before=$(shots)
host_start /tmp/trip.out params 10000 arm OK
wait_for 5 state_is READY
gadget_ctl interlock estop open >/dev/null
check "the emergency stop in READY disarms at once" not_armed
check "... into FAULT(INTERLOCK)" fault_is FAULT/INTERLOCK
gadget_ctl footswitch 1 >/dev/null
usleep 500000
gadget_ctl footswitch 0 >/dev/null
check "... and the footswitch fires nothing after it" test "$(shots)" = "$before"
host_end
check "ACK_FAULT with the emergency stop still pressed: CAUSE_PERSISTS" usb-smoke ack-fault CAUSE_PERSISTS
gadget_ctl interlock estop closed >/dev/null
usb-smoke ack-fault OK >/dev/null 2>&1

# --- a footswitch already held when READY comes must be released first ---
wait_for 2 state_is STANDBY
before=$(shots)
gadget_ctl footswitch 1 >/dev/null
HOST_AFTER=disarm host_start /tmp/held.out params 10000 arm OK
check "ARM with the footswitch held reaches READY" wait_for 5 state_is READY
usleep 400000
check "a footswitch held through ARMING fires nothing in READY" test "$(shots)" = "$before"
check "... the unit says it needs a release" test "$(gadget_field need_release)" = 1
gadget_ctl footswitch 0 >/dev/null
gadget_ctl footswitch 1 >/dev/null
check "... after release and press it fires" wait_for 2 fired_since "$before"
gadget_ctl footswitch 0 >/dev/null
check "the host's session ended with the DISARM control request" host_end
check "... which put the unit in STANDBY" wait_for 2 state_is STANDBY

# --- the host goes away: the unit disarms at once, not after its watchdog ---
# The host deconfigures the unit (a bus reset does the same to the function).
host_start /tmp/deconf.out params 10000 arm OK
wait_for 5 state_is READY
dev=$(unit_sysfs)
t0=$(gadget_field now_ns)
echo 0 >"$dev/bConfigurationValue"
check "deconfigured by the host in READY: the unit disarms" wait_for 1 not_armed
late_ms=$(( ($(gadget_field state_changed_ns) - t0) / 1000000 ))
check "... at once: ${late_ms} ms, well before its ${WATCHDOG_MS} ms watchdog" \
	test "$late_ms" -lt $((WATCHDOG_MS / 2))
check "... into STANDBY, not a fault" state_is STANDBY
host_end >/dev/null
echo 1 >"$dev/bConfigurationValue"
wait_for 10 unit_configured

# The cable is pulled while the unit is emitting.
host_start /tmp/unplug.out params 10000 arm OK
wait_for 5 state_is READY
before=$(shots)
gadget_ctl footswitch 1 >/dev/null
wait_for 3 fired_since "$before"
gadget_ctl unplug >/dev/null
at_unplug=$(shots)
check "unplugged while emitting: the unit disarms at once" not_armed
usleep 400000
check "... no pulse after the unplug ($at_unplug, then $(shots))" test "$(shots)" = "$at_unplug"
gadget_ctl footswitch 0 >/dev/null
host_end >/dev/null
check "... the gadget counted the host leaving ($(gadget_field disconnects) times)" \
	test "$(gadget_field disconnects)" -ge 2
gadget_ctl replug >/dev/null
check "plugged again: the unit enumerates, in STANDBY" wait_for 10 unit_configured
check "... and answers GET_STATUS" usb-smoke status

# --- the shot count survives power cycles and restarts (nv file) ---
fired=$(shots)
gadget_ctl power off >/dev/null
check "power off: the unit leaves the bus" wait_for 5 unit_gone
gadget_status
check "power off: state OFF, powered=0" test "$(status_field state)/$(status_field powered)" = OFF/0
check "power off: the nv file has the shot count" grep -qx "shot_count=$fired" "$GADGET_NV"
gadget_ctl power on >/dev/null
check "power on: the unit enumerates again" wait_for 10 unit_configured
check "power on: self-test, then STANDBY (never armed)" wait_for 5 state_is STANDBY
check "power on: the shot count is kept ($fired)" test "$(shots)" = "$fired"
check "the gadget exits cleanly" gadget_stop
if start_unit; then
	usb-smoke status >/tmp/restart.out 2>&1
	check "after a restart of the gadget GET_STATUS shows the kept shot count ($fired)" \
		test "$(out_field /tmp/restart.out shots)" = "$fired"
	gadget_stop
else
	not_ok "the gadget restarts with the nv file"
fi
