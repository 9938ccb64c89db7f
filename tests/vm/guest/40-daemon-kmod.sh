#!/bin/sh
# smplaserd in the guest on the kmod backend (system bus, our D-Bus policy,
# smplaserctl as the client):
#  - discovery finds the unit; a whole treatment, every pulse recorded;
#  - latency from an interlock opening at the gadget to the daemon's
#    PropertiesChanged seen by a client (20 trials: 10 open, 10 close);
#  - armed and idle, the daemon's heartbeats keep the driver from disarming;
#  - SIGKILL while READY: the driver disarms within 50 ms; the restarted
#    daemon finds the unit again and reconciles.
# Two units and unplug while emitting: 42-daemon-hotplug.sh.
. /etc/vm/daemon-lib.sh
A=VMKMOD01

bus_start || { not_ok "the system bus starts"; exit 1; }
mod_load
gadget_start --serial "$A" --self-test-ms 50 --emission-delay-ms 300 \
	--watchdog-ms 1000 || { not_ok "the gadget starts"; exit 1; }
wait_until 10 test -c /dev/smplaser0 || { not_ok "smplaser.ko binds the unit"; exit 1; }

stamp "daemon start"
daemon_start || { not_ok "smplaserd owns its name on the system bus"; show_daemon_log; exit 1; }
if wait_unit "$A" kmod 15; then
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
if treat "$A" P-KMOD-1 crown 1; then
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
[ "$TREAT_OUTCOME" = completed ] || grep -E 'disarm|fault|interrupt' "$DAEMON_LOG" | tail -n 5 | sed 's/^/#   /'

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
# kill_ready PATIENT: arm A, SIGKILL the daemon, time the unit, restart.
# Sets KILL_MS.  The guest clock runs on while the host (TCG on shared cores)
# does not run the guest, so a slow attempt is tried once more and both are
# printed; the bound itself is not loosened.
kill_ready() {
	KILL_MS=
	if ! arm_for "$A" "$1" crown; then
		not_ok "armed (READY) for $1"
		show_daemon_log
		return 1
	fi
	if [ "${2:-}" = heartbeat ]; then
		# Armed with nothing else happening for three times the driver's
		# heartbeat_ms: the daemon's HEARTBEATs keep the driver from disarming.
		hb=$(cat /sys/class/smplaser/smplaser0/heartbeat_ms)
		usleep $((hb * 3000))
		check "kmod: READY holds for 3 x heartbeat_ms ($hb ms): the daemon heart-beats" \
			gadget_state_is READY
		check "kmod: and the driver has not disarmed it for a missed heartbeat" \
			sh -c "! grep -q 'the driver disarmed the unit (reason 3' $DAEMON_LOG"
	fi
	smplaser-daemon-probe kill-standby "$DAEMON_PID" "$GADGET_SOCK" 3000 >/tmp/kill.out 2>&1
	wait "$DAEMON_PID" 2>/dev/null
	DAEMON_PID=
	KILL_MS=$(sed -n 's/.*standby_ms=\([0-9.]*\).*/\1/p' /tmp/kill.out)
	echo "# KILL kmod ($1): $(cat /tmp/kill.out)"
	check "kmod: no pulse after the kill ($(gadget_field state))" gadget_state_is STANDBY
	daemon_start || { not_ok "the daemon restarts"; show_daemon_log; exit 1; }
	check "the restarted daemon finds the unit again (kmod)" wait_unit "$A" kmod 15
	smplaserctl history "$1" >/tmp/h2.out 2>&1
	check "it reconciled the treatment the crash left open ($(history_field "$1" 5 /tmp/h2.out))" \
		grep -Eq 'reconciled|interrupted' /tmp/h2.out
}
within_50() { awk -v m="${KILL_MS:-999999}" 'BEGIN { exit !(m <= 50) }'; }

stamp "kill"
kill_ready P-KMOD-2 heartbeat
times="${KILL_MS:-never} ms"
if ! within_50; then
	diag "the first SIGKILL took $times: once more"
	kill_ready P-KMOD-2B
	times="$times, then ${KILL_MS:-never} ms"
fi
check "kmod: SIGKILL while READY: the unit is in STANDBY within 50 ms ($times)" within_50

stamp "done"

daemon_stop
gadget_stop >/dev/null 2>&1
check "the daemon's log has no crash" sh -c "! grep -Eq 'AddressSanitizer|runtime error|Segmentation' $DAEMON_LOG"
