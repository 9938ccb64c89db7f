# The host clock jumping under a running smplaserd (tests/integration/test_clock.py),
# with libfaketime.  LD_PRELOAD does not work into an ASan binary: the suite runs
# the plain build/smplaserd, and preloads build/tests/timerfd-passthrough.so
# (never sanitized) ahead of libfaketime.  Both are built by "make all"; the
# sanitized "make SANITIZE=1 unit-tests" of "make check" builds them too.
CHECK_SUITES += tests/integration/test_clock.py

CLOCK_PASSTHROUGH := build/tests/timerfd-passthrough.so

all: $(CLOCK_PASSTHROUGH)

$(CLOCK_PASSTHROUGH): tests/integration/timerfd-passthrough.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Werror -Wshadow \
		-Wstrict-prototypes -Wmissing-prototypes -Wvla -fPIC -shared -o $@ $<

ifeq ($(SANITIZE),1)
.PHONY: clock-suite-plain
unit-tests: clock-suite-plain
clock-suite-plain:
	@$(MAKE) --no-print-directory SANITIZE=0 build/smplaserd $(CLOCK_PASSTHROUGH)
endif
