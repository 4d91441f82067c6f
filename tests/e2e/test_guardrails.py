"""Guardrails through Envoy with the demo policy (envoy/demo/envoy.yaml,
version demo-1: secrets, card numbers and SSNs blocked for everyone; IBANs
redacted; team labs also has e-mail and phone redacted and the codename
blocked): what the provider receives, what the client is told, what the
record keeps — and that no caught value appears in any log or answer."""
from __future__ import annotations

import json

import requests

from conftest import LABS_KEY, SEARCH_KEY, upstream_body

CARD = "4111 1111 1111 1111"
EMAIL = "maria.gonzalez@acme-corp.com"
SECRET = "sk-proj-4fJ8kL2mN9pQ1rS5tU7vW3xY6zA0bC8dE2fG"


def served(stack) -> int:
    return requests.get(stack.mock.url + "/mock/stats", timeout=5).json()["requests"]


def test_a_card_number_is_blocked_by_class_and_policy_and_never_sent(stack, client):
    before = served(stack)
    r = client.chat("openai/gpt-5.4", content=f"Charge {CARD} for the order.")
    assert r.status_code == 400
    e = r.json()["error"]
    assert e["code"] == "content_blocked" and "'card'" in e["message"] and "demo-1" in e["message"]
    assert CARD not in r.text and CARD.replace(" ", "") not in r.text
    assert served(stack) == before, "nothing reached the provider"
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert rec["guardrails"] == {"classes": {"card": 1}, "action": "blocked", "policy": "demo-1"}
    assert rec["cost_micros"] == 0


def test_a_secret_in_tool_call_arguments_is_blocked(client):
    msgs = [{"role": "user", "content": "deploy"},
            {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function",
             "function": {"name": "set_env", "arguments": json.dumps({"OPENAI_API_KEY": SECRET})}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "ok"}]
    r = client.post("/v1/chat/completions", {"model": "cheap", "messages": msgs})
    assert r.status_code == 400 and "'secret'" in r.json()["error"]["message"]
    assert SECRET not in r.text


def test_labs_email_and_phone_are_redacted_with_stable_placeholders(stack, client):
    text = f"Write to {EMAIL} or call +1 415 555 0132; again: {EMAIL}."
    r = client.chat("cheap", key=LABS_KEY, content=text)
    assert r.status_code == 200, r.text
    sent = upstream_body(stack)["messages"][0]["content"]
    assert sent == "Write to [EMAIL_1] or call [PHONE_1]; again: [EMAIL_1]."
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert rec["guardrails"] == {"classes": {"email": 2, "phone": 1}, "action": "redacted", "policy": "demo-1"}
    # the provider counted the redacted prompt: the record prices what was sent
    assert rec["usage"]["input_tokens"] == r.json()["usage"]["prompt_tokens"]


def test_the_same_email_from_another_team_is_observed_and_sent(stack, client):
    r = client.chat("cheap", key=SEARCH_KEY, content=f"Write to {EMAIL}.")
    assert r.status_code == 200
    assert EMAIL in upstream_body(stack)["messages"][0]["content"]
    rec = client.record(r.headers["x-tollgate-request-id"])
    assert rec["guardrails"]["action"] == "observed" and rec["guardrails"]["classes"] == {"email": 1}


def test_anthropic_system_prompts_and_custom_words_are_scanned(stack, client):
    r = client.messages("claude-sonnet-4-6", key=LABS_KEY, extra={"system": f"Escalations go to {EMAIL}."})
    assert r.status_code == 200, r.text
    assert upstream_body(stack)["system"] == "Escalations go to [EMAIL_1]."
    r = client.messages("claude-sonnet-4-6", key=LABS_KEY, content="Status of project bluebird?")
    assert r.status_code == 400 and "'codename'" in r.json()["error"]["message"]


def test_an_iban_is_redacted_for_everyone(stack, client):
    r = client.chat("openai/gpt-5.4", content="Pay DE89 3704 0044 0532 0130 00 today.")
    assert r.status_code == 200
    assert upstream_body(stack)["messages"][0]["content"] == "Pay [IBAN_1] today."


