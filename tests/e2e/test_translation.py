"""An OpenAI SDK using a Claude model through /v1/chat/completions: the
request goes up as an Anthropic messages request (the strict mock refuses
anything Anthropic would), the answer comes back as a chat completion — JSON,
streams (with and without include_usage), tool calls from Anthropic's
documented tool-use stream, errors — and is priced as Anthropic reports it."""
from __future__ import annotations

import json

import openai
import pytest
import requests

from conftest import SEARCH_KEY, expected_cost, upstream_body

MODEL = "anthropic/claude-sonnet-4-6"


def test_a_chat_completion_from_a_claude_model(oai, client):
    raw = oai.chat.completions.with_raw_response.create(
        model=MODEL, max_tokens=50, temperature=0.2, stop=["END"], user="u-42",
        messages=[{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Say hello"}])
    assert raw.headers["x-mock-path"] == "/v1/messages", "it went to Anthropic's API"
    assert raw.headers["x-mock-anthropic-version"], "with the version header Anthropic requires"
    r = raw.parse()
    assert r.object == "chat.completion" and r.choices[0].message.content.startswith("Sure")
    assert r.choices[0].finish_reason == "stop"
    u = r.usage
    cost = expected_cost(MODEL, u.prompt_tokens, u.completion_tokens)
    assert int(raw.headers["x-tollgate-cost-micros"]) == cost
    assert int(raw.headers["content-length"]) == len(raw.content)
    rec = client.record(raw.headers["x-tollgate-request-id"])
    assert (rec["api"], rec["provider"], rec["model_upstream"]) == ("openai_chat", "anthropic", "claude-sonnet-4-6")
    assert rec["cost_micros"] == cost and rec["usage"]["output_tokens"] == u.completion_tokens


def test_empty_content_openai_takes_is_left_out_for_claude(oai):
    """OpenAI takes an empty system prompt, an empty assistant turn and empty
    text parts; Anthropic refuses each (the strict mock cites the errors).
    What carries nothing is left out, so the request is served."""
    raw = oai.chat.completions.with_raw_response.create(
        model=MODEL, max_tokens=20, extra_headers={"x-mock-echo": "1"},
        messages=[{"role": "system", "content": ""}, {"role": "user", "content": "First"},
                  {"role": "assistant", "content": ""},
                  {"role": "user", "content": [{"type": "text", "text": ""}, {"type": "text", "text": "Second"}]}])
    assert raw.parse().choices[0].message.content == "Second"
    # All of it empty, or a system message alone: no message is left, which
    # Anthropic refuses ("messages: at least one message is required"). The
    # gateway refuses it by name, before sending (it went upstream and came
    # back as Anthropic's refusal until the thirtieth session).
    for messages in ([{"role": "user", "content": ""}], [{"role": "system", "content": "Be brief."}],
                     [{"role": "system", "content": "s"}, {"role": "user", "content": [{"type": "text", "text": ""}]}]):
        with pytest.raises(openai.BadRequestError) as e:
            oai.chat.completions.create(model=MODEL, max_tokens=20, messages=messages)
        assert (e.value.body["code"], e.value.body["param"]) == ("untranslatable_field", "messages"), e.value.body
        assert "x-mock-path" not in e.value.response.headers


@pytest.mark.parametrize("include_usage", [True, False])
def test_a_stream_from_a_claude_model(oai, client, include_usage):
    kw = {"stream_options": {"include_usage": True}} if include_usage else {}
    raw = oai.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "Stream it"}], stream=True, **kw)
    chunks = list(raw.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("Sure, here is a mock answer")
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["stop"]
    with_usage = [c for c in chunks if c.usage]
    rec = client.record(raw.headers["x-tollgate-request-id"])
    if include_usage:
        assert len(with_usage) == 1 and with_usage[0].usage.completion_tokens == rec["usage"]["output_tokens"]
    else:
        assert not with_usage
    assert rec["usage_source"] == "provider" and rec["cost_micros"] > 0


def test_tool_calls_come_back_as_openai_tool_calls(oai):
    """Anthropic's documented tool-use stream (tests/captures), replayed by the mock, seen through the OpenAI SDK."""
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                               "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}}]
    stream = oai.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Weather in SF?"}], tools=tools, tool_choice="auto",
        stream=True, extra_headers={"x-mock-replay": "anthropic_stream_tool_use.sse", "x-mock-chunk-bytes": "61"})
    calls: dict[int, dict] = {}
    finish = None
    for c in stream:
        if not c.choices:
            continue
        for tc in c.choices[0].delta.tool_calls or []:
            d = calls.setdefault(tc.index, {"id": None, "name": None, "arguments": ""})
            d["id"] = tc.id or d["id"]
            d["name"] = (tc.function.name if tc.function else None) or d["name"]
            d["arguments"] += (tc.function.arguments or "") if tc.function else ""
        finish = c.choices[0].finish_reason or finish
    assert finish == "tool_calls"
    assert calls and all(d["id"] and d["name"] for d in calls.values())
    assert all(isinstance(json.loads(d["arguments"]), dict) for d in calls.values())


