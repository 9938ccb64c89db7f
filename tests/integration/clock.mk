# The host clock jumping under a running smplaserd (tests/integration/test_clock.py),
# with libfaketime and build/tests/timerfd-passthrough.so (preload.mk) preloaded
# into the plain build/smplaserd.
CHECK_SUITES += tests/integration/test_clock.py
