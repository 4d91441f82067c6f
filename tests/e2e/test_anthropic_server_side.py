"""What Anthropic runs server-side inside one /v1/messages request, beyond
the model the route names, and how the gateway holds it to the budget.

- Server-side compaction (`context_management` with a `compact_*` edit):
  its summarising pass is billed at the model's rates but reported apart,
  in `usage.iterations`, "not included in the top-level usage fields"
  (anthropic-sdk-python `types/beta/beta_usage.py`). It was not charged.
- The advisor tool (Claude Code's `/advisor`) runs another model whose
  tokens are likewise apart (ccusage/ccusage#1115: a real turn whose Opus
  advisor was 90 % of the cost). It was refused; it is now held to the
  key, routed, priced, reserved, and recorded as the advisor model's own
  record beside the request's.
- Server-side `fallbacks` let other models serve: a key limited to one
  model could have another answer, priced as the first or not at all.
  Refused before sending."""
from __future__ import annotations

import json

import requests

from conftest import LABS_KEY, expected_cost, error_of, sse_data

BETA = {"anthropic-beta": "compact-2026-01-12", "x-mock-compaction-tokens": "180000,3000"}
COMPACT = {"edits": [{"type": "compact_20260112", "trigger": {"type": "input_tokens", "value": 150000}}]}
MODEL = "anthropic/claude-sonnet-4-6"


def served(stack) -> int:
    return requests.get(stack.mock.url + "/mock/stats", timeout=5).json()["requests"]


def test_a_compaction_pass_is_charged_beside_the_answer(client):
    r = client.messages(MODEL, headers=BETA, extra={"context_management": COMPACT})
    assert r.status_code == 200, r.text
    u = r.json()["usage"]
    assert [i["type"] for i in u["iterations"]] == ["compaction", "message"]
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert (rec["usage"]["input_tokens"], rec["usage"]["output_tokens"]) == (u["input_tokens"] + 180_000, u["output_tokens"] + 3000), rec
    assert rec["cost_micros"] == expected_cost(MODEL, u["input_tokens"] + 180_000, u["output_tokens"] + 3000)
    assert int(r.headers["x-tollgate-cost-micros"]) == rec["cost_micros"]
    # The same in a stream, from the message_delta that lists the passes.
    r = client.messages(MODEL, headers=BETA, extra={"context_management": COMPACT, "stream": True})
    assert r.status_code == 200, r.text
    deltas = [e for e in map(json.loads, sse_data(r.text)) if e.get("type") == "message_delta"]
    assert deltas and deltas[-1]["usage"]["iterations"][0]["type"] == "compaction"
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert rec["usage"]["input_tokens"] > 180_000 and rec["usage"]["output_tokens"] > 3000, rec
    # Without compaction asked, nothing is added.
    r = client.messages(MODEL, headers=BETA)
    assert "iterations" not in r.json()["usage"] and client.record(r.headers["x-tollgate-request-id"])["usage"]["input_tokens"] < 1000


ADVISOR = {"tools": [{"type": "advisor_20260301", "name": "advisor", "model": "claude-opus-4-8"}]}
ADVISOR_BETA = {"anthropic-beta": "advisor-tool-2026-03-01", "x-mock-advisor-tokens": "20000,900"}
OPUS = "anthropic/claude-opus-4-8"


def records_of(client, r) -> tuple[dict, dict]:
    rid = r.headers["x-tollgate-request-id"]
    return client.record(rid), client.record(rid + "-advisor")


