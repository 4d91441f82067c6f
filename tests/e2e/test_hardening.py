"""Hostile clients and misbehaving providers, through a real Envoy: nothing
crashes the filter, bypasses a budget or miscounts (issue 7, each class)."""
from __future__ import annotations

import gzip
import json
import socket
import time
import zlib

import h2.config
import h2.connection
import h2.events
import pytest
import requests

import stack as sm
from conftest import SEARCH_KEY, Client, error_of, expected_cost, raw_http, status_of
from test_budgets import new_key, spend, wait_until

AUTH = {"authorization": f"Bearer {SEARCH_KEY}"}


def control_text(stack, path: str) -> str:
    r = requests.get(stack.control.url + path, headers={"authorization": f"Bearer {sm.ADMIN_TOKEN}"}, timeout=10)
    assert r.status_code == 200, r.text
    return r.text


def worker_alive(client: Client, n: int = 8) -> None:
    """Several requests (both workers) still answer normally."""
    for _ in range(n):
        r = client.chat("cheap")
        assert r.status_code == 200, r.text


# ---- 1. non-UTF-8 bytes never kill a worker --------------------------------------------------

def test_non_utf8_request_headers_get_an_answer_and_the_worker_lives(stack, client):
    port = stack.envoy.listen_port
    for _ in range(6):  # enough to reach both workers
        r = raw_http(port, b"GET /v1/models HTTP/1.1\r\nhost: x\r\nx-a: caf\xe9\r\nconnection: close\r\n\r\n")
        assert status_of(r) == 401, r[:200]
    # a valid key next to a latin-1 header: the header is passed on, the request served
    r = raw_http(port, b"GET /v1/models HTTP/1.1\r\nhost: x\r\nauthorization: Bearer " + SEARCH_KEY.encode()
                 + b"\r\nx-a: caf\xe9\r\nconnection: close\r\n\r\n")
    assert status_of(r) == 200
    # the key itself not UTF-8: 401, a tag not UTF-8: 400
    r = raw_http(port, b"GET /v1/models HTTP/1.1\r\nhost: x\r\nauthorization: Bearer tg-\xff\xfe\r\nconnection: close\r\n\r\n")
    assert status_of(r) == 401
    body = b'{"model":"cheap","messages":[{"role":"user","content":"hi"}]}'
    r = raw_http(port, b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer " + SEARCH_KEY.encode()
                 + b"\r\nx-tollgate-feature: caf\xe9\r\ncontent-type: application/json\r\ncontent-length: "
                 + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body)
    assert status_of(r) == 400 and b"invalid_tag" in r
    worker_alive(client)
    assert "panicked" not in stack.envoy.log() and "wasm trap" not in stack.envoy.log().lower()


def test_non_utf8_provider_header_is_passed_and_the_worker_lives(client):
    for _ in range(6):
        r = client.chat("cheap", headers={"x-mock-bad-header": "1"})
        assert r.status_code == 200
        assert int(r.headers["x-tollgate-cost-micros"]) > 0
    worker_alive(client)


def test_headers_in_tollgates_namespace_from_the_upstream_never_reach_the_client(client):
    """An upstream (hostile or confused) sending x-tollgate-* headers: the
    client gets Tollgate's own, once each, and none of the upstream's."""
    for stream in (False, True):
        r = client.chat("cheap", headers={"x-mock-forged-tollgate-headers": "1"}, extra={"stream": stream})
        assert r.status_code == 200
        raw = r.raw.headers
        names = [k.lower() for k in raw.keys()]
        assert "x-tollgate-extra" not in names and "x-tollgate-latin1" not in names, names
        assert names.count("x-tollgate-model") == 1 and r.headers["x-tollgate-model"] == "deepseek-v4"
        assert names.count("x-tollgate-request-id") == 1
        if not stream:
            assert names.count("x-tollgate-cost-micros") == 1 and int(r.headers["x-tollgate-cost-micros"]) > 0
        else:
            assert "x-tollgate-cost-micros" not in names, "a stream's cost is not known when its headers go"
    worker_alive(client)


def budgeted(s: sm.Stack, team: str, limit_micros: int) -> tuple[dict, Client]:
    """A new key of `team`, a monthly budget on the team, the key working in Envoy."""
    key = new_key(s.control, team, key_id=f"{team}-app")
    s.control.api("PUT", f"/v1/budgets/team/{team}", {"limit_micros": limit_micros, "period": "monthly"}, expect=200)
    cli = Client(s)
    wait_until(lambda: cli.chat("cheap", key=key["key"], extra={"max_tokens": 5}).status_code == 200,
               what="the key in Envoy")
    return key, cli


