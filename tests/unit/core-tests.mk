# Unit tests of smplaserd's pure core (daemon/core.mk): safety, rules, config.

CORE_TEST_NAMES := test_safety test_rules test_config
UNIT_TESTS += $(patsubst %,$(B)/tests/unit/%,$(CORE_TEST_NAMES))

$(B)/tests/unit/test_safety: $(B)/tests/unit/test_safety.o $(CORE_LIB) $(COMMON_LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(call pkglibs,cmocka $(CORE_PKGS)) $(COMMON_LDLIBS)

$(B)/tests/unit/test_rules: $(B)/tests/unit/test_rules.o $(CORE_LIB) $(COMMON_LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(call pkglibs,cmocka $(CORE_PKGS)) $(COMMON_LDLIBS)

$(B)/tests/unit/test_config: $(B)/tests/unit/test_config.o $(CORE_LIB) $(COMMON_LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(call pkglibs,cmocka $(CORE_PKGS)) $(COMMON_LDLIBS)
