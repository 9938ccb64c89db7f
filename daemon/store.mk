# smplaserd's records store (daemon/store.h): a static library the daemon and
# the tests link.  Link users add $(STORE_LIBS) after $(STORE_LIB).
STORE_LIBS = $(call pkglibs,sqlite3)
STORE_OBJS := $(B)/daemon/store.o $(B)/daemon/store-clinical.o

$(STORE_LIB): $(STORE_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@
	$(AR) rcs $@ $^
