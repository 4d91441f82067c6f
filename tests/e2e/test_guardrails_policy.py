"""A guardrail policy put on the control service reaches Envoy within
seconds and reads answers: the request's placeholders are given back to
the client (JSON and streams, OpenAI and Anthropic SDKs, placeholders
split across stream events by a model that echoes 3 characters a token),
values the model generates are redacted, and the audit keeps request and
answer findings apart. Clearing it hands control back to the Envoy
configuration's policy (demo-1), which the other test files rely on."""
from __future__ import annotations

import json
import time

import anthropic
import openai
import pytest
import requests

import stack as sm
from conftest import LABS_KEY, SEARCH_KEY, read_until_cut, upstream_body

EMAIL = "maria.gonzalez@acme-corp.com"
POLICY = {
    "version": "central-2",
    "actions": {"email": "redact"},
    "responses": "redact",
    "restore": True,
    "custom": [{"name": "ticket", "pattern": "TCK-[0-9]{5}"}],
    "teams": {"labs": {"ticket": "block"}},
}


def policy_in_force(client) -> str | None:
    r = client.chat("cheap", key=SEARCH_KEY, content=f"Write to {EMAIL}.")
    assert r.status_code == 200, r.text
    return (client.record(r.headers["x-tollgate-request-id"]).get("guardrails") or {}).get("policy")


def wait_for_policy(client, version: str, timeout: float = 20.0) -> float:
    t0 = time.monotonic()
    while policy_in_force(client) != version:
        assert time.monotonic() - t0 < timeout, f"policy {version} not in force after {timeout} s"
        time.sleep(0.2)
    took = time.monotonic() - t0
    # That was one worker; the others read the policy on their 500 ms tick.
    # The next request (and the next test) may land on any of them.
    time.sleep(0.6)
    return took


@pytest.fixture(scope="module")
def central(stack, client):
    t0 = time.monotonic()
    _, doc = stack.control.api("PUT", "/v1/guardrails", POLICY, expect=200)
    assert doc["policy"]["version"] == "central-2" and doc["seq"] >= 1
    wait_for_policy(client, "central-2")
    took = time.monotonic() - t0 - 0.6
    print(f"guardrail policy propagation: {took:.2f} s (poll 1 s, worker tick 1 s)")
    yield took
    stack.control.api("DELETE", "/v1/guardrails", expect=200)
    wait_for_policy(client, "demo-1")


def test_the_policy_reaches_envoy_within_seconds(central):
    assert central < 10


def test_a_bad_policy_is_refused_with_the_field_named(stack):
    status, body = stack.control.api("PUT", "/v1/guardrails", {"custom": [{"name": "x", "pattern": "("}]})
    assert status == 400 and "custom[0].pattern" in body["error"]["message"], body
    status, body = stack.control.api("PUT", "/v1/guardrails", {"teams": {"labs": {"passport": "block"}}})
    assert status == 400 and "teams.labs" in body["error"]["message"], body
    r = requests.put(stack.control.url + "/v1/guardrails", data=b'{"actions": {"card": "block", "card": "observe"}}',
                     headers={"authorization": f"Bearer {sm.ADMIN_TOKEN}"}, timeout=10)
    assert r.status_code == 400 and "twice" in r.text, r.text
    # the fleet token reads it (Envoys fetch it) but cannot change it
    status, _ = stack.control.api("PUT", "/v1/guardrails", POLICY, token=sm.FILTER_TOKEN)
    assert status in (401, 403)


def test_placeholders_are_restored_in_a_json_answer(stack, client, central):
    r = client.chat("cheap", key=SEARCH_KEY, content=f"Write to {EMAIL} about TCK-12345 today.",
                    headers={"x-mock-echo": "1"})
    assert r.status_code == 200, r.text
    assert upstream_body(stack)["messages"][0]["content"] == "Write to [EMAIL_1] about TCK-12345 today."
    assert r.json()["choices"][0]["message"]["content"] == f"Write to {EMAIL} about TCK-12345 today."
    assert int(r.headers["content-length"]) == len(r.content)
    g = client.record(r.headers["x-tollgate-request-id"])["guardrails"]
    assert g["classes"] == {"email": 1, "ticket": 1} and g["action"] == "redacted" and g["policy"] == "central-2"
    assert g["restored"] == 1, g
    # the echoed ticket number (observed in requests) is found again in the answer; the restored e-mail is not a finding
    assert g["response_classes"] == {"ticket": 1} and g["response_action"] == "observed", g


