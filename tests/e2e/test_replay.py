"""Real provider traffic (tests/captures/, sources in its README) replayed byte
for byte through Envoy + Tollgate at awkward chunk sizes; every token count and
cost below is worked out by hand from the capture and the demo prices
(conftest.PRICES, µ$ per million tokens; 1.25x / 2x input for 5-minute /
1-hour cache writes; $10 per 1,000 web searches). Then the mock is held to the
same shapes as the captures."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import LABS_KEY, SEARCH_KEY, sse_data

CAPTURES = Path(__file__).resolve().parents[1] / "captures"

# (capture, client api, model, stream, client asks include_usage,
#  expected usage, cost µ$, outcome, usage_source)
CASES = [
    # 12 x 2.5 + 100 x 15 = 30 + 1500
    ("openai_chat_reasoning.json", "openai", "openai/gpt-5.4", False, False,
     dict(input_tokens=12, cached_input_tokens=0, cache_write_tokens=0, output_tokens=100, reasoning_tokens=100), 1530,
     "ok", "provider"),
    # same counts; streamed, the usage chunk is removed again for this client
    ("openai_chat_stream_usage.sse", "openai", "openai/gpt-5.4", True, False,
     dict(input_tokens=12, cached_input_tokens=0, cache_write_tokens=0, output_tokens=100, reasoning_tokens=99), 1530,
     "ok", "provider"),
    # 32 x 2.5 + 4096 x 0.25 + 15872 x 3.125 + 120 x 15 = 80 + 1024 + 49600 + 1800
    ("openai_chat_cache_write.json", "openai", "openai/gpt-5.4", False, False,
     dict(input_tokens=20000, cached_input_tokens=4096, cache_write_tokens=15872, output_tokens=120,
          reasoning_tokens=64), 52504, "ok", "provider"),
    # 21 x 3 + 1800 x 0.3 + 500 x 3.75 + 2000 x 6 + 393 x 15 = 63 + 540 + 1875 + 12000 + 5895
    ("anthropic_message_cache_1h.json", "anthropic", "claude-sonnet-4-6", False, False,
     dict(input_tokens=4321, cached_input_tokens=1800, cache_write_tokens=2500, output_tokens=393,
          cache_write_1h_tokens=2000), 20373, "ok", "provider"),
    # message_delta is cumulative: 10682 x 3 + 510 x 15 + 1 search x 10000 = 32046 + 7650 + 10000
    ("anthropic_stream_web_search.sse", "anthropic", "claude-sonnet-4-6", True, False,
     dict(input_tokens=10682, output_tokens=510, web_search_requests=1), 49696, "ok", "provider"),
    # 472 x 3 + 89 x 15 = 1416 + 1335
    ("anthropic_stream_tool_use.sse", "anthropic", "claude-sonnet-4-6", True, False,
     dict(input_tokens=472, output_tokens=89), 2751, "ok", "provider"),
    # extended thinking (thinking and signature deltas before the text): 778 x 3 + 104 x 15 = 2334 + 1560
    ("anthropic_stream_thinking.sse", "anthropic", "claude-sonnet-4-6", True, False,
     dict(input_tokens=778, cached_input_tokens=0, cache_write_tokens=0, output_tokens=104), 3894, "ok", "provider"),
    # overloaded mid-stream: input as reported (25), output estimated from "Hello" (2): 75 + 30
    ("anthropic_stream_overloaded.sse", "anthropic", "claude-sonnet-4-6", True, False,
     dict(input_tokens=25, output_tokens=2), 105, "provider_error", "estimated"),
    # blank lines before the JSON: 16 x 0.27 + 10 x 1.1 = 15.32 -> 16 (rounded up once)
    ("deepseek_chat_blank_lines.json", "openai", "cheap", False, False,
     dict(input_tokens=16, cached_input_tokens=0, output_tokens=10), 16, "ok", "provider"),
    # DeepSeek bills hit/miss: 360 x 0.27 + 640 x 0.07 + 2 x 1.1 = 97.2 + 44.8 + 2.2 = 144.2 -> 145
    # (cached_tokens 768 would give 119)
    ("deepseek_stream_keepalive.sse", "openai", "cheap", True, True,
     dict(input_tokens=1000, cached_input_tokens=640, output_tokens=2), 145, "ok", "provider"),
]


def send(client, capture, api, model, stream, include_usage, chunk):
    headers = {"x-mock-replay": capture, "x-mock-chunk-bytes": str(chunk)}
    msgs = [{"role": "user", "content": "replay"}]
    if api == "anthropic":
        body = {"model": model, "max_tokens": 1024, "messages": msgs, "stream": stream}
        return client.post("/v1/messages", body, key=LABS_KEY, auth="x-api-key", headers=headers)
    body = {"model": model, "messages": msgs}
    if stream:
        body["stream"] = True
        if include_usage:
            body["stream_options"] = {"include_usage": True}
    return client.post("/v1/chat/completions", body, key=SEARCH_KEY, headers=headers)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("chunk", [1, 7, 61, 100_000])
def test_replayed_capture_is_counted_exactly(client, case, chunk):
    capture, api, model, stream, include_usage, usage, cost, outcome, source = case
    original = (CAPTURES / capture).read_bytes()
    r = send(client, capture, api, model, stream, include_usage, chunk)
    assert r.status_code == 200, r.text
    rec = client.record(r.headers["x-tollgate-request-id"])
    for k, v in usage.items():
        assert rec["usage"][k] == v, (k, rec["usage"])
    assert rec["cost_micros"] == cost, rec
    assert (rec["outcome"], rec["usage_source"]) == (outcome, source)
    if not stream:
        assert r.content == original, "JSON bodies pass byte for byte"
        assert int(r.headers["x-tollgate-cost-micros"]) == cost
    elif capture == "openai_chat_stream_usage.sse":
        # the client did not ask for usage: the chunk the gateway caused is gone, the rest is intact
        events = sse_data(r.text)
        assert events[-1] == "[DONE]"
        chunks = [json.loads(e) for e in events[:-1]]
        assert all("usage" not in c and c["obfuscation"] for c in chunks), chunks
        assert [c["choices"][0].get("finish_reason") for c in chunks][-1] == "length"
    else:
        assert r.content == original, "streams the gateway does not rewrite pass byte for byte"


def shape(v):
    """A value's shape: member names and JSON types, recursively (null matches anything)."""
    if isinstance(v, dict):
        return {k: shape(x) for k, x in v.items()}
    if isinstance(v, list):
        return [shape(v[0])] if v else []
    if v is None:
        return None
    return type(v).__name__.replace("int", "number").replace("float", "number")


