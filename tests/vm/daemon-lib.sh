# Shell helpers for the daemon guest tests (tests/vm/guest/4*-daemon*.sh),
# installed in the guest as /etc/vm/daemon-lib.sh (by 40-daemon.files):
#   . /etc/vm/daemon-lib.sh
#
#   bus_start                  dbus-daemon with the guest's system-bus config
#                              (tests/vm/daemon-dbus.conf + our real policy)
#   daemon_start [KEY=VALUE..] smplaserd on the system bus; KEY=VALUE lines go
#                              into [backends] of its config (e.g. libusb=false)
#   daemon_stop                SIGTERM and wait
#   ctl ARGS...                smplaserctl, output in /tmp/ctl.out (and printed
#                              as diagnostics when it fails)
#   unit_path SERIAL           the unit's object path
#   unit_prop SERIAL PROP      a Unit property's value (busctl, quotes removed)
#   wait_unit SERIAL [BACKEND] [SECONDS]   until the unit is on the bus (with
#                              that Backend, and probed: its State is a state)
#   wait_no_unit SERIAL [SECONDS]   until the unit's object is gone
#   mod_load / mod_unload      smplaser.ko in / out
#   treat SERIAL PATIENT PATCH SECONDS   a whole treatment: session, patch,
#                              eyewear, parameters, arm, footswitch held for
#                              SECONDS, session end; sets TREAT_SHOTS (pulses
#                              the unit counted), TREAT_RECORDED (pulses in
#                              the history) and TREAT_OUTCOME; status 0 when
#                              every step worked
#   history_field PATIENT COL  column COL (awk number) of PATIENT's last treatment
. /etc/vm/lib.sh

DAEMON_LOG=${DAEMON_LOG:-/tmp/smplaserd.log}
DAEMON_STATE=${DAEMON_STATE:-/tmp/smplaserd-state}
DAEMON_CONF=/tmp/smplaserd.conf
DAEMON_PID=
KO=/lib/modules/smplaser.ko
PARAMS="wavelength_nm=1064 fluence_mj_cm2=3000 spot_um=4000 pulse_ps=10000 rate_mhz=10000"

bus_up() { busctl --system list >/dev/null 2>&1; }

bus_start() {
	bus_up && return 0
	rm -f /run/dbus/system_bus_socket	# left by an earlier script's bus
	mkdir -p /run/dbus
	# dbus-daemon resolves the policy's user names: give it root.
	[ -s /etc/passwd ] || echo 'root:x:0:0:root:/root:/bin/sh' >/etc/passwd
	[ -s /etc/group ] || echo 'root:x:0:' >/etc/group
	[ -s /etc/machine-id ] || echo 5d1b0c4e9a2f4a8b9c7d6e5f40312a1b >/etc/machine-id
	dbus-daemon --config-file=/etc/vm/daemon-dbus.conf --nofork --nopidfile \
		>/tmp/dbus.log 2>&1 &
	wait_until 10 test -S /run/dbus/system_bus_socket
}

daemon_start() {
	mkdir -p "$DAEMON_STATE"
	{
		echo "[backends]"
		for kv in "$@"; do echo "$kv"; done
	} >"$DAEMON_CONF"
	echo "--- smplaserd start $*" >>"$DAEMON_LOG"
	smplaserd --system --config "$DAEMON_CONF" --state-dir "$DAEMON_STATE" \
		>>"$DAEMON_LOG" 2>&1 &
	DAEMON_PID=$!
	wait_until 10 busctl --system get-property org.smplaser.Laser1 /org/smplaser/Laser1 \
		org.smplaser.Laser1.Manager Version
}

daemon_stop() {
	[ -n "$DAEMON_PID" ] || return 0
	kill -TERM "$DAEMON_PID" 2>/dev/null
	wait "$DAEMON_PID" 2>/dev/null
	DAEMON_PID=
}

# wait_until SECONDS CMD...: like wait_for, but SECONDS of guest time however
# slow CMD is (wait_for counts 50 ms tries, which slow commands stretch).
wait_until() {
	end=$(awk -v s="$1" '{ print $1 + s }' /proc/uptime)
	shift
	while :; do
		"$@" >/dev/null 2>&1 && return 0
		awk -v e="$end" '{ exit !($1 < e) }' /proc/uptime || return 1
		usleep 50000
	done
}

