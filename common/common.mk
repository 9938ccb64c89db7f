# common/: the userspace codec of the unit's wire protocol.
#
# Link it with:   $(COMMON_LIB) $(COMMON_LDLIBS)
# The firmware model (sim/model.mk) is a library too; its name is set here,
# because this fragment is read first and other fragments may name it in
# their prerequisites:   $(MODEL_LIB) $(COMMON_LIB) $(COMMON_LDLIBS)

COMMON_LDLIBS := $(call pkglibs,zlib) -lm

COMMON_OBJS := $(B)/common/codec.o

$(COMMON_LIB): $(COMMON_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@
	$(AR) rcs $@ $^

all: $(COMMON_LIB)
