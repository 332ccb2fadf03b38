# A thin front for the scripts CI runs too. `make demo` runs the book tour; `make test` runs
# every test (installing and starting what they need).

CARGO ?= cargo
MPROC := target/release/mproc

.PHONY: demo test bench compare lint clean build

build:
	$(CARGO) build --release --quiet

demo: build
	@echo "== The book's counters: 4 processes x 1000 increments, started together =="
	$(MPROC) counters --processes 4 --count 1000 --barrier

test:
	bash scripts/test.sh

bench:
	$(CARGO) bench --bench locks --bench pool

compare: build
	python3 scripts/compare.py --mproc $(MPROC) --processes 2

lint:
	bash scripts/lint.sh

clean:
	-$(MPROC) shm clean 2>/dev/null
	$(CARGO) clean
