"""A provider that compresses its answer although the gateway asked for none
(the client's accept-encoding is not sent upstream): an answer the gateway
rewrites — translated to the client's API, guarded, its JSON checked, an
unasked usage chunk left out — is decoded and reaches the client rewritten,
without content-encoding. Before, such an answer went on as it came: a
Claude answer in Anthropic's format to an OpenAI SDK, a fallback's gzip
bytes without their content-encoding. One that does not decode, or that
is too large to hold, is priced all the same and the next request is
served; the client of a translated request gets an error in its API's
format in its place (it could not read the provider's format).

The mock gzips an answer when asked with `x-mock-gzip: 1`, or for any
request to a host whose name starts with `gzip.` (the fallback below)."""
from __future__ import annotations

import json
import socket
import time

import pytest
import requests

import stack as sm
from conftest import SEARCH_KEY, error_of, expected_cost

GZ = {"x-mock-gzip": "1"}
CLAUDE = "anthropic/claude-sonnet-4-6"


def no_encoding(headers) -> None:
    assert "content-encoding" not in headers, dict(headers)


def test_a_compressed_claude_answer_reaches_an_openai_client_translated(oai, client):
    raw = oai.chat.completions.with_raw_response.create(
        model=CLAUDE, max_tokens=50, messages=[{"role": "user", "content": "Say hello"}], extra_headers=GZ)
    assert raw.headers["x-mock-path"] == "/v1/messages"
    no_encoding(raw.headers)
    r = raw.parse()
    assert r.object == "chat.completion" and r.choices[0].message.content.startswith("Sure")
    assert int(raw.headers["content-length"]) == len(raw.content)
    rec = client.record(raw.headers["x-tollgate-request-id"])
    assert rec["usage_source"] == "provider" and rec["usage"]["output_tokens"] == r.usage.completion_tokens
    assert int(raw.headers["x-tollgate-cost-micros"]) == rec["cost_micros"] == expected_cost(
        CLAUDE, r.usage.prompt_tokens, r.usage.completion_tokens)


@pytest.mark.parametrize("include_usage", [True, False])
def test_a_compressed_claude_stream_reaches_an_openai_client_as_chunks(oai, client, include_usage):
    kw = {"stream_options": {"include_usage": True}} if include_usage else {}
    raw = oai.chat.completions.with_raw_response.create(
        model=CLAUDE, messages=[{"role": "user", "content": "Stream it"}], stream=True, extra_headers=GZ, **kw)
    no_encoding(raw.headers)
    chunks = list(raw.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).startswith("Sure, here is a mock answer")
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    rec = client.record(raw.headers["x-tollgate-request-id"])
    assert rec["usage_source"] == "provider" and rec["usage"]["output_tokens"] == 12
    assert [c.usage.completion_tokens for c in chunks if c.usage] == ([12] if include_usage else [])


def test_a_compressed_openai_answer_reaches_an_anthropic_client_translated(claude_sdk, client):
    raw = claude_sdk.messages.with_raw_response.create(
        model="openai/gpt-5.4", max_tokens=50, messages=[{"role": "user", "content": "Say hello"}], extra_headers=GZ)
    assert raw.headers["x-mock-path"].endswith("/chat/completions")
    no_encoding(raw.headers)
    m = raw.parse()
    assert m.type == "message" and m.content[0].text.startswith("Sure") and m.stop_reason == "end_turn"
    with claude_sdk.messages.stream(model="openai/gpt-5.4", max_tokens=50, extra_headers=GZ,
                                    messages=[{"role": "user", "content": "Stream it"}]) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
        no_encoding(s.response.headers)
        rid = s.response.headers["x-tollgate-request-id"]
    assert text.startswith("Sure, here is a mock answer") and final.usage.output_tokens == 12
    rec = client.record(rid)
    assert rec["usage_source"] == "provider" and rec["usage"]["output_tokens"] == 12


@pytest.mark.parametrize("model,path", [(CLAUDE, "/v1/messages"), ("cheap", "/chat/completions")])
def test_a_compressed_answer_reaches_a_responses_client_translated(oai, client, model, path):
    raw = oai.responses.with_raw_response.create(model=model, input="Say hello", max_output_tokens=50, extra_headers=GZ)
    assert raw.headers["x-mock-path"].endswith(path)
    no_encoding(raw.headers)
    r = raw.parse()
    assert r.object == "response" and r.status == "completed" and r.output_text.startswith("Sure")
    with oai.responses.stream(model=model, input="Stream it", extra_headers=GZ) as s:
        text = "".join(e.delta for e in s if e.type == "response.output_text.delta")
        final = s.get_final_response()
    assert text.startswith("Sure, here is a mock answer") and final.usage.output_tokens == 12


