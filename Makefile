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
	$(MPROC) book --quick
	@echo
	@echo "== Pool overhead: 100,000 trivial tasks =="
	$(MPROC) bench pool --processes 2 --repeat 3

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
