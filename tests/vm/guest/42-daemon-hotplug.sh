#!/bin/sh
# Two units at once on one smplaserd (kmod; dummy_hcd reloaded with two
# UDCs), each with its own session, and an unplug while emitting:
#  - both units arm and fire at once; B's session ends normally with every
#    pulse recorded against B;
#  - A, still emitting, is unplugged: no further pulse, A's object goes away
#    (InterfacesRemoved), its treatment is closed as unknown (the counter
#    cannot be read) with its records intact, B is untouched, the daemon stays
#    up; plugged again, the same serial comes back at the same object path and
#    the unit's shot counter reconciles A's treatment, pulses in flight too.
. /etc/vm/daemon-lib.sh
A=VMHOT0A
B=VMHOT0B
SOCK_B=/run/smplaser-gadget-b.sock

gb() { smplaser-gadget --ctl "$SOCK_B" "$@"; }
gb_field() { gb status | tr ' ' '\n' | sed -n "s/^$1=//p"; }

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
wait_until 10 gb status || { not_ok "gadget B starts"; exit 1; }
wait_until 10 test -c /dev/smplaser0 -a -c /dev/smplaser1 ||
	{ not_ok "smplaser.ko binds both units"; exit 1; }

stamp "daemon start"
daemon_start || { not_ok "smplaserd owns its name on the system bus"; show_daemon_log; exit 1; }
if wait_unit "$A" kmod 15 && wait_unit "$B" kmod 5; then
	ok "discovery finds both units (kmod)"
else
	not_ok "discovery finds both units (kmod)"
	show_daemon_log
	exit 1
fi

# --- two sessions at once ------------------------------------------------------------
stamp "sessions"
check "a session on A (P-HOT-A)" ctl -u "$A" session start P-HOT-A
check "a session on B (P-HOT-B) while A's is open" ctl -u "$B" session start P-HOT-B
for u in "$A" "$B"; do
	if ctl -u "$u" session patch crown && ctl -u "$u" session eyewear &&
		ctl -u "$u" params set $PARAMS && ctl -u "$u" arm; then
		ok "$u: armed for its own session"
	else
		not_ok "$u: armed for its own session"
	fi
done
a0=$(gadget_field shots)
b0=$(gb_field shots)
gadget_ctl footswitch 1 >/dev/null
gb footswitch 1 >/dev/null
sleep 1
gb footswitch 0 >/dev/null
usleep 300000
fb=$(($(gb_field shots) - b0))
check "both units fire at once (A emitting: $(gadget_field state), B fired $fb)" \
	test "$(gadget_field state)" = EMITTING -a "$fb" -gt 0
check "B's session ends on its own (its endpoint given)" ctl -u "$B" session end --endpoint whitening
smplaserctl history P-HOT-B >/tmp/hb.out 2>&1
rb=$(history_field P-HOT-B 6 /tmp/hb.out)
check "every pulse of B is in B's record ($rb recorded, $fb fired)" test "$rb" = "$fb"
check "B's treatment is completed, on unit B" grep -q "completed.*$B" /tmp/hb.out

# --- unplug A while EMITTING -------------------------------------------------------
stamp "unplug"
path=$(unit_path "$A")
smplaser-daemon-probe watch-objects 30 >/tmp/om.out 2>&1 &
OM_PID=$!
wait_until 5 grep -q watching /tmp/om.out
shots_pre=$(gadget_field shots)
gadget_ctl unplug >/dev/null
usleep 200000
shots_unplug=$(gadget_field shots)
check "unplugged: A's object goes away" wait_no_unit "$A" 10
check "the daemon stays up, B is still there" sh -c \
	". /etc/vm/daemon-lib.sh; kill -0 $DAEMON_PID && unit_ready_on $B kmod"
usleep 500000
shots_later=$(gadget_field shots)
check "no further pulse after the unplug ($shots_unplug, then $shots_later)" \
	test "$shots_unplug" = "$shots_later"
gadget_ctl footswitch 0 >/dev/null
smplaserctl history P-HOT-A >/tmp/ha.out 2>&1
check "A's treatment is unknown while A is away ($(history_field P-HOT-A 5 /tmp/ha.out))" \
	test "$(history_field P-HOT-A 5 /tmp/ha.out)" = unknown
# Every pulse fired before the cable went is recorded (one may be in flight
# as the cable goes), and none that was not fired.
recorded=$(history_field P-HOT-A 6 /tmp/ha.out)
before=$((shots_pre - a0))
check "A's records are intact: $recorded pulses recorded, $before fired before the unplug" \
	test "${recorded:-0}" -ge $((before - 1)) -a "${recorded:-0}" -le $((shots_unplug - a0))
gadget_ctl replug >/dev/null
check "plugged again: the same serial comes back at the same path ($path)" \
	wait_unit "$A" kmod 15
check "ObjectManager said so: InterfacesRemoved, then InterfacesAdded for $path" sh -c \
	"grep -E '^Interfaces(Added|Removed) $path\$' /tmp/om.out | cut -d' ' -f1 | tr '\n' ' ' |
	 grep -q '^InterfacesRemoved InterfacesAdded'"
smplaserctl history P-HOT-A >/tmp/ha2.out 2>&1
fired=$((shots_later - a0))
check "A's treatment is reconciled from the counter: \
$(history_field P-HOT-A 6 /tmp/ha2.out) pulses, $fired fired ($recorded reported)" \
	test "$(history_field P-HOT-A 5 /tmp/ha2.out)" = reconciled -a \
	"$(history_field P-HOT-A 6 /tmp/ha2.out)" = "$fired"
kill "$OM_PID" 2>/dev/null
stamp "done"

daemon_stop
gadget_stop >/dev/null 2>&1
gb quit >/dev/null 2>&1
wait "$PID_B" 2>/dev/null
rmmod smplaser 2>/dev/null
# Leave the rig as found: one UDC.
rmmod dummy_hcd && insmod "$dummy"
check "the daemon's log has no crash" sh -c "! grep -Eq 'AddressSanitizer|runtime error|Segmentation' $DAEMON_LOG"
