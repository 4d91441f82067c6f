"""Prompt caching you can keep: on a route with `auto_cache`, the gateway
adds Anthropic `cache_control` breakpoints the client did not, where the
prefix is long enough; the strict mock refuses what the real API refuses
(more than 4 markers, a bad ttl) and says how many markers arrived
(`x-mock-cache-breakpoints`)."""
from __future__ import annotations

import json

import pytest

import stack as sm
from conftest import Client

SYSTEM = "You answer questions about the handbook. " * 200  # ~8 KB: well over 1,024 tokens


@pytest.fixture(scope="module")
def cached(tmp_path_factory):
    def patch(pc):
        for r in pc["routes"]:
            if r["model"] == "claude-*":
                r["auto_cache"] = {"min_tokens": 1024}
    s = sm.Stack(tmp_path_factory.mktemp("caching"), plugin_patch=patch)
    yield s
    s.stop()


def conversation(system=SYSTEM, **extra) -> dict:
    return {"system": system, "messages": [
        {"role": "user", "content": "What is the leave policy?"},
        {"role": "assistant", "content": [{"type": "text", "text": "Twenty-five days."}]},
        {"role": "user", "content": "And for part-time staff?"}], **extra}


def send(s: sm.Stack, model: str, extra: dict):
    body = {"model": model, "max_tokens": 64, **extra}
    return Client(s).post("/v1/messages", body, auth="x-api-key")


def test_breakpoints_are_added_after_the_system_prompt_and_the_conversation_so_far(cached):
    r = send(cached, "claude-sonnet-4-6", conversation())
    assert r.status_code == 200, r.text
    assert r.headers["x-mock-cache-breakpoints"] == "2"  # system + the assistant turn before the newest question


def test_a_client_that_marks_its_own_caching_is_left_alone(cached):
    own = conversation(system=[{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}])
    r = send(cached, "claude-sonnet-4-6", own)
    assert r.status_code == 200 and r.headers["x-mock-cache-breakpoints"] == "1", "the client's markers are left as they are"


def test_short_prompts_and_routes_without_the_option_are_sent_as_they_came(cached):
    r = send(cached, "claude-sonnet-4-6", conversation(system="Be brief."))
    assert r.status_code == 200 and r.headers["x-mock-cache-breakpoints"] == "0", "below the provider's minimum"
    r = send(cached, "anthropic/claude-sonnet-4-6", conversation())
    assert r.status_code == 200 and r.headers["x-mock-cache-breakpoints"] == "0", "that route did not opt in"


def test_the_mock_refuses_more_than_four_markers_as_anthropic_does(cached):
    cc = {"type": "ephemeral"}
    blocks = [{"type": "text", "text": f"part {i}", "cache_control": cc} for i in range(5)]
    r = send(cached, "anthropic/claude-sonnet-4-6", {"messages": [{"role": "user", "content": blocks}]})
    assert r.status_code == 400
    assert "A maximum of 4 blocks with cache_control" in json.dumps(r.json())


def test_a_cache_write_and_a_read_are_priced_and_their_saving_recorded(cached):
    c = Client(cached)
    body = {"model": "claude-sonnet-4-6", "max_tokens": 64, **conversation()}
    r = c.post("/v1/messages", body, auth="x-api-key", headers={"x-mock-cache-write-tokens": "2000"})
    write = c.record(r.headers["x-tollgate-request-id"])
    r = c.post("/v1/messages", body, auth="x-api-key", headers={"x-mock-cached-tokens": "2000"})
    read = c.record(r.headers["x-tollgate-request-id"])
    assert write["usage"]["cache_write_tokens"] == 2000 and write["cache_savings_micros"] < 0, "a write costs 1.25x"
    assert read["usage"]["cached_input_tokens"] == 2000 and read["cache_savings_micros"] > 0
    # Sonnet: input $3, cached $0.30 per million: 2000 cached tokens save 2000 * 2.7 = 5400 micro-dollars
    assert read["cache_savings_micros"] == 5400
