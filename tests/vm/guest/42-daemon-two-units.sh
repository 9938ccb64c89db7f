#!/bin/sh
# Two units at once on one smplaserd (kmod), each with its own session and
# its own records.  dummy_hcd is reloaded with two UDCs for a second gadget.
. /etc/vm/daemon-lib.sh
A=VMTWO0A
B=VMTWO0B
SOCK_B=/run/smplaser-gadget-b.sock
LOG_B=/tmp/smplaser-gadget-b.log

# --- two UDCs ----------------------------------------------------------------------
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
	--watchdog-ms 1000 >>"$LOG_B" 2>&1 &
PID_B=$!
gb() { smplaser-gadget --ctl "$SOCK_B" "$@"; }
gb_field() { gb status | tr ' ' '\n' | sed -n "s/^$1=//p"; }
check "gadget B answers" wait_for 10 gb status
check "both units have a node" wait_for 10 test -c /dev/smplaser0 -a -c /dev/smplaser1

daemon_start || { not_ok "smplaserd owns its name on the system bus"; show_daemon_log; exit 1; }
check "unit A is on the bus (kmod)" wait_unit "$A" kmod 10
check "unit B is on the bus (kmod)" wait_unit "$B" kmod 10

# --- two sessions at once ----------------------------------------------------------
stamp "sessions"
a0=$(gadget_field shots)
b0=$(gb_field shots)
check "a session on A (P-TWO-A)" ctl -u "$A" session start P-TWO-A
check "a session on B (P-TWO-B), while A's is open" ctl -u "$B" session start P-TWO-B
for u in "$A" "$B"; do
	ctl -u "$u" session patch crown && ctl -u "$u" session eyewear &&
		ctl -u "$u" params set $PARAMS || not_ok "session set-up on $u"
done
check "both armed" sh -c ". /etc/vm/daemon-lib.sh; ctl -u $A arm && ctl -u $B arm"
gadget_ctl footswitch 1 >/dev/null
gb footswitch 1 >/dev/null
sleep 1
gadget_ctl footswitch 0 >/dev/null
gb footswitch 0 >/dev/null
usleep 300000
fa=$(($(gadget_field shots) - a0))
fb=$(($(gb_field shots) - b0))
check "both units fired (A $fa, B $fb pulses)" test "$fa" -gt 0 -a "$fb" -gt 0
check "each session ends on its own unit" sh -c \
	". /etc/vm/daemon-lib.sh; ctl -u $A session end && ctl -u $B session end"
ra=$(history_field P-TWO-A 6)
rb=$(history_field P-TWO-B 6)
check "A's records hold A's pulses ($ra of $fa)" test "$ra" = "$fa"
check "B's records hold B's pulses ($rb of $fb)" test "$rb" = "$fb"
check "each record names its own unit" sh -c \
	"smplaserctl history P-TWO-A | grep -q $A && smplaserctl history P-TWO-B | grep -q $B"
stamp "done"

daemon_stop
gadget_stop >/dev/null 2>&1
gb quit >/dev/null 2>&1
wait "$PID_B" 2>/dev/null
# Leave the rig as found: one UDC.
rmmod dummy_hcd && insmod "$dummy"
check "the daemon's log has no crash" sh -c "! grep -Eq 'AddressSanitizer|runtime error|Segmentation' $DAEMON_LOG"