def missing(real, mock, path="") -> list[str]:
    """Paths in the real shape that the mock lacks or types differently."""
    if real is None or mock is None:
        return []
    if isinstance(real, dict):
        if not isinstance(mock, dict):
            return [path or "."]
        out = []
        for k, v in real.items():
            if k not in mock:
                out.append(f"{path}.{k}")
            else:
                out += missing(v, mock[k], f"{path}.{k}")
        return out
    if isinstance(real, list):
        if not isinstance(mock, list):
            return [path]
        return missing(real[0], mock[0], path + "[]") if real and mock else []
    return [] if real == mock else [f"{path}: {real} vs {mock}"]


# Members that only appear with features the mock does not simulate.
NOT_SIMULATED = {".usage.prompt_tokens_details.cache_write_tokens", ".usage.service_tier", ".choices[].logprobs"}


@pytest.mark.parametrize("capture,api,model", [
    ("openai_chat_reasoning.json", "openai", "openai/gpt-5.4"),
    ("anthropic_message_cache_1h.json", "anthropic", "claude-sonnet-4-6"),
    ("deepseek_chat_blank_lines.json", "openai", "cheap"),
])
def test_mock_json_has_the_shape_of_real_responses(client, capture, api, model):
    real = json.loads((CAPTURES / capture).read_text())
    msgs = [{"role": "user", "content": "shape"}]
    if api == "anthropic":
        r = client.post("/v1/messages", {"model": model, "max_tokens": 50, "messages": msgs}, key=LABS_KEY,
                        auth="x-api-key", headers={"x-mock-reasoning-tokens": "3"})
    else:
        r = client.post("/v1/chat/completions", {"model": model, "messages": msgs}, key=SEARCH_KEY,
                        headers={"x-mock-reasoning-tokens": "3"})
    assert r.status_code == 200, r.text
    gaps = [p for p in missing(shape(real), shape(r.json())) if p not in NOT_SIMULATED]
    assert not gaps, gaps


