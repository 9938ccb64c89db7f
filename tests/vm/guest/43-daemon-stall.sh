#!/bin/sh
# Issue 12's stall test on the kmod backend (tests/vm/stall-lib.sh).
. /etc/vm/stall-lib.sh
stall_test kmod
