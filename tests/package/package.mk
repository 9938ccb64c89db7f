# The Debian source and binary packages through lintian --pedantic: every tag
# is a failure unless an override in debian/ justifies it.
CHECK_SUITES += tests/package/run
