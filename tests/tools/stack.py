#!/usr/bin/env python3
"""Start and stop the Tollgate stack: the mock provider and Envoy with the filter.

Used by the end-to-end tests (as a library) and by `make run` (as `stack.py run`).
Envoy's configuration is envoy/demo/envoy.yaml, with ports, the .wasm path and
the access-log path substituted, and optionally the plugin configuration patched.
"""
from __future__ import annotations

import copy
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv"

def envoy_versions() -> list[str]:
    """tests/envoy-versions.txt: the supported Envoys, oldest first."""
    lines = (ROOT / "tests" / "envoy-versions.txt").read_text().splitlines()
    return [v.strip() for v in lines if v.strip() and not v.startswith("#")]


def envoy_bin(version: str | None = None) -> Path:
    """The Envoy of ENVOY_VERSION (from .envoy/<version>/, installed by `make setup`), else the venv's."""
    version = version or os.environ.get("ENVOY_VERSION") or ""
    if not version:
        return VENV / "bin" / "envoy"
    if version not in envoy_versions():
        raise RuntimeError(f"ENVOY_VERSION={version} is not in tests/envoy-versions.txt")
    return ROOT / ".envoy" / version / "bin" / "envoy"


ENVOY_BIN = envoy_bin()
WASM = ROOT / "target" / "wasm32-unknown-unknown" / "release" / "tollgate_filter.wasm"
MOCK_BIN = ROOT / "target" / "release" / "mock-provider"
TOLLGATE_BIN = ROOT / "target" / "release" / "tollgate"
DEMO_CONFIG = ROOT / "envoy" / "demo" / "envoy.yaml"

