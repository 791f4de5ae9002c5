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

.PHONY: controlplane helm build test unit e2e lint run cluster bench bench-figures bench-scale faults fuzz dist chart-package chart-readme actionlint promtool

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

## bench: preflight latency, API cost and a deletion storm on the local control plane (not a test); writes docs/benchmarks.md and its figures, docs/benchmarks/*.svg
bench:
	dir=$$(bash $(CONTROLPLANE) | tail -n 1); \
	cargo build -q --release --workspace --bins; \
	NSGUARD_CONTROLPLANE_DIR=$$dir NSGUARD_BENCH_DATE=$$(date -u +%F) \
	  target/release/nsguard-bench target/release/nsguard docs/benchmarks.md $(BENCH_DECISIONS)

## bench-figures: redraw docs/benchmarks/*.svg from the last run's target/bench/summary.json (no run)
bench-figures:
	cargo run -q -p nsguard-bench --bin nsguard-bench -- --figures target/bench/summary.json docs/benchmarks/

## bench-scale: only the scale report, at SCALE_STEPS objects (default 250,000, 500,000 and 1,000,000; an hour or more, and much of the machine's memory); writes docs/benchmarks-scale.md and .json
bench-scale:
	dir=$$(bash $(CONTROLPLANE) | tail -n 1); \
	cargo build -q --release --workspace --bins; \
	NSGUARD_CONTROLPLANE_DIR=$$dir NSGUARD_BENCH_DATE=$$(date -u +%F) NSGUARD_BENCH_ONLY_SCALE=1 \
	  NSGUARD_BENCH_SCALE_STEPS=$(SCALE_STEPS) \
	  target/release/nsguard-bench target/release/nsguard docs/benchmarks-scale.md $(BENCH_DECISIONS)

## faults: nsguard killed, then kube-apiserver restarted, in the middle of a deletion storm on the local control plane (not a test); writes the figures into docs/reliability.md
faults:
	dir=$$(bash $(CONTROLPLANE) | tail -n 1); \
	cargo build -q --release -p nsguard -p nsguard-bench --bin nsguard --bin nsguard-faults; \
	NSGUARD_CONTROLPLANE_DIR=$$dir NSGUARD_FAULTS_DATE=$$(date -u +%F) \
	  target/release/nsguard-faults target/release/nsguard docs/reliability.md $(FAULTS_NAMESPACES)


## dist: this machine's static Linux release archive (musl: runs on any Linux, RHEL 8 and Amazon Linux 2 included) into target/dist/ with SHA256SUMS and the krew manifest generated from them; installs the musl target and musl-tools if missing and checks the binary is static (the release workflow builds the other platforms)
dist:
	arch=$$(uname -m | sed 's/arm64/aarch64/'); target=$$arch-unknown-linux-musl; \
	bin=$${CARGO_TARGET_DIR:-target}/$$target/release/nsguard; \
	bash deploy/release/static.sh $$target; \
	cargo build --release --locked --bin nsguard --target $$target; \
	version=$$(sed -n 's/^version = "\(.*\)"$$/\1/p' Cargo.toml | head -n 1); \
	bash deploy/release/check-static.sh $$bin $$version; \
	bash deploy/release/dist.sh $$target $$bin $(DIST); \
	bash deploy/krew/generate.sh $$version $(DIST)/SHA256SUMS > $(DIST)/nsguard.krew.yaml
	cat $(DIST)/SHA256SUMS

## chart-package: the chart's archive (nsguard-CHARTVERSION.tgz) into target/dist/, and SHA256SUMS
chart-package:
	helm=$$(bash $(HELM) | tail -n 1); \
	$$helm lint --strict charts/nsguard; \
	$$helm package charts/nsguard -d $(DIST)
	bash deploy/release/checksums.sh $(DIST)
	cat $(DIST)/SHA256SUMS

## chart-readme: regenerate the values table of charts/nsguard/README.md from values.yaml's comments
chart-readme:
	NSGUARD_BLESS=1 cargo test -q --test packaging the_chart_readme_is_current

## actionlint: lint .github/workflows with actionlint (built from its Go module, cached)
actionlint:
	bin=$$(bash tests/actionlint/build.sh | tail -n 1); $$bin -color

## promtool: check the alert rules and run their unit tests with promtool (built from its Go module, cached)
promtool:
	bin=$$(bash tests/promtool/build.sh | tail -n 1); \
	cd deploy/prometheus && $$bin check rules nsguard-rules.yaml && $$bin test rules nsguard-rules.test.yaml
