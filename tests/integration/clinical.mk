# The clinical record (issue 16, tests/integration/test_clinical.py): endpoints,
# follow-ups, clear patches, holds and reviews, each rule attacked as a client
# would and judged by the fired log.  Same daemon binary as integration.mk.
CHECK_SUITES += tests/integration/test_clinical.py
