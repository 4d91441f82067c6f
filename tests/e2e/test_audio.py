"""OpenAI's transcriptions and translations (`POST /v1/audio/transcriptions`,
`/v1/audio/translations`) through Envoy.

Speech to text is billed two ways: `whisper-1` by the audio's length
($0.006 a minute, `usage: {"type": "duration", "seconds": …}`), the
`gpt-4o-*transcribe` models by tokens (audio input at its own rate). The
gateway answered 404 (with `other_paths: pass` the virtual key went to
OpenAI unchanged, nothing counted). Every SDK uploads the audio as a
multipart/form-data body, lists as `name[]`, objects as `name[key]`.
Served now: the form is read as the JSON it stands for, the audio's length
from its container's header reserves it, and it is written back with the
audio byte for byte; recorded as `api: openai_audio_transcriptions` /
`openai_audio_translations`. An answer without usage (`text`, `srt`,
`vtt`; a translation's `json`) is charged the length the header states.
The mock reads forms with `multer`, the audio with its own WAV reader, and
refuses what OpenAI refuses (tests/mock-provider/src/transcriptions.rs
cites its sources); tests/captures/openai_transcription_stream.sse is the
stream OpenAI's API reference publishes."""
from __future__ import annotations

import io
import json
import math
import struct
import wave

import openai
import pytest
import requests

import stack as sm
from conftest import LABS_KEY, RESTRICTED_KEY, SEARCH_KEY, sent_form

WHISPER_PER_HOUR = 360_000  # $0.006 a minute, envoy/demo/envoy.yaml
TRANSCRIBE = dict(input=2_500_000, audio_input=6_000_000, output=10_000_000)  # gpt-4o-transcribe
MINI = dict(input=1_250_000, audio_input=3_000_000, output=5_000_000)  # gpt-4o-mini-transcribe


