"""Hostile input on the endpoints and features added for issues 12 and 14:
duplicate members, non-UTF-8 credentials, out-of-range numbers, control
characters and a provider that reports absurd usage — each refused or bounded,
never a crash, and the worker keeps serving."""
from __future__ import annotations

import http.client
import json

import requests

from conftest import SEARCH_KEY


def raw_post(stack, path: str, body: bytes, headers: dict[bytes, bytes]) -> int:
    host, port = stack.url.removeprefix("http://").split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=10)
    c.putrequest("POST", path)
    for k, v in {b"content-type": b"application/json", b"content-length": str(len(body)).encode(), **headers}.items():
        c.putheader(k, v)
    c.endheaders(body)
    r = c.getresponse()
    r.read()
    return r.status


def test_duplicate_members_are_refused_on_every_new_api(client):
    for path, body in [
        ("/v1/responses", b'{"model":"openai/gpt-5.4","input":"a","max_output_tokens":20,"max_output_tokens":90000}'),
        ("/v1/embeddings", b'{"model":"text-embedding-3-small","input":"a","input":"b"}'),
        ("/v1/completions", b'{"model":"gpt-3.5-turbo-instruct","prompt":"a","best_of":1,"best_of":20}'),
        ("/v1beta/models/gemini-2.5-flash:generateContent", b'{"contents":[],"contents":[{"parts":[{"text":"x"}]}]}'),
    ]:
        r = client.post(path, raw=body, headers={"x-goog-api-key": SEARCH_KEY})
        assert r.status_code == 400 and r.json()["error"]["code"] == "duplicate_key", (path, r.text)


def test_out_of_range_numbers_are_refused_or_bounded(client):
    gen = "/v1beta/models/gemini-2.5-flash:generateContent"
    for gc in ({"maxOutputTokens": 1e30}, {"maxOutputTokens": -1}, {"candidateCount": 10**6}):
        r = client.post(gen, {"contents": [{"parts": [{"text": "x"}]}], "generationConfig": gc}, headers={"x-goog-api-key": SEARCH_KEY})
        assert r.status_code == 400, (gc, r.text)
    r = client.post("/v1/completions", {"model": "gpt-3.5-turbo-instruct", "prompt": "x", "best_of": 10**9})
    assert r.status_code == 400 and r.json()["error"]["param"] == "best_of"
    # a provider reporting absurd usage: clamped, not overflowed
    r = client.post("/v1/responses", {"model": "openai/gpt-5.4", "input": "x"}, headers={"x-mock-output-tokens": str(2**62)})
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert rec["usage"]["output_tokens"] <= 10**12


def test_non_utf8_and_control_bytes_in_new_places(stack, client):
    gen = "/v1beta/models/gemini-2.5-flash:generateContent"
    body = json.dumps({"contents": [{"parts": [{"text": "x"}]}]}).encode()
    assert raw_post(stack, gen, body, {b"x-goog-api-key": b"tg-\xff\xfe"}) == 401
    # the model in a Gemini path goes into the upstream path: escapes and traversal never leave
    for bad in ("gem%0Aini", "..%2F..%2Fv1beta%2Ffiles", "x..y"):
        r = client.post(f"/v1beta/models/{bad}:generateContent", raw=body, headers={"x-goog-api-key": SEARCH_KEY})
        assert r.status_code == 404 and "x-mock-path" not in r.headers, (bad, r.status_code)
    # guardrails on text with invalid escapes and control characters: refused as JSON or scanned, never a crash
    r = client.post("/v1/chat/completions", raw=b'{"model":"cheap","messages":[{"role":"user","content":"\\ud800 a@b.io \\u0000"}]}')
    assert r.status_code in (200, 400)
    # a translation of a hostile tool-call argument (not JSON) is refused by name
    r = client.post("/v1/chat/completions", {"model": "anthropic/claude-sonnet-4-6", "messages": [
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c", "type": "function",
                                                               "function": {"name": "f", "arguments": "{not json"}}]}]})
    assert r.status_code == 400 and r.json()["error"]["code"] == "untranslatable_field"
    # and the worker still serves
    assert client.chat("cheap").status_code == 200


