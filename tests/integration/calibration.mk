# Calibration end to end (tests/integration/test_calibration.py): Arm refused
# with CalibrationExpired, the daemon disarming when it expires while arming,
# READY or emitting, arming again once valid, smplaserctl sim calibration.
# Same daemon binary as tests/integration/integration.mk.
CHECK_SUITES += tests/integration/test_calibration.py
