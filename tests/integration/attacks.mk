# Attacks on the records and rules (issue 11): late and lost replies, counters
# that go back, two units, letter case, intruders; judged by the simulated
# unit's fired log.  Same daemon binary as tests/integration/integration.mk.
CHECK_SUITES += tests/integration/test_attacks.py
