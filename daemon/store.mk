# smplaserd's records store (daemon/store.h): a static library the daemon and
# the tests link.  Link users add $(STORE_LIBS) after $(STORE_LIB).
STORE_LIBS = $(call pkglibs,sqlite3 libgcrypt)
STORE_SRCS := daemon/store.c daemon/store-open.c daemon/store-records.c daemon/store-chain.c \
	daemon/store-restore.c daemon/store-copy.c \
	daemon/store-clinical.c
STORE_OBJS := $(patsubst %.c,$(B)/%.o,$(STORE_SRCS))

$(STORE_LIB): $(STORE_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@
	$(AR) rcs $@ $^
