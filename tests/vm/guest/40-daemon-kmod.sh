#!/bin/sh
# smplaserd in the guest on the kmod backend (system bus, our D-Bus policy,
# smplaserctl as the client):
#  - discovery finds the unit; a whole treatment, every pulse recorded;
#  - latency from an interlock opening at the gadget to the daemon's
#    PropertiesChanged seen by a client (20 open + 20 close trials);
#  - SIGKILL while READY: the driver disarms within 50 ms; the restarted
#    daemon finds the unit again and reconciles;
#  - unplug while EMITTING: no further pulse, the unit's object goes away,
#    the session is interrupted with its records intact; plugged again, the
#    same serial comes back at the same object path.
. /etc/vm/daemon-lib.sh
SERIAL=VMKMOD01

bus_start || { not_ok "the system bus starts"; exit 1; }
mod_load
gadget_start --serial "$SERIAL" --self-test-ms 50 --emission-delay-ms 300 \
	--watchdog-ms 1000 || { not_ok "the gadget starts"; exit 1; }
wait_for 10 test -c /dev/smplaser0 || { not_ok "smplaser.ko binds the unit"; exit 1; }

stamp "daemon start"
daemon_start || { not_ok "smplaserd owns its name on the system bus"; show_daemon_log; exit 1; }
if wait_unit "$SERIAL" kmod 10; then
	ok "discovery finds the unit on /dev/smplaser0 (Backend kmod)"
else
	not_ok "discovery finds the unit with the kmod backend"
	show_daemon_log
	exit 1
fi
check "the daemon watches kernel uevents (no udevd in the guest)" \
	grep -q 'watching for units (kernel uevents' "$DAEMON_LOG"

# --- a whole treatment ---------------------------------------------------------
stamp "treatment"
if treat "$SERIAL" P-KMOD-1 crown 1; then
	ok "a whole treatment through the kmod backend"
else
	not_ok "a whole treatment through the kmod backend"
	show_daemon_log
fi
check "kmod: the unit fired while the footswitch was held ($TREAT_SHOTS pulses)" \
	test "$TREAT_SHOTS" -gt 0
check "kmod: every pulse is in the history ($TREAT_RECORDED recorded, $TREAT_SHOTS fired)" \
	test "$TREAT_RECORDED" = "$TREAT_SHOTS"
check "kmod: the treatment is recorded as completed" test "$TREAT_OUTCOME" = completed

# --- latency: interlock at the gadget -> PropertiesChanged at a client ------------
stamp "latency"
if smplaser-daemon-probe latency "$(unit_path $SERIAL)" "$GADGET_SOCK" 20 >/tmp/lat.out 2>&1; then
	ok "20 door open/close trials each reach a client as PropertiesChanged(Interlocks)"
else
	not_ok "20 door open/close trials each reach a client as PropertiesChanged(Interlocks)"
	sed 's/^/#   /' /tmp/lat.out
fi
echo "# LATENCY kmod interlock->PropertiesChanged: $(tail -n1 /tmp/lat.out)"

# --- SIGKILL while READY ------------------------------------------------------------
stamp "kill"
if arm_for "$SERIAL" P-KMOD-2 crown; then ok "armed (READY) for P-KMOD-2"; else
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
check "the restarted daemon finds the unit again (kmod)" wait_unit "$SERIAL" kmod 10
smplaserctl history P-KMOD-2 >/tmp/h2.out 2>&1
check "it reconciled the treatment the crash left open ($(history_field P-KMOD-2 5 /tmp/h2.out))" \
	grep -Eq 'reconciled|interrupted' /tmp/h2.out

# --- unplug while EMITTING ----------------------------------------------------------
stamp "unplug"
path=$(unit_path "$SERIAL")
shots0=0
if arm_for "$SERIAL" P-KMOD-3 crown && shots0=$(gadget_field shots) &&
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
check "unplugged: the unit's object goes away (InterfacesRemoved)" wait_no_unit "$SERIAL" 10
check "the daemon stays up" daemon_alive
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
	wait_unit "$SERIAL" kmod 10
stamp "done"

daemon_stop
check "the daemon's log has no crash" sh -c "! grep -Eq 'AddressSanitizer|runtime error|Segmentation' $DAEMON_LOG"