def test_a_body_the_guardrails_cannot_read_is_refused_not_sent_unchecked(stack, client):
    """JSON the request path reads (it skips members it does not use) but
    the guardrails' scan cannot: nested deeper than 128, a number out of
    range, a lone surrogate escape, a member given twice. Each went to the
    provider unchecked, the card number beside it with it (found by
    probing)."""
    deep = "[" * 200 + "1" + "]" * 200
    for extra, why in ((deep, "recursion limit"), ("1e400", "number out of range"), ('"\\ud800 x"', "hex escape")):
        before = served(stack)
        raw = ('{"model": "cheap", "messages": [{"role": "user", "content": "Charge %s now."}], "user": %s}' % (CARD, extra)).encode()
        r = client.post("/v1/chat/completions", raw=raw)
        assert r.status_code == 400, (why, r.text)
        e = r.json()["error"]
        assert e["code"] == "content_unreadable" and why in e["message"] and "demo-1" in e["message"], e
        assert CARD not in r.text and CARD.replace(" ", "") not in r.text
        assert served(stack) == before, f"{why}: nothing reaches the provider"
        rec = client.record(r.headers["x-tollgate-request-id"])
        assert (rec["outcome"], rec["error_code"], rec["cost_micros"]) == ("rejected", "content_unreadable", 0)
    # A member given twice in a message: the scan's JSON value kept the
    # last ("hi") and called it clean; the card number in the first went
    # upstream with the body (found by probing).
    before = served(stack)
    raw = ('{"model": "cheap", "messages": [{"role": "user", "content": "Charge %s now.", "content": "hi"}]}' % CARD).encode()
    r = client.post("/v1/chat/completions", raw=raw)
    assert r.status_code == 400 and r.json()["error"]["code"] == "content_unreadable", r.text
    assert "'content' is given twice" in r.json()["error"]["message"] and CARD not in r.text, r.text
    assert served(stack) == before, "nothing reaches the provider"
    # The same on Anthropic's API, and on a token count (an attempt the audit keeps).
    raw = ('{"model": "claude-sonnet-4-6", "max_tokens": 64, "messages": [{"role": "user", "content": "Charge %s."}], '
           '"metadata": {"user_id": 1e400}}' % CARD).encode()
    for path in ("/v1/messages", "/v1/messages/count_tokens"):
        r = client.post(path, raw=raw, auth="x-api-key", headers={"anthropic-version": "2023-06-01"})
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error", (path, r.text)
        assert "content_unreadable" in r.text and CARD not in r.text, r.text
        assert client.record(r.headers["x-tollgate-request-id"])["error_code"] == "content_unreadable"


def test_no_caught_value_appears_in_any_log(stack):
    log = stack.envoy.log() + (stack.access_log.read_text() if stack.access_log.exists() else "")
    for v in (CARD, CARD.replace(" ", ""), EMAIL, SECRET, "DE89 3704 0044 0532 0130 00"):
        assert v not in log, v


def test_the_audit_answers_who_sent_card_numbers_where_in_one_command(stack, client):
    """After the blocked card number above: the control service's audit, its JSONL export and the CLI."""
    import os
    import subprocess
    import time

    import stack as sm
    deadline = time.monotonic() + 15
    while True:
        _, body = stack.control.api("GET", "/v1/audit?class=card", expect=200)
        rows = [r for r in body["rows"] if r["team"] == "search" and r["provider"] == "openai"]
        if rows:
            break
        assert time.monotonic() < deadline, body
        time.sleep(0.2)
    assert rows[0]["action"] == "blocked" and rows[0]["requests"] >= 1 and rows[0]["values"] >= 1
    r = requests.get(stack.control.url + "/v1/audit/findings?class=card&format=jsonl",
                     headers={"authorization": f"Bearer {sm.ADMIN_TOKEN}"}, timeout=10)
    lines = [json.loads(x) for x in r.text.splitlines()]
    assert lines and all(x["class"] == "card" for x in lines)
    assert CARD not in r.text and CARD.replace(" ", "") not in r.text
    env = {**os.environ, "TOLLGATE_URL": stack.control.url, "TOLLGATE_ADMIN_TOKEN": sm.ADMIN_TOKEN}
    p = subprocess.run([str(sm.TOLLGATE_BIN), "audit", "--class", "card"], capture_output=True, text=True, env=env, timeout=30)
    assert p.returncode == 0, p.stderr
    assert "search" in p.stdout and "openai" in p.stdout and "blocked" in p.stdout
    # bad filters are refused, not ignored
    status, body = stack.control.api("GET", "/v1/audit?action=shredded")
    assert status == 400
