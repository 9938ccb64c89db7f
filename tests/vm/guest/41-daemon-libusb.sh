#!/bin/sh
# smplaserd without the kernel module (libusb backend), and hotplug of the
# driver binding:
#  - rmmod while the daemon runs: refused while the daemon holds the node;
#    unbind, and the daemon moves the unit to libusb (same object path) and
#    stays up; rmmod then goes through;
#  - a whole treatment through libusb, every pulse recorded; interlock ->
#    PropertiesChanged latency through libusb;
#  - hostile replies (bad CRC, wrong sequence, stall, none,
#    a report flood) are errors, never a crash; ARM with a mangled reply is
#    refused and the unit disarmed;
#  - SIGKILL while READY: nothing in the kernel disarms, the unit's own
#    watchdog does (within watchdog_ms); the restarted daemon finds the unit
#    again and reconciles;
#  - unplug and replug on libusb: the object goes and comes back, the daemon
#    does not spin on the dead device's fd;
#  - with libusb off in the config: insmod (bind), unbind and bind again make
#    the unit's object appear, disappear and come back.
. /etc/vm/daemon-lib.sh
SERIAL=VMUSB01
WATCHDOG_MS=1000

bus_start || { not_ok "the system bus starts"; exit 1; }
mod_load
gadget_start --serial "$SERIAL" --self-test-ms 50 --emission-delay-ms 300 \
	--watchdog-ms "$WATCHDOG_MS" || { not_ok "the gadget starts"; exit 1; }
wait_until 10 test -c /dev/smplaser0 || { not_ok "smplaser.ko binds the unit"; exit 1; }
daemon_start || { not_ok "smplaserd owns its name on the system bus"; show_daemon_log; exit 1; }
wait_unit "$SERIAL" kmod 10 || { not_ok "the unit is on kmod"; show_daemon_log; exit 1; }
path=$(unit_path "$SERIAL")
intf=$(basename "$(readlink -f /sys/class/smplaser/smplaser0/device)")

# --- rmmod while the daemon runs ------------------------------------------------------
stamp "rmmod"
if rmmod smplaser 2>/tmp/rmmod.err; then
	ok "rmmod smplaser while the daemon runs"
else
	diag "rmmod: $(cat /tmp/rmmod.err)"
	check "rmmod is refused while the daemon holds /dev/smplaser0; the daemon is fine" \
		unit_ready_on "$SERIAL" kmod
	check "unbinding the driver from the unit's interface ($intf)" \
		sh -c "echo $intf >/sys/bus/usb/drivers/smplaser/unbind"
	check "the daemon moves the unit to libusb" wait_unit "$SERIAL" libusb 10
	check "rmmod smplaser now goes through" rmmod smplaser
fi
check "the unit is on libusb with the module gone" wait_unit "$SERIAL" libusb 10
check "at the same object path" busctl --system get-property org.smplaser.Laser1 "$path" \
	org.smplaser.Laser1.Unit Serial
check "the daemon stays up" daemon_alive

# --- a whole treatment with the module unloaded ---------------------------------------
stamp "treatment"
if treat "$SERIAL" P-USB-1 crown 1; then
	ok "a whole treatment through the libusb backend"
else
	not_ok "a whole treatment through the libusb backend"
	show_daemon_log
fi
check "libusb: the unit fired ($TREAT_SHOTS pulses)" test "$TREAT_SHOTS" -gt 0
check "libusb: every pulse is in the history ($TREAT_RECORDED recorded, $TREAT_SHOTS fired)" \
	test "$TREAT_RECORDED" = "$TREAT_SHOTS"
check "libusb: recorded as completed" test "$TREAT_OUTCOME" = completed
[ "$TREAT_OUTCOME" = completed ] || grep -E 'disarm|fault|interrupt' "$DAEMON_LOG" | tail -n 5 | sed 's/^/#   /'

# --- latency through libusb -------------------------------------------------------------
stamp "latency"
if smplaser-daemon-probe latency "$path" "$GADGET_SOCK" 20 >/tmp/lat.out 2>&1; then
	ok "libusb: 20 door trials each reach a client as PropertiesChanged(Interlocks)"
else
	not_ok "libusb: 20 door trials each reach a client as PropertiesChanged(Interlocks)"
	sed 's/^/#   /' /tmp/lat.out
fi
echo "# LATENCY libusb interlock->PropertiesChanged: $(tail -n1 /tmp/lat.out)"

# --- hostile replies through libusb (S7) ------------------------------------------------
# The daemon's own HEARTBEATs share the unit's replies with the command under
# test, so the unit misbehaves until told otherwise, then is made well again.
stamp "hostile"
for mode in bad-crc wrong-seq stall; do
	gadget_ctl hostile "$mode" 100000 >/dev/null
	if smplaserctl -u "$SERIAL" params set $PARAMS >/tmp/hostile.out 2>&1; then
		not_ok "libusb: a $mode reply to SET_PARAMS is an error" "$(cat /tmp/hostile.out)"
	else
		ok "libusb: a $mode reply to SET_PARAMS is an error"
	fi
	gadget_ctl hostile none 0 >/dev/null
done
gadget_ctl hostile no-answer 1 >/dev/null
gadget_ctl hostile flood 500 >/dev/null
check "libusb: after hostile replies, a missing reply and a report flood the daemon is up and the unit answers" \
	ctl -u "$SERIAL" params set $PARAMS
