"""OpenAI's text to speech (`POST /v1/audio/speech`) through Envoy.

Billed two ways: `tts-1` and `tts-1-hd` by the input's characters ($15 and
$30 a million), `gpt-4o-mini-tts` by its text tokens ($0.60 a million) and
the audio tokens it speaks ($12 a million, "$0.015 a minute"). The answer
is the audio itself, no usage; only `stream_format: "sse"` (on
`gpt-4o-mini-tts`) ends with one. The gateway answered 404 (with
`other_paths: pass` the virtual key went to OpenAI, nothing counted).
Served now, recorded as `api: openai_audio_speech`: the characters are
counted from the request; the audio passes unheld, its length measured
(`pcm` by its bytes at 24 kHz 16-bit, `wav` and `mp3` by their headers'
rates, `opus` by its last Ogg page) and charged at 1,250 audio tokens a minute. The mock refuses what
OpenAI refuses (tests/mock-provider/src/speech.rs cites its sources:
openai/openai-openapi's `CreateSpeechRequest` and stream events, and
sfortis/openai_tts#73 on `tts-1` ignoring `sse`)."""
from __future__ import annotations

import base64
import json

import openai
import requests

from conftest import LABS_KEY, SEARCH_KEY, mock_stats

FOX = "The quick brown fox jumped over the lazy dog."  # 45 characters, the API reference's input
MINI = dict(input=600_000, output=12_000_000)  # gpt-4o-mini-tts, envoy/demo/envoy.yaml
TTS_1, TTS_1_HD = 15_000_000, 30_000_000  # per million characters


def last_body(client) -> dict:
    return requests.get(client.stack.mock.url + "/mock/last-body", timeout=5).json()


def speak(client, body: dict, key: str = SEARCH_KEY, headers: dict | None = None, stream: bool = False, path: str = "/v1/audio/speech"):
    return client.post(path, {"voice": "alloy", **body}, key=key, headers=headers, stream=stream)


