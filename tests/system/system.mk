# The full-boot test: Debian 12 with systemd in QEMU, the packages installed.
# Needs root (debootstrap, chroot) and about 5-7 minutes.
CHECK_SUITES += tests/system/run
