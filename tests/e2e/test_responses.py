"""`POST /v1/responses` (OpenAI's Responses API) through Envoy with the stock
SDK: keys, routing, the output cap as `max_output_tokens`, usage from the
JSON object and from the event stream's terminal event, reasoning and cached
tokens, `previous_response_id` / `store` passed through, and a live-recorded
response replayed (tests/captures)."""
from __future__ import annotations

import json
import time

import openai
import pytest
import requests

from conftest import SEARCH_KEY, expected_cost, mock_stats, read_until_cut, sse_data

MODEL = "openai/gpt-5.4"


def test_openai_sdk_response_is_priced_and_recorded(oai, client):
    raw = oai.responses.with_raw_response.create(model=MODEL, input="Say hello", instructions="Be brief.")
    r = raw.parse()
    assert r.output_text.startswith("Sure") and r.status == "completed"
    u = r.usage
    cost = expected_cost(MODEL, u.input_tokens, u.output_tokens)
    assert int(raw.headers["x-tollgate-cost-micros"]) == cost
    rec = client.record(raw.headers["x-tollgate-request-id"])
    assert rec["api"] == "openai_responses" and rec["model_upstream"] == "gpt-5.4" and rec["cost_micros"] == cost
    assert rec["usage"]["input_tokens"] == u.input_tokens and rec["usage_source"] == "provider"


def test_openai_sdk_stream_is_passed_unchanged_and_priced_from_its_last_event(oai, client):
    raw = oai.responses.with_raw_response.create(model=MODEL, input="Stream it", stream=True)
    rid = raw.headers["x-tollgate-request-id"]
    events = list(raw.parse())
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[-1].type == "response.completed"
    u = events[-1].response.usage
    rec = client.record(rid)
    assert rec["stream"] is True and rec["usage"]["output_tokens"] == u.output_tokens
    assert rec["cost_micros"] == expected_cost(MODEL, u.input_tokens, u.output_tokens)


def test_reasoning_and_cached_tokens_are_priced_at_their_rates(client):
    r = client.post("/v1/responses", {"model": MODEL, "input": "x" * 8000},
                    headers={"x-mock-reasoning-tokens": "30", "x-mock-cached-tokens": "1024"})
    assert r.status_code == 200, r.text
    u = r.json()["usage"]
    assert u["output_tokens_details"]["reasoning_tokens"] == 30 and u["input_tokens_details"]["cached_tokens"] == 1024
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert rec["usage"]["reasoning_tokens"] == 30 and rec["usage"]["cached_input_tokens"] == 1024
    assert rec["usage"]["cache_reported"] is True
    assert rec["cost_micros"] == expected_cost(MODEL, u["input_tokens"], u["output_tokens"], cached=1024)


def test_conversation_state_members_pass_through(client):
    first = client.post("/v1/responses", {"model": MODEL, "input": "Hello"}).json()
    r = client.post("/v1/responses", {"model": MODEL, "input": "and then?", "previous_response_id": first["id"],
                                      "store": False})
    assert r.status_code == 200, r.text
    assert r.json()["previous_response_id"] == first["id"] and r.json()["store"] is False
    # billed the chain as input: the first turn's input and output, and this one's
    assert r.json()["usage"]["input_tokens"] > first["usage"]["input_tokens"] + first["usage"]["output_tokens"]
    # not stored (store: false), so nothing continues it
    r = client.post("/v1/responses", {"model": MODEL, "input": "more", "previous_response_id": r.json()["id"]})
    assert r.status_code == 400 and r.json()["error"]["code"] == "previous_response_not_found", r.text
    # the provider's own refusals reach the client and cost nothing
    r = client.post("/v1/responses", {"model": MODEL, "input": "x", "max_output_tokens": 5})
    assert r.status_code == 400 and r.json()["error"]["code"] == "integer_below_min_value"
    assert client.record(r.headers["x-tollgate-request-id"])["cost_micros"] == 0


