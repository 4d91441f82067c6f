"""The mock caches prompts like the providers (tests/mock-provider/src/prefix_cache.rs):
a request is served from the cache only when its prefix is byte-for-byte one
sent recently and long enough. Through Tollgate that shows the classic
mistake in numbers: a timestamp at the top of the system prompt makes every
prefix new (hit rate 0 %, full price); the same prompt with the timestamp at
the end is read from the cache from the second request on, and the reports
say so per feature."""
from __future__ import annotations

import os
import subprocess
import time

import requests

import stack as sm
from conftest import PRICES, SEARCH_KEY, expected_cost

INSTRUCTIONS = "You are the support assistant of Example Corp. " + "Follow the policy manual section by section. " * 150


def ask(client, system: str, feature: str, question: str = "Where is my order?"):
    r = client.post("/v1/chat/completions", {"model": "openai/gpt-5.4", "messages": [
        {"role": "system", "content": system}, {"role": "user", "content": question}]},
        headers={"x-tollgate-feature": feature})
    assert r.status_code == 200, r.text
    return r


def test_a_timestamp_at_the_top_busts_the_cache_and_at_the_end_it_does_not(client, stack):
    busted, kept = [], []
    for i in range(4):
        now = f"{time.time_ns()}-{i}"
        busted.append(ask(client, f"Current time: {now}\n" + INSTRUCTIONS, "cache-busted"))
        kept.append(ask(client, INSTRUCTIONS + f"\nCurrent time: {now}", "cache-kept"))
    assert all(int(r.headers["x-tollgate-cached-input-tokens"]) == 0 for r in busted)
    cached = [int(r.headers["x-tollgate-cached-input-tokens"]) for r in kept]
    assert cached[0] == 0 and all(c >= 1024 and c % 128 == 0 for c in cached[1:]), cached
    # priced at the cached rate
    r = kept[-1]
    u = r.json()["usage"]
    assert int(r.headers["x-tollgate-cost-micros"]) == expected_cost(
        "openai/gpt-5.4", u["prompt_tokens"], u["completion_tokens"], cached=u["prompt_tokens_details"]["cached_tokens"])
    # the reports tell the two features apart (records reach the control service within a flush)
    deadline = time.monotonic() + 15
    while True:
        _, rep = stack.control.api("GET", "/v1/reports/spend?group_by=feature", expect=200)
        rows = {row["feature"]: row for row in rep["rows"] if row.get("feature") in ("cache-busted", "cache-kept")}
        if len(rows) == 2 and rows["cache-kept"]["requests"] >= 4 and rows["cache-busted"]["requests"] >= 4:
            break
        assert time.monotonic() < deadline, rep
        time.sleep(0.3)
    assert rows["cache-busted"]["cache_hit_rate_pct"] == 0.0
    assert rows["cache-kept"]["cache_hit_rate_pct"] > 50.0
    assert rows["cache-kept"]["cost_micros"] < rows["cache-busted"]["cost_micros"]
    # the detector names the culprit in each record after the first, and what it cost
    for r in busted[1:]:
        miss = client.record(r.headers["x-tollgate-request-id"])["cache_miss"]
        assert (miss["reason"], miss["segment"], miss["offset"]) == ("prefix_changed", "system", 0), miss
        # the instructions after the timestamp (~1,700 tokens) at $2.50 - $0.25 per million
        assert 3_000 <= miss["lost_micros"] <= 5_000, miss
    assert all("cache_miss" not in client.record(r.headers["x-tollgate-request-id"]) for r in kept[1:])
    # aggregated: one sentence per feature, in the API, the CLI and the monthly review
    deadline = time.monotonic() + 15
    while True:
        _, rep = stack.control.api("GET", "/v1/reports/cache-misses?feature=cache-busted", expect=200)
        if rep["rows"] and rep["rows"][0]["requests"] >= 3:
            break
        assert time.monotonic() < deadline, rep
        time.sleep(0.3)
    row = rep["rows"][0]
    assert row["finding"].startswith("feature cache-busted (prompt (none)) lost $0.0") and \
        row["finding"].endswith("the system prompt's first bytes change on every request"), row
    env = {**os.environ, "TOLLGATE_URL": stack.control.url, "TOLLGATE_ADMIN_TOKEN": sm.ADMIN_TOKEN}
    out = subprocess.run([str(sm.TOLLGATE_BIN), "cache-misses", "--feature", "cache-busted"], capture_output=True, text=True,
                         env=env, timeout=30, check=True).stdout
    assert row["finding"] in out and "prefix_changed" in out
    text = requests.get(stack.control.url + "/v1/reports/monthly", headers={"authorization": f"Bearer {sm.ADMIN_TOKEN}"}, timeout=10).text
    assert "## Prompt-cache misses" in text and "feature cache-busted" in text, text