def test_claudes_thinking_stays_out_of_an_openai_clients_answer(oai, client):
    """A real extended-thinking stream (tests/captures), seen through the OpenAI SDK: the
    thinking and its signature are not content; the answer's text is, and all 104 output
    tokens (thinking included) are priced."""
    raw = oai.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "hey"}], stream=True,
        stream_options={"include_usage": True},
        extra_headers={"x-mock-replay": "anthropic_stream_thinking.sse", "x-mock-chunk-bytes": "37"})
    chunks = list(raw.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == ("Hello! I'm Assistant, an AI here to help you. How can I assist you today? Feel free to ask "
                    "questions or let me know what you're looking for, and I'll do my best to help.")
    dumped = json.dumps([c.model_dump() for c in chunks])
    assert "greeting" not in dumped and "ErUBCkYI" not in dumped, "neither the thinking nor its signature"
    assert [c.usage.completion_tokens for c in chunks if c.usage] == [104]
    rec = client.record(raw.headers["x-tollgate-request-id"])
    assert (rec["usage"]["input_tokens"], rec["usage"]["output_tokens"]) == (778, 104)


def test_a_tool_conversation_with_an_image_is_accepted_by_anthropic(oai):
    r = oai.chat.completions.create(model=MODEL, messages=[
        {"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "toolu_1", "type": "function", "function": {"name": "lookup", "arguments": "{\"q\": \"png\"}"}}]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "a PNG image"}],
        tools=[{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}],
        parallel_tool_calls=False)
    assert r.choices[0].message.content


def test_errors_come_back_in_openai_shape(oai):
    with pytest.raises(openai.APIStatusError) as e:
        oai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}],
                                    extra_headers={"x-mock-status": "529"})
    assert e.value.status_code == 529
    assert e.value.body["type"] == "overloaded_error"


def test_what_cannot_be_translated_is_refused_by_name(oai):
    for kw, param in [({"n": 2}, "n"), ({"response_format": {"type": "json_object"}}, "response_format"),
                      ({"temperature": 1.7}, "temperature"), ({"presence_penalty": 0.5}, "presence_penalty")]:
        with pytest.raises(openai.BadRequestError) as e:
            oai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}], **kw)
        assert e.value.body["code"] == "untranslatable_field" and e.value.body["param"] == param, e.value.body


# ---- the other direction: an Anthropic SDK using an OpenAI-format model ----------------------

@pytest.mark.parametrize("model,price,cap", [("openai/gpt-5.4", "openai/gpt-5.4", "max_completion_tokens"),
                                             ("cheap", "deepseek/deepseek-v4", "max_tokens")])
def test_an_anthropic_message_from_an_openai_format_model(claude_sdk, client, model, price, cap):
    raw = claude_sdk.messages.with_raw_response.create(
        model=model, max_tokens=50, system="Be terse.", stop_sequences=["END"], metadata={"user_id": "u-7"},
        messages=[{"role": "user", "content": "Say hello"}])
    assert raw.headers["x-mock-path"].endswith("/chat/completions")
    m = raw.parse()
    assert m.type == "message" and m.content[0].text.startswith("Sure") and m.stop_reason == "end_turn"
    u = m.usage
    rec = client.record(raw.headers["x-tollgate-request-id"])
    assert (rec["api"], rec["usage"]["output_tokens"]) == ("anthropic_messages", u.output_tokens)
    assert rec["cost_micros"] == expected_cost(price, u.input_tokens + (u.cache_read_input_tokens or 0), u.output_tokens,
                                               cached=u.cache_read_input_tokens or 0)


def test_an_anthropic_stream_from_an_openai_format_model(claude_sdk, client):
    with claude_sdk.messages.stream(model="openai/gpt-5.4", max_tokens=50,
                                    messages=[{"role": "user", "content": "Stream it"}]) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
        rid = s.response.headers["x-tollgate-request-id"]
    assert text.startswith("Sure, here is a mock answer")
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 12
    rec = client.record(rid)
    assert rec["usage"]["output_tokens"] == 12 and rec["usage_source"] == "provider" and rec["stream"] is True


