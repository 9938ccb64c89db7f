# smplaser.ko: built by "make kmod" (Kbuild in this folder); here the style
# and static-check suite, and the small C programs the VM guest tests use.
CHECK_SUITES += tests/kmod/style-check