def test_without_a_cap_the_gateway_bounds_output_with_max_output_tokens(client):
    # The mock caps at max_output_tokens and says so: the gateway's default (4096) went upstream.
    r = client.post("/v1/responses", {"model": MODEL, "input": "long"}, headers={"x-mock-output-tokens": "5000"})
    assert r.status_code == 200
    assert r.json()["usage"]["output_tokens"] == 4096 and r.json()["status"] == "incomplete"


@pytest.mark.parametrize("capture,stream", [("openai_response.json", False), ("openai_response_stream.sse", True)])
def test_a_live_recorded_response_is_priced_exactly(client, capture, stream):
    r = client.post("/v1/responses", {"model": MODEL, "input": "What's the weather like in SF?", "stream": stream},
                    headers={"x-mock-replay": capture, "x-mock-chunk-bytes": "61"})
    assert r.status_code == 200
    if stream:
        assert json.loads(sse_data(r.text)[-1])["response"]["usage"]["output_tokens"] == 50
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert (rec["usage"]["input_tokens"], rec["usage"]["output_tokens"]) == (14, 50)
    assert rec["cost_micros"] == expected_cost(MODEL, 14, 50)


def test_a_code_interpreter_container_is_charged_whether_or_not_code_runs(oai, client, stack):
    """The code interpreter tool with `container: {"type": "auto"}` has the
    provider create a container before the model decides to run code, billed
    a session by its memory whether it does or not (no item in the answer
    says so: community.openai.com, "Responses API: Excessive charges due to
    repetitive container creation when using Code Interpreter"). It was free
    through the gateway; now it is reserved and charged, $0.03 a GB."""
    before = mock_stats(stack)["container_gb"]
    tool = {"type": "code_interpreter", "container": {"type": "auto", "memory_limit": "4g"}}
    raw = oai.responses.with_raw_response.create(model=MODEL, input="What is 3x + 11 = 14?", tools=[tool])
    r = raw.parse()
    rec = client.record(raw.headers["x-tollgate-request-id"])
    assert rec["usage"]["container_gb"] == 4 == mock_stats(stack)["container_gb"] - before
    cost = expected_cost(MODEL, r.usage.input_tokens, r.usage.output_tokens) + 4 * 30_000
    assert rec["cost_micros"] == int(raw.headers["x-tollgate-cost-micros"]) == cost
    # Streamed, the default 1 GB.
    with oai.responses.stream(model=MODEL, input="Again.", tools=[{"type": "code_interpreter", "container": {"type": "auto"}}]) as st:
        final = st.get_final_response()
    rec = [x for x in client.records() if x.get("usage", {}).get("container_gb") == 1]
    assert rec and rec[-1]["cost_micros"] == expected_cost(MODEL, final.usage.input_tokens, final.usage.output_tokens) + 30_000
    # A container made before: none created, none charged.
    raw = oai.responses.with_raw_response.create(model=MODEL, input="And again.", tools=[{"type": "code_interpreter", "container": "cntr_abc"}])
    assert "container_gb" not in client.record(raw.headers["x-tollgate-request-id"])["usage"]
    # A memory limit no container has: the provider refuses it, nothing is created or charged.
    with pytest.raises(openai.BadRequestError) as e:
        oai.responses.create(model=MODEL, input="x", tools=[{"type": "code_interpreter", "container": {"type": "auto", "memory_limit": "2g"}}])
    rec = client.record(e.value.response.headers["x-tollgate-request-id"])
    assert (rec["cost_micros"], rec["usage"].get("container_gb", 0)) == (0, 0)
    assert mock_stats(stack)["container_gb"] - before == 5


def test_responses_are_refused_where_they_cannot_go(client):
    """A Claude model is reached through a translation (test_responses_bridge.py),
    which cannot carry what needs OpenAI's stored state: refused by name."""
    r = client.post("/v1/responses", {"model": "anthropic/claude-sonnet-4-6", "input": "x", "previous_response_id": "resp_abc"})
    e = r.json()["error"]
    assert (r.status_code, e["code"], e["param"]) == (400, "untranslatable_field", "previous_response_id"), r.text
    assert "x-mock-path" not in r.headers


