#!/bin/sh
# An operator treats; someone outside smplaser-operators is refused by
# polkit, and the refusal is in the audit trail.
. "$(dirname "$0")/lib.sh"

shots0=$(gadget_field shots)
if arm_for tech P-SYS-1 crown; then
	gadget_ctl footswitch 1 >/dev/null
	sleep 1
	gadget_ctl footswitch 0 >/dev/null
	sleep 0.5
	as tech session end --endpoint whitening --notes "full-boot test"
	shots=$(( $(gadget_field shots) - shots0 ))
	echo "ok - tech (smplaser-operators) treats P-SYS-1 crown: $shots pulses"
else
	shots=0
	echo "not ok - tech (smplaser-operators) treats P-SYS-1 crown"
fi
check "the unit fired while the footswitch was held" test "$shots" -gt 0
as tech --json history P-SYS-1 >/dev/null
cp /tmp/ctl.out /tmp/history1.json
check "every pulse is in P-SYS-1's history" \
	grep -q "\"pulses_recorded\": *$shots\b" /tmp/history1.json

as visitor session start P-SYS-2
rc=$?
check "visitor (not an operator) is refused: exit status 3 (got $rc)" test "$rc" = 3
check "the refusal names the polkit action" grep -q 'org.smplaser.treat' /tmp/ctl.out
visitor_uid=$(id -u visitor)
check "the refusal is in the audit trail with visitor's uid" \
	wait_for 3 sh -c "[ \$(sqlite3 -readonly $DB \"SELECT count(*) FROM audit WHERE kind='refused' AND operator_uid=$visitor_uid\") -ge 1 ]"
as visitor arm
check "visitor cannot arm either" test $? = 3
check "the unit never left STANDBY for visitor" gadget_state_is STANDBY

# Making the unit safe needs no polkit: anyone the bus lets in may disarm.
if arm_for tech P-SYS-6 left-temporal; then
	as visitor disarm
	rc=$?
	check "visitor may disarm what tech armed (no polkit for Disarm): exit status $rc" \
		test "$rc" = 0
	check "and the unit is in STANDBY" wait_for 2 gadget_state_is STANDBY
	check "the disarm is in the audit trail with visitor's uid" \
		wait_for 3 sh -c "[ \$(sqlite3 -readonly $DB \"SELECT count(*) FROM audit WHERE kind='disarm' AND operator_uid=$visitor_uid\") -ge 1 ]"
	as tech session end
else
	echo "not ok - tech arms P-SYS-6 for visitor's disarm"
fi
