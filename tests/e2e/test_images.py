"""OpenAI's image generations (`POST /v1/images/generations`) through Envoy.

An image is the dearest thing most applications buy per call (GPT Image
1.5: $0.009 to $0.20 an image, $32 a million image output tokens), and the
gateway refused the endpoint (404 "not routed"; with `other_paths: pass` the
virtual key went to OpenAI unchanged and nothing was counted). Served now:
the key and its models, priced from the answer's usage (its image output
tokens at `image_output`), reserved by the images asked for (`n` × the
tokens of their quality and size, 100 more per partial image of a stream),
recorded as `api: openai_images`. The stock SDK's `images.generate` is the
client. The mock answers as openai-python's types say (tests/mock-provider/src/images.rs
cites them) and, with `x-mock-image-bytes`, with images the size of real ones."""
from __future__ import annotations

import json

import openai
import pytest
import requests

from conftest import LABS_KEY, RESTRICTED_KEY, SEARCH_KEY, expected_cost

MODEL = "gpt-image-1.5"


def mock_requests(client) -> int:
    return requests.get(client.stack.mock.url + "/mock/stats", timeout=5).json()["requests"]


def image_cost(usage: dict, model: str = MODEL) -> int:
    details = usage.get("output_tokens_details") or {}
    return expected_cost(f"openai/{model}", usage["input_tokens"], usage["output_tokens"],
                         image=details.get("image_tokens", usage["output_tokens"]))


