# Shell helpers for the guest test scripts (tests/vm/guest/*.sh), installed
# in the guest as /etc/vm/lib.sh:  . /etc/vm/lib.sh
#
# TAP:      ok NAME | not_ok NAME [WHY] | check NAME CMD... | diag TEXT
# waiting:  wait_for SECONDS CMD...   (polls every 50 ms until CMD succeeds)
# gadget:   gadget_start [OPTIONS]    start smplaser-gadget, wait until the
#                                     guest's USB host side sees the unit
#           gadget_ctl CMD...         one control-socket command, prints the reply
#           gadget_field NAME         one field of "status" (e.g. state)
#           gadget_stop               quit it and wait for it to exit
#           unit_sysfs                prints /sys/bus/usb/devices/<dev> of the unit
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
		if [ "$(cat "$d/idVendor")" = 1209 ] && [ "$(cat "$d/idProduct")" = 534c ]; then
			echo "$d"
			return 0
		fi
	done
	return 1
}

# unit_configured: the unit is enumerated and configured (interface present).
unit_configured() {
	d=$(unit_sysfs) || return 1
	[ "$(cat "$d/bConfigurationValue" 2>/dev/null)" = 1 ] &&
		[ -d "$d/$(basename "$d"):1.0" ]
}

gadget_ctl() { smplaser-gadget --ctl "$GADGET_SOCK" "$@"; }

# gadget_field NAME: the value of NAME=... in the gadget's status line.
gadget_field() {
	gadget_ctl status | tr ' ' '\n' | sed -n "s/^$1=//p"
}

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
