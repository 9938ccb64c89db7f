# tests/vm: the timing helper of the daemon guest tests (tests/vm/guest/4*-daemon*.sh):
# interlock -> PropertiesChanged latency, SIGKILL -> STANDBY time.
DAEMON_PROBE := $(B)/tests/vm/smplaser-daemon-probe
VM_BINS += $(DAEMON_PROBE)

$(DAEMON_PROBE): $(B)/tests/vm/daemon-probe.o
	$(CC) $(LDFLAGS) -o $@ $^ $(call pkglibs,libsystemd)
