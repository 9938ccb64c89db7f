#!/bin/sh
# smplaserd hangs (SIGSTOP, not a crash) while the unit is READY: the kernel
# disarms the unit when the daemon's heartbeats stop (heartbeat_ms), nothing
# fires while it hangs, systemd's watchdog (WatchdogSec=10s) kills it and
# Restart=on-failure starts it again, and the new daemon closes the treatment
# the hang left open from the unit's shot counter.
# Runs after boot1-30-kill.sh (which restarted the daemon once).
. "$(dirname "$0")/lib.sh"

t_script=$(now_ms)
heartbeat_ms=$(cat /sys/class/smplaser/smplaser0/heartbeat_ms)
disarm_bound_ms=$((heartbeat_ms + 1000))
restarts0=$(daemon_prop NRestarts)
as root --json history P-SYS-3 >/dev/null
cp /tmp/ctl.out /tmp/history3.json

# A few pulses first, so that the treatment the hang leaves open has some.
shots0=$(gadget_field shots)
check "armed (READY) for P-SYS-4" arm_for root P-SYS-4 mid-scalp
gadget_ctl footswitch 1 >/dev/null
sleep 1
gadget_ctl footswitch 0 >/dev/null
check "... back in READY once the footswitch is up" wait_for 3 gadget_state_is READY
fired=$(($(gadget_field shots) - shots0))
check "... after $fired pulses" test "$fired" -gt 0
sleep 0.3	# the daemon commits pulses every 100 ms
# The hang must find the unit READY: if something disarmed it meanwhile (a
# heartbeat missed on a loaded host), say what, or the figures below lie.
if ! gadget_state_is READY; then
	echo "not ok - the unit is still READY just before the hang ($(gadget_field state))"
	journalctl -u smplaserd.service --no-pager -n 8 -o cat | sed 's/^/  smplaserd: /'
	dmesg | grep -i smplaser | tail -n 4 | sed 's/^/  kernel: /'
fi

# The hang.
pid0=$(daemon_prop MainPID)
check "smplaserd has a main process to hang (pid $pid0)" test "$pid0" -gt 1
[ "$pid0" -gt 1 ] 2>/dev/null || exit 1	# kill -STOP 0 would stop this script
kernel_disarms0=$(kernel_heartbeat_disarms)
journal_since=$(date +%s)
t0_ms=$(now_ms)
t0_ns=$(gadget_field now_ns)	# the gadget's clock (CLOCK_MONOTONIC) just before the stop,
kill -STOP "$pid0"
t1_ns=$(gadget_field now_ns)	# and just after it
check "smplaserd (pid $pid0) is stopped" process_stopped "$pid0"
check "the unit is in STANDBY with the daemon hung" wait_for 3 gadget_state_is STANDBY
standby_ns=$(gadget_field state_changed_ns)
disarm_ms=$(((standby_ns - t0_ns) / 1000000))	# an upper bound: t0 is before the stop
echo "measured: SIGSTOP -> unit STANDBY in $(((standby_ns - t1_ns) / 1000000)) to ${disarm_ms} ms (heartbeat_ms ${heartbeat_ms})"
check "... within heartbeat_ms + 1 s of the stop (${disarm_ms} ms <= ${disarm_bound_ms} ms)" \
	test "$disarm_ms" -ge 0 -a "$disarm_ms" -le "$disarm_bound_ms"
check "the kernel disarmed it: \"no heartbeat for ${heartbeat_ms} ms: disarmed\"" \
	test "$(kernel_heartbeat_disarms)" -gt "$kernel_disarms0"

# The footswitch pressed while the daemon hangs: nothing fires.
shots_hung=$(gadget_field shots)
gadget_ctl footswitch 1 >/dev/null
sleep 1.5	# three emission delays (500 ms), 15 periods at 10 Hz
check "footswitch held 1.5 s while hung: no pulse (shots stay at $shots_hung)" \
	test "$(gadget_field shots)" = "$shots_hung"
