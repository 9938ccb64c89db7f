#!/bin/sh
# smplaser.ko: the node, sysfs and ioctl round trips match the model; one
# opener; the driver's own checks of ioctl arguments and sysfs writes.
. /etc/vm/kmod-lib.sh
SERIAL=KMOD-BASIC-01

kmod_setup --serial "$SERIAL"
ok "smplaser.ko binds the unit and creates $KMOD_DEV"
check "the node is a char device of class smplaser, numbered 0" \
	test -c /dev/smplaser0 -a -d /sys/class/smplaser/smplaser0 -a ! -e /dev/smplaser1

# --- sysfs matches the model -------------------------------------------------
gstat
gstate=$(echo "$G_state" | tr 'A-Z_' 'a-z-')
check "sysfs serial is the unit's ($(sysfs serial))" test "$(sysfs serial)" = "$SERIAL"
check "sysfs firmware is x.y.z ($(sysfs firmware))" \
	sh -c "echo $(sysfs firmware) | grep -qE '^[0-9]+\.[0-9]+\.[0-9]+$'"
check "sysfs state is the unit's ($(sysfs state) vs $G_state)" test "$(sysfs state)" = "$gstate"
check "sysfs interlocks match the unit's ($(sysfs interlocks) vs $G_interlocks)" \
	test "$(($(sysfs interlocks)))" = "$((G_interlocks))"
check "sysfs shot_count is the unit's ($(sysfs shot_count) vs $G_shots)" \
	test "$(sysfs shot_count)" = "$G_shots"
check "sysfs heartbeat_ms starts at the module default 500" test "$(sysfs heartbeat_ms)" = 500
hb=$KMOD_SYSFS/heartbeat_ms
check "sysfs heartbeat_ms refuses 0" sh -c "! echo 0 >$hb"
check "sysfs heartbeat_ms refuses the unit's watchdog ($WATCHDOG_MS)" sh -c "! echo $WATCHDOG_MS >$hb"
check "sysfs heartbeat_ms refuses junk" sh -c "! echo 12x >$hb"
echo 300 >"$hb"
check "sysfs heartbeat_ms takes 300" test "$(sysfs heartbeat_ms)" = 300
echo 500 >"$hb"
# The opener paces its heartbeats from GET_INFO: no change under its feet.
exec 3</dev/smplaser0
check "sysfs heartbeat_ms refuses a change while the node is open (EBUSY)" \
	sh -c "! echo 300 2>/tmp/hb.err >$hb && grep -q busy /tmp/hb.err"
check "and keeps its value" test "$(sysfs heartbeat_ms)" = 500
exec 3<&-
echo 400 >"$hb"
check "closed again: sysfs heartbeat_ms takes 400" test "$(sysfs heartbeat_ms)" = 400
echo 500 >"$hb"
check "sysfs files other than heartbeat_ms are read-only" \
	sh -c "! echo x >$KMOD_SYSFS/serial && ! echo 1 >$KMOD_SYSFS/shot_count"

# --- ioctl round trips ---------------------------------------------------------
if kc info status; then ok "GET_INFO and GET_STATUS succeed"; else not_ok "GET_INFO and GET_STATUS succeed"; fi
check "GET_INFO serial is the unit's ($(kc_field serial))" test "$(kc_field serial)" = "$SERIAL"
check "GET_INFO firmware is sysfs firmware" test "$(kc_field firmware)" = "$(sysfs firmware)"
check "GET_INFO watchdog_ms is the gadget's --watchdog-ms" test "$(kc_field watchdog_ms)" = "$WATCHDOG_MS"
check "GET_INFO emission_delay_ms is the gadget's" test "$(kc_field emission_delay_ms)" = "$EMISSION_DELAY_MS"
check "GET_INFO heartbeat_ms is sysfs heartbeat_ms" test "$(kc_field heartbeat_ms)" = 500
check "GET_INFO reserved is zeroed" test "$(kc_field info_reserved)" = 0
check "GET_STATUS state is the unit's ($(kc_field state))" test "$(kc_field state)" = "$G_state"
check "GET_STATUS shots are the unit's" test "$(kc_field shots)" = "$G_shots"
check "GET_STATUS reserved fields are zeroed, not armed" \
	test "$(kc_field status_reserved)/$(kc_field armed)" = 0/0

