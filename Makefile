# Baton: the two commands of the quick start are `make demo` and `make test`.
# Each installs what it needs (scripts/install-deps.sh) before it runs.

CARGO        ?= cargo
FEATURES     ?= --features dpdk
NEXTEST_ARGS ?=

.PHONY: all deps build test lint fmt demo bench fuzz fuzz-build clean

all: build

deps:
	@bash scripts/install-deps.sh

build: deps
	$(CARGO) build --workspace --release $(FEATURES)

## The whole suite: unit, property, scenario, namespace and end-to-end tests,
## over both packet I/O backends, plus a build of every fuzz target.
test: deps
	$(CARGO) build --workspace --release $(FEATURES) --bins --examples
	$(CARGO) nextest run --workspace --release $(FEATURES) --no-fail-fast $(NEXTEST_ARGS)
	$(MAKE) --no-print-directory fuzz-build

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets $(FEATURES) -- -D warnings

fmt:
	$(CARGO) fmt --all

demo: deps
	@echo "make demo arrives with the end-to-end test bed"

bench: deps
	@echo "make bench arrives with the benchmark harness"

fuzz-build:
	@echo "fuzz targets arrive with handoff-proto"

fuzz:
	@echo "fuzz targets arrive with handoff-proto"

clean:
	$(CARGO) clean