check "... and the unit stays in STANDBY" gadget_state_is STANDBY
gadget_ctl footswitch 0 >/dev/null
check "... the footswitch is released" test "$(gadget_field footswitch)" = 0
check "smplaserd is still hung (stopped, pid $pid0)" process_stopped "$pid0"

# systemd's watchdog: no WATCHDOG=1 for 10 s, SIGABRT, then a restart.
check "systemd's watchdog ends the hung smplaserd within 25 s" \
	wait_for 25 sh -c "[ ! -d /proc/$pid0 ]"
gone_ms=$(($(now_ms) - t0_ms))
journalctl -u smplaserd.service --since "@$journal_since" -o short-unix --no-pager \
	>/tmp/hang-journal.txt 2>&1
timeout_ms=$(awk -v t0="$t0_ms" '/Watchdog timeout/ { printf "%d", ($1 - t0 / 1000) * 1000; exit }' \
	/tmp/hang-journal.txt)
echo "measured: SIGSTOP -> systemd's watchdog timeout ${timeout_ms:-?} ms, process gone by ${gone_ms} ms (WatchdogSec=10s)"
check "the journal says: smplaserd.service: Watchdog timeout" \
	grep -q 'smplaserd.service: Watchdog timeout' /tmp/hang-journal.txt
check "... and that the watchdog's signal went to the hung pid $pid0" \
	grep -Eq "Killing process $pid0 \(smplaserd\) with signal SIG(ABRT|KILL)" /tmp/hang-journal.txt
check "... and the result: Failed with result 'watchdog'" \
	grep -q "Failed with result 'watchdog'" /tmp/hang-journal.txt
# The last WATCHDOG=1 came at most 7.5 s before the stop (sd-event pings every
# half to three quarters of WatchdogSec), so the timeout is 2.5 to 10 s after it.
check "the watchdog timed out 2 to 12 s after the stop (${timeout_ms:-?} ms)" \
	test "${timeout_ms:--1}" -ge 2000 -a "${timeout_ms:--1}" -le 12000
check "systemd restarts smplaserd with a new MainPID (Restart=on-failure)" \
	wait_for 20 sh -c "systemctl is-active -q smplaserd.service &&
		pid=\$(systemctl show -p MainPID --value smplaserd.service) &&
		[ \"\$pid\" != 0 ] && [ \"\$pid\" != $pid0 ]"
check "NRestarts went up by one ($restarts0 -> $((restarts0 + 1)))" \
	test "$(daemon_prop NRestarts)" = $((restarts0 + 1))
check "the restarted daemon finds the unit on the kmod backend" wait_unit_on_kmod 20

# The records: the hang's treatment reconciled from the counter, the others intact.
fired=$(($(gadget_field shots) - shots0))	# all the unit fired since arming P-SYS-4
as root --json history P-SYS-4 >/dev/null
cp /tmp/ctl.out /tmp/history4.json
check "P-SYS-4's treatment open at the hang is closed by reconciliation" \
	test "$(json_field /tmp/history4.json outcome)" = reconciled
check "... with the $fired pulses the unit fired, by its counter" \
	test "$(json_field /tmp/history4.json pulses)" = "$fired"
check "... and a record for each of the $fired pulses" \
	test "$(json_field /tmp/history4.json pulses_recorded)" = "$fired"
check "the hang's session is closed as interrupted" \
	test "$(sql "SELECT state FROM sessions WHERE patient = 'P-SYS-4'")" = interrupted
as root --json history P-SYS-1 >/dev/null
check "P-SYS-1's records are intact after the hang" cmp -s /tmp/ctl.out /tmp/history1.json
as root --json history P-SYS-3 >/dev/null
check "P-SYS-3's records are intact after the hang" cmp -s /tmp/ctl.out /tmp/history3.json

# The unit is usable again: a new session arms, and ending it disarms.
check "a new session arms (READY) for P-SYS-5" arm_for root P-SYS-5 crown
end_to_standby() { as root session end --notes "after the hang" && wait_for 3 gadget_state_is STANDBY; }
check "... and ends: the unit is in STANDBY" end_to_standby
echo "measured: boot1-35-hang took $((($(now_ms) - t_script) / 1000)) s"