def test_the_stock_sdk_generates_images_priced_from_their_usage(oai, client):
    raw = oai.images.with_raw_response.generate(model=MODEL, prompt="A sea otter reading a ledger", n=2, size="1024x1536", quality="medium")
    r = raw.parse()
    assert len(r.data) == 2 and r.data[0].b64_json.startswith("iVBORw0KGgo"), "two PNGs"
    assert (r.usage.output_tokens, r.size, r.quality) == (2 * 1584, "1024x1536", "medium")
    assert (raw.headers["x-mock-path"], raw.headers["x-mock-auth"]) == ("/v1/images/generations", "Bearer sk-mock-openai")
    usage = r.usage.model_dump()
    cost = image_cost(usage)
    assert cost == -(-(usage["input_tokens"] * 5_000_000 + 3168 * 32_000_000) // 1_000_000) > 100_000, "image tokens at $32 a million"
    assert int(raw.headers["x-tollgate-cost-micros"]) == cost
    assert raw.headers["x-tollgate-output-tokens"] == "3168"
    rec = client.record(raw.headers["x-tollgate-request-id"])
    assert (rec["api"], rec["provider"], rec["model_upstream"], rec["outcome"], rec["usage_source"]) == ("openai_images", "openai", MODEL, "ok", "provider")
    assert (rec["usage"]["output_tokens"], rec["usage"]["image_output_tokens"], rec["cost_micros"], rec["stream"]) == (3168, 3168, cost, False)
    # The body went up as the client sent it: nothing added (no output cap: an image has none).
    sent = requests.get(client.stack.mock.url + "/mock/last-body", timeout=5).json()
    assert sent == {"model": MODEL, "prompt": "A sea otter reading a ledger", "n": 2, "size": "1024x1536", "quality": "medium"}


def test_a_streamed_generation_counts_every_completed_image(oai, client):
    # The stock SDK's stream: partial images, then the image.
    events = list(oai.images.generate(model="gpt-image-1-mini", prompt="An otter", stream=True, partial_images=2, quality="low", size="1024x1024"))
    assert [e.type for e in events] == ["image_generation.partial_image"] * 2 + ["image_generation.completed"]
    assert events[-1].usage.output_tokens == 272 + 200, "each partial image 100 tokens more"
    # Two images, each its own completed event: both counted.
    r = client.post("/v1/images/generations", {"model": MODEL, "prompt": "An otter", "stream": True, "n": 2, "quality": "low", "size": "1024x1024"}, stream=True)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    done = [json.loads(line[6:]) for line in r.iter_lines(decode_unicode=True) if line.startswith("data: ") and "completed" in line]
    assert len(done) == 2
    rec = client.record(r.headers["x-tollgate-request-id"])
    want_in = sum(d["usage"]["input_tokens"] for d in done)
    assert (rec["stream"], rec["usage_source"], rec["usage"]["output_tokens"], rec["usage"]["input_tokens"]) == (True, "provider", 2 * 272, want_in)
    assert rec["cost_micros"] == expected_cost(f"openai/{MODEL}", want_in, 544, image=544)


@pytest.mark.parametrize("size", [3 << 20, 10 << 20])
def test_images_the_size_of_real_ones_are_priced_from_their_usage(client, size):
    """A real 1536×1024 PNG is 2 to 3 MB of base64; ten of them pass the
    8 MiB the gateway holds (`max_response_bytes`): the usage is read from
    the answer's tail. A stream's image event passes the 1 MiB an event is
    read whole: its usage is read from its end."""
    body = {"model": MODEL, "prompt": "An otter", "quality": "low", "size": "1024x1024"}
    r = client.post("/v1/images/generations", body, headers={"x-mock-image-bytes": str(size)})
    assert r.status_code == 200 and len(r.content) > size
    usage = r.json()["usage"]
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert (rec["usage_source"], rec["usage"]["output_tokens"], rec["cost_micros"]) == ("provider", 272, image_cost(usage)), rec
    assert rec["error_code"] == (None if size < 8 << 20 else "usage_from_tail:response_too_large"), rec
    r = client.post("/v1/images/generations", {**body, "stream": True, "partial_images": 1}, headers={"x-mock-image-bytes": str(size)}, stream=True)
    assert r.status_code == 200 and len(r.content) > 2 * size
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert (rec["usage_source"], rec["outcome"], rec["usage"]["output_tokens"], rec["usage"]["image_output_tokens"]) == ("provider", "ok", 372, 372), rec


def test_an_azure_client_generates_on_its_deployment(stack, client):
    azure = openai.AzureOpenAI(azure_endpoint=stack.url, api_key=SEARCH_KEY, api_version="2025-04-01-preview", max_retries=0)
    raw = azure.images.with_raw_response.generate(model=MODEL, prompt="An otter", quality="low", size="1024x1024")
    assert raw.parse().usage.output_tokens == 272
    assert (raw.headers["x-mock-path"], raw.headers["x-mock-api-key"]) == ("/v1/images/generations", "")
    assert client.record(raw.headers["x-tollgate-request-id"])["api"] == "openai_images"


def test_what_cannot_be_generated_is_refused_before_it_is_sent(client):
    served = mock_requests(client)
    gen = lambda body, **kw: client.post("/v1/images/generations", body, **kw)
    cases = [
        ({"prompt": "x"}, 400, "missing_model"),  # OpenAI's default is DALL·E 2, retired
        ({"model": MODEL}, 400, "missing_prompt"),
        ({"model": MODEL, "prompt": "x", "n": 11}, 400, "invalid_type"),
        ({"model": MODEL, "prompt": "x", "size": "99999x1"}, 400, "invalid_value"),
        ({"model": MODEL, "prompt": "x", "quality": "ultra"}, 400, "invalid_value"),
        ({"model": MODEL, "prompt": "x", "partial_images": 9, "stream": True}, 400, "invalid_type"),
        ({"model": "claude-sonnet-4-6", "prompt": "x"}, 400, "wrong_api_for_model"),
        ({"model": "dall-e-3", "prompt": "x"}, 400, "model_not_found"),  # not routed here
    ]
    for body, status, code in cases:
        r = gen(body)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), (body, r.text)
    r = gen({"model": MODEL, "prompt": "x"}, key=RESTRICTED_KEY)
    assert r.status_code == 403 and r.json()["error"]["code"] == "model_not_allowed"
    assert gen({"model": MODEL, "prompt": "x"}, key=None).status_code == 401
    # The guardrails read the prompt: team labs' codename never leaves.
    r = gen({"model": MODEL, "prompt": "A poster for Project Bluebird"}, key=LABS_KEY)
    assert r.status_code == 400 and r.json()["error"]["code"] == "content_blocked", r.text
    assert client.record(r.headers["x-tollgate-request-id"])["api"] == "openai_images"
    assert mock_requests(client) == served, "nothing reached the provider"
    # What the provider refuses costs nothing.
    r = gen({"model": MODEL, "prompt": "x", "style": "vivid"})
    assert r.status_code == 400 and "style" in r.text
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert (rec["outcome"], rec["cost_micros"]) == ("provider_error", 0)


