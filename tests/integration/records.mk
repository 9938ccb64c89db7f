# Records a site can trust and restore (issue 15.11-15.13): backups while in use
# and a restored older copy, the sqlite3 shell against the hash chain, exports
# (tests/integration/test_records.py).  Two of its tests run the plain
# build/smplaserd (a memory limit; libfaketime with build/tests/timerfd-passthrough.so,
# preload.mk), the rest the daemon of integration.mk; smplaserctl is the plain
# build/smplaserctl, which the sanitized "make SANITIZE=1 unit-tests" of
# "make check" builds too (preload.mk builds the plain daemon and libraries).
CHECK_SUITES += tests/integration/test_records.py

ifeq ($(SANITIZE),1)
.PHONY: records-suite-plain
unit-tests: records-suite-plain
records-suite-plain:
	@$(MAKE) --no-print-directory SANITIZE=0 build/smplaserctl
endif
