# Unit test of smplaserd's journal fields and catalog (daemon/log.c).
UNIT_TESTS += $(B)/tests/unit/test_log

$(B)/tests/unit/test_log: $(B)/tests/unit/test_log.o $(B)/daemon/log.o $(B)/daemon/text.o
	$(CC) $(LDFLAGS) -o $@ $^ $(call pkglibs,cmocka libsystemd)
