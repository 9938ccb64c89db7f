# Shell helpers for the guest test scripts (tests/vm/guest/*.sh), installed
# in the guest as /etc/vm/lib.sh:  . /etc/vm/lib.sh
#
# TAP:      ok NAME | not_ok NAME [WHY] | check NAME CMD... | diag TEXT
# waiting:  wait_for SECONDS CMD...   (polls every 50 ms until CMD succeeds)
# gadget:   gadget_start [OPTIONS]    start smplaser-gadget, wait until the
#                                     guest's USB host side sees the unit
#           gadget_ctl CMD...         one control-socket command, prints the reply
#           gadget_field NAME         one field of "status" (e.g. state)
#           gadget_state_is STATE...  the unit is in one of these states
#           gadget_armed, gadget_not_armed
#           gadget_stop               quit it and wait for it to exit
#           unit_sysfs                prints /sys/bus/usb/devices/<dev> of the unit
#           unit_configured, unit_gone
# The gadget's control socket is $GADGET_SOCK, its nv file $GADGET_NV.

GADGET_SOCK=${GADGET_SOCK:-/run/smplaser-gadget.sock}
GADGET_NV=${GADGET_NV:-/run/smplaser-gadget.nv}
GADGET_LOG=${GADGET_LOG:-/tmp/smplaser-gadget.log}
GADGET_PID=

ok() { echo "ok - $*"; }
not_ok() {
	echo "not ok - $1"
	shift
	[ $# -eq 0 ] || echo "# $*"
}
diag() { echo "# $*"; }

# check NAME CMD...: one test that passes when CMD succeeds.
check() {
	name=$1
	shift
	if "$@" >/tmp/check.out 2>&1; then
		ok "$name"
	else
		not_ok "$name" "command failed: $*"
		sed 's/^/#   /' /tmp/check.out
	fi
}

# wait_for SECONDS CMD...: 0 as soon as CMD succeeds, 1 after SECONDS.
wait_for() {
	tries=$(($1 * 20))
	shift
	while [ "$tries" -gt 0 ]; do
		"$@" >/dev/null 2>&1 && return 0
		usleep 50000
		tries=$((tries - 1))
	done
	return 1
}

# The unit as the guest's USB host stack sees it: its sysfs device directory.
unit_sysfs() {
	for d in /sys/bus/usb/devices/*; do
		[ -f "$d/idVendor" ] || continue
		read -r vid <"$d/idVendor"
		read -r pid <"$d/idProduct"
		if [ "$vid:$pid" = 1209:534c ]; then
			echo "$d"
			return 0
		fi
	done
	return 1
}

# unit_gone: the unit is not on the guest's USB bus.
unit_gone() { ! unit_sysfs >/dev/null; }

# unit_configured: the unit is enumerated and configured (interface present).
unit_configured() {
	d=$(unit_sysfs) || return 1
	read -r cfg <"$d/bConfigurationValue" 2>/dev/null
	[ "$cfg" = 1 ] && [ -d "$d/${d##*/}:1.0" ]
}

gadget_ctl() { smplaser-gadget --ctl "$GADGET_SOCK" "$@"; }

# Processes are dear under TCG (~50 ms a fork+exec): these parse in the shell.
# gadget_status: the gadget's status line into $GADGET_STATUS (" k=v ... ").
gadget_status() {
	GADGET_STATUS=" $(gadget_ctl status) "
}

# status_field NAME: NAME's value in $GADGET_STATUS.
status_field() {
	v=${GADGET_STATUS#* $1=}
	[ "$v" != "$GADGET_STATUS" ] || return 1
	echo "${v%% *}"
}

# gadget_field NAME: the value of NAME=... in a fresh status line.
gadget_field() {
	gadget_status
	status_field "$1"
}

# gadget_state_is STATE...: the unit is in one of these states now.
gadget_state_is() {
	gadget_status
	for st in "$@"; do
		case $GADGET_STATUS in *" state=$st "*) return 0 ;; esac
	done
	return 1
}

# gadget_armed: ARMING, READY or EMITTING; gadget_not_armed: the opposite.
gadget_armed() { gadget_state_is ARMING READY EMITTING; }
gadget_not_armed() { ! gadget_armed; }

gadget_start() {
	rm -f "$GADGET_SOCK"
	smplaser-gadget --socket "$GADGET_SOCK" --nv "$GADGET_NV" "$@" \
		>>"$GADGET_LOG" 2>&1 &
	GADGET_PID=$!
	if ! wait_for 10 gadget_ctl status; then
		diag "smplaser-gadget did not answer on $GADGET_SOCK:"
		sed 's/^/#   /' "$GADGET_LOG"
		return 1
	fi
	if ! wait_for 10 unit_configured; then
		diag "the unit did not enumerate; gadget log:"
		sed 's/^/#   /' "$GADGET_LOG"
		return 1
	fi
	return 0
}

gadget_stop() {
	[ -n "$GADGET_PID" ] || return 0
	gadget_ctl quit >/dev/null 2>&1 || kill "$GADGET_PID" 2>/dev/null
	wait "$GADGET_PID"
	rc=$?
	GADGET_PID=
	return $rc
}
