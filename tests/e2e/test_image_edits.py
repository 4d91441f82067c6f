"""OpenAI's image edits (`POST /v1/images/edits`) through Envoy.

An edit is an image generation that also reads images: billed as one (GPT
Image 1.5: $32 a million image output tokens) plus its input images at the
image input rate ($8 a million). The gateway refused the endpoint (404;
with `other_paths: pass` the virtual key went to OpenAI unchanged, nothing
counted). Every SDK uploads the images as a multipart/form-data body
(openai-python and openai-node `images.edit`, the Vercel AI SDK's
`generateImage` with images in its prompt, curl `-F`); the JSON form names
them by reference (`images: [{"image_url"} | {"file_id"}]`). Served now,
both: the form is read as the JSON it stands for, planned and guarded like
any request, and written back with the files byte for byte; recorded as
`api: openai_image_edits`. The mock reads forms with `multer` (the parser
axum uses), not the filter's own, and refuses what OpenAI refuses
(tests/mock-provider/src/image_edits.rs cites its sources)."""
from __future__ import annotations

import gzip
import json
import struct
import time
import zlib

import openai
import pytest
import requests

import stack as sm
from conftest import LABS_KEY, RESTRICTED_KEY, SEARCH_KEY, expected_cost, sent_form

MODEL = "gpt-image-1.5"
LOW_INPUT = 194  # the mock's input tokens for one image at low fidelity
HIGH_INPUT = 3050


