# The loop never waits (issue 12): three simulated units, one silent, a disk
# that takes 2 s per fsync (tests/integration/test_stall.py), with
# build/tests/slow-fsync.so (preload.mk) preloaded into the plain build/smplaserd.
CHECK_SUITES += tests/integration/test_stall.py
