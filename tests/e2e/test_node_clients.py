"""The stock JavaScript clients through Envoy: the OpenAI, Anthropic and
Google SDKs for Node and the Vercel AI SDK (its OpenAI provider speaks the
Responses API by default), each as an application uses it (tests/node/clients.mjs,
versions pinned in tests/node/package-lock.json). Every answer the client
read must be the one recorded and priced: its request id, its usage."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import SEARCH_KEY, expected_cost

NODE_DIR = Path(__file__).resolve().parents[1] / "node"


@pytest.fixture(scope="module")
def node_results(stack):
    node = shutil.which("node")
    assert node, "node is installed by make setup (tests/tools/setup.sh)"
    assert (NODE_DIR / "node_modules" / "openai").is_dir(), "npm ci in tests/node is run by make setup"
    env = {**os.environ, "TOLLGATE_URL": stack.url, "TOLLGATE_KEY": SEARCH_KEY}
    out = subprocess.run([node, str(NODE_DIR / "clients.mjs")], cwd=NODE_DIR, env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    results = {r["name"]: r for r in map(json.loads, out.stdout.splitlines())}
    return results


GENERATIONS = ["openai_chat", "openai_chat_stream", "openai_responses", "openai_responses_stream", "openai_embeddings",
               "anthropic_messages", "anthropic_stream", "gemini_generate", "gemini_stream", "gemini_embed",
               "gemini_legacy_generate", "gemini_legacy_stream", "gemini_legacy_embed", "azure_chat",
               "vercel_azure_responses", "vercel_azure_deployment_chat",
               "vercel_openai_responses", "vercel_openai_chat_stream", "vercel_anthropic", "vercel_anthropic_stream", "vercel_embed",
               "vercel_openai_to_claude", "openai_images", "vercel_image", "openai_image_edit", "vercel_image_edit"]


@pytest.mark.parametrize("name", GENERATIONS)
def test_a_node_clients_answer_is_the_one_recorded(node_results, client, name):
    r = node_results[name]
    assert r["ok"], r
    assert r.get("text", "x") and r.get("dims", 1) > 0, r
    assert r["id"], f"{name}: the client can read x-tollgate-request-id"
    rec = client.record(r["id"])
    assert rec["outcome"] == "ok" and rec["usage_source"] == "provider", rec
    u = rec["usage"]
    assert (u["input_tokens"], u["output_tokens"]) == (r["input"], r["output"]), (rec, r)
    assert rec["cost_micros"] > 0


def test_node_clients_transcribe_priced_as_their_model_bills(node_results, client):
    """openai-node's `audio.transcriptions.create` (whisper-1, word and
    segment timestamps: `timestamp_granularities[]` twice in the form) and
    the Vercel AI SDK's `experimental_transcribe` (gpt-4o-mini-transcribe),
    each uploading a WAV of 8.47 seconds."""
    r = node_results["openai_transcription"]
    assert r["ok"] and r["text"] and r["seconds"] == 9 and r["words"] > 0, r
    rec = client.record(r["id"])
    assert (rec["api"], rec["usage_source"], rec["usage"]["audio_input_ms"], rec["cost_micros"]) == ("openai_audio_transcriptions", "provider", 9_000, 900), rec
    v = node_results["vercel_transcribe"]
    assert v["ok"] and v["text"], v
    rec = client.record(v["id"])
    # 85 audio tokens at $3 a million, the prompt's 3 at $1.25, the words at $5.
    u = rec["usage"]
    assert (rec["usage_source"], u["audio_input_tokens"], u["input_tokens"]) == ("provider", 85, 88), rec
    assert rec["cost_micros"] == -(-(85 * 3_000_000 + 3 * 1_250_000 + u["output_tokens"] * 5_000_000) // 1_000_000)


def test_node_clients_speak(node_results, client):
    """openai-node's `audio.speech.create` (gpt-4o-mini-tts, `wav`) and the
    Vercel AI SDK's `experimental_generateSpeech` (tts-1): the audio whole,
    charged as each model bills it."""
    r = node_results["openai_speech"]
    # The mock's 3 s at 24 kHz 16-bit mono, behind a 44-byte header.
    assert r["ok"] and r["riff"] == "RIFF" and r["bytes"] == 44 + 3 * 48_000, r
    rec = client.record(r["id"])
    u = rec["usage"]
    # 63 audio tokens (3 s, one each 48 ms) at $12 a million, the text at $0.60.
    assert (rec["api"], u["audio_output_tokens"], u["output_tokens"]) == ("openai_audio_speech", 63, 63), rec
    assert rec["cost_micros"] == -(-(u["input_tokens"] * 600_000 + 63 * 12_000_000) // 1_000_000)
    v = node_results["vercel_speech"]
    assert v["ok"] and v["bytes"] == 125 * 192 and v["mediaType"] == "audio/mpeg", v
    rec = client.record(v["id"])
    assert (rec["usage"]["input_characters"], rec["cost_micros"]) == (45, 675), rec


def test_node_clients_keep_responses_and_conversations_at_the_provider(node_results):
    """openai-node's `responses.retrieve`, `inputItems.list`, `delete` and
    `conversations.*` through the gateway, with the provider's key."""
    r = node_results["openai_stored"]
    assert r["ok"] and r["same"] and r["gone"] and r["deleted"], r
    assert r["input"] == ["Say hello in five words"], r
    assert r["kept"] == ["Hello!", "And then?", r["turn"]], r