def test_a_compressed_responses_answer_reaches_a_chat_client_for_a_codex_model(oai):
    model = "openai/gpt-5.1-codex"
    raw = oai.chat.completions.with_raw_response.create(
        model=model, max_completion_tokens=50, messages=[{"role": "user", "content": "Say hello"}], extra_headers=GZ)
    assert raw.headers["x-mock-path"] == "/v1/responses"
    no_encoding(raw.headers)
    assert raw.parse().choices[0].message.content.startswith("Sure")
    stream = oai.chat.completions.create(model=model, messages=[{"role": "user", "content": "Stream it"}], stream=True,
                                         stream_options={"include_usage": True}, extra_headers=GZ)
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).startswith("Sure, here is a mock answer")
    assert [c.usage.completion_tokens for c in chunks if c.usage] == [12]


def test_a_compressed_stream_loses_the_usage_chunk_the_client_did_not_ask_for(client):
    """The gateway asks for the usage chunk; a client that did not gets none,
    compressed or not (before: a compressed stream kept it)."""
    r = client.chat("openai/gpt-5.4", extra={"stream": True}, headers=GZ, stream=True)
    no_encoding(r.headers)
    events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith(b"data: {")]
    assert events and not [e for e in events if e.get("usage")], events[-1]
    assert all(e["choices"] for e in events), "the choices: [] usage chunk is left out"
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert rec["usage_source"] == "provider" and rec["usage"]["output_tokens"] == 12


def test_a_compressed_answer_is_json_checked_and_repaired(client):
    body = {"model": "json-mini", "messages": [{"role": "user", "content": "TASK: add 2 3"}], "response_format": {"type": "json_object"}}
    r = client.post("/v1/chat/completions", body, headers=GZ)
    no_encoding(r.headers)
    assert r.json()["choices"][0]["message"]["content"] == '{"answer": 5}'
    assert client.record(r.headers["x-tollgate-request-id"])["json_check"] == {"valid": True, "repaired": True}


def raw_exchange(port: int, body: bytes, headers: dict, path: str = "/v1/chat/completions") -> tuple[int, dict, bytes]:
    """One request over a plain socket: the answer's bytes as they came (no client decodes them)."""
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    req = (f"POST {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {len(body)}\r\n{head}\r\n").encode() + body
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(req)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    hdrs = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if hdrs.get("transfer-encoding") == "chunked":
        out = b""
        while rest:
            size, _, rest = rest.partition(b"\r\n")
            n = int(size.split(b";")[0], 16)
            if n == 0:
                break
            out, rest = out + rest[:n], rest[n + 2:]
        rest = out
    return int(lines[0].split()[1]), hdrs, rest


def untranslatable(status: int, headers: dict, content: bytes, why: str) -> dict:
    """The error a client of a translated request gets in place of an answer
    the gateway could not translate: a 502 in the shape both SDK families
    read, saying why, and none of the provider's bytes."""
    assert status == 502, (status, content[:300])
    assert headers["content-type"] == "application/json" and "content-encoding" not in headers, headers
    assert int(headers["content-length"]) == len(content)
    assert headers["x-should-retry"] == "false", "the provider billed it: an SDK must not pay again"
    err = json.loads(content)
    assert err["type"] == "error" and err["error"]["type"] == "api_error", err
    assert err["error"]["code"] == "answer_untranslatable" and why in err["error"]["message"], err
    return err


def test_a_translated_answer_that_says_gzip_but_is_not_becomes_an_error_and_is_priced(stack, client):
    """Before, the Anthropic body went to the OpenAI client as it came,
    with a content-encoding it did not have: unreadable twice over."""
    body = json.dumps({"model": CLAUDE, "max_tokens": 50, "messages": [{"role": "user", "content": "Say hello"}]}).encode()
    h = {"content-type": "application/json", "authorization": f"Bearer {SEARCH_KEY}", "x-mock-content-encoding": "gzip"}
    status, headers, content = raw_exchange(stack.envoy.listen_port, body, h)
    untranslatable(status, headers, content, "not valid gzip or deflate data")
    rec = client.record(headers["x-tollgate-request-id"])
    assert (rec["status"], rec["outcome"]) == (502, "ok"), "the client's status; the provider's answer is still accounted"
    assert rec["usage_source"] == "estimated" and rec["error_code"] == "usage_unreadable:content_encoding"
    assert rec["cost_micros"] > 0
    r = client.chat(CLAUDE)
    assert r.status_code == 200 and r.json()["object"] == "chat.completion"