def wav(seconds: float, rate: int = 16_000) -> bytes:
    """A real PCM WAV (16-bit mono), written by Python's `wave`."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        frames = int(seconds * rate)
        w.writeframes(b"".join(struct.pack("<h", int(3000 * math.sin(i / 9))) for i in range(frames)))
    return buf.getvalue()


SPEECH = wav(8.47)  # the API reference's example length: billed 9 seconds


def multipart(fields: list[tuple[str, str]], files: list[tuple[str, str, bytes]], boundary: str = "tollgate-a7d3") -> tuple[bytes, str]:
    out = b""
    for k, v in fields:
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n'.encode() + v.encode() + b"\r\n"
    for k, name, data in files:
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"; filename="{name}"\r\nContent-Type: audio/wav\r\n\r\n'.encode() + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def post_form(client, fields, files=(("file", "speech.wav", SPEECH),), path="/v1/audio/transcriptions", key=SEARCH_KEY, headers=None, stream=False):
    body, ctype = multipart(fields, list(files))
    return client.post(path, raw=body, key=key, headers={"content-type": ctype, **(headers or {})}, stream=stream)


def mock_stats(client) -> dict:
    return requests.get(client.stack.mock.url + "/mock/stats", timeout=5).json()


def whisper_cost(ms: int) -> int:
    return -(-ms * WHISPER_PER_HOUR * 10 // 36 // 1_000_000) if ms else 0


def token_cost(usage: dict, p: dict = TRANSCRIBE) -> int:
    audio = usage["input_token_details"]["audio_tokens"]
    picos = (usage["input_tokens"] - audio) * p["input"] + audio * p["audio_input"] + usage["output_tokens"] * p["output"]
    return -(-picos // 1_000_000)


def test_the_stock_sdk_transcribes_with_whisper_priced_by_the_second(oai, client):
    before = mock_stats(client)["audio_ms"]
    raw = oai.audio.transcriptions.with_raw_response.create(model="whisper-1", file=("speech.wav", SPEECH, "audio/wav"), language="en")
    t = raw.parse()
    assert t.text and t.usage.type == "duration" and t.usage.seconds == 9
    assert raw.headers["x-mock-path"] == "/v1/audio/transcriptions" and raw.headers["x-mock-auth"] == "Bearer sk-mock-openai"
    rec = client.record(raw.headers["x-tollgate-request-id"])
    assert (rec["api"], rec["model_upstream"], rec["outcome"], rec["usage_source"]) == ("openai_audio_transcriptions", "whisper-1", "ok", "provider"), rec
    assert rec["usage"]["audio_input_ms"] == 9_000 and rec["usage"]["input_tokens"] == 0
    # 9 s at $0.006 a minute, what the mock billed.
    assert rec["cost_micros"] == int(raw.headers["x-tollgate-cost-micros"]) == whisper_cost(9_000) == 900
    assert mock_stats(client)["audio_ms"] - before == 9_000
    # The provider got the form: the audio byte for byte, the fields as sent.
    form = sent_form(client)
    assert form["file"] == [SPEECH] and form["model"] == [b"whisper-1"] and form["language"] == [b"en"]


@pytest.mark.parametrize("fmt", ["text", "srt", "vtt"])
def test_a_transcript_without_usage_is_charged_the_length_its_header_states(oai, client, fmt):
    raw = oai.audio.transcriptions.with_raw_response.create(model="whisper-1", file=("speech.wav", SPEECH, "audio/wav"), response_format=fmt)
    assert raw.headers["content-type"].startswith("text/plain")
    rec = client.record(raw.headers["x-tollgate-request-id"])
    # The WAV says 8.47 s: billed, like the provider, as 9 whole seconds.
    assert (rec["usage_source"], rec["usage"].get("audio_input_ms"), rec["error_code"]) == ("estimated", 9_000, "usage_missing"), rec
    assert rec["cost_micros"] == 900 and rec["usage"]["input_tokens"] == 0


def test_gpt_4o_transcribe_is_priced_by_its_tokens(oai, client):
    raw = oai.audio.transcriptions.with_raw_response.create(
        model="gpt-4o-transcribe", file=("speech.wav", SPEECH, "audio/wav"), prompt="Names: Ada Lovelace", include=["logprobs"],
        chunking_strategy={"type": "server_vad", "threshold": 0.4})
    t = raw.parse()
    usage = t.usage.model_dump()
    assert usage["type"] == "tokens" and usage["input_token_details"]["audio_tokens"] == 85 and t.logprobs
    rec = client.record(raw.headers["x-tollgate-request-id"])
    assert (rec["usage"]["input_tokens"], rec["usage"]["audio_input_tokens"], rec["usage"]["output_tokens"]) == (usage["input_tokens"], 85, usage["output_tokens"])
    assert rec["cost_micros"] == token_cost(usage) and "audio_input_ms" not in rec["usage"]
    # The lists and the object went on as the SDK bracketed them.
    form = sent_form(client)
    assert form["include[]"] == [b"logprobs"] and form["chunking_strategy[type]"] == [b"server_vad"] and form["chunking_strategy[threshold]"] == [b"0.4"]


def test_a_streamed_transcript_is_priced_from_its_done_event(oai, client):
    events = list(oai.audio.transcriptions.create(model="gpt-4o-mini-transcribe", file=("speech.wav", SPEECH, "audio/wav"), stream=True))
    assert events[-1].type == "transcript.text.done" and events[0].type == "transcript.text.delta"
    r = post_form(client, [("model", "gpt-4o-mini-transcribe"), ("stream", "true")])
    assert r.headers["content-type"].startswith("text/event-stream")
    done = [json.loads(line[6:]) for line in r.iter_lines(decode_unicode=True) if "transcript.text.done" in line][0]
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert (rec["stream"], rec["usage_source"], rec["usage"]["audio_input_tokens"]) == (True, "provider", 85), rec
    assert rec["cost_micros"] == token_cost(done["usage"], MINI)
    # whisper-1 asked to stream answers whole (the API ignores it): priced from its JSON.
    r = post_form(client, [("model", "whisper-1"), ("stream", "true")])
    assert r.headers["content-type"].startswith("application/json")
    assert client.record(r.headers["x-tollgate-request-id"])["usage"]["audio_input_ms"] == 9_000


def test_the_published_stream_is_priced_exactly(client):
    """OpenAI's API reference's transcription stream, its done event's usage
    without a `type` (14 audio tokens, 45 out), replayed in small pieces."""
    r = post_form(client, [("model", "gpt-4o-transcribe"), ("stream", "true")],
                  headers={"x-mock-replay": "openai_transcription_stream.sse", "x-mock-chunk-bytes": "37"})
    body = r.content
    assert b"what a wonderful world." in body
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert (rec["usage"]["input_tokens"], rec["usage"]["audio_input_tokens"], rec["usage"]["output_tokens"], rec["usage_source"]) == (14, 14, 45, "provider"), rec
    assert rec["cost_micros"] == (14 * 6_000_000 + 45 * 10_000_000) // 1_000_000 == 534


def test_the_mocks_stream_has_the_published_streams_members(client):
    published = [json.loads(e[6:]) for e in (sm.ROOT / "tests/captures/openai_transcription_stream.sse").read_text().split("\n\n") if e.startswith("data: ")]
    r = post_form(client, [("model", "gpt-4o-transcribe"), ("stream", "true")])
    mocked = [json.loads(line[6:]) for line in r.iter_lines(decode_unicode=True) if line.startswith("data: ")]
    shape = lambda evs: {(e["type"], tuple(sorted(k for k in e if k != "logprobs")), tuple(sorted(e.get("usage", {})))) for e in evs}
    assert shape(mocked) == shape(published)


def test_translations_are_priced_by_their_length(oai, client):
    raw = oai.audio.translations.with_raw_response.create(model="whisper-1", file=("rede.wav", SPEECH, "audio/wav"))
    assert raw.parse().text
    rec = client.record(raw.headers["x-tollgate-request-id"])
    # `json` carries no usage: the header's 8.47 s, as 9 seconds.
    assert (rec["api"], rec["usage_source"], rec["usage"]["audio_input_ms"], rec["cost_micros"]) == ("openai_audio_translations", "estimated", 9_000, 900), rec
    raw = oai.audio.translations.with_raw_response.create(model="whisper-1", file=("rede.wav", SPEECH, "audio/wav"), response_format="verbose_json")
    assert raw.parse().duration == pytest.approx(8.47)
    rec = client.record(raw.headers["x-tollgate-request-id"])
    assert (rec["usage_source"], rec["usage"]["audio_input_ms"], rec["cost_micros"]) == ("provider", 9_000, 900), rec
    assert raw.headers["x-mock-path"] == "/v1/audio/translations"


def test_an_azure_client_transcribes_on_its_deployment(stack, client):
    azure = openai.AzureOpenAI(azure_endpoint=stack.url, api_key=SEARCH_KEY, api_version="2024-06-01", max_retries=0)
    raw = azure.audio.transcriptions.with_raw_response.create(model="whisper-1", file=("speech.wav", SPEECH, "audio/wav"))
    assert raw.parse().usage.seconds == 9
    assert raw.headers["x-mock-path"] == "/v1/audio/transcriptions" and raw.headers["x-mock-api-key"] == ""
    assert client.record(raw.headers["x-tollgate-request-id"])["api"] == "openai_audio_transcriptions"


def test_a_long_recording_goes_on_whole(client):
    long = wav(200, rate=8_000)  # 3.2 MB, 200 s
    r = post_form(client, [("model", "whisper-1")], files=[("file", "meeting.wav", long)])
    assert r.status_code == 200, r.text
    assert sent_form(client)["file"] == [long]
    assert client.record(r.headers["x-tollgate-request-id"])["cost_micros"] == whisper_cost(200_000) == 20_000


def test_the_guardrails_read_a_transcriptions_prompt_and_leave_its_audio_alone(client):
    r = post_form(client, [("model", "whisper-1"), ("prompt", "Caller may spell ops@example.com")], key=LABS_KEY)
    assert r.status_code == 200, r.text
    form = sent_form(client)
    assert b"ops@example.com" not in form["prompt"][0] and form["file"] == [SPEECH]


def test_what_cannot_be_transcribed_is_refused_before_it_is_sent(client):
    served = mock_stats(client)["requests"]
    speech = [("file", "speech.wav", SPEECH)]
    cases = [
        (multipart([("model", "whisper-1")], []), "missing_file"),
        (multipart([], speech), "missing_model"),
        (multipart([("model", "whisper-1"), ("model", "gpt-4o-transcribe")], speech), "duplicate_key"),
        (multipart([("model", "whisper-1"), ("include", "logprobs"), ("include[]", "logprobs")], speech), "duplicate_key"),
        (multipart([("model", "whisper-1"), ("file", "speech.wav")], []), "invalid_multipart"),
        (multipart([("model", "whisper-1")], speech * 2), "invalid_multipart"),
        (multipart([("model", "whisper-1")], [("image", "x.png", b"\x89PNG")] + speech), "invalid_multipart"),
        ((json.dumps({"model": "whisper-1", "file": "speech.wav"}).encode(), "application/json"), "invalid_multipart"),
        (multipart([("model", "claude-sonnet-4-6")], speech), "wrong_api_for_model"),
    ]
    for (body, ctype), code in cases:
        r = client.post("/v1/audio/transcriptions", raw=body, headers={"content-type": ctype})
        assert r.status_code == 400 and r.json()["error"]["code"] == code, (code, r.text)
    assert post_form(client, [("model", "whisper-1")], key=RESTRICTED_KEY).json()["error"]["code"] == "model_not_allowed"
    assert post_form(client, [("model", "whisper-1")], key=None).status_code == 401
    huge = wav(300, rate=16_000)  # 9.6 MB: past max_request_bytes (8 MiB)
    assert post_form(client, [("model", "whisper-1")], files=[("file", "long.wav", huge)]).status_code == 413
    assert mock_stats(client)["requests"] == served, "nothing reached the provider"
    # What the provider refuses (bytes it cannot decode, a format it does not take) costs nothing.
    for name, data in (("speech.mp3", b"not audio at all" * 100), ("speech.txt", SPEECH)):
        r = post_form(client, [("model", "whisper-1")], files=[("file", name, data)])
        assert r.status_code == 400, r.text
        rec = client.record(r.headers["x-tollgate-request-id"])
        assert (rec["outcome"], rec["cost_micros"]) == ("provider_error", 0), rec


def test_a_cut_transcript_stream_is_charged_its_audio(client):
    r = post_form(client, [("model", "gpt-4o-transcribe"), ("stream", "true")], headers={"x-mock-cut-after": "3"}, stream=True)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        r.content  # noqa: B018 (read to the cut)
    rec = client.record(r.headers["x-tollgate-request-id"])
    # 9 whole seconds at 1,000 audio tokens a minute: 150, as the gateway reserved them.
    assert (rec["outcome"], rec["usage_source"], rec["usage"]["audio_input_tokens"]) == ("upstream_cut", "estimated", 150), rec
    assert rec["cost_micros"] > 150 * 6
