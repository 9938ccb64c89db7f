# Benchmark of the clinic's records on PostgreSQL (issue 14): CheckPatch and
# Arm on 10,000,000 treatments, and ten workstations arming at once.
# tests/bench/run-bench-pg makes the data once (kept in build/bench-pg/, a
# PostgreSQL 15 cluster of its own; BENCH_PG_TREATMENTS=N for another size)
# and runs bench_pg on it.
BENCH_PG := $(B)/tests/bench/bench_pg
BENCHES += tests/bench/run-bench-pg
bench: $(BENCH_PG)

$(BENCH_PG): $(B)/tests/bench/bench_pg.o $(B)/daemon/store-pg.o $(B)/daemon/pq-dlopen.o $(B)/daemon/journal.o \
		$(STORE_LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(STORE_LIBS) $(call pkglibs,libpq json-c) -lpthread
