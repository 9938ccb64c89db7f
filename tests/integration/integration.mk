# Daemon integration tests: smplaserd --session --sim on private dbus-daemons
# (tests/integration/harness.py).  "make check" builds the daemon twice:
# build/smplaserd with "all", build/san/smplaserd (ASan+UBSan) with the
# sanitized unit tests; the suite runs the sanitized one when it is the newer
# (SMPLASERD=path overrides).
CHECK_SUITES += tests/integration/test_daemon.py
unit-tests: $(B)/smplaserd