def test_an_untranslated_answer_that_says_gzip_but_is_not_goes_on_as_it_came(stack, client):
    """The client speaks the provider's API: what came is what it gets."""
    body = json.dumps({"model": "openai/gpt-5.4", "messages": [{"role": "user", "content": "Say hello"}]}).encode()
    h = {"content-type": "application/json", "authorization": f"Bearer {SEARCH_KEY}", "x-mock-content-encoding": "gzip"}
    status, headers, content = raw_exchange(stack.envoy.listen_port, body, h)
    assert status == 200 and headers["content-encoding"] == "gzip" and json.loads(content)["object"] == "chat.completion"
    rec = client.record(headers["x-tollgate-request-id"])
    assert rec["status"] == 200 and rec["cost_micros"] > 0


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("path,model", [("/v1/chat/completions", CLAUDE), ("/v1/messages", "openai/gpt-5.4"),
                                        ("/v1/responses", CLAUDE)])
def test_a_translated_answer_in_an_encoding_the_gateway_cannot_read_becomes_an_error(stack, client, path, model, stream):
    """br (or zstd) although the gateway asked for no encoding: it cannot be
    decoded, so cannot be translated; before, a Claude answer in br went to
    an OpenAI client as it came. The provider's usage is estimated."""
    body = {"model": model, "stream": stream, "max_tokens": 50, "messages": [{"role": "user", "content": "Say hello"}]}
    if path == "/v1/responses":
        body = {"model": model, "stream": stream, "input": "Say hello"}
    h = {"content-type": "application/json", "authorization": f"Bearer {SEARCH_KEY}", "x-mock-content-encoding": "br",
         "x-mock-output-tokens": "400", **({"anthropic-version": "2023-06-01"} if path == "/v1/messages" else {})}
    status, headers, content = raw_exchange(stack.envoy.listen_port, json.dumps(body).encode(), h, path=path)
    untranslatable(status, headers, content, "content-encoding 'br' cannot be decoded")
    rec = client.record(headers["x-tollgate-request-id"])
    assert (rec["status"], rec["outcome"], rec["usage_source"]) == (502, "ok", "estimated"), rec
    assert rec["usage"]["output_tokens"] > 0 and rec["cost_micros"] > 0


def test_a_translated_answer_too_large_to_hold_becomes_an_error_and_is_priced_from_its_tail(client, claude_sdk):
    """A chat completion of ~12 MB for an Anthropic client: over the 8 MiB
    max_response_bytes the gateway holds to translate. Before, the client
    got the chat completion as it came (the SDK read no message); now it
    gets an error in Anthropic's format, and the provider's usage, read
    from the answer's tail, is charged."""
    import anthropic
    with pytest.raises(anthropic.InternalServerError) as e:
        claude_sdk.messages.create(model="openai/gpt-5.4", max_tokens=2_500_000, timeout=120, extra_headers={"x-mock-output-tokens": "2500000"},
                                   messages=[{"role": "user", "content": "Say a lot"}])
    r = e.value.response
    err = untranslatable(r.status_code, dict(r.headers), r.content, "larger than the gateway holds to translate")
    assert e.value.body == err, "the SDK read the gateway's error"
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert (rec["status"], rec["outcome"], rec["usage_source"]) == (502, "ok", "provider"), rec
    assert rec["usage"]["output_tokens"] == 2_500_000 and rec["error_code"] == "usage_from_tail:response_too_large"
    assert rec["cost_micros"] == expected_cost("openai/gpt-5.4", rec["usage"]["input_tokens"], 2_500_000,
                                               cached=rec["usage"]["cached_input_tokens"])


