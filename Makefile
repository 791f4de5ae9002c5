# nsguard's commands. `make run` and `make test` do all the set-up on a fresh machine.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

CONTROLPLANE := tests/controlplane/build.sh
HELM := tests/helm/build.sh
# The end-to-end tests start real etcd, kube-apiserver and kube-controller-manager beside
# them: two test threads keep a 2-core machine responsive.
TEST_THREADS ?= 2
# Decisions per measurement in `make bench`.
BENCH_DECISIONS ?= 200
# Objects at each step of `make bench-scale`.
SCALE_STEPS ?= 250000,500000,1000000
# Namespaces per deletion storm in `make faults`.
FAULTS_NAMESPACES ?= 200
# Generated and mutated AdmissionReviews in `make fuzz` (`make test` runs 2000).
CASES ?= 100000

# Release archives, the chart's package, checksums and the krew manifest.
DIST := target/dist

.PHONY: controlplane helm build test unit e2e lint run cluster bench bench-scale faults fuzz dist chart-package chart-readme actionlint promtool

## controlplane: build (or find in the cache) kube-apiserver, kube-controller-manager, kubectl, etcd
controlplane:
	@bash $(CONTROLPLANE)

## helm: build (or find in the cache) helm, for the chart's tests; prints its path
helm:
	@bash $(HELM)

build:
	cargo build --workspace --all-targets

# The integration tests that need no control plane (`make unit` runs them; `make e2e` the rest).
UNIT_TESTS := router fuzz packaging observability
E2E_TESTS := $(filter-out $(UNIT_TESTS),$(basename $(notdir $(wildcard tests/*.rs))))

## test: every test: `make unit`, then `make e2e`
test: unit e2e

## unit: the tests that need no control plane (seconds once built): every library's unit tests, the router, a short fuzz run, packaging, observability
unit:
	cargo test --workspace --lib --bins $(addprefix --test ,$(UNIT_TESTS)) -- --test-threads=$(TEST_THREADS)

## e2e: the end-to-end tests on the real control plane (builds it first); one file: `make e2e E2E_TESTS=e2e_cli`
e2e:
	dir=$$(bash $(CONTROLPLANE) | tail -n 1); \
	NSGUARD_CONTROLPLANE_DIR=$$dir cargo test -p nsguard $(addprefix --test ,$(E2E_TESTS)) -- --test-threads=$(TEST_THREADS)

## lint: formatting, clippy (warnings are errors) and no unused direct dependency (cargo-machete)
lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	command -v cargo-machete >/dev/null || cargo install --locked --quiet cargo-machete@0.9.2
	cargo machete

## fuzz: CASES generated and mutated AdmissionReviews through the webhook router, in release mode; prints `fuzz: N cases, 0 panics`
fuzz:
	NSGUARD_FUZZ_CASES=$(CASES) cargo test --release --test fuzz -- --nocapture

## run: a local control plane with nsguard in enforce mode and a demo; prints the commands to try (Ctrl-C stops everything)
run:
	dir=$$(bash $(CONTROLPLANE) | tail -n 1); \
	cargo build -q --workspace --bins; \
	NSGUARD_CONTROLPLANE_DIR=$$dir target/debug/localcluster demo target/debug/nsguard

## cluster: only the local control plane (Ctrl-C stops it)
cluster:
	dir=$$(bash $(CONTROLPLANE) | tail -n 1); \
	NSGUARD_CONTROLPLANE_DIR=$$dir cargo run -q -p localcluster

## bench: preflight latency, API cost and a deletion storm on the local control plane (not a test); writes docs/benchmarks.md
bench:
	dir=$$(bash $(CONTROLPLANE) | tail -n 1); \
	cargo build -q --release --workspace --bins; \
	NSGUARD_CONTROLPLANE_DIR=$$dir NSGUARD_BENCH_DATE=$$(date -u +%F) \
	  target/release/nsguard-bench target/release/nsguard docs/benchmarks.md $(BENCH_DECISIONS)

## bench-scale: only the scale report, at SCALE_STEPS objects (default 250,000, 500,000 and 1,000,000; an hour or more, and much of the machine's memory); writes docs/benchmarks-scale.md and .json
bench-scale:
	dir=$$(bash $(CONTROLPLANE) | tail -n 1); \
	cargo build -q --release --workspace --bins; \
	NSGUARD_CONTROLPLANE_DIR=$$dir NSGUARD_BENCH_DATE=$$(date -u +%F) NSGUARD_BENCH_ONLY_SCALE=1 \
	  NSGUARD_BENCH_SCALE_STEPS=$(SCALE_STEPS) \
	  target/release/nsguard-bench target/release/nsguard docs/benchmarks-scale.md $(BENCH_DECISIONS)