# stamp TEXT: a diagnostic with the guest's uptime, to see where time goes.
stamp() { diag "[$(cut -d' ' -f1 /proc/uptime)s] $*"; }

daemon_alive() { [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; }

show_daemon_log() { tail -n "${1:-25}" "$DAEMON_LOG" | sed 's/^/#   smplaserd: /'; }

ctl() {
	smplaserctl --no-ask-password "$@" >/tmp/ctl.out 2>&1
	rc=$?
	[ "$rc" -eq 0 ] && return 0
	diag "smplaserctl $* -> $rc:"
	sed 's/^/#   /' /tmp/ctl.out
	return $rc
}

unit_path() { echo "/org/smplaser/Laser1/unit/$1"; }

unit_prop() {
	busctl --system get-property org.smplaser.Laser1 "$(unit_path "$1")" \
		org.smplaser.Laser1.Unit "$2" 2>/dev/null | sed 's/^[a-z]* //; s/"//g'
}

# unit_ready_on SERIAL [BACKEND]: on the bus, probed (and on BACKEND); one busctl.
unit_ready_on() {
	set -- "$1" "${2:-}" "$(busctl --system get-property org.smplaser.Laser1 \
		"$(unit_path "$1")" org.smplaser.Laser1.Unit State Backend 2>/dev/null |
		sed 's/^[a-z]* //; s/"//g' | tr '\n' ' ')"
	case $3 in "" | probing* | disconnected*) return 1 ;; esac
	[ -z "$2" ] || [ "${3#* }" = "$2 " ]
}

wait_unit() {
	smplaser-daemon-probe wait-unit "$(unit_path "$1")" "${2:--}" "${3:-10}" \
		>/tmp/wait-unit.out 2>&1 && return 0
	diag "waiting for $1${2:+ on $2}: $(cat /tmp/wait-unit.out)"
	return 1
}

no_unit() { ! busctl --system introspect org.smplaser.Laser1 "$(unit_path "$1")" \
	org.smplaser.Laser1.Unit >/dev/null 2>&1; }
wait_no_unit() { smplaser-daemon-probe wait-gone "$(unit_path "$1")" "${2:-10}" >/dev/null; }

mod_load() { grep -q '^smplaser ' /proc/modules || insmod "$KO" "$@"; }
mod_unload() { ! grep -q '^smplaser ' /proc/modules || rmmod smplaser; }

# gadget_state_is STATE: the unit's own state (the gadget's words, upper case).
gadget_state_is() { [ "$(gadget_field state)" = "$1" ]; }

# history_field PATIENT COL [FILE]: from FILE (a saved "smplaserctl history") or asked now.
history_field() {
	if [ -n "${3:-}" ]; then cat "$3"; else smplaserctl history "$1" 2>/dev/null; fi |
		awk -v c="$2" 'NF > 5 && $1 ~ /^20/ { v = $c } END { print v }'
}

# arm_for SERIAL PATIENT PATCH: session, patch, eyewear, parameters, arm.
arm_for() {
	ctl -u "$1" session start "$2" &&
		ctl -u "$1" session patch "$3" &&
		ctl -u "$1" session eyewear &&
		ctl -u "$1" params set $PARAMS &&
		ctl -u "$1" arm &&
		wait_until 5 gadget_state_is READY
}

treat() {
	TREAT_SHOTS=0
	TREAT_RECORDED=0
	shots0=$(gadget_field shots)
	arm_for "$1" "$2" "$3" || return 1
	gadget_ctl footswitch 1 >/dev/null || return 1
	sleep "$4"
	gadget_ctl footswitch 0 >/dev/null
	usleep 300000
	TREAT_SHOTS=$(($(gadget_field shots) - shots0))
	ctl -u "$1" session end --endpoint whitening --notes "vm test" || return 1
	smplaserctl history "$2" >/tmp/history.out 2>&1
	TREAT_RECORDED=$(history_field "$2" 6 /tmp/history.out)
	TREAT_OUTCOME=$(history_field "$2" 5 /tmp/history.out)
	return 0
}
