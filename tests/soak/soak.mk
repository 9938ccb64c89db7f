# Soak: a clinic day at high speed against smplaserd --session --sim, every
# decision checked against a model of the rules (tests/soak/soak.py).
#
#   make soak [DURATION=600] [SOAK_SEED=n]
#
# "make check" runs a short one (tests/soak/run-soak-check, 120 s).
DURATION ?= 600

.PHONY: soak
soak: $(B)/smplaserd
	SMPLASERD=$(B)/smplaserd DURATION=$(DURATION) /usr/bin/python3 tests/soak/soak.py

CHECK_SUITES += tests/soak/run-soak-check
