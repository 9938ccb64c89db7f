# Fault tests of smplaserd (docs/reliability.md): disk full, read-only state
# directory, config missing or unreadable, SIGSTOP.  Same daemon binary as
# tests/integration/integration.mk (built there for "make check").
CHECK_SUITES += tests/integration/test_faults.py
