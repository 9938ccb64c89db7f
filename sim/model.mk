# sim/: the unit's firmware model, a library (MODEL_LIB is named in
# common/common.mk so that fragments read before this one can use it).
# Link with:   $(MODEL_LIB) $(COMMON_LIB) $(COMMON_LDLIBS)

MODEL_OBJS := $(B)/sim/model.o

$(MODEL_LIB): $(MODEL_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@
	$(AR) rcs $@ $^

all: $(MODEL_LIB)