def envoy_falling_back_to(stack, tmp_path, name: str, host: str, encoding: str | None) -> sm.Envoy:
    """An Envoy whose route `<name>-first` (OpenAI's gpt-5.4) falls back to
    provider `name`: Claude at `host`, for which the mock answers with
    `content-encoding: <encoding>` unasked (checked first, directly; None:
    not checked)."""
    def patch(c):
        c["providers"].append({"name": name, "format": "anthropic", "cluster": "anthropic", "host": host,
                               "path_prefix": "/v1", "api_key": "sk-ant-mock", "anthropic_version": "2023-06-01"})
        c["routes"][:0] = [{"model": f"{name}-first", "provider": "openai", "upstream_model": "gpt-5.4", "fallbacks": [f"{name}-claude"]},
                           {"model": f"{name}-claude", "provider": name, "upstream_model": "claude-sonnet-4-6"}]
        c["pricing"][f"{name}/claude-sonnet-4-6"] = c["pricing"]["anthropic/claude-sonnet-4-6"]
    if encoding is not None:
        direct = requests.post(f"http://127.0.0.1:{stack.mock.port}/v1/messages", stream=True, timeout=10,
                               headers={"host": host, "x-api-key": "sk-ant-mock", "anthropic-version": "2023-06-01"},
                               json={"model": "claude-sonnet-4-6", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]})
        assert direct.status_code == 200 and direct.headers["content-encoding"] == encoding, direct.headers
    cfg = sm.demo_config(sm.free_port(), sm.free_port(), stack.mock.port, plugin_patch=patch, control_port=stack.control.port)
    return sm.Envoy(cfg, tmp_path, concurrency=1, name=name)