def test_hostile_bytes_on_the_azure_namespace_moderation_and_count_paths(stack, client):
    """The thirty-fourth session's paths, fed what a hostile client sends:
    each refused with a clear 4xx before anything reaches the provider, or
    served bounded; the worker serves on."""
    served = lambda: requests.get(stack.mock.url + "/mock/stats", timeout=5).json()["requests"]
    before = served()
    chat = json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode()
    # An Azure deployment names the model: escapes, traversal, NUL, bytes that are not UTF-8, 300 characters.
    for d in ("gem%0Aini", "..%2F..%2Fv1%2Ffiles", "a%00b", "%FF%FE", "x" * 300, "%20"):
        status = raw_post(stack, f"/openai/deployments/{d}/chat/completions?api-version=1", chat, {b"api-key": SEARCH_KEY.encode()})
        assert status in (400, 403, 404), (d, status)
    # A key header that is not UTF-8, or two different keys, are no key.
    assert raw_post(stack, "/openai/deployments/cheap/chat/completions", chat, {b"api-key": b"tg-\xff"}) == 401
    assert raw_post(stack, "/openai/deployments/cheap/chat/completions", chat,
                    {b"api-key": SEARCH_KEY.encode(), b"authorization": b"Bearer tg-demo-labs-key"}) == 401
    # Namespaces: a name that cannot go flat, a namespace that is not a string, 4,000 functions.
    claude = "anthropic/claude-sonnet-4-6"
    for tools, input_ in (([{"type": "namespace", "name": "n\u00e9", "tools": [{"type": "function", "name": "f"}]}], "x"),
                          ([{"type": "namespace", "name": "n", "tools": "f"}], "x"),
                          ([], [{"type": "function_call", "call_id": "c", "name": "f", "namespace": {"x": 1}, "arguments": "{}"}])):
        r = client.post("/v1/responses", {"model": claude, "input": input_, "tools": tools})
        assert r.status_code == 400, (tools, r.text)
    many = [{"type": "namespace", "name": f"ns{i}", "tools": [{"type": "function", "name": f"f{j}", "parameters": {"type": "object"}} for j in range(40)]}
            for i in range(100)]
    r = client.post("/v1/responses", {"model": claude, "input": "x", "tools": many, "max_output_tokens": 16})
    assert r.status_code in (200, 400, 413), r.text[:300]
    assert served() - before <= 1, "only the 4,000-function request may have reached the provider"
    # A moderation 5,000 arrays deep, a whole-request count 5,000 objects deep: refused as JSON, never a crash.
    deep = "[" * 5000 + '"x"' + "]" * 5000
    assert raw_post(stack, "/v1/moderations", ('{"input":%s}' % deep).encode(), {b"authorization": f"Bearer {SEARCH_KEY}".encode()}) == 400
    nested = '{"generateContentRequest":' + '{"a":' * 5000 + "1" + "}" * 5001
    assert raw_post(stack, "/v1beta/models/gemini-2.5-flash:countTokens", nested.encode(), {b"x-goog-api-key": SEARCH_KEY.encode()}) == 400
    assert client.chat("cheap").status_code == 200, "the worker still serves"


