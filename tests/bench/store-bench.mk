# Benchmark of the records store (pulse commits per second, arming latency).
BENCHES += $(B)/tests/bench/bench_store

$(B)/tests/bench/bench_store: $(B)/tests/bench/bench_store.o $(STORE_LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(STORE_LIBS)