def test_anthropic_sdk_errors_and_refusals_from_an_openai_format_model(claude_sdk):
    import anthropic
    with pytest.raises(anthropic.RateLimitError) as e:
        claude_sdk.messages.create(model="openai/gpt-5.4", max_tokens=10, messages=[{"role": "user", "content": "x"}],
                                   extra_headers={"x-mock-status": "429"})
    assert e.value.body["error"]["type"] == "rate_limit_error"
    with pytest.raises(anthropic.BadRequestError) as e:
        claude_sdk.messages.create(model="openai/gpt-5.4", max_tokens=10, extra_body={"top_k": 5},
                                   messages=[{"role": "user", "content": "x"}])
    assert "top_k" in e.value.body["error"]["message"]


def test_claude_codes_attribution_line_does_not_keep_an_openai_cache_cold(claude_sdk, client):
    # Claude Code's first system block (its shape from a real capture, speakerdeck.com/sumedhbala/act1-costs:
    # "x-anthropic-billing-header: … cch=b2984;" then the cached system prompt) carries a new cch on every
    # turn. Translated for an OpenAI-format model it is left out, so the provider's automatic prefix
    # cache (the mock's: exact prefix, from 1,024 tokens) hits from the second turn on.
    long_prompt = "You are an interactive CLI tool that helps users with software engineering tasks. " * 80
    costs = []
    for cch in ("97bd6", "24c2d"):
        raw = claude_sdk.messages.with_raw_response.create(
            model="openai/gpt-5.4", max_tokens=20, messages=[{"role": "user", "content": "Turn one."}],
            system=[{"type": "text", "text": f"x-anthropic-billing-header: cc_version=2.1.153.d02; cc_entrypoint=cli; cch={cch};"},
                    {"type": "text", "text": long_prompt, "cache_control": {"type": "ephemeral", "ttl": "1h"}}])
        u = raw.parse().usage
        rec = client.record(raw.headers["x-tollgate-request-id"])
        costs.append(rec["cost_micros"])
    assert (u.cache_read_input_tokens or 0) >= 1024, "the second turn read the first one's prefix"
    assert costs[1] < costs[0]
    # Nor does the cache-miss detector take the new cch for a changed prefix.
    assert rec.get("cache_miss") is None, rec.get("cache_miss")


