"""Choosing cheaper models safely, through a real Envoy: JSON that parses
(route json-mini repairs, the plain route only measures), fallbacks
(route `resilient`: OpenAI first, then Anthropic, then DeepSeek), capture
of real requests (feature `triage`), evaluations that tell the mock's good
cheap model (gpt-5.4-mini) from its bad cheap one (deepseek-v4) with an
LLM judge, and the auto router sending `model: "auto"` to the winner."""
from __future__ import annotations

import json
import os
import re
import subprocess
import time

import pytest
import requests

import stack as sm
from conftest import SEARCH_KEY, expected_cost


def cli(stack, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TOLLGATE_URL": stack.control.url, "TOLLGATE_ADMIN_TOKEN": sm.ADMIN_TOKEN}
    return subprocess.run([str(sm.TOLLGATE_BIN), *args], capture_output=True, text=True, env=env, timeout=300)


def wait_for(fn, timeout=15.0, what=""):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


# ---- JSON that parses ---------------------------------------------------------------------------------

def ask_json(client, model: str, a: int, b: int):
    return client.post("/v1/chat/completions", {"model": model, "messages": [{"role": "user", "content": f"TASK: add {a} {b}"}],
                                                "response_format": {"type": "json_object"}})


def test_a_json_repair_route_strips_the_fence_and_the_plain_route_only_measures(client, stack):
    r = ask_json(client, "json-mini", 2, 3)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == '{"answer": 5}'
    assert int(r.headers["content-length"]) == len(r.content)
    assert client.record(r.headers["x-tollgate-request-id"])["json_check"] == {"valid": True, "repaired": True}
    r = ask_json(client, "openai/gpt-5.4-mini", 2, 3)
    assert r.json()["choices"][0]["message"]["content"].startswith("Here it is:\n```json")
    check = client.record(r.headers["x-tollgate-request-id"])["json_check"]
    assert check["valid"] is False and check["repaired"] is False
    # a schema the answer does not meet: invalid, and the error names the path, not the value
    r = client.post("/v1/chat/completions", {"model": "json-mini", "messages": [{"role": "user", "content": "TASK: add 2 3"}],
                    "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {
                        "type": "object", "required": ["answer", "unit"], "properties": {"answer": {"type": "integer"}}}}}})
    check = client.record(r.headers["x-tollgate-request-id"])["json_check"]
    assert check == {"valid": False, "repaired": True, "error": "$: missing 'unit'"}
    rows = wait_for(lambda: [x for x in stack.control.api("GET", "/v1/reports/json-compliance", expect=200)[1]["rows"]
                             if x["model"] == "gpt-5.4-mini" and x["asked"] >= 3], what="compliance")
    assert rows[0]["valid"] >= 1 and rows[0]["repaired"] >= 2 and rows[0]["compliance_pct"] < 100
    p = cli(stack, "json-compliance")
    assert p.returncode == 0 and "gpt-5.4-mini" in p.stdout, p.stderr


# ---- fallbacks ------------------------------------------------------------------------------------------

def test_a_failing_provider_falls_back_and_only_the_answer_is_charged(client):
    for status in ("500", "429", "503"):
        r = client.chat("resilient", content="Hello", headers={"x-mock-status": status})
        assert r.status_code == 200, (status, r.text)
        body = r.json()
        assert body["object"] == "chat.completion", "the Anthropic answer translated back to the client's API"
        assert r.headers["x-tollgate-provider"] == "anthropic" and r.headers["x-tollgate-fallback-attempts"] == "1"
        rec = client.record(r.headers["x-tollgate-request-id"])
        assert rec["attempts"] == [{"provider": "openai", "model": "gpt-5.4", "status": int(status)}]
        assert rec["provider"] == "anthropic" and rec["outcome"] == "ok"
        u = rec["usage"]
        assert rec["cost_micros"] == expected_cost("anthropic/claude-sonnet-4-6", u["input_tokens"], u["output_tokens"],
                                                   cached=u["cached_input_tokens"], cache_write=u["cache_write_tokens"])
        assert int(r.headers["x-tollgate-cost-micros"]) == rec["cost_micros"]


