"""Google Gemini through Envoy: the native generateContent API (JSON and
alt=sse streams, thinking and cached tokens), its OpenAI-compatible endpoint
from the OpenAI SDK, and the Anthropic SDK translated onto it — every one
priced from Gemini's usageMetadata and recorded."""
from __future__ import annotations

import json
import time
from pathlib import Path

import openai
import pytest
import requests

import stack as sm

from conftest import RESTRICTED_KEY, SEARCH_KEY, expected_cost, sse_data

PRICE = "google/gemini-2.5-flash"
NATIVE = "/v1beta/models/gemini-2.5-flash:generateContent"
BODY = {"contents": [{"role": "user", "parts": [{"text": "Say hello"}]}],
        "systemInstruction": {"parts": [{"text": "Be terse."}]}, "generationConfig": {"temperature": 0.2}}


def native(stack, path=NATIVE, body=None, headers=None, key=SEARCH_KEY):
    h = {"content-type": "application/json", "x-goog-api-key": key, **(headers or {})}
    return requests.post(stack.url + path, data=json.dumps(body or BODY), headers=h, timeout=30)


def test_native_generate_content_is_priced_and_recorded(stack, client):
    r = native(stack, headers={"x-mock-reasoning-tokens": "40"})
    assert r.status_code == 200, r.text
    assert r.headers["x-mock-path"] == NATIVE and "x-goog-api-key" not in r.headers.get("x-mock-tollgate-headers", "")
    u = r.json()["usageMetadata"]
    out = u["candidatesTokenCount"] + u["thoughtsTokenCount"]
    cost = expected_cost(PRICE, u["promptTokenCount"], out)
    assert int(r.headers["x-tollgate-cost-micros"]) == cost
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert (rec["api"], rec["provider"], rec["model_upstream"]) == ("gemini_generate_content", "google", "gemini-2.5-flash")
    assert rec["usage"]["output_tokens"] == out and rec["usage"]["reasoning_tokens"] == 40
    assert rec["cost_micros"] == cost and rec["stream"] is False


