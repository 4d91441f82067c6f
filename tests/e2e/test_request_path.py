"""The request path through a real Envoy: authenticate, inspect, route,
rewrite, read usage, price and record."""
from __future__ import annotations

import json
import socket
import time
import uuid

import requests

import stack as sm
from conftest import Client, LABS_KEY, RESTRICTED_KEY, SEARCH_KEY, error_of, expected_cost, read_until_cut, sse_data, websocket_upgrade

# ---- routing and credentials ---------------------------------------------


def test_routes_alias_to_deepseek_with_its_credential(client):
    r = client.chat("cheap")
    assert r.status_code == 200, r.text
    assert r.headers["x-mock-host"] == "api.deepseek.com"
    assert r.headers["x-mock-path"] == "/chat/completions"
    assert r.headers["x-mock-auth"] == "Bearer sk-mock-deepseek"
    assert r.headers["x-mock-model"] == "deepseek-v4"
    assert r.headers["x-tollgate-provider"] == "deepseek"
    assert r.json()["model"] == "deepseek-v4"


def test_routes_provider_prefixed_model_to_openai(client):
    r = client.chat("openai/gpt-5.4")
    assert r.status_code == 200, r.text
    assert (r.headers["x-mock-host"], r.headers["x-mock-path"]) == ("api.openai.com", "/v1/chat/completions")
    assert r.headers["x-mock-auth"] == "Bearer sk-mock-openai"
    assert r.headers["x-mock-model"] == "gpt-5.4"


def test_wildcard_route_strips_provider_prefix(client):
    r = client.chat("openai/gpt-5.4-nano")
    assert r.status_code == 200, r.text
    assert r.headers["x-mock-model"] == "gpt-5.4-nano"
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert rec["route"] == "openai/*" and rec["priced"] is False and rec["cost_micros"] == 0


def test_anthropic_messages_get_anthropic_credentials(client):
    r = client.messages("claude-sonnet-4-6", key=LABS_KEY)
    assert r.status_code == 200, r.text
    assert r.headers["x-mock-host"] == "api.anthropic.com"
    assert r.headers["x-mock-path"] == "/v1/messages"
    assert r.headers["x-mock-auth"] == "sk-ant-mock"
    assert r.headers["x-mock-anthropic-version"] == "2023-06-01"
    assert r.json()["type"] == "message"


def test_client_anthropic_version_and_query_are_kept(client):
    r = client.messages("anthropic/claude-sonnet-4-6", headers={"anthropic-version": "2023-01-01"})
    assert r.status_code == 200, r.text
    assert r.headers["x-mock-anthropic-version"] == "2023-01-01"
    r = client.post("/v1/messages?beta=true", {"model": "claude-haiku-4-5", "max_tokens": 5,
                                                "messages": [{"role": "user", "content": "x"}]}, auth="x-api-key")
    assert r.status_code == 200, r.text
    assert r.headers["x-mock-path"] == "/v1/messages?beta=true"


def test_virtual_key_and_tollgate_headers_never_go_upstream(client):
    r = client.chat("cheap", headers={"x-tollgate-feature": "summarise", "x-tollgate-cluster": "openai"})
    assert r.status_code == 200
    assert SEARCH_KEY not in r.headers["x-mock-auth"]
    assert r.headers["x-mock-tollgate-headers"] == ""
    # the client cannot pick the cluster: its header was replaced
    assert r.headers["x-mock-host"] == "api.deepseek.com"
    log = client.stack.envoy.log() + client.stack.access_log.read_text()
    for k in (SEARCH_KEY, LABS_KEY, RESTRICTED_KEY, "sk-mock-openai", "sk-ant-mock", "sk-mock-deepseek"):
        assert k not in log, f"{k} leaked into a log"


# ---- rejections -----------------------------------------------------------


def test_missing_key_is_401(client):
    r = client.chat("cheap", key=None)
    assert r.status_code == 401
    e = error_of(r)
    assert (e["type"], e["code"]) == ("authentication_error", "missing_api_key")


def test_unknown_key_is_401(client):
    for auth in ("bearer", "x-api-key"):
        r = client.chat("cheap", key="tg-not-a-key", auth=auth)
        assert r.status_code == 401
        assert error_of(r)["code"] == "invalid_api_key"
        assert "tg-not-a-key" not in r.text


def test_malformed_json_is_400_and_nothing_goes_upstream(client):
    r = client.post("/v1/chat/completions", raw=b'{"model": "cheap", "messages": [')
    assert r.status_code == 400
    e = error_of(r)
    assert e["code"] == "invalid_json" and "not valid JSON" in e["message"]
    assert "x-mock-host" not in r.headers
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert rec["outcome"] == "rejected" and rec["error_code"] == "invalid_json" and rec["cost_micros"] == 0