CAPTURES = __import__("pathlib").Path(__file__).resolve().parents[1] / "captures"


@pytest.mark.parametrize("chunk", [1, 7, 100_000])
@pytest.mark.parametrize("capture,stream", [("openai_image_generation.json", False), ("openai_image_stream.sse", True)])
def test_answers_in_the_apis_documented_shape_are_counted_exactly(client, capture, stream, chunk):
    """tests/captures: OpenAI's API reference examples for an image answer and
    an image stream (GPT Image 1: 50 input tokens, 40 of them an image's,
    50 output, no output details), replayed in pieces, priced as GPT Image
    1.5: text in at $5, image in at $8, image out at $32 a million."""
    body = {"model": MODEL, "prompt": "replay", **({"stream": True} if stream else {})}
    r = client.post("/v1/images/generations", body, headers={"x-mock-replay": capture, "x-mock-chunk-bytes": str(chunk)}, stream=stream)
    assert r.status_code == 200 and r.content == (CAPTURES / capture).read_bytes(), "passed byte for byte"
    rec = client.record(r.headers["x-tollgate-request-id"])
    u = rec["usage"]
    assert (u["input_tokens"], u["image_input_tokens"], u["output_tokens"], u["image_output_tokens"]) == (50, 40, 50, 50), rec
    # 10 text tokens at $5, 40 image tokens at $8, 50 image tokens out at $32
    assert expected_cost(f"openai/{MODEL}", 50, 50, image=50, image_input=40) == 50 + 320 + 1600
    assert (rec["cost_micros"], rec["usage_source"], rec["outcome"]) == (1970, "provider", "ok"), rec


def test_the_mocks_answers_have_the_documented_shape(client):
    real = json.loads((CAPTURES / "openai_image_generation.json").read_text())
    # (The recordings are GPT Image 1's, shut down since: 1 Mini answers in their shape, no output details.)
    mock = client.post("/v1/images/generations", {"model": "gpt-image-1-mini", "prompt": "shape"}).json()
    shape = lambda v: {k: shape(x) for k, x in v.items()} if isinstance(v, dict) else [shape(v[0])] if isinstance(v, list) and v else type(v).__name__
    assert not [k for k in shape(real) if k not in shape(mock)] and shape(real)["usage"] == shape(mock)["usage"], (shape(real), shape(mock))
    assert shape(real)["data"] == shape(mock)["data"]
    events = [line for line in (CAPTURES / "openai_image_stream.sse").read_text().splitlines() if line.startswith("data: ")]
    real_done = json.loads(events[-1][6:])
    r = client.post("/v1/images/generations", {"model": "gpt-image-1-mini", "prompt": "shape", "stream": True, "partial_images": 1}, stream=True)
    mock_done = [json.loads(line[6:]) for line in r.iter_lines(decode_unicode=True) if line.startswith("data: ")][-1]
    assert set(real_done) <= set(mock_done) and shape(real_done["usage"]) == shape(mock_done["usage"]), (real_done.keys(), mock_done.keys())


