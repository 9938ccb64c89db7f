# smplaserd's pure core: safety state machine, rules, config, patches, the
# clinical record's words (clinical.c).
# The daemon links $(CORE_LIB) and $(call pkglibs,$(CORE_PKGS)).

CORE_SRCS := daemon/safety.c daemon/rules.c daemon/config.c daemon/patches.c \
	daemon/text.c daemon/clinical.c
CORE_OBJS = $(patsubst %.c,$(B)/%.o,$(CORE_SRCS))
CORE_PKGS := inih

$(B)/libsmplcore.a: $(patsubst %.c,$(B)/%.o,$(CORE_SRCS))
	@mkdir -p $(dir $@)
	rm -f $@
	$(AR) rcs $@ $^