check "libusb: and the unit stayed in STANDBY" gadget_state_is STANDBY

# --- SIGKILL while READY: the unit's watchdog ------------------------------------------
stamp "kill"
# Arming with a mangled reply: the daemon cannot know whether the unit armed,
# so it disarms it; the arm is refused.
if ctl -u "$SERIAL" session start P-USB-2 && ctl -u "$SERIAL" session patch crown &&
	ctl -u "$SERIAL" session eyewear && gadget_ctl hostile bad-crc 100000 >/dev/null &&
	! smplaserctl -u "$SERIAL" arm --no-wait >/tmp/arm.out 2>&1; then
	ok "libusb: ARM answered with a bad CRC is refused"
else
	not_ok "libusb: ARM answered with a bad CRC is refused" "$(cat /tmp/arm.out)"
fi
diag "arm with a bad CRC: $(head -n2 /tmp/arm.out | tr '\n' ' ')"
gadget_ctl hostile none 0 >/dev/null
check "libusb: and the unit is not left armed ($(gadget_field state))" \
	wait_until 3 gadget_state_is STANDBY
if ctl -u "$SERIAL" arm && wait_until 5 gadget_state_is READY; then
	ok "armed (READY) for P-USB-2"
else
	not_ok "armed (READY) for P-USB-2"; show_daemon_log
fi
smplaser-daemon-probe kill-standby "$DAEMON_PID" "$GADGET_SOCK" 3000 >/tmp/kill.out 2>&1
wait "$DAEMON_PID" 2>/dev/null
DAEMON_PID=
ms=$(sed -n 's/.*standby_ms=\([0-9.]*\).*/\1/p' /tmp/kill.out)
echo "# KILL libusb: $(cat /tmp/kill.out)"
# The watchdog counts from the last HEARTBEAT; the gadget ticks at least every 100 ms.
check "libusb: SIGKILL while READY: the unit's watchdog disarms it within ${WATCHDOG_MS} ms (${ms:-never} ms)" \
	awk -v m="${ms:-999999}" -v l="$((WATCHDOG_MS + 100))" 'BEGIN { exit !(m <= l) }'
check "libusb: disarmed by its watchdog: $(gadget_field state), fault $(gadget_field fault)" \
	test "$(gadget_field fault)" = WATCHDOG
daemon_start || { not_ok "the daemon restarts"; show_daemon_log; exit 1; }
check "the restarted daemon finds the unit again (libusb)" wait_unit "$SERIAL" libusb 10
smplaserctl history P-USB-2 >/tmp/h2.out 2>&1
check "it reconciled the treatment the crash left open ($(history_field P-USB-2 5 /tmp/h2.out))" \
	grep -Eq 'reconciled|interrupted' /tmp/h2.out

# --- unplug and replug on libusb -------------------------------------------------------
stamp "unplug"
smplaser-daemon-probe watch-objects 20 >/tmp/om.out 2>&1 &
OM_PID=$!
wait_until 5 grep -q watching /tmp/om.out
gadget_ctl unplug >/dev/null
check "libusb: unplugged, the unit's object goes away" wait_no_unit "$SERIAL" 10
check "libusb: the daemon stays up, and idle (not spinning on a dead fd)" sh -c \
	"[ -d /proc/$DAEMON_PID ] && a=\$(cut -d' ' -f14,15 /proc/$DAEMON_PID/stat | tr ' ' +) &&
	 sleep 1 && b=\$(cut -d' ' -f14,15 /proc/$DAEMON_PID/stat | tr ' ' +) &&
	 [ \$(( (\$b) - (\$a) )) -lt 50 ]"
gadget_ctl replug >/dev/null
check "libusb: plugged again, it comes back at the same path" wait_unit "$SERIAL" libusb 10
check "ObjectManager said so: InterfacesRemoved, then InterfacesAdded for $path" sh -c \
	"grep -E '^Interfaces(Added|Removed) $path\$' /tmp/om.out | cut -d' ' -f1 | tr '\n' ' ' |
	 grep -q '^InterfacesRemoved InterfacesAdded'"
kill "$OM_PID" 2>/dev/null

# --- bind, unbind, bind with libusb off --------------------------------------------------
stamp "rebind"
daemon_stop
daemon_start libusb=false || { not_ok "the daemon starts with libusb off"; exit 1; }
check "libusb off, no driver: the unit has no object" no_unit "$SERIAL"
mod_load
check "insmod: the driver binds and the unit appears (kmod)" wait_unit "$SERIAL" kmod 10
check "unbind: the unit's object disappears" \
	sh -c ". /etc/vm/daemon-lib.sh; echo $intf >/sys/bus/usb/drivers/smplaser/unbind && wait_no_unit $SERIAL 10"
check "bind again: it comes back at the same path" \
	sh -c ". /etc/vm/daemon-lib.sh; echo $intf >/sys/bus/usb/drivers/smplaser/bind && wait_unit $SERIAL kmod 10"
check "the daemon stays up" daemon_alive
stamp "done"

daemon_stop
check "the daemon's log has no crash" sh -c "! grep -Eq 'AddressSanitizer|runtime error|Segmentation' $DAEMON_LOG"