def test_claude_codes_thinking_reaches_an_openai_format_model_as_reasoning_effort(stack, claude_sdk, client):
    # Claude Code sends `thinking` whatever the model (weave-os/router#323); it was refused here.
    import requests
    raw = claude_sdk.messages.with_raw_response.create(
        model="openai/gpt-5.4", max_tokens=20000, thinking={"type": "enabled", "budget_tokens": 16384},
        messages=[{"role": "user", "content": "Think, then answer."}], extra_headers={"x-mock-reasoning-tokens": "40"},
        # and context editing, which it sends on every request too (decolua/9router#1468)
        extra_body={"context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]}})
    m = raw.parse()
    sent = requests.get(stack.mock.url + "/mock/last-body", timeout=5).json()
    assert (sent["reasoning_effort"], sent["max_completion_tokens"]) == ("high", 20000)
    assert "thinking" not in sent and "context_management" not in sent
    # The reasoning tokens are output, priced as such.
    rec = client.record(raw.headers["x-tollgate-request-id"])
    assert m.usage.output_tokens == rec["usage"]["output_tokens"] == 52
    # An explicit effort wins; disabled thinking sends none.
    claude_sdk.messages.create(model="openai/gpt-5.4", max_tokens=100, thinking={"type": "adaptive"},
                               extra_body={"output_config": {"effort": "low"}}, messages=[{"role": "user", "content": "x"}])
    assert requests.get(stack.mock.url + "/mock/last-body", timeout=5).json()["reasoning_effort"] == "low"
    claude_sdk.messages.create(model="openai/gpt-5.4", max_tokens=100, thinking={"type": "disabled"},
                               messages=[{"role": "user", "content": "x"}])
    assert "reasoning_effort" not in requests.get(stack.mock.url + "/mock/last-body", timeout=5).json()


@pytest.mark.parametrize("model,capture,usage", [
    # GPT-5.6's cache writes (tests/captures): Anthropic's cache creation, not plain input
    ("openai/gpt-5.4", "openai_chat_cache_write.json",
     dict(input_tokens=32, cache_read_input_tokens=4096, cache_creation_input_tokens=15872, output_tokens=120)),
    # DeepSeek bills its hit tokens (640), not its cached_tokens (768)
    ("cheap", "deepseek_stream_keepalive.sse",
     dict(input_tokens=360, cache_read_input_tokens=640, cache_creation_input_tokens=0, output_tokens=2)),
])
def test_a_translated_answers_usage_is_split_as_anthropic_splits_it(claude_sdk, model, capture, usage):
    h = {"x-mock-replay": capture, "x-mock-chunk-bytes": "61"}
    msgs = [{"role": "user", "content": "replay"}]
    if capture.endswith(".sse"):
        with claude_sdk.messages.stream(model=model, max_tokens=50, messages=msgs, extra_headers=h) as s:
            u = s.get_final_message().usage
    else:
        u = claude_sdk.messages.create(model=model, max_tokens=50, messages=msgs, extra_headers=h).usage
    assert {k: getattr(u, k) for k in usage} == usage


def test_claudes_cache_writes_reach_an_openai_client_apart_from_plain_input(oai):
    # tests/captures: 21 input, 1,800 read, 2,500 written (500 for 5 minutes, 2,000 for an hour)
    raw = oai.chat.completions.with_raw_response.create(model=MODEL, messages=[{"role": "user", "content": "replay"}],
                                                        extra_headers={"x-mock-replay": "anthropic_message_cache_1h.json"})
    u = json.loads(raw.text)["usage"]
    assert (u["prompt_tokens"], u["prompt_tokens_details"]) == (4321, {"cached_tokens": 1800, "cache_write_tokens": 2500})


def test_an_anthropic_request_without_a_cap_reaches_an_openai_model_capped_as_reserved(stack, client):
    """`max_tokens` null, or none at all (Anthropic refuses both; OpenAI
    takes either as no cap): the request went to OpenAI uncapped while its
    budget reservation assumed `default_max_tokens` (4096), so one answer
    could run to the model's limit past a budget. Now the gateway's cap
    goes up, as for every other client. Found by filter/tests/mutated_captures.rs."""
    import requests
    h = {"x-api-key": SEARCH_KEY, "anthropic-version": "2023-06-01", "x-mock-output-tokens": "20000"}
    for extra in ({"max_tokens": None}, {}):
        body = {"model": "openai/gpt-5.4", "messages": [{"role": "user", "content": "Write at length."}], **extra}
        r = requests.post(stack.url + "/v1/messages", json=body, headers=h, timeout=30)
        assert r.status_code == 200, r.text
        sent = requests.get(stack.mock.url + "/mock/last-body", timeout=5).json()
        assert sent["max_completion_tokens"] == 4096, (extra, sent)
        m = r.json()
        assert (m["usage"]["output_tokens"], m["stop_reason"]) == (4096, "max_tokens"), m["usage"]
        assert client.record(r.headers["x-tollgate-request-id"])["usage"]["output_tokens"] == 4096


def test_claude_codes_thinking_reaches_a_model_that_does_not_reason(stack, claude_sdk):
    # OpenAI's models that do not reason refuse reasoning_effort (carlrobertoh/ProxyAI#1203;
    # the mock too): the effort is left out for them, so Claude Code's turn is answered.
    import requests
    m = claude_sdk.messages.create(model="openai/gpt-4.1", max_tokens=20000, thinking={"type": "enabled", "budget_tokens": 16384},
                                   messages=[{"role": "user", "content": "Answer."}])
    assert m.type == "message" and m.content[0].type == "text"
    sent = requests.get(stack.mock.url + "/mock/last-body", timeout=5).json()
    assert (sent["model"], sent["max_completion_tokens"]) == ("gpt-4.1", 20000)
    assert "reasoning_effort" not in sent and "thinking" not in sent


def test_an_openai_clients_reasoning_effort_reaches_claude_as_the_thinking_each_model_takes(stack, oai, client):
    """reasoning_effort was refused for Claude. Each Claude model takes one
    form of thinking and refuses the other (the mock holds Anthropic's real
    refusals: budget form on Opus 4.8, any thinking on Claude 3.5 Haiku, a
    budget not below max_tokens, thinking in a tool loop without the
    previous turn's thinking blocks, thinking with a forced tool)."""
    ask = [{"role": "user", "content": "Think, then answer."}]
    oai.chat.completions.create(model="anthropic/claude-sonnet-4-5", reasoning_effort="high", max_completion_tokens=64000, messages=ask)
    assert (upstream_body(stack)["thinking"], upstream_body(stack)["max_tokens"]) == ({"type": "enabled", "budget_tokens": 16384}, 64000)
    raw = oai.chat.completions.with_raw_response.create(model="anthropic/claude-opus-4-8", reasoning_effort="medium", messages=ask)
    assert (upstream_body(stack)["thinking"], upstream_body(stack)["output_config"]) == ({"type": "adaptive"}, {"effort": "medium"})
    rec = client.record(raw.headers["x-tollgate-request-id"])
    assert rec["outcome"] == "ok" and rec["usage"]["output_tokens"] == raw.parse().usage.completion_tokens
    # The gateway's default cap (4096) leaves a budget of half of it; a model that does not think gets none.
    oai.chat.completions.create(model="anthropic/claude-sonnet-4-5", reasoning_effort="xhigh", messages=ask)
    assert upstream_body(stack)["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    oai.chat.completions.create(model="anthropic/claude-3-5-haiku-20241022", reasoning_effort="high", messages=ask)
    assert "thinking" not in upstream_body(stack)
    # A tool loop's next step and a forced tool go without thinking: Anthropic would refuse both.
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}]
    loop = ask + [{"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function",
                                                                          "function": {"name": "lookup", "arguments": "{}"}}]},
                  {"role": "tool", "tool_call_id": "call_1", "content": "42"}]
    r = oai.chat.completions.create(model="anthropic/claude-opus-4-8", reasoning_effort="high", tools=tools, messages=loop)
    assert r.choices[0].message.content and "thinking" not in upstream_body(stack)
    oai.chat.completions.create(model="anthropic/claude-opus-4-8", reasoning_effort="high", tools=tools, tool_choice="required", messages=ask)
    assert "thinking" not in upstream_body(stack)
    # Claude thinks only at temperature 1: another is refused before anything is sent
    # (on a model that samples: one that refuses sampling gets none, below).
    with pytest.raises(openai.BadRequestError) as e:
        oai.chat.completions.create(model="anthropic/claude-sonnet-4-6", reasoning_effort="high", temperature=0.3, messages=ask)
    assert e.value.body["param"] == "temperature" and e.value.body["code"] == "untranslatable_field"


