# The clinic's records on PostgreSQL (issue 14): tests/pg/test_pg.py starts its
# own PostgreSQL 15 (initdb + pg_ctl on a Unix socket in a temporary directory,
# as a user that is not root) and runs two workstations' daemons on it.  The
# daemon is the sanitized one when it is the newer (tests/integration/harness.py).
CHECK_SUITES += tests/pg/test_pg.py
# The dispatch fuzzer of the safety work on the same backend, a short run
# (FUZZ_PG_SECONDS, 30): tests/pg/run-fuzz-pg.  Built by fuzz.mk's fuzz-build.
CHECK_SUITES += tests/pg/run-fuzz-pg