def test_missing_model_and_body_are_400(client):
    r = client.post("/v1/chat/completions", {"messages": []})
    assert r.status_code == 400 and error_of(r)["code"] == "missing_model"
    assert error_of(r)["param"] == "model"
    r = client.post("/v1/chat/completions")
    assert r.status_code == 400 and error_of(r)["code"] == "missing_body"


def test_unknown_model_is_400_naming_it_and_listing_models(client):
    r = client.chat("gpt4-turbo-max")
    assert r.status_code == 400
    e = error_of(r)
    assert e["code"] == "model_not_found" and e["param"] == "model"
    assert "gpt4-turbo-max" in e["message"] and "cheap" in e["message"] and "openai/gpt-5.4" in e["message"]


def test_key_restricted_to_some_models(client):
    r = client.chat("openai/gpt-5.4", key=RESTRICTED_KEY)
    assert r.status_code == 403
    assert error_of(r)["code"] == "model_not_allowed"
    assert client.chat("cheap", key=RESTRICTED_KEY).status_code == 200
    r = client.chat("nope", key=RESTRICTED_KEY)
    assert r.status_code == 403  # not even existence is disclosed beyond the key's models


def test_model_on_the_wrong_api_is_400(client):
    # Chat and Responses requests are translated between the formats
    # (tests/e2e/test_translation.py, test_responses_bridge.py); legacy
    # completions have no Anthropic counterpart.
    r = client.post("/v1/completions", {"model": "claude-sonnet-4-6", "prompt": "hi"})
    assert r.status_code == 400
    e = r.json()["error"]
    assert e["code"] == "wrong_api_for_model" and "no OpenAI completions API" in e["message"], e


def test_body_over_limit_is_413(client):
    big = "x" * (9 * 1024 * 1024)
    r = client.chat("cheap", content=big)
    assert r.status_code == 413
    assert error_of(r)["type"] == "request_too_large"


def test_large_body_under_limit_passes(client):
    content = "word " * (400 * 1024)  # 2 MB
    r = client.chat("cheap", content=content)
    assert r.status_code == 200, r.text[:300]
    assert r.json()["usage"]["prompt_tokens"] == int(r.headers["x-tollgate-input-tokens"])
    assert int(r.headers["x-tollgate-input-tokens"]) > 500_000


def test_other_paths_are_404_by_default(client):
    r = requests.get(client.url + "/v1/audio/voices", headers={"authorization": f"Bearer {SEARCH_KEY}"}, timeout=5)
    assert r.status_code == 404
    assert error_of(r)["type"] == "not_found_error"


def test_wrong_method_is_405(client):
    r = requests.get(client.url + "/v1/chat/completions", headers={"authorization": f"Bearer {SEARCH_KEY}"}, timeout=5)
    assert r.status_code == 405


def test_models_endpoint_lists_what_the_key_may_use(client):
    r = requests.get(client.url + "/v1/models", headers={"authorization": f"Bearer {RESTRICTED_KEY}"}, timeout=5)
    assert r.status_code == 200
    assert sorted(m["id"] for m in r.json()["data"]) == ["cheap", "default"]
    r = requests.get(client.url + "/v1/models", timeout=5)
    assert r.status_code == 401


# ---- tags -------------------------------------------------------------------


def test_tags_are_recorded(client):
    r = client.chat("cheap", headers={"x-tollgate-feature": "search-summary", "x-tollgate-prompt-version": "v7",
                                       "x-tollgate-project": "billing"}, extra={"user": "end-user-42"})
    assert r.status_code == 200
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert (rec["team"], rec["project"], rec["feature"], rec["prompt_version"], rec["user"]) == \
        ("search", "billing", "search-summary", "v7", "end-user-42")
    assert rec["tags"] == {"env": "demo"} and rec["key_id"] == "demo-search"