# ---- 2. request ids are Tollgate's, never the client's --------------------------------------

def test_reused_request_id_cannot_bypass_a_budget(tmp_path):
    s = sm.Stack(tmp_path)
    try:
        key, cli = budgeted(s, "reuse", 2000)
        ok, ids = 0, set()
        for _ in range(60):
            r = cli.chat("openai/gpt-5.4", key=key["key"], headers={"x-request-id": "same-id-every-time"},
                         extra={"max_tokens": 20})
            if r.status_code == 200:
                ok += 1
                ids.add(r.headers["x-tollgate-request-id"])
            else:
                assert r.status_code == 429, r.text
        assert 0 < ok < 60, ok
        assert len(ids) == ok, "every request has its own id"
        recs = [x for x in cli.records() if x["key_id"] == "reuse-app" and x["status"] == 200]
        assert all(x["client_request_id"] == "same-id-every-time" for x in recs if x["model_upstream"] == "gpt-5.4")
        # every served request is counted, and the spend stays within the limit
        served = sum(x["cost_micros"] for x in recs)
        total = wait_until(lambda: (t := spend(s, ("team", "reuse")))["cost_micros"] == served and t,
                           what="every record to be counted")
        assert total["cost_micros"] <= 2000
    finally:
        s.stop()


# ---- 3. nothing a client sends is copied into a header unchecked -----------------------------

@pytest.mark.parametrize("model", ["gpt-5.4\r\nset-cookie: a=b", "openai/gpt-5.4\r\nset-cookie: a=b", "a\u0000b",
                                   "openai/caf\u00e9", "openai/\u001b[31mred"])