def test_an_openai_clients_sampling_is_left_out_for_claude_models_that_refuse_it(stack, oai, client):
    """Opus 4.7 and later and the Claude 5 models refuse a temperature other
    than 1 and any top_p ("`temperature` is deprecated for this model.": the
    mock holds the real refusal). An OpenAI client's temperature, fine on
    GPT and older Claude models, failed every request there."""
    ask = [{"role": "user", "content": "Answer."}]
    for model in ["anthropic/claude-opus-4-8", "anthropic/claude-sonnet-5-5"]:
        raw = oai.chat.completions.with_raw_response.create(model=model, temperature=0.2, top_p=0.9, messages=ask)
        body = upstream_body(stack)
        assert ("temperature" not in body and "top_p" not in body and body["model"] == model.split("/")[1]), body
        assert client.record(raw.headers["x-tollgate-request-id"])["outcome"] == "ok"
    # With thinking: no temperature left to refuse beside it.
    oai.chat.completions.create(model="anthropic/claude-opus-4-8", reasoning_effort="high", temperature=0.3, messages=ask)
    assert upstream_body(stack)["thinking"] == {"type": "adaptive"} and "temperature" not in upstream_body(stack)
    # A model that samples keeps them.
    oai.chat.completions.create(model="anthropic/claude-sonnet-4-6", temperature=0.2, top_p=0.9, messages=ask)
    assert (upstream_body(stack)["temperature"], upstream_body(stack)["top_p"]) == (0.2, 0.9)


def test_an_anthropic_clients_sampling_is_left_out_for_claude_models_that_refuse_it(stack, claude_sdk):
    """The same for an Anthropic client (a temperature, a top_k), whichever
    Claude model it names or a route sends it to; the rest of the body
    goes as it came."""
    ask = [{"role": "user", "content": "Answer."}]
    # Straight to the mock, the refusal Tollgate spares the client.
    direct = requests.post(stack.mock.url + "/v1/messages", timeout=5, headers={"x-api-key": "sk-ant-mock", "anthropic-version": "2023-06-01"},
                           json={"model": "claude-opus-4-8", "max_tokens": 10, "temperature": 0.2, "messages": ask})
    assert direct.status_code == 400 and direct.json()["error"]["message"] == "`temperature` is deprecated for this model.", direct.text
    # (anthropic-sdk-python 2.x took `temperature` and `top_k` out of create()'s
    # arguments; older SDKs and other clients still send them.)
    m = claude_sdk.messages.create(model="claude-opus-4-8", max_tokens=10, stop_sequences=["END"], messages=ask,
                                   extra_body={"temperature": 0.2, "top_k": 40})
    assert m.type == "message"
    body = upstream_body(stack)
    assert "temperature" not in body and "top_k" not in body and body["stop_sequences"] == ["END"], body
    claude_sdk.messages.create(model="claude-sonnet-5-5", max_tokens=10, messages=ask, extra_body={"temperature": 1})
    assert upstream_body(stack)["temperature"] == 1, "its default: kept"
    claude_sdk.messages.create(model="claude-sonnet-4-6", max_tokens=10, messages=ask, extra_body={"temperature": 0.2, "top_k": 40})
    assert (upstream_body(stack)["temperature"], upstream_body(stack)["top_k"]) == (0.2, 40)