def test_an_advisors_calls_are_the_advisor_models_own_record(stack, client):
    """Claude Code's form of the tool (a model, no bounds), as the Anthropic SDK sends it."""
    import anthropic
    claude = anthropic.Anthropic(base_url=stack.url, api_key=LABS_KEY, max_retries=0)
    raw = claude.beta.messages.with_raw_response.create(
        model="claude-sonnet-4-6", max_tokens=200, betas=["advisor-tool-2026-03-01"],
        tools=ADVISOR["tools"], messages=[{"role": "user", "content": "Plan the migration."}],
        extra_headers={"x-mock-advisor-tokens": "20000,900"})
    m = raw.parse()
    assert [b.type for b in m.content] == ["server_tool_use", "advisor_tool_result", "text"]
    advice = [i for i in m.usage.iterations if i.type == "advisor_message"]
    assert [(i.model, i.input_tokens, i.output_tokens) for i in advice] == [("claude-opus-4-8", 20000, 900)]
    main, adv = records_of(client, raw)
    # The request's record: the executor's tokens, the top level.
    assert (main["model_upstream"], main["usage"]["output_tokens"]) == ("claude-sonnet-4-6", m.usage.output_tokens)
    assert main["cost_micros"] == expected_cost(MODEL, m.usage.input_tokens, m.usage.output_tokens)
    # The advisor's: its model, its tokens at its price, the same key and team, linked to the request.
    assert (adv["model_upstream"], adv["route"], adv["routed_by"]) == ("claude-opus-4-8", "claude-*", "advisor: " + main["id"])
    assert (adv["usage"]["input_tokens"], adv["usage"]["output_tokens"]) == (20000, 900)
    assert adv["cost_micros"] == expected_cost(OPUS, 20000, 900) == 100_000 + 22_500
    assert (adv["key_id"], adv["team"], adv["outcome"], adv["priced"]) == (main["key_id"], main["team"], "ok", True)
    # What the client is told the request cost includes the advisor's.
    assert int(raw.headers["x-tollgate-cost-micros"]) == main["cost_micros"] + adv["cost_micros"]
    # The same from a stream's message_delta.
    with claude.beta.messages.stream(model="claude-sonnet-4-6", max_tokens=200, betas=["advisor-tool-2026-03-01"], tools=ADVISOR["tools"],
                                     messages=[{"role": "user", "content": "Plan it."}], extra_headers={"x-mock-advisor-tokens": "30000,1200"}) as st:
        final = st.get_final_message()
        rid = st.response.headers["x-tollgate-request-id"]
    assert [b.type for b in final.content] == ["server_tool_use", "advisor_tool_result", "text"]
    adv = client.record(rid + "-advisor")
    assert (adv["usage"]["input_tokens"], adv["usage"]["output_tokens"], adv["cost_micros"]) == (30000, 1200, expected_cost(OPUS, 30000, 1200))


