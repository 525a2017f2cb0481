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

## Builds Baton, brings the namespace test bed up (clients, switch, three
## backends), drives bounded curl and wrk traffic, prints a summary and writes
## target/demo/summary.json; removes everything on exit. DEMO_ARGS=--help.
demo: deps
	$(CARGO) build --release $(FEATURES) -p controlplane -p agent -p testbed --bins --examples
	"$${CARGO_TARGET_DIR:-target}/release/baton-demo" $(DEMO_ARGS)

## Baton (AF_PACKET and DPDK) against nginx, HAProxy and direct access, one
## run: perf/results/*.json, an SVG chart, the table in docs/performance.md.
## BENCH_ARGS=--quick for a smoke run.
bench: deps
	$(CARGO) build --release $(FEATURES) -p controlplane -p agent -p testbed --bins --examples
	"$${CARGO_TARGET_DIR:-target}/release/baton-bench" $(BENCH_ARGS)

fuzz-build:
	@echo "fuzz targets arrive with handoff-proto"

fuzz:
	@echo "fuzz targets arrive with handoff-proto"

clean:
	$(CARGO) clean
