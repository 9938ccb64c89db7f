# Daemon integration tests: smplaserd --session --sim on private dbus-daemons
# (tests/integration/harness.py).  Needs $(B)/smplaserd (built by "all").
CHECK_SUITES += tests/integration/test_daemon.py
