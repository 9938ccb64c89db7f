#!/bin/sh
# smplaser.ko under threads, unplugs, resets and sleep (lockdep, KASAN and
# the atomic-sleep checks watch on the debug kernel):
#  - ARM, DISARM, HEARTBEAT, GET_STATUS, read and poll from six threads,
#    and close() under them (also through a dup)
#  - close() racing the unplug; the unplug in the middle of each ioctl and
#    in every state
. /etc/vm/kmod-lib.sh
WATCHDOG_MS=4000

kmod_setup --serial KMOD-THREADS-01
kc params 1064 3000 4000 10000 10000
ARM="hb 100 arm wait-state READY 3000"

kmod-race storm 3
kmod-race close-unplug 5
kmod-race unplug-ioctl
kmod-race unplug-states
wait_sysfs state standby 10

kmod_teardown