def test_sessions_are_recorded_and_reported(stack, client):
    # Claude Code sends x-claude-code-session-id on every request; a client's own x-tollgate-session wins.
    cc = str(uuid.uuid4())
    ids = []
    for _ in range(2):
        r = client.messages("claude-sonnet-4-6", key=LABS_KEY, headers={"x-claude-code-session-id": cc})
        assert r.status_code == 200, r.text
        ids.append(r.headers["x-tollgate-request-id"])
    own = client.chat("cheap", headers={"x-tollgate-session": "nightly-run-7", "x-claude-code-session-id": cc})
    assert own.headers["x-mock-tollgate-headers"] == "", "the session header does not go upstream"
    # Not clean (not UTF-8, too long): left out, the request still served (Envoy itself refuses control characters).
    dirty = client.chat("cheap", headers={"x-tollgate-session": "caf\xe9".encode("latin-1"), "x-claude-code-session-id": "s" * 200})
    assert dirty.status_code == 200, dirty.text
    assert [client.record(i)["session_id"] for i in ids] == [cc, cc]
    assert client.record(own.headers["x-tollgate-request-id"])["session_id"] == "nightly-run-7"
    assert "session_id" not in client.record(dirty.headers["x-tollgate-request-id"])
    # What the session cost, from the control service.
    def session_rows():
        r = requests.get(f"{stack.control.url}/v1/reports/spend?group_by=session,model&session={cc}",
                         headers={"authorization": f"Bearer {sm.ADMIN_TOKEN}"}, timeout=10)
        assert r.status_code == 200, r.text
        return r.json()["rows"]
    deadline = time.monotonic() + 15
    while sum(x["requests"] for x in session_rows()) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    rows = session_rows()
    assert [(x["session"], x["model"], x["requests"]) for x in rows] == [(cc, "claude-sonnet-4-6", 2)], rows
    assert rows[0]["cost_micros"] == sum(client.record(i)["cost_micros"] for i in ids) > 0


def test_project_override_needs_permission(client):
    r = client.chat("cheap", key=LABS_KEY, headers={"x-tollgate-project": "billing"})
    assert r.status_code == 403 and error_of(r)["code"] == "project_not_allowed"
    r = client.chat("cheap", key=LABS_KEY, headers={"x-tollgate-project": "assistant"})
    assert r.status_code == 200


def test_bad_tag_value_is_400(client):
    r = client.chat("cheap", headers={"x-tollgate-feature": "x" * 200})
    assert r.status_code == 400 and error_of(r)["code"] == "invalid_tag"


# ---- usage and cost: JSON -------------------------------------------------


def test_openai_json_usage_and_cost(client):
    r = client.chat("openai/gpt-5.4", content="a" * 4000, headers={"x-mock-output-tokens": "40", "x-mock-cached-tokens": "512",
                                                                  "x-mock-reasoning-tokens": "8"})
    assert r.status_code == 200
    u = r.json()["usage"]
    assert u["prompt_tokens_details"]["cached_tokens"] == 512
    cost = expected_cost("openai/gpt-5.4", u["prompt_tokens"], u["completion_tokens"], cached=512)
    assert int(r.headers["x-tollgate-cost-micros"]) == cost
    assert int(r.headers["x-tollgate-input-tokens"]) == u["prompt_tokens"]
    assert int(r.headers["x-tollgate-output-tokens"]) == u["completion_tokens"] == 48
    assert int(r.headers["x-tollgate-cached-input-tokens"]) == 512
    assert int(r.headers["x-tollgate-reasoning-tokens"]) == 8
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert rec["cost_micros"] == cost and rec["usage_source"] == "provider" and rec["outcome"] == "ok"
    assert rec["usage"] == {"input_tokens": u["prompt_tokens"], "cached_input_tokens": 512, "cache_write_tokens": 0,
                            "output_tokens": 48, "reasoning_tokens": 8, "cache_write_1h_tokens": 0,
                            "web_search_requests": 0, "cache_reported": True}
    # saved: the same request with every input token at the uncached price, minus its cost
    assert rec["cache_savings_micros"] == expected_cost("openai/gpt-5.4", u["prompt_tokens"], 48) - cost > 0
    assert rec["model_requested"] == "openai/gpt-5.4" and rec["model_upstream"] == "gpt-5.4"
    assert rec["stream"] is False and rec["status"] == 200 and rec["api"] == "openai_chat"


def test_deepseek_cache_hit_usage(client):
    r = client.chat("cheap", headers={"x-mock-cached-tokens": "3"})
    u = r.json()["usage"]
    assert u["prompt_cache_hit_tokens"] == 3
    assert int(r.headers["x-tollgate-cached-input-tokens"]) == 3
    assert int(r.headers["x-tollgate-cost-micros"]) == expected_cost(
        "deepseek/deepseek-v4", u["prompt_tokens"], u["completion_tokens"], cached=3)


def test_anthropic_json_usage_with_cache_read_and_write(client):
    r = client.messages("claude-sonnet-4-6", headers={"x-mock-cached-tokens": "2048", "x-mock-cache-write-tokens": "512",
                                                       "x-mock-output-tokens": "20"})
    assert r.status_code == 200
    u = r.json()["usage"]
    total_in = u["input_tokens"] + u["cache_read_input_tokens"] + u["cache_creation_input_tokens"]
    assert int(r.headers["x-tollgate-input-tokens"]) == total_in
    assert int(r.headers["x-tollgate-cost-micros"]) == expected_cost(
        "anthropic/claude-sonnet-4-6", total_in, 20, cached=2048, cache_write=512)


