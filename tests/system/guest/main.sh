#!/bin/sh
# Guest side of tests/system/run: runs boot<N>-*.sh for this boot (N from
# the kernel command line, smplaser.boot=N), then powers off.  Each test
# prints "ok - name" / "not ok - name"; this prefixes them with SYSTEST for
# the host.
here=$(dirname "$0")
boot=$(sed -n 's/.*smplaser\.boot=\([0-9]*\).*/\1/p' /proc/cmdline)
echo "SYSTEST # boot $boot: system up after $(cut -d' ' -f1 /proc/uptime)s"
for t in "$here"/boot"$boot"-*.sh; do
	[ -f "$t" ] || continue
	name=$(basename "$t" .sh)
	t0=$(cut -d' ' -f1 /proc/uptime)
	timeout 480 sh "$t" 2>&1 | while IFS= read -r line; do
		case $line in
		"ok - "*|"not ok - "*) echo "SYSTEST ${line%% - *} - $name: ${line#* - }" ;;
		*) echo "SYSTEST # $line" ;;
		esac
	done
	echo "SYSTEST # $name took $(awk -v a="$t0" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN { printf "%.0f", b - a }') s"
done
echo "SYSTEST DONE uptime=$(cut -d' ' -f1 /proc/uptime)"
systemctl poweroff --no-block