def test_hostile_image_generations_are_refused_or_bounded(stack, client):
    """Image generations, fed what a hostile client or provider sends:
    duplicate members that would change what is reserved, sizes and counts
    past any model's, a disguised path, a provider reporting absurd usage
    or none at all, a stream that never completes."""
    served = lambda: requests.get(stack.mock.url + "/mock/stats", timeout=5).json()["requests"]
    before = served()
    gen = "/v1/images/generations"
    for raw in (b'{"model":"gpt-image-1.5","prompt":"a","n":1,"n":10}', b'{"model":"gpt-image-1.5","prompt":"a","quality":"low","quality":"high"}',
                b'{"model":"gpt-image-1.5","prompt":"a","size":"1024x1024","size":"3840x2160"}'):
        r = client.post(gen, raw=raw)
        assert r.status_code == 400 and r.json()["error"]["code"] == "duplicate_key", r.text
    for body in ({"n": 1e30}, {"n": -1}, {"n": 10**20}, {"size": "1x" + "9" * 40}, {"size": "\u0661\u0660\u0662\u0664x1024"},
                 {"size": "1024x1024\u0000"}, {"quality": ["high"]}, {"partial_images": 2**64}, {"prompt": None}, {"prompt": 7}):
        r = client.post(gen, {"model": "gpt-image-1.5", "prompt": "a", **body})
        assert r.status_code == 400, (body, r.text)
    for path in ("/v1/images/Generations", "/v1//images/generations", "/v1/images/%67enerations", "/v1/images/generations/..;/generations"):
        assert raw_post(stack, path, b'{"model":"gpt-image-1.5","prompt":"a"}', {b"authorization": f"Bearer {SEARCH_KEY}".encode()}) in (400, 404), path
    assert served() == before, "nothing reached the provider"
    # usage past any count: clamped; none at all: the images asked for, never the base64's size
    r = client.post(gen, {"model": "gpt-image-1.5", "prompt": "a", "quality": "low", "size": "1024x1024"},
                    headers={"x-mock-replay": "openai_image_dalle2.json"})
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert (rec["usage_source"], rec["usage"]["output_tokens"], rec["error_code"]) == ("estimated", 272, "usage_missing"), rec
    # a stream cut after its partial image: the images asked for, as an estimate
    r = client.post(gen, {"model": "gpt-image-1.5", "prompt": "a", "quality": "low", "size": "1024x1024", "stream": True, "partial_images": 1},
                    headers={"x-mock-cut-after": "1"}, stream=True)
    try:
        r.content
    except requests.exceptions.ChunkedEncodingError:
        pass  # the cut, as the client sees it
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert (rec["usage_source"], rec["outcome"], rec["usage"]["output_tokens"]) == ("estimated", "upstream_cut", 372), rec
    assert client.chat("cheap").status_code == 200, "the worker still serves"


def test_hostile_image_edit_forms_are_refused_or_sent_as_read(stack, client):
    """Image edits' multipart forms, as a hostile client writes them: parts
    by the thousand, headers that never end, a field smuggled past the
    closing boundary or spelled for another parser (`name*`, a transfer
    encoding, LF line ends), a duplicate field, a cut body. Each is refused
    before it is sent, or sent as the gateway read it: the provider reads
    the form the gateway wrote, whose headers it wrote itself."""
    served = lambda: requests.get(stack.mock.url + "/mock/stats", timeout=5).json()["requests"]
    png = bytes.fromhex("89504e470d0a1a0a0000000d49484452")
    edit = lambda raw, b="b": client.post("/v1/images/edits", raw=raw, headers={"content-type": f"multipart/form-data; boundary={b}"})
    part = lambda name, value, extra="": f'--b\r\nContent-Disposition: form-data; name="{name}"{extra}\r\n\r\n'.encode() + value + b"\r\n"
    ok = part("model", b"gpt-image-1.5") + part("prompt", b"a hat") + part("image", png, '; filename="a.png"')
    before = served()
    for raw in (b"".join(part(f"f{i}", b"x") for i in range(5000)) + b"--b--\r\n",
                b'--b\r\nContent-Disposition: form-data; name="prompt"\r\nX: ' + b"y" * 100_000 + b"\r\n\r\nx\r\n--b--\r\n",
                ok + part("prompt", b"again") + b"--b--\r\n",
                ok + b'--b\r\nContent-Disposition: form-data; name="n"; name*=UTF-8\'\'model\r\n\r\n2\r\n--b--\r\n',
                ok + b'--b\r\nContent-Disposition: form-data; name="quality"\r\nContent-Transfer-Encoding: base64\r\n\r\naGlnaA==\r\n--b--\r\n',
                ok.replace(b"\r\n", b"\n") + b"--b--\n",
                ok[:-40],
                ok + part("n", b"9" * 40) + b"--b--\r\n",
                ok + part("size", "１０２４x１０２４".encode()) + b"--b--\r\n"):
        r = edit(raw)
        assert r.status_code == 400, (raw[:120], r.text)
    assert served() == before, "nothing reached the provider"
    # smuggled past the closing boundary: never sent
    r = edit(ok + b"--b--\r\n" + part("n", b"10") + part("quality", b"high") + b"--b--\r\n")
    assert r.status_code == 200, r.text
    sent = requests.get(stack.mock.url + "/mock/last-body", timeout=5).content
    assert b'name="n"' not in sent and b"high" not in sent and sent.endswith(b"--b--\r\n"), sent[-200:]
    assert client.record(r.headers["x-tollgate-request-id"])["usage"]["output_tokens"] == r.json()["usage"]["output_tokens"]
    assert client.chat("cheap").status_code == 200, "the worker still serves"


