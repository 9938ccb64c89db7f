#!/bin/sh
# smplaserd in the guest on the kmod backend (system bus, our D-Bus policy,
# smplaserctl as the client), with two units (dummy_hcd with two UDCs):
#  - discovery finds both; a whole treatment on each at the same time, each
#    with its own session, every pulse recorded against its own unit;
#  - latency from an interlock opening at the gadget to the daemon's
#    PropertiesChanged seen by a client (20 trials: 10 open, 10 close);
#  - SIGKILL while READY: the driver disarms within 50 ms; the restarted
#    daemon finds the units again and reconciles;
#  - unplug while EMITTING: no further pulse, the unit's object goes away,
#    the session is interrupted with its records intact, the other unit is
#    untouched; plugged again, the same serial comes back at the same path.
. /etc/vm/daemon-lib.sh
A=VMKMOD0A
B=VMKMOD0B
SOCK_B=/run/smplaser-gadget-b.sock

gb() { smplaser-gadget --ctl "$SOCK_B" "$@"; }
gb_field() { gb status | tr ' ' '\n' | sed -n "s/^$1=//p"; }

# --- two units ------------------------------------------------------------------------
dummy=$(grep dummy_hcd /etc/vm/modules)
if [ "$(ls /sys/class/udc | wc -l)" -lt 2 ]; then
	rmmod dummy_hcd && insmod "$dummy" num=2
fi
check "dummy_hcd gives two UDCs" test "$(ls /sys/class/udc | wc -l)" -ge 2
bus_start || { not_ok "the system bus starts"; exit 1; }
mod_load
gadget_start --serial "$A" --self-test-ms 50 --emission-delay-ms 300 --watchdog-ms 1000 \
	--udc dummy_udc.0 || { not_ok "gadget A starts"; exit 1; }
smplaser-gadget --socket "$SOCK_B" --nv /run/smplaser-gadget-b.nv --name smplaserb \
	--udc dummy_udc.1 --serial "$B" --self-test-ms 50 --emission-delay-ms 300 \
	--watchdog-ms 1000 >>/tmp/smplaser-gadget-b.log 2>&1 &
PID_B=$!
wait_for 10 gb status || { not_ok "gadget B starts"; exit 1; }
wait_for 10 test -c /dev/smplaser0 -a -c /dev/smplaser1 ||
	{ not_ok "smplaser.ko binds both units"; exit 1; }

stamp "daemon start"
daemon_start || { not_ok "smplaserd owns its name on the system bus"; show_daemon_log; exit 1; }
if wait_unit "$A" kmod 10 && wait_unit "$B" kmod 5; then
	ok "discovery finds both units on /dev/smplaser0 and 1 (Backend kmod)"
else
	not_ok "discovery finds both units with the kmod backend"
	show_daemon_log
	exit 1
fi
check "the daemon watches kernel uevents (no udevd in the guest)" \
	grep -q 'watching for units (kernel uevents' "$DAEMON_LOG"

# --- a whole treatment on each unit, at once --------------------------------------------
stamp "treatments"
a0=$(gadget_field shots)
b0=$(gb_field shots)
check "a session on A (P-KMOD-A)" ctl -u "$A" session start P-KMOD-A
check "a session on B (P-KMOD-B) while A's is open" ctl -u "$B" session start P-KMOD-B
for u in "$A" "$B"; do
	ctl -u "$u" session patch crown && ctl -u "$u" session eyewear &&
		ctl -u "$u" params set $PARAMS && ctl -u "$u" arm ||
		not_ok "session set-up and arming on $u"
done
gadget_ctl footswitch 1 >/dev/null
gb footswitch 1 >/dev/null
sleep 1
gadget_ctl footswitch 0 >/dev/null
gb footswitch 0 >/dev/null
usleep 300000
fa=$(($(gadget_field shots) - a0))
fb=$(($(gb_field shots) - b0))
check "kmod: both units fired while their footswitches were held (A $fa, B $fb pulses)" \
	test "$fa" -gt 0 -a "$fb" -gt 0
check "each session ends on its own unit" sh -c \
	". /etc/vm/daemon-lib.sh; ctl -u $A session end && ctl -u $B session end"
smplaserctl history P-KMOD-A >/tmp/ha.out 2>&1
smplaserctl history P-KMOD-B >/tmp/hb.out 2>&1
ra=$(history_field P-KMOD-A 6 /tmp/ha.out)
rb=$(history_field P-KMOD-B 6 /tmp/hb.out)
check "kmod: every pulse of A is in A's record ($ra recorded, $fa fired)" test "$ra" = "$fa"
check "kmod: every pulse of B is in B's record ($rb recorded, $fb fired)" test "$rb" = "$fb"
check "both treatments are recorded as completed, each on its own unit" sh -c \
	"grep -q 'completed.*$A' /tmp/ha.out && grep -q 'completed.*$B' /tmp/hb.out"