def test_anthropic_thinking_tokens_are_recorded_as_reasoning(client, oai):
    """Anthropic reports the output spent thinking apart
    (`usage.output_tokens_details.thinking_tokens`, as a real claude-fable-5
    answer does): it was recorded as 0 reasoning tokens. JSON, stream, and
    an OpenAI client's translated usage."""
    h = {"x-mock-output-tokens": "20", "x-mock-reasoning-tokens": "30"}
    r = client.messages("claude-opus-4-8", headers=h)
    u = r.json()["usage"]
    assert (u["output_tokens"], u["output_tokens_details"]) == (50, {"thinking_tokens": 30})
    assert (int(r.headers["x-tollgate-output-tokens"]), int(r.headers["x-tollgate-reasoning-tokens"])) == (50, 30)
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert (rec["usage"]["output_tokens"], rec["usage"]["reasoning_tokens"]) == (50, 30)
    assert rec["cost_micros"] == expected_cost("anthropic/claude-opus-4-8", u["input_tokens"], 50), "priced as output, once"
    r = client.messages("claude-opus-4-8", extra={"stream": True}, headers=h, stream=True)
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert (rec["usage"]["output_tokens"], rec["usage"]["reasoning_tokens"]) == (50, 30) and rec["stream"] is True
    raw = oai.chat.completions.with_raw_response.create(model="anthropic/claude-opus-4-8", messages=[{"role": "user", "content": "q"}],
                                                         extra_headers=h)
    usage = raw.parse().usage
    assert (usage.completion_tokens, usage.completion_tokens_details.reasoning_tokens) == (50, 30)
    # And the other way: an Anthropic client of an OpenAI reasoning model is told its reasoning as thinking.
    u = client.messages("openai/gpt-5.4", headers=h).json()["usage"]
    assert (u["output_tokens"], u["output_tokens_details"]) == (50, {"thinking_tokens": 30}), u


def test_provider_error_passes_through_and_costs_nothing(client):
    r = client.chat("openai/gpt-5.4", headers={"x-mock-status": "429"})
    assert r.status_code == 429
    assert r.headers["retry-after"] == "2"
    assert r.json()["error"]["code"] == "rate_limit_exceeded"
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert rec["outcome"] == "provider_error" and rec["cost_micros"] == 0 and rec["status"] == 429
    r = client.messages("claude-sonnet-4-6", headers={"x-mock-status": "529"})
    assert r.status_code == 529 and r.json()["error"]["type"] == "overloaded_error"


def test_slow_first_byte_is_measured(client):
    r = client.chat("cheap", headers={"x-mock-delay-ms": "300"})
    assert r.status_code == 200
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert rec["ttfb_ms"] >= 300 and rec["latency_ms"] >= rec["ttfb_ms"]


# ---- usage and cost: streams ------------------------------------------------


