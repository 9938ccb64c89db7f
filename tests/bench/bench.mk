# make bench (tests/bench/run-bench): one table of the store's and the
# daemon's figures (issue 12), on an empty database and on a clinic's ten
# years of records built once by gen_records (cached in build/bench/).
BENCH_PROGRAMS := $(B)/tests/bench/gen_records $(B)/tests/bench/bench_store \
	$(B)/tests/bench/bench_daemon $(B)/tests/bench/lib_floor
BENCHES += tests/bench/run-bench

tests/bench/run-bench: $(BENCH_PROGRAMS) $(SMPLASERD) build/tests/slow-fsync.so ;

$(B)/tests/bench/bench_store: $(B)/tests/bench/bench_store.o $(STORE_LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(STORE_LIBS) -lm -ldl

$(B)/tests/bench/gen_records: $(B)/tests/bench/gen_records.o $(STORE_LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(STORE_LIBS)

$(B)/tests/bench/bench_daemon: $(B)/tests/bench/bench_daemon.o
	$(CC) $(LDFLAGS) -o $@ $^ $(call pkglibs,libsystemd) -lm

# The libraries of $(SMPLASERD)'s link line, each mapped though unused.
$(B)/tests/bench/lib_floor: $(B)/tests/bench/lib_floor.o
	$(CC) $(LDFLAGS) -o $@ $^ -Wl,--no-as-needed $(call pkglibs,libsystemd json-c $(CORE_PKGS)) \
		-lpthread $(STORE_LIBS) $(COMMON_LDLIBS) $(BACKENDS_LIBS) -Wl,--as-needed
