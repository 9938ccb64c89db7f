# sim/gadget.mk: smplaser-gadget, the firmware model behind FunctionFS
# (used by the VM tests, tests/vm/README.md).

GADGET := $(B)/smplaser-gadget
GADGET_OBJS := $(B)/sim/gadget.o $(B)/sim/gadget-usb.o $(B)/sim/gadget-ctl.o

# The gadget needs the model (sim/model.mk); until it exists, leave the
# gadget out rather than break "make" for everyone.
ifneq ($(wildcard sim/model.c),)
PROGRAMS += $(GADGET)
VM_BINS += $(GADGET)
endif

# Static unless sanitizing: the VM guest runs it (and its --ctl client) many
# times, and under TCG the dynamic loader's work is most of a start-up.
ifeq ($(SANITIZE),1)
GADGET_STATIC :=
else
GADGET_STATIC := -static
endif

$(GADGET): $(GADGET_OBJS) $(MODEL_LIB) $(COMMON_LIB)
	$(CC) $(LDFLAGS) $(GADGET_STATIC) -o $@ $(GADGET_OBJS) $(MODEL_LIB) $(COMMON_LIB) \
		$(COMMON_LDLIBS) -pthread

# The control commands and the nv file, on a real model (cmocka).
GADGET_TEST := $(B)/sim/gadget-test
ifneq ($(wildcard sim/model.c),)
UNIT_TESTS += $(GADGET_TEST)
endif

$(GADGET_TEST): $(B)/sim/gadget-test.o $(B)/sim/gadget-ctl.o $(MODEL_LIB) $(COMMON_LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(call pkglibs,cmocka) $(COMMON_LDLIBS) -pthread