def test_openai_stream_without_include_usage_gets_exactly_that(client):
    r = client.chat("openai/gpt-5.4", extra={"stream": True}, headers={"x-mock-output-tokens": "7"}, stream=True)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_data(r.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all("usage" not in c for c in chunks), "the client did not ask for usage"
    assert all(c["choices"] for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text.startswith("Sure, here is")
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert rec["stream"] is True and rec["outcome"] == "ok" and rec["usage_source"] == "provider"
    assert rec["usage"]["output_tokens"] == 7
    assert rec["cost_micros"] == expected_cost("openai/gpt-5.4", rec["usage"]["input_tokens"], 7)


def test_openai_stream_with_include_usage_keeps_it(client):
    r = client.chat("openai/gpt-5.4", extra={"stream": True, "stream_options": {"include_usage": True}},
                    headers={"x-mock-output-tokens": "5"}, stream=True)
    events = sse_data(r.text)
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 5
    assert all("usage" in c for c in chunks)
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert rec["usage"]["input_tokens"] == chunks[-1]["usage"]["prompt_tokens"]


def test_stream_is_not_held_back(client):
    """The first event reaches the client long before a slow stream ends."""
    t0 = time.monotonic()
    r = client.chat("cheap", extra={"stream": True}, headers={"x-mock-output-tokens": "6", "x-mock-chunk-delay-ms": "250"},
                    stream=True)
    it = r.iter_lines()
    first = next(line for line in it if line.startswith(b"data:"))
    t_first = time.monotonic() - t0
    rest = b"".join(it)
    t_all = time.monotonic() - t0
    assert json.loads(first[5:])["object"] == "chat.completion.chunk"
    assert t_first < 0.5 and t_all > 1.5, (t_first, t_all)
    assert b"[DONE]" in rest


def test_anthropic_stream_usage(client):
    r = client.messages("claude-sonnet-4-6", extra={"stream": True}, stream=True,
                        headers={"x-mock-output-tokens": "9", "x-mock-cached-tokens": "100", "x-mock-cache-write-tokens": "50"})
    events = [json.loads(e) for e in sse_data(r.text)]
    assert [e["type"] for e in events][:1] == ["message_start"] and events[-1]["type"] == "message_stop"
    start_usage = events[0]["message"]["usage"]
    total_in = start_usage["input_tokens"] + 150
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert rec["usage"] == {"input_tokens": total_in, "cached_input_tokens": 100, "cache_write_tokens": 50,
                            "output_tokens": 9, "reasoning_tokens": 0, "cache_write_1h_tokens": 0,
                            "web_search_requests": 0, "cache_reported": True}
    assert rec["cost_micros"] == expected_cost("anthropic/claude-sonnet-4-6", total_in, 9, cached=100, cache_write=50)
    assert rec["cache_savings_micros"] == expected_cost("anthropic/claude-sonnet-4-6", total_in, 9) - rec["cost_micros"]


def test_stream_cut_by_provider_is_charged_an_estimate(client):
    r = client.chat("openai/gpt-5.4", extra={"stream": True}, stream=True,
                    headers={"x-mock-cut-after": "5", "x-mock-output-tokens": "30"})
    got = read_until_cut(r)
    assert b"[DONE]" not in got
    assert got.count(b"data:") == 5
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert rec["outcome"] == "upstream_cut" and rec["usage_source"] == "estimated"
    assert rec["usage"]["input_tokens"] > 0 and rec["usage"]["output_tokens"] > 0
    assert rec["cost_micros"] > 0


def test_anthropic_stream_cut_keeps_reported_input(client):
    r = client.messages("claude-sonnet-4-6", extra={"stream": True}, stream=True,
                        headers={"x-mock-cut-after": "6", "x-mock-cached-tokens": "1000"})
    read_until_cut(r)
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert rec["outcome"] == "upstream_cut"
    assert rec["usage"]["cached_input_tokens"] == 1000


def test_client_abort_mid_stream_is_recorded(client):
    body = json.dumps({"model": "cheap", "stream": True, "messages": [{"role": "user", "content": "hi"}]}).encode()
    req = (b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
           b"authorization: Bearer " + SEARCH_KEY.encode() + b"\r\nx-mock-output-tokens: 50\r\n"
           b"x-mock-chunk-delay-ms: 100\r\nx-request-id: abort-test-1\r\ncontent-length: "
           + str(len(body)).encode() + b"\r\n\r\n" + body)
    with socket.create_connection(("127.0.0.1", client.stack.envoy.listen_port)) as s:
        s.sendall(req)
        got = b""
        while got.count(b"data:") < 3:
            got += s.recv(65536)
    rec = client.record("abort-test-1", timeout=10)
    assert rec["outcome"] == "client_aborted" and rec["usage_source"] == "estimated"
    assert 0 < rec["usage"]["output_tokens"] < 50


def test_json_response_cut_by_provider(client):
    r = client.chat("cheap", headers={"x-mock-cut-after": "1"}, extra={"user": "cut-json-1"})
    # The held response never completed: the client gets a JSON error, not half a body.
    assert r.status_code == 502
    assert error_of(r)["code"] == "provider_unavailable"
    deadline = time.monotonic() + 5
    while not (recs := [x for x in client.records() if x["user"] == "cut-json-1"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(recs) == 1
    assert recs[0]["outcome"] == "upstream_cut" and recs[0]["status"] == 502
    assert recs[0]["usage_source"] == "estimated" and recs[0]["usage"]["output_tokens"] == 0


def test_unreachable_provider_is_a_json_503(tmp_path):
    import stack as sm
    s = sm.Stack(tmp_path)
    try:
        s.mock.stop()
        r = requests.post(s.url + "/v1/chat/completions", json={"model": "cheap", "messages": []},
                          headers={"authorization": f"Bearer {SEARCH_KEY}", "x-request-id": "unreachable-1"}, timeout=10)
        assert r.status_code == 503
        assert error_of(r)["code"] == "provider_unavailable"
        rec = Client(s).record("unreachable-1")
        assert (rec["outcome"], rec["error_code"], rec["cost_micros"], rec["status"]) == \
            ("provider_error", "no_upstream_response", 0, 503)
    finally:
        s.stop()


# ---- records and access log ---------------------------------------------------


def test_access_log_carries_tollgate_fields(client):
    r = client.chat("cheap", key=LABS_KEY)
    rid = r.headers["x-tollgate-request-id"]
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        lines = [json.loads(x) for x in client.stack.access_log.read_text().splitlines() if rid in x]
        if lines:
            break
        time.sleep(0.1)
    assert lines, "access log line"
    a = lines[0]
    assert (a["team"], a["project"], a["key_id"], a["provider"], a["model"]) == \
        ("labs", "assistant", "demo-labs", "deepseek", "deepseek-v4")
    assert a["cost_micros"] == r.headers["x-tollgate-cost-micros"]
    assert a["budget_decision"] == "off" and a["outcome"] == "ok"
    assert json.loads(a["usage_record"])["id"] == rid


def test_access_log_fields_sets_only_the_fields_named(client, tmp_path):
    """`access_log_fields: ["usage"]`: the whole record is there, the flat fields are not set."""
    import stack as sm
    log = tmp_path / "a.log"
    cfg = sm.demo_config(sm.free_port(), sm.free_port(), client.stack.mock.port, access_log=str(log),
                         plugin_patch=lambda c: (c.pop("control", None), c.update(access_log_fields=["usage"])))
    cfg.pop("bootstrap_extensions", None)
    envoy = sm.Envoy(cfg, tmp_path, concurrency=1, name="fields")
    try:
        r = requests.post(envoy.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {LABS_KEY}"},
                          json={"model": "cheap", "messages": [{"role": "user", "content": "hi"}]}, timeout=10)
        assert r.status_code == 200, r.text
        rid = r.headers["x-tollgate-request-id"]
        deadline = time.monotonic() + 15
        lines = []
        while not lines and time.monotonic() < deadline:
            lines = [json.loads(x) for x in log.read_text().splitlines() if rid in x] if log.exists() else []
            time.sleep(0.1)
        assert lines, "access log line"
        a = lines[0]
        assert json.loads(a["usage_record"])["team"] == "labs"
        assert a["team"] in (None, "-") and a["cost_micros"] in (None, "-"), a
    finally:
        envoy.stop()


def test_one_record_per_request_under_concurrency(client):
    from concurrent.futures import ThreadPoolExecutor

    def one(i):
        r = client.chat("cheap" if i % 2 else "openai/gpt-5.4", content=f"request {i}",
                        extra={"stream": bool(i % 3 == 0)})
        return r.headers["x-tollgate-request-id"], r.status_code

    with ThreadPoolExecutor(16) as ex:
        results = list(ex.map(one, range(64)))
    assert all(code == 200 for _, code in results)
    ids = {rid for rid, _ in results}
    assert len(ids) == 64
    time.sleep(0.3)
    recs = [r for r in client.records() if r["id"] in ids]
    assert len(recs) == 64


def test_a_premium_tier_or_geography_is_charged_at_its_price(client):
    """Providers price some request members apart: OpenAI's Priority / Fast
    mode (1.75-2x), Ultrafast (6x) and Flex (0.5x) by `service_tier`;
    Anthropic's fast mode (2-6x) by `speed` and US-only inference (1.1x) by
    `inference_geo`. Before, all were priced standard: a client could spend
    up to six times what its budget counted. Now what the request asks is
    the price, at the defaults (priority 200 %, ultrafast 600 %, flex 100 %,
    fast 600 %, us 110 %, never less than published) unless the pricing
    says the model's own. JSON and stream alike; a value the gateway knows
    no price for is refused before anything is sent."""
    openai = (("priority", 200, "priority"), ("fast", 200, "priority"), ("ultrafast", 600, "ultrafast"),
              ("flex", 100, "flex"), ("auto", 100, None), ("default", 100, None))
    for tier, percent, recorded in openai:
        for stream in (False, True):
            extra = {"service_tier": tier, "max_completion_tokens": 50}
            if stream:
                extra |= {"stream": True, "stream_options": {"include_usage": True}}
            r = client.chat("openai/gpt-5.4", extra=extra, headers={"x-mock-output-tokens": "30"})
            assert r.status_code == 200, r.text
            rec = client.record(r.headers["x-tollgate-request-id"])
            u = rec["usage"]
            want = expected_cost("openai/gpt-5.4", u["input_tokens"], u["output_tokens"], cached=u["cached_input_tokens"],
                                 percent=percent)
            assert rec["cost_micros"] == want, (tier, stream, rec["cost_micros"], want)
            assert rec.get("service_tier") == recorded, rec
            if not stream:
                assert int(r.headers["x-tollgate-cost-micros"]) == want
                assert r.json()["service_tier"] == (recorded or "default"), "the mock says the tier"
    anthropic = ((({"speed": "fast"}), 600, "fast", None), ({"inference_geo": "us"}, 110, None, "us"),
                 ({"speed": "fast", "inference_geo": "us"}, 660, "fast", "us"),
                 ({"speed": "standard", "inference_geo": "global"}, 100, None, None))
    for extra, percent, tier, geo in anthropic:
        r = client.messages("anthropic/claude-sonnet-4-6", extra=extra, headers={"x-mock-output-tokens": "30"})
        assert r.status_code == 200, (extra, r.text)
        rec = client.record(r.headers["x-tollgate-request-id"])
        u = rec["usage"]
        want = expected_cost("anthropic/claude-sonnet-4-6", u["input_tokens"], u["output_tokens"],
                             cached=u["cached_input_tokens"], cache_write=u["cache_write_tokens"], percent=percent)
        assert rec["cost_micros"] == want == int(r.headers["x-tollgate-cost-micros"]), (extra, rec["cost_micros"], want)
        assert (rec.get("service_tier"), rec.get("inference_geo")) == (tier, geo), rec
    for body, param in (({"service_tier": "hyperfast"}, "service_tier"), ({"service_tier": 2}, "service_tier")):
        r = client.chat("openai/gpt-5.4", extra=body)
        assert r.status_code == 400 and error_of(r)["param"] == param, r.text
    r = client.messages("anthropic/claude-sonnet-4-6", extra={"inference_geo": "eu"})
    assert r.status_code == 400 and error_of(r)["param"] == "inference_geo", r.text


def test_the_tier_and_geography_that_served_an_answer_are_what_it_costs(client):
    """What a request asks is not all the provider bills. OpenAI serves
    `auto` (or no tier) at the project's tier, which its owner may set to
    Fast mode (2x), and falls Fast mode back to standard under a surge;
    an Anthropic workspace may default to US-only inference (1.1x). The
    answer names what served it (`service_tier`; `usage.speed`,
    `usage.inference_geo`) and billing follows it. Before, a project on
    Fast mode was counted at half its bill. The mock answers as told by
    `x-mock-served-*` (the provider's settings a request cannot see)."""
    def check(r, model, percent, tier, geo=None):
        assert r.status_code == 200, r.text
        rec = client.record(r.headers["x-tollgate-request-id"])
        u = rec["usage"]
        want = expected_cost(model, u["input_tokens"], u["output_tokens"], cached=u["cached_input_tokens"],
                             cache_write=u["cache_write_tokens"], percent=percent)
        assert rec["cost_micros"] == want, (rec, want)
        assert (rec.get("service_tier"), rec.get("inference_geo")) == (tier, geo), rec
        return rec

    for stream in (False, True):
        extra = {"max_completion_tokens": 50}
        if stream:
            extra |= {"stream": True, "stream_options": {"include_usage": True}}
        # the project's tier is Fast mode: nothing asked, priority served
        r = client.chat("openai/gpt-5.4", extra=extra, headers={"x-mock-served-tier": "priority"})
        check(r, "openai/gpt-5.4", 200, "priority")
        r = client.chat("openai/gpt-5.4", extra=extra | {"service_tier": "auto"}, headers={"x-mock-served-tier": "priority"})
        check(r, "openai/gpt-5.4", 200, "priority")
        # Fast mode asked, standard served under a surge: billed standard
        r = client.chat("openai/gpt-5.4", extra=extra | {"service_tier": "fast"}, headers={"x-mock-served-tier": "default"})
        check(r, "openai/gpt-5.4", 100, None)
        # the Responses API says it in its response object (and its stream's)
        body = {"model": "openai/gpt-5.4", "input": "Hello there", "stream": stream}
        r = client.post("/v1/responses", body, headers={"x-mock-served-tier": "priority"}, stream=stream)
        if stream:
            assert b"response.completed" in r.content
        check(r, "openai/gpt-5.4", 200, "priority")
        # a workspace whose default geography is the US: billed 1.1x
        extra = {"stream": True} if stream else {}
        r = client.messages("anthropic/claude-sonnet-4-6", extra=extra, headers={"x-mock-served-geo": "us"})
        check(r, "anthropic/claude-sonnet-4-6", 110, None, "us")
        # fast mode asked, standard speed served: billed standard
        r = client.messages("anthropic/claude-sonnet-4-6", extra=extra | {"speed": "fast"},
                            headers={"x-mock-served-speed": "standard"})
        check(r, "anthropic/claude-sonnet-4-6", 100, None)
    # A provider without tiers answers with none (DeepSeek ignores `service_tier`):
    # charged as asked, which the shipped configs price at 100 % for it.
    r = client.chat("deepseek/deepseek-v4", extra={"service_tier": "priority"})
    assert "service_tier" not in r.json()
    check(r, "deepseek/deepseek-v4", 100, "priority")
    # The cost header says the same as the record.
    r = client.chat("openai/gpt-5.4", headers={"x-mock-served-tier": "ultrafast"})
    rec = check(r, "openai/gpt-5.4", 600, "ultrafast")
    assert int(r.headers["x-tollgate-cost-micros"]) == rec["cost_micros"]


def test_a_search_model_is_charged_the_search_it_runs_on_every_request(client):
    """OpenAI's chat completions search models search the web before every
    answer and bill each as a web search call ($10 per 1,000 for
    gpt-5-search-api), though the answer's usage says nothing of it. The
    demo prices the model with `web_searches_per_request: 1`. Before, such a
    request counted its tokens only. An error status is still free."""
    model = "openai/gpt-5-search-api"
    for stream in (False, True):
        extra = {"max_completion_tokens": 40}
        if stream:
            extra |= {"stream": True, "stream_options": {"include_usage": True}}
        r = client.chat(model, extra=extra)
        assert r.status_code == 200, r.text
        rec = client.record(r.headers["x-tollgate-request-id"])
        u = rec["usage"]
        assert u["web_search_requests"] == 1, rec
        assert rec["cost_micros"] == expected_cost(model, u["input_tokens"], u["output_tokens"]) + 10_000, rec
        if not stream:
            assert int(r.headers["x-tollgate-cost-micros"]) == rec["cost_micros"]
    r = client.chat(model, headers={"x-mock-status": "500"})
    assert r.status_code == 500
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert (rec["cost_micros"], rec["usage"]["web_search_requests"]) == (0, 0), rec
    # A model priced without it counts none.
    r = client.chat("openai/gpt-5.4", extra={"max_completion_tokens": 40})
    assert client.record(r.headers["x-tollgate-request-id"])["usage"]["web_search_requests"] == 0


def test_audio_tokens_are_priced_at_the_audio_rates(oai, client):
    """OpenAI's audio models bill audio tokens at their own rates (gpt-audio:
    $32 / $64 per million against $2.50 / $10 for text); the usage names them
    (`prompt_tokens_details.audio_tokens`, `completion_tokens_details.audio_tokens`).
    Before, they were priced as text: a spoken answer counted about a sixth
    of its bill. The demo prices gpt-audio with `audio_input` / `audio_output`.
    The stock SDK, a spoken question and a spoken answer, JSON and stream."""
    import base64
    speech = base64.b64encode(b"RIFF" + bytes(3000)).decode()
    ask = dict(model="openai/gpt-audio", modalities=["text", "audio"], audio={"voice": "alloy", "format": "wav"},
               messages=[{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": speech, "format": "wav"}}]}])
    raw = oai.chat.completions.with_raw_response.create(**ask)
    r = raw.parse()
    assert r.choices[0].message.audio.transcript and r.choices[0].message.content is None
    u = r.usage
    audio_in, audio_out = u.prompt_tokens_details.audio_tokens, u.completion_tokens_details.audio_tokens
    assert audio_in > 0 and audio_out > 0
    want = -(-((u.prompt_tokens - audio_in) * 2_500_000 + audio_in * 32_000_000
               + (u.completion_tokens - audio_out) * 10_000_000 + audio_out * 64_000_000) // 1_000_000)
    rec = client.record(raw.headers["x-tollgate-request-id"])
    assert (rec["usage"]["audio_input_tokens"], rec["usage"]["audio_output_tokens"]) == (audio_in, audio_out)
    assert rec["cost_micros"] == int(raw.headers["x-tollgate-cost-micros"]) == want
    assert want > expected_cost("openai/gpt-audio", u.prompt_tokens, u.completion_tokens) * 3
    raw = oai.chat.completions.with_raw_response.create(**ask, stream=True, stream_options={"include_usage": True})
    chunks = list(raw.parse())
    u = chunks[-1].usage
    rec = client.record(raw.headers["x-tollgate-request-id"])
    assert rec["usage"]["audio_output_tokens"] == u.completion_tokens_details.audio_tokens > 0
    assert rec["cost_micros"] == want
    # The mock refuses an audio model asked for text only, as OpenAI does.
    r = client.chat("openai/gpt-audio")
    assert r.status_code == 400 and "requires that either input content or output modality contain audio" in r.text


def test_a_websocket_upgrade_is_told_to_use_http(client):
    """Codex may open the Responses API over a WebSocket first; 426 is the
    signal it documents for "use HTTP" (openai/codex#43353). Envoy, with no
    upgrade configured, refused it 403 with no body: the Envoy configurations
    map that refusal to 426 with a reason in the APIs' JSON shape (and the
    filter answers 426 itself where upgrades reach it, as under Istio).
    Codex itself: test_codex_cli.py."""
    for path in ("/v1/responses", "/v1/chat/completions"):
        status, body = websocket_upgrade(client.url, path)
        assert status == 426, (status, body)
        assert json.loads(body)["error"]["code"] == "websocket_not_supported"
    # Any other 403 is left as it is.
    r = client.chat("claude-sonnet-4-6", key=RESTRICTED_KEY)
    assert r.status_code == 403, r.text

