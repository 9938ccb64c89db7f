# Issue 15's daemon side: denials de-duplicated in the journal, simulated units
# refused on the system bus, the configuration in force recorded.
CHECK_SUITES += tests/integration/test_ops.py
