"""A/B of two filter builds over many budgeted keys: this tree's build and
another (a .wasm built from another commit), side by side in one run,
paired on one core (`scale.paired_ratio`), over AB_KEYS keys (default
30,000) with a budget each, requests on 10,000 of them at random, both
Envoys on one control service. Single `make bench-scale` runs vary by
about 3 points; this measures a change of one.

    git worktree add /tmp/before <commit> && (cd /tmp/before && tests/tools/wasm-toolchain.sh build)
    .venv/bin/python tests/bench/ab.py /tmp/before/target/wasm32-unknown-unknown/release/tollgate_filter.wasm

Prints "new/old" (this tree's req/s over the other's) for AB_ROUNDS runs
(default 4), the order swapped every other run.
"""
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import stack as sm  # noqa: E402
import scale  # noqa: E402

OLD = sys.argv[1]
N = int(os.environ.get("AB_KEYS", "30000"))

def swap(o, old, new):
    """`o` with every value equal to `old` replaced by `new` (the wasm path, in the filter and the service)."""
    if isinstance(o, dict):
        return {k: swap(v, old, new) for k, v in o.items()}
    if isinstance(o, list):
        return [swap(v, old, new) for v in o]
    return new if o == old else o

def gw(work, mock, ctl, name, wasm):
    cfg = sm.demo_config(sm.free_port(), sm.free_port(), mock.port, access_log="/dev/null", control_port=ctl.port,
                         plugin_patch=lambda c: c.update(log_records=False))
    cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"].pop("access_log")
    cfg = swap(cfg, str(sm.WASM), wasm)
    e = sm.Envoy(cfg, work, concurrency=2, name=name)
    e.wait_keys_loaded()
    return e

work = Path(tempfile.mkdtemp(prefix="tollgate-ab-"))
mock = sm.Mock(log_path=work / "mock.log")
ctl = sm.Control(work, db=work / "ab.db", name="control")
new = old = None
try:
    new, old = gw(work, mock, ctl, "new", str(sm.WASM)), gw(work, mock, ctl, "old", OLD)
    scale.base_keys(ctl)
    src = work / "keys.jsonl"
    with src.open("w") as f:
        for i in range(N):
            f.write(json.dumps({"id": f"s{i}", "team": f"base{i % 3}", "project": "p", "key": scale.key_of(i)}) + "\n")
    env = {**os.environ, "TOLLGATE_URL": ctl.url, "TOLLGATE_ADMIN_TOKEN": sm.ADMIN_TOKEN}
    subprocess.run([str(sm.TOLLGATE_BIN), "keys", "import", str(src), "--batch", "10000"], env=env, check=True, stdout=subprocess.DEVNULL)
    bsrc = work / "budgets.jsonl"
    with bsrc.open("w") as f:
        for i in range(N):
            f.write(json.dumps({"scope_type": "key", "scope_id": f"s{i}", "limit_micros": 10**12, "period": "monthly"}) + "\n")
    subprocess.run([str(sm.TOLLGATE_BIN), "budgets", "import", str(bsrc), "--batch", "10000"], env=env, check=True, stdout=subprocess.DEVNULL)
    ctl.api("PUT", f"/v1/budgets/key/s{N-1}", {"limit_micros": 1, "period": "monthly"}, expect=200)
    for e in (new, old):
        scale.until(lambda e=e: scale.status(e, scale.key_of(N - 1)) == 429, 300, step=0.1)
    scale.settle(ctl)
    payload = scale.body(1024, "cheap", False)
    script = scale.random_keys_script(work / "b.lua", payload, [scale.key_of(random.randrange(N - 1)) for _ in range(10000)])
    others = [mock.proc.pid, ctl.proc.pid]
    for i in range(int(os.environ.get("AB_ROUNDS", "4"))):
        if i % 2 == 0:
            r = scale.paired_ratio(new, script, old, script, others)
            print(f"new/old {r[0]:.1%} rounds {[f'{x:.1%}' for x in r[1]]}", flush=True)
        else:
            r = scale.paired_ratio(old, script, new, script, others)
            print(f"new/old {1/r[0]:.1%} (old/new {r[0]:.1%}) rounds {[f'{x:.1%}' for x in r[1]]}", flush=True)
    print("non2xx check:", scale.wrk(new.url + "/v1/chat/completions", script)["non2xx"], scale.wrk(old.url + "/v1/chat/completions", script)["non2xx"])
finally:
    for e in (new, old):
        if e: e.stop()
    mock.stop(); ctl.stop()
