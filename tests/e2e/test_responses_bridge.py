"""Chat clients on models OpenAI serves only through its Responses API (the
Codex and -pro models): the stock OpenAI SDK's chat.completions and the
stock Anthropic SDK's messages reach gpt-5.1-codex through /v1/responses
(the strict mock refuses the model on chat completions, a chat-shaped tool,
an output without its call, as api.openai.com does), and the answers, JSON
and streamed, come back in the client's own format, priced from the
Responses usage. Tool calls are checked on a real recorded gpt-5.4-mini
answer and stream (tests/captures/README.md)."""
from __future__ import annotations

import json

import openai
import pytest
import requests

from conftest import SEARCH_KEY, expected_cost

MODEL = "openai/gpt-5.1-codex"
PRICE = "openai/gpt-5.1-codex"
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Get weather",
                                           "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}}]


def sent(stack) -> dict:
    return requests.get(stack.mock.url + "/mock/last-body", timeout=5).json()


def test_the_mock_refuses_a_responses_only_model_on_chat_completions_as_openai_does(stack):
    r = requests.post(stack.mock.url + "/v1/chat/completions", timeout=5, headers={"authorization": "Bearer sk-mock-openai"},
                      json={"model": "gpt-5.1-codex", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 404, r.text
    assert r.json()["error"]["message"] == "This model is only supported in v1/responses and not in v1/chat/completions."


def test_a_chat_completion_from_a_codex_model(stack, oai, client):
    raw = oai.chat.completions.with_raw_response.create(
        model=MODEL, max_completion_tokens=200, reasoning_effort="low", user="u-9",
        messages=[{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Say hello"}])
    assert raw.headers["x-mock-path"] == "/v1/responses"
    up = sent(stack)
    assert (up["model"], up["max_output_tokens"], up["reasoning"], up["store"]) == ("gpt-5.1-codex", 200, {"effort": "low"}, False)
    assert up["input"] == [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Say hello"}]
    r = raw.parse()
    assert r.object == "chat.completion" and r.choices[0].message.content and r.choices[0].finish_reason == "stop"
    cost = expected_cost(PRICE, r.usage.prompt_tokens, r.usage.completion_tokens)
    assert int(raw.headers["x-tollgate-cost-micros"]) == cost
    assert int(raw.headers["content-length"]) == len(raw.content)
    rec = client.record(raw.headers["x-tollgate-request-id"])
    assert (rec["api"], rec["provider"], rec["model_upstream"], rec["cost_micros"]) == ("openai_chat", "openai", "gpt-5.1-codex", cost)


@pytest.mark.parametrize("include_usage", [True, False])
def test_a_stream_from_a_codex_model(oai, client, include_usage):
    kw = {"stream_options": {"include_usage": True}} if include_usage else {}
    raw = oai.chat.completions.with_raw_response.create(
        model=MODEL, stream=True, messages=[{"role": "user", "content": "Count to five"}], **kw)
    chunks = list(raw.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text and [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    usage = [c.usage for c in chunks if c.usage]
    assert len(usage) == (1 if include_usage else 0)
    rec = client.record(raw.headers["x-tollgate-request-id"])
    assert rec["usage"]["output_tokens"] > 0 and rec["cost_micros"] > 0
    if include_usage:
        assert rec["cost_micros"] == expected_cost(PRICE, usage[0].prompt_tokens, usage[0].completion_tokens)


def test_a_tool_loop_reaches_the_responses_api_as_items(stack, oai):
    """The whole loop as the SDK sends it: tools without `strict` (sent
    `strict: false`: the Responses API's default is strict), an assistant's
    tool calls and their tool message. The mock refuses a chat-shaped tool
    and an output without its call, so this is served only if translated."""
    r = oai.chat.completions.create(model=MODEL, tools=TOOLS, parallel_tool_calls=False, messages=[
        {"role": "user", "content": [{"type": "text", "text": "Tokyo weather?"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\": \"Tokyo\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "71 degrees"}])
    assert r.choices[0].message.content
    up = sent(stack)
    assert up["tools"] == [{"type": "function", "name": "get_weather", "description": "Get weather",
                            "parameters": TOOLS[0]["function"]["parameters"], "strict": False}]
    assert [i.get("type", "message") for i in up["input"]] == ["message", "function_call", "function_call_output"]
    assert up["input"][0]["content"][1] == {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo=", "detail": "auto"}
    assert up["parallel_tool_calls"] is False


def test_what_the_responses_api_has_no_place_for_is_refused_by_name(oai):
    with pytest.raises(openai.BadRequestError) as e:
        oai.chat.completions.create(model=MODEL, stop=["END"], messages=[{"role": "user", "content": "hi"}])
    assert e.value.body["code"] == "untranslatable_field" and e.value.body["param"] == "stop"


def test_a_real_recorded_tool_call_stream_reaches_the_openai_sdk_as_tool_calls(oai, client):
    raw = oai.chat.completions.with_raw_response.create(
        model=MODEL, stream=True, stream_options={"include_usage": True}, tools=TOOLS,
        messages=[{"role": "user", "content": "Tokyo weather"}],
        extra_headers={"x-mock-replay": "openai_response_stream_function_call.sse", "x-mock-chunk-bytes": "97"})
    chunks = list(raw.parse())
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert calls[0].id == "call_ahg2yVSnxIlU0OsPkAmndF76" and calls[0].function.name == "get_weather"
    assert json.loads("".join(tc.function.arguments or "" for tc in calls)) == {"location": "Tokyo"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]
    u = [c.usage for c in chunks if c.usage][0]
    assert (u.prompt_tokens, u.completion_tokens, u.completion_tokens_details.reasoning_tokens) == (41, 43, 23)
    rec = client.record(raw.headers["x-tollgate-request-id"])
    assert rec["cost_micros"] == expected_cost(PRICE, 41, 43) and rec["usage"]["reasoning_tokens"] == 23


def test_a_real_recorded_tool_call_answer_reaches_the_openai_sdk(oai, client):
    raw = oai.chat.completions.with_raw_response.create(
        model=MODEL, tools=TOOLS, messages=[{"role": "user", "content": "Tokyo weather"}],
        extra_headers={"x-mock-replay": "openai_response_function_call.json"})
    r = raw.parse()
    call = r.choices[0].message.tool_calls[0]
    assert (call.function.name, json.loads(call.function.arguments), r.choices[0].finish_reason) == ("get_weather", {"location": "Tokyo"}, "tool_calls")
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (41, 42)
    assert int(raw.headers["x-tollgate-cost-micros"]) == expected_cost(PRICE, 41, 42)


def test_claude_code_style_requests_reach_a_codex_model(stack, claude_sdk, client):
    """An Anthropic client (Claude Code's shape: tools, thinking) on a Codex
    model: translated to chat, then to the Responses API, where the effort
    stays beside the tools (the Responses API takes both)."""
    tools = [{"name": "get_weather", "description": "Get weather", "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}}}]
    raw = claude_sdk.messages.with_raw_response.create(
        model=MODEL, max_tokens=2000, thinking={"type": "enabled", "budget_tokens": 1024}, tools=tools,
        system="Be terse.", messages=[{"role": "user", "content": "Say hello"}])
    assert raw.headers["x-mock-path"] == "/v1/responses"
    up = sent(stack)
    assert (up["max_output_tokens"], up["reasoning"], up["tools"][0]["name"]) == (2000, {"effort": "low"}, "get_weather")
    m = raw.parse()
    assert m.type == "message" and m.content[0].type == "text" and m.content[0].text and m.stop_reason == "end_turn"
    assert int(raw.headers["x-tollgate-cost-micros"]) == expected_cost(PRICE, m.usage.input_tokens, m.usage.output_tokens)
    rec = client.record(raw.headers["x-tollgate-request-id"])
    assert (rec["api"], rec["provider"], rec["model_upstream"]) == ("anthropic_messages", "openai", "gpt-5.1-codex")


def test_a_real_recorded_tool_call_reaches_the_anthropic_sdk_streamed_and_whole(claude_sdk, client):
    tools = [{"name": "get_weather", "input_schema": {"type": "object"}}]
    ask = dict(model=MODEL, max_tokens=500, tools=tools, messages=[{"role": "user", "content": "Tokyo weather"}])
    with claude_sdk.messages.stream(**ask, extra_headers={"x-mock-replay": "openai_response_stream_function_call.sse", "x-mock-chunk-bytes": "53"}) as s:
        final = s.get_final_message()
    use = [b for b in final.content if b.type == "tool_use"][0]
    assert (use.id, use.name, use.input, final.stop_reason) == ("call_ahg2yVSnxIlU0OsPkAmndF76", "get_weather", {"location": "Tokyo"}, "tool_use")
    assert (final.usage.input_tokens, final.usage.output_tokens) == (41, 43)
    m = claude_sdk.messages.create(**ask, extra_headers={"x-mock-replay": "openai_response_function_call.json"})
    use = [b for b in m.content if b.type == "tool_use"][0]
    assert (use.name, use.input, m.stop_reason, m.usage.output_tokens) == ("get_weather", {"location": "Tokyo"}, "tool_use", 42)


def test_provider_refusals_come_back_in_the_clients_shape(oai, claude_sdk):
    """A provider's refusal on the Responses API (the same error shape as
    chat completions) reaches each client as its own error."""
    with pytest.raises(openai.BadRequestError) as e:
        oai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], extra_headers={"x-mock-status": "400"})
    assert "x-mock-status" in str(e.value)
    import anthropic
    with pytest.raises(anthropic.BadRequestError) as e:
        claude_sdk.messages.create(model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "hi"}], extra_headers={"x-mock-status": "400"})
    assert e.value.body["type"] == "error" and e.value.body["error"]["type"] == "invalid_request_error"


HOSTILE = [
    ({"max_tokens": 18446744073709551615}, None),
    ({"max_tokens": 1e30}, None),
    ({"max_tokens": -3}, None),
    ({"messages": "hello"}, "messages"),
    ({"messages": [{"role": "function", "name": "f", "content": "x"}]}, "messages"),
    ({"messages": [{"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "w", "arguments": {"a": 1}}}]}]}, "messages"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": 5}]}]}, "messages"),
    ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "AA==", "format": "wav"}}]}]}, "messages"),
    ({"messages": [{"role": "user", "content": "\u0000\u001b[31m\u202e" * 500}]}, None),
    ({"tools": [{"type": "function", "function": {"name": "w", "parameters": "nope"}}]}, None),
    ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools"),
    ({"tool_choice": {"type": "function"}}, "tool_choice"),
    ({"tool_choice": {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": []}}}, "tool_choice"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": "no"}}}, "response_format"),
    ({"response_format": {"type": "xml"}}, "response_format"),
    ({"reasoning_effort": {"deep": True}}, "reasoning_effort"),
    ({"n": 3}, "n"),
]


@pytest.mark.parametrize("extra,param", HOSTILE, ids=[str(i) for i in range(len(HOSTILE))])
def test_hostile_requests_for_a_codex_model_are_served_or_refused_clearly(client, extra, param):
    """Malformed members on the way to the Responses API: refused by the
    gateway naming the member, or sent as they came for the provider to
    refuse in its own words (a 4xx with a message), never mended quietly or
    answered with a crash; a plain request is served afterwards."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], **extra}
    r = client.post("/v1/chat/completions", body)
    assert r.status_code in (200, 400, 404), r.text
    if r.status_code != 200:
        err = r.json()["error"]
        assert err["message"]
        if param is not None:
            assert (err["code"], err["param"]) == ("untranslatable_field", param), r.text
            assert "x-mock-path" not in r.headers, "refused before anything was sent"
    assert client.chat(MODEL).status_code == 200


# ---- Responses API clients (the Codex CLI, the Agents SDK) on chat and Anthropic providers ----

CODEX_TOOLS = [{"type": "function", "name": "get_weather", "description": "Get weather", "strict": False,
                "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}]


@pytest.mark.parametrize("model,price,path", [("anthropic/claude-sonnet-4-6", "anthropic/claude-sonnet-4-6", "/v1/messages"),
                                              ("cheap", "deepseek/deepseek-v4", "/chat/completions"),
                                              ("google/gemini-2.5-flash", "google/gemini-2.5-flash", "/v1beta/openai/chat/completions")])
def test_the_openai_sdks_responses_reach_claude_deepseek_and_gemini(stack, oai, client, model, price, path):
    """`client.responses.create` on a Claude model (through chat to Anthropic
    messages), on DeepSeek (a route with upstream_api: chat_completions:
    DeepSeek has no Responses API) and on Gemini (its OpenAI-compatible chat
    endpoint). The strict mock refuses anything its API would; the SDK
    parses the answer as a response."""
    raw = oai.responses.with_raw_response.create(model=model, instructions="Be terse.", input="Say hello", max_output_tokens=300, store=False)
    assert raw.headers["x-mock-path"] == path
    up = sent(stack)
    system = up["system"][0]["text"] if path == "/v1/messages" else up["messages"][0]["content"]
    assert system == "Be terse."
    r = raw.parse()
    assert r.object == "response" and r.status == "completed" and r.output_text
    assert int(raw.headers["x-tollgate-cost-micros"]) == expected_cost(price, r.usage.input_tokens, r.usage.output_tokens,
                                                                      cached=r.usage.input_tokens_details.cached_tokens)
    rec = client.record(raw.headers["x-tollgate-request-id"])
    assert rec["api"] == "openai_responses" and rec["cost_micros"] == int(raw.headers["x-tollgate-cost-micros"])


def test_a_codex_style_tool_loop_streams_from_claude_as_responses_events(stack, oai, client):
    """The Codex CLI's shape: instructions, tools, a stream, reasoning, store
    false, a call and its output handed back; Anthropic's documented tool-use
    stream comes back as Responses events the SDK assembles."""
    ask = dict(model="anthropic/claude-sonnet-4-6", instructions="You are a coding agent.", tools=CODEX_TOOLS, stream=True, store=False,
               reasoning={"effort": "low"}, include=["reasoning.encrypted_content"], parallel_tool_calls=False,
               input=[{"role": "user", "content": [{"type": "input_text", "text": "Weather in SF?"}]},
                      {"type": "function_call", "call_id": "toolu_1", "name": "get_weather", "arguments": "{\"location\": \"SF\"}"},
                      {"type": "function_call_output", "call_id": "toolu_1", "output": "64 F"}])
    with oai.responses.stream(**{k: v for k, v in ask.items() if k != "stream"},
                              extra_headers={"x-mock-replay": "anthropic_stream_tool_use.sse", "x-mock-chunk-bytes": "71"}) as s:
        kinds = [e.type for e in s]
        final = s.get_final_response()
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    call = [o for o in final.output if o.type == "function_call"][0]
    assert call.name == "get_weather" and isinstance(json.loads(call.arguments), dict)
    assert final.usage.output_tokens > 0
    up = sent(stack)
    assert up["messages"][1]["content"][0]["type"] == "tool_use" and up["messages"][2]["content"][0]["type"] == "tool_result"
    # Without a replay: the mock's own stream, priced from Anthropic's usage.
    raw = oai.responses.with_raw_response.create(model="anthropic/claude-sonnet-4-6", input="Count to three", stream=True)
    events = list(raw.parse())
    done = [e for e in events if e.type == "response.completed"][0].response
    assert done.output_text
    rec = client.record(raw.headers["x-tollgate-request-id"])
    assert rec["usage"]["output_tokens"] == done.usage.output_tokens
    assert rec["cost_micros"] == expected_cost("anthropic/claude-sonnet-4-6", done.usage.input_tokens, done.usage.output_tokens)


# Codex 0.171.0's sub-agent tools, as it offers them (captured from the CLI
# pointed at the mock): a namespace of functions (openai-python
# `types/responses/namespace_tool.py`).
NAMESPACE = {"type": "namespace", "name": "multi_agent_v1", "description": "Tools for spawning and managing sub-agents.",
             "tools": [{"type": "function", "name": "spawn_agent", "description": "Spawn a sub-agent.", "strict": False,
                        "parameters": {"type": "object", "properties": {"message": {"type": "string"}}, "additionalProperties": False}}]}


@pytest.mark.parametrize("model", ["anthropic/claude-sonnet-4-6", "cheap"])
@pytest.mark.parametrize("stream", [False, True])
def test_namespaced_tools_reach_another_provider_flat_and_their_calls_come_back_namespaced(stack, oai, model, stream):
    """Codex offers its sub-agent tools as a namespace, which only OpenAI's
    Responses API has: a Codex turn on Claude or DeepSeek was refused 400
    naming `tools`. They are offered flat (`multi_agent_v1__spawn_agent`),
    and the model's call comes back as the Responses API reports one: the
    function's name and its `namespace`, JSON and streamed; a past call
    handed back goes up under the flat name again. (The mock calls a tool
    only if it was offered, so the flat name is what the provider got.)"""
    call = {"x-mock-tool-call": "multi_agent_v1__spawn_agent"}
    ask = dict(model=model, tools=CODEX_TOOLS + [NAMESPACE], input="Split the work", max_output_tokens=64)
    if stream:
        with oai.responses.stream(**ask, extra_headers=call) as s:
            items = [e.item.model_dump() for e in s if e.type in ("response.output_item.added", "response.output_item.done")
                     and e.item.type == "function_call"]
            final = s.get_final_response()
        assert len(items) == 2, items
    else:
        final = oai.responses.create(**ask, extra_headers=call)
        items = []
    up = sent(stack)
    offered = [t.get("name") or t["function"]["name"] for t in up["tools"]]
    assert offered == ["get_weather", "multi_agent_v1__spawn_agent"], offered
    calls = [o.model_dump() for o in final.output if o.type == "function_call"]
    assert len(calls) == 1, final.output
    for c in calls + items:
        assert (c["name"], c["namespace"]) == ("spawn_agent", "multi_agent_v1"), c
    # The loop goes on: the call handed back with its output.
    loop = [{"role": "user", "content": "Split the work"},
            {"type": "function_call", "call_id": calls[0]["call_id"], "name": "spawn_agent", "namespace": "multi_agent_v1", "arguments": "{}"},
            {"type": "function_call_output", "call_id": calls[0]["call_id"], "output": "spawned"}]
    r = oai.responses.create(**{**ask, "input": loop})
    assert r.output_text
    up = sent(stack)
    names = json.dumps(up["messages"])
    assert "multi_agent_v1__spawn_agent" in names and '"spawn_agent"' not in names, names


def test_what_needs_openais_stored_state_is_refused_by_name_for_claude(oai):
    for extra in [{"previous_response_id": "resp_1"}, {"conversation": "conv_1"}, {"tools": [{"type": "web_search"}]}]:
        with pytest.raises(openai.BadRequestError) as e:
            oai.responses.create(model="anthropic/claude-sonnet-4-6", input="x", **extra)
        assert e.value.body["code"] == "untranslatable_field" and e.value.body["param"] in extra, e.value.body


def test_deepseeks_reasoning_reaches_a_responses_client_and_goes_back_in_its_tool_loop(stack, oai):
    """DeepSeek thinks when the request asks (reasoning.effort), its reasoning
    comes back as a reasoning item, and handed back with the loop's call it
    returns as reasoning_content, which DeepSeek's thinking mode requires
    (the mock holds the refusal)."""
    think = {"x-mock-reasoning-tokens": "20"}
    first = oai.responses.create(model="cheap", reasoning={"effort": "high"}, tools=CODEX_TOOLS, input="Weather in SF?", extra_headers=think)
    assert sent(stack)["thinking"] == {"type": "enabled"}
    reasoning = [o for o in first.output if o.type == "reasoning"]
    assert reasoning and reasoning[0].summary[0].text
    loop = [{"role": "user", "content": "Weather in SF?"}, reasoning[0].model_dump(exclude_none=True),
            {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"location\": \"SF\"}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "64 F"}]
    after = oai.responses.create(model="cheap", reasoning={"effort": "high"}, tools=CODEX_TOOLS, input=loop, extra_headers=think)
    assert after.output_text
    up = sent(stack)
    assert up["thinking"] == {"type": "enabled"} and up["messages"][1]["reasoning_content"] == reasoning[0].summary[0].text
    # Streamed, the reasoning item comes whole before the text.
    with oai.responses.stream(model="cheap", reasoning={"effort": "high"}, input="Weather in SF?", extra_headers=think) as s:
        final = s.get_final_response()
    assert [o.type for o in final.output] == ["reasoning", "message"] and final.output[0].summary[0].text == reasoning[0].summary[0].text


HOSTILE_RESPONSES = [
    ({"input": 5}, "input"),
    ({"input": [{"role": "tool", "content": "x"}]}, "input"),
    ({"input": [{"type": "function_call", "call_id": "c", "name": "w", "arguments": {"a": 1}}]}, "input"),
    ({"input": [{"type": "function_call_output", "call_id": "c", "output": [{"type": "input_image", "image_url": "x"}]}]}, "input"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file_1"}]}]}, "input"),
    ({"input": [{"role": "user", "content": [{"type": "input_text", "text": 7}]}]}, "input"),
    ({"input": [{"role": "user", "content": {"text": "x"}}]}, "input"),
    ({"input": "\u0000\u001b[2J\u202e" * 300}, None),
    ({"instructions": ["a"]}, "instructions"),
    ({"reasoning": "high"}, "reasoning"),
    ({"reasoning": {"effort": 3}}, "reasoning"),
    ({"text": "json"}, "text"),
    ({"text": {"format": {"type": "grammar"}}}, "text"),
    ({"tools": {"type": "function"}}, "tools"),
    ({"tool_choice": {"type": "mcp"}}, "tool_choice"),
    ({"max_output_tokens": 18446744073709551615}, None),
    ({"max_output_tokens": "lots"}, "max_output_tokens"),
    ({"previous_response_id": None, "include": {"x": 1}, "truncation": "auto"}, None),
]


@pytest.mark.parametrize("model", ["anthropic/claude-sonnet-4-6", "cheap"])
@pytest.mark.parametrize("extra,param", HOSTILE_RESPONSES, ids=[str(i) for i in range(len(HOSTILE_RESPONSES))])
def test_hostile_responses_requests_for_claude_and_deepseek_are_served_or_refused_clearly(client, model, extra, param):
    """Malformed Responses requests on the way to chat and Anthropic
    providers: refused naming the member before anything is sent, or sent
    for the provider to refuse in its words; a plain request served after."""
    r = client.post("/v1/responses", {"model": model, "input": "hi", **extra})
    assert r.status_code in (200, 400), r.text
    if r.status_code != 200:
        err = r.json()["error"]
        assert err["message"]
        if param is not None:
            assert err["param"] == param, r.text
            assert "x-mock-path" not in r.headers, "refused before anything was sent"
    else:
        assert r.json()["object"] == "response"
    assert client.post("/v1/responses", {"model": model, "input": "hi"}).status_code == 200
