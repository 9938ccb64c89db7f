# Helpers for the full-boot guest tests.
# check NAME COMMAND...: one test, ok when COMMAND succeeds.
check() {
	name=$1
	shift
	if out=$("$@" 2>&1); then
		echo "ok - $name"
	else
		echo "not ok - $name"
		echo "$out" | tail -n 20
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
