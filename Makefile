# A thin front for the scripts CI runs too. `make demo` runs the book tour; `make test` runs
# every test (installing and starting what they need).

CARGO ?= cargo
MPROC := target/release/mproc
REPEAT ?= 3

.PHONY: demo test bench compare lint clean build inproc docsrs package

build:
	$(CARGO) build --release --quiet -p mproc-cli

# The book tour, on built-in defaults: no Redis needed.
demo: build
	$(MPROC) book --quick
	@echo
	@echo "== Pool overhead: 100,000 trivial tasks =="
	$(MPROC) bench pool --processes 2 --repeat 3

test:
	bash scripts/test.sh

# The protocols tested in one process, with threads and real contention, no fork: the ring's
# halves and wake-ups, Event, Semaphore, Barrier, lock statistics, the wire codecs.
inproc:
	$(CARGO) test -p mproc --lib
	$(CARGO) test -p mproc --test protocols

# The library's docs as docs.rs builds them (all features, --cfg docsrs feature badges; the badges
# need a nightly rustdoc feature, which RUSTC_BOOTSTRAP unlocks on stable for this check only).
docsrs:
	RUSTC_BOOTSTRAP=1 RUSTDOCFLAGS="-D warnings --cfg docsrs" $(CARGO) doc -p mproc --all-features --no-deps --target-dir target/docsrs

# The library as it would be published (its own target dir: the packaged copy has the same
# package id, and sharing target/ would leave stale fingerprints behind).
package:
	$(CARGO) package -p mproc --allow-dirty --target-dir target/package-check

bench:
	$(CARGO) bench --bench locks --bench pool

# BASELINE=path/to/an/older/mproc adds its figures beside today's, measured in the same run.
# QUICK=1: smaller sizes, about two minutes.
compare: build
	bash scripts/compare.sh --processes 2 --repeat $(REPEAT) $(if $(BASELINE),--baseline $(BASELINE)) $(if $(QUICK),--quick)

lint:
	bash scripts/lint.sh

clean:
	-$(MPROC) shm clean 2>/dev/null
	$(CARGO) clean

# Fault injection against the release CLI (kills, stop/continue, SIGINT to the group, resource
# limits, several instances at once); not part of `make test`. CHAOS_SECONDS bounds it.
CHAOS_SECONDS ?= 240
.PHONY: chaos
chaos: build
	bash scripts/chaos.sh --seconds $(CHAOS_SECONDS)

# The cluster across network namespaces (root): a whole worker host killed at a random moment,
# NETNS_RUNS times; every result exactly once each time, redelivery time reported.
NETNS_RUNS ?= 20
.PHONY: cluster-netns
cluster-netns:
	REPORT=$$(mktemp) bash scripts/cluster_netns.sh --runs $(NETNS_RUNS)

# The cluster's throughput and latency on loopback (1 and 2 worker hosts, batched and not, the
# local Pool beside them, verify-primes on 2 hosts) and Dask distributed's in the same run.
.PHONY: bench-cluster
bench-cluster:
	bash scripts/bench_cluster.sh --repeat $(REPEAT) $(if $(QUICK),--quick)