def test_hostile_image_edit_json_and_provider_are_refused_or_bounded(stack, client):
    """The JSON form of an edit, fed what a hostile client sends (repeated
    members that would change the reservation, counts past any model's,
    images that are not references, bytes that are not UTF-8, control
    characters), refused before it is sent; a provider that cuts the stream
    leaves a record charged the input images as reserved; a client that
    sends one request id twice gets two records."""
    served = lambda: requests.get(stack.mock.url + "/mock/stats", timeout=5).json()["requests"]
    before = served()
    edits = "/v1/images/edits"
    ref = '{"file_id":"file-1"}'
    for raw in (b'{"model":"gpt-image-1.5","prompt":"a","images":[' + ref.encode() + b'],"images":[' + b",".join([ref.encode()] * 16) + b']}',
                b'{"model":"gpt-image-1.5","prompt":"a","images":[' + ref.encode() + b'],"input_fidelity":"low","input_fidelity":"high"}',
                b'{"model":"gpt-image-1.5","prompt":"a\xff\xfe","images":[' + ref.encode() + b']}'):
        r = client.post(edits, raw=raw)
        assert r.status_code == 400 and r.json()["error"]["code"] in ("duplicate_key", "invalid_json"), r.text
    ok = {"model": "gpt-image-1.5", "prompt": "a", "images": [{"file_id": "file-1"}]}
    for body in ({"n": 1e30}, {"n": 10**20}, {"images": [{"file_id": "f"}] * 10_000}, {"images": ["https://x/a.png"]}, {"images": {"file_id": "f"}},
                 {"images": None}, {"mask": [{"file_id": "f"}]}, {"input_fidelity": "\u0000high"}, {"size": "1024x1024\u0007"}):
        r = client.post(edits, {**ok, **body})
        assert r.status_code == 400, (str(body)[:80], r.text)
    assert served() == before, "nothing reached the provider"
    # control characters in the prompt go through as text (the provider reads them); the record is clean
    r = client.post(edits, {**ok, "prompt": "a\u0000\u001b[31m hat", "quality": "low", "size": "1024x1024"})
    assert r.status_code == 200, r.text
    # a stream cut after its partial image: estimated, its input image as reserved (581 at low fidelity)
    r = client.post(edits, {**ok, "quality": "low", "size": "1024x1024", "stream": True, "partial_images": 1},
                    headers={"x-mock-cut-after": "1"}, stream=True)
    try:
        r.content
    except requests.exceptions.ChunkedEncodingError:
        pass  # the cut, as the client sees it
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert (rec["usage_source"], rec["outcome"], rec["usage"]["image_input_tokens"], rec["usage"]["output_tokens"]) == ("estimated", "upstream_cut", 581, 372), rec
    # one request id, sent twice: two records
    ids = [client.post(edits, {**ok, "quality": "low"}, headers={"x-request-id": "same-edit"}).headers["x-tollgate-request-id"] for _ in range(2)]
    assert ids[0] != ids[1] and all(client.record(i)["api"] == "openai_image_edits" for i in ids)
    assert client.chat("cheap").status_code == 200, "the worker still serves"