# --- latency: interlock at the gadget -> PropertiesChanged at a client ------------
stamp "latency"
if smplaser-daemon-probe latency "$(unit_path $A)" "$GADGET_SOCK" 20 >/tmp/lat.out 2>&1; then
	ok "20 door trials each reach a client as PropertiesChanged(Interlocks)"
else
	not_ok "20 door trials each reach a client as PropertiesChanged(Interlocks)"
	sed 's/^/#   /' /tmp/lat.out
fi
echo "# LATENCY kmod interlock->PropertiesChanged: $(tail -n1 /tmp/lat.out)"

# --- SIGKILL while READY ------------------------------------------------------------
stamp "kill"
if arm_for "$A" P-KMOD-2 crown; then ok "armed (READY) for P-KMOD-2"; else
	not_ok "armed (READY) for P-KMOD-2"; show_daemon_log; fi
smplaser-daemon-probe kill-standby "$DAEMON_PID" "$GADGET_SOCK" 3000 >/tmp/kill.out 2>&1
wait "$DAEMON_PID" 2>/dev/null
DAEMON_PID=
ms=$(sed -n 's/.*standby_ms=\([0-9.]*\).*/\1/p' /tmp/kill.out)
echo "# KILL kmod: $(cat /tmp/kill.out)"
check "kmod: SIGKILL while READY: the unit is in STANDBY within 50 ms (${ms:-never} ms)" \
	awk -v m="${ms:-999999}" 'BEGIN { exit !(m <= 50) }'
check "kmod: no pulse after the kill ($(gadget_field state))" gadget_state_is STANDBY
daemon_start || { not_ok "the daemon restarts"; show_daemon_log; exit 1; }
check "the restarted daemon finds both units again (kmod)" sh -c \
	". /etc/vm/daemon-lib.sh; wait_unit $A kmod 10 && wait_unit $B kmod 5"
smplaserctl history P-KMOD-2 >/tmp/h2.out 2>&1
check "it reconciled the treatment the crash left open ($(history_field P-KMOD-2 5 /tmp/h2.out))" \
	grep -Eq 'reconciled|interrupted' /tmp/h2.out

# --- unplug while EMITTING ----------------------------------------------------------
stamp "unplug"
path=$(unit_path "$A")
shots0=0
if arm_for "$A" P-KMOD-3 crown && shots0=$(gadget_field shots) &&
	gadget_ctl footswitch 1 >/dev/null &&
	wait_for 3 gadget_state_is EMITTING && usleep 500000; then
	ok "emitting for P-KMOD-3 ($(gadget_field shots) shots so far)"
else
	not_ok "emitting for P-KMOD-3"
	show_daemon_log
fi
shots_pre=$(gadget_field shots)
gadget_ctl unplug >/dev/null
usleep 200000
shots_unplug=$(gadget_field shots)
check "unplugged: the unit's object goes away (InterfacesRemoved)" wait_no_unit "$A" 10
check "the daemon stays up, the other unit is still there" sh -c \
	". /etc/vm/daemon-lib.sh; kill -0 $DAEMON_PID && unit_ready_on $B kmod"
usleep 500000
shots_later=$(gadget_field shots)
check "no further pulse after the unplug ($shots_unplug, then $shots_later)" \
	test "$shots_unplug" = "$shots_later"
gadget_ctl footswitch 0 >/dev/null
smplaserctl history P-KMOD-3 >/tmp/h3.out 2>&1
check "the session ended as interrupted ($(history_field P-KMOD-3 5 /tmp/h3.out))" \
	test "$(history_field P-KMOD-3 5 /tmp/h3.out)" = interrupted
# Every pulse fired before the cable went is recorded (one may be in flight
# as the cable goes), and none that was not fired.
recorded=$(history_field P-KMOD-3 6 /tmp/h3.out)
before=$((shots_pre - shots0))
check "its records are intact: $recorded pulses recorded, $before fired before the unplug" \
	test "${recorded:-0}" -ge $((before - 1)) -a "${recorded:-0}" -le $((shots_unplug - shots0))
gadget_ctl replug >/dev/null
check "plugged again: the same serial comes back at the same path ($path)" \
	wait_unit "$A" kmod 10
stamp "done"

daemon_stop
gadget_stop >/dev/null 2>&1
gb quit >/dev/null 2>&1
wait "$PID_B" 2>/dev/null
rmmod smplaser 2>/dev/null
# Leave the rig as found: one UDC.
rmmod dummy_hcd && insmod "$dummy"
check "the daemon's log has no crash" sh -c "! grep -Eq 'AddressSanitizer|runtime error|Segmentation' $DAEMON_LOG"
