# ctl/: smplaserctl, the technician's command-line tool; its man pages (and
# smplaserd's), bash completion, its tests (tests/ctl) and "make demo".

CTL_SRCS := ctl/main.c ctl/bus.c ctl/out.c ctl/verbs.c ctl/watch.c ctl/sim.c \
	ctl/map.c ctl/keeper.c ctl/records.c ctl/clinical.c ctl/course.c ctl/draw.c ctl/fhir.c
CTL_OBJS = $(patsubst %.c,$(B)/%.o,$(CTL_SRCS))

PROGRAMS += $(B)/smplaserctl

# records verify checks copies with the store's own code (daemon/store-chain.h);
# the map and the patient's report are drawn with cairo (ctl/draw.c; cairo and
# fontconfig are in the Makefile's PKGS).
$(B)/smplaserctl: $(patsubst %.c,$(B)/%.o,$(CTL_SRCS)) $(STORE_LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(call pkglibs,libsystemd json-c cairo fontconfig) $(STORE_LIBS) -lm

CHECK_SUITES += tests/ctl/docs tests/ctl/verbs tests/ctl/demo

# A narrated treatment on a simulated unit (scripts/demo.sh).
demo: deps all
	@scripts/demo.sh
