"""The official OpenAI and Anthropic Python SDKs against the running gateway,
used as an application would: only base URL and key change."""
from __future__ import annotations

import anthropic
import openai
import pytest
import requests

from conftest import LABS_KEY, SEARCH_KEY, expected_cost, upstream_body


@pytest.fixture(scope="module")
def claude(stack):
    return anthropic.Anthropic(base_url=stack.url, api_key=LABS_KEY, max_retries=0)


def test_openai_sdk_completion(oai, client):
    raw = oai.chat.completions.with_raw_response.create(
        model="openai/gpt-5.4", messages=[{"role": "user", "content": "Say hello"}], max_tokens=50)
    r = raw.parse()
    assert r.choices[0].message.content.startswith("Sure")
    assert r.usage.completion_tokens == 12
    cost = expected_cost("openai/gpt-5.4", r.usage.prompt_tokens, r.usage.completion_tokens)
    assert int(raw.headers["x-tollgate-cost-micros"]) == cost
    rec = client.record(raw.headers["x-tollgate-request-id"])
    assert rec["cost_micros"] == cost and rec["team"] == "search"


def test_openai_sdk_stream(oai, client):
    stream = oai.chat.completions.create(model="cheap", messages=[{"role": "user", "content": "Stream it"}],
                                         stream=True)
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("Sure, here is a mock answer")
    assert all(c.usage is None for c in chunks)


