#!/bin/sh
# smplaser.ko: ARM is refused with each interlock open and with a latched
# fault, without the ARM reaching the unit; ARM, READY after the emission
# delay, the footswitch: pulse events carry the model's energies and shots.
. /etc/vm/kmod-lib.sh

kmod_setup --serial KMOD-ARM-01
kc params 1064 3000 4000 10000 10000
set_uj=$(kc_field set_energy_uj)

# --- each interlock in turn, the status report already showing it -----------
set --
for il in key door estop handpiece cooling temperature shutter; do
	set -- "$@" ctl "interlock $il open" sleep 50 expect EPERM arm \
		ctl "interlock $il closed" sleep 50
done
gstat
cmds=$G_commands
kc "$@"
gstat
check "ARM refused with EPERM with each of the 7 interlocks open" \
	test "$(grep -c '^arm refused=EPERM' /tmp/kc.out)" = 7
check "none of those ARMs reached the unit (commands $cmds -> $G_commands)" test "$G_commands" = "$cmds"
check "the unit stayed in STANDBY ($G_state)" test "$G_state" = STANDBY

# --- the interlock opens just before ARM: the driver asks the unit first ------
kc ctl "interlock door open" expect EPERM arm ctl "interlock door closed"
gstat
check "ARM right after the door opens: EPERM" grep -q '^arm refused=EPERM' /tmp/kc.out
check "at most the status query reached the unit (commands $cmds -> $G_commands)" \
	test "$G_commands" -le "$((cmds + 1))"

# --- a latched fault ---------------------------------------------------------
cmds=$G_commands
kc ctl "fault energy" sleep 100 expect ENOTRECOVERABLE arm status
gstat
check "ARM with a latched fault: ENOTRECOVERABLE" grep -q '^arm refused=ENOTRECOVERABLE' /tmp/kc.out
check "that ARM never reached the unit (commands: only the status query)" \
	test "$G_commands" = "$((cmds + 1))"
check "the unit is still in FAULT, not armed" test "$G_state" = FAULT
kc ctl clear-fault ack sleep 50 status
check "ACK_FAULT once the cause is gone: STANDBY" test "$(kc_field state)" = STANDBY

# --- arm, ready, fire ----------------------------------------------------------
shots0=$G_shots
kc hb 100 arm wait-state ARMING 1000 wait-state READY 3000 \
	ctl "footswitch 1" sleep 500 ctl "footswitch 0" sleep 100 events disarm status
rc=$?
gstat
check "ARM succeeds with every interlock closed and no fault" test $rc = 0
check "the unit went ARMING, then READY after the emission delay" \
	sh -c "grep -q 'reached=ARMING' /tmp/kc.out && grep -q 'reached=READY' /tmp/kc.out"
check "status events: ARMING, READY, EMITTING, READY in order" \
	sh -c "grep 'type=status' /tmp/kc.out | sed 's/.*state=\([A-Z]*\).*/\1/' | uniq | tr '\n' ' ' | grep -q 'ARMING READY EMITTING READY'"
grep 'type=pulse' /tmp/kc.out | sed 's/.*shot=\([0-9]*\) measured_uj=\([0-9]*\) set_uj=\([0-9]*\)/\1 \2 \3/' >/tmp/pulses
n=$(wc -l </tmp/pulses)
check "the footswitch held 500 ms at 10 Hz gave pulse events ($n)" test "$n" -ge 3 -a "$n" -le 7
check "pulse shot numbers count up by one from the unit's counter ($shots0)" \
	awk -v s="$shots0" '$1 != s + NR { exit 1 }' /tmp/pulses
check "the last pulse's shot is the unit's shot counter ($G_shots)" \
	test "$(tail -n1 /tmp/pulses | cut -d' ' -f1)" = "$G_shots"
check "every pulse's set energy is the parameters' ($set_uj uJ)" \
	awk -v e="$set_uj" '$3 != e { exit 1 }' /tmp/pulses
check "every measured energy is within 5% of the set one" \
	awk '{ d = $2 - $3; if (d < 0) d = -d; if (d * 20 > $3) exit 1 }' /tmp/pulses
check "the last measured energy is the unit's ($G_last_energy_uj uJ)" \
	test "$(tail -n1 /tmp/pulses | cut -d' ' -f2)" = "$G_last_energy_uj"
check "GET_STATUS shots after firing match the unit" test "$(kc_field shots)" = "$G_shots"
check "DISARM: the unit is back in STANDBY" test "$G_state" = STANDBY
check "sysfs shot_count follows" wait_sysfs shot_count "$G_shots" 2

kmod_teardown
