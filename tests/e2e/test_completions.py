"""`POST /v1/completions` (OpenAI's legacy text completions) through Envoy:
the stock SDK, JSON and streams, the API's own 16-token default as the
reservation's bound, and real api.openai.com responses replayed
(tests/captures)."""
from __future__ import annotations

import json

import openai
import pytest

from conftest import SEARCH_KEY, expected_cost, sse_data

MODEL = "gpt-3.5-turbo-instruct"


def test_openai_sdk_completion_is_priced_and_recorded(oai, client):
    raw = oai.completions.with_raw_response.create(model=MODEL, prompt="Say this is a test", max_tokens=7)
    r = raw.parse()
    assert r.object == "text_completion" and r.choices[0].text.startswith("Sure")
    assert r.usage.completion_tokens == 7
    cost = expected_cost(f"openai/{MODEL}", r.usage.prompt_tokens, 7)
    assert int(raw.headers["x-tollgate-cost-micros"]) == cost
    rec = client.record(raw.headers["x-tollgate-request-id"])
    assert rec["api"] == "openai_completions" and rec["model_upstream"] == MODEL and rec["cost_micros"] == cost
    assert rec["usage"]["output_tokens"] == 7 and rec["usage_source"] == "provider"


def test_openai_sdk_stream_gets_usage_forced_and_hidden(oai, client):
    stream = oai.completions.with_raw_response.create(model=MODEL, prompt="Stream it", max_tokens=5, stream=True)
    rid = stream.headers["x-tollgate-request-id"]
    chunks = list(stream.parse())
    assert "".join(c.choices[0].text for c in chunks if c.choices).startswith("Sure")
    assert all(c.usage is None for c in chunks), "the client did not ask for usage: it gets none"
    rec = client.record(rid)
    assert rec["usage_source"] == "provider" and rec["usage"]["output_tokens"] == 5
    assert rec["cost_micros"] == expected_cost(f"openai/{MODEL}", rec["usage"]["input_tokens"], 5)
    assert rec["stream"] is True


def test_without_max_tokens_the_apis_default_applies_and_nothing_is_added(client):
    # The mock refuses unknown members as OpenAI does: a cap added by the
    # gateway (max_completion_tokens) would be a 400 here.
    r = client.post("/v1/completions", {"model": MODEL, "prompt": "Go on"}, headers={"x-mock-output-tokens": "40"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["usage"]["completion_tokens"] == 16 and body["choices"][0]["finish_reason"] == "length"
    assert r.headers["x-tollgate-output-tokens"] == "16"


def test_real_openai_completions_are_priced_exactly(client):
    """Recorded from api.openai.com (babbage-002): 31 prompt and 25 completion tokens."""
    cost = expected_cost("openai/babbage-002", 31, 25)
    r = client.post("/v1/completions", {"model": "openai/babbage-002", "prompt": "def fib(n):", "max_tokens": 25},
                    headers={"x-mock-replay": "openai_completion.json"})
    assert r.status_code == 200 and r.json()["usage"]["total_tokens"] == 56
    assert int(r.headers["x-tollgate-cost-micros"]) == cost == 23
    r = client.post("/v1/completions", {"model": "openai/babbage-002", "prompt": "def fib(n):", "max_tokens": 25,
                                        "stream": True, "stream_options": {"include_usage": True}},
                    headers={"x-mock-replay": "openai_completion_stream_usage.sse", "x-mock-chunk-bytes": "61"})
    data = sse_data(r.text)
    assert json.loads(data[-2])["usage"]["completion_tokens"] == 25, "asked for: kept"
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert rec["cost_micros"] == cost and rec["usage"]["input_tokens"] == 31


def test_completions_are_refused_where_they_cannot_go(client):
    r = client.post("/v1/completions", {"model": "anthropic/claude-sonnet-4-6", "prompt": "x"})
    assert r.status_code == 400 and "no OpenAI completions API" in r.json()["error"]["message"]
    r = client.post("/v1/completions", {"model": MODEL, "messages": []})
    assert r.status_code == 400 and r.json()["error"]["code"] == "missing_prompt"
    r = client.post("/v1/completions", {"model": MODEL, "prompt": "x", "best_of": 0})
    assert r.status_code == 400 and r.json()["error"]["param"] == "best_of"
    r = client.post("/v1/completions", {"model": MODEL, "prompt": "", "max_tokens": -1})
    assert r.status_code == 400
