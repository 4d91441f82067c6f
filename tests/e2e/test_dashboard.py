"""The dashboard in a real browser (Debian's headless Chromium) against
seeded data: the page loads, the charts render, a screenshot is taken."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import uuid

import pytest
import requests

import stack as sm
from conftest import LABS_KEY, Client

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--virtual-time-budget=15000"]


def record(ts_ms: int, team: str, model: str, cost: int, key: str) -> dict:
    return {"v": 1, "id": str(uuid.uuid4()), "ts_ms": ts_ms, "key_id": key, "key_hash": "0" * 64, "team": team,
            "project": f"{team}-app", "feature": "chat", "prompt_version": "v1", "user": None, "tags": {},
            "api": "openai_chat", "provider": model.split("/")[0], "route": model, "model_requested": model,
            "model_upstream": model.split("/")[1], "model_served": None, "stream": False, "status": 200, "outcome": "ok",
            "error_code": None, "usage": {"input_tokens": 1000, "cached_input_tokens": 400, "cache_write_tokens": 0,
                                          "output_tokens": 200, "reasoning_tokens": 0,
                                          # DeepSeek's records say nothing about the cache: not 0 %, not counted
                                          "cache_reported": not model.startswith("deepseek")},
            "usage_source": "provider", "cost_micros": cost, "priced": True, "latency_ms": 900, "ttfb_ms": 200,
            "cache_savings_micros": 0 if model.startswith("deepseek") else 1_000}


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    s = sm.Stack(tmp_path_factory.mktemp("dash"))
    c = s.control
    now = int(time.time() * 1000)
    day = 86_400_000
    recs = []
    for d in range(14):
        for team, model, cost in (("search", "openai/gpt-5.4", 40_000), ("labs", "anthropic/claude-sonnet-4-6", 25_000),
                                  ("support", "deepseek/deepseek-v4", 5_000)):
            recs.append(record(now - d * day - 3_600_000, team, model, cost * (3 if d < 2 and team == "labs" else 1),
                               f"{team}-key"))
    # guardrail findings: card numbers stopped for search, e-mail addresses redacted in labs' answers
    for i, (team, g) in enumerate((("search", {"classes": {"card": 2}, "action": "blocked", "policy": "p-7"}),
                                   ("labs", {"classes": {}, "action": "none", "policy": "p-7",
                                             "response_classes": {"email": 3}, "response_action": "redacted"}))):
        r = record(now - 7_200_000 - i, team, "openai/gpt-5.4", 0, f"{team}-key")
        r["guardrails"] = g
        # no tokens: the cache figures asserted below stay as they are
        r["cache_savings_micros"] = 0
        r["usage"].update(input_tokens=0, cached_input_tokens=0, output_tokens=0, cache_reported=False)
        recs.append(r)
    # two requests whose system prompt changed at its first bytes
    for i in range(2):
        r = record(now - 5_000_000 - i, "search", "openai/gpt-5.4", 0, "search-key")
        r["cache_savings_micros"] = 0
        r["usage"].update(input_tokens=0, cached_input_tokens=0, output_tokens=0, cache_reported=False)
        r["cache_miss"] = {"reason": "prefix_changed", "segment": "system", "offset": 0, "lost_micros": 2_000}
        recs.append(r)
    # a Claude Code session of three requests, and a session id that is markup
    for i, sid in enumerate(["3f0c5b1e-7d2a-4c55-9a7e-1b2c3d4e5f60"] * 3 + ["<b>x</b>"]):
        r = record(now - 9_000_000 - i, "labs", "anthropic/claude-sonnet-4-6", 7_000, "labs-key")
        r["session_id"] = sid
        r["cache_savings_micros"] = 0  # the savings asserted below stay as seeded
        recs.append(r)
    c.api("POST", "/v1/usage", {"node": "seed", "records": recs}, expect=200)
    c.api("PUT", "/v1/guardrails", {"version": "p-7", "actions": {"email": "redact"}, "responses": "redact"}, expect=200)
    # a prompt with two versions and a label moved by someone
    c.api("POST", "/v1/prompts/support/versions", {"system": "You are Acme support.", "by": "ann",
          "messages": [{"role": "user", "content": "Customer {{name}}:"}], "label": "production"}, expect=201)
    c.api("POST", "/v1/prompts/support/versions", {"system": "You are Acme support. Be brief.", "by": "bob",
          "messages": [{"role": "user", "content": "Customer {{name}} ({{tier}}):"}]}, expect=201)
    c.api("PUT", "/v1/prompts/support/labels/production", {"version": 2, "by": "carol"}, expect=200)
    # the seeded search spend ($0.56 over 14 days) is over this limit: a hard alert. A fixed window
    # around the seeded days, not "monthly": on a month's first day its period held none of them
    c.api("PUT", "/v1/budgets/team/search", {"limit_micros": 250_000, "period": "fixed",
          "window_start_ms": now - 30 * day, "window_end_ms": now + day}, expect=200)
    c.api("PUT", "/v1/budgets/team/support", {"limit_micros": 5_000_000, "period": "monthly"}, expect=200)
    # real traffic through Envoy too, and an evaluation of it (captured: feature triage)
    cl = Client(s)
    cl.chat("cheap", key=LABS_KEY)  # team labs: the search figures below are the seeded ones
    for a in range(1, 4):
        cl.post("/v1/chat/completions", {"model": "openai/gpt-5.4", "messages": [{"role": "user", "content": f"TASK: add {a} 2"}]},
                headers={"x-tollgate-feature": "triage"}, key=LABS_KEY)  # team labs: the search figures below stay as seeded
    deadline = time.monotonic() + 15
    while not [x for x in c.api("GET", "/v1/eval-sets", expect=200)[1]["sets"] if x["feature"] == "triage" and x["items"] >= 3]:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    c.api("PUT", "/v1/routing/triage", {"candidates": ["default"], "threshold": 0.5, "min_items": 3, "auto_promote": True}, expect=200)
    _, run = c.api("POST", "/v1/evals", {"feature": "triage", "candidate": "default", "judge": "openai/gpt-5.4"}, expect=202)
    while c.api("GET", f"/v1/evals/{run['id']}", expect=200)[1]["status"] == "running":
        assert time.monotonic() < deadline + 30
        time.sleep(0.2)
    yield s
    s.stop()


def test_cache_hit_rate_and_savings_in_the_reports_api_csv_and_cli(seeded):
    rows = seeded.control.api("GET", "/v1/reports/spend?group_by=team", expect=200)[1]["rows"]
    by = {r["team"]: r for r in rows if r["team"] in ("search", "labs", "support")}
    assert by["search"]["cache_hit_rate_pct"] == 40.0 and by["search"]["cache_savings_micros"] == 14_000
    assert by["search"]["cache_savings_usd"] == "0.014000"
    assert by["support"]["cache_hit_rate_pct"] is None and by["support"]["cache_savings_micros"] == 0, "not reported"
    r = requests.get(f"{seeded.control.url}/v1/reports/spend?group_by=team&format=csv",
                     headers={"authorization": f"Bearer {sm.ADMIN_TOKEN}"}, timeout=10)
    header, *lines = r.text.strip().split("\r\n")
    assert header.endswith(",cache_hit_rate_pct,cache_savings_micros,cache_savings_usd")
    assert any(line.startswith("support,") and line.endswith(",,0,0.000000") for line in lines), lines
    env = {**__import__("os").environ, "TOLLGATE_URL": seeded.control.url, "TOLLGATE_ADMIN_TOKEN": sm.ADMIN_TOKEN}
    out = subprocess.run([str(sm.TOLLGATE_BIN), "spend", "--group-by", "team"], capture_output=True, text=True,
                         env=env, timeout=30, check=True).stdout
    assert "CACHE HIT %" in out and "CACHE SAVED" in out
    line = next(l for l in out.splitlines() if l.startswith("support"))
    assert "n/a" in line
    assert "$0.014000" in next(l for l in out.splitlines() if l.startswith("search"))


def chromium(*args, timeout=90):
    assert shutil.which("chromium") or __import__("os").path.exists(CHROMIUM), "Debian's chromium is not installed (make setup)"
    return subprocess.run([CHROMIUM, *FLAGS, *args], capture_output=True, text=True, timeout=timeout)


def test_dashboard_renders_in_chromium(seeded, tmp_path):
    url = f"{seeded.control.url}/dashboard#token={sm.ADMIN_TOKEN}"
    p = chromium(f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", url)
    dom = p.stdout
    assert 'data-loaded="yes"' in dom, (p.stderr[-2000:], dom[:2000])
    for chart in ("spend-by-team", "spend-by-model"):
        m = re.search(rf'<svg data-chart="{chart}".*?</svg>', dom, re.S)
        assert m, chart
        assert m.group(0).count("<rect") >= 14, f"{chart}: one bar per day and team"
    assert 'data-budget="team:search"' in dom and 'data-budget="team:support"' in dom
    assert "search-key" in dom and "claude-sonnet-4-6" in dom
    sessions = re.search(r'<div id="top-sessions">(.*?)</div>', dom, re.S).group(1)
    rows = [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", sessions, re.S)[1:]]
    cc = '<span data-session="3f0c5b1e-7d2a-4c55-9a7e-1b2c3d4e5f60">3f0c5b1e-7d2a-4c55-9a7e-1b2c3d4e5f60</span>'
    assert rows[0] == [cc, "labs", "3", "$0.02"], rows
    assert "&lt;b&gt;x&lt;/b&gt;" in sessions and "<b>x</b>" not in sessions, "escaped"
    assert len(rows) == 2, "records without a session are not a row"
    assert "40.0%" in dom  # cache share of the seeded records
    assert "saved by prompt caches" in dom and "cache hit rate (where reported)" in dom
    assert "$0.03" in dom  # 28 records reported a cache and saved $0.001 each
    alerts = re.search(r'<div id="alerts">(.*?)</div>', dom, re.S).group(1)
    assert '<b class="up">stop</b>' in alerts and "team:search" in alerts  # over its limit: a hard alert is listed
    audit = re.search(r'<div id="audit">(.*?)</div>', dom, re.S).group(1)
    rows = [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", audit, re.S)[1:]]
    assert ["search", "openai", "request", '<span data-class="card">card</span>', '<b class="up">blocked</b>', "1", "2"] in rows, rows
    assert ["labs", "openai", "answer", '<span data-class="email">email</span>', "redacted", "1", "3"] in rows, rows
    assert "Policy in force on every Envoy: p-7 (change 1," in dom
    evals = re.search(r'<div id="evals">(.*?)</div>', dom, re.S).group(1)
    assert "default" in evals and "100.0%" in evals and "<b>routed</b>" in evals, evals
    assert "auto → default" in evals
    misses = re.search(r'<div id="cache-misses">(.*?)</div>', dom, re.S).group(1)
    assert '<li data-reason="prefix_changed"><b>$0.004000</b> feature chat (prompt v1) lost $0.004000 to cache misses on 2 requests since' in misses, misses
    assert "the system prompt's first bytes change on every request" in misses
    prompt = re.search(r'<div class="prompt" data-prompt="support">(.*?)</pre></div>', dom, re.S).group(1)
    assert "production → v2" in prompt and "support@2#" in prompt and "variables: name, tier" in prompt
    assert "carol" in prompt and "label production → v2" in prompt and "bob" in prompt
    assert '<span class="del">-You are Acme support.</span>' in prompt and '<span class="add">+You are Acme support. Be brief.</span>' in prompt

    shot = tmp_path / "dashboard.png"
    p = chromium(f"--user-data-dir={tmp_path / 'profile2'}", f"--screenshot={shot}", "--window-size=1400,1900", url)
    assert shot.exists() and shot.stat().st_size > 20_000, p.stderr[-2000:]
    keep = sm.ROOT / ".tollgate" / "dashboard.png"
    keep.parent.mkdir(exist_ok=True)
    shutil.copy(shot, keep)


def test_dashboard_without_token_says_what_to_do(seeded, tmp_path):
    p = chromium(f"--user-data-dir={tmp_path / 'p'}", "--dump-dom", f"{seeded.control.url}/dashboard")
    assert 'data-loaded="error"' in p.stdout and "Enter the admin token" in p.stdout


def test_dashboard_needs_no_internet(seeded):
    html = requests.get(f"{seeded.control.url}/dashboard", timeout=5).text
    assert not re.search(r'(src|href)="https?://', html), "no CDN or remote asset"
