# Tollgate. `make run` and `make test` work on a fresh machine: each installs
# what it needs first (make setup), idempotently.
SHELL := /bin/bash
PY := .venv/bin/python
WASM := target/wasm32-unknown-unknown/release/tollgate_filter.wasm

.PHONY: setup build build-wasm build-native test test-unit test-wasm bench-scale test-e2e test-matrix run bench lint fuzz oci clean

setup:
	@tests/tools/setup.sh

build: setup build-wasm build-native

build-wasm:
	@tests/tools/wasm-toolchain.sh build
	@tests/tools/wasm-toolchain.sh build-trap

build-native:
	cargo build --release -p tollgate-mock-provider -p tollgate-control

ENVOY_OLDEST := $(shell grep -v '^\#' tests/envoy-versions.txt | head -1)
ENVOY_NEWEST := $(shell grep -v '^\#' tests/envoy-versions.txt | tail -1)

# Everything, with the end-to-end suite on the oldest and the newest supported Envoy.
test: build lint test-unit
	ENVOY_VERSION=$(ENVOY_NEWEST) $(PY) -m pytest -q tests/e2e
	ENVOY_VERSION=$(ENVOY_OLDEST) $(PY) -m pytest -q tests/e2e

# Unit and property tests (the property tests run a bounded number of cases here; see `make fuzz`).
test-unit:
	cargo test --workspace
	@tests/tools/wasm-toolchain.sh test-wasm

# The filter's and the protocol's unit tests compiled to wasm32 and run in wasmtime.
test-wasm:
	@tests/tools/wasm-toolchain.sh test-wasm

# One Envoy: ENVOY_VERSION=1.36.4 make test-e2e (default: the newest).
test-e2e:
	ENVOY_VERSION=$${ENVOY_VERSION:-$(ENVOY_NEWEST)} $(PY) -m pytest -q tests/e2e

# The end-to-end suite on every supported Envoy (tests/envoy-versions.txt).
test-matrix: build
	@set -e; for v in $$(grep -v '^#' tests/envoy-versions.txt); do \
	  echo "== Envoy $$v"; ENVOY_VERSION=$$v $(PY) -m pytest -q tests/e2e; done

run: build
	@$(PY) tests/tools/stack.py run

bench: build
	@tests/tools/wasm-toolchain.sh build-probe
	@tests/tools/setup.sh bench
	@$(PY) tests/bench/bench.py

# Keys at scale (SCALE_KEYS, default 1,000,000): bulk import, key sync,
# per-VM memory, req/s against 3 keys, key changes, state polls; per-key
# budgets (SCALE_BUDGETS, default a budget on every key): deltas, pages,
# polls, req/s. SCALE_DB=postgres: the keys and budgets in PostgreSQL.
bench-scale: build
	@tests/tools/setup.sh bench
	@$(PY) tests/bench/scale.py

# Clippy on the host, including the proxy-wasm glue (--features glue-lint
# compiles it on the host: Debian's wasm32 toolchain has no clippy), and a
# wasm32 type-check of the filter on its real target (32-bit usize).
lint:
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy -p tollgate-filter --lib --features glue-lint -- -D warnings
	@tests/tools/wasm-toolchain.sh check-wasm32

# The property tests with many more cases (200,000 per property: about half a
# minute), then the captured traffic made hostile (200,000 cases, a few minutes:
# the dev profile, where an arithmetic overflow panics).
fuzz:
	PROPTEST_CASES=$${PROPTEST_CASES:-200000} cargo test --release -p tollgate-filter --test properties
	PROPTEST_CASES=$${PROPTEST_CASES:-200000} cargo test -p tollgate-filter --test mutated_captures

# The filter as an OCI image (target/oci/), for Istio and registries; prints its sha256.
oci: build-wasm
	@$(PY) tests/tools/oci.py

clean:
	cargo clean
	rm -rf .tollgate .envoy
