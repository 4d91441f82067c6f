"""OpenAI's Decisions API (`POST /v1/decisions`, GPT-6 Luna) through Envoy.

Typed answers (predicate, choice, score) to questions about an input, not
text; billed by the input tokens alone, every one at $0.10 a million: no
output, cache-read or cache-write charges (its public beta since
2026-10-06). The gateway answered 404 (with `other_paths: pass` the
virtual key went to OpenAI, nothing counted). Served now, recorded as
`api: openai_decisions`, with its questions read as input and the
guardrails applied to all of it. The mock refuses what the API refuses
(tests/mock-provider/src/decisions.rs cites its sources: openai-python
3.57's `decisions` resource and types, and the published price)."""
from __future__ import annotations

import requests

from conftest import LABS_KEY, error_of, mock_stats

LUNA_INPUT = 100_000  # micro-dollars a million input tokens on /v1/decisions (envoy/demo/envoy.yaml's gpt-6-luna input)
QUESTIONS = [
    {"type": "choice", "name": "category", "instructions": "Classify the support ticket.",
     "choices": [{"value": "billing"}, {"value": "technical", "description": "Software errors and service outages"}]},
    {"type": "predicate", "name": "duplicate_charge", "instructions": "The customer reports being charged more than once for the same purchase."},
    {"type": "score", "name": "urgency", "instructions": "How urgent is it?", "levels": [{"label": "low"}, {"label": "medium"}, {"label": "high"}]},
]
TICKET = "I was charged twice for the same subscription renewal."


def sent(client) -> dict:
    return requests.get(client.stack.mock.url + "/mock/last-body", timeout=5).json()


def by_input(tokens: int) -> int:
    return -(-tokens * LUNA_INPUT // 1_000_000)


def test_the_stock_sdk_decides_billed_by_its_input_alone(oai, client):
    before = mock_stats(client.stack)
    raw = oai.decisions.with_raw_response.create(model="gpt-6-luna", input=TICKET, questions=QUESTIONS,
                                                 extra_headers={"x-mock-cached-tokens": "8"})
    d = raw.parse()
    assert [a.type for a in d.answers] == ["choice", "predicate", "score"] and d.answers[0].choice == "billing"
    assert raw.headers["x-mock-path"] == "/v1/decisions"
    rec = client.record(raw.headers["x-tollgate-request-id"])
    assert (rec["api"], rec["model_upstream"], rec["outcome"], rec["usage_source"]) == ("openai_decisions", "gpt-6-luna", "ok", "provider"), rec
    u = rec["usage"]
    assert (u["input_tokens"], u["cached_input_tokens"], u["output_tokens"]) == (d.usage.input_tokens, 8, 3)
    assert mock_stats(client.stack)["input_tokens"] - before["input_tokens"] == u["input_tokens"]
    # Every input token at $0.10 a million, the cached ones too; the answers' tokens free.
    assert rec["cost_micros"] == by_input(u["input_tokens"]) and rec["cache_savings_micros"] == 0
    # As sent: the gateway adds no output cap (the API takes none) and no member of its own.
    assert sent(client) == {"model": "gpt-6-luna", "input": TICKET, "questions": QUESTIONS}


def test_azure_openai_clients_reach_it_on_their_path(client):
    r = client.post("/openai/v1/decisions?api-version=preview", {"model": "gpt-6-luna", "input": TICKET, "questions": QUESTIONS[1:2]})
    assert r.status_code == 200 and r.headers["x-mock-path"] == "/v1/decisions", r.text
    assert client.record(r.headers["x-tollgate-request-id"])["api"] == "openai_decisions"


def test_the_guardrails_read_the_input_and_the_questions(client):
    # Team labs: e-mail redacted, the codename blocked (envoy/demo/envoy.yaml's demo-1 policy).
    r = client.post("/v1/decisions", {"model": "gpt-6-luna", "input": "Refund maria.gonzalez@acme-corp.com twice?",
                                      "questions": QUESTIONS[1:2]}, key=LABS_KEY)
    assert r.status_code == 200, r.text
    assert sent(client)["input"] == "Refund [EMAIL_1] twice?"
    served = mock_stats(client.stack)["requests"]
    ask = [{"type": "predicate", "instructions": "Is this about Project Bluebird?"}]
    r = client.post("/v1/decisions", {"model": "gpt-6-luna", "input": TICKET, "questions": ask}, key=LABS_KEY)
    assert r.status_code == 400 and error_of(r)["code"] == "content_blocked" and "'codename'" in error_of(r)["message"], r.text
    assert mock_stats(client.stack)["requests"] == served, "nothing reached the provider"


def test_what_the_api_refuses_is_refused_and_never_charged(client):
    served = mock_stats(client.stack)["requests"]
    for body, code in (({"model": "gpt-6-luna", "questions": QUESTIONS}, "missing_input"),
                       ({"model": "gpt-6-luna", "input": TICKET}, "missing_questions"),
                       ({"model": "claude-sonnet-4-6", "input": TICKET, "questions": QUESTIONS}, "wrong_api_for_model")):
        r = client.post("/v1/decisions", body)
        assert r.status_code == 400 and error_of(r)["code"] == code, (body, r.text)
    assert mock_stats(client.stack)["requests"] == served, "refused before sending"
    # The provider's refusals: a model it does not serve there, a choice given once.
    for body, code in (({"model": "gpt-5.4", "input": TICKET, "questions": QUESTIONS}, "model_not_found"),
                       ({"model": "gpt-6-luna", "input": TICKET, "questions": [{**QUESTIONS[0], "choices": [{"value": "billing"}]}]}, "invalid_value")):
        r = client.post("/v1/decisions", body)
        # (Passed on as the provider wrote it.)
        assert r.status_code == 400 and r.json()["error"]["code"] == code and r.headers["x-mock-path"] == "/v1/decisions", (body, r.text)
        assert client.record(r.headers["x-tollgate-request-id"])["cost_micros"] == 0