def test_placeholders_split_across_stream_events_are_restored_for_the_openai_sdk(stack, central):
    oa = openai.OpenAI(base_url=stack.url + "/v1", api_key=SEARCH_KEY, max_retries=0)
    text = f"Ask {EMAIL} and {EMAIL.upper().replace('MARIA', 'jo')} first."
    chunks = list(oa.chat.completions.create(model="cheap", messages=[{"role": "user", "content": text}], stream=True,
                                             extra_headers={"x-mock-echo": "1"}))
    got = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert got == text
    assert "[EMAIL_" in upstream_body(stack)["messages"][0]["content"]


def test_placeholders_are_restored_for_the_anthropic_sdk_stream(stack, central):
    an = anthropic.Anthropic(base_url=stack.url, api_key=LABS_KEY, max_retries=0)
    text = f"Forward this to {EMAIL}, thanks."
    with an.messages.stream(model="claude-sonnet-4-6", max_tokens=400, messages=[{"role": "user", "content": text}],
                            extra_headers={"x-mock-echo": "1"}) as s:
        got = "".join(s.text_stream)
        final = s.get_final_message()
    assert got == text and final.content[0].text == text
    assert upstream_body(stack)["messages"][0]["content"] == "Forward this to [EMAIL_1], thanks."


def test_values_the_model_generates_are_redacted_and_audited_as_answers(stack, client, central):
    say = "Reach bob.smith@example.org, card 4111 1111 1111 1111."
    r = client.chat("cheap", key=SEARCH_KEY, content="Who do I contact?", headers={"x-mock-say": say})
    assert r.status_code == 200
    assert r.json()["choices"][0]["message"]["content"] == "Reach [EMAIL_1], card [CARD_1]."
    g = client.record(r.headers["x-tollgate-request-id"])["guardrails"]
    assert g["classes"] == {} and g["action"] == "none"
    assert g["response_classes"] == {"email": 1, "card": 1} and g["response_action"] == "redacted"
    # the same, streamed
    r = client.chat("cheap", key=SEARCH_KEY, content="Who do I contact?", headers={"x-mock-say": say},
                    extra={"stream": True}, stream=True)
    got = ""
    for line in r.iter_lines():
        if line.startswith(b"data: {"):
            for c in json.loads(line[6:])["choices"]:
                got += c["delta"].get("content") or ""
    assert got == "Reach [EMAIL_1], card [CARD_1]."
    deadline = time.monotonic() + 15
    while True:
        _, body = stack.control.api("GET", "/v1/audit?direction=response&class=card", expect=200)
        if any(x["team"] == "search" and x["action"] == "redacted" and x["direction"] == "response" for x in body["rows"]):
            break
        assert time.monotonic() < deadline, body
        time.sleep(0.2)
    log = stack.envoy.log()
    assert "bob.smith@example.org" not in log and "4111 1111 1111 1111" not in log


def test_a_team_override_from_the_central_policy_blocks(client, central):
    r = client.chat("cheap", key=LABS_KEY, content="Close TCK-54321 please.")
    assert r.status_code == 400
    e = r.json()["error"]
    assert e["code"] == "content_blocked" and "'ticket'" in e["message"] and "central-2" in e["message"]
    assert "TCK-54321" not in r.text