@pytest.mark.parametrize("capture,api,model,include_usage", [
    ("openai_chat_stream_usage.sse", "openai", "openai/gpt-5.4", True),
    ("anthropic_stream_tool_use.sse", "anthropic", "claude-sonnet-4-6", False),
])
def test_mock_streams_have_the_shape_of_real_streams(client, capture, api, model, include_usage):
    real = [json.loads(d) for d in sse_data((CAPTURES / capture).read_text()) if d != "[DONE]"]
    msgs = [{"role": "user", "content": "shape"}]
    if api == "anthropic":
        r = client.post("/v1/messages", {"model": model, "max_tokens": 50, "messages": msgs, "stream": True},
                        key=LABS_KEY, auth="x-api-key")
        mock = [json.loads(d) for d in sse_data(r.text)]
        def by_type(evs):  # the first event of each type
            out = {}
            for e in evs:
                out.setdefault(e["type"], e)
            return out
        real_t, mock_t = by_type(real), by_type(mock)
        for t in ("message_start", "content_block_start", "content_block_delta", "message_delta", "message_stop"):
            assert t in mock_t, t
            gaps = missing(shape(real_t[t]), shape(mock_t[t]))
            assert not [g for g in gaps if "content_block" not in g and "delta.type" not in g], (t, gaps)
    else:
        body = {"model": model, "messages": msgs, "stream": True, "stream_options": {"include_usage": include_usage}}
        r = client.post("/v1/chat/completions", body, key=SEARCH_KEY, headers={"x-mock-reasoning-tokens": "3"})
        mock = [json.loads(d) for d in sse_data(r.text) if d != "[DONE]"]
        assert sse_data(r.text)[-1] == "[DONE]"
        for real_c, mock_c in ((real[0], mock[0]), (real[-1], mock[-1])):
            gaps = missing(shape(real_c), shape(mock_c))
            assert not gaps, gaps
            assert list(mock_c)[-2:] == list(real_c)[-2:] == ["usage", "obfuscation"], (list(real_c), list(mock_c))
        assert mock[-1]["choices"] == [] and all(c["usage"] is None for c in mock[:-1])
        # As the real API: no padding when the client turns it off.
        body["stream_options"]["include_obfuscation"] = False
        r = client.post("/v1/chat/completions", body, key=SEARCH_KEY)
        assert not [d for d in sse_data(r.text) if "obfuscation" in d], r.text


def test_the_mock_refuses_what_the_real_apis_refuse(stack):
    import requests
    url = stack.mock.url
    # Anthropic: stream_options is not a Messages member (the bug issue 7 found)
    r = requests.post(url + "/v1/messages", json={"model": "claude-sonnet-4-6", "max_tokens": 5, "stream": True,
                                                 "messages": [], "stream_options": {"include_usage": True}},
                      headers={"x-api-key": "sk-ant-mock", "anthropic-version": "2023-06-01"}, timeout=5)
    assert r.status_code == 400
    assert r.json() == {"type": "error", "error": {"type": "invalid_request_error",
                                                   "message": "stream_options: Extra inputs are not permitted"}}
    # OpenAI: an unknown argument, a wrong type
    h = {"authorization": "Bearer sk-mock-openai"}
    r = requests.post(url + "/v1/chat/completions", json={"model": "gpt-5.4", "messages": [], "foo": 1}, headers=h, timeout=5)
    assert r.status_code == 400 and r.json()["error"]["message"] == "Unrecognized request argument supplied: foo"
    r = requests.post(url + "/v1/chat/completions", json={"model": "gpt-5.4", "messages": [], "max_tokens": "9"},
                      headers=h, timeout=5)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_type"