def test_hostile_audio_uploads_are_bounded_by_what_their_bytes_allow(stack, client):
    """Audio a hostile client sends: a WAV header claiming a rate no
    encoding has (to reserve nothing), or a length past its bytes (to
    reserve a fortune), a cut header, a file of no format, another format
    named `.wav`, an endless list of `include[]`, a field smuggled past the
    closing boundary, bytes that are not UTF-8, a control character in a
    field's name, one request id sent twice. The length the gateway reserves is never shorter than
    the bytes allow at 1,536 kbit/s nor longer than they hold; a file whose
    header states nothing is assumed at 32 kbit/s; the worker keeps serving."""
    import struct
    from test_audio import SPEECH, multipart, post_form, wav
    one = wav(1)  # 16 kHz mono: 32,000 bytes a second
    fast = one[:28] + struct.pack("<I", 100_000_000) + one[32:]  # byte rate 100 MB/s: 0.3 ms
    long = one[:40] + struct.pack("<I", 0xFFFFFFF0) + one[44:]  # data 4 GB, 32 KB there
    unstated = b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\x00" * 39_990  # a tag, no frame: 40,000 bytes at 32 kbit/s
    # (file, name, status, ms reserved): the mock decodes what it can (400 for the rest, costing nothing)
    for data, name, status, reserved_ms in ((fast, "a.wav", 200, 1_000), (long, "a.wav", 200, 1_000), (unstated, "a.mp3", 200, 10_000),
                                            (one[:30], "a.wav", 400, None), (b"\x00" * 40_000, "a.wav", 400, None), (bytes(range(256)) * 160, "a.wav", 400, None)):
        r = post_form(client, [("model", "gpt-4o-transcribe"), ("response_format", "text")], files=[("file", name, data)])
        rec = client.record(r.headers["x-tollgate-request-id"])
        assert r.status_code == status, (len(data), r.text)
        if status == 200:
            # charged as the gateway read it: whole seconds, at 1,000 audio tokens a minute
            assert (rec["usage_source"], rec["usage"]["audio_input_tokens"]) == ("estimated", -(-reserved_ms // 60)), (len(data), rec)
        else:
            assert rec["cost_micros"] == 0, rec
    served = requests.get(stack.mock.url + "/mock/stats", timeout=5).json()["requests"]
    body, ctype = multipart([("model", "whisper-1")] + [("include[]", "logprobs")] * 70, [("file", "a.wav", SPEECH)])
    r = client.post("/v1/audio/transcriptions", raw=body, headers={"content-type": ctype})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_multipart", r.text
    assert requests.get(stack.mock.url + "/mock/stats", timeout=5).json()["requests"] == served
    # smuggled past the closing boundary: never sent
    body, ctype = multipart([("model", "whisper-1")], [("file", "a.wav", SPEECH)])
    r = client.post("/v1/audio/transcriptions", raw=body + b'--tollgate-a7d3\r\nContent-Disposition: form-data; name="model"\r\n\r\ngpt-4o-transcribe\r\n--tollgate-a7d3--\r\n',
                    headers={"content-type": ctype})
    assert r.status_code == 200 and client.record(r.headers["x-tollgate-request-id"])["model_upstream"] == "whisper-1"
    assert b"gpt-4o-transcribe" not in requests.get(stack.mock.url + "/mock/last-body", timeout=5).content
    # non-UTF-8 text and a control character in a field's name: refused before sending
    served = requests.get(stack.mock.url + "/mock/stats", timeout=5).json()["requests"]
    for raw in (body.replace(b"whisper-1", b"whisper-\xff\xfe"), body.replace(b'name="model"', b'name="mo\x07del"')):
        r = client.post("/v1/audio/transcriptions", raw=raw, headers={"content-type": ctype})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_multipart", r.text
    assert requests.get(stack.mock.url + "/mock/stats", timeout=5).json()["requests"] == served
    # one request id, sent twice: two records, each charged
    ids = [client.post("/v1/audio/transcriptions", raw=body, headers={"content-type": ctype, "x-request-id": "same-audio"}).headers["x-tollgate-request-id"] for _ in range(2)]
    assert ids[0] != ids[1] and all(client.record(i)["cost_micros"] == 900 for i in ids)
    assert client.chat("cheap").status_code == 200, "the worker still serves"


def test_hostile_speech_is_refused_or_charged_what_its_bytes_allow(stack, client):
    """Speech a hostile client or provider sends: numbers past a float's
    range, text that is not UTF-8, 100,000 characters (a reservation of
    their slowest reading, refused by the provider for nothing), a
    compressed answer (its compressed bytes are no measure of the audio:
    the text's reading time stands in), one that claims an encoding it does
    not have, a cut SSE stream, one request id sent twice. The worker keeps
    serving."""
    speech = lambda body, **kw: client.post("/v1/audio/speech", {"model": "gpt-4o-mini-tts", "voice": "alloy", **body}, **kw)
    served = requests.get(stack.mock.url + "/mock/stats", timeout=5).json()["requests"]
    for raw in (b'{"model":"tts-1","voice":"alloy","input":"hi","speed":1e400}', b'{"model":"tts-1","voice":"alloy","input":"\xff\xfe"}',
                b'{"model":"tts-1","voice":"alloy","input":"hi","speed":0.2499}', b'{"model":"tts-1","voice":"alloy","input":"hi","stream_format":1}'):
        r = client.post("/v1/audio/speech", raw=raw)
        assert r.status_code == 400 and r.json()["error"]["code"] in ("invalid_json", "invalid_type"), (raw, r.text)
    assert requests.get(stack.mock.url + "/mock/stats", timeout=5).json()["requests"] == served
    r = speech({"model": "tts-1", "input": "z" * 100_000})
    assert r.status_code == 400 and r.json()["error"]["code"] == "string_above_max_length", r.text
    assert client.record(r.headers["x-tollgate-request-id"])["cost_micros"] == 0
    # compressed, or claiming a coding: charged the text's 3 s (45 characters at 15 a second), 63 tokens
    fox = "The quick brown fox jumped over the lazy dog."
    for headers in ({"x-mock-gzip": "1"}, {"x-mock-content-encoding": "br"}):
        r = speech({"input": fox, "response_format": "pcm"}, headers={**headers, "x-mock-speech-ms": "60000"})
        rec = client.record(r.headers["x-tollgate-request-id"])
        assert (r.status_code, rec["usage"]["audio_output_tokens"], rec["usage_source"]) == (200, 63, "estimated"), (headers, rec)
    # an SSE stream cut after two events: no usage came, the text's reading charged
    r = speech({"input": fox, "stream_format": "sse"}, headers={"x-mock-cut-after": "2", "x-mock-speech-ms": "60000"}, stream=True)
    try:
        r.content
    except requests.exceptions.RequestException:
        pass
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert (rec["outcome"], rec["usage"]["audio_output_tokens"]) == ("upstream_cut", 63), rec
    # one request id, sent twice: two records, each charged
    ids = [speech({"model": "tts-1", "input": fox}, headers={"x-request-id": "same-speech"}).headers["x-tollgate-request-id"] for _ in range(2)]
    assert ids[0] != ids[1] and all(client.record(i)["cost_micros"] == 675 for i in ids)
    assert client.chat("cheap").status_code == 200, "the worker still serves"


def test_hostile_stored_object_requests_are_refused_or_scanned_as_sent(stack, client):
    """Conversation items under the demo's guardrails (the labs team's e-mail
    redacted): compressed, given twice, out of range, not UTF-8, in HTTP/2
    with trailers' worth of framing; ids and paths no provider names."""
    import gzip

    from conftest import LABS_KEY

    labs = {b"authorization": f"Bearer {LABS_KEY}".encode()}
    conv = requests.post(client.url + "/v1/conversations", json={}, headers={"authorization": f"Bearer {LABS_KEY}"}, timeout=10).json()["id"]
    items = f"/v1/conversations/{conv}/items"
    # Compressed: read as decoded, scanned, sent decoded (the e-mail redacted).
    packed = gzip.compress(json.dumps({"items": [{"type": "message", "role": "user", "content": "to eve@example.com"}]}).encode())
    assert raw_post(stack, items, packed, {**labs, b"content-encoding": b"gzip"}) == 200
    listed = requests.get(client.url + items, headers={"authorization": f"Bearer {LABS_KEY}"}, timeout=10).json()
    assert [i["content"][0]["text"] for i in listed["data"]] == ["to [EMAIL_1]"], listed
    # What the scan cannot read is not stored unscanned.
    for body in [b'{"items":[{"type":"message","role":"user","content":"a@b.io","content":"x"}]}',
                 b'{"items":[{"type":"message","role":"user","content":"x"}],"metadata":{"n":1e400}}',
                 b'{"items":[{"type":"message","role":"user","content":"\xff\xfe"}]}',
                 gzip.compress(b'{"items":[]}')[:-6]]:
        headers = {**labs, b"content-encoding": b"gzip"} if body[:2] == b"\x1f\x8b" else labs
        assert raw_post(stack, items, body, headers) == 400, body
    assert raw_post(stack, items, b'{"items":[]}', {**labs, b"content-encoding": b"br"}) == 415
    assert raw_post(stack, items, b"x" * (9 << 20), labs) == 413
    # Ids no provider names, a non-UTF-8 path, control bytes: never the provider's to read.
    from conftest import raw_http, status_of

    port = int(stack.url.rsplit(":", 1)[1])
    for path in [b"/v1/conversations/conv_\xff", b"/v1/responses/resp_1\x01", b"/v1/responses/" + b"r" * 300]:
        got = status_of(raw_http(port, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + LABS_KEY.encode() + b"\r\n\r\n"))
        assert got in (400, 404), (path, got)
    # The worker still serves.
    assert client.chat("default").status_code == 200


def test_hostile_decisions_are_refused_or_charged_what_was_sent(stack, client):
    """The Decisions API under hostile input: a member given twice (the
    guardrails and the provider could read different questions), bytes that
    are not UTF-8, questions of the wrong type (the provider's refusal,
    charged nothing), an answer the provider compressed unasked (decoded,
    charged its usage). The worker keeps serving."""
    served = requests.get(stack.mock.url + "/mock/stats", timeout=5).json()["requests"]
    q = b'[{"type":"predicate","instructions":"Refund?"}]'
    for raw, code in ((b'{"model":"gpt-6-luna","input":"a","questions":' + q + b',"questions":[]}', "duplicate_key"),
                      (b'{"model":"gpt-6-luna","model":"gpt-5.4","input":"a","questions":' + q + b'}', "duplicate_key"),
                      (b'{"model":"gpt-6-luna","input":"\xff\xfe","questions":' + q + b'}', "invalid_json")):
        r = client.post("/v1/decisions", raw=raw)
        assert r.status_code == 400 and r.json()["error"]["code"] == code, (raw, r.text)
    assert requests.get(stack.mock.url + "/mock/stats", timeout=5).json()["requests"] == served
    r = client.post("/v1/decisions", {"model": "gpt-6-luna", "input": "a", "questions": "Refund?"})
    assert r.status_code == 400 and client.record(r.headers["x-tollgate-request-id"])["cost_micros"] == 0, r.text
    r = client.post("/v1/decisions", {"model": "gpt-6-luna", "input": "I want a refund.", "questions": json.loads(q)}, headers={"x-mock-gzip": "1"})
    assert r.status_code == 200 and r.json()["answers"][0]["type"] == "predicate", r.text
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert (rec["usage_source"], rec["usage"]["input_tokens"], rec["cost_micros"]) == ("provider", 6, 1), rec
    assert client.chat("cheap").status_code == 200, "the worker still serves"