def test_mock_response_has_the_shape_of_the_recorded_one(client):
    from test_replay import CAPTURES, missing, shape
    real = json.loads((CAPTURES / "openai_response.json").read_text())
    r = client.post("/v1/responses", {"model": MODEL, "input": "shape"})
    assert not missing(shape(real), shape(r.json()))


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_hosted_file_and_web_searches_are_priced_per_call(oai, client, stream):
    """OpenAI bills each hosted tool call apart from the tokens: $2.50 per 1,000
    file searches, $10 per 1,000 web searches (openai.com/api/pricing). The
    calls are the answer's `file_search_call` / `web_search_call` items; the
    configured model sets neither price, so the defaults apply."""
    tools = [{"type": "file_search", "vector_store_ids": ["vs_handbook"]}, {"type": "web_search"}]
    raw = oai.responses.with_raw_response.create(model=MODEL, input="What is our refund policy?", tools=tools, stream=stream,
                                                 extra_headers={"x-mock-file-searches": "3", "x-mock-web-searches": "2"})
    parsed = raw.parse()
    r = list(parsed)[-1].response if stream else parsed
    assert [i.type for i in r.output] == ["file_search_call"] * 3 + ["web_search_call"] * 2 + ["message"]
    rec = client.record(raw.headers["x-tollgate-request-id"])
    assert (rec["usage"]["file_search_calls"], rec["usage"]["web_search_requests"]) == (3, 2)
    tokens = expected_cost(MODEL, r.usage.input_tokens, r.usage.output_tokens)
    assert rec["cost_micros"] == tokens + 3 * 2_500 + 2 * 10_000
    if not stream:
        assert int(raw.headers["x-tollgate-cost-micros"]) == rec["cost_micros"]
    # The same question without the tools: no call is billed.
    plain = client.post("/v1/responses", {"model": MODEL, "input": "What is our refund policy?"}, headers={"x-mock-file-searches": "3"})
    assert plain.status_code == 200, plain.text
    assert client.record(plain.headers["x-tollgate-request-id"])["usage"].get("file_search_calls", 0) == 0


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_opening_a_page_is_not_billed_as_a_search(oai, client, stream):
    """A web search call is also the model opening a page or finding in it
    (`action.type` `open_page`, `find_in_page`); OpenAI bills the searches
    only, and says how many in `tool_usage.web_search.num_requests`
    ("discounted searches and actions such as opening a page are
    excluded", openai-python `types/responses/response.py`). Counting the
    items billed every page opened as a $0.01 search; the answer's count is
    read now (the items still where it gives none)."""
    raw = oai.responses.with_raw_response.create(model=MODEL, input="Any news?", tools=[{"type": "web_search"}], stream=stream,
                                                 extra_headers={"x-mock-web-searches": "2", "x-mock-page-opens": "3"})
    parsed = raw.parse()
    r = list(parsed)[-1].response if stream else parsed
    assert [i.action.type for i in r.output if i.type == "web_search_call"] == ["search"] * 2 + ["open_page"] * 3
    assert r.tool_usage.web_search.num_requests == 2
    rec = client.record(raw.headers["x-tollgate-request-id"])
    assert rec["usage"]["web_search_requests"] == 2, rec
    assert rec["cost_micros"] == expected_cost(MODEL, r.usage.input_tokens, r.usage.output_tokens) + 2 * 10_000


