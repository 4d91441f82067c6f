"""`POST /v1/embeddings` through Envoy: keys, routing, pricing per input token,
the usage record — with the stock OpenAI SDK (which asks for base64 vectors
by default) and a real api.openai.com response replayed (tests/captures)."""
from __future__ import annotations

import base64
import struct

import openai
import pytest

from conftest import RESTRICTED_KEY, SEARCH_KEY, expected_cost

MODEL = "text-embedding-3-small"


def test_openai_sdk_embeddings_are_priced_and_recorded(oai, client):
    raw = oai.embeddings.with_raw_response.create(model=MODEL, input=["How do I reset my password?", "And my key?"])
    r = raw.parse()
    assert [d.index for d in r.data] == [0, 1]
    assert len(r.data[0].embedding) == 1536, "the SDK decoded the base64 vector"
    tokens = r.usage.prompt_tokens
    assert tokens > 0 and r.usage.total_tokens == tokens
    cost = expected_cost(f"openai/{MODEL}", tokens, 0)
    assert int(raw.headers["x-tollgate-cost-micros"]) == cost
    assert raw.headers["x-tollgate-input-tokens"] == str(tokens)
    assert raw.headers["x-tollgate-output-tokens"] == "0"
    rec = client.record(raw.headers["x-tollgate-request-id"])
    assert rec["api"] == "openai_embeddings" and rec["provider"] == "openai" and rec["model_upstream"] == MODEL
    assert rec["usage"]["input_tokens"] == tokens and rec["usage"]["output_tokens"] == 0
    assert rec["usage_source"] == "provider" and rec["cost_micros"] == cost and rec["outcome"] == "ok"
    assert rec["stream"] is False


def test_float_vectors_and_token_id_input_pass_through_unchanged(client):
    r = client.post("/v1/embeddings", {"model": f"openai/{MODEL}", "input": [4438, 656, 358, 7738],
                                       "encoding_format": "float", "dimensions": 8})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["data"][0]["embedding"]) == 8
    assert body["usage"] == {"prompt_tokens": 4, "total_tokens": 4}
    assert r.headers["x-mock-path"] == "/v1/embeddings"
    # base64 on request: little-endian float32, as OpenAI sends it
    r = client.post("/v1/embeddings", {"model": MODEL, "input": "abc", "encoding_format": "base64", "dimensions": 4})
    raw = base64.b64decode(r.json()["data"][0]["embedding"])
    assert len(struct.unpack("<4f", raw)) == 4


def test_a_real_openai_embeddings_response_is_priced_exactly(client):
    """tests/captures/openai_embeddings.json: recorded from api.openai.com, 33 KB, usage at the end."""
    r = client.post("/v1/embeddings", {"model": MODEL, "input": "How do I reset my password?"},
                    headers={"x-mock-replay": "openai_embeddings.json", "x-mock-chunk-bytes": "1000"})
    assert r.status_code == 200
    assert len(r.json()["data"][0]["embedding"]) == 1536
    assert r.headers["x-tollgate-input-tokens"] == "7"
    assert int(r.headers["x-tollgate-cost-micros"]) == expected_cost(f"openai/{MODEL}", 7, 0) == 1


def test_embeddings_are_refused_where_they_cannot_go(client):
    # Anthropic has no embeddings API
    r = client.post("/v1/embeddings", {"model": "anthropic/claude-sonnet-4-6", "input": "x"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "wrong_api_for_model"
    assert "no OpenAI embeddings API" in r.json()["error"]["message"]
    # a chat body on the embeddings path
    r = client.post("/v1/embeddings", {"model": MODEL, "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 400 and r.json()["error"]["code"] == "missing_input"
    # the key's model list applies
    r = client.post("/v1/embeddings", {"model": MODEL, "input": "x"}, key=RESTRICTED_KEY)
    assert r.status_code == 403 and r.json()["error"]["code"] == "model_not_allowed"
    # no key
    r = client.post("/v1/embeddings", {"model": MODEL, "input": "x"}, key=None)
    assert r.status_code == 401


def test_what_openai_refuses_is_refused_by_the_provider_and_costs_nothing(client):
    r = client.post("/v1/embeddings", {"model": MODEL, "input": "x", "stream": True})
    assert r.status_code == 400
    assert r.json()["error"]["message"] == "Unrecognized request argument supplied: stream"
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert rec["cost_micros"] == 0 and rec["outcome"] == "provider_error" and rec["api"] == "openai_embeddings"
    r = client.post("/v1/embeddings", {"model": MODEL, "input": "x", "dimensions": -1})
    assert r.status_code == 400 and r.json()["error"]["message"] == "-1 is less than the minimum of 1 - 'dimensions'"


def test_mock_embeddings_have_the_shape_of_the_real_response(client):
    import json

    from test_replay import CAPTURES, missing, shape
    real = json.loads((CAPTURES / "openai_embeddings.json").read_text())
    r = client.post("/v1/embeddings", {"model": MODEL, "input": "shape", "encoding_format": "float"})
    assert r.status_code == 200, r.text
    assert not missing(shape(real), shape(r.json()))
    assert list(r.json()["usage"]) == ["prompt_tokens", "total_tokens"]
