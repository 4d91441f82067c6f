# Tollgate. `make run` and `make test` work on a fresh machine: each installs
# what it needs first (make setup), idempotently.
SHELL := /bin/bash
PY := .venv/bin/python
WASM := target/wasm32-unknown-unknown/release/tollgate_filter.wasm

.PHONY: setup build build-wasm build-native test test-unit test-e2e run bench lint clean

setup:
	@tests/tools/setup.sh

build: setup build-wasm build-native

build-wasm:
	@tests/tools/wasm-toolchain.sh build

build-native:
	cargo build --release -p tollgate-mock-provider -p tollgate-control

test: build test-unit test-e2e

test-unit:
	cargo test --workspace

test-e2e:
	$(PY) -m pytest -q tests/e2e

run: build
	@$(PY) tests/tools/stack.py run

bench: build
	@tests/tools/setup.sh bench
	@$(PY) tests/bench/bench.py

lint:
	cargo clippy --workspace --all-targets -- -D warnings

clean:
	cargo clean
	rm -rf .tollgate
