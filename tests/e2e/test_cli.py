"""The `tollgate` admin CLI against a running control service, with usage
that went through a real Envoy."""
from __future__ import annotations

import json
import os
import subprocess
import time

import pytest
import requests

import stack as sm
from conftest import Client


@pytest.fixture(scope="module")
def cli_stack(tmp_path_factory):
    s = sm.Stack(tmp_path_factory.mktemp("cli"))
    yield s
    s.stop()


def tg(stack, *args, ok=True):
    env = {**os.environ, "TOLLGATE_URL": stack.control.url, "TOLLGATE_ADMIN_TOKEN": sm.ADMIN_TOKEN}
    p = subprocess.run([str(sm.TOLLGATE_BIN), *args], capture_output=True, text=True, env=env, timeout=30)
    if ok:
        assert p.returncode == 0, p.stderr
    return p


def test_every_command_has_help(cli_stack):
    for cmd in (["--help"], ["serve", "--help"], ["keys", "--help"], ["budgets", "--help"], ["spend", "--help"], ["audit", "--help"],
                ["movers", "--help"], ["report", "--help"], ["alerts", "--help"], ["key", "--help"]):
        p = tg(cli_stack, *cmd)
        assert "tollgate" in p.stdout, cmd
    p = tg(cli_stack, "frobnicate", ok=False)
    assert p.returncode == 2 and "unknown command" in p.stderr
    # An argument that is not UTF-8 is an error, never a panic (std::env::args panicked on it).
    for args in (["frobnicate", b"\xff"], ["budgets", "show", "team", b"\xff"], ["keys", b"\xfe"]):
        p = tg(cli_stack, *args, ok=False)
        assert p.returncode == 2 and "panicked" not in p.stderr, (args, p.stderr)


def test_serve_refuses_a_use_log_too_short_for_its_envoys(tmp_path):
    """The use log must outlast twice the node TTL (and a minute): a shorter
    one would send every poll of a slow Envoy the full state. Refused at
    start, naming the setting."""
    base = {**os.environ, "TOLLGATE_ADMIN_TOKEN": sm.ADMIN_TOKEN, "TOLLGATE_FILTER_TOKEN": sm.FILTER_TOKEN}
    for extra in ({"TOLLGATE_USE_LOG_KEEP_MS": "ten minutes"}, {"TOLLGATE_USE_LOG_KEEP_MS": "59999"},
                  {"TOLLGATE_USE_LOG_KEEP_MS": "-1"},
                  {"TOLLGATE_NODE_TTL_MS": "60000", "TOLLGATE_USE_LOG_KEEP_MS": "119999"}):
        p = subprocess.run([str(sm.TOLLGATE_BIN), "serve", "--listen", "127.0.0.1:0", "--db", str(tmp_path / "t.db")],
                           capture_output=True, text=True, env={**base, **extra}, timeout=30)
        assert p.returncode != 0 and "TOLLGATE_USE_LOG_KEEP_MS must be" in p.stderr, (extra, p.returncode, p.stderr)
        assert "panicked" not in p.stderr
    # A value that is not UTF-8 is refused by name, not taken as unset.
    for name in ("TOLLGATE_USE_LOG_KEEP_MS", "TOLLGATE_NODE_TTL_MS", "TOLLGATE_STATE_PAGE"):
        p = subprocess.run([str(sm.TOLLGATE_BIN), "serve", "--listen", "127.0.0.1:0", "--db", str(tmp_path / "t.db")],
                           capture_output=True, text=True, env={**base, name: b"6\xff0000"}, timeout=30)
        assert p.returncode != 0 and f"{name} is not valid UTF-8" in p.stderr, (name, p.returncode, p.stderr)


def test_keys_budgets_spend_report(cli_stack):
    created = json.loads(tg(cli_stack, "keys", "create", "--team", "research", "--project", "lab", "--id", "cli-key",
                            "--tag", "env=test", "--json").stdout)
    key = created["key"]
    assert created["id"] == "cli-key" and created["tags"] == {"env": "test"}
    listing = tg(cli_stack, "keys", "list").stdout
    assert "cli-key" in listing and "research" in listing and key not in listing

    out = tg(cli_stack, "budgets", "set", "team", "research", "--limit-usd", "2.5", "--period", "monthly",
             "--timezone", "Europe/Paris", "--soft-pct", "off").stdout
    assert "team:research" in out and "$2.500000" in out
    b = json.loads(tg(cli_stack, "budgets", "show", "team", "research", "--json").stdout)
    assert b["limit_micros"] == 2_500_000 and b["soft_pct"] is None and b["timezone"] == "Europe/Paris"

    # usage through the real Envoy with the new key
    c = Client(cli_stack)
    deadline = time.monotonic() + 10
    while c.chat("cheap", key=key, extra={"max_tokens": 5}).status_code != 200:
        assert time.monotonic() < deadline, "key never worked"
        time.sleep(0.2)
    for model in ("openai/gpt-5.4", "openai/gpt-5.4", "cheap"):
        assert c.chat(model, key=key, headers={"x-tollgate-feature": "triage"}, extra={"max_tokens": 30}).status_code == 200
    deadline = time.monotonic() + 10
    while True:
        rows = json.loads(tg(cli_stack, "spend", "--group-by", "team,model", "--team", "research", "--json").stdout)["rows"]
        if sum(r["requests"] for r in rows) == 4:
            break
        assert time.monotonic() < deadline, rows
        time.sleep(0.3)
    by_model = {r["model"]: r for r in rows}
    assert by_model["gpt-5.4"]["requests"] == 2 and by_model["deepseek-v4"]["requests"] == 2
    table = tg(cli_stack, "spend", "--group-by", "model", "--team", "research").stdout
    assert table.splitlines()[0].split()[:2] == ["MODEL", "REQUESTS"] and "gpt-5.4" in table
    csv = tg(cli_stack, "spend", "--group-by", "feature", "--team", "research", "--csv").stdout
    assert csv.splitlines()[0].startswith("feature,requests,") and "triage,3," in csv
    daily = json.loads(tg(cli_stack, "spend", "--bucket", "day", "--from", "2026-01-01", "--json").stdout)
    assert daily["bucket"] == "day" and all("bucket_start_ms" in r for r in daily["rows"])

    movers = json.loads(tg(cli_stack, "movers", "--by", "key", "--json").stdout)
    assert any(m["value"] == "cli-key" and m["delta_micros"] > 0 for m in movers["key"])
    md = tg(cli_stack, "report", "monthly").stdout
    assert md.startswith("# AI spend review") and "## Where the traffic went" in md and "triage" in md

    rotated = json.loads(tg(cli_stack, "keys", "rotate", "cli-key", "--json").stdout)
    assert rotated["key"] != key
    tg(cli_stack, "keys", "revoke", "cli-key")
    assert json.loads(tg(cli_stack, "keys", "list", "--json").stdout)["keys"][-1]["status"] == "revoked"
    tg(cli_stack, "budgets", "delete", "team", "research")
    p = tg(cli_stack, "budgets", "show", "team", "research", ok=False)
    assert p.returncode == 2 and "404" in p.stderr