def test_a_terminal_event_past_the_event_limit_is_priced_from_its_usage(client):
    """A Responses stream's `response.completed` holds the whole response
    object: the answer's text and the request's `instructions`, echoed. A
    long system prompt (here 3 MB) or a long answer makes it pass the 1 MiB
    event the gateway reads. Before, its usage was lost and the answer
    estimated (its reasoning tokens not at all). Its ends are read now."""
    r = client.post("/v1/responses", {"model": MODEL, "instructions": "Follow the manual. " * 160_000, "input": "Summarise",
                                      "stream": True, "max_output_tokens": 2000},
                    headers={"x-mock-output-tokens": "40", "x-mock-reasoning-tokens": "900"})
    assert r.status_code == 200, r.text[:300]
    events = [json.loads(d) for d in sse_data(r.text)]
    assert events[-1]["type"] == "response.completed" and len(json.dumps(events[-1])) > 3_000_000
    u = events[-1]["response"]["usage"]
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert rec["usage_source"] == "provider", rec
    assert (rec["usage"]["input_tokens"], rec["usage"]["output_tokens"], rec["usage"]["reasoning_tokens"]) == (u["input_tokens"], 940, 900)
    assert rec["cost_micros"] == expected_cost(MODEL, u["input_tokens"], u["output_tokens"])


