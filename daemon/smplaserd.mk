# smplaserd: the daemon (sd-bus, sd-event), its backends and its D-Bus objects.
# Links the pure core (core.mk), the store (store.mk), the codec and the
# firmware model (the "sim" backend runs it in-process).

SMPLASERD := $(B)/smplaserd
# Everything but main.c: the dispatch fuzzer builds the daemon from these too.
SMPLASERD_LIB_SRCS := daemon/daemon.c daemon/unit.c daemon/supervisor.c daemon/lifecycle.c daemon/unit-ops.c \
	daemon/session.c daemon/session-endpoint.c daemon/creds.c daemon/worker.c \
	daemon/eligibility.c daemon/records.c daemon/spill.c \
	daemon/bus.c daemon/bus-manager.c daemon/bus-unit.c daemon/bus-session.c daemon/bus-records.c \
	daemon/bus-clinical.c \
	daemon/polkit.c daemon/errors.c daemon/log.c daemon/audit.c \
	daemon/backend.c daemon/backend-sim.c \
	daemon/store-ops.c daemon/store-pg.c daemon/store-pg-import.c daemon/pq-dlopen.c daemon/journal.c \
	daemon/records-read.c
SMPLASERD_SRCS := daemon/main.c $(SMPLASERD_LIB_SRCS)
SMPLASERD_OBJS := $(patsubst %.c,$(B)/%.o,$(SMPLASERD_SRCS)) $(BACKENDS_OBJS)

$(SMPLASERD): $(SMPLASERD_OBJS) $(CORE_LIB) $(STORE_LIB) $(MODEL_LIB) $(COMMON_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $(SMPLASERD_OBJS) $(CORE_LIB) $(STORE_LIB) $(MODEL_LIB) \
		$(COMMON_LIB) $(call pkglibs,libsystemd json-c $(CORE_PKGS)) -lpthread $(STORE_LIBS) $(COMMON_LDLIBS) \
		$(BACKENDS_LIBS)

PROGRAMS += $(SMPLASERD)

# The sim backend on a real sd-event loop (cmocka).
UNIT_TESTS += $(B)/tests/unit/test_backend_sim

$(B)/tests/unit/test_backend_sim: $(B)/tests/unit/test_backend_sim.o \
		$(B)/daemon/backend.o $(B)/daemon/backend-sim.o $(MODEL_LIB) $(COMMON_LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(call pkglibs,cmocka libsystemd) $(COMMON_LDLIBS)

# A unit adopted, published, removed as discovery removes it, freed (cmocka).
UNIT_TESTS += $(B)/tests/unit/test_unit_life
SMPLASERD_LIB_OBJS := $(patsubst %.c,$(B)/%.o,$(SMPLASERD_LIB_SRCS))

$(B)/tests/unit/test_unit_life: $(B)/tests/unit/test_unit_life.o $(SMPLASERD_LIB_OBJS) \
		$(CORE_LIB) $(STORE_LIB) $(MODEL_LIB) $(COMMON_LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(call pkglibs,cmocka libsystemd json-c $(CORE_PKGS)) \
		-lpthread $(STORE_LIBS) $(COMMON_LDLIBS)
