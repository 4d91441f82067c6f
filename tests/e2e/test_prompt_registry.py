"""The prompt registry end to end: versions pushed with the CLI, requests
from the stock OpenAI and Anthropic SDKs that name a prompt instead of
carrying it, rendered by the filter from the registry synced to Envoy,
records tagged name@version#hash, a label moved (and moved back) reaching
the next request within 2 s, clear 400s for every mistake."""
from __future__ import annotations

import json
import os
import subprocess
import time

import anthropic
import openai
import pytest
import requests

import stack as sm
from conftest import LABS_KEY, SEARCH_KEY

SYSTEM_V1 = "You are the support assistant of Acme Corp. " + "Answer from the handbook. " * 200
SYSTEM_V2 = "You are the support assistant of Acme Corp. Be brief. " + "Answer from the handbook. " * 200


def cli(stack, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "TOLLGATE_URL": stack.control.url, "TOLLGATE_ADMIN_TOKEN": sm.ADMIN_TOKEN}
    return subprocess.run([str(sm.TOLLGATE_BIN), *args], capture_output=True, text=True, env=env, timeout=30, input=input)


def last_upstream(stack) -> dict:
    return requests.get(stack.mock.url + "/mock/last-body", timeout=5).json()


def ask(client, key=SEARCH_KEY, **prompt) -> requests.Response:
    body = {"model": "cheap", "messages": [{"role": "user", "content": "Where is my order?"}],
            "tollgate_prompt": {"name": "support", "variables": {"customer": "Ann"}, **prompt}}
    return client.post("/v1/chat/completions", body, key=key)


@pytest.fixture(scope="module")
def registry(stack, client, tmp_path_factory):
    d = tmp_path_factory.mktemp("prompts")
    v1 = d / "v1.json"
    v1.write_text(json.dumps({"system": SYSTEM_V1, "messages": [{"role": "user", "content": "Customer {{customer}} writes:"}]}))
    p = cli(stack, "prompts", "push", "support", str(v1), "--label", "production", "--by", "ann", "--note", "first")
    assert p.returncode == 0, p.stderr
    assert "new version support@1#" in p.stdout and "label production → 1" in p.stdout, p.stdout
    v2 = d / "v2.json"
    v2.write_text(json.dumps({"system": SYSTEM_V2, "messages": [{"role": "user", "content": "Customer {{customer}} ({{tier}}) writes:"}]}))
    p = cli(stack, "prompts", "push", "support", str(v2), "--label", "staging", "--by", "bob")
    assert p.returncode == 0 and "support@2#" in p.stdout, p.stderr + p.stdout
    # the same content again is the same version
    p = cli(stack, "prompts", "push", "support", str(v1))
    assert "unchanged: same content as support@1#" in p.stdout, p.stdout
    # Both pushes in force: the Envoy may have fetched the registry between
    # them, and the second comes with its next state poll.
    t0 = time.monotonic()
    while (r := ask(client)).status_code != 200 or \
            (r := ask(client, label="staging", variables={"customer": "Ann", "tier": "gold"})).status_code != 200:
        assert time.monotonic() - t0 < 10, r.text
        time.sleep(0.1)
    print(f"registry in force {time.monotonic() - t0:.2f} s after the push")
    # That was one worker; every worker reads the registry on its 500 ms tick.
    time.sleep(0.6)
    return stack.control.api("GET", "/v1/prompts/support", expect=200)[1]


def test_the_openai_sdk_names_a_prompt_and_the_provider_gets_it_rendered(stack, client, registry):
    oa = openai.OpenAI(base_url=stack.url + "/v1", api_key=SEARCH_KEY, max_retries=0)
    r = oa.chat.completions.with_raw_response.create(
        model="cheap", messages=[{"role": "user", "content": "Where is my order?"}],
        extra_body={"tollgate_prompt": {"name": "support", "variables": {"customer": "Ann"}}})
    assert r.parse().choices[0].message.content
    sent = last_upstream(stack)
    assert sent["messages"] == [{"role": "system", "content": SYSTEM_V1}, {"role": "user", "content": "Customer Ann writes:"},
                                {"role": "user", "content": "Where is my order?"}]
    assert "tollgate_prompt" not in sent
    rec = client.record(r.headers["x-tollgate-request-id"])
    tag = registry["versions"][0]["tag"]
    assert rec["prompt_version"] == tag and tag.startswith("support@1#") and len(tag) == len("support@1#") + 8
    # the record prices what was sent: the rendered prompt's tokens
    assert rec["usage"]["input_tokens"] > len(SYSTEM_V1) // 4


def test_the_anthropic_sdk_gets_the_system_prompt_from_the_registry(stack, client, registry):
    an = anthropic.Anthropic(base_url=stack.url, api_key=LABS_KEY, max_retries=0)
    r = an.messages.with_raw_response.create(
        model="claude-sonnet-4-6", max_tokens=100, messages=[{"role": "user", "content": "Hi"}],
        extra_body={"tollgate_prompt": {"name": "support", "label": "staging", "variables": {"customer": "Bo", "tier": "gold"}}})
    assert r.parse().content
    sent = last_upstream(stack)
    assert sent["system"] == SYSTEM_V2 and sent["messages"][0] == {"role": "user", "content": "Customer Bo (gold) writes:"}
    assert client.record(r.headers["x-tollgate-request-id"])["prompt_version"].startswith("support@2#")


