# Soak: a clinic day at high speed against smplaserd --session --sim=16, every
# pulse and decision judged by the truth (the units' fired logs), with the
# attacker's world and oracles (tests/soak/soak.py, tests/attack/).
#
#   make soak [DURATION=600] [SOAK_SEED=n] [SOAK_UNITS=16]
#
# "make check" runs a short one (tests/soak/run-soak-check: about 100 s, at
# least 10,000 pulses).
DURATION ?= 600

.PHONY: soak
soak: $(B)/smplaserd
	SMPLASERD=$(B)/smplaserd DURATION=$(DURATION) /usr/bin/python3 tests/soak/soak.py
CHECK_SUITES += tests/soak/run-soak-check
