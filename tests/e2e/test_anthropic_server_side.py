"""What Anthropic runs server-side inside one /v1/messages request, beyond
the model the route names, and how the gateway holds it to the budget.

- Server-side compaction (`context_management` with a `compact_*` edit):
  its summarising pass is billed at the model's rates but reported apart,
  in `usage.iterations`, "not included in the top-level usage fields"
  (anthropic-sdk-python `types/beta/beta_usage.py`). It was not charged.
- The advisor tool (Claude Code's `/advisor`) runs another model whose
  tokens are likewise apart (ccusage/ccusage#1115: a real turn whose Opus
  advisor was 90 % of the cost), and server-side `fallbacks` let other
  models serve: a key limited to one model could have another answer,
  priced as the first or not at all. Both are refused before sending."""
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


def test_an_advisor_or_server_side_fallback_is_refused_before_anything_is_sent(stack, client):
    before = served(stack)
    advisor = {"tools": [{"type": "advisor_20260301", "name": "advisor", "model": "claude-opus-4-7"}]}
    r = client.messages(MODEL, headers={"anthropic-beta": "advisor-tool-2026-03-01"}, extra=advisor)
    assert r.status_code == 400, r.text
    e = error_of(r)
    assert (e["code"], e["param"]) == ("unsupported_field", "tools") and "advisor" in e["message"]
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert (rec["outcome"], rec["error_code"], rec["cost_micros"]) == ("rejected", "unsupported_field", 0)
    r = client.messages(MODEL, key=LABS_KEY, extra={"fallbacks": [{"model": "claude-opus-4-7"}]})
    assert r.status_code == 400 and error_of(r)["param"] == "fallbacks", r.text
    assert served(stack) == before, "nothing reached the provider"
    # A count runs no model: the advisor tool may be counted.
    r = client.post("/v1/messages/count_tokens", {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], **advisor},
                    auth="x-api-key", headers={"anthropic-version": "2023-06-01"})
    assert r.status_code == 200 and r.json()["input_tokens"] > 0, r.text