def test_a_stream_falls_back_before_its_first_byte(client):
    r = client.chat("resilient", content="Hello", extra={"stream": True}, headers={"x-mock-status": "500"}, stream=True)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    text, done = "", False
    for line in r.iter_lines():
        if line == b"data: [DONE]":
            done = True
        elif line.startswith(b"data: {"):
            for c in json.loads(line[6:]).get("choices", []):
                text += c["delta"].get("content") or ""
    assert done and text.startswith("Sure"), text
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert rec["provider"] == "anthropic" and len(rec["attempts"]) == 1 and rec["usage"]["output_tokens"] > 0


def test_client_errors_are_not_retried(client):
    r = client.chat("resilient", content="Hello", headers={"x-mock-status": "400"})
    assert r.status_code == 400
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert "attempts" not in rec and rec["provider"] == "openai"


# ---- capture, evaluations, the auto router -------------------------------------------------------------

PAIRS = [(a, b) for a in range(1, 5) for b in range(1, 4)]  # 12 tasks; half of the sums are even


@pytest.fixture(scope="module")
def captured(client, stack):
    for a, b in PAIRS:
        r = client.post("/v1/chat/completions", {"model": "openai/gpt-5.4", "messages": [{"role": "user", "content": f"TASK: add {a} {b}"}]},
                        headers={"x-tollgate-feature": "triage"})
        assert r.status_code == 200
        assert "capture" not in client.record(r.headers["x-tollgate-request-id"]), "prompts never go to a log"
    sets = wait_for(lambda: [s for s in stack.control.api("GET", "/v1/eval-sets", expect=200)[1]["sets"]
                             if s["feature"] == "triage" and s["items"] >= len(PAIRS)], what="captures")
    return sets[0]


def test_captures_are_kept_apart_from_records(stack, captured):
    _, body = stack.control.api("GET", "/v1/eval-sets/triage?bodies=true&limit=1", expect=200)
    item = body["items"][0]
    assert item["request"]["messages"][0]["content"].startswith("TASK: add")
    assert item["response"]["choices"][0]["message"]["content"].startswith("The answer is")
    assert "TASK: add" not in stack.envoy.log(), "captured text is shipped, not logged"


