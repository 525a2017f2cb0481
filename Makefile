# Baton: the two commands of the quick start are `make demo` and `make test`.
# Each installs what it needs (scripts/install-deps.sh) before it runs.

CARGO        ?= cargo
# Every packet I/O backend: DPDK (system libdpdk) and AF_XDP (its XDP program
# is compiled by clang). `FEATURES=` builds AF_PACKET alone.
FEATURES     ?= --features dpdk,af_xdp
NEXTEST_ARGS ?=
# Test builds add the test-only code (`baton` honours BATON_TEST_FAULTS; the
# test bed's dev-dependency asks for it too). The pre-build and the nextest
# run use this one set, so nothing is compiled twice; `make build` never has it.
TEST_FEATURES ?= $(FEATURES) --features controlplane/testing

.PHONY: all deps build test lint fmt demo bench harden fuzz fuzz-build deb clean

all: build

deps:
	@bash scripts/install-deps.sh

build: deps
	$(CARGO) build --workspace --release $(FEATURES)

## The whole suite: unit, property, scenario, namespace and end-to-end tests,
## over every packet I/O backend (AF_PACKET, DPDK, AF_XDP with its fast path on
## and off), plus a build of every fuzz target.
test: deps
	$(CARGO) build --workspace --release $(TEST_FEATURES) --lib --bins --examples
	$(CARGO) nextest run --workspace --release $(TEST_FEATURES) --no-fail-fast $(NEXTEST_ARGS)
	$(MAKE) --no-print-directory fuzz-build

## Formatting, clippy with warnings denied, and no import circles between
## the modules of a crate (docs/architecture.md).
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets $(FEATURES) -- -D warnings
	python3 scripts/import-cycles.py handoff-proto dataplane controlplane agent mgmt-http perf/testbed testkit packaging

fmt:
	$(CARGO) fmt --all

## Builds Baton, brings the namespace test bed up (clients, switch, three
## backends), drives bounded curl and wrk traffic, prints a summary and writes
## target/demo/summary.json; removes everything on exit. DEMO_ARGS=--help.
demo: deps
	$(CARGO) build --release $(FEATURES) -p controlplane -p agent -p testbed --bins --examples
	"$${CARGO_TARGET_DIR:-target}/release/baton-demo" $(DEMO_ARGS)

## Baton (AF_PACKET, DPDK, AF_XDP) against nginx, HAProxy and direct access, one
## run: perf/results/*.json, an SVG chart, the table in docs/performance.md.
## BENCH_ARGS=--quick for a smoke run.
bench: deps
	$(CARGO) build --release $(FEATURES) -p controlplane -p agent -p testbed --bins --examples
	micro=""; case "$(BENCH_ARGS)" in *--quick*) ;; \
	  *) micro=$$(bash perf/micro.sh $(FEATURES) | sed 's/^/--micro /') ;; esac; \
	"$${CARGO_TARGET_DIR:-target}/release/baton-bench" $$micro $(BENCH_ARGS)

## Attacks on the namespace test bed at full size (SYN flood, slowloris,
## duplicate ACKs, blind RST/FIN, forged and replayed THOP, admin abuse,
## restarts under load) beside legitimate traffic, over every I/O backend:
## perf/results/harden-<timestamp>.json, the table in docs/security.md.
## HARDEN_ARGS=--quick checks the plumbing (short counts, docs untouched).
harden: deps
	$(CARGO) build --release $(FEATURES) -p controlplane -p agent -p testbed --bins --examples
	"$${CARGO_TARGET_DIR:-target}/release/baton-harden" $(HARDEN_ARGS)

## Debian packages of the switch and the agent:
## target/debian/baton_<version>_<arch>.deb and baton-agent_<version>_<arch>.deb,
## from a release build without test-only code (FEATURES picks the packet I/O
## backends), man pages from the command-line definitions, Depends from the
## libraries the binaries link; docs/deployment.md. DEB_ARGS=--help.
deb: deps
	$(CARGO) run --release -p baton-packaging $(FEATURES) -- $(DEB_ARGS)

fuzz-build:
	@# cargo-fuzz passes nightly-only flags (-Z sanitizer=address, sancov);
	@# RUSTC_BOOTSTRAP=1 lets the stable toolchain accept them (docs/decisions.md).
	@command -v cargo-fuzz >/dev/null || $(CARGO) install --locked cargo-fuzz
	cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz build

fuzz: fuzz-build
	@# Every target, one after the other, for FUZZ_SECONDS each (default 60), in
	@# one process; FUZZ_ARGS adds libFuzzer flags. New inputs go to
	@# fuzz/target/corpus, the committed seeds in fuzz/corpus are only read;
	@# docs/fuzzing.md lists the targets and the long runs.
	cd fuzz && for t in $$(RUSTC_BOOTSTRAP=1 $(CARGO) fuzz list); do \
	  mkdir -p target/corpus/$$t && \
	  RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run $$t target/corpus/$$t corpus/$$t -- \
	    -max_total_time=$${FUZZ_SECONDS:-60} -print_final_stats=1 $(FUZZ_ARGS) || exit 1; \
	done

clean:
	$(CARGO) clean