def test_native_stream_is_passed_unchanged_and_priced_from_its_last_event(stack, client):
    r = native(stack, path=NATIVE.replace(":generateContent", ":streamGenerateContent") + "?alt=sse",
               headers={"x-mock-cached-tokens": "8"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert "\r\n\r\n" in r.text, "Gemini's CRLF framing reaches the client as sent"
    events = [json.loads(d) for d in sse_data(r.text)]
    last = events[-1]["usageMetadata"]
    assert events[-1]["candidates"][0]["finishReason"] == "STOP"
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert rec["stream"] is True and rec["usage"]["output_tokens"] == last["candidatesTokenCount"]
    assert rec["usage"]["cached_input_tokens"] == 8
    assert rec["cost_micros"] == expected_cost(PRICE, last["promptTokenCount"], last["candidatesTokenCount"], cached=8)


def test_native_requests_get_an_output_cap_and_gemini_refusals_pass_through(stack, client):
    r = native(stack, headers={"x-mock-output-tokens": "5000"})
    assert r.json()["candidates"][0]["finishReason"] == "MAX_TOKENS", "maxOutputTokens (4096) went upstream"
    assert r.json()["usageMetadata"]["candidatesTokenCount"] == 4096
    r = native(stack, body={**BODY, "model": "x"})
    assert r.status_code == 400 and r.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert client.record(r.headers["x-tollgate-request-id"])["cost_micros"] == 0
    assert native(stack, key="tg-wrong").status_code == 401


def test_a_config_under_its_proto_name_is_capped_and_bounded_as_gemini_reads_it(stack, client):
    """Gemini reads `generation_config` / `max_output_tokens` as it reads
    `generationConfig` / `maxOutputTokens` (protobuf's JSON mapping; the
    mock does the same). Before, the gateway read only the camelCase names:
    with no cap it added a second config beside the client's (refused by
    Gemini as a duplicate field), and a cap or candidate count spelled the
    proto way went unreserved."""
    body = {"contents": BODY["contents"], "system_instruction": BODY["systemInstruction"],
            "generation_config": {"temperature": 0.2}}
    r = native(stack, body=body, headers={"x-mock-output-tokens": "5000"})
    assert r.status_code == 200, r.text
    assert r.json()["candidates"][0]["finishReason"] == "MAX_TOKENS", "the cap went into the client's own config"
    assert r.json()["usageMetadata"]["candidatesTokenCount"] == 4096
    # the client's own cap, the proto way, is the one in force
    body["generation_config"] = {"max_output_tokens": 40, "candidate_count": 1}
    r = native(stack, body=body, headers={"x-mock-output-tokens": "5000"})
    assert r.status_code == 200 and r.json()["usageMetadata"]["candidatesTokenCount"] == 40, r.text
    # one field under both names: refused before the provider, never guessed
    for bad in ({**body, "generationConfig": {}}, {**body, "generation_config": {"maxOutputTokens": 9, "max_output_tokens": 60000}}):
        r = native(stack, body=bad)
        assert r.status_code == 400 and r.json()["error"]["code"] == "duplicate_key", r.text
        assert "x-mock-path" not in r.headers


def test_a_cap_of_null_is_replaced_not_sent_beside_the_gateways(stack, client):
    """`maxOutputTokens: null` is unset to protobuf's JSON. The gateway
    added its own cap beside it, so Gemini got the field twice (refused as
    a duplicate; a reader taking the last would have read no cap at all).
    Found by filter/tests/mutated_captures.rs."""
    for cap in ("maxOutputTokens", "max_output_tokens"):
        body = {**BODY, "generationConfig": {cap: None, "temperature": 0.2}}
        r = native(stack, body=body, headers={"x-mock-output-tokens": "5000"})
        assert r.status_code == 200, r.text
        sent = requests.get(stack.mock.url + "/mock/last-body", timeout=5).json()
        assert sent["generationConfig"] == {"maxOutputTokens": 4096, "temperature": 0.2}, sent
        assert r.json()["usageMetadata"]["candidatesTokenCount"] == 4096
        assert client.record(r.headers["x-tollgate-request-id"])["usage"]["output_tokens"] == 4096


def test_a_recorded_vertex_response_is_priced_exactly(stack, client):
    r = native(stack, headers={"x-mock-replay": "gemini_function_call.json"})
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert (rec["usage"]["input_tokens"], rec["usage"]["output_tokens"]) == (50, 11)
    assert rec["cost_micros"] == expected_cost(PRICE, 50, 11)


def test_openai_sdk_reaches_gemini_through_its_openai_compatible_endpoint(stack, client):
    # The client's own query (Azure OpenAI's api-version, the SDK's
    # default_query) stays out: Google's frontend refuses a parameter it
    # does not bind, as the mock does.
    oai = openai.OpenAI(base_url=stack.url + "/v1", api_key=SEARCH_KEY, max_retries=0,
                        default_query={"api-version": "2024-10-21"})
    raw = oai.chat.completions.with_raw_response.create(model="google/gemini-2.5-flash",
                                                        messages=[{"role": "user", "content": "hi"}])
    assert raw.headers["x-mock-path"] == "/v1beta/openai/chat/completions"
    r = raw.parse()
    rec = client.record(raw.headers["x-tollgate-request-id"])
    assert rec["provider"] == "google" and rec["api"] == "openai_chat"
    assert rec["cost_micros"] == expected_cost(PRICE, r.usage.prompt_tokens, r.usage.completion_tokens)


def test_a_client_of_geminis_openai_compatible_endpoint_keeps_its_base_url(stack, client):
    """An OpenAI client written for Gemini's OpenAI-compatible endpoint
    (base URL `…/v1beta/openai/`, ai.google.dev/gemini-api/docs/openai), as
    it reaches an Envoy in the mesh unchanged, or with only the host swapped:
    its chat, embeddings and model list were refused 404 "not routed". They
    are served as the OpenAI paths they stand for, routed by model like any
    (a Gemini model to Google's endpoint, another model to its provider)."""
    oai = openai.OpenAI(base_url=stack.url + "/v1beta/openai/", api_key=SEARCH_KEY, max_retries=0)
    raw = oai.chat.completions.with_raw_response.create(model="gemini-2.5-flash", messages=[{"role": "user", "content": "hi"}])
    assert raw.headers["x-mock-path"] == "/v1beta/openai/chat/completions"
    r = raw.parse()
    rec = client.record(raw.headers["x-tollgate-request-id"])
    assert (rec["provider"], rec["api"]) == ("google", "openai_chat")
    assert rec["cost_micros"] == expected_cost(PRICE, r.usage.prompt_tokens, r.usage.completion_tokens)
    chunks = list(oai.chat.completions.create(model="gemini-2.5-flash", stream=True, messages=[{"role": "user", "content": "hi"}],
                                              stream_options={"include_usage": True}))
    assert [c.usage for c in chunks if c.usage]
    raw = oai.embeddings.with_raw_response.create(model="gemini-embedding-001", input="a b c d")
    assert raw.headers["x-mock-path"] == "/v1beta/openai/embeddings" and raw.parse().data[0].embedding
    ids = [m.id for m in oai.models.list()]
    assert "openai/gpt-5.4" in ids and "cheap" in ids, ids
    assert oai.models.retrieve("gemini-2.5-flash").id == "gemini-2.5-flash"
    # Another model on the same base URL goes to its own provider.
    raw = oai.chat.completions.with_raw_response.create(model="openai/gpt-5.4", messages=[{"role": "user", "content": "hi"}])
    assert raw.headers["x-mock-path"] == "/v1/chat/completions"


def test_anthropic_sdk_reaches_gemini_translated(stack, client):
    import anthropic
    claude = anthropic.Anthropic(base_url=stack.url, api_key=SEARCH_KEY, max_retries=0)
    raw = claude.messages.with_raw_response.create(model="gemini-2.5-flash", max_tokens=40,
                                                   messages=[{"role": "user", "content": "hi"}])
    assert raw.headers["x-mock-path"] == "/v1beta/openai/chat/completions"
    m = raw.parse()
    assert m.content[0].text.startswith("Sure")
    rec = client.record(raw.headers["x-tollgate-request-id"])
    assert rec["provider"] == "google" and rec["usage"]["output_tokens"] == m.usage.output_tokens


def test_openai_sdk_embeddings_reach_gemini(stack, client):
    oai = openai.OpenAI(base_url=stack.url + "/v1", api_key=SEARCH_KEY, max_retries=0)
    raw = oai.embeddings.with_raw_response.create(model="google/gemini-embedding-001", input=["a b c d", "e f g h"])
    assert raw.headers["x-mock-path"] == "/v1beta/openai/embeddings"
    r = raw.parse()
    rec = client.record(raw.headers["x-tollgate-request-id"])
    assert rec["api"] == "openai_embeddings" and rec["provider"] == "google"
    assert rec["cost_micros"] == -(-r.usage.prompt_tokens * 150_000 // 1_000_000)


def test_a_key_in_the_query_authenticates_and_never_reaches_the_provider(stack, client):
    path = NATIVE.replace(":generateContent", ":streamGenerateContent") + f"?alt=sse&key={SEARCH_KEY}"
    r = requests.post(stack.url + path, data=json.dumps(BODY), headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["x-mock-path"] == NATIVE.replace(":generateContent", ":streamGenerateContent") + "?alt=sse"
    assert SEARCH_KEY not in r.text


EXCHANGES = json.loads((Path(__file__).resolve().parents[1] / "captures" / "gemini_exchanges.json").read_text())


@pytest.mark.parametrize("ex", EXCHANGES, ids=[f"{e['case']}-{e['stage']}" for e in EXCHANGES])
def test_a_recorded_gemini_request_is_served_by_the_mock_and_through_tollgate(stack, client, ex):
    """89 requests the Gemini API answered 200 (braintrustdata/lingua, tests/captures/README.md):
    thinking levels and budgets, tools with thought signatures handed back, code execution,
    Google Search, URL context, JSON schemas, images, audio, speech."""
    path = f"/v1beta/models/{ex['model']}:generateContent"
    mock = requests.post(stack.mock.url + path, json=ex["request"], timeout=30, headers={"x-goog-api-key": "mock-gemini-key"})
    assert mock.status_code == 200, mock.text
    r = native(stack, path=path, body=ex["request"])
    assert r.status_code == 200, r.text
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert rec["outcome"] == "ok" and rec["usage_source"] == "provider" and rec["model_upstream"] == ex["model"], rec
    assert rec["usage"]["input_tokens"] == r.json()["usageMetadata"]["promptTokenCount"]


def test_a_long_prompt_is_priced_at_the_long_context_band(stack, client):
    """Gemini 2.5 Pro bills a prompt over 200K tokens at $2.50 / $15 instead
    of $1.25 / $10 per million, the whole request (ai.google.dev/pricing);
    the demo pricing says so in `long_context`. Before, every prompt was
    priced at the short band: a long one cost twice what its budget counted.
    Just under and just over the threshold, JSON and stream."""
    path = "/v1beta/models/gemini-2.5-pro:generateContent"
    short_band, long_band = (1_250_000, 125_000, 10_000_000), (2_500_000, 250_000, 15_000_000)
    for words, band in ((150_000, short_band), (210_000, long_band)):
        # The mock counts a token per 4 bytes of text.
        body = {"contents": [{"role": "user", "parts": [{"text": "abc " * words}]}]}
        for stream in (False, True):
            p = path.replace(":generateContent", ":streamGenerateContent?alt=sse") if stream else path
            r = native(stack, path=p, body=body, headers={"x-mock-output-tokens": "20"})
            assert r.status_code == 200, r.text[:300]
            rec = client.record(r.headers["x-tollgate-request-id"])
            u = rec["usage"]
            assert (u["input_tokens"] > 200_000) == (band == long_band), u
            cached = u["cached_input_tokens"]
            want = -(-((u["input_tokens"] - cached) * band[0] + cached * band[1] + u["output_tokens"] * band[2]) // 1_000_000)
            assert rec["cost_micros"] == want, (words, stream, rec["cost_micros"], want)


def test_a_gemini_tier_is_charged_at_its_price_and_a_downgrade_at_standard(stack, client):
    """Gemini prices Priority at 1.75-2x and Flex at 0.5x, asked for by
    `serviceTier` (or its proto name) in the request body
    (ai.google.dev/gemini-api/docs/priority-inference, flex-inference).
    Before, Gemini's tier was not read: a Priority request counted half its
    bill. Priority over its limit is served standard and says so in
    `x-gemini-service-tier`: billed standard, charged standard."""
    def cost_of(r):
        assert r.status_code == 200, r.text[:300]
        rec = client.record(r.headers["x-tollgate-request-id"])
        u = rec["usage"]
        return rec, u, expected_cost(PRICE, u["input_tokens"], u["output_tokens"], cached=u["cached_input_tokens"], percent=200)

    stream_path = NATIVE.replace(":generateContent", ":streamGenerateContent?alt=sse")
    for path in (NATIVE, stream_path):
        for name in ("serviceTier", "service_tier"):
            r = native(stack, path=path, body={**BODY, name: "priority"})
            assert r.headers["x-gemini-service-tier"] == "priority"
            rec, u, want = cost_of(r)
            assert (rec["cost_micros"], rec.get("service_tier")) == (want, "priority"), (path, name, rec)
        # over the Priority limit: served and billed standard
        r = native(stack, path=path, body={**BODY, "serviceTier": "priority"}, headers={"x-mock-served-tier": "standard"})
        rec, u, _ = cost_of(r)
        assert rec["cost_micros"] == expected_cost(PRICE, u["input_tokens"], u["output_tokens"], cached=u["cached_input_tokens"])
        assert rec.get("service_tier") is None, rec
    # Flex at flex_percent (unset: 100, never less than billed).
    rec, u, _ = cost_of(native(stack, body={**BODY, "serviceTier": "flex"}))
    assert (rec["cost_micros"], rec.get("service_tier")) == (expected_cost(PRICE, u["input_tokens"], u["output_tokens"], cached=u["cached_input_tokens"]), "flex")
    # Vertex AI asks its Priority PayGo with a header, which goes to the provider: priced the same.
    rec, u, want = cost_of(native(stack, headers={"x-vertex-ai-llm-shared-request-type": "priority"}))
    assert (rec["cost_micros"], rec.get("service_tier")) == (want, "priority"), rec
    for value in ("dedicated", "PRIORITY"):
        r = native(stack, headers={"x-vertex-ai-llm-shared-request-type": value})
        assert r.status_code == 400 and r.json()["error"]["code"] == "unsupported_value" and "x-mock-path" not in r.headers, r.text
    # A value with no known price, or the field under both names: refused before anything is sent.
    for body, code in (({**BODY, "serviceTier": "turbo"}, "unsupported_value"),
                       ({**BODY, "serviceTier": "flex", "service_tier": "priority"}, "duplicate_key")):
        r = native(stack, body=body)
        assert r.status_code == 400 and r.json()["error"]["code"] == code and "x-mock-path" not in r.headers, r.text


def test_grounding_searches_are_priced_in_json_and_stream(stack, client):
    """Grounding with Google Search is billed apart from tokens (Gemini 2.5:
    $35 per 1,000 grounded prompts; Gemini 3: $14 per 1,000 queries). The
    answer names the queries it ran (`groundingMetadata.webSearchQueries`);
    before, they were not read and the fee counted nothing. Distinct
    non-empty queries are counted, as Google bills them (the mock adds an
    empty one and a repeat), at the model's `web_search_per_1k` (the demo:
    Gemini 3 Flash $14 per 1,000 queries; Gemini 2.5 Flash $35 per 1,000
    grounded prompts, `web_search_unit: "prompt"`, one an answer however
    many queries it ran: before, three queries counted three fees)."""
    body = {**BODY, "tools": [{"google_search": {}}]}
    for model, price, searches, fee in (("gemini-3-flash-preview", "google/gemini-3-flash-preview", 3, 14_000),
                                        ("gemini-2.5-flash", PRICE, 1, 35_000)):
        for path in (NATIVE, NATIVE.replace(":generateContent", ":streamGenerateContent?alt=sse")):
            path = path.replace("gemini-2.5-flash", model)
            r = native(stack, path=path, body=body, headers={"x-mock-web-searches": "3"})
            assert r.status_code == 200, r.text[:300]
            assert r.text.count("webSearchQueries") >= 1
            rec = client.record(r.headers["x-tollgate-request-id"])
            u = rec["usage"]
            assert u["web_search_requests"] == searches, (model, u)
            tokens = expected_cost(price, u["input_tokens"], u["output_tokens"], cached=u["cached_input_tokens"])
            assert rec["cost_micros"] == tokens + searches * fee, (path, rec["cost_micros"], tokens)
    # Without the tool the mock grounds nothing and nothing is added.
    r = native(stack, headers={"x-mock-web-searches": "3"})
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert rec["usage"]["web_search_requests"] == 0


def test_an_image_answer_past_the_event_and_body_limits_is_priced_from_its_usage(stack, client):
    """Gemini's image models answer an image as base64 (`inlineData`, about
    2 MB for a 1024x1024 PNG) with the usage after it: in a stream, in the
    same last event. An event past the 1 MiB the gateway reads, or a body
    past `max_response_bytes` (8 MiB), was charged an estimate from its
    bytes: the base64 counted as output tokens, hundreds of times the 1,290
    an image bills. Their ends are read now, as a large body's always were
    (and a Gemini body's usage is found by its own name, `usageMetadata`).
    The mock refuses images from a model that does not draw them, as Gemini does.
    The image's tokens (the `IMAGE` entry of `candidatesTokensDetails`) are
    priced at the model's `image_output` ($30 a million against $2.50 for its
    text); before, every output token was priced at one rate."""
    body = {**BODY, "generationConfig": {"responseModalities": ["TEXT", "IMAGE"]}}
    refused = native(stack, body=body)
    assert refused.status_code == 400 and "response modalities" in refused.text, refused.text
    path = NATIVE.replace("gemini-2.5-flash", "gemini-2.5-flash-image")
    for p, size in ((path.replace(":generateContent", ":streamGenerateContent?alt=sse"), 6_000_000), (path, 9_000_000)):
        r = native(stack, path=p, body=body, headers={"x-mock-image-bytes": str(size)})
        assert r.status_code == 200, r.text[:300]
        assert len(r.content) > size
        rec = client.record(r.headers["x-tollgate-request-id"])
        u = rec["usage"]
        assert rec["usage_source"] == "provider", rec
        assert u["output_tokens"] == 12 + 1290 and u["image_output_tokens"] == 1290, (p, u)
        # the image at the image rate ($30 a million), the text at the text rate ($2.50)
        want = expected_cost("google/gemini-2.5-flash-image", u["input_tokens"], u["output_tokens"], image=1290)
        assert rec["cost_micros"] == want, rec
        # Past max_response_bytes the headers went on before the usage came:
        # no cost header is promised, the record carries the price.
        assert "x-tollgate-cost-micros" not in r.headers
        assert want > expected_cost("google/gemini-2.5-flash-image", u["input_tokens"], u["output_tokens"]) * 5


def test_the_google_genai_sdk_generates_streams_and_counts_through_tollgate(stack, client):
    """Google's own SDK (google-genai), pointed at the gateway with a virtual
    key: generate, stream, chat, and count tokens. It counts (and embeds) on
    `/v1/models/{model}:countTokens`, which the gateway took for `GET
    /v1/models/{id}` and answered 405 "Use GET /v1/models."; counting is
    now served like Anthropic's (free, routed to the model's Gemini
    provider, nothing added, no record); its embeddings have a test of their
    own below."""
    from google import genai
    from google.genai import errors, types
    g = genai.Client(api_key=SEARCH_KEY, http_options=types.HttpOptions(base_url=stack.url))
    before = len(client.records())
    r = g.models.generate_content(model="gemini-2.5-flash", contents="Say hi",
                                  config=types.GenerateContentConfig(max_output_tokens=50, system_instruction="Be terse."))
    assert r.text and r.usage_metadata.prompt_token_count > 0
    chunks = list(g.models.generate_content_stream(model="gemini-2.5-flash", contents="Say hi"))
    assert chunks[-1].usage_metadata.candidates_token_count > 0
    assert g.chats.create(model="gemini-2.5-flash").send_message("hi").text
    counted = g.models.count_tokens(model="gemini-2.5-flash", contents="Say hi to everyone here")
    assert counted.total_tokens > 0
    sent = requests.get(stack.mock.url + "/mock/last-body", timeout=5).json()
    assert sent == {"contents": [{"parts": [{"text": "Say hi to everyone here"}], "role": "user"}]}, "nothing added to a count"
    deadline = time.monotonic() + 5
    while len(client.records()) < before + 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    records = client.records()[before:]
    assert len(records) == 3 and all(rec["api"] == "gemini_generate_content" for rec in records), "three generations recorded, the count not"
    # A count keyed by Google's `?key=` convention too; the key never goes upstream.
    r = requests.post(stack.url + f"/v1beta/models/gemini-2.5-flash:countTokens?key={SEARCH_KEY}", timeout=10,
                      json={"contents": [{"parts": [{"text": "hi"}]}]})
    assert r.status_code == 200 and r.json()["totalTokens"] > 0, r.text
    assert r.headers["x-mock-path"] == "/v1beta/models/gemini-2.5-flash:countTokens"


def test_a_count_of_a_whole_request_is_served_for_the_upstream_model(stack):
    """`:countTokens` also takes a whole `generateContentRequest` (to count
    a system instruction and tools as generation would): what Google's
    legacy SDKs always send (@google/generative-ai's `countTokens`; its
    Node scenario is in test_node_clients.py) and Google's reference
    documents (ai.google.dev/api/tokens). It was refused 400
    `missing_contents`. The model it names (required by the API) is written
    as the route's upstream model, under either spelling of the member; a
    body with both forms, or naming its model twice, is refused before
    anything is sent."""
    count = lambda body: native(stack, path="/v1beta/models/gemini-2.5-flash:countTokens", body=body)
    whole = {"model": "models/gemini-3-pro-preview", "contents": [{"role": "user", "parts": [{"text": "How many tokens?"}]}],
             "systemInstruction": {"parts": [{"text": "Be terse."}]}, "generationConfig": {"maxOutputTokens": 50}}
    for member in ("generateContentRequest", "generate_content_request"):
        r = count({member: whole})
        assert r.status_code == 200 and r.json()["totalTokens"] > 0, r.text
        sent = requests.get(stack.mock.url + "/mock/last-body", timeout=5).json()
        assert sent == {member: {**whole, "model": "models/gemini-2.5-flash"}}, sent
    served = requests.get(stack.mock.url + "/mock/stats", timeout=5).json()["requests"]
    for body, code in (({"contents": whole["contents"], "generateContentRequest": whole}, "invalid_request"),
                       ({"generateContentRequest": whole, "generate_content_request": whole}, "duplicate_key"),
                       ({"generateContentRequest": [whole]}, "invalid_type"),
                       ({"model": "models/gemini-2.5-flash"}, "missing_contents")):
        r = count(body)
        assert r.status_code == 400 and r.json()["error"]["code"] == code, (body.keys(), r.text)
    raw = '{"generateContentRequest":{"model":"models/a","m\\u006fdel":"models/b","contents":[]}}'
    r = requests.post(stack.url + "/v1beta/models/gemini-2.5-flash:countTokens", data=raw, timeout=10,
                      headers={"content-type": "application/json", "x-goog-api-key": SEARCH_KEY})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request", r.text
    assert requests.get(stack.mock.url + "/mock/stats", timeout=5).json()["requests"] == served, "nothing reached the provider"
    # It cannot be generated from: generation takes contents.
    r = native(stack, body={"generateContentRequest": whole})
    assert r.status_code == 400 and r.json()["error"]["code"] == "missing_contents", r.text


EMBED = "google/gemini-embedding-001"


def test_the_google_genai_sdk_embeds_natively_priced_from_geminis_usage(stack, client):
    """google-genai's `embed_content` (POST /v1beta/models/{model}:batchEmbedContents,
    each request naming the model) was refused 404 "not routed": a RAG
    pipeline on Google's SDK could not go through the gateway. It is served
    like OpenAI's embeddings: routed to the model's Gemini provider, priced
    at the input price from the answer's `usageMetadata.promptTokenCount`,
    recorded as `gemini_embed_content`; every `model` in the body becomes the
    upstream one, so the model priced is the model run."""
    from google import genai
    from google.genai import types
    g = genai.Client(api_key=SEARCH_KEY, http_options=types.HttpOptions(base_url=stack.url))
    texts = ["What is the meaning of life?", "How does the brain work?", "How much wood would a woodchuck chuck?"]
    r = g.models.embed_content(model="gemini-embedding-001", contents=texts,
                               config=types.EmbedContentConfig(task_type="RETRIEVAL_DOCUMENT", output_dimensionality=8))
    assert [len(e.values) for e in r.embeddings] == [8, 8, 8]
    sent = requests.get(stack.mock.url + "/mock/last-body", timeout=5).json()
    assert [q["model"] for q in sent["requests"]] == ["models/gemini-embedding-001"] * 3
    assert [q["taskType"] for q in sent["requests"]] == ["RETRIEVAL_DOCUMENT"] * 3, "the client's fields go as sent"
    rid = r.sdk_http_response.headers["x-tollgate-request-id"]
    rec = client.record(rid)
    tokens = rec["usage"]["input_tokens"]
    assert tokens > 0 and rec["usage"]["output_tokens"] == 0 and rec["usage_source"] == "provider", rec
    assert (rec["api"], rec["provider"], rec["model_upstream"], rec["stream"]) == ("gemini_embed_content", "google", "gemini-embedding-001", False)
    assert rec["cost_micros"] == expected_cost(EMBED, tokens, 0) and rec["priced"] is True
    # One content on :embedContent with Google's `?key=`: priced in the answer's headers.
    r = requests.post(stack.url + f"/v1beta/models/gemini-embedding-001:embedContent?key={SEARCH_KEY}", timeout=10,
                      json={"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "Say hi to everyone here"}]}})
    assert r.status_code == 200 and len(r.json()["embedding"]["values"]) == 3072, r.text
    assert r.headers["x-mock-path"] == "/v1beta/models/gemini-embedding-001:embedContent"
    n = r.json()["usageMetadata"]["promptTokenCount"]
    assert int(r.headers["x-tollgate-cost-micros"]) == expected_cost(EMBED, n, 0) > 0
    # A batch whose requests name a dearer model runs (and is priced as) the path's.
    body = {"requests": [{"model": "models/gemini-2.5-flash", "content": {"parts": [{"text": "x " * 400}]}}]}
    r = native(stack, path="/v1beta/models/gemini-embedding-001:batchEmbedContents", body=body)
    assert r.status_code == 200, r.text
    assert requests.get(stack.mock.url + "/mock/last-body", timeout=5).json()["requests"][0]["model"] == "models/gemini-embedding-001"
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert rec["model_upstream"] == "gemini-embedding-001" and rec["cost_micros"] == expected_cost(EMBED, r.json()["usageMetadata"]["promptTokenCount"], 0)


def test_a_gemini_embedding_without_usage_is_estimated_and_what_cannot_be_held_is_refused(stack, client):
    """An answer without `usageMetadata` is charged its input estimated from
    the request (never free); a batch over Google's 100, a body without what
    its method embeds, a key held to other models, or a model of another
    format are refused before anything is sent."""
    path = "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    item = {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "Tollgate " * 100}]}}
    r = native(stack, path=path, body={"requests": [item]}, headers={"x-mock-embed-usage": "none"})
    assert r.status_code == 200 and "usageMetadata" not in r.json(), r.text
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert (rec["usage_source"], rec["error_code"]) == ("estimated", "usage_missing"), rec
    assert rec["usage"]["input_tokens"] > 200 and rec["cost_micros"] == expected_cost(EMBED, rec["usage"]["input_tokens"], 0) > 0
    seen = lambda: (requests.get(stack.mock.url + "/mock/stats", timeout=5).json()["requests"],
                    requests.get(stack.mock.url + "/mock/last-body", timeout=5).text)
    before = seen()
    refusals = [
        (path, {"requests": [item] * 101}, SEARCH_KEY, 400, "invalid_request"),
        (path, {"content": item["content"]}, SEARCH_KEY, 400, "missing_requests"),
        (path.replace("batchEmbedContents", "embedContent"), {"requests": [item]}, SEARCH_KEY, 400, "missing_content"),
        (path, {"requests": [{"model": item["model"], "contents": [item["content"]]}]}, SEARCH_KEY, 400, "invalid_request"),
        (path, {"requests": [item]}, RESTRICTED_KEY, 403, "model_not_allowed"),
        ("/v1beta/models/text-embedding-3-small:embedContent", {"content": item["content"]}, SEARCH_KEY, 400, "wrong_api_for_model"),
    ]
    for p, body, key, status, code in refusals:
        r = native(stack, path=p, body=body, key=key)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), (p, r.text)
    assert seen() == before, "nothing reached the provider"


def test_a_native_gemini_requests_fallback_goes_to_the_fallbacks_model(stack, tmp_path):
    """A route's fallbacks for a native Gemini request were planned for the
    model the path names, the one that had just failed: the "alternative"
    was the same model again, and the record said otherwise. The fallback's
    own model is asked now (a Gemini one: a native request cannot go to
    another format), and the answer is priced as its."""
    def patch(c):
        c["routes"][:0] = [{"model": "gem-first", "provider": "google", "upstream_model": "gemini-2.5-flash", "fallbacks": ["gem-lite"]},
                           {"model": "gem-lite", "provider": "google", "upstream_model": "gemini-2.5-flash-lite"}]
        c["pricing"]["google/gemini-2.5-flash-lite"] = {"input": 100_000, "output": 400_000}
    cfg = sm.demo_config(sm.free_port(), sm.free_port(), stack.mock.port, plugin_patch=patch, control_port=stack.control.port)
    e = sm.Envoy(cfg, tmp_path, concurrency=1, name="gemfallback")
    try:
        for method in ("generateContent", "streamGenerateContent?alt=sse"):
            r = requests.post(e.url + f"/v1beta/models/gem-first:{method}", data=json.dumps(BODY), timeout=30,
                              headers={"content-type": "application/json", "x-goog-api-key": SEARCH_KEY, "x-mock-status": "500"})
            assert r.status_code == 200 and r.headers["x-tollgate-fallback-attempts"] == "1", (r.status_code, r.text[:300])
            assert r.headers["x-tollgate-model"] == "gemini-2.5-flash-lite", r.headers
            time.sleep(0.3)
            rec = [x for x in e.usage_records() if x["id"] == r.headers["x-tollgate-request-id"]]
            assert len(rec) == 1, rec
            rec = rec[0]
            assert (rec["model_upstream"], rec["route"]) == ("gemini-2.5-flash-lite", "gem-lite"), rec
            assert [(a["model"], a["status"]) for a in rec["attempts"]] == [("gemini-2.5-flash", 500)], rec
            u = rec["usage"]
            assert rec["cost_micros"] == -(-(u["input_tokens"] * 100_000 + u["output_tokens"] * 400_000) // 1_000_000) > 0, rec
    finally:
        e.stop()


def test_the_google_genai_sdk_lists_and_gets_models_in_geminis_shape(stack):
    """google-genai's `models.list()` and `models.get()` (GET /v1beta/models,
    /v1beta/models/{id}) were 404 "not routed": the gateway answers them
    from its route table in Gemini's `Model` shape, with only the models a
    Gemini client can generate on. The demo routes Gemini by wildcard
    (`google/*`, `gemini-*`): its exactly priced models are what is listed."""
    from google import genai
    from google.genai import errors, types
    g = genai.Client(api_key=SEARCH_KEY, http_options=types.HttpOptions(base_url=stack.url))
    listed = list(g.models.list())
    names = [m.name for m in listed]
    assert "models/gemini-2.5-flash" in names and "models/gemini-2.5-pro" in names, names
    assert not any("gpt" in n or "claude" in n or n.startswith("models/google/") for n in names), names
    assert len(names) == len(set(names))
    assert "models/gemini-embedding-001" not in names, "priced with no output: no generateContent to list"
    flash = next(m for m in listed if m.name == "models/gemini-2.5-flash")
    assert "generateContent" in flash.supported_actions
    # The name a listed model has is one the client can generate on.
    r = g.models.generate_content(model=flash.name, contents="Say hi", config=types.GenerateContentConfig(max_output_tokens=20))
    assert r.text
    # One model: a wildcard route's too; never one a Gemini client cannot use.
    m = g.models.get(model="gemini-3-flash-preview")
    assert (m.name, m.display_name) == ("models/gemini-3-flash-preview", "gemini-3-flash-preview")
    with pytest.raises(errors.ClientError) as e:
        g.models.get(model="gpt-5.4")
    assert e.value.code == 404
    # The REST convention `?key=` on the list, as on every native call; no key, 401.
    r = requests.get(stack.url + f"/v1beta/models?pageSize=50&key={SEARCH_KEY}", timeout=5)
    assert r.status_code == 200 and {"name": "models/gemini-2.5-flash", "baseModelId": "gemini-2.5-flash",
                                     "displayName": "gemini-2.5-flash",
                                     "supportedGenerationMethods": ["generateContent", "countTokens"]} in r.json()["models"], r.text
    assert requests.get(stack.url + "/v1beta/models", timeout=5).status_code == 401
    # Answered by the gateway or refused by it, a `?key=` never reaches the
    # access log (it logs the path: the key was logged before).
    refused = requests.post(stack.url + f"/v1beta/models/gpt-5.4:generateContent?key={SEARCH_KEY}", timeout=5,
                            json={"contents": [{"parts": [{"text": "hi"}]}]})
    assert refused.status_code == 400, refused.text
    time.sleep(0.3)
    log = stack.envoy.log() + stack.access_log.read_text()
    assert "/v1beta/models?pageSize=50" in log and "gpt-5.4:generateContent" in log and SEARCH_KEY not in log
    # google-genai with api_version="v1" lists on /v1/models: Gemini's shape for its Google-style key.
    v1 = genai.Client(api_key=SEARCH_KEY, http_options=types.HttpOptions(base_url=stack.url, api_version="v1"))
    assert "models/gemini-2.5-flash" in [m.name for m in v1.models.list()]