def test_an_evaluation_tells_a_good_cheap_model_from_a_bad_one_and_the_router_follows(client, stack, captured):
    status, _ = stack.control.api("PUT", "/v1/routing/triage", {"candidates": ["cheap", "default"], "threshold": 0.8,
                                                                "min_items": 10, "auto_promote": True})
    assert status == 200
    # before any evaluation: "auto" has nowhere to go
    r = client.post("/v1/chat/completions", {"model": "auto", "messages": [{"role": "user", "content": "hi"}]},
                    headers={"x-tollgate-feature": "triage"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "auto_route_unavailable"
    bad = cli(stack, "eval", "run", "--feature", "triage", "--candidate", "cheap", "--judge", "openai/gpt-5.4")
    assert bad.returncode == 0, bad.stderr
    assert "passed 6 " in bad.stdout and "pass rate 50.0%" in bad.stdout, bad.stdout
    good = cli(stack, "eval", "run", "--feature", "triage", "--candidate", "default", "--judge", "openai/gpt-5.4")
    assert "pass rate 100.0%" in good.stdout and "95% CI 75.7%" in good.stdout, good.stdout
    # the cheapest model that passed: promoted automatically, on every Envoy within seconds
    _, view = stack.control.api("GET", "/v1/routing/triage", expect=200)
    assert view["chosen"] == "default", view
    standing = {c["model"]: c for c in view["candidates"]}
    assert standing["cheap"]["eligible"] is False and standing["default"]["eligible"] is True
    assert standing["default"]["projected_monthly_saving_micros"] > 0
    shown = cli(stack, "routing", "show", "triage")
    assert "projected monthly saving" in shown.stdout.lower() and "default" in shown.stdout, shown.stdout

    def routed():
        r = client.post("/v1/chat/completions", {"model": "auto", "messages": [{"role": "user", "content": "TASK: add 1 1"}]},
                        headers={"x-tollgate-feature": "triage"})
        return r if r.status_code == 200 else None
    r = wait_for(routed, 10, "the pick to reach Envoy")
    assert r.headers["x-tollgate-model"] == "gpt-5.4-mini"
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert rec["routed_by"].startswith("auto: feature triage: default is the cheapest candidate"), rec["routed_by"]
    # rollback: an admin points it elsewhere (forced: no qualifying evaluation)
    p = cli(stack, "routing", "promote", "triage", "openai/gpt-5.4", "--force", "--by", "carol")
    assert p.returncode == 0, p.stderr
    wait_for(lambda: (x := routed()) and x.headers["x-tollgate-model"] == "gpt-5.4", 10, "the rollback")


def test_an_unreadable_judge_scores_nothing_and_a_run_keeps_to_its_budget(stack, captured):
    p = cli(stack, "eval", "run", "--feature", "triage", "--candidate", "default", "--judge", "openai/judge-broken")
    assert p.returncode == 0, p.stderr
    m = re.search(r"items (\d+)  scored 0  passed 0  unscored (\d+)  pass rate -", p.stdout)
    assert m and m.group(1) == m.group(2) and int(m.group(1)) >= 12, p.stdout
    p = cli(stack, "eval", "run", "--feature", "triage", "--candidate", "openai/gpt-5.4", "--budget-micros", "30")
    assert "stopped: the run's budget of 30 micro-dollars is spent" in p.stdout, p.stdout
    _, runs = stack.control.api("GET", "/v1/evals?feature=triage", expect=200)
    assert runs["evals"][0]["status"] == "stopped"


def test_an_evaluation_set_can_be_deleted(stack, captured):
    status, body = stack.control.api("POST", "/v1/evals", {"feature": "nothing-here", "candidate": "cheap"})
    assert status == 400 and "no captured requests" in body["error"]["message"]
    status, body = stack.control.api("POST", "/v1/evals", {"feature": "triage", "candidate": "cheap", "regex": ["("]})
    assert status == 400 and "regex[0]" in body["error"]["message"]
    p = cli(stack, "eval-sets", "delete", "triage")
    assert p.returncode == 0 and int(re.search(r"removed (\d+)", p.stdout).group(1)) >= 12, p.stdout
    _, sets = stack.control.api("GET", "/v1/eval-sets", expect=200)
    assert not [s for s in sets["sets"] if s["feature"] == "triage"]


def test_a_refused_connection_and_a_timeout_fall_back_too(stack, tmp_path):
    """An Envoy whose route `fragile` goes to a provider nobody listens for
    (Envoy answers 503 itself), and route `slow` to one that takes longer
    than the route's timeout (Envoy answers 504): both fall back."""
    def patch(c):
        c["providers"].append({"name": "dead", "format": "openai", "cluster": "dead", "host": "dead.invalid", "path_prefix": "/v1"})
        c["routes"][:0] = [{"model": "fragile", "provider": "dead", "upstream_model": "gpt-5.4", "fallbacks": ["openai/gpt-5.4"]},
                           {"model": "slow", "provider": "openai", "upstream_model": "gpt-5.4", "fallbacks": ["deepseek/deepseek-v4"]}]
        c["pricing"]["dead/gpt-5.4"] = {"input": 1, "output": 1}
    cfg = sm.demo_config(sm.free_port(), sm.free_port(), stack.mock.port, access_log=str(tmp_path / "access.log"),
                         plugin_patch=patch, control_port=stack.control.port)
    closed = sm.free_port()  # nobody listens here
    cfg["static_resources"]["clusters"].append({"name": "dead", "type": "STATIC", "connect_timeout": "0.5s", "load_assignment": {
        "cluster_name": "dead", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": closed}}}}]}]}})
    for vh in cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]["virtual_hosts"]:
        for route in vh["routes"]:
            route.setdefault("route", {})["timeout"] = "1s"
    e = sm.Envoy(cfg, tmp_path, concurrency=1, name="fragile")
    try:
        h = {"content-type": "application/json", "authorization": f"Bearer {SEARCH_KEY}"}
        r = requests.post(e.url + "/v1/chat/completions", json={"model": "fragile", "messages": [{"role": "user", "content": "hi"}]}, headers=h, timeout=30)
        assert r.status_code == 200 and r.headers["x-tollgate-provider"] == "openai", r.text
        r = requests.post(e.url + "/v1/chat/completions", json={"model": "slow", "messages": [{"role": "user", "content": "hi"}]},
                          headers={**h, "x-mock-delay-ms": "3000"}, timeout=30)
        assert r.status_code == 200 and r.headers["x-tollgate-provider"] == "deepseek", r.text
        time.sleep(0.5)
        recs = e.usage_records()
        assert [a["status"] for rec in recs for a in rec.get("attempts", [])] == [503, 504], recs
    finally:
        e.stop()