def test_an_advisor_the_gateway_cannot_hold_is_refused_before_anything_is_sent(stack, client):
    beta = {"anthropic-beta": "advisor-tool-2026-03-01"}
    # An unpriced advisor, under the demo's `unpriced_models: allow`: served and
    # recorded unpriced, as any unpriced model (`deny` refuses it: unit tests).
    r = client.messages(MODEL, headers=beta, extra={"tools": [{"type": "advisor_20260301", "name": "advisor", "model": "claude-opus-4-1"}]})
    assert r.status_code == 200, r.text
    adv = client.record(r.headers["x-tollgate-request-id"] + "-advisor")
    assert (adv["model_upstream"], adv["priced"], adv["cost_micros"]) == ("claude-opus-4-1", False, 0)
    before = served(stack)
    # A model this gateway routes to another provider: the advisor is Anthropic's.
    for model, status, code in (("gpt-5.4", 400, "unsupported_field"), ("deepseek/deepseek-v4", 400, "unsupported_field")):
        tools = {"tools": [{"type": "advisor_20260301", "name": "advisor", "model": model}]}
        r = client.messages(MODEL, headers=beta, extra=tools)
        assert r.status_code == status, r.text
        e = error_of(r)
        assert (e.get("code"), e.get("param")) == (code, "tools"), e
        rec = client.record(r.headers["x-tollgate-request-id"])
        assert (rec["outcome"], rec["error_code"], rec["cost_micros"]) == ("rejected", code, 0)
    # Bounds that are not whole numbers (one tool's type spelled with a JSON
    # escape), two advisors: refused, never read as no advisor.
    two = [ADVISOR["tools"][0], ADVISOR["tools"][0]]
    for tools, escaped in (([{**ADVISOR["tools"][0], "max_uses": -1}], False), ([{**ADVISOR["tools"][0], "max_tokens": "9"}], True), (two, False)):
        body = json.dumps({"model": MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}], "tools": tools})
        if escaped:
            body = body.replace('"advisor_20260301"', '"\\u0061dvisor_20260301"')
            assert "\\u0061dvisor" in body
        r = client.post("/v1/messages", raw=body.encode(), headers=beta, auth="x-api-key")
        assert r.status_code == 400 and error_of(r)["param"] == "tools", r.text
    # A model served by another provider cannot be advised (the advisor is Anthropic's).
    r = client.messages("openai/gpt-5.4", headers=beta, extra=ADVISOR)
    assert r.status_code == 400 and error_of(r)["param"] == "tools", r.text
    r = client.messages(MODEL, key=LABS_KEY, extra={"fallbacks": [{"model": "claude-opus-4-7"}]})
    assert r.status_code == 400 and error_of(r)["param"] == "fallbacks", r.text
    assert served(stack) == before, "nothing reached the provider"
    # A count runs no model: the advisor tool may be counted.
    r = client.post("/v1/messages/count_tokens", {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], **ADVISOR},
                    auth="x-api-key", headers={"anthropic-version": "2023-06-01"})
    assert r.status_code == 200 and r.json()["input_tokens"] > 0, r.text


LOOP = {"x-mock-web-searches": "3", "x-mock-output-tokens": "16", "x-mock-search-turn-tokens": "16",
        "x-mock-search-result-tokens": "300"}


def test_a_server_tool_loop_is_charged_every_call(client):
    """Anthropic runs server tools in a loop of model calls inside the one
    request, each reading the context so far and writing up to `max_tokens`
    ("A request that uses server tools can call the model more than once, so
    `usage.output_tokens` can exceed `max_tokens`", anthropic-sdk-python
    2.17; the real stream tests/captures/anthropic_stream_web_search.sse
    reads 2,679 input tokens in `message_start` and reports 10,682 at its
    end). The summed usage is charged as reported, past the cap, JSON and
    stream; a stream is charged its `message_delta` totals, not the first
    call's `message_start`."""
    search = [{"type": "web_search_20250305", "name": "web_search", "max_uses": 3}]
    extra = {"max_tokens": 16, "tools": search}
    r = client.messages(MODEL, "Any news about the loop?", headers=LOOP, extra=extra)
    assert r.status_code == 200, r.text
    u = r.json()["usage"]
    assert (u["output_tokens"], u["server_tool_use"]) == (4 * 16, {"web_search_requests": 3}), u
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert (rec["usage"]["input_tokens"], rec["usage"]["output_tokens"], rec["usage"]["web_search_requests"]) == (u["input_tokens"], 64, 3), rec
    assert rec["cost_micros"] == expected_cost(MODEL, u["input_tokens"], 64) + 3 * 10_000 == int(r.headers["x-tollgate-cost-micros"])
    r = client.messages(MODEL, "Any news about the loop?", headers=LOOP, extra={**extra, "stream": True})
    assert r.status_code == 200, r.text
    events = [json.loads(d) for d in sse_data(r.text)]
    first = next(e for e in events if e["type"] == "message_start")["message"]["usage"]["input_tokens"]
    total = [e for e in events if e["type"] == "message_delta"][-1]["usage"]
    assert first < total["input_tokens"] and total["output_tokens"] == 64, (first, total)
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert (rec["usage"]["input_tokens"], rec["usage"]["output_tokens"]) == (total["input_tokens"], 64), rec
    assert rec["cost_micros"] == expected_cost(MODEL, total["input_tokens"], 64) + 3 * 10_000
