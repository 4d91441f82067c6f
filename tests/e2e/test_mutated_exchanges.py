"""Real requests made hostile, with the strict mock as the oracle: every
request recorded against api.openai.com, api.anthropic.com and the Gemini
API (tests/captures, sources in its README) with one value anywhere in it
replaced by a hostile one (huge and negative numbers, Infinity, null, a
long or control-character string, the wrong type), some also given a
member twice. Each is sent to the mock directly, as a client calling the
provider would, and through Envoy + Tollgate.

What must hold: a request the provider takes is never turned by the
gateway into one the provider refuses. Through Tollgate it is served, or
refused by the gateway itself before anything went upstream (a duplicate
member, a cap that is no integer, a budget, a guardrail), never sent on and
refused there. And whatever is served is recorded, priced from the
provider's usage. filter/tests/mutated_captures.rs holds the filter's own
rules (the cap sent within the one reserved) to the same corpus in-process."""
from __future__ import annotations

import copy
import json
import random
from pathlib import Path

import pytest
import requests

from conftest import SEARCH_KEY

CAPTURES = Path(__file__).resolve().parents[1] / "captures"
HOSTILE = [None, True, -1, 0, 2**64 - 1, -(2**63), 2**63 - 1, 1.5, 1e300, float("inf"), "",
           "\u0000\r\n\u001b[31mx\u202e", "x" * 70_000, [], {}, [2**64 - 1, -1, None], {"max_tokens": 2**64 - 1}]


def captured(served_only: bool = False) -> list[tuple[str, str, dict]]:
    """(api, path, request) for every captured request (`served_only`: those
    the API answered 200; Anthropic's and Gemini's all were)."""
    out = []
    for name in ("openai_exchanges.json", "openai_lingua_exchanges.json"):
        out += [("openai", e["path"], e["request"]) for e in json.loads((CAPTURES / name).read_text())
                if not served_only or e["status"] == 200]
    out += [("anthropic", "/v1/messages", e["request"]) for e in json.loads((CAPTURES / "anthropic_exchanges.json").read_text())]
    out += [("gemini", f"/v1beta/models/{e['model']}:generateContent", e["request"])
            for e in json.loads((CAPTURES / "gemini_exchanges.json").read_text()) if e.get("model")]
    return out


def paths(v, at=()):
    yield at
    if isinstance(v, dict):
        for k, x in v.items():
            yield from paths(x, at + (k,))
    elif isinstance(v, list):
        for i, x in enumerate(v):
            yield from paths(x, at + (i,))


def mutated(rng: random.Random, body: dict) -> str:
    """The body with one value replaced (never the whole body) and, one time
    in four, its first top-level member given twice (the hostile value first)."""
    body = copy.deepcopy(body)
    where = rng.choice([p for p in paths(body) if p])
    parent = body
    for step in where[:-1]:
        parent = parent[step]
    value = rng.choice(HOSTILE)
    parent[where[-1]] = value
    text = json.dumps(body)  # Infinity as Python writes it: not JSON
    if rng.random() < 0.25:
        first = next(iter(body))
        text = "{" + json.dumps(first) + ": " + json.dumps(value) + ", " + text[1:]
    return text


CASES = []
_rng = random.Random(20261204)
_all = captured()
for i in range(480):
    api, path, body = _rng.choice(_all)
    CASES.append((api, path, mutated(_rng, body)))


# What the gateway refuses on purpose though the provider would take it
# (docs/security.md, "What is validated where"): a member given twice
# (parsers disagree on which one wins, so the gateway would bound and price
# another request than the provider runs), a member it reads (a cap, `n`,
# `stream`, `stream_options`) of the wrong type, a model that is no name;
# and what any request may meet: a budget spent by earlier tests, a
# guardrail. Anything else (a body the gateway's own rewrite made
# unreadable, say) is a request broken by the gateway.
TAKEN_BUT_REFUSED = {(400, "duplicate_key"), (400, "invalid_type"), (400, "invalid_model"),
                     (429, "budget_exhausted"), (400, "content_blocked")}


CAPS = ("max_tokens", "max_completion_tokens", "max_output_tokens")


