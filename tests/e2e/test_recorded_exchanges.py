"""Real api.openai.com exchanges (tests/captures/openai_exchanges.json: each
request a client sent and the status and error the API answered, recorded in
envoyproxy/ai-gateway's cassettes; openai_lingua_exchanges.json, chat and
Responses API, recorded by braintrustdata/lingua's payload snapshots) and
real api.anthropic.com ones (anthropic_exchanges.json, lingua too); sources
in tests/captures/README.md.

The mock must answer each recorded request as the real API did: accept what
it accepted (a mock stricter than the API hides nothing but fails real
clients' shapes) and refuse what it refused with the same message, `param`
and `code`. Then the same requests through Envoy + Tollgate: what the API
accepted is served, priced and recorded; what it refused is refused."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from conftest import SEARCH_KEY

EXCHANGES = json.loads((Path(__file__).resolve().parents[1] / "captures" / "openai_exchanges.json").read_text())
IDS = [e["cassette"].removesuffix(".yaml") for e in EXCHANGES]


@pytest.mark.parametrize("ex", EXCHANGES, ids=IDS)
def test_the_mock_answers_a_recorded_request_as_the_api_did(stack, ex):
    r = requests.post(stack.mock.url + ex["path"], json=ex["request"], timeout=30,
                      headers={"authorization": "Bearer sk-mock-openai", "host": "api.openai.com"})
    assert r.status_code == ex["status"], r.text
    if "error" in ex:
        got = r.json()["error"]
        assert {k: got.get(k) for k in ("message", "param", "code", "type")} == \
            {k: ex["error"].get(k) for k in ("message", "param", "code", "type")}
    elif "object" in ex and not ex["request"].get("stream"):
        assert r.json()["object"] == ex["object"]


LINGUA = json.loads((Path(__file__).resolve().parents[1] / "captures" / "openai_lingua_exchanges.json").read_text())
LINGUA_IDS = [f"{e['path'].rsplit('/', 1)[1]}-{e['case']}-{e['stage']}" for e in LINGUA]


@pytest.mark.parametrize("ex", LINGUA, ids=LINGUA_IDS)
def test_the_mock_answers_a_recorded_lingua_request_as_the_api_did(stack, ex):
    """GPT-5.2+ refusing function tools beside a reasoning effort, reasoning
    models refusing top_p, strict schemas, file parts, GPT-5.6's
    prompt_cache_options: the recordings found each of these."""
    r = requests.post(stack.mock.url + ex["path"], json=ex["request"], timeout=30,
                      headers={"authorization": "Bearer sk-mock-openai", "host": "api.openai.com"})
    assert r.status_code == ex["status"], r.text
    if "error" in ex:
        assert r.json()["error"]["message"] == ex["error"]["message"]


@pytest.mark.parametrize("ex", LINGUA, ids=LINGUA_IDS)
def test_a_recorded_lingua_request_through_tollgate_is_served_or_refused_as_the_api_did(stack, client, ex):
    body = {**ex["request"], "model": "openai/" + ex["request"]["model"]}
    r = requests.post(stack.url + ex["path"], json=body, timeout=30, headers={"authorization": f"Bearer {SEARCH_KEY}"})
    assert r.status_code == ex["status"], r.text
    rec = client.record(r.headers["x-tollgate-request-id"])
    if ex["status"] == 200:
        assert rec["outcome"] == "ok" and rec["usage_source"] == "provider", rec
    else:
        assert r.json()["error"]["message"] == ex["error"]["message"], "the provider's refusal reaches the client"
        assert rec["cost_micros"] == 0 and rec["outcome"] != "ok", rec


# Refused by the API for `max_tokens` on a reasoning model, which Tollgate
# moves into `max_completion_tokens` on purpose (docs/configuration.md,
# output_cap_field): the recorded answer cannot apply through it.
MOVED = "chat-bad-request.yaml"


@pytest.mark.parametrize("ex", [e for e in EXCHANGES if e["cassette"] != MOVED],
                         ids=[i for e, i in zip(EXCHANGES, IDS) if e["cassette"] != MOVED])
def test_a_recorded_request_through_tollgate_is_served_or_refused_as_the_api_did(stack, client, ex):
    body = {**ex["request"], "model": "openai/" + ex["request"]["model"]}
    r = requests.post(stack.url + ex["path"], json=body, timeout=30, headers={"authorization": f"Bearer {SEARCH_KEY}"})
    rec = client.record(r.headers["x-tollgate-request-id"])
    if ex["status"] == 200:
        assert r.status_code == 200, r.text
        assert rec["outcome"] == "ok" and rec["usage_source"] == "provider", rec
        assert rec["usage"]["input_tokens"] > 0
    else:
        assert r.status_code == ex["status"], r.text
        err = r.json()["error"]
        if rec["outcome"] == "rejected":
            # Tollgate refused it before sending, naming the same member.
            assert err["param"] == ex["error"]["param"], err
        else:
            assert err["message"] == ex["error"]["message"], "the provider's refusal reaches the client"
        assert rec["cost_micros"] == 0 and rec["outcome"] != "ok", rec


def test_the_recorded_max_tokens_refusal_is_avoided_by_moving_the_cap(stack, client):
    ex = next(e for e in EXCHANGES if e["cassette"] == MOVED)
    assert "max_tokens" in ex["request"] and ex["error"]["param"] == "max_tokens"
    body = {**ex["request"], "model": "openai/" + ex["request"]["model"]}
    requests.post(stack.url + ex["path"], json=body, timeout=30, headers={"authorization": f"Bearer {SEARCH_KEY}"})
    sent = requests.get(stack.mock.url + "/mock/last-body", timeout=5).json()
    assert (sent.get("max_completion_tokens"), "max_tokens" in sent) == (ex["request"]["max_tokens"], False), sent


ANTHROPIC = json.loads((Path(__file__).resolve().parents[1] / "captures" / "anthropic_exchanges.json").read_text())
ANTHROPIC_IDS = [f"{e['case']}-{e['stage']}" for e in ANTHROPIC]


def anthropic_headers(ex: dict, auth: dict) -> dict:
    return {**auth, "anthropic-version": "2023-06-01", **ex.get("headers", {})}


@pytest.mark.parametrize("ex", ANTHROPIC, ids=ANTHROPIC_IDS)
def test_the_mock_answers_a_recorded_anthropic_request_as_the_api_did(stack, ex):
    """Adaptive thinking with an effort (Opus 4.7 and later take no other
    thinking), structured outputs in `output_config`, thinking blocks handed
    back in a follow-up, server tools, documents, images, cache markers: the
    mock refused `output_config` until these recordings said otherwise."""
    r = requests.post(stack.mock.url + "/v1/messages", json=ex["request"], timeout=30,
                      headers=anthropic_headers(ex, {"x-api-key": "sk-ant-mock"}))
    assert r.status_code == ex["status"], r.text
    if "error" in ex:
        assert r.json()["error"] == ex["error"]


@pytest.mark.parametrize("ex", ANTHROPIC, ids=ANTHROPIC_IDS)
def test_a_recorded_anthropic_request_through_tollgate_is_served_as_the_api_did(stack, client, ex):
    r = requests.post(stack.url + "/v1/messages", json=ex["request"], timeout=30,
                      headers=anthropic_headers(ex, {"x-api-key": SEARCH_KEY}))
    assert r.status_code == ex["status"], r.text
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert rec["outcome"] == "ok" and rec["usage_source"] == "provider", rec
    assert rec["usage"]["input_tokens"] > 0 and rec["model_upstream"] == ex["request"]["model"]
    sent = requests.get(stack.mock.url + "/mock/last-body", timeout=5).json()
    for member in ("thinking", "output_config", "output_format", "context_management"):
        assert sent.get(member) == ex["request"].get(member), f"{member} reaches the provider unchanged"


CHAT_SERVED = [e for e in LINGUA if e["path"] == "/v1/chat/completions" and e["status"] == 200]
# Then a Responses-only model, reached through the Responses API (the
# Anthropic requests through chat first), where the strict mock holds the
# Responses API's own rules (flat tools, outputs after their calls); and
# every recorded Responses API request sent to Claude and to DeepSeek
# (which has no Responses API), translated to their own APIs.
CROSS = [("anthropic", e, "openai/gpt-5.4") for e in ANTHROPIC] + \
        [("openai", e, "anthropic/claude-sonnet-4-6") for e in CHAT_SERVED] + \
        [("anthropic", e, "openai/gpt-5.1-codex") for e in ANTHROPIC] + \
        [("openai", e, "openai/gpt-5.1-codex") for e in CHAT_SERVED] + \
        [("responses", e, m) for e in LINGUA if e["path"] == "/v1/responses" and e["status"] == 200
         for m in ("anthropic/claude-sonnet-4-6", "cheap")]


@pytest.mark.parametrize("client_api,ex,model", CROSS,
                         ids=[f"{a}-{e['case']}-{e['stage']}-{m.split('/')[-1]}" for a, e, m in CROSS])
def test_a_recorded_request_for_the_other_format_is_translated_or_refused_by_name(stack, client_api, ex, model):
    """Every real request of one format sent to a model of the other: served
    (the strict mock accepted what the translation wrote), or refused by the
    gateway naming the member it cannot translate. Never refused by the
    provider: that would be a translation writing what the provider refuses
    (top_p to a reasoning model was one)."""
    if client_api == "anthropic":
        r = requests.post(stack.url + "/v1/messages", json={**ex["request"], "model": model}, timeout=30,
                          headers=anthropic_headers(ex, {"x-api-key": SEARCH_KEY}))
    else:
        r = requests.post(stack.url + ex["path"], json={**ex["request"], "model": model}, timeout=30,
                          headers={"authorization": f"Bearer {SEARCH_KEY}"})
    if r.status_code != 200:
        assert "x-mock-path" not in r.headers, f"the provider refused the translation: {r.text}"
        err = r.json()["error"]
        code = err.get("code") or err.get("type")
        assert (r.status_code, err["code"]) == (400, "untranslatable_field"), (code, r.text)
