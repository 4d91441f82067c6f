"""Runs a Rust test binary compiled to wasm32-wasip1 (the filter's unit
tests, `make test-wasm`) in wasmtime, a real WebAssembly engine: 32-bit
usize, wasm arithmetic and memory, as in Envoy's VM.

    wasm_tests.py <tests.wasm> [libtest arguments]

The proxy-wasm host functions the glue imports are not called by any unit
test; they are defined as traps, so a test that reached one would fail.
Exit status: the test binary's (0 = every test passed). A panicking test
aborts the module (wasm has no unwinding): that is a non-zero exit too.
"""
import sys

import wasmtime


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    path = sys.argv[1]
    engine = wasmtime.Engine()
    module = wasmtime.Module.from_file(engine, path)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    linker.define_unknown_imports_as_traps(module)
    store = wasmtime.Store(engine)
    wasi = wasmtime.WasiConfig()
    # libtest cannot spawn threads on wasi: one at a time.
    wasi.argv = [path, "--test-threads=1", *sys.argv[2:]]
    wasi.inherit_stdout()
    wasi.inherit_stderr()
    wasi.env = [("RUST_BACKTRACE", "0")]
    store.set_wasi(wasi)
    instance = linker.instantiate(store, module)
    start = instance.exports(store)["_start"]
    try:
        start(store)
    except wasmtime.ExitTrap as e:
        return e.code
    except wasmtime.Trap as e:
        print(f"the test module trapped (a test panicked?): {e}", file=sys.stderr)
        return 101
    return 0


if __name__ == "__main__":
    sys.exit(main())