REFUSED_TEMPERATURE = "Unsupported value: 'temperature' does not support 0.2 with this model. Only the default (1) value is supported."


def test_an_anthropic_clients_temperature_reaches_an_openai_reasoning_model_only_where_it_does_not_reason(stack, claude_sdk, client):
    """OpenAI's reasoning models refuse a temperature other than 1 and any
    top_p unless they do not reason: GPT-5.1 and 5.2 by default, later ones
    at `reasoning_effort: none` (the mock holds the real refusal, sources in
    filter/src/translate/sampling.rs). An Anthropic client's temperature,
    fine on Claude, failed every request translated to them."""
    ask = [{"role": "user", "content": "Answer."}]
    direct = requests.post(stack.mock.url + "/v1/chat/completions", timeout=5, headers={"authorization": "Bearer sk-mock-openai"},
                           json={"model": "gpt-5.5", "temperature": 0.2, "messages": ask})
    err = direct.json()["error"]
    assert (direct.status_code, err["message"], err["param"], err["code"]) == (400, REFUSED_TEMPERATURE, "temperature", "unsupported_value"), direct.text
    for model in ["openai/gpt-5.5", "openai/gpt-5-mini", "openai/o4-mini"]:
        raw = claude_sdk.messages.with_raw_response.create(model=model, max_tokens=10, messages=ask, extra_body={"temperature": 0.2, "top_p": 0.9})
        body = upstream_body(stack)
        assert "temperature" not in body and "top_p" not in body and body["model"] == model.split("/")[1], body
        assert client.record(raw.headers["x-tollgate-request-id"])["outcome"] == "ok"
    # Thinking asks gpt-5.2 to reason: out; without it, 5.2 does not and takes them.
    claude_sdk.messages.create(model="openai/gpt-5.2", max_tokens=3000, messages=ask, thinking={"type": "enabled", "budget_tokens": 2048},
                               extra_body={"temperature": 0.2})
    assert upstream_body(stack)["reasoning_effort"] == "low" and "temperature" not in upstream_body(stack)
    for model in ["openai/gpt-5.2", "openai/gpt-4.1"]:
        claude_sdk.messages.create(model=model, max_tokens=10, messages=ask, extra_body={"temperature": 0.2, "top_p": 0.9})
        assert (upstream_body(stack)["temperature"], upstream_body(stack)["top_p"]) == (0.2, 0.9), model


def test_an_openai_clients_sampling_is_left_out_where_the_gateway_chose_a_reasoning_model_that_refuses_it(stack, oai, client):
    """A route (here `default`, gpt-5.4-mini), a fallback or the auto router
    may send an OpenAI client's request to a reasoning model it never named:
    its temperature and top_p are left out there, where they would be
    refused. A model the client named gets the body as sent, and the API's
    own refusal, as without Tollgate."""
    ask = [{"role": "user", "content": "Answer."}]
    raw = oai.chat.completions.with_raw_response.create(model="default", temperature=0.2, top_p=0.9, seed=7, messages=ask)
    body = upstream_body(stack)
    assert "temperature" not in body and "top_p" not in body and (body["model"], body["seed"]) == ("gpt-5.4-mini", 7), body
    assert client.record(raw.headers["x-tollgate-request-id"])["outcome"] == "ok"
    # Told not to reason, it samples: kept.
    oai.chat.completions.create(model="default", reasoning_effort="none", temperature=0.2, messages=ask)
    assert upstream_body(stack)["temperature"] == 0.2
    with pytest.raises(openai.BadRequestError) as e:
        oai.chat.completions.create(model="openai/gpt-5.5", temperature=0.2, messages=ask)
    assert e.value.body["message"] == REFUSED_TEMPERATURE and e.value.body["param"] == "temperature"


