# smplaserd's records store (daemon/store.h): a static library the daemon and
# the tests link.  Link users add $(STORE_LIBS) after $(STORE_LIB).
STORE_LIBS = $(call pkglibs,sqlite3 libcrypto)
STORE_OBJS := $(B)/daemon/store.o $(B)/daemon/store-chain.o $(B)/daemon/store-restore.o $(B)/daemon/store-copy.o

$(STORE_LIB): $(STORE_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@
	$(AR) rcs $@ $^
