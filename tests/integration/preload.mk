# Libraries that suites preload into the daemon (LD_PRELOAD), never
# sanitized: LD_PRELOAD does not work into an ASan binary, so those suites
# run the plain build/smplaserd.  Both are built by "make all"; the sanitized
# "make SANITIZE=1 unit-tests" of "make check" builds them too.
#   timerfd-passthrough.so   the clock suite (clock.mk), ahead of libfaketime
#   slow-fsync.so            the stall suite (stall.mk): a 2 s fsync on demand
#   slow-threads.so          tests/attack/test_attack3.py: starved worker threads on demand
PRELOAD_LIBS := build/tests/timerfd-passthrough.so build/tests/slow-fsync.so \
	build/tests/slow-threads.so

all: $(PRELOAD_LIBS)

build/tests/%.so: tests/integration/%.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Werror -Wshadow \
		-Wstrict-prototypes -Wmissing-prototypes -Wvla -fPIC -shared -o $@ $<

ifeq ($(SANITIZE),1)
.PHONY: preload-suites-plain
unit-tests: preload-suites-plain
preload-suites-plain:
	@$(MAKE) --no-print-directory SANITIZE=0 build/smplaserd $(PRELOAD_LIBS)
endif
