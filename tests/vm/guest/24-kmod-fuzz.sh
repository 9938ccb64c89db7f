#!/bin/sh
# smplaser.ko: random ioctl commands, sizes and pointers, and reads with
# random sizes and pointers (kmod-fuzz), with the door open and parameters
# set: no oops, no ARM gets through, and the device still answers.
. /etc/vm/kmod-lib.sh

kmod_setup --serial KMOD-FUZZ-01
kc params 1064 3000 4000 10000 10000
kmod-client -n ctl "interlock door open"
wait_sysfs interlocks 0x02 2
seed=${RANDOM:-1}$$
kmod-fuzz /dev/smplaser0 3 "$seed" >/tmp/fuzz.out 2>&1
rc=$?
while IFS= read -r line; do echo "#   $line"; done </tmp/fuzz.out
check "3 s of random ioctls and reads (seed $seed): no ARM got through, GET_INFO still answers" test $rc = 0
check "the fuzzer hit our real commands (some succeeded, some EPERM)" \
	sh -c "grep -q success /tmp/fuzz.out && grep -q 'Operation not permitted' /tmp/fuzz.out"
check "and unknown commands got ENOTTY" grep -q 'Inappropriate ioctl' /tmp/fuzz.out
gstat
check "the unit was never armed: STANDBY ($G_state)" test "$G_state" = STANDBY
kmod-client -n ctl "interlock door closed"
check "after fuzzing, GET_STATUS and GET_INFO work" kc status info

kmod_teardown
