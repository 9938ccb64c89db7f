#!/bin/sh
# The gadget enumerates through dummy_hcd as the unit proto.h describes, and
# a libusb client (usb-smoke) talks to the firmware model through it.
. /etc/vm/lib.sh

SERIAL=VMSMOKE-0001

if gadget_start --serial "$SERIAL" --self-test-ms 50 --verbose; then
	ok "smplaser-gadget starts and the unit enumerates through dummy_hcd"
else
	not_ok "smplaser-gadget starts and the unit enumerates through dummy_hcd"
	exit 1
fi
dev=$(unit_sysfs)
intf="$dev/$(basename "$dev"):1.0"

# --- what the guest kernel sees (sysfs) ---
check "the kernel sees 1209:534c" \
	test "$(cat "$dev/idVendor"):$(cat "$dev/idProduct")" = 1209:534c
check "the USB serial string is the unit's serial" test "$(cat "$dev/serial")" = "$SERIAL"
check "one vendor interface: class ff, subclass 01, protocol 01" \
	test "$(cat "$dev/bNumInterfaces" | tr -d ' ')/$(cat "$intf/bInterfaceClass")/$(cat "$intf/bInterfaceSubClass")/$(cat "$intf/bInterfaceProtocol")" = "1/ff/01/01"
eps=$(for e in "$intf"/ep_*; do echo "$(cat "$e/type") $(cat "$e/direction")"; done | sort | tr '\n' ',')
check "three endpoints: bulk OUT, bulk IN, interrupt IN (got: $eps)" \
	test "$eps" = "Bulk in,Bulk out,Interrupt in,"
int_ep=$(for e in "$intf"/ep_*; do [ "$(cat "$e/type")" = Interrupt ] && echo "$e"; done)
interval=$(cat "$int_ep/interval" 2>/dev/null)
check "the interrupt endpoint polls every 1-4 ms (got: $interval)" \
	sh -c "case '$interval' in 1ms|2ms|3ms|4ms) true ;; *) false ;; esac"
check "the unit reached STANDBY after its self-test" wait_for 5 gadget_state_is STANDBY

# --- a libusb client ---
if usb-smoke version info status >/tmp/smoke.out 2>&1; then
	ok "usb-smoke: GET_VERSION, GET_INFO and GET_STATUS round trips"
else
	not_ok "usb-smoke: GET_VERSION, GET_INFO and GET_STATUS round trips"
	sed 's/^/#   /' /tmp/smoke.out
fi
field() { tr ' ' '\n' </tmp/smoke.out | sed -n "s/^$1=//p" | head -n1; }
check "GET_INFO returns the unit's serial (got: $(field serial))" test "$(field serial)" = "$SERIAL"
check "GET_STATUS returns the state the unit is in (got: $(field state))" \
	test "$(field state)" = "$(gadget_field state)"
check "GET_VERSION says protocol 1 (got: $(field proto_version))" test "$(field proto_version)" = 1
check "usb-smoke finds the descriptors in proto.h's order" \
	grep -q '^class=0xff subclass=0x01 protocol=1 endpoints=3' /tmp/smoke.out
check "an unknown vendor request stalls" usb-smoke unknown-request
check "interrupt reports arrive, decode, and count up" usb-smoke reports 20
before=$(gadget_field disarms)
check "the DISARM control request reaches the model" usb-smoke disarm
check "the gadget counted that DISARM" test "$(gadget_field disarms)" = $((before + 1))

# --- hostile replies reach the host as they are ---
hostile() {	# hostile MODE STEP...: one hostile reply, then a good round trip
	mode=$1
	shift
	gadget_ctl hostile "$mode" 1 >/dev/null &&
		usb-smoke "$@" status
}
check "a reply with a bad CRC is caught by the client's codec" hostile bad-crc expect-decode-error bad-crc
check "a truncated reply is caught by the client's codec" hostile short expect-decode-error truncated
check "an oversize reply is caught by the client's codec" hostile oversize expect-decode-error oversize
check "a reply with the wrong seq is seen as such" hostile wrong-seq expect-wrong-seq
check "a stalled bulk IN is seen, cleared, and the unit answers again" hostile stall expect-stall
check "no answer is a timeout, and the unit answers again" hostile no-answer expect-no-answer
# A flood: 100 status reports back to back.  At the normal rate (one per
# SMPL_STATUS_PERIOD_MS = 8 ms) 150 reports take at least ~1190 ms.
gadget_ctl hostile flood 100 >/dev/null
check "a flood of reports reaches the host, each decodes, in sequence" \
	sh -c 'usb-smoke reports 150 >/tmp/flood.out'
ms=$(tr ' ' '\n' </tmp/flood.out | sed -n 's/^elapsed_ms=//p')
check "... faster than the normal rate allows: 150 reports in ${ms} ms (< 1100)" \
	test "${ms:-99999}" -lt 1100
check "... and the unit still answers" usb-smoke status

# --- the cable ---
gadget_ctl unplug >/dev/null
check "unplug: the unit leaves the guest's USB bus" wait_for 5 unit_gone
check "unplug: the gadget reports usb=unplugged" test "$(gadget_field usb)" = unplugged
gadget_ctl replug >/dev/null
check "replug: the unit enumerates again" wait_for 10 unit_configured
check "replug: the unit answers GET_STATUS" usb-smoke status

# --- a clean exit ---
check "quit: the gadget exits with status 0" gadget_stop
check "quit: the configfs gadget is gone" test ! -e /sys/kernel/config/usb_gadget/smplaser
check "quit: FunctionFS is unmounted" sh -c '! grep -q functionfs /proc/mounts'

# --- a gadget killed outright leaves configfs and FunctionFS behind ---
gadget_start --serial "$SERIAL" --self-test-ms 50 >/dev/null
kill -9 "$GADGET_PID"
wait "$GADGET_PID" 2>/dev/null
GADGET_PID=
check "killed: the unit leaves the bus" wait_for 5 unit_gone
if gadget_start --serial "$SERIAL" --self-test-ms 50; then
	ok "a new gadget starts over what the killed one left"
else
	not_ok "a new gadget starts over what the killed one left"
fi
check "... and answers GET_STATUS" usb-smoke status
check "... and exits cleanly" gadget_stop
check "... leaving no configfs gadget" test ! -e /sys/kernel/config/usb_gadget/smplaser
