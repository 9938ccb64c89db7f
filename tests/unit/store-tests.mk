# Unit tests of the records store (daemon/store.c).
UNIT_TESTS += $(B)/tests/unit/test_store

$(B)/tests/unit/test_store: $(B)/tests/unit/test_store.o $(STORE_LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(STORE_LIBS) $(call pkglibs,cmocka)
