#!/bin/sh
# Issue 15.11 on the installed system: an operator backs up the records while
# the unit fires; the copy verifies; more is treated after it; the copy is
# restored as the README says; the unit's counter, ahead of the copy, faults
# records-missing, arming is refused until an operator acknowledges, and the
# patch treated in the copy's last session is not eligible again.
. "$(dirname "$0")/lib.sh"

fault_is() { [ "$(unit_prop LatchedFault)" = "$1" ]; }
unit_known() { [ -n "$(unit_prop State)" ]; }

BACKUP=/var/tmp/smplaser-backup.db
rm -f "$BACKUP"
# The operator's backup: smplaserctl creates the file as tech (0600).
mkdir -p /var/tmp && chmod 1777 /var/tmp

if arm_for tech P-SYS-B crown; then
	gadget_ctl footswitch 1 >/dev/null
	sleep 0.5
	as tech records backup "$BACKUP"
	rc=$?
	sleep 0.3
	gadget_ctl footswitch 0 >/dev/null
	check "tech backs up the records while the unit fires: exit status 0 (got $rc)" test "$rc" = 0
	as tech session end --endpoint whitening --notes "backup test"
else
	echo "not ok - tech arms P-SYS-B crown for the backup"
fi
check "the backup is tech's file, mode 0600" sh -c "[ \"\$(stat -c %U:%a $BACKUP)\" = tech:600 ]"
as tech records verify "$BACKUP"
check "the copy verifies against its hash chain" test $? = 0
check "the backup is in the audit trail with tech's uid" \
	wait_for 3 sh -c "[ \$(sqlite3 -readonly $DB \"SELECT count(*) FROM audit WHERE kind='records' AND reason='backup' AND operator_uid=$(id -u tech)\") -ge 1 ]"

# Shots the copy will not hold: more than the crown treatment, open in the
# copy, can have fired itself (3 s at its 10 Hz after its last recorded pulse,
# README "Restoring"); fewer would be taken for its own.
shots_before=$(gadget_field shots)
if arm_for root P-SYS-B2 mid-scalp; then
	gadget_ctl footswitch 1 >/dev/null
	sleep 6
	gadget_ctl footswitch 0 >/dev/null
	sleep 0.3
	as root session end --endpoint whitening
fi
check "the unit fired 40 or more after the backup ($shots_before -> $(gadget_field shots))" \
	test "$(gadget_field shots)" -ge $((shots_before + 40))

# Restoring, as the README says.
systemctl stop smplaserd.service
check "stopping smplaserd leaves the unit in STANDBY" gadget_state_is STANDBY
(
	cd /var/lib/smplaser &&
		mkdir -p replaced && mv records.db* replaced/ &&
		install -o smplaserd -g smplaserd -m 0600 "$BACKUP" records.db
)
check "the copy is in place of the records" test -s "$DB"
systemctl start smplaserd.service
check "smplaserd starts on the restored copy" wait_for 20 systemctl is-active -q smplaserd.service
check "it finds the unit again" wait_for 20 unit_known
check "the unit, its counter ahead of the copy, faults records-missing" \
	wait_for 10 fault_is records-missing
check "the journal says records are missing" \
	sh -c "journalctl -u smplaserd.service --no-pager -o cat | grep -q 'not in the records'"
check "the treatment made after the backup is not in the copy" \
	test "$(sql "SELECT count(*) FROM treatments WHERE patient = 'P-SYS-B2'")" = 0

as root session start P-SYS-B3 && as root session patch left-parietal && as root session eyewear &&
	as root params set $PARAMS
as root arm
rc=$?
check "arming is refused while records-missing is not acknowledged (exit $rc)" test "$rc" != 0
check "the refusal names records-missing" grep -q 'records-missing' /tmp/ctl.out
check "the unit never left STANDBY" gadget_state_is STANDBY
as root session end

as tech check P-SYS-B crown
rc=$?
check "the copy's last session's patch is not eligible (check exit 4, got $rc)" test "$rc" = 4

# Who may acknowledge (a password, auth_self) is boot1-25's; here root does.
as root ack
check "root acknowledges the missing records" test $? = 0
check "the acknowledge is in the audit trail with root's uid" \
	wait_for 3 sh -c "[ \$(sqlite3 -readonly $DB \"SELECT count(*) FROM audit WHERE kind='ack-fault' AND reason='records-missing' AND operator_uid=0\") -ge 1 ]"
if arm_for root P-SYS-B3 left-parietal; then
	echo "ok - after the acknowledge the unit arms again"
	as root disarm
	wait_for 3 gadget_state_is STANDBY
	as root session end
else
	echo "not ok - after the acknowledge the unit arms again"
	show_daemon 20
fi
rm -f "$BACKUP"
