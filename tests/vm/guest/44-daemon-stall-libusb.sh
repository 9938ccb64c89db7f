#!/bin/sh
# Issue 12's stall test on the libusb backend, smplaser.ko not loaded
# (tests/vm/stall-lib.sh).
. /etc/vm/stall-lib.sh
stall_test libusb
