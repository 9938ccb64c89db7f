# valgrind memcheck over the demo's daemon and tool sessions (about 45 s).
CHECK_SUITES += tests/valgrind/run
