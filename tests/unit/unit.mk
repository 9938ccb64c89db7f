# tests/unit: cmocka tests of the codec and the firmware model.

UNIT_TESTS += $(B)/tests/unit/test_codec

$(B)/tests/unit/test_codec: $(B)/tests/unit/test_codec.o $(COMMON_LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(call pkglibs,cmocka) $(COMMON_LDLIBS)

UNIT_TESTS += $(B)/tests/unit/test_model

$(B)/tests/unit/test_model: $(B)/tests/unit/test_model.o $(MODEL_LIB) $(COMMON_LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(call pkglibs,cmocka) $(COMMON_LDLIBS)
