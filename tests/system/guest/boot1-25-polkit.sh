#!/bin/sh
# Who may do what (data/50-smplaser.rules, data/org.smplaser.policy), per
# polkit subject: an operator only from a local, active login session; the
# same operator with no session (cron, a service), from a remote login or
# from a session in the background is refused; acknowledging a fault asks the
# operator's own password; an IT admin may acknowledge with an admin password
# but never treats.  pkcheck asks polkit directly; smplaserctl goes through
# the daemon.
. "$(dirname "$0")/lib.sh"

ACTIONS="treat configure records acknowledge document"

# pk_* USER: "action=status ..." of pkcheck for each action (0 yes, 1 no,
# 2 needs authentication), preceded by what logind says of the session.
SESSION_INFO='loginctl show-session "$XDG_SESSION_ID" -p Remote -p Active -p Seat -p VTNr -p Class -p Type 2>&1 | tr "\n" " "; echo'
PKCHECK_ALL='for a in '"$ACTIONS"'; do pkcheck --action-id org.smplaser.$a --process $$ >/dev/null 2>&1; printf "%s=%s " $a $?; done; echo'
pk_local() { in_session "$1" sh -c "$SESSION_INFO; $PKCHECK_ALL" </dev/null 2>&1; }
pk_nosession() { runuser -u "$1" -- sh -c "$PKCHECK_ALL" 2>/dev/null; }
# A remote login: login -h sets PAM_RHOST, pam_systemd makes the session remote.
remote() { # remote USER COMMAND: COMMAND's output, run in USER's remote login session
	{ sleep 3; printf '%s\n' "$2; exit"; sleep "${3:-6}"; } |
		timeout 30 script -qec "login -f -h remote.example.org $1" /dev/null 2>&1 | tr -d '\r'
}
inactive() { in_inactive_session "$1" sh -c "$2" 2>&1; }
has() { printf '%s\n' "$1" | grep -q -- "$2"; }
pkline() { printf '%s\n' "$1" | grep -o 'treat=.*' | head -n1; }

# --- polkit's answers, per subject ---------------------------------------------
out=$(pk_local tech)
got=$(pkline "$out")
echo "pkcheck, tech in a local active session: $out"
check "tech's session is on seat0, the foreground VT ($(cat /sys/class/tty/tty0/active)), local and active" \
	sh -c "printf '%s' \"\$0\" | grep -q 'Seat=seat0' && printf '%s' \"\$0\" | grep -q 'Active=yes' &&
		printf '%s' \"\$0\" | grep -q 'Remote=no'" "$out"
check "tech, local and active: treat, configure, records, document yes; acknowledge asks a password" \
	test "$got" = "treat=0 configure=0 records=0 acknowledge=2 document=0 "
got=$(pkline "$(pk_nosession tech)")
echo "pkcheck, tech with no session: $got"
check "tech with no login session (cron, a service): every action refused" \
	test "$got" = "treat=1 configure=1 records=1 acknowledge=1 document=1 "
remote_out=$(remote tech "$SESSION_INFO; $PKCHECK_ALL; smplaserctl --system --no-ask-password session start P-SYS-20; echo rc=\$?" 12)
echo "remote login of tech: $(echo "$remote_out" | grep -E 'Remote=|treat=[0-9]|rc=[0-9]' | tr '\n' ' ')"
check "tech's login from remote.example.org is a remote session" \
	has "$remote_out" 'Remote=yes'
check "tech, remote: every action refused" \
	has "$remote_out" 'treat=1 configure=1 records=1 acknowledge=1 document=1 '
out=$(inactive tech "$SESSION_INFO; $PKCHECK_ALL")
echo "tech on tty5 (not the foreground VT): $(echo "$out" | tr '\n' ' ')"
check "tech's session on tty5 is on seat0 and inactive" \
	sh -c "printf '%s' \"\$0\" | grep -q 'Active=no' && printf '%s' \"\$0\" | grep -q 'Seat=seat0'" "$out"
check "tech, inactive: every action refused" \
	has "$out" 'treat=1 configure=1 records=1 acknowledge=1 document=1 '
got=$(pkline "$(pk_local visitor)")
echo "pkcheck, visitor in a local active session: $got"
check "visitor (no operator), local and active: treat, configure, document refused, records and acknowledge need an admin" \
	test "$got" = "treat=1 configure=1 records=2 acknowledge=2 document=1 "
got=$(pkline "$(pk_local itadmin)")
echo "pkcheck, itadmin (sudo) in a local active session: $got"
check "itadmin (IT, sudo), local and active: never treats, configures or documents; records and acknowledge with a password" \
	test "$got" = "treat=1 configure=1 records=2 acknowledge=2 document=1 "
# Every action of the .policy has its expectation above: a new one must be decided.
check "every action in org.smplaser.policy is one of: $ACTIONS" \
	sh -c "[ \"\$(sed -n 's/.*<action id=\"org\.smplaser\.\([a-z]*\)\">.*/\1/p' \
		/usr/share/polkit-1/actions/org.smplaser.policy | sort | tr '\n' ' ')\" = \
		\"$(echo $ACTIONS | tr ' ' '\n' | sort | tr '\n' ' ')\" ]"

