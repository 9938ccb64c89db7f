# ctl/: smplaserctl, the technician's command-line tool; its man pages (and
# smplaserd's), bash completion, its tests (tests/ctl) and "make demo".

CTL_SRCS := ctl/main.c ctl/bus.c ctl/out.c ctl/verbs.c ctl/watch.c ctl/sim.c \
	ctl/map.c ctl/keeper.c ctl/clinical.c ctl/draw.c ctl/fhir.c
CTL_OBJS = $(patsubst %.c,$(B)/%.o,$(CTL_SRCS))

PROGRAMS += $(B)/smplaserctl

# The map and the patient's report are drawn with cairo (ctl/draw.c; cairo and
# fontconfig are in the Makefile's PKGS).
$(B)/smplaserctl: $(patsubst %.c,$(B)/%.o,$(CTL_SRCS))
	$(CC) $(LDFLAGS) -o $@ $^ $(call pkglibs,libsystemd json-c cairo fontconfig) -lm

CHECK_SUITES += tests/ctl/docs tests/ctl/verbs tests/ctl/demo

# A narrated treatment on a simulated unit (scripts/demo.sh).
demo: deps all
	@scripts/demo.sh
