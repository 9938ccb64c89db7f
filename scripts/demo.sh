#!/bin/bash
# SPDX-License-Identifier: MIT
#
# make demo: a narrated treatment on a simulated laser unit.
#
# Starts a private D-Bus bus and "smplaserd --session --sim" with a temporary
# state directory, then walks through a treatment with smplaserctl.  Leaves
# nothing running and removes the temporary directory when it ends, also on
# Ctrl-C.  Run from the top of the tree after "make" (make demo does both).
#
#   DEMO_PAUSE=SECONDS   pause between steps (default 0.7)
#   DEMO_WRAP="CMD ARGS" run smplaserd and smplaserctl under CMD (e.g. valgrind;
#                        tests/valgrind/run)
set -u

top=$(cd "$(dirname "$0")/.." && pwd)
ctl_bin=$top/build/smplaserctl
daemon_bin=$top/build/smplaserd
pause=${DEMO_PAUSE:-0.7}
patient=demo-001

if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then
	bold=$'\033[1m' dim=$'\033[2m' blue=$'\033[1;34m' red=$'\033[1;31m' off=$'\033[0m'
else
	bold='' dim='' blue='' red='' off=''
fi

for b in "$ctl_bin" "$daemon_bin"; do
	[ -x "$b" ] || { echo "demo: $b is not built: run 'make' first" >&2; exit 1; }
done
command -v dbus-daemon >/dev/null || { echo "demo: dbus-daemon is missing: run 'make deps'" >&2; exit 1; }

# --- the private bus and the daemon, and their cleanup ------------------------

tmp=$(mktemp -d /tmp/smplaser-demo.XXXXXX)
bus_pid=''
daemon_pid=''

cleanup() {
	trap - EXIT INT TERM HUP
	# The daemon first (it disarms its units), then the bus: session keepers
	# see their connection close and exit with it.
	if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
		kill -TERM "$daemon_pid" 2>/dev/null
		for _ in 1 2 3 4 5 6 7 8 9 10; do
			kill -0 "$daemon_pid" 2>/dev/null || break
			sleep 0.2
		done
		kill -KILL "$daemon_pid" 2>/dev/null
	fi
	[ -n "$daemon_pid" ] && wait "$daemon_pid" 2>/dev/null
	if [ -n "$bus_pid" ]; then
		kill -TERM "$bus_pid" 2>/dev/null
		wait "$bus_pid" 2>/dev/null
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'echo; echo "demo: interrupted, cleaning up" >&2; exit 130' INT TERM HUP

cat >"$tmp/bus.conf" <<EOF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path=$tmp/bus</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
EOF
# Only the simulated unit: no real unit plugged into this machine is touched.
# The clinic's name goes on the patient's report.
printf '[backends]\nkmod = false\nlibusb = false\n\n[clinic]\nname = Demo Clinic\n' \
	>"$tmp/smplaserd.conf"

export DBUS_SESSION_BUS_ADDRESS="unix:path=$tmp/bus"
unset DBUS_SYSTEM_BUS_ADDRESS

dbus-daemon --config-file="$tmp/bus.conf" --nofork >/dev/null 2>&1 &
bus_pid=$!
for _ in $(seq 50); do [ -S "$tmp/bus" ] && break; sleep 0.1; done
[ -S "$tmp/bus" ] || { echo "demo: the private bus did not start" >&2; exit 1; }

${DEMO_WRAP:-} "$daemon_bin" --session --sim --config "$tmp/smplaserd.conf" --state-dir "$tmp/state" \
	>"$tmp/smplaserd.log" 2>&1 &
daemon_pid=$!

# --- narration helpers ----------------------------------------------------------

# smplaserctl on the private bus; nothing to type (it asks for a missing endpoint
# on a terminal: the story gives every one).
smplaserctl() {
	${DEMO_WRAP:-} "$ctl_bin" --session "$@" </dev/null
}

say() {
	printf '\n%s== %s%s\n' "$blue" "$*" "$off"
}

# Show the command (as a technician would type it), run it, and insist on
# the exit status the story expects: the demo must not carry on past a
# surprise.
# The command line as one would type it (arguments with spaces quoted).
shown() {
	local a out=''
	for a in "$@"; do
		case $a in
			*' '*) out="$out \"$a\"" ;;
			*) out="$out $a" ;;
		esac
	done
	printf '%s' "${out# }"
}

