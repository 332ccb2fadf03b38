# A thin front for the scripts CI runs too. `make demo` runs the book tour; `make test` runs
# every test (installing and starting what they need).

CARGO ?= cargo
MPROC := target/release/mproc
REPEAT ?= 3

.PHONY: demo test bench compare lint clean build

build:
	$(CARGO) build --release --quiet -p mproc-cli

# The book tour, on built-in defaults: no Redis needed.
demo: build
	@echo "== The book's counters: 4 processes x 1000 increments, started together =="
	$(MPROC) counters --processes 4 --count 1000 --barrier
	@echo
	@echo "== Verifying primes with an early-exit flag in shared memory (the RawValue way) =="
	$(MPROC) verify-primes --processes 2 --repeat 3
	@echo
	@echo "== Pool overhead: 100,000 trivial tasks =="
	$(MPROC) bench pool --processes 2 --repeat 3
	@echo
	@echo "== Monte Carlo pi: processes scale (and --no-reseed shows the book's trap) =="
	$(MPROC) pi --samples 1e8 --workers 1,2 --kernel batched
	$(MPROC) pi --samples 1e7 --mode processes --workers 2 --kernel batched --no-reseed
	@echo
	@echo "== Finding primes with a Pool: time per chunk size =="
	$(MPROC) primes --range book --repeat 1

test:
	bash scripts/test.sh

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