def test_the_cli_shows_the_policy_in_force(stack, central):
    import os
    import subprocess
    env = {**os.environ, "TOLLGATE_URL": stack.control.url, "TOLLGATE_ADMIN_TOKEN": sm.ADMIN_TOKEN}
    p = subprocess.run([str(sm.TOLLGATE_BIN), "guardrails", "show"], capture_output=True, text=True, env=env, timeout=30)
    assert p.returncode == 0, p.stderr
    assert "policy central-2" in p.stdout and '"restore": true' in p.stdout, p.stdout
    bad = stack.dir / "bad-policy.json" if hasattr(stack, "dir") else None
    path = bad or (sm.ROOT / ".tollgate" / "bad-policy.json")
    path.parent.mkdir(exist_ok=True)
    path.write_text('{"custom": [{"name": "x", "pattern": "["}]}')
    p = subprocess.run([str(sm.TOLLGATE_BIN), "guardrails", "set", str(path)], capture_output=True, text=True, env=env, timeout=30)
    assert p.returncode != 0 and "custom[0].pattern" in (p.stderr + p.stdout), (p.stdout, p.stderr)


def unread_error_event(r) -> dict:
    """The stream a redacting policy ended: whole events, the last one an
    error saying why, nothing of the provider's after it."""
    blocks = [b for b in r.content.decode().split("\n\n") if b]
    assert all(b.startswith("data: {") for b in blocks), [b[:80] for b in blocks[-3:]]
    err = json.loads(blocks[-1][6:])
    assert err["error"]["code"] == "answer_unreadable" and "central-2" in err["error"]["message"], err
    assert not any(b == "data: [DONE]" for b in blocks)
    return err


def test_hostile_answers_while_answers_are_read(stack, client, central):
    # an endless event: the policy redacts answers, so one it cannot hold
    # whole is not passed on (before: in fragments, unscanned); the stream
    # ends with an error event, and memory stays bounded by the splitters
    r = client.chat("cheap", extra={"stream": True}, headers={"x-mock-endless-event": str(16 << 20)})
    assert r.status_code == 200 and len(r.content) < 1 << 20, len(r.content)
    assert "larger than the gateway reads" in unread_error_event(r)["error"]["message"]
    # (what the answer itself says comes first: this provider never finished)
    assert client.record(r.headers["x-tollgate-request-id"])["error_code"] == "stream_cut"
    # a stream cut mid-way: the record is written, the worker serves on
    r = client.chat("cheap", content=f"Mail {EMAIL} now", extra={"stream": True}, stream=True,
                    headers={"x-mock-echo": "1", "x-mock-cut-after": "4"})
    read_until_cut(r)
    assert client.record(r.headers["x-tollgate-request-id"])["outcome"] != "ok"
    # a provider that compresses although not asked: decoded, restored, sent on decoded (before: passed on unread)
    for stream in (False, True):
        r = client.chat("cheap", content=f"Mail {EMAIL} now", extra={"stream": stream}, stream=stream,
                        headers={"x-mock-gzip": "1", "x-mock-echo": "1"})
        assert r.status_code == 200 and "content-encoding" not in r.headers
        if stream:
            text = "".join(c["delta"].get("content") or "" for line in r.iter_lines() if line.startswith(b"data: {")
                           for c in json.loads(line[6:])["choices"])
        else:
            text = r.json()["choices"][0]["message"]["content"]
        assert text == f"Mail {EMAIL} now", (stream, text)
        assert client.record(r.headers["x-tollgate-request-id"])["guardrails"]["restored"] == 1
    # a compressed guarded stream that turns invalid halfway: whole events restored, then one error event
    r = client.chat("cheap", content=f"Mail {EMAIL} now " * 40, extra={"stream": True}, stream=True,
                    headers={"x-mock-gzip": "corrupt", "x-mock-echo": "1"})
    blocks = [b for b in r.content.decode().split("\n\n") if b]
    assert all(b.startswith("data: {") for b in blocks), blocks[-3:]
    events = [json.loads(b[6:]) for b in blocks]
    assert [i for i, e in enumerate(events) if "error" in e] == [len(events) - 1], blocks[-2:]
    assert "not valid gzip or deflate data" in events[-1]["error"]["message"]
    text = "".join(c["delta"].get("content") or "" for e in events[:-1] for c in e["choices"])
    assert text and f"Mail {EMAIL} now ".startswith(text[:20]) and "[EMAIL" not in text, text[:200]
    # an error answer is not rewritten
    r = client.chat("cheap", content=f"Mail {EMAIL}", headers={"x-mock-status": "400"})
    assert r.status_code == 400 and EMAIL not in r.text
    r = client.chat("cheap", content="still serving?")
    assert r.status_code == 200


