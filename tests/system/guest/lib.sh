# Helpers for the full-boot guest tests.
# check NAME COMMAND...: one test, ok when COMMAND succeeds.
check() {
	name=$1
	shift
	if _check_out=$("$@" 2>&1); then
		echo "ok - $name"
	else
		echo "not ok - $name"
		echo "$_check_out" | tail -n 20
	fi
}

# wait_for SECONDS COMMAND...: retry COMMAND every 0.2 s until it succeeds.
wait_for() {
	_deadline=$(( $(date +%s) + $1 ))
	shift
	until "$@" >/dev/null 2>&1; do
		[ "$(date +%s)" -ge "$_deadline" ] && return 1
		sleep 0.2
	done
}

# wait_node_mode NODE OWNER:GROUP:MODE SECONDS: wait until udev has given NODE
# that ownership and mode; say what it has otherwise.
wait_node_mode() {
	wait_for "$3" sh -c "[ \"\$(stat -c %U:%G:%a $1)\" = $2 ]" && return 0
	echo "$1 is $(stat -c %U:%G:%a "$1" 2>&1), expected $2"
	udevadm info "$1" 2>&1 | tail -n 12
	return 1
}

# The emulated unit, plugged in through dummy_hcd as a FunctionFS gadget.
GADGET_SOCK=/run/smplaser-gadget.sock
GADGET_NV=/var/lib/smplaser-gadget.nv
SERIAL=SYS00001
PARAMS="wavelength_nm=1064 fluence_mj_cm2=3000 spot_um=4000 pulse_ps=10000 rate_mhz=10000"
DB=/var/lib/smplaser/records.db

gadget_ctl() { smplaser-gadget --ctl "$GADGET_SOCK" "$@"; }
gadget_field() { gadget_ctl status | tr ' ' '\n' | sed -n "s/^$1=//p"; }
gadget_state_is() { [ "$(gadget_field state)" = "$1" ]; }

# plug: start the gadget as a transient service (so it outlives the test).
plug() {
	modprobe -a configfs libcomposite usb_f_fs dummy_hcd || return 1
	mountpoint -q /sys/kernel/config || mount -t configfs configfs /sys/kernel/config
	systemctl stop smplaser-gadget.service 2>/dev/null
	systemctl reset-failed smplaser-gadget.service 2>/dev/null
	systemd-run --quiet --unit=smplaser-gadget --service-type=simple \
		/usr/local/bin/smplaser-gadget --socket "$GADGET_SOCK" --nv "$GADGET_NV" \
		--serial "$SERIAL" --self-test-ms 50 --emission-delay-ms 500 || return 1
	wait_for 20 gadget_ctl status && return 0
	journalctl -u smplaser-gadget.service --no-pager | tail -n 20
	return 1
}

# cmd_file COMMAND...: a script file (readable by all) that runs COMMAND,
# each word quoted, its stderr with its stdout; prints its path.
cmd_file() {
	mkdir -p /run/smplaser-systest
	chmod 755 /run/smplaser-systest
	_f=$(mktemp /run/smplaser-systest/cmd.XXXXXX)
	chmod 644 "$_f"
	{
		printf 'exec 2>&1; exec'
		for _a in "$@"; do printf " '%s'" "$(printf '%s' "$_a" | sed "s/'/'\\\\''/g")"; done
		echo
	} >"$_f"
	echo "$_f"
}

# polkit counts a logind session as local only when it is on a seat, and as
# active only when it is the seat's foreground session.  The guest has seat0
# with virtual terminals; tty1 is in the foreground, tty5 is not.
FOREGROUND_VT=tty1
BACKGROUND_VT=tty5

# in_session USER COMMAND...: COMMAND as USER in a login session of its own on
# the foreground VT (su -l through pam_systemd: seat0, local, active, as at
# the workstation's console); the command's output and exit status.
in_session() {
	_user=$1
	shift
	_f=$(cmd_file "$@")
	su -l "$_user" -c "sh $_f" </dev/$FOREGROUND_VT >"$_f.out" 2>/dev/$FOREGROUND_VT
	_rc=$?
	cat "$_f.out"
	rm -f "$_f" "$_f.out"
	return $_rc
}

# in_session_typing USER INPUT COMMAND...: the same, with COMMAND on a
# terminal of its own (script(1)) that gets what is written to the FIFO INPUT
# as typed input (a password for pkttyagent); output and exit status as above.
# The session itself is on the foreground VT, as in in_session.
in_session_typing() {
	_user=$1
	_input=$2
	shift 2
	_inner=$(cmd_file "$@")
	_f=$(cmd_file sh -c "exec <$_input; exec script -qec 'sh $_inner' /dev/null")
	timeout -k 5 90 su -l "$_user" -c "sh $_f" </dev/$FOREGROUND_VT >"$_f.out" 2>/dev/$FOREGROUND_VT
	_rc=$?
	tr -d '\r' <"$_f.out"
	rm -f "$_f" "$_f.out" "$_inner"
	return $_rc
}