def by_characters(n: int, per_million: int = TTS_1) -> int:
    return -(-n * per_million // 1_000_000)


def mini_cost(input_tokens: int, audio_tokens: int) -> int:
    return -(-(input_tokens * MINI["input"] + audio_tokens * MINI["output"]) // 1_000_000)


def test_the_stock_sdk_speaks_with_tts_1_priced_by_the_character(oai, client):
    before = mock_stats(client.stack)
    raw = oai.audio.speech.with_raw_response.create(model="tts-1", voice="alloy", input=FOX)
    audio = raw.content
    # The mock's 3 s of MP3 (MPEG-2 Layer III, 64 kbit/s): every byte reached the client.
    assert audio[:4] == b"\xff\xf3\x84\xc0" and len(audio) == 125 * 192
    assert raw.headers["content-type"] == "audio/mpeg" and raw.headers["x-mock-path"] == "/v1/audio/speech"
    rec = client.record(raw.headers["x-tollgate-request-id"])
    assert (rec["api"], rec["model_upstream"], rec["outcome"], rec["usage_source"], rec["error_code"]) == (
        "openai_audio_speech", "tts-1", "ok", "estimated", "usage_missing"), rec
    # 45 characters at $15 a million, and nothing else: what OpenAI bills.
    assert rec["usage"]["input_characters"] == 45 and rec["usage"]["input_tokens"] == rec["usage"]["output_tokens"] == 0
    assert rec["cost_micros"] == by_characters(45) == 675
    assert mock_stats(client.stack)["characters"] - before["characters"] == 45
    # tts-1-hd at twice the rate; a non-ASCII input counts characters, not bytes.
    r = speak(client, {"model": "tts-1-hd", "input": "Grüße aus Köln, 東京"})
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert (rec["usage"]["input_characters"], rec["cost_micros"]) == (18, by_characters(18, TTS_1_HD))


def test_gpt_4o_mini_tts_is_charged_the_audio_it_made(client):
    """A binary answer has no usage: its audio's length, read from its bytes,
    is charged as the model bills it. The mock speaks 7 s (`x-mock-speech-ms`,
    a voice told to read slowly): more than the text's 3 s at a normal pace."""
    for fmt, size in [("pcm", 7 * 48_000), ("wav", 44 + 7 * 48_000), ("mp3", 292 * 192), ("opus", None)]:
        before = mock_stats(client.stack)
        r = speak(client, {"model": "gpt-4o-mini-tts", "input": FOX, "instructions": "Slowly, warmly.", "response_format": fmt},
                  headers={"x-mock-speech-ms": "7000"})
        assert r.status_code == 200 and len(r.content) == (size or len(r.content)), (fmt, r.status_code, len(r.content))
        billed = mock_stats(client.stack)
        rec = client.record(r.headers["x-tollgate-request-id"])
        audio = billed["output_tokens"] - before["output_tokens"]
        assert audio == 146, audio  # 7 s at one token each 48 ms
        assert (rec["usage"]["output_tokens"], rec["usage"]["audio_output_tokens"], rec["usage_source"]) == (audio, audio, "estimated"), (fmt, rec)
        assert "input_characters" not in rec["usage"], "a token-billed model is charged no characters"
        assert rec["cost_micros"] == mini_cost(rec["usage"]["input_tokens"], audio)
    # aac states no length the gateway reads: the text's reading time (45 characters at 15 a second, 3 s).
    r = speak(client, {"model": "gpt-4o-mini-tts", "input": FOX, "response_format": "aac"}, headers={"x-mock-speech-ms": "7000"})
    assert client.record(r.headers["x-tollgate-request-id"])["usage"]["audio_output_tokens"] == 63


def test_an_sse_stream_is_priced_from_its_done_event(client):
    r = speak(client, {"model": "gpt-4o-mini-tts", "input": FOX, "stream_format": "sse", "response_format": "pcm"}, stream=True)
    assert r.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(line[6:]) for line in r.iter_lines(decode_unicode=True) if line.startswith("data: ")]
    assert [e["type"] for e in events][-1] == "speech.audio.done" and events[0]["type"] == "speech.audio.delta"
    assert sum(len(base64.b64decode(e["audio"])) for e in events[:-1]) == 3 * 48_000
    usage = events[-1]["usage"]
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert (rec["stream"], rec["usage_source"], rec["outcome"]) == (True, "provider", "ok"), rec
    assert (rec["usage"]["input_tokens"], rec["usage"]["output_tokens"], rec["usage"]["audio_output_tokens"]) == (usage["input_tokens"], usage["output_tokens"], usage["output_tokens"])
    assert rec["cost_micros"] == mini_cost(usage["input_tokens"], usage["output_tokens"])
    assert "stream_options" not in last_body(client), "nothing is added to a speech request"
    # tts-1 ignores sse and answers the audio (sfortis/openai_tts#73): charged its characters.
    r = speak(client, {"model": "tts-1", "input": FOX, "stream_format": "sse"})
    assert r.headers["content-type"] == "audio/mpeg"
    assert client.record(r.headers["x-tollgate-request-id"])["cost_micros"] == 675


def test_an_azure_client_speaks_on_its_deployment(stack, client):
    azure = openai.AzureOpenAI(azure_endpoint=stack.url, api_key=SEARCH_KEY, api_version="2025-03-01-preview", max_retries=0)
    raw = azure.audio.speech.with_raw_response.create(model="tts-1", voice="nova", input=FOX, response_format="wav")
    assert raw.content[:4] == b"RIFF" and raw.headers["x-mock-path"] == "/v1/audio/speech"
    rec = client.record(raw.headers["x-tollgate-request-id"])
    assert (rec["api"], rec["cost_micros"]) == ("openai_audio_speech", 675)


def test_a_long_answer_goes_on_unheld_and_whole(client):
    """4,096 characters of `pcm`: 273 s, 13 MB, more than the gateway holds
    (`max_response_bytes`): never held, measured as it passes."""
    text = ("All work and no play makes Jack a dull boy. " * 94)[:4096]
    before = mock_stats(client.stack)["output_tokens"]
    r = speak(client, {"model": "gpt-4o-mini-tts", "input": text, "response_format": "pcm"}, stream=True)
    size = sum(len(c) for c in r.iter_content(1 << 16))
    ms = round(4096 * 1000 / 15)
    assert size == ms * 48, size
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert rec["usage"]["audio_output_tokens"] == -(-ms // 48) == mock_stats(client.stack)["output_tokens"] - before
    assert rec["outcome"] == "ok"


def test_a_cut_answer_is_charged_the_audio_that_came(client):
    # pcm in 16 KiB pieces, the connection dropped after two.
    r = speak(client, {"model": "gpt-4o-mini-tts", "input": FOX * 3, "response_format": "pcm"}, headers={"x-mock-cut-after": "2"}, stream=True)
    try:
        got = sum(len(c) for c in r.iter_content(1 << 16))
    except requests.exceptions.RequestException:
        got = None
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert rec["outcome"] == "upstream_cut", rec
    # 32,768 bytes at 48,000 a second: 682 ms, 15 audio tokens.
    assert rec["usage"]["audio_output_tokens"] == 15, (got, rec)


def test_the_guardrails_read_the_text_and_leave_the_audio_alone(client):
    r = speak(client, {"model": "tts-1", "input": "Write to ops@example.com today."}, key=LABS_KEY)
    assert r.status_code == 200 and r.content[:2] == b"\xff\xf3", r.text[:200]
    assert "ops@example.com" not in last_body(client)["input"]


def test_what_cannot_be_spoken_is_refused_before_it_is_sent(client):
    served = mock_stats(client.stack)["requests"]
    for body, code, param in [
        ({"model": "tts-1"}, "missing_input", "input"),
        ({"model": "tts-1", "input": ["a", "b"]}, "invalid_type", "input"),
        ({"model": "tts-1", "input": FOX, "speed": 9}, "invalid_type", "speed"),
        ({"model": "tts-1", "input": FOX, "speed": "fast"}, "invalid_type", "speed"),
        ({"model": "gpt-4o-mini-tts", "input": FOX, "stream_format": "chunks"}, "invalid_type", "stream_format"),
        ({"model": "claude-sonnet-4-6", "input": FOX}, "wrong_api_for_model", "model"),
    ]:
        r = speak(client, body)
        assert r.status_code == 400, (body, r.status_code, r.text)
        err = r.json()["error"]
        assert (err["code"], err["param"]) == (code, param), (body, err)
    r = client.post("/v1/audio/speech", raw=b'{"model":"tts-1","input":"a","input":"b","voice":"alloy"}')
    assert r.json()["error"]["code"] == "duplicate_key"
    assert mock_stats(client.stack)["requests"] == served


def test_what_the_provider_refuses_costs_nothing(client):
    for body, param in [
        ({"model": "tts-1", "input": "x" * 4097}, "input"),
        ({"model": "tts-1", "input": FOX, "voice": "robot"}, "voice"),
        ({"model": "tts-1", "input": FOX, "stream": True}, None),
    ]:
        r = speak(client, body)
        assert r.status_code == 400 and r.json()["error"]["param"] == param, (body, r.text)
        rec = client.record(r.headers["x-tollgate-request-id"])
        assert (rec["outcome"], rec["cost_micros"]) == ("provider_error", 0), rec


def test_the_api_references_example_streams_the_audio_to_a_file(oai, client, tmp_path):
    """The API reference's Python example: `with_streaming_response` and
    `stream_to_file` (openai/openai-openapi, `/audio/speech`)."""
    path = tmp_path / "speech.mp3"
    with oai.audio.speech.with_streaming_response.create(model="gpt-4o-mini-tts", voice="alloy", input=FOX) as response:
        response.stream_to_file(path)
        request_id = response.headers["x-tollgate-request-id"]
    assert path.read_bytes()[:4] == b"\xff\xf3\x84\xc0" and path.stat().st_size == 125 * 192
    rec = client.record(request_id)
    # 3 s of MP3 at its header's 64 kbit/s: 63 audio tokens.
    assert (rec["usage"]["audio_output_tokens"], rec["outcome"]) == (63, "ok"), rec