run() {
	local want=$1 rc
	shift
	printf '%s$ smplaserctl %s%s\n' "$bold" "$(shown "$@")" "$off"
	smplaserctl "$@"
	rc=$?
	if [ "$rc" -ne "$want" ]; then
		printf '%sdemo: "smplaserctl %s" exited %d, expected %d%s\n' "$red" "$(shown "$@")" \
			"$rc" "$want" "$off" >&2
		echo "demo: smplaserd's log:" >&2
		tail -n 20 "$tmp/smplaserd.log" >&2
		exit 1
	fi
	[ "$want" -ne 0 ] && printf '%s(exit status %d, as expected)%s\n' "$dim" "$rc" "$off"
	sleep "$pause"
	return 0
}

# --- the story ------------------------------------------------------------------

start=$(date +%s)
# Ready once the daemon has probed its unit (Manager State "running").
for _ in $(seq 100); do
	smplaserctl status 2>/dev/null | grep -q '^smplaserd .*(running)' && break
	kill -0 "$daemon_pid" 2>/dev/null || { cat "$tmp/smplaserd.log" >&2; exit 1; }
	sleep 0.1
done

printf '%ssmplaser demo%s: smplaserd with one simulated unit on a private bus\n' "$bold" "$off"
printf '%s(state in %s; every smplaserctl below runs with --session)%s\n' "$dim" "$tmp" "$off"

say "The unit's status: standby, every interlock closed, no session"
run 0 status

say "The clinic protocol's parameters: 1064 nm, 3 J/cm2, 3 mm spot, 10 ns, 5 Hz"
run 0 params set wavelength_nm=1064 fluence_mj_cm2=3000 spot_um=3000 pulse_ps=10000 rate_mhz=5000

say "A session for patient $patient, the crown selected, eyewear confirmed"
run 0 session start "$patient"
run 0 session patch crown
run 0 session eyewear

say "Armed: the treatment is on record before the unit may fire; then the emission delay"
run 0 arm

say "The footswitch held for 2 s: the laser fires only while it is held"
run 0 sim footswitch hold 2

say "Disarmed; the session ends only once the crown's endpoint is on record"
run 0 disarm
run 4 session end
run 0 session end --endpoint whitening --notes "demo: crown, even frosting"
run 0 history "$patient"

say "Two weeks later, the follow-up visit: the marks faded, pigment remains"
run 0 followup "$patient" crown --pigment 60 --redness resolved --notes "marks faded"

say "A second session: the crown again is refused until its 42-day cooldown has passed"
run 0 session start "$patient"
run 4 session patch crown
run 4 check "$patient" crown

say "The map: each patch coloured by the days until it may be treated again"
run 0 map "$patient"
run 0 map "$patient" --svg "$top/build/$patient-map.svg"

say "The occipital patch instead; the door is opened 1 s into the footswitch hold"
run 0 session patch occipital
run 0 session eyewear
run 0 arm
# (A second pair of hands: once the laser is emitting, wait a second, open the door.)
(
	for _ in $(seq 100); do
		smplaserctl status 2>/dev/null | grep -q 'State: emitting' && break
		sleep 0.05
	done
	sleep 1
	smplaserctl sim door open >/dev/null
) &
door_pid=$!
run 0 sim footswitch hold 3
wait "$door_pid"
run 0 status

say "Door closed, fault acknowledged, the occipital's endpoint recorded, session ended"
run 0 sim door close
run 0 ack
run 0 session end --endpoint partial-whitening --notes "demo: interrupted by the door"
run 0 history "$patient"

say "A follow-up finds a blister on the occipital patch: it is held until a review"
run 0 followup "$patient" occipital --pigment 70 --adverse blistering --notes "small blister"
run 4 check "$patient" occipital
run 0 course "$patient"

say "The report the patient takes home, and the record for the clinic's EMR (FHIR R4)"
run 0 report "$patient" -o "$top/build/$patient-report.pdf"
run 0 export "$patient" --fhir -o "$top/build/$patient-fhir.json"

printf '\n%sDemo finished in %d s.%s The map is in build/%s-map.svg, the report in\n' "$bold" \
	$(($(date +%s) - start)) "$off" "$patient"
printf 'build/%s-report.pdf.\n' "$patient"
