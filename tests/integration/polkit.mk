# A polkit that never answers (tests/integration/test_polkit.py): [auth]
# polkit_timeout_s bounds the wait, the call is denied and audited, the late
# answer is ignored.  Same daemon binary as tests/integration/integration.mk.
CHECK_SUITES += tests/integration/test_polkit.py