def test_openai_sdk_stream_with_usage(oai):
    stream = oai.chat.completions.create(model="default", messages=[{"role": "user", "content": "x"}],
                                         stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 12
    assert chunks[-1].model == "gpt-5.4-mini"


def test_openai_sdk_models(oai):
    ids = [m.id for m in oai.models.list()]
    assert "cheap" in ids and "openai/gpt-5.4" in ids


def test_anthropic_sdk_models_in_anthropics_shape(claude):
    # Anthropic clients (anthropic-version sent) get Anthropic's list shape: Claude Code's
    # gateway model discovery lists the ids starting with claude or anthropic.
    page = claude.models.list()
    ids = [m.id for m in page.data]
    assert "anthropic/claude-sonnet-4-6" in ids and "cheap" in ids
    m = next(m for m in page.data if m.id == "anthropic/claude-sonnet-4-6")
    assert (m.type, m.display_name, m.created_at.year) == ("model", "anthropic/claude-sonnet-4-6", 1970)
    assert page.has_more is False and (page.first_id, page.last_id) == (ids[0], ids[-1])


def test_one_model_in_each_sdks_shape(oai, claude):
    # A wildcard route's model too (openai/*), in the client's shape; one the key may not use is not found.
    m = oai.models.retrieve("openai/gpt-5.4-nano")
    assert (m.id, m.owned_by) == ("openai/gpt-5.4-nano", "openai")
    c = claude.models.retrieve("claude-sonnet-4-6")
    assert (c.id, c.type, c.display_name) == ("claude-sonnet-4-6", "model", "claude-sonnet-4-6")
    with pytest.raises(openai.NotFoundError) as e:
        oai.models.retrieve("no-such-model")
    assert e.value.code == "model_not_found"
    with pytest.raises(anthropic.NotFoundError):
        claude.models.retrieve("no-such-model")


def test_openai_sdk_errors(stack, oai):
    bad = openai.OpenAI(base_url=stack.url + "/v1", api_key="tg-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as e:
        bad.chat.completions.create(model="cheap", messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 401 and e.value.code == "invalid_api_key"
    with pytest.raises(openai.BadRequestError) as e:
        oai.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    assert e.value.code == "model_not_found" and e.value.param == "model"
    assert "no-such-model" in e.value.message
    with pytest.raises(openai.RateLimitError):
        oai.chat.completions.create(model="cheap", messages=[{"role": "user", "content": "x"}],
                                    extra_headers={"x-mock-status": "429"})


def test_anthropic_sdk_message(claude, client):
    raw = claude.messages.with_raw_response.create(
        model="claude-sonnet-4-6", max_tokens=100, messages=[{"role": "user", "content": "Hello"}])
    m = raw.parse()
    assert m.content[0].text.startswith("Sure")
    assert m.usage.output_tokens == 12
    assert int(raw.headers["x-tollgate-cost-micros"]) == expected_cost(
        "anthropic/claude-sonnet-4-6", m.usage.input_tokens, 12)
    assert client.record(raw.headers["x-tollgate-request-id"])["team"] == "labs"


def test_anthropic_sdks_newest_members_pass(stack, claude):
    """anthropic-sdk-python 2.17.0 sends cache `diagnostics` (a body member
    the API takes; the mock refused it as an extra input) and `speed` in a
    count; its `workspace_id` is a header the gateway drops (the provider
    key's workspace, not the client's)."""
    ask = [{"role": "user", "content": "Hello"}]
    m = claude.messages.create(model="claude-sonnet-4-6", max_tokens=20, messages=ask, diagnostics={"previous_message_id": None},
                               workspace_id="wrkspc_client")
    assert m.type == "message"
    assert upstream_body(stack)["diagnostics"] == {"previous_message_id": None}
    assert claude.messages.count_tokens(model="claude-sonnet-4-6", messages=ask, speed="standard").input_tokens > 0


def test_anthropic_sdk_stream(claude, client):
    with claude.messages.stream(model="claude-sonnet-4-6", max_tokens=100,
                                messages=[{"role": "user", "content": "Hello"}],
                                extra_headers={"x-mock-output-tokens": "6"}) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == "Sure, here is a mock"
    assert final.usage.output_tokens == 6


def test_anthropic_sdk_errors(stack, claude):
    bad = anthropic.Anthropic(base_url=stack.url, api_key="tg-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as e:
        bad.messages.create(model="claude-sonnet-4-6", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 401
    assert e.value.body["error"]["type"] == "authentication_error"
    with pytest.raises(anthropic.BadRequestError) as e:
        claude.messages.create(model="nope", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert "nope" in str(e.value)


# ---- every SDK against every provider format -----------------------------------------------
# (model, the provider format it reaches, the pricing key)
PROVIDERS = [("openai/gpt-5.4", "openai", "openai/gpt-5.4"),
             ("anthropic/claude-sonnet-4-6", "anthropic", "anthropic/claude-sonnet-4-6"),
             ("cheap", "deepseek", "deepseek/deepseek-v4"),
             ("google/gemini-2.5-flash", "gemini", "google/gemini-2.5-flash")]


@pytest.mark.parametrize("model,fmt,price", PROVIDERS, ids=[p[1] for p in PROVIDERS])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_openai_sdk_chat_reaches_every_provider_format(oai, client, model, fmt, price, stream):
    if stream:
        raw = oai.chat.completions.with_raw_response.create(
            model=model, messages=[{"role": "user", "content": "hi"}], stream=True, stream_options={"include_usage": True})
        chunks = list(raw.parse())
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        usage = next(c.usage for c in chunks if c.usage)
    else:
        raw = oai.chat.completions.with_raw_response.create(model=model, messages=[{"role": "user", "content": "hi"}])
        r = raw.parse()
        text, usage = r.choices[0].message.content, r.usage
    assert text.startswith("Sure")
    rec = client.record(raw.headers["x-tollgate-request-id"])
    cached = (usage.prompt_tokens_details.cached_tokens or 0) if usage.prompt_tokens_details else 0
    assert rec["usage"]["output_tokens"] == usage.completion_tokens
    assert rec["cost_micros"] == expected_cost(price, usage.prompt_tokens, usage.completion_tokens, cached=cached)


@pytest.mark.parametrize("model,fmt,price", PROVIDERS, ids=[p[1] for p in PROVIDERS])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_anthropic_sdk_reaches_every_provider_format(claude, client, model, fmt, price, stream):
    if stream:
        with claude.messages.stream(model=model, max_tokens=64, messages=[{"role": "user", "content": "hi"}]) as s:
            text = "".join(s.text_stream)
            m = s.get_final_message()
            rid = s.response.headers["x-tollgate-request-id"]
    else:
        raw = claude.messages.with_raw_response.create(model=model, max_tokens=64, messages=[{"role": "user", "content": "hi"}])
        m = raw.parse()
        text, rid = m.content[0].text, raw.headers["x-tollgate-request-id"]
    assert text.startswith("Sure") and m.stop_reason == "end_turn"
    rec = client.record(rid)
    u = m.usage
    cached = u.cache_read_input_tokens or 0
    inp = u.input_tokens + cached + (u.cache_creation_input_tokens or 0)
    assert rec["usage"]["output_tokens"] == u.output_tokens
    assert rec["cost_micros"] == expected_cost(price, inp, u.output_tokens, cached=cached)


def test_an_anthropic_clients_thinking_reaches_each_claude_model_in_the_form_it_takes(stack, claude):
    """Opus 4.7 and later refuse the budget form of thinking, Claude before 4.6
    the adaptive one, Claude 3.5 any (the mock holds the refusals). A client
    written for one model, or sent to another by a route, a fallback or the
    auto router, is fitted to the model it reaches instead of failing."""
    ask = [{"role": "user", "content": "Think, then answer."}]
    claude.messages.create(model="claude-opus-4-8", max_tokens=20000, thinking={"type": "enabled", "budget_tokens": 16384}, messages=ask)
    assert (upstream_body(stack)["thinking"], upstream_body(stack)["output_config"]) == ({"type": "adaptive"}, {"effort": "high"})
    claude.messages.create(model="claude-haiku-4-5", max_tokens=20000, thinking={"type": "adaptive"},
                           extra_body={"output_config": {"effort": "medium"}}, messages=ask)
    assert (upstream_body(stack)["thinking"], "output_config" in upstream_body(stack)) == ({"type": "enabled", "budget_tokens": 8192}, False), "the effort became the budget"
    claude.messages.create(model="claude-3-5-haiku-20241022", max_tokens=2000, thinking={"type": "enabled", "budget_tokens": 1024}, messages=ask)
    assert "thinking" not in upstream_body(stack)
    # The form the model takes goes as it came.
    claude.messages.create(model="claude-haiku-4-5", max_tokens=20000, thinking={"type": "enabled", "budget_tokens": 4096}, messages=ask)
    assert upstream_body(stack)["thinking"] == {"type": "enabled", "budget_tokens": 4096}
