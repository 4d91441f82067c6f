"""Anthropic's token counting (`POST /v1/messages/count_tokens`) through the
gateway, with the official Anthropic SDK: Claude Code calls it through a
gateway (code.claude.com/docs/en/llm-gateway: "Anthropic Messages:
/v1/messages, /v1/messages/count_tokens") and counts locally when the
gateway answers 404. Routed like the message it counts, with the
provider's key, checked by the guardrails, free: no budget, no record
(but for a count the guardrails stop: the audit sees the attempt).
The mock refuses what the real endpoint refuses (`max_tokens` and every
other member a message takes and a count does: mock-provider/src/strict.rs)."""
from __future__ import annotations

import anthropic
import pytest
import requests

from conftest import LABS_KEY, SEARCH_KEY, error_of, upstream_body


def served(stack) -> int:
    return requests.get(stack.mock.url + "/mock/stats", timeout=5).json()["requests"]


@pytest.fixture(scope="module")
def claude(stack):
    return anthropic.Anthropic(base_url=stack.url, api_key=LABS_KEY, max_retries=0)


def test_a_count_is_routed_with_the_providers_key_and_matches_the_message_it_counts(stack, client, claude):
    msgs = [{"role": "user", "content": "How many tokens is this sentence, counted by the provider?"}]
    system = "You count tokens."
    before = served(stack)
    raw = claude.messages.with_raw_response.count_tokens(model="anthropic/claude-sonnet-4-6", messages=msgs, system=system)
    count = raw.parse().input_tokens
    assert raw.headers["x-tollgate-provider"] == "anthropic"
    assert raw.headers["x-tollgate-model"] == "claude-sonnet-4-6"
    # The route's upstream model, nothing added (the endpoint refuses max_tokens).
    assert upstream_body(stack) == {"model": "claude-sonnet-4-6", "messages": msgs, "system": system}
    assert served(stack) == before, "a count is not a served message"
    # The message it counted takes as many input tokens (cache reads and writes included).
    sent = claude.messages.with_raw_response.create(model="anthropic/claude-sonnet-4-6", max_tokens=20, messages=msgs, system=system)
    u = sent.parse().usage
    assert count == u.input_tokens + (u.cache_read_input_tokens or 0) + (u.cache_creation_input_tokens or 0) > 0
    # Free: the message has a record (written after the count's would be), the count none.
    client.record(sent.headers["x-tollgate-request-id"])
    rid = raw.headers["x-tollgate-request-id"]
    assert not [r for r in client.records() if r["id"] == rid], "a count is not usage"


def test_claude_codes_beta_count_passes_its_beta_members(stack, claude):
    # The SDK's beta namespace: /v1/messages/count_tokens?beta=true with an anthropic-beta header.
    r = claude.beta.messages.count_tokens(
        model="claude-sonnet-4-6", messages=[{"role": "user", "content": "hi"}],
        context_management={"edits": []}, betas=["context-management-2025-06-27"])
    assert r.input_tokens > 0
    assert upstream_body(stack)["context_management"] == {"edits": []}


def test_a_count_for_a_model_of_another_format_is_not_found_so_the_client_counts_itself(claude):
    with pytest.raises(anthropic.NotFoundError) as e:
        claude.messages.count_tokens(model="openai/gpt-5.4", messages=[{"role": "user", "content": "hi"}])
    assert "provider 'openai'" in e.value.message


def test_a_count_is_refused_as_a_message_would_be(stack, client):
    bad = anthropic.Anthropic(base_url=stack.url, api_key="tg-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        bad.messages.count_tokens(model="claude-sonnet-4-6", messages=[{"role": "user", "content": "hi"}])
    # The guardrails see what would reach the provider: team labs' codename is blocked...
    before = upstream_body(stack)
    r = client.post("/v1/messages/count_tokens", {"model": "claude-sonnet-4-6",
                    "messages": [{"role": "user", "content": "Status of project bluebird?"}]},
                    key=LABS_KEY, auth="x-api-key")
    assert r.status_code == 400 and error_of(r)["code"] == "content_blocked"
    assert upstream_body(stack) == before, "never sent"
    # A count is no usage, but a stopped attempt is in the record the audit reads (else counts
    # could probe what the guardrails catch without a trace); free all the same.
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert (rec["outcome"], rec["error_code"], rec["cost_micros"]) == ("rejected", "content_blocked", 0)
    assert rec["guardrails"]["action"] == "blocked" and rec["guardrails"]["classes"], rec["guardrails"]
    # ...and its e-mail addresses redacted.
    r = client.post("/v1/messages/count_tokens", {"model": "claude-sonnet-4-6", "messages": [
                    {"role": "user", "content": "Write to maria.gonzalez@acme-corp.com."}]}, key=LABS_KEY, auth="x-api-key")
    assert r.status_code == 200, r.text
    assert upstream_body(stack)["messages"][0]["content"] == "Write to [EMAIL_1]."
    # What the provider refuses comes back as its own error (a count takes no max_tokens).
    r = client.post("/v1/messages/count_tokens", {"model": "claude-sonnet-4-6", "max_tokens": 10,
                    "messages": [{"role": "user", "content": "hi"}]}, key=LABS_KEY, auth="x-api-key")
    assert r.status_code == 400 and error_of(r)["message"] == "max_tokens: Extra inputs are not permitted"
    # Only POST, with a body.
    r = requests.get(stack.url + "/v1/messages/count_tokens", headers={"x-api-key": LABS_KEY}, timeout=10)
    assert r.status_code == 405


def test_a_moderation_is_served_free_with_the_providers_key(stack, client):
    """OpenAI's moderation classifier (`client.moderations.create`, which
    apps call before sending a prompt) was refused 404 "not routed", so an
    app that moderates broke behind the gateway. It is served like a count:
    the key checked, routed to the OpenAI-format provider with the
    provider's key, OpenAI's default model when none is named, guarded,
    free: no budget, no record but for one the guardrails stop."""
    import openai
    oai = openai.OpenAI(base_url=stack.url + "/v1", api_key=SEARCH_KEY, max_retries=0)
    before = len(client.records())
    raw = oai.moderations.with_raw_response.create(input=["Nice weather today.", "I will kill the stuck process."])
    m = raw.parse()
    assert [r.flagged for r in m.results] == [False, True] and m.model.startswith("omni-moderation-latest")
    assert (raw.headers["x-mock-path"], raw.headers["x-mock-auth"]) == ("/v1/moderations", "Bearer sk-mock-openai")
    assert upstream_body(stack) == {"input": ["Nice weather today.", "I will kill the stuck process."], "model": "omni-moderation-latest"}
    m = oai.moderations.create(model="omni-moderation-2024-09-26",
                               input=[{"type": "text", "text": "a photo"}, {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}])
    assert m.results[0].category_applied_input_types.violence == ["text", "image"]
    assert "x-tollgate-cost-micros" not in raw.headers and len(client.records()) == before, "free: no record"
    # The key is checked; a model of another format is not found; the guardrails see the input.
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=stack.url + "/v1", api_key="tg-wrong", max_retries=0).moderations.create(input="hi")
    with pytest.raises(openai.NotFoundError):
        oai.moderations.create(model="claude-sonnet-4-6", input="hi")
    sent = upstream_body(stack)
    r = client.post("/v1/moderations", {"input": "Status of project bluebird?"}, key=LABS_KEY)
    assert r.status_code == 400 and error_of(r)["code"] == "content_blocked", r.text
    assert upstream_body(stack) == sent, "never sent"
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert (rec["api"], rec["outcome"], rec["cost_micros"]) == ("openai_moderations", "rejected", 0), rec
