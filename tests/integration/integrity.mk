# The records' integrity check after READY (issue 12): a damaged page found in
# the background faults every unit; sound records pass.  Same daemon binary as
# tests/integration/integration.mk (built there for "make check").
CHECK_SUITES += tests/integration/test_integrity.py