def ask_failing_first(e: sm.Envoy, model: str, stream: bool) -> requests.Response:
    """A chat request whose first attempt fails (500), so the route's fallback answers."""
    h = {"content-type": "application/json", "authorization": f"Bearer {SEARCH_KEY}", "x-mock-status": "500"}
    return requests.post(e.url + "/v1/chat/completions", headers=h, timeout=30,
                         json={"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]})


def test_a_fallbacks_compressed_answer_is_decoded_and_translated(stack, tmp_path):
    """The first attempt fails; the alternative (a provider whose host makes
    the mock gzip) answers compressed. Before, its gzip bytes reached the
    client without a content-encoding, untranslated and unpriced."""
    e = envoy_falling_back_to(stack, tmp_path, "squeezed", "gzip.anthropic.test", "gzip")
    try:
        for stream in (False, True):
            r = ask_failing_first(e, "squeezed-first", stream)
            assert r.status_code == 200 and r.headers["x-tollgate-provider"] == "squeezed", r.text
            no_encoding(r.headers)
            if stream:
                events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith(b"data: {")]
                text = "".join(c["delta"].get("content") or "" for e_ in events for c in e_["choices"])
            else:
                text = r.json()["choices"][0]["message"]["content"]
            assert text.startswith("Sure"), (stream, r.content[:200])
            if not stream:
                u = r.json()["usage"]
                assert int(r.headers["x-tollgate-cost-micros"]) == expected_cost(
                    "anthropic/claude-sonnet-4-6", u["prompt_tokens"], u["completion_tokens"])
    finally:
        e.stop()


def test_a_fallbacks_answer_the_gateway_cannot_read_becomes_an_error_for_a_translating_client(stack, tmp_path):
    """The first attempt fails; the alternative (a provider whose host makes
    the mock claim br) answers in Anthropic's format, in an encoding the
    gateway cannot decode. Before, those bytes went to the OpenAI client as
    they came. Now it gets the gateway's 502, and the answer is priced."""
    e = envoy_falling_back_to(stack, tmp_path, "brotli", "br.anthropic.test", "br")
    try:
        for stream in (False, True):
            r = ask_failing_first(e, "brotli-first", stream)
            assert r.headers["x-tollgate-provider"] == "brotli" and r.headers["x-tollgate-fallback-attempts"] == "1", r.headers
            untranslatable(r.status_code, r.headers, r.content, "content-encoding 'br' cannot be decoded")
            time.sleep(0.3)
            recs = e.usage_records()
            rec = [x for x in recs if x["id"] == r.headers["x-tollgate-request-id"]]
            assert len(rec) == 1, recs
            rec = rec[0]
            assert (rec["status"], rec["outcome"], rec["usage_source"]) == (502, "ok", "estimated"), rec
            assert rec["provider"] == "brotli" and rec["cost_micros"] > 0 and rec["attempts"][0]["status"] == 500, rec
    finally:
        e.stop()


def test_a_fallback_that_brings_back_no_answer_is_a_clear_error_not_an_empty_502(stack, tmp_path):
    """The first attempt fails; the alternative answers 40 MiB, more than
    Envoy buffers for a call (32 MiB by default): Envoy drops the call, so
    no answer comes back. Before, the client got a 502 with an empty body;
    now the gateway's JSON error names the provider and the likely causes,
    the record says so, and the Envoy goes on serving."""
    direct = requests.post(f"http://127.0.0.1:{stack.mock.port}/v1/messages", timeout=30,
                           headers={"host": "huge.anthropic.test", "x-api-key": "sk-ant-mock", "anthropic-version": "2023-06-01"},
                           json={"model": "claude-sonnet-4-6", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]})
    assert direct.status_code == 200 and len(direct.content) > 40 << 20, "the mock answers over Envoy's 32 MiB"
    e = envoy_falling_back_to(stack, tmp_path, "vast", "huge.anthropic.test", None)
    try:
        for stream in (False, True):
            r = ask_failing_first(e, "vast-first", stream)
            assert r.status_code == 502 and r.headers["content-type"] == "application/json", (stream, r.headers, r.content[:300])
            err = error_of(r)
            assert err["code"] == "upstream_no_answer" and "'vast'" in err["message"] and "32 MiB" in err["message"], err
            assert r.headers["x-tollgate-provider"] == "vast" and r.headers["x-tollgate-fallback-attempts"] == "2", r.headers
            time.sleep(0.3)
            rec = [x for x in e.usage_records() if x["id"] == r.headers["x-tollgate-request-id"]]
            assert len(rec) == 1 and rec[0]["error_code"] == "no_upstream_response" and rec[0]["status"] == 502, rec
            assert rec[0]["outcome"] == "provider_error" and rec[0]["cost_micros"] == 0, rec
            assert rec[0]["attempts"][0]["status"] == 500, rec
        r = requests.post(e.url + "/v1/chat/completions", headers={"authorization": f"Bearer {SEARCH_KEY}"}, timeout=10,
                          json={"model": "openai/gpt-5.4", "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200
    finally:
        e.stop()


@pytest.mark.parametrize("gzip,why", [("corrupt", "not valid gzip or deflate data"),
                                      ("truncated", "ended before its compressed data did")])
@pytest.mark.parametrize("path,model", [("/v1/chat/completions", CLAUDE),
                                        ("/v1/messages", "openai/gpt-5.4"),
                                        ("/v1/responses", CLAUDE),
                                        # untranslated, sent on decoded to leave out the usage chunk
                                        ("/v1/chat/completions", "openai/gpt-5.4")])
def test_a_decoded_stream_whose_compression_breaks_ends_with_an_error_the_client_reads(client, path, model, gzip, why):
    """The provider's gzip turns invalid halfway (the mock's `corrupt`: a
    reserved deflate block type), or the stream ends halfway where its
    compressed data does not (`truncated`). What decoded is sent in whole
    events (translated where the client speaks another API); then the
    client gets one error event in its own API's format saying why, and
    nothing more. Before, a translated stream just stopped, unexplained,
    and an untranslated one stopped mid-event; a truncated one sent its
    last, partial event (JSON no client parses) and no error."""
    body = {"model": model, "stream": True, "max_tokens": 50, "messages": [{"role": "user", "content": "Stream it"}]}
    if path == "/v1/responses":
        body = {"model": model, "stream": True, "input": "Stream it"}
    h = {"x-mock-gzip": gzip, **({"anthropic-version": "2023-06-01"} if path == "/v1/messages" else {})}
    r = client.post(path, body, headers=h, stream=True)
    assert r.status_code == 200
    no_encoding(r.headers)
    blocks = [b for b in b"".join(r.iter_content(1 << 16)).decode().split("\n\n") if "data:" in b]
    events = [json.loads(b.split("data:", 1)[1]) for b in blocks if "data: [DONE]" not in b]
    assert len(events) > 1, "what decoded before the break is translated and sent"
    message = {"/v1/chat/completions": lambda e: e["error"]["message"], "/v1/messages": lambda e: e["error"]["message"],
               "/v1/responses": lambda e: e["message"]}[path](events[-1])
    assert why in message, blocks[-1]
    errors = [i for i, e in enumerate(events) if "error" in e or e.get("type") == "error"]
    assert errors == [len(events) - 1], "one error event, nothing after it"
    if path != "/v1/chat/completions":
        assert blocks[-1].startswith("event: error"), blocks[-1]
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert rec["cost_micros"] > 0, rec
    assert client.chat("cheap").status_code == 200