def test_cache_writes_are_priced_as_the_responses_api_reports_them(client):
    """GPT-5.6 and later bill prompt-cache writes at 1.25x input and report
    them in `usage.input_tokens_details.cache_write_tokens` (a live answer
    recorded in coder/mux#3705), as chat completions does in
    `prompt_tokens_details`. Before, the Responses API's were priced as
    plain input."""
    r = client.post("/v1/responses", {"model": MODEL, "input": "x" * 12_000}, headers={"x-mock-cache-write-tokens": "2048"})
    assert r.status_code == 200, r.text
    u = r.json()["usage"]
    assert u["input_tokens_details"]["cache_write_tokens"] == 2048
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert rec["usage"]["cache_write_tokens"] == 2048
    plain = expected_cost(MODEL, u["input_tokens"], u["output_tokens"])
    # 2,048 tokens at $2.50 x 1.25 instead of $2.50 per million
    assert rec["cost_micros"] == -(-((u["input_tokens"] - 2048) * 2_500_000 + 2048 * 3_125_000 + u["output_tokens"] * 15_000_000) // 1_000_000)
    assert rec["cost_micros"] > plain


def test_hosted_calls_done_before_a_cut_are_billed(client):
    """Each hosted call is an output item, done before the answer goes on;
    OpenAI bills it once done. A stream cut after them (the provider's
    connection dropped, or the client gone) never sends the terminal event
    whose output listed them: it was charged an estimate of its tokens and
    none of its searches. The calls are counted from their
    `response.output_item.done` events now."""
    body = {"model": MODEL, "input": "Latest news?", "tools": [{"type": "web_search"}], "stream": True}
    asked = {"x-mock-web-searches": "2"}
    full = client.post("/v1/responses", body, headers=asked)
    names = [line[len("event: "):] for line in full.text.splitlines() if line.startswith("event: ")]
    assert names.count("response.web_search_call.completed") == 2 and names[-1] == "response.completed", names
    rec = client.record(full.headers["x-tollgate-request-id"])
    assert rec["usage"]["web_search_requests"] == 2 and rec["usage_source"] == "provider", rec
    # Cut after the first text: the two calls were done.
    cut_at = names.index("response.output_text.delta") + 1
    r = client.post("/v1/responses", body, headers={**asked, "x-mock-cut-after": str(cut_at)}, stream=True)
    got = read_until_cut(r)
    assert b"response.completed" not in got and got.count(b"event: response.web_search_call.completed") == 2
    rec = client.record(r.headers["x-tollgate-request-id"])
    u = rec["usage"]
    assert (rec["outcome"], rec["usage_source"], u["web_search_requests"]) == ("upstream_cut", "estimated", 2), rec
    assert rec["cost_micros"] == expected_cost(MODEL, u["input_tokens"], u["output_tokens"]) + 2 * 10_000


def test_the_sdks_input_token_count_is_routed_free_with_nothing_added(stack, client):
    """`client.responses.input_tokens.count` (POST /v1/responses/input_tokens,
    free) was refused 404 by the gateway. It is now routed like the response
    it counts: the route's upstream model, the provider's key, nothing added
    (no output cap: the endpoint takes none), no budget, no record; for a
    model served in another format, a 404 that says so."""
    import openai
    import requests
    oai = openai.OpenAI(base_url=stack.url + "/v1", api_key=SEARCH_KEY, max_retries=0)
    before = len(client.records())
    counted = oai.responses.input_tokens.count(model="openai/gpt-5.4", input="Count the words in this sentence please",
                                                instructions="Be brief.")
    assert counted.object == "response.input_tokens" and counted.input_tokens > 0
    sent = requests.get(stack.mock.url + "/mock/last-body", timeout=5).json()
    assert sent == {"model": "gpt-5.4", "input": "Count the words in this sentence please", "instructions": "Be brief."}, sent
    time.sleep(0.5)
    assert len(client.records()) == before, "a count is not usage"
    with pytest.raises(openai.NotFoundError):
        oai.responses.input_tokens.count(model="anthropic/claude-sonnet-4-6", input="hi")


def test_a_conversation_is_compacted_through_the_gateway_and_billed(stack, client):
    """`POST /v1/responses/compact` (the OpenAI SDK's `responses.compact`;
    Codex's remote compaction, which has no fallback: on a 404 the turn fails,
    caozhiyuan/copilot-api#359) was refused 404 "not routed". It is routed
    like a response to the model's OpenAI-format provider, the upstream
    model written, nothing added (the endpoint takes no output cap: the mock
    refuses one, as it refuses any member the endpoint does not take), and
    billed from the usage it reports. Sources of the shapes: openai-python
    `types/responses/response_compact_params.py`, `compacted_response.py`;
    openai/codex `codex-rs/codex-api/src/common.rs` (`CompactionInput`) and
    `endpoint/compact.rs` (it reads `output`)."""
    oai = openai.OpenAI(base_url=stack.url + "/v1", api_key=SEARCH_KEY, max_retries=0)
    raw = oai.responses.with_raw_response.compact(model="openai/gpt-5.4", input=[
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Refactor the parser"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Done: three functions."}]}],
        instructions="Compact the conversation.", safety_identifier="user-7f3a")
    done = raw.parse()
    # (openai-python 3.63 added `safety_identifier`: sent on, and echoed.)
    assert done.safety_identifier == "user-7f3a"
    assert done.object == "response.compaction" and done.output[-1].type == "compaction"
    rec = client.record(raw.headers["x-tollgate-request-id"])
    u = rec["usage"]
    assert (rec["api"], rec["model_upstream"], rec["outcome"], rec["usage_source"]) == ("openai_responses", "gpt-5.4", "ok", "provider"), rec
    assert (u["input_tokens"], u["output_tokens"]) == (done.usage.input_tokens, done.usage.output_tokens)
    assert rec["cost_micros"] == expected_cost("openai/gpt-5.4", u["input_tokens"], u["output_tokens"]) > 0
    assert int(raw.headers["x-tollgate-cost-micros"]) == rec["cost_micros"]
    sent = requests.get(stack.mock.url + "/mock/last-body", timeout=5).json()
    assert sent["model"] == "gpt-5.4" and set(sent) == {"model", "input", "instructions", "safety_identifier"}, "nothing added"
    # Codex's body, with its tools, reasoning and cache key, goes as it came.
    codex = {"model": "openai/gpt-5.4", "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
             "instructions": "Summarise.", "tools": [], "parallel_tool_calls": False, "reasoning": {"effort": "medium"},
             "prompt_cache_key": "session-1"}
    r = client.post("/v1/responses/compact", codex)
    assert r.status_code == 200 and r.json()["output"][-1]["type"] == "compaction", r.text
    assert r.headers["x-mock-path"] == "/v1/responses/compact"
    # A model no Responses API serves: refused before sending, naming the model.
    with pytest.raises(openai.BadRequestError) as e:
        oai.responses.compact(model="anthropic/claude-sonnet-4-6", input="hi")
    assert e.value.body["code"] == "wrong_api_for_model" and e.value.body["param"] == "model"