def png(width: int, height: int, noise: bytes = b"") -> bytes:
    """A real RGB PNG (its pixels a pattern, `noise` kept in an ancillary
    chunk so that a file can be made large)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    rows = b"".join(b"\0" + bytes((x * 7 + y * 13) % 256 for x in range(width * 3)) for y in range(height))
    extra = chunk(b"teXt", b"noise\0" + noise) if noise else b""
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + extra + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


OTTER = png(16, 16)
HAT = png(8, 8)


def multipart(fields: list[tuple[str, str]], files: list[tuple[str, bytes]], boundary: str = "tollgate-7c1a") -> tuple[bytes, str]:
    out = b""
    for k, v in fields:
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n'.encode() + v.encode() + b"\r\n"
    for k, data in files:
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"; filename="{k.strip("[]")}.png"\r\nContent-Type: image/png\r\n\r\n'.encode() + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def mock_requests(client) -> int:
    return requests.get(client.stack.mock.url + "/mock/stats", timeout=5).json()["requests"]


def edit_cost(usage: dict, model: str = MODEL) -> int:
    out = (usage.get("output_tokens_details") or {}).get("image_tokens", usage["output_tokens"])
    return expected_cost(f"openai/{model}", usage["input_tokens"], usage["output_tokens"], image=out,
                         image_input=usage["input_tokens_details"]["image_tokens"])


def post_form(client, fields, files, key=SEARCH_KEY, headers=None, **kw):
    body, ctype = multipart(fields, files, **kw)
    return client.post("/v1/images/edits", raw=body, key=key, headers={"content-type": ctype, **(headers or {})})


def test_the_stock_sdk_edits_images_priced_from_their_usage(oai, client):
    raw = oai.images.with_raw_response.edit(model=f"openai/{MODEL}", image=[("otter.png", OTTER, "image/png"), ("hat.png", HAT, "image/png")],
                                            prompt="Put the hat on the otter", n=2, quality="low", size="1024x1024")
    r = raw.parse()
    assert len(r.data) == 2 and r.data[0].b64_json.startswith("iVBORw0KGgo")
    assert raw.headers["x-mock-path"] == "/v1/images/edits" and raw.headers["x-mock-auth"] == "Bearer sk-mock-openai"
    usage = r.usage.model_dump()
    # two images, each billed as a call of its own with both input images
    assert (usage["input_tokens_details"]["image_tokens"], usage["output_tokens"]) == (2 * 2 * LOW_INPUT, 2 * 272)
    cost = edit_cost(usage)
    assert int(raw.headers["x-tollgate-cost-micros"]) == cost
    rec = client.record(raw.headers["x-tollgate-request-id"])
    assert (rec["api"], rec["model_requested"], rec["model_upstream"], rec["outcome"], rec["usage_source"]) == ("openai_image_edits", f"openai/{MODEL}", MODEL, "ok", "provider")
    assert (rec["usage"]["image_input_tokens"], rec["usage"]["image_output_tokens"], rec["cost_micros"]) == (4 * LOW_INPUT, 544, cost), rec
    assert cost == expected_cost(f"openai/{MODEL}", usage["input_tokens"], 544, image=544, image_input=776) > 776 * 8
    # The provider got the form with its model named as routed; the files byte for byte.
    form = sent_form(client)
    assert form["model"] == [MODEL.encode()] and form["prompt"] == [b"Put the hat on the otter"]
    assert form["image[]"] == [OTTER, HAT] and form["n"] == [b"2"]


def test_a_streamed_edit_counts_every_completed_image(oai, client):
    events = list(oai.images.edit(model=MODEL, image=("otter.png", OTTER, "image/png"), prompt="A hat", stream=True, partial_images=1,
                                  quality="low", size="1024x1024", input_fidelity="high"))
    assert [e.type for e in events] == ["image_edit.partial_image", "image_edit.completed"]
    done = events[-1].usage
    assert (done.input_tokens_details.image_tokens, done.output_tokens) == (HIGH_INPUT, 372)
    r = post_form(client, [("model", MODEL), ("prompt", "A hat"), ("stream", "true"), ("n", "2"), ("quality", "low")], [("image", OTTER)])
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    completed = [json.loads(line[6:]) for line in r.iter_lines(decode_unicode=True) if line.startswith("data: ") and "image_edit.completed" in line]
    assert len(completed) == 2
    rec = client.record(r.headers["x-tollgate-request-id"])
    want_in = sum(c["usage"]["input_tokens"] for c in completed)
    assert (rec["stream"], rec["usage_source"], rec["usage"]["input_tokens"], rec["usage"]["image_input_tokens"]) == (True, "provider", want_in, 2 * LOW_INPUT), rec
    assert rec["cost_micros"] == expected_cost(f"openai/{MODEL}", want_in, 544, image=544, image_input=2 * LOW_INPUT)


def test_the_json_form_names_images_by_reference(client):
    data_url = "data:image/png;base64," + __import__("base64").b64encode(OTTER).decode()
    body = {"model": MODEL, "prompt": "A hat", "images": [{"image_url": data_url}, {"file_id": "file-abc123"}], "quality": "low", "size": "1024x1024"}
    r = client.post("/v1/images/edits", body)
    assert r.status_code == 200, r.text
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert (rec["api"], rec["usage"]["image_input_tokens"], rec["cost_micros"]) == ("openai_image_edits", 2 * LOW_INPUT, edit_cost(r.json()["usage"]))
    assert requests.get(client.stack.mock.url + "/mock/last-body", timeout=5).json() == body, "sent as it came"


def test_an_azure_client_edits_on_its_deployment(stack, client):
    azure = openai.AzureOpenAI(azure_endpoint=stack.url, api_key=SEARCH_KEY, api_version="2025-04-01-preview", max_retries=0)
    raw = azure.images.with_raw_response.edit(model=MODEL, image=("otter.png", OTTER, "image/png"), prompt="A hat", quality="low", size="1024x1024")
    assert raw.parse().usage.output_tokens == 272
    assert (raw.headers["x-mock-path"], raw.headers["x-mock-api-key"]) == ("/v1/images/edits", "")
    assert client.record(raw.headers["x-tollgate-request-id"])["api"] == "openai_image_edits"


def test_large_and_compressed_forms_go_on_whole(client):
    big = png(64, 64, noise=bytes(range(256)) * (5 * 4096))  # a 5 MiB PNG
    r = post_form(client, [("model", MODEL), ("prompt", "A hat"), ("quality", "low"), ("size", "1024x1024")], [("image", big), ("mask", HAT)])
    assert r.status_code == 200, r.text
    assert sent_form(client)["image"] == [big]
    # A gzip-compressed form is read, and sent on, decoded.
    body, ctype = multipart([("model", MODEL), ("prompt", "A hat"), ("quality", "low")], [("image", OTTER)])
    r = client.post("/v1/images/edits", raw=gzip.compress(body), headers={"content-type": ctype, "content-encoding": "gzip"})
    assert r.status_code == 200, r.text
    assert sent_form(client)["image"] == [OTTER]
    # Past max_request_bytes (8 MiB): refused as any body is.
    huge = png(8, 8, noise=b"x" * (9 << 20))
    assert post_form(client, [("model", MODEL), ("prompt", "x")], [("image", huge)]).status_code == 413


def test_the_guardrails_read_an_edits_prompt_and_leave_its_images_alone(client):
    r = post_form(client, [("model", MODEL), ("prompt", "Write ops@example.com on the sign"), ("quality", "low")], [("image", OTTER)], key=LABS_KEY)
    assert r.status_code == 200, r.text
    form = sent_form(client)
    assert b"ops@example.com" not in form["prompt"][0] and form["prompt"][0].startswith(b"Write "), form["prompt"]
    assert form["image"] == [OTTER], "the image goes on byte for byte"
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert rec["guardrails"] == {"classes": {"email": 1}, "action": "redacted", "policy": "demo-1"}, rec
    served = mock_requests(client)
    r = post_form(client, [("model", MODEL), ("prompt", "A poster for Project Bluebird")], [("image", OTTER)], key=LABS_KEY)
    assert r.status_code == 400 and r.json()["error"]["code"] == "content_blocked", r.text
    assert mock_requests(client) == served


def test_what_cannot_be_edited_is_refused_before_it_is_sent(client):
    served = mock_requests(client)
    ok_fields = [("model", MODEL), ("prompt", "A hat")]
    cases = [
        (multipart(ok_fields, []), "missing_images"),
        (multipart([("model", MODEL)], [("image", OTTER)]), "missing_prompt"),
        (multipart([("prompt", "x")], [("image", OTTER)]), "missing_model"),
        (multipart(ok_fields, [("image[]", OTTER)] * 17), "invalid_type"),
        (multipart(ok_fields + [("input_fidelity", "max")], [("image", OTTER)]), "invalid_value"),
        (multipart(ok_fields + [("prompt", "again")], [("image", OTTER)]), "duplicate_key"),
        (multipart(ok_fields, [("photo", OTTER)]), "invalid_multipart"),
        (multipart(ok_fields + [("image", "https://example.com/otter.png")], []), "invalid_multipart"),
        ((multipart(ok_fields, [("image", OTTER)])[0][:-30], multipart([], [])[1]), "invalid_multipart"),  # cut short
        ((multipart(ok_fields, [("image", OTTER)])[0], "multipart/form-data"), "invalid_multipart"),  # no boundary
        ((multipart(ok_fields, [("image", OTTER)])[0], "multipart/form-data; boundary=other"), "invalid_multipart"),
        ((b'--b\r\nContent-Disposition: form-data; name="prompt"\r\n\r\n\xff\xfe\r\n--b--\r\n', "multipart/form-data; boundary=b"), "invalid_multipart"),
        (multipart([("model", "claude-sonnet-4-6"), ("prompt", "x")], [("image", OTTER)]), "wrong_api_for_model"),
    ]
    for (body, ctype), code in cases:
        r = client.post("/v1/images/edits", raw=body, headers={"content-type": ctype})
        assert r.status_code == 400 and r.json()["error"]["code"] == code, (code, r.text)
    r = post_form(client, ok_fields, [("image", OTTER)], key=RESTRICTED_KEY)
    assert r.status_code == 403 and r.json()["error"]["code"] == "model_not_allowed"
    assert post_form(client, ok_fields, [("image", OTTER)], key=None).status_code == 401
    assert mock_requests(client) == served, "nothing reached the provider"
    # What the provider refuses (an image it cannot read) costs nothing.
    r = post_form(client, ok_fields, [("image", b"GIF89a not an image")])
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_image_file", r.text
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert (rec["outcome"], rec["cost_micros"]) == ("provider_error", 0)


@pytest.mark.parametrize("boundary", ["----WebKitFormBoundary7MA4YWxkTrZu0gW", "a'()+_,-./:=? b", "x"])
def test_any_boundary_rfc_2046_allows_is_read(client, boundary):
    body, _ = multipart([("model", MODEL), ("prompt", "A hat"), ("quality", "low")], [("image", OTTER)], boundary=boundary)
    r = client.post("/v1/images/edits", raw=body, headers={"content-type": f'multipart/form-data; boundary="{boundary}"'})
    assert r.status_code == 200, r.text
    assert sent_form(client)["image"] == [OTTER]


CAPTURES = __import__("pathlib").Path(__file__).resolve().parents[1] / "captures"
RECORDED = "openai_image_edit_stream.sse"


@pytest.mark.parametrize("chunk", [1, 13, 100_000])
def test_a_recorded_edit_stream_is_counted_exactly(client, chunk):
    """tests/captures: a real edit stream (sdcb/chats recorded it: one
    1024×1024 input at low fidelity, high quality, three partial images),
    replayed in pieces and priced as GPT Image 1.5: 33 text tokens at $5,
    194 image tokens at $8, 4,460 image tokens out at $32 a million."""
    body, ctype = multipart([("model", MODEL), ("prompt", "replay"), ("stream", "true"), ("partial_images", "3"), ("quality", "high")], [("image", OTTER)])
    r = client.post("/v1/images/edits", raw=body, stream=True,
                    headers={"content-type": ctype, "x-mock-replay": RECORDED, "x-mock-chunk-bytes": str(chunk)})
    assert r.status_code == 200 and r.content == (CAPTURES / RECORDED).read_bytes(), "passed byte for byte"
    rec = client.record(r.headers["x-tollgate-request-id"])
    u = rec["usage"]
    assert (u["input_tokens"], u["image_input_tokens"], u["output_tokens"], u["image_output_tokens"]) == (227, 194, 4460, 4460), rec
    assert expected_cost(f"openai/{MODEL}", 227, 4460, image=4460, image_input=194) == 33 * 5 + 194 * 8 + 4460 * 32
    assert (rec["cost_micros"], rec["usage_source"], rec["outcome"], rec["stream"]) == (144_437, "provider", "ok", True), rec


def test_the_mock_edits_as_the_recording_did(client):
    """The mock's answer to the recorded ask has the recording's members and
    its image counts: 194 input image tokens, 4,460 out."""
    lines = [line for line in (CAPTURES / RECORDED).read_text().splitlines() if line.startswith("data: ")]
    real = [json.loads(line[6:]) for line in lines]
    # (The recording's model, GPT Image 1, is shut down: 1.5 reads its input at the same fidelity.)
    r = post_form(client, [("model", "gpt-image-1.5"), ("prompt", "replay"), ("stream", "true"), ("partial_images", "3"), ("quality", "high"),
                           ("size", "1024x1024"), ("moderation", "low")], [("image", OTTER)])
    mock = [json.loads(line[6:]) for line in r.iter_lines(decode_unicode=True) if line.startswith("data: ")]
    assert [e["type"] for e in mock] == [e["type"] for e in real]
    for m, k in zip(mock, real):
        assert set(k) <= set(m), (set(k) - set(m))
    assert (mock[-1]["usage"]["input_tokens_details"]["image_tokens"], mock[-1]["usage"]["output_tokens"]) == (194, 4460)


@pytest.mark.parametrize("size", [3 << 20, 10 << 20])
def test_edited_images_the_size_of_real_ones_are_priced_from_their_usage(client, size):
    """Past the 8 MiB held (`max_response_bytes`) an edit's usage is read
    from the answer's tail; a stream's `image_edit.completed` event past the
    1 MiB an event is read whole, from its end."""
    fields = [("model", MODEL), ("prompt", "A hat"), ("quality", "low"), ("size", "1024x1024")]
    r = post_form(client, fields, [("image", OTTER)], headers={"x-mock-image-bytes": str(size)})
    assert r.status_code == 200 and len(r.content) > size
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert (rec["usage_source"], rec["usage"]["image_input_tokens"], rec["cost_micros"]) == ("provider", LOW_INPUT, edit_cost(r.json()["usage"])), rec
    r = post_form(client, fields + [("stream", "true"), ("partial_images", "1")], [("image", OTTER)], headers={"x-mock-image-bytes": str(size)})
    assert r.status_code == 200 and len(r.content) > 2 * size
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert (rec["usage_source"], rec["outcome"], rec["usage"]["output_tokens"], rec["usage"]["image_input_tokens"]) == ("provider", "ok", 372, LOW_INPUT), rec


def test_a_fallback_sends_the_form_again_under_its_own_model(stack, tmp_path):
    """The first attempt fails (500): the route's fallback gets the same form,
    written back with its own model, the image byte for byte."""
    def patch(c):
        c["routes"][:0] = [{"model": "painter", "provider": "openai", "upstream_model": MODEL, "fallbacks": ["painter-old"]},
                           {"model": "painter-old", "provider": "openai", "upstream_model": "gpt-image-1-mini"}]
    cfg = sm.demo_config(sm.free_port(), sm.free_port(), stack.mock.port, plugin_patch=patch, control_port=stack.control.port)
    e = sm.Envoy(cfg, tmp_path, concurrency=1, name="painter")
    try:
        body, ctype = multipart([("model", "painter"), ("prompt", "A hat"), ("quality", "low"), ("size", "1024x1024")], [("image", OTTER)])
        r = requests.post(e.url + "/v1/images/edits", data=body, timeout=30,
                          headers={"content-type": ctype, "authorization": f"Bearer {SEARCH_KEY}", "x-mock-status": "500"})
        assert r.status_code == 200 and r.headers["x-tollgate-fallback-attempts"] == "1", r.text
        raw = requests.get(stack.mock.url + "/mock/last-body", timeout=5).content
        assert b'name="model"\r\n\r\ngpt-image-1-mini\r\n' in raw and OTTER in raw, raw[:300]
        time.sleep(0.3)
        rec = [x for x in e.usage_records() if x["id"] == r.headers["x-tollgate-request-id"]][0]
        assert (rec["api"], rec["model_upstream"], rec["attempts"][0]["status"]) == ("openai_image_edits", "gpt-image-1-mini", 500), rec
        assert rec["cost_micros"] == edit_cost(r.json()["usage"], "gpt-image-1-mini"), rec
    finally:
        e.stop()