gstat
cmds=$G_commands
kc params 1064 3000 4000 10000 5000 status
check "SET_PARAMS round trip: the unit echoes what it took" \
	test "$(kc_field params)" = "1064,3000,4000,10000,5000"
check "SET_PARAMS reached the unit (GET_STATUS flags has PARAMS_SET)" \
	test "$(( $(kc_field flags) & 4 ))" = 4

# The driver's own checks: refused before anything reaches the unit.
gstat
cmds=$G_commands
kc expect EINVAL params-reserved \
	expect ERANGE params 808 3000 4000 10000 5000 \
	expect ERANGE params 1064 1000 4000 10000 5000 \
	expect ERANGE params 1064 3000 20000 10000 5000 \
	expect ERANGE params 1064 3000 4000 1000 5000 \
	expect ERANGE params 1064 3000 4000 10000 0 \
	expect ENOTTY raw-ioctl 0xb8ff \
	expect ENOTTY raw-ioctl 0x5401
for what in "reserved field set: EINVAL" "a wavelength the unit lacks: ERANGE" \
	"a spot below the unit's minimum: ERANGE" "fluence above the unit's maximum: ERANGE" \
	"a pulse width below the unit's minimum: ERANGE" "rate 0: ERANGE"; do
	errno=${what##*: }
	n=$(grep -c "^params refused=$errno" /tmp/kc.out)
	[ "$n" -gt 0 ] && ok "SET_PARAMS with $what" || not_ok "SET_PARAMS with $what"
done
check "SET_PARAMS refusals: six, as expected" test "$(grep -c '^params refused=' /tmp/kc.out)" = 6
check "unknown ioctls (ours and a tty one): ENOTTY" test "$(grep -c '^raw-ioctl refused=ENOTTY' /tmp/kc.out)" = 2
gstat
check "refused SET_PARAMS never reached the unit (commands $cmds -> $G_commands)" test "$G_commands" = "$cmds"

# --- one opener ------------------------------------------------------------
check "a second open while one is open: EBUSY" kc expect EBUSY open-second
kmod-client sleep 1000 >/dev/null 2>&1 &
holder=$!
usleep 300000
check "another process gets EBUSY while the first holds it" kmod-client open-fails EBUSY
wait $holder
check "after close the device opens again" kc status

# --- interlocks in sysfs and events --------------------------------------------
kc events ctl "interlock handpiece open" sleep 100 events ctl "interlock handpiece closed" sleep 100 events
check "the first record after open is a status snapshot" \
	sh -c "grep '^event' /tmp/kc.out | head -n1 | grep -q 'type=status state=STANDBY'"
check "an interlock opening is an event with its bit (0x08)" grep -q 'type=interlock interlocks=0x08 changed=0x08' /tmp/kc.out
check "closing it again is an event too" grep -q 'type=interlock interlocks=0x00 changed=0x08' /tmp/kc.out
check "event sequence numbers count up from 0 without gaps" \
	sh -c "grep -o 'seq=[0-9]*' /tmp/kc.out | awk -F= '\$2 != NR - 1 { exit 1 }'"
# --- O_NONBLOCK and poll() ---------------------------------------------------------
kc nonblock events expect EAGAIN read-once poll-wait 0 \
	ctl "interlock cooling open" poll-wait 2000 read-once ctl "interlock cooling closed"
check "O_NONBLOCK read of an empty queue: EAGAIN" grep -q '^read-once refused=EAGAIN' /tmp/kc.out
check "poll() of an empty queue times out" grep -q '^poll=timeout' /tmp/kc.out
check "poll() reports POLLIN when an event comes" grep -q '^poll=IN, after_ms=' /tmp/kc.out
check "and that record is the interlock change" grep -q 'type=interlock interlocks=0x10' /tmp/kc.out
check "read() with a buffer smaller than a record: EINVAL" kc events expect EINVAL read-small

kmod-client -n ctl "interlock key open"
check "sysfs interlocks shows an open key switch" wait_sysfs interlocks 0x01 2
kmod-client -n ctl "interlock key closed"
check "sysfs interlocks goes back to 0x00" wait_sysfs interlocks 0x00 2

kmod_teardown
