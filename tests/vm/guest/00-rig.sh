#!/bin/sh
# The VM rig itself: the guest has what every other guest test relies on.
. /etc/vm/lib.sh

check "dummy_hcd provides a UDC" sh -c 'ls /sys/class/udc | grep -q dummy_udc'
check "configfs is mounted with usb_gadget" test -d /sys/kernel/config/usb_gadget
check "usb_f_fs (FunctionFS) is loaded" grep -q "^usb_f_fs " /proc/modules
check "dummy_hcd's root hub is on the USB bus" sh -c 'ls /sys/bus/usb/devices | grep -q "^usb[0-9]"'
check "devtmpfs has /dev/bus/usb" test -d /dev/bus/usb
