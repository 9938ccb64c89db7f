#!/bin/busybox sh
# /init of the VM test guest (see tests/vm/README.md).
#
# Mounts the pseudo file systems, loads the kernel modules listed in
# /etc/vm/modules (in order), runs every /tests/*.sh in name order, checks
# the kernel log, then powers off.  Each test script prints TAP lines
# "ok - name" / "not ok - name"; this init prefixes each name with the
# script's name and prints them on the console, where tests/vm/run picks
# them up.  The console protocol with the host:
#   VMBOOT uptime=S      init started, S seconds after the kernel did
#   ok - ... / not ok -  one test
#   VMDONE passed=N failed=N uptime=S   everything ran
/bin/busybox mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
export HOME=/root

mkdir -p /proc /sys /run /tmp /root /dev/pts
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs tmpfs /tmp
mount -t devpts devpts /dev/pts
echo "VMBOOT uptime=$(cut -d' ' -f1 /proc/uptime)"

# shellcheck disable=SC1091
. /etc/vm/settings	# VM_TEST_TIMEOUT, VM_ONLY

while read -r mod; do
	[ -n "$mod" ] || continue
	insmod "$mod" || echo "vm-init: insmod $mod failed"
done </etc/vm/modules
grep -q configfs /proc/filesystems &&
	mount -t configfs configfs /sys/kernel/config
ip link set lo up 2>/dev/null

passed=0
failed=0
any_failed=0

# tap_filter SCRIPT: pass a test script's output through, rewriting its
# TAP lines ("ok 3 - x", "not ok - x") as "ok - SCRIPT: x".
tap_filter() {
	script=$1
	while IFS= read -r line; do
		case $line in
		"not ok "*) res="not ok" rest=${line#not ok } ;;
		"ok "*) res="ok" rest=${line#ok } ;;
		*) echo "$line"; continue ;;
		esac
		rest=$(echo "$rest" | sed -E 's/^[0-9]+ *//; s/^- //')
		echo "$res - $script: $rest"
	done
}

# run_test SCRIPT OUTFILE: run SCRIPT in its own session with a time limit;
# sets rc.  Whatever it leaves running (a gadget, a daemon) is killed after
# it, so tests cannot leak into each other.
run_test() {
	rm -f /tmp/timed-out
	(cd /tmp && exec setsid sh "$1" </dev/null >"$2" 2>&1) &
	pid=$!
	(sleep "$VM_TEST_TIMEOUT" && touch /tmp/timed-out && kill -9 -"$pid") \
		>/dev/null 2>&1 &
	watchdog=$!
	wait "$pid"
	rc=$?
	kill "$watchdog" 2>/dev/null
	kill -9 -"$pid" 2>/dev/null
	[ -e /tmp/timed-out ] && rc="$rc (killed after ${VM_TEST_TIMEOUT}s)"
}

for t in /tests/*.sh; do
	[ -f "$t" ] || continue
	name=$(basename "$t" .sh)
	# VM_ONLY: shell patterns separated by spaces, any of them
	wanted=0
	set -f		# the patterns are not file names here
	for pat in $VM_ONLY; do
		case $name in $pat) wanted=1 ;; esac
	done
	set +f
	[ $wanted = 1 ] || continue
	echo "# --- $name"
	start=$(cut -d' ' -f1 /proc/uptime)
	run_test "$t" "/tmp/$name.out"
	tap_filter "$name" <"/tmp/$name.out" | tee "/tmp/$name.tap"
	p=$(grep -c '^ok ' "/tmp/$name.tap")
	f=$(grep -c '^not ok ' "/tmp/$name.tap")
	if [ "$rc" != 0 ] && [ "$f" -eq 0 ]; then
		echo "not ok - $name: exited with status $rc"
		f=1
	fi
	if [ "$p" -eq 0 ] && [ "$f" -eq 0 ]; then
		echo "not ok - $name: reported no test"
		f=1
	fi
	end=$(cut -d' ' -f1 /proc/uptime)
	echo "# $name took $(awk "BEGIN{print $end - $start}")s"
	passed=$((passed + p))
	failed=$((failed + f))
done

# The kernel must not have complained about anything the tests did: the
# splats of KASAN, KFENCE, lockdep, DEBUG_OBJECTS, atomic-sleep checks (the
# debug kernel) and of any kernel.  The same list is in /etc/vm/kmod-lib.sh.
dmesg_bad='BUG|WARNING|Oops|sleeping function called|BOGUS urb|general protection|KASAN|KFENCE|UBSAN|ODEBUG|circular locking|recursive locking|inconsistent lock|lock held|hung_task|blocked for more than|refcount_t|stack-protector|Kernel panic'
if dmesg | grep -E "$dmesg_bad" >/tmp/dmesg-bad; then
	echo "not ok - kernel log has no splat (BUG, WARNING, Oops, KASAN, KFENCE, lockdep, sleeping-function, BOGUS urb)"
	sed 's/^/# dmesg: /' /tmp/dmesg-bad
	failed=$((failed + 1))
else
	echo "ok - kernel log has no splat (BUG, WARNING, Oops, KASAN, KFENCE, lockdep, sleeping-function, BOGUS urb)"
	passed=$((passed + 1))
fi

if [ "$failed" -ne 0 ]; then
	echo "# ---- guest kernel log"
	dmesg | sed 's/^/# dmesg| /'
fi
echo "VMDONE passed=$passed failed=$failed uptime=$(cut -d' ' -f1 /proc/uptime)"
sync
# QEMU runs with -no-reboot: a reboot ends it, on every kernel (the debug
# kernel has no ACPI to power off with).
reboot -f