def test_node_clients_run_a_batch_charged_to_their_key_when_it_ends(node_results, client):
    """openai-node's `files.create` (purpose batch, scanned under the demo's
    guardrails), `batches.create` and `retrieve` through the gateway; the
    batch's charge is recorded once it ended, at the batch price."""
    r = node_results["openai_batch"]
    assert r["ok"] and (r["status"], r["model"], r["team"], r["rows"]) == ("completed", "gpt-5.4", "search", ["row-0", "row-1"]), r
    rec = client.record(f"tg-batch-{r['batch']}")
    assert (rec["usage"]["input_tokens"], rec["usage"]["output_tokens"], rec["service_tier"]) == (r["input"], r["output"], "batch"), rec
    assert rec["cost_micros"] == expected_cost("openai/gpt-5.4", r["input"], r["output"], percent=50) > 0, rec


def test_openai_node_runs_a_background_response_charged_once_it_ended(node_results, client):
    """openai-node's `responses.create({background: true})`, `retrieve` until it
    ended and `retrieve(id, {stream: true, starting_after})`: charged once, to the
    key that created it."""
    r = node_results["openai_background"]
    assert r["ok"] and (r["queued"], r["status"], r["team"], r["last"]) == ("queued", "completed", "search", "response.completed"), r
    rec = client.record(f"tg-bg-{r['response']}")
    assert (rec["usage"]["input_tokens"], rec["usage"]["output_tokens"], rec["team"]) == (r["input"], r["output"], "search"), rec
    assert rec["cost_micros"] == expected_cost("openai/gpt-5.4", r["input"], r["output"], cached=r["cached"]) > 0, rec


def test_node_clients_list_and_count(node_results):
    for name in ["openai_models", "anthropic_models", "gemini_models"]:
        assert node_results[name]["ok"], node_results[name]
    assert "default" in node_results["openai_models"]["models"]
    assert "anthropic/claude-sonnet-4-6" in node_results["anthropic_models"]["models"]
    assert "models/gemini-2.5-flash" in node_results["gemini_models"]["models"]
    # (Google's legacy SDK counts in the whole-request form, refused 400
    # missing_contents before: it sends `generateContentRequest`.)
    for name in ["anthropic_count_tokens", "gemini_count_tokens", "gemini_legacy_count_tokens"]:
        assert node_results[name]["ok"] and node_results[name]["counted"] > 0, node_results[name]


def test_a_node_client_that_aborts_a_stream_is_recorded_as_aborted(node_results, client):
    r = node_results["openai_stream_aborted"]
    assert r["ok"] and r["chunks"] == 1, r
    rec = client.record(r["id"])
    assert (rec["outcome"], rec["error_code"]) == ("client_aborted", "client_aborted"), rec
    assert rec["usage"]["input_tokens"] > 0 and rec["cost_micros"] > 0, "what was read is charged, never a silent zero"
