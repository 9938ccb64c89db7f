# Unit tests of the records' hash chain, records older than the units, and
# backups and exports in steps (daemon/store-chain.c, store-restore.c,
# store-copy.c; issue 15.11-15.13).
UNIT_TESTS += $(B)/tests/unit/test_chain

$(B)/tests/unit/test_chain: $(B)/tests/unit/test_chain.o $(STORE_LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(STORE_LIBS) $(call pkglibs,cmocka) -lpthread