def test_long_lists_come_a_page_at_a_time(cli_stack):
    for i in range(3):
        tg(cli_stack, "keys", "create", "--team", "paging", "--project", "p", "--id", f"page-key-{i}")
        tg(cli_stack, "budgets", "set", "key", f"page-key-{i}", "--limit-usd", "1", "--period", "daily")
    every = [json.loads(line) for line in tg(cli_stack, "keys", "list", "--all", "--json").stdout.splitlines()]
    ids = [k["id"] for k in every]
    assert {"page-key-0", "page-key-1", "page-key-2"} <= set(ids) and len(ids) == len(set(ids))
    # One page: a table of --limit rows, and where the next page starts (on stderr).
    p = tg(cli_stack, "keys", "list", "--limit", "1")
    lines = p.stdout.splitlines()
    assert lines[0].split()[:2] == ["ID", "TEAM"] and len(lines) == 2 and lines[1].split()[0] == ids[0]
    assert f"1 of {len(ids)}; the next page: --after {ids[0]}" in p.stderr
    second = tg(cli_stack, "keys", "list", "--limit", "1", "--after", ids[0]).stdout.splitlines()
    assert second[1].split()[0] == ids[1]
    page = json.loads(tg(cli_stack, "keys", "list", "--limit", "2", "--json").stdout)
    assert [k["id"] for k in page["keys"]] == ids[:2] and page["total"] == len(ids)
    budgets = tg(cli_stack, "budgets", "show", "--all").stdout.splitlines()
    assert budgets[0].startswith("SCOPE") and sum(line.startswith("key:page-key-") for line in budgets) == 3
    p = tg(cli_stack, "budgets", "show", "--limit", "1")
    assert len(p.stdout.splitlines()) == 2 and "the next page: --after " in p.stderr
    p = tg(cli_stack, "keys", "list", "--limit", "0", ok=False)
    assert p.returncode == 2 and "--limit" in p.stderr
    p = tg(cli_stack, "keys", "list", "--all", "--after", "x", ok=False)
    assert p.returncode == 2 and "cannot be used with" in p.stderr


def test_ids_with_every_allowed_character_go_through_the_cli(cli_stack):
    # Ids may hold [A-Za-z0-9-_.:/@] (docs/control-api.md): each reaches its own resource.
    odd = "ops/eu@team:a.b"
    created = json.loads(tg(cli_stack, "keys", "create", "--team", "t", "--project", "p", "--id", odd, "--json").stdout)
    assert created["id"] == odd
    assert json.loads(tg(cli_stack, "keys", "rotate", odd, "--json").stdout)["key"] != created["key"]
    tg(cli_stack, "keys", "revoke", odd)
    set_ = json.loads(tg(cli_stack, "budgets", "set", "key", odd, "--limit-usd", "1", "--period", "daily", "--json").stdout)
    assert (set_["scope_type"], set_["scope_id"]) == ("key", odd)
    assert json.loads(tg(cli_stack, "budgets", "show", "key", odd, "--json").stdout)["scope_id"] == odd
    tg(cli_stack, "budgets", "delete", "key", odd)
    p = tg(cli_stack, "budgets", "show", "key", odd, ok=False)
    assert p.returncode == 2 and "404" in p.stderr


def test_cli_reports_clear_errors(cli_stack):
    env = {**os.environ, "TOLLGATE_URL": cli_stack.control.url, "TOLLGATE_ADMIN_TOKEN": "wrong-token-0000000000"}
    p = subprocess.run([str(sm.TOLLGATE_BIN), "keys", "list"], capture_output=True, text=True, env=env, timeout=30)
    assert p.returncode == 2 and "401" in p.stderr
    p = tg(cli_stack, "budgets", "set", "team", "x", "--limit-usd", "1.2345678", "--period", "daily", ok=False)
    assert p.returncode == 2 and "at most 6 decimals" in p.stderr
    p = tg(cli_stack, "spend", "--group-by", "colour", ok=False)
    assert p.returncode == 2 and "unknown dimension" in p.stderr