def null_caps() -> list[tuple[str, str, str]]:
    """Every captured request with its output cap set to null (or, when it
    has none, given one of null): the cap the budget reservation assumed
    must still be the one that goes upstream."""
    out = []
    for api, path, body in captured(served_only=True):
        body = copy.deepcopy(body)
        if api == "gemini":
            config = body.setdefault("generationConfig", {})
            if isinstance(config, dict):
                config["maxOutputTokens"] = None
        else:
            cap = next((c for c in CAPS if c in body), {"anthropic": "max_tokens", "openai": "max_completion_tokens"}[api])
            if path == "/v1/responses":
                cap = "max_output_tokens"
            body[cap] = None
        out.append((api, path, json.dumps(body)))
    return out


NULL_CAPS = null_caps()


def send(url: str, api: str, path: str, text: str, key: str) -> requests.Response:
    headers = {"content-type": "application/json"}
    if api == "openai":
        headers["authorization"] = f"Bearer {key}"
    elif api == "anthropic":
        headers.update({"x-api-key": key, "anthropic-version": "2023-06-01"})
    else:
        headers["x-goog-api-key"] = key
    return requests.post(url + path, data=text.encode("utf-8", "surrogatepass"), headers=headers, timeout=60)


def through_tollgate(text: str, api: str) -> str:
    """OpenAI's models are routed under `openai/` in the demo config."""
    if api != "openai":
        return text
    return text.replace('"model": "', '"model": "openai/', 1)


@pytest.mark.parametrize("api,path,text", CASES, ids=[f"{i}-{a}" for i, (a, _, _) in enumerate(CASES)])
def test_a_hostile_real_request_the_provider_takes_is_never_broken_by_the_gateway(stack, client, api, path, text):
    mock_key = {"openai": "sk-mock-openai", "anthropic": "sk-ant-mock", "gemini": "mock-gemini-key"}[api]
    direct = send(stack.mock.url, api, path, text, mock_key)
    r = send(stack.url, api, path, through_tollgate(text, api), SEARCH_KEY)
    rec = client.record(r.headers["x-tollgate-request-id"])
    if r.status_code == 200:
        assert rec["outcome"] == "ok" and rec["usage_source"] == "provider", rec
        assert rec["usage"]["input_tokens"] > 0, rec
        return
    refused_by_gateway = "x-mock-path" not in r.headers
    if direct.status_code == 200:
        assert refused_by_gateway, f"the provider took it directly but refused what the gateway sent: {r.status_code} {r.text[:400]}"
        code = r.json()["error"].get("code")
        assert (r.status_code, code) in TAKEN_BUT_REFUSED, f"refused for no reason of the gateway's own: {r.text[:400]}"
    assert rec["cost_micros"] == 0 and rec["outcome"] != "ok", rec


def sent_cap(api: str, path: str, sent: dict):
    if api == "gemini":
        return (sent.get("generationConfig") or {}).get("maxOutputTokens")
    if api == "anthropic" or path == "/v1/completions":
        return sent.get("max_tokens")
    return sent.get("max_output_tokens" if path == "/v1/responses" else "max_completion_tokens")


@pytest.mark.parametrize("api,path,text", [c for c in NULL_CAPS if not c[1].endswith("/embeddings")],
                         ids=[f"{i}-{a}" for i, (a, p, _) in enumerate(NULL_CAPS) if not p.endswith("/embeddings")])
def test_a_real_request_with_a_null_cap_goes_upstream_with_the_cap_it_reserved(stack, client, api, path, text):
    """OpenAI and Gemini take a null cap as none; Anthropic refuses it. Through
    the gateway such a request goes up with `default_max_tokens` (4096), the
    bound its reservation assumed, in one member (before: a Gemini one went
    up with the field twice, and an Anthropic client's request to an OpenAI
    model went up uncapped)."""
    r = send(stack.url, api, path, through_tollgate(text, api), SEARCH_KEY)
    if api == "anthropic" and r.status_code != 200:
        return  # refused, by the gateway or by Anthropic, which requires an integer
    if r.status_code != 200:
        assert (r.status_code, r.json()["error"].get("code")) in {(429, "budget_exhausted"), (400, "content_blocked")}, r.text[:400]
        return
    sent = requests.get(stack.mock.url + "/mock/last-body", timeout=5).json()
    want = 16 if path == "/v1/completions" else 4096  # legacy completions: null is the API's default, 16
    assert sent_cap(api, path, sent) in (want, None if path == "/v1/completions" else want), sent_cap(api, path, sent)
    assert client.record(r.headers["x-tollgate-request-id"])["outcome"] == "ok"
