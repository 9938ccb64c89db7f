# The loop never waits (issue 12): three simulated units, one silent, a disk
# that takes 2 s per fsync (tests/integration/test_stall.py).  The shim is an
# LD_PRELOAD, which cannot go into an ASan binary: the suite runs the plain
# build/smplaserd, built for it as for the clock suite (clock.mk).
CHECK_SUITES += tests/integration/test_stall.py

SLOW_FSYNC := build/tests/slow-fsync.so

all: $(SLOW_FSYNC)

$(SLOW_FSYNC): tests/integration/slow-fsync.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Werror -Wshadow \
		-Wstrict-prototypes -Wmissing-prototypes -Wvla -fPIC -shared -o $@ $<

ifeq ($(SANITIZE),1)
.PHONY: stall-suite-plain
unit-tests: stall-suite-plain
stall-suite-plain:
	@$(MAKE) --no-print-directory SANITIZE=0 build/smplaserd $(SLOW_FSYNC)
endif