def test_anthropic_markers_below_the_minimum_or_missing_are_explained(client):
    short = {"model": "claude-sonnet-4-6", "max_tokens": 50,
             "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
             "messages": [{"role": "user", "content": "Hi"}]}
    r = client.post("/v1/messages", short, key=SEARCH_KEY, auth="x-api-key", headers={"x-tollgate-feature": "short-marker"})
    miss = client.record(r.headers["x-tollgate-request-id"])["cache_miss"]
    assert miss["reason"] == "marker_below_minimum" and miss["offset"] < 200, miss
    plain = {"model": "claude-sonnet-4-6", "max_tokens": 50, "system": INSTRUCTIONS, "messages": [{"role": "user", "content": "Hi"}]}
    ids = [client.post("/v1/messages", plain, key=SEARCH_KEY, auth="x-api-key", headers={"x-tollgate-feature": "no-marker"})
           .headers["x-tollgate-request-id"] for _ in range(2)]
    assert "cache_miss" not in client.record(ids[0]), "nothing to compare with yet"
    assert client.record(ids[1])["cache_miss"]["reason"] == "no_cache_marker"


def test_anthropic_caches_only_at_its_breakpoints_and_above_the_minimum(client):
    system = [{"type": "text", "text": INSTRUCTIONS, "cache_control": {"type": "ephemeral"}}]
    body = {"model": "claude-sonnet-4-6", "max_tokens": 50, "system": system,
            "messages": [{"role": "user", "content": f"Question {time.time_ns()}"}]}
    first = client.post("/v1/messages", body, key=SEARCH_KEY, auth="x-api-key").json()["usage"]
    body["messages"][0]["content"] = f"Another question {time.time_ns()}"
    second = client.post("/v1/messages", body, key=SEARCH_KEY, auth="x-api-key").json()["usage"]
    assert first["cache_creation_input_tokens"] >= 1024 and first["cache_read_input_tokens"] == 0
    assert second["cache_read_input_tokens"] == first["cache_creation_input_tokens"] and second["cache_creation_input_tokens"] == 0
    # without a marker nothing is cached, however long and repeated
    plain = {"model": "claude-sonnet-4-6", "max_tokens": 50, "system": INSTRUCTIONS,
             "messages": [{"role": "user", "content": "Hi"}]}
    for _ in range(2):
        u = client.post("/v1/messages", plain, key=SEARCH_KEY, auth="x-api-key").json()["usage"]
        assert u["cache_read_input_tokens"] == 0 and u["cache_creation_input_tokens"] == 0