def test_the_responses_image_generation_tool_is_recorded_under_its_image_model(oai, client):
    """A Responses request offering the image generation tool runs a GPT
    image model inside it, billed at that model's rates and reported apart
    (`tool_usage.image_gen`): before, the gateway counted only the
    request's own tokens, and the images went unpriced. Now the image
    model is routed and priced like an advisor: its own record,
    `<id>-image_generation`, under `gpt-image-2.6-sunburst` (the tool's
    default since `gpt-image-1` was shut down, openai-python 3.57)."""
    tool = {"type": "image_generation", "quality": "low", "size": "1024x1024"}
    raw = oai.responses.with_raw_response.create(model="openai/gpt-5.4", input="Draw an otter", max_output_tokens=50, tools=[tool])
    r = raw.parse()
    assert [o.type for o in r.output] == ["image_generation_call", "message"]
    gen = r.tool_usage.image_gen
    assert (gen.input_tokens, gen.output_tokens) == (20, 272)
    rid = raw.headers["x-tollgate-request-id"]
    main, image = client.record(rid), client.record(f"{rid}-image_generation")
    assert (main["usage"]["output_tokens"], main["model_upstream"]) == (r.usage.output_tokens, "gpt-5.4")
    want = expected_cost("openai/gpt-image-2.6-sunburst", 20, 272, image=272)
    assert (image["model_upstream"], image["routed_by"], image["usage_source"], image["usage"]["image_output_tokens"]) == ("gpt-image-2.6-sunburst", f"image_generation: {rid}", "provider", 272), image
    assert image["cost_micros"] == want == 100 + 8_160
    assert int(raw.headers["x-tollgate-cost-micros"]) == main["cost_micros"] + want, "the client is told both"
    # Streamed, two calls, partial images: the terminal event's tool_usage.
    tool2 = {**tool, "model": "gpt-image-1.5", "partial_images": 1}
    r = client.post("/v1/responses", {"model": "openai/gpt-5.4", "input": "Two otters", "stream": True, "tools": [tool2], "max_output_tokens": 50},
                    headers={"x-mock-image-calls": "2"}, stream=True)
    names = [line[7:] for line in r.iter_lines(decode_unicode=True) if line.startswith("event: ")]
    assert names.count("response.image_generation_call.partial_image") == 2 and names[-1] == "response.completed"
    image = client.record(r.headers["x-tollgate-request-id"] + "-image_generation")
    assert (image["model_upstream"], image["usage"]["output_tokens"]) == ("gpt-image-1.5", 2 * 372)
    assert image["cost_micros"] == expected_cost("openai/gpt-image-1.5", 40, 744, image=744)
    # Editing an earlier image, the call reads it: input image tokens at the image input price ($8, not $5).
    raw = oai.responses.with_raw_response.create(model="openai/gpt-5.4", input="Make it blue", max_output_tokens=50, tools=[tool],
                                                 extra_headers={"x-mock-image-input-tokens": "1000"})
    image = client.record(raw.headers["x-tollgate-request-id"] + "-image_generation")
    assert (image["usage"]["input_tokens"], image["usage"]["image_input_tokens"]) == (1020, 1000), image
    assert image["cost_micros"] == expected_cost("openai/gpt-image-2.6-sunburst", 1020, 272, image=272, image_input=1000) == 100 + 8_000 + 8_160
    # No tool_usage in the answer (the API may leave it out): the image asked for, estimated.
    raw = oai.responses.with_raw_response.create(model="openai/gpt-5.4", input="Draw", max_output_tokens=50, tools=[tool],
                                                 extra_headers={"x-mock-no-tool-usage": "1"})
    image = client.record(raw.headers["x-tollgate-request-id"] + "-image_generation")
    assert (image["usage_source"], image["usage"]["output_tokens"]) == ("estimated", 272), image
    # Held to the key, the route and the price like the request's own model.
    served = mock_requests(client)
    r = client.post("/v1/responses", {"model": "openai/gpt-5.4", "input": "x", "tools": [{"type": "image_generation", "model": "gemini-2.5-flash-image"}]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "tools" and "routes 'gemini-2.5-flash-image' to 'google'" in r.text, r.text
    r = client.post("/v1/responses", {"model": "openai/gpt-5.4", "input": "x", "tools": [{"type": "image_generation", "quality": "ultra"}]})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request", r.text
    assert mock_requests(client) == served
    r = client.post("/v1/responses", {"model": "anthropic/claude-sonnet-4-6", "input": "x", "tools": [tool]})
    assert r.status_code == 400 and r.json()["error"]["code"] == "unsupported_field", r.text
