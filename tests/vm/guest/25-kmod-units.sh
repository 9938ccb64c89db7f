#!/bin/sh
# smplaser.ko with two units (dummy_hcd with two UDCs): the second gets
# /dev/smplaser1, each has its own opener, unplugging one leaves the other,
# and a returning unit gets the lowest free number.  Also the heartbeat_ms
# module parameter.  Restores dummy_hcd with one UDC at the end.
. /etc/vm/kmod-lib.sh
KMOD_DMESG_MARK=$(dmesg | wc -l)

kmod_unload
dummy=$(grep dummy_hcd /etc/vm/modules)
if ! rmmod dummy_hcd || ! insmod "$dummy" num=2; then
	not_ok "dummy_hcd reloads with two UDCs"
	exit 1
fi
check "dummy_hcd has two UDCs" test -e /sys/class/udc/dummy_udc.0 -a -e /sys/class/udc/dummy_udc.1

check "heartbeat_ms=0 is refused at load" sh -c "! insmod $KMOD_KO heartbeat_ms=0 2>/dev/null"
check "heartbeat_ms=junk is refused at load" sh -c "! insmod $KMOD_KO heartbeat_ms=12x 2>/dev/null"
# heartbeat_ms at or above the unit's watchdog is refused per unit.
insmod "$KMOD_KO" heartbeat_ms=5000

# start_unit N SERIAL: a gadget on dummy_udc.N with its own socket
start_unit() {
	smplaser-gadget --socket "/run/unit$1.sock" --nv "/run/unit$1.nv" \
		--name "unit$1" --udc "dummy_udc.$1" --serial "$2" --self-test-ms 50 \
		--watchdog-ms "$WATCHDOG_MS" --emission-delay-ms "$EMISSION_DELAY_MS" \
		>>"/tmp/unit$1.log" 2>&1 &
}
stop_unit() { GADGET_SOCK=/run/unit$1.sock kmod-client -n ctl quit >/dev/null; }

start_unit 0 UNIT-A
check "unit A is /dev/smplaser0" wait_for 10 sh -c 'read s </sys/class/smplaser/smplaser0/serial && [ "$s" = UNIT-A ]'
start_unit 1 UNIT-B
check "a second unit gets /dev/smplaser1" wait_for 10 sh -c 'read s </sys/class/smplaser/smplaser1/serial && [ "$s" = UNIT-B ]'
check "both nodes are char devices" test -c /dev/smplaser0 -a -c /dev/smplaser1
check "heartbeat_ms=5000 (above the watchdog) falls back to half the unit's watchdog" \
	test "$(sysfs heartbeat_ms)" = $((WATCHDOG_MS / 2))
check "and the driver says so in the kernel log" sh -c 'dmesg | grep -q "heartbeat_ms=5000 does not fit"'

# One opener per unit, not one for the driver.
# The holder keeps B open until it is killed, not for a time a loaded host
# could outlast (the debug kernel under three QEMUs did).
kmod-client -d /dev/smplaser1 sleep 60000 >/dev/null 2>&1 &
holder=$!
wait_for 10 sh -c "ls -l /proc/$holder/fd 2>/dev/null | grep -q smplaser1"
check "unit B held open: unit A still opens" kc -d /dev/smplaser0 info
check "GET_INFO on /dev/smplaser0 is unit A" test "$(kc_field serial)" = UNIT-A
check "unit B held open: a second opener of B gets EBUSY" kmod-client -d /dev/smplaser1 open-fails EBUSY
kill $holder 2>/dev/null
wait $holder
check "GET_INFO on /dev/smplaser1 is unit B" sh -c 'kmod-client -d /dev/smplaser1 info | grep -q "^serial=UNIT-B"'

# Unit A leaves; B stays; A comes back as smplaser0.
stop_unit 0
check "unit A gone: /dev/smplaser0 disappears" wait_for 5 test ! -e /dev/smplaser0
check "unit B still answers on /dev/smplaser1" sh -c 'kmod-client -d /dev/smplaser1 status | grep -q "^state=STANDBY"'
start_unit 0 UNIT-A
check "unit A back: the lowest free number, /dev/smplaser0" \
	wait_for 10 sh -c 'read s </sys/class/smplaser/smplaser0/serial && [ "$s" = UNIT-A ]'
stop_unit 0
stop_unit 1
wait
rmmod smplaser

# A valid heartbeat_ms module parameter is taken as is.
rmmod dummy_hcd && insmod "$dummy"
check "dummy_hcd is back to one UDC" test -e /sys/class/udc/dummy_udc.0 -a ! -e /sys/class/udc/dummy_udc.1
insmod "$KMOD_KO" heartbeat_ms=300
gadget_start --self-test-ms 50 --watchdog-ms "$WATCHDOG_MS" >/dev/null 2>&1
check "heartbeat_ms=300 module parameter: sysfs heartbeat_ms 300" wait_sysfs heartbeat_ms 300 10

kmod_teardown