def test_a_prompt_version_that_loses_the_cache_raises_an_alert(client, stack):
    def run(version: str, system_for) -> None:
        for i in range(6):
            r = client.post("/v1/chat/completions", {"model": "openai/gpt-5.4", "messages": [
                {"role": "system", "content": system_for(f"{time.time_ns()}-{i}")}, {"role": "user", "content": "Hi"}]},
                headers={"x-tollgate-feature": "faq-bot", "x-tollgate-prompt-version": version})
            assert r.status_code == 200, r.text
    run("faq@1", lambda now: INSTRUCTIONS + f"\nCurrent time: {now}")      # cached from the second request on
    time.sleep(0.05)
    run("faq@2", lambda now: f"Current time: {now}\n" + INSTRUCTIONS)      # the new version put the time on top
    deadline = time.monotonic() + 15
    while True:
        stack.control.api("POST", "/v1/cache-alerts/check", expect=200)
        _, body = stack.control.api("GET", "/v1/alerts", expect=200)
        found = [a for a in body["cache_alerts"] if a["feature"] == "faq-bot"]
        if found:
            break
        assert time.monotonic() < deadline, body
        time.sleep(0.3)
    a = found[0]
    assert (a["prompt_version"], a["previous_version"]) == ("faq@2", "faq@1")
    assert a["hit_before_permille"] > 500 and a["hit_after_permille"] == 0, a
    env = {**os.environ, "TOLLGATE_URL": stack.control.url, "TOLLGATE_ADMIN_TOKEN": sm.ADMIN_TOKEN}
    out = subprocess.run([str(sm.TOLLGATE_BIN), "alerts"], capture_output=True, text=True, env=env, timeout=30, check=True).stdout
    assert "faq-bot" in out and "faq@2" in out and "0.0%" in out, out


def test_anthropics_own_cache_diagnosis_is_what_the_record_says(client, stack):
    """A client that asks Anthropic why its cache missed (`diagnostics`
    naming its previous message) gets the provider's answer, and the
    record takes it over the gateway's own fingerprint: what changed (the
    system prompt, earlier messages, the model) and what it cost, in the
    record and in the report's finding."""
    import anthropic
    claude = anthropic.Anthropic(base_url=stack.url, api_key=SEARCH_KEY, max_retries=0,
                                 default_headers={"x-tollgate-feature": "diagnosed"})
    system = [{"type": "text", "text": INSTRUCTIONS, "cache_control": {"type": "ephemeral"}}]
    ask = [{"role": "user", "content": "Where is my order?"}]
    first = claude.messages.create(model="claude-sonnet-4-6", max_tokens=20, system=system, messages=ask,
                                   diagnostics={"previous_message_id": None})
    assert first.diagnostics is None, "opted in, nothing to compare yet"
    changed = [{"type": "text", "text": f"Today is {time.time_ns()}. " + INSTRUCTIONS, "cache_control": {"type": "ephemeral"}}]
    raw = claude.messages.with_raw_response.create(model="claude-sonnet-4-6", max_tokens=20, system=changed, messages=ask,
                                                   diagnostics={"previous_message_id": first.id})
    m = raw.parse()
    said = m.diagnostics.cache_miss_reason
    assert said.type == "system_changed" and said.cache_missed_input_tokens > 1000, said
    miss = client.record(raw.headers["x-tollgate-request-id"])["cache_miss"]
    assert (miss["reason"], miss["segment"], miss.get("offset")) == ("prefix_changed", "system", None), miss
    uncached = m.usage.input_tokens + (m.usage.cache_creation_input_tokens or 0)
    price = PRICES["anthropic/claude-sonnet-4-6"]
    per_million = price["input"] - price["cached_input"]
    assert miss["lost_micros"] == -(-min(said.cache_missed_input_tokens, uncached) * per_million // 1_000_000) > 0, miss
    # Another model keeps its own cache: the provider says so, in a stream too.
    with claude.messages.stream(model="claude-opus-4-8", max_tokens=20, system=changed, messages=ask,
                                diagnostics={"previous_message_id": m.id}) as s:
        final = s.get_final_message()
        rid = s.response.headers["x-tollgate-request-id"]
    assert final.diagnostics.cache_miss_reason.type == "model_changed"
    assert client.record(rid)["cache_miss"]["reason"] == "model_changed"
    deadline = time.monotonic() + 15
    while True:
        _, rep = stack.control.api("GET", "/v1/reports/cache-misses?feature=diagnosed", expect=200)
        findings = [r["finding"] for r in rep["rows"]]
        if len(findings) >= 2:
            break
        assert time.monotonic() < deadline, rep
        time.sleep(0.3)
    assert any(f.endswith("the system prompt changes between requests (the provider's diagnosis)") for f in findings), findings
    assert any(f.endswith("requests switch between models or speeds, and each keeps its own cache (the provider's diagnosis)") for f in findings), findings
