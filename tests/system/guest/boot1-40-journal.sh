#!/bin/sh
# The daemon's entries in the journal carry structured fields: the unit, the
# session, the operator's uid, a MESSAGE_ID for what IT acts on (explained by
# the catalog: journalctl -x), and no empty field.
. "$(dirname "$0")/lib.sh"

MID_ARM=800e4c5b76c7484198b9ea8b791f469c
MID_ACK=31955c558d0d4209a81ea8dceb44c461
MID_DENIED=18554853f7fc4cbe88365d23268b8c4e
MID_CONFIG=c8710e9c678f4305ad612aad24d447ae
tech_uid=$(id -u tech)
visitor_uid=$(id -u visitor)

journalctl -u smplaserd.service -o verbose --no-pager >/tmp/journal.txt 2>&1
journalctl -u smplaserd.service -o json --no-pager >/tmp/journal.json 2>&1
check "journalctl has smplaserd's entries with SMPL_EVENT" grep -q 'SMPL_EVENT=' /tmp/journal.txt
check "an arm entry names its unit (SMPL_UNIT=$SERIAL)" grep -q "SMPL_UNIT=$SERIAL" /tmp/journal.txt
check "entries name the session (SMPL_SESSION)" grep -q 'SMPL_SESSION=' /tmp/journal.txt
check "no entry has an empty SMPL_ field" sh -c '! grep -Eq "\"SMPL_[A-Z_]*\" *: *\"\"" /tmp/journal.json'
check "tech's arm: MESSAGE_ID=$MID_ARM, SMPL_OPERATOR_UID=$tech_uid" \
	journal_has "MESSAGE_ID=$MID_ARM" "SMPL_OPERATOR_UID=$tech_uid"
check "tech's acknowledgement: MESSAGE_ID=$MID_ACK, SMPL_OPERATOR_UID=$tech_uid" \
	journal_has "MESSAGE_ID=$MID_ACK" "SMPL_OPERATOR_UID=$tech_uid"
check "visitor's denial: MESSAGE_ID=$MID_DENIED, SMPL_OPERATOR_UID=$visitor_uid" \
	journal_has "MESSAGE_ID=$MID_DENIED" "SMPL_OPERATOR_UID=$visitor_uid"
check "the configuration in force at each start: MESSAGE_ID=$MID_CONFIG" \
	sh -c "journalctl -u smplaserd.service MESSAGE_ID=$MID_CONFIG -o cat --no-pager |
		grep -q 'configuration in force.*cooldown_days=42.*energy_tolerance_pct=20'"
check "... and in the audit trail (config-load)" \
	sh -c "sqlite3 -readonly $DB \"SELECT detail FROM audit WHERE kind='config-load'\" | grep -q 'cooldown_days=42'"
check "journalctl -x explains an arm from the catalog" \
	sh -c "journalctl -x -u smplaserd.service MESSAGE_ID=$MID_ARM --no-pager | grep -q 'protective eyewear'"

# A local user calling in a loop does not flood the journal: the same denial
# is journaled at most once per 10 s (SMPL_POLKIT_DENIAL_REPEAT_S).
since=$(date +%s)
sleep 1
t0=$(date +%s)
for i in $(seq 15); do
	runuser -u visitor -- busctl --system call org.smplaser.Laser1 /org/smplaser/Laser1 \
		org.smplaser.Laser1.Manager History s P-SYS-1 >/dev/null 2>&1
done
elapsed=$(($(date +%s) - t0))
n=$(journalctl -u smplaserd.service --since "@$since" MESSAGE_ID=$MID_DENIED -o cat --no-pager |
	grep -c 'org.smplaser.records for uid')
most=$((elapsed / 10 + 1))
echo "measured: 15 denied calls in ${elapsed} s, journaled $n time(s)"
check "15 denied History calls of visitor in ${elapsed} s: journaled $n time(s), at most once per 10 s ($most)" \
	test "$n" -ge 1 -a "$n" -le "$most"
