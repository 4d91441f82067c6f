#!/usr/bin/env bash
# Which way this machine builds wasm32, and the build itself.
#   wasm-toolchain.sh detect   prints rustup | debian | none
#   wasm-toolchain.sh build    builds filter/ to target/wasm32-unknown-unknown/release/tollgate_filter.wasm
#   wasm-toolchain.sh build-probe the bench's probe filter (tests/bench/probe), to
#                              target/wasm32-unknown-unknown/release/tollgate_bench_probe.wasm
#   wasm-toolchain.sh test-wasm   the filter's and the protocol's unit tests on wasm32-wasip1, in wasmtime
#   wasm-toolchain.sh build-trap  the test-only build that traps on request (feature test-trap),
#                              to target/trap/wasm32-unknown-unknown/release/tollgate_filter.wasm
# rustup: `rustup target add wasm32-unknown-unknown` was done; plain cargo works.
# debian: Debian's rustc-web (rustc 1.9x with its std sources in rust-web-src)
#         builds std itself (-Zbuild-std) and links with lld-22's wasm-ld.
set -euo pipefail
cd "$(dirname "$0")/../.."

detect() {
  if command -v rustup >/dev/null 2>&1 && rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
    echo rustup; return
  fi
  if [ -x /usr/bin/rustc ] && [ -x /usr/bin/cargo ] && [ -x /usr/lib/llvm-22/bin/wasm-ld ] \
     && [ -d /usr/lib/rustlib/src/rust/library ]; then
    echo debian; return
  fi
  echo none
}

# cargo check (no clippy: Debian's rustc-web ships none) of the filter for wasm32,
# where usize is 32 bits: the lint step's type-check on the real target.
check() {
  case "$(detect)" in
    rustup) cargo check --release --target wasm32-unknown-unknown -p tollgate-filter ;;
    debian)
      RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 \
        /usr/bin/cargo check --release --target wasm32-unknown-unknown \
        -Zbuild-std=std,panic_abort -p tollgate-filter ;;
    *) echo "no wasm32 toolchain: run 'make setup'" >&2; exit 1 ;;
  esac
}

build() {
  case "$(detect)" in
    rustup) cargo build --release --target wasm32-unknown-unknown "$@" ;;
    debian)
      RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 \
      CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=/usr/lib/llvm-22/bin/wasm-ld \
        /usr/bin/cargo build --release --target wasm32-unknown-unknown \
        -Zbuild-std=std,panic_abort "$@" ;;
    *) echo "no wasm32 toolchain: run 'make setup'" >&2; exit 1 ;;
  esac
}

# The unit tests of the filter and of the wire protocol, compiled to
# wasm32-wasip1 and run in wasmtime (tests/tools/wasm_tests.py): 32-bit
# usize and wasm semantics, as in Envoy's VM. Debug profile: the release
# profile's panic=abort cannot build a test harness with -Zbuild-std.
# Debian's wasi-libc (2022) predates the pthread symbols today's std links
# (wasi-undefined.txt): they stay imports, which the runner defines as
# traps; no unit test starts a thread.
test_wasm() {
  local out
  case "$(detect)" in
    rustup) out=$(cargo test --no-run --target wasm32-wasip1 --target-dir target/wasi \
                  -p tollgate-filter -p tollgate-protocol --lib --message-format=json) ;;
    debian)
      out=$(RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 \
        CARGO_TARGET_WASM32_WASIP1_LINKER=/usr/lib/llvm-22/bin/wasm-ld \
        CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS="-C link-self-contained=no -C link-arg=-L/usr/lib/wasm32-wasi -C link-arg=/usr/lib/wasm32-wasi/crt1-command.o -C link-arg=-lc -C link-arg=--allow-undefined-file=tests/tools/wasi-undefined.txt" \
        /usr/bin/cargo test --no-run --target wasm32-wasip1 --target-dir target/wasi \
        -Zbuild-std=std,panic_abort,panic_unwind,test \
        -p tollgate-filter -p tollgate-protocol --lib --message-format=json) ;;
    *) echo "no wasm32 toolchain: run 'make setup'" >&2; exit 1 ;;
  esac
  local bins
  bins=$(printf '%s\n' "$out" | .venv/bin/python -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        print(m["executable"])')
  [ -n "$bins" ] || { echo "test-wasm: no test binary was built" >&2; exit 1; }
  for b in $bins; do
    echo "== $b (wasm32-wasip1, wasmtime)"
    .venv/bin/python tests/tools/wasm_tests.py "$b"
  done
}

case "${1:-}" in
  detect) detect ;;
  build) build -p tollgate-filter ;;
  build-trap) build -p tollgate-filter --features test-trap --target-dir target/trap ;;
  build-probe) build -p tollgate-bench-probe ;;
  check-wasm32) check ;;
  test-wasm) test_wasm ;;
  *) echo "usage: $0 detect|build|build-trap|build-probe|check-wasm32|test-wasm" >&2; exit 2 ;;
esac
