"""Hostile input on the endpoints and features added for issues 12 and 14:
duplicate members, non-UTF-8 credentials, out-of-range numbers, control
characters and a provider that reports absurd usage — each refused or bounded,
never a crash, and the worker keeps serving."""
from __future__ import annotations

import http.client
import json

from conftest import SEARCH_KEY


def raw_post(stack, path: str, body: bytes, headers: dict[bytes, bytes]) -> int:
    host, port = stack.url.removeprefix("http://").split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=10)
    c.putrequest("POST", path)
    for k, v in {b"content-type": b"application/json", b"content-length": str(len(body)).encode(), **headers}.items():
        c.putheader(k, v)
    c.endheaders(body)
    r = c.getresponse()
    r.read()
    return r.status


def test_duplicate_members_are_refused_on_every_new_api(client):
    for path, body in [
        ("/v1/responses", b'{"model":"openai/gpt-5.4","input":"a","max_output_tokens":20,"max_output_tokens":90000}'),
        ("/v1/embeddings", b'{"model":"text-embedding-3-small","input":"a","input":"b"}'),
        ("/v1/completions", b'{"model":"gpt-3.5-turbo-instruct","prompt":"a","best_of":1,"best_of":20}'),
        ("/v1beta/models/gemini-2.5-flash:generateContent", b'{"contents":[],"contents":[{"parts":[{"text":"x"}]}]}'),
    ]:
        r = client.post(path, raw=body, headers={"x-goog-api-key": SEARCH_KEY})
        assert r.status_code == 400 and r.json()["error"]["code"] == "duplicate_key", (path, r.text)


def test_out_of_range_numbers_are_refused_or_bounded(client):
    gen = "/v1beta/models/gemini-2.5-flash:generateContent"
    for gc in ({"maxOutputTokens": 1e30}, {"maxOutputTokens": -1}, {"candidateCount": 10**6}):
        r = client.post(gen, {"contents": [{"parts": [{"text": "x"}]}], "generationConfig": gc}, headers={"x-goog-api-key": SEARCH_KEY})
        assert r.status_code == 400, (gc, r.text)
    r = client.post("/v1/completions", {"model": "gpt-3.5-turbo-instruct", "prompt": "x", "best_of": 10**9})
    assert r.status_code == 400 and r.json()["error"]["param"] == "best_of"
    # a provider reporting absurd usage: clamped, not overflowed
    r = client.post("/v1/responses", {"model": "openai/gpt-5.4", "input": "x"}, headers={"x-mock-output-tokens": str(2**62)})
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert rec["usage"]["output_tokens"] <= 10**12


def test_non_utf8_and_control_bytes_in_new_places(stack, client):
    gen = "/v1beta/models/gemini-2.5-flash:generateContent"
    body = json.dumps({"contents": [{"parts": [{"text": "x"}]}]}).encode()
    assert raw_post(stack, gen, body, {b"x-goog-api-key": b"tg-\xff\xfe"}) == 401
    # the model in a Gemini path goes into the upstream path: escapes and traversal never leave
    for bad in ("gem%0Aini", "..%2F..%2Fv1beta%2Ffiles", "x..y"):
        r = client.post(f"/v1beta/models/{bad}:generateContent", raw=body, headers={"x-goog-api-key": SEARCH_KEY})
        assert r.status_code == 404 and "x-mock-path" not in r.headers, (bad, r.status_code)
    # guardrails on text with invalid escapes and control characters: refused as JSON or scanned, never a crash
    r = client.post("/v1/chat/completions", raw=b'{"model":"cheap","messages":[{"role":"user","content":"\\ud800 a@b.io \\u0000"}]}')
    assert r.status_code in (200, 400)
    # a translation of a hostile tool-call argument (not JSON) is refused by name
    r = client.post("/v1/chat/completions", {"model": "anthropic/claude-sonnet-4-6", "messages": [
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c", "type": "function",
                                                               "function": {"name": "f", "arguments": "{not json"}}]}]})
    assert r.status_code == 400 and r.json()["error"]["code"] == "untranslatable_field"
    # and the worker still serves
    assert client.chat("cheap").status_code == 200