def test_model_names_with_control_bytes_are_refused(client, model):
    r = client.post("/v1/chat/completions", {"model": model, "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 400, r.text
    assert error_of(r)["code"] == "invalid_model"
    assert "set-cookie" not in r.headers
    assert all("\r" not in v and "\n" not in v for v in r.headers.values())


# ---- 4. the reservation is a real bound -------------------------------------------------------

def test_duplicate_members_are_refused(client):
    for body in [b'{"model":"openai/gpt-5.4","max_tokens":1,"messages":[{"role":"user","content":"hi"}],"max_tokens":20000}',
                 b'{"model":"cheap","messages":[],"model":"openai/gpt-5.4"}',
                 b'{"model":"cheap","messages":[],"mod\\u0065l":"openai/gpt-5.4"}']:
        r = client.post("/v1/chat/completions", raw=body)
        assert r.status_code == 400, r.text
        assert error_of(r)["code"] == "duplicate_key"


def test_a_server_tool_naming_its_bound_twice_is_refused(tmp_path):
    """A tool that names `max_uses` or `type` twice: the provider takes one
    of them, the gateway cannot tell which, and read it as no server tool, so
    the searches and the loop's calls went unreserved. (A guardrail policy
    refused such a body already: this stack has none.) Refused before
    sending, naming `tools`; the same tool written once is served."""
    s = sm.Stack(tmp_path, plugin_patch=lambda c: c.pop("guardrails"))
    try:
        client = Client(s)
        once = '{"type":"web_search_20250305","name":"web_search","max_uses":5}'
        ask = '{"model":"anthropic/claude-sonnet-4-6","max_tokens":16,"messages":[{"role":"user","content":"news?"}],"tools":[%s]}'
        for tool in (once[:-1] + ',"max_uses":5}', '{"type":"function","type":"web_search_20250305","name":"web_search","max_uses":5}'):
            r = client.post("/v1/messages", raw=(ask % tool).encode(), auth="x-api-key")
            assert r.status_code == 400, r.text
            assert (error_of(r)["code"], error_of(r).get("param")) == ("duplicate_key", "tools"), r.text
        r = client.post("/v1/responses", raw=b'{"model":"openai/gpt-5.4","input":"news?","tools":[{"type":"web_search","type":"function"}]}')
        assert r.status_code == 400 and error_of(r)["code"] == "duplicate_key", r.text
        assert requests.get(s.mock.url + "/mock/stats", timeout=5).json()["requests"] == 0, "nothing reached the provider"
        r = client.post("/v1/messages", raw=(ask % once).encode(), auth="x-api-key", headers={"x-mock-web-searches": "1"})
        assert r.status_code == 200, r.text
    finally:
        s.stop()


def test_output_is_capped_when_the_client_sets_no_cap(client):
    # The provider would write 20000 tokens; the request names no cap.
    r = client.chat("openai/gpt-5.4", headers={"x-mock-output-tokens": "20000"})
    assert r.status_code == 200
    assert int(r.headers["x-tollgate-output-tokens"]) == 4096  # default_max_tokens, sent upstream
    assert r.json()["choices"][0]["finish_reason"] == "length"
    # DeepSeek takes max_tokens (output_cap_field), Anthropic clients always send their own
    r = client.chat("cheap", headers={"x-mock-output-tokens": "20000"})
    assert int(r.headers["x-tollgate-output-tokens"]) == 4096
    # the client's own cap is kept, and n choices multiply the bound
    r = client.chat("openai/gpt-5.4", headers={"x-mock-output-tokens": "50"}, extra={"max_tokens": 30, "n": 2})
    assert r.status_code == 200 and int(r.headers["x-tollgate-output-tokens"]) == 60


def test_a_clients_cap_goes_in_the_member_the_provider_honours(stack, client):
    # DeepSeek ignores max_completion_tokens (earendil-works/pi#8018; the mock too): a cap left there
    # would bound neither the answer nor the spend the reservation assumed.
    r = client.chat("cheap", headers={"x-mock-output-tokens": "50"}, extra={"max_completion_tokens": 5})
    assert r.status_code == 200, r.text
    sent = requests.get(stack.mock.url + "/mock/last-body", timeout=5).json()
    assert (sent.get("max_tokens"), "max_completion_tokens" in sent) == (5, False), sent
    assert r.json()["usage"]["completion_tokens"] == 5
    # OpenAI's reasoning models refuse max_tokens ("Use 'max_completion_tokens' instead"; the mock too).
    r = client.chat("openai/gpt-5.4", extra={"max_tokens": 20})
    assert r.status_code == 200, r.text
    sent = requests.get(stack.mock.url + "/mock/last-body", timeout=5).json()
    assert (sent.get("max_completion_tokens"), "max_tokens" in sent) == (20, False), sent
    # Both: one member, the larger (what the reservation assumed).
    client.chat("cheap", extra={"max_tokens": 3, "max_completion_tokens": 9})
    sent = requests.get(stack.mock.url + "/mock/last-body", timeout=5).json()
    assert (sent.get("max_tokens"), "max_completion_tokens" in sent) == (9, False), sent
    # A member of another API is no cap: the gateway's own is added (DeepSeek would ignore it).
    r = client.chat("cheap", extra={"max_output_tokens": 5})
    sent = requests.get(stack.mock.url + "/mock/last-body", timeout=5).json()
    assert sent["max_tokens"] == 4096 and sent["max_output_tokens"] == 5, sent


def test_budget_holds_against_uncapped_long_answers(tmp_path):
    s = sm.Stack(tmp_path)
    try:
        # gpt-5.4 output is $15/M: 4096 tokens cost 61,440 µ$; the limit fits three such answers
        key, cli = budgeted(s, "long", 200_000)
        for _ in range(10):
            r = cli.chat("openai/gpt-5.4", key=key["key"], headers={"x-mock-output-tokens": "20000"})
            if r.status_code == 429:
                break
            assert r.status_code == 200
        else:
            raise AssertionError("the budget never stopped the key")
        total = wait_until(lambda: (t := spend(s, ("team", "long")))["requests"] > 0 and t, what="usage")
        time.sleep(1.5)
        total = spend(s, ("team", "long"))
        assert total["cost_micros"] <= 200_000, total
    finally:
        s.stop()


# ---- 5. one poisoned record never stops usage shipping ---------------------------------------

def test_huge_values_from_a_provider_are_bounded_and_shipping_goes_on(tmp_path):
    s = sm.Stack(tmp_path)
    try:
        cli = Client(s)
        r = cli.chat("openai/gpt-5.4", headers={"x-mock-model-bytes": "2200000"})
        assert r.status_code == 200
        big = cli.record(r.headers["x-tollgate-request-id"])
        assert len(big["model_served"]) == 256
        r = cli.chat("openai/gpt-5.4", headers={"x-mock-usage-output": "9000000000000000000"})
        assert r.status_code == 200
        huge = cli.record(r.headers["x-tollgate-request-id"])
        assert huge["usage"]["output_tokens"] == 10**12
        after = [cli.chat("cheap").headers["x-tollgate-request-id"] for _ in range(5)]
        # all of them reach the control service
        def counted():
            _, body = s.control.api("GET", "/v1/spend", expect=200)
            return body["requests"] >= 7 and body
        body = wait_until(counted, timeout=15, what="records after the poisoned ones to be counted")
        assert body["output_tokens"] >= 10**12
        assert "parked" not in s.envoy.log()
        assert after
    finally:
        s.stop()


def test_control_service_refuses_a_bad_record_and_keeps_the_rest(stack):
    good = {"v": 1, "id": "ingest-good-1", "ts_ms": int(time.time() * 1000), "key_id": "k", "key_hash": "", "team": "t",
            "project": "p", "feature": None, "prompt_version": None, "user": None, "tags": {}, "api": "openai_chat",
            "provider": "openai", "route": "r", "model_requested": "m", "model_upstream": "m", "model_served": "m",
            "stream": False, "status": 200, "outcome": "ok", "error_code": None,
            "usage": {"input_tokens": 1, "cached_input_tokens": 0, "cache_write_tokens": 0, "output_tokens": 1,
                      "reasoning_tokens": 0}, "usage_source": "provider", "cost_micros": 3, "priced": True,
            "latency_ms": 1, "ttfb_ms": 1}
    bad_model = dict(good, id="ingest-bad-1", model_served="m" * 300_000)
    bad_count = dict(good, id="ingest-bad-2", usage=dict(good["usage"], input_tokens=9 * 10**18))
    # stamped after 9999-12-31: was stored, counted by /v1/spend and missing from bucketed reports
    bad_time = dict(good, id="ingest-bad-3", ts_ms=10**17)
    batch = {"node": "test", "records": [bad_model, good, bad_count, {"id": 5}, bad_time]}
    status, ack = stack.control.api("POST", "/v1/usage", batch, token=sm.FILTER_TOKEN)
    assert status == 200, ack
    assert ack["accepted"] == 1
    assert [(x["index"], x["id"]) for x in ack["rejected"]] == [(0, "ingest-bad-1"), (2, "ingest-bad-2"), (3, ""), (4, "ingest-bad-3")]
    assert "model_served" in ack["rejected"][0]["reason"] and "usage" in ack["rejected"][1]["reason"]
    assert ack["rejected"][3]["reason"].startswith("ts_ms: after")
    metrics = requests.get(stack.control.url + "/metrics", timeout=5).text
    assert "tollgate_control_ingest_rejected_total 4" in metrics


# ---- 6. memory and size: bounded, and never a silent undercharge -----------------------------

def envoy_rss_mib(envoy: sm.Envoy) -> float:
    with open(f"/proc/{envoy.proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def test_an_endless_sse_event_stays_bounded(stack, client):
    before = envoy_rss_mib(stack.envoy)
    r = client.chat("openai/gpt-5.4", extra={"stream": True}, headers={"x-mock-endless-event": str(64 << 20)},
                    stream=True)
    n = sum(len(c) for c in r.iter_content(1 << 16))
    assert n >= 64 << 20, "every byte reaches the client"
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert rec["usage_source"] == "estimated" and rec["cost_micros"] > 0
    assert rec["error_code"] in ("usage_unreadable:event_too_large", "stream_cut"), rec["error_code"]
    grew = envoy_rss_mib(stack.envoy) - before
    assert grew < 48, f"Envoy grew by {grew:.0f} MiB for a 64 MiB event"
    worker_alive(client)


@pytest.mark.parametrize("path,model", [("/v1/chat/completions", "anthropic/claude-sonnet-4-6"),
                                        ("/v1/messages", "openai/gpt-5.4"),
                                        ("/v1/responses", "anthropic/claude-sonnet-4-6"),
                                        ("/v1/responses", "cheap")])
def test_an_endless_event_on_a_translated_stream_ends_it_with_an_error_the_client_reads(stack, client, path, model):
    """An event past what the gateway reads cannot be translated. Before, its
    pieces were dropped and the client's stream just stopped (a Responses
    client got nothing at all); now the client gets an error event in its own
    format, then nothing more, and the request is priced by estimate."""
    body = {"model": model, "stream": True, "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}
    if path == "/v1/responses":
        body = {"model": model, "stream": True, "input": "hi"}
    h = {"x-mock-endless-event": str(3 << 20), **({"anthropic-version": "2023-06-01"} if path == "/v1/messages" else {})}
    r = client.post(path, body, headers=h, stream=True)
    assert r.status_code == 200
    data = b"".join(r.iter_content(1 << 16))
    assert len(data) < 64 << 10 and b"xxxx" not in data, data[:300]
    blocks = [b for b in data.decode().split("\n\n") if "data:" in b]
    last = json.loads(blocks[-1].split("data:", 1)[1])
    message = {"/v1/chat/completions": lambda e: e["error"]["message"], "/v1/messages": lambda e: e["error"]["message"],
               "/v1/responses": lambda e: e["message"]}[path](last)
    assert "larger than the gateway reads" in message, blocks[-1]
    if path != "/v1/chat/completions":
        assert blocks[-1].startswith("event: error"), blocks[-1]
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert rec["usage_source"] == "estimated" and rec["cost_micros"] > 0
    assert rec["error_code"] in ("usage_unreadable:event_too_large", "stream_cut"), rec["error_code"]
    worker_alive(client)


def test_a_json_answer_larger_than_max_response_bytes_is_priced(client):
    # 2.5M output tokens: a ~12 MB body, over the 8 MiB max_response_bytes
    r = client.chat("openai/gpt-5.4", headers={"x-mock-output-tokens": "2500000"}, extra={"max_tokens": 2_500_000})
    assert r.status_code == 200
    u = r.json()["usage"]
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert rec["usage"]["output_tokens"] == 2_500_000
    assert rec["cost_micros"] == expected_cost("openai/gpt-5.4", u["prompt_tokens"], 2_500_000,
                                               cached=u["prompt_tokens_details"]["cached_tokens"])
    assert rec["usage_source"] == "provider" and rec["error_code"] == "usage_from_tail:response_too_large"


def test_gzip_answers_are_priced_exactly(client):
    r = client.chat("openai/gpt-5.4", headers={"x-mock-gzip": "1", "x-mock-output-tokens": "40"})
    assert r.status_code == 200 and r.headers.get("content-encoding") == "gzip"
    u = r.json()["usage"]  # requests inflates it for us
    cost = expected_cost("openai/gpt-5.4", u["prompt_tokens"], u["completion_tokens"])
    assert int(r.headers["x-tollgate-cost-micros"]) == cost
    r = client.chat("openai/gpt-5.4", extra={"stream": True, "stream_options": {"include_usage": True}},
                    headers={"x-mock-gzip": "1", "x-mock-output-tokens": "40"})
    assert r.status_code == 200
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert rec["usage_source"] == "provider" and rec["usage"]["output_tokens"] == 40


def test_an_unreadable_encoding_is_estimated_never_free(client):
    r = client.chat("openai/gpt-5.4", headers={"x-mock-content-encoding": "br", "x-mock-output-tokens": "400"})
    assert r.status_code == 200
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert rec["usage_source"] == "estimated" and rec["error_code"] == "usage_unreadable:content_encoding"
    assert rec["usage"]["output_tokens"] > 0 and rec["cost_micros"] > 0


@pytest.mark.parametrize("usage", ["none", '{"prompt_tokens":1e30,"completion_tokens":5}',
                                   '{"prompt_tokens":12.5,"completion_tokens":400}', '"lots"', '[900,5]'])
def test_an_answer_whose_usage_cannot_be_read_is_charged_its_output_too(client, usage):
    """A 200 with no usage the filter can read (none, a count past u64, a
    float, a string, an array that serde's derive read by position as 900
    input and 5 output tokens) was charged only the input estimate, or the
    array's numbers: its output, which the provider billed, counted zero.
    It is estimated from the body."""
    for api in ("chat", "messages"):
        r = getattr(client, api)("openai/gpt-5.4" if api == "chat" else "anthropic/claude-sonnet-4-6",
                                 headers={"x-mock-usage-json": usage, "x-mock-output-tokens": "400"})
        assert r.status_code == 200 and ('"usage"' in r.text) == (usage != "none"), r.text
        rec = client.record(r.headers["x-tollgate-request-id"])
        assert (rec["usage_source"], rec["error_code"]) == ("estimated", "usage_missing"), rec
        assert rec["usage"]["output_tokens"] == -(-len(r.content) // 4) > 200, (rec["usage"], len(r.content))
        assert rec["cost_micros"] == int(r.headers["x-tollgate-cost-micros"]) > 0


@pytest.mark.parametrize("api,usage", [
    ("chat", '{"prompt_tokens":900,"completion_tokens":5,"prompt_tokens_details":[800]}'),
    ("chat", '{"prompt_tokens":900,"completion_tokens":5,"completion_tokens_details":[null,5]}'),
    ("messages", '{"input_tokens":900,"output_tokens":5,"cache_creation":[0,900]}'),
    ("messages", '{"input_tokens":900,"output_tokens":5,"server_tool_use":[40]}'),
])
def test_a_usage_detail_given_as_an_array_is_estimated_never_read_by_position(client, api, usage):
    """A detail of the usage that is an array (`"prompt_tokens_details":
    [800]` was 800 cached tokens at the cache's price, `"cache_creation":
    [0, 900]` an hour's cache writes) makes the usage unreadable, as a
    string there always did: the answer is estimated from its body."""
    r = getattr(client, api)("openai/gpt-5.4" if api == "chat" else "anthropic/claude-sonnet-4-6",
                             headers={"x-mock-usage-json": usage, "x-mock-output-tokens": "400"})
    assert r.status_code == 200 and usage in r.text, r.text
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert (rec["usage_source"], rec["error_code"]) == ("estimated", "usage_missing"), rec
    assert rec["usage"]["output_tokens"] == -(-len(r.content) // 4) > 200, (rec["usage"], len(r.content))
    assert rec["usage"].get("cached_input_tokens", 0) == 0 and rec["usage"].get("cache_write_tokens", 0) == 0, rec["usage"]


def test_two_authorization_headers_are_refused_as_several_keys(stack):
    """Envoy joins a repeated Authorization header with a comma: even the same
    key twice never matches, and the answer says why (not "unknown key")."""
    body = json.dumps({"model": "openai/gpt-5.4", "messages": [{"role": "user", "content": "hi"}]}).encode()
    req = (b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
           + f"authorization: Bearer {SEARCH_KEY}\r\nauthorization: Bearer {SEARCH_KEY}\r\n".encode()
           + f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode() + body)
    resp = raw_http(stack.envoy.listen_port, req)
    assert status_of(resp) == 401, resp[:300]
    err = json.loads(resp.split(b"\r\n\r\n", 1)[1])["error"]
    assert err["code"] == "invalid_api_key" and "several API keys" in err["message"] and SEARCH_KEY not in err["message"]


def test_two_different_virtual_keys_in_one_request_are_refused_not_guessed(client):
    """Authorization and x-api-key (or x-goog-api-key) naming two different
    virtual keys: before, the bearer key was charged and the other ignored.
    Now a 401 says so. The same key twice is one key, and a header that
    holds no virtual key (a provider key left in the client's environment)
    is dropped as before, never sent upstream."""
    from conftest import LABS_KEY
    for other in ({"x-api-key": LABS_KEY}, {"x-goog-api-key": f"{LABS_KEY} "}):
        r = client.chat("openai/gpt-5.4", headers=other)
        assert r.status_code == 401, (other, r.text)
        err = error_of(r)
        assert err["code"] == "invalid_api_key" and "two different" in err["message"]
        assert SEARCH_KEY not in r.text and LABS_KEY not in r.text
    r = client.chat("openai/gpt-5.4", headers={"x-api-key": SEARCH_KEY})
    assert r.status_code == 200, r.text
    assert client.record(r.headers["x-tollgate-request-id"])["team"] == "search"
    r = client.chat("openai/gpt-5.4", headers={"x-api-key": "sk-ant-api03-not-a-virtual-key"})
    assert r.status_code == 200, r.text
    assert client.record(r.headers["x-tollgate-request-id"])["team"] == "search"
    # x-api-key given twice (not an inline header, so Envoy keeps both): one
    # value joined with a comma, refused as several keys, never the last one.
    body = json.dumps({"model": "anthropic/claude-sonnet-4-6", "max_tokens": 16,
                       "messages": [{"role": "user", "content": "hi"}]}).encode()
    req = (b"POST /v1/messages HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nanthropic-version: 2023-06-01\r\n"
           + f"x-api-key: {SEARCH_KEY}\r\nx-api-key: {LABS_KEY}\r\n".encode()
           + f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode() + body)
    resp = raw_http(client.stack.envoy.listen_port, req)
    assert status_of(resp) == 401, resp[:300]
    err = json.loads(resp.split(b"\r\n\r\n", 1)[1])["error"]
    assert "several API keys" in err["message"] and SEARCH_KEY not in err["message"] and LABS_KEY not in err["message"]


def test_a_compressed_request_is_read_priced_and_sent_on_decoded(client):
    """A client may gzip its request (before: 400 "not valid JSON" at column 1).
    The filter reads it decoded and sends the decoded body on, without the
    header, so the provider gets exactly what was read and priced."""
    say = "compressed hello " * 40
    body = json.dumps({"model": "openai/gpt-5.4", "messages": [{"role": "user", "content": say}]}).encode()
    for coding, data in (("gzip", gzip.compress(body)), ("deflate", zlib.compress(body))):
        r = client.post("/v1/chat/completions", raw=data, headers={"content-encoding": coding, "x-mock-echo": "1"})
        assert r.status_code == 200, (coding, r.text)
        assert r.headers["x-mock-request-encoding"] == "", "the header goes with the encoding"
        assert r.json()["choices"][0]["message"]["content"] == say, "the provider read the decoded text"
        u = r.json()["usage"]
        assert int(r.headers["x-tollgate-cost-micros"]) == expected_cost("openai/gpt-5.4", u["prompt_tokens"], u["completion_tokens"])
    # What cannot be decoded is refused clearly, and counted as refused.
    for coding, data, status, code in (("br", body, 415, "unsupported_encoding"), ("gzip", body, 400, "invalid_encoding"),
                                       ("gzip", gzip.compress(body)[:-30], 400, "invalid_encoding"),
                                       ("gzip", gzip.compress(b" " * (48 << 20)), 413, "request_too_large")):
        r = client.post("/v1/chat/completions", raw=data, headers={"content-encoding": coding})
        assert (r.status_code, error_of(r)["code"]) == (status, code), (coding, r.text)
        rec = client.record(r.headers["x-tollgate-request-id"])
        assert rec["outcome"] == "rejected" and rec["cost_micros"] == 0


# ---- 7. HTTP/2 request trailers --------------------------------------------------------------

def test_http2_request_with_trailers_is_routed_and_counted(stack, client):
    body = json.dumps({"model": "openai/gpt-5.4", "messages": [{"role": "user", "content": "trailers"}]}).encode()
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    with socket.create_connection(("127.0.0.1", stack.envoy.listen_port), timeout=10) as s:
        conn.initiate_connection()
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, [(":method", "POST"), (":path", "/v1/chat/completions"), (":scheme", "http"),
                                (":authority", "x"), ("authorization", f"Bearer {SEARCH_KEY}"),
                                ("content-type", "application/json")])
        conn.send_data(sid, body)
        conn.send_headers(sid, [("x-trailer", "done")], end_stream=True)
        s.sendall(conn.data_to_send())
        status, headers, data, done = None, {}, b"", False
        deadline = time.monotonic() + 10
        while not done and time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            for ev in conn.receive_data(chunk):
                if isinstance(ev, h2.events.ResponseReceived):
                    headers = {k.decode(): v.decode() for k, v in ev.headers}
                    status = int(headers[":status"])
                elif isinstance(ev, h2.events.DataReceived):
                    data += ev.data
                    conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded):
                    done = True
            s.sendall(conn.data_to_send())
    assert status == 200, (status, data[:300])
    assert headers["x-tollgate-model"] == "gpt-5.4"
    rec = client.record(headers["x-tollgate-request-id"])
    assert rec["outcome"] == "ok" and rec["cost_micros"] == int(headers["x-tollgate-cost-micros"]) > 0


# ---- 8. output of client-controlled values ---------------------------------------------------

def test_reports_escape_client_values(stack, client):
    # enough requests to be among the monthly review's ten highest-volume workflows
    for _ in range(40):
        r = client.chat("cheap", headers={"x-tollgate-feature": "=HYPERLINK(\"http://x\")|<b>"})
        assert r.status_code == 200
    wait_until(lambda: "HYPERLINK" in control_text(stack, "/v1/reports/spend?group_by=feature&format=csv"),
               what="the record in the report")
    csv = control_text(stack, "/v1/reports/spend?group_by=feature&format=csv")
    line = next(x for x in csv.splitlines() if "HYPERLINK" in x)
    assert line.startswith("\"'=HYPERLINK"), line
    # all 40 records counted: the feature is among the ten highest-volume workflows
    wait_until(lambda: "HYPERLINK" in control_text(stack, "/v1/reports/monthly"), what="the feature in the monthly review")
    md = control_text(stack, "/v1/reports/monthly")
    assert "HYPERLINK" in md and "<b>" not in md and "&lt;b&gt;" in md


def test_fixed_budget_window_is_bounded(stack):
    status, body = stack.control.api("PUT", "/v1/budgets/team/forever", {
        "limit_micros": 10, "period": "fixed", "window_start_ms": 0, "window_end_ms": 2**64 - 1})
    assert status == 400 and body["error"]["code"] == "invalid_window", body


def test_invented_model_names_do_not_create_metric_series(stack, client):
    for i in range(20):
        client.chat(f"openai/invented-{i}", headers={"x-mock-status": "400"})
    stats = requests.get(f"http://127.0.0.1:{stack.envoy.admin_port}/stats?filter=tollgate", timeout=5).text
    assert "invented" not in stats
    assert "model.openai__" in stats or "model.openai_" in stats, "failed requests are labelled by their route"


# ---- 9. identity of an Envoy -----------------------------------------------------------------

def test_the_service_is_named_by_service_node_and_counted_as_active(stack):
    assert "service: node 'envoy'" in stack.envoy.log()
    _, state = stack.control.api("GET", "/v1/state", expect=200)
    assert state["nodes_active"] >= 1


# ---- a trap (none is known) costs one request, not a worker -----------------------------------

TRAP_WASM = sm.ROOT / "target" / "trap" / "wasm32-unknown-unknown" / "release" / "tollgate_filter.wasm"


def trap_envoy(stack, tmp_path, policy: str | None) -> sm.Envoy:
    """One worker running the test-only build that traps on `x-tollgate-test-trap`."""
    assert TRAP_WASM.exists(), "make build-wasm builds the test-trap filter"
    cfg = sm.demo_config(sm.free_port(), sm.free_port(), stack.mock.port, access_log=str(tmp_path / "a.log"),
                         control_port=stack.control.port)
    wasm = sm._wasm_filter(cfg)["typed_config"]["config"]
    wasm["vm_config"]["code"]["local"]["filename"] = str(TRAP_WASM)
    if policy is None:
        wasm.pop("failure_policy", None)
    else:
        wasm["failure_policy"] = policy
    for b in cfg.get("bootstrap_extensions", []):
        b["typed_config"]["config"]["vm_config"]["code"]["local"]["filename"] = str(TRAP_WASM)
    return sm.Envoy(cfg, tmp_path, concurrency=1, name="trap")


def served_after_trap(envoy: sm.Envoy, wait: float = 4.0) -> list[int]:
    """Traps the VM once, then asks every 0.2 s; returns the statuses seen."""
    url = f"http://127.0.0.1:{envoy.listen_port}/v1/chat/completions"
    body = {"model": "cheap", "messages": [{"role": "user", "content": "hi"}]}
    r = requests.post(url, json=body, headers={**AUTH, "x-tollgate-test-trap": "1"}, timeout=10)
    assert r.status_code >= 500, r.status_code
    out = []
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and out[-3:] != [200, 200, 200]:
        time.sleep(0.2)  # FAIL_RELOAD reloads after a backoff (1 s base by default)
        try:
            out.append(requests.post(url, json=body, headers=AUTH, timeout=10).status_code)
        except requests.RequestException:
            out.append(0)
    return out


def test_fail_reload_makes_a_trap_cost_one_request(stack, tmp_path):
    e = trap_envoy(stack, tmp_path, "FAIL_RELOAD")
    try:
        after = served_after_trap(e)
        # the worker serves again after Envoy's reload backoff, and keeps serving
        assert after[-3:] == [200, 200, 200], after
    finally:
        e.stop()


def test_without_fail_reload_a_trap_would_cost_the_worker(stack, tmp_path):
    """The other side: proves the test above can fail (Envoy's default fails closed for good)."""
    e = trap_envoy(stack, tmp_path, None)
    try:
        after = served_after_trap(e)
        assert 200 not in after, after
    finally:
        e.stop()


def test_a_client_that_waits_for_100_continue_is_answered_and_counted(stack, client):
    """curl and libcurl-based clients send `Expect: 100-continue` before a
    large body and wait for the interim answer. The filter holds the
    request's headers until the body is read (routing depends on it): Envoy
    must still send 100 Continue, or such a client would wait out its
    timeout (curl 1 s) or hang."""
    body = json.dumps({"model": "openai/gpt-5.4", "messages": [{"role": "user", "content": "x" * 3000}]}).encode()
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {SEARCH_KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", stack.envoy.listen_port), timeout=10) as s:
        s.sendall(head)
        s.settimeout(0.5)
        assert s.recv(4096).startswith(b"HTTP/1.1 100 Continue\r\n"), "no interim answer before the body"
        s.sendall(body)
        s.settimeout(10)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = s.recv(65536)
            assert chunk, answer
            answer += chunk
    assert status_of(answer) == 200, answer[:300]
    request_id = next(line.split(b":", 1)[1].strip().decode() for line in answer.split(b"\r\n")
                      if line.lower().startswith(b"x-tollgate-request-id:"))
    assert client.record(request_id)["outcome"] == "ok"


def test_a_clients_openai_organization_and_project_never_reach_the_provider(stack, client):
    """The OpenAI SDKs send `OpenAI-Organization` / `OpenAI-Project` when
    OPENAI_ORG_ID / OPENAI_PROJECT_ID are set, as they are on machines that
    called OpenAI directly before. Beside the gateway's key they name an
    organization the key is not in: api.openai.com answers 401
    mismatched_organization (the mock too), so every request failed; and a
    key of several organizations would bill the one the client named."""
    import openai
    oai = openai.OpenAI(base_url=stack.url + "/v1", api_key=SEARCH_KEY, max_retries=0,
                        organization="org-client", project="proj_client")
    raw = oai.chat.completions.with_raw_response.create(model="openai/gpt-5.4", messages=[{"role": "user", "content": "hi"}])
    assert raw.http_response.status_code == 200
    assert client.record(raw.headers["x-tollgate-request-id"])["outcome"] == "ok"
    r = oai.responses.with_raw_response.create(model="openai/gpt-5.4", input="hi")
    assert r.http_response.status_code == 200