def test_an_answer_the_redacting_policy_cannot_read_is_not_passed_on(stack, client, central):
    """The policy redacts values the model generates. An answer it cannot
    read — JSON nested deeper than a scan holds, an encoding the gateway
    cannot decode — used to go to the client as it came, card number and
    all. Now a JSON answer becomes a 502 the SDK reads (not retried: the
    provider billed it), a stream ends with an error event; the record
    says why and keeps the provider's usage."""
    say = "Reach bob.smith@example.org, card 4111 1111 1111 1111."
    hidden = ("4111", "bob.smith@example.org")
    oa = openai.OpenAI(base_url=stack.url + "/v1", api_key=SEARCH_KEY, max_retries=0)
    # (the record's code: why the client did not get it, unless the answer's
    # own reading has a reason first: usage estimated from a br body's size)
    for hostile, code in (({"x-mock-unreadable": "1"}, "answer_unreadable"),
                          ({"x-mock-content-encoding": "br"}, "usage_unreadable:content_encoding")):
        with pytest.raises(openai.APIStatusError) as e:
            oa.chat.completions.create(model="cheap", messages=[{"role": "user", "content": "Who?"}],
                                       extra_headers={"x-mock-say": say, **hostile})
        r = e.value.response
        assert r.status_code == 502 and r.headers["x-should-retry"] == "false", (hostile, r.status_code, r.headers)
        assert e.value.code == "answer_unreadable" and "central-2" in e.value.message, e.value.body
        assert not any(h in r.text for h in hidden) and int(r.headers["content-length"]) == len(r.content)
        rec = client.record(r.headers["x-tollgate-request-id"])
        assert (rec["status"], rec["error_code"]) == (502, code), (hostile, rec)
        assert rec["usage"]["output_tokens"] > 0 and rec["cost_micros"] > 0, rec
    # streamed: nothing of the unreadable events, one error event in their place
    r = client.chat("cheap", key=SEARCH_KEY, content="Who?", extra={"stream": True},
                    headers={"x-mock-say": say, "x-mock-unreadable": "1"})
    assert r.status_code == 200 and not any(h in r.text for h in hidden), r.text[:300]
    assert "not JSON the scan can read" in unread_error_event(r)["error"]["message"]
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert rec["error_code"] == "answer_unreadable" and rec["usage"]["output_tokens"] > 0, rec
    # a stream in an encoding the gateway cannot decode: the same 502 before any byte
    r = client.chat("cheap", key=SEARCH_KEY, content="Who?", extra={"stream": True},
                    headers={"x-mock-say": say, "x-mock-content-encoding": "br"})
    assert r.status_code == 502 and r.json()["error"]["code"] == "answer_unreadable", r.text[:300]
    # an Anthropic client's stream: its SDK raises the error event
    an = anthropic.Anthropic(base_url=stack.url, api_key=LABS_KEY, max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as e:
        with an.messages.stream(model="claude-sonnet-4-6", max_tokens=400, messages=[{"role": "user", "content": "Who?"}],
                                extra_headers={"x-mock-say": say, "x-mock-unreadable": "1"}) as s:
            "".join(s.text_stream)
    assert "redacts answers" in str(e.value) and not any(h in str(e.value) for h in hidden), e.value
    # what the policy can read is redacted as ever
    r = client.chat("cheap", key=SEARCH_KEY, content="Who?", headers={"x-mock-say": say})
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "Reach [EMAIL_1], card [CARD_1]."