DEMO_KEYS = {
    "tg-demo-search-key": "team search, project ranker, all models",
    "tg-demo-labs-key": "team labs, project assistant, all models",
    "tg-demo-restricted-key": "team interns, project sandbox, models 'cheap' and 'default'",
}
# Demo control-service tokens (the filter's is in envoy/demo/envoy.yaml).
ADMIN_TOKEN = "demo-admin-token-0123456789"
FILTER_TOKEN = "demo-filter-token-0123456789"
# The provider credentials the demo's filter injects; the mock insists on them.
PROVIDER_KEYS = {"openai": "sk-mock-openai", "anthropic": "sk-ant-mock", "deepseek": "sk-mock-deepseek",
                 "gemini": "mock-gemini-key"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


class Mock:
    """The mock provider process."""

    def __init__(self, port: int = 0, keys: dict | None = None, log_path: Path | None = None):
        self.port = port or free_port()
        keys = PROVIDER_KEYS if keys is None else keys
        args = [str(MOCK_BIN), "--listen", f"127.0.0.1:{self.port}", "--captures", str(ROOT / "tests" / "captures")]
        for name, k in keys.items():
            args += [f"--{name}-key", k]
        self.log_path = log_path
        out = open(log_path, "wb") if log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        wait_port(self.port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop_process(self.proc)


class Postgres:
    """A real PostgreSQL server (Debian's package) in a temporary directory."""

    def __init__(self, workdir: Path | None = None):
        import glob
        import shutil
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        if not bins:
            raise RuntimeError("PostgreSQL is not installed (make setup installs Debian's postgresql)")
        self.bin = Path(bins[-1])
        self.port = free_port()
        # Its own directory under /tmp: the server user must be able to reach it.
        # Its log (statements over 2 s included) is copied into `workdir` at stop.
        self.keep_log = workdir
        workdir = Path(tempfile.mkdtemp(prefix="tollgate-pg-"))
        self.base = workdir
        self.dir = workdir / "pgdata"
        self.sock = workdir / "pgsock"
        self.sock.mkdir(parents=True, exist_ok=True)
        # initdb refuses to run as root: run the server as the 'postgres' user then.
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(workdir, "postgres")
            shutil.chown(self.sock, "postgres")
        self._run("initdb", "-D", str(self.dir), "-A", "trust", "-U", "tollgate", "--no-sync")
        self._run("pg_ctl", "-D", str(self.dir), "-l", str(workdir / "postgres.log"), "-w", "-o",
                  f"-p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1 -c fsync=off -c log_min_duration_statement=2000", "start")
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "tollgate", "tollgate")

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([*self.as_user, str(self.bin / tool), *args], check=True, capture_output=True, timeout=60)

    @property
    def conninfo(self) -> str:
        return f"postgresql://tollgate@127.0.0.1:{self.port}/tollgate"

    def stop(self) -> None:
        import shutil
        subprocess.run([*self.as_user, str(self.bin / "pg_ctl"), "-D", str(self.dir), "-m", "fast", "-w", "stop"],
                       capture_output=True, timeout=60)
        if self.keep_log is not None and (self.base / "postgres.log").exists():
            shutil.copy(self.base / "postgres.log", Path(self.keep_log) / "postgres.log")
        shutil.rmtree(self.base, ignore_errors=True)


class Control:
    """The control service process (`tollgate serve`) on a SQLite file or PostgreSQL."""

    def __init__(self, workdir: Path, port: int = 0, webhook: str | None = None, db: Path | str | None = None,
                 name: str = "control", env: dict | None = None):
        self.port = port or free_port()
        self.db = db or workdir / "tollgate.db"
        self.log_path = workdir / f"{name}.log"
        self.env = {**os.environ, "TOLLGATE_ADMIN_TOKEN": ADMIN_TOKEN, "TOLLGATE_FILTER_TOKEN": FILTER_TOKEN,
                    "TOLLGATE_NODE_TTL_MS": "5000", **(env or {})}
        if webhook:
            self.env["TOLLGATE_WEBHOOK_URL"] = webhook
        self.proc = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen([str(TOLLGATE_BIN), "serve", "--listen", f"127.0.0.1:{self.port}", "--db", str(self.db)],
                                     stdout=open(self.log_path, "ab"), stderr=subprocess.STDOUT, env=self.env)
        wait_port(self.port)
        time.sleep(0.05)
        if self.proc.poll() is not None:  # the port was taken by another process meanwhile
            raise RuntimeError(f"control service exited with {self.proc.returncode}: {self.log_path.read_text()[-2000:]}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self, method: str, path: str, body=None, token: str = ADMIN_TOKEN, expect: int | None = None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"authorization": f"Bearer {token}", "content-type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                status, text = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, text = e.code, e.read()
        if expect is not None and status != expect:
            raise AssertionError(f"{method} {path}: expected {expect}, got {status}: {text[:500]!r}")
        return status, (json.loads(text) if text else None)

    def stop(self) -> None:
        if self.proc:
            stop_process(self.proc)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def plugin_config(cfg: dict) -> dict:
    """The Tollgate plugin configuration (parsed) inside an Envoy config dict."""
    return json.loads(_wasm_filter(cfg)["typed_config"]["config"]["configuration"]["value"])


def _wasm_filter(cfg: dict) -> dict:
    hcm = cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    return next(f for f in hcm["http_filters"] if f["name"] == "envoy.filters.http.wasm")


def demo_config(listen_port: int, admin_port: int, mock_port: int, access_log: str = "/dev/stdout",
                plugin_patch=None, raw_plugin_config: str | None = None, control_port: int = 7070) -> dict:
    """envoy/demo/envoy.yaml with ports and paths substituted.

    plugin_patch: a function that edits the plugin configuration dict in place.
    raw_plugin_config: replaces the plugin configuration text entirely.
    """
    cfg = yaml.safe_load(DEMO_CONFIG.read_text())
    cfg["admin"]["address"]["socket_address"]["port_value"] = admin_port
    listener = cfg["static_resources"]["listeners"][0]
    listener["address"]["socket_address"]["port_value"] = listen_port
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    for al in hcm.get("access_log", []):
        al["typed_config"]["path"] = access_log
    wasm_configs = [_wasm_filter(cfg)["typed_config"]["config"]]
    wasm_configs += [b["typed_config"]["config"] for b in cfg.get("bootstrap_extensions", [])]
    for wasm in wasm_configs:
        wasm["vm_config"]["code"]["local"]["filename"] = str(WASM)
        if raw_plugin_config is not None:
            wasm["configuration"]["value"] = raw_plugin_config
        elif plugin_patch is not None:
            pc = json.loads(wasm["configuration"]["value"])
            plugin_patch(pc)
            wasm["configuration"]["value"] = json.dumps(pc)
    for c in cfg["static_resources"]["clusters"]:
        port = control_port if c["name"] == "tollgate_control" else mock_port
        for ep in c["load_assignment"]["endpoints"]:
            for lb in ep["lb_endpoints"]:
                lb["endpoint"]["address"]["socket_address"]["port_value"] = port
    return cfg


class Envoy:
    """A real Envoy process with the given config dict."""

    def __init__(self, cfg: dict, workdir: Path, concurrency: int = 2, wait: bool = True, name: str = "envoy",
                 env: dict | None = None, binary: Path | None = None):
        self.cfg = copy.deepcopy(cfg)
        self.listen_port = cfg["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"]
        self.admin_port = cfg["admin"]["address"]["socket_address"]["port_value"]
        self.config_path = workdir / f"{name}.json"
        self.config_path.write_text(json.dumps(cfg, indent=1))
        self.log_path = workdir / f"{name}.log"
        self.proc = subprocess.Popen(
            [str(binary or ENVOY_BIN), "-c", str(self.config_path), "--disable-hot-restart",
             "--concurrency", str(concurrency), "--log-level", "info",
             *([] if cfg.get("node") else ["--service-node", name, "--service-cluster", "tollgate"]),
             "--file-flush-interval-msec", "200"],
            stdout=open(self.log_path, "wb"), stderr=subprocess.STDOUT, cwd=ROOT,
            env={**os.environ, **(env or {})})
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"envoy exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/ready", timeout=1) as r:
                    if r.read().strip() == b"LIVE":
                        wait_port(self.listen_port, 5)
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"envoy not ready after {timeout}s:\n{self.log()[-4000:]}")

    def wait_keys_loaded(self, timeout: float = 15.0) -> None:
        """Until the filter has loaded the control service's keys: an unknown
        key is then 401, not 503 `keys_loading` (a gateway's "ready")."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            req = urllib.request.Request(f"http://127.0.0.1:{self.listen_port}/v1/chat/completions", data=b"{}", method="POST",
                                         headers={"authorization": "Bearer tg-readiness-probe-not-a-key",
                                                  "content-type": "application/json"})
            try:
                urllib.request.urlopen(req, timeout=2)
                return
            except urllib.error.HTTPError as e:
                if e.code != 503:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"envoy did not load its keys after {timeout}s:\n{self.log()[-4000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def usage_records(self) -> list[dict]:
        """The usage records this Envoy logged (`tollgate.usage {...}` lines), in order.
        A last line Envoy is still writing (no newline yet) is left for the next read:
        read half-written, it failed to parse (a flaky test, not a bad record)."""
        out = []
        text = self.log()
        whole = text if text.endswith("\n") else text[:text.rfind("\n") + 1]
        for line in whole.splitlines():
            i = line.find("tollgate.usage ")
            if i >= 0:
                out.append(json.loads(line[i + len("tollgate.usage "):]))
        return out

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listen_port}"

    def stop(self) -> None:
        stop_process(self.proc)


class Stack:
    """Mock provider + Envoy with Tollgate, on free ports unless told otherwise."""

    def __init__(self, workdir: Path | None = None, listen_port: int = 0, admin_port: int = 0, mock_port: int = 0,
                 plugin_patch=None, concurrency: int = 2, access_log: str | None = None, control_port: int = 0,
                 webhook: str | None = None, envoys: int = 1, control_db: str | None = None, control_replicas: int = 1,
                 wait_keys: bool = True, control_env: dict | None = None):
        self.wait_keys = wait_keys
        self.control_env = control_env or {}
        self.plugin_patch = plugin_patch
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="tollgate-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = (listen_port, admin_port, mock_port, plugin_patch, concurrency, access_log, control_port, webhook,
                envoys, control_db, control_replicas)
        # Free ports are picked, then bound by another process a moment later:
        # under load one may be taken in between. Start again on new ports.
        fixed = any((listen_port, admin_port, mock_port, control_port))
        for attempt in range(3):
            try:
                self._start(*args)
                return
            except (RuntimeError, TimeoutError, OSError):
                if fixed or attempt == 2:
                    raise

    def _start(self, listen_port, admin_port, mock_port, plugin_patch, concurrency, access_log, control_port, webhook,
               envoys, control_db, control_replicas) -> None:
        self.controls, self.envoys, self.mock = [], [], None
        self.access_log = Path(access_log) if access_log else self.workdir / "access.log"
        # The first Envoy's port is known before the control service starts: it runs evaluations through it.
        first_port = listen_port or free_port()
        evals_env = {"TOLLGATE_EVAL_GATEWAY": f"http://127.0.0.1:{first_port}", "TOLLGATE_EVAL_KEY": "tg-demo-labs-key"}
        try:
            for i in range(control_replicas):
                self.controls.append(Control(self.workdir, control_port if i == 0 else 0, webhook=webhook, db=control_db,
                                             name=f"control{i}" if i else "control", env={**evals_env, **self.control_env}))
            self.control = self.controls[0]
            self.mock = Mock(mock_port, log_path=self.workdir / "mock.log")
            for i in range(envoys):
                cfg = self._envoy_config(first_port if i == 0 else free_port(),
                                         admin_port if i == 0 and admin_port else free_port(), str(self.access_log))
                self.envoys.append(Envoy(cfg, self.workdir, concurrency=concurrency, name=f"envoy{i}" if i else "envoy"))
        except Exception:
            for e in self.envoys:
                e.stop()
            if self.mock:
                self.mock.stop()
            for c in self.controls:
                c.stop()
            raise
        self.envoy = self.envoys[0]
        if self.wait_keys:
            for e in self.envoys:
                e.wait_keys_loaded()

    def _envoy_config(self, listen_port: int, admin_port: int, access_log: str) -> dict:
        """An Envoy of this fleet: this stack's mock provider and control service."""
        cfg = demo_config(listen_port, admin_port, self.mock.port, access_log=access_log,
                          plugin_patch=self.plugin_patch, control_port=self.control.port)
        if len(self.controls) > 1:
            # Envoy balances the control-service replicas itself.
            for c in cfg["static_resources"]["clusters"]:
                if c["name"] == "tollgate_control":
                    c["load_assignment"]["endpoints"][0]["lb_endpoints"] = [
                        {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": r.port}}}}
                        for r in self.controls]
        return cfg

    def add_envoy(self, name: str, concurrency: int = 2) -> "Envoy":
        """Another Envoy joining this fleet now (a pod scaled up), stopped
        with the stack; its access log is `<name>.access.log`."""
        cfg = self._envoy_config(free_port(), free_port(), str(self.workdir / f"{name}.access.log"))
        e = Envoy(cfg, self.workdir, concurrency=concurrency, name=name)
        self.envoys.append(e)
        return e

    @property
    def url(self) -> str:
        return self.envoy.url

    def stop(self) -> None:
        for e in self.envoys:
            e.stop()
        self.mock.stop()
        for c in self.controls:
            c.stop()


def run_demo() -> int:
    """`make run`: the demo stack in the foreground until Ctrl-C."""
    for p in (WASM, MOCK_BIN, ENVOY_BIN, TOLLGATE_BIN):
        if not p.exists():
            print(f"missing {p}: run 'make build'", file=sys.stderr)
            return 1
    workdir = ROOT / ".tollgate" / "run"
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        stack = Stack(workdir, listen_port=10000, admin_port=9901, mock_port=18080, control_port=7070,
                      access_log=str(workdir / "access.log"))
    except Exception as e:  # noqa: BLE001 - print why the demo could not start
        print(f"tollgate demo failed to start: {e}", file=sys.stderr)
        return 1
    keys = "\n".join(f"    {k:<24} {v}" for k, v in DEMO_KEYS.items())
    print(f"""
Tollgate demo is ready: Envoy with the Tollgate filter on http://127.0.0.1:10000 (admin http://127.0.0.1:9901),
mock provider (OpenAI, Anthropic and DeepSeek formats) on http://127.0.0.1:18080,
control service on http://127.0.0.1:7070 (SQLite file {workdir / 'tollgate.db'}; admin token {ADMIN_TOKEN}).

Demo virtual keys:
{keys}

Models: default, cheap, openai/gpt-5.4, anthropic/claude-sonnet-4-6, deepseek/deepseek-v4,
        openai/*, anthropic/*, deepseek/*, google/*, gpt-*, claude-*, gemini-*, text-embedding-*, omni-moderation-*
        (list them: GET /v1/models; any of them from the OpenAI or the Anthropic SDK)

Try it:
  curl -s http://127.0.0.1:10000/v1/chat/completions \\
    -H 'Authorization: Bearer tg-demo-search-key' -H 'Content-Type: application/json' \\
    -d '{{"model": "cheap", "messages": [{{"role": "user", "content": "Hello"}}]}}' -D - 

  .venv/bin/python -c '
from openai import OpenAI
client = OpenAI(base_url="http://127.0.0.1:10000/v1", api_key="tg-demo-search-key")
r = client.chat.completions.with_raw_response.create(model="openai/gpt-5.4", messages=[{{"role": "user", "content": "Hello"}}])
print(r.parse().choices[0].message.content, "| cost (micro-USD):", r.headers["x-tollgate-cost-micros"])'

Create a key with a budget through the control service (it works in Envoy within about a second):
  curl -s -X POST http://127.0.0.1:7070/v1/keys -H 'Authorization: Bearer {ADMIN_TOKEN}' \\
    -d '{{"team": "growth", "project": "onboarding"}}'
  curl -s -X PUT http://127.0.0.1:7070/v1/budgets/team/growth -H 'Authorization: Bearer {ADMIN_TOKEN}' \\
    -d '{{"limit_micros": 5000, "period": "monthly", "timezone": "UTC"}}'
  curl -s http://127.0.0.1:7070/v1/budgets -H 'Authorization: Bearer {ADMIN_TOKEN}'
  or the CLI:  TOLLGATE_ADMIN_TOKEN={ADMIN_TOKEN} target/release/tollgate spend --group-by team,model

Dashboard: http://127.0.0.1:7070/dashboard#token={ADMIN_TOKEN}

Usage records: Envoy log {workdir / 'envoy.log'} (lines 'tollgate.usage {{...}}'),
               access log {workdir / 'access.log'}.
Ctrl-C stops everything.
""", flush=True)
    stop = False

    def on_signal(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        while not stop:
            for name, proc in (("envoy", stack.envoy.proc), ("mock provider", stack.mock.proc)):
                if proc.poll() is not None:
                    print(f"{name} exited with {proc.returncode}; see {workdir}", file=sys.stderr)
                    stop = True
            time.sleep(0.3)
    finally:
        stack.stop()
        print("stopped.")
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["run"]:
        sys.exit(run_demo())
    print("usage: stack.py run", file=sys.stderr)
    sys.exit(2)
