# Shell helpers for the smplaser.ko guest tests (tests/vm/guest/2*-kmod*.sh),
# installed in the guest as /etc/vm/kmod-lib.sh (by 20-kmod.files):
#   . /etc/vm/kmod-lib.sh
#
# Under TCG every process start costs tens of milliseconds, so these helpers
# use shell builtins where they can and kmod-client (static) for the rest.
#
#   kmod_setup [GADGET OPTIONS]  start the gadget (fast self-test and emission
#                                delay), load smplaser.ko, wait for /dev/smplaser0
#   kmod_teardown NAME           stop the gadget, unload the module, and test
#                                that this script left the kernel log clean
#   kc STEP...                   kmod-client on /dev/smplaser0; its output is
#                                kept in /tmp/kc.out and shown as diagnostics
#   kc_field NAME                a "NAME=value" line of the last kc output
#   gstat                        the gadget's status into $G_state, $G_shots,
#                                $G_interlocks, $G_disarms, $G_commands, ...
#   sysfs NAME                   the value of /sys/class/smplaser/smplaser0/NAME
#   wait_sysfs NAME VALUE SECS   until that file reads VALUE
. /etc/vm/lib.sh

KMOD_KO=/lib/modules/smplaser.ko
KMOD_SYSFS=/sys/class/smplaser/smplaser0
KMOD_DEV=/dev/smplaser0
EMISSION_DELAY_MS=300
WATCHDOG_MS=1000
KMOD_DMESG_MARK=0
# lat_ms N: a rig latency limit of N ms, scaled for slow kernels and
# parallel runs (VM_LAT_SCALE, tests/vm/run).  Not for the driver's bounds.
. /etc/vm/settings
LAT=${VM_LAT_SCALE:-1}
export VM_LAT_SCALE=$LAT
lat_ms() { echo $(($1 * LAT)); }
# Splats of any kernel, and of the debug kernel's KASAN, KFENCE, lockdep,
# DEBUG_OBJECTS and atomic-sleep checks (as /init checks at the end).
KMOD_DMESG_BAD='BUG|WARNING|Oops|sleeping function called|BOGUS urb|general protection|KASAN|KFENCE|UBSAN|ODEBUG|circular locking|recursive locking|inconsistent lock|lock held|hung_task|blocked for more than|refcount_t|stack-protector|Kernel panic'

kmod_loaded() { grep -q '^smplaser ' /proc/modules; }

kmod_load() {
	kmod_loaded || insmod "$KMOD_KO" "$@"
}

kmod_unload() {
	kmod_loaded || return 0
	rmmod smplaser
}

sysfs() {
	v=
	read -r v <"$KMOD_SYSFS/$1" 2>/dev/null
	echo "$v"
}

wait_sysfs() {
	tries=$(($3 * 50))
	while [ "$tries" -gt 0 ]; do
		v=
		read -r v <"$KMOD_SYSFS/$1" 2>/dev/null
		[ "$v" = "$2" ] && return 0
		usleep 20000
		tries=$((tries - 1))
	done
	return 1
}

gstat() {
	eval "$(kmod-client -n gstatus)"
}

kmod_setup() {
	KMOD_DMESG_MARK=$(dmesg | wc -l)
	if [ ! -f "$KMOD_KO" ]; then
		not_ok "smplaser.ko is in the guest" "no $KMOD_KO: make kmod failed?"
		exit 1
	fi
	kmod_load
	if ! gadget_start --self-test-ms 50 --emission-delay-ms "$EMISSION_DELAY_MS" \
		--watchdog-ms "$WATCHDOG_MS" "$@"; then
		not_ok "the gadget starts"
		exit 1
	fi
	if ! wait_sysfs state standby 10; then
		not_ok "smplaser.ko binds the unit and creates $KMOD_DEV (state standby)"
		dmesg | tail -n 20 | sed 's/^/#   /'
		exit 1
	fi
}

# The kernel log lines this script caused must hold no BUG, WARNING, ...
kmod_dmesg_clean() {
	dmesg | tail -n +"$((KMOD_DMESG_MARK + 1))" >/tmp/kmod-dmesg
	if grep -E "$KMOD_DMESG_BAD" /tmp/kmod-dmesg >/tmp/kmod-dmesg-bad; then
		not_ok "kernel log has no splat (BUG, WARNING, Oops, KASAN, KFENCE, lockdep, sleeping-function, BOGUS urb)"
		sed 's/^/#   /' /tmp/kmod-dmesg-bad
	else
		ok "kernel log has no splat (BUG, WARNING, Oops, KASAN, KFENCE, lockdep, sleeping-function, BOGUS urb)"
	fi
}

kmod_teardown() {
	gadget_stop >/dev/null 2>&1
	kmod_unload
	kmod_dmesg_clean
}

kc() {
	kmod-client "$@" >/tmp/kc.out 2>&1
	rc=$?
	while IFS= read -r line; do echo "#   $line"; done </tmp/kc.out
	return $rc
}

kc_field() {
	while IFS= read -r line; do
		case $line in "$1="*) echo "${line#*=}"; return 0 ;; esac
	done </tmp/kc.out
}