# in_inactive_session USER COMMAND...: as in_session, on a VT in the
# background: seat0, local, inactive.
in_inactive_session() {
	_user=$1
	shift
	_f=$(cmd_file "$@")
	su -l "$_user" -c "sh $_f" </dev/$BACKGROUND_VT >"$_f.out" 2>/dev/$BACKGROUND_VT
	_rc=$?
	cat "$_f.out"
	rm -f "$_f" "$_f.out"
	return $_rc
}

# as USER SMPLASERCTL-ARGS...: smplaserctl as USER on the system bus, in a
# local, active login session (in_session); output in /tmp/ctl.out.  USER
# root needs no session (polkit authorizes root): the scripts about crashes,
# hangs, upgrades and the bus use it, being about those and not about who
# may treat (a login session costs seconds in TCG).
as() {
	_user=$1
	shift
	if [ "$_user" = root ]; then	# polkit authorizes root without a session
		smplaserctl --system --no-ask-password "$@" </dev/null >/tmp/ctl.out 2>&1
	else
		in_session "$_user" smplaserctl --system --no-ask-password "$@" </dev/null >/tmp/ctl.out 2>&1
	fi
	_rc=$?
	[ $_rc -eq 0 ] || { echo "smplaserctl $* as $_user -> $_rc:"; cat /tmp/ctl.out; }
	return $_rc
}

# as_bg USER SMPLASERCTL-ARGS...: the same from no login session at all (as
# from cron or a service: polkit sees neither a local nor an active subject).
as_bg() {
	_user=$1
	shift
	runuser -u "$_user" -- smplaserctl --system --no-ask-password "$@" >/tmp/ctl.out 2>&1
	_rc=$?
	[ $_rc -eq 0 ] || { echo "smplaserctl $* as $_user (no session) -> $_rc:"; cat /tmp/ctl.out; }
	return $_rc
}

unit_path() { echo "/org/smplaser/Laser1/unit/$SERIAL"; }
unit_prop() {
	busctl --system get-property org.smplaser.Laser1 "$(unit_path)" \
		org.smplaser.Laser1.Unit "$1" 2>/dev/null | sed 's/^[a-z]* //; s/"//g'
}
unit_on_kmod() { [ "$(unit_prop Backend)" = kmod ] && [ "$(unit_prop State)" = standby ]; }

# arm_for USER PATIENT PATCH: session, patch, eyewear, parameters, arm; READY at the unit.
arm_for() {
	as "$1" session start "$2" && as "$1" session patch "$3" &&
		as "$1" session eyewear && as "$1" params set $PARAMS &&
		as "$1" arm && wait_for 5 gadget_state_is READY
}

sql() { sqlite3 -readonly "$DB" "$1"; }

# show_daemon: what smplaserd said lately and which units it has.
show_daemon() {
	echo "smplaserd's journal:"
	journalctl -u smplaserd.service --no-pager -n "${1:-30}" -o cat
	echo "units: $(busctl --system call org.smplaser.Laser1 /org/smplaser/Laser1 \
		org.smplaser.Laser1.Manager ListUnits 2>&1)"
}
wait_unit_on_kmod() { wait_for "$1" unit_on_kmod || { show_daemon; return 1; }; }

# --- for boot1-35-hang.sh -------------------------------------------------------
# now_ms: the wall clock in milliseconds.
now_ms() { date +%s%3N; }

# daemon_prop NAME: a property of smplaserd.service (MainPID, NRestarts, ...).
daemon_prop() { systemctl show -p "$1" --value smplaserd.service; }

# process_stopped PID: the process is stopped by a signal (ps state T).
process_stopped() { ps -o stat= -p "$1" | grep -q '^T'; }

# json_field FILE KEY: the value of the first "KEY": VALUE line of smplaserctl's
# pretty-printed --json output, without quotes or the trailing comma.
json_field() { sed -n "s/^ *\"$2\": *\"\{0,1\}\([^\",]*\)\"\{0,1\},\{0,1\}$/\1/p" "$1" | head -n1; }

# kernel_heartbeat_disarms: how many times smplaser.ko said it disarmed a unit
# for want of heartbeats since boot.
kernel_heartbeat_disarms() { dmesg | grep -c 'no heartbeat for [0-9]* ms: disarmed'; }

# only_group PID GID: the process's group is GID and it has no other.
only_group() {
	_gid=$(awk '/^Gid:/ { print $2 }' "/proc/$1/status")
	_groups=$(awk '/^Groups:/ { $1 = ""; print }' "/proc/$1/status")
	echo "gid $_gid, groups:$_groups (want $2)"
	[ "$_gid" = "$2" ] || return 1
	for _g in $_groups; do [ "$_g" = "$2" ] || return 1; done
}

# journal_has FIELD=VALUE FIELD=VALUE: an entry of smplaserd has both fields.
journal_has() {
	journalctl -u smplaserd.service "$1" -o verbose --no-pager 2>/dev/null |
		grep -q "^ *$2\$"
}