def test_claude_codes_tool_turns_reach_new_gpts_which_refuse_tools_beside_reasoning(stack, claude_sdk):
    """GPT-5.2 and later refuse function tools beside a reasoning effort in
    chat completions, and from 5.6 their own default effort too (the mock
    holds the real refusals). Claude Code sends tools and thinking on every
    turn: every one failed on these models."""
    import requests
    tools = [{"name": "Read", "description": "Read a file", "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}}]
    for model, effort in [("openai/gpt-5.4", None), ("openai/gpt-5.6-terra", "none"), ("openai/gpt-5.1", "high")]:
        m = claude_sdk.messages.create(model=model, max_tokens=20000, thinking={"type": "enabled", "budget_tokens": 16384},
                                       tools=tools, messages=[{"role": "user", "content": "Read a.txt"}])
        assert m.type == "message", model
        sent = requests.get(stack.mock.url + "/mock/last-body", timeout=5).json()
        assert sent.get("reasoning_effort") == effort and sent["tools"][0]["function"]["name"] == "Read", (model, sent)


def test_claude_codes_tool_loop_on_deepseek_carries_its_reasoning_back(stack, claude_sdk):
    """DeepSeek V4 thinks by default and refuses a tool loop whose assistant
    turns lack their reasoning_content (the mock holds the real refusal).
    Its reasoning reaches Claude Code as a thinking block, JSON and streamed;
    sent back, it returns to DeepSeek as reasoning_content."""
    import anthropic
    import requests
    tools = [{"name": "Read", "description": "Read a file", "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}}]
    ask = [{"role": "user", "content": "Read a.txt"}]
    think = {"x-mock-reasoning-tokens": "20"}
    on = {"type": "enabled", "budget_tokens": 1024}
    m = claude_sdk.messages.create(model="deepseek/deepseek-v4", max_tokens=2000, tools=tools, messages=ask, extra_headers=think, thinking=on)
    assert [b.type for b in m.content] == ["thinking", "text"] and m.content[0].thinking.startswith("The user wants")
    assert requests.get(stack.mock.url + "/mock/last-body", timeout=5).json()["thinking"] == {"type": "enabled"}
    with claude_sdk.messages.stream(model="deepseek/deepseek-v4", max_tokens=2000, tools=tools, messages=ask, extra_headers=think,
                                    thinking=on) as s:
        streamed = s.get_final_message()
    assert [b.type for b in streamed.content] == ["thinking", "text"] and streamed.content[0].thinking == m.content[0].thinking
    # The tool loop's next step, the thinking handed back as Claude Code does.
    call = {"type": "tool_use", "id": "call_1", "name": "Read", "input": {"path": "a.txt"}}
    result = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": "hello"}]}
    thinking = m.content[0].model_dump()
    after = claude_sdk.messages.create(model="deepseek/deepseek-v4", max_tokens=2000, tools=tools, extra_headers=think, thinking=on,
                                       messages=ask + [{"role": "assistant", "content": [thinking, call]}, result])
    assert after.content[-1].type == "text"
    sent = requests.get(stack.mock.url + "/mock/last-body", timeout=5).json()
    assert sent["messages"][1]["reasoning_content"] == m.content[0].thinking and sent["messages"][1]["tool_calls"]
    # Without it (a conversation begun on another model, a client that drops
    # thinking blocks) DeepSeek would refuse ("The `reasoning_content` in the
    # thinking mode must be passed back to the API.", held by the mock): that
    # turn goes without thinking instead, as a Claude tool loop's does.
    dropped = claude_sdk.messages.create(model="deepseek/deepseek-v4", max_tokens=2000, tools=tools, thinking=on,
                                         messages=ask + [{"role": "assistant", "content": [call]}, result])
    assert dropped.content[-1].type == "text"
    sent = requests.get(stack.mock.url + "/mock/last-body", timeout=5).json()
    assert sent["thinking"] == {"type": "disabled"} and "reasoning_effort" not in sent
    # A request that does not ask for thinking gets none: DeepSeek, which thinks by
    # default and bills it as output, is told so, and the loop needs no reasoning back.
    plain = claude_sdk.messages.create(model="deepseek/deepseek-v4", max_tokens=2000, tools=tools, extra_headers=think,
                                       messages=ask + [{"role": "assistant", "content": [call]}, result])
    assert [b.type for b in plain.content] == ["text"]
    assert requests.get(stack.mock.url + "/mock/last-body", timeout=5).json()["thinking"] == {"type": "disabled"}


def test_structured_outputs_are_translated_both_ways(stack, oai, claude_sdk):
    """The OpenAI SDK's .parse() (a strict json_schema response_format) reaches
    Claude as Anthropic's structured output, and an Anthropic client's
    output_config.format reaches an OpenAI model as a strict json_schema: both
    were refused as untranslatable."""
    import requests
    from pydantic import BaseModel

    class Person(BaseModel):
        name: str
        age: int

    def upstream_body(stack):
        return requests.get(stack.mock.url + "/mock/last-body", timeout=5).json()

    answer = {"x-mock-say": '{"name":"John","age":25}', "x-mock-output-tokens": "100"}
    r = oai.chat.completions.parse(model="anthropic/claude-sonnet-4-5", response_format=Person, extra_headers=answer,
                                   messages=[{"role": "user", "content": "Extract: John is 25."}])
    assert r.choices[0].message.parsed == Person(name="John", age=25)
    fmt = upstream_body(stack)["output_config"]["format"]
    assert fmt["type"] == "json_schema" and set(fmt["schema"]["required"]) == {"name", "age"}
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
              "required": ["name", "age"], "additionalProperties": False}
    m = claude_sdk.messages.create(model="openai/gpt-5.4", max_tokens=500, extra_headers=answer,
                                   extra_body={"output_config": {"format": {"type": "json_schema", "schema": schema}}},
                                   messages=[{"role": "user", "content": "Extract: John is 25."}])
    assert m.content[0].text == '{"name":"John","age":25}'
    assert upstream_body(stack)["response_format"] == {"type": "json_schema", "json_schema": {"name": "output", "strict": True, "schema": schema}}
    # An optional property (Anthropic takes it: a Pydantic default) is one
    # OpenAI's strict mode refuses ("Missing 'age'", which came back to the
    # client until the thirtieth session): sent non-strict, and served.
    loose = {**schema, "required": ["name"]}
    m = claude_sdk.messages.create(model="openai/gpt-5.4", max_tokens=500, extra_headers=answer,
                                   extra_body={"output_config": {"format": {"type": "json_schema", "schema": loose}}},
                                   messages=[{"role": "user", "content": "Extract: John is 25."}])
    assert m.content[0].text == '{"name":"John","age":25}'
    assert upstream_body(stack)["response_format"] == {"type": "json_schema", "json_schema": {"name": "output", "strict": False, "schema": loose}}


def test_a_pdf_goes_both_ways(stack, oai, claude_sdk):
    """An OpenAI client's `file` part (a PDF as a data: URL) reaches Claude as a
    document block, and an Anthropic client's PDF document reaches an OpenAI
    model as a file part: both were refused as untranslatable."""
    import base64
    import requests
    pdf = base64.b64encode(b"%PDF-1.4 a tiny document").decode()
    oai.chat.completions.create(model="anthropic/claude-sonnet-4-6", max_tokens=50, messages=[{"role": "user", "content": [
        {"type": "text", "text": "Summarise"}, {"type": "file", "file": {"filename": "a.pdf", "file_data": f"data:application/pdf;base64,{pdf}"}}]}])
    sent = requests.get(stack.mock.url + "/mock/last-body", timeout=5).json()
    assert sent["messages"][0]["content"][1] == {"type": "document", "title": "a.pdf",
                                                 "source": {"type": "base64", "media_type": "application/pdf", "data": pdf}}
    claude_sdk.messages.create(model="openai/gpt-5.4", max_tokens=50, messages=[{"role": "user", "content": [
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": pdf}}, {"type": "text", "text": "Summarise"}]}])
    sent = requests.get(stack.mock.url + "/mock/last-body", timeout=5).json()
    assert sent["messages"][0]["content"][0] == {"type": "file", "file": {"filename": "document.pdf", "file_data": f"data:application/pdf;base64,{pdf}"}}


def test_claude_codes_screenshot_in_a_tool_result_reaches_an_openai_model(stack, claude_sdk):
    """Claude Code's Read tool answers with an image block for a screenshot;
    an OpenAI tool message holds text only, so the translation refused it and
    the session broke there. The image now follows the tool message."""
    import requests
    png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
    tools = [{"name": "Read", "description": "Read a file", "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}}]
    m = claude_sdk.messages.create(model="openai/gpt-5.4", max_tokens=200, tools=tools, messages=[
        {"role": "user", "content": "What is in shot.png?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"path": "shot.png"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}}]}]}])
    assert m.content[0].type == "text"
    sent = requests.get(stack.mock.url + "/mock/last-body", timeout=5).json()["messages"]
    assert [x["role"] for x in sent] == ["user", "assistant", "tool", "user"]
    assert sent[3]["content"] == [{"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}}]