# --- through the daemon: arm --------------------------------------------------------
as_bg tech session start P-SYS-20
rc=$?
check "tech with no session cannot start a session: exit 3 (got $rc)" test "$rc" = 3
check "tech from a remote login cannot start a session (exit 3)" has "$remote_out" 'rc=3'
out=$(inactive tech 'smplaserctl --system --no-ask-password session start P-SYS-20; echo rc=$?')
check "tech from an inactive session cannot start a session (exit 3)" \
	has "$out" 'rc=3'
if as tech session start P-SYS-20 && as tech session patch mid-scalp &&
	as tech session eyewear && as tech params set $PARAMS; then
	as_bg tech arm
	rc=$?
	check "tech's own session, armed from no login session: refused, exit 3 (got $rc)" \
		test "$rc" = 3
	out=$(remote tech "smplaserctl --system --no-ask-password arm; echo rc=\$?")
	check "... armed from a remote login: refused (exit 3)" has "$out" 'rc=3'
	out=$(inactive tech 'smplaserctl --system --no-ask-password arm; echo rc=$?')
	check "... armed from an inactive session: refused (exit 3)" has "$out" 'rc=3'
	check "... the unit never left STANDBY" gadget_state_is STANDBY
	as itadmin arm
	rc=$?
	check "itadmin (IT, sudo) cannot arm: exit 3 (got $rc)" test "$rc" = 3
	as tech session end
else
	echo "not ok - tech prepares a session for P-SYS-20"
fi

# --- through the daemon: acknowledge --------------------------------------------------
# fault_latched: the unit's fault is latched in the daemon, its cause gone.
fault_latched() {
	gadget_ctl fault overtemp >/dev/null && wait_for 5 fault_latched_now &&
		gadget_ctl clear-fault >/dev/null
}
fault_latched_now() { [ -n "$(unit_prop LatchedFault)" ]; }
not() { ! "$@"; }
# ack_with_password USER PASSWORD: smplaserctl ack on a terminal in USER's local
# session; smplaserctl starts pkttyagent, which reads PASSWORD.
ack_with_password() {
	mkdir -p /run/smplaser-systest
	rm -f /run/smplaser-systest/typed
	mkfifo -m 0666 /run/smplaser-systest/typed
	# The password, typed once a second (pkttyagent may flush what came early).
	(for i in $(seq 40); do sleep 1; printf '%s\n' "$2" || exit 0; done) \
		>/run/smplaser-systest/typed 2>/dev/null &
	_feeder=$!
	in_session_typing "$1" /run/smplaser-systest/typed smplaserctl --system ack >/tmp/ack.out 2>&1
	_rc=$?
	kill "$_feeder" 2>/dev/null
	wait "$_feeder" 2>/dev/null
	grep -v '^$' /tmp/ack.out | sed "s/$2/********/g; s/^/  | /" | tail -n 12
	[ "$_rc" = 0 ] || journalctl -u polkit --no-pager -n 6 -o cat | sed 's/^/  polkitd: /'
	return $_rc
}

check "a fault is latched (overtemp), its cause cleared" fault_latched
as_bg tech ack
rc=$?
check "tech with no login session cannot acknowledge: exit 3 (got $rc)" test "$rc" = 3
out=$(remote tech "smplaserctl --system --no-ask-password ack; echo rc=\$?")
check "tech from a remote login cannot acknowledge (exit 3)" has "$out" 'rc=3'
out=$(inactive tech 'smplaserctl --system --no-ask-password ack; echo rc=$?')
check "tech from an inactive session cannot acknowledge (exit 3)" has "$out" 'rc=3'
as tech ack
rc=$?
check "tech, local and active, without a password: refused (exit 3, got $rc)" test "$rc" = 3
check "... because polkit wants authentication" grep -q "requires authentication" /tmp/ctl.out
check "... the fault is still latched" fault_latched_now
check "visitor with their own password cannot acknowledge (an admin's is needed)" \
	not ack_with_password visitor visitor-pw-1
check "... the fault is still latched" fault_latched_now
check "tech acknowledges with tech's own password (auth_self)" ack_with_password tech tech-pw-1
check "... the fault is cleared" wait_for 3 not fault_latched_now
tech_uid=$(id -u tech)
check "... the acknowledgement is audited with tech's uid" \
	test "$(sql "SELECT count(*) > 0 FROM audit WHERE kind = 'ack-fault' AND operator_uid = $tech_uid")" = 1
check "another fault is latched" fault_latched
check "itadmin (IT override) acknowledges with an admin password (auth_admin)" \
	ack_with_password itadmin itadmin-pw-1
check "... the fault is cleared" wait_for 3 not fault_latched_now
# Whatever happened above, the scripts after this one need the unit usable
# (polkit authorizes root for everything).
if fault_latched_now; then
	echo "a fault is still latched: root acknowledges it"
	smplaserctl --system --no-ask-password ack
fi
# A fresh plug for the scripts after this one (the emulated unit's RTC drifts
# from the guest's clock in TCG).
check "the unit is plugged in afresh" plug
check "smplaserd finds it" wait_unit_on_kmod 30
