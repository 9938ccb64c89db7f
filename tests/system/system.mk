# The full-boot test: Debian 12 with systemd in QEMU, the packages installed.
# Needs root (debootstrap, chroot).  Its host side (packages, root file
# system, disk image: 1.5-3 minutes) runs beside the other suites; the boots
# (about 7 minutes) run alone.
CHECK_SUITES += tests/system/prepare tests/system/run
