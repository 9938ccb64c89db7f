# The attacker (tests/attack/README.md): several clients, several simulated
# units, dropped replies, kills, clock jumps and a disk that fills thrown at the
# real smplaserd, judged by the truth outside it (the units' fired logs).
#
#   make attack [ATTACK_SECONDS=3600] [ATTACK_SEED=n]
#        random episodes for ATTACK_SECONDS, stopping at the first violation
#        (what the holes listed in tests/attack/open-holes trigger is left out;
#        tests/attack/attack.py random --all to include it)
#   make check   every seed, then 45 s of random episodes (run-attack-check)
#
# It runs build/san/smplaserd (ASan+UBSan) when it is the newer build, and
# build/smplaserd with libfaketime for the episodes that jump the clock.
ATTACK_SECONDS ?= 600

.PHONY: attack
attack: $(B)/smplaserd build/tests/timerfd-passthrough.so
	ATTACK_SECONDS=$(ATTACK_SECONDS) /usr/bin/python3 tests/attack/attack.py random

CHECK_SUITES += tests/attack/run-attack-check

# The third review's directed attacks (docs/reliability.md): plain build/smplaserd
# with build/tests/slow-threads.so (tests/integration/preload.mk) preloaded.
CHECK_SUITES += tests/attack/test_attack3.py

# The fourth review's directed attacks: a faulty unit (tests/attack/test_attack4.py,
# docs/reliability.md "Attacks of the fourth outside review").
CHECK_SUITES += tests/attack/test_attack4.py