def test_moving_a_label_changes_the_next_request_within_2_s_and_moving_it_back_rolls_back(stack, client, registry):
    for target, expect, variables in ((2, SYSTEM_V2, {"customer": "Ann", "tier": "gold"}), (1, SYSTEM_V1, {"customer": "Ann"})):
        p = cli(stack, "prompts", "label", "support", "production", str(target), "--by", "carol")
        assert p.returncode == 0, p.stderr
        t0 = time.monotonic()
        while True:
            r = ask(client, variables=variables)
            if r.status_code == 200 and last_upstream(stack)["messages"][0]["content"] == expect:
                break
            assert time.monotonic() - t0 < 2.0, f"label move to {target} not in force after 2 s: {r.status_code} {r.text[:200]}"
            time.sleep(0.05)
        took = time.monotonic() - t0
        print(f"label production -> {target}: in force after {took:.2f} s")
        assert client.record(r.headers["x-tollgate-request-id"])["prompt_version"].startswith(f"support@{target}#")
        # That was one worker; the others read the registry on their 500 ms
        # tick. The next step (and the next test) may land on any of them.
        time.sleep(0.6)


def test_every_mistake_is_a_clear_400(client, registry):
    for prompt, code in (({"name": "nope"}, "prompt_not_found"), ({"label": "canary"}, "prompt_label_not_found"),
                         ({"version": 7}, "prompt_version_not_found"), ({"variables": {}}, "prompt_variable_missing"),
                         ({"variables": {"customer": "A", "x": "1"}}, "prompt_variable_unknown")):
        r = ask(client, **prompt)
        assert r.status_code == 400, r.text
        e = r.json()["error"]
        assert e["code"] == code and e["param"] == "tollgate_prompt", e
    r = client.post("/v1/embeddings", {"model": "openai/text-embedding-3-small", "input": "x",
                                        "tollgate_prompt": {"name": "support"}})
    assert r.status_code == 400 and r.json()["error"]["code"] == "prompt_not_supported"


def test_history_diff_and_the_registry_api(stack, registry):
    p = cli(stack, "prompts", "show", "support")
    assert p.returncode == 0, p.stderr
    assert "support@1#" in p.stdout and "customer,tier" in p.stdout
    assert "label production → 2" in p.stdout and "carol" in p.stdout and "ann" in p.stdout, p.stdout
    p = cli(stack, "prompts", "diff", "support", "--from", "1", "--to", "2")
    assert "-You are the support assistant of Acme Corp. Answer" in p.stdout and "+Customer {{customer}} ({{tier}}) writes:" in p.stdout, p.stdout
    # refused versions name the field; the system prompt takes no variables
    status, body = stack.control.api("POST", "/v1/prompts/support/versions", {"system": "Today is {{date}}."})
    assert status == 400 and "system" in body["error"]["message"]
    status, body = stack.control.api("POST", "/v1/prompts/support/versions", {"messages": [{"role": "user", "content": 3}]})
    assert status == 400 and "messages[0].content" in body["error"]["message"], body
    status, _ = stack.control.api("PUT", "/v1/prompts/support/labels/production", {"version": 99})
    assert status == 404
    status, _ = stack.control.api("POST", "/v1/prompts/current/versions", {"system": "x"})
    assert status == 400
    # the fleet token reads the registry (Envoys do) but cannot change it
    status, doc = stack.control.api("GET", "/v1/prompts/current", token=sm.FILTER_TOKEN)
    assert status == 200 and doc["prompts"][0]["name"] == "support"
    status, _ = stack.control.api("POST", "/v1/prompts/x/versions", {"system": "x"}, token=sm.FILTER_TOKEN)
    assert status in (401, 403)


def test_hostile_input_to_the_registry_and_to_requests_naming_prompts(stack, client, registry):
    # names that are paths, control characters or too long are refused
    for name in ("..%2F..%2Fetc", "a%0Ab", "x" * 65, "%E2%80%AE"):
        status, _ = stack.control.api("POST", f"/v1/prompts/{name}/versions", {"system": "x"})
        assert status in (400, 404), name
    status, body = stack.control.api("POST", "/v1/prompts/big/versions", {"system": "x" * (300 * 1024)})
    assert status == 400 and "content" in body["error"]["message"]
    r = requests.post(stack.control.url + "/v1/prompts/dup/versions", data=b'{"system": "a", "system": "b"}',
                      headers={"authorization": f"Bearer {sm.ADMIN_TOKEN}"}, timeout=10)
    assert r.status_code == 400 and "twice" in r.text
    # a request naming the prompt twice, or with a lone surrogate, or messages that are not a list
    raw = (b'{"model":"cheap","messages":[],"tollgate_prompt":{"name":"support","variables":{"customer":"a"}},'
           b'"tollgate_prompt":{"name":"other"}}')
    r = client.post("/v1/chat/completions", raw=raw)
    assert r.status_code == 400 and r.json()["error"]["code"] == "duplicate_key"
    raw = b'{"model":"cheap","messages":[],"tollgate_prompt":{"name":"support","variables":{"customer":"\\ud800"}}}'
    r = client.post("/v1/chat/completions", raw=raw)
    assert r.status_code == 400
    r = client.post("/v1/chat/completions", {"model": "cheap", "messages": "hi",
                                             "tollgate_prompt": {"name": "support", "variables": {"customer": "a"}}})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_type"
    # a variable value with control characters and braces goes in as text, JSON-escaped
    r = ask(client, variables={"customer": "{{customer}}\u0000\u001b[2J\"}"})
    assert r.status_code == 200, r.text
    assert last_upstream(stack)["messages"][1]["content"] == "Customer {{customer}}\u0000\u001b[2J\"} writes:"
    assert ask(client).status_code == 200, "the worker serves on"
